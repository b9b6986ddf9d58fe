/* sgfilter.c: the node's security-group table (see sgfilter.h for what it
 * holds and when it is written). */
#define LOG_MODULE "nc"
#include "sgfilter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
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

#define STATE_FILE "netpolicy.json"

struct nc_sg {
    pthread_mutex_t lock;     /* before nc->lock */
    struct netpolicy *policy; /* NULL: version 0 */
    char router[16];          /* "" unknown */
    int64_t applied;          /* the version the kernel's table holds */
    char *brnf_error;         /* NULL: br_netfilter is on */
};

/* ---- the rule set ---- */


static void addr_text(uint32_t a, char out[16])
{
    struct in_addr in = {.s_addr = htonl(a)};
    inet_ntop(AF_INET, &in, out, 16);
}

/* A unicast IPv4 address an instance may have; canonical into out. */
static bool inst_ip(const char *s, char out[16])
{
    struct in_addr a;
    if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
        return false;
    uint32_t h = ntohl(a.s_addr);
    if (h == 0 || (h >> 24) == 127 || (h >> 28) >= 14)
        return false;
    return inet_ntop(AF_INET, &a, out, 16) != NULL;
}

/* The protocol part of a rule ("" for all). */
static void proto_match(const struct netpolicy_rule *r, char *out, size_t n)
{
    const char *name = r->proto == NETPOLICY_TCP   ? "tcp"
                       : r->proto == NETPOLICY_UDP ? "udp"
                                                   : NULL;
    if (r->proto == NETPOLICY_ALL) {
        snprintf(out, n, "%s", "");
    } else if (name && r->from == 0 && r->to == 65535) {
        snprintf(out, n, " meta l4proto %s", name);
    } else if (name && r->from == r->to) {
        snprintf(out, n, " %s dport %d", name, r->from);
    } else if (name) {
        snprintf(out, n, " %s dport %d-%d", name, r->from, r->to);
    } else if (r->proto == NETPOLICY_ICMP && r->from < 0) {
        snprintf(out, n, " meta l4proto icmp");
    } else if (r->proto == NETPOLICY_ICMP && r->to < 0) {
        snprintf(out, n, " icmp type %d", r->from);
    } else if (r->proto == NETPOLICY_ICMP) {
        snprintf(out, n, " icmp type %d icmp code %d", r->from, r->to);
    } else {
        snprintf(out, n, " meta l4proto %d", r->proto);
    }
}

/* One rule of a chain: dir "daddr" (egress) or "saddr" (ingress). */
static void write_rule(struct nc_text *t, const struct netpolicy_rule *r,
                       const char *dir, const char *verdict)
{
    char proto[64], net[16];
    proto_match(r, proto, sizeof(proto));
    nc_emit(t, "   ");
    if (!r->has_cidr) {
        nc_emit(t, " ip %s @grp_%s", dir, r->group + 3);
    } else if (r->prefix == 32) {
        addr_text(r->net, net);
        nc_emit(t, " ip %s %s", dir, net);
    } else if (r->prefix > 0) {
        addr_text(r->net, net);
        nc_emit(t, " ip %s %s/%d", dir, net, r->prefix);
    }
    nc_emit(t, "%s %s\n", proto, verdict);
}

/* The groups of instance id, or none. */
static const struct netpolicy_instance *groups_of(const struct netpolicy *p,
                                                  const char *id)
{
    return netpolicy_instance(p, id);
}

/* A list of group ids (pointers into the document), each once. */
struct names {
    const char **v;
    size_t n, cap;
    bool oom;
};

static void names_add(struct names *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], id) == 0)
            return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = id;
}

/* The groups of the instances written that the document describes
 * (used), and the groups their rules name (named: a set each). */
static void groups_used(const struct netpolicy *p,
                        const struct nc_sg_inst *insts, const bool *use,
                        size_t n, struct names *used, struct names *named)
{
    for (size_t i = 0; i < n; i++) {
        const struct netpolicy_instance *pi =
            use[i] ? groups_of(p, insts[i].id) : NULL;
        for (size_t g = 0; pi && g < pi->n_groups; g++)
            if (netpolicy_group(p, pi->groups[g]))
                names_add(used, pi->groups[g]);
    }
    for (size_t g = 0; g < used->n; g++) {
        const struct netpolicy_group *grp = netpolicy_group(p, used->v[g]);
        for (size_t r = 0; r < grp->n_ingress; r++)
            if (!grp->ingress[r].has_cidr)
                names_add(named, grp->ingress[r].group);
        for (size_t r = 0; r < grp->n_egress; r++)
            if (!grp->egress[r].has_cidr)
                names_add(named, grp->egress[r].group);
    }
}

