/* http_server.c: the HTTP server on libmicrohttpd (see http_server.h).
 *
 * DESIGN: MHD runs a few event loop threads (epoll), each serving many
 * connections; a connection never waits for a thread.  MHD calls the access
 * handler several times per request: once when the headers are in, once per
 * piece of body, and once more with no data at the end.  We map those calls
 * onto on_request / on_body / on_complete.  The raw request target comes from
 * MHD's URI log callback, which sees it before MHD splits or unescapes it;
 * that callback also allocates our per-request struct.
 *
 * Work that may block runs on a worker pool (http_request_defer): the
 * connection is suspended (MHD stops serving it), the job runs and makes
 * its reply, which is kept as `pending`, and the connection is resumed; MHD
 * then calls the access handler again, which queues the pending reply.  The
 * same pending mechanism serves replies made while the headers are in for
 * requests without a body, since MHD closes the connection when a reply is
 * queued on the first call.  A body whose handler takes less than it is
 * offered (backpressure) suspends the connection the same way, until the
 * handler calls http_request_resume().
 *
 * Locking: `srv->mu` guards every request's suspended / resume_requested
 * flags and the count of suspended connections.  MHD forbids resuming a
 * connection that is not suspended, and a resume may come from another
 * thread before the event loop got to suspend: it is then remembered and
 * honoured right after the suspension.  Everything else about a request is
 * touched by one thread at a time: its event loop thread, or the worker
 * running its deferred job while the connection is suspended.
 */
#define LOG_MODULE "http"
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "workpool.h"

struct http_server {
    struct MHD_Daemon *mhd;
    struct http_handler handler;
    void *ctx;
    size_t max_header_bytes;
    uint16_t port;
    struct workpool *workers;
    char *tls_cert, *tls_key, *tls_trust; /* PEM text, for MHD */
    bool verify_clients;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n_suspended;
    unsigned n_active;    /* requests between on_uri and on_completed */
    atomic_bool stopping; /* no new connections or requests */
    atomic_bool cutting;  /* stopping, and past the grace period */
    unsigned stop_grace_ms;
};

struct reply_header {
    char *name;
    char *value;
};

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    char *target; /* raw, as sent */
    char *path;
    const char *query; /* points into target, or "" */
    bool started;
    bool discard;
    bool replied;
    bool queue_failed;
    bool in_first_call; /* inside on_request */
    bool in_worker;     /* a deferred job is running */
    void (*defer_fn)(struct http_request *req);
    bool suspended;        /* srv->mu */
    bool resume_requested; /* srv->mu */
    /* A reply to queue on the next call of the access handler (see
     * DESIGN). */
    struct MHD_Response *pending;
    unsigned pending_status;
    unsigned reply_status; /* what was answered (for access logs) */
    uint64_t reply_bytes;
    void *data;
    struct reply_header *headers;
    size_t n_headers;
    char **joined; /* strings returned by http_request_header_joined */
    size_t n_joined;
    char peer[INET6_ADDRSTRLEN];
    char *peer_name; /* verified client certificate's CN (mutual TLS) */
};

/* ---- request accessors ---- */

const char *http_request_method(const struct http_request *req)
{
    return req->method;
}

const char *http_request_target(const struct http_request *req)
{
    return req->target;
}

const char *http_request_path(const struct http_request *req)
{
    return req->path;
}

const char *http_request_query(const struct http_request *req)
{
    return req->query;
}

const char *http_request_header(const struct http_request *req,
                                const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct join_ctx {
    const char *name;
    struct buf out;
    bool found;
    bool oom;
};

static enum MHD_Result join_iter(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value)
{
    struct join_ctx *j = cls;
    if (strcasecmp(key, j->name) != 0)
        return MHD_YES;
    if ((j->found && buf_append_char(&j->out, ',') < 0) ||
        buf_append_str(&j->out, value ? value : "") < 0)
        j->oom = true;
    j->found = true;
    return MHD_YES;
}

const char *http_request_header_joined(struct http_request *req,
                                       const char *name)
{
    struct join_ctx j = {.name = name};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, join_iter, &j);
    if (!j.found || j.oom) {
        buf_free(&j.out);
        return NULL;
    }
    char **p = realloc(req->joined, (req->n_joined + 1) * sizeof(*p));
    if (p == NULL) {
        buf_free(&j.out);
        return NULL;
    }
    req->joined = p;
    req->joined[req->n_joined++] = buf_steal(&j.out);
    return req->joined[req->n_joined - 1];
}

struct foreach_ctx {
    int (*fn)(void *ctx, const char *name, const char *value);
    void *ctx;
};

