/* cc.h: koala-cc internals shared by its files: the daemon, its nodes, the
 * instances it placed, and the interfaces between the SOAP routing
 * (server.c), the CLC-facing operations (ops.c, run.c), the node table and
 * its poller (nodes.c), calls to the NCs (ncwire.c), the scheduler
 * (sched.c), address allocation (alloc.c), the database (store.c), the
 * cluster network (net.c, dhcp.c, proc.c) and notifications to the CLC
 * (notify.c).
 *
 * Locking rules:
 *   cc->sched_lock  serialises placement: held from reading the nodes' free
 *                   resources until the new instances' rows (which count
 *                   against their nodes at once, see cc_sched_view) are
 *                   committed.  Taken before cc->lock, never while calling
 *                   a peer.
 *   cc->lock        the node table (cc->nodes) and the round-robin cursor.
 *                   Held briefly; never across a network call or a database
 *                   transaction.
 *   cc->dhcp_sync_lock  makes reading the allocations and rewriting the
 *                   DHCP hosts one step, so an older reading never
 *                   replaces a newer file.  Taken before dhcp->lock.
 *   cc->eip_lock    the same for the public address map and the router's
 *                   nft table (eipnat.c).  Taken with no other lock.
 *   dhcp->lock      (dhcp.c) the hosts file and the dnsmasq child.
 * The database is the truth for instances and addresses: each thread takes
 * its own connection from cc->db and changes rows in BEGIN IMMEDIATE
 * transactions.  Nodes are kept in memory and written through to the
 * database, so a restart keeps them.
 */
#ifndef KOALA_CC_H
#define KOALA_CC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "claims.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "http_client.h"
#include "http_server.h"
#include "workpool.h"
#include "xml.h"

#define CC_NS "urn:koala:cc"
#define NC_NS "urn:koala:nc"
#define CLC_NS "urn:koala:clc"
#define CC_MAX_NODES 256
#define CC_MAX_INSTANCES 256   /* per request */
#define CC_MAX_BODY (4u << 20) /* SOAP request bodies */
#define CC_HTTP_WORKERS 64     /* threads running SOAP operations */
#define CC_POLL_WORKERS 8      /* threads polling nodes */
#define CC_DEFAULT_NETWORK "default"

/* ---- options (cc.c: cc_options_load) ---- */
enum cc_policy { CC_SCHED_GREEDY = 0, CC_SCHED_ROUNDROBIN };

struct cc_options {
    char *listen_addr;
    uint16_t port;
    char *data_dir;
    char *name; /* the cluster (availability zone) */
    char *tls_cert, *tls_key, *ca;
    char *clc_endpoint; /* NULL: no notifications */
    enum cc_policy policy;
    char *nodes; /* static "name=url,..." or NULL */
    int64_t poll_interval_ms;
    int64_t fail_threshold;    /* failed polls in a row before BROKEN */
    int64_t nc_timeout_ms;     /* per call to an NC */
    int64_t terminated_keep_s; /* terminated instances kept this long */
    unsigned workers;          /* threads calling NCs */
    /* network */
    bool manage_network; /* false: no bridge, DHCP or NAT at all */
    char *netns;         /* NULL: the host's namespace */
    char *bridge;
    char *subnet;      /* CIDR */
    char *router;      /* NULL: the subnet's first host */
    char *dns;         /* "a,b" handed out by DHCP, or NULL */
    char *uplink;      /* NULL: no NAT */
    char *public_ips;  /* the public pool (eip.c), or NULL: none */
    char *node_bridge; /* told to NCs in netConfig; NULL: theirs */
    char *dhcp_lease;  /* dnsmasq lease time ("12h") */
    char *dnsmasq;     /* program (PATH searched) */
    char *region;      /* names the instances' DNS domain */
    char *dns_upstream; /* "a,b": where other names are forwarded */
    char *tunnel_address; /* the router's WAN address for tunnels, or NULL */
    /* the metadata service (imds.c) */
    bool metadata;        /* serve 169.254.169.254 (needs manage_network) */
    int64_t metadata_port;
    char *identity_cert, *identity_key; /* signs identity documents */
};

/* Reads [cc] of cfg (every key has a default, see docs).  0 / -1. */
int cc_options_load(const struct config *cfg, struct cc_options *opt,
                    struct koala_error **err);
