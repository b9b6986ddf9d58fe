/* addresses.c: elastic IPs on the EC2 API: AllocateAddress,
 * AssociateAddress, DisassociateAddress, ReleaseAddress, DescribeAddresses
 * (docs/network.md "Elastic IPs and outbound NAT").
 *
 * An address comes from the public pool of one cluster (zone), as its CC
 * reported it (eip_push.c), and is used only there: its
 * NetworkBorderGroup is that zone, and AssociateAddress with an instance
 * of another zone is InvalidParameterCombination (EC2's rule that an
 * address serves only its network border group).  Each account holds at
 * most clc.address_quota elastic IPs (AddressLimitExceeded).  Every
 * change of an association bumps its cluster's map version in the same
 * transaction and kicks the push, so the router has it within the round
 * trip to its CC; an instance that ends loses its association (schema_v8's
 * trigger), an instance that stops keeps it, as EC2 does.
 *
 * Another account's address is never shown: by AllocationId it does not
 * exist (InvalidAllocationID.NotFound), by PublicIp it is not yours
 * (AuthFailure), as EC2 answers.
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

#define POOL_NAME "amazon" /* EC2's name for the provider's own pool */

struct addr_row {
    char public_ip[16];
    char cluster[64];
    int64_t owner;
    char allocation_id[32];
    char domain[16];
    char instance_id[32];
    char association_id[32];
    char private_ip[48];
};

#define ADDR_COLS                                                              \
    "a.public_ip, a.cluster, a.owner, a.allocation_id, a.domain,"              \
    " a.instance_id, a.association_id,"                                        \
    " (SELECT private_ip FROM instances WHERE id = a.instance_id)"

static void read_row(sqlite3_stmt *st, struct addr_row *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->public_ip, sizeof(x->public_ip), st, 0);
    clc_col(x->cluster, sizeof(x->cluster), st, 1);
    x->owner = sqlite3_column_int64(st, 2);
    clc_col(x->allocation_id, sizeof(x->allocation_id), st, 3);
    clc_col(x->domain, sizeof(x->domain), st, 4);
    clc_col(x->instance_id, sizeof(x->instance_id), st, 5);
    clc_col(x->association_id, sizeof(x->association_id), st, 6);
    clc_col(x->private_ip, sizeof(x->private_ip), st, 7);
}

void clc_public_dns(const char *ip, const char *region, char *out, size_t size)
{
    if (ip == NULL || *ip == '\0') {
        snprintf(out, size, "%s", "");
        return;
    }
    char label[20];
    snprintf(label, sizeof(label), "%s", ip);
    for (char *p = label; *p; p++)
        if (*p == '.')
            *p = '-';
    snprintf(out, size, "ec2-%s.%s.compute.koala", label, region);
}

int clc_eip_bump(struct db *db, const char *cluster, struct koala_error **err)
{
    return clc_exec(db,
                    "INSERT INTO eip_push (cluster, version) VALUES (?, 1)"
                    " ON CONFLICT(cluster) DO UPDATE SET version = version + 1",
                    "marking the public address map changed", err, cluster,
                    NULL);
}

static bool ipv4_valid(const char *s)
{
    struct in_addr a;
    return s && strlen(s) < 16 && inet_pton(AF_INET, s, &a) == 1;
}

/* The address an operation names by AllocationId or PublicIp (exactly
 * one of them): 0 found and the caller's, -1 with EC2's error. */
