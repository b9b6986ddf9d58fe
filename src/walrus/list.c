/* list.c: ListObjects (v1) and ListObjectsV2 (ListObjectVersions:
 * list_versions.c, with the helpers shared from here): one
 * walk over the bucket's keys in UTF-8 byte order, folding keys that
 * contain the delimiter after the prefix into CommonPrefixes.
 *
 * The walk reads keys in batches from the (bucket, key) primary key; when
 * it folds a common prefix it jumps past every key under it (the prefix with
 * its last byte incremented), so a prefix holding a million keys costs one
 * index seek, not a million rows.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"
#include "xml.h"

#define LIST_BATCH 1000

struct list_entry {
    char *key;
    bool is_prefix;
    uint64_t size;
    char etag[72];
    int64_t mtime_ms;
    int64_t owner;
};

struct listing {
    const char *prefix;
    const char *delimiter;
    const char *after; /* list keys strictly after this ("" for all) */
    long max_keys;
    struct list_entry *entries;
    size_t n, cap;
    bool truncated;
};

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->entries[i].key);
    free(l->entries);
}

static int add_entry(struct listing *l, struct list_entry *e,
                     struct koala_error **err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct list_entry *p = realloc(l->entries, cap * sizeof(*p));
        if (p == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        l->entries = p;
        l->cap = cap;
    }
    l->entries[l->n++] = *e;
    return 0;
}

/* The smallest string greater than every string starting with s. */
char *list_prefix_successor(const char *s, size_t len)
{
    char *out = strndup(s, len);
    while (out && len > 0) {
        unsigned char c = (unsigned char)out[len - 1];
        if (c < 0xFF) {
            out[len - 1] = (char)(c + 1);
            out[len] = '\0';
            return out;
        }
        len--;
    }
    return out; /* all 0xFF: nothing follows; "" means restart, unreachable */
}

/* Where a key's common prefix ends (length), or 0 if it has none. */
size_t list_common_prefix_len(const char *prefix, const char *delimiter,
                              const char *key)
{
    if (delimiter == NULL || *delimiter == '\0')
        return 0;
    size_t plen = strlen(prefix);
    const char *d = strstr(key + plen, delimiter);
    return d ? (size_t)(d - key) + strlen(delimiter) : 0;
}

static size_t common_prefix_len(const struct listing *l, const char *key)
{
    return list_common_prefix_len(l->prefix, l->delimiter, key);
}

int s3_list_walk(struct db *db, const char *bucket, struct listing *l,
                 struct koala_error **err);
int s3_list_walk(struct db *db, const char *bucket, struct listing *l,
                 struct koala_error **err)
{
    size_t plen = strlen(l->prefix);
    /* Lower bound and whether it is inclusive. */
    char *bound =
        strdup(strcmp(l->after, l->prefix) > 0 ? l->after : l->prefix);
    bool inclusive = strcmp(l->after, l->prefix) < 0;
    if (bound == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (!inclusive && str_has_prefix(bound, l->prefix)) {
        size_t cpl = common_prefix_len(l, bound);
        if (cpl) { /* the marker sits inside a prefix already returned */
            char *next = list_prefix_successor(bound, cpl);
            free(bound);
            bound = next;
            inclusive = true;
        }
    }
    long count = 0;
    int rc = 0;
    bool done = false;
    while (!done && rc == 0 && bound) {
        sqlite3_stmt *st = db_stmt(
            db,
            /* Delete markers are no objects (docs/walrus.md). */
            inclusive ? "SELECT key, size, etag, mtime_ms, owner FROM objects"
                        " WHERE bucket=? AND key>=? AND delete_marker=0"
                        " ORDER BY key LIMIT 1000"
                      : "SELECT key, size, etag, mtime_ms, owner FROM objects"
                        " WHERE bucket=? AND key>? AND delete_marker=0"
                        " ORDER BY key LIMIT 1000",
            err);
        if (st == NULL) {
            rc = -1;
            break;
        }
        sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, bound, -1, SQLITE_TRANSIENT);
        int rows = 0, s;
        bool jumped = false;
        while (!jumped && (s = sqlite3_step(st)) == SQLITE_ROW) {
            rows++;
            const char *key = (const char *)sqlite3_column_text(st, 0);
            if (strncmp(key, l->prefix, plen) != 0) {
                done = true;
                break;
            }
            if (count >= l->max_keys) {
                /* max-keys=0 asks for nothing: S3 says nothing is left
                 * out then (no marker to resume from). */
                l->truncated = l->max_keys > 0;
                done = true;
                break;
            }
            struct list_entry e = {0};
            size_t cpl = common_prefix_len(l, key);
            e.key = cpl ? strndup(key, cpl) : strdup(key);
            if (e.key == NULL) {
                rc = error_set(err, ENOMEM, NULL, "out of memory");
                break;
            }
            free(bound);
            if (cpl) {
                e.is_prefix = true;
                bound = list_prefix_successor(key, cpl);
                inclusive = true;
                jumped = true;
            } else {
                e.size = (uint64_t)sqlite3_column_int64(st, 1);
                snprintf(e.etag, sizeof(e.etag), "%s",
                         sqlite3_column_text(st, 2));
                e.mtime_ms = sqlite3_column_int64(st, 3);
                e.owner = sqlite3_column_int64(st, 4);
                bound = strdup(key);
                inclusive = false;
            }
            if (add_entry(l, &e, err) < 0) {
                free(e.key);
                rc = -1;
                break;
            }
            count++;
        }
        if (!jumped && !done && rc == 0) {
            if (s != SQLITE_ROW && s != SQLITE_DONE)
                rc = db_error(db, "listing objects", err);
            else if (rows < LIST_BATCH)
                done = true;
        }
        db_stmt_done(st);
    }
    free(bound);
    return rc;
}

