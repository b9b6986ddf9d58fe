/* s3load.c: an S3 load generator.  Drives any S3 endpoint (Walrus, s3rver,
 * real S3) or a plain HTTP server (nginx serving the same bytes) with PUT or
 * GET requests from N concurrent clients on one libcurl multi handle, and
 * reports operations/s, MB/s and latency p50/p99.  A "disk" mode writes the
 * same objects straight to a directory (write, fdatasync, rename: what a
 * durable PUT costs at least) as the ceiling for PUT.
 *
 *   s3load --endpoint http://127.0.0.1:8773 --access-key AK --secret SK
 *          --bucket b --op put|get|disk --size 4K --clients 16
 *          [--duration 5] [--min-requests 4] [--objects 64] [--prefix p]
 *          [--unsigned] [--dir DIR (disk mode)] [--label NAME] [--json]
 *          [--sse s3|c]
 *
 * --sse asks for server-side encryption: s3 sends
 * x-amz-server-side-encryption: AES256 on PUT; c sends a fixed SSE-C key
 * (and its MD5) on PUT and GET alike.
 *
 * Requests are signed with SigV4 (UNSIGNED-PAYLOAD, as SDKs do over TLS)
 * unless --unsigned.  Every GET checks the status and the byte count.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "id.h"
#include "sigv4.h"

struct opts {
    const char *endpoint;
    const char *bucket;
    const char *access_key;
    const char *secret;
    const char *region;
    const char *op;
    const char *prefix;
    const char *dir;
    const char *label;
    uint64_t size;
    unsigned clients;
    double duration;
    unsigned min_requests;
    unsigned objects;
    bool unsigned_;
    bool json;
    const char *sse; /* NULL, "s3" or "c" */
};

/* --sse c: a fixed 32-byte key "0123...", base64, and its MD5, base64. */
#define SSEC_KEY_B64 "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define SSEC_MD5_B64 "hRasmdxgYDKV3nvbahU1MA=="

#define MAX_SIGNED 8

struct stats {
    double *lat_ms;
    size_t n, cap;
    uint64_t bytes;
    unsigned errors;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stats_add(struct stats *s, double ms, uint64_t bytes)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->lat_ms = realloc(s->lat_ms, s->cap * sizeof(double));
        if (s->lat_ms == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    s->lat_ms[s->n++] = ms;
    s->bytes += bytes;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const struct stats *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->lat_ms[i];
}

static void report(const struct opts *o, struct stats *s, double elapsed)
{
    qsort(s->lat_ms, s->n, sizeof(double), cmp_double);
    double ops = (double)s->n / elapsed;
    double mbs = (double)s->bytes / elapsed / 1e6;
    if (o->json)
        printf("{\"label\":\"%s\",\"op\":\"%s\",\"size\":%llu,"
               "\"clients\":%u,\"requests\":%zu,\"errors\":%u,"
               "\"seconds\":%.3f,\"ops\":%.1f,\"mbps\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
               o->label, o->op, (unsigned long long)o->size, o->clients, s->n,
               s->errors, elapsed, ops, mbs, percentile(s, 0.5),
               percentile(s, 0.99));
    else
        printf("%-8s %-4s size=%-9llu clients=%-3u requests=%-6zu "
               "errors=%-3u %9.1f op/s %9.1f MB/s p50 %8.3f ms p99 %8.3f ms\n",
               o->label, o->op, (unsigned long long)o->size, o->clients, s->n,
               s->errors, ops, mbs, percentile(s, 0.5), percentile(s, 0.99));
}

/* ---- HTTP clients on one multi handle ---- */

struct client {
    CURL *easy;
    struct curl_slist *headers;
    const struct opts *o;
    const char *payload;
    uint64_t sent;
    uint64_t received;
    double started;
    unsigned seq;
    char url[2048];
};

struct header_ctx {
    const char *names[MAX_SIGNED];
    const char *values[MAX_SIGNED];
};

static const char *header_lookup(void *ctx, const char *lname)
{
    struct header_ctx *h = ctx;
    for (int i = 0; i < MAX_SIGNED && h->names[i]; i++)
        if (strcmp(h->names[i], lname) == 0)
            return h->values[i];
    return NULL;
}

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct client *c = arg;
    uint64_t left = c->o->size - c->sent;
    size_t want = size * n < left ? size * n : (size_t)left;
    /* The payload buffer holds one object; any offset is valid. */
    memcpy(buf, c->payload + c->sent, want);
    c->sent += want;
    return want;
}

