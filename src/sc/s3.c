/* s3.c: the SC's Walrus client (s3.h): path-style requests signed with
 * SigV4 (the payload's SHA-256 signed too, so Walrus checks every byte of
 * a block it stores). */
#define LOG_MODULE "sc"
#include "s3.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checksum.h"
#include "http_client.h"
#include "sigv4.h"

#define POOL 8

struct sc_s3 {
    char endpoint[256]; /* without a trailing slash */
    char host[256];
    char region[64];
    char key[128];
    char secret[128];
    pthread_mutex_t lock;
    struct http_client *idle[POOL];
    int n_idle;
};

static int read_credentials(struct sc_s3 *s, const char *path,
                            struct koala_error **err)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return error_set_errno(err, "%s", path);
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "AWS_ACCESS_KEY_ID=", 18) == 0)
            snprintf(s->key, sizeof(s->key), "%s", line + 18);
        else if (strncmp(line, "AWS_SECRET_ACCESS_KEY=", 22) == 0)
            snprintf(s->secret, sizeof(s->secret), "%s", line + 22);
    }
    fclose(f);
    explicit_bzero(line, sizeof(line));
    if (!s->key[0] || !s->secret[0])
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s: no AWS_ACCESS_KEY_ID= and "
                         "AWS_SECRET_ACCESS_KEY= lines",
                         path);
    return 0;
}

struct sc_s3 *sc_s3_new(const char *endpoint, const char *credentials,
                        const char *region, struct koala_error **err)
{
    struct sc_s3 *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory"), NULL;
    snprintf(s->endpoint, sizeof(s->endpoint), "%s", endpoint);
    size_t n = strlen(s->endpoint);
    while (n > 0 && s->endpoint[n - 1] == '/')
        s->endpoint[--n] = '\0';
    const char *h = strstr(s->endpoint, "://");
    snprintf(s->host, sizeof(s->host), "%s", h ? h + 3 : s->endpoint);
    s->host[strcspn(s->host, "/")] = '\0';
    snprintf(s->region, sizeof(s->region), "%s", region);
    pthread_mutex_init(&s->lock, NULL);
    if (read_credentials(s, credentials, err) < 0) {
        sc_s3_free(s);
        return NULL;
    }
    return s;
}

void sc_s3_free(struct sc_s3 *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n_idle; i++)
        http_client_free(s->idle[i]);
    explicit_bzero(s->secret, sizeof(s->secret));
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct http_client *take(struct sc_s3 *s, struct koala_error **err)
{
    pthread_mutex_lock(&s->lock);
    struct http_client *c = s->n_idle ? s->idle[--s->n_idle] : NULL;
    pthread_mutex_unlock(&s->lock);
    return c ? c : http_client_new(err);
}

