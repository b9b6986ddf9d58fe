/* tunnels.c: the CLC joins its clusters' routers with tunnels
 * (docs/network.md, "Tunnels between clusters"; the CC side is
 * src/cc/tunnel.c).
 *
 * Every poll, each ENABLED cluster gets ConfigureTunnels with the whole
 * list of its peers: every other cluster whose router said it has a
 * tunnel address, with that address, its subnet and its router address.
 * The answer is the cluster's own address, subnet and router, recorded in
 * cluster_tunnels for the others' lists.  The list is sent whole each
 * time, so there is no version to keep: a CC that restarted, or missed a
 * poll, has the right list after the next one.  A cluster's row stays
 * while it is registered, whatever its state, so a peer that is down is
 * not dropped from the others' tables (its instances come back with it).
 *
 * With tunnel_encryption the message also carries the cloud's tunnel
 * secret (32 random bytes made once, data_dir/tunnel.key, mode 0600),
 * from which each router's relay derives its keys (src/cc/tunnel_crypt.h);
 * it travels only over the CCs' mutual TLS.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "clc.h"
#include "log.h"
#include "soap.h"

#define MAX_CLUSTERS 64

struct tunnel_row {
    char zone[64];
    char address[16];
    char subnet[20];
    char router[16];
};

struct tunnels_ctx {
    struct clc *clc;
    struct db *db;
    struct tunnel_row rows[MAX_CLUSTERS]; /* clusters with an address */
    size_t n;
};

static int load_rows(struct tunnels_ctx *t, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        t->db,
        "SELECT t.zone, t.address, t.subnet, t.router FROM cluster_tunnels t"
        " JOIN services s ON s.kind = 'cluster' AND s.name = t.zone"
        " WHERE t.address != '' ORDER BY t.zone",
        err);
    if (st == NULL)
        return -1;
    t->n = 0;
    while (t->n < MAX_CLUSTERS && sqlite3_step(st) == SQLITE_ROW) {
        struct tunnel_row *r = &t->rows[t->n++];
        clc_col(r->zone, sizeof(r->zone), st, 0);
        clc_col(r->address, sizeof(r->address), st, 1);
        clc_col(r->subnet, sizeof(r->subnet), st, 2);
        clc_col(r->router, sizeof(r->router), st, 3);
    }
    db_stmt_done(st);
    return 0;
}

/* Records what the cluster said of itself; warns once when its subnet is
 * not the slice of the default VPC its zone was given. */
