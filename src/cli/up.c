/* up.c: `koala up` and `koala down`: an all-in-one cloud on this host.
 *
 * `koala up` initialises a cloud in the data directory (if it is new),
 * registers one Walrus, one cluster (zone "zone-a"), one node and the zone's
 * storage controller (koala-sc "sc1": EBS volumes, exported to the node
 * over a unix socket, which the node's namespace shares), creates
 * the network namespaces the instances live in (so nothing touches the
 * host's own network: "koala-zone-a" holds the cluster's router, bridge
 * klan0; "koala-nc1" the node's bridge kbr0, wired to klan0 by a veth
 * pair; the host reaches the instances through a veth "koala-host"
 * (100.64.111.1/30) into the cluster namespace and a route to the cluster
 * subnet, so that `ssh admin@10.111.0.5` works from the host; the same veth
 * is the router's uplink, holding the cluster's public pool PUBLIC_POOL,
 * routed from the host too, so that an elastic IP reaches its instance
 * from the host), writes each
 * daemon's configuration, starts koala-walrus, koala-clc, koala-cc,
 * koala-nc and koala-sc, waits until all are ENABLED, uploads the test guest image (kernel,
 * ramdisk, root disk) into Walrus, registers it, and prints the endpoints and
 * credentials.  Everything it starts is recorded in DIR/run (PIDs, namespaces)
 * so that `koala down` stops exactly that: the instances' QEMU processes, then
 * the daemons, then the namespaces.
 */
#define LOG_MODULE "koala"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "clc.h"
#include "cli.h"
#include "http_client.h"
#include "sigv4.h"

#define ZONE "zone-a"
#define NODE "nc1"
#define CLUSTER_NS "koala-" ZONE
#define NODE_NS "koala-" NODE
#define SUBNET "10.111.0.0/16"
#define HOST_LINK "koala-host"   /* the host's end of its veth */
#define HOST_ADDR "100.64.111.1" /* ... and its address */
#define HOST_PEER "100.64.111.2" /* the cluster namespace's end */
/* The cluster's public addresses (elastic IPs), on the cluster's end of
 * the host's veth, its router's uplink. */
#define PUBLIC_POOL "100.64.112.16/28"

struct up {
    const char *dir;
    char bindir[4096];
    int port_walrus, port_clc, port_clc_soap, port_cc, port_nc, port_sc;
    char key[64], secret[64];
};

/* Started in this order (up) and stopped in the reverse one (down): the
 * SC before Walrus, which holds its snapshots. */
static const char *const daemons[] = {"walrus", "clc", "cc", "nc", "sc"};

/* ---- small helpers ---- */

static int run_cmd(const char *const *argv, bool quiet)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

#define IP(...) run_cmd((const char *const[]){"ip", __VA_ARGS__, NULL}, true)

static int write_file(const char *path, const char *text,
                      struct koala_error **err)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return error_set_errno(err, "%s", tmp);
    fputs(text, f);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    fclose(f);
    if (!ok || rename(tmp, path) < 0)
        return error_set_errno(err, "writing %s", path);
    return 0;
}

/* The PID in DIR/run/NAME.pid, or in DIR/NAME.pid when NAME has a
 * slash. */
static pid_t read_pid(const char *dir, const char *name)
{
    char path[4600], buf[32] = "";
    snprintf(path, sizeof(path),
             strchr(name, '/') ? "%s/%s.pid" : "%s/run/%s.pid", dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) == NULL)
        buf[0] = '\0';
    fclose(f);
    return (pid_t)atol(buf);
}

/* Is pid alive and running a program whose command line contains what?
 * (A PID file can outlive its process, and PIDs are reused.) */
