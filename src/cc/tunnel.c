/* tunnel.c: the cluster router's VXLAN tunnels to its peers (see
 * tunnel.h and docs/network.md). */
#define LOG_MODULE "cc"
#include "tunnel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cc.h"
#include "log.h"
#include "soap.h"
#include "tunnel_crypt.h"

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

/* ---- the stored list and secret ---- */

/* What the tunnels are: the peers, and the cloud's secret when they are
 * encrypted. */
struct tunnel_conf {
    struct cc_tunnel_peer peers[CC_TUNNEL_MAX_PEERS];
    size_t n;
    bool encrypt;
    uint8_t secret[TUNNEL_SECRET_BYTES];
};

static int hex_secret(const char *hex, uint8_t out[TUNNEL_SECRET_BYTES])
{
    if (strlen(hex) != 2 * TUNNEL_SECRET_BYTES)
        return -1;
    for (size_t i = 0; i < TUNNEL_SECRET_BYTES; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 ||
            !strchr("0123456789abcdefABCDEF", hex[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", hex[2 * i + 1]))
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static int load_conf(struct db *db, struct tunnel_conf *c,
                     struct koala_error **err)
{
    c->n = 0;
    c->encrypt = false;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT zone, address, subnet, router FROM"
                               " tunnel_peers ORDER BY zone",
                               err);
    if (st == NULL)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && c->n < CC_TUNNEL_MAX_PEERS) {
        struct cc_tunnel_peer *p = &c->peers[c->n++];
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
    st = db_stmt(db, "SELECT secret FROM tunnel_config WHERE id = 1", err);
    if (st == NULL)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *hex = (const char *)sqlite3_column_text(st, 0);
        c->encrypt = hex && *hex && hex_secret(hex, c->secret) == 0;
    }
    db_stmt_done(st);
    return 0;
}

static int store_conf(struct db *db, const struct tunnel_conf *c,
                      struct koala_error **err)
{
    char hex[2 * TUNNEL_SECRET_BYTES + 1] = "";
    if (c->encrypt)
        for (size_t i = 0; i < TUNNEL_SECRET_BYTES; i++)
            snprintf(hex + 2 * i, 3, "%02x", c->secret[i]);
    if (db_begin(db, err) < 0)
        return -1;
    if (db_exec(db, "DELETE FROM tunnel_peers", err) < 0)
        goto fail;
    for (size_t i = 0; i < c->n; i++) {
        sqlite3_stmt *st = db_stmt(db,
                                   "INSERT INTO tunnel_peers(zone, address,"
                                   " subnet, router) VALUES(?,?,?,?)",
                                   err);
        if (st == NULL)
            goto fail;
        sqlite3_bind_text(st, 1, c->peers[i].zone, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->peers[i].address, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, c->peers[i].subnet, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, c->peers[i].router, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE) {
            db_error(db, "storing a tunnel peer", err);
            goto fail;
        }
    }
    sqlite3_stmt *st = db_stmt(db,
                               "INSERT OR REPLACE INTO tunnel_config(id,"
                               " secret) VALUES(1, ?)",
                               err);
    if (st == NULL)
        goto fail;
    sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    OPENSSL_cleanse(hex, sizeof(hex));
    if (rc != SQLITE_DONE) {
        db_error(db, "storing the tunnel secret", err);
        goto fail;
    }
    return db_commit(db, err);
fail:
    OPENSSL_cleanse(hex, sizeof(hex));
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

static bool same_conf(const struct tunnel_conf *a, const struct tunnel_conf *b)
{
    if (a->n != b->n || a->encrypt != b->encrypt ||
        (a->encrypt &&
         CRYPTO_memcmp(a->secret, b->secret, TUNNEL_SECRET_BYTES) != 0))
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!listed(&a->peers[i], b->peers, b->n))
            return false;
    return true;
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

/* Turns off kvx0's transmit checksum offload: a packet the relay reads
 * from a socket must carry its inner checksums computed (with offload,
 * a locally delivered VXLAN packet keeps them partial and its outer UDP
 * checksum fails: seen as InCsumErrors, TCP across a sealed tunnel
 * dead while ping works). */
static int tx_checksum_off(struct cc *cc, struct koala_error **err)
{
    int fd = proc_socket_in(cc->opt.netns, SOCK_DGRAM, "127.0.0.1", 0, err);
    if (fd < 0)
        return -1;
    struct ethtool_value ev = {.cmd = ETHTOOL_STXCSUM, .data = 0};
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", CC_TUNNEL_DEV);
    ifr.ifr_data = (void *)&ev;
    int rc = ioctl(fd, SIOCETHTOOL, &ifr);
    close(fd);
    return rc < 0 ? error_set_errno(err, "%s: checksum offload off",
                                    CC_TUNNEL_DEV)
                  : 0;
}

/* kvx0 exists, with our MAC and the MTU of the mode, up.  *fresh: it was
 * made now, with no entries. */
static int ensure_device(struct cc *cc, bool encrypt, bool *fresh,
                         struct koala_error **err)
{
    char router[16], mac[18], vni[12], port[8], mtu[8];
    cc_ip_format(cc->net.subnet.router, router);
    cc_tunnel_mac(router, mac);
    snprintf(vni, sizeof(vni), "%d", CC_TUNNEL_VNI);
    snprintf(port, sizeof(port), "%d", CC_TUNNEL_PORT);
    snprintf(mtu, sizeof(mtu), "%d",
             1500 - CC_TUNNEL_OVERHEAD - (encrypt ? TUNNEL_SEAL_OVERHEAD : 0));
    *fresh = false;
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
        *fresh = true;
        log_info("tunnels: %s (VNI %s) from %s", CC_TUNNEL_DEV, vni,
                 cc->opt.tunnel_address);
    }
    const char *set[] = {ip,  "link", "set", "dev", CC_TUNNEL_DEV, "address",
                         mac, "mtu",  mtu,   "up",  NULL};
    if (proc_run(cc->opt.netns, set, NULL, err) < 0)
        return -1;
    return encrypt ? tx_checksum_off(cc, err) : 0;
}

/* The table that puts the relay between kvx0 and the WAN (ports: each
 * peer's relay port), or its absence (ports NULL): one transaction. */
static int seal_rules(struct cc *cc, const struct cc_tunnel_peer *peers,
                      size_t n, const struct tunnel_relay_peer *ports,
                      struct koala_error **err)
{
    _cleanup_free_ char *nft = proc_find("nft");
    if (nft == NULL)
        return error_set(err, ENOENT, NULL,
                         "nft (nftables) is needed for tunnels");
    _cleanup_buf_ struct buf script = {0};
    buf_printf(&script, "add table ip %s\ndelete table ip %s\n",
               CC_TUNNEL_TABLE, CC_TUNNEL_TABLE);
    if (ports) {
        buf_printf(&script,
                   "table ip %s {\n"
                   "  map relay {\n"
                   "    type ipv4_addr : inet_service\n",
                   CC_TUNNEL_TABLE);
        for (size_t i = 0; i < n; i++)
            buf_printf(&script, "%s%s : %u", i ? ", " : "    elements = { ",
                       peers[i].address, (unsigned)ports[i].inner_port);
        if (n)
            buf_printf(&script, " }\n");
        buf_printf(&script,
                   "  }\n"
                   "  chain out {\n"
                   "    type nat hook output priority -100; policy accept;\n"
                   "    udp dport %d dnat to %s : ip daddr map @relay\n"
                   "  }\n"
                   "  chain in {\n"
                   "    type filter hook input priority filter; "
                   "policy accept;\n"
                   "    iifname != \"lo\" udp dport %d counter drop\n"
                   "  }\n"
                   "}\n",
                   CC_TUNNEL_PORT, cc->opt.tunnel_address, CC_TUNNEL_PORT);
    }
    const char *argv[] = {nft, "-f", "-", NULL};
    return proc_run(cc->opt.netns, argv, script.data, err);
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
        buf_printf(&br_del, "fdb del %s dev %s\n", mac, CC_TUNNEL_DEV);
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

/* The kernel and the relay from old (NULL: unknown, as at start) to now. */
static int bring_up(struct cc *cc, const struct tunnel_conf *old,
                    const struct tunnel_conf *now, struct koala_error **err)
{
    bool fresh;
    if (ensure_device(cc, now->encrypt, &fresh, err) < 0)
        return -1;
    struct tunnel_relay_peer *ports = NULL;
    int rc = -1;
    if (now->encrypt) {
        ports = calloc(now->n ? now->n : 1, sizeof(*ports));
        if (ports == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < now->n; i++)
            snprintf(ports[i].address, sizeof(ports[i].address), "%s",
                     now->peers[i].address);
        if (cc->tunnel_relay == NULL &&
            (cc->tunnel_relay = tunnel_relay_start(
                 cc->opt.netns, cc->opt.tunnel_address, err)) == NULL)
            goto out;
        if (tunnel_relay_set(cc->tunnel_relay, now->secret, ports, now->n,
                             err) < 0)
            goto out;
    } else if (cc->tunnel_relay) {
        tunnel_relay_free(cc->tunnel_relay);
        cc->tunnel_relay = NULL;
    }
    /* A new device: every entry anew.  The relay's table before the
     * entries, so that no VXLAN leaves in the clear once sealed. */
    bool all = fresh || old == NULL;
    rc = seal_rules(cc, now->peers, now->n, ports, err) < 0 ||
                 apply(cc, all ? NULL : old->peers, all ? 0 : old->n,
                       now->peers, now->n, err) < 0
             ? -1
             : 0;
out:
    free(ports);
    return rc;
}

int cc_tunnel_configure(struct cc *cc, struct db *db,
                        const struct cc_tunnel_peer *peers, size_t n,
                        const uint8_t *secret, struct koala_error **err)
{
    struct tunnel_conf *old = calloc(2, sizeof(*old));
    if (old == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    struct tunnel_conf *now = old + 1;
    memcpy(now->peers, peers, n * sizeof(*peers));
    now->n = n;
    now->encrypt = secret != NULL;
    if (secret)
        memcpy(now->secret, secret, TUNNEL_SECRET_BYTES);
    int rc = -1;
    pthread_mutex_lock(&tunnel_lock);
    if (load_conf(db, old, err) < 0)
        goto out;
    if (same_conf(old, now)) {
        rc = 0;
        goto out;
    }
    /* The kernel first: a crash before the list is stored leaves the old
     * list, which the next ConfigureTunnels corrects. */
    if (bring_up(cc, old, now, err) < 0 || store_conf(db, now, err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (!listed(&peers[i], old->peers, old->n))
            log_info("tunnels: peer %s at %s, %s via %s", peers[i].zone,
                     peers[i].address, peers[i].subnet, peers[i].router);
    for (size_t i = 0; i < old->n; i++)
        if (!listed(&old->peers[i], peers, n))
            log_info("tunnels: peer %s (%s) gone", old->peers[i].zone,
                     old->peers[i].subnet);
    if (old->encrypt != now->encrypt)
        log_info("tunnels: %s", now->encrypt ? "encrypted" : "not encrypted");
    rc = 0;
out:
    pthread_mutex_unlock(&tunnel_lock);
    OPENSSL_cleanse(old, 2 * sizeof(*old));
    free(old);
    return rc;
}

int cc_tunnel_restore(struct cc *cc, struct db *db, struct koala_error **err)
{
    if (cc->opt.tunnel_address == NULL || !cc->opt.manage_network)
        return 0;
    struct tunnel_conf *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_lock(&tunnel_lock);
    int rc = load_conf(db, c, err) < 0 || bring_up(cc, NULL, c, err) < 0
                 ? -1
                 : 0;
    pthread_mutex_unlock(&tunnel_lock);
    if (rc == 0 && c->n)
        log_info("tunnels: %zu peer(s) restored%s", c->n,
                 c->encrypt ? ", encrypted" : "");
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
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
    char *enc = NULL, *hex = NULL;
    uint8_t secret[TUNNEL_SECRET_BYTES];
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
    enc = xml_child_text(r->op, "encryption");
    hex = xml_child_text(r->op, "secret");
    const char *e = enc ? str_trim(enc) : "";
    if (*e && strcmp(e, TUNNEL_CIPHER) != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "encryption '%s': only %s is known", e, TUNNEL_CIPHER);
        goto out;
    }
    if (*e && (hex == NULL || hex_secret(str_trim(hex), secret) < 0)) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "encryption needs a secret of %d hex bytes",
                  TUNNEL_SECRET_BYTES);
        goto out;
    }
    if ((db = cc_req_db(r, &err)) == NULL)
        goto out;
    if (cc->opt.tunnel_address && cc->opt.manage_network &&
        cc_tunnel_configure(cc, db, peers, n, *e ? secret : NULL, &err) < 0) {
        OPENSSL_cleanse(secret, sizeof(secret));
        goto out;
    }
    OPENSSL_cleanse(secret, sizeof(secret));
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
    free(enc);
    if (hex)
        OPENSSL_cleanse(hex, strlen(hex));
    free(hex);
    if (err)
        cc_fail(r, err);
}
