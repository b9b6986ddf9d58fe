/* cc.c: starting and stopping koala-cc: its options, data directory and
 * database, nodes, the cluster network (bridge, DHCP, NAT), the poller,
 * the CLC notifier and the SOAP server.
 *
 * Configuration, section [cc] (defaults in brackets):
 *   listen              ADDR:PORT of the SOAP endpoint [127.0.0.1:8774]
 *   data_dir            cc.db, dhcp-hosts, dnsmasq.* [/var/lib/koala/cc]
 *   name                the cluster / availability zone [cluster1]
 *   tls_cert, tls_key   this CC's certificate (server and client) [required]
 *   ca                  the cloud CA: peers must hold a certificate from it
 *   clc_endpoint        where NotifyInstanceState goes [none: not sent]
 *   scheduler           GREEDY | ROUNDROBIN [GREEDY]
 *   nodes               static nodes "name=https://host:port/,..." added
 *                       at every start (ConfigureNodes adds to them and
 *                       is persisted) [none]
 *   poll_interval       seconds between polls of the NCs, fractions
 *                       allowed [2]
 *   node_fail_threshold failed polls in a row that make a node BROKEN [3]
 *   nc_timeout          seconds per call to an NC (ncRunInstance: 3x) [10]
 *   terminated_keep     seconds terminated instances stay listed [3600]
 *   workers             threads calling NCs for requests [16]
 *   manage_network      false: no bridge, DHCP or NAT at all [true]
 *   netns               network namespace of the cluster's router [none:
 *                       the host's own]
 *   bridge              the cluster LAN bridge [klan0]
 *   subnet              the instances' subnet [10.111.0.0/16]
 *   router              the bridge's address [the subnet's first host]
 *   dns                 DNS servers handed out by DHCP, "a,b" [none]
 *   uplink              interface for outbound NAT of the subnet [none]
 *   public_ips          the cluster's public address pool for elastic
 *                       IPs: CIDRs (/16../32), ranges A-B and addresses,
 *                       comma separated, at most 4096 addresses; held on
 *                       the uplink (needs uplink) [none]
 *   node_bridge         bridge named to NCs in netConfig [empty: theirs]
 *   dhcp_lease          lease time [12h]
 *   dnsmasq             the DHCP server program [dnsmasq]
 *   region              the cloud's region, naming the DNS domain of the
 *                       instances (REGION.compute.internal) [koala-1]
 *   dns_upstream        "a,b": servers the cluster's DNS forwards other
 *                       names to [none: refused at once]
 *   metadata            serve the instance metadata service on
 *                       169.254.169.254 in the cluster network [true; only
 *                       with manage_network]
 *   metadata_port       its port [80]
 *   identity_cert, identity_key  a certificate of the cloud's CA and its key
 *                       that sign instance identity documents [none: not
 *                       served]
 *   tunnel_address      this router's address on the network between the
 *                       clusters' routers: joins the tunnels to the other
 *                       clusters (tunnel.h); guests then get MTU 1450
 *                       [none: no tunnels]
 *   log_level           "info", "info,cc=debug" ... [info]
 */
#define LOG_MODULE "cc"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cc.h"
#include "imds.h"
#include "tunnel.h"
#include "tunnel_crypt.h"
#include "log.h"

/* ---- options ---- */

static int opt_str(const struct config *cfg, const char *key, const char *def,
                   char **out, struct koala_error **err)
{
    const char *v = config_get(cfg, "cc", key, def);
    if (v == NULL || *v == '\0') {
        *out = NULL;
        return 0;
    }
    *out = strdup(v);
    return *out ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

/* Seconds, fractions allowed ("0.5"), into milliseconds. */
static int opt_seconds(const struct config *cfg, const char *key, double def,
                       double min, int64_t *ms, struct koala_error **err)
{
    const char *v = config_get(cfg, "cc", key, NULL);
    double s = def;
    if (v) {
        char *end = NULL;
        s = strtod(v, &end);
        if (end == v || *str_trim(end) != '\0' || s < min || s > 86400)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "cc.%s: '%s' is not a number of seconds (>= %g)",
                             key, v, min);
    }
    *ms = (int64_t)(s * 1000 + 0.5);
    return 0;
}