static enum MHD_Result foreach_iter(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value)
{
    struct foreach_ctx *f = cls;
    return f->fn(f->ctx, key, value ? value : "") == 0 ? MHD_YES : MHD_NO;
}

void http_request_headers_foreach(const struct http_request *req,
                                  int (*fn)(void *ctx, const char *name,
                                            const char *value),
                                  void *ctx)
{
    struct foreach_ctx f = {fn, ctx};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, foreach_iter, &f);
}

static int sum_iter(void *ctx, const char *name, const char *value)
{
    *(size_t *)ctx += strlen(name) + strlen(value) + 4;
    return 0;
}

size_t http_request_header_bytes(const struct http_request *req)
{
    size_t total = 0;
    http_request_headers_foreach(req, sum_iter, &total);
    return total;
}

bool http_request_content_length(const struct http_request *req, uint64_t *len)
{
    const char *v = http_request_header(req, "Content-Length");
    return v && str_to_u64(v, len) == 0;
}

int http_request_socket(const struct http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

const char *http_request_peer(const struct http_request *req)
{
    return req->peer;
}

const char *http_request_peer_name(const struct http_request *req)
{
    return req->peer_name;
}

void http_request_set_data(struct http_request *req, void *data)
{
    req->data = data;
}

void *http_request_data(const struct http_request *req)
{
    return req->data;
}

void *http_request_ctx(const struct http_request *req)
{
    return req->srv->ctx;
}

/* ---- replies ---- */

int http_reply_header(struct http_request *req, const char *name,
                      const char *value)
{
    struct reply_header *p =
        realloc(req->headers, (req->n_headers + 1) * sizeof(*p));
    if (p == NULL)
        return -1;
    req->headers = p;
    char *n = strdup(name), *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return -1;
    }
    req->headers[req->n_headers].name = n;
    req->headers[req->n_headers].value = v;
    req->n_headers++;
    return 0;
}

bool http_replied(const struct http_request *req)
{
    return req->replied;
}

static bool request_has_body(const struct http_request *req)
{
    uint64_t len;
    if (http_request_content_length(req, &len))
        return len > 0;
    return http_request_header(req, "Transfer-Encoding") != NULL;
}

static int queue(struct http_request *req, unsigned status,
                 const char *content_type, struct MHD_Response *resp)
{
    req->replied = true;
    req->reply_status = status;
    if (resp == NULL) {
        req->queue_failed = true;
        return -1;
    }
    for (size_t i = 0; i < req->n_headers; i++)
        MHD_add_response_header(resp, req->headers[i].name,
                                req->headers[i].value);
    if (content_type)
        MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Server", "Koala");
    if (req->in_worker || (req->in_first_call && !request_has_body(req))) {
        req->pending = resp;
        req->pending_status = status;
        return 0;
    }
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    if (r != MHD_YES) {
        req->queue_failed = true;
        return -1;
    }
    return 0;
}

int http_reply_take(struct http_request *req, unsigned status,
                    const char *content_type, char *data, size_t len)
{
    if (req->replied) {
        free(data);
        return -1;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL)
        free(data);
    req->reply_bytes = len;
    return queue(req, status, content_type, resp);
}

int http_reply_buffer(struct http_request *req, unsigned status,
                      const char *content_type, const void *data, size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        req->replied = req->queue_failed = true;
        return -1;
    }
    if (len)
        memcpy(copy, data, len);
    return http_reply_take(req, status, content_type, copy, len);
}

