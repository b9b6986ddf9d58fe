/* vpc.c: the default VPC every current client assumes (docs/network.md):
 * each account's default VPC and its default subnet per availability zone
 * (cluster), DescribeVpcs, DescribeSubnets, DescribeAccountAttributes, and
 * the subnet lookups of RunInstances.
 *
 * DESIGN
 * - Made lazily, the first time the account needs them (a Describe of
 *   VPCs, subnets, account attributes or instances, or a launch), in one
 *   transaction: partial unique indexes (one default VPC per account, one
 *   default subnet per VPC and zone) with INSERT OR IGNORE make concurrent
 *   first calls agree on one VPC, and a crash halfway leaves nothing.  A
 *   zone registered later gets its default subnet at the next call.
 * - Every account's default VPC has the same CIDR, the cloud's default
 *   network (option default_vpc_cidr, 10.96.0.0/12): the default VPCs of
 *   all accounts are one routing domain ("default") whose addresses one
 *   allocator per cluster hands out, as every AWS account's default VPC is
 *   172.31.0.0/16.
 * - A zone's default subnet is the zone's slice of that network.  The CLC
 *   is never told a cluster's subnet (it is the CC's own `subnet` option),
 *   so the CLC hands each zone its slice and records it in zone_networks,
 *   once and for good: slot i is the i-th /16 counted down from the top of
 *   the network (of a /12: 10.111.0.0/16, 10.110.0.0/16 ...), so that the
 *   first zone's is the 10.111.0.0/16 every cluster has used so far.  The
 *   record, not the registration order, decides, so deregistering a zone
 *   never moves another.  Pushing the slice to the CC (rather than both
 *   sides being configured alike) belongs to the data-path slice.
 * - Instances launched before their account had a default VPC (subnet_id
 *   NULL) are claimed by their zone's default subnet when it is made.
 */
#define LOG_MODULE "clc"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "id.h"
#include "log.h"
#include "secgroups.h"

#define DEFAULT_VPC_CIDR "10.96.0.0/12"
#define MAX_ZONES 256

int clc_cidr_parse(const char *s, uint32_t *net, int *prefix,
                   struct koala_error **err)
{
    char addr[32];
    const char *slash = s ? strchr(s, '/') : NULL;
    struct in_addr a;
    int64_t p;
    if (slash == NULL || (size_t)(slash - s) >= sizeof(addr))
        goto bad;
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    if (inet_pton(AF_INET, addr, &a) != 1 || str_to_i64(slash + 1, &p) < 0 ||
        p < 8 || p > 28)
        goto bad;
    uint32_t n = ntohl(a.s_addr);
    uint32_t mask = ~0u << (32 - p);
    if (n & ~mask)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s has host bits set", s);
    *net = n;
    *prefix = (int)p;
    return 0;
bad:
    return error_set(err, EINVAL, "InvalidParameterValue",
                     "%s is not an IPv4 CIDR with a prefix of 8 to 28",
                     s ? s : "(null)");
}

int clc_vpc_init(struct clc *clc, struct koala_error **err)
{
    const char *c = clc->opt.default_vpc_cidr;
    return clc_cidr_parse(c ? c : DEFAULT_VPC_CIDR, &clc->vpc_net,
                          &clc->vpc_prefix, err);
}

static void cidr_format(uint32_t net, int prefix, char out[20])
{
    snprintf(out, 20, "%u.%u.%u.%u/%d", net >> 24, (net >> 16) & 255,
             (net >> 8) & 255, net & 255, prefix);
}

static void vpc_cidr(const struct clc *clc, char out[20])
{
    cidr_format(clc->vpc_net, clc->vpc_prefix, out);
}

/* The zone's slice of the default network: recorded, or the lowest free
 * slot (inside the caller's transaction). */
