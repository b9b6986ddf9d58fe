/* walrus.c: the CLC's access to Walrus: presigned GET URLs that the NCs
 * fetch images with (signed with the image owner's key, so no node holds a
 * secret), and reads of an object on its owner's behalf (RegisterImage
 * sniffs an image's kind and digests it). */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checksum.h"
#include "clc.h"
#include "log.h"

struct first_walrus {
    char *out;
    size_t size;
    bool found;
};

static int take_first(void *ctx, const struct service *s)
{
    struct first_walrus *f = ctx;
    snprintf(f->out, f->size, "%s", s->endpoint);
    f->found = true;
    return 1;
}

int clc_walrus_endpoint(struct db *db, char *out, size_t size,
                        struct koala_error **err)
{
    struct first_walrus f = {out, size, false};
    if (clc_services_each(db, "walrus", take_first, &f, err) < 0)
        return -1;
    if (!f.found)
        return error_set(err, ENOENT, "ServiceUnavailable",
                         "no Walrus is registered with this cloud");
    /* No trailing slash: paths are appended. */
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '/')
        out[n - 1] = '\0';
    return 0;
}

/* "bucket/key", "/bucket/key" or "s3://bucket/key" -> "/bucket/key"
 * percent-encoded as SigV4 signs it. */
static int location_path(const char *location, struct buf *out,
                         struct koala_error **err)
{
    const char *p = location;
    if (str_has_prefix(p, "s3://"))
        p += 5;
    while (*p == '/')
        p++;
    const char *slash = strchr(p, '/');
    if (slash == NULL || slash == p || slash[1] == '\0')
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Image location '%s' must be bucket/key", location);
    if (buf_append_char(out, '/') < 0 ||
        str_uri_encode(out, p, strlen(p), true) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

static const char *host_header(void *ctx, const char *lname)
{
    return strcmp(lname, "host") == 0 ? ctx : NULL;
}

char *clc_presign(struct clc *clc, struct db *db, int64_t owner,
                  const char *location, long expires_s,
                  struct koala_error **err)
{
    char endpoint[256], key[21], secret[41];
    struct buf path = {0};
    char *url = NULL, *query = NULL;
    if (clc_walrus_endpoint(db, endpoint, sizeof(endpoint), err) < 0 ||
        location_path(location, &path, err) < 0)
        goto out;
    int rc = clc_account_any_key(db, owner, key, secret, err);
    if (rc == 1)
        error_set(err, ENOENT, "InvalidParameterValue",
                  "the image owner has no access key to read it with");
    if (rc != 0)
        goto out;
    const char *host = strstr(endpoint, "://");
    host = host ? host + 3 : endpoint;
    struct sigv4_request rq = {"GET",       path.data,    "",
                               host_header, (void *)host, NULL};
    query = sigv4_presign(&rq, key, secret, clc->region, "s3", time(NULL),
                          expires_s);
    if (query == NULL ||
        asprintf(&url, "%s%s?%s", endpoint, path.data, query) < 0) {
        url = NULL;
        error_set(err, ENOMEM, NULL, "cannot presign %s", location);
    }
out:
    free(query);
    buf_free(&path);
    explicit_bzero(secret, sizeof(secret));
    return url;
}

/* ---- reading objects ---- */

struct digest_ctx {
    struct checksum *sha;
    uint64_t size;
    unsigned char head[4096];
    size_t head_len;
};

static int digest_write(void *ctx, const char *data, size_t len)
{
    struct digest_ctx *d = ctx;
    if (d->head_len < sizeof(d->head)) {
        size_t n = sizeof(d->head) - d->head_len;
        n = n < len ? n : len;
        memcpy(d->head + d->head_len, data, n);
        d->head_len += n;
    }
    checksum_update(d->sha, data, len);
    d->size += len;
    return 0;
}

int clc_walrus_digest(struct clc *clc, struct db *db, int64_t owner,
                      const char *location, unsigned char head[4096],
                      size_t *head_len, uint64_t *size, char sha256[65],
                      struct koala_error **err)
{
    _cleanup_free_ char *url = clc_presign(clc, db, owner, location, 600, err);
    if (url == NULL)
        return -1;
    struct digest_ctx d = {.sha = checksum_new(CHECKSUM_SHA256)};
    if (d.sha == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    struct http_client_request rq = {
        .url = url,
        .sink = {.kind = HTTP_CLIENT_SINK_CALLBACK,
                 .write = digest_write,
                 .ctx = &d},
        .tls = clc->opt.ca ? &clc->tls : NULL,
        .connect_timeout_ms = 5000,
        .idle_timeout_s = 30,
    };
    struct http_client_response resp = {0};
    struct koala_error *e = NULL;
    int rc = http_client_do(NULL, &rq, &resp, &e);
    if (rc < 0) {
        error_set(err, EIO, "ServiceUnavailable", "reading %s: %s", location,
                  error_message(e));
    } else if (resp.status == 404 || resp.status == 403) {
        rc = error_set(err, ENOENT, "InvalidManifest",
                       "Image location '%s' does not exist or is not "
                       "readable by its owner (HTTP %ld)",
                       location, resp.status);
    } else if (resp.status != 200) {
        rc = error_set(err, EIO, "ServiceUnavailable", "reading %s: HTTP %ld",
                       location, resp.status);
    } else {
        unsigned char md[CHECKSUM_MAX_LEN];
        checksum_final(d.sha, md);
        str_hex(md, 32, sha256);
        *size = d.size;
        memcpy(head, d.head, d.head_len);
        *head_len = d.head_len;
    }
    error_free(e);
    checksum_free(d.sha);
    http_client_response_free(&resp);
    return rc < 0 ? -1 : 0;
}
