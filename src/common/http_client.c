/* http_client.c: the HTTP(S) client on libcurl (see http_client.h).
 *
 * DESIGN: one curl easy handle per struct http_client, reset (not
 * recreated) before each request: curl_easy_reset() drops the options but
 * keeps the connection cache, DNS cache and TLS session cache, which is
 * what makes a handle worth keeping.  Bodies move through curl's read and
 * write callbacks straight between the caller's source and sink.  The
 * header callback sees every reply of an exchange (100 Continue, redirects,
 * the final one); each status line starts the header list afresh, and the
 * write callback checks the current status to divert error bodies into
 * memory.  Failures inside our callbacks are remembered in the transfer
 * state, since curl reports them only as a generic read or write error.
 */
#define LOG_MODULE "http_client"
#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_MAX_MEMORY (8u * 1024 * 1024)
#define MAX_ERROR_BODY (64u * 1024)
#define DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_S 60u

struct http_client {
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
};

/* State of one exchange, shared by the callbacks. */
struct xfer {
    const struct http_client_request *req;
    struct http_client_response *resp;
    uint64_t sent;   /* request body bytes handed to curl */
    long cur_status; /* status of the reply being received */
    int fail_errno;  /* set when one of our callbacks stopped the transfer */
    char fail_msg[128];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t fail_cb(struct xfer *x, int errnum, const char *what)
{
    if (x->fail_errno == 0) {
        x->fail_errno = errnum ? errnum : EIO;
        snprintf(x->fail_msg, sizeof(x->fail_msg), "%s", what);
    }
    return 0;
}

/* ---- response ---- */

static void headers_clear(struct http_client_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
}

void http_client_response_free(struct http_client_response *r)
{
    if (r == NULL)
        return;
    headers_clear(r);
    buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

const char *http_client_response_header(const struct http_client_response *r,
                                        const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static int header_add(struct http_client_response *r, const char *name,
                      size_t nlen, const char *value, size_t vlen)
{
    struct http_client_header *p =
        realloc(r->headers, (r->n_headers + 1) * sizeof(*p));
    if (p == NULL)
        return -1;
    r->headers = p;
    char *n = strndup(name, nlen), *v = strndup(value, vlen);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return -1;
    }
    r->headers[r->n_headers].name = n;
    r->headers[r->n_headers].value = v;
    r->n_headers++;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * nmemb;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A status line: a new reply begins. */
        headers_clear(x->resp);
        const char *sp = memchr(p, ' ', len);
        x->cur_status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (colon == NULL)
        return len; /* the blank line that ends the headers */
    const char *v = colon + 1, *end = p + len;
    while (v < end && is_space(*v))
        v++;
    while (end > v && is_space(end[-1]))
        end--;
    if (header_add(x->resp, p, (size_t)(colon - p), v, (size_t)(end - v)) < 0)
        return fail_cb(x, ENOMEM, "out of memory");
    return len;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    const struct http_client_sink *sink = &x->req->sink;
    struct buf *body = &x->resp->body;
    size_t len = size * nmemb;
    x->resp->body_bytes += len;
    if (x->cur_status >= 300 && sink->kind != HTTP_CLIENT_SINK_MEMORY) {
        /* An error document: keep its start for the caller. */
        size_t room = MAX_ERROR_BODY - body->len;
        if (buf_append(body, p, len < room ? len : room) < 0)
            return fail_cb(x, ENOMEM, "out of memory");
        return len;
    }
    switch (sink->kind) {
    case HTTP_CLIENT_SINK_MEMORY: {
        size_t max = sink->max_len ? sink->max_len : DEFAULT_MAX_MEMORY;
        if (len > max - body->len) {
            char msg[64];
            snprintf(msg, sizeof(msg), "reply body larger than %zu bytes", max);
            return fail_cb(x, EFBIG, msg);
        }
        if (buf_append(body, p, len) < 0)
            return fail_cb(x, ENOMEM, "out of memory");
        return len;
    }
    case HTTP_CLIENT_SINK_FD:
        if (write_all(sink->fd, p, len) < 0)
            return fail_cb(x, errno, "writing the reply body");
        return len;
    case HTTP_CLIENT_SINK_CALLBACK:
        errno = 0;
        if (sink->write(sink->ctx, p, len) < 0)
            return fail_cb(x, errno, "the reply body's consumer failed");
        return len;
    case HTTP_CLIENT_SINK_DISCARD:
        return len;
    }
    return len;
}

/* ---- request body ---- */

static size_t on_read(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    const struct http_client_body *b = &x->req->body;
    size_t cap = size * nmemb;
    bool known = b->len != HTTP_CLIENT_LEN_UNKNOWN;
    uint64_t left = known ? b->len - x->sent : UINT64_MAX;
    size_t want = left < cap ? (size_t)left : cap;
    if (want == 0)
        return 0;
    ssize_t got = 0;
    switch (b->kind) {
    case HTTP_CLIENT_BODY_NONE:
        return 0;
    case HTTP_CLIENT_BODY_MEMORY:
        memcpy(p, (const char *)b->data + x->sent, want);
        got = (ssize_t)want;
        break;
    case HTTP_CLIENT_BODY_FD:
        do
            got = pread(b->fd, p, want, (off_t)(b->offset + x->sent));
        while (got < 0 && errno == EINTR);
        if (got < 0) {
            fail_cb(x, errno, "reading the request body");
            return CURL_READFUNC_ABORT;
        }
        break;
    case HTTP_CLIENT_BODY_CALLBACK:
        errno = 0;
        got = b->read(b->ctx, p, want);
        if (got < 0) {
            fail_cb(x, errno, "the request body's source failed");
            return CURL_READFUNC_ABORT;
        }
        if ((size_t)got > want)
            got = (ssize_t)want;
        break;
    }
    if (got == 0 && known) {
        /* Fewer bytes than the Content-Length we announced. */
        fail_cb(x, EIO, "the request body ended early");
        return CURL_READFUNC_ABORT;
    }
    x->sent += (uint64_t)got;
    return (size_t)got;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
    struct xfer *x = ud;
    const struct http_client_body *b = &x->req->body;
    if (origin != SEEK_SET || b->kind == HTTP_CLIENT_BODY_CALLBACK)
        return CURL_SEEKFUNC_CANTSEEK;
    if (off < 0 || (uint64_t)off > b->len)
        return CURL_SEEKFUNC_FAIL;
    x->sent = (uint64_t)off;
    return CURL_SEEKFUNC_OK;
}

/* ---- the exchange ---- */

struct http_client *http_client_new(struct koala_error **err)
{
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        error_set(err, EIO, NULL, "initialising libcurl: %s",
                  curl_easy_strerror(global_rc));
        return NULL;
    }
    struct http_client *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->curl = curl_easy_init()) == NULL) {
        free(c);
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    return c;
}

