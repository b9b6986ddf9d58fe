/* volumes.c: EBS volumes on the EC2 API: CreateVolume, DeleteVolume,
 * DescribeVolumes, DescribeVolumeStatus (docs/storage.md).  Attachments
 * are vol_attach.c's, modifications vol_modify.c's.
 *
 * A volume's row is written in the request's transaction, so it is in
 * DescribeVolumes the moment CreateVolume answers; its SC is then asked at
 * once, and again by each poll while it is `creating` (ebs_sync.c).  An SC
 * that refuses a volume outright (its capacity) makes CreateVolume fail
 * and the row go; an SC that is away leaves the volume `creating`.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"
#include "id.h"
#include "log.h"
#include "soap.h"

#define VOLUME_COLS                                                            \
    "v.id, v.owner, v.zone, v.size_gb, v.snapshot_id, v.type, v.iops,"         \
    " v.throughput, v.state, v.created, a.instance_id, a.device, a.state,"     \
    " a.attach_time, a.delete_on_termination"
#define VOLUME_FROM                                                            \
    " FROM volumes v LEFT JOIN attachments a ON a.volume_id = v.id"

static void read_volume(sqlite3_stmt *st, struct volume_row *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->id, sizeof(x->id), st, 0);
    x->owner = sqlite3_column_int64(st, 1);
    clc_col(x->zone, sizeof(x->zone), st, 2);
    x->size_gb = sqlite3_column_int64(st, 3);
    clc_col(x->snapshot_id, sizeof(x->snapshot_id), st, 4);
    clc_col(x->type, sizeof(x->type), st, 5);
    x->iops = sqlite3_column_int64(st, 6);
    x->throughput = sqlite3_column_int64(st, 7);
    clc_col(x->state, sizeof(x->state), st, 8);
    x->created = sqlite3_column_int64(st, 9);
    clc_col(x->instance_id, sizeof(x->instance_id), st, 10);
    clc_col(x->device, sizeof(x->device), st, 11);
    clc_col(x->attach_state, sizeof(x->attach_state), st, 12);
    x->attach_time = sqlite3_column_int64(st, 13);
    x->delete_on_termination = sqlite3_column_int(st, 14) != 0;
}

int clc_volume_get(struct db *db, int64_t owner, const char *id,
                   struct volume_row *out, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", id ? id : "");
    if (id == NULL || !id_resource_valid(id, "vol-"))
        return error_set(err, EINVAL, "InvalidVolumeID.Malformed",
                         "Invalid id: \"%s\" (expecting \"vol-...\")", shown);
    sqlite3_stmt *st = db_stmt(
        db, "SELECT " VOLUME_COLS VOLUME_FROM " WHERE v.id = ? AND v.owner = ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, owner);
    int rc = db_step_row(db, st, "looking up volume", err);
    if (rc == 0)
        read_volume(st, out);
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidVolume.NotFound",
                         "The volume '%s' does not exist.", shown);
    return rc;
}

/* ---- the volume types ---- */

struct vtype {
    const char *name;
    int64_t min_gb, max_gb;
    bool iops, throughput; /* settable */
    int64_t min_iops, max_iops;
};

static const struct vtype vtypes[] = {
    {"gp2", 1, 16384, false, false, 0, 0},
    {"gp3", 1, 16384, true, true, 3000, 16000},
    {"standard", 1, 1024, false, false, 0, 0},
    {"io1", 4, 16384, true, false, 100, 64000},
    {"io2", 4, 16384, true, false, 100, 256000},
    {"st1", 125, 16384, false, false, 0, 0},
    {"sc1", 125, 16384, false, false, 0, 0},
};

static const struct vtype *vtype_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(vtypes); i++)
        if (strcmp(vtypes[i].name, name) == 0)
            return &vtypes[i];
    return NULL;
}

/* What DescribeVolumes shows as iops for a volume that set none. */
static int64_t shown_iops(const struct volume_row *x)
{
    if (x->iops)
        return x->iops;
    if (strcmp(x->type, "gp2") == 0) {
        int64_t v = x->size_gb * 3;
        return v < 100 ? 100 : v > 16000 ? 16000 : v;
    }
    return strcmp(x->type, "gp3") == 0 ? 3000 : 0;
}

