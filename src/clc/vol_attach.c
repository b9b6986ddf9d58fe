/* vol_attach.c: AttachVolume and DetachVolume on the EC2 API, the
 * attachments in DescribeInstances' blockDeviceMapping, and applying what
 * the clusters report of them (docs/storage.md).
 *
 * An attachment is a row (volume, instance, device) whose state follows
 * EC2's: attaching until the instance's node reports the disk plugged,
 * attached, detaching until the node reports it gone; then the row goes
 * and the volume is available again.  The SC export and the node's plug
 * are ebs_sync.c's work, retried until done.  One volume has at most one
 * attachment (no Multi-Attach), one device name of an instance at most one
 * volume.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"
#include "id.h"
#include "log.h"

/* EC2's device names for EBS on Linux: /dev/sd[b-z], /dev/sd[b-z][1-15],
 * /dev/xvd[a-z][a-z]?, and the same without /dev/ (Nitro's own names
 * /dev/nvmeN are never accepted). */
bool clc_device_name_valid(const char *d)
{
    if (d == NULL)
        return false;
    const char *p = str_has_prefix(d, "/dev/") ? d + 5 : d;
    if (str_has_prefix(p, "sd")) {
        p += 2;
        if (*p < 'b' || *p > 'z')
            return false;
        p++;
        if (*p == '\0')
            return true;
        int n = 0;
        for (; *p >= '0' && *p <= '9' && n < 100; p++)
            n = n * 10 + (*p - '0');
        return *p == '\0' && n >= 1 && n <= 15;
    }
    if (str_has_prefix(p, "xvd")) {
        p += 3;
        if (*p < 'a' || *p > 'z')
            return false;
        p++;
        if (*p >= 'a' && *p <= 'z')
            p++;
        return *p == '\0';
    }
    return false;
}

/* The instance a request names, the caller's and not over. */
struct att_instance {
    char id[32];
    char state[16];
    char cluster[64];
    char node[64];
    char root[32]; /* its root device's name, of an EBS-backed one */
};

static int get_instance(struct ec2_req *r, const char *id,
                        struct att_instance *out, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", id ? id : "");
    if (id == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter "
                         "InstanceId");
    if (!id_resource_valid(id, "i-"))
        return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                         "Invalid id: \"%s\"", shown);
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT id, state, cluster, node, CASE WHEN"
                               " root_device_type = 'ebs' THEN"
                               " root_device_name ELSE '' END FROM"
                               " instances WHERE id = ? AND owner = ? AND"
                               " state != 'terminated'",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up instance", err);
    if (rc == 0) {
        clc_col(out->id, sizeof(out->id), st, 0);
        clc_col(out->state, sizeof(out->state), st, 1);
        clc_col(out->cluster, sizeof(out->cluster), st, 2);
        clc_col(out->node, sizeof(out->node), st, 3);
        clc_col(out->root, sizeof(out->root), st, 4);
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                         "The instance ID '%s' does not exist", shown);
    return rc;
}

/* Is device taken on the instance (by another volume, or its root)?
 * root: the name of its root volume (an EBS-backed instance's), free
 * while that is detached; "" for an instance-store root. */
static int device_taken(struct db *db, const char *iid, const char *device,
                        const char *root, bool *taken,
                        struct koala_error **err)
{
    /* "/dev/sdf" and "sdf" are one device */
    const char *bare = str_has_prefix(device, "/dev/") ? device + 5 : device;
    *taken = (strcmp(bare, "sda1") == 0 || strcmp(bare, "sda") == 0 ||
              strcmp(bare, "xvda") == 0) &&
             strcmp(device, root) != 0;
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT 1 FROM attachments WHERE instance_id = ? AND"
                " (device = ?2 OR device = '/dev/' || ?2 OR"
                " '/dev/' || device = ?2)",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, iid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, bare, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *taken = true;
    db_stmt_done(st);
    return 0;
}

static void write_attachment(struct xml_writer *w, const char *vol,
                             const char *iid, const char *device,
                             const char *state, int64_t when, bool dot)
{
    char t[25];
    xml_text_element(w, "volumeId", vol);
    xml_text_element(w, "instanceId", iid);
    xml_text_element(w, "device", device);
    xml_text_element(w, "status", state);
    xml_text_element(w, "attachTime", ec2_time(when, t));
    xml_bool_element(w, "deleteOnTermination", dot);
}

