/* xml.c: the XML writer and reader of the APIs (see xml.h).
 *
 * DESIGN: the writer emits text straight into a buffer; it never fails
 * midway, it only remembers that memory ran out and makes
 * xml_writer_finish() return NULL, so reply builders need no error checks
 * between calls.
 *
 * Text that cannot appear in an XML 1.0 document is replaced, never
 * dropped and never written as a character reference: the C0 controls
 * other than tab, newline and carriage return, U+FFFE, U+FFFF and bytes
 * that are not valid UTF-8 all become U+FFFD.  A reference such as &#x1; is
 * itself not well-formed XML 1.0, and the parsers clients use (expat in
 * botocore) reject the whole document for it.  S3 keys may hold such
 * characters; clients that care ask for encoding-type=url, and then the
 * caller percent-encodes before the text reaches the writer.  Carriage
 * returns are written as &#13; (and tab and newline too, inside attribute
 * values) because parsers normalise the literal characters away.
 *
 * The reader runs libxml2 without network access, without loading DTDs and
 * without entity substitution, and refuses any document that has a
 * DOCTYPE at all: the parser is stopped from the SAX callback that sees the
 * DOCTYPE, before any entity declaration is read, so neither external
 * entities (XXE) nor entity expansion bombs can do anything.
 */
#include "xml.h"

#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* ---- writer ---- */

struct xml_writer {
    struct buf out;
    char **stack; /* names of the open elements, innermost last */
    size_t depth, cap;
    bool tag_open; /* the innermost start tag still lacks its '>' */
    bool failed;   /* memory ran out at some point */
};

static void put(struct xml_writer *w, const char *s, size_t len)
{
    if (!w->failed && buf_append(&w->out, s, len) < 0)
        w->failed = true;
}

static void puts_(struct xml_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most left bytes) encoding a
 * character XML 1.0 allows, or 0 when there is none. */
static size_t xml_char_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
        (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
        return 0;
    return n;
}

/* Escapes s into the document; in_attr also escapes the white space that
 * attribute value normalisation would turn into spaces. */
static void put_escaped(struct xml_writer *w, const char *str, bool in_attr)
{
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strlen(str);
    size_t run = 0; /* start of the pending run of bytes copied as-is */
    size_t i = 0;
    while (i < len) {
        const char *rep = NULL;
        size_t n = 1;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        case '\r':
            rep = "&#13;";
            break;
        case '\n':
            rep = in_attr ? "&#10;" : NULL;
            break;
        case '\t':
            rep = in_attr ? "&#9;" : NULL;
            break;
        default:
            if (s[i] < 0x20) {
                rep = replacement;
            } else if (s[i] >= 0x80) {
                n = xml_char_len(s + i, len - i);
                if (n == 0) {
                    rep = replacement;
                    n = 1;
                }
            }
        }
        if (rep) {
            put(w, str + run, i - run);
            puts_(w, rep);
            run = i + n;
        }
        i += n;
    }
    put(w, str + run, len - run);
}

static void close_start_tag(struct xml_writer *w)
{
    if (w->tag_open) {
        put(w, ">", 1);
        w->tag_open = false;
    }
}

void xml_start(struct xml_writer *w, const char *name)
{
    if (w == NULL)
        return;
    close_start_tag(w);
    if (w->depth == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        char **p = realloc(w->stack, cap * sizeof(*p));
        if (p == NULL) {
            w->failed = true;
            return;
        }
        w->stack = p;
        w->cap = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        w->failed = true;
        return;
    }
    w->stack[w->depth++] = copy;
    put(w, "<", 1);
    puts_(w, name);
    w->tag_open = true;
}

void xml_attr(struct xml_writer *w, const char *name, const char *value)
{
    /* After content has been written there is no start tag to add to. */
    if (w == NULL || !w->tag_open)
        return;
    put(w, " ", 1);
    puts_(w, name);
    put(w, "=\"", 2);
    put_escaped(w, value ? value : "", true);
    put(w, "\"", 1);
}

void xml_end(struct xml_writer *w)
{
    if (w == NULL || w->depth == 0)
        return;
    char *name = w->stack[--w->depth];
    if (w->tag_open) {
        put(w, "/>", 2);
        w->tag_open = false;
    } else {
        put(w, "</", 2);
        puts_(w, name);
        put(w, ">", 1);
    }
    free(name);
}