static void give(struct sc_s3 *s, struct http_client *c)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_idle < POOL) {
        s->idle[s->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    http_client_free(c);
}

struct hdrs {
    const char *host, *date, *sha;
};

static const char *hdr(void *ctx, const char *lname)
{
    struct hdrs *h = ctx;
    if (strcmp(lname, "host") == 0)
        return h->host;
    if (strcmp(lname, "x-amz-date") == 0)
        return h->date;
    if (strcmp(lname, "x-amz-content-sha256") == 0)
        return h->sha;
    return NULL;
}

/* One signed request; the reply in resp. */
static int request(struct sc_s3 *s, const char *method, const char *bucket,
                   const char *key, const void *data, size_t len,
                   const char *known_sha, struct http_client_sink sink,
                   struct http_client_response *resp, struct koala_error **err)
{
    char path[1024], url[1400], date[32], sha[65];
    /* keys are ours: [A-Za-z0-9/_.-], nothing to escape */
    snprintf(path, sizeof(path), "/%s%s%s", bucket, key ? "/" : "",
             key ? key : "");
    snprintf(url, sizeof(url), "%s%s", s->endpoint, path);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y%m%dT%H%M%SZ", &tm);
    if (known_sha)
        snprintf(sha, sizeof(sha), "%s", known_sha);
    else
        checksum_sha256_hex(data ? data : "", data ? len : 0, sha);
    struct hdrs h = {s->host, date, sha};
    struct sigv4_request rq = {method, path, "", hdr, &h, NULL};
    char *auth = sigv4_sign(&rq, s->key, s->secret, s->region, "s3", date,
                            "host;x-amz-content-sha256;x-amz-date", sha);
    if (auth == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    char a_auth[1024], a_date[64], a_sha[128];
    snprintf(a_auth, sizeof(a_auth), "Authorization: %s", auth);
    snprintf(a_date, sizeof(a_date), "x-amz-date: %s", date);
    snprintf(a_sha, sizeof(a_sha), "x-amz-content-sha256: %s", sha);
    free(auth);
    const char *headers[] = {a_auth, a_date, a_sha, "Expect:", NULL};
    struct http_client_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .sink = sink,
        .timeout_ms = 120000,
    };
    if (data) {
        req.body.kind = HTTP_CLIENT_BODY_MEMORY;
        req.body.data = data;
        req.body.len = len;
    }
    struct http_client *c = take(s, err);
    if (c == NULL)
        return -1;
    int rc = http_client_do(c, &req, resp, err);
    give(s, c);
    if (rc < 0)
        error_prefix(*err, "Walrus %s %s", method, path);
    return rc;
}

static int status_error(const char *method, const char *bucket,
                        const char *key, struct http_client_response *r,
                        struct koala_error **err)
{
    return error_set(err, EIO, NULL, "Walrus %s /%s/%s: HTTP %ld: %.*s",
                     method, bucket, key ? key : "", r->status,
                     (int)(r->body.len > 300 ? 300 : r->body.len),
                     r->body.data ? r->body.data : "");
}

int sc_s3_make_bucket(struct sc_s3 *s, const char *bucket,
                      struct koala_error **err)
{
    _cleanup_http_response_ struct http_client_response r = {0};
    if (request(s, "PUT", bucket, NULL, NULL, 0, NULL,
                (struct http_client_sink){0}, &r, err) < 0)
        return -1;
    if (r.status == 200 ||
        (r.status == 409 && r.body.data &&
         strstr(r.body.data, "BucketAlreadyOwnedByYou")))
        return 0;
    return status_error("PUT", bucket, NULL, &r, err);
}

int sc_s3_put_hashed(struct sc_s3 *s, const char *bucket, const char *key,
                     const void *data, size_t len, const char *sha256,
                     struct koala_error **err)
{
    _cleanup_http_response_ struct http_client_response r = {0};
    if (request(s, "PUT", bucket, key, data ? data : "", len, sha256,
                (struct http_client_sink){0}, &r, err) < 0)
        return -1;
    return r.status == 200 ? 0 : status_error("PUT", bucket, key, &r, err);
}

int sc_s3_put(struct sc_s3 *s, const char *bucket, const char *key,
              const void *data, size_t len, struct koala_error **err)
{
    return sc_s3_put_hashed(s, bucket, key, data, len, NULL, err);
}

int sc_s3_get(struct sc_s3 *s, const char *bucket, const char *key,
              struct buf *out, size_t max, struct koala_error **err)
{
    _cleanup_http_response_ struct http_client_response r = {0};
    struct http_client_sink sink = {.kind = HTTP_CLIENT_SINK_MEMORY,
                                    .max_len = max};
    if (request(s, "GET", bucket, key, NULL, 0, NULL, sink, &r, err) < 0)
        return -1;
    if (r.status == 404)
        return 1;
    if (r.status != 200)
        return status_error("GET", bucket, key, &r, err);
    *out = r.body;
    memset(&r.body, 0, sizeof(r.body));
    return 0;
}

int sc_s3_delete(struct sc_s3 *s, const char *bucket, const char *key,
                 struct koala_error **err)
{
    _cleanup_http_response_ struct http_client_response r = {0};
    if (request(s, "DELETE", bucket, key, NULL, 0, NULL,
                (struct http_client_sink){0}, &r, err) < 0)
        return -1;
    return r.status == 204 || r.status == 200 || r.status == 404
               ? 0
               : status_error("DELETE", bucket, key, &r, err);
}