static int zone_slice(struct clc *clc, struct db *db, const char *zone,
                      char cidr[20], struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT cidr FROM zone_networks WHERE zone = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, zone, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up zone network", err);
    if (rc == 0)
        clc_col(cidr, 20, st, 0);
    db_stmt_done(st);
    if (rc <= 0)
        return rc;
    int slice = clc->vpc_prefix <= 12 ? 16 : clc->vpc_prefix + 4;
    int64_t slots = (int64_t)1 << (slice - clc->vpc_prefix);
    st = db_stmt(db, "SELECT slot FROM zone_networks ORDER BY slot", err);
    if (st == NULL)
        return -1;
    int64_t slot = 0;
    while (sqlite3_step(st) == SQLITE_ROW &&
           sqlite3_column_int64(st, 0) == slot)
        slot++;
    db_stmt_done(st);
    if (slot >= slots) {
        vpc_cidr(clc, cidr);
        return error_set(err, ENOSPC, "InsufficientAddressCapacity",
                         "The default network %s has no slice left for "
                         "zone %s",
                         cidr, zone);
    }
    uint32_t net =
        clc->vpc_net + ((uint32_t)(slots - 1 - slot) << (32 - slice));
    cidr_format(net, slice, cidr);
    char s[24];
    snprintf(s, sizeof(s), CLC_INT "%lld", (long long)slot);
    log_info("zone %s: default subnet %s", zone, cidr);
    return clc_exec(db,
                    "INSERT INTO zone_networks(zone, slot, cidr)"
                    " VALUES(?,?,?)",
                    "recording zone network", err, zone, s, cidr, NULL);
}

/* The default VPC's id, and how many zones lack their default subnet:
 * 0, 1 (no default VPC) or -1. */
static int default_vpc(struct db *db, int64_t owner, char vpc_id[32],
                       int64_t *missing, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT v.id, (SELECT count(*) FROM services s WHERE"
        " s.kind = 'cluster' AND NOT EXISTS (SELECT 1 FROM subnets sn"
        " WHERE sn.vpc = v.id AND sn.zone = s.name AND sn.default_for_az))"
        " FROM vpcs v WHERE v.owner = ? AND v.is_default = 1",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, owner);
    int rc = db_step_row(db, st, "looking up default VPC", err);
    if (rc == 0) {
        clc_col(vpc_id, 32, st, 0);
        *missing = sqlite3_column_int64(st, 1);
    }
    db_stmt_done(st);
    return rc;
}

static int add_subnet(struct clc *clc, struct db *db, const char *owner,
                      const char *vpc_id, const char *zone, const char *now,
                      struct koala_error **err)
{
    char cidr[20], id[32];
    if (zone_slice(clc, db, zone, cidr, err) < 0)
        return -1;
    if (id_resource(id, sizeof(id), "subnet") < 0)
        return error_set_errno(err, "getrandom");
    if (clc_exec(db,
                 "INSERT OR IGNORE INTO subnets(id, vpc, owner, zone, cidr,"
                 " default_for_az, created) VALUES(?,?,?,?,?,1,?)",
                 "storing subnet", err, id, vpc_id, owner, zone, cidr, now,
                 NULL) < 0)
        return -1;
    return clc_exec(db,
                    "UPDATE instances SET subnet_id = (SELECT id FROM"
                    " subnets WHERE vpc = ?1 AND zone = ?2 AND"
                    " default_for_az) WHERE owner = ?3 AND cluster = ?2"
                    " AND subnet_id IS NULL",
                    "claiming instances", err, vpc_id, zone, owner, NULL);
}

