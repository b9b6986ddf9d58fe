/* copy.c: CopyObject and what UploadPartCopy shares with it: the
 * x-amz-copy-source header (bucket, key, versionId), loading the source
 * with its access and x-amz-copy-source-if-* checks, and copying a range of
 * a source's bytes into a new blob. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "walrus.h"
#include "xml.h"

int s3_copy_source(struct s3_req *r, char **bucket, char **key,
                   char **version, struct koala_error **err)
{
    /* *bucket and *key are set only on success: callers free them on
     * every path, so nothing freed here may be left behind in them. */
    const char *src = s3_header(r, "x-amz-copy-source");
    if (src == NULL)
        return error_set(err, EINVAL, "InvalidArgument",
                         "Copy Source must mention the source bucket and key: "
                         "sourcebucket/sourcekey");
    const char *q = strchr(src, '?');
    size_t len = q ? (size_t)(q - src) : strlen(src);
    _cleanup_free_ char *vid = NULL;
    if (q) {
        if (!str_has_prefix(q, "?versionId="))
            return error_set(err, EINVAL, "InvalidArgument",
                             "Copy Source must mention the source bucket and "
                             "key: sourcebucket/sourcekey");
        vid = str_uri_decode(q + 11, strlen(q + 11), true);
        if (vid == NULL || !version_id_valid(vid))
            return error_set(err, EINVAL, "InvalidArgument",
                             "Invalid version id specified");
    }
    _cleanup_free_ char *dec = str_uri_decode(src, len, false);
    const char *p = dec;
    if (p && *p == '/')
        p++;
    const char *slash = p ? strchr(p, '/') : NULL;
    if (slash == NULL || slash == p || slash[1] == '\0')
        return error_set(err, EINVAL, "InvalidArgument",
                         "Copy Source must mention the source bucket and key: "
                         "sourcebucket/sourcekey");
    if (strlen(slash + 1) > WALRUS_MAX_KEY)
        return error_set(err, EINVAL, "KeyTooLongError",
                         "Your key is too long");
    _cleanup_free_ char *b = strndup(p, (size_t)(slash - p));
    _cleanup_free_ char *k = strdup(slash + 1);
    if (b == NULL || k == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    *bucket = b;
    *key = k;
    *version = vid;
    b = k = vid = NULL;
    return 0;
}

int s3_copy_source_load(struct s3_req *r, const char *bucket, const char *key,
                        const char *vid, struct object_row *src,
                        struct sse_key *sk, struct koala_error **err)
{
    struct bucket_row sb;
    struct db *db = s3_db(r, err);
    if (db == NULL)
        return -1;
    int rc = meta_bucket_get(db, bucket, &sb, err);
    if (rc == 1)
        return error_set(err, ENOENT, "NoSuchBucket",
                         "The specified bucket does not exist");
    if (rc < 0)
        return -1;
    const char *expected = s3_header(r, "x-amz-source-expected-bucket-owner");
    if (expected && strcmp(expected, sb.owner_number) != 0)
        return error_set(err, EACCES, "AccessDenied", "Access Denied");
    rc = meta_object_get_version(db, bucket, key, vid, src, err);
    if (rc == 1 && vid)
        return error_set(err, ENOENT, "NoSuchVersion",
                         "The specified version does not exist.");
    if (rc == 0 && src->delete_marker) {
        object_row_clear(src);
        if (vid)
            return error_set(err, EINVAL, "InvalidRequest",
                             "The source of a copy request may not "
                             "specifically refer to a delete marker by "
                             "version id.");
        rc = 1;
    }
    if (rc == 1)
        return error_set(err, ENOENT, "NoSuchKey",
                         "The specified key does not exist.");
    if (rc < 0)
        return -1;
    if (s3_authorize(r, &sb, vid ? "s3:GetObjectVersion" : "s3:GetObject",
                     key, src, &src->acl, PERM_READ, err) < 0) {
        object_row_clear(src);
        return -1;
    }
    if (s3_check_read_conditions(r, src, true, err) < 0) {
        object_row_clear(src);
        return -1;
    }
    /* Copying must decipher the source (and encipher the copy as the
     * request says), never carry ciphertext over as if it were data. */
    if (src->sse && src->sse[0] && sk == NULL) {
        object_row_clear(src);
        return error_set(err, ENOTSUP, "NotImplemented",
                         "Copying a server-side encrypted object is not "
                         "implemented for this operation.");
    }
    if (sk) {
        struct sse_request q;
        rc = sse_from_request(r, SSE_USE_SOURCE, &q, err);
        if (rc == 0)
            rc = sse_open(r->w, src->sse, src->part_sizes, &q, sk, err);
        OPENSSL_cleanse(&q, sizeof(q));
        if (rc < 0) {
            object_row_clear(src);
            return -1;
        }
    }
    return 0;
}

