/* sgrules.c: the rules of security groups: parsing a request's
 * permissions and normalizing them as EC2 does, how EC2 shows them
 * (ipPermissions, securityGroupRuleSet), loading and storing them (the
 * actions that change them are in sgrules_api.c).
 *
 * DESIGN: one row per rule as EC2 counts them (a protocol and port range
 * with one CIDR or one group), so that a permission with three ranges is
 * three rules with three sgr- ids, the 60 per direction quota counts rows,
 * and a unique index on the normalized rule finds duplicates.  The
 * normalization: protocol names and numbers to tcp, udp, icmp, -1 or the
 * number; tcp/udp need 0 <= from <= to <= 65535; icmp's type and code are
 * -1 (any) to 255, -1 when absent; any other protocol has no ports (-1),
 * whatever the request said.  Authorize and revoke are all or nothing: one
 * transaction; a duplicate (InvalidPermission.Duplicate) or a rule that
 * does not exist (InvalidPermission.NotFound) changes nothing.
 */
#define LOG_MODULE "clc"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "id.h"
#include "secgroups.h"

/* IANA's names EC2 accepts besides the numbers (and -1 / all). */
static const struct {
    const char *name;
    int number;
} protocols[] = {
    {"icmp", 1},    {"igmp", 2},  {"ipv4", 4},  {"tcp", 6},    {"egp", 8},
    {"udp", 17},    {"ipv6", 41}, {"gre", 47},  {"esp", 50},   {"ah", 51},
    {"icmpv6", 58}, {"ospf", 89}, {"pim", 103}, {"sctp", 132},
};

static int proto_parse(const char *in, char out[8], struct koala_error **err)
{
    int64_t n = -2;
    if (strcasecmp(in, "all") == 0 || strcmp(in, "-1") == 0)
        n = -1;
    else if (str_to_i64(in, &n) < 0 || n < 0 || n > 255)
        n = -2;
    for (size_t i = 0; n == -2 && i < ARRAY_SIZE(protocols); i++)
        if (strcasecmp(in, protocols[i].name) == 0)
            n = protocols[i].number;
    if (n == -2) {
        char shown[64];
        snprintf(shown, sizeof(shown), "%s", in);
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid value '%s' for IP protocol. Unknown "
                         "protocol.",
                         shown);
    }
    snprintf(out, 8, "%s",
             n == 6    ? "tcp"
             : n == 17 ? "udp"
             : n == 1  ? "icmp"
                       : "");
    if (*out == '\0')
        snprintf(out, 8, "%d", (int)n);
    return 0;
}

static bool has_ports(const char *proto)
{
    return strcmp(proto, "tcp") == 0 || strcmp(proto, "udp") == 0 ||
           strcmp(proto, "icmp") == 0;
}

/* Ports of x->proto from the request's text (NULL: absent). */
static int ports_parse(struct sg_rule *x, const char *from, const char *to,
                       struct koala_error **err)
{
    int64_t f = -1, t = -1;
    x->from = x->to = -1;
    if (!has_ports(x->proto))
        return 0;
    if ((from && str_to_i64(from, &f) < 0) || (to && str_to_i64(to, &t) < 0))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid value for portRange: ports are integers");
    if (strcmp(x->proto, "icmp") == 0) {
        if (f < -1 || f > 255 || t < -1 || t > 255)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Invalid value for portRange: ICMP type and "
                             "code are -1 to 255");
        if (f == -1 && t != -1)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Invalid value for portRange: ICMP code %lld "
                             "needs a type",
                             (long long)t);
    } else {
        if (from == NULL || to == NULL)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Invalid value 'Must specify both from and to "
                             "ports with TCP/UDP.' for portRange");
        if (f < 0 || f > 65535 || t < 0 || t > 65535 || f > t)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Invalid TCP/UDP port range %lld to %lld: 0 "
                             "to 65535, from at most to",
                             (long long)f, (long long)t);
    }
    x->from = (int)f;
    x->to = (int)t;
    return 0;
}