int clc_vpc_ensure(struct clc *clc, struct db *db, int64_t owner, char *vpc_id,
                   struct koala_error **err)
{
    char id[32];
    int64_t missing = 0;
    int rc = default_vpc(db, owner, id, &missing, err);
    if (rc < 0)
        return -1;
    if (rc == 0 && missing == 0) {
        if (vpc_id)
            snprintf(vpc_id, 32, "%s", id);
        return 0;
    }
    char o[24], now[24], cidr[20], assoc[48], dopt[32];
    snprintf(o, sizeof(o), CLC_INT "%lld", (long long)owner);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    vpc_cidr(clc, cidr);
    if (id_resource(id, sizeof(id), "vpc") < 0 ||
        id_resource(assoc, sizeof(assoc), "vpc-cidr-assoc") < 0 ||
        id_resource(dopt, sizeof(dopt), "dopt") < 0)
        return error_set_errno(err, "getrandom");
    if (db_begin(db, err) < 0)
        return -1;
    sqlite3_stmt *st = NULL;
    char(*zones)[64] = NULL;
    size_t n = 0;
    if (clc_exec(db,
                 "INSERT OR IGNORE INTO vpcs(id, owner, cidr, cidr_assoc,"
                 " dhcp_options, is_default, created) VALUES(?,?,?,?,?,1,?)",
                 "storing VPC", err, id, o, cidr, assoc, dopt, now, NULL) < 0 ||
        default_vpc(db, owner, id, &missing, err) != 0)
        goto fail;
    st = db_stmt(db,
                 "SELECT s.name FROM services s WHERE s.kind = 'cluster' AND"
                 " NOT EXISTS (SELECT 1 FROM subnets sn WHERE sn.vpc = ? AND"
                 " sn.zone = s.name AND sn.default_for_az) ORDER BY s.name",
                 err);
    zones = calloc(MAX_ZONES, sizeof(*zones));
    if (st == NULL || zones == NULL) {
        if (st && zones == NULL)
            error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while (n < MAX_ZONES && sqlite3_step(st) == SQLITE_ROW)
        clc_col(zones[n++], 64, st, 0);
    db_stmt_done(st);
    st = NULL;
    for (size_t i = 0; i < n; i++)
        if (add_subnet(clc, db, o, id, zones[i], now, err) < 0)
            goto fail;
    /* The VPC's default security group, with the VPC (secgroups.c). */
    if (clc_sg_ensure_default(db, owner, id, err) < 0)
        goto fail;
    free(zones);
    if (db_commit(db, err) < 0)
        return -1;
    if (vpc_id)
        snprintf(vpc_id, 32, "%s", id);
    return 0;
fail:
    if (st)
        db_stmt_done(st);
    free(zones);
    db_rollback(db);
    return -1;
}

/* ---- subnets ---- */

#define SUBNET_COLS                                                            \
    "sn.id, sn.vpc, a.number, sn.zone, sn.cidr, sn.default_for_az,"            \
    " sn.map_public_ip, sn.state, (SELECT count(*) FROM instances i WHERE"     \
    " i.subnet_id = sn.id AND i.state != 'terminated')"

struct subnet_row {
    struct clc_subnet s;
    char owner_number[13];
    bool default_for_az, map_public_ip;
    char state[16];
    int64_t used;
};

static void read_subnet(sqlite3_stmt *st, struct subnet_row *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->s.id, sizeof(x->s.id), st, 0);
    clc_col(x->s.vpc, sizeof(x->s.vpc), st, 1);
    clc_col(x->owner_number, sizeof(x->owner_number), st, 2);
    clc_col(x->s.zone, sizeof(x->s.zone), st, 3);
    clc_col(x->s.cidr, sizeof(x->s.cidr), st, 4);
    x->default_for_az = sqlite3_column_int(st, 5) != 0;
    x->map_public_ip = sqlite3_column_int(st, 6) != 0;
    clc_col(x->state, sizeof(x->state), st, 7);
    x->used = sqlite3_column_int64(st, 8);
}

int clc_subnet_get(struct db *db, int64_t owner, const char *id,
                   struct clc_subnet *out, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT id, vpc, zone, cidr FROM subnets"
                               " WHERE id = ? AND owner = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, owner);
    int rc = db_step_row(db, st, "looking up subnet", err);
    if (rc == 0) {
        clc_col(out->id, sizeof(out->id), st, 0);
        clc_col(out->vpc, sizeof(out->vpc), st, 1);
        clc_col(out->zone, sizeof(out->zone), st, 2);
        clc_col(out->cidr, sizeof(out->cidr), st, 3);
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidSubnetID.NotFound",
                         "The subnet ID '%s' does not exist", id);
    return rc;
}