void cc_options_clear(struct cc_options *opt);

/* ---- resources and instance types ---- */
struct cc_res {
    int64_t cores, memory_mb, disk_gb;
};

struct cc_itype {
    char name[64];
    int64_t cores, memory_mb, disk_gb;
};

/* ---- nodes (nodes.c) ---- */
enum cc_node_state { CC_NODE_NOTREADY = 0, CC_NODE_ENABLED, CC_NODE_BROKEN };
const char *cc_node_state_name(enum cc_node_state s);

struct cc_node {
    char name[64];
    char endpoint[256];
    enum cc_node_state state;
    char hypervisor[16];
    struct cc_res max, avail; /* as the NC last reported them */
    /* Use the NC reports beyond the instances this CC placed there (what
     * it listed), seen in two polls in a row; and the last poll's figure. */
    struct cc_res foreign, foreign_last;
    int64_t instance_count;
    int fails;            /* failed polls in a row */
    int64_t last_seen_ms; /* wall clock of the last answer; 0 never */
    char last_error[200];
};

/* ---- scheduler (sched.c): pure functions, no locks ---- */
struct sched_node {
    const char *name;
    bool usable; /* ENABLED */
    struct cc_res max;
    struct cc_res free; /* available less reservations */
};

/* How many instances of t fit into r (0 when t asks for nothing). */
int64_t sched_fits(const struct cc_res *r, const struct cc_itype *t);
/* Per type: max = sum over usable nodes of fits(max), available = sum of
 * fits(free). */
void sched_capacity(const struct sched_node *nodes, size_t n,
                    const struct cc_itype *t, int64_t *max, int64_t *available);
/* Places count instances of t: out[i] is the index (into nodes, which are
 * in a stable order) of instance i's node.  GREEDY takes the first node
 * with room; ROUNDROBIN starts after *cursor (the index last used, or
 * SIZE_MAX) and moves it.  nodes' free resources are reduced by what was
 * placed.  Returns 0, or -1 when not every instance fits: then nothing
 * (neither nodes nor cursor) is changed. */
int sched_place(enum cc_policy policy, struct sched_node *nodes, size_t n,
                const struct cc_itype *t, size_t count, size_t *cursor,
                size_t *out);

/* ---- addresses (alloc.c) ---- */
struct cc_subnet {
    uint32_t network; /* host byte order */
    unsigned prefix;
    uint32_t router;
    uint32_t broadcast;
};

/* "10.111.0.0/16" (host bits must be zero; prefix 8..30); router NULL:
 * the first host. */
int cc_subnet_parse(const char *cidr, const char *router, struct cc_subnet *out,
                    struct koala_error **err);
void cc_ip_format(uint32_t ip, char out[16]);
/* The instance's MAC: d0:0d: and 4 bytes of the instance id (its last 8
 * hex digits, or a hash of it); attempt > 0 gives other candidates for
 * when that one is taken. */
void cc_mac_for(const char *instance_id, unsigned attempt, char out[18]);
/* Allocates a MAC and the first free IP of the network for an instance,
 * inside the caller's transaction.  No free address: -1 with
 * InsufficientAddressCapacity. */
int alloc_address(struct db *db, const char *network,
                  const struct cc_subnet *sn, const char *instance_id,
                  char mac[18], char ip[16], struct koala_error **err);
/* Frees the instance's address (inside the caller's transaction);
 * *freed tells whether there was one. */
int alloc_release(struct db *db, const char *instance_id, bool *freed,
                  struct koala_error **err);

/* ---- instances (store.c) ---- */
#define CC_VOLUMES_TEXT 3072 /* an instance's attachments (volumes.c) */
struct cc_instance {
    char id[32];
    char reservation[32];
    char owner[64];
    int64_t launch_index;
    char state[16];
    char reason_code[64];
    char reason_message[256];
    struct cc_itype type;
    char image_id[32], kernel_id[32], ramdisk_id[32];
    char node[64];
    char mac[18];
    char ip[16];
    char network[32];
    int64_t launch_ms;
    char hypervisor[8];
    bool seen; /* listed by its NC since it was placed */
    bool terminate_requested;
    int64_t updated_ms;
    /* The guest's DHCP lease (leases.c): its expiry as dnsmasq last wrote
     * it, and when this CC saw the guest take or renew it since it last
     * started (0: not since). */
    int64_t lease_expiry;
    int64_t lease_ms;
    /* Its EBS attachments as its NC last reported them (volumes.c). */
    char volumes[CC_VOLUMES_TEXT];
};

