/* sgfilter.h: the security groups of the node's instances, enforced in the
 * node's network namespace (docs/network.md, "The rule set on a node").
 *
 * One nftables table, inet koala_nc_sg, compiled from the last network
 * policy document the CC pushed (ncSetNetworkPolicy) and the node's
 * instances: a chain out_<i> and in_<i> per local instance, chosen by its
 * address from the forward hook (bridged IPv4 traverses it through
 * br_netfilter, with conntrack), jumping to a chain gout_<g> and gin_<g>
 * per group of theirs (a group's rules are written once), and a set per
 * group that rules name.  The
 * whole table is rewritten in one `nft -f` transaction (add table; delete
 * table; table ...), so a crash leaves the old table or the new one.
 *
 * States: version 0 (no document ever received: no table, nothing is
 * filtered, as a CC run without a CLC); version N >= 1 (the document is in
 * data_dir/netpolicy.json, written atomically before it is acknowledged;
 * every instance with an address and a tap gets its chains, and one the
 * document does not list gets only DHCP, DNS to the router and the
 * metadata service out, DHCP replies from the router in).  A document
 * older than the one held is ignored and answered with the held version.
 *
 * When the table is written: at startup from the state file, before any
 * QEMU is re-adopted (nc_sgfilter_init + nc_sgfilter_sync_list); at launch
 * and start after the tap exists and before QEMU starts, with the
 * anti-spoofing table; when an instance stops or terminates; on a new
 * document.  A failure fails the launch; elsewhere it is logged and the
 * kernel keeps the previous table.
 *
 * br_netfilter: nc_sgfilter_init sets net.bridge.bridge-nf-call-iptables
 * to 1 in the node's namespace (loading br_netfilter with modprobe when
 * /proc/sys/net/bridge is missing); when it cannot, launches are refused
 * with the reason (nc_sgfilter_ready).
 *
 * LOCKING.  One mutex per node (nc->sg->lock) serialises rewrites and
 * guards the held document; it is taken before nc->lock, and held while
 * nft runs, so the table always ends up compiled from the latest document
 * and instance list.
 */
#ifndef KOALA_NC_SGFILTER_H
#define KOALA_NC_SGFILTER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "netpolicy.h"

#define NC_SG_TABLE "koala_nc_sg"
#define NC_SG_METADATA "169.254.169.254"

struct nc;
struct nc_instance;
struct nc_sg;

/* A local instance as the compiler sees it (borrowed strings). */
struct nc_sg_inst {
    const char *id; /* "i-" and hex digits */
    const char *ip; /* its private IPv4 address */
};

/* The nft script replacing the table (appended to out).  p NULL: no
 * document, the table is only deleted.  router: the cluster router's
 * address (DHCP server, DNS), or NULL when unknown (then DHCP and DNS to
 * any address pass).  Instances whose id or address cannot be written
 * into a rule, and repeats of an id or address, are left out; the rest
 * are written in the order of their ids (then addresses), whatever order
 * insts has, so the same instances give the same table.  Returns
 * the number of instances written, -1 when out of memory. */
int nc_sgfilter_script(const struct netpolicy *p, const char *router,
                       const struct nc_sg_inst *insts, size_t n,
                       struct buf *out);

/* Startup: reads the held document (data_dir/netpolicy.json) and turns
 * br_netfilter on.  Fails only when the state file is there but cannot be
 * read (the node would otherwise run its instances unfiltered). */
int nc_sgfilter_init(struct nc *nc, struct koala_error **err);
void nc_sgfilter_free(struct nc_sg *sg);

/* 0 when instances may start here; -1 with the reason otherwise. */
int nc_sgfilter_ready(struct nc *nc, struct koala_error **err);

/* ncSetNetworkPolicy: keeps the document if it is newer than the one
 * held (stored, then the table rewritten), and says in *held the version
 * now held.  A malformed document changes nothing. */
int nc_sgfilter_set(struct nc *nc, int64_t version, const char *text,
                    size_t len, const char *router, int64_t *held,
                    struct koala_error **err);

/* The version held (0: none), for ncDescribeResource. */
int64_t nc_sgfilter_version(struct nc *nc);

/* Rewrites the table from the node's instance list (call without
 * nc->lock), or from a list that is not the node's yet (startup). */
int nc_sgfilter_sync(struct nc *nc, struct koala_error **err);
int nc_sgfilter_sync_list(struct nc *nc, struct nc_instance *list,
                          struct koala_error **err);

#endif