int clc_default_subnet(struct clc *clc, struct db *db, int64_t owner,
                       const char *zone, struct clc_subnet *out,
                       struct koala_error **err)
{
    char vpc[32];
    if (clc_vpc_ensure(clc, db, owner, vpc, err) < 0)
        return -1;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT id FROM subnets WHERE vpc = ? AND"
                               " zone = ? AND default_for_az",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, vpc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, zone, -1, SQLITE_STATIC);
    char id[32] = "";
    int rc = db_step_row(db, st, "looking up default subnet", err);
    if (rc == 0)
        clc_col(id, sizeof(id), st, 0);
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, NULL, "zone %s has no default subnet",
                         zone);
    return rc < 0 ? -1 : clc_subnet_get(db, owner, id, out, err);
}

/* ---- paging (VPCs and subnets by id) ---- */

static int page_args(struct ec2_req *r, const char *prefix, long long *max,
                     char after[32], struct koala_error **err)
{
    after[0] = '\0';
    if (ec2_param_int(r, "MaxResults", 0, 5, 1000, max, err) < 0)
        return -1;
    const char *token = ec2_param(r, "NextToken");
    if (token == NULL)
        return 0;
    _cleanup_free_ char *t = str_base64_decode_text(token, 40);
    if (t == NULL || !id_resource_valid(t, prefix)) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", token);
        return error_set(err, EINVAL, "InvalidNextToken",
                         "The token '%s' is invalid", shown);
    }
    snprintf(after, 32, "%s", t);
    return 0;
}

static void page_token(struct xml_writer *w, const char *last)
{
    _cleanup_free_ char *b =
        str_base64_encode((const unsigned char *)last, strlen(last));
    xml_text_element(w, "nextToken", b);
}

static bool bool_filter(const struct ec2_filter *f, bool v)
{
    return ec2_filter_match(f, v ? "true" : "false");
}

/* ---- DescribeVpcs ---- */

struct vpc_row {
    char id[32];
    char owner_number[13];
    char cidr[20];
    char assoc[48];
    char dopt[32];
    bool is_default;
    char state[16];
};

static const char *vpc_filter_value(const struct vpc_row *v, const char *f)
{
    if (strcmp(f, "vpc-id") == 0)
        return v->id;
    if (strcmp(f, "cidr") == 0 || strcmp(f, "cidr-block") == 0 ||
        strcmp(f, "cidrBlock") == 0 ||
        strcmp(f, "cidr-block-association.cidr-block") == 0)
        return v->cidr;
    if (strcmp(f, "cidr-block-association.association-id") == 0)
        return v->assoc;
    if (strcmp(f, "cidr-block-association.state") == 0)
        return "associated";
    if (strcmp(f, "dhcp-options-id") == 0)
        return v->dopt;
    if (strcmp(f, "state") == 0)
        return v->state;
    if (strcmp(f, "owner-id") == 0)
        return v->owner_number;
    return "";
}

static bool vpc_wanted(struct ec2_req *r, const struct vpc_row *v,
                       const struct ec2_filters *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        const struct ec2_filter *f = &fs->f[i];
        bool ok;
        if (ec2_is_tag_filter(f->name))
            ok = ec2_tag_filter(r, v->id, f);
        else if (strcmp(f->name, "is-default") == 0 ||
                 strcmp(f->name, "isDefault") == 0)
            ok = bool_filter(f, v->is_default);
        else
            ok = ec2_filter_match(f, vpc_filter_value(v, f->name));
        if (!ok)
            return false;
    }
    return true;
}