static int cidr_parse(const char *s, char out[20], struct koala_error **err)
{
    char addr[20], shown[64];
    const char *slash = strchr(s, '/');
    struct in_addr a;
    int64_t p = -1;
    snprintf(shown, sizeof(shown), "%s", s);
    if (slash == NULL || (size_t)(slash - s) >= sizeof(addr))
        goto bad;
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    if (inet_pton(AF_INET, addr, &a) != 1 ||
        !isdigit((unsigned char)slash[1]) || str_to_i64(slash + 1, &p) < 0 ||
        p < 0 || p > 32)
        goto bad;
    uint32_t n = ntohl(a.s_addr);
    uint32_t mask = p == 0 ? 0 : ~0u << (32 - p);
    if (n & ~mask)
        goto bad;
    snprintf(out, 20, "%u.%u.%u.%u/%d", n >> 24, (n >> 16) & 255,
             (n >> 8) & 255, n & 255, (int)p);
    return 0;
bad:
    return error_set(err, EINVAL, "InvalidParameterValue",
                     "CIDR block %s is malformed", shown);
}

static int check_description(const char *d, struct koala_error **err)
{
    static const char ok[] = " ._-:/()#,@[]+=&;{}!$*";
    if (strlen(d) > SG_MAX_TEXT)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Rule descriptions are at most %d characters",
                         SG_MAX_TEXT);
    for (const char *p = d; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(ok, *p))
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Invalid rule description: valid characters "
                             "are a-z, A-Z, 0-9, spaces and "
                             "._-:/()#,@[]+=&;{}!$*");
    return 0;
}

/* The group a rule names: by id (of any account; UserId, when given, must
 * be its owner) or by name (in the default VPC of UserId's account, or the
 * caller's). */
static int ref_resolve(struct ec2_req *r, struct sg_rule *x, const char *id,
                       const char *name, const char *user,
                       struct koala_error **err)
{
    struct sg_group g;
    int64_t owner = r->who.id;
    if (user && strcmp(user, r->who.number) != 0) {
        sqlite3_stmt *st =
            db_stmt(r->db, "SELECT id FROM accounts WHERE number = ?", err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        int rc = db_step_row(r->db, st, "looking up account", err);
        owner = rc == 0 ? sqlite3_column_int64(st, 0) : -2;
        db_stmt_done(st);
        if (rc < 0)
            return -1;
    }
    if (id) {
        if (clc_sg_get(r->db, -1, id, &g, err) < 0)
            return -1;
        if (user && g.owner != owner)
            return error_set(err, ENOENT, "InvalidGroup.NotFound",
                             "The security group '%s' of user %s does not "
                             "exist",
                             id, user);
    } else if (clc_sg_by_name(r->db, owner, NULL, name, &g, err) < 0) {
        return -1;
    }
    snprintf(x->ref_group, sizeof(x->ref_group), "%s", g.id);
    snprintf(x->ref_owner, sizeof(x->ref_owner), "%s", g.owner_number);
    snprintf(x->ref_name, sizeof(x->ref_name), "%s", g.name);
    snprintf(x->ref_vpc, sizeof(x->ref_vpc), "%s", g.vpc);
    return 0;
}

struct rule_list {
    struct sg_rule *v;
    size_t n, cap;
};

static struct sg_rule *rule_add(struct rule_list *l, const struct sg_rule *base,
                                struct koala_error **err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct sg_rule *nv = realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL) {
            error_set(err, ENOMEM, NULL, "out of memory");
            return NULL;
        }
        l->v = nv;
        l->cap = cap;
    }
    struct sg_rule *x = &l->v[l->n++];
    *x = *base;
    return x;
}

bool sg_any_param(const struct ec2_req *r, const char *prefix)
{
    for (size_t i = 0; i < r->n_params; i++)
        if (str_has_prefix(r->params[i].name, prefix))
            return true;
    return false;
}

