/* test_xml.c: the XML writer (escaping, characters XML 1.0 forbids, empty
 * elements, nesting) and the reader (navigation by local name, DOCTYPE and
 * entity refusal, size limit, malformed input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "xml.h"

#define DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

/* Finishes w and checks the document, then parses it back. */
static char *finish(struct xml_writer *w)
{
    size_t len = 0;
    char *doc = xml_writer_finish(w, &len);
    assert_non_null(doc);
    assert_int_equal(strlen(doc), len);
    return doc;
}

static void test_writer_basic(void **s)
{
    struct xml_writer *w = xml_writer_new("ListBucketResult", "urn:x");
    assert_non_null(w);
    xml_text_element(w, "Name", "bucket");
    xml_u64_element(w, "MaxKeys", UINT64_MAX);
    xml_bool_element(w, "IsTruncated", false);
    xml_text_elementf(w, "Count", "%d-%s", 7, "x");
    xml_start(w, "Contents");
    xml_text_element(w, "Key", "a");
    xml_text_element(w, "Empty", NULL);
    xml_text_element(w, "Blank", "");
    xml_end(w);
    xml_start(w, "Open"); /* left open: finish closes it */
    xml_text_element(w, "X", "1");
    _cleanup_free_ char *doc = finish(w);
    assert_string_equal(doc, DECL
                        "<ListBucketResult xmlns=\"urn:x\"><Name>bucket</Name>"
                        "<MaxKeys>18446744073709551615</MaxKeys>"
                        "<IsTruncated>false</IsTruncated><Count>7-x</Count>"
                        "<Contents><Key>a</Key><Empty/><Blank/></Contents>"
                        "<Open><X>1</X></Open></ListBucketResult>");
}

static void test_writer_empty_root_and_attrs(void **s)
{
    _cleanup_free_ char *doc = finish(xml_writer_new("Versioning", NULL));
    assert_string_equal(doc, DECL "<Versioning/>");

    struct xml_writer *w = xml_writer_new("R", NULL);
    xml_start(w, "Grantee");
    xml_attr(w, "xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance");
    xml_attr(w, "xsi:type", "a\"b<c>&'\t\n\r");
    xml_text_element(w, "ID", "1");
    xml_attr(w, "late", "ignored"); /* after content: no start tag to add to */
    xml_end(w);
    _cleanup_free_ char *doc2 = finish(w);
    assert_string_equal(doc2, DECL
                        "<R><Grantee xmlns:xsi=\"http://www.w3.org/2001/"
                        "XMLSchema-instance\" xsi:type=\"a&quot;b&lt;c&gt;&amp;"
                        "&apos;&#9;&#10;&#13;\"><ID>1</ID></Grantee></R>");
}

static void test_writer_escapes_text(void **s)
{
    struct xml_writer *w = xml_writer_new("R", NULL);
    xml_text_element(w, "ETag", "\"abc\"");
    xml_text_element(w, "K", "a&b<c>d]]>e'f\tg\nh\ri");
    _cleanup_free_ char *doc = finish(w);
    assert_string_equal(doc, DECL "<R><ETag>&quot;abc&quot;</ETag>"
                                  "<K>a&amp;b&lt;c&gt;d]]&gt;e&apos;f\tg\nh"
                                  "&#13;i</K></R>");
}

static void test_writer_forbidden_chars(void **s)
{
    /* C0 controls, invalid UTF-8, surrogates, U+FFFE/U+FFFF become U+FFFD;
     * valid multi-byte characters (and DEL, C1) pass unchanged. */
    struct xml_writer *w = xml_writer_new("R", NULL);
    xml_text_element(w, "A", "x\x01y\x1fz");
    xml_text_element(w, "B", "\xff\xc3\x28");             /* bad bytes */
    xml_text_element(w, "C", "\xed\xa0\x80");             /* surrogate */
    xml_text_element(w, "D", "\xef\xbf\xbe\xef\xbf\xbf"); /* FFFE FFFF */
    xml_text_element(w, "E", "\xc0\xaf");                 /* overlong */
    xml_text_element(w, "F",
                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\xa8\x7f"
                     "\xc2\x85");
    xml_text_element(w, "G", "\xe2\x82"); /* cut short at the end */
    _cleanup_free_ char *doc = finish(w);
#define R "\xef\xbf\xbd"
    assert_string_equal(doc, DECL "<R><A>x" R "y" R "z</A>"
                                  "<B>" R R "(</B><C>" R R R "</C>"
                                  "<D>" R R R R R R "</D><E>" R R "</E>"
                                  "<F>\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\xa8"
                                  "\x7f\xc2\x85</F><G>" R R "</G></R>");
#undef R
    /* And the result is a well-formed document. */
    struct koala_error *err = NULL;
    struct xml_doc *d = xml_parse(doc, strlen(doc), 1 << 20, &err);
    assert_non_null(d);
    xml_doc_free(d);
}

