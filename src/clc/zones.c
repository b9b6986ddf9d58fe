/* zones.c: where instances can go and what they can be: DescribeRegions
 * (this cloud is one region), DescribeAvailabilityZones (one zone per
 * registered cluster, available while its CC answers; with the zone name
 * "verbose", Eucalyptus' capacity listing: under each zone a row per VM
 * type, "free / max  cpu  ram  disk") and DescribeInstanceTypes (the VM
 * types). */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "log.h"

void ec2_describe_regions(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"region-name", "endpoint", NULL};
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r)) {
        ec2_filters_free(&fs);
        return;
    }
    const char **names = NULL;
    size_t n_names = ec2_param_list(r, "RegionName", &names);
    const char *region = r->clc->region;
    const char *host = http_request_header(r->http, "Host");
    char endpoint[300];
    snprintf(endpoint, sizeof(endpoint), "%s", host ? host : "localhost");
    bool wanted = n_names == 0;
    for (size_t i = 0; i < n_names; i++)
        wanted |= strcmp(names[i], region) == 0;
    for (size_t i = 0; i < n_names; i++)
        if (strcmp(names[i], region) != 0) {
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "Invalid region: %s", names[i]);
            free(names);
            ec2_filters_free(&fs);
            return ec2_fail(r, err);
        }
    for (size_t i = 0; i < fs.n; i++) {
        const char *v =
            strcmp(fs.f[i].name, "region-name") == 0 ? region : endpoint;
        wanted &= ec2_filter_match(&fs.f[i], v);
    }
    struct xml_writer *w = ec2_reply_start(r, "DescribeRegions");
    xml_start(w, "regionInfo");
    if (wanted) {
        xml_start(w, "item");
        xml_text_element(w, "regionName", region);
        xml_text_element(w, "regionEndpoint", endpoint);
        xml_text_element(w, "optInStatus", "opt-in-not-required");
        xml_end(w);
    }
    xml_end(w);
    free(names);
    ec2_filters_free(&fs);
    ec2_reply_finish(r, w);
}

struct zone_ctx {
    struct ec2_req *r;
    struct xml_writer *w;
    const char **names;
    size_t n_names;
    bool *seen;
    struct ec2_filters *fs;
    bool verbose;
    struct instance_type types[64];
    size_t n_types;
};

static void zone_row(struct xml_writer *w, const char *name, const char *state,
                     const char *region)
{
    xml_start(w, "item");
    xml_text_element(w, "zoneName", name);
    xml_text_element(w, "zoneState", state);
    xml_text_element(w, "regionName", region);
    xml_start(w, "messageSet");
    xml_end(w);
    xml_end(w);
}

/* The verbose rows under a zone: its capacity per VM type, as its CC
 * counts it now (none when the CC does not answer). */
static void zone_capacity(struct zone_ctx *z, const struct service *s)
{
    long long max[64] = {0}, avail[64] = {0};
    struct koala_error *e = NULL;
    if (strcmp(s->state, "ENABLED") == 0 &&
        clc_cluster_capacity(z->r->clc, z->r->db, s->name, z->types, z->n_types,
                             max, avail, &e) < 0) {
        log_warn("cluster %s: capacity: %s", s->name, error_message(e));
        error_free(e);
    }
    const char *region = z->r->clc->region;
    zone_row(z->w, "|- vm types", "free / max   cpu   ram  disk", region);
    for (size_t i = 0; i < z->n_types; i++) {
        const struct instance_type *t = &z->types[i];
        char name[48], state[96];
        snprintf(name, sizeof(name), "|- %s", t->name);
        snprintf(state, sizeof(state), "%04lld / %04lld  %4d  %5d  %4d",
                 avail[i], max[i], t->cores, t->memory_mb, t->disk_gb);
        zone_row(z->w, name, state, region);
    }
}

