/* antispoof.c: the per-tap anti-spoofing table of the node (see
 * antispoof.h for what it holds and when it is written). */
#define LOG_MODULE "nc"
#include "antispoof.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"
#include "log.h"
#include "nc.h"
#include "util.h"

/* Serialises rewrites: taken before nc->lock. */
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- what may go into a rule ---- */

/* "xx:xx:xx:xx:xx:xx", unicast; written lower case into out[18]. */
static bool valid_mac(const char *s, char out[18])
{
    if (s == NULL || strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        if (i % 3 == 2) {
            if (c != ':')
                return false;
        } else if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
        out[i] = c;
    }
    out[17] = '\0';
    int first = (int)strtol(out, NULL, 16);
    return (first & 1) == 0;
}

/* A dotted IPv4 address an instance may have (not 0.0.0.0, loopback,
 * multicast or above); written canonically into out[16]. */
static bool valid_ip(const char *s, char out[16])
{
    struct in_addr a;
    if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
        return false;
    uint32_t h = ntohl(a.s_addr);
    if (h == 0 || (h >> 24) == 127 || (h >> 28) >= 14)
        return false;
    return inet_ntop(AF_INET, &a, out, 16) != NULL;
}

static bool no_ip(const char *ip)
{
    return ip == NULL || ip[0] == '\0';
}

int nc_antispoof_check(const char *id, const char *tap, const char *mac,
                       const char *ip, struct koala_error **err)
{
    char m[18], a[16];
    if (!nc_valid_instance_id(id))
        return error_set(err, EINVAL, NULL, "anti-spoofing: bad instance id");
    if (!nc_valid_ifname(tap))
        return error_set(err, EINVAL, NULL, "anti-spoofing: bad tap name");
    if (!valid_mac(mac, m))
        return error_set(err, EINVAL, NULL,
                         "anti-spoofing: %s has no unicast MAC address", id);
    if (!no_ip(ip) && !valid_ip(ip, a))
        return error_set(err, EINVAL, NULL,
                         "anti-spoofing: %s: '%s' is not an address an "
                         "instance can have",
                         id, ip);
    return 0;
}

/* ---- the rule set ---- */


/* The chain of one tap (its id and tap name checked). */
static void write_chain(struct nc_text *b, const struct nc_antispoof_tap *t)
{
    char mac[18], ip[16];
    nc_emit(b, "  chain tap_%s {\n", t->id + 2);
    bool has_ip = !no_ip(t->ip);
    if (!valid_mac(t->mac, mac) || (has_ip && !valid_ip(t->ip, ip))) {
        /* Nothing it may send can be told: nothing at all. */
        nc_emit(b, "    counter drop\n  }\n");
        return;
    }
    nc_emit(b,
         "    ether saddr != %s counter drop\n"
         "    arp saddr ether != %s counter drop\n",
         mac, mac);
    if (has_ip)
        nc_emit(b, "    arp saddr ip != { %s, 0.0.0.0 } counter drop\n", ip);
    else
        nc_emit(b, "    arp saddr ip != 0.0.0.0 counter drop\n");
    /* Before the DHCP accept: a guest's DHCP server replies go nowhere,
     * not even from 0.0.0.0. */
    nc_emit(b, "    udp sport 67 counter drop\n"
            "    ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n");
    if (has_ip)
        nc_emit(b,
             "    ip saddr != %s counter drop\n"
             "    ether type { ip, arp } accept\n",
             ip);
    else
        nc_emit(b, "    ether type arp accept\n");
    /* IPv6 and everything else: not offered yet. */
    nc_emit(b, "    counter drop\n  }\n");
}

/* The reverse check of a tap (docs/network.md): a frame leaves it only
 * for the instance's address, as a broadcast, or as ARP, so that no guest
 * reaches another with a crafted destination MAC (the security groups
 * choose their chains by IPv4 address).  The subnet's broadcast is not
 * known here: a broadcast is an IPv4 frame to ff:ff:ff:ff:ff:ff. */
static void write_out_chain(struct nc_text *b, const struct nc_antispoof_tap *t)
{
    char mac[18], ip[16];
    nc_emit(b, "  chain to_%s {\n", t->id + 2);
    bool has_ip = !no_ip(t->ip);
    if (!valid_mac(t->mac, mac) || (has_ip && !valid_ip(t->ip, ip))) {
        nc_emit(b, "    counter drop\n  }\n");
        return;
    }
    nc_emit(b, "    ether type arp accept\n");
    if (has_ip)
        nc_emit(b, "    ip daddr { %s, 255.255.255.255 } accept\n", ip);
    else /* its DHCP offer goes to the address it is being offered */
        nc_emit(b, "    udp sport 67 udp dport 68 accept\n");
    nc_emit(b, "    ether daddr ff:ff:ff:ff:ff:ff ether type ip accept\n"
            "    counter drop\n  }\n");
}