static void test_writer_round_trip(void **s)
{
    const char *text = "a & b < c > d \"e\" 'f' \r\n\t end \xc3\xa9";
    struct xml_writer *w = xml_writer_new("R", "urn:x");
    xml_start(w, "E");
    xml_attr(w, "v", text);
    xml_end(w);
    xml_text_element(w, "T", text);
    _cleanup_free_ char *doc = finish(w);
    struct koala_error *err = NULL;
    _cleanup_xml_doc_ struct xml_doc *d =
        xml_parse(doc, strlen(doc), 1 << 20, &err);
    assert_non_null(d);
    _cleanup_free_ char *t = xml_child_text(xml_root(d), "T");
    _cleanup_free_ char *v = xml_attr_value(xml_child(xml_root(d), "E"), "v");
    assert_string_equal(t, text);
    assert_string_equal(v, text);
}

static void test_writer_null_safe(void **s)
{
    /* A writer that could not be made (no memory) is accepted everywhere. */
    xml_start(NULL, "a");
    xml_attr(NULL, "a", "b");
    xml_text_element(NULL, "a", "b");
    xml_text_elementf(NULL, "a", "%d", 1);
    xml_u64_element(NULL, "a", 1);
    xml_bool_element(NULL, "a", true);
    xml_end(NULL);
    size_t len = 99;
    assert_null(xml_writer_finish(NULL, &len));
    xml_writer_free(NULL);
    /* A writer freed without finishing releases its open elements. */
    struct xml_writer *w = xml_writer_new("R", NULL);
    xml_start(w, "a");
    xml_start(w, "b");
    xml_writer_free(w);
}

static void test_writer_deep(void **s)
{
    struct xml_writer *w = xml_writer_new("R", NULL);
    for (int i = 0; i < 100; i++)
        xml_start(w, "d");
    _cleanup_free_ char *doc = finish(w);
    struct buf want = {0};
    buf_append_str(&want, DECL "<R>");
    for (int i = 0; i < 99; i++)
        buf_append_str(&want, "<d>");
    buf_append_str(&want, "<d/>");
    for (int i = 0; i < 99; i++)
        buf_append_str(&want, "</d>");
    buf_append_str(&want, "</R>");
    assert_string_equal(doc, want.data);
    buf_free(&want);
}

static const char complete_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<s3:CompleteMultipartUpload "
    "xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "  <s3:Part><s3:PartNumber>1</s3:PartNumber>"
    "<s3:ETag>&quot;e1&quot;</s3:ETag></s3:Part>\n"
    "  <!-- a comment -->\n"
    "  <Other/>\n"
    "  <Part><PartNumber>2</PartNumber><ETag><![CDATA[\"e<2>\"]]></ETag>"
    "</Part>\n"
    "</s3:CompleteMultipartUpload>";

static void test_reader_navigation(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_xml_doc_ struct xml_doc *d =
        xml_parse(complete_xml, strlen(complete_xml), 4096, &err);
    assert_non_null(d);
    const struct xml_node *root = xml_root(d);
    assert_string_equal(xml_name(root), "CompleteMultipartUpload");
    const char *want_num[] = {"1", "2"};
    const char *want_etag[] = {"\"e1\"", "\"e<2>\""};
    int i = 0;
    for (const struct xml_node *p = xml_next_child(root, NULL, "Part"); p;
         p = xml_next_child(root, p, "Part"), i++) {
        assert_true(i < 2);
        assert_string_equal(xml_name(p), "Part");
        _cleanup_free_ char *num = xml_child_text(p, "PartNumber");
        _cleanup_free_ char *etag = xml_child_text(p, "ETag");
        assert_string_equal(num, want_num[i]);
        assert_string_equal(etag, want_etag[i]);
    }
    assert_int_equal(i, 2);
    /* name NULL: every element child, comments and text skipped. */
    int n = 0;
    for (const struct xml_node *c = xml_next_child(root, NULL, NULL); c;
         c = xml_next_child(root, c, NULL))
        n++;
    assert_int_equal(n, 3);
    _cleanup_free_ char *other = xml_child_text(root, "Other");
    assert_string_equal(other, "");
    assert_null(xml_child(root, "Missing"));
    assert_null(xml_child_text(root, "Missing"));
    assert_null(xml_child(root, "part")); /* names are case sensitive */
    /* NULL nodes are accepted, so chains need no checks in between. */
    assert_null(xml_child(NULL, "x"));
    assert_null(xml_text(NULL));
    assert_null(xml_child_text(xml_child(root, "Missing"), "x"));
    assert_null(xml_attr_value(NULL, "x"));
    assert_null(xml_root(NULL));
}

