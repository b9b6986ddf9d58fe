/* describe.c: instances as the EC2 API shows them: the rows, their XML
 * (shared by RunInstances and DescribeInstances), state codes, and
 * DescribeInstances with its filters and MaxResults/NextToken paging.
 * Terminated instances stay visible for an hour, as on EC2. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "ebs.h"
#include "id.h"
#include "secgroups.h"

#define TERMINATED_VISIBLE_MS (3600 * 1000)

int ec2_state_code(const char *state)
{
    static const struct {
        const char *name;
        int code;
    } codes[] = {{"pending", 0},     {"running", 16},  {"shutting-down", 32},
                 {"terminated", 48}, {"stopping", 64}, {"stopped", 80}};
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
        if (strcmp(codes[i].name, state) == 0)
            return codes[i].code;
    return 0;
}

#define INSTANCE_COLS                                                          \
    "i.id, i.reservation, i.owner, a.number, i.launch_index, i.image_id,"      \
    " i.kernel_id, i.ramdisk_id, i.instance_type, i.key_name, i.cluster,"      \
    " i.node, i.state, i.reason_code, i.reason_message, i.transition_reason,"  \
    " i.private_ip, i.mac, i.hypervisor, i.client_token, i.launch_time,"       \
    " i.updated, i.reachability, " CLC_MD_COLS ", i.subnet_id,"                \
    " (SELECT vpc FROM subnets WHERE id = i.subnet_id),"                       \
    " (SELECT public_ip FROM addresses WHERE instance_id = i.id),"             \
    " (SELECT allocation_id IS NOT NULL FROM addresses WHERE"                  \
    "  instance_id = i.id), i.root_device_type, i.root_device_name"

void clc_read_instance(sqlite3_stmt *st, struct instance_row *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->id, sizeof(x->id), st, 0);
    clc_col(x->reservation, sizeof(x->reservation), st, 1);
    x->owner = sqlite3_column_int64(st, 2);
    clc_col(x->owner_number, sizeof(x->owner_number), st, 3);
    x->launch_index = sqlite3_column_int(st, 4);
    clc_col(x->image_id, sizeof(x->image_id), st, 5);
    clc_col(x->kernel_id, sizeof(x->kernel_id), st, 6);
    clc_col(x->ramdisk_id, sizeof(x->ramdisk_id), st, 7);
    clc_col(x->type, sizeof(x->type), st, 8);
    clc_col(x->key_name, sizeof(x->key_name), st, 9);
    clc_col(x->cluster, sizeof(x->cluster), st, 10);
    clc_col(x->node, sizeof(x->node), st, 11);
    clc_col(x->state, sizeof(x->state), st, 12);
    clc_col(x->reason_code, sizeof(x->reason_code), st, 13);
    clc_col(x->reason_message, sizeof(x->reason_message), st, 14);
    clc_col(x->transition_reason, sizeof(x->transition_reason), st, 15);
    clc_col(x->private_ip, sizeof(x->private_ip), st, 16);
    clc_col(x->mac, sizeof(x->mac), st, 17);
    clc_col(x->hypervisor, sizeof(x->hypervisor), st, 18);
    clc_col(x->client_token, sizeof(x->client_token), st, 19);
    x->launch_time = sqlite3_column_int64(st, 20);
    x->updated = sqlite3_column_int64(st, 21);
    clc_col(x->reachability, sizeof(x->reachability), st, 22);
    clc_md_read_cols(st, 23, &x->md, &x->md_version, &x->md_applied);
    clc_col(x->subnet_id, sizeof(x->subnet_id), st, 30);
    clc_col(x->vpc_id, sizeof(x->vpc_id), st, 31);
    clc_col(x->public_ip, sizeof(x->public_ip), st, 32);
    x->public_elastic = sqlite3_column_int(st, 33) != 0;
    clc_col(x->root_device_type, sizeof(x->root_device_type), st, 34);
    clc_col(x->root_device_name, sizeof(x->root_device_name), st, 35);
}

/* Loads the caller's instances, ordered by launch: all of them, those of
 * one reservation, or the listed ids.  *rows is malloc'd. */
int clc_load_instances(struct db *db, int64_t owner, const char *reservation,
                       struct instance_row **rows, size_t *n,
                       struct koala_error **err)
{
    static const char by_owner[] =
        "SELECT " INSTANCE_COLS " FROM instances i JOIN accounts a ON a.id ="
        " i.owner WHERE i.owner = ?1 AND (?2 IS NULL OR i.reservation = ?2)"
        " ORDER BY i.launch_time, i.id";
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(db, by_owner, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, owner);
    if (reservation)
        sqlite3_bind_text(st, 2, reservation, -1, SQLITE_STATIC);
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct instance_row *nr = realloc(*rows, cap * sizeof(*nr));
            if (nr == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *rows = nr;
        }
        clc_read_instance(st, &(*rows)[(*n)++]);
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(*rows);
        *rows = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM
                   ? error_set(err, ENOMEM, NULL, "out of memory")
                   : db_error(db, "listing instances", err);
    }
    return 0;
}

