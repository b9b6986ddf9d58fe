/* netpolicy.c: parsing and checking the network policy document (see
 * netpolicy.h and docs/network.md). */
#include "netpolicy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "id.h"

#define BAD "InvalidParameterValue"

static int bad(struct koala_error **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad(struct koala_error **err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return error_set(err, EINVAL, BAD, "network policy: %s", msg);
}

/* Only these keys in object o (NULL-terminated list). */
static int only_keys(json_t *o, const char *const *keys, const char *where,
                     struct koala_error **err)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++)
            known = strcmp(k, keys[i]) == 0;
        if (!known)
            return bad(err, "%s: unknown key '%.64s'", where, k);
    }
    return 0;
}

static bool ipv4(const char *s, uint32_t *out)
{
    struct in_addr a;
    /* inet_pton takes exactly four dotted decimals, nothing around them. */
    if (inet_pton(AF_INET, s, &a) != 1)
        return false;
    *out = ntohl(a.s_addr);
    return true;
}

static int parse_cidr(const char *s, struct netpolicy_rule *r, const char *w,
                      struct koala_error **err)
{
    char addr[20];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : 0;
    char *end = NULL;
    long prefix = slash && slash[1] >= '0' && slash[1] <= '9'
                      ? strtol(slash + 1, &end, 10)
                      : -1;
    if (slash == NULL || n == 0 || n >= sizeof(addr) || end == NULL ||
        *end != '\0' || prefix < 0 || prefix > 32 || end - slash > 3)
        return bad(err, "%s: cidr '%.64s' is not an IPv4 prefix a.b.c.d/n", w,
                   s);
    memcpy(addr, s, n);
    addr[n] = '\0';
    uint32_t a;
    if (!ipv4(addr, &a))
        return bad(err, "%s: cidr '%.64s' is not an IPv4 prefix a.b.c.d/n", w,
                   s);
    r->has_cidr = true;
    r->prefix = (int)prefix;
    r->net = prefix == 0 ? 0 : a & (0xffffffffu << (32 - prefix));
    return 0;
}

/* An integer member of o, absent: def. */
static int int_member(json_t *o, const char *key, long long min, long long max,
                      long long def, long long *out, const char *w,
                      struct koala_error **err)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max)
        return bad(err, "%s: '%s' must be an integer from %lld to %lld", w, key,
                   min, max);
    *out = json_integer_value(v);
    return 0;
}