extern const char *const cc_migrations[];
extern const size_t cc_n_migrations;

/* The ncRunInstance request of an instance its node has not acknowledged
 * yet, recorded with the instance (inside the caller's transaction), so
 * that it can be sent again after a restart of this CC.  Dropped when the
 * node answers it (cc_launch_send), lists the instance or the instance
 * ends (store_instance_update, the one writer of every state change). */
int store_launch_put(struct db *db, const char *id, const char *req, size_t len,
                     struct koala_error **err);
/* Forgets it: the node acknowledged the instance. */
int store_launch_drop(struct db *db, const char *id, struct koala_error **err);
/* The request (malloc'd, *len bytes), or NULL: none (err untouched) or an
 * error. */
char *store_launch_get(struct db *db, const char *id, size_t *len,
                       struct koala_error **err);
/* The live (not terminated) instance with this MAC: 0 found, 1 missing,
 * -1 error. */
int store_instance_by_mac(struct db *db, const char *mac,
                          struct cc_instance *out, struct koala_error **err);
/* 0 found, 1 missing, -1 error. */
int store_instance_get(struct db *db, const char *id, struct cc_instance *out,
                       struct koala_error **err);
/* Inserts a new instance (inside the caller's transaction). */
int store_instance_insert(struct db *db, const struct cc_instance *in,
                          struct koala_error **err);
/* Writes the mutable fields (state, reason, hypervisor, seen,
 * terminate_requested, node) of in. */
int store_instance_update(struct db *db, const struct cc_instance *in,
                          struct koala_error **err);
/* All instances (ids NULL) or the named ones (missing ones skipped), in
 * launch order; *out malloc'd. */
int store_instance_list(struct db *db, const char *const *ids, size_t n_ids,
                        struct cc_instance **out, size_t *n,
                        struct koala_error **err);
/* The live instances placed on node. */
int store_instances_on_node(struct db *db, const char *node,
                            struct cc_instance **out, size_t *n,
                            struct koala_error **err);
/* Resources of the instances placed on node that are not terminated (what
 * they use there, as the NC counts it). */
int store_node_usage(struct db *db, const char *node, struct cc_res *out,
                     struct koala_error **err);
/* Deletes terminated instances last changed before before_ms. */
int store_purge_terminated(struct db *db, int64_t before_ms, int *purged,
                           struct koala_error **err);

/* Nodes as persisted. */
int store_node_put(struct db *db, const struct cc_node *n,
                   struct koala_error **err);
int store_node_delete(struct db *db, const char *name,
                      struct koala_error **err);
int store_node_list(struct db *db, struct cc_node **out, size_t *n,
                    struct koala_error **err);

/* One "mac,ip,hostname" line per allocation of network, by IP. */
int store_dhcp_hosts(struct db *db, const char *network, struct buf *out,
                     struct koala_error **err);

/* ---- processes (proc.c) ---- */
/* Finds a program in PATH, /usr/sbin and /sbin; malloc'd path or NULL. */
char *proc_find(const char *prog);
/* Runs argv (argv[0] a path) inside netns (NULL: this one), feeding it
 * input (may be NULL), waits.  Fails with its output when it exits
 * non-zero. */
int proc_run(const char *netns, const char *const *argv, const char *input,
             struct koala_error **err);
/* proc_run, and on success its whole output (stdout and stderr) into
 * *out_text (the caller frees it). */
int proc_run_output(const char *netns, const char *const *argv,
                    const char *input, struct buf *out_text,
                    struct koala_error **err);
/* Starts argv inside netns with stdout/stderr to log_fd (-1: /dev/null);
 * it gets SIGTERM when this process dies.  Returns its pid or -1. */
pid_t proc_spawn(const char *netns, const char *const *argv, int log_fd,
                 struct koala_error **err);
/* A socket of type (SOCK_STREAM: listening, backlog 256; SOCK_DGRAM)
 * bound to addr:port inside netns (NULL: this one), made by a thread that
 * enters the namespace and leaves; the socket stays there.  IP_FREEBIND:
 * the address may appear a moment later.  Returns the fd (CLOEXEC) or -1. */