static int record(struct tunnels_ctx *t, const char *zone, const char *address,
                  const char *subnet, const char *router,
                  struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(t->db,
                               "SELECT address, subnet, router FROM"
                               " cluster_tunnels WHERE zone = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, zone, -1, SQLITE_STATIC);
    bool same = false;
    if (sqlite3_step(st) == SQLITE_ROW)
        same = strcmp((const char *)sqlite3_column_text(st, 0), address) == 0 &&
               strcmp((const char *)sqlite3_column_text(st, 1), subnet) == 0 &&
               strcmp((const char *)sqlite3_column_text(st, 2), router) == 0;
    db_stmt_done(st);
    if (same)
        return 0;
    char slice[24] = "";
    st = db_stmt(t->db, "SELECT cidr FROM zone_networks WHERE zone = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, zone, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        clc_col(slice, sizeof(slice), st, 0);
    db_stmt_done(st);
    if (*slice && strcmp(slice, subnet) != 0)
        log_warn("cluster %s hands out %s, but its default subnet is %s: "
                 "set its subnet to %s",
                 zone, subnet, slice, slice);
    if (*address)
        log_info("tunnels: cluster %s at %s (%s, router %s)", zone, address,
                 subnet, router);
    return clc_exec(t->db,
                    "INSERT INTO cluster_tunnels(zone, address, subnet, router)"
                    " VALUES(?,?,?,?) ON CONFLICT(zone) DO UPDATE SET"
                    " address = excluded.address, subnet = excluded.subnet,"
                    " router = excluded.router",
                    "recording a cluster's tunnel address", err, zone,
                    address, subnet, router, NULL);
}

static void record_answer(struct tunnels_ctx *t, const char *zone,
                          const struct xml_node *body,
                          struct koala_error **err)
{
    _cleanup_free_ char *address = xml_child_text(body, "address");
    _cleanup_free_ char *subnet = xml_child_text(body, "subnet");
    _cleanup_free_ char *router = xml_child_text(body, "router");
    if (subnet && router)
        record(t, zone, address ? str_trim(address) : "", str_trim(subnet),
               str_trim(router), err);
}

static int push_one(void *ctx, const struct service *s)
{
    struct tunnels_ctx *t = ctx;
    if (strcmp(s->state, "ENABLED") != 0)
        return 0;
    struct koala_error *err = NULL;
    struct soap_client *c = clc_cc_client(t->clc, t->db, s->name, &err);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (c == NULL)
        goto out;
    struct xml_writer *w = soap_start("ConfigureTunnels", CC_NS);
    for (size_t i = 0; i < t->n; i++) {
        const struct tunnel_row *r = &t->rows[i];
        if (strcmp(r->zone, s->name) == 0)
            continue;
        xml_start(w, "peer");
        xml_text_element(w, "zone", r->zone);
        xml_text_element(w, "address", r->address);
        xml_text_element(w, "subnet", r->subnet);
        xml_text_element(w, "router", r->router);
        xml_end(w);
    }
    if (t->clc->opt.tunnel_encryption) {
        char hex[2 * sizeof(t->clc->tunnel_secret) + 1];
        for (size_t i = 0; i < sizeof(t->clc->tunnel_secret); i++)
            snprintf(hex + 2 * i, 3, "%02x", t->clc->tunnel_secret[i]);
        xml_text_element(w, "encryption", "aes-256-gcm");
        xml_text_element(w, "secret", hex);
        OPENSSL_cleanse(hex, sizeof(hex));
    }
    size_t len;
    char *rq = soap_finish(w, &len);
    if (soap_call(c, "ConfigureTunnels", rq, len, &doc, &body, &err) == 0)
        record_answer(t, s->name, body, &err);
out:
    if (err) {
        /* A CC from before tunnels has no such operation: nothing to do. */
        if (strcmp(error_code(err), "InvalidAction") != 0)
            log_warn("tunnels: cluster %s: %s", s->name, error_message(err));
        error_free(err);
    }
    xml_doc_free(doc);
    soap_client_free(c);
    return 0;
}

void clc_tunnels_push(struct clc *clc, struct db *db)
{
    struct tunnels_ctx *t = calloc(1, sizeof(*t));
    struct koala_error *err = NULL;
    if (t == NULL)
        return;
    t->clc = clc;
    t->db = db;
    if (load_rows(t, &err) == 0)
        clc_services_each(db, "cluster", push_one, t, &err);
    if (err) {
        log_error("tunnels: %s", error_message(err));
        error_free(err);
    }
    free(t);
}

/* ---- the secret ---- */

static int read_secret(const char *path, unsigned char out[32],
                       struct koala_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1; /* errno: ENOENT makes one */
    char hex[65] = "";
    ssize_t n = read(fd, hex, 64);
    close(fd);
    for (size_t i = 0; n == 64 && i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            n = 0;
            break;
        }
        out[i] = (unsigned char)v;
    }
    OPENSSL_cleanse(hex, sizeof(hex));
    if (n != 64) {
        errno = EINVAL;
        return error_set(err, EINVAL, NULL,
                         "%s: not 64 hex digits (the tunnel secret)", path);
    }
    return 0;
}

int clc_tunnels_init(struct clc *clc, struct koala_error **err)
{
    if (!clc->opt.tunnel_encryption)
        return 0;
    _cleanup_free_ char *path = NULL, *tmp = NULL;
    if (asprintf(&path, "%s/tunnel.key", clc->data_dir) < 0 ||
        asprintf(&tmp, "%s/tunnel.key.tmp", clc->data_dir) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (mkdir(clc->data_dir, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, "data directory %s", clc->data_dir);
    if (read_secret(path, clc->tunnel_secret, err) == 0)
        return 0;
    if (errno != ENOENT)
        return *err ? -1 : error_set_errno(err, "reading %s", path);
    /* A new one, written whole before it takes the name. */
    char hex[65];
    if (RAND_bytes(clc->tunnel_secret, sizeof(clc->tunnel_secret)) != 1)
        return error_set(err, EIO, NULL, "no random bytes for the secret");
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", clc->tunnel_secret[i]);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, hex, 64) == 64 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(hex, sizeof(hex));
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return error_set_errno(err, "writing %s", path);
    }
    log_info("tunnels: a new tunnel secret in %s", path);
    return 0;
}
