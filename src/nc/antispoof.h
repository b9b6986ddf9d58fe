/* antispoof.h: per-tap anti-spoofing of the node's instances (see
 * docs/metadata.md, "Who is asking").
 *
 * One nftables `bridge` table, koala_nc, in the node's network namespace
 * (or koala-nc's own when none is configured): a map from tap name to a
 * chain per tap, hooked at bridge prerouting, so that a frame a guest sends
 * leaves its tap only with the instance's own MAC and IPv4 address (ARP
 * and DHCP discovery from 0.0.0.0 allowed; DHCP server replies, IPv6 and
 * anything else dropped).  The whole table is rewritten in one `nft -f`
 * transaction (add table; delete table; table ...) from the node's list of
 * instances, so a crash at any point leaves the old table or the new one.
 * No instance that may have a tap: no table at all.
 *
 * Which instances get a chain: every one that is neither stopped nor
 * terminated (pending ones before their tap exists too: a chain for a tap
 * that is not there yet matches nothing).  A launch installs the rules
 * after it creates the tap and before QEMU starts; a failure fails the
 * launch.  Terminate and stop rewrite the table once the instance has left
 * those states; a starting koala-nc rewrites it before it re-adopts any
 * QEMU (ops.c).
 *
 * Values that cannot be written into a rule safely fail closed: an entry
 * whose MAC or address is malformed gets a chain that drops everything;
 * one without an address (an ncRunInstance without privateIp) gets a chain
 * that lets its MAC ask for a DHCP lease and nothing else.
 *
 * LOCKING.  Rewrites are serialised by a mutex of this file, taken before
 * nc->lock (the instance list is read under nc->lock, then released before
 * nft runs), so the table always ends up written from the latest list.
 */
#ifndef KOALA_NC_ANTISPOOF_H
#define KOALA_NC_ANTISPOOF_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

#define NC_ANTISPOOF_TABLE "koala_nc"

struct nc;
struct nc_instance;

/* One tap's entry: borrowed strings.  ip NULL or "": the instance has no
 * address (DHCP only). */
struct nc_antispoof_tap {
    const char *id; /* the instance id, "i-" and hex digits */
    const char *tap;
    const char *mac;
    const char *ip;
};

/* The nft script that replaces the table with one holding these taps
 * (appended to out).  Entries whose id or tap name cannot be written into
 * a rule, and repeats of an id or tap already written, are left out.
 * Returns the number of taps written, -1 when out of memory. */
int nc_antispoof_script(const struct nc_antispoof_tap *taps, size_t n,
                        struct buf *out);

/* Whether an instance's values make a chain that lets it talk: a valid id
 * and tap name, a unicast MAC, and an IPv4 address or none.  -1 with *err
 * naming what is wrong. */
int nc_antispoof_check(const char *id, const char *tap, const char *mac,
                       const char *ip, struct koala_error **err);

/* Rewrites the table from the node's instance list.  Blocks (runs nft):
 * call without nc->lock. */
int nc_antispoof_sync(struct nc *nc, struct koala_error **err);

/* The same from a list that is not (yet) the node's: startup, before the
 * loaded instances are taken over.  Nothing else may change it meanwhile. */
int nc_antispoof_sync_list(struct nc *nc, struct nc_instance *list,
                           struct koala_error **err);

#endif
