/* imds.c: the instance metadata service's listener (docs/metadata.md).
 * koala-cc serves 169.254.169.254:80 (metadata_port) inside the cluster's
 * network namespace: a thread enters the namespace, makes the listening
 * socket there and leaves; the socket stays in that namespace and is
 * served by a plain-HTTP http_server of its own.  The asking instance is
 * the live instance holding the request's source address on the LAN,
 * which the NCs' anti-spoofing rules make trustworthy.
 *
 * Per request: GET/HEAD of a path (imds_tree.c) or PUT /latest/api/token
 * (IMDSv2).  Replies as EC2's: text/plain bodies, and its small XHTML
 * pages for errors (400, 401, 403, 404, 405).  The instance's options
 * decide: httpEndpoint disabled -> 403 for everything; httpTokens required
 * -> 401 without a valid token; a token that is present but invalid (bad,
 * expired, another instance's) -> 401 even when tokens are optional. */
#define LOG_MODULE "imds"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "imds.h"
#include "log.h"

struct imds {
    struct cc *cc;
    struct http_server *http;
    unsigned char key[IMDS_KEY_BYTES];
    struct imds_signer *signer; /* NULL: no identity signatures */
    char subnet[24];
    atomic_uint_fast64_t served;
};

/* ---- replies ---- */

static const char *status_text(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    default:
        return "Internal Server Error";
    }
}

/* EC2's error page. */
static void reply_error(struct http_request *req, unsigned status)
{
    char page[600];
    const char *t = status_text(status);
    int n = snprintf(page, sizeof(page),
                     "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n"
                     "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 "
                     "Transitional//EN\"\n"
                     "\t\"http://www.w3.org/TR/xhtml1/DTD/"
                     "xhtml1-transitional.dtd\">\n"
                     "<html xmlns=\"http://www.w3.org/1999/xhtml\" "
                     "xml:lang=\"en\" lang=\"en\">\n"
                     " <head>\n  <title>%u - %s</title>\n </head>\n"
                     " <body>\n  <h1>%u - %s</h1>\n </body>\n</html>\n",
                     status, t, status, t);
    if (status == 405)
        http_reply_header(req, "Allow", "OPTIONS, GET, HEAD, PUT");
    http_reply_buffer(req, status, "text/html", page, (size_t)n);
}

/* ---- requests ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static struct imds *req_imds(struct http_request *req)
{
    return http_request_ctx(req);
}

static void on_request(struct http_request *req, void *ctx)
{
    (void)ctx;
    const char *m = http_request_method(req);
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 &&
        strcmp(m, "PUT") != 0)
        return reply_error(req, 405);
    uint64_t len = 0;
    if (http_request_content_length(req, &len) && len > 0)
        return reply_error(req, 400); /* no request here has a body */
}

static ssize_t on_body(struct http_request *req, const char *data, size_t len)
{
    (void)req;
    (void)data;
    (void)len;
    return -1;
}

/* The asking instance and its metadata: 0, or an HTTP status. */
static unsigned who_asks(struct imds *s, struct db *db,
                         struct http_request *req, struct cc_instance *in,
                         struct cc_imeta *m, char public_ip[16])
{
    struct koala_error *err = NULL;
    public_ip[0] = '\0';
    int rc = store_instance_by_ip(db, s->cc->net.name, http_request_peer(req),
                                  in, &err);
    if (rc == 0)
        rc = store_imeta_get(db, in->id, m, &err) < 0 ? -1 : 0;
    if (rc == 0 && store_eip_of(db, in->id, public_ip, &err) < 0)
        rc = -1;
    if (rc < 0) {
        log_warn("%s: %s", http_request_peer(req), error_message(err));
        error_free(err);
        return 500;
    }
    if (rc == 1) {
        log_debug("%s: no instance has this address", http_request_peer(req));
        return 404;
    }
    return 0;
}

static void put_token(struct imds *s, struct http_request *req,
                      const struct cc_instance *in, const struct cc_imeta *m)
{
    if (strcmp(http_request_path(req), "/latest/api/token") != 0)
        return reply_error(req, 405);
    /* A proxy in front of the guest forwarding the PUT: refused, as EC2
     * does, so that an open proxy cannot fetch tokens. */
    if (http_request_header(req, "X-Forwarded-For"))
        return reply_error(req, 403);
    const char *ttl_s =
        http_request_header(req, "X-aws-ec2-metadata-token-ttl-seconds");
    int64_t ttl;
    if (ttl_s == NULL || str_to_i64(ttl_s, &ttl) < 0 || ttl < 1 ||
        ttl > IMDS_TOKEN_TTL_MAX)
        return reply_error(req, 400);
    _cleanup_free_ char *token =
        imds_token_mint(s->key, in->id, time_now_ms() / 1000 + ttl);
    if (token == NULL)
        return reply_error(req, 500);
    /* HttpPutResponseHopLimit: the IP TTL of the reply's packets. */
    int fd = http_request_socket(req);
    int hops = m->hop_limit;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_IP, IP_TTL, &hops, sizeof(hops));
    char ttl_text[24];
    snprintf(ttl_text, sizeof(ttl_text), "%lld", (long long)ttl);
    http_reply_header(req, "X-aws-ec2-metadata-token-ttl-seconds", ttl_text);
    http_reply_buffer(req, 200, "text/plain", token, strlen(token));
}

