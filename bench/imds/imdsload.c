/* imdsload.c: an HTTP/1.1 load generator for the instance metadata service
 * (bench/imds/run.sh).  N clients on one epoll loop ask one path of one
 * server again and again, over kept-alive connections or a new connection
 * per request, and it reports requests/s, latency p50/p99 and errors.
 *
 *   imdsload --host 169.254.169.254 [--port 80] --path /latest/meta-data/
 *            [--clients 50] [--duration 5] [--warmup 1] [--new-conn]
 *            [--token-ttl SECONDS] [--expect-file F] [--label NAME] [--json]
 *
 * --token-ttl: each operation is the IMDSv2 pair, PUT /latest/api/token
 * then GET of the path with the token it returned, on one connection (two
 * HTTP requests; the latency is the pair's).  --expect-file: every body
 * must be these bytes (else an error); without it, any 200 counts.
 *
 * Why not libcurl (bench/s3/s3load.c): on two cores shared with the
 * server, the client's own cost per request is taken from the server; a
 * bare socket loop costs a few microseconds.  Replies must carry
 * Content-Length (both the metadata service and nginx send it); chunked
 * replies count as errors.  Latency: from connect() (new connection) or
 * the first byte written (kept-alive) to the last byte of the body.
 * Operations that end within the warm-up are not counted; the rate is
 * counted over the DURATION seconds after it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX (256 * 1024)
#define OP_TIMEOUT_S 10.0
#define TOKEN_MAX 512

struct opts {
    const char *host;
    unsigned port;
    const char *path;
    const char *label;
    unsigned clients;
    double duration;
    double warmup;
    bool new_conn;
    long token_ttl; /* 0: plain GETs */
    const char *expect_file;
    bool json;
};

enum phase { IDLE, CONNECTING, SENDING, RECEIVING, DRAINING };

struct client {
    int fd;
    enum phase phase;
    bool token_step; /* the PUT of an IMDSv2 pair is under way */
    char req[1024];
    size_t req_len, req_off;
    char *resp;
    size_t resp_len;
    double op_start;
    unsigned on_conn; /* requests sent on this connection */
    char token[TOKEN_MAX];
};

struct stats {
    double *lat_ms;
    size_t n, cap;
    unsigned errors;
    unsigned reconnects; /* a kept-alive connection the server closed */
};

static struct opts o;
static struct stats st;
static struct sockaddr_in server;
static char *expect;
static size_t expect_len;
static int ep;
static double t_begin, t_measure, t_end;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static bool measuring(double t)
{
    return t >= t_measure && t < t_end;
}

static void record(double ms)
{
    if (st.n == st.cap) {
        st.cap = st.cap ? st.cap * 2 : 65536;
        st.lat_ms = realloc(st.lat_ms, st.cap * sizeof(double));
        if (st.lat_ms == NULL)
            die("realloc");
    }
    st.lat_ms[st.n++] = ms;
}