static size_t on_write(char *buf, size_t size, size_t n, void *arg)
{
    struct client *c = arg;
    c->received += size * n;
    return size * n;
}

/* Host part of the endpoint, "127.0.0.1:8773", for the signed Host header. */
static const char *endpoint_host(const char *endpoint, char *out, size_t size)
{
    const char *p = strstr(endpoint, "://");
    p = p ? p + 3 : endpoint;
    size_t n = strcspn(p, "/");
    snprintf(out, size, "%.*s", (int)n, p);
    return out;
}

static void client_start(struct client *c, CURLM *multi, unsigned key_no)
{
    const struct opts *o = c->o;
    char path[1024];
    snprintf(path, sizeof(path), "/%s/%s%u", o->bucket, o->prefix, key_no);
    snprintf(c->url, sizeof(c->url), "%s%s", o->endpoint, path);
    curl_slist_free_all(c->headers);
    c->headers = curl_slist_append(NULL, "Expect:");
    bool put = strcmp(o->op, "put") == 0;
    if (!o->unsigned_) {
        char host[256], amz_date[17], line[512];
        time_format_iso8601_basic(time(NULL), amz_date);
        endpoint_host(o->endpoint, host, sizeof(host));
        struct header_ctx h = {
            {"host", "x-amz-content-sha256", "x-amz-date", NULL},
            {host, SIGV4_UNSIGNED_PAYLOAD, amz_date, NULL}};
        char signed_list[256] = "host;x-amz-content-sha256;x-amz-date";
        int nh = 3;
        /* The SSE headers are x-amz-*: signed, as SDKs sign them. */
        if (o->sse && strcmp(o->sse, "s3") == 0 && put) {
            h.names[nh] = "x-amz-server-side-encryption";
            h.values[nh++] = "AES256";
        } else if (o->sse && strcmp(o->sse, "c") == 0) {
            h.names[nh] = "x-amz-server-side-encryption-customer-algorithm";
            h.values[nh++] = "AES256";
            h.names[nh] = "x-amz-server-side-encryption-customer-key";
            h.values[nh++] = SSEC_KEY_B64;
            h.names[nh] = "x-amz-server-side-encryption-customer-key-md5";
            h.values[nh++] = SSEC_MD5_B64;
        }
        for (int i = 3; i < nh; i++) {
            strcat(signed_list, ";");
            strcat(signed_list, h.names[i]);
            snprintf(line, sizeof(line), "%s: %s", h.names[i], h.values[i]);
            c->headers = curl_slist_append(c->headers, line);
        }
        struct sigv4_request req = {put ? "PUT" : "GET", path, "",
                                    header_lookup, &h};
        char *auth = sigv4_sign(&req, o->access_key, o->secret, o->region,
                                "s3", amz_date, signed_list,
                                SIGV4_UNSIGNED_PAYLOAD);
        if (auth == NULL) {
            fprintf(stderr, "s3load: signing failed\n");
            exit(1);
        }
        snprintf(line, sizeof(line), "Authorization: %s", auth);
        free(auth);
        c->headers = curl_slist_append(c->headers, line);
        snprintf(line, sizeof(line), "x-amz-date: %s", amz_date);
        c->headers = curl_slist_append(c->headers, line);
        c->headers = curl_slist_append(
            c->headers, "x-amz-content-sha256: " SIGV4_UNSIGNED_PAYLOAD);
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    if (put) {
        curl_easy_setopt(c->easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c->easy, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c->easy, CURLOPT_READDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)o->size);
    } else {
        curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L);
    }
    c->sent = c->received = 0;
    c->started = now_s();
    curl_multi_add_handle(multi, c->easy);
}