/* A group's rules, once for all its local instances: gin_<g> accepts
 * what its ingress allows; gout_<g> sends what its egress allows on to
 * the receiver's ingress (goto egress_ok, whose accept ends the hook: a
 * `return` would only leave gout_<g>). */
static void write_group(struct nc_text *t, const struct netpolicy_group *g)
{
    nc_emit(t, "  chain gin_%s {\n", g->id + 3);
    for (size_t k = 0; k < g->n_ingress; k++)
        write_rule(t, &g->ingress[k], "saddr", "accept");
    nc_emit(t, "  }\n  chain gout_%s {\n", g->id + 3);
    for (size_t k = 0; k < g->n_egress; k++)
        write_rule(t, &g->egress[k], "daddr", "goto egress_ok");
    nc_emit(t, "  }\n");
}

/* An instance's chains: what every guest needs to come up, then a jump
 * to each of its groups, then drop. */
static void write_chains(struct nc_text *t, const struct netpolicy *p,
                         const char *router, const struct nc_sg_inst *in)
{
    const struct netpolicy_instance *pi = groups_of(p, in->id);
    const char *hex = in->id + 2;
    nc_emit(t, "  chain out_%s {\n    udp sport 68 udp dport 67 goto egress_ok\n",
         hex);
    if (router)
        nc_emit(t,
             "    ip daddr %s udp dport 53 goto egress_ok\n"
             "    ip daddr %s tcp dport 53 goto egress_ok\n",
             router, router);
    else
        nc_emit(t, "    udp dport 53 goto egress_ok\n"
                "    tcp dport 53 goto egress_ok\n");
    nc_emit(t, "    ip daddr " NC_SG_METADATA " tcp dport 80 goto egress_ok\n");
    for (size_t g = 0; pi && g < pi->n_groups; g++)
        if (netpolicy_group(p, pi->groups[g]))
            nc_emit(t, "    jump gout_%s\n", pi->groups[g] + 3);
    nc_emit(t, "    counter drop\n  }\n");
    nc_emit(t, "  chain in_%s {\n", hex);
    if (router)
        nc_emit(t, "    ip saddr %s udp sport 67 udp dport 68 accept\n", router);
    else
        nc_emit(t, "    udp sport 67 udp dport 68 accept\n");
    for (size_t g = 0; pi && g < pi->n_groups; g++)
        if (netpolicy_group(p, pi->groups[g]))
            nc_emit(t, "    jump gin_%s\n", pi->groups[g] + 3);
    nc_emit(t, "    counter drop\n  }\n");
}

static void write_set(struct nc_text *t, const struct netpolicy *p,
                      const char *group)
{
    const struct netpolicy_members *m = netpolicy_members(p, group);
    nc_emit(t, "  set grp_%s {\n    type ipv4_addr\n", group + 3);
    for (size_t i = 0; m && i < m->n; i++) {
        char a[16];
        addr_text(m->addrs[i], a);
        nc_emit(t, "%s%s", i == 0 ? "    elements = { " : ",\n                 ",
             a);
    }
    if (m && m->n)
        nc_emit(t, " }\n");
    nc_emit(t, "  }\n");
}

static void write_map(struct nc_text *t, const char *name, const char *chain,
                      const struct nc_sg_inst *insts, const bool *use,
                      char (*ips)[16], size_t n)
{
    nc_emit(t, "  map %s {\n    type ipv4_addr : verdict\n", name);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (!use[i])
            continue;
        nc_emit(t, "%s%s : jump %s_%s",
             first ? "    elements = { " : ",\n                 ", ips[i],
             chain, insts[i].id + 2);
        first = false;
    }
    if (!first)
        nc_emit(t, " }\n");
    nc_emit(t, "  }\n");
}

static int inst_cmp(const void *a, const void *b)
{
    const struct nc_sg_inst *x = a, *y = b;
    int c = strcmp(x->id ? x->id : "", y->id ? y->id : "");
    return c ? c : strcmp(x->ip ? x->ip : "", y->ip ? y->ip : "");
}