int nc_antispoof_script(const struct nc_antispoof_tap *taps, size_t n,
                        struct buf *out)
{
    struct nc_text b = {0};
    bool *use = n ? calloc(n, sizeof(*use)) : NULL;
    int count = 0;
    if (n && use == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const struct nc_antispoof_tap *t = &taps[i];
        if (!nc_valid_instance_id(t->id) || !nc_valid_ifname(t->tap))
            continue;
        use[i] = true;
        for (size_t j = 0; j < i && use[i]; j++)
            if (use[j] && (strcmp(taps[j].id, t->id) == 0 ||
                           strcmp(taps[j].tap, t->tap) == 0))
                use[i] = false;
        count += use[i];
    }
    /* add + delete: the table goes whether or not it was there; all of it
     * is one transaction. */
    nc_emit(&b, "add table bridge " NC_ANTISPOOF_TABLE "\n"
             "delete table bridge " NC_ANTISPOOF_TABLE "\n");
    if (count > 0) {
        nc_emit(&b, "table bridge " NC_ANTISPOOF_TABLE " {\n");
        for (size_t i = 0; i < n; i++)
            if (use[i]) {
                write_chain(&b, &taps[i]);
                write_out_chain(&b, &taps[i]);
            }
        nc_emit(&b, "  map tap_chain {\n"
                 "    type ifname : verdict\n"
                 "    elements = {");
        const char *sep = " ";
        for (size_t i = 0; i < n; i++) {
            if (!use[i])
                continue;
            nc_emit(&b, "%s\"%s\" : jump tap_%s", sep, taps[i].tap,
                 taps[i].id + 2);
            sep = ",\n                 ";
        }
        nc_emit(&b, " }\n"
                 "  }\n"
                 "  map tap_out {\n"
                 "    type ifname : verdict\n"
                 "    elements = {");
        sep = " ";
        for (size_t i = 0; i < n; i++) {
            if (!use[i])
                continue;
            nc_emit(&b, "%s\"%s\" : jump to_%s", sep, taps[i].tap, taps[i].id + 2);
            sep = ",\n                 ";
        }
        nc_emit(&b, " }\n"
                 "  }\n"
                 "  chain from_guests {\n"
                 "    type filter hook prerouting priority -200; "
                 "policy accept;\n"
                 "    iifname vmap @tap_chain\n"
                 "  }\n"
                 "  chain to_guests {\n"
                 "    type filter hook postrouting priority 200; "
                 "policy accept;\n"
                 "    oifname vmap @tap_out\n"
                 "  }\n"
                 "}\n");
    }
    free(use);
    int rc = b.oom || buf_append(out, b.b.data, b.b.len) < 0 ? -1 : count;
    buf_free(&b.b);
    return rc;
}

/* ---- writing it ---- */

/* Instances that may have a tap.  The fields read are the request's,
 * fixed; the list itself is read under nc->lock (or is not the node's). */
static bool has_tap(const struct nc_instance *i)
{
    return i->state != NC_STOPPED && i->state != NC_TERMINATED;
}

static int script_of(const struct nc_instance *list, struct buf *out,
                     int *count)
{
    size_t n = 0;
    for (const struct nc_instance *i = list; i; i = i->next)
        n += has_tap(i);
    struct nc_antispoof_tap *taps = n ? calloc(n, sizeof(*taps)) : NULL;
    if (n && taps == NULL)
        return -1;
    size_t k = 0;
    for (const struct nc_instance *i = list; i; i = i->next)
        if (has_tap(i))
            taps[k++] = (struct nc_antispoof_tap){
                .id = i->id, .tap = i->tap, .mac = i->mac, .ip = i->private_ip};
    *count = nc_antispoof_script(taps, n, out);
    free(taps);
    return *count < 0 ? -1 : 0;
}

static const char *nft_bin(void)
{
    return access("/usr/sbin/nft", X_OK) == 0 ? "/usr/sbin/nft" : "nft";
}

/* Loads the script with nft inside the node's namespace.  The script goes
 * through a file of the data directory (the helper runner gives its
 * children /dev/null as stdin); it is also where an operator finds what
 * was loaded last. */
static int apply(struct nc *nc, const struct buf *script, int count,
                 struct koala_error **err)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/" NC_ANTISPOOF_TABLE ".nft", nc->data_dir) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    FILE *f = fopen(path, "we");
    if (f == NULL)
        return error_set_errno(err, "anti-spoofing rules: %s", path);
    size_t w = fwrite(script->data, 1, script->len, f);
    if ((fclose(f) != 0) | (w != script->len))
        return error_set_errno(err, "anti-spoofing rules: writing %s", path);
    const char *argv[] = {nft_bin(), "-f", path, NULL};
    struct nc_exec_opts o = {.netns_fd = nc->netns_fd, .timeout_ms = 30000};
    if (nc_exec(argv, &o, NULL, err) < 0) {
        error_prefix(*err, "anti-spoofing rules");
        return -1;
    }
    log_debug("anti-spoofing: table %s holds %d tap(s)", NC_ANTISPOOF_TABLE,
              count);
    return 0;
}

/* Rewrites the table from list; with lock, list is nc's and read under
 * nc->lock. */
static int rewrite(struct nc *nc, struct nc_instance *list, bool lock,
                   struct koala_error **err)
{
    _cleanup_buf_ struct buf script = {0};
    int count = 0;
    pthread_mutex_lock(&sync_lock);
    if (lock)
        pthread_mutex_lock(&nc->lock);
    int rc = script_of(lock ? nc->instances : list, &script, &count);
    if (lock)
        pthread_mutex_unlock(&nc->lock);
    if (rc < 0)
        error_set(err, ENOMEM, NULL, "out of memory");
    else
        rc = apply(nc, &script, count, err);
    pthread_mutex_unlock(&sync_lock);
    return rc;
}

int nc_antispoof_sync(struct nc *nc, struct koala_error **err)
{
    return rewrite(nc, NULL, true, err);
}

int nc_antispoof_sync_list(struct nc *nc, struct nc_instance *list,
                           struct koala_error **err)
{
    return rewrite(nc, list, false, err);
}