/* One permission (IpPermissions.N. or, pfx "", the flat parameters). */
static int parse_permission(struct ec2_req *r, const char *pfx,
                            struct sg_rule *base, struct rule_list *l,
                            struct koala_error **err)
{
    bool flat = *pfx == '\0';
    const char *proto = ec2_paramf(r, "%sIpProtocol", pfx);
    const char *src_name =
        flat ? ec2_param(r, "SourceSecurityGroupName") : NULL;
    const char *src_owner =
        flat ? ec2_param(r, "SourceSecurityGroupOwnerId") : NULL;
    if (proto == NULL && flat && src_name)
        proto = "-1"; /* EC2's older form: the group, every protocol */
    if (proto == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter "
                         "ipProtocol");
    if (proto_parse(proto, base->proto, err) < 0 ||
        ports_parse(base, ec2_paramf(r, "%sFromPort", pfx),
                    ec2_paramf(r, "%sToPort", pfx), err) < 0)
        return -1;
    size_t before = l->n;
    if (flat) {
        const char *cidr = ec2_param(r, "CidrIp");
        struct sg_rule *x;
        if (cidr && ((x = rule_add(l, base, err)) == NULL ||
                     cidr_parse(cidr, x->cidr, err) < 0))
            return -1;
        if (src_name && ((x = rule_add(l, base, err)) == NULL ||
                         ref_resolve(r, x, NULL, src_name, src_owner, err) < 0))
            return -1;
    }
    for (int j = 1; !flat; j++) {
        const char *cidr = ec2_paramf(r, "%sIpRanges.%d.CidrIp", pfx, j);
        const char *d = ec2_paramf(r, "%sIpRanges.%d.Description", pfx, j);
        if (cidr == NULL)
            break;
        struct sg_rule *x = rule_add(l, base, err);
        if (x == NULL || cidr_parse(cidr, x->cidr, err) < 0 ||
            (d && check_description(d, err) < 0))
            return -1;
        snprintf(x->description, sizeof(x->description), "%s", d ? d : "");
    }
    for (int j = 1; !flat; j++) {
        const char *id = ec2_paramf(r, "%sGroups.%d.GroupId", pfx, j);
        const char *name = ec2_paramf(r, "%sGroups.%d.GroupName", pfx, j);
        const char *user = ec2_paramf(r, "%sGroups.%d.UserId", pfx, j);
        const char *d = ec2_paramf(r, "%sGroups.%d.Description", pfx, j);
        if (id == NULL && name == NULL)
            break;
        struct sg_rule *x = rule_add(l, base, err);
        if (x == NULL || ref_resolve(r, x, id, name, user, err) < 0 ||
            (d && check_description(d, err) < 0))
            return -1;
        snprintf(x->description, sizeof(x->description), "%s", d ? d : "");
    }
    char p6[64], pl[64];
    snprintf(p6, sizeof(p6), "%sIpv6Ranges.", pfx);
    snprintf(pl, sizeof(pl), "%sPrefixListIds.", pfx);
    if (!flat && (sg_any_param(r, p6) || sg_any_param(r, pl)))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "IPv6 ranges and prefix lists are not supported by "
                         "this cloud's VPCs");
    if (l->n == before)
        return error_set(err, EINVAL, "InvalidPermission.Malformed",
                         "The permission (%s) names no source or "
                         "destination: IpRanges or UserIdGroupPairs",
                         base->proto);
    return 0;
}