static int find_address(struct ec2_req *r, const char *alloc,
                        const char *public_ip, struct addr_row *out,
                        struct koala_error **err)
{
    if (alloc && public_ip)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "You may specify either an allocation ID or a "
                         "public IP address, not both");
    if (alloc == NULL && public_ip == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "Either AllocationId or PublicIp must be specified");
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", alloc ? alloc : public_ip);
    if (alloc && !id_resource_valid(alloc, "eipalloc-"))
        return error_set(err, EINVAL, "InvalidAllocationID.NotFound",
                         "The allocation ID '%s' does not exist", shown);
    if (public_ip && !ipv4_valid(public_ip))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid value '%s' for PublicIp", shown);
    sqlite3_stmt *st = db_stmt(r->db,
                               alloc ? "SELECT " ADDR_COLS " FROM addresses a"
                                       " WHERE a.allocation_id = ?"
                                     : "SELECT " ADDR_COLS " FROM addresses a"
                                       " WHERE a.public_ip = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, alloc ? alloc : public_ip, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up address", err);
    if (rc == 0)
        read_row(st, out);
    db_stmt_done(st);
    if (rc < 0)
        return -1;
    /* An auto-assigned address is nobody's to manage. */
    if (rc == 0 && out->owner == r->who.id && *out->allocation_id)
        return 0;
    if (alloc)
        return error_set(err, ENOENT, "InvalidAllocationID.NotFound",
                         "The allocation ID '%s' does not exist", shown);
    if (rc == 0)
        return error_set(err, EACCES, "AuthFailure",
                         "The address '%s' does not belong to you.", shown);
    return error_set(err, ENOENT, "InvalidAddress.NotFound",
                     "Address '%s' not found.", shown);
}

/* ---- AllocateAddress ---- */

/* The first free address of the zone's pool (any zone's when zone is
 * NULL, in zone order): 0 found, 1 none, -1 error. */
static int pick_address(struct db *db, const char *zone, const char *wanted,
                        char ip[16], char cluster[64], struct koala_error **err)
{
    uint32_t want = 0;
    if (wanted) {
        struct in_addr a;
        inet_pton(AF_INET, wanted, &a);
        want = ntohl(a.s_addr);
    }
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT p.cluster, p.first, p.last FROM public_pools p JOIN services"
        " s ON s.kind = 'cluster' AND s.name = p.cluster WHERE (?1 IS NULL"
        " OR p.cluster = ?1) ORDER BY p.cluster, p.first",
        err);
    if (st == NULL)
        return -1;
    if (zone)
        sqlite3_bind_text(st, 1, zone, -1, SQLITE_STATIC);
    struct range {
        char cluster[64];
        int64_t first, last;
    } *v = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct range *nv = realloc(v, (n + 1) * sizeof(*v));
        if (nv == NULL)
            break;
        v = nv;
        clc_col(v[n].cluster, sizeof(v[n].cluster), st, 0);
        v[n].first = sqlite3_column_int64(st, 1);
        v[n].last = sqlite3_column_int64(st, 2);
        n++;
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(v);
        return db_error(db, "reading the public pools", err);
    }
    int found = 1;
    for (size_t i = 0; i < n && found == 1; i++) {
        int64_t from = v[i].first, to = v[i].last;
        if (wanted) {
            if (want < from || want > to)
                continue;
            from = to = want;
        }
        /* The first address of the range no row holds. */
        st = db_stmt(db,
                     "SELECT ip FROM addresses WHERE ip BETWEEN ? AND ?"
                     " ORDER BY ip",
                     err);
        if (st == NULL) {
            found = -1;
            break;
        }
        sqlite3_bind_int64(st, 1, from);
        sqlite3_bind_int64(st, 2, to);
        int64_t next = from;
        while (sqlite3_step(st) == SQLITE_ROW &&
               sqlite3_column_int64(st, 0) == next)
            next++;
        db_stmt_done(st);
        if (next <= to) {
            snprintf(ip, 16, "%u.%u.%u.%u", (unsigned)(next >> 24) & 255,
                     (unsigned)(next >> 16) & 255, (unsigned)(next >> 8) & 255,
                     (unsigned)next & 255);
            snprintf(cluster, 64, "%s", v[i].cluster);
            found = 0;
        }
    }
    free(v);
    return found;
}

/* The zone a NetworkBorderGroup names: NULL for the region (any zone),
 * or the zone; -1 when it is neither. */
static int border_group(struct ec2_req *r, const char *g, const char **zone,
                        struct koala_error **err)
{
    *zone = NULL;
    if (g == NULL || strcmp(g, r->clc->region) == 0)
        return 0;
    sqlite3_stmt *st = db_stmt(
        r->db, "SELECT 1 FROM services WHERE kind = 'cluster' AND name = ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, g, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up zone", err);
    db_stmt_done(st);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", g);
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid value '%s' for NetworkBorderGroup: not "
                         "this region or one of its zones",
                         shown);
    }
    *zone = g;
    return 0;
}

