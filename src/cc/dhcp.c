/* dhcp.c: the cluster network's DHCP server: dnsmasq (dnsmasq-base) run as
 * a child of koala-cc inside the cluster's network namespace, handing out
 * fixed leases only (one "mac,ip,name" line per instance in
 * <dir>/dhcp-hosts, `static` range mode).
 *
 * The hosts file is rewritten atomically (temporary file, fsync, rename)
 * from the database whenever an allocation changes, and dnsmasq is sent
 * SIGHUP to reread it; leases of addresses that were freed are released
 * at once, so that the next instance given the address gets it.  A SIGHUP that
 * reached a dnsmasq that had not yet installed its handler would kill it, so
 * the signal waits until /proc/PID/status shows SIGHUP caught.  If dnsmasq dies
 * it is started again by dhcp_check() (the poller calls it every round); on
 * shutdown it gets SIGTERM by its pid and is waited for.  It also gets SIGTERM
 * if koala-cc dies (PR_SET_PDEATHSIG), so a crash leaves none behind. In
 * --no-daemon mode dnsmasq neither forks, nor writes its pid file (the CC
 * writes <dir>/dnsmasq.pid), nor changes its user.
 *
 * The same dnsmasq is the cluster's DNS server (dns.c): on the router's
 * address it answers the instances' names from <dir>/dns-hosts (written
 * with the DHCP hosts, reread on the same SIGHUP), never forwards the
 * cluster's own domain, and forwards other names to the configured
 * upstream servers or, with none, refuses them at once.
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cc.h"
#include "log.h"

struct dhcp {
    pthread_mutex_t lock;
    char *dnsmasq, *netns, *bridge, *dns, *lease, *domain, *upstream;
    bool metadata;
    int mtu;
    struct cc_subnet subnet;
    char *hosts_path, *lease_path, *pid_path, *log_path, *dns_hosts_path;
    pid_t pid;
    int64_t started_ms; /* monotonic */
    unsigned starts;
};

int dhcp_hosts_format(const char *const *macs, const char *const *ips,
                      const char *const *names, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++)
        if (buf_printf(out, "%s,%s,%s\n", macs[i], ips[i], names[i]) < 0)
            return -1;
    return 0;
}

int dhcp_write_file(const char *path, const char *data, size_t len,
                    struct koala_error **err)
{
    _cleanup_free_ char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return error_set_errno(err, "%s", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            error_set_errno(err, "writing %s", tmp);
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        error_set_errno(err, "fsync %s", tmp);
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        error_set_errno(err, "rename %s", tmp);
        unlink(tmp);
        return -1;
    }
    return 0;
}

static char *dup_opt(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

void dhcp_free(struct dhcp *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->lock);
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int status;
        int64_t deadline = time_mono_ms() + 5000;
        while (waitpid(d->pid, &status, WNOHANG) == 0) {
            if (time_mono_ms() > deadline) {
                kill(d->pid, SIGKILL);
                waitpid(d->pid, &status, 0);
                break;
            }
            usleep(10000);
        }
        log_info("dnsmasq (pid %d) stopped", (int)d->pid);
        d->pid = 0;
    }
    pthread_mutex_unlock(&d->lock);
    pthread_mutex_destroy(&d->lock);
    free(d->dnsmasq);
    free(d->netns);
    free(d->bridge);
    free(d->dns);
    free(d->lease);
    free(d->domain);
    free(d->upstream);
    free(d->dns_hosts_path);
    free(d->hosts_path);
    free(d->lease_path);
    free(d->pid_path);
    free(d->log_path);
    free(d);
}