static void fail(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(struct client *c, const char *fmt, ...)
{
    (void)c;
    if (!measuring(now_s()))
        return;
    if (st.errors++ < 5) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "imdsload %s: ", o.label);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static void conn_close(struct client *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
}

static void want(struct client *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int conn_open(struct client *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&server, sizeof(server)) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->on_conn = 0;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    c->phase = CONNECTING;
    return 0;
}

static void do_send(struct client *c);

/* The next request of c's operation into c->req. */
static void build_request(struct client *c)
{
    const char *conn = o.new_conn ? "Connection: close\r\n" : "";
    int n;
    if (c->token_step)
        n = snprintf(c->req, sizeof(c->req),
                     "PUT /latest/api/token HTTP/1.1\r\nHost: %s\r\n"
                     "X-aws-ec2-metadata-token-ttl-seconds: %ld\r\n"
                     "Content-Length: 0\r\n\r\n",
                     o.host, o.token_ttl);
    else if (o.token_ttl)
        n = snprintf(c->req, sizeof(c->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\n"
                     "X-aws-ec2-metadata-token: %s\r\n%s\r\n",
                     o.path, o.host, c->token, conn);
    else
        n = snprintf(c->req, sizeof(c->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", o.path, o.host,
                     conn);
    c->req_len = (size_t)n;
    c->req_off = 0;
    c->resp_len = 0;
}

/* Sends c->req: at once on an open connection, after connecting on a new
 * one. */
static void send_request(struct client *c)
{
    if (c->fd < 0) {
        if (conn_open(c) < 0) {
            fail(c, "connect: %s", strerror(errno));
            c->phase = IDLE; /* retried by the main loop */
        }
        return;
    }
    c->phase = SENDING;
    do_send(c);
}

/* Starts c's next operation, or leaves c idle once the run is over. */
static void op_start(struct client *c)
{
    double t = now_s();
    if (t >= t_end) {
        conn_close(c);
        c->phase = IDLE;
        return;
    }
    c->op_start = t;
    c->token_step = o.token_ttl > 0;
    build_request(c);
    send_request(c);
}

static void do_send(struct client *c)
{
    if (c->req_off == 0)
        c->on_conn++;
    while (c->req_off < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                want(c, EPOLLOUT);
                return;
            }
            fail(c, "send: %s", strerror(errno));
            conn_close(c);
            op_start(c);
            return;
        }
        c->req_off += (size_t)n;
    }
    c->phase = RECEIVING;
    want(c, EPOLLIN);
}

/* -1: not a whole reply yet; else the reply's total length, with its
 * status, body offset and whether the server closes after it. */
static long parse(struct client *c, int *status, size_t *body, bool *closes,
                  const char **err)
{
    c->resp[c->resp_len] = '\0';
    char *end = strstr(c->resp, "\r\n\r\n");
    if (end == NULL)
        return -1;
    *body = (size_t)(end + 4 - c->resp);
    if (strncmp(c->resp, "HTTP/1.", 7) != 0 || c->resp_len < 12) {
        *err = "not an HTTP reply";
        return -2;
    }
    *status = atoi(c->resp + 9);
    long len = -1;
    *closes = strncmp(c->resp, "HTTP/1.0", 8) == 0;
    for (char *l = strstr(c->resp, "\r\n") + 2; l < end;
         l = strstr(l, "\r\n") + 2) {
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            len = atol(l + 15);
        else if (strncasecmp(l, "Connection:", 11) == 0) {
            const char *v = l + 11;
            while (*v == ' ')
                v++;
            *closes = strncasecmp(v, "close", 5) == 0;
        }
    }
    if (len < 0) {
        *err = "no Content-Length";
        return -2;
    }
    if (*body + (size_t)len > RESP_MAX - 1) {
        *err = "reply too large";
        return -2;
    }
    return c->resp_len >= *body + (size_t)len ? (long)(*body + (size_t)len)
                                              : -1;
}

/* A whole reply is in: checks it and goes on with the operation. */
static void on_reply(struct client *c, int status, size_t body, size_t total,
                     bool closes)
{
    const char *b = c->resp + body;
    size_t blen = total - body;
    if (status != 200) {
        fail(c, "%s: HTTP %d", c->token_step ? "PUT token" : o.path, status);
    } else if (c->token_step) {
        if (blen == 0 || blen >= TOKEN_MAX) {
            fail(c, "PUT token: a body of %zu bytes", blen);
            status = 0;
        } else {
            memcpy(c->token, b, blen);
            c->token[blen] = '\0';
        }
    } else if (expect && (blen != expect_len || memcmp(b, expect, blen))) {
        fail(c, "%s: %zu bytes, not the expected %zu", o.path, blen,
             expect_len);
        status = 0;
    }
    if (status == 200 && c->token_step) {
        /* The GET of the pair, on the same connection (unless the server
         * closed it). */
        c->token_step = false;
        if (closes)
            conn_close(c);
        build_request(c);
        send_request(c);
        return;
    }
    double t = now_s();
    if (status == 200 && measuring(t))
        record((t - c->op_start) * 1000);
    if (status == 200 && o.new_conn && !closes)
        fail(c, "the server kept a Connection: close connection open");
    if (o.new_conn && closes && status == 200) {
        /* Wait for the server's FIN, so that the server closes first and
         * the TIME_WAIT is its own, as with any Connection: close client. */
        c->phase = DRAINING;
        c->resp_len = 0;
        return;
    }
    if (closes || status != 200)
        conn_close(c);
    op_start(c);
}

static void do_recv(struct client *c)
{
    for (;;) {
        ssize_t n =
            recv(c->fd, c->resp + c->resp_len, RESP_MAX - 1 - c->resp_len, 0);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            fail(c, "recv: %s", strerror(errno));
            conn_close(c);
            op_start(c);
            return;
        }
        if (n == 0) {
            if (c->phase == DRAINING) {
                conn_close(c);
                op_start(c);
            } else if (c->resp_len == 0 && c->on_conn > 1) {
                /* A kept-alive connection closed under a request: count
                 * it apart, as an error too. */
                st.reconnects++;
                fail(c, "the server closed a kept-alive connection");
                conn_close(c);
                op_start(c);
            } else {
                fail(c, "connection closed after %zu bytes of a reply",
                     c->resp_len);
                conn_close(c);
                op_start(c);
            }
            return;
        }
        if (c->phase == DRAINING) {
            fail(c, "bytes after a Connection: close reply");
            conn_close(c);
            op_start(c);
            return;
        }
        c->resp_len += (size_t)n;
        int status = 0;
        size_t body = 0;
        bool closes = false;
        const char *err = NULL;
        long total = parse(c, &status, &body, &closes, &err);
        if (total == -2) {
            fail(c, "%s", err);
            conn_close(c);
            op_start(c);
            return;
        }
        if (total >= 0) {
            if ((size_t)total != c->resp_len)
                fail(c, "%zu bytes past the reply", c->resp_len - total);
            on_reply(c, status, body, (size_t)total, closes);
            return;
        }
        if (c->resp_len >= RESP_MAX - 1) {
            fail(c, "reply too large");
            conn_close(c);
            op_start(c);
            return;
        }
    }
}