void ec2_allocate_address(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *domain = ec2_param(r, "Domain");
    const char *pool = ec2_param(r, "PublicIpv4Pool");
    const char *wanted = ec2_param(r, "Address");
    const char *zone = NULL;
    static const char *const types[] = {"elastic-ip", NULL};
    if (domain && strcmp(domain, "vpc") != 0 && strcmp(domain, "standard") != 0)
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Invalid value '%.64s' for Domain: vpc or standard", domain);
    else if (pool && strcmp(pool, POOL_NAME) != 0)
        error_set(&err, ENOENT, "InvalidPublicIpv4PoolID.NotFound",
                  "The pool ID '%.64s' does not exist", pool);
    else if (wanted && !ipv4_valid(wanted))
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Invalid value '%.64s' for Address", wanted);
    if (err || ec2_check_tag_specs(r, types, &err) < 0 ||
        border_group(r, ec2_param(r, "NetworkBorderGroup"), &zone, &err) < 0)
        return ec2_fail(r, err);
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT count(*) FROM addresses WHERE owner = ?"
                               " AND allocation_id IS NOT NULL",
                               &err);
    int64_t held = 0;
    if (st) {
        sqlite3_bind_int64(st, 1, r->who.id);
        if (sqlite3_step(st) == SQLITE_ROW)
            held = sqlite3_column_int64(st, 0);
        db_stmt_done(st);
    }
    char ip[16] = "", cluster[64] = "", alloc[32] = "";
    int rc = err ? -1 : 0;
    if (rc == 0 && held >= (int64_t)r->clc->opt.address_quota)
        rc = error_set(&err, EINVAL, "AddressLimitExceeded",
                       "The maximum number of addresses has been reached.");
    if (rc == 0)
        rc = pick_address(r->db, zone, wanted, ip, cluster, &err);
    if (rc == 1)
        rc = wanted ? error_set(&err, ENOENT, "InvalidAddress.NotFound",
                                "Address '%s' is not available in this "
                                "region's pools.",
                                wanted)
                    : error_set(&err, EAGAIN, "InsufficientAddressCapacity",
                                "There are no free public addresses%s%s.",
                                zone ? " in " : "", zone ? zone : "");
    if (rc == 0 && ec2_dry_run(r)) {
        db_rollback(r->db);
        return;
    }
    if (rc == 0 && id_resource(alloc, sizeof(alloc), "eipalloc") < 0)
        rc = error_set(&err, EIO, NULL, "no randomness");
    char owner[24], now[24], num[24];
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    struct in_addr a;
    inet_pton(AF_INET, ip, &a);
    snprintf(num, sizeof(num), CLC_INT "%lu", (unsigned long)ntohl(a.s_addr));
    if (rc == 0 &&
        (clc_exec(r->db,
                  "INSERT INTO addresses (public_ip, ip, cluster, owner,"
                  " allocation_id, domain, created) VALUES (?,?,?,?,?,?,?)",
                  "recording address", &err, ip, num, cluster, owner, alloc,
                  domain ? domain : "vpc", now, NULL) < 0 ||
         ec2_apply_tag_specs(r, "elastic-ip", alloc, &err) < 0 ||
         db_commit(r->db, &err) < 0))
        rc = -1;
    if (rc < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    log_info("account %lld: allocated %s (%s) in %s", (long long)r->who.id, ip,
             alloc, cluster);
    struct xml_writer *w = ec2_reply_start(r, "AllocateAddress");
    xml_text_element(w, "publicIp", ip);
    xml_text_element(w, "domain", domain ? domain : "vpc");
    xml_text_element(w, "allocationId", alloc);
    xml_text_element(w, "publicIpv4Pool", POOL_NAME);
    xml_text_element(w, "networkBorderGroup", cluster);
    ec2_reply_finish(r, w);
}

/* ---- AssociateAddress ---- */

