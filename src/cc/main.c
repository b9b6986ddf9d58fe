/* main.c: koala-cc, the cluster controller: parses arguments, loads the
 * configuration ([cc] section; command line options override it), runs
 * until SIGINT/SIGTERM. */
#define LOG_MODULE "cc"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "config.h"
#include "daemon.h"
#include "log.h"

/* Every key of [cc]: see cc.c for what each means. */
static const char *const keys[] = {
    "listen",
    "data_dir",
    "name",
    "tls_cert",
    "tls_key",
    "ca",
    "clc_endpoint",
    "scheduler",
    "nodes",
    "poll_interval",
    "node_fail_threshold",
    "nc_timeout",
    "terminated_keep",
    "workers",
    "manage_network",
    "netns",
    "bridge",
    "subnet",
    "router",
    "dns",
    "uplink",
    "public_ips",
    "node_bridge",
    "dhcp_lease",
    "dnsmasq",
    "region",
    "dns_upstream",
    "tunnel_address",
    "metadata",
    "metadata_port",
    "identity_cert",
    "identity_key",
    "log_level",
    NULL,
};

static const struct daemon_spec spec = {
    "koala-cc",
    "cc",
    keys,
    "Runs the cluster controller.\n"
    "  --listen ADDR:PORT        SOAP over mutual TLS (127.0.0.1:8774)\n"
    "  --data-dir DIR            cc.db, DHCP files (/var/lib/koala/cc)\n"
    "  --name CLUSTER            the availability zone (cluster1)\n"
    "  --tls-cert F --tls-key F --ca F\n"
    "  --clc-endpoint URL        where state changes are pushed\n"
    "  --scheduler GREEDY|ROUNDROBIN\n"
    "  --nodes name=URL,...      nodes added at every start\n"
    "  --poll-interval S --node-fail-threshold N --nc-timeout S\n"
    "  --terminated-keep S --workers N\n"
    "  --manage-network BOOL     bridge, DHCP and NAT (true)\n"
    "  --netns NAME --bridge NAME --subnet CIDR --router ADDR\n"
    "  --dns A,B --uplink IF --node-bridge NAME --dhcp-lease T\n"
    "  --dnsmasq PATH\n"
    "  --public-ips LIST         the public pool on the uplink (none)\n"
    "  --log-level SPEC          \"info\", \"info,cc=debug\" ...\n",
};

int main(int argc, char **argv)
{
    int status;
    _cleanup_config_ struct config *cfg =
        daemon_config(&spec, argc, argv, &status);
    if (cfg == NULL)
        return status;
    struct koala_error *err = NULL;
    struct cc_options opt;
    if (cc_options_load(cfg, &opt, &err) < 0) {
        fprintf(stderr, "koala-cc: %s\n", error_message(err));
        error_free(err);
        cc_options_clear(&opt);
        return 2;
    }
    daemon_block_signals();
    struct cc *cc = cc_new(&opt, &err);
    if (cc == NULL) {
        log_error("cannot start: %s", error_message(err));
        error_free(err);
        cc_options_clear(&opt);
        return 1;
    }
    log_info("cluster %s: listening on https://%s:%u (data in %s, %s)",
             opt.name, opt.listen_addr, (unsigned)http_server_port(cc->http),
             opt.data_dir,
             opt.policy == CC_SCHED_GREEDY ? "GREEDY" : "ROUNDROBIN");
    int sig = daemon_wait_signal();
    log_info("signal %d: stopping", sig);
    cc_free(cc);
    cc_options_clear(&opt);
    return 0;
}