int cc_options_load(const struct config *cfg, struct cc_options *opt,
                    struct koala_error **err)
{
    memset(opt, 0, sizeof(*opt));
    const char *listen = config_get(cfg, "cc", "listen", "127.0.0.1:8774");
    if (str_split_hostport(listen, &opt->listen_addr, &opt->port) < 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.listen: '%s' is not ADDRESS:PORT", listen);
    if (opt_str(cfg, "data_dir", "/var/lib/koala/cc", &opt->data_dir, err) ||
        opt_str(cfg, "name", "cluster1", &opt->name, err) ||
        opt_str(cfg, "tls_cert", NULL, &opt->tls_cert, err) ||
        opt_str(cfg, "tls_key", NULL, &opt->tls_key, err) ||
        opt_str(cfg, "ca", NULL, &opt->ca, err) ||
        opt_str(cfg, "clc_endpoint", NULL, &opt->clc_endpoint, err) ||
        opt_str(cfg, "nodes", NULL, &opt->nodes, err) ||
        opt_str(cfg, "netns", NULL, &opt->netns, err) ||
        opt_str(cfg, "bridge", "klan0", &opt->bridge, err) ||
        opt_str(cfg, "subnet", "10.111.0.0/16", &opt->subnet, err) ||
        opt_str(cfg, "router", NULL, &opt->router, err) ||
        opt_str(cfg, "dns", NULL, &opt->dns, err) ||
        opt_str(cfg, "uplink", NULL, &opt->uplink, err) ||
        opt_str(cfg, "public_ips", NULL, &opt->public_ips, err) ||
        opt_str(cfg, "node_bridge", NULL, &opt->node_bridge, err) ||
        opt_str(cfg, "dhcp_lease", "12h", &opt->dhcp_lease, err) ||
        opt_str(cfg, "dnsmasq", "dnsmasq", &opt->dnsmasq, err) ||
        opt_str(cfg, "region", "koala-1", &opt->region, err) ||
        opt_str(cfg, "dns_upstream", NULL, &opt->dns_upstream, err) ||
        opt_str(cfg, "identity_cert", NULL, &opt->identity_cert, err) ||
        opt_str(cfg, "identity_key", NULL, &opt->identity_key, err) ||
        opt_str(cfg, "tunnel_address", NULL, &opt->tunnel_address, err))
        return -1;
    const char *sched = config_get(cfg, "cc", "scheduler", "GREEDY");
    if (str_equal_nocase(sched, "GREEDY"))
        opt->policy = CC_SCHED_GREEDY;
    else if (str_equal_nocase(sched, "ROUNDROBIN"))
        opt->policy = CC_SCHED_ROUNDROBIN;
    else
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.scheduler: '%s' is not GREEDY or ROUNDROBIN",
                         sched);
    int64_t v;
    if (opt_seconds(cfg, "poll_interval", 2, 0.05, &opt->poll_interval_ms,
                    err) < 0 ||
        opt_seconds(cfg, "nc_timeout", 10, 0.1, &opt->nc_timeout_ms, err) < 0 ||
        config_get_int(cfg, "cc", "node_fail_threshold", 3,
                       &opt->fail_threshold, err) < 0 ||
        config_get_int(cfg, "cc", "terminated_keep", 3600,
                       &opt->terminated_keep_s, err) < 0 ||
        config_get_int(cfg, "cc", "workers", 16, &v, err) < 0 ||
        config_get_bool(cfg, "cc", "manage_network", true, &opt->manage_network,
                        err) < 0 ||
        config_get_bool(cfg, "cc", "metadata", true, &opt->metadata, err) < 0 ||
        config_get_int(cfg, "cc", "metadata_port", 80, &opt->metadata_port,
                       err) < 0)
        return -1;
    if (opt->metadata_port < 1 || opt->metadata_port > 65535)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.metadata_port: %lld is not a port",
                         (long long)opt->metadata_port);
    if ((opt->identity_cert == NULL) != (opt->identity_key == NULL))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.identity_cert and cc.identity_key go together");
    struct in_addr ta;
    if (opt->tunnel_address &&
        inet_pton(AF_INET, opt->tunnel_address, &ta) != 1)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.tunnel_address: '%s' is not an IPv4 address",
                         opt->tunnel_address);
    struct cc_pool pool;
    if (cc_pool_parse(opt->public_ips, &pool, err) < 0)
        return -1;
    if (pool.n && (!opt->manage_network || opt->uplink == NULL))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.public_ips needs cc.uplink (and "
                         "manage_network): the router holds them there");
    if (opt->fail_threshold < 1)
        opt->fail_threshold = 1;
    opt->workers = v < 1 ? 1 : v > 256 ? 256 : (unsigned)v;
    if (!node_name_valid(opt->name ? opt->name : ""))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "cc.name: '%s' is not a valid cluster name",
                         opt->name ? opt->name : "");
    return 0;
}