struct inst {
    char cluster[64];
    char state[16];
    char private_ip[48];
};

static int find_instance(struct ec2_req *r, const char *id, struct inst *out,
                         struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", id);
    if (!id_resource_valid(id, "i-"))
        return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                         "Invalid id: \"%s\"", shown);
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT cluster, state, private_ip FROM"
                               " instances WHERE id = ? AND owner = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up instance", err);
    if (rc == 0) {
        clc_col(out->cluster, sizeof(out->cluster), st, 0);
        clc_col(out->state, sizeof(out->state), st, 1);
        clc_col(out->private_ip, sizeof(out->private_ip), st, 2);
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                         "The instance ID '%s' does not exist", shown);
    return rc;
}

void ec2_associate_address(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *alloc = ec2_param(r, "AllocationId");
    const char *public_ip = ec2_param(r, "PublicIp");
    const char *iid = ec2_param(r, "InstanceId");
    const char *priv = ec2_param(r, "PrivateIpAddress");
    bool again;
    if (ec2_param_bool(r, "AllowReassociation", false, &again, &err) < 0)
        return ec2_fail(r, err);
    if (iid == NULL) {
        error_set(&err, EINVAL,
                  ec2_param(r, "NetworkInterfaceId") ? "InvalidParameterValue"
                                                     : "MissingParameter",
                  "InstanceId is required (network interfaces are not "
                  "separate resources here)");
        return ec2_fail(r, err);
    }
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    struct addr_row a;
    struct inst in;
    char assoc[32] = "";
    if (find_address(r, alloc, public_ip, &a, &err) < 0 ||
        find_instance(r, iid, &in, &err) < 0)
        goto fail;
    if (strcmp(in.state, "terminated") == 0 ||
        strcmp(in.state, "shutting-down") == 0 || in.private_ip[0] == '\0') {
        error_set(&err, EINVAL, "IncorrectInstanceState",
                  "The instance '%s' is not in a valid state for this "
                  "operation.",
                  iid);
        goto fail;
    }
    if (priv && strcmp(priv, in.private_ip) != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "The private IP address '%.40s' is not the instance's", priv);
        goto fail;
    }
    if (strcmp(a.cluster, in.cluster) != 0) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "The address '%s' belongs to network border group %s, "
                  "the instance '%s' is in %s.",
                  a.public_ip, a.cluster, iid, in.cluster);
        goto fail;
    }
    if (strcmp(a.instance_id, iid) == 0) {
        /* Already so: nothing changes. */
        snprintf(assoc, sizeof(assoc), "%s", a.association_id);
        db_rollback(r->db);
        if (ec2_dry_run(r))
            return;
        goto reply;
    }
    if (*a.instance_id && !again) {
        error_set(&err, EINVAL, "Resource.AlreadyAssociated",
                  "resource %s is already associated with associate-id %s",
                  a.allocation_id, a.association_id);
        goto fail;
    }
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return;
    }
    if (id_resource(assoc, sizeof(assoc), "eipassoc") < 0) {
        error_set(&err, EIO, NULL, "no randomness");
        goto fail;
    }
    /* The instance's other public address goes: one per instance (an
     * auto-assigned one is released, an elastic IP disassociated). */
    if (clc_exec(r->db,
                 "DELETE FROM addresses WHERE instance_id = ? AND"
                 " allocation_id IS NULL",
                 "releasing the instance's public address", &err, iid,
                 NULL) < 0 ||
        clc_exec(r->db,
                 "UPDATE addresses SET instance_id = NULL, association_id ="
                 " NULL WHERE instance_id = ?",
                 "disassociating", &err, iid, NULL) < 0 ||
        clc_exec(r->db,
                 "UPDATE addresses SET instance_id = ?, association_id = ?"
                 " WHERE public_ip = ?",
                 "associating", &err, iid, assoc, a.public_ip, NULL) < 0 ||
        clc_eip_bump(r->db, a.cluster, &err) < 0 || db_commit(r->db, &err) < 0)
        goto fail;
    clc_eip_kick(r->clc);
    log_info("%s -> %s (%s)", a.public_ip, iid, assoc);