static int parse_rule(json_t *o, struct netpolicy_rule *r, const char *w,
                      struct koala_error **err)
{
    static const char *const keys[] = {"proto", "from",        "to", "cidr",
                                       "group", "description", NULL};
    if (!json_is_object(o))
        return bad(err, "%s: a rule is an object", w);
    if (only_keys(o, keys, w, err) < 0)
        return -1;
    memset(r, 0, sizeof(*r));
    json_t *p = json_object_get(o, "proto");
    if (json_is_string(p)) {
        const char *s = json_string_value(p);
        if (strcmp(s, "tcp") == 0)
            r->proto = NETPOLICY_TCP;
        else if (strcmp(s, "udp") == 0)
            r->proto = NETPOLICY_UDP;
        else if (strcmp(s, "icmp") == 0)
            r->proto = NETPOLICY_ICMP;
        else if (strcmp(s, "all") == 0)
            r->proto = NETPOLICY_ALL;
        else
            return bad(err,
                       "%s: proto '%.32s' is not tcp, udp, icmp, all or a "
                       "protocol number",
                       w, s);
    } else if (json_is_integer(p) && json_integer_value(p) >= 0 &&
               json_integer_value(p) <= 255) {
        r->proto = (int)json_integer_value(p);
    } else {
        return bad(err,
                   "%s: proto must be tcp, udp, icmp, all or a protocol "
                   "number 0..255",
                   w);
    }
    long long from, to;
    if (r->proto == NETPOLICY_TCP || r->proto == NETPOLICY_UDP) {
        if (json_object_get(o, "from") == NULL ||
            json_object_get(o, "to") == NULL)
            return bad(err, "%s: a tcp or udp rule needs from and to", w);
        if (int_member(o, "from", 0, 65535, 0, &from, w, err) < 0 ||
            int_member(o, "to", 0, 65535, 0, &to, w, err) < 0)
            return -1;
        if (from > to)
            return bad(err, "%s: port range %lld-%lld is reversed", w, from,
                       to);
    } else if (r->proto == NETPOLICY_ICMP) {
        if (int_member(o, "from", -1, 255, -1, &from, w, err) < 0 ||
            int_member(o, "to", -1, 255, -1, &to, w, err) < 0)
            return -1;
        if (from == -1 && to != -1)
            return bad(err, "%s: an icmp code needs a type", w);
    } else {
        if (int_member(o, "from", -1, -1, -1, &from, w, err) < 0 ||
            int_member(o, "to", -1, -1, -1, &to, w, err) < 0)
            return -1;
    }
    r->from = (int)from;
    r->to = (int)to;
    json_t *d = json_object_get(o, "description");
    if (d && !json_is_string(d))
        return bad(err, "%s: description must be a string", w);
    json_t *c = json_object_get(o, "cidr"), *g = json_object_get(o, "group");
    if ((c == NULL) == (g == NULL))
        return bad(err, "%s: a rule has exactly one of cidr and group", w);
    if (c) {
        if (!json_is_string(c))
            return bad(err, "%s: cidr must be a string", w);
        return parse_cidr(json_string_value(c), r, w, err);
    }
    const char *gs = json_is_string(g) ? json_string_value(g) : "";
    if (!id_resource_valid(gs, "sg-"))
        return bad(err, "%s: group '%.64s' is not a security group id", w, gs);
    snprintf(r->group, sizeof(r->group), "%s", gs);
    return 0;
}

static int parse_rules(json_t *a, const char *gid, const char *dir,
                       struct netpolicy_rule **out, size_t *n, size_t *total,
                       struct koala_error **err)
{
    char w[96];
    snprintf(w, sizeof(w), "groups.%s.%s", gid, dir);
    if (a == NULL)
        return 0;
    if (!json_is_array(a))
        return bad(err, "%s must be an array", w);
    size_t len = json_array_size(a);
    if (len > NETPOLICY_MAX_RULES)
        return bad(err, "%s: more than %u rules", w, NETPOLICY_MAX_RULES);
    *total += len;
    if (*total > NETPOLICY_MAX_TOTAL_RULES)
        return bad(err, "more than %u rules in all", NETPOLICY_MAX_TOTAL_RULES);
    if (len == 0)
        return 0;
    *out = calloc(len, sizeof(**out));
    if (*out == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < len; i++) {
        char wi[128];
        snprintf(wi, sizeof(wi), "%s[%zu]", w, i);
        if (parse_rule(json_array_get(a, i), &(*out)[i], wi, err) < 0)
            return -1;
        (*n)++;
    }
    return 0;
}

static int cmp_group(const void *a, const void *b)
{
    return strcmp(((const struct netpolicy_group *)a)->id,
                  ((const struct netpolicy_group *)b)->id);
}

static int cmp_members(const void *a, const void *b)
{
    return strcmp(((const struct netpolicy_members *)a)->group,
                  ((const struct netpolicy_members *)b)->group);
}