void http_client_free(struct http_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

static int errno_of(CURL *h, CURLcode rc, bool tls)
{
    long os = 0;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os) == CURLE_OK && os > 0)
            return (int)os;
        if (rc == CURLE_COULDNT_CONNECT)
            return ECONNREFUSED;
        /* No socket error under TLS: the TLS layer failed, e.g. the
         * server's alert that our certificate is missing (TLS 1.3 sends
         * it after the handshake). */
        return tls ? EPROTO : ECONNRESET;
    case CURLE_COULDNT_RESOLVE_HOST:
        return EHOSTUNREACH;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return ENOMEM;
    case CURLE_TOO_MANY_REDIRECTS:
        return ELOOP;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return EPROTO;
    default:
        return EIO;
    }
}

/* Sets the options of one request; returns the failing CURLcode. */
static CURLcode setup(CURL *h, struct xfer *x, struct curl_slist *headers,
                      char *errbuf)
{
    const struct http_client_request *req = x->req;
    const char *method = req->method ? req->method : "GET";
    bool has_body = req->body.kind != HTTP_CLIENT_BODY_NONE;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                          \
    do {                                                                       \
        if (rc == CURLE_OK)                                                    \
            rc = curl_easy_setopt(h, opt, val);                                \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    /* Threads: curl must not use signals (alarm-based DNS timeouts). */
    SET(CURLOPT_NOSIGNAL, 1L);
    /* URLs come from requests and messages: never file://, ftp:// ... */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, req->follow_redirects ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, 5L);
    SET(CURLOPT_USERAGENT, "koala");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        (long)(req->connect_timeout_ms ? req->connect_timeout_ms
                                       : DEFAULT_CONNECT_TIMEOUT_MS));
    SET(CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    /* Less than a byte a second for idle_timeout_s: the peer is gone. */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME,
        (long)(req->idle_timeout_s ? req->idle_timeout_s
                                   : DEFAULT_IDLE_TIMEOUT_S));
    if (has_body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        /* Every body goes through the read callback, so it streams. */
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, x);
        SET(CURLOPT_SEEKFUNCTION, on_seek);
        SET(CURLOPT_SEEKDATA, x);
        if (!has_body)
            SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
        else if (req->body.len != HTTP_CLIENT_LEN_UNKNOWN)
            SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body.len);
        if (strcmp(method, "PUT") != 0)
            SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (headers)
        SET(CURLOPT_HTTPHEADER, headers);
    const struct http_client_tls *tls = req->tls;
    if (tls) {
        if (tls->ca_file)
            SET(CURLOPT_CAINFO, tls->ca_file);
        if (tls->cert_file)
            SET(CURLOPT_SSLCERT, tls->cert_file);
        if (tls->key_file)
            SET(CURLOPT_SSLKEY, tls->key_file);
        SET(CURLOPT_SSL_VERIFYPEER, tls->insecure ? 0L : 1L);
        SET(CURLOPT_SSL_VERIFYHOST, tls->insecure ? 0L : 2L);
    }