static int load_types(struct db *db, struct instance_type *types, size_t size,
                      size_t *n, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT name, cores, memory_mb, disk_gb FROM instance_types"
                " ORDER BY cores, memory_mb, name",
                err);
    if (st == NULL)
        return -1;
    *n = 0;
    while (*n < size && sqlite3_step(st) == SQLITE_ROW) {
        struct instance_type *t = &types[(*n)++];
        clc_col(t->name, sizeof(t->name), st, 0);
        t->cores = sqlite3_column_int(st, 1);
        t->memory_mb = sqlite3_column_int(st, 2);
        t->disk_gb = sqlite3_column_int(st, 3);
    }
    db_stmt_done(st);
    return 0;
}

static int zone_item(void *ctx, const struct service *s)
{
    struct zone_ctx *z = ctx;
    bool wanted = z->n_names == 0 || z->verbose;
    for (size_t i = 0; i < z->n_names && !z->verbose; i++)
        if (strcmp(z->names[i], s->name) == 0) {
            wanted = true;
            z->seen[i] = true;
        }
    const char *state =
        strcmp(s->state, "ENABLED") == 0 ? "available" : "unavailable";
    for (size_t i = 0; wanted && i < z->fs->n; i++) {
        const struct ec2_filter *f = &z->fs->f[i];
        const char *v = strcmp(f->name, "state") == 0 ? state
                        : strcmp(f->name, "region-name") == 0
                            ? z->r->clc->region
                            : s->name;
        wanted = ec2_filter_match(f, v);
    }
    if (!wanted)
        return 0;
    xml_start(z->w, "item");
    xml_text_element(z->w, "zoneName", s->name);
    xml_text_element(z->w, "zoneState", state);
    xml_text_element(z->w, "regionName", z->r->clc->region);
    xml_text_elementf(z->w, "zoneId", "%s-%s", z->r->clc->region, s->name);
    xml_text_element(z->w, "zoneType", "availability-zone");
    xml_text_element(z->w, "optInStatus", "opt-in-not-required");
    xml_start(z->w, "messageSet");
    if (*s->message) {
        xml_start(z->w, "item");
        xml_text_element(z->w, "message", s->message);
        xml_end(z->w);
    }
    xml_end(z->w);
    xml_end(z->w);
    if (z->verbose)
        zone_capacity(z, s);
    return 0;
}

void ec2_describe_availability_zones(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"zone-name", "state", "region-name",
                                        "zone-id", NULL};
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r)) {
        ec2_filters_free(&fs);
        return;
    }
    struct zone_ctx z = {.r = r, .fs = &fs};
    z.n_names = ec2_param_list(r, "ZoneName", &z.names);
    z.seen = calloc(z.n_names + 1, sizeof(bool));
    z.verbose = z.n_names == 1 && strcmp(z.names[0], "verbose") == 0;
    int rc = z.seen ? 0 : error_set(&err, ENOMEM, NULL, "out of memory");
    if (rc == 0 && z.verbose)
        rc = load_types(r->db, z.types, ARRAY_SIZE(z.types), &z.n_types, &err);
    z.w = ec2_reply_start(r, "DescribeAvailabilityZones");
    xml_start(z.w, "availabilityZoneInfo");
    if (rc == 0)
        rc = clc_services_each(r->db, "cluster", zone_item, &z, &err);
    for (size_t i = 0; rc == 0 && !z.verbose && i < z.n_names; i++)
        if (!z.seen[i])
            rc = error_set(&err, EINVAL, "InvalidParameterValue",
                           "Invalid availability zone: [%s]", z.names[i]);
    free(z.names);
    free(z.seen);
    ec2_filters_free(&fs);
    ec2_reply_end(r, z.w, err);
}

