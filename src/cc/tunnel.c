/* tunnel.c: the cluster router's VXLAN tunnels to its peers (see
 * tunnel.h and docs/network.md). */
#define LOG_MODULE "cc"
#include "tunnel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

/* Serialises configure/restore: the stored list and the kernel change
 * together. */
static pthread_mutex_t tunnel_lock = PTHREAD_MUTEX_INITIALIZER;

static bool parse_ip(const char *s, uint32_t *out)
{
    struct in_addr a;
    if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
        return false;
    *out = ntohl(a.s_addr);
    return true;
}

void cc_tunnel_mac(const char *router_ip, char out[18])
{
    uint32_t ip = 0;
    parse_ip(router_ip, &ip);
    snprintf(out, 18, "02:6b:%02x:%02x:%02x:%02x", ip >> 24, (ip >> 16) & 255,
             (ip >> 8) & 255, ip & 255);
}

int cc_tunnel_peer_check(const struct cc *cc, const struct cc_tunnel_peer *p,
                         struct koala_error **err)
{
    uint32_t addr, router;
    struct cc_subnet sn;
    struct koala_error *e = NULL;
    if (!parse_ip(p->address, &addr) || addr == 0 || (addr >> 24) == 127 ||
        (addr >> 28) >= 14)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "peer %s: '%s' is not a unicast IPv4 address",
                         p->zone, p->address);
    if (cc_subnet_parse(p->subnet, NULL, &sn, &e) < 0) {
        error_free(e);
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "peer %s: subnet '%s' is not an IPv4 CIDR with a "
                         "prefix of 8 to 30",
                         p->zone, p->subnet);
    }
    uint32_t mask = ~0u << (32 - sn.prefix);
    if (!parse_ip(p->router, &router) || (router & mask) != sn.network ||
        router == sn.network || router == sn.broadcast)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "peer %s: router '%s' is not a host of %s", p->zone,
                         p->router, p->subnet);
    const struct cc_subnet *own = &cc->net.subnet;
    unsigned shorter = own->prefix < sn.prefix ? own->prefix : sn.prefix;
    uint32_t m = ~0u << (32 - shorter);
    if ((own->network & m) == (sn.network & m))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "peer %s: subnet %s overlaps this cluster's", p->zone,
                         p->subnet);
    return 0;
}

/* ---- the stored list ---- */

static int load_peers(struct db *db, struct cc_tunnel_peer *out, size_t *n,
                      struct koala_error **err)
{
    *n = 0;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT zone, address, subnet, router FROM"
                               " tunnel_peers ORDER BY zone",
                               err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < CC_TUNNEL_MAX_PEERS) {
        struct cc_tunnel_peer *p = &out[(*n)++];
        snprintf(p->zone, sizeof(p->zone), "%s", sqlite3_column_text(st, 0));
        snprintf(p->address, sizeof(p->address), "%s",
                 sqlite3_column_text(st, 1));
        snprintf(p->subnet, sizeof(p->subnet), "%s",
                 sqlite3_column_text(st, 2));
        snprintf(p->router, sizeof(p->router), "%s",
                 sqlite3_column_text(st, 3));
    }
    db_stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(db, "reading tunnel peers", err);
    return 0;
}

static int store_peers(struct db *db, const struct cc_tunnel_peer *peers,
                       size_t n, struct koala_error **err)
{
    if (db_begin(db, err) < 0)
        return -1;
    if (db_exec(db, "DELETE FROM tunnel_peers", err) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = db_stmt(db,
                                   "INSERT INTO tunnel_peers(zone, address,"
                                   " subnet, router) VALUES(?,?,?,?)",
                                   err);
        if (st == NULL)
            goto fail;
        sqlite3_bind_text(st, 1, peers[i].zone, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, peers[i].address, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, peers[i].subnet, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, peers[i].router, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE) {
            db_error(db, "storing a tunnel peer", err);
            goto fail;
        }
    }
    return db_commit(db, err);
fail:
    db_rollback(db);
    return -1;
}

/* ---- the kernel ---- */

static bool same_peer(const struct cc_tunnel_peer *a,
                      const struct cc_tunnel_peer *b)
{
    return strcmp(a->zone, b->zone) == 0 &&
           strcmp(a->address, b->address) == 0 &&
           strcmp(a->subnet, b->subnet) == 0 &&
           strcmp(a->router, b->router) == 0;
}

static bool listed(const struct cc_tunnel_peer *p,
                   const struct cc_tunnel_peer *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (same_peer(p, &list[i]))
            return true;
    return false;
}

