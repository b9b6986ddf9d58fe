/* eipnat.c: the router's NAT: the nftables table "ip koala_cc_<network>"
 * in the cluster's namespace, written whole in one transaction from the
 * public address map (eip.c) whenever it changes and at start, before the
 * CC serves anything (docs/network.md "Elastic IPs and outbound NAT"):
 *
 *   eip_in  map public : private    dnat in prerouting (and output, for
 *                                   the router's own connections)
 *   eip_out map private : public    snat in postrouting for that instance
 *   pool    set of the pool         input: what reaches a public address
 *                                   that no instance holds is dropped
 *                                   (the router holds them all, net.c)
 *   pairs   set public . private    forward: a connection NATed to or
 *                                   from a public address whose pair is
 *                                   no longer in the map is dropped, so a
 *                                   disassociation cuts established
 *                                   connections too (their conntrack
 *                                   entries would keep translating)
 *
 * Postrouting, in order: a hairpin (an instance to another's public
 * address: dnat'ed, and back out on the LAN) is snat'ed to the sender's
 * public address, or to the router when it has none, so the reply comes
 * back through the router; traffic out of the uplink is snat'ed to the
 * instance's public address, or masqueraded.  A map miss in a "snat to
 * ... map" ends the rule unmatched, so the next rule decides.
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"

static void pool_elements(struct buf *out, const struct cc_pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        char a[16], b[16];
        cc_ip_format(p->r[i].first, a);
        cc_ip_format(p->r[i].last, b);
        if (p->r[i].first == p->r[i].last)
            buf_printf(out, "%s%s", i ? ", " : "", a);
        else
            buf_printf(out, "%s%s-%s", i ? ", " : "", a, b);
    }
}

static void map_elements(struct buf *out, const struct cc_eip *m, size_t n,
                         bool in)
{
    for (size_t i = 0; i < n; i++)
        buf_printf(out, "%s%s : %s", i ? ", " : "",
                   in ? m[i].public_ip : m[i].private_ip,
                   in ? m[i].private_ip : m[i].public_ip);
}

int eipnat_format(const struct cc_network *net, const struct cc_eip *map,
                  size_t n, struct buf *out)
{
    if (net->uplink == NULL)
        return 0;
    char cidr[24], router[16], table[64];
    cc_ip_format(net->subnet.network, cidr);
    snprintf(cidr + strlen(cidr), sizeof(cidr) - strlen(cidr), "/%u",
             net->subnet.prefix);
    cc_ip_format(net->subnet.router, router);
    snprintf(table, sizeof(table), "koala_cc_%s", net->name);
    /* add+delete+define: replaces the table in one transaction whether
     * or not it existed. */
    buf_printf(out, "add table ip %s\ndelete table ip %s\ntable ip %s {\n",
               table, table, table);
    buf_printf(out, "  map eip_in {\n    type ipv4_addr : ipv4_addr\n");
    if (n) {
        buf_printf(out, "    elements = { ");
        map_elements(out, map, n, true);
        buf_printf(out, " }\n");
    }
    buf_printf(out, "  }\n  map eip_out {\n    type ipv4_addr : ipv4_addr\n");
    if (n) {
        buf_printf(out, "    elements = { ");
        map_elements(out, map, n, false);
        buf_printf(out, " }\n");
    }
    buf_printf(out, "  }\n");
    if (net->pool.n) {
        buf_printf(out, "  set pool {\n    type ipv4_addr\n    flags interval\n"
                        "    elements = { ");
        pool_elements(out, &net->pool);
        buf_printf(out, " }\n  }\n");
        buf_printf(out, "  set pairs {\n    type ipv4_addr . ipv4_addr\n");
        if (n) {
            buf_printf(out, "    elements = { ");
            for (size_t i = 0; i < n; i++)
                buf_printf(out, "%s%s . %s", i ? ", " : "", map[i].public_ip,
                           map[i].private_ip);
            buf_printf(out, " }\n");
        }
        buf_printf(out, "  }\n");
    }
    buf_printf(out,
               "  chain prerouting {\n"
               "    type nat hook prerouting priority dstnat; policy accept;\n"
               "    dnat to ip daddr map @eip_in\n"
               "  }\n"
               "  chain output {\n"
               "    type nat hook output priority -100; policy accept;\n"
               "    dnat to ip daddr map @eip_in\n"
               "  }\n"
               "  chain postrouting {\n"
               "    type nat hook postrouting priority srcnat; policy accept;\n"
               "    ip saddr %s ip daddr %s ct status dnat"
               " snat to ip saddr map @eip_out\n"
               "    ip saddr %s ip daddr %s ct status dnat snat to %s\n"
               "    ip saddr %s oifname \"%s\" snat to ip saddr map @eip_out\n"
               "    ip saddr %s oifname \"%s\" masquerade\n"
               "  }\n",
               cidr, cidr, cidr, cidr, router, cidr, net->uplink, cidr,
               net->uplink);
    if (net->pool.n)
        buf_printf(out,
                   "  chain input {\n"
                   "    type filter hook input priority filter; policy "
                   "accept;\n"
                   "    ip daddr @pool drop\n"
                   "  }\n"
                   "  chain forward {\n"
                   "    type filter hook forward priority filter; policy "
                   "accept;\n"
                   "    ct status dnat ct original ip daddr @pool"
                   " ct original ip daddr . ct reply ip saddr != @pairs drop\n"
                   "    ct status snat ct reply ip daddr @pool"
                   " ct reply ip daddr . ct original ip saddr != @pairs drop\n"
                   "  }\n");
    buf_printf(out, "}\n");
    return out->data ? 0 : -1;
}

int eipnat_apply(struct cc *cc, struct db *db, struct koala_error **err)
{
    if (!cc->opt.manage_network || cc->net.uplink == NULL)
        return 0;
    _cleanup_free_ char *nft = proc_find("nft");
    if (nft == NULL)
        return error_set(err, ENOENT, NULL,
                         "uplink %s needs nft (nftables) for NAT",
                         cc->net.uplink);
    pthread_mutex_lock(&cc->eip_lock);
    struct cc_eip *map = NULL;
    size_t n = 0;
    int64_t version = 0;
    _cleanup_buf_ struct buf script = {0};
    int rc = store_eip_get(db, &version, &map, &n, err);
    if (rc == 0 && eipnat_format(&cc->net, map, n, &script) < 0)
        rc = error_set(err, ENOMEM, NULL, "out of memory");
    if (rc == 0) {
        const char *argv[] = {nft, "-f", "-", NULL};
        rc = proc_run(cc->net.netns, argv, script.data, err);
        if (rc < 0)
            error_prefix(*err, "router NAT");
    }
    cc->eip_dirty = rc < 0;
    pthread_mutex_unlock(&cc->eip_lock);
    free(map);
    if (rc == 0)
        log_debug("router NAT: map version %lld, %zu associations",
                  (long long)version, n);
    return rc;
}

void eipnat_check(struct cc *cc, struct db *db)
{
    pthread_mutex_lock(&cc->eip_lock);
    bool dirty = cc->eip_dirty;
    pthread_mutex_unlock(&cc->eip_lock);
    if (!dirty)
        return;
    struct koala_error *err = NULL;
    if (eipnat_apply(cc, db, &err) < 0) {
        log_warn("%s", error_message(err));
        error_free(err);
    } else {
        log_info("router NAT applied again");
    }
}