static void test_reader_attrs(void **s)
{
    const char *x = "<AccessControlPolicy><Grantee "
                    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
                    "xsi:type=\"CanonicalUser\" plain=\"a&amp;b\" e=\"\">"
                    "<ID>abc</ID></Grantee><G2 u:type=\"Group\"/>"
                    "</AccessControlPolicy>";
    struct koala_error *err = NULL;
    _cleanup_xml_doc_ struct xml_doc *d = xml_parse(x, strlen(x), 4096, &err);
    assert_non_null(d);
    const struct xml_node *g = xml_child(xml_root(d), "Grantee");
    _cleanup_free_ char *type = xml_attr_value(g, "type");
    _cleanup_free_ char *plain = xml_attr_value(g, "plain");
    _cleanup_free_ char *empty = xml_attr_value(g, "e");
    assert_string_equal(type, "CanonicalUser");
    assert_string_equal(plain, "a&b");
    assert_string_equal(empty, "");
    assert_null(xml_attr_value(g, "xsi")); /* namespace declarations */
    assert_null(xml_attr_value(g, "missing"));
    /* An undeclared prefix: still matched by local name. */
    const struct xml_node *g2 = xml_child(xml_root(d), "G2");
    assert_non_null(g2);
    _cleanup_free_ char *t2 = xml_attr_value(g2, "type");
    assert_string_equal(t2, "Group");
}

static void expect_malformed(const char *x, size_t max)
{
    struct koala_error *err = NULL;
    struct xml_doc *d = xml_parse(x, strlen(x), max, &err);
    assert_null(d);
    assert_non_null(err);
    assert_string_equal(error_code(err), "MalformedXML");
    error_free(err);
}

static void test_reader_rejects(void **s)
{
    expect_malformed("", 100);
    expect_malformed("<a>", 100);
    expect_malformed("<a></b>", 100);
    expect_malformed("just text", 100);
    expect_malformed("<a>&undefined;</a>", 100);
    expect_malformed("<a>&#x1;</a>", 100); /* not a legal XML 1.0 char */
    expect_malformed("<a/><b/>", 100);
    expect_malformed("<?xml version=\"1.0\"?>", 100);
    expect_malformed("<a>\xff</a>", 100); /* not UTF-8 */
    /* Size limit. */
    expect_malformed("<a>0123456789</a>", 16);
    struct koala_error *err = NULL;
    struct xml_doc *d = xml_parse("<a>0123456789</a>", 17, 17, &err);
    assert_non_null(d);
    xml_doc_free(d);
    /* Embedded NUL inside the given length. */
    d = xml_parse("<a>x\0y</a>", 10, 100, &err);
    assert_null(d);
    assert_string_equal(error_code(err), "MalformedXML");
    error_free(err);
}

static void test_reader_rejects_doctype(void **s)
{
    /* XXE: an external entity. */
    expect_malformed("<?xml version=\"1.0\"?>\n"
                     "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                     "<a>&x;</a>",
                     4096);
    /* Entity expansion ("billion laughs"). */
    expect_malformed("<!DOCTYPE a [<!ENTITY l \"lol\">"
                     "<!ENTITY l2 \"&l;&l;&l;&l;&l;&l;&l;&l;&l;&l;\">"
                     "<!ENTITY l3 \"&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;\">]>"
                     "<a>&l3;</a>",
                     4096);
    /* External DTD, and an empty internal subset: any DOCTYPE at all. */
    expect_malformed("<!DOCTYPE a SYSTEM \"http://127.0.0.1:1/x.dtd\"><a/>",
                     4096);
    expect_malformed("<!DOCTYPE a><a/>", 4096);
    struct koala_error *err = NULL;
    const char *x = "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
    assert_null(xml_parse(x, strlen(x), 4096, &err));
    assert_non_null(strstr(error_message(err), "DOCTYPE"));
    error_free(err);
}

static void test_reader_error_message(void **s)
{
    struct koala_error *err = NULL;
    const char *x = "<a>\n<b></c></a>";
    assert_null(xml_parse(x, strlen(x), 4096, &err));
    assert_int_equal(err->errnum, EINVAL);
    assert_non_null(strstr(error_message(err), "line 2"));
    assert_null(strchr(error_message(err), '\n'));
    error_free(err);
}