/* `prog [-force] -batch -` in the cluster's namespace, fed script. */
static int batch(struct cc *cc, const char *prog, bool force,
                 const struct buf *script, struct koala_error **err)
{
    if (script->len == 0)
        return 0;
    _cleanup_free_ char *bin = proc_find(prog);
    if (bin == NULL)
        return error_set(err, ENOENT, NULL,
                         "%s (iproute2) is needed for tunnels", prog);
    const char *argv[5];
    size_t i = 0;
    argv[i++] = bin;
    if (force)
        argv[i++] = "-force";
    argv[i++] = "-batch";
    argv[i++] = "-";
    argv[i] = NULL;
    return proc_run(cc->opt.netns, argv, script->data, err);
}

/* kvx0 exists, with our MAC and MTU, up. */
static int ensure_device(struct cc *cc, struct koala_error **err)
{
    char router[16], mac[18], vni[12], port[8], mtu[8];
    cc_ip_format(cc->net.subnet.router, router);
    cc_tunnel_mac(router, mac);
    snprintf(vni, sizeof(vni), "%d", CC_TUNNEL_VNI);
    snprintf(port, sizeof(port), "%d", CC_TUNNEL_PORT);
    snprintf(mtu, sizeof(mtu), "%d", 1500 - CC_TUNNEL_OVERHEAD);
    _cleanup_free_ char *ip = proc_find("ip");
    if (ip == NULL)
        return error_set(err, ENOENT, NULL,
                         "ip (iproute2) is needed for tunnels");
    const char *show[] = {ip, "link", "show", "dev", CC_TUNNEL_DEV, NULL};
    struct koala_error *probe = NULL;
    if (proc_run(cc->opt.netns, show, NULL, &probe) < 0) {
        error_free(probe);
        const char *add[] = {ip,      "link",    "add",     CC_TUNNEL_DEV,
                             "type",  "vxlan",   "id",      vni,
                             "local", cc->opt.tunnel_address, "dstport",
                             port,    "nolearning", NULL};
        if (proc_run(cc->opt.netns, add, NULL, err) < 0)
            return -1;
        log_info("tunnels: %s (VNI %s) from %s", CC_TUNNEL_DEV, vni,
                 cc->opt.tunnel_address);
    }
    const char *set[] = {ip,  "link", "set", "dev", CC_TUNNEL_DEV, "address",
                         mac, "mtu",  mtu,   "up",  NULL};
    return proc_run(cc->opt.netns, set, NULL, err);
}

/* Deletes the entries of old peers not in now, replaces those of now. */
static int apply(struct cc *cc, const struct cc_tunnel_peer *old, size_t n_old,
                 const struct cc_tunnel_peer *now, size_t n_now,
                 struct koala_error **err)
{
    _cleanup_buf_ struct buf ip_del = {0}, br_del = {0};
    _cleanup_buf_ struct buf ip_add = {0}, br_add = {0};
    char mac[18];
    for (size_t i = 0; i < n_old; i++) {
        const struct cc_tunnel_peer *p = &old[i];
        if (listed(p, now, n_now))
            continue;
        cc_tunnel_mac(p->router, mac);
        buf_printf(&ip_del, "route del %s dev %s\n", p->subnet, CC_TUNNEL_DEV);
        buf_printf(&ip_del, "neigh del %s dev %s\n", p->router, CC_TUNNEL_DEV);
        buf_printf(&br_del, "fdb del %s dev %s dst %s\n", mac, CC_TUNNEL_DEV,
                   p->address);
    }
    for (size_t i = 0; i < n_now; i++) {
        const struct cc_tunnel_peer *p = &now[i];
        cc_tunnel_mac(p->router, mac);
        buf_printf(&br_add, "fdb replace %s dev %s dst %s self permanent\n",
                   mac, CC_TUNNEL_DEV, p->address);
        buf_printf(&ip_add,
                   "neigh replace %s lladdr %s dev %s nud permanent\n",
                   p->router, mac, CC_TUNNEL_DEV);
        buf_printf(&ip_add, "route replace %s via %s dev %s onlink\n",
                   p->subnet, p->router, CC_TUNNEL_DEV);
    }
    /* Deletions may find entries already gone (-force goes on). */
    struct koala_error *gone = NULL;
    if (batch(cc, "ip", true, &ip_del, &gone) < 0 ||
        batch(cc, "bridge", true, &br_del, &gone) < 0) {
        log_info("tunnels: removing old entries: %s", error_message(gone));
        error_free(gone);
    }
    return batch(cc, "bridge", false, &br_add, err) < 0 ||
                   batch(cc, "ip", false, &ip_add, err) < 0
               ? -1
               : 0;
}