void ec2_write_state(struct xml_writer *w, const char *element,
                     const char *state)
{
    xml_start(w, element);
    xml_u64_element(w, "code", (uint64_t)ec2_state_code(state));
    xml_text_element(w, "name", state);
    xml_end(w);
}

static void private_dns(const struct instance_row *x, const char *region,
                        char *out, size_t size)
{
    char ip[48];
    snprintf(ip, sizeof(ip), "%s", x->private_ip);
    for (char *p = ip; *p; p++)
        if (*p == '.')
            *p = '-';
    /* EC2's names: ec2.internal in us-east-1, REGION.compute.internal
     * elsewhere (the CC's DNS and metadata service name them alike). */
    if (*ip && strcmp(region, "us-east-1") == 0)
        snprintf(out, size, "ip-%s.ec2.internal", ip);
    else if (*ip)
        snprintf(out, size, "ip-%s.%s.compute.internal", ip, region);
    else
        snprintf(out, size, "%s", "");
}

int ec2_write_instance(struct ec2_req *r, struct xml_writer *w,
                       const struct instance_row *x, struct koala_error **err)
{
    char t[25], dns[128], pub[128];
    xml_start(w, "item");
    xml_text_element(w, "instanceId", x->id);
    xml_text_element(w, "imageId", x->image_id);
    ec2_write_state(w, "instanceState", x->state);
    private_dns(x, r->clc->region, dns, sizeof(dns));
    clc_public_dns(x->public_ip, r->clc->region, pub, sizeof(pub));
    xml_text_element(w, "privateDnsName", dns);
    xml_text_element(w, "dnsName", pub);
    xml_text_element(w, "reason", x->transition_reason);
    if (*x->key_name)
        xml_text_element(w, "keyName", x->key_name);
    xml_u64_element(w, "amiLaunchIndex", (uint64_t)x->launch_index);
    xml_start(w, "productCodes");
    xml_end(w);
    xml_text_element(w, "instanceType", x->type);
    xml_text_element(w, "launchTime", ec2_time(x->launch_time, t));
    xml_start(w, "placement");
    xml_text_element(w, "availabilityZone", x->cluster);
    xml_text_element(w, "groupName", "");
    xml_text_element(w, "tenancy", "default");
    xml_end(w);
    if (*x->kernel_id)
        xml_text_element(w, "kernelId", x->kernel_id);
    if (*x->ramdisk_id)
        xml_text_element(w, "ramdiskId", x->ramdisk_id);
    xml_start(w, "monitoring");
    xml_text_element(w, "state", "disabled");
    xml_end(w);
    if (*x->private_ip)
        xml_text_element(w, "privateIpAddress", x->private_ip);
    if (*x->public_ip)
        xml_text_element(w, "ipAddress", x->public_ip);
    if (*x->subnet_id) {
        xml_text_element(w, "subnetId", x->subnet_id);
        xml_text_element(w, "vpcId", x->vpc_id);
    }
    if (clc_sg_write_instance_groups(r, w, "groupSet", x->id, err) < 0) {
        xml_end(w);
        return -1;
    }
    if (*x->reason_code) {
        xml_start(w, "stateReason");
        xml_text_element(w, "code", x->reason_code);
        xml_text_element(w, "message", x->reason_message);
        xml_end(w);
    }
    xml_text_element(w, "architecture", "x86_64");
    xml_text_element(w, "rootDeviceType", x->root_device_type);
    xml_text_element(w, "rootDeviceName", x->root_device_name);
    xml_start(w, "blockDeviceMapping");
    if (ec2_write_instance_volumes(r, w, x->id, err) < 0) {
        xml_end(w);
        return -1;
    }
    xml_end(w);
    xml_text_element(w, "virtualizationType", "hvm");
    if (*x->client_token)
        xml_text_element(w, "clientToken", x->client_token);
    if (*x->hypervisor)
        xml_text_element(w, "hypervisor", x->hypervisor);
    if (*x->mac) {
        xml_start(w, "networkInterfaceSet");
        xml_start(w, "item");
        if (*x->subnet_id) {
            xml_text_element(w, "subnetId", x->subnet_id);
            xml_text_element(w, "vpcId", x->vpc_id);
            xml_text_element(w, "ownerId", x->owner_number);
        }
        xml_text_element(w, "macAddress", x->mac);
        xml_text_element(w, "privateIpAddress", x->private_ip);
        xml_text_element(w, "privateDnsName", dns);
        xml_text_element(w, "status", "in-use");
        if (*x->public_ip) {
            /* EC2 names the owner of an auto-assigned address "amazon" */
            xml_start(w, "association");
            xml_text_element(w, "publicIp", x->public_ip);
            xml_text_element(w, "publicDnsName", pub);
            xml_text_element(w, "ipOwnerId",
                             x->public_elastic ? x->owner_number : "amazon");
            xml_end(w);
        }
        xml_end(w);
        xml_end(w);
    }
    ec2_write_metadata_options(w, x);
    int rc = ec2_write_tag_set(r, w, x->id, err);
    xml_end(w);
    return rc;
}