static int cmp_instance(const void *a, const void *b)
{
    return strcmp(((const struct netpolicy_instance *)a)->id,
                  ((const struct netpolicy_instance *)b)->id);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_groups(json_t *o, struct netpolicy *p,
                        struct koala_error **err)
{
    static const char *const keys[] = {"ingress", "egress", NULL};
    if (o == NULL)
        return 0;
    if (!json_is_object(o))
        return bad(err, "groups must be an object");
    size_t n = json_object_size(o);
    if (n > NETPOLICY_MAX_GROUPS)
        return bad(err, "more than %u groups", NETPOLICY_MAX_GROUPS);
    if (n == 0)
        return 0;
    p->groups = calloc(n, sizeof(*p->groups));
    if (p->groups == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t total = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!id_resource_valid(k, "sg-"))
            return bad(err, "groups: '%.64s' is not a security group id", k);
        char w[64];
        snprintf(w, sizeof(w), "groups.%s", k);
        if (!json_is_object(v))
            return bad(err, "%s must be an object", w);
        if (only_keys(v, keys, w, err) < 0)
            return -1;
        struct netpolicy_group *g = &p->groups[p->n_groups++];
        snprintf(g->id, sizeof(g->id), "%s", k);
        if (parse_rules(json_object_get(v, "ingress"), k, "ingress",
                        &g->ingress, &g->n_ingress, &total, err) < 0 ||
            parse_rules(json_object_get(v, "egress"), k, "egress", &g->egress,
                        &g->n_egress, &total, err) < 0)
            return -1;
    }
    qsort(p->groups, p->n_groups, sizeof(*p->groups), cmp_group);
    return 0;
}

static int parse_members(json_t *o, struct netpolicy *p,
                         struct koala_error **err)
{
    if (o == NULL)
        return 0;
    if (!json_is_object(o))
        return bad(err, "members must be an object");
    size_t n = json_object_size(o);
    if (n > NETPOLICY_MAX_GROUPS)
        return bad(err, "members: more than %u groups", NETPOLICY_MAX_GROUPS);
    if (n == 0)
        return 0;
    p->members = calloc(n, sizeof(*p->members));
    if (p->members == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t total = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!id_resource_valid(k, "sg-"))
            return bad(err, "members: '%.64s' is not a security group id", k);
        if (!json_is_array(v))
            return bad(err, "members.%s must be an array of addresses", k);
        struct netpolicy_members *m = &p->members[p->n_members++];
        snprintf(m->group, sizeof(m->group), "%s", k);
        size_t len = json_array_size(v);
        total += len;
        if (total > NETPOLICY_MAX_ADDRS)
            return bad(err, "more than %u members in all", NETPOLICY_MAX_ADDRS);
        if (len == 0)
            continue;
        m->addrs = calloc(len, sizeof(*m->addrs));
        if (m->addrs == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < len; i++) {
            json_t *a = json_array_get(v, i);
            const char *s = json_is_string(a) ? json_string_value(a) : "";
            if (!ipv4(s, &m->addrs[i]))
                return bad(err,
                           "members.%s[%zu]: '%.64s' is not an IPv4 "
                           "address",
                           k, i, s);
        }
        qsort(m->addrs, len, sizeof(*m->addrs), cmp_u32);
        for (size_t i = 0; i < len; i++)
            if (m->n == 0 || m->addrs[m->n - 1] != m->addrs[i])
                m->addrs[m->n++] = m->addrs[i];
    }
    qsort(p->members, p->n_members, sizeof(*p->members), cmp_members);
    return 0;
}

static int parse_instances(json_t *o, struct netpolicy *p,
                           struct koala_error **err)
{
    if (o == NULL)
        return 0;
    if (!json_is_object(o))
        return bad(err, "instances must be an object");
    size_t n = json_object_size(o);
    if (n > NETPOLICY_MAX_INSTANCES)
        return bad(err, "more than %u instances", NETPOLICY_MAX_INSTANCES);
    if (n == 0)
        return 0;
    p->instances = calloc(n, sizeof(*p->instances));
    if (p->instances == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (!id_resource_valid(k, "i-"))
            return bad(err, "instances: '%.64s' is not an instance id", k);
        if (!json_is_array(v) ||
            json_array_size(v) > NETPOLICY_MAX_INSTANCE_GROUPS)
            return bad(err,
                       "instances.%s must be an array of at most %d group "
                       "ids",
                       k, NETPOLICY_MAX_INSTANCE_GROUPS);
        struct netpolicy_instance *in = &p->instances[p->n_instances++];
        snprintf(in->id, sizeof(in->id), "%s", k);
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *g = json_array_get(v, i);
            const char *s = json_is_string(g) ? json_string_value(g) : "";
            if (!id_resource_valid(s, "sg-"))
                return bad(err,
                           "instances.%s[%zu]: '%.64s' is not a security "
                           "group id",
                           k, i, s);
            bool dup = false;
            for (size_t j = 0; j < in->n_groups && !dup; j++)
                dup = strcmp(in->groups[j], s) == 0;
            if (!dup)
                snprintf(in->groups[in->n_groups++], sizeof(in->groups[0]),
                         "%s", s);
        }
    }
    qsort(p->instances, p->n_instances, sizeof(*p->instances), cmp_instance);
    return 0;
}

