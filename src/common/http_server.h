/* http_server.h: the HTTP server every daemon serves its API with, on
 * libmicrohttpd: a few event loop threads (epoll) serve every connection,
 * and a pool of worker threads runs what may block.
 *
 * A handler sees a request in three steps, on the connection's event loop
 * thread:
 *   on_request   the headers are in.  It may reply at once (an error, or a
 *                request without a body); then any body is discarded.  If it
 *                does not reply, the body follows (and a client that sent
 *                "Expect: 100-continue" is told to go on).
 *   on_body      a piece of the body, as it arrives: bodies are streamed,
 *                never gathered by the server.  It returns how much of the
 *                piece it took; taking less pauses the body until the
 *                handler calls http_request_resume() (backpressure), when
 *                the rest is offered again.  Returning -1 stops delivery;
 *                the rest of the body is read and dropped.
 *   on_complete  the body has ended (also called when there is none, if
 *                on_request did not reply).  It must reply, or defer.
 *   on_done      the exchange is over (reply sent, or the connection failed):
 *                free the per-request state.  Always called once per request
 *                that reached on_request.
 * Event loop threads must not block: on_request and on_complete hand
 * anything that may (fsync, a database write, a call to another server)
 * to http_request_defer(), which runs it on a worker thread while the
 * connection waits.
 *
 * The raw request target is kept as sent (not unescaped), because signatures
 * are computed over it.
 *
 * Replies are built by adding headers (http_reply_header) and then sending
 * one of: a memory buffer, a file descriptor range (sent with sendfile), or
 * nothing.  Requests whose header section exceeds max_header_bytes get a
 * reply from the `on_oversized` hook, so the API can answer in its format.
 */
#ifndef KOALA_HTTP_SERVER_H
#define KOALA_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct http_server;
struct http_request;

struct http_handler {
    void (*on_request)(struct http_request *req, void *ctx);
    ssize_t (*on_body)(struct http_request *req, const char *data, size_t len);
    void (*on_complete)(struct http_request *req);
    void (*on_done)(struct http_request *req);
    /* The request's headers are too large: reply with an error. */
    void (*on_oversized)(struct http_request *req, void *ctx);
};

struct http_server_config {
    const char *address;      /* "127.0.0.1", "0.0.0.0", "::" */
    uint16_t port;            /* 0: an ephemeral port */
    unsigned max_connections; /* 0: 1024 */
    size_t max_header_bytes;  /* 0: 16 KiB (headers summed) */
    unsigned idle_timeout_s;  /* 0: 120 */
    unsigned threads;         /* event loop threads; 0: one per CPU (>= 2) */
    unsigned workers;         /* threads for deferred work; 0: 32 */
    /* How long http_server_free lets requests under way finish before it
     * cuts them; 0: 10 s. */
    unsigned stop_grace_ms;
    /* HTTPS: the server's certificate chain and key (PEM files); NULL for
     * plain HTTP. */
    const char *tls_cert_file;
    const char *tls_key_file;
    /* Mutual TLS: when set, only clients presenting a certificate issued
     * by this CA (PEM) are served; others get 403. */
    const char *tls_client_ca_file;
    /* A socket already bound and listening (e.g. made in another network
     * namespace) to serve instead of address and port; the server owns
     * it.  Used when use_listen_fd is set. */
    bool use_listen_fd;
    int listen_fd;
};

struct http_server *http_server_new(const struct http_server_config *cfg,
                                    const struct http_handler *handler,
                                    void *ctx, struct koala_error **err);
/* Stops accepting, lets the requests under way finish for the grace
 * period, cuts the rest (closes their connections once their running jobs
 * end), waits for the connection threads, frees.  NULL-safe. */
void http_server_free(struct http_server *srv);
uint16_t http_server_port(const struct http_server *srv);

/* ---- request ---- */
const char *http_request_method(const struct http_request *req);
/* Raw target as sent: "/b/k%20x?acl". */
const char *http_request_target(const struct http_request *req);
/* Raw path part ("/b/k%20x") and raw query part ("acl", "" if none). */
const char *http_request_path(const struct http_request *req);
const char *http_request_query(const struct http_request *req);
/* First value of a header (case-insensitive name), or NULL. */
const char *http_request_header(const struct http_request *req,
                                const char *name);
/* All values of a header joined with ",", or NULL; owned by the request. */
const char *http_request_header_joined(struct http_request *req,
                                       const char *name);
/* Calls fn for each header (name as sent); stops when fn returns non-zero. */
void http_request_headers_foreach(const struct http_request *req,
                                  int (*fn)(void *ctx, const char *name,
                                            const char *value),
                                  void *ctx);
/* Sum of the header names' and values' lengths. */
size_t http_request_header_bytes(const struct http_request *req);
/* Content-Length, if the request has one: returns true and sets *len. */
bool http_request_content_length(const struct http_request *req, uint64_t *len);
/* The peer's address as text ("127.0.0.1"). */
const char *http_request_peer(const struct http_request *req);
/* The connection's socket (to set socket options on the reply, such as
 * IP_TTL), or -1. */
int http_request_socket(const struct http_request *req);
/* With mutual TLS: the common name of the client's verified certificate;
 * otherwise NULL. */
const char *http_request_peer_name(const struct http_request *req);

void http_request_set_data(struct http_request *req, void *data);
void *http_request_data(const struct http_request *req);
void *http_request_ctx(const struct http_request *req);

/* Runs fn(req) on a worker thread, where it may block; the connection
 * waits meanwhile.  Call it from on_request (for a request without a body)
 * or on_complete, and return right after; fn must reply. */
void http_request_defer(struct http_request *req,
                        void (*fn)(struct http_request *req));
/* After on_body took less than it was offered: offer the rest again.  Any
 * thread may call it, any number of times. */
void http_request_resume(struct http_request *req);

/* ---- reply ---- */
/* Adds a reply header (copied).  0 / -1. */
int http_reply_header(struct http_request *req, const char *name,
                      const char *value);
/* The reply functions return 0, or -1 if a reply was already sent or could
 * not be queued (the connection is then closed).  Only one per request. */
int http_reply_buffer(struct http_request *req, unsigned status,
                      const char *content_type, const void *data, size_t len);
/* As http_reply_buffer, but takes ownership of a malloc'd body. */
int http_reply_take(struct http_request *req, unsigned status,
                    const char *content_type, char *data, size_t len);
/* Sends len bytes of fd from offset (sendfile); takes ownership of fd (closed
 * when the reply is done or on failure).  content_type may be NULL. */
int http_reply_fd(struct http_request *req, unsigned status,
                  const char *content_type, int fd, uint64_t offset,
                  uint64_t len);
/* Sends len bytes produced by read(ctx, pos, buf, max) (a body made on
 * the fly, e.g. decrypted: returns the bytes put in buf, or
 * HTTP_READER_ERROR to abort the connection);
 * done(ctx) runs when the reply is over or could not be queued. */
#define HTTP_READER_ERROR ((ssize_t)-2) /* MHD_CONTENT_READER_END_WITH_ERROR */
int http_reply_reader(struct http_request *req, unsigned status,
                      const char *content_type, uint64_t len,
                      ssize_t (*read)(void *ctx, uint64_t pos, char *buf,
                                      size_t max),
                      void (*done)(void *ctx), void *ctx);
int http_reply_empty(struct http_request *req, unsigned status);
bool http_replied(const struct http_request *req);
/* The status and body length of the reply queued (0 before one). */
unsigned http_reply_status(const struct http_request *req);
uint64_t http_reply_bytes(const struct http_request *req);

#endif