int clc_volume_check_spec(const char *type, int64_t size_gb, int64_t iops,
                          int64_t throughput, struct koala_error **err)
{
    const struct vtype *t = vtype_find(type);
    if (t == NULL) {
        char shown[64];
        snprintf(shown, sizeof(shown), "%s", type);
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Value (%s) for parameter volumeType is invalid. "
                         "Valid values are gp2, gp3, io1, io2, sc1, st1 and "
                         "standard",
                         shown);
    }
    if (size_gb < t->min_gb)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Volume of %lldGiB is too small; minimum is %lldGiB.",
                         (long long)size_gb, (long long)t->min_gb);
    if (size_gb > t->max_gb)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Volume of %lldGiB is too large; maximum is %lldGiB.",
                         (long long)size_gb, (long long)t->max_gb);
    if (iops && !t->iops)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "The parameter iops is not supported for %s volumes.",
                         t->name);
    if (iops && (iops < t->min_iops || iops > t->max_iops))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Volume iops of %lld is out of range for %s "
                         "(%lld-%lld).",
                         (long long)iops, t->name, (long long)t->min_iops,
                         (long long)t->max_iops);
    if (!iops && t->iops && strcmp(t->name, "gp3") != 0)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter iops for %s "
                         "volumes.",
                         t->name);
    if (throughput && !t->throughput)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "The parameter throughput is not supported for %s "
                         "volumes.",
                         t->name);
    if (throughput && (throughput < 125 || throughput > 1000))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Throughput of %lld MiB/s is out of range "
                         "(125-1000).",
                         (long long)throughput);
    return 0;
}

/* ---- CreateVolume ---- */

int clc_zone_known(struct db *db, const char *zone, bool *known,
                   bool *has_sc, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT EXISTS (SELECT 1 FROM services WHERE kind = 'cluster' AND"
        " name = ?1), EXISTS (SELECT 1 FROM services WHERE kind = 'sc' AND"
        " partition = ?1)",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, zone, -1, SQLITE_STATIC);
    sqlite3_step(st);
    *known = sqlite3_column_int(st, 0) != 0;
    *has_sc = sqlite3_column_int(st, 1) != 0;
    db_stmt_done(st);
    return 0;
}

void clc_write_volume(struct ec2_req *r, struct xml_writer *w,
                      const struct volume_row *x, struct koala_error **err)
{
    char t[25];
    xml_text_element(w, "volumeId", x->id);
    xml_text_elementf(w, "size", "%lld", (long long)x->size_gb);
    xml_text_element(w, "snapshotId", x->snapshot_id);
    xml_text_element(w, "availabilityZone", x->zone);
    xml_text_element(w, "status", x->state);
    xml_text_element(w, "createTime", ec2_time(x->created, t));
    xml_start(w, "attachmentSet");
    if (*x->instance_id) {
        xml_start(w, "item");
        xml_text_element(w, "volumeId", x->id);
        xml_text_element(w, "instanceId", x->instance_id);
        xml_text_element(w, "device", x->device);
        xml_text_element(w, "status", x->attach_state);
        xml_text_element(w, "attachTime", ec2_time(x->attach_time, t));
        xml_bool_element(w, "deleteOnTermination", x->delete_on_termination);
        xml_end(w);
    }
    xml_end(w);
    xml_text_element(w, "volumeType", x->type);
    int64_t iops = shown_iops(x);
    if (iops)
        xml_text_elementf(w, "iops", "%lld", (long long)iops);
    if (strcmp(x->type, "gp3") == 0)
        xml_text_elementf(w, "throughput", "%lld",
                          (long long)(x->throughput ? x->throughput : 125));
    xml_bool_element(w, "encrypted", false);
    xml_bool_element(w, "multiAttachEnabled", false);
    ec2_write_tag_set(r, w, x->id, err);
}

/* The SC's answer to a new volume: records it; an outright refusal
 * removes the volume and is the caller's error. */