static int write_vpc(struct ec2_req *r, struct xml_writer *w,
                     const struct vpc_row *v, struct koala_error **err)
{
    xml_start(w, "item");
    xml_text_element(w, "vpcId", v->id);
    xml_text_element(w, "ownerId", v->owner_number);
    xml_text_element(w, "state", v->state);
    xml_text_element(w, "cidrBlock", v->cidr);
    xml_start(w, "cidrBlockAssociationSet");
    xml_start(w, "item");
    xml_text_element(w, "associationId", v->assoc);
    xml_text_element(w, "cidrBlock", v->cidr);
    xml_start(w, "cidrBlockState");
    xml_text_element(w, "state", "associated");
    xml_end(w);
    xml_end(w);
    xml_end(w);
    xml_start(w, "ipv6CidrBlockAssociationSet");
    xml_end(w);
    xml_text_element(w, "dhcpOptionsId", v->dopt);
    xml_text_element(w, "instanceTenancy", "default");
    xml_bool_element(w, "isDefault", v->is_default);
    int rc = ec2_write_tag_set(r, w, v->id, err);
    xml_end(w);
    return rc;
}

void ec2_describe_vpcs(struct ec2_req *r)
{
    static const char *const known[] = {
        "vpc-id",
        "is-default",
        "isDefault",
        "cidr",
        "cidr-block",
        "cidrBlock",
        "cidr-block-association.cidr-block",
        "cidr-block-association.association-id",
        "cidr-block-association.state",
        "dhcp-options-id",
        "state",
        "owner-id",
        "tag-key",
        "tag-value",
        NULL,
    };
    struct koala_error *err = NULL;
    struct ec2_filters fs;
    struct ec2_id_list ids = {0};
    long long max;
    char after[32];
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_id_list_get(r, "VpcId", &ids, &err) < 0 ||
        page_args(r, "vpc-", &max, after, &err) < 0 ||
        clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0)
        goto out;
    if (ec2_dry_run(r))
        goto out;
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT v.id, a.number, v.cidr, v.cidr_assoc, v.dhcp_options,"
                " v.is_default, v.state FROM vpcs v JOIN accounts a ON a.id ="
                " v.owner WHERE v.owner = ? AND v.id > ? ORDER BY v.id",
                &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
    struct xml_writer *w = ec2_reply_start(r, "DescribeVpcs");
    xml_start(w, "vpcSet");
    long long shown = 0;
    char last[32] = "";
    bool more = false;
    while (err == NULL && sqlite3_step(st) == SQLITE_ROW) {
        struct vpc_row v;
        clc_col(v.id, sizeof(v.id), st, 0);
        clc_col(v.owner_number, sizeof(v.owner_number), st, 1);
        clc_col(v.cidr, sizeof(v.cidr), st, 2);
        clc_col(v.assoc, sizeof(v.assoc), st, 3);
        clc_col(v.dopt, sizeof(v.dopt), st, 4);
        v.is_default = sqlite3_column_int(st, 5) != 0;
        clc_col(v.state, sizeof(v.state), st, 6);
        if (ids.n && !ec2_id_list_has(&ids, v.id))
            continue;
        if (!vpc_wanted(r, &v, &fs))
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        write_vpc(r, w, &v, &err);
        snprintf(last, sizeof(last), "%s", v.id);
        shown++;
    }
    db_stmt_done(st);
    xml_end(w);
    if (more)
        page_token(w, last);
    const char *missing = ec2_id_list_missing(&ids);
    if (err == NULL && missing && !*after)
        error_set(&err, ENOENT, "InvalidVpcID.NotFound",
                  "The vpc ID '%s' does not exist", missing);
    ec2_reply_end(r, w, err);
    err = NULL;
out:
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    if (err)
        ec2_fail(r, err);
}

/* ---- DescribeSubnets ---- */