void ec2_attach_volume(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct volume_row v;
    struct att_instance in;
    const char *device = ec2_required(r, "Device", &err);
    if (device == NULL ||
        clc_volume_get(r->db, r->who.id, ec2_param(r, "VolumeId"), &v, &err) <
            0 ||
        get_instance(r, ec2_param(r, "InstanceId"), &in, &err) < 0)
        return ec2_fail(r, err);
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", device);
    if (!clc_device_name_valid(device) && strcmp(device, in.root) != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Value (%s) for parameter device is invalid. %s is not a "
                  "valid EBS device name.",
                  shown, shown);
        return ec2_fail(r, err);
    }
    if (*v.instance_id) {
        error_set(&err, EINVAL, "VolumeInUse",
                  "%s is already attached to an instance", v.id);
        return ec2_fail(r, err);
    }
    if (strcmp(v.zone, in.cluster) != 0) {
        error_set(&err, EINVAL, "InvalidVolume.ZoneMismatch",
                  "The volume '%s' is not in the same availability zone as "
                  "instance '%s'",
                  v.id, in.id);
        return ec2_fail(r, err);
    }
    if (strcmp(v.state, "available") != 0) {
        error_set(&err, EINVAL, "IncorrectState",
                  "The volume '%s' is not 'available'.", v.id);
        return ec2_fail(r, err);
    }
    if ((strcmp(in.state, "running") != 0 &&
         strcmp(in.state, "stopped") != 0) ||
        *in.node == '\0') {
        error_set(&err, EINVAL, "IncorrectState",
                  "Instance '%s' is not 'running'.", in.id);
        return ec2_fail(r, err);
    }
    bool taken;
    if (device_taken(r->db, in.id, device, in.root, &taken, &err) < 0)
        return ec2_fail(r, err);
    if (taken) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Invalid value '%s' for unixDevice. Attachment point %s "
                  "is already in use",
                  shown, shown);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    int64_t now_ms = time_now_ms();
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)now_ms);
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    /* (the volume is checked again inside the transaction) */
    int changed = 0;
    if (clc_exec(r->db,
                 "UPDATE volumes SET state = 'in-use', updated = ? WHERE"
                 " id = ? AND state = 'available'",
                 "attaching the volume", &err, now, v.id, NULL) < 0)
        goto fail;
    changed = sqlite3_changes(db_handle(r->db));
    if (changed != 1) {
        error_set(&err, EINVAL, "IncorrectState",
                  "The volume '%s' is not 'available'.", v.id);
        goto fail;
    }
    if (clc_exec(r->db,
                 "INSERT INTO attachments (volume_id, instance_id, device,"
                 " state, node, attach_time, boot) VALUES (?1,?2,?3,"
                 "'attaching',?4,?5, EXISTS (SELECT 1 FROM instances i WHERE"
                 " i.id = ?2 AND i.root_device_type = 'ebs' AND"
                 " i.root_device_name = ?3))",
                 "attaching the volume", &err, v.id, in.id, device, in.node,
                 now, NULL) < 0 ||
        db_commit(r->db, &err) < 0)
        goto fail;
    log_info("account %lld: attaching %s to %s as %s", (long long)r->who.id,
             v.id, in.id, device);
    clc_ebs_attach_now(r->clc, r->db, v.id);
    struct xml_writer *w = ec2_reply_start(r, "AttachVolume");
    write_attachment(w, v.id, in.id, device, "attaching", now_ms, false);
    ec2_reply_finish(r, w);
    clc_ebs_kick(r->clc);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}