int http_reply_fd(struct http_request *req, unsigned status,
                  const char *content_type, int fd, uint64_t offset,
                  uint64_t len)
{
    if (req->replied) {
        close(fd);
        return -1;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64(len, fd, offset);
    if (resp == NULL)
        close(fd);
    req->reply_bytes = len;
    return queue(req, status, content_type, resp);
}

int http_reply_reader(struct http_request *req, unsigned status,
                      const char *content_type, uint64_t len,
                      ssize_t (*read)(void *ctx, uint64_t pos, char *buf,
                                      size_t max),
                      void (*done)(void *ctx), void *ctx)
{
    if (req->replied) {
        done(ctx);
        return -1;
    }
    /* 64 KiB blocks: large enough that the reader's per-call cost (a
     * pread, a cipher call) is small against the bytes it makes. */
    struct MHD_Response *resp = MHD_create_response_from_callback(
        len, 64 * 1024, read, ctx, done);
    if (resp == NULL)
        done(ctx);
    req->reply_bytes = len;
    return queue(req, status, content_type, resp);
}

unsigned http_reply_status(const struct http_request *req)
{
    return req->reply_status;
}

uint64_t http_reply_bytes(const struct http_request *req)
{
    return req->reply_bytes;
}

int http_reply_empty(struct http_request *req, unsigned status)
{
    return http_reply_take(req, status, NULL, NULL, 0);
}

/* ---- MHD callbacks ---- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->srv = cls;
    req->conn = conn;
    req->target = strdup(uri ? uri : "/");
    if (req->target == NULL) {
        free(req);
        return NULL;
    }
    char *q = strchr(req->target, '?');
    req->path = q ? strndup(req->target, (size_t)(q - req->target))
                  : strdup(req->target);
    /* Right after this callback MHD (0.9.75) parses the query into one
     * record per argument in the connection's pool.  Nothing reads those
     * (handlers parse their own copy, req->target), and some thousands of
     * arguments exhaust the pool: MHD then leaves the connection hanging
     * without a reply.  uri lies in MHD's read buffer and is not used
     * again after the parse, so its query is made a single argument. */
    char *mhd_query = uri ? strchr(uri, '?') : NULL;
    for (char *p = mhd_query; p && (p = strchr(p + 1, '&')) != NULL;)
        *p = ';';
    req->query = q ? q + 1 : "";
    if (req->path == NULL) {
        free(req->target);
        free(req);
        return NULL;
    }
    pthread_mutex_lock(&req->srv->mu);
    req->srv->n_active++;
    pthread_mutex_unlock(&req->srv->mu);
    return req;
}

static void request_free(struct http_request *req)
{
    if (req->pending)
        MHD_destroy_response(req->pending);
    for (size_t i = 0; i < req->n_headers; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->headers);
    free(req->peer_name);
    for (size_t i = 0; i < req->n_joined; i++)
        free(req->joined[i]);
    free(req->joined);
    free(req->path);
    free(req->target);
    free(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_request *req = *req_cls;
    if (req == NULL)
        return;
    if (req->started && srv->handler.on_done)
        srv->handler.on_done(req);
    request_free(req);
    *req_cls = NULL;
    pthread_mutex_lock(&srv->mu);
    srv->n_active--;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

static void fill_peer(struct http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                  req->peer, sizeof(req->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                  req->peer, sizeof(req->peer));
}

/* ---- mutual TLS ---- */

/* Checks the client's certificate against the trusted CA (GnuTLS did the
 * handshake; MHD asked for a certificate but left judging it to us) and
 * keeps its common name.  0 / -1. */
static int verify_client(struct http_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        return -1;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    unsigned status = 0;
    unsigned n = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(session, &n);
    if (chain == NULL || n == 0 ||
        gnutls_certificate_verify_peers2(session, &status) < 0 || status != 0)
        return -1;
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -1;
    char cn[256];
    size_t cn_len = sizeof(cn);
    int rc = -1;
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) >= 0 &&
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
                                      cn, &cn_len) >= 0 &&
        (req->peer_name = strndup(cn, cn_len)) != NULL)
        rc = 0;
    gnutls_x509_crt_deinit(crt);
    return rc;
}