static bool subnet_wanted(struct ec2_req *r, const struct subnet_row *x,
                          const struct ec2_filters *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        const struct ec2_filter *f = &fs->f[i];
        const char *n = f->name;
        char tmp[96];
        const char *v = "";
        bool ok;
        if (ec2_is_tag_filter(n)) {
            ok = ec2_tag_filter(r, x->s.id, f);
            goto next;
        }
        if (strcmp(n, "default-for-az") == 0 ||
            strcmp(n, "defaultForAz") == 0) {
            ok = bool_filter(f, x->default_for_az);
            goto next;
        }
        if (strcmp(n, "map-public-ip-on-launch") == 0) {
            ok = bool_filter(f, x->map_public_ip);
            goto next;
        }
        if (strcmp(n, "subnet-id") == 0)
            v = x->s.id;
        else if (strcmp(n, "vpc-id") == 0)
            v = x->s.vpc;
        else if (strcmp(n, "availability-zone") == 0 ||
                 strcmp(n, "availabilityZone") == 0)
            v = x->s.zone;
        else if (strcmp(n, "availability-zone-id") == 0 ||
                 strcmp(n, "availabilityZoneId") == 0) {
            snprintf(tmp, sizeof(tmp), "%s-%s", r->clc->region, x->s.zone);
            v = tmp;
        } else if (strcmp(n, "cidr-block") == 0 || strcmp(n, "cidr") == 0 ||
                   strcmp(n, "cidrBlock") == 0)
            v = x->s.cidr;
        else if (strcmp(n, "state") == 0)
            v = x->state;
        else if (strcmp(n, "owner-id") == 0)
            v = x->owner_number;
        ok = ec2_filter_match(f, v);
    next:
        if (!ok)
            return false;
    }
    return true;
}

static int write_subnet(struct ec2_req *r, struct xml_writer *w,
                        const struct subnet_row *x, struct koala_error **err)
{
    uint32_t net;
    int prefix = 32;
    struct koala_error *e = NULL;
    if (clc_cidr_parse(x->s.cidr, &net, &prefix, &e) < 0)
        error_free(e);
    int64_t avail = ((int64_t)1 << (32 - prefix)) - 5 - x->used;
    xml_start(w, "item");
    xml_text_element(w, "subnetId", x->s.id);
    xml_text_elementf(w, "subnetArn", "arn:aws:ec2:%s:%s:subnet/%s",
                      r->clc->region, x->owner_number, x->s.id);
    xml_text_element(w, "state", x->state);
    xml_text_element(w, "ownerId", x->owner_number);
    xml_text_element(w, "vpcId", x->s.vpc);
    xml_text_element(w, "cidrBlock", x->s.cidr);
    xml_start(w, "ipv6CidrBlockAssociationSet");
    xml_end(w);
    xml_u64_element(w, "availableIpAddressCount",
                    (uint64_t)(avail < 0 ? 0 : avail));
    xml_text_element(w, "availabilityZone", x->s.zone);
    xml_text_elementf(w, "availabilityZoneId", "%s-%s", r->clc->region,
                      x->s.zone);
    xml_bool_element(w, "defaultForAz", x->default_for_az);
    xml_bool_element(w, "mapPublicIpOnLaunch", x->map_public_ip);
    xml_bool_element(w, "assignIpv6AddressOnCreation", false);
    xml_bool_element(w, "ipv6Native", false);
    xml_bool_element(w, "enableDns64", false);
    int rc = ec2_write_tag_set(r, w, x->s.id, err);
    xml_end(w);
    return rc;
}

void ec2_describe_subnets(struct ec2_req *r)
{
    static const char *const known[] = {
        "subnet-id",
        "vpc-id",
        "availability-zone",
        "availabilityZone",
        "availability-zone-id",
        "availabilityZoneId",
        "default-for-az",
        "defaultForAz",
        "map-public-ip-on-launch",
        "cidr-block",
        "cidr",
        "cidrBlock",
        "state",
        "owner-id",
        "tag-key",
        "tag-value",
        NULL,
    };
    struct koala_error *err = NULL;
    struct ec2_filters fs;
    struct ec2_id_list ids = {0};
    long long max;
    char after[32];
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_id_list_get(r, "SubnetId", &ids, &err) < 0 ||
        page_args(r, "subnet-", &max, after, &err) < 0 ||
        clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0)
        goto out;
    if (ec2_dry_run(r))
        goto out;
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT " SUBNET_COLS " FROM subnets sn JOIN accounts a ON"
                " a.id = sn.owner WHERE sn.owner = ? AND sn.id > ?"
                " ORDER BY sn.id",
                &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
    struct xml_writer *w = ec2_reply_start(r, "DescribeSubnets");
    xml_start(w, "subnetSet");
    long long shown = 0;
    char last[32] = "";
    bool more = false;
    while (err == NULL && sqlite3_step(st) == SQLITE_ROW) {
        struct subnet_row x;
        read_subnet(st, &x);
        if (ids.n && !ec2_id_list_has(&ids, x.s.id))
            continue;
        if (!subnet_wanted(r, &x, &fs))
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        write_subnet(r, w, &x, &err);
        snprintf(last, sizeof(last), "%s", x.s.id);
        shown++;
    }
    db_stmt_done(st);
    xml_end(w);
    if (more)
        page_token(w, last);
    const char *missing = ec2_id_list_missing(&ids);
    if (err == NULL && missing && !*after)
        error_set(&err, ENOENT, "InvalidSubnetID.NotFound",
                  "The subnet ID '%s' does not exist", missing);
    ec2_reply_end(r, w, err);
    err = NULL;