/* Writes a name/value element, URL-encoded when encoding-type=url. */
void list_text_el(struct xml_writer *x, const char *name, const char *v,
                  bool url)
{
    if (!url || v == NULL) {
        xml_text_element(x, name, v);
        return;
    }
    struct buf b = {0};
    str_uri_encode(&b, v, strlen(v), true);
    xml_text_element(x, name, b.data ? b.data : "");
    buf_free(&b);
}

void list_owner_el(struct s3_req *r, struct xml_writer *x, int64_t owner,
                   struct identity *cache)
{
    struct koala_error *err = NULL;
    if (cache->account_id != owner &&
        meta_identity_by_id(r->db, owner, cache, &err) != 0) {
        error_free(err);
        memset(cache, 0, sizeof(*cache));
    }
    xml_start(x, "Owner");
    xml_text_element(x, "ID", cache->canonical_id);
    xml_text_element(x, "DisplayName", cache->display_name);
    xml_end(x);
}

int list_parse_max(const char *v, long *out, struct koala_error **err)
{
    int64_t n;
    if (v == NULL) {
        *out = 1000;
        return 0;
    }
    if (str_to_i64(v, &n) < 0 || n < 0)
        return error_set(err, EINVAL, "InvalidArgument",
                         "Provided max-keys not an integer or within integer "
                         "range");
    *out = n > 1000 ? 1000 : (long)n;
    return 0;
}

void s3_list_objects(struct s3_req *r, int version)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct listing l = {0};
    char *token_key = NULL;
    if (s3_bucket_access(r, PERM_READ, &b, &err) < 0)
        goto out;
    const char *enc = s3_param(r, "encoding-type");
    if (enc && strcmp(enc, "url") != 0) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "Invalid Encoding Method specified in Request");
        goto out;
    }
    bool url = enc != NULL;
    const char *prefix = s3_param(r, "prefix");
    const char *token = s3_param(r, "continuation-token");
    const char *start_after = s3_param(r, "start-after");
    const char *marker = s3_param(r, "marker");
    l.prefix = prefix ? prefix : "";
    l.delimiter = s3_param(r, "delimiter");
    l.after = "";
    if (list_parse_max(s3_param(r, "max-keys"), &l.max_keys, &err) < 0)
        goto out;
    /* An empty token is no token: S3 lists from the start (and echoes the
     * empty token back), as SDKs that pass the last NextContinuationToken
     * unconditionally rely on. */
    if (version == 2 && token && *token) {
        token_key = str_base64_decode_text(token, WALRUS_MAX_KEY);
        if (token_key == NULL) {
            error_set(&err, EINVAL, "InvalidArgument",
                      "The continuation token provided is incorrect");
            goto out;
        }
        l.after = token_key;
    } else if (version == 2 && start_after) {
        l.after = start_after;
    } else if (version != 2 && marker) {
        l.after = marker;
    }
    if (s3_list_walk(r->db, r->bucket, &l, &err) < 0)
        goto out;

    struct xml_writer *x = xml_writer_new("ListBucketResult", S3_XMLNS);
    xml_text_element(x, "Name", r->bucket);
    list_text_el(x, "Prefix", l.prefix, url);
    if (version == 1)
        list_text_el(x, "Marker", marker ? marker : "", url);
    if (version == 2 && token)
        xml_text_element(x, "ContinuationToken", token);
    if (version == 2 && start_after)
        list_text_el(x, "StartAfter", start_after, url);
    xml_u64_element(x, "MaxKeys", (uint64_t)l.max_keys);
    if (l.delimiter)
        list_text_el(x, "Delimiter", l.delimiter, url);
    if (version == 2)
        xml_u64_element(x, "KeyCount", l.n);
    xml_bool_element(x, "IsTruncated", l.truncated);
    const char *last = l.n ? l.entries[l.n - 1].key : NULL;
    if (l.truncated && last) {
        if (version == 1 && l.delimiter)
            list_text_el(x, "NextMarker", last, url);
        if (version == 2) {
            char *t =
                str_base64_encode((const unsigned char *)last, strlen(last));
            xml_text_element(x, "NextContinuationToken", t ? t : "");
            free(t);
        }
    }
    if (url)
        xml_text_element(x, "EncodingType", "url");
    const char *fo = s3_param(r, "fetch-owner");
    bool owners = version != 2 || (fo && strcmp(fo, "true") == 0);
    struct identity cache = {.account_id = -1};
    for (size_t i = 0; i < l.n; i++) {
        const struct list_entry *e = &l.entries[i];
        if (e->is_prefix)
            continue;
        char date[25], quoted[80];
        snprintf(quoted, sizeof(quoted), "\"%s\"", e->etag);
        xml_start(x, "Contents");
        list_text_el(x, "Key", e->key, url);
        xml_text_element(x, "LastModified", s3_iso_time(e->mtime_ms, date));
        xml_text_element(x, "ETag", quoted);
        xml_u64_element(x, "Size", e->size);
        if (owners)
            list_owner_el(r, x, e->owner, &cache);
        xml_text_element(x, "StorageClass", "STANDARD");
        xml_end(x);
    }
    for (size_t i = 0; i < l.n; i++) {
        if (!l.entries[i].is_prefix)
            continue;
        xml_start(x, "CommonPrefixes");
        list_text_el(x, "Prefix", l.entries[i].key, url);
        xml_end(x);
    }
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
out:
    listing_free(&l);
    free(token_key);
    if (err) {
        s3_reply_error(r, err);
        error_free(err);
    }
}