void xml_text_element(struct xml_writer *w, const char *name, const char *text)
{
    if (w == NULL)
        return;
    xml_start(w, name);
    if (text && *text) {
        close_start_tag(w);
        put_escaped(w, text, false);
    }
    xml_end(w);
}

void xml_text_elementf(struct xml_writer *w, const char *name, const char *fmt,
                       ...)
{
    if (w == NULL)
        return;
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        w->failed = true;
        return;
    }
    xml_text_element(w, name, text);
    free(text);
}

void xml_u64_element(struct xml_writer *w, const char *name, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    xml_text_element(w, name, num);
}

void xml_bool_element(struct xml_writer *w, const char *name, bool v)
{
    xml_text_element(w, name, v ? "true" : "false");
}

struct xml_writer *xml_writer_new(const char *root, const char *xmlns)
{
    struct xml_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    puts_(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml_start(w, root);
    if (xmlns)
        xml_attr(w, "xmlns", xmlns);
    if (w->failed) {
        xml_writer_free(w);
        return NULL;
    }
    return w;
}

void xml_writer_free(struct xml_writer *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->depth; i++)
        free(w->stack[i]);
    free(w->stack);
    buf_free(&w->out);
    free(w);
}

char *xml_writer_finish(struct xml_writer *w, size_t *len)
{
    if (w == NULL)
        return NULL;
    while (w->depth > 0)
        xml_end(w);
    char *doc = NULL;
    if (!w->failed) {
        *len = w->out.len;
        doc = buf_steal(&w->out);
    }
    xml_writer_free(w);
    return doc;
}

/* ---- reader ---- */

static pthread_once_t parser_once = PTHREAD_ONCE_INIT;

static void parser_init(void)
{
    /* libxml2 must be initialised once before threads use it. */
    xmlInitParser();
}

struct parse_state {
    bool saw_doctype;
};

static void reject_doctype(void *ctx, const xmlChar *name,
                           const xmlChar *external_id, const xmlChar *system_id)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct parse_state *st = ctxt->_private;
    st->saw_doctype = true;
    xmlStopParser(ctxt);
}

static int malformed(struct koala_error **err, const char *detail)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema (%s)",
                     detail);
}

/* Finds needle in [p, end), or NULL. */
static const char *find(const char *p, const char *end, const char *needle)
{
    return memmem(p, (size_t)(end - p), needle, strlen(needle));
}

/* Whether [p, end) starts with lit. */
static bool starts(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

/* A linear scan of the raw bytes for what libxml2 does not bound, or bounds
 * only after superlinear work: attributes per element (2.9.14 compares
 * each new attribute with all before it, so 100 000 attributes cost
 * minutes), nesting, elements and runs of text.  It follows the lexical
 * structure just enough to count: markup inside quoted attribute values,
 * comments, CDATA and processing instructions is skipped.  What it cannot
 * follow is malformed, and libxml2, which stops at the first error, rejects
 * it before doing anything costly past that point. */
static int prescan(const char *s, size_t len, struct koala_error **err)
{
    const char *p = s, *end = s + len;
    size_t depth = 0, elements = 0;
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if ((size_t)((lt ? lt : end) - p) > XML_MAX_TEXT)
            return malformed(err, "text longer than the limit");
        if (lt == NULL)
            break;
        p = lt + 1;
        const char *close = NULL, *tail = ">";
        if (starts(p, end, "!--"))
            tail = "-->";
        else if (starts(p, end, "![CDATA["))
            tail = "]]>";
        else if (p < end && *p == '?')
            tail = "?>";
        if (p < end && (*p == '!' || *p == '?' || *p == '/')) {
            if (*p == '/' && depth > 0)
                depth--;
            close = find(p, end, tail);
            if (close == NULL)
                return 0; /* unterminated: libxml2 refuses it */
            if ((size_t)(close - p) > XML_MAX_TEXT)
                return malformed(err, "markup longer than the limit");
            p = close + strlen(tail);
            continue;
        }
        /* A start tag: count its attributes (and namespace declarations),
         * stepping over quoted values, which may hold '>' and '='. */
        if (++elements > XML_MAX_ELEMENTS)
            return malformed(err, "more elements than the limit");
        size_t attrs = 0;
        const char *q = p;
        while (q < end && *q != '>') {
            if (*q == '"' || *q == '\'') {
                const char *qe = memchr(q + 1, *q, (size_t)(end - q - 1));
                if (qe == NULL)
                    return malformed(err, "unterminated attribute value");
                if ((size_t)(qe - q) > XML_MAX_TEXT)
                    return malformed(err, "attribute longer than the limit");
                q = qe + 1;
                continue;
            }
            if (*q == '=' && ++attrs > XML_MAX_ATTRS)
                return malformed(err, "more attributes than the limit");
            q++;
        }
        if (q == end)
            return 0;
        if (q[-1] != '/' && ++depth > XML_MAX_DEPTH)
            return malformed(err, "nested deeper than the limit");
        p = q + 1;
    }
    return 0;
}