out:
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    if (err)
        ec2_fail(r, err);
}

/* ---- DescribeAccountAttributes ---- */

/* What AWS gives a new account; this cloud has no per-account quotas yet
 * beyond RunInstances' 100 per request, and no elastic IPs yet. */
static const struct {
    const char *name;
    const char *value; /* NULL: the default VPC */
} account_attrs[] = {
    {"supported-platforms", "VPC"},
    {"default-vpc", NULL},
    {"max-instances", "20"},
    {"vpc-max-security-groups-per-interface", "5"},
    {"max-elastic-ips", "5"},
    {"vpc-max-elastic-ips", "5"},
};

void ec2_describe_account_attributes(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char **names = NULL;
    size_t n = ec2_param_list(r, "AttributeName", &names);
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        for (size_t j = 0; j < ARRAY_SIZE(account_attrs); j++)
            known |= strcmp(names[i], account_attrs[j].name) == 0;
        if (!known) {
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "Value (%s) for parameter attributeName is invalid. "
                      "Unknown attribute.",
                      names[i]);
            free(names);
            return ec2_fail(r, err);
        }
    }
    char vpc[32];
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, vpc, &err) < 0) {
        free(names);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r)) {
        free(names);
        return;
    }
    struct xml_writer *w = ec2_reply_start(r, "DescribeAccountAttributes");
    xml_start(w, "accountAttributeSet");
    for (size_t j = 0; j < ARRAY_SIZE(account_attrs); j++) {
        bool wanted = n == 0;
        for (size_t i = 0; i < n; i++)
            wanted |= strcmp(names[i], account_attrs[j].name) == 0;
        if (!wanted)
            continue;
        xml_start(w, "item");
        xml_text_element(w, "attributeName", account_attrs[j].name);
        xml_start(w, "attributeValueSet");
        xml_start(w, "item");
        xml_text_element(w, "attributeValue",
                         account_attrs[j].value ? account_attrs[j].value : vpc);
        xml_end(w);
        xml_end(w);
        xml_end(w);
    }
    xml_end(w);
    free(names);
    ec2_reply_finish(r, w);
}

/* ---- RunInstances ---- */

int clc_run_subnet(const struct ec2_req *r, const char **zone,
                   struct clc_subnet *out, bool *given,
                   struct koala_error **err)
{
    memset(out, 0, sizeof(*out));
    *given = false;
    const char *id = ec2_param(r, "SubnetId");
    const char *nic = ec2_param(r, "NetworkInterface.1.SubnetId");
    if (id && nic && strcmp(id, nic) != 0)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "Network interfaces and an instance-level subnet "
                         "ID may not be specified on the same request");
    if (id == NULL)
        id = nic;
    if (id == NULL)
        return 0;
    if (clc_subnet_get(r->db, r->who.id, id, out, err) < 0)
        return -1;
    if (*zone && strcmp(*zone, out->zone) != 0)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "The subnet %s is in availability zone %s, not %s", id,
                         out->zone, *zone);
    *zone = out->zone;
    *given = true;
    return 0;
}