int blob_copy_range(struct walrus *w, const struct object_row *src,
                    const struct sse_key *sk, uint64_t offset, uint64_t len,
                    struct blob_writer *bw, struct sse_ctr *enc,
                    struct checksum *md5, struct checksum *sum,
                    struct koala_error **err)
{
    bool dec = sk && sk->mode != SSE_NONE;
    if (src->is_inline && offset + len > src->size)
        return error_set(err, EIO, NULL, "inline blob %s is short", src->blob);
    if (src->is_inline && !dec && !enc) {
        checksum_update(md5, src->data + offset, len);
        if (sum)
            checksum_update(sum, src->data + offset, len);
        return blob_writer_write(bw, src->data + offset, len, err);
    }
    const char *src_id = src->blob;
    int fd = src->is_inline ? -1 : blob_open(w, src_id, err);
    if (fd < 0 && !src->is_inline)
        return -1;
    size_t bufsize = 1024 * 1024;
    char *buf = malloc(bufsize);
    /* The source deciphered from offset on, in memory only. */
    struct sse_ctr *ctr = dec ? sse_ctr_new(sk, offset) : NULL;
    int rc = 0;
    if (buf == NULL || (dec && ctr == NULL)) {
        if (fd >= 0)
            close(fd);
        free(buf);
        sse_ctr_free(ctr);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    while (len > 0 && rc == 0) {
        size_t want = len < bufsize ? (size_t)len : bufsize;
        ssize_t n = (ssize_t)want;
        if (src->is_inline)
            memcpy(buf, src->data + offset, want);
        else
            n = pread(fd, buf, want, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? error_set_errno(err, "reading blob %s", src_id)
                       : error_set(err, EIO, NULL, "blob %s is short", src_id);
            break;
        }
        if ((ctr && sse_ctr_apply(ctr, buf, buf, (size_t)n) < 0)) {
            rc = error_set(err, EIO, NULL, "deciphering %s failed", src_id);
            break;
        }
        checksum_update(md5, buf, (size_t)n);
        if (sum)
            checksum_update(sum, buf, (size_t)n);
        if (enc && sse_ctr_apply(enc, buf, buf, (size_t)n) < 0) {
            rc = error_set(err, EIO, NULL, "enciphering failed");
            break;
        }
        rc = blob_writer_write(bw, buf, (size_t)n, err);
        offset += (uint64_t)n;
        len -= (uint64_t)n;
    }
    OPENSSL_cleanse(buf, bufsize);
    free(buf);
    sse_ctr_free(ctr);
    if (fd >= 0)
        close(fd);
    return rc;
}

void s3_copy_object(struct s3_req *r)
{
    struct koala_error *err = NULL;
    _cleanup_free_ char *sbucket = NULL, *skey = NULL, *svid = NULL;
    struct object_row src = {0}, o = {0};
    struct blob_writer bw = {.fd = -1};
    struct checksum *md5 = NULL, *sum = NULL;
    char *headers = NULL;
    _cleanup_free_ char *tags = NULL;
    struct bucket_row b;
    struct sse_key sk = {0}, dk = {0};
    struct sse_request dq = {0};
    struct sse_ctr *enc = NULL;
    if (s3_bucket_access(r, PERM_WRITE, &b, &err) < 0 ||
        s3_copy_source(r, &sbucket, &skey, &svid, &err) < 0 ||
        sse_for_write(r, &b, &dq, &err) < 0 ||
        s3_copy_source_load(r, sbucket, skey, svid, &src, &sk, &err) < 0)
        goto out;
    const char *directive = s3_header(r, "x-amz-metadata-directive");
    bool replace = directive && strcasecmp(directive, "REPLACE") == 0;
    if (directive && !replace && strcasecmp(directive, "COPY") != 0) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "Unknown metadata directive.");
        goto out;
    }
    if (!replace && strcmp(sbucket, r->bucket) == 0 &&
        strcmp(skey, r->key) == 0 && svid == NULL && dq.mode == SSE_NONE) {
        error_set(&err, EINVAL, "InvalidRequest",
                  "This copy request is illegal because it is trying to copy "
                  "an object to itself without changing the object's "
                  "metadata, storage class, website redirect location or "
                  "encryption attributes.");
        goto out;
    }
    if (src.size > WALRUS_MAX_PUT) {
        error_set(&err, EINVAL, "InvalidRequest",
                  "The specified copy source is larger than the maximum "
                  "allowable size for a copy source: 5368709120");
        goto out;
    }
    bool given;
    if (replace) {
        if (s3_collect_object_headers(r, &headers, &err) < 0)
            goto out;
    } else {
        headers = strdup(src.headers);
    }
    o.owner = r->who.account_id;
    struct object_lock lock;
    if (objlock_from_request(r, &b, &lock, &err) < 0)
        goto out;
    objlock_apply(&o, &lock);
    if (acl_from_headers(r, &o.acl, &r->who, &b.acl, &given, &err) < 0 ||
        s3_acl_guard(r, &b, &o.acl, given, &err) < 0 ||
        s3_apply_ownership(r, &b, &o.owner, &o.acl, &err) < 0)
        goto out;
    const char *tdir = s3_header(r, "x-amz-tagging-directive");
    if (tdir && strcasecmp(tdir, "REPLACE") != 0 &&
        strcasecmp(tdir, "COPY") != 0) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "Unknown tagging directive.");
        goto out;
    }
    if (tdir && strcasecmp(tdir, "REPLACE") == 0) {
        if (tags_from_header(r, &tags, &err) < 0)
            goto out;
    } else if ((tags = strdup(src.tags ? src.tags : "")) == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    o.tags = tags;
    md5 = checksum_new(CHECKSUM_MD5);
    enum checksum_alg alg;
    if (src.checksum_alg[0] && checksum_alg_parse(src.checksum_alg, &alg) == 0)
        sum = checksum_new(alg);
    if (sse_seal(r->w, &dq, &dk, &err) < 0)
        goto out;
    if (dk.mode != SSE_NONE && (enc = sse_ctr_new(&dk, 0)) == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (blob_writer_open(r->w, &bw, true, &err) < 0 ||
        blob_copy_range(r->w, &src, &sk, 0, src.size, &bw, enc, md5, sum,
                        &err) < 0 ||
        blob_writer_sync(&bw, &err) < 0)
        goto out;
    unsigned char d[CHECKSUM_MAX_LEN];
    checksum_final(md5, d);
    str_hex(d, 16, o.etag);
    sse_etag(&dk, o.etag, o.etag);
    o.sse = dk.desc;
    if (sum) {
        size_t n = checksum_final(sum, d);
        _cleanup_free_ char *b64 = str_base64_encode(d, n);
        snprintf(o.checksum_alg, sizeof(o.checksum_alg), "%s",
                 src.checksum_alg);
        snprintf(o.checksum, sizeof(o.checksum), "%s", b64 ? b64 : "");
    }
    o.key = r->key;
    snprintf(o.blob, sizeof(o.blob), "%s", bw.id);
    o.size = src.size;
    o.mtime_ms = time_now_ms();
    o.headers = headers;
    o.is_inline = bw.is_inline;
    o.data = bw.pending.data;
    if (s3_commit_object(r, &o, &bw, &err) < 0)
        goto out;
    if (svid || strcmp(src.version_id, "null") != 0)
        http_reply_header(r->http, "x-amz-copy-source-version-id",
                          src.version_id);
    s3_reply_version(r, o.version_id, false);
    sse_reply_headers(r, &dk);
    char date[25], quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", o.etag);
    struct xml_writer *x = xml_writer_new("CopyObjectResult", S3_XMLNS);
    xml_text_element(x, "LastModified", s3_iso_time(o.mtime_ms, date));
    xml_text_element(x, "ETag", quoted);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
out:
    blob_writer_abort(&bw);
    checksum_free(md5);
    checksum_free(sum);
    sse_ctr_free(enc);
    sse_key_clear(&sk);
    sse_key_clear(&dk);
    OPENSSL_cleanse(&dq, sizeof(dq));
    free(headers);
    object_row_clear(&src);
    if (err)
        s3_fail(r, err);
}

