/* netpolicy.h: the network policy document (docs/network.md, "The policy
 * document"): the security groups of a cluster's instances, their rules,
 * the members of every group those use or name, and which instance is in
 * which groups.  The CLC writes it, the CC checks and keeps it, each NC
 * compiles it into its filter; all of them parse it here, so that what
 * one accepts the others accept too.
 *
 * Parsing is strict: unknown keys, a bad protocol, ports out of range, a
 * rule with both or neither of cidr and group, a malformed CIDR or address,
 * ids that are not sg-/i- ids, duplicate keys and documents over the limits
 * below are refused with an InvalidParameterValue error saying where.  A
 * group named by a rule or an instance but absent from "groups" has no
 * rules; absent from "members", no members.
 */
#ifndef KOALA_NETPOLICY_H
#define KOALA_NETPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define NETPOLICY_MAX_TEXT (4u << 20) /* bytes of JSON */
#define NETPOLICY_MAX_GROUPS 10000    /* groups described */
#define NETPOLICY_MAX_RULES 1000      /* per group and direction */
#define NETPOLICY_MAX_TOTAL_RULES 200000
#define NETPOLICY_MAX_ADDRS 200000 /* members, all groups together */
#define NETPOLICY_MAX_INSTANCES 100000
#define NETPOLICY_MAX_INSTANCE_GROUPS 5
#define NETPOLICY_MAX_VERSION 9007199254740991LL /* 2^53 - 1 */

enum {
    NETPOLICY_ALL = -1, /* proto: every protocol */
    NETPOLICY_ICMP = 1,
    NETPOLICY_TCP = 6,
    NETPOLICY_UDP = 17,
};

struct netpolicy_rule {
    int proto; /* NETPOLICY_ALL or an IP protocol number 0..255 */
    /* tcp/udp: the port range (0..65535, from <= to); icmp: type and code
     * (-1: any; code -1 when type is); otherwise both -1. */
    int from, to;
    bool has_cidr;
    uint32_t net;   /* has_cidr: host order, host bits cleared */
    int prefix;     /* 0..32 */
    char group[32]; /* !has_cidr: "sg-..." */
};

struct netpolicy_group {
    char id[32];
    struct netpolicy_rule *ingress, *egress;
    size_t n_ingress, n_egress;
};

struct netpolicy_members {
    char group[32];
    uint32_t *addrs; /* host order, sorted, no repeats */
    size_t n;
};

struct netpolicy_instance {
    char id[32];
    char groups[NETPOLICY_MAX_INSTANCE_GROUPS][32];
    size_t n_groups;
};

/* Arrays sorted by id, so the lookups below are binary searches and what
 * is compiled from a document does not depend on the order of its keys. */
struct netpolicy {
    int64_t version; /* >= 1 */
    struct netpolicy_group *groups;
    size_t n_groups;
    struct netpolicy_members *members;
    size_t n_members;
    struct netpolicy_instance *instances;
    size_t n_instances;
};

/* Parses and checks a document (len bytes, no NUL needed).  NULL with *err
 * (code InvalidParameterValue) when it is not a valid one. */
struct netpolicy *netpolicy_parse(const char *text, size_t len,
                                  struct koala_error **err);
void netpolicy_free(struct netpolicy *p);

/* Lookups; NULL when absent. */
const struct netpolicy_group *netpolicy_group(const struct netpolicy *p,
                                              const char *id);
const struct netpolicy_members *netpolicy_members(const struct netpolicy *p,
                                                  const char *group);
const struct netpolicy_instance *netpolicy_instance(const struct netpolicy *p,
                                                    const char *id);

#endif