reply:;
    struct xml_writer *w = ec2_reply_start(r, "AssociateAddress");
    xml_bool_element(w, "return", true);
    xml_text_element(w, "associationId", assoc);
    ec2_reply_finish(r, w);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}

/* ---- DisassociateAddress, ReleaseAddress ---- */

void ec2_disassociate_address(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *assoc = ec2_param(r, "AssociationId");
    const char *public_ip = ec2_param(r, "PublicIp");
    struct addr_row a;
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (assoc && public_ip) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "You may specify either an association ID or a public IP "
                  "address, not both");
        goto fail;
    }
    if (assoc) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", assoc);
        sqlite3_stmt *st =
            id_resource_valid(assoc, "eipassoc-")
                ? db_stmt(r->db,
                          "SELECT " ADDR_COLS " FROM addresses a WHERE"
                          " a.association_id = ? AND"
                          " a.owner = ? AND a.allocation_id"
                          " IS NOT NULL",
                          &err)
                : NULL;
        int rc = 1;
        if (st) {
            sqlite3_bind_text(st, 1, assoc, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, r->who.id);
            rc = db_step_row(r->db, st, "looking up association", &err);
            if (rc == 0)
                read_row(st, &a);
            db_stmt_done(st);
        }
        if (err)
            goto fail;
        if (rc == 1) {
            error_set(&err, ENOENT, "InvalidAssociationID.NotFound",
                      "The association ID '%s' does not exist", shown);
            goto fail;
        }
    } else if (find_address(r, NULL, public_ip, &a, &err) < 0) {
        goto fail;
    } else if (a.instance_id[0] == '\0') {
        error_set(&err, ENOENT, "InvalidAssociationID.NotFound",
                  "The address '%s' is not associated", a.public_ip);
        goto fail;
    }
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return;
    }
    if (clc_exec(r->db,
                 "UPDATE addresses SET instance_id = NULL, association_id ="
                 " NULL WHERE public_ip = ?",
                 "disassociating", &err, a.public_ip, NULL) < 0 ||
        clc_eip_bump(r->db, a.cluster, &err) < 0 || db_commit(r->db, &err) < 0)
        goto fail;
    clc_eip_kick(r->clc);
    log_info("%s no longer -> %s", a.public_ip, a.instance_id);
    struct xml_writer *w = ec2_reply_start(r, "DisassociateAddress");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}

void ec2_release_address(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct addr_row a;
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (find_address(r, ec2_param(r, "AllocationId"), ec2_param(r, "PublicIp"),
                     &a, &err) < 0)
        goto fail;
    if (*a.instance_id) {
        error_set(&err, EINVAL, "InvalidIPAddress.InUse",
                  "Address '%s' is in use.", a.public_ip);
        goto fail;
    }
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return;
    }
    if (clc_exec(r->db, "DELETE FROM addresses WHERE public_ip = ?",
                 "releasing address", &err, a.public_ip, NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM tags WHERE resource_id = ?",
                 "dropping the address's tags", &err, a.allocation_id,
                 NULL) < 0 ||
        db_commit(r->db, &err) < 0)
        goto fail;
    log_info("account %lld: released %s (%s)", (long long)r->who.id,
             a.public_ip, a.allocation_id);
    struct xml_writer *w = ec2_reply_start(r, "ReleaseAddress");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}

/* ---- DescribeAddresses ---- */

static const char *filter_value(const struct addr_row *x, const char *f)
{
    return strcmp(f, "allocation-id") == 0          ? x->allocation_id
           : strcmp(f, "association-id") == 0       ? x->association_id
           : strcmp(f, "instance-id") == 0          ? x->instance_id
           : strcmp(f, "public-ip") == 0            ? x->public_ip
           : strcmp(f, "domain") == 0               ? x->domain
           : strcmp(f, "private-ip-address") == 0   ? x->private_ip
           : strcmp(f, "network-border-group") == 0 ? x->cluster
                                                    : "";
}