static int run_http(const struct opts *o, const char *payload, struct stats *st,
                    double *elapsed)
{
    CURLM *multi = curl_multi_init();
    struct client *cl = calloc(o->clients, sizeof(*cl));
    if (multi == NULL || cl == NULL)
        return -1;
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->clients);
    unsigned next_key = 0, running = 0;
    double t0 = now_s(), deadline = t0 + o->duration;
    bool put = strcmp(o->op, "put") == 0;
    for (unsigned i = 0; i < o->clients; i++) {
        cl[i].easy = curl_easy_init();
        cl[i].o = o;
        cl[i].payload = payload;
        curl_easy_setopt(cl[i].easy, CURLOPT_TCP_NODELAY, 1L);
        client_start(&cl[i], multi, next_key++ % o->objects);
        running++;
    }
    while (running > 0) {
        int still = 0;
        curl_multi_perform(multi, &still);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct client *c;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            long code = 0;
            curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
            curl_multi_remove_handle(multi, c->easy);
            double ms = (now_s() - c->started) * 1000;
            /* A PUT may be answered 201/204 (nginx's WebDAV). */
            bool ok = m->data.result == CURLE_OK &&
                      (put ? code >= 200 && code < 300
                           : code == 200 && c->received == o->size);
            if (ok)
                stats_add(st, ms, o->size);
            else if (st->errors++ < 5)
                fprintf(stderr,
                        "s3load: %s %s -> curl %d, HTTP %ld, %llu "
                        "bytes\n",
                        o->op, c->url, m->data.result, code,
                        (unsigned long long)c->received);
            double t = now_s();
            if (t < deadline ||
                st->n + st->errors + running - 1 < o->min_requests)
                client_start(c, multi, next_key++ % o->objects);
            else
                running--;
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    *elapsed = now_s() - t0;
    for (unsigned i = 0; i < o->clients; i++) {
        curl_slist_free_all(cl[i].headers);
        curl_easy_cleanup(cl[i].easy);
    }
    free(cl);
    curl_multi_cleanup(multi);
    return 0;
}

/* ---- disk mode: the ceiling for a durable PUT ---- */

struct disk_worker {
    pthread_t thread;
    const struct opts *o;
    const char *payload;
    double deadline;
    struct stats st;
    pthread_mutex_t *lock;
    unsigned *started;
};

