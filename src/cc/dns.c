/* dns.c: the cluster's names, answered by the DHCP server's dnsmasq
 * (dhcp.c runs it): what goes into its addn-hosts file and which servers
 * it forwards to.  Cloud-init and sshd look up the instance's own name at
 * boot; a resolver that answers (or refuses) at once spares each guest
 * the resolver timeouts (40 s for cloud-init 22.4). */
#include <stdio.h>
#include <string.h>

#include "cc.h"

void dns_domain_for(const char *region, char *out, size_t size)
{
    if (region == NULL || *region == '\0' || strcmp(region, "us-east-1") == 0)
        snprintf(out, size, "ec2.internal");
    else
        snprintf(out, size, "%s.compute.internal", region);
}

void dns_ip_label(const char *ip, char out[20])
{
    int n = snprintf(out, 20, "ip-%s", ip);
    for (char *p = out + 3; n > 0 && *p; p++)
        if (*p == '.')
            *p = '-';
}

int dns_hosts_format(const char *dhcp_hosts, const char *domain, bool metadata,
                     struct buf *out)
{
    const char *dot = domain ? "." : "", *dom = domain ? domain : "";
    if (metadata && buf_printf(out,
                               "169.254.169.254 instance-data%s%s "
                               "instance-data\n",
                               dot, dom) < 0)
        return -1;
    for (const char *line = dhcp_hosts; *line;) {
        size_t len = strcspn(line, "\n");
        char mac[32], ip[16], id[64];
        /* "mac,ip,id" as dhcp_hosts_format writes it. */
        if (sscanf(line, "%31[^,],%15[^,],%63[^,\n]", mac, ip, id) == 3) {
            char label[20];
            dns_ip_label(ip, label);
            if (buf_printf(out, "%s %s%s%s %s %s%s%s %s\n", ip, label, dot, dom,
                           label, id, dot, dom, id) < 0)
                return -1;
        }
        line += len;
        if (*line == '\n')
            line++;
    }
    if (out->data == NULL && buf_append_str(out, "") < 0)
        return -1;
    return 0;
}

int dns_server_args(const char *upstream, struct buf *out)
{
    if (upstream) {
        const char *p = upstream;
        while (*p) {
            size_t len = strcspn(p, ", ");
            if (len > 0 && (buf_printf(out, "--server=%.*s", (int)len, p) < 0 ||
                            buf_append_char(out, '\0') < 0))
                return -1;
            p += len;
            p += strspn(p, ", ");
        }
    }
    return buf_append_char(out, '\0');
}