void ec2_detach_volume(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct volume_row v;
    bool force;
    if (clc_volume_get(r->db, r->who.id, ec2_param(r, "VolumeId"), &v, &err) <
            0 ||
        ec2_param_bool(r, "Force", false, &force, &err) < 0)
        return ec2_fail(r, err);
    const char *iid = ec2_param(r, "InstanceId");
    const char *device = ec2_param(r, "Device");
    if (*v.instance_id == '\0') {
        error_set(&err, EINVAL, "IncorrectState",
                  "Volume '%s' is in the '%s' state.", v.id, v.state);
        return ec2_fail(r, err);
    }
    if ((iid && strcmp(iid, v.instance_id) != 0) ||
        (device && strcmp(device, v.device) != 0)) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", iid ? iid : device);
        error_set(&err, ENOENT, "InvalidAttachment.NotFound",
                  "Attachment of volume '%s' to '%s' not found.", v.id, shown);
        return ec2_fail(r, err);
    }
    /* The root of an instance that runs (or will): EC2's words. */
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT i.state FROM attachments a JOIN"
                               " instances i ON i.id = a.instance_id WHERE"
                               " a.volume_id = ? AND a.boot = 1",
                               &err);
    if (st == NULL)
        return ec2_fail(r, err);
    sqlite3_bind_text(st, 1, v.id, -1, SQLITE_STATIC);
    char istate[16] = "";
    if (sqlite3_step(st) == SQLITE_ROW)
        clc_col(istate, sizeof(istate), st, 0);
    db_stmt_done(st);
    if (*istate && strcmp(istate, "stopped") != 0 &&
        strcmp(istate, "terminated") != 0) {
        error_set(&err, EINVAL, "IncorrectState",
                  "Unable to detach root volume '%s' from instance '%s'", v.id,
                  v.instance_id);
        return ec2_fail(r, err);
    }
    if (strcmp(v.attach_state, "detaching") == 0 && !force) {
        error_set(&err, EINVAL, "IncorrectState",
                  "Volume '%s' is already detaching.", v.id);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    if (clc_exec(r->db,
                 "UPDATE attachments SET state = 'detaching', force = ?"
                 " WHERE volume_id = ?",
                 "detaching the volume", &err, force ? CLC_INT "1" : CLC_INT "0", v.id,
                 NULL) < 0)
        return ec2_fail(r, err);
    log_info("account %lld: detaching %s from %s%s", (long long)r->who.id, v.id,
             v.instance_id, force ? " (forced)" : "");
    struct xml_writer *w = ec2_reply_start(r, "DetachVolume");
    write_attachment(w, v.id, v.instance_id, v.device, "detaching",
                     v.attach_time, v.delete_on_termination);
    ec2_reply_finish(r, w);
    clc_ebs_kick(r->clc);
}

int ec2_write_instance_volumes(struct ec2_req *r, struct xml_writer *w,
                               const char *instance_id,
                               struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT volume_id, device, state, attach_time,"
                               " delete_on_termination FROM attachments"
                               " WHERE instance_id = ? ORDER BY boot DESC,"
                               " attach_time, device",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance_id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char t[25];
        xml_start(w, "item");
        xml_text_element(w, "deviceName",
                         (const char *)sqlite3_column_text(st, 1));
        xml_start(w, "ebs");
        xml_text_element(w, "volumeId",
                         (const char *)sqlite3_column_text(st, 0));
        xml_text_element(w, "status", (const char *)sqlite3_column_text(st, 2));
        xml_text_element(w, "attachTime",
                         ec2_time(sqlite3_column_int64(st, 3), t));
        xml_bool_element(w, "deleteOnTermination",
                         sqlite3_column_int(st, 4) != 0);
        xml_end(w);
        xml_end(w);
    }
    db_stmt_done(st);
    return 0;
}

int clc_ebs_modify_instance_bdm(struct ec2_req *r, const char *instance_id,
                                struct koala_error **err)
{
    if (db_begin(r->db, err) < 0)
        return -1;
    for (int i = 1; i <= EC2_MAX_MEMBERS; i++) {
        const char *dev = ec2_paramf(r, "BlockDeviceMapping.%d.DeviceName", i);
        if (dev == NULL)
            break;
        bool dot;
        char name[64];
        snprintf(name, sizeof(name),
                 "BlockDeviceMapping.%d.Ebs.DeleteOnTermination", i);
        if (ec2_param_bool(r, name, false, &dot, err) < 0)
            goto fail;
        const char *vol =
            ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.VolumeId", i);
        if (clc_exec(r->db,
                     "UPDATE attachments SET delete_on_termination = ? WHERE"
                     " instance_id = ? AND device = ? AND (?4 = '' OR"
                     " volume_id = ?4)",
                     "changing the mapping", err, dot ? CLC_INT "1" : CLC_INT "0",
                     instance_id, dev, vol ? vol : "", NULL) < 0)
            goto fail;
        if (sqlite3_changes(db_handle(r->db)) == 0) {
            char shown[80];
            snprintf(shown, sizeof(shown), "%s", dev);
            error_set(err, EINVAL, "InvalidInstanceAttributeValue",
                      "No device named %s is mapped on %s", shown, instance_id);
            goto fail;
        }
    }
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return 1;
    }
    return db_commit(r->db, err);