void netpolicy_free(struct netpolicy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_groups; i++) {
        free(p->groups[i].ingress);
        free(p->groups[i].egress);
    }
    for (size_t i = 0; i < p->n_members; i++)
        free(p->members[i].addrs);
    free(p->groups);
    free(p->members);
    free(p->instances);
    free(p);
}

struct netpolicy *netpolicy_parse(const char *text, size_t len,
                                  struct koala_error **err)
{
    static const char *const keys[] = {"version", "groups", "members",
                                       "instances", NULL};
    if (len > NETPOLICY_MAX_TEXT) {
        bad(err, "larger than %u bytes", NETPOLICY_MAX_TEXT);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(
        text, len, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &je);
    /* DISABLE_EOF_CHECK stops at the value's end: only blanks may follow. */
    if (root &&
        strspn(text + je.position, " \t\r\n") != len - (size_t)je.position) {
        json_decref(root);
        root = NULL;
        snprintf(je.text, sizeof(je.text), "text after the document");
    }
    if (root == NULL) {
        bad(err, "not JSON: %s", je.text);
        return NULL;
    }
    struct netpolicy *p = calloc(1, sizeof(*p));
    int rc = -1;
    long long version = 0;
    if (p == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
    } else if (!json_is_object(root)) {
        bad(err, "the document is an object");
    } else if (only_keys(root, keys, "the document", err) == 0) {
        json_t *v = json_object_get(root, "version");
        if (v == NULL)
            bad(err, "no version");
        else if (int_member(root, "version", 1, NETPOLICY_MAX_VERSION, 0,
                            &version, "the document", err) == 0 &&
                 parse_groups(json_object_get(root, "groups"), p, err) == 0 &&
                 parse_members(json_object_get(root, "members"), p, err) == 0 &&
                 parse_instances(json_object_get(root, "instances"), p, err) ==
                     0)
            rc = 0;
    }
    json_decref(root);
    if (rc < 0) {
        netpolicy_free(p);
        return NULL;
    }
    p->version = version;
    return p;
}

const struct netpolicy_group *netpolicy_group(const struct netpolicy *p,
                                              const char *id)
{
    struct netpolicy_group key = {0};
    snprintf(key.id, sizeof(key.id), "%s", id);
    return p->n_groups
               ? bsearch(&key, p->groups, p->n_groups, sizeof(key), cmp_group)
               : NULL;
}

const struct netpolicy_members *netpolicy_members(const struct netpolicy *p,
                                                  const char *group)
{
    struct netpolicy_members key = {0};
    snprintf(key.group, sizeof(key.group), "%s", group);
    return p->n_members ? bsearch(&key, p->members, p->n_members, sizeof(key),
                                  cmp_members)
                        : NULL;
}

const struct netpolicy_instance *netpolicy_instance(const struct netpolicy *p,
                                                    const char *id)
{
    struct netpolicy_instance key = {0};
    snprintf(key.id, sizeof(key.id), "%s", id);
    return p->n_instances ? bsearch(&key, p->instances, p->n_instances,
                                    sizeof(key), cmp_instance)
                          : NULL;
}
