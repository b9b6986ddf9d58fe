/* fuzz_xml.c: libFuzzer target for the XML reader (src/common/xml.h):
 * xml_parse with the limits the daemons use, then a walk over every
 * element: its name, text and attributes, the lookups by name the API
 * parsers make.  What was read is written back with the XML writer
 * (escaping of element text and attribute values) and the result must
 * parse again (when it stays far inside the reader's limits): Koala's
 * replies quote client strings the same way. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

#define MAX_DEPTH 512
#define MAX_LEN (2u * 1024 * 1024) /* WALRUS_MAX_XML_BODY */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const attrs[] = {"type", "xmlns",   "id",       "Id",
                                    "name", "version", "encoding", "xsi:type"};

/* How deep and how large the document read was. */
static int max_depth;
static size_t n_elements;

static void walk(const struct xml_node *n, struct xml_writer *w, int depth)
{
    n_elements++;
    if (depth > max_depth)
        max_depth = depth;
    const char *name = xml_name(n);
    if (name == NULL)
        abort(); /* every element has a name */
    /* The name goes into an attribute: Koala writes only element names of
     * its own, and a local name libxml2 accepts ("1a" in <p:1a>) need not
     * be one the writer may emit. */
    xml_start(w, "e");
    xml_attr(w, "name", name);
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        char *v = xml_attr_value(n, attrs[i]);
        if (v) {
            char an[16];
            snprintf(an, sizeof(an), "a%zu", i);
            xml_attr(w, an, v);
        }
        free(v);
    }
    char *text = xml_text(n);
    if (text)
        xml_text_element(w, "text", text);
    free(text);
    /* Lookups by name, as the API parsers make them. */
    const struct xml_node *first = xml_next_child(n, NULL, NULL);
    if (first) {
        const struct xml_node *same = xml_child(n, xml_name(first));
        if (same != first)
            abort(); /* the first child by name is the first child */
        char *t = xml_child_text(n, xml_name(first));
        free(t);
    }
    if (depth < MAX_DEPTH)
        for (const struct xml_node *c = first; c;
             c = xml_next_child(n, c, NULL))
            walk(c, w, depth + 1);
    xml_end(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct koala_error *err = NULL;
    struct xml_doc *doc = xml_parse((const char *)data, size, MAX_LEN, &err);
    if (doc == NULL) {
        error_free(err);
        return 0;
    }
    const struct xml_node *root = xml_root(doc);
    max_depth = 0;
    n_elements = 0;
    struct xml_writer *w = xml_writer_new("Copy", "urn:koala:fuzz");
    walk(root, w, 0);
    size_t len = 0;
    char *out = xml_writer_finish(w, &len);
    /* Far inside any limit of the reader's (so a failure is the writer's
     * fault): the copy is two levels deeper and holds each element's
     * whole text content. */
    if (out && max_depth <= 32 && n_elements <= 1000 && len <= 65536) {
        struct koala_error *e2 = NULL;
        struct xml_doc *again = xml_parse(out, len, SIZE_MAX, &e2);
        if (again == NULL) {
            fprintf(stderr, "the writer's document does not parse: %s\n%s\n",
                    error_message(e2), out);
            abort();
        }
        xml_doc_free(again);
    }
    free(out);
    xml_doc_free(doc);
    return 0;
}