static int write_durable(const char *dir, const char *name, const char *data,
                         uint64_t size)
{
    char tmp[4096], dst[4096];
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%lx", dir, name,
             (unsigned long)pthread_self());
    snprintf(dst, sizeof(dst), "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    uint64_t off = 0;
    while (off < size) {
        size_t chunk = size - off > (1 << 20) ? (1 << 20) : size - off;
        ssize_t n = write(fd, data + off, chunk);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (uint64_t)n;
    }
    int rc = fdatasync(fd);
    close(fd);
    if (rc < 0 || rename(tmp, dst) < 0)
        return -1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static void *disk_main(void *arg)
{
    struct disk_worker *w = arg;
    for (;;) {
        pthread_mutex_lock(w->lock);
        unsigned n = *w->started;
        bool go = now_s() < w->deadline || n < w->o->min_requests;
        if (go)
            (*w->started)++;
        pthread_mutex_unlock(w->lock);
        if (!go)
            break;
        /* Same names as the HTTP modes, so nginx can serve these files
         * as the GET ceiling. */
        char name[64];
        snprintf(name, sizeof(name), "%s%u", w->o->prefix, n % w->o->objects);
        double t = now_s();
        if (write_durable(w->o->dir, name, w->payload, w->o->size) < 0)
            w->st.errors++;
        else
            stats_add(&w->st, (now_s() - t) * 1000, w->o->size);
    }
    return NULL;
}

static int run_disk(const struct opts *o, const char *payload, struct stats *st,
                    double *elapsed)
{
    if (o->dir == NULL || (mkdir(o->dir, 0755) < 0 && errno != EEXIST)) {
        fprintf(stderr, "s3load: disk mode needs --dir\n");
        return -1;
    }
    struct disk_worker *w = calloc(o->clients, sizeof(*w));
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    unsigned started = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < o->clients; i++) {
        w[i] = (struct disk_worker){.o = o,
                                    .payload = payload,
                                    .deadline = t0 + o->duration,
                                    .lock = &lock,
                                    .started = &started};
        pthread_create(&w[i].thread, NULL, disk_main, &w[i]);
    }
    for (unsigned i = 0; i < o->clients; i++) {
        pthread_join(w[i].thread, NULL);
        for (size_t j = 0; j < w[i].st.n; j++)
            stats_add(st, w[i].st.lat_ms[j], o->size);
        st->errors += w[i].st.errors;
        free(w[i].st.lat_ms);
    }
    *elapsed = now_s() - t0;
    free(w);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: s3load --endpoint URL --bucket B --op put|get|disk "
            "--size N[K|M] --clients N\n"
            "              [--access-key AK --secret SK | --unsigned] "
            "[--region R]\n"
            "              [--duration S] [--min-requests N] [--objects N] "
            "[--prefix P]\n"
            "              [--dir DIR] [--label NAME] [--json] "
            "[--sse s3|c]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = {.region = "us-east-1",
                     .op = "get",
                     .prefix = "obj-",
                     .label = "s3",
                     .size = 4096,
                     .clients = 1,
                     .duration = 5,
                     .min_requests = 4,
                     .objects = 64,
                     .endpoint = "",
                     .bucket = "bench"};
    static const struct option lo[] = {{"endpoint", 1, NULL, 'e'},
                                       {"bucket", 1, NULL, 'b'},
                                       {"access-key", 1, NULL, 'a'},
                                       {"secret", 1, NULL, 's'},
                                       {"region", 1, NULL, 'r'},
                                       {"op", 1, NULL, 'o'},
                                       {"size", 1, NULL, 'z'},
                                       {"clients", 1, NULL, 'c'},
                                       {"duration", 1, NULL, 'd'},
                                       {"min-requests", 1, NULL, 'm'},
                                       {"objects", 1, NULL, 'n'},
                                       {"prefix", 1, NULL, 'p'},
                                       {"dir", 1, NULL, 'D'},
                                       {"label", 1, NULL, 'l'},
                                       {"unsigned", 0, NULL, 'u'},
                                       {"json", 0, NULL, 'j'},
                                       {"sse", 1, NULL, 'S'},
                                       {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'e':
            o.endpoint = optarg;
            break;
        case 'b':
            o.bucket = optarg;
            break;
        case 'a':
            o.access_key = optarg;
            break;
        case 's':
            o.secret = optarg;
            break;
        case 'r':
            o.region = optarg;
            break;
        case 'o':
            o.op = optarg;
            break;
        case 'z':
            if (str_parse_size(optarg, &o.size) < 0)
                usage();
            break;
        case 'c':
            o.clients = (unsigned)atoi(optarg);
            break;
        case 'd':
            o.duration = atof(optarg);
            break;
        case 'm':
            o.min_requests = (unsigned)atoi(optarg);
            break;
        case 'n':
            o.objects = (unsigned)atoi(optarg);
            break;
        case 'p':
            o.prefix = optarg;
            break;
        case 'D':
            o.dir = optarg;
            break;
        case 'l':
            o.label = optarg;
            break;
        case 'u':
            o.unsigned_ = true;
            break;
        case 'j':
            o.json = true;
            break;
        case 'S':
            if (strcmp(optarg, "s3") != 0 && strcmp(optarg, "c") != 0)
                usage();
            o.sse = optarg;
            break;
        default:
            usage();
        }
    }
    bool disk = strcmp(o.op, "disk") == 0;
    if (o.clients == 0 || o.objects == 0 ||
        (!disk && strcmp(o.op, "put") && strcmp(o.op, "get")) ||
        (!disk && !o.unsigned_ && (!o.access_key || !o.secret)))
        usage();
    char *payload = malloc(o.size ? o.size : 1);
    if (payload == NULL || id_random_bytes(payload, o.size) < 0) {
        perror("payload");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct stats st = {0};
    double elapsed = 0;
    int rc = disk ? run_disk(&o, payload, &st, &elapsed)
                  : run_http(&o, payload, &st, &elapsed);
    if (rc == 0)
        report(&o, &st, elapsed);
    free(st.lat_ms);
    free(payload);
    curl_global_cleanup();
    return rc == 0 && st.errors == 0 ? 0 : 1;
}