static char *read_pem(const char *path, struct koala_error **err)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        error_set_errno(err, "%s", path);
        return NULL;
    }
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (1u << 20))
        if (buf_append(&b, chunk, n) < 0)
            break;
    bool bad = ferror(f) || b.len == 0 || b.len >= (1u << 20);
    fclose(f);
    if (bad) {
        buf_free(&b);
        error_set(err, EINVAL, "InvalidConfiguration",
                  "%s: not a readable PEM file", path);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- suspension ---- */

/* Suspends the connection (event loop thread, inside the access handler).
 * A resume that came first is honoured at once. */
static void suspend(struct http_request *req)
{
    struct http_server *srv = req->srv;
    pthread_mutex_lock(&srv->mu);
    MHD_suspend_connection(req->conn);
    if (req->resume_requested) {
        req->resume_requested = false;
        MHD_resume_connection(req->conn);
    } else {
        req->suspended = true;
        srv->n_suspended++;
    }
    pthread_mutex_unlock(&srv->mu);
}

void http_request_resume(struct http_request *req)
{
    struct http_server *srv = req->srv;
    pthread_mutex_lock(&srv->mu);
    if (req->suspended) {
        req->suspended = false;
        srv->n_suspended--;
        MHD_resume_connection(req->conn);
        pthread_cond_broadcast(&srv->cv);
    } else {
        req->resume_requested = true;
    }
    pthread_mutex_unlock(&srv->mu);
}

void http_request_defer(struct http_request *req,
                        void (*fn)(struct http_request *req))
{
    req->defer_fn = fn;
}

static void run_deferred(void *arg)
{
    struct http_request *req = arg;
    req->in_worker = true;
    req->defer_fn(req);
    req->defer_fn = NULL;
    req->in_worker = false;
    if (!req->replied) {
        log_error("deferred handler did not reply to %s %s", req->method,
                  req->target);
        http_reply_empty(req, 500);
    }
    http_request_resume(req);
}

/* After a handler callback: starts a deferred job, if one was asked for. */
static enum MHD_Result after_handler(struct http_request *req)
{
    if (req->defer_fn && !req->replied && atomic_load(&req->srv->cutting)) {
        req->defer_fn = NULL;
        return MHD_NO; /* no new job once shutdown cuts requests */
    }
    if (req->defer_fn && !req->replied) {
        suspend(req);
        if (workpool_submit(req->srv->workers, run_deferred, req) == 0)
            return MHD_YES;
        req->defer_fn = NULL;
        http_request_resume(req);
        log_error("cannot queue deferred work for %s %s", req->method,
                  req->target);
        req->in_worker = true; /* keep the reply pending: resumed above */
        http_reply_empty(req, 503);
        req->in_worker = false;
        return MHD_YES;
    }
    req->defer_fn = NULL;
    return req->queue_failed ? MHD_NO : MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct http_server *srv = cls;
    struct http_request *req = *req_cls;
    if (req == NULL)
        return MHD_NO; /* out of memory in on_uri */
    if (!req->started) {
        req->started = true;
        req->conn = conn;
        req->method = method;
        fill_peer(req);
        req->in_first_call = true;
        if (atomic_load(&srv->stopping)) {
            http_reply_header(req, "Connection", "close");
            http_reply_buffer(req, 503, "text/plain", "shutting down\n", 14);
            req->in_first_call = false;
            return after_handler(req);
        }
        if (srv->verify_clients && verify_client(req) < 0) {
            log_warn("%s: refused, no valid client certificate", req->peer);
            http_reply_buffer(req, 403, "text/plain",
                              "client certificate required\n", 28);
            req->in_first_call = false;
            return after_handler(req);
        }
        if (http_request_header_bytes(req) > srv->max_header_bytes &&
            srv->handler.on_oversized)
            srv->handler.on_oversized(req, srv->ctx);
        else
            srv->handler.on_request(req, srv->ctx);
        req->in_first_call = false;
        return after_handler(req);
    }
    if (req->pending) {
        struct MHD_Response *resp = req->pending;
        req->pending = NULL;
        enum MHD_Result r =
            MHD_queue_response(req->conn, req->pending_status, resp);
        MHD_destroy_response(resp);
        return r;
    }
    if (atomic_load(&srv->cutting))
        return MHD_NO; /* shutting down: a request still under way is cut */
    if (*upload_data_size > 0) {
        if (req->replied || req->discard) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        size_t len = *upload_data_size;
        ssize_t took = srv->handler.on_body(req, upload_data, len);
        if (took < 0) {
            req->discard = true;
            *upload_data_size = 0;
        } else {
            *upload_data_size = len - (size_t)took;
            if ((size_t)took < len)
                suspend(req); /* until http_request_resume */
        }
        return MHD_YES;
    }
    if (!req->replied) {
        srv->handler.on_complete(req);
        if (!req->replied && req->defer_fn == NULL) {
            log_error("handler did not reply to %s %s", req->method,
                      req->target);
            http_reply_empty(req, 500);
        }
        return after_handler(req);
    }
    return req->queue_failed ? MHD_NO : MHD_YES;
}

/* Accept policy: while stopping, new connections are refused. (Not
 * MHD_quiesce_daemon: in 0.9.75 it races the epoll workers removing the
 * listen socket themselves and aborts with "Failed to remove listen FD from
 * epoll set".) */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr,
                                 socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    struct http_server *srv = cls;
    return atomic_load(&srv->stopping) ? MHD_NO : MHD_YES;
}

static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    /* Keep arguments raw: handlers parse the raw target themselves. */
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    log_vmsg(LOG_LVL_DEBUG, LOG_MODULE, fmt, ap);
}

