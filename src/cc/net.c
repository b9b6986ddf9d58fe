/* net.c: the cluster network's router, first cut: in the cluster's network
 * namespace (or the host's when none is configured) the LAN bridge exists,
 * is up and holds the router address; IPv4 forwarding is on; and when an
 * uplink is configured, traffic from the subnet leaving through it is
 * masqueraded (nftables table "koala_cc_<network>", replaced atomically).
 *
 * Nodes' bridges are joined to the LAN bridge by whoever set up the hosts
 * (veth pairs, or a physical NIC); the CC only owns its side.  Nothing is
 * torn down on exit: instances keep their network while koala-cc restarts.
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"

/* ip [-n NS] ARGS... */
static int ip_cmd(const char *ip_bin, const char *netns,
                  struct koala_error **err, ...)
{
    const char *argv[24];
    size_t n = 0;
    argv[n++] = ip_bin;
    if (netns) {
        argv[n++] = "-n";
        argv[n++] = netns;
    }
    va_list ap;
    va_start(ap, err);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < ARRAY_SIZE(argv) - 1)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    /* ip -n does the setns itself; run from here. */
    return proc_run(NULL, argv, NULL, err);
}

static int setup_nat(struct cc_network *net, const char *nft_bin,
                     struct koala_error **err)
{
    char cidr[24], table[64];
    cc_ip_format(net->subnet.network, cidr);
    snprintf(cidr + strlen(cidr), sizeof(cidr) - strlen(cidr), "/%u",
             net->subnet.prefix);
    snprintf(table, sizeof(table), "koala_cc_%s", net->name);
    _cleanup_buf_ struct buf script = {0};
    /* add+delete+add: replaces the table in one transaction whether or not
     * it existed. */
    buf_printf(&script,
               "add table ip %s\n"
               "delete table ip %s\n"
               "table ip %s {\n"
               "  chain postrouting {\n"
               "    type nat hook postrouting priority srcnat; policy accept;\n"
               "    ip saddr %s oifname \"%s\" masquerade\n"
               "  }\n"
               "}\n",
               table, table, table, cidr, net->uplink);
    if (script.data == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    const char *argv[] = {nft_bin, "-f", "-", NULL};
    if (proc_run(net->netns, argv, script.data, err) < 0) {
        error_prefix(*err, "outbound NAT");
        return -1;
    }
    return 0;
}

int net_setup(struct cc_network *net, const char *ip_bin, const char *nft_bin,
              struct koala_error **err)
{
    if (ip_bin == NULL)
        return error_set(err, ENOENT, NULL,
                         "the ip command (iproute2) is not installed");
    const char *ns = net->netns;
    struct koala_error *probe = NULL;
    if (ip_cmd(ip_bin, ns, &probe, "link", "show", "dev", net->bridge, NULL) <
        0) {
        error_free(probe);
        if (ip_cmd(ip_bin, ns, err, "link", "add", "name", net->bridge, "type",
                   "bridge", NULL) < 0)
            return -1;
        log_info("network %s: created bridge %s%s%s", net->name, net->bridge,
                 ns ? " in netns " : "", ns ? ns : "");
    }
    char addr[24];
    cc_ip_format(net->subnet.router, addr);
    snprintf(addr + strlen(addr), sizeof(addr) - strlen(addr), "/%u",
             net->subnet.prefix);
    if (ip_cmd(ip_bin, ns, err, "addr", "replace", addr, "dev", net->bridge,
               NULL) < 0 ||
        ip_cmd(ip_bin, ns, err, "link", "set", "dev", net->bridge, "up", NULL) <
            0)
        return -1;
    if (ns &&
        ip_cmd(ip_bin, ns, err, "link", "set", "dev", "lo", "up", NULL) < 0)
        return -1;
    /* The metadata service's address, once on the LAN (guests reach it
     * through their router, whose MAC answers for it). */
    if (net->metadata &&
        ip_cmd(ip_bin, ns, err, "addr", "replace", "169.254.169.254/32", "dev",
               net->bridge, NULL) < 0)
        return -1;
    if ((ns || net->uplink) && proc_enable_forwarding(ns, err) < 0)
        return -1;
    if (net->uplink) {
        if (nft_bin == NULL)
            return error_set(err, ENOENT, NULL,
                             "uplink %s needs nft (nftables) for NAT",
                             net->uplink);
        if (setup_nat(net, nft_bin, err) < 0)
            return -1;
    }
    log_info("network %s: router %s on %s%s%s%s%s", net->name, addr,
             net->bridge, ns ? " in netns " : "", ns ? ns : "",
             net->uplink ? ", NAT out of " : "",
             net->uplink ? net->uplink : "");
    return 0;
}