static bool pid_runs(pid_t pid, const char *what)
{
    if (pid <= 0 || kill(pid, 0) < 0)
        return false;
    char path[64], cmd[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
    close(fd);
    if (n <= 0)
        return false;
    for (ssize_t i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n] = '\0';
    return strstr(cmd, what) != NULL;
}

/* Finds koala-NAME next to this program, in the build tree's layout, or
 * on PATH. */
static int find_daemon(const struct up *u, const char *name, char *out,
                       size_t size)
{
    snprintf(out, size, "%s/koala-%s", u->bindir, name);
    if (access(out, X_OK) == 0)
        return 0;
    snprintf(out, size, "%s/../%s/koala-%s", u->bindir, name, name);
    if (access(out, X_OK) == 0)
        return 0;
    const char *path = getenv("PATH");
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path ? path : "/usr/bin:/usr/sbin");
    for (char *d = strtok(copy, ":"); d; d = strtok(NULL, ":")) {
        snprintf(out, size, "%s/koala-%s", d, name);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

static int wait_port(int port, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
        struct http_client_request rq = {
            .method = "HEAD",
            .url = url,
            .sink = {.kind = HTTP_CLIENT_SINK_DISCARD},
            .connect_timeout_ms = 200,
            .timeout_ms = 1000,
        };
        struct http_client_response resp = {0};
        struct koala_error *err = NULL;
        /* Any answer (even a TLS failure) means the port is open. */
        int rc = http_client_do(NULL, &rq, &resp, &err);
        bool open_ = rc == 0 || (err && err->errnum != ECONNREFUSED);
        error_free(err);
        http_client_response_free(&resp);
        if (open_)
            return 0;
        usleep(100 * 1000);
    }
    return -1;
}

/* ---- networks ---- */

static int networks(const struct up *u, struct koala_error **err)
{
    char list[4200];
    snprintf(list, sizeof(list), "%s/run/netns", u->dir);
    /* Re-running up keeps namespaces that exist. */
    if (access("/run/netns/" CLUSTER_NS, F_OK) != 0) {
        if (IP("netns", "add", CLUSTER_NS) < 0)
            return error_set(err, EPERM, NULL,
                             "cannot create network namespace " CLUSTER_NS
                             " (koala up needs root)");
        IP("-n", CLUSTER_NS, "link", "set", "lo", "up");
        IP("-n", CLUSTER_NS, "link", "add", "klan0", "type", "bridge");
        IP("-n", CLUSTER_NS, "link", "set", "klan0", "up");
    }
    if (access("/run/netns/" NODE_NS, F_OK) != 0) {
        if (IP("netns", "add", NODE_NS) < 0)
            return error_set(err, EPERM, NULL,
                             "cannot create network namespace " NODE_NS);
        IP("-n", NODE_NS, "link", "set", "lo", "up");
        IP("-n", NODE_NS, "link", "add", "kbr0", "type", "bridge");
        IP("-n", NODE_NS, "link", "set", "kbr0", "up");
        IP("-n", NODE_NS, "link", "add", "uplink", "type", "veth", "peer",
           "name", "to-" NODE, "netns", CLUSTER_NS);
        IP("-n", NODE_NS, "link", "set", "uplink", "master", "kbr0", "up");
        IP("-n", CLUSTER_NS, "link", "set", "to-" NODE, "master", "klan0",
           "up");
    }
    /* The host's way in: its end of a veth in the cluster namespace and a
     * route to the subnet through the router (going with the namespace). */
    if (access("/sys/class/net/" HOST_LINK, F_OK) != 0) {
        if (IP("link", "add", HOST_LINK, "type", "veth", "peer", "name",
               "to-host", "netns", CLUSTER_NS) < 0 ||
            IP("addr", "replace", HOST_ADDR "/30", "dev", HOST_LINK) < 0 ||
            IP("link", "set", HOST_LINK, "up") < 0 ||
            IP("-n", CLUSTER_NS, "addr", "replace", HOST_PEER "/30", "dev",
               "to-host") < 0 ||
            IP("-n", CLUSTER_NS, "link", "set", "to-host", "up") < 0)
            return error_set(err, EIO, NULL,
                             "cannot wire the host to the cluster network");
    }
    if (IP("route", "replace", SUBNET, "via", HOST_PEER, "dev", HOST_LINK) < 0)
        return error_set(err, EIO, NULL,
                         "cannot route " SUBNET " to the cluster network");
    if (IP("route", "replace", PUBLIC_POOL, "via", HOST_PEER, "dev",
           HOST_LINK) < 0)
        return error_set(err, EIO, NULL,
                         "cannot route " PUBLIC_POOL " to the cluster network");
    return write_file(list, CLUSTER_NS "\n" NODE_NS "\n", err);
}

/* ---- configurations and daemons ---- */

static int configs(const struct up *u, struct koala_error **err)
{
    const char *d = u->dir;
    char path[4200], text[8192];
    snprintf(path, sizeof(path), "%s/etc/walrus.conf", d);
    snprintf(text, sizeof(text),
             "[walrus]\nlisten = 127.0.0.1:%d\ndata_dir = %s/walrus\n"
             "clc_endpoint = https://127.0.0.1:%d/\nca = %s/ca/ca.pem\n"
             "clc_cert = %s/certs/walrus-w1.pem\n"
             "clc_key = %s/certs/walrus-w1.key\n"
             /* the region of the credentials koala up prints, so that
              * aws s3 mb's LocationConstraint is this endpoint's own */
             "region = koala-1\n",
             u->port_walrus, d, u->port_clc_soap, d, d, d);
    if (write_file(path, text, err) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/etc/clc.conf", d);
    snprintf(text, sizeof(text),
             "[clc]\nlisten = 127.0.0.1:%d\nsoap_listen = 127.0.0.1:%d\n"
             "data_dir = %s/clc\ntls_cert = %s/certs/clc.pem\n"
             "tls_key = %s/certs/clc.key\nca = %s/ca/ca.pem\n"
             "region = koala-1\n",
             u->port_clc, u->port_clc_soap, d, d, d, d);
    if (write_file(path, text, err) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/etc/cc.conf", d);
    snprintf(text, sizeof(text),
             "[cc]\nlisten = 127.0.0.1:%d\ndata_dir = %s/cc\nname = " ZONE
             "\ntls_cert = %s/certs/cluster-" ZONE ".pem\n"
             "tls_key = %s/certs/cluster-" ZONE ".key\nca = %s/ca/ca.pem\n"
             "identity_cert = %s/certs/identity-" ZONE ".pem\n"
             "identity_key = %s/certs/identity-" ZONE ".key\n"
             "region = koala-1\n"
             "clc_endpoint = https://127.0.0.1:%d/\nnetns = " CLUSTER_NS
             "\nbridge = klan0\nsubnet = " SUBNET "\n"
             "uplink = to-host\npublic_ips = " PUBLIC_POOL "\n",
             u->port_cc, d, d, d, d, d, d, u->port_clc_soap);
    if (write_file(path, text, err) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/etc/nc.conf", d);
    snprintf(text, sizeof(text),
             "[nc]\nlisten = 127.0.0.1:%d\ndata_dir = %s/nc\nname = " NODE
             "\ntls_cert = %s/certs/node-" NODE ".pem\n"
             "tls_key = %s/certs/node-" NODE ".key\nca = %s/ca/ca.pem\n"
             "cc_endpoint = https://127.0.0.1:%d/\nnetns = " NODE_NS
             "\nbridge = kbr0\nhypervisor = auto\n",
             u->port_nc, d, d, d, d, u->port_cc);
    if (write_file(path, text, err) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/etc/sc.conf", d);
    snprintf(text, sizeof(text),
             "[sc]\nlisten = 127.0.0.1:%d\ndata_dir = %s/sc\nname = sc1\n"
             "zone = " ZONE "\ntls_cert = %s/certs/sc-sc1.pem\n"
             "tls_key = %s/certs/sc-sc1.key\nca = %s/ca/ca.pem\n"
             "capacity_gb = 100\n"
             /* the node's namespace has no route to the host, but shares
              * its file system */
             "export_transport = unix\n"
             "walrus_endpoint = http://127.0.0.1:%d\n"
             "walrus_credentials = %s/certs/koala-storage.credentials\n"
             "region = koala-1\n",
             u->port_sc, d, d, d, d, u->port_walrus, d);
    return write_file(path, text, err);
}

static int start_daemon(const struct up *u, const char *name, int port,
                        struct koala_error **err)
{
    pid_t old = read_pid(u->dir, name);
    char prog[4200];
    if (find_daemon(u, name, prog, sizeof(prog)) < 0)
        return error_set(err, ENOENT, NULL, "koala-%s not found", name);
    if (pid_runs(old, "koala-")) {
        printf("  %-7s already running (pid %d)\n", name, (int)old);
        return 0;
    }
    char conf[4200], log[4200], pidf[4200];
    snprintf(conf, sizeof(conf), "%s/etc/%s.conf", u->dir, name);
    snprintf(log, sizeof(log), "%s/log/%s.log", u->dir, name);
    snprintf(pidf, sizeof(pidf), "%s/run/%s.pid", u->dir, name);
    pid_t pid = fork();
    if (pid < 0)
        return error_set_errno(err, "fork");
    if (pid == 0) {
        setsid(); /* outlives this command; koala down stops it */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        execl(prog, prog, "--config", conf, (char *)NULL);
        _exit(127);
    }
    char text[32];
    snprintf(text, sizeof(text), "%d\n", (int)pid);
    if (write_file(pidf, text, err) < 0)
        return -1;
    if (wait_port(port, 30) < 0 || !pid_runs(pid, "koala-"))
        return error_set(err, EIO, NULL, "koala-%s did not start (see %s)",
                         name, log);
    printf("  %-7s started (pid %d, log %s)\n", name, (int)pid, log);
    return 0;
}

struct enabled_ctx {
    int total, enabled;
};

static int count_enabled(void *ctx, const struct service *s)
{
    struct enabled_ctx *c = ctx;
    c->total++;
    c->enabled += strcmp(s->state, "ENABLED") == 0;
    return 0;
}

static int wait_enabled(const struct up *u, int seconds,
                        struct koala_error **err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/clc", u->dir);
    struct db_pool *pool = clc_open_db(path, 1, err);
    if (pool == NULL)
        return -1;
    int rc = -1;
    for (int i = 0; i < seconds * 5 && rc < 0; i++) {
        struct db *db = db_pool_get(pool, err);
        struct enabled_ctx c = {0};
        if (db && clc_services_each(db, NULL, count_enabled, &c, err) == 0 &&
            c.total > 0 && c.enabled == c.total)
            rc = 0;
        db_pool_put(pool, db);
        if (rc < 0)
            usleep(200 * 1000);
    }
    db_pool_free(pool);
    if (rc < 0 && (err == NULL || *err == NULL))
        error_set(err, ETIMEDOUT, NULL,
                  "the components did not all become ENABLED in %d s "
                  "(see `koala services`)",
                  seconds);
    return rc;
}

/* ---- the test image, through the real APIs ---- */

struct hdrs {
    const char *names[6];
    const char *values[6];
};

static const char *hdr_lookup(void *ctx, const char *lname)
{
    struct hdrs *h = ctx;
    for (int i = 0; i < 6 && h->names[i]; i++)
        if (strcmp(h->names[i], lname) == 0)
            return h->values[i];
    return NULL;
}

/* PUT path (from fd, or an empty body) to Walrus, signed as the admin. */
static int s3_put(const struct up *u, const char *path, int fd, uint64_t len,
                  struct koala_error **err)
{
    char host[64], amz[17], url[4200], auth_h[600], date_h[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", u->port_walrus);
    time_format_iso8601_basic(time(NULL), amz);
    struct hdrs h = {{"host", "x-amz-content-sha256", "x-amz-date", NULL},
                     {host, SIGV4_UNSIGNED_PAYLOAD, amz, NULL}};
    struct sigv4_request rq = {"PUT", path, "", hdr_lookup, &h, NULL};
    char *auth = sigv4_sign(&rq, u->key, u->secret, "us-east-1", "s3", amz,
                            "host;x-amz-content-sha256;x-amz-date",
                            SIGV4_UNSIGNED_PAYLOAD);
    if (auth == NULL)
        return error_set(err, ENOMEM, NULL, "cannot sign");
    snprintf(auth_h, sizeof(auth_h), "Authorization: %s", auth);
    free(auth);
    snprintf(date_h, sizeof(date_h), "x-amz-date: %s", amz);
    snprintf(url, sizeof(url), "http://%s%s", host, path);
    const char *headers[] = {auth_h, date_h,
                             "x-amz-content-sha256: " SIGV4_UNSIGNED_PAYLOAD,
                             "Expect:", NULL};
    struct http_client_request hr = {
        .method = "PUT",
        .url = url,
        .headers = headers,
        .body = fd >= 0 ? (struct http_client_body){.kind = HTTP_CLIENT_BODY_FD,
                                                    .fd = fd,
                                                    .len = len}
                        : (struct http_client_body){0},
    };
    struct http_client_response resp = {0};
    int rc = http_client_do(NULL, &hr, &resp, err);
    if (rc == 0 && resp.status != 200 &&
        !(resp.status == 409 && strstr(resp.body.data ? resp.body.data : "",
                                       "BucketAlreadyOwnedByYou")))
        rc = error_set(err, EIO, NULL, "PUT %s: HTTP %ld %s", path, resp.status,
                       resp.body.data ? resp.body.data : "");
    http_client_response_free(&resp);
    return rc;
}

/* An EC2 action as the admin; *id receives the first <imageId>, if any. */
static int ec2_call(const struct up *u, const char *form, char *id,
                    size_t id_size, struct koala_error **err)
{
    char host[64], amz[17], url[128], auth_h[600], date_h[64], hash[65];
    snprintf(host, sizeof(host), "127.0.0.1:%d", u->port_clc);
    time_format_iso8601_basic(time(NULL), amz);
    checksum_sha256_hex(form, strlen(form), hash);
    struct hdrs h = {{"content-type", "host", "x-amz-date", NULL},
                     {"application/x-www-form-urlencoded", host, amz, NULL}};
    struct sigv4_request rq = {"POST", "/", "", hdr_lookup, &h, NULL};
    char *auth = sigv4_sign(&rq, u->key, u->secret, "koala-1", "ec2", amz,
                            "content-type;host;x-amz-date", hash);
    if (auth == NULL)
        return error_set(err, ENOMEM, NULL, "cannot sign");
    snprintf(auth_h, sizeof(auth_h), "Authorization: %s", auth);
    free(auth);
    snprintf(date_h, sizeof(date_h), "x-amz-date: %s", amz);
    snprintf(url, sizeof(url), "http://%s/", host);
    const char *headers[] = {auth_h, date_h,
                             "Content-Type: application/x-www-form-urlencoded",
                             NULL};
    struct http_client_request hr = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = {.kind = HTTP_CLIENT_BODY_MEMORY,
                 .data = form,
                 .len = strlen(form)},
    };
    struct http_client_response resp = {0};
    int rc = http_client_do(NULL, &hr, &resp, err);
    const char *body = resp.body.data ? resp.body.data : "";
    if (rc == 0 && resp.status != 200)
        rc = error_set(err, EIO, NULL, "EC2: HTTP %ld %s", resp.status, body);
    const char *p = rc == 0 ? strstr(body, "<imageId>") : NULL;
    if (id && p)
        snprintf(id, id_size, "%.*s", (int)strcspn(p + 9, "<"), p + 9);
    http_client_response_free(&resp);
    return rc;
}

static int upload(const struct up *u, const char *file, const char *key,
                  struct koala_error **err)
{
    char path[256];
    snprintf(path, sizeof(path), "/koala-images/%s", key);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return error_set_errno(err, "%s", file);
    }
    int rc = s3_put(u, path, fd, (uint64_t)st.st_size, err);
    close(fd);
    return rc;
}

/* Registers the image once: an existing registration (by name) is kept. */
static int register_image(const struct up *u, const char *form, char *id,
                          size_t size, const char *name,
                          struct koala_error **err)
{
    struct koala_error *e = NULL;
    if (ec2_call(u, form, id, size, &e) == 0)
        return 0;
    if (strstr(error_message(e), "InvalidAMIName.Duplicate") == NULL) {
        *err = e;
        return -1;
    }
    error_free(e);
    char q[256];
    snprintf(q, sizeof(q),
             "Action=DescribeImages&Version=2016-11-15&Owner.1=self&"
             "Filter.1.Name=name&Filter.1.Value.1=%s",
             name);
    return ec2_call(u, q, id, size, err);
}

/* A guest of tests/images (vmlinuz, initrd.img, root.img in dir) uploaded
 * to koala-images (under folder/ unless folder is "") and registered as
 * NAME-kernel, NAME-ramdisk and NAME, the machine image booted with them. */
static int guest_image(const struct up *u, const char *dir, const char *folder,
                       const char *name, char *ami, size_t size,
                       struct koala_error **err)
{
    static const char *const files[] = {"vmlinuz", "initrd.img", "root.img"};
    char ids[2][32] = {"", ""}, file[4200], key[128], loc[160], form[512],
                            n[96];
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        snprintf(file, sizeof(file), "%s/%s", dir, files[i]);
        snprintf(key, sizeof(key), "%s%s%s", folder, *folder ? "/" : "",
                 files[i]);
        /* ImageLocation, form-encoded: koala-images%2F[folder%2F]file */
        snprintf(loc, sizeof(loc), "koala-images%%2F%s%s%s", folder,
                 *folder ? "%2F" : "", files[i]);
        if (upload(u, file, key, err) < 0)
            return -1;
        if (i == 2)
            break;
        snprintf(n, sizeof(n), "%s-%s", name, i == 0 ? "kernel" : "ramdisk");
        snprintf(form, sizeof(form),
                 "Action=RegisterImage&Version=2016-11-15&Name=%s&"
                 "ImageLocation=%s",
                 n, loc);
        if (register_image(u, form, ids[i], sizeof(ids[i]), n, err) < 0)
            return -1;
    }
    snprintf(form, sizeof(form),
             "Action=RegisterImage&Version=2016-11-15&Name=%s&"
             "ImageLocation=%s&KernelId=%s&RamdiskId=%s",
             name, loc, ids[0], ids[1]);
    return register_image(u, form, ami, size, name, err);
}

/* The test guest, and the Debian cloud guest when it was built
 * (DIR/debian). */
static int images(const struct up *u, const char *dir, char *ami, size_t size,
                  char *debian, size_t dsize, struct koala_error **err)
{
    if (s3_put(u, "/koala-images", -1, 0, err) < 0 ||
        guest_image(u, dir, "", "koala-test", ami, size, err) < 0)
        return -1;
    char deb[4200];
    snprintf(deb, sizeof(deb), "%s/debian/root.img", dir);
    if (access(deb, R_OK) != 0)
        return 0;
    snprintf(deb, sizeof(deb), "%s/debian", dir);
    return guest_image(u, deb, "debian", "debian-12", debian, dsize, err);
}

/* ---- up / down ---- */

static int read_credentials(struct up *u, struct koala_error **err)
{
    char path[4200], line[256];
    snprintf(path, sizeof(path), "%s/credentials", u->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return error_set_errno(err, "%s", path);
    while (fgets(line, sizeof(line), f)) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        const char *l = line;
        if (str_has_prefix(l, "export "))
            l += 7;
        if (str_has_prefix(l, "AWS_ACCESS_KEY_ID="))
            snprintf(u->key, sizeof(u->key), "%s", l + 18);
        else if (str_has_prefix(l, "AWS_SECRET_ACCESS_KEY="))
            snprintf(u->secret, sizeof(u->secret), "%s", l + 22);
    }
    fclose(f);
    return *u->key && *u->secret
               ? 0
               : error_set(err, EINVAL, NULL, "%s holds no keys", path);
}

static int init_once(struct up *u, struct koala_error **err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/credentials", u->dir);
    if (access(path, F_OK) != 0) {
        /* cli_init prints the admin's keys: keep them in the file. */
        fflush(stdout);
        int saved = dup(1);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || saved < 0)
            return error_set_errno(err, "%s", path);
        dup2(fd, 1);
        close(fd);
        int rc = cli_init(u->dir, "admin", err);
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
        if (rc < 0) {
            unlink(path);
            return -1;
        }
    }
    if (read_credentials(u, err) < 0)
        return -1;
    /* In a form a shell can source. */
    char text[512];
    snprintf(text, sizeof(text),
             "# Koala all-in-one: `. %s` before using aws-cli or boto3.\n"
             "export AWS_ACCESS_KEY_ID=%s\n"
             "export AWS_SECRET_ACCESS_KEY=%s\n"
             "export AWS_DEFAULT_REGION=koala-1\n",
             path, u->key, u->secret);
    if (write_file(path, text, err) < 0 || chmod(path, 0600) < 0)
        return err && *err ? -1 : error_set_errno(err, "chmod %s", path);
    char ep[128];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", u->port_walrus);
    if (cli_register_quiet(u->dir, "walrus", "w1", ep, NULL, err) < 0)
        return -1;
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d/", u->port_cc);
    if (cli_register_quiet(u->dir, "cluster", ZONE, ep, NULL, err) < 0)
        return -1;
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d/", u->port_nc);
    if (cli_register_quiet(u->dir, "node", NODE, ep, ZONE, err) < 0)
        return -1;
    snprintf(ep, sizeof(ep), "https://127.0.0.1:%d/", u->port_sc);
    return cli_register_quiet(u->dir, "sc", "sc1", ep, ZONE, err);
}

static int mkdir_in(const char *dir, const char *sub, struct koala_error **err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", path);
    return 0;
}

static void set_bindir(struct up *u)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        snprintf(exe, sizeof(exe), "/usr/bin/koala");
    else
        exe[n] = '\0';
    snprintf(u->bindir, sizeof(u->bindir), "%s", dirname(exe));
}

int cli_up(const char *dir, const char *image_dir, struct koala_error **err)
{
    struct up u = {.dir = dir,
                   .port_walrus = 8779,
                   .port_clc = 8773,
                   .port_clc_soap = 8777,
                   .port_cc = 8774,
                   .port_nc = 8775,
                   .port_sc = 8776};
    set_bindir(&u);
    if ((mkdir(dir, 0750) < 0 && errno != EEXIST) ||
        mkdir_in(dir, "etc", err) < 0 || mkdir_in(dir, "run", err) < 0 ||
        mkdir_in(dir, "log", err) < 0)
        return err && *err ? -1 : error_set_errno(err, "mkdir %s", dir);
    /* The daemons' configurations name absolute paths. */
    char abs[4096];
    if (realpath(dir, abs) == NULL)
        return error_set_errno(err, "%s", dir);
    u.dir = dir = abs;
    printf("Koala all-in-one in %s\n", dir);
    if (init_once(&u, err) < 0 || networks(&u, err) < 0 || configs(&u, err) < 0)
        return -1;
    int ports[] = {u.port_clc, u.port_walrus, u.port_cc, u.port_nc,
                   u.port_sc};
    const char *order[] = {"clc", "walrus", "cc", "nc", "sc"};
    for (size_t i = 0; i < ARRAY_SIZE(order); i++)
        if (start_daemon(&u, order[i], ports[i], err) < 0)
            return -1;
    if (wait_enabled(&u, 60, err) < 0)
        return -1;
    char ami[32] = "", debian[32] = "";
    if (image_dir && images(&u, image_dir, ami, sizeof(ami), debian,
                            sizeof(debian), err) < 0)
        return -1;
    printf("\nKoala is up.\n"
           "  EC2 (CLC):     http://127.0.0.1:%d   region koala-1, zone " ZONE
           "\n"
           "  S3 (Walrus):   http://127.0.0.1:%d\n"
           "  EBS (SC):      https://127.0.0.1:%d (zone " ZONE ", 100 GiB)\n"
           "  credentials:   %s/credentials\n"
           "  logs:          %s/log/\n",
           u.port_clc, u.port_walrus, u.port_sc, dir, dir);
    if (*ami)
        printf("  test image:    %s (busybox: kernel + ramdisk + root disk)\n",
               ami);
    if (*debian)
        printf("  Debian 12:     %s (cloud-init; log in as admin)\n", debian);
    printf("\nUse it with aws-cli:\n"
           "  export AWS_ACCESS_KEY_ID=%s\n"
           "  export AWS_SECRET_ACCESS_KEY=%s\n"
           "  export AWS_DEFAULT_REGION=koala-1\n"
           "  aws --endpoint-url http://127.0.0.1:%d ec2 describe-images\n"
           "  aws --endpoint-url http://127.0.0.1:%d s3 ls\n",
           u.key, u.secret, u.port_clc, u.port_walrus);
    if (*debian)
        printf("\nLaunch an instance and log into it:\n"
               "  EC2=\"aws --endpoint-url http://127.0.0.1:%d ec2\"\n"
               "  $EC2 create-key-pair --key-name mykey --query KeyMaterial "
               "--output text > mykey.pem && chmod 600 mykey.pem\n"
               "  $EC2 authorize-security-group-ingress --group-name default "
               "--protocol tcp --port 22 --cidr " HOST_ADDR "/32\n"
               "  printf '#!/bin/sh\\necho hello > /tmp/hello\\n' > setup.sh\n"
               "  id=$($EC2 run-instances --image-id %s --instance-type "
               "t2.micro --key-name mykey --user-data file://setup.sh "
               "--query 'Instances[0].InstanceId' --output text)\n"
               "  $EC2 wait instance-status-ok --instance-ids $id\n"
               "  ip=$($EC2 describe-instances --instance-ids $id --query "
               "'Reservations[0].Instances[0].PrivateIpAddress' --output "
               "text)\n"
               "  ssh -i mykey.pem admin@$ip\n",
               u.port_clc, debian);
    else if (*ami)
        printf("  aws --endpoint-url http://127.0.0.1:%d ec2 run-instances "
               "--image-id %s --instance-type t2.micro\n",
               u.port_clc, ami);
    printf("Instances are on %s, routed from this host (and inside network "
           "namespace " CLUSTER_NS ").\n"
           "Elastic IPs come from " PUBLIC_POOL ", also routed from this "
           "host:\n"
           "  aws --endpoint-url http://127.0.0.1:%d ec2 allocate-address\n"
           "Stop it with: koala down --data-dir %s\n",
           SUBNET, u.port_clc, dir);
    return 0;
}

/* Stops a recorded process: SIGTERM, then SIGKILL after `wait` seconds. */
static void stop_pid(pid_t pid, const char *what, int wait)
{
    if (!pid_runs(pid, what))
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < wait * 10 && pid_runs(pid, what); i++)
        usleep(100 * 1000);
    if (pid_runs(pid, what))
        kill(pid, SIGKILL);
}