struct dhcp *dhcp_new(const struct dhcp_config *cfg, struct koala_error **err)
{
    struct dhcp *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&d->lock, NULL);
    d->subnet = *cfg->subnet;
    d->dnsmasq = dup_opt(cfg->dnsmasq);
    d->netns = dup_opt(cfg->netns);
    d->bridge = dup_opt(cfg->bridge);
    d->dns = dup_opt(cfg->dns);
    d->lease = strdup(cfg->lease && *cfg->lease ? cfg->lease : "12h");
    d->domain = dup_opt(cfg->domain);
    d->upstream = dup_opt(cfg->upstream);
    d->mtu = cfg->mtu;
    d->metadata = cfg->metadata;
    if (d->bridge == NULL || d->lease == NULL ||
        (cfg->domain && d->domain == NULL) ||
        (cfg->upstream && d->upstream == NULL) ||
        asprintf(&d->dns_hosts_path, "%s/dns-hosts", cfg->dir) < 0 ||
        asprintf(&d->hosts_path, "%s/dhcp-hosts", cfg->dir) < 0 ||
        asprintf(&d->lease_path, "%s/dnsmasq.leases", cfg->dir) < 0 ||
        asprintf(&d->pid_path, "%s/dnsmasq.pid", cfg->dir) < 0 ||
        asprintf(&d->log_path, "%s/dnsmasq.log", cfg->dir) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        dhcp_free(d);
        return NULL;
    }
    if (d->dnsmasq == NULL) {
        error_set(err, ENOENT, NULL,
                  "dnsmasq is not installed (package dnsmasq-base)");
        dhcp_free(d);
        return NULL;
    }
    return d;
}

/* Starts dnsmasq; d->lock held. */
static int start_locked(struct dhcp *d, struct koala_error **err)
{
    char net[16], mask[16], router[16];
    cc_ip_format(d->subnet.network, net);
    cc_ip_format(d->subnet.prefix ? ~0u << (32 - d->subnet.prefix) : 0, mask);
    cc_ip_format(d->subnet.router, router);
    char a_iface[80], a_range[128], a_hosts[300], a_leases[300], a_pid[300],
        a_router[64], a_dns[300], a_user[80], a_domain[300], a_local[300],
        a_addn[300], a_mtu[48];
    _cleanup_buf_ struct buf servers = {0};
    snprintf(a_iface, sizeof(a_iface), "--interface=%s", d->bridge);
    snprintf(a_range, sizeof(a_range), "--dhcp-range=%s,static,%s,%s", net,
             mask, d->lease);
    snprintf(a_hosts, sizeof(a_hosts), "--dhcp-hostsfile=%s", d->hosts_path);
    snprintf(a_leases, sizeof(a_leases), "--dhcp-leasefile=%s", d->lease_path);
    snprintf(a_pid, sizeof(a_pid), "--pid-file=%s", d->pid_path);
    snprintf(a_router, sizeof(a_router), "--dhcp-option=option:router,%s",
             router);
    /* Were it to drop privileges (it does not with --no-daemon) it would
     * become "nobody", who may not read the data directory. */
    struct passwd pw, *pwp = NULL;
    char pwbuf[1024];
    getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &pwp);
    snprintf(a_user, sizeof(a_user), "--user=%s", pwp ? pw.pw_name : "root");
    const char *argv[48];
    size_t n = 0;
    argv[n++] = d->dnsmasq;
    argv[n++] = "--no-daemon";
    argv[n++] = "--conf-file=/dev/null";
    argv[n++] = "--bind-interfaces";
    argv[n++] = a_iface;
    argv[n++] = "--except-interface=lo";
    /* DNS (see the top): our names from dns-hosts, nothing from
     * /etc/hosts or /etc/resolv.conf, bare names and private reverse
     * lookups never forwarded. */
    snprintf(a_addn, sizeof(a_addn), "--addn-hosts=%s", d->dns_hosts_path);
    argv[n++] = "--no-hosts";
    argv[n++] = "--no-resolv";
    argv[n++] = "--domain-needed";
    argv[n++] = "--bogus-priv";
    argv[n++] = a_addn;
    if (d->domain) {
        snprintf(a_domain, sizeof(a_domain), "--domain=%s", d->domain);
        snprintf(a_local, sizeof(a_local), "--local=/%s/", d->domain);
        argv[n++] = a_domain;
        argv[n++] = a_local;
    }
    if (dns_server_args(d->upstream, &servers) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (char *p = servers.data; p && *p && n < ARRAY_SIZE(argv) - 16;) {
        argv[n++] = p;
        p += strlen(p) + 1;
    }
    argv[n++] = a_range;
    argv[n++] = a_hosts;
    argv[n++] = a_leases;
    argv[n++] = a_pid;
    argv[n++] = a_router;
    /* Resolvers: the configured ones, else this dnsmasq on the router. */
    snprintf(a_dns, sizeof(a_dns), "--dhcp-option=option:dns-server,%s",
             d->dns ? d->dns : router);
    argv[n++] = a_dns;
    /* Under tunnels the guests' MTU leaves room for VXLAN (tunnel.h). */
    if (d->mtu > 0) {
        snprintf(a_mtu, sizeof(a_mtu), "--dhcp-option=option:mtu,%d", d->mtu);
        argv[n++] = a_mtu;
    }
    argv[n++] = "--dhcp-authoritative";
    argv[n++] = "--log-dhcp";
    argv[n++] = "--log-facility=-";
    argv[n++] = a_user;
    argv[n] = NULL;
    int log_fd =
        open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid = proc_spawn(d->netns, argv, log_fd, err);
    if (log_fd >= 0)
        close(log_fd);
    if (pid < 0)
        return -1;
    d->pid = pid;
    d->started_ms = time_mono_ms();
    d->starts++;
    /* dnsmasq writes no pid file in --no-daemon mode: ours, for operators
     * (the CC itself only trusts the pid it holds). */
    char text[24];
    int len = snprintf(text, sizeof(text), "%d\n", (int)pid);
    struct koala_error *e = NULL;
    if (dhcp_write_file(d->pid_path, text, (size_t)len, &e) < 0)
        log_warn("%s", error_message(e));
    error_free(e);
    log_info("dnsmasq started (pid %d) on %s%s%s", (int)pid, d->bridge,
             d->netns ? " in netns " : "", d->netns ? d->netns : "");
    return 0;
}