int nc_sgfilter_script(const struct netpolicy *p, const char *router,
                       const struct nc_sg_inst *given, size_t n,
                       struct buf *out)
{
    struct nc_text t = {0};
    bool *use = n ? calloc(n, sizeof(*use)) : NULL;
    char(*ips)[16] = n ? calloc(n, sizeof(*ips)) : NULL;
    /* In the order of their ids, not the caller's: the same instances and
     * document give the same table whatever order the NC lists its
     * instances in (a restarted NC lists them as it finds them). */
    struct nc_sg_inst *insts = n ? malloc(n * sizeof(*insts)) : NULL;
    struct names used = {0}, named = {0};
    char rtr[16];
    int count = 0, rc = -1;
    if (n && (use == NULL || ips == NULL || insts == NULL))
        goto out;
    if (n) {
        memcpy(insts, given, n * sizeof(*insts));
        qsort(insts, n, sizeof(*insts), inst_cmp);
    }
    if (router && !inst_ip(router, rtr))
        router = NULL;
    else if (router)
        router = rtr;
    for (size_t i = 0; p && i < n; i++) {
        if (!nc_valid_instance_id(insts[i].id) || !inst_ip(insts[i].ip, ips[i]))
            continue;
        use[i] = true;
        for (size_t j = 0; j < i && use[i]; j++)
            if (use[j] && (strcmp(insts[j].id, insts[i].id) == 0 ||
                           strcmp(ips[j], ips[i]) == 0))
                use[i] = false;
        count += use[i];
    }
    nc_emit(&t, "add table inet " NC_SG_TABLE "\n"
             "delete table inet " NC_SG_TABLE "\n");
    if (p) {
        groups_used(p, insts, use, n, &used, &named);
        if (used.oom || named.oom)
            goto out;
        nc_emit(&t, "table inet " NC_SG_TABLE " {\n");
        for (size_t i = 0; i < named.n; i++)
            write_set(&t, p, named.v[i]);
        write_map(&t, "egress", "out", insts, use, ips, n);
        write_map(&t, "ingress", "in", insts, use, ips, n);
        nc_emit(&t, "  chain forward {\n"
                 "    type filter hook forward priority 0; policy accept;\n"
                 "    ct state established,related accept\n"
                 "    ct state invalid drop\n"
                 "    ip saddr vmap @egress\n"
                 "    ip daddr vmap @ingress\n"
                 "  }\n"
                 "  chain egress_ok {\n"
                 "    ip daddr vmap @ingress\n"
                 "    accept\n"
                 "  }\n");
        for (size_t i = 0; i < used.n; i++)
            write_group(&t, netpolicy_group(p, used.v[i]));
        for (size_t i = 0; i < n; i++)
            if (use[i])
                write_chains(&t, p, router, &insts[i]);
        nc_emit(&t, "}\n");
    }
    if (!t.oom && buf_append(out, t.b.data, t.b.len) == 0)
        rc = count;
out:
    free(used.v);
    free(named.v);
    free(use);
    free(ips);
    free(insts);
    buf_free(&t.b);
    return rc;
}

/* ---- the held document ---- */

static char *state_path(const struct nc *nc)
{
    char *p = NULL;
    return asprintf(&p, "%s/" STATE_FILE, nc->data_dir) < 0 ? NULL : p;
}