struct http_server *http_server_new(const struct http_server_config *cfg,
                                    const struct http_handler *handler,
                                    void *ctx, struct koala_error **err)
{
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    srv->handler = *handler;
    srv->ctx = ctx;
    srv->max_header_bytes =
        cfg->max_header_bytes ? cfg->max_header_bytes : 16 * 1024;
    srv->stop_grace_ms = cfg->stop_grace_ms ? cfg->stop_grace_ms : 10000;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    const char *addr = cfg->address ? cfg->address : "127.0.0.1";
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(cfg->port);
        if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
            goto bad_addr;
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(cfg->port);
        if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
            goto bad_addr;
    }
    unsigned threads = cfg->threads;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 2 ? (unsigned)n : 2;
    }
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    srv->workers =
        workpool_new(cfg->workers ? cfg->workers : 32, "http-worker", err);
    if (srv->workers == NULL) {
        http_server_free(srv);
        return NULL;
    }
    struct MHD_OptionItem tls[5];
    size_t n_tls = 0;
    if (cfg->tls_cert_file || cfg->tls_key_file) {
        if (!cfg->tls_cert_file || !cfg->tls_key_file) {
            error_set(err, EINVAL, "InvalidConfiguration",
                      "HTTPS needs both a certificate and a key");
            http_server_free(srv);
            return NULL;
        }
        if ((srv->tls_cert = read_pem(cfg->tls_cert_file, err)) == NULL ||
            (srv->tls_key = read_pem(cfg->tls_key_file, err)) == NULL ||
            (cfg->tls_client_ca_file &&
             (srv->tls_trust = read_pem(cfg->tls_client_ca_file, err)) ==
                 NULL)) {
            http_server_free(srv);
            return NULL;
        }
        flags |= MHD_USE_TLS;
        tls[n_tls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                               srv->tls_cert};
        tls[n_tls++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
        if (srv->tls_trust) {
            /* MHD then asks for a client certificate; verify_client judges
             * it. */
            tls[n_tls++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST,
                                                   0, srv->tls_trust};
            srv->verify_clients = true;
        }
    }
    if (cfg->use_listen_fd)
        tls[n_tls++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET,
                                               cfg->listen_fd, NULL};
    tls[n_tls] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    /* MHD keeps a request's header block and a record of 56 bytes per
     * header line in the connection's pool (and per query argument: see
     * on_uri); out of pool memory it answers with its own HTML page.  A
     * header line may be as short as 4 bytes, so the pool holds the
     * records of a header section several times past max_header_bytes,
     * which then gets the API's own error (on_oversized).  MHD maps the
     * pool and touches only what a request uses. */
    size_t mem_limit = srv->max_header_bytes * 64 + 64 * 1024;
    srv->mhd = MHD_start_daemon(
        flags, cfg->port, on_accept, srv, on_access, srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem_limit,
        MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(cfg->max_connections ? cfg->max_connections : 1024),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->idle_timeout_s ? cfg->idle_timeout_s : 120),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
    if (srv->mhd == NULL) {
        error_set(err, EADDRINUSE, NULL, "cannot listen on %s:%u", addr,
                  (unsigned)cfg->port);
        http_server_free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : cfg->port;
    return srv;
bad_addr:
    error_set(err, EINVAL, "InvalidConfiguration", "bad listen address '%s'",
              addr);
    free(srv);
    return NULL;
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    /* MHD must not be stopped with suspended connections (it aborts), nor
     * while a deferred job still uses one.  Shutdown: refuse new
     * connections and requests, let the requests under way finish for a
     * grace period, then cut the rest: every connection that comes back to
     * the access handler without a reply is closed, no new job starts, and
     * MHD is stopped once the jobs still running (each bounded: disk work,
     * calls with timeouts) have ended and resumed their connections.
     * Connections not suspended (a slow client's body) are closed by MHD
     * itself. */
    atomic_store(&srv->stopping, true);
    if (srv->mhd) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += srv->stop_grace_ms / 1000;
        until.tv_nsec += (long)(srv->stop_grace_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&srv->mu);
        while ((srv->n_active > 0 || srv->n_suspended > 0) &&
               pthread_cond_timedwait(&srv->cv, &srv->mu, &until) == 0)
            ;
        if (srv->n_active > 0)
            log_warn("stopping: cutting %u requests under way (%u waiting "
                     "for their jobs)",
                     srv->n_active, srv->n_suspended);
        atomic_store(&srv->cutting, true);
        while (srv->n_suspended > 0)
            pthread_cond_wait(&srv->cv, &srv->mu);
        pthread_mutex_unlock(&srv->mu);
        MHD_stop_daemon(srv->mhd);
    }
    workpool_free(srv->workers);
    srv->workers = NULL;
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv->tls_cert);
    if (srv->tls_key)
        explicit_bzero(srv->tls_key, strlen(srv->tls_key));
    free(srv->tls_key);
    free(srv->tls_trust);
    free(srv);
}

uint16_t http_server_port(const struct http_server *srv)
{
    return srv->port;
}