static int ask_sc(struct ec2_req *r, const struct volume_row *v,
                  const char *sc_snapshot, const char *snapshot_zone,
                  struct koala_error **err)
{
    struct koala_error *e = NULL;
    struct soap_client *c = clc_sc_client(r->clc, r->db, v->zone, &e);
    struct sc_volume sv;
    int rc = c ? clc_sc_create_volume(c, v->id, (uint64_t)v->size_gb * GIB,
                                      sc_snapshot, snapshot_zone, &sv, &e)
               : -1;
    soap_client_free(c);
    if (rc == 0) {
        char now[24];
        snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
        const char *state = strcmp(sv.status, "available") == 0 ? "available"
                            : strcmp(sv.status, "error") == 0   ? "error"
                                                                : "creating";
        clc_exec(r->db,
                 "UPDATE volumes SET state = ?, sc_state = ?, updated = ?"
                 " WHERE id = ? AND state = 'creating'",
                 "recording the volume", NULL, state, sv.status, now, v->id,
                 NULL);
        return 0;
    }
    const char *code = e ? e->code : NULL;
    bool refused = code && (strcmp(code, "VolumeLimitExceeded") == 0 ||
                            strcmp(code, "InsufficientVolumeCapacity") == 0 ||
                            strcmp(code, "InvalidParameterValue") == 0 ||
                            str_has_prefix(code, "InvalidSnapshot"));
    if (!refused) { /* the SC is away: the poller asks again */
        log_warn("%s: the storage controller of %s: %s (asked again)", v->id,
                 v->zone, error_message(e));
        error_free(e);
        return 0;
    }
    struct koala_error *e2 = NULL;
    if (db_begin(r->db, &e2) == 0 &&
        clc_exec(r->db, "DELETE FROM tags WHERE resource_id = ?", "", &e2,
                 v->id, NULL) == 0 &&
        clc_exec(r->db, "DELETE FROM volumes WHERE id = ?", "", &e2, v->id,
                 NULL) == 0)
        db_commit(r->db, &e2);
    else
        db_rollback(r->db);
    if (e2) {
        log_error("%s: %s", v->id, error_message(e2));
        error_free(e2);
    }
    if (err && *err == NULL)
        *err = e;
    else
        error_free(e);
    return -1;
}

/* ClientToken: the volume it made before, if any (0 found, 1 none). */
static int by_token(struct ec2_req *r, const char *token,
                    struct volume_row *out, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT " VOLUME_COLS VOLUME_FROM
                               " WHERE v.owner = ? AND v.client_token = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, token, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up client token", err);
    if (rc == 0)
        read_volume(st, out);
    db_stmt_done(st);
    return rc;
}