void ec2_describe_addresses(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"allocation-id",
                                        "association-id",
                                        "instance-id",
                                        "public-ip",
                                        "domain",
                                        "private-ip-address",
                                        "network-border-group",
                                        "tag-key",
                                        "tag-value",
                                        NULL};
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    struct ec2_id_list ips = {0}, allocs = {0};
    struct xml_writer *w = NULL;
    struct addr_row *rows = NULL;
    size_t n = 0;
    if (ec2_id_list_get(r, "PublicIp", &ips, &err) < 0 ||
        ec2_id_list_get(r, "AllocationId", &allocs, &err) < 0 || ec2_dry_run(r))
        goto out;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT " ADDR_COLS " FROM addresses a WHERE"
                               " a.owner = ? AND a.allocation_id IS NOT NULL"
                               " ORDER BY a.ip",
                               &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct addr_row *nr = realloc(rows, (n + 1) * sizeof(*nr));
        if (nr == NULL) {
            error_set(&err, ENOMEM, NULL, "out of memory");
            break;
        }
        rows = nr;
        read_row(st, &rows[n++]);
    }
    db_stmt_done(st);
    if (err)
        goto out;
    w = ec2_reply_start(r, "DescribeAddresses");
    xml_start(w, "addressesSet");
    for (size_t i = 0; i < n && err == NULL; i++) {
        const struct addr_row *x = &rows[i];
        bool by_ip = ec2_id_list_has(&ips, x->public_ip);
        bool by_alloc = ec2_id_list_has(&allocs, x->allocation_id);
        bool wanted = (ips.n == 0 && allocs.n == 0) || by_ip || by_alloc;
        for (size_t j = 0; wanted && j < fs.n; j++)
            wanted =
                ec2_is_tag_filter(fs.f[j].name)
                    ? ec2_tag_filter(r, x->allocation_id, &fs.f[j])
                    : ec2_filter_match(&fs.f[j], filter_value(x, fs.f[j].name));
        if (!wanted)
            continue;
        xml_start(w, "item");
        xml_text_element(w, "publicIp", x->public_ip);
        xml_text_element(w, "allocationId", x->allocation_id);
        xml_text_element(w, "domain", x->domain);
        if (*x->instance_id) {
            xml_text_element(w, "instanceId", x->instance_id);
            xml_text_element(w, "associationId", x->association_id);
            char owner[13];
            snprintf(owner, sizeof(owner), "%s", r->who.number);
            xml_text_element(w, "networkInterfaceOwnerId", owner);
            xml_text_element(w, "privateIpAddress", x->private_ip);
        }
        ec2_write_tag_set(r, w, x->allocation_id, &err);
        xml_text_element(w, "publicIpv4Pool", POOL_NAME);
        xml_text_element(w, "networkBorderGroup", x->cluster);
        xml_end(w);
    }
    xml_end(w);
    const char *no_ip = ec2_id_list_missing(&ips);
    const char *no_alloc = ec2_id_list_missing(&allocs);
    if (err == NULL && no_ip) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", no_ip);
        error_set(&err, ENOENT, "InvalidAddress.NotFound",
                  "Address '%s' not found.", shown);
    } else if (err == NULL && no_alloc) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", no_alloc);
        error_set(&err, ENOENT, "InvalidAllocationID.NotFound",
                  "The allocation ID '%s' does not exist", shown);
    }
out:
    free(rows);
    ec2_id_list_free(&ips);
    ec2_id_list_free(&allocs);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}

/* ---- public addresses assigned at launch ---- */