int proc_socket_in(const char *netns, int type, const char *addr,
                   uint16_t port, struct koala_error **err);
/* Writes "1" to /proc/sys/net/ipv4/ip_forward of netns. */
int proc_enable_forwarding(const char *netns, struct koala_error **err);
/* Writes value to /proc/sys/<path> of netns. */
int proc_sysctl(const char *netns, const char *path, const char *value,
                struct koala_error **err);

/* ---- public addresses (eip.c) ---- */
struct cc;
struct cc_req;
#define CC_POOL_MAX_RANGES 64
#define CC_POOL_MAX_ADDRS 4096 /* each one is an address on the uplink */

/* The cluster's public pool: disjoint ranges, in ascending order. */
struct cc_pool {
    size_t n;
    uint32_t count; /* addresses in all ranges */
    struct {
        uint32_t first, last; /* host byte order, inclusive */
    } r[CC_POOL_MAX_RANGES];
};

/* "198.51.100.0/28, 198.51.100.20-198.51.100.30, 203.0.113.7" (CIDRs,
 * ranges, single addresses; commas or spaces) into out: overlapping
 * ranges, more than CC_POOL_MAX_RANGES ranges or CC_POOL_MAX_ADDRS
 * addresses are InvalidParameterValue.  NULL or "": an empty pool. */
int cc_pool_parse(const char *spec, struct cc_pool *out,
                  struct koala_error **err);
bool cc_pool_has(const struct cc_pool *p, uint32_t ip);
/* "a.b.c.d" into *ip (host byte order): 0 / -1. */
int cc_ip_parse(const char *s, uint32_t *ip);

/* One association of the cluster's map: the public address the router
 * translates to and from the instance's private one. */
struct cc_eip {
    char public_ip[16];
    char private_ip[16];
    char instance_id[32];
};
/* The map the CC holds: its version (0: none received) and pairs (*out
 * malloc'd, by public address; out may be NULL for the version only). */
int store_eip_get(struct db *db, int64_t *version, struct cc_eip **out,
                  size_t *n, struct koala_error **err);
/* The instance's public address: 0 found, 1 none, -1 error. */
int store_eip_of(struct db *db, const char *instance_id, char out[16],
                 struct koala_error **err);
void cc_op_set_public_addresses(struct cc_req *r);
void cc_op_describe_public_addresses(struct cc_req *r);

/* ---- the cluster network (net.c) and DHCP (dhcp.c) ---- */
struct dhcp;

/* One cluster network: a subnet behind a router (bridge address), with
 * DHCP handing out fixed leases.  Today there is one, "default"; per
 * security group networks, elastic IPs and the metadata redirect add to
 * this. */
struct cc_network {
    char name[32];
    struct cc_subnet subnet;
    char *netns; /* borrowed from the options */
    char *bridge;
    char *uplink;
    bool metadata; /* the bridge also holds 169.254.169.254/32 */
    /* the public addresses, held on the uplink (net.c) */
    struct cc_pool pool;
    struct dhcp *dhcp;
};

/* Brings up the bridge with the router address, forwarding, and the
 * public pool's addresses on the uplink (the NAT table is eipnat's). */
int net_setup(struct cc_network *net, const char *ip_bin,
              struct koala_error **err);

/* The router's NAT (eipnat.c): the nft script that replaces the table
 * "ip koala_cc_<network>" with outbound masquerade and the 1:1 NAT of
 * the map (pure; for tests).  No uplink: an empty script (nothing to
 * do). */
int eipnat_format(const struct cc_network *net, const struct cc_eip *map,
                  size_t n, struct buf *out);
/* Rewrites the router's table from the map in the database, in one nft
 * transaction (serialised by cc->eip_lock, so an older reading never
 * replaces a newer one).  On failure cc->eip_dirty stays set and the
 * poller tries again. */
int eipnat_apply(struct cc *cc, struct db *db, struct koala_error **err);
/* The poller: applies again if the last apply failed. */
void eipnat_check(struct cc *cc, struct db *db);