/* {"version": N, "router": "...", "policy": "<the document's text>"} */
static int state_load(struct nc *nc, struct nc_sg *sg, struct koala_error **err)
{
    _cleanup_free_ char *path = state_path(nc);
    if (path == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t len = 0;
    struct koala_error *e = NULL;
    _cleanup_free_ char *text =
        nc_read_file(path, NETPOLICY_MAX_TEXT * 2 + 4096, &len, &e);
    if (text == NULL) {
        if (e && e->errnum == ENOENT) {
            error_free(e);
            return 0; /* version 0: never had a document */
        }
        if (err)
            *err = e;
        else
            error_free(e);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    const char *doc = json_string_value(json_object_get(root, "policy"));
    const char *router = json_string_value(json_object_get(root, "router"));
    struct netpolicy *p = doc ? netpolicy_parse(doc, strlen(doc), err) : NULL;
    if (p == NULL && doc == NULL)
        error_set(err, EINVAL, NULL, "%s: no policy in it", path);
    if (p)
        snprintf(sg->router, sizeof(sg->router), "%s", router ? router : "");
    json_decref(root);
    if (p == NULL) {
        error_prefix(err ? *err : NULL, "%s", path);
        return -1;
    }
    sg->policy = p;
    return 0;
}

static int state_save(struct nc *nc, const char *text, size_t len,
                      int64_t version, const char *router,
                      struct koala_error **err)
{
    _cleanup_free_ char *path = state_path(nc);
    json_t *o = json_pack("{s:I, s:s, s:s%}", "version", (json_int_t)version,
                          "router", router ? router : "", "policy", text, len);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = path && s ? nc_write_atomic(path, s, strlen(s), err)
                       : error_set(err, ENOMEM, NULL, "out of memory");
    free(s);
    return rc;
}

/* ---- br_netfilter ---- */

static void brnf_enable(struct nc *nc, struct nc_sg *sg)
{
    /* /proc/sys/net is the namespace's of whoever opens it: the helper
     * runs inside the node's namespace. */
    static const char script[] =
        "f=/proc/sys/net/bridge/bridge-nf-call-iptables\n"
        "[ -e $f ] || modprobe br_netfilter || true\n"
        "[ -e $f ] || { echo \"$f is missing (no br_netfilter in this "
        "kernel)\"; exit 1; }\n"
        "echo 1 > $f && [ \"$(cat $f)\" = 1 ]\n";
    const char *argv[] = {"sh", "-c", script, NULL};
    struct nc_exec_opts o = {.netns_fd = nc->netns_fd, .timeout_ms = 30000};
    struct koala_error *e = NULL;
    free(sg->brnf_error);
    sg->brnf_error = NULL;
    if (nc_exec(argv, &o, NULL, &e) < 0) {
        if (asprintf(&sg->brnf_error,
                     "security groups need br_netfilter "
                     "(net.bridge.bridge-nf-call-iptables=1 in the node's "
                     "namespace): %s",
                     error_message(e)) < 0)
            sg->brnf_error = NULL;
        log_error("%s: instances will not be started",
                  sg->brnf_error ? sg->brnf_error : "br_netfilter");
    }
    error_free(e);
}

int nc_sgfilter_ready(struct nc *nc, struct koala_error **err)
{
    struct nc_sg *sg = nc->sg;
    pthread_mutex_lock(&sg->lock);
    if (sg->brnf_error)
        brnf_enable(nc, sg); /* perhaps loaded by the operator since */
    int rc = sg->brnf_error ? error_set(err, ENOTSUP, "Server.InternalError",
                                        "%s", sg->brnf_error)
                            : 0;
    pthread_mutex_unlock(&sg->lock);
    return rc;
}

int nc_sgfilter_init(struct nc *nc, struct koala_error **err)
{
    struct nc_sg *sg = calloc(1, sizeof(*sg));
    if (sg == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_init(&sg->lock, NULL);
    sg->applied = -1; /* whatever the kernel has: rewritten at start */
    nc->sg = sg;
    if (state_load(nc, sg, err) < 0) {
        error_prefix(*err, "the held network policy cannot be read (remove the "
                           "file to start unfiltered until the CC pushes one)");
        return -1;
    }
    if (sg->policy)
        log_info("network policy version %lld held",
                 (long long)sg->policy->version);
    brnf_enable(nc, sg);
    return 0;
}

void nc_sgfilter_free(struct nc_sg *sg)
{
    if (sg == NULL)
        return;
    netpolicy_free(sg->policy);
    free(sg->brnf_error);
    pthread_mutex_destroy(&sg->lock);
    free(sg);
}

/* ---- writing it ---- */

static bool has_tap(const struct nc_instance *i)
{
    return i->state != NC_STOPPED && i->state != NC_TERMINATED;
}

static const char *nft_bin(void)
{
    return access("/usr/sbin/nft", X_OK) == 0 ? "/usr/sbin/nft" : "nft";
}

/* Compiles and loads; sg->lock held (and, when lock, list is nc's, read
 * under nc->lock). */
static int rewrite_locked(struct nc *nc, struct nc_instance *list, bool lock,
                          struct koala_error **err)
{
    struct nc_sg *sg = nc->sg;
    _cleanup_buf_ struct buf script = {0};
    /* No document, and the table already deleted since start: nothing to
     * write (and no nft on every launch of a node without a CLC). */
    if (sg->policy == NULL && sg->applied == 0)
        return 0;
    if (lock)
        pthread_mutex_lock(&nc->lock);
    size_t n = 0;
    for (const struct nc_instance *i = lock ? nc->instances : list; i;
         i = i->next)
        n += has_tap(i);
    struct nc_sg_inst *insts = n ? calloc(n, sizeof(*insts)) : NULL;
    size_t k = 0;
    for (const struct nc_instance *i = lock ? nc->instances : list;
         i && (insts || n == 0); i = i->next)
        if (has_tap(i))
            insts[k++] = (struct nc_sg_inst){i->id, i->private_ip};
    /* The strings are the requests', fixed while the instance is listed;
     * compiled under the lock, as the list may drop one after. */
    int count =
        insts || n == 0
            ? nc_sgfilter_script(sg->policy, sg->router[0] ? sg->router : NULL,
                                 insts, k, &script)
            : -1;
    if (lock)
        pthread_mutex_unlock(&nc->lock);
    free(insts);
    if (count < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/" NC_SG_TABLE ".nft", nc->data_dir) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (nc_write_atomic(path, script.data, script.len, err) < 0) {
        error_prefix(*err, "security group rules");
        return -1;
    }
    const char *argv[] = {nft_bin(), "-f", path, NULL};
    struct nc_exec_opts o = {.netns_fd = nc->netns_fd, .timeout_ms = 60000};
    sg->applied = -1; /* the old table or the new one, as nft ends */
    int64_t t0 = time_mono_ms();
    if (nc_exec(argv, &o, NULL, err) < 0) {
        error_prefix(*err, "security group rules");
        return -1;
    }
    sg->applied = sg->policy ? sg->policy->version : 0;
    log_debug("security groups: table %s: version %lld, %d instance(s), "
              "loaded in %lld ms",
              NC_SG_TABLE, (long long)(sg->policy ? sg->policy->version : 0),
              count, (long long)(time_mono_ms() - t0));
    return 0;
}

int nc_sgfilter_sync(struct nc *nc, struct koala_error **err)
{
    pthread_mutex_lock(&nc->sg->lock);
    int rc = rewrite_locked(nc, NULL, true, err);
    pthread_mutex_unlock(&nc->sg->lock);
    return rc;
}

int nc_sgfilter_sync_list(struct nc *nc, struct nc_instance *list,
                          struct koala_error **err)
{
    pthread_mutex_lock(&nc->sg->lock);
    int rc = rewrite_locked(nc, list, false, err);
    pthread_mutex_unlock(&nc->sg->lock);
    return rc;
}

int64_t nc_sgfilter_version(struct nc *nc)
{
    pthread_mutex_lock(&nc->sg->lock);
    int64_t v = nc->sg->policy ? nc->sg->policy->version : 0;
    pthread_mutex_unlock(&nc->sg->lock);
    return v;
}

int nc_sgfilter_set(struct nc *nc, int64_t version, const char *text,
                    size_t len, const char *router, int64_t *held,
                    struct koala_error **err)
{
    struct nc_sg *sg = nc->sg;
    char rtr[16] = "";
    if (router && router[0] && !inst_ip(router, rtr))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "router '%s' is not an IPv4 address", router);
    struct netpolicy *p = netpolicy_parse(text, len, err);
    if (p == NULL)
        return -1;
    if (p->version != version) {
        netpolicy_free(p);
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "version %lld does not match the document's (%lld)",
                         (long long)version, (long long)p->version);
    }
    pthread_mutex_lock(&sg->lock);
    int64_t have = sg->policy ? sg->policy->version : 0;
    int rc = 0;
    if (version > have || (version == have && strcmp(rtr, sg->router) != 0)) {
        rc = state_save(nc, text, len, version, rtr, err);
        if (rc == 0) {
            netpolicy_free(sg->policy);
            sg->policy = p;
            p = NULL;
            snprintf(sg->router, sizeof(sg->router), "%s", rtr);
            sg->applied = -1;
        }
    }
    /* Held on disk; acknowledged once the kernel has it too (a failed
     * nft is a fault, and the CC's retry rewrites again). */
    if (rc == 0 && sg->policy && sg->applied != sg->policy->version) {
        rc = rewrite_locked(nc, NULL, true, err);
        if (rc == 0)
            log_info("network policy version %lld applied",
                     (long long)sg->policy->version);
    }
    *held = sg->policy ? sg->policy->version : 0;
    pthread_mutex_unlock(&sg->lock);
    netpolicy_free(p);
    return rc;
}
