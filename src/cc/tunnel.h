/* tunnel.h: the cluster router's tunnels to the other clusters' routers
 * (docs/network.md, "Tunnels between clusters").
 *
 * One VXLAN device, kvx0, in the cluster's namespace: VNI 1 (the default
 * routing domain), local address the CC's `tunnel_address` (its address
 * on the "WAN" between routers), UDP 4789, no learning.  For each peer
 * cluster, everything is static and pushed, nothing learned:
 *   - an FDB entry: the peer's kvx0 MAC -> the peer's WAN address;
 *   - a permanent neighbour: the peer's router address -> that MAC;
 *   - a route: the peer's subnet via its router address, onlink, on kvx0.
 * A kvx0 MAC is 02:6b: and the 4 bytes of its router's address, so no MAC
 * is ever exchanged.  That is layer 3 between routers, one route per peer
 * cluster (subnets are per zone: there is nothing to stretch).
 *
 * Encrypted (the CLC says so, with the cloud's secret): the nftables
 * table ip koala_cc_tunnel hands kvx0's packets to the relay of
 * tunnel_crypt.h, which seals them between routers, and drops VXLAN from
 * the WAN; without encryption that table is absent.
 *
 * The CLC sends the whole peer list on every poll (ConfigureTunnels); the
 * CC keeps it in cc.db (tunnel_peers) and changes the kernel only where
 * the list changed: entries of peers gone are deleted, the others
 * replaced.  At start it reapplies the stored list before it serves, so a
 * namespace that lost its devices gets them back without the CLC; a
 * restart that finds them in place changes nothing in flight.
 */
#ifndef KOALA_CC_TUNNEL_H
#define KOALA_CC_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct cc;
struct cc_req;
struct db;

#define CC_TUNNEL_DEV "kvx0"
#define CC_TUNNEL_TABLE "koala_cc_tunnel"
#define CC_TUNNEL_VNI 1
#define CC_TUNNEL_PORT 4789
#define CC_TUNNEL_MAX_PEERS 64
/* VXLAN over IPv4: 14 (inner Ethernet) + 8 (VXLAN) + 8 (UDP) + 20 (IP). */
#define CC_TUNNEL_OVERHEAD 50
/* What DHCP hands guests of a cluster with tunnels: below kvx0's MTU
 * encrypted or not (1450, 1406). */
#define CC_TUNNEL_GUEST_MTU 1400
/* The only cipher of the encrypting relay (tunnel_crypt.h). */
#define TUNNEL_CIPHER "aes-256-gcm"

struct cc_tunnel_peer {
    char zone[64];
    char address[16]; /* its WAN address */
    char subnet[20];  /* its instances' CIDR */
    char router[16];  /* its router's address in that subnet */
};

/* Checks one peer as received (addresses, a subnet not overlapping ours);
 * 0 / -1 with InvalidParameterValue. */
int cc_tunnel_peer_check(const struct cc *cc, const struct cc_tunnel_peer *p,
                         struct koala_error **err);

/* kvx0's MAC for the router at ip (dotted): 02:6b:a:b:c:d into out[18]. */
void cc_tunnel_mac(const char *router_ip, char out[18]);

/* Replaces the stored peer list with peers[0..n) and the secret (NULL:
 * not encrypted; else TUNNEL_SECRET_BYTES) and brings the kernel and the
 * relay in line (only what changed).  The CC must have a tunnel_address. */
int cc_tunnel_configure(struct cc *cc, struct db *db,
                        const struct cc_tunnel_peer *peers, size_t n,
                        const uint8_t *secret, struct koala_error **err);

/* At start: kvx0 and the stored peers' entries (no-op without a
 * tunnel_address). */
int cc_tunnel_restore(struct cc *cc, struct db *db, struct koala_error **err);

/* SOAP ConfigureTunnels (from the CLC). */
void cc_op_configure_tunnels(struct cc_req *r);

#endif