struct dhcp_config {
    const char *dnsmasq; /* program path */
    const char *netns;
    const char *bridge;
    const struct cc_subnet *subnet;
    const char *dns;   /* comma separated, or NULL */
    const char *lease; /* "12h" */
    const char *dir;   /* files: dhcp-hosts, dns-hosts, dnsmasq.* */
    const char *domain;   /* the instances' DNS domain, or NULL */
    const char *upstream; /* "a,b" DNS servers forwarded to, or NULL */
    bool metadata;        /* instance-data names 169.254.169.254 */
    int mtu;              /* DHCP option 26 when > 0 (tunnels) */
};

/* DNS (dns.c).  The addn-hosts file for the DHCP hosts lines
 * ("mac,ip,id\n"...): per instance "IP ip-A-B-C-D.DOMAIN ip-A-B-C-D
 * ID.DOMAIN ID" (without DOMAIN when NULL), and instance-data for the
 * metadata service.  Pure. */
int dns_hosts_format(const char *dhcp_hosts, const char *domain, bool metadata,
                     struct buf *out);
/* dnsmasq's --server=ADDR arguments for "a,b" (NULL: none), each
 * NUL-terminated in out, the list ended by an empty string. */
int dns_server_args(const char *upstream, struct buf *out);
/* The cluster's DNS domain for region: "REGION.compute.internal", or
 * "ec2.internal" for us-east-1, as EC2's private names. */
void dns_domain_for(const char *region, char *out, size_t size);
/* "ip-10-111-0-5" for "10.111.0.5". */
void dns_ip_label(const char *ip, char out[20]);

/* Formats the hosts file dnsmasq reads (pure; for tests). */
int dhcp_hosts_format(const char *const *macs, const char *const *ips,
                      const char *const *names, size_t n, struct buf *out);
/* Writes path atomically (temporary file, fsync, rename). */
int dhcp_write_file(const char *path, const char *data, size_t len,
                    struct koala_error **err);
struct dhcp *dhcp_new(const struct dhcp_config *cfg, struct koala_error **err);
/* Writes the hosts file from these lines; starts dnsmasq, or tells the
 * running one to reload it (SIGHUP). */
int dhcp_update(struct dhcp *d, const struct buf *hosts,
                struct koala_error **err);
/* Restarts dnsmasq if it died (called from the poller).  Returns its
 * state: true running. */
bool dhcp_check(struct dhcp *d);
pid_t dhcp_pid(struct dhcp *d);
struct dhcp_lease {
    char mac[18];
    int64_t expiry; /* epoch seconds, as dnsmasq wrote it */
};
/* The leases in dnsmasq's lease file (*out malloc'd), read only when the
 * file changed since *stamp (its mtime, then updated); else none. */
int dhcp_leases(struct dhcp *d, int64_t *stamp, struct dhcp_lease **out,
                size_t *n, struct koala_error **err);
/* Stops dnsmasq (SIGTERM to its pid, waits) and frees. NULL-safe. */
void dhcp_free(struct dhcp *d);

/* ---- the daemon (cc.c) ---- */
struct notifier;
struct imds;
struct netpush;

struct cc {
    struct cc_options opt;
    struct db_pool *db;
    struct http_server *http;
    struct workpool *pool;      /* calls to NCs for requests */
    struct workpool *poll_pool; /* the poller's calls to NCs */
    struct http_client_tls tls; /* our certificate, for calling peers */
    pthread_mutex_t lock;
    pthread_mutex_t sched_lock;
    pthread_mutex_t dhcp_sync_lock;     /* reading the hosts + writing them */
    pthread_mutex_t eip_lock;           /* reading the map + writing nft */
    bool eip_dirty;                     /* the last NAT apply failed */
    struct cc_node nodes[CC_MAX_NODES]; /* by name */
    size_t n_nodes;
    char rr_last[64]; /* ROUNDROBIN: node used last */
    struct cc_network net;
    bool net_ok;
    char net_error[200];
    struct notifier *notify;
    struct imds *imds;        /* the metadata service, or NULL */
    struct tunnel_relay *tunnel_relay; /* encrypted tunnels (tunnel.c) */
    struct netpush *netpush;  /* the network policy (netpush.c) */
    struct claims *launching; /* instances an ncRunInstance is on its way for */
    int64_t leases_stamp;     /* the lease file as leases_notice last read it */
    /* the poller */
    pthread_t poller;
    bool poller_started;
    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;
    bool stopping;
    bool poll_now;
};