/* Has the process installed its SIGHUP handler yet? */
static bool hup_caught(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    bool caught = false;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "SigCgt:", 7) == 0) {
            unsigned long long mask = strtoull(line + 7, NULL, 16);
            caught = (mask >> (SIGHUP - 1)) & 1;
            break;
        }
    }
    fclose(f);
    return caught;
}

/* Reaps a dnsmasq that exited; d->lock held.  True while it runs. */
static bool alive_locked(struct dhcp *d)
{
    if (d->pid <= 0)
        return false;
    int status;
    pid_t r = waitpid(d->pid, &status, WNOHANG);
    if (r == 0)
        return true;
    if (r == d->pid)
        log_warn("dnsmasq (pid %d) exited (%s %d)", (int)d->pid,
                 WIFSIGNALED(status) ? "signal" : "status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    d->pid = 0;
    return false;
}

/* One line of dnsmasq's lease file: "EXPIRY MAC IP NAME CLIENT-ID".
 * Returns how many fields were read (at least 3 for a lease). */
static int lease_fields(const char *line, char expiry[32], char mac[32],
                        char ip[32], char clid[256])
{
    char name[256];
    return sscanf(line, "%31s %31s %31s %255s %255s", expiry, mac, ip, name,
                  clid);
}

int dhcp_leases(struct dhcp *d, int64_t *stamp, struct dhcp_lease **out,
                size_t *n, struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&d->lock);
    int rc = 0;
    struct stat sb;
    FILE *f = NULL;
    if (stat(d->lease_path, &sb) < 0) {
        if (errno != ENOENT)
            rc = error_set_errno(err, "%s", d->lease_path);
        goto out;
    }
    int64_t mtime =
        (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if (mtime == *stamp)
        goto out;
    if ((f = fopen(d->lease_path, "r")) == NULL) {
        rc = error_set_errno(err, "%s", d->lease_path);
        goto out;
    }
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof(line), f)) {
        char expiry[32], mac[32], ip[32], clid[256];
        int64_t e;
        if (lease_fields(line, expiry, mac, ip, clid) < 3 ||
            str_to_i64(expiry, &e) < 0 || strlen(mac) >= sizeof((*out)->mac))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct dhcp_lease *more = realloc(*out, cap * sizeof(*more));
            if (more == NULL) {
                rc = error_set(err, ENOMEM, NULL, "out of memory");
                goto out;
            }
            *out = more;
        }
        snprintf((*out)[*n].mac, sizeof((*out)[*n].mac), "%s", mac);
        (*out)[(*n)++].expiry = e;
    }
    *stamp = mtime;