static void type_item(struct xml_writer *w, const struct instance_type *t)
{
    xml_start(w, "item");
    xml_text_element(w, "instanceType", t->name);
    xml_bool_element(w, "currentGeneration", true);
    xml_bool_element(w, "freeTierEligible", false);
    xml_start(w, "supportedUsageClasses");
    xml_text_element(w, "item", "on-demand");
    xml_end(w);
    xml_start(w, "supportedRootDeviceTypes");
    xml_text_element(w, "item", "instance-store");
    xml_end(w);
    xml_start(w, "supportedVirtualizationTypes");
    xml_text_element(w, "item", "hvm");
    xml_end(w);
    xml_bool_element(w, "bareMetal", false);
    xml_start(w, "processorInfo");
    xml_start(w, "supportedArchitectures");
    xml_text_element(w, "item", "x86_64");
    xml_end(w);
    xml_end(w);
    xml_start(w, "vCpuInfo");
    xml_u64_element(w, "defaultVCpus", (uint64_t)t->cores);
    xml_u64_element(w, "defaultCores", (uint64_t)t->cores);
    xml_u64_element(w, "defaultThreadsPerCore", 1);
    xml_end(w);
    xml_start(w, "memoryInfo");
    xml_u64_element(w, "sizeInMiB", (uint64_t)t->memory_mb);
    xml_end(w);
    /* an ephemeral disk is the instance store; types without one have
     * none, as AWS's EBS-only types */
    xml_bool_element(w, "instanceStorageSupported", t->disk_gb > 0);
    if (t->disk_gb > 0) {
        xml_start(w, "instanceStorageInfo");
        xml_u64_element(w, "totalSizeInGB", (uint64_t)t->disk_gb);
        xml_start(w, "disks");
        xml_start(w, "item");
        xml_u64_element(w, "sizeInGB", (uint64_t)t->disk_gb);
        xml_u64_element(w, "count", 1);
        xml_text_element(w, "type", "ssd");
        xml_end(w);
        xml_end(w);
        xml_end(w);
    }
    xml_start(w, "networkInfo");
    xml_text_element(w, "networkPerformance", "Moderate");
    xml_u64_element(w, "maximumNetworkInterfaces", 1);
    xml_u64_element(w, "ipv4AddressesPerInterface", 1);
    xml_end(w);
    xml_text_element(w, "hypervisor", "nitro");
    xml_end(w);
}

void ec2_describe_instance_types(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"instance-type",
                                        "vcpu-info.default-vcpus",
                                        "memory-info.size-in-mib", NULL};
    struct ec2_filters fs;
    long long max;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_param_int(r, "MaxResults", 100, 5, 100, &max, &err) < 0) {
        ec2_filters_free(&fs);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r)) {
        ec2_filters_free(&fs);
        return;
    }
    const char **names = NULL;
    size_t n_names = ec2_param_list(r, "InstanceType", &names);
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT name, cores, memory_mb, disk_gb FROM instance_types"
                " ORDER BY cores, memory_mb, name",
                &err);
    if (st == NULL) {
        free(names);
        ec2_filters_free(&fs);
        return ec2_fail(r, err);
    }
    struct xml_writer *w = ec2_reply_start(r, "DescribeInstanceTypes");
    xml_start(w, "instanceTypeSet");
    size_t found = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct instance_type t;
        clc_col(t.name, sizeof(t.name), st, 0);
        t.cores = sqlite3_column_int(st, 1);
        t.memory_mb = sqlite3_column_int(st, 2);
        t.disk_gb = sqlite3_column_int(st, 3);
        bool wanted = n_names == 0;
        for (size_t i = 0; i < n_names; i++)
            if (strcmp(names[i], t.name) == 0) {
                wanted = true;
                found++;
            }
        for (size_t i = 0; wanted && i < fs.n; i++) {
            char v[32];
            if (strcmp(fs.f[i].name, "instance-type") == 0)
                snprintf(v, sizeof(v), "%s", t.name);
            else if (strcmp(fs.f[i].name, "vcpu-info.default-vcpus") == 0)
                snprintf(v, sizeof(v), "%d", t.cores);
            else
                snprintf(v, sizeof(v), "%d", t.memory_mb);
            wanted = ec2_filter_match(&fs.f[i], v);
        }
        if (wanted)
            type_item(w, &t);
    }
    db_stmt_done(st);
    ec2_filters_free(&fs);
    if (found < n_names) {
        xml_writer_free(w);
        error_set(&err, EINVAL, "InvalidInstanceType",
                  "The following supplied instance types do not exist: [%s]",
                  names[0]);
        free(names);
        return ec2_fail(r, err);
    }
    free(names);
    ec2_reply_finish(r, w);
}