struct cc *cc_new(const struct cc_options *opt, struct koala_error **err);
void cc_free(struct cc *cc);

/* Runs fn(i, ctx) for i in [0, n) on pool, waits for all of them (runs
 * them here when the pool cannot take them). */
void cc_parallel(struct cc *cc, struct workpool *pool, size_t n,
                 void (*fn)(size_t i, void *ctx), void *ctx);
/* Rewrites the DHCP hosts of the default network from the database. */
int cc_dhcp_sync(struct cc *cc, struct db *db, struct koala_error **err);

/* ---- node table and poller (nodes.c) ---- */
/* "name=https://host:port/,..." -> nodes added or updated.  0 / -1. */
int nodes_configure_static(struct cc *cc, struct db *db, const char *spec,
                           struct koala_error **err);
/* Adds a node or changes its endpoint. */
int nodes_put(struct cc *cc, struct db *db, const char *name,
              const char *endpoint, struct koala_error **err);
int nodes_remove(struct cc *cc, struct db *db, const char *name,
                 struct koala_error **err);
int nodes_load(struct cc *cc, struct db *db, struct koala_error **err);
/* Copies the node table (under cc->lock). Returns the count. */
size_t nodes_snapshot(struct cc *cc, struct cc_node *out);
/* Finds a node's endpoint; false if there is no such node. */
bool nodes_endpoint(struct cc *cc, const char *name, char out[256]);
bool node_name_valid(const char *name);
int nodes_poller_start(struct cc *cc, struct koala_error **err);
void nodes_poller_stop(struct cc *cc);
/* Wakes the poller for a round now. */
void nodes_poll_soon(struct cc *cc);

/* ---- calls to NCs and instance records (ncwire.c) ---- */
/* One call: builds the client, sends, parses.  *doc must be freed. */
int nc_call(struct cc *cc, const char *endpoint, const char *op, char *req,
            size_t len, unsigned timeout_ms, struct xml_doc **doc,
            const struct xml_node **body, struct koala_error **err);
/* What an NC says about one instance. */
struct nc_report {
    char id[32];
    char state[16];
    char reason_code[64];
    char reason_message[256];
    char hypervisor[8];
    bool have_volumes; /* from the NC's own description of the instance */
    char volumes[CC_VOLUMES_TEXT];
};
int nc_report_parse(const struct xml_node *n, struct nc_report *out,
                    struct koala_error **err);
/* Sends an instance operation taking just instanceId (ncTerminateInstance,
 * ncRebootInstance, ncStopInstance, ncStartInstance) and parses the
 * instance in the reply. */
int nc_instance_op(struct cc *cc, const char *endpoint, const char *op,
                   const char *instance_id, struct nc_report *out,
                   struct koala_error **err);
/* Writes an instance element (named elem) as the CC reports it. */
void cc_instance_write(struct xml_writer *w, const char *elem,
                       const struct cc_instance *in);
/* Applies an NC's report to the instance in the database (instance
 * belonging to node; other nodes' instances are left alone).  Frees the
 * address when it is terminated, tells the CLC when something changed.
 * *dhcp_dirty is set when the DHCP hosts must be rewritten. */
int cc_apply_report(struct cc *cc, struct db *db, const char *node,
                    const struct nc_report *r, bool mark_seen, bool *dhcp_dirty,
                    struct koala_error **err);
bool cc_state_valid(const char *state);
/* Instance ids: "i-" and 8 or 17 hex digits. */
bool cc_instance_id_valid(const char *id);

/* ---- the guests' DHCP leases as their sign of life (leases.c) ---- */
/* Records the leases dnsmasq gave or renewed since the last call: the
 * instance's reachability (below) and a notification to the CLC. */
void leases_notice(struct cc *cc, struct db *db);
/* EC2's instance status reachability: "passed" for a running instance
 * whose guest took its DHCP lease since it started, "initializing" for a
 * running one that has not yet, NULL otherwise. */
const char *cc_reachability(const struct cc_instance *in);

/* ---- CLC notifications (notify.c) ---- */
struct notifier *notifier_new(struct cc *cc, struct koala_error **err);
/* Queues an instance's record for NotifyInstanceState (coalesced per
 * instance; best effort). */