int cli_down(const char *dir, struct koala_error **err)
{
    /* The instances first: their QEMU processes outlive koala-nc by design
     * (it re-adopts them), so they are stopped here, by the PIDs the NC
     * recorded. */
    char inst[4200];
    snprintf(inst, sizeof(inst), "%s/nc/instances", dir);
    DIR *d = opendir(inst);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4400];
        snprintf(sub, sizeof(sub), "nc/instances/%s/qemu", e->d_name);
        stop_pid(read_pid(dir, sub), "qemu", 10);
    }
    if (d)
        closedir(d);
    for (int i = (int)ARRAY_SIZE(daemons) - 1; i >= 0; i--) {
        pid_t pid = read_pid(dir, daemons[i]);
        if (pid_runs(pid, "koala-")) {
            stop_pid(pid, "koala-", 30);
            printf("  %-7s stopped\n", daemons[i]);
        }
        char path[4200];
        snprintf(path, sizeof(path), "%s/run/%s.pid", dir, daemons[i]);
        unlink(path);
    }
    char list[4200], line[256];
    snprintf(list, sizeof(list), "%s/run/netns", dir);
    FILE *f = fopen(list, "r");
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (*line && IP("netns", "del", line) == 0)
            printf("  netns   %s deleted\n", line);
    }
    if (f) {
        fclose(f);
        unlink(list);
    }
    (void)err;
    return 0;
}