/* Parses doc (NUL terminated): 0 if accepted, -1 with the error's message
 * checked to name the bound. */
static int parse_bounded(const char *doc, const char *why)
{
    struct koala_error *err = NULL;
    struct xml_doc *d = xml_parse(doc, strlen(doc), 64u << 20, &err);
    if (d) {
        xml_doc_free(d);
        return 0;
    }
    assert_string_equal(error_code(err), "MalformedXML");
    if (why && strstr(error_message(err), why) == NULL)
        fail_msg("'%s' does not say '%s'", error_message(err), why);
    error_free(err);
    return -1;
}

/* An element with n attributes (or xmlns declarations), one of them with
 * markup characters inside its quoted value. */
static char *many_attrs(size_t n, const char *name)
{
    struct buf b = {0};
    buf_append(&b, "<r", 2);
    for (size_t i = 0; i < n; i++) {
        char one[64];
        snprintf(one, sizeof(one), " %s%zu='%s'", name, i,
                 i == 0 ? "x=1>\"" : "v");
        buf_append_str(&b, one);
    }
    buf_append(&b, "/>", 3);
    return b.data;
}

static void test_reader_bounds_attrs(void **s)
{
    char *ok = many_attrs(XML_MAX_ATTRS, "a");
    char *over = many_attrs(XML_MAX_ATTRS + 1, "a");
    char *ns = many_attrs(XML_MAX_ATTRS + 1, "xmlns:p");
    char *huge = many_attrs(100000, "a");
    assert_int_equal(parse_bounded(ok, NULL), 0);
    assert_int_equal(parse_bounded(over, "attributes"), -1);
    assert_int_equal(parse_bounded(ns, "attributes"), -1);
    assert_int_equal(parse_bounded(huge, "attributes"), -1);
    /* '=' inside values and comments does not count. */
    assert_int_equal(parse_bounded("<r a='=====' b=\"==>==\"><!-- a=1 b=2 c=3"
                                   " --><![CDATA[<x a=1>]]></r>",
                                   NULL),
                     0);
    /* An unterminated value: refused, not scanned to the end. */
    assert_int_equal(parse_bounded("<r a='x>", "unterminated"), -1);
    free(ok);
    free(over);
    free(ns);
    free(huge);
}

static char *nested(size_t depth)
{
    struct buf b = {0};
    for (size_t i = 0; i < depth; i++)
        buf_append(&b, "<a>", 3);
    buf_append(&b, "<leaf/>", 7);
    for (size_t i = 0; i < depth; i++)
        buf_append(&b, "</a>", 4);
    buf_append(&b, "", 1);
    return b.data;
}

static void test_reader_bounds_depth_elements_text(void **s)
{
    /* the self-closing leaf does not nest */
    char *ok = nested(XML_MAX_DEPTH), *deep = nested(XML_MAX_DEPTH + 1);
    assert_int_equal(parse_bounded(ok, NULL), 0);
    assert_int_equal(parse_bounded(deep, "deeper"), -1);
    free(ok);
    free(deep);

    struct buf b = {0};
    buf_append(&b, "<r>", 3);
    for (size_t i = 1; i < XML_MAX_ELEMENTS; i++)
        buf_append(&b, "<e/>", 4);
    buf_append(&b, "</r>", 5);
    assert_int_equal(parse_bounded(b.data, NULL), 0);
    b.len--;
    buf_append(&b, "<e/>", 5);
    assert_int_equal(parse_bounded(b.data, "elements"), -1);
    buf_free(&b);

    char *text = malloc(XML_MAX_TEXT + 16);
    assert_non_null(text);
    memcpy(text, "<r>", 3);
    memset(text + 3, 'x', XML_MAX_TEXT);
    strcpy(text + 3 + XML_MAX_TEXT, "</r>");
    assert_int_equal(parse_bounded(text, NULL), 0);
    strcpy(text + 3 + XML_MAX_TEXT, "x</r>");
    assert_int_equal(parse_bounded(text, "text"), -1);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_basic),
        cmocka_unit_test(test_writer_empty_root_and_attrs),
        cmocka_unit_test(test_writer_escapes_text),
        cmocka_unit_test(test_writer_forbidden_chars),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_writer_null_safe),
        cmocka_unit_test(test_writer_deep),
        cmocka_unit_test(test_reader_navigation),
        cmocka_unit_test(test_reader_attrs),
        cmocka_unit_test(test_reader_rejects),
        cmocka_unit_test(test_reader_rejects_doctype),
        cmocka_unit_test(test_reader_error_message),
        cmocka_unit_test(test_reader_bounds_attrs),
        cmocka_unit_test(test_reader_bounds_depth_elements_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