void notifier_push(struct notifier *n, const struct cc_instance *in);
void notifier_free(struct notifier *n);
/* Records sent, failures (for tests and logs). */
void notifier_counts(struct notifier *n, uint64_t *sent, uint64_t *failed);

/* ---- security groups: the network policy and its push (netpush.c) ---- */
/* Loads the held document from cc.db (net_policy). */
struct netpush *netpush_new(struct db *db, struct koala_error **err);
void netpush_free(struct netpush *np);
/* After a successful poll of a node that reports holding version reported
 * (-1: it did not say): pushes the held document if the node is behind. */
void netpush_node(struct cc *cc, const char *name, const char *endpoint,
                  int64_t reported);
/* Whether the node may take new instances as far as the policy goes: it
 * holds some document, or the CC holds none.  (A node behind the held
 * version keeps instances its document does not list closed until the
 * newer one arrives; one without any document would run them open.) */
bool netpush_node_current(struct cc *cc, const char *name);

/* ---- operations (ops.c, run.c) and routing (server.c) ---- */
/* ---- EBS volumes (volumes.c) ---- */
/* An instance element's <volume> attachments in the stored form. */
void cc_volumes_from_xml(const struct xml_node *inst, char *out, size_t size);
/* The stored form as <volume> elements. */
void cc_volumes_write(struct xml_writer *w, const char *text);
/* Writes n and what it holds (elements and text) into w. */
void cc_xml_copy(struct xml_writer *w, const struct xml_node *n);
/* A <volume> (attachment with its export) has what a node needs; in
 * RunInstances (need_export false) the export may come later
 * (AttachVolume), and *boot (when asked) says whether it is the
 * instance's boot volume (<boot>true</boot>). */
int cc_volume_check(const struct xml_node *v, bool need_export, bool *boot,
                    struct koala_error **err);
struct cc_req;
void cc_op_attach_volume(struct cc_req *r);
void cc_op_detach_volume(struct cc_req *r);
/* ResizeVolume (instanceId, volumeId, sizeBytes): ncResizeVolume on the
 * instance's node, which gives the running guest the grown export's size. */
void cc_op_resize_volume(struct cc_req *r);

struct cc_req {
    struct cc *cc;
    struct http_request *http;
    struct buf body;
    bool too_big;
    struct xml_doc *doc;
    const struct xml_node *op; /* the Body's element */
    struct db *db;             /* borrowed for the request */
};

extern const struct http_handler cc_http_handler;
/* An instanceType element (name, cores, memoryMb, diskGb). */
int cc_parse_itype(const struct xml_node *n, struct cc_itype *t,
                   struct koala_error **err);
/* The scheduler's view: the nodes (copied into nodes) with their free
 * resources: the maximum less this CC's live instances there less the
 * node's foreign use.  Returns the count, SIZE_MAX on error. */
size_t cc_sched_view(struct cc *cc, struct db *db, struct cc_node *nodes,
                     struct sched_node *view, struct koala_error **err);
/* Sends an instance's ncRunInstance request (taken over) to its node and
 * applies the answer, unless a send for it is under way already (then
 * false).  The poller uses it for launches a node never heard of (run.c). */
bool cc_launch_send(struct cc *cc, struct db *db, const struct cc_instance *in,
                    char *req, size_t len, bool *dhcp_dirty);
/* Each replies (a response or a fault). */
void cc_op_run_instances(struct cc_req *r);
void cc_op_instances_action(struct cc_req *r, const char *op);
void cc_op_describe_instances(struct cc_req *r);
void cc_op_describe_resources(struct cc_req *r);
void cc_op_get_console_output(struct cc_req *r);
void cc_op_configure_nodes(struct cc_req *r);
void cc_op_notify_instance_state(struct cc_req *r);
void cc_op_describe_service(struct cc_req *r);
void cc_op_set_network_policy(struct cc_req *r); /* netpush.c */
/* Replies with a fault for err and frees it. */
void cc_fail(struct cc_req *r, struct koala_error *err);
/* Replies with a finished document. */
void cc_reply(struct cc_req *r, struct xml_writer *w);
struct db *cc_req_db(struct cc_req *r, struct koala_error **err);

#endif