int ec2_write_reservation(struct ec2_req *r, struct xml_writer *w,
                          const struct instance_row *rows, size_t n,
                          struct koala_error **err)
{
    xml_text_element(w, "reservationId", rows[0].reservation);
    xml_text_element(w, "ownerId", rows[0].owner_number);
    xml_start(w, "groupSet");
    xml_end(w);
    xml_start(w, "instancesSet");
    for (size_t i = 0; i < n; i++)
        if (ec2_write_instance(r, w, &rows[i], err) < 0)
            return -1;
    xml_end(w);
    return 0;
}

/* ---- paging ---- */

int ec2_instance_token_parse(const char *token, int64_t *after_time,
                             char after_id[32], struct koala_error **err)
{
    return ec2_token_parse(token, "i-", "InvalidParameterValue", after_time,
                           after_id, err);
}

bool ec2_instance_after(const struct instance_row *x, int64_t after_time,
                        const char *after_id)
{
    return ec2_token_after(x->launch_time, x->id, after_time, after_id);
}

void ec2_instance_token_write(struct xml_writer *w,
                              const struct instance_row *last)
{
    ec2_token_write(w, last->launch_time, last->id);
}

int ec2_instance_listing(const struct ec2_req *r, struct ec2_id_list *ids,
                         long long *max, struct koala_error **err)
{
    if (ec2_id_list_get(r, "InstanceId", ids, err) < 0)
        return -1;
    if (ec2_param(r, "MaxResults") && ids->n)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "The parameter instancesSet cannot be used with "
                         "the parameter maxResults");
    return ec2_param_int(r, "MaxResults", 0, 5, 1000, max, err);
}

void ec2_instances_found(const struct ec2_id_list *ids,
                         struct koala_error **err)
{
    const char *missing = ec2_id_list_missing(ids);
    if (*err == NULL && missing)
        error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", missing);
}

bool ec2_instance_visible(const struct instance_row *x, int64_t now_ms)
{
    return strcmp(x->state, "terminated") != 0 ||
           now_ms - x->updated <= TERMINATED_VISIBLE_MS;
}

/* ---- DescribeInstances ---- */