int sg_rules_parse(struct ec2_req *r, const struct sg_group *g, bool egress,
                   struct sg_rule **out, size_t *n, struct koala_error **err)
{
    struct rule_list l = {0};
    struct sg_rule base;
    memset(&base, 0, sizeof(base));
    snprintf(base.group, sizeof(base.group), "%s", g->id);
    snprintf(base.group_owner, sizeof(base.group_owner), "%s", g->owner_number);
    base.egress = egress;
    bool flat = ec2_param(r, "IpProtocol") || ec2_param(r, "CidrIp") ||
                ec2_param(r, "SourceSecurityGroupName") ||
                ec2_param(r, "FromPort") || ec2_param(r, "ToPort");
    bool perms = sg_any_param(r, "IpPermissions.");
    int rc = 0;
    *out = NULL;
    *n = 0;
    if (flat && perms)
        rc = error_set(err, EINVAL, "InvalidParameterCombination",
                       "The parameter IpPermissions cannot be used with the "
                       "parameters IpProtocol, FromPort, ToPort, CidrIp or "
                       "SourceSecurityGroupName");
    else if (flat)
        rc = parse_permission(r, "", &base, &l, err);
    else if (!perms)
        rc = error_set(err, EINVAL, "MissingParameter",
                       "The request must contain the parameter "
                       "ipPermissions");
    for (int i = 1; rc == 0 && perms; i++) {
        char pfx[48];
        snprintf(pfx, sizeof(pfx), "IpPermissions.%d.", i);
        if (!sg_any_param(r, pfx))
            break;
        struct sg_rule b = base;
        rc = parse_permission(r, pfx, &b, &l, err);
    }
    if (rc < 0) {
        free(l.v);
        return -1;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

/* ---- loading and showing ---- */

static void read_rule(sqlite3_stmt *st, struct sg_rule *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->id, sizeof(x->id), st, 0);
    clc_col(x->group, sizeof(x->group), st, 1);
    clc_col(x->group_owner, sizeof(x->group_owner), st, 2);
    x->egress = sqlite3_column_int(st, 3) != 0;
    clc_col(x->proto, sizeof(x->proto), st, 4);
    x->from = sqlite3_column_int(st, 5);
    x->to = sqlite3_column_int(st, 6);
    clc_col(x->cidr, sizeof(x->cidr), st, 7);
    clc_col(x->ref_group, sizeof(x->ref_group), st, 8);
    clc_col(x->ref_owner, sizeof(x->ref_owner), st, 9);
    clc_col(x->ref_name, sizeof(x->ref_name), st, 10);
    clc_col(x->ref_vpc, sizeof(x->ref_vpc), st, 11);
    clc_col(x->description, sizeof(x->description), st, 12);
}

int sg_rules_load(struct db *db, int64_t owner, const char *group,
                  const char *after, bool by_id, struct sg_rule **out,
                  size_t *n, struct koala_error **err)
{
    static const char cols[] =
        "SELECT r.id, r.grp, ga.number, r.egress, r.proto, r.from_port,"
        " r.to_port, r.cidr, r.ref_group, ra.number, rg.name, rg.vpc,"
        " r.description FROM sg_rules r JOIN security_groups g ON"
        " g.id = r.grp JOIN accounts ga ON ga.id = g.owner LEFT JOIN"
        " security_groups rg ON rg.id = r.ref_group LEFT JOIN accounts ra ON"
        " ra.id = rg.owner WHERE (?1 IS NULL OR r.grp = ?1) AND"
        " (?2 < 0 OR g.owner = ?2) AND r.id > ?3 ORDER BY ";
    char sql[sizeof(cols) + 80];
    snprintf(sql, sizeof(sql), "%s%s", cols,
             by_id ? "r.id"
                   : "r.egress, r.proto, r.from_port, r.to_port, r.created,"
                     " r.id");
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    if (group)
        sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, owner);
    sqlite3_bind_text(st, 3, after ? after : "", -1, SQLITE_STATIC);
    struct rule_list l = {0};
    struct sg_rule x;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_rule(st, &x);
        if (rule_add(&l, &x, err) == NULL) {
            db_stmt_done(st);
            free(l.v);
            return -1;
        }
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(l.v);
        return db_error(db, "listing rules", err);
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

static bool same_permission(const struct sg_rule *a, const struct sg_rule *b)
{
    return a->egress == b->egress && strcmp(a->proto, b->proto) == 0 &&
           a->from == b->from && a->to == b->to;
}

void sg_write_permissions(struct xml_writer *w, const char *element,
                          const struct sg_rule *rules, size_t n, bool egress)
{
    xml_start(w, element);
    for (size_t i = 0; i < n;) {
        if (rules[i].egress != egress) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && same_permission(&rules[i], &rules[j]))
            j++;
        const struct sg_rule *p = &rules[i];
        xml_start(w, "item");
        xml_text_element(w, "ipProtocol", p->proto);
        if (has_ports(p->proto)) {
            xml_text_elementf(w, "fromPort", "%d", p->from);
            xml_text_elementf(w, "toPort", "%d", p->to);
        }
        xml_start(w, "groups");
        for (size_t k = i; k < j; k++) {
            if (*rules[k].ref_group == '\0')
                continue;
            xml_start(w, "item");
            xml_text_element(w, "userId", rules[k].ref_owner);
            xml_text_element(w, "groupId", rules[k].ref_group);
            if (*rules[k].description)
                xml_text_element(w, "description", rules[k].description);
            xml_end(w);
        }
        xml_end(w);
        xml_start(w, "ipRanges");
        for (size_t k = i; k < j; k++) {
            if (*rules[k].cidr == '\0')
                continue;
            xml_start(w, "item");
            xml_text_element(w, "cidrIp", rules[k].cidr);
            if (*rules[k].description)
                xml_text_element(w, "description", rules[k].description);
            xml_end(w);
        }
        xml_end(w);
        xml_start(w, "ipv6Ranges");
        xml_end(w);
        xml_start(w, "prefixListIds");
        xml_end(w);
        xml_end(w);
        i = j;
    }
    xml_end(w);
}