static void on_event(struct client *c, uint32_t events)
{
    if (c->phase == CONNECTING) {
        int e = 0;
        socklen_t l = sizeof(e);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e != 0) {
            fail(c, "connect: %s", strerror(e));
            conn_close(c);
            op_start(c);
            return;
        }
        c->phase = SENDING;
    }
    if (c->phase == SENDING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        do_send(c);
    else if ((c->phase == RECEIVING || c->phase == DRAINING) &&
             (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        do_recv(c);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (st.n == 0)
        return 0;
    return st.lat_ms[(size_t)(p * (double)(st.n - 1) + 0.5)];
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die(path);
    struct stat sb;
    if (fstat(fileno(f), &sb) < 0)
        die(path);
    char *d = malloc((size_t)sb.st_size + 1);
    if (d == NULL || fread(d, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size)
        die(path);
    fclose(f);
    *len = (size_t)sb.st_size;
    return d;
}

static void usage(void)
{
    fprintf(stderr, "usage: imdsload --host ADDR [--port N] --path PATH "
                    "[--clients N] [--duration S]\n"
                    "                [--warmup S] [--new-conn] [--token-ttl S] "
                    "[--expect-file F]\n"
                    "                [--label NAME] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    o = (struct opts){.port = 80,
                      .path = "/latest/meta-data/instance-id",
                      .label = "imds",
                      .clients = 50,
                      .duration = 5,
                      .warmup = 1};
    static const struct option lo[] = {
        {"host", 1, NULL, 'h'},        {"port", 1, NULL, 'p'},
        {"path", 1, NULL, 'P'},        {"clients", 1, NULL, 'c'},
        {"duration", 1, NULL, 'd'},    {"warmup", 1, NULL, 'w'},
        {"new-conn", 0, NULL, 'n'},    {"token-ttl", 1, NULL, 't'},
        {"expect-file", 1, NULL, 'e'}, {"label", 1, NULL, 'l'},
        {"json", 0, NULL, 'j'},        {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'h':
            o.host = optarg;
            break;
        case 'p':
            o.port = (unsigned)atoi(optarg);
            break;
        case 'P':
            o.path = optarg;
            break;
        case 'c':
            o.clients = (unsigned)atoi(optarg);
            break;
        case 'd':
            o.duration = atof(optarg);
            break;
        case 'w':
            o.warmup = atof(optarg);
            break;
        case 'n':
            o.new_conn = true;
            break;
        case 't':
            o.token_ttl = atol(optarg);
            break;
        case 'e':
            o.expect_file = optarg;
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        default:
            usage();
        }
    }
    server = (struct sockaddr_in){.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)o.port)};
    if (o.host == NULL || inet_pton(AF_INET, o.host, &server.sin_addr) != 1 ||
        o.clients == 0 || o.duration <= 0 || o.path[0] != '/' ||
        strlen(o.path) > 512 || o.token_ttl < 0)
        usage();
    if (o.expect_file)
        expect = read_file(o.expect_file, &expect_len);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct client *cl = calloc(o.clients, sizeof(*cl));
    struct epoll_event *evs = calloc(o.clients, sizeof(*evs));
    if (ep < 0 || cl == NULL || evs == NULL)
        die("setup");
    t_begin = now_s();
    t_measure = t_begin + o.warmup;
    t_end = t_measure + o.duration;
    for (unsigned i = 0; i < o.clients; i++) {
        cl[i].fd = -1;
        if ((cl[i].resp = malloc(RESP_MAX)) == NULL)
            die("malloc");
        op_start(&cl[i]);
    }
    /* Until every client is idle after the end, or OP_TIMEOUT_S past it. */
    for (;;) {
        int n = epoll_wait(ep, evs, (int)o.clients, 50);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        double t = now_s();
        bool busy = false;
        for (unsigned i = 0; i < o.clients; i++) {
            struct client *c = &cl[i];
            if (c->phase == IDLE) {
                if (t < t_end)
                    op_start(c); /* after a failed connect */
                continue;
            }
            if (t - c->op_start > OP_TIMEOUT_S) {
                fail(c, "no reply in %.0f s", OP_TIMEOUT_S);
                conn_close(c);
                op_start(c);
            }
            busy = busy || c->phase != IDLE;
        }
        if (!busy || t > t_end + OP_TIMEOUT_S)
            break;
    }
    qsort(st.lat_ms, st.n, sizeof(double), cmp_double);
    double rps = (double)st.n / o.duration;
    const char *mode = o.new_conn ? "new-conn" : "keep-alive";
    if (o.json)
        printf("{\"label\":\"%s\",\"path\":\"%s\",\"mode\":\"%s\","
               "\"token\":%s,\"clients\":%u,\"ops\":%zu,\"errors\":%u,"
               "\"closed\":%u,\"seconds\":%.3f,\"ops_per_s\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
               o.label, o.path, mode, o.token_ttl ? "true" : "false", o.clients,
               st.n, st.errors, st.reconnects, o.duration, rps, pct(0.5),
               pct(0.99));
    else
        printf("%-8s %-40s %-10s%s clients=%u ops=%zu errors=%u "
               "%9.1f op/s p50 %7.3f ms p99 %7.3f ms\n",
               o.label, o.path, mode, o.token_ttl ? " +token" : "", o.clients,
               st.n, st.errors, rps, pct(0.5), pct(0.99));
    for (unsigned i = 0; i < o.clients; i++) {
        conn_close(&cl[i]);
        free(cl[i].resp);
    }
    free(cl);
    free(evs);
    free(st.lat_ms);
    free(expect);
    close(ep);
    return st.errors == 0 ? 0 : 1;
}
