/* bodies.c: the S3 request bodies that list things, parsed from their
 * bytes alone (no request, no database): a multi-object Delete and a
 * CompleteMultipartUpload.  Kept apart from the operations so that the
 * s3_xml fuzz target runs exactly the code the daemon runs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "walrus.h"
#include "xml.h"

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

void s3_delete_body_free(struct s3_delete_body *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->keys[i]);
        free(d->versions[i]);
    }
    free(d->keys);
    free(d->versions);
    d->keys = NULL;
    d->versions = NULL;
    d->n = 0;
}

int s3_parse_delete_body(const char *body, size_t len, struct s3_delete_body *d,
                         struct koala_error **err)
{
    memset(d, 0, sizeof(*d));
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(body, len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    size_t count = 0;
    for (const struct xml_node *n = xml_next_child(root, NULL, "Object"); n;
         n = xml_next_child(root, n, "Object"))
        count++;
    if (strcmp(xml_name(root), "Delete") != 0 || count == 0 ||
        count > WALRUS_MAX_DELETE)
        return malformed(err);
    _cleanup_free_ char *quiet = xml_child_text(root, "Quiet");
    d->quiet = quiet && strcasecmp(str_trim(quiet), "true") == 0;
    d->keys = calloc(count, sizeof(*d->keys));
    d->versions = calloc(count, sizeof(*d->versions));
    if (d->keys == NULL || d->versions == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (const struct xml_node *n = xml_next_child(root, NULL, "Object"); n;
         n = xml_next_child(root, n, "Object")) {
        d->versions[d->n] = xml_child_text(n, "VersionId");
        d->keys[d->n++] = xml_child_text(n, "Key"); /* NULL: none given */
    }
    return 0;
}

int s3_parse_complete_body(const char *body, size_t len,
                           struct s3_complete_part **out, size_t *n_out,
                           struct koala_error **err)
{
    *out = NULL;
    *n_out = 0;
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(body, len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "CompleteMultipartUpload") != 0)
        return malformed(err);
    size_t n = 0;
    for (const struct xml_node *p = xml_next_child(root, NULL, "Part"); p;
         p = xml_next_child(root, p, "Part"))
        n++;
    if (n == 0 || n > WALRUS_MAX_PARTS)
        return malformed(err);
    struct s3_complete_part *parts = calloc(n, sizeof(*parts));
    if (parts == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t i = 0;
    int prev = 0;
    for (const struct xml_node *p = xml_next_child(root, NULL, "Part"); p;
         p = xml_next_child(root, p, "Part"), i++) {
        _cleanup_free_ char *num = xml_child_text(p, "PartNumber");
        _cleanup_free_ char *etag = xml_child_text(p, "ETag");
        static const char *const sums[] = {"ChecksumCRC32", "ChecksumCRC32C",
                                           "ChecksumSHA1", "ChecksumSHA256"};
        for (size_t k = 0; k < sizeof(sums) / sizeof(sums[0]); k++) {
            _cleanup_free_ char *c = xml_child_text(p, sums[k]);
            if (c)
                snprintf(parts[i].checksum, sizeof(parts[i].checksum), "%s",
                         str_trim(c));
        }
        int64_t pn;
        if (num == NULL || etag == NULL || str_to_i64(str_trim(num), &pn) < 0) {
            free(parts);
            return malformed(err);
        }
        if (pn <= prev) {
            free(parts);
            return error_set(err, EINVAL, "InvalidPartOrder",
                             "The list of parts was not in ascending order. "
                             "The parts list must be specified in order by "
                             "part number.");
        }
        /* (a number past the last part is found nowhere: InvalidPart) */
        prev = (int)(pn > WALRUS_MAX_PARTS ? WALRUS_MAX_PARTS + 1 : pn);
        char *e = str_trim(etag);
        size_t elen = strlen(e);
        if (elen >= 2 && e[0] == '"' && e[elen - 1] == '"') {
            e[elen - 1] = '\0';
            e++;
            elen -= 2;
        }
        parts[i].number = pn;
        /* an ETag longer than any we make matches no part */
        snprintf(parts[i].etag, sizeof(parts[i].etag), "%s",
                 elen < sizeof(parts[i].etag) ? e : "");
    }
    *out = parts;
    *n_out = n;
    return 0;
}