void ec2_create_volume(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const tag_types[] = {"volume", NULL};
    const char *zone = ec2_param(r, "AvailabilityZone");
    const char *snap = ec2_param(r, "SnapshotId");
    const char *type = ec2_param(r, "VolumeType");
    const char *token = ec2_param(r, "ClientToken");
    long long size = 0, iops = 0, tput = 0;
    bool encrypted = false, multi = false;
    if (ec2_param_int(r, "Size", 0, 0, 1LL << 40, &size, &err) < 0 ||
        ec2_param_int(r, "Iops", 0, 0, 1LL << 30, &iops, &err) < 0 ||
        ec2_param_int(r, "Throughput", 0, 0, 1LL << 30, &tput, &err) < 0 ||
        ec2_param_bool(r, "Encrypted", false, &encrypted, &err) < 0 ||
        ec2_param_bool(r, "MultiAttachEnabled", false, &multi, &err) < 0 ||
        ec2_check_tag_specs(r, tag_types, &err) < 0)
        return ec2_fail(r, err);
    if (zone == NULL && ec2_param(r, "AvailabilityZoneId") == NULL) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter "
                  "AvailabilityZone");
        return ec2_fail(r, err);
    }
    if (zone == NULL)
        zone = ec2_param(r, "AvailabilityZoneId");
    if (ec2_param(r, "Size") == NULL && snap == NULL) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter size or "
                  "snapshotId");
        return ec2_fail(r, err);
    }
    if (encrypted || ec2_param(r, "KmsKeyId")) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "Encrypted volumes are not supported by this cloud yet: "
                  "leave Encrypted false and KmsKeyId unset");
        return ec2_fail(r, err);
    }
    if (multi) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "Multi-Attach is not supported by this cloud");
        return ec2_fail(r, err);
    }
    if (token && strlen(token) > 64) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "ClientToken is at most 64 characters");
        return ec2_fail(r, err);
    }
    struct volume_row v = {0};
    if (token) {
        int rc = by_token(r, token, &v, &err);
        if (rc < 0)
            return ec2_fail(r, err);
        if (rc == 0) {
            struct xml_writer *w = ec2_reply_start(r, "CreateVolume");
            clc_write_volume(r, w, &v, &err);
            return ec2_reply_end(r, w, err);
        }
    }
    bool known, has_sc;
    if (clc_zone_known(r->db, zone, &known, &has_sc, &err) < 0)
        return ec2_fail(r, err);
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", zone);
    if (!known) {
        error_set(&err, EINVAL, "InvalidZone.NotFound",
                  "The zone '%s' does not exist.", shown);
        return ec2_fail(r, err);
    }
    if (!has_sc) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "The zone '%s' has no storage controller: volumes cannot "
                  "be created there",
                  shown);
        return ec2_fail(r, err);
    }
    char sc_snap[32] = "", snap_zone[64] = "";
    int64_t snap_gb = 0;
    if (snap && clc_snapshot_usable(r->db, r->who.id, snap, sc_snap,
                                    snap_zone, &snap_gb, &err) < 0)
        return ec2_fail(r, err);
    if (snap && ec2_param(r, "Size") == NULL)
        size = snap_gb;
    if (snap && size < snap_gb) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Volume of size %lldGiB is smaller than snapshot '%s', "
                  "expect size >= %lldGiB",
                  size, snap, (long long)snap_gb);
        return ec2_fail(r, err);
    }
    if (type == NULL)
        type = "gp2";
    if (clc_volume_check_spec(type, size, iops, tput, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    v.owner = r->who.id;
    snprintf(v.zone, sizeof(v.zone), "%s", zone);
    v.size_gb = size;
    snprintf(v.snapshot_id, sizeof(v.snapshot_id), "%s", snap ? snap : "");
    snprintf(v.type, sizeof(v.type), "%s", type);
    v.iops = iops;
    v.throughput = tput;
    snprintf(v.state, sizeof(v.state), "creating");
    v.created = time_now_ms();
    if (id_resource(v.id, sizeof(v.id), "vol") < 0) {
        error_set(&err, EIO, NULL, "cannot make a volume id");
        return ec2_fail(r, err);
    }
    char owner[24], gb[24], io[24], tp[24], now[24];
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)v.owner);
    snprintf(gb, sizeof(gb), CLC_INT "%lld", (long long)v.size_gb);
    snprintf(io, sizeof(io), CLC_INT "%lld", (long long)v.iops);
    snprintf(tp, sizeof(tp), CLC_INT "%lld", (long long)v.throughput);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)v.created);
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    /* the snapshot's SC data and zone: its SC keeps them until the
     * volume is filled (ebs_sync.c), so the snapshot must still be there
     * in this transaction (a DeleteSnapshot may have come in between) */
    if (clc_exec(r->db,
                 "INSERT INTO volumes (id, owner, zone, size_gb, snapshot_id,"
                 " sc_snapshot, snapshot_zone, type, iops, throughput, state,"
                 " client_token, created, updated) VALUES"
                 " (?,?,?,?,?,?,?,?,?,?,'creating',NULLIF(?,''),?,?)",
                 "recording the volume", &err, v.id, owner, v.zone, gb,
                 v.snapshot_id, sc_snap, snap_zone, v.type, io, tp,
                 token ? token : "", now, now, NULL) < 0 ||
        (snap && clc_snapshot_still_there(r->db, snap, &err) < 0) ||
        ec2_apply_tag_specs(r, "volume", v.id, &err) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    log_info("account %lld: volume %s (%lld GiB, %s) in %s",
             (long long)r->who.id, v.id, (long long)v.size_gb, v.type, v.zone);
    if (ask_sc(r, &v, sc_snap, snap_zone, &err) < 0)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "CreateVolume");
    clc_write_volume(r, w, &v, &err); /* "creating", as EC2 answers */
    ec2_reply_end(r, w, err);
    clc_ebs_kick(r->clc);
}

/* ---- DeleteVolume ---- */

