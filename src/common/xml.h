/* xml.h: writing and reading the XML documents of the APIs (S3 replies and
 * request bodies, EC2 replies, SOAP envelopes), on libxml2.
 *
 * Writing: a small streaming writer into memory that escapes text and
 * attribute values.  Reading: whole (size-limited) documents parsed without
 * network access, DTD loading or entity expansion, navigated by local name
 * (namespaces are ignored when matching, since clients differ in whether they
 * send S3's namespace).
 */
#ifndef KOALA_XML_H
#define KOALA_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* ---- writer ---- */
struct xml_writer;

/* Starts a document: the XML declaration, then the root element with the
 * given default namespace (xmlns may be NULL). */
struct xml_writer *xml_writer_new(const char *root, const char *xmlns);
void xml_writer_free(struct xml_writer *w);
void xml_start(struct xml_writer *w, const char *name);
/* Adds an attribute to the element just started (before any content). */
void xml_attr(struct xml_writer *w, const char *name, const char *value);
void xml_end(struct xml_writer *w); /* closes the innermost open element */
/* <name>text</name>; text may be NULL for an empty element. */
void xml_text_element(struct xml_writer *w, const char *name, const char *text);
void xml_text_elementf(struct xml_writer *w, const char *name, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));
void xml_u64_element(struct xml_writer *w, const char *name, uint64_t v);
void xml_bool_element(struct xml_writer *w, const char *name, bool v);
/* Closes every open element and returns the document (malloc'd, NUL
 * terminated, *len without the NUL), or NULL if memory ran out at any point.
 * The writer is freed either way. */
char *xml_writer_finish(struct xml_writer *w, size_t *len);

/* ---- reader ---- */
struct xml_doc;  /* a parsed document */
struct xml_node; /* an element inside it; valid while the doc lives */

/* What the reader accepts, far above what any of the APIs' documents need
 * (S3's largest, CompleteMultipartUpload with 10 000 parts, has ~40 000
 * elements 3 deep; SOAP messages are under 12 deep with 3 namespace
 * declarations) and far below what costs noticeable CPU. */
#define XML_MAX_DEPTH 64        /* nested elements */
#define XML_MAX_ATTRS 32        /* attributes + xmlns declarations, each */
#define XML_MAX_ELEMENTS 200000 /* in one document */
#define XML_MAX_TEXT (1u << 20) /* bytes in one run of text or one value */

/* Parses a document.  Malformed XML, a DOCTYPE, more than max_len bytes or
 * anything past the XML_MAX_* bounds is an error with code "MalformedXML". */
struct xml_doc *xml_parse(const char *data, size_t len, size_t max_len,
                          struct koala_error **err);
void xml_doc_free(struct xml_doc *doc);
const struct xml_node *xml_root(const struct xml_doc *doc);
/* Local name of an element ("Part" for <s3:Part>). */
const char *xml_name(const struct xml_node *n);
/* First child element with that local name, or NULL. */
const struct xml_node *xml_child(const struct xml_node *n, const char *name);
/* Iteration over child elements: pass NULL for the first; name NULL matches
 * any element. */
const struct xml_node *xml_next_child(const struct xml_node *parent,
                                      const struct xml_node *prev,
                                      const char *name);
/* The text content of an element (malloc'd), or NULL. */
char *xml_text(const struct xml_node *n);
/* Text of the named child (malloc'd) or NULL if there is no such child. */
char *xml_child_text(const struct xml_node *n, const char *name);
/* Value of an attribute by local name (malloc'd) or NULL. */
char *xml_attr_value(const struct xml_node *n, const char *name);

static inline void xml_doc_freep(struct xml_doc **d)
{
    xml_doc_free(*d);
}
#define _cleanup_xml_doc_ __attribute__((cleanup(xml_doc_freep)))

#endif
