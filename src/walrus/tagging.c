/* tagging.c: object and bucket tags: the x-amz-tagging header (PUT, COPY,
 * CreateMultipartUpload), Put/Get/DeleteObjectTagging (by version too) and
 * Put/Get/DeleteBucketTagging, with AWS's limits and errors.
 *
 * Tags are stored with the version they belong to (objects.tags,
 * versions.tags, uploads.tags until the upload completes) and with the
 * bucket (buckets.tags), in the x-amz-tagging form: "k=v&k2=v2", keys and
 * values percent-encoded.  "" is no tags.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"
#include "xml.h"

#define TAG_KEY_MAX 128   /* Unicode characters */
#define TAG_VALUE_MAX 256

void tag_set_clear(struct tag_set *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->keys[i]);
        free(t->values[i]);
    }
    memset(t, 0, sizeof(*t));
}

/* Unicode characters of valid UTF-8. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* AWS allows letters, digits, white space and + - = . _ : / @ (any
 * non-ASCII letter included). */
static bool tag_text_ok(const char *s)
{
    if (!str_valid_utf8(s, strlen(s)))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x80 && !((*p >= 'a' && *p <= 'z') ||
                           (*p >= 'A' && *p <= 'Z') ||
                           (*p >= '0' && *p <= '9') || strchr(" +-=._:/@", *p)))
            return false;
    return true;
}

static int invalid_tag(struct koala_error **err, const char *msg)
{
    return error_set(err, EINVAL, "InvalidTag", "%s", msg);
}

/* Takes key and value (malloc'd, freed on failure). */
static int tag_add(struct tag_set *t, char *key, char *value, bool bucket,
                   struct koala_error **err)
{
    int rc = 0;
    size_t max = bucket ? TAGS_MAX_BUCKET : TAGS_MAX_OBJECT;
    if (key == NULL || value == NULL)
        rc = error_set(err, ENOMEM, NULL, "out of memory");
    else if (t->n >= max)
        rc = bucket ? invalid_tag(err, "Bucket tag count cannot be greater "
                                       "than 50")
                    : error_set(err, EINVAL, "BadRequest",
                                "Object tags cannot be greater than 10");
    else if (*key == '\0' || !tag_text_ok(key))
        rc = invalid_tag(err, "The TagKey you have provided is invalid");
    else if (utf8_chars(key) > TAG_KEY_MAX)
        rc = invalid_tag(err, "The TagKey you have provided is too long, "
                              "max 128");
    else if (!tag_text_ok(value))
        rc = invalid_tag(err, "The TagValue you have provided is invalid");
    else if (utf8_chars(value) > TAG_VALUE_MAX)
        rc = invalid_tag(err, "The TagValue you have provided is too long, "
                              "max 256");
    else if (str_has_prefix(key, "aws:"))
        rc = invalid_tag(err, "Your TagKey cannot be prefixed with aws:");
    for (size_t i = 0; rc == 0 && i < t->n; i++)
        if (strcmp(t->keys[i], key) == 0)
            rc = invalid_tag(err, "Cannot provide multiple Tags with the "
                                  "same key");
    if (rc < 0) {
        free(key);
        free(value);
        return -1;
    }
    t->keys[t->n] = key;
    t->values[t->n++] = value;
    return 0;
}

/* "k=v&k2=v2" (percent-encoded): the header's form and the stored one. */
static int tags_parse_query(const char *s, bool bucket, struct tag_set *t,
                            struct koala_error **err)
{
    memset(t, 0, sizeof(*t));
    while (s && *s) {
        size_t len = strcspn(s, "&");
        const char *eq = memchr(s, '=', len);
        size_t klen = eq ? (size_t)(eq - s) : len;
        char *k = str_uri_decode(s, klen, true);
        char *v = eq ? str_uri_decode(eq + 1, len - klen - 1, true)
                     : strdup("");
        if (len == 0 || k == NULL || v == NULL) {
            free(k);
            free(v);
            tag_set_clear(t);
            return error_set(err, EINVAL, "InvalidArgument",
                             "The header 'x-amz-tagging' shall be encoded as "
                             "UTF-8 then URLEncoded URL query parameters "
                             "without tag name duplicates.");
        }
        if (tag_add(t, k, v, bucket, err) < 0) {
            tag_set_clear(t);
            return -1;
        }
        s += len;
        if (*s == '&')
            s++;
    }
    return 0;
}

char *tags_encode(const struct tag_set *t)
{
    struct buf b = {0};
    buf_append(&b, "", 0);
    for (size_t i = 0; i < t->n; i++) {
        if (i)
            buf_append(&b, "&", 1);
        str_uri_encode(&b, t->keys[i], strlen(t->keys[i]), false);
        buf_append(&b, "=", 1);
        str_uri_encode(&b, t->values[i], strlen(t->values[i]), false);
    }
    return buf_steal(&b);
}