int cc_tunnel_configure(struct cc *cc, struct db *db,
                        const struct cc_tunnel_peer *peers, size_t n,
                        struct koala_error **err)
{
    struct cc_tunnel_peer *old = calloc(CC_TUNNEL_MAX_PEERS, sizeof(*old));
    if (old == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t n_old = 0;
    int rc = -1;
    pthread_mutex_lock(&tunnel_lock);
    if (load_peers(db, old, &n_old, err) < 0)
        goto out;
    bool changed = n_old != n;
    for (size_t i = 0; i < n && !changed; i++)
        changed = !listed(&peers[i], old, n_old);
    if (!changed) {
        rc = 0;
        goto out;
    }
    /* The kernel first: a crash before the list is stored leaves the old
     * list, which the next ConfigureTunnels corrects. */
    if (ensure_device(cc, err) < 0 || apply(cc, old, n_old, peers, n, err) < 0 ||
        store_peers(db, peers, n, err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (!listed(&peers[i], old, n_old))
            log_info("tunnels: peer %s at %s, %s via %s", peers[i].zone,
                     peers[i].address, peers[i].subnet, peers[i].router);
    for (size_t i = 0; i < n_old; i++)
        if (!listed(&old[i], peers, n))
            log_info("tunnels: peer %s (%s) gone", old[i].zone, old[i].subnet);
    rc = 0;
out:
    pthread_mutex_unlock(&tunnel_lock);
    free(old);
    return rc;
}

int cc_tunnel_restore(struct cc *cc, struct db *db, struct koala_error **err)
{
    if (cc->opt.tunnel_address == NULL || !cc->opt.manage_network)
        return 0;
    struct cc_tunnel_peer *peers = calloc(CC_TUNNEL_MAX_PEERS, sizeof(*peers));
    if (peers == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t n = 0;
    pthread_mutex_lock(&tunnel_lock);
    int rc = load_peers(db, peers, &n, err) < 0 || ensure_device(cc, err) < 0 ||
                     apply(cc, NULL, 0, peers, n, err) < 0
                 ? -1
                 : 0;
    pthread_mutex_unlock(&tunnel_lock);
    if (rc == 0 && n)
        log_info("tunnels: %zu peer(s) restored", n);
    free(peers);
    return rc;
}

/* ---- SOAP ---- */

static int text_into(const struct xml_node *n, const char *name, char *out,
                     size_t size, struct koala_error **err)
{
    _cleanup_free_ char *t = xml_child_text(n, name);
    const char *v = t ? str_trim(t) : "";
    if (*v == '\0' || strlen(v) >= size)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "each peer needs a %s (at most %zu characters)",
                         name, size - 1);
    snprintf(out, size, "%s", v);
    return 0;
}

void cc_op_configure_tunnels(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    struct cc_tunnel_peer *peers = calloc(CC_TUNNEL_MAX_PEERS, sizeof(*peers));
    size_t n = 0;
    struct db *db;
    if (peers == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (const struct xml_node *p = xml_next_child(r->op, NULL, "peer"); p;
         p = xml_next_child(r->op, p, "peer")) {
        if (n == CC_TUNNEL_MAX_PEERS) {
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "at most %d peers", CC_TUNNEL_MAX_PEERS);
            goto out;
        }
        struct cc_tunnel_peer *t = &peers[n];
        if (text_into(p, "zone", t->zone, sizeof(t->zone), &err) < 0 ||
            text_into(p, "address", t->address, sizeof(t->address), &err) <
                0 ||
            text_into(p, "subnet", t->subnet, sizeof(t->subnet), &err) < 0 ||
            text_into(p, "router", t->router, sizeof(t->router), &err) < 0 ||
            cc_tunnel_peer_check(cc, t, &err) < 0)
            goto out;
        for (size_t i = 0; i < n; i++)
            if (strcmp(peers[i].zone, t->zone) == 0) {
                error_set(&err, EINVAL, "InvalidParameterValue",
                          "peer %s is listed twice", t->zone);
                goto out;
            }
        n++;
    }
    if (n && (cc->opt.tunnel_address == NULL || !cc->opt.manage_network)) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "cluster %s has no tunnel_address: it cannot join tunnels",
                  cc->opt.name);
        goto out;
    }
    if ((db = cc_req_db(r, &err)) == NULL)
        goto out;
    if (cc->opt.tunnel_address && cc->opt.manage_network &&
        cc_tunnel_configure(cc, db, peers, n, &err) < 0)
        goto out;
    char subnet[24], router[16];
    cc_ip_format(cc->net.subnet.network, subnet);
    snprintf(subnet + strlen(subnet), sizeof(subnet) - strlen(subnet), "/%u",
             cc->net.subnet.prefix);
    cc_ip_format(cc->net.subnet.router, router);
    struct xml_writer *w = soap_start("ConfigureTunnelsResponse", CC_NS);
    xml_text_element(w, "address",
                     cc->opt.tunnel_address && cc->opt.manage_network
                         ? cc->opt.tunnel_address
                         : "");
    xml_text_element(w, "subnet", subnet);
    xml_text_element(w, "router", router);
    cc_reply(r, w);
out:
    free(peers);
    if (err)
        cc_fail(r, err);
}
