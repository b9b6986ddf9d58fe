/* http_client.h: the HTTP(S) client, on libcurl.  The node controller
 * downloads images through presigned URLs with it, components send each
 * other SOAP over HTTPS with mutual TLS, and tests drive the servers.
 *
 * A request names where its body comes from (nothing, memory, a file or a
 * callback) and where the reply body goes (memory up to a limit, a file
 * descriptor, a callback, or nowhere).  Bodies are streamed both ways:
 * neither side is ever held whole in memory unless memory was asked for.
 *
 * A reply with an HTTP error status is not a failure of the client: the
 * caller looks at resp->status.  Since the body of such a reply is an error
 * document and not the content asked for, the body of a reply with status
 * >= 300 never goes to an FD, CALLBACK or DISCARD sink: it is kept in
 * resp->body (its first 64 KiB), so an S3 error is not written into an
 * image file and can be reported.
 *
 * http_client_do() fails (-1, code NULL) only when no complete reply was
 * had: connection refused, TLS failure, timeout, a sink or source that
 * failed, a reply larger than the memory limit.  err->errnum then says why
 * (ECONNREFUSED, ETIMEDOUT, EFBIG, EPROTO for TLS, EINVAL for a bad URL or
 * request ...).
 *
 * Error messages name the URL without its query: a presigned URL's query
 * is a credential.
 *
 * Threads: a `struct http_client` is used by one thread at a time.  It keeps
 * libcurl's handle, so connections (and TLS sessions) are reused between
 * requests to the same server.
 */
#ifndef KOALA_HTTP_CLIENT_H
#define KOALA_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "error.h"

struct http_client;

/* A body length the sender does not know: it is sent chunked. */
#define HTTP_CLIENT_LEN_UNKNOWN UINT64_MAX

enum http_client_body_kind {
    HTTP_CLIENT_BODY_NONE = 0,
    HTTP_CLIENT_BODY_MEMORY,   /* data, len */
    HTTP_CLIENT_BODY_FD,       /* fd from offset, len bytes (pread: the fd's
                                  position is left alone, and the body can
                                  be sent again on a redirect) */
    HTTP_CLIENT_BODY_CALLBACK, /* read(); len may be HTTP_CLIENT_LEN_UNKNOWN */
};

struct http_client_body {
    enum http_client_body_kind kind;
    const void *data;
    int fd;
    uint64_t offset;
    uint64_t len;
    /* Fills up to size bytes; returns how many, 0 at the end, -1 (with
     * errno set) to abort the request. */
    ssize_t (*read)(void *ctx, char *buf, size_t size);
    void *ctx;
};

enum http_client_sink_kind {
    HTTP_CLIENT_SINK_MEMORY = 0, /* resp->body, up to max_len */
    HTTP_CLIENT_SINK_FD,         /* written to fd at its current position */
    HTTP_CLIENT_SINK_CALLBACK,   /* write() */
    HTTP_CLIENT_SINK_DISCARD,
};

struct http_client_sink {
    enum http_client_sink_kind kind;
    size_t max_len; /* MEMORY: a longer body fails with EFBIG (0: 8 MiB) */
    int fd;
    /* Takes a piece of the body; returns 0, or -1 (with errno set) to abort
     * the request. */
    int (*write)(void *ctx, const char *data, size_t len);
    void *ctx;
};

struct http_client_tls {
    const char *ca_file;   /* CA certificates (PEM) the server is checked
                              against; NULL: the system's */
    const char *cert_file; /* client certificate (PEM) for mutual TLS */
    const char *key_file;  /* its private key (PEM); NULL: in cert_file */
    bool insecure;         /* no peer or host name check: tests only */
};

struct http_client_request {
    const char *method; /* NULL: "GET" */
    const char *url;    /* http:// or https:// only */
    /* "Name: value" strings, NULL terminated, or NULL.  curl's rules apply:
     * "Name:" removes a header curl would add (Expect, Accept ...),
     * "Name;" sends it with an empty value. */
    const char *const *headers;
    struct http_client_body body;      /* zero: none */
    struct http_client_sink sink;      /* zero: memory, 8 MiB at most */
    const struct http_client_tls *tls; /* NULL: verify with system CAs */
    unsigned timeout_ms;               /* whole exchange; 0: no limit */
    unsigned connect_timeout_ms;       /* 0: 10 s */
    unsigned idle_timeout_s;           /* fail when no byte moved for this long;
                                          0: 60 s */
    bool follow_redirects;
};

struct http_client_header {
    char *name;
    char *value;
};

/* Zero-initialise; free with http_client_response_free(). */
struct http_client_response {
    long status;         /* of the final reply (after 100, redirects) */
    struct buf body;     /* MEMORY sink, or an error reply's body */
    uint64_t body_bytes; /* bytes of body received, for any sink */
    struct http_client_header *headers; /* of the final reply, as sent */
    size_t n_headers;
};

struct http_client *http_client_new(struct koala_error **err);
void http_client_free(struct http_client *c); /* NULL-safe */

/* Performs one request.  c may be NULL: a handle is made for this request
 * alone.  resp is reset first (it may hold an earlier reply).  Returns 0
 * when a reply came, whatever its status. */
int http_client_do(struct http_client *c, const struct http_client_request *req,
                   struct http_client_response *resp, struct koala_error **err);

/* First value of a reply header (case-insensitive name), or NULL. */
const char *http_client_response_header(const struct http_client_response *r,
                                        const char *name);
/* Frees what the response holds and zeroes it; r itself is the caller's. */
void http_client_response_free(struct http_client_response *r);

static inline void http_client_freep(struct http_client **c)
{
    http_client_free(*c);
}
static inline void http_client_response_freep(struct http_client_response *r)
{
    http_client_response_free(r);
}
#define _cleanup_http_client_ __attribute__((cleanup(http_client_freep)))
#define _cleanup_http_response_                                                \
    __attribute__((cleanup(http_client_response_freep)))

#endif