struct xml_doc *xml_parse(const char *data, size_t len, size_t max_len,
                          struct koala_error **err)
{
    if (len > max_len || len > INT32_MAX) {
        malformed(err, "document too large");
        return NULL;
    }
    if (len == 0) {
        malformed(err, "empty document");
        return NULL;
    }
    if (prescan(data, len, err) < 0)
        return NULL;
    pthread_once(&parser_once, parser_init);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (ctxt == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    struct parse_state st = {false};
    ctxt->_private = &st;
    ctxt->sax->internalSubset = reject_doctype;
    /* No XML_PARSE_NOENT (substitution), DTDLOAD or DTDATTR. */
    int opts = XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOERROR |
               XML_PARSE_NOWARNING;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, data, (int)len, NULL, NULL, opts);
    if (st.saw_doctype || (doc && (doc->intSubset || doc->extSubset))) {
        malformed(err, "DOCTYPE is not allowed");
        goto fail;
    }
    if (doc == NULL || xmlDocGetRootElement(doc) == NULL) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        char detail[256];
        if (e && e->message) {
            snprintf(detail, sizeof(detail), "line %d: %s", e->line,
                     e->message);
            detail[strcspn(detail, "\n")] = '\0';
        } else {
            snprintf(detail, sizeof(detail), "no root element");
        }
        malformed(err, detail);
        goto fail;
    }
    xmlFreeParserCtxt(ctxt);
    return (struct xml_doc *)doc;
fail:
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    return NULL;
}

void xml_doc_free(struct xml_doc *doc)
{
    if (doc)
        xmlFreeDoc((xmlDocPtr)doc);
}

const struct xml_node *xml_root(const struct xml_doc *doc)
{
    if (doc == NULL)
        return NULL;
    return (const struct xml_node *)xmlDocGetRootElement((xmlDocPtr)doc);
}

/* The local part of a name.  libxml2 already splits declared prefixes off;
 * an undeclared one ("s3:Part" with no xmlns:s3) stays in the name, and
 * matching ignores namespaces, so it is cut here as well. */
static const char *local_name(const xmlChar *name)
{
    const char *s = (const char *)name;
    const char *colon = strrchr(s, ':');
    return colon ? colon + 1 : s;
}

const char *xml_name(const struct xml_node *n)
{
    return n ? local_name(((const xmlNode *)n)->name) : "";
}

const struct xml_node *xml_next_child(const struct xml_node *parent,
                                      const struct xml_node *prev,
                                      const char *name)
{
    if (parent == NULL)
        return NULL;
    const xmlNode *c = prev ? ((const xmlNode *)prev)->next
                            : ((const xmlNode *)parent)->children;
    for (; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (name == NULL || strcmp(local_name(c->name), name) == 0)
            return (const struct xml_node *)c;
    }
    return NULL;
}

const struct xml_node *xml_child(const struct xml_node *n, const char *name)
{
    return xml_next_child(n, NULL, name);
}

/* Moves a libxml2 string into malloc'd memory, as the header promises. */
static char *from_xml_string(xmlChar *s)
{
    if (s == NULL)
        return NULL;
    char *copy = strdup((const char *)s);
    xmlFree(s);
    return copy;
}

char *xml_text(const struct xml_node *n)
{
    if (n == NULL)
        return NULL;
    return from_xml_string(xmlNodeGetContent((const xmlNode *)n));
}

char *xml_child_text(const struct xml_node *n, const char *name)
{
    return xml_text(xml_child(n, name));
}

char *xml_attr_value(const struct xml_node *n, const char *name)
{
    if (n == NULL)
        return NULL;
    for (const xmlAttr *a = ((const xmlNode *)n)->properties; a; a = a->next) {
        if (strcmp(local_name(a->name), name) != 0)
            continue;
        if (a->children == NULL) /* name="" */
            return strdup("");
        return from_xml_string(xmlNodeListGetString(a->doc, a->children, 1));
    }
    return NULL;
}