int sg_write_rule(struct ec2_req *r, struct xml_writer *w,
                  const struct sg_rule *x, struct koala_error **err)
{
    xml_start(w, "item");
    xml_text_element(w, "securityGroupRuleId", x->id);
    xml_text_element(w, "groupId", x->group);
    xml_text_element(w, "groupOwnerId", x->group_owner);
    xml_bool_element(w, "isEgress", x->egress);
    xml_text_element(w, "ipProtocol", x->proto);
    xml_text_elementf(w, "fromPort", "%d", x->from);
    xml_text_elementf(w, "toPort", "%d", x->to);
    if (*x->cidr)
        xml_text_element(w, "cidrIpv4", x->cidr);
    if (*x->ref_group) {
        xml_start(w, "referencedGroupInfo");
        xml_text_element(w, "groupId", x->ref_group);
        xml_text_element(w, "userId", x->ref_owner);
        xml_end(w);
    }
    if (*x->description)
        xml_text_element(w, "description", x->description);
    int rc = ec2_write_tag_set(r, w, x->id, err);
    xml_end(w);
    return rc;
}

bool sg_rule_filter(const struct sg_rule *x, const char *what,
                    const struct ec2_filter *f)
{
    char tmp[16];
    const char *v = NULL;
    if (strcmp(what, "protocol") == 0)
        v = x->proto;
    else if (strcmp(what, "from-port") == 0 || strcmp(what, "to-port") == 0) {
        snprintf(tmp, sizeof(tmp), "%d", what[0] == 'f' ? x->from : x->to);
        v = tmp;
    } else if (strcmp(what, "cidr") == 0)
        v = x->cidr;
    else if (strcmp(what, "group-id") == 0)
        v = x->ref_group;
    else if (strcmp(what, "group-name") == 0)
        v = x->ref_name;
    else if (strcmp(what, "user-id") == 0)
        v = x->ref_owner;
    return v && *v && ec2_filter_match(f, v);
}

/* ---- storing ---- */

