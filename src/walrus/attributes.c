/* attributes.c: GetObjectAttributes: what x-amz-object-attributes asks
 * for (ETag, Checksum, ObjectParts, StorageClass, ObjectSize) of an object
 * or one of its versions, without its data; the parts paged with
 * x-amz-max-parts and x-amz-part-number-marker.  An SSE-C object needs
 * its key here too. */
#define LOG_MODULE "walrus"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "walrus.h"
#include "xml.h"

enum {
    ATTR_ETAG = 1,
    ATTR_CHECKSUM = 2,
    ATTR_PARTS = 4,
    ATTR_STORAGE_CLASS = 8,
    ATTR_SIZE = 16,
};

static int parse_attributes(struct s3_req *r, unsigned *out,
                            struct koala_error **err)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        {"ETag", ATTR_ETAG},
        {"Checksum", ATTR_CHECKSUM},
        {"ObjectParts", ATTR_PARTS},
        {"StorageClass", ATTR_STORAGE_CLASS},
        {"ObjectSize", ATTR_SIZE},
    };
    *out = 0;
    const char *h = s3_header(r, "x-amz-object-attributes");
    _cleanup_free_ char *copy = h ? strdup(h) : NULL;
    char *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
         t = strtok_r(NULL, ",", &save)) {
        t = str_trim(t);
        unsigned bit = 0;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
            if (strcmp(t, names[i].name) == 0)
                bit = names[i].bit;
        if (bit == 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "Invalid attribute name specified.");
        *out |= bit;
    }
    if (*out == 0)
        return error_set(err, EINVAL, "InvalidArgument",
                         "The x-amz-object-attributes header specifying the "
                         "attributes to be retrieved is either missing or "
                         "empty");
    return 0;
}

static int header_number(struct s3_req *r, const char *name, int64_t dflt,
                         int64_t *out, struct koala_error **err)
{
    const char *v = s3_header(r, name);
    *out = dflt;
    if (v && (str_to_i64(v, out) < 0 || *out < 0))
        return error_set(err, EINVAL, "InvalidArgument",
                         "Invalid value for %s", name);
    return 0;
}

/* "crc32c" -> "ChecksumCRC32C" */
static void checksum_element(const char *alg, char out[32])
{
    size_t n = snprintf(out, 32, "Checksum");
    for (const char *p = alg; *p && n < 31; p++)
        out[n++] = (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static void write_parts(struct xml_writer *x, const struct object_row *o,
                        int64_t marker, int64_t max)
{
    uint64_t *sizes;
    size_t n = object_part_sizes(o, &sizes);
    xml_start(x, "ObjectParts");
    xml_u64_element(x, "PartsCount", (uint64_t)object_part_count(o));
    xml_u64_element(x, "PartNumberMarker", (uint64_t)marker);
    int64_t last = marker, shown = 0;
    bool truncated = false;
    for (size_t i = (size_t)marker; i < n; i++) {
        if (shown == max) {
            truncated = true;
            break;
        }
        last = (int64_t)i + 1;
        shown++;
    }
    if (truncated)
        xml_u64_element(x, "NextPartNumberMarker", (uint64_t)last);
    xml_u64_element(x, "MaxParts", (uint64_t)max);
    xml_bool_element(x, "IsTruncated", truncated);
    /* the parts' checksums, "c1,c2,...", with a composite checksum */
    _cleanup_free_ char *sums = strdup(o->part_checksums ? o->part_checksums
                                                         : "");
    char *save = NULL, *sum = sums ? strtok_r(sums, ",", &save) : NULL;
    char name[32];
    checksum_element(o->checksum_alg, name);
    for (int64_t i = 0; i < last; i++) {
        if (i >= marker) {
            xml_start(x, "Part");
            xml_u64_element(x, "PartNumber", (uint64_t)i + 1);
            xml_u64_element(x, "Size", sizes[i]);
            if (sum && o->checksum_alg[0])
                xml_text_element(x, name, sum);
            xml_end(x);
        }
        sum = sum ? strtok_r(NULL, ",", &save) : NULL;
    }
    xml_end(x);
    free(sizes);
}

void s3_get_object_attributes(struct s3_req *r)
{
    struct koala_error *err = NULL;
    unsigned want;
    int64_t max_parts, marker;
    struct object_row o;
    struct bucket_row b;
    if (parse_attributes(r, &want, &err) < 0 ||
        header_number(r, "x-amz-max-parts", 1000, &max_parts, &err) < 0 ||
        header_number(r, "x-amz-part-number-marker", 0, &marker, &err) < 0 ||
        s3_load_object(r, PERM_READ, &b, &o, &err) < 0)
        return s3_fail(r, err);
    /* An SSE-C object answers only to its key, as its GET does. */
    struct sse_request sq;
    struct sse_key sk;
    int rc = sse_from_request(r, SSE_USE_READ, &sq, &err);
    if (rc == 0)
        rc = sse_open(r->w, o.sse, o.part_sizes, &sq, &sk, &err);
    OPENSSL_cleanse(&sq, sizeof(sq));
    if (rc < 0) {
        object_row_clear(&o);
        return s3_fail(r, err);
    }
    sse_reply_headers(r, &sk);
    sse_key_clear(&sk);
    if (max_parts > 1000)
        max_parts = 1000;
    char date[30];
    http_reply_header(r->http, "Last-Modified",
                      time_format_http((time_t)(o.mtime_ms / 1000), date));
    s3_reply_version(r, o.version_id, b.versioning[0] != '\0');
    struct xml_writer *x =
        xml_writer_new("GetObjectAttributesResponse", S3_XMLNS);
    if (want & ATTR_ETAG)
        xml_text_element(x, "ETag", o.etag);
    if ((want & ATTR_CHECKSUM) && o.checksum_alg[0]) {
        char name[32];
        checksum_element(o.checksum_alg, name);
        xml_start(x, "Checksum");
        xml_text_element(x, name, o.checksum);
        xml_end(x);
    }
    if ((want & ATTR_PARTS) && o.parts > 0)
        write_parts(x, &o, marker, max_parts);
    if (want & ATTR_STORAGE_CLASS)
        xml_text_element(x, "StorageClass", "STANDARD");
    if (want & ATTR_SIZE)
        xml_u64_element(x, "ObjectSize", o.size);
    object_row_clear(&o);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}