int clc_subnet_maps_public_ip(struct db *db, const char *subnet, bool *out,
                              struct koala_error **err)
{
    *out = false;
    sqlite3_stmt *st =
        db_stmt(db, "SELECT map_public_ip FROM subnets WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, subnet ? subnet : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0) != 0;
    db_stmt_done(st);
    return 0;
}

/* One instance's address from its cluster's pool: 0 given, 1 the pool is
 * full, -1 error. */
static int autoassign_one(struct db *db, const char *iid, const char *cluster,
                          int64_t owner, struct koala_error **err)
{
    if (db_begin(db, err) < 0)
        return -1;
    char ip[16], where[64], num[24], who[24], now[24];
    /* (checked again inside the transaction: nobody gave it one since) */
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT 1 FROM instances i WHERE i.id = ? AND"
                               " i.public_ip_wanted = 1 AND NOT EXISTS"
                               " (SELECT 1 FROM addresses a WHERE"
                               " a.instance_id = i.id)",
                               err);
    int rc = st ? 0 : -1;
    if (st) {
        sqlite3_bind_text(st, 1, iid, -1, SQLITE_STATIC);
        rc = db_step_row(db, st, "looking up instance", err);
        db_stmt_done(st);
    }
    if (rc == 0)
        rc = pick_address(db, cluster, NULL, ip, where, err);
    if (rc != 0) {
        db_rollback(db);
        return rc;
    }
    struct in_addr a;
    inet_pton(AF_INET, ip, &a);
    snprintf(num, sizeof(num), CLC_INT "%lu", (unsigned long)ntohl(a.s_addr));
    snprintf(who, sizeof(who), CLC_INT "%lld", (long long)owner);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (clc_exec(db,
                 "INSERT INTO addresses (public_ip, ip, cluster, owner,"
                 " instance_id, created) VALUES (?,?,?,?,?,?)",
                 "assigning a public address", err, ip, num, where, who, iid,
                 now, NULL) < 0 ||
        clc_eip_bump(db, where, err) < 0 || db_commit(db, err) < 0) {
        db_rollback(db);
        return -1;
    }
    log_info("%s: public address %s assigned", iid, ip);
    return 0;
}

void clc_eip_autoassign(struct clc *clc, struct db *db)
{
    (void)clc;
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT i.id, i.cluster, i.owner FROM instances i WHERE"
        " i.public_ip_wanted = 1 AND i.private_ip != '' AND i.node != '' AND"
        " i.state IN ('pending', 'running') AND NOT EXISTS (SELECT 1 FROM"
        " addresses a WHERE a.instance_id = i.id) LIMIT 256",
        &err);
    struct want {
        char id[32], cluster[64];
        int64_t owner;
    } *v = NULL;
    size_t n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct want *nv = realloc(v, (n + 1) * sizeof(*v));
        if (nv == NULL)
            break;
        v = nv;
        clc_col(v[n].id, sizeof(v[n].id), st, 0);
        clc_col(v[n].cluster, sizeof(v[n].cluster), st, 1);
        v[n].owner = sqlite3_column_int64(st, 2);
        n++;
    }
    if (st)
        db_stmt_done(st);
    for (size_t i = 0; i < n; i++) {
        int rc = autoassign_one(db, v[i].id, v[i].cluster, v[i].owner, &err);
        if (rc == 1)
            log_warn("%s: no free public address in %s (assigned once one "
                     "is free)",
                     v[i].id, v[i].cluster);
        if (rc < 0) {
            log_warn("%s: %s", v[i].id, error_message(err));
            error_free(err);
            err = NULL;
        }
    }
    error_free(err);
    free(v);
}

/* ---- ModifySubnetAttribute (MapPublicIpOnLaunch) ---- */

void ec2_modify_subnet_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *id = ec2_required(r, "SubnetId", &err);
    if (id == NULL)
        return ec2_fail(r, err);
    const char *v = ec2_param(r, "MapPublicIpOnLaunch.Value");
    if (v == NULL) {
        /* The other attributes (IPv6, customer-owned addresses, DNS64,
         * host names) belong to custom VPCs, not built yet. */
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Only MapPublicIpOnLaunch can be modified here");
        return ec2_fail(r, err);
    }
    bool on;
    struct clc_subnet sn;
    if (ec2_param_bool(r, "MapPublicIpOnLaunch.Value", false, &on, &err) < 0 ||
        clc_subnet_get(r->db, r->who.id, id, &sn, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    if (clc_exec(r->db, "UPDATE subnets SET map_public_ip = ? WHERE id = ?",
                 "changing the subnet", &err, on ? CLC_INT "1" : CLC_INT "0",
                 sn.id, NULL) < 0)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "ModifySubnetAttribute");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}