out:
    if (f)
        fclose(f);
    pthread_mutex_unlock(&d->lock);
    if (rc < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* Leases of addresses the hosts file no longer gives to that MAC are
 * released (dnsmasq-utils' dhcp_release, a DHCPRELEASE on the bridge as
 * if from the client): dnsmasq would otherwise refuse a freed address to
 * the next instance ("leased to ...") until the lease expired. */
static void release_stale_locked(struct dhcp *d, const struct buf *hosts)
{
    static const char tool[] = "/usr/bin/dhcp_release";
    FILE *f = fopen(d->lease_path, "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char expiry[32], mac[32], ip[32], clid[256];
        int n = lease_fields(line, expiry, mac, ip, clid);
        if (n < 3)
            continue;
        char want[80];
        snprintf(want, sizeof(want), "%s,%s,", mac, ip);
        if (hosts->data && strstr(hosts->data, want))
            continue;
        if (access(tool, X_OK) != 0) {
            log_warn("dnsmasq: lease of %s to %s stays until it expires "
                     "(%s is missing: dnsmasq-utils)",
                     ip, mac, tool);
            continue;
        }
        const char *argv[] = {tool,
                              d->bridge,
                              ip,
                              mac,
                              n == 5 && strcmp(clid, "*") != 0 ? clid : NULL,
                              NULL};
        struct koala_error *e = NULL;
        if (proc_run(d->netns, argv, NULL, &e) < 0)
            log_warn("dnsmasq: releasing %s of %s: %s", ip, mac,
                     error_message(e));
        else
            log_debug("dnsmasq: released %s of %s", ip, mac);
        error_free(e);
    }
    fclose(f);
}

int dhcp_update(struct dhcp *d, const struct buf *hosts,
                struct koala_error **err)
{
    _cleanup_buf_ struct buf names = {0};
    if (dns_hosts_format(hosts->data ? hosts->data : "", d->domain,
                         d->metadata, &names) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_lock(&d->lock);
    int rc = dhcp_write_file(d->dns_hosts_path, names.data ? names.data : "",
                             names.len, err);
    if (rc == 0)
        rc = dhcp_write_file(d->hosts_path, hosts->data ? hosts->data : "",
                             hosts->len, err);
    if (rc == 0) {
        if (!alive_locked(d)) {
            rc = start_locked(d, err);
        } else {
            for (int i = 0; i < 200 && !hup_caught(d->pid); i++)
                usleep(10000);
            kill(d->pid, SIGHUP);
            release_stale_locked(d, hosts);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

bool dhcp_check(struct dhcp *d)
{
    pthread_mutex_lock(&d->lock);
    bool up = alive_locked(d);
    /* Started again at most once a second, so a dnsmasq that cannot run
     * does not spin. */
    if (!up && time_mono_ms() - d->started_ms >= 1000) {
        struct koala_error *err = NULL;
        if (start_locked(d, &err) < 0)
            log_error("dnsmasq: %s", error_message(err));
        else
            up = true;
        error_free(err);
    }
    pthread_mutex_unlock(&d->lock);
    return up;
}

pid_t dhcp_pid(struct dhcp *d)
{
    pthread_mutex_lock(&d->lock);
    pid_t p = alive_locked(d) ? d->pid : 0;
    pthread_mutex_unlock(&d->lock);
    return p;
}