int sg_rule_insert(struct db *db, struct sg_rule *x, struct koala_error **err)
{
    char from[16], to[16], now[24];
    if (id_resource(x->id, sizeof(x->id), "sgr") < 0)
        return error_set_errno(err, "getrandom");
    snprintf(from, sizeof(from), CLC_INT "%d", x->from);
    snprintf(to, sizeof(to), CLC_INT "%d", x->to);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (clc_exec(db,
                 "INSERT INTO sg_rules(id, grp, egress, proto, from_port,"
                 " to_port, cidr, ref_group, description, created)"
                 " VALUES(?,?,?,?,?,?,NULLIF(?, ''),NULLIF(?, ''),?,?)",
                 "storing rule", err, x->id, x->group,
                 x->egress ? CLC_INT "1" : CLC_INT "0", x->proto, from, to,
                 x->cidr, x->ref_group, x->description, now, NULL) == 0)
        return 0;
    if (err && *err && (*err)->errnum == EEXIST) {
        error_free(*err);
        *err = NULL;
        char proto[16];
        snprintf(proto, sizeof(proto), "%s", x->proto);
        for (char *p = proto; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        error_set(err, EEXIST, "InvalidPermission.Duplicate",
                  "the specified rule \"peer: %s, %s, from port: %d, to "
                  "port: %d, ALLOW\" already exists",
                  *x->cidr ? x->cidr : x->ref_group, proto, x->from, x->to);
    }
    return -1;
}

static int count_rules(struct db *db, const char *group, bool egress,
                       int64_t *n, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT count(*) FROM sg_rules WHERE grp = ? AND egress = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, group, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, egress);
    int rc = db_step_row(db, st, "counting rules", err);
    *n = rc == 0 ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    return rc < 0 ? -1 : 0;
}

int sg_rules_check_limit(struct db *db, const char *group, bool egress,
                         struct koala_error **err)
{
    int64_t n;
    if (count_rules(db, group, egress, &n, err) < 0)
        return -1;
    if (n > SG_MAX_RULES)
        return error_set(err, ENOSPC, "RulesPerSecurityGroupLimitExceeded",
                         "The maximum number of rules per security group "
                         "has been reached (%d %s rules)",
                         SG_MAX_RULES, egress ? "outbound" : "inbound");
    return 0;
}

/* ---- ModifySecurityGroupRules' rules ---- */

/* The new content of rule x from SecurityGroupRule.N.SecurityGroupRule. */
int sg_rule_modified(struct ec2_req *r, int i, struct sg_rule *x,
                     struct koala_error **err)
{
    char p[64];
    snprintf(p, sizeof(p), "SecurityGroupRule.%d.SecurityGroupRule.", i);
    const char *proto = ec2_paramf(r, "%sIpProtocol", p);
    const char *cidr = ec2_paramf(r, "%sCidrIpv4", p);
    const char *ref = ec2_paramf(r, "%sReferencedGroupId", p);
    const char *d = ec2_paramf(r, "%sDescription", p);
    if (proto == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter "
                         "SecurityGroupRule.%d.SecurityGroupRule.IpProtocol",
                         i);
    if ((cidr == NULL) == (ref == NULL))
        return error_set(err, EINVAL, "InvalidPermission.Malformed",
                         "A rule names exactly one of CidrIpv4 and "
                         "ReferencedGroupId");
    x->cidr[0] = x->ref_group[0] = '\0';
    if (proto_parse(proto, x->proto, err) < 0 ||
        ports_parse(x, ec2_paramf(r, "%sFromPort", p),
                    ec2_paramf(r, "%sToPort", p), err) < 0 ||
        (cidr && cidr_parse(cidr, x->cidr, err) < 0) ||
        (ref && ref_resolve(r, x, ref, NULL, NULL, err) < 0) ||
        (d && check_description(d, err) < 0))
        return -1;
    snprintf(x->description, sizeof(x->description), "%s", d ? d : "");
    return 0;
}