int tags_from_header(struct s3_req *r, char **out, struct koala_error **err)
{
    *out = NULL;
    const char *h = s3_header(r, "x-amz-tagging");
    struct tag_set t;
    if (tags_parse_query(h ? h : "", false, &t, err) < 0)
        return -1;
    *out = tags_encode(&t);
    tag_set_clear(&t);
    return *out ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

int tags_decode(const char *stored, struct tag_set *t)
{
    struct koala_error *err = NULL;
    int rc = tags_parse_query(stored, true, t, &err);
    error_free(err);
    return rc;
}

size_t tags_count(const char *stored)
{
    struct tag_set t;
    struct koala_error *err = NULL;
    if (tags_parse_query(stored ? stored : "", true, &t, &err) < 0) {
        error_free(err);
        return 0;
    }
    size_t n = t.n;
    tag_set_clear(&t);
    return n;
}

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

/* A <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>. */
static int tags_from_xml(struct s3_req *r, bool bucket, char **out,
                         struct koala_error **err)
{
    if (r->body.len == 0)
        return malformed(err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    const struct xml_node *set = xml_next_child(root, NULL, "TagSet");
    if (strcmp(xml_name(root), "Tagging") != 0 || set == NULL)
        return malformed(err);
    struct tag_set t = {0};
    for (const struct xml_node *n = xml_next_child(set, NULL, "Tag"); n;
         n = xml_next_child(set, n, "Tag")) {
        char *k = xml_child_text(n, "Key");
        char *v = xml_child_text(n, "Value");
        if (k == NULL || v == NULL) {
            free(k);
            free(v);
            tag_set_clear(&t);
            return malformed(err);
        }
        if (tag_add(&t, k, v, bucket, err) < 0) {
            tag_set_clear(&t);
            return -1;
        }
    }
    *out = tags_encode(&t);
    tag_set_clear(&t);
    return *out ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

static char *tags_to_xml(const char *stored, size_t *len)
{
    struct tag_set t;
    struct koala_error *err = NULL;
    if (tags_parse_query(stored, true, &t, &err) < 0) {
        error_free(err);
        memset(&t, 0, sizeof(t));
    }
    struct xml_writer *x = xml_writer_new("Tagging", S3_XMLNS);
    xml_start(x, "TagSet");
    for (size_t i = 0; i < t.n; i++) {
        xml_start(x, "Tag");
        xml_text_element(x, "Key", t.keys[i]);
        xml_text_element(x, "Value", t.values[i]);
        xml_end(x);
    }
    xml_end(x);
    tag_set_clear(&t);
    return xml_writer_finish(x, len);
}

/* ---- object tagging ---- */

static void reply_done(struct s3_req *r, const struct bucket_row *b,
                       const char *vid, unsigned status)
{
    s3_reply_version(r, vid, b->versioning[0] != '\0');
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, status);
}

void s3_get_object_tagging(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct object_row o;
    struct bucket_row b;
    if (s3_load_object(r, PERM_READ, &b, &o, &err) < 0)
        return s3_fail(r, err);
    size_t len;
    char *doc = tags_to_xml(o.tags ? o.tags : "", &len);
    s3_reply_version(r, o.version_id, b.versioning[0] != '\0');
    object_row_clear(&o);
    s3_reply_xml(r, 200, doc, len);
}

/* Put (tags from the body) or delete (tags NULL) an object's tags. */
static void set_object_tags(struct s3_req *r, bool put)
{
    struct koala_error *err = NULL;
    struct object_row o;
    struct bucket_row b;
    _cleanup_free_ char *tags = NULL;
    if (s3_load_object(r, 0, &b, &o, &err) < 0)
        return s3_fail(r, err);
    char vid[40];
    snprintf(vid, sizeof(vid), "%s", o.version_id);
    /* Changing tags is writing to the bucket, as the object's PUT was. */
    int ok = s3_authorize(r, &b, s3_op_action(r), r->key, &o, &b.acl,
                          PERM_WRITE, &err);
    object_row_clear(&o);
    if (ok < 0)
        return s3_fail(r, err);
    if (put && tags_from_xml(r, false, &tags, &err) < 0)
        return s3_fail(r, err);
    int rc = meta_object_set_field(r->db, r->bucket, r->key, vid, "tags",
                                   put ? tags : "", &err);
    if (rc == 1)
        error_set(&err, ENOENT, "NoSuchKey",
                  "The specified key does not exist.");
    if (rc != 0)
        return s3_fail(r, err);
    reply_done(r, &b, vid, put ? 200 : 204);
}

void s3_put_object_tagging(struct s3_req *r)
{
    set_object_tags(r, true);
}

void s3_delete_object_tagging(struct s3_req *r)
{
    set_object_tags(r, false);
}

/* ---- bucket tagging ---- */

/* The bucket owner's, or whom the bucket policy lets (authz.c). */
static int owner_only(struct s3_req *r, struct bucket_row *b,
                      struct koala_error **err)
{
    return s3_bucket_access(r, PERM_OWNER, b, err);
}

void s3_put_bucket_tagging(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    _cleanup_free_ char *tags = NULL;
    if (owner_only(r, &b, &err) < 0 ||
        tags_from_xml(r, true, &tags, &err) < 0 ||
        s3_bucket_set_text(r, "tags", tags, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}

void s3_delete_bucket_tagging(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (owner_only(r, &b, &err) < 0 ||
        s3_bucket_set_text(r, "tags", "", &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}

void s3_get_bucket_tagging(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (owner_only(r, &b, &err) < 0)
        return s3_fail(r, err);
    sqlite3_stmt *st =
        db_stmt(r->db, "SELECT tags FROM buckets WHERE name=?", &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_text(st, 1, r->bucket, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "reading bucket tags", &err);
    char *tags = rc == 0 ? strdup((const char *)sqlite3_column_text(st, 0))
                         : NULL;
    db_stmt_done(st);
    if (rc == 0 && tags == NULL)
        rc = error_set(&err, ENOMEM, NULL, "out of memory");
    if (rc == 0 && *tags == '\0')
        rc = error_set(&err, ENOENT, "NoSuchTagSet",
                       "The TagSet does not exist");
    if (rc == 1)
        error_set(&err, ENOENT, "NoSuchBucket",
                  "The specified bucket does not exist");
    if (rc != 0) {
        free(tags);
        return s3_fail(r, err);
    }
    size_t len;
    char *doc = tags_to_xml(tags, &len);
    free(tags);
    s3_reply_xml(r, 200, doc, len);
}