#undef SET
    return rc;
}

int http_client_do(struct http_client *c, const struct http_client_request *req,
                   struct http_client_response *resp, struct koala_error **err)
{
    struct http_client *own = NULL;
    struct curl_slist *headers = NULL;
    struct xfer x = {.req = req, .resp = resp};
    const char *method = req->method ? req->method : "GET";
    /* Error messages leave out the query: it may carry a signature. */
    int url_len = (int)strcspn(req->url ? req->url : "", "?#");
    int ret = -1;

    http_client_response_free(resp);
    if (req->url == NULL)
        return error_set(err, EINVAL, NULL, "%s: no URL", method);
    if ((req->body.kind == HTTP_CLIENT_BODY_CALLBACK &&
         req->body.read == NULL) ||
        (req->sink.kind == HTTP_CLIENT_SINK_CALLBACK &&
         req->sink.write == NULL) ||
        (req->body.kind != HTTP_CLIENT_BODY_CALLBACK &&
         req->body.kind != HTTP_CLIENT_BODY_NONE &&
         req->body.len == HTTP_CLIENT_LEN_UNKNOWN))
        return error_set(err, EINVAL, NULL, "%s %.*s: bad request body/sink",
                         method, url_len, req->url);
    if (c == NULL) {
        c = own = http_client_new(err);
        if (c == NULL)
            return -1;
    }
    for (const char *const *h = req->headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(headers, *h);
        if (n == NULL) {
            error_set(err, ENOMEM, NULL, "out of memory");
            goto out;
        }
        headers = n;
    }

    curl_easy_reset(c->curl);
    c->errbuf[0] = '\0';
    CURLcode rc = setup(c->curl, &x, headers, c->errbuf);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    if (rc != CURLE_OK) {
        bool tls = strncasecmp(req->url, "https:", 6) == 0;
        int errnum = x.fail_errno ? x.fail_errno : errno_of(c->curl, rc, tls);
        const char *why = x.fail_errno   ? x.fail_msg
                          : c->errbuf[0] ? c->errbuf
                                         : curl_easy_strerror(rc);
        error_set(err, errnum, NULL, "%s %.*s: %s%s%s", method, url_len,
                  req->url, why, x.fail_errno ? ": " : "",
                  x.fail_errno ? strerror(errnum) : "");
        goto out;
    }
    ret = 0;
out:
    /* Leave the handle pointing at nothing of this call (x, headers). */
    if (c)
        curl_easy_reset(c->curl);
    curl_slist_free_all(headers);
    http_client_free(own);
    return ret;
}