void cc_options_clear(struct cc_options *opt)
{
    char **strs[] = {&opt->listen_addr,  &opt->data_dir, &opt->name,
                     &opt->tls_cert,     &opt->tls_key,  &opt->ca,
                     &opt->clc_endpoint, &opt->nodes,    &opt->netns,
                     &opt->bridge,       &opt->subnet,   &opt->router,
                     &opt->dns,          &opt->uplink,   &opt->node_bridge,
                     &opt->dhcp_lease,   &opt->dnsmasq,  &opt->identity_cert,
                     &opt->identity_key, &opt->region,   &opt->dns_upstream,
                     &opt->tunnel_address, &opt->public_ips};
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

static char *dup_opt(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int copy_options(struct cc_options *dst, const struct cc_options *src)
{
    *dst = *src;
    char **strs[] = {&dst->listen_addr,  &dst->data_dir, &dst->name,
                     &dst->tls_cert,     &dst->tls_key,  &dst->ca,
                     &dst->clc_endpoint, &dst->nodes,    &dst->netns,
                     &dst->bridge,       &dst->subnet,   &dst->router,
                     &dst->dns,          &dst->uplink,   &dst->node_bridge,
                     &dst->dhcp_lease,   &dst->dnsmasq,  &dst->identity_cert,
                     &dst->identity_key, &dst->region,   &dst->dns_upstream,
                     &dst->tunnel_address, &dst->public_ips};
    int rc = 0;
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        const char *s = *strs[i];
        *strs[i] = dup_opt(s);
        if (s && *strs[i] == NULL)
            rc = -1;
    }
    return rc;
}

/* ---- running jobs in parallel ---- */

struct latch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t remaining;
};

struct pjob {
    size_t i;
    void (*fn)(size_t i, void *ctx);
    void *ctx;
    struct latch *latch;
};

static void pjob_run(void *arg)
{
    struct pjob *j = arg;
    j->fn(j->i, j->ctx);
    pthread_mutex_lock(&j->latch->mu);
    if (--j->latch->remaining == 0)
        pthread_cond_signal(&j->latch->cv);
    pthread_mutex_unlock(&j->latch->mu);
}

void cc_parallel(struct cc *cc, struct workpool *pool, size_t n,
                 void (*fn)(size_t i, void *ctx), void *ctx)
{
    struct pjob *jobs = n > 1 ? calloc(n, sizeof(*jobs)) : NULL;
    if (jobs == NULL || pool == NULL) {
        for (size_t i = 0; i < n; i++)
            fn(i, ctx);
        free(jobs);
        return;
    }
    struct latch l = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, n};
    for (size_t i = 0; i < n; i++) {
        jobs[i] = (struct pjob){i, fn, ctx, &l};
        if (workpool_submit(pool, pjob_run, &jobs[i]) < 0)
            pjob_run(&jobs[i]);
    }
    pthread_mutex_lock(&l.mu);
    while (l.remaining > 0)
        pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cv);
    free(jobs);
}

int cc_dhcp_sync(struct cc *cc, struct db *db, struct koala_error **err)
{
    if (cc->net.dhcp == NULL)
        return 0;
    _cleanup_buf_ struct buf hosts = {0};
    pthread_mutex_lock(&cc->dhcp_sync_lock);
    int rc = store_dhcp_hosts(db, cc->net.name, &hosts, err);
    if (rc == 0)
        rc = dhcp_update(cc->net.dhcp, &hosts, err);
    pthread_mutex_unlock(&cc->dhcp_sync_lock);
    return rc;
}

/* ---- the daemon ---- */

void cc_free(struct cc *cc)
{
    if (cc == NULL)
        return;
    http_server_free(cc->http);
    imds_stop(cc->imds);
    tunnel_relay_free(cc->tunnel_relay);
    nodes_poller_stop(cc);
    workpool_free(cc->pool);
    netpush_free(cc->netpush);
    workpool_free(cc->poll_pool);
    notifier_free(cc->notify);
    claims_free(cc->launching);
    dhcp_free(cc->net.dhcp);
    db_pool_free(cc->db);
    pthread_mutex_destroy(&cc->lock);
    pthread_mutex_destroy(&cc->sched_lock);
    pthread_mutex_destroy(&cc->dhcp_sync_lock);
    pthread_mutex_destroy(&cc->eip_lock);
    pthread_mutex_destroy(&cc->poll_mu);
    cc_options_clear(&cc->opt);
    free(cc);
}

static int setup_network(struct cc *cc, struct db *db, struct koala_error **err)
{
    struct cc_network *net = &cc->net;
    if (!cc->opt.manage_network) {
        log_info("network management is off: no bridge, DHCP or NAT");
        return 0;
    }
    _cleanup_free_ char *ip_bin = proc_find("ip");
    _cleanup_free_ char *dnsmasq = proc_find(cc->opt.dnsmasq);
    /* The NAT from cc.db first: after a restart the instances' public
     * addresses are back before anything else runs. */
    if (net_setup(net, ip_bin, err) < 0 || eipnat_apply(cc, db, err) < 0)
        return -1;
    char domain[128];
    dns_domain_for(cc->opt.region, domain, sizeof(domain));
    struct dhcp_config dc = {
        .domain = domain,
        .upstream = cc->opt.dns_upstream,
        .metadata = net->metadata,
        .dnsmasq = dnsmasq,
        .netns = cc->opt.netns,
        .bridge = net->bridge,
        .subnet = &net->subnet,
        .dns = cc->opt.dns,
        .lease = cc->opt.dhcp_lease,
        .dir = cc->opt.data_dir,
        /* room for VXLAN and for the relay's seal (tunnel_crypt.h) */
        .mtu = cc->opt.tunnel_address ? CC_TUNNEL_GUEST_MTU : 0,
    };
    net->dhcp = dhcp_new(&dc, err);
    if (net->dhcp == NULL)
        return -1;
    return cc_dhcp_sync(cc, db, err);
}