void ec2_delete_volume(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct volume_row v;
    if (clc_volume_get(r->db, r->who.id, ec2_param(r, "VolumeId"), &v, &err) <
        0)
        return ec2_fail(r, err);
    if (*v.instance_id || strcmp(v.state, "in-use") == 0) {
        error_set(&err, EINVAL, "VolumeInUse", "Volume %s is currently "
                  "attached to %s", v.id, v.instance_id);
        return ec2_fail(r, err);
    }
    if (strcmp(v.state, "deleting") == 0 || strcmp(v.state, "deleted") == 0) {
        error_set(&err, ENOENT, "InvalidVolume.NotFound",
                  "The volume '%s' does not exist.", v.id);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (clc_exec(r->db,
                 "UPDATE volumes SET state = 'deleting', updated = ? WHERE"
                 " id = ? AND NOT EXISTS (SELECT 1 FROM attachments WHERE"
                 " volume_id = ?)",
                 "deleting the volume", &err, now, v.id, v.id, NULL) < 0)
        return ec2_fail(r, err);
    log_info("account %lld: deleting volume %s", (long long)r->who.id, v.id);
    struct xml_writer *w = ec2_reply_start(r, "DeleteVolume");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
    clc_ebs_kick(r->clc);
}

/* ---- DescribeVolumes and DescribeVolumeStatus ---- */

static const char *filter_value(const struct volume_row *x, const char *f,
                                char *tmp, size_t size)
{
    if (strcmp(f, "size") == 0) {
        snprintf(tmp, size, "%lld", (long long)x->size_gb);
        return tmp;
    }
    if (strcmp(f, "create-time") == 0)
        return ec2_time(x->created, tmp);
    if (strcmp(f, "attachment.attach-time") == 0)
        return *x->instance_id ? ec2_time(x->attach_time, tmp) : "";
    if (strcmp(f, "attachment.delete-on-termination") == 0)
        return !*x->instance_id ? "" : x->delete_on_termination ? "true"
                                                                 : "false";
    if (strcmp(f, "encrypted") == 0 || strcmp(f, "multi-attach-enabled") == 0 ||
        strcmp(f, "fast-restored") == 0)
        return "false";
    return strcmp(f, "volume-id") == 0                ? x->id
           : strcmp(f, "status") == 0                 ? x->state
           : strcmp(f, "availability-zone") == 0      ? x->zone
           : strcmp(f, "snapshot-id") == 0            ? x->snapshot_id
           : strcmp(f, "volume-type") == 0            ? x->type
           : strcmp(f, "attachment.instance-id") == 0 ? x->instance_id
           : strcmp(f, "attachment.device") == 0      ? x->device
           : strcmp(f, "attachment.status") == 0      ? x->attach_state
                                                      : "";
}

/* The caller's volumes in creation order (*rows malloc'd). */
static int load_volumes(struct ec2_req *r, struct volume_row **rows,
                        size_t *n, struct koala_error **err)
{
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT " VOLUME_COLS VOLUME_FROM
                               " WHERE v.owner = ? ORDER BY v.created, v.id",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->who.id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct volume_row *nr = realloc(*rows, (*n + 1) * sizeof(**rows));
        if (nr == NULL) {
            db_stmt_done(st);
            return error_set(err, ENOMEM, NULL, "out of memory");
        }
        *rows = nr;
        read_volume(st, &(*rows)[(*n)++]);
    }
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(r->db, "listing volumes", err);
}

/* What both Describe calls share: the volumes named, filtered, paged.
 * write is called for each volume shown. */
static void describe(struct ec2_req *r, const char *action, const char *set,
                     const char *const *known,
                     bool (*match)(struct ec2_req *r,
                                   const struct volume_row *x,
                                   const struct ec2_filter *f),
                     void (*write)(struct ec2_req *r, struct xml_writer *w,
                                   const struct volume_row *x,
                                   struct koala_error **err))
{
    struct koala_error *err = NULL;
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    struct ec2_id_list ids = {0};
    struct xml_writer *w = NULL;
    struct volume_row *rows = NULL;
    size_t n = 0;
    long long max = 0;
    int64_t after_time;
    char after_id[32];
    if (ec2_id_list_get(r, "VolumeId", &ids, &err) < 0)
        goto out;
    for (size_t i = 0; i < ids.n; i++)
        if (!id_resource_valid(ids.v[i], "vol-")) {
            char shown[80];
            snprintf(shown, sizeof(shown), "%s", ids.v[i]);
            error_set(&err, EINVAL, "InvalidVolumeID.Malformed",
                      "Invalid id: \"%s\" (expecting \"vol-...\")", shown);
            goto out;
        }
    if (ec2_param(r, "MaxResults") && ids.n) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "The parameter volumeSet cannot be used with the "
                  "parameter maxResults");
        goto out;
    }
    if (ec2_param_int(r, "MaxResults", 0, 5, 1000, &max, &err) < 0 ||
        ec2_token_parse(ec2_param(r, "NextToken"), "vol-",
                        "InvalidNextToken", &after_time,
                        after_id, &err) < 0 ||
        ec2_dry_run(r) || load_volumes(r, &rows, &n, &err) < 0)
        goto out;
    w = ec2_reply_start(r, action);
    xml_start(w, set);
    long long shown = 0;
    const struct volume_row *last = NULL;
    bool more = false;
    for (size_t i = 0; i < n && err == NULL; i++) {
        const struct volume_row *x = &rows[i];
        bool wanted = ids.n == 0 || ec2_id_list_has(&ids, x->id);
        for (size_t j = 0; wanted && j < fs.n; j++)
            wanted = match(r, x, &fs.f[j]);
        if (!wanted || !ec2_token_after(x->created, x->id, after_time, after_id))
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        xml_start(w, "item");
        write(r, w, x, &err);
        xml_end(w);
        last = x;
        shown++;
    }
    xml_end(w);
    if (more && last)
        ec2_token_write(w, last->created, last->id);
    const char *missing = ec2_id_list_missing(&ids);
    if (err == NULL && missing) {
        char s[80];
        snprintf(s, sizeof(s), "%s", missing);
        error_set(&err, ENOENT, "InvalidVolume.NotFound",
                  "The volume '%s' does not exist.", s);
    }