static const char *instance_filter_value(struct ec2_req *r,
                                         const struct instance_row *x,
                                         const char *f, char *tmp, size_t size)
{
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {
        {"instance-id", offsetof(struct instance_row, id)},
        {"instance-state-name", offsetof(struct instance_row, state)},
        {"instance-type", offsetof(struct instance_row, type)},
        {"image-id", offsetof(struct instance_row, image_id)},
        {"kernel-id", offsetof(struct instance_row, kernel_id)},
        {"ramdisk-id", offsetof(struct instance_row, ramdisk_id)},
        {"key-name", offsetof(struct instance_row, key_name)},
        {"private-ip-address", offsetof(struct instance_row, private_ip)},
        {"ip-address", offsetof(struct instance_row, public_ip)},
        {"network-interface.association.public-ip",
         offsetof(struct instance_row, public_ip)},
        {"reservation-id", offsetof(struct instance_row, reservation)},
        {"availability-zone", offsetof(struct instance_row, cluster)},
        {"owner-id", offsetof(struct instance_row, owner_number)},
        {"client-token", offsetof(struct instance_row, client_token)},
        {"hypervisor", offsetof(struct instance_row, hypervisor)},
        {"network-interface.mac-address", offsetof(struct instance_row, mac)},
        {"state-reason-code", offsetof(struct instance_row, reason_code)},
        {"subnet-id", offsetof(struct instance_row, subnet_id)},
        {"vpc-id", offsetof(struct instance_row, vpc_id)},
        {"network-interface.subnet-id",
         offsetof(struct instance_row, subnet_id)},
        {"network-interface.vpc-id", offsetof(struct instance_row, vpc_id)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
        if (strcmp(strs[i].name, f) == 0)
            return (const char *)x + strs[i].off;
    const char *md = clc_md_filter_value(x, f, tmp, size);
    if (md)
        return md;
    if (strcmp(f, "instance-state-code") == 0)
        snprintf(tmp, size, "%d", ec2_state_code(x->state));
    else if (strcmp(f, "launch-index") == 0)
        snprintf(tmp, size, "%d", x->launch_index);
    else if (strcmp(f, "private-dns-name") == 0)
        private_dns(x, r->clc->region, tmp, size);
    else if (strcmp(f, "dns-name") == 0)
        clc_public_dns(x->public_ip, r->clc->region, tmp, size);
    else if (strcmp(f, "architecture") == 0)
        snprintf(tmp, size, "x86_64");
    else if (strcmp(f, "root-device-type") == 0)
        snprintf(tmp, size, "%s", x->root_device_type);
    else
        snprintf(tmp, size, "%s", "");
    return tmp;
}

static bool instance_wanted(struct ec2_req *r, const struct instance_row *x,
                            const struct ec2_filters *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        const struct ec2_filter *f = &fs->f[i];
        char tmp[160];
        bool ok =
            ec2_is_tag_filter(f->name) ? ec2_tag_filter(r, x->id, f)
            : clc_sg_is_instance_filter(f->name)
                ? clc_sg_instance_filter(r, x->id, f)
                : ec2_filter_match(f, instance_filter_value(r, x, f->name, tmp,
                                                            sizeof(tmp)));
        if (!ok)
            return false;
    }
    return true;
}

void ec2_describe_instances(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"instance-id",
                                        "instance-state-name",
                                        "instance-state-code",
                                        "instance-type",
                                        "image-id",
                                        "kernel-id",
                                        "ramdisk-id",
                                        "key-name",
                                        "launch-index",
                                        "private-ip-address",
                                        "private-dns-name",
                                        "ip-address",
                                        "dns-name",
                                        "network-interface.association."
                                        "public-ip",
                                        "reservation-id",
                                        "availability-zone",
                                        "owner-id",
                                        "architecture",
                                        "root-device-type",
                                        "hypervisor",
                                        "client-token",
                                        "network-interface.mac-address",
                                        "state-reason-code",
                                        "subnet-id",
                                        "vpc-id",
                                        "network-interface.subnet-id",
                                        "network-interface.vpc-id",
                                        /* security groups (secgroups.h) */
                                        "instance.group-id",
                                        "instance.group-name",
                                        "group-id",
                                        "group-name",
                                        "network-interface.group-id",
                                        "network-interface.group-name",
                                        "metadata-options.http-tokens",
                                        "metadata-options.http-put-response-"
                                        "hop-limit",
                                        "metadata-options.http-endpoint",
                                        "metadata-options.http-protocol-ipv6",
                                        "metadata-options.instance-metadata-"
                                        "tags",
                                        "tag-key",
                                        "tag-value",
                                        NULL};
    struct ec2_filters fs;
    long long max = 0;
    struct ec2_id_list ids = {0};
    struct instance_row *rows = NULL;
    size_t n = 0;
    struct xml_writer *w = NULL;
    const char *token = ec2_param(r, "NextToken");
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    int64_t after_time;
    char after_id[32];
    if (ec2_instance_listing(r, &ids, &max, &err) < 0 ||
        ec2_instance_token_parse(token, &after_time, after_id, &err) < 0 ||
        ec2_dry_run(r))
        goto out;
    /* Instances from before the account's default VPC join its subnets. */
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0 ||
        clc_load_instances(r->db, r->who.id, NULL, &rows, &n, &err) < 0)
        goto out;
    w = ec2_reply_start(r, "DescribeInstances");
    xml_start(w, "reservationSet");
    int64_t now = time_now_ms();
    long long shown = 0;
    const struct instance_row *last = NULL;
    bool more = false;
    for (size_t i = 0; i < n && err == NULL;) {
        /* A reservation's instances are consecutive (same launch time). */
        size_t j = i;
        while (j < n && strcmp(rows[j].reservation, rows[i].reservation) == 0)
            j++;
        struct instance_row *pick = calloc(j - i, sizeof(*pick));
        size_t n_pick = 0;
        for (size_t k = i; pick && k < j; k++) {
            const struct instance_row *x = &rows[k];
            if (ids.n ? !ec2_id_list_has(&ids, x->id)
                      : !ec2_instance_visible(x, now))
                continue;
            if (!ec2_instance_after(x, after_time, after_id))
                continue;
            if (!instance_wanted(r, x, &fs))
                continue;
            if (max && shown == max) {
                more = true;
                break;
            }
            pick[n_pick++] = *x;
            last = x;
            shown++;
        }
        if (n_pick) {
            xml_start(w, "item");
            ec2_write_reservation(r, w, pick, n_pick, &err);
            xml_end(w);
        }
        free(pick);
        if (more)
            break;
        i = j;
    }
    xml_end(w);
    ec2_instances_found(&ids, &err);
    if (more && last)
        ec2_instance_token_write(w, last);
out:
    free(rows);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}
