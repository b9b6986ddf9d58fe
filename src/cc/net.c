/* net.c: the cluster network's router, first cut: in the cluster's network
 * namespace (or the host's when none is configured) the LAN bridge exists,
 * is up and holds the router address; IPv4 forwarding is on; the public
 * pool's addresses are on the uplink.  The NAT (outbound masquerade and
 * the public addresses' 1:1 NAT) is eipnat.c's.
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
#include <unistd.h>

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

/* The pool's addresses, each a /32 on the uplink (one ip -batch): the
 * router owns them, so it answers ARP for them at once and conntrack
 * sees them as its own; eipnat.c drops what reaches one that is not
 * associated.  Addresses a smaller pool no longer has stay until the
 * namespace or interface goes (docs/network.md). */
static int hold_pool(struct cc_network *net, const char *ip_bin,
                     struct koala_error **err)
{
    if (net->pool.n == 0)
        return 0;
    _cleanup_buf_ struct buf batch = {0};
    for (size_t i = 0; i < net->pool.n; i++)
        for (uint64_t ip = net->pool.r[i].first; ip <= net->pool.r[i].last;
             ip++) {
            char a[16];
            cc_ip_format((uint32_t)ip, a);
            buf_printf(&batch, "address replace %s/32 dev %s\n", a,
                       net->uplink);
        }
    if (batch.data == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    const char *argv[] = {ip_bin, "-batch", "-", NULL};
    if (proc_run(net->netns, argv, batch.data, err) < 0) {
        error_prefix(*err, "public addresses on %s", net->uplink);
        return -1;
    }
    return 0;
}

int net_setup(struct cc_network *net, const char *ip_bin,
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
    /* A hairpin (an instance to another's public address) leaves by the
     * LAN it came in on: a redirect would tell the sender to go to the
     * private address directly, around the NAT.  Both knobs: the kernel
     * sends one when either is on ("all" only in a namespace of our
     * own: the host's is the host's). */
    char path[128];
    snprintf(path, sizeof(path), "net/ipv4/conf/%s/send_redirects",
             net->bridge);
    if ((ns &&
         proc_sysctl(ns, "net/ipv4/conf/all/send_redirects", "0\n", err) < 0) ||
        proc_sysctl(ns, path, "0\n", err) < 0)
        return -1;
    /* The router routes; it filters nothing bridged.  With br_netfilter
     * (built in here, a module elsewhere) frames crossing the LAN bridge
     * would pass the ip hooks and get the NAT at the bridge: a hairpin
     * (an instance to another's public address) is then bridged straight
     * back out of the port it came in on, which a bridge never does, and
     * is lost.  Off in the router's own namespace (docs/network.md). */
    if (ns &&
        access("/proc/sys/net/bridge/bridge-nf-call-iptables", F_OK) == 0 &&
        proc_sysctl(ns, "net/bridge/bridge-nf-call-iptables", "0\n", err) < 0)
        return -1;
    if (net->uplink && hold_pool(net, ip_bin, err) < 0)
        return -1;
    log_info("network %s: router %s on %s%s%s%s%s", net->name, addr,
             net->bridge, ns ? " in netns " : "", ns ? ns : "",
             net->uplink ? ", NAT out of " : "",
             net->uplink ? net->uplink : "");
    return 0;
}