struct cc *cc_new(const struct cc_options *opt, struct koala_error **err)
{
    struct cc *cc = calloc(1, sizeof(*cc));
    if (cc == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&cc->lock, NULL);
    pthread_mutex_init(&cc->sched_lock, NULL);
    pthread_mutex_init(&cc->dhcp_sync_lock, NULL);
    pthread_mutex_init(&cc->eip_lock, NULL);
    pthread_mutex_init(&cc->poll_mu, NULL);
    struct db *db = NULL;
    _cleanup_free_ char *path = NULL; /* (before any goto: clang wants it) */
    if (copy_options(&cc->opt, opt) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (cc->opt.tls_cert == NULL || cc->opt.tls_key == NULL ||
        cc->opt.ca == NULL) {
        error_set(err, EINVAL, "InvalidParameterValue",
                  "cc.tls_cert, cc.tls_key and cc.ca are required: the CC "
                  "speaks only mutual TLS");
        goto fail;
    }
    cc->tls = (struct http_client_tls){cc->opt.ca, cc->opt.tls_cert,
                                       cc->opt.tls_key, false};
    if (mkdir(cc->opt.data_dir, 0700) < 0 && errno != EEXIST) {
        error_set_errno(err, "data directory %s", cc->opt.data_dir);
        goto fail;
    }
    if (asprintf(&path, "%s/cc.db", cc->opt.data_dir) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    /* One connection for each thread that may hold one while another
     * waits for one: the SOAP workers (whose operations wait for jobs on
     * cc->pool), cc->pool's and the poller's threads, and the poller. */
    cc->db = db_pool_new(
        path, cc_migrations, cc_n_migrations,
        CC_HTTP_WORKERS + cc->opt.workers + CC_POLL_WORKERS + IMDS_WORKERS + 4,
        err);
    if (cc->db == NULL || (db = db_pool_get(cc->db, err)) == NULL)
        goto fail;
    snprintf(cc->net.name, sizeof(cc->net.name), CC_DEFAULT_NETWORK);
    cc->net.netns = cc->opt.netns;
    cc->net.bridge = cc->opt.bridge;
    cc->net.uplink = cc->opt.uplink;
    cc->net.metadata = cc->opt.manage_network && cc->opt.metadata;
    if (cc_subnet_parse(cc->opt.subnet, cc->opt.router, &cc->net.subnet, err) <
            0 ||
        cc_pool_parse(cc->opt.public_ips, &cc->net.pool, err) < 0 ||
        nodes_load(cc, db, err) < 0 ||
        (cc->netpush = netpush_new(db, err)) == NULL ||
        (cc->opt.nodes &&
         nodes_configure_static(cc, db, cc->opt.nodes, err) < 0))
        goto fail;
    cc->pool = workpool_new(cc->opt.workers, "ccwork", err);
    cc->poll_pool =
        cc->pool ? workpool_new(CC_POLL_WORKERS, "ccpoll", err) : NULL;
    cc->notify = cc->poll_pool ? notifier_new(cc, err) : NULL;
    cc->launching = claims_new();
    if (cc->launching == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (cc->notify == NULL || setup_network(cc, db, err) < 0 ||
        cc_tunnel_restore(cc, db, err) < 0)
        goto fail;
    cc->net_ok = true;
    if (cc->net.metadata && (cc->imds = imds_start(cc, err)) == NULL)
        goto fail;
    db_pool_put(cc->db, db);
    db = NULL;
    if (nodes_poller_start(cc, err) < 0)
        goto fail;
    struct http_server_config hc = {
        .address = cc->opt.listen_addr,
        .port = cc->opt.port,
        .max_connections = 512,
        .tls_cert_file = cc->opt.tls_cert,
        .tls_key_file = cc->opt.tls_key,
        .tls_client_ca_file = cc->opt.ca,
        .workers = CC_HTTP_WORKERS,
    };
    cc->http = http_server_new(&hc, &cc_http_handler, cc, err);
    if (cc->http == NULL)
        goto fail;
    return cc;
fail:
    if (db)
        db_pool_put(cc->db, db);
    cc_free(cc);
    return NULL;
}