out:
    free(rows);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}

static bool volume_match(struct ec2_req *r, const struct volume_row *x,
                         const struct ec2_filter *f)
{
    char tmp[32];
    return ec2_is_tag_filter(f->name)
               ? ec2_tag_filter(r, x->id, f)
               : ec2_filter_match(f, filter_value(x, f->name, tmp,
                                                  sizeof(tmp)));
}

void ec2_describe_volumes(struct ec2_req *r)
{
    static const char *const known[] = {
        "attachment.attach-time",
        "attachment.delete-on-termination",
        "attachment.device",
        "attachment.instance-id",
        "attachment.status",
        "availability-zone",
        "create-time",
        "encrypted",
        "fast-restored",
        "multi-attach-enabled",
        "size",
        "snapshot-id",
        "status",
        "volume-id",
        "volume-type",
        "tag-key",
        "tag-value",
        NULL};
    describe(r, "DescribeVolumes", "volumeSet", known, volume_match,
             clc_write_volume);
}

/* EC2's volume status: ok once the volume serves I/O. */
static const char *io_status(const struct volume_row *x)
{
    return strcmp(x->state, "available") == 0 ||
                   strcmp(x->state, "in-use") == 0
               ? "ok"
           : strcmp(x->state, "error") == 0 ? "impaired"
                                            : "insufficient-data";
}

static bool status_match(struct ec2_req *r, const struct volume_row *x,
                         const struct ec2_filter *f)
{
    (void)r;
    const char *st = io_status(x);
    const char *v = strcmp(f->name, "availability-zone") == 0 ? x->zone
                    : strcmp(f->name, "volume-status.status") == 0 ? st
                    : strcmp(f->name, "volume-status.details-name") == 0
                        ? "io-enabled"
                    : strcmp(f->name, "volume-status.details-status") == 0
                        ? (strcmp(st, "ok") == 0 ? "passed"
                           : strcmp(st, "impaired") == 0 ? "failed"
                                                         : "insufficient-data")
                        : "";
    return ec2_filter_match(f, v);
}

static void write_status(struct ec2_req *r, struct xml_writer *w,
                         const struct volume_row *x, struct koala_error **err)
{
    (void)r;
    (void)err;
    const char *st = io_status(x);
    xml_text_element(w, "volumeId", x->id);
    xml_text_element(w, "availabilityZone", x->zone);
    xml_start(w, "volumeStatus");
    xml_text_element(w, "status", st);
    xml_start(w, "details");
    xml_start(w, "item");
    xml_text_element(w, "name", "io-enabled");
    xml_text_element(w, "status", strcmp(st, "ok") == 0         ? "passed"
                                  : strcmp(st, "impaired") == 0 ? "failed"
                                                        : "insufficient-data");
    xml_end(w);
    xml_end(w);
    xml_end(w);
    xml_start(w, "eventsSet");
    xml_end(w);
    xml_start(w, "actionsSet");
    xml_end(w);
}

void ec2_describe_volume_status(struct ec2_req *r)
{
    static const char *const known[] = {"availability-zone",
                                        "volume-status.status",
                                        "volume-status.details-name",
                                        "volume-status.details-status",
                                        NULL};
    describe(r, "DescribeVolumeStatus", "volumeStatusSet", known,
             status_match, write_status);
}