fail:
    db_rollback(r->db);
    return -1;
}

/* ---- what the clusters report ---- */

/* clc_attachment_done inside the caller's transaction. */
static int attachment_done_tx(struct db *db, const char *volume,
                              struct koala_error **err)
{
    /* The export goes (the SC is told by ebs_sync.c), the attachment
     * goes, the volume is available again, or deleted if it was to go
     * with its instance. */
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (clc_exec(db,
                 "INSERT INTO sc_drops (zone, kind, target, node) SELECT"
                 " v.zone, 'export', a.volume_id, a.node FROM attachments a"
                 " JOIN volumes v ON v.id = a.volume_id WHERE a.volume_id = ?"
                 " AND a.node != ''",
                 "recording the export to drop", err, volume, NULL) < 0 ||
        clc_exec(db,
                 "UPDATE volumes SET updated = ?, state = CASE WHEN"
                 " (SELECT delete_on_termination FROM attachments WHERE"
                 " volume_id = ?2) = 1 AND (SELECT state FROM instances"
                 " WHERE id = (SELECT instance_id FROM attachments WHERE"
                 " volume_id = ?2)) = 'terminated' THEN 'deleting' WHEN"
                 " state IN ('creating', 'error') THEN state ELSE"
                 " 'available' END WHERE id = ?2",
                 "freeing the volume", err, now, volume, NULL) < 0 ||
        clc_exec(db, "DELETE FROM attachments WHERE volume_id = ?",
                 "dropping the attachment", err, volume, NULL) < 0)
        return -1;
    log_info("%s: detached", volume);
    return 0;
}

int clc_attachment_done(struct db *db, const char *volume,
                        struct koala_error **err)
{
    if (db_begin(db, err) < 0)
        return -1;
    if (attachment_done_tx(db, volume, err) < 0 || db_commit(db, err) < 0) {
        db_rollback(db);
        return -1;
    }
    return 0;
}

/* (inside clc_apply_instance_states' transaction) */
int clc_ebs_apply_instance(struct clc *clc, struct db *db, const char *iid,
                           const char *state, const struct xml_node *inst,
                           struct koala_error **err)
{
    (void)clc;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT volume_id, state FROM attachments"
                               " WHERE instance_id = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, iid, -1, SQLITE_STATIC);
    struct att {
        char vol[32], state[16];
    } *v = NULL;
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct att *nv = realloc(v, (n + 1) * sizeof(*v));
        if (nv == NULL)
            break;
        v = nv;
        clc_col(v[n].vol, sizeof(v[n].vol), st, 0);
        clc_col(v[n].state, sizeof(v[n].state), st, 1);
        n++;
    }
    db_stmt_done(st);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* What the node says of this volume ("" when it does not list
         * it). */
        char reported[16] = "";
        for (const struct xml_node *x = xml_next_child(inst, NULL, "volume"); x;
             x = xml_next_child(inst, x, "volume")) {
            _cleanup_free_ char *vid = xml_child_text(x, "volumeId");
            _cleanup_free_ char *vs = xml_child_text(x, "state");
            if (vid && vs && strcmp(str_trim(vid), v[i].vol) == 0)
                snprintf(reported, sizeof(reported), "%s", str_trim(vs));
        }
        bool over = strcmp(state, "terminated") == 0;
        if (strcmp(v[i].state, "attaching") == 0 &&
            strcmp(reported, "attached") == 0)
            rc = clc_exec(db,
                          "UPDATE attachments SET state = 'attached' WHERE"
                          " volume_id = ? AND state = 'attaching'",
                          "recording the attachment", err, v[i].vol, NULL);
        else if (over ||
                 (strcmp(v[i].state, "detaching") == 0 &&
                  (strcmp(reported, "detached") == 0 || *reported == '\0')))
            rc = attachment_done_tx(db, v[i].vol, err);
    }
    free(v);
    return rc;
}