static void serve(struct http_request *req)
{
    struct imds *s = req_imds(req);
    struct cc *cc = s->cc;
    atomic_fetch_add(&s->served, 1);
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(cc->db, &err);
    if (db == NULL) {
        log_warn("%s", error_message(err));
        error_free(err);
        return reply_error(req, 500);
    }
    struct cc_instance in;
    struct cc_imeta m;
    imeta_defaults(&m);
    char public_ip[16];
    unsigned status = who_asks(s, db, req, &in, &m, public_ip);
    db_pool_put(cc->db, db);
    if (status)
        return reply_error(req, status);
    if (strcmp(m.http_endpoint, "enabled") != 0) {
        imeta_clear(&m);
        return reply_error(req, 403);
    }
    if (strcmp(http_request_method(req), "PUT") == 0) {
        put_token(s, req, &in, &m);
        imeta_clear(&m);
        return;
    }
    const char *token = http_request_header(req, "X-aws-ec2-metadata-token");
    int64_t now = time_now_ms() / 1000;
    if ((token && !imds_token_check(s->key, in.id, token, now)) ||
        (token == NULL && strcmp(m.http_tokens, "required") == 0)) {
        imeta_clear(&m);
        return reply_error(req, 401);
    }
    _cleanup_free_ char *doc = NULL, *pkcs7 = NULL, *sig = NULL;
    const char *path = http_request_path(req);
    /* The document is cheap; its signatures are made only for the two
     * paths that serve them (listings only name them). */
    if (s->signer && strstr(path, "/meta-data") == NULL &&
        strstr(path, "/user-data") == NULL) {
        doc = imds_identity_document(&in, &m, cc->opt.name);
        if (doc &&
            (ends_with(path, "/pkcs7") || ends_with(path, "/signature")) &&
            imds_sign(s->signer, doc, &pkcs7, &sig, &err) < 0) {
            log_warn("instance %s: %s", in.id, error_message(err));
            error_free(err);
            err = NULL;
            free(doc);
            doc = NULL;
        }
    }
    struct imds_view v = {
        .in = &in,
        .meta = &m,
        .zone = cc->opt.name,
        .subnet = s->subnet,
        .public_ip = public_ip,
        .identity_doc = doc,
        .identity_pkcs7 = pkcs7 ? pkcs7 : "",
        .identity_signature = sig ? sig : "",
    };
    struct buf out = {0};
    const char *ctype = "text/plain";
    enum imds_result res = imds_resolve(&v, path, &out, &ctype);
    imeta_clear(&m);
    if (res != IMDS_FOUND) {
        buf_free(&out);
        return reply_error(req, 404);
    }
    size_t len = out.len;
    http_reply_take(req, 200, ctype, buf_steal(&out), len);
}

static void on_complete(struct http_request *req)
{
    http_request_defer(req, serve);
}

static void on_done(struct http_request *req)
{
    (void)req;
}

static void on_oversized(struct http_request *req, void *ctx)
{
    (void)ctx;
    reply_error(req, 400);
}

static const struct http_handler imds_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
    .on_oversized = on_oversized,
};

struct imds *imds_start(struct cc *cc, struct koala_error **err)
{
    struct imds *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    s->cc = cc;
    char net[16];
    cc_ip_format(cc->net.subnet.network, net);
    snprintf(s->subnet, sizeof(s->subnet), "%s/%u", net, cc->net.subnet.prefix);
    if (imds_key_load(cc->opt.data_dir, s->key, err) < 0)
        goto fail;
    if (cc->opt.identity_cert && cc->opt.identity_key) {
        s->signer =
            imds_signer_load(cc->opt.identity_cert, cc->opt.identity_key, err);
        if (s->signer == NULL)
            goto fail;
    } else {
        log_warn("no identity_cert/identity_key: instance identity "
                 "documents are not served");
    }
    int fd = proc_socket_in(cc->opt.netns, SOCK_STREAM, IMDS_ADDRESS,
                            (uint16_t)cc->opt.metadata_port, err);
    if (fd < 0)
        goto fail;
    struct http_server_config hc = {
        .address = IMDS_ADDRESS,
        .port = (uint16_t)cc->opt.metadata_port,
        .max_connections = 1024,
        /* Guests' requests are small; MHD's per-connection pool grows
         * with this (http_server.c) and is cleared for every request. */
        .max_header_bytes = 2 * 1024,
        .idle_timeout_s = 30,
        .threads = 2,
        .workers = IMDS_WORKERS,
        .stop_grace_ms = 1000,
        .use_listen_fd = true,
        .listen_fd = fd,
    };
    s->http = http_server_new(&hc, &imds_handler, s, err);
    if (s->http == NULL) {
        close(fd);
        goto fail;
    }
    log_info("metadata service on %s:%lld%s%s", IMDS_ADDRESS,
             (long long)cc->opt.metadata_port,
             cc->opt.netns ? " in netns " : "",
             cc->opt.netns ? cc->opt.netns : "");
    return s;
fail:
    imds_stop(s);
    return NULL;
}

void imds_stop(struct imds *s)
{
    if (s == NULL)
        return;
    http_server_free(s->http);
    imds_signer_free(s->signer);
    OPENSSL_cleanse(s->key, sizeof(s->key));
    free(s);
}

uint64_t imds_served(struct imds *s)
{
    return s ? atomic_load(&s->served) : 0;
}
