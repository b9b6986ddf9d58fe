/* ebs_images.c: EBS-backed images and instances (docs/storage.md,
 * "EBS-backed images and instances"): the block device mappings of
 * RegisterImage, RunInstances and CreateImage; the volumes RunInstances
 * makes for each instance; the volumes a launch carries to its cluster;
 * CreateImage (with its stop, snapshots and start); and the round that
 * makes a pending image available once its snapshots are completed.
 *
 * DESIGN: everything is rows written in the request's transaction.  A
 * launch's volumes are `creating` with an attachment `attaching` and no
 * node; ebs_sync.c creates them on the SC and, once the cluster has
 * placed the instance, exports each to its node and plugs it through the
 * CC, which is how the export of the boot volume reaches the NC that
 * waits for it.  An image is `pending` until its snapshots are completed.
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

void clc_bdms_free(struct clc_bdms *b)
{
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

static struct clc_bdm *bdm_find(struct clc_bdms *b, const char *device)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i].device, device) == 0)
            return &b->v[i];
    return NULL;
}

/* A root device name: /dev/ and a disk name (sda1, xvda, vda ...). */
static bool root_name_valid(const char *d)
{
    if (!str_has_prefix(d, "/dev/") || strlen(d) > 31)
        return false;
    const char *p = d + 5;
    size_t letters = 0;
    while (*p >= 'a' && *p <= 'z')
        p++, letters++;
    while (*p >= '0' && *p <= '9')
        p++;
    return letters >= 2 && *p == '\0';
}

/* EC2's error for a mapping it cannot take (user strings cut at 64). */
#define bad_mapping(err, ...)                                                  \
    error_set(err, EINVAL, "InvalidBlockDeviceMapping", __VA_ARGS__)

int clc_bdms_parse(struct ec2_req *r, const char *root, struct clc_bdms *out,
                   struct koala_error **err)
{
    memset(out, 0, sizeof(*out));
    for (int i = 1; i <= EC2_MAX_MEMBERS; i++) {
        const char *dev = ec2_paramf(r, "BlockDeviceMapping.%d.DeviceName", i);
        if (dev == NULL) {
            if (ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.SnapshotId", i) ||
                ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.VolumeSize", i) ||
                ec2_paramf(r, "BlockDeviceMapping.%d.VirtualName", i))
                goto missing;
            break;
        }
        if (out->n == CLC_MAX_BDMS) {
            error_set(err, EINVAL, "InvalidBlockDeviceMapping",
                      "At most %d block device mappings are allowed",
                      CLC_MAX_BDMS);
            goto fail;
        }
        if (!(root && strcmp(dev, root) == 0) && !clc_device_name_valid(dev) &&
            !root_name_valid(dev)) {
            bad_mapping(err, "Invalid device name %.64s", dev);
            goto fail;
        }
        if (bdm_find(out, dev)) {
            bad_mapping(err,
                        "The device '%.64s' is used in more than one "
                        "block-device mapping",
                        dev);
            goto fail;
        }
        struct clc_bdm *nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
        if (nv == NULL) {
            error_set(err, ENOMEM, NULL, "out of memory");
            goto fail;
        }
        out->v = nv;
        struct clc_bdm *b = &out->v[out->n++];
        memset(b, 0, sizeof(*b));
        snprintf(b->device, sizeof(b->device), "%s", dev);
        char name[80];
        const char *vn = ec2_paramf(r, "BlockDeviceMapping.%d.VirtualName", i);
        const char *nodev = ec2_paramf(r, "BlockDeviceMapping.%d.NoDevice", i);
        const char *snap =
            ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.SnapshotId", i);
        const char *type =
            ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.VolumeType", i);
        bool ebs = false;
        static const char *const ebs_fields[] = {
            "SnapshotId", "VolumeSize", "VolumeType", "Iops",
            "Throughput", "Encrypted",  "KmsKeyId",   "DeleteOnTermination"};
        for (size_t k = 0; k < ARRAY_SIZE(ebs_fields); k++)
            ebs |= ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.%s", i,
                              ebs_fields[k]) != NULL;
        b->no_device = nodev != NULL;
        if ((int)b->no_device + (vn != NULL) + ebs == 0) {
            bad_mapping(err,
                        "The mapping of %.64s gives none of Ebs, "
                        "VirtualName and NoDevice",
                        dev);
            goto fail;
        }
        if ((int)b->no_device + (vn != NULL) + ebs > 1) {
            bad_mapping(err,
                        "The mapping of %.64s gives more than one of Ebs, "
                        "VirtualName and NoDevice",
                        dev);
            goto fail;
        }
        if (vn) {
            if (!str_has_prefix(vn, "ephemeral") || strlen(vn) > 11 ||
                strspn(vn + 9, "0123456789") != strlen(vn + 9) ||
                vn[9] == '\0') {
                bad_mapping(err, "Invalid virtual name %.64s for %.64s", vn,
                            dev);
                goto fail;
            }
            snprintf(b->virtual_name, sizeof(b->virtual_name), "%s", vn);
        }
        if (!ebs)
            continue;
        b->ebs = true;
        long long size = 0, iops = 0, tput = 0;
        bool enc = false;
        snprintf(name, sizeof(name), "BlockDeviceMapping.%d.Ebs.VolumeSize", i);
        if (ec2_param_int(r, name, 0, 1, 16384, &size, err) < 0)
            goto fail;
        snprintf(name, sizeof(name), "BlockDeviceMapping.%d.Ebs.Iops", i);
        if (ec2_param_int(r, name, 0, 0, 1LL << 30, &iops, err) < 0)
            goto fail;
        snprintf(name, sizeof(name), "BlockDeviceMapping.%d.Ebs.Throughput", i);
        if (ec2_param_int(r, name, 0, 0, 1LL << 30, &tput, err) < 0)
            goto fail;
        snprintf(name, sizeof(name), "BlockDeviceMapping.%d.Ebs.Encrypted", i);
        if (ec2_param_bool(r, name, false, &enc, err) < 0)
            goto fail;
        snprintf(name, sizeof(name),
                 "BlockDeviceMapping.%d.Ebs.DeleteOnTermination", i);
        b->dot_given = ec2_param(r, name) != NULL;
        if (ec2_param_bool(r, name, true, &b->dot, err) < 0)
            goto fail;
        if (enc || ec2_paramf(r, "BlockDeviceMapping.%d.Ebs.KmsKeyId", i)) {
            error_set(err, EINVAL, "UnsupportedOperation",
                      "Encrypted volumes are not supported by this cloud "
                      "yet: leave Encrypted false and KmsKeyId unset");
            goto fail;
        }
        if (snap) {
            if (strlen(snap) >= sizeof(b->snapshot_id)) {
                error_set(err, ENOENT, "InvalidSnapshot.NotFound",
                          "The snapshot does not exist.");
                goto fail;
            }
            snprintf(b->snapshot_id, sizeof(b->snapshot_id), "%s", snap);
        }
        b->size_gb = size;
        if (type && strlen(type) >= sizeof(b->type)) {
            error_set(err, EINVAL, "InvalidParameterValue",
                      "Invalid volume type");
            goto fail;
        }
        snprintf(b->type, sizeof(b->type), "%s", type ? type : "");
        b->iops = iops;
        b->throughput = tput;
    }
    return 0;
missing:
    error_set(err, EINVAL, "MissingParameter",
              "Each block device mapping needs a DeviceName");
fail:
    clc_bdms_free(out);
    return -1;
}

/* A mapping's snapshot (if any) and size, checked: the snapshot one the
 * viewer may use (its zone and SC data into b), the size no smaller than
 * it, the type's bounds.  A mapping without a snapshot needs a size. */
static int check_ebs(struct db *db, int64_t viewer, struct clc_bdm *b,
                     struct koala_error **err)
{
    int64_t snap_gb = 0;
    if (*b->snapshot_id &&
        clc_snapshot_usable(db, viewer, b->snapshot_id, b->sc_snap,
                            b->snap_zone, &snap_gb, err) < 0)
        return -1;
    if (*b->snapshot_id && b->size_gb == 0)
        b->size_gb = snap_gb;
    if (b->size_gb == 0)
        return bad_mapping(err,
                           "The mapping of %.64s needs a VolumeSize or a "
                           "SnapshotId",
                           b->device);
    if (b->size_gb < snap_gb) {
        char msg[40];
        snprintf(msg, sizeof(msg), "%lldGiB", (long long)snap_gb);
        return bad_mapping(err,
                           "Volume of %.64s is smaller than its "
                           "snapshot, expect size >= %.64s",
                           b->device, msg);
    }
    if (*b->type == '\0')
        snprintf(b->type, sizeof(b->type), "gp2");
    return clc_volume_check_spec(b->type, b->size_gb, b->iops, b->throughput,
                                 err);
}

/* ---- images ---- */

int clc_image_bdms_store(struct ec2_req *r, const char *image,
                         const struct clc_bdms *b, struct koala_error **err)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct clc_bdm *x = &b->v[i];
        char gb[24], io[24], tp[24], pos[24];
        snprintf(gb, sizeof(gb), CLC_INT "%lld", (long long)x->size_gb);
        snprintf(io, sizeof(io), CLC_INT "%lld", (long long)x->iops);
        snprintf(tp, sizeof(tp), CLC_INT "%lld", (long long)x->throughput);
        snprintf(pos, sizeof(pos), CLC_INT "%zu", i);
        if (clc_exec(r->db,
                     "INSERT INTO image_block_devices (image_id, device,"
                     " snapshot_id, volume_size_gb, volume_type,"
                     " delete_on_termination, virtual_name, no_device, iops,"
                     " throughput, position) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     "recording the block device mapping", err, image,
                     x->device, x->snapshot_id, gb, *x->type ? x->type : "gp2",
                     x->dot ? CLC_INT "1" : CLC_INT "0", x->virtual_name,
                     x->no_device ? CLC_INT "1" : CLC_INT "0", io, tp, pos,
                     NULL) < 0)
            return -1;
    }
    return 0;
}

int clc_image_bdms_load(struct db *db, const char *image, struct clc_bdms *out,
                        struct koala_error **err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT device, snapshot_id, volume_size_gb,"
                               " volume_type, delete_on_termination,"
                               " virtual_name, no_device, iops, throughput"
                               " FROM image_block_devices WHERE image_id = ?"
                               " AND position >= 0 ORDER BY position, device",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct clc_bdm *nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
        if (nv == NULL) {
            rc = error_set(err, ENOMEM, NULL, "out of memory");
            break;
        }
        out->v = nv;
        struct clc_bdm *b = &out->v[out->n++];
        memset(b, 0, sizeof(*b));
        clc_col(b->device, sizeof(b->device), st, 0);
        clc_col(b->snapshot_id, sizeof(b->snapshot_id), st, 1);
        b->size_gb = sqlite3_column_int64(st, 2);
        clc_col(b->type, sizeof(b->type), st, 3);
        b->dot = sqlite3_column_int(st, 4) != 0;
        clc_col(b->virtual_name, sizeof(b->virtual_name), st, 5);
        b->no_device = sqlite3_column_int(st, 6) != 0;
        b->iops = sqlite3_column_int64(st, 7);
        b->throughput = sqlite3_column_int64(st, 8);
        b->ebs = !b->no_device && *b->virtual_name == '\0';
    }
    db_stmt_done(st);
    if (rc < 0)
        clc_bdms_free(out);
    return rc;
}

void clc_write_image_bdms(struct xml_writer *w, const struct clc_bdms *b)
{
    xml_start(w, "blockDeviceMapping");
    for (size_t i = 0; i < b->n; i++) {
        const struct clc_bdm *x = &b->v[i];
        xml_start(w, "item");
        xml_text_element(w, "deviceName", x->device);
        if (*x->virtual_name)
            xml_text_element(w, "virtualName", x->virtual_name);
        if (x->no_device)
            xml_text_element(w, "noDevice", "");
        if (x->ebs) {
            xml_start(w, "ebs");
            if (*x->snapshot_id)
                xml_text_element(w, "snapshotId", x->snapshot_id);
            xml_text_elementf(w, "volumeSize", "%lld", (long long)x->size_gb);
            xml_bool_element(w, "deleteOnTermination", x->dot);
            xml_text_element(w, "volumeType", x->type);
            if (x->iops)
                xml_text_elementf(w, "iops", "%lld", (long long)x->iops);
            if (x->throughput)
                xml_text_elementf(w, "throughput", "%lld",
                                  (long long)x->throughput);
            xml_bool_element(w, "encrypted", false);
            xml_end(w);
        }
        xml_end(w);
    }
    xml_end(w);
}

bool clc_image_bdm_filter(const struct clc_bdms *b, const struct ec2_filter *f)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct clc_bdm *x = &b->v[i];
        char num[24];
        const char *v = NULL;
        if (strcmp(f->name, "block-device-mapping.device-name") == 0)
            v = x->device;
        else if (!x->ebs)
            continue;
        else if (strcmp(f->name, "block-device-mapping.snapshot-id") == 0)
            v = x->snapshot_id;
        else if (strcmp(f->name, "block-device-mapping.volume-type") == 0)
            v = x->type;
        else if (strcmp(f->name, "block-device-mapping.volume-size") == 0) {
            snprintf(num, sizeof(num), "%lld", (long long)x->size_gb);
            v = num;
        } else if (strcmp(f->name,
                          "block-device-mapping.delete-on-termination") == 0)
            v = x->dot ? "true" : "false";
        else if (strcmp(f->name, "block-device-mapping.encrypted") == 0)
            v = "false";
        if (v && ec2_filter_match(f, v))
            return true;
    }
    return false;
}

/* The image's state from its snapshots: available when every one is
 * completed, failed when one is in error or gone, else pending.  Inside
 * the caller's transaction, or alone. */
static int settle_image(struct db *db, const char *image,
                        struct koala_error **err)
{
    /* (a snapshot row that is gone counts as failed: a deleted snapshot
     * cannot be under an image that is not deregistered, but a pending
     * one may end in error) */
    return clc_exec(
        db,
        "UPDATE images SET state = CASE"
        " WHEN EXISTS (SELECT 1 FROM image_block_devices b LEFT JOIN"
        "  snapshots s ON s.id = b.snapshot_id WHERE b.image_id = ?1 AND"
        "  b.snapshot_id != '' AND (s.id IS NULL OR s.state = 'error'))"
        "  THEN 'failed'"
        " WHEN reboot_phase = 'stopping' OR EXISTS (SELECT 1 FROM"
        "  image_block_devices b JOIN snapshots s ON s.id = b.snapshot_id"
        "  WHERE b.image_id = ?1 AND s.state != 'completed') THEN 'pending'"
        " ELSE 'available' END,"
        " state_reason = CASE WHEN EXISTS (SELECT 1 FROM image_block_devices b"
        "  LEFT JOIN snapshots s ON s.id = b.snapshot_id WHERE b.image_id = ?1"
        "  AND b.snapshot_id != '' AND (s.id IS NULL OR s.state = 'error'))"
        "  THEN 'A snapshot of the image failed' ELSE state_reason END"
        " WHERE id = ?1 AND state = 'pending'",
        "settling the image", err, image, NULL);
}

/* A new EBS-backed image row, `pending` (in the caller's transaction):
 * its id into id; reboot: CreateImage's instance to stop first, or "". */
static int insert_image(struct ec2_req *r, char id[32], const char *name,
                        const char *desc, const char *root, const char *reboot,
                        struct koala_error **err)
{
    char owner[24], now[24];
    if (id_resource(id, 32, "ami") < 0)
        return error_set_errno(err, "getrandom");
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (clc_exec(r->db,
                 "INSERT INTO images(id, owner, kind, name, description,"
                 " location, root_device_name, root_device_type, state,"
                 " created, reboot_instance, reboot_phase) VALUES(?,?,"
                 "'machine',?,?,'',?,'ebs','pending',?,?,?)",
                 "registering image", err, id, owner, name, desc ? desc : "",
                 root, now, reboot, *reboot ? "stopping" : "", NULL) == 0)
        return 0;
    if (*err && (*err)->errnum == EEXIST) {
        error_clear(err);
        error_set(err, EEXIST, "InvalidAMIName.Duplicate",
                  "AMI name %s is already in use by AMI", name);
    }
    return -1;
}

void clc_register_ebs_image(struct ec2_req *r, const char *name,
                            const char *desc, const char *root)
{
    struct koala_error *err = NULL;
    static const char *const tag_types[] = {"image", NULL};
    struct clc_bdms b = {0};
    if (root == NULL) {
        error_set(&err, EINVAL, "MissingParameter",
                  "An image whose root is a snapshot needs RootDeviceName");
        return ec2_fail(r, err);
    }
    if (!root_name_valid(root)) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", root);
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Invalid root device name %s", shown);
        return ec2_fail(r, err);
    }
    if (ec2_param(r, "KernelId") || ec2_param(r, "RamdiskId")) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "An image whose root is a snapshot boots from its own "
                  "boot loader: it takes no KernelId or RamdiskId");
        return ec2_fail(r, err);
    }
    if (ec2_check_tag_specs(r, tag_types, &err) < 0 ||
        clc_bdms_parse(r, root, &b, &err) < 0)
        return ec2_fail(r, err);
    struct clc_bdm *rb = bdm_find(&b, root);
    if (rb == NULL || !rb->ebs || *rb->snapshot_id == '\0') {
        bad_mapping(&err,
                    "The root device %.64s must be mapped to an EBS "
                    "snapshot",
                    root);
        goto out;
    }
    for (size_t i = 0; i < b.n; i++)
        if (b.v[i].ebs && check_ebs(r->db, r->who.id, &b.v[i], &err) < 0)
            goto out;
    if (ec2_dry_run(r))
        goto out;
    char id[32];
    if (db_begin(r->db, &err) < 0)
        goto out;
    if (insert_image(r, id, name, desc, root, "", &err) < 0 ||
        clc_image_bdms_store(r, id, &b, &err) < 0 ||
        ec2_apply_tag_specs(r, "image", id, &err) < 0 ||
        settle_image(r->db, id, &err) < 0) {
        db_rollback(r->db);
        goto out;
    }
    if (db_commit(r->db, &err) < 0)
        goto out;
    log_info("account %lld: image %s from %s", (long long)r->who.id, id,
             rb->snapshot_id);
    struct xml_writer *w = ec2_reply_start(r, "RegisterImage");
    xml_text_element(w, "imageId", id);
    ec2_reply_finish(r, w);
out:
    clc_bdms_free(&b);
    if (err)
        ec2_fail(r, err);
}

/* ---- RunInstances ---- */

int clc_run_bdms_plan(struct ec2_req *r, const struct clc_image_ref *image,
                      struct clc_bdms *plan, struct koala_error **err)
{
    struct clc_bdms req = {0};
    bool ebs_root = strcmp(image->root_device_type, "ebs") == 0;
    memset(plan, 0, sizeof(*plan));
    if (clc_bdms_parse(r, image->root_device_name, &req, err) < 0)
        return -1;
    if (ebs_root && clc_image_bdms_load(r->db, image->id, plan, err) < 0)
        goto fail;
    /* The image's EBS devices: their snapshots are the image owner's to
     * lend (launching an image lets its volumes be made). */
    for (size_t i = 0; i < plan->n; i++) {
        struct clc_bdm *b = &plan->v[i];
        int64_t gb = 0;
        if (b->ebs && *b->snapshot_id &&
            clc_snapshot_usable(r->db, image->owner, b->snapshot_id, b->sc_snap,
                                b->snap_zone, &gb, err) < 0)
            goto fail;
        b->boot = strcmp(b->device, image->root_device_name) == 0;
    }
    for (size_t i = 0; i < req.n; i++) {
        struct clc_bdm *q = &req.v[i];
        struct clc_bdm *b = bdm_find(plan, q->device);
        bool is_root = strcmp(q->device, image->root_device_name) == 0;
        if (is_root && !ebs_root) {
            bad_mapping(err,
                        "The root device %.64s of an instance-store "
                        "image cannot be mapped",
                        q->device);
            goto fail;
        }
        if (is_root && !q->ebs) {
            bad_mapping(err,
                        "The root device %.64s must stay an EBS "
                        "volume",
                        q->device);
            goto fail;
        }
        if (b && b->ebs && q->ebs) {
            /* Over the image's: what the request says, the snapshot kept
             * (another one is not EC2's either). */
            if (*q->snapshot_id && strcmp(q->snapshot_id, b->snapshot_id)) {
                bad_mapping(err, "The snapshot of %.64s is the image's (%.64s)",
                            q->device, b->snapshot_id);
                goto fail;
            }
            if (q->dot_given)
                b->dot = q->dot;
            if (q->size_gb) {
                int64_t snap_gb = b->size_gb;
                if (q->size_gb < snap_gb) {
                    char msg[40];
                    snprintf(msg, sizeof(msg), "%lldGiB", (long long)snap_gb);
                    bad_mapping(err,
                                "Volume of %.64s is smaller than its "
                                "snapshot, expect size >= %.64s",
                                q->device, msg);
                    goto fail;
                }
                b->size_gb = q->size_gb;
            }
            if (*q->type)
                snprintf(b->type, sizeof(b->type), "%s", q->type);
            if (q->iops)
                b->iops = q->iops;
            if (q->throughput)
                b->throughput = q->throughput;
            if (clc_volume_check_spec(b->type, b->size_gb, b->iops,
                                      b->throughput, err) < 0)
                goto fail;
            continue;
        }
        if (q->ebs && check_ebs(r->db, r->who.id, q, err) < 0)
            goto fail;
        if (b) { /* NoDevice or VirtualName over an image's device */
            *b = *q;
            continue;
        }
        struct clc_bdm *nv = realloc(plan->v, (plan->n + 1) * sizeof(*nv));
        if (nv == NULL) {
            error_set(err, ENOMEM, NULL, "out of memory");
            goto fail;
        }
        plan->v = nv;
        plan->v[plan->n++] = *q;
    }
    /* Only the EBS devices make volumes. */
    size_t k = 0;
    for (size_t i = 0; i < plan->n; i++)
        if (plan->v[i].ebs)
            plan->v[k++] = plan->v[i];
    plan->n = k;
    clc_bdms_free(&req);
    return 0;
fail:
    clc_bdms_free(&req);
    clc_bdms_free(plan);
    return -1;
}

int clc_run_bdms_store(struct ec2_req *r, const struct clc_bdms *plan,
                       const char *instance, const char *zone,
                       struct koala_error **err)
{
    char owner[24], now[24];
    int64_t t = time_now_ms();
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)t);
    for (size_t i = 0; i < plan->n; i++) {
        const struct clc_bdm *b = &plan->v[i];
        char vol[32], gb[24], io[24], tp[24];
        if (id_resource(vol, sizeof(vol), "vol") < 0)
            return error_set(err, EIO, NULL, "cannot make a volume id");
        snprintf(gb, sizeof(gb), CLC_INT "%lld", (long long)b->size_gb);
        snprintf(io, sizeof(io), CLC_INT "%lld", (long long)b->iops);
        snprintf(tp, sizeof(tp), CLC_INT "%lld", (long long)b->throughput);
        /* the snapshot's SC data and its zone (any zone's), as
         * CreateVolume records them (volumes.c) */
        if (clc_exec(r->db,
                     "INSERT INTO volumes (id, owner, zone, size_gb,"
                     " snapshot_id, sc_snapshot, snapshot_zone, type, iops,"
                     " throughput, state, created, updated) VALUES"
                     " (?,?,?,?,?,?,?,?,?,?,'creating',?,?)",
                     "recording the volume", err, vol, owner, zone, gb,
                     b->snapshot_id, b->snapshot_id[0] ? b->sc_snap : "",
                     b->snapshot_id[0] ? b->snap_zone : "", b->type, io, tp,
                     now, now, NULL) < 0 ||
            (b->snapshot_id[0] &&
             clc_snapshot_still_there(r->db, b->snapshot_id, err) < 0) ||
            clc_exec(r->db,
                     "INSERT INTO attachments (volume_id, instance_id, device,"
                     " state, node, delete_on_termination, boot, attach_time)"
                     " VALUES (?,?,?,'attaching','',?,?,?)",
                     "recording the attachment", err, vol, instance, b->device,
                     b->dot ? CLC_INT "1" : CLC_INT "0",
                     b->boot ? CLC_INT "1" : CLC_INT "0", now, NULL) < 0 ||
            ec2_apply_tag_specs(r, "volume", vol, err) < 0)
            return -1;
        log_info("%s: volume %s (%lld GiB%s%s) as %s%s", instance, vol,
                 (long long)b->size_gb, *b->snapshot_id ? " from " : "",
                 b->snapshot_id, b->device, b->boot ? ", its root" : "");
    }
    return 0;
}

int clc_write_launch_volumes(struct db *db, struct xml_writer *w,
                             const char *instance, struct koala_error **err)
{
    /* (a launch's volumes: no export yet, the rounds bring it) */
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT volume_id, device, boot FROM"
                               " attachments WHERE instance_id = ? AND state"
                               " = 'attaching' ORDER BY boot DESC, device",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        xml_start(w, "volume");
        xml_text_element(w, "volumeId",
                         (const char *)sqlite3_column_text(st, 0));
        xml_text_element(w, "device", (const char *)sqlite3_column_text(st, 1));
        if (sqlite3_column_int(st, 2))
            xml_text_element(w, "boot", "true");
        xml_end(w);
    }
    db_stmt_done(st);
    return 0;
}

/* ---- CreateImage ---- */

struct image_vol {
    char volume[32];
    char device[64];
    bool dot;
};

/* The attached volumes of an instance, in the order of its mapping. */
static int instance_vols(struct db *db, const char *instance,
                         struct image_vol **out, size_t *n,
                         struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT volume_id, device,"
                               " delete_on_termination FROM attachments"
                               " WHERE instance_id = ? AND state IN"
                               " ('attaching', 'attached') ORDER BY boot"
                               " DESC, device",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
    int rc = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct image_vol *nv = realloc(*out, (*n + 1) * sizeof(*nv));
        if (nv == NULL) {
            rc = error_set(err, ENOMEM, NULL, "out of memory");
            break;
        }
        *out = nv;
        struct image_vol *v = &nv[(*n)++];
        clc_col(v->volume, sizeof(v->volume), st, 0);
        clc_col(v->device, sizeof(v->device), st, 1);
        v->dot = sqlite3_column_int(st, 2) != 0;
    }
    db_stmt_done(st);
    return rc;
}

/* CreateImage's TagSpecification.N for `snapshot`, kept for the
 * snapshots (made now, or once the instance stopped). */
static int keep_tag(struct ec2_req *r, void *image, const char *key,
                    const char *value, struct koala_error **err)
{
    return clc_exec(r->db,
                    "INSERT OR REPLACE INTO image_snapshot_tags (image_id,"
                    " key, value) VALUES (?,?,?)",
                    "recording the tags", err, (const char *)image, key,
                    value ? value : "", NULL);
}

static int snapshot_tags_keep(struct ec2_req *r, const char *image,
                              struct koala_error **err)
{
    return ec2_tag_specs_each(r, "snapshot", keep_tag, (void *)image, err);
}

/* Snapshots of the instance's volumes under image (in the caller's
 * transaction): a snapshot row `pending` per volume (the rounds ask its
 * SC) and the image's mapping naming it.  CreateImage's request left its
 * own rows there first (request_overrides): a device it mapped to nothing
 * is left out, one it gave a DeleteOnTermination keeps it; those rows
 * go then. */
static int snapshot_instance(struct db *db, int64_t owner, const char *image,
                             const char *instance, struct koala_error **err)
{
    struct image_vol *v = NULL;
    size_t n = 0;
    if (instance_vols(db, instance, &v, &n, err) < 0)
        return -1;
    int rc = 0;
    char own[24], now[24], desc[128];
    snprintf(own, sizeof(own), CLC_INT "%lld", (long long)owner);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    snprintf(desc, sizeof(desc), "Created by CreateImage(%s) for %s", instance,
             image);
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT no_device FROM image_block_devices"
                               " WHERE image_id = ? AND device = ?",
                               err);
    if (st == NULL)
        rc = -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_text(st, 1, image, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, v[i].device, -1, SQLITE_STATIC);
        bool left_out =
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
        sqlite3_reset(st);
        if (left_out)
            continue;
        char snap[32], pos[24];
        if (id_resource(snap, sizeof(snap), "snap") < 0) {
            rc = error_set(err, EIO, NULL, "cannot make a snapshot id");
            break;
        }
        snprintf(pos, sizeof(pos), CLC_INT "%zu", i);
        rc = clc_exec(
            db,
            "INSERT INTO snapshots (id, owner, volume_id, volume_size_gb,"
            " zone, sc_id, state, description, start_time) SELECT ?1, ?2,"
            " v.id, v.size_gb, v.zone, ?1, 'pending', ?3, ?4 FROM volumes v"
            " WHERE v.id = ?5",
            "recording the snapshot", err, snap, own, desc, now, v[i].volume,
            NULL);
        if (rc == 0)
            rc = clc_exec(
                db,
                "INSERT INTO image_block_devices (image_id, device,"
                " snapshot_id, volume_size_gb, volume_type,"
                " delete_on_termination, iops, throughput, position) SELECT"
                " ?1, ?2, ?3, v.size_gb, v.type, ?4, v.iops, v.throughput, ?5"
                " FROM volumes v WHERE v.id = ?6 ON CONFLICT (image_id,"
                " device) DO UPDATE SET snapshot_id = excluded.snapshot_id,"
                " volume_size_gb = excluded.volume_size_gb, volume_type ="
                " excluded.volume_type, iops = excluded.iops, throughput ="
                " excluded.throughput, position = excluded.position",
                "recording the block device mapping", err, image, v[i].device,
                snap, v[i].dot ? CLC_INT "1" : CLC_INT "0", pos, v[i].volume,
                NULL);
        if (rc == 0)
            rc = clc_exec(db,
                          "INSERT OR IGNORE INTO tags (resource_id,"
                          " resource_type, owner, key, value) SELECT ?,"
                          " 'snapshot', ?, key, value FROM"
                          " image_snapshot_tags WHERE image_id = ?",
                          "tagging the snapshot", err, snap, own, image, NULL);
        if (rc == 0)
            log_info("%s: snapshot %s of %s (%s)", image, snap, v[i].volume,
                     v[i].device);
    }
    if (st)
        db_stmt_done(st);
    free(v);
    if (rc == 0)
        rc = clc_exec(db,
                      "DELETE FROM image_block_devices WHERE image_id = ? AND"
                      " position < 0",
                      "recording the block device mapping", err, image, NULL);
    if (rc == 0)
        rc = clc_exec(db, "DELETE FROM image_snapshot_tags WHERE image_id = ?",
                      "", err, image, NULL);
    return rc;
}

/* CreateImage's BlockDeviceMapping.N, as rows of the image that
 * snapshot_instance finds: NoDevice, or a DeleteOnTermination over the
 * volume's (in the caller's transaction).  Position -1 marks them: the
 * image's mapping (clc_image_bdms_load) leaves them out. */
static int request_overrides(struct db *db, const char *image,
                             const struct clc_bdms *req,
                             struct koala_error **err)
{
    for (size_t i = 0; i < req->n; i++) {
        const struct clc_bdm *b = &req->v[i];
        if (!b->no_device && !(b->ebs && b->dot_given))
            continue;
        if (clc_exec(db,
                     "INSERT INTO image_block_devices (image_id, device,"
                     " no_device, delete_on_termination, position) VALUES"
                     " (?,?,?,?,-1)",
                     "recording the block device mapping", err, image,
                     b->device, b->no_device ? CLC_INT "1" : CLC_INT "0",
                     b->dot ? CLC_INT "1" : CLC_INT "0", NULL) < 0)
            return -1;
    }
    return 0;
}

void ec2_create_image(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const tag_types[] = {"image", "snapshot", NULL};
    const char *iid = ec2_required(r, "InstanceId", &err);
    const char *name = iid ? ec2_required(r, "Name", &err) : NULL;
    const char *desc = ec2_param(r, "Description");
    bool no_reboot = false;
    struct clc_bdms req = {0};
    if (name == NULL ||
        ec2_param_bool(r, "NoReboot", false, &no_reboot, &err) < 0 ||
        ec2_check_tag_specs(r, tag_types, &err) < 0)
        goto out;
    if (clc_image_name_check(name, desc, &err) < 0)
        goto out;
    char state[16] = "", root_type[16] = "", root[32] = "";
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT state, root_device_type,"
                               " root_device_name FROM instances WHERE id = ?"
                               " AND owner = ?",
                               &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, iid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up instance", &err);
    if (rc == 0) {
        clc_col(state, sizeof(state), st, 0);
        clc_col(root_type, sizeof(root_type), st, 1);
        clc_col(root, sizeof(root), st, 2);
    }
    db_stmt_done(st);
    if (rc == 1) {
        char shown[40];
        snprintf(shown, sizeof(shown), "%s", iid);
        error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", shown);
    }
    if (rc != 0)
        goto out;
    if (strcmp(root_type, "ebs") != 0) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "The instance '%s' is backed by instance store: only an "
                  "EBS-backed instance can be imaged",
                  iid);
        goto out;
    }
    if (strcmp(state, "running") != 0 && strcmp(state, "stopped") != 0) {
        error_set(&err, EINVAL, "IncorrectInstanceState",
                  "The instance '%s' is not in the 'running' or 'stopped' "
                  "state (%s).",
                  iid, state);
        goto out;
    }
    /* The request's mapping: only NoDevice (leave a volume out) and
     * DeleteOnTermination are taken; new EBS devices are refused. */
    if (clc_bdms_parse(r, root, &req, &err) < 0)
        goto out;
    for (size_t i = 0; i < req.n; i++) {
        if (req.v[i].no_device && strcmp(req.v[i].device, root) == 0) {
            bad_mapping(&err, "The root device %.64s cannot be left out", root);
            goto out;
        } else if (req.v[i].ebs &&
                   (*req.v[i].snapshot_id || req.v[i].size_gb)) {
            bad_mapping(&err,
                        "CreateImage maps the instance's own "
                        "volumes: %.64s is not one of them",
                        req.v[i].device);
            goto out;
        }
    }
    if (ec2_dry_run(r))
        goto out;
    bool reboot = !no_reboot && strcmp(state, "running") == 0;
    char id[32], now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (db_begin(r->db, &err) < 0)
        goto out;
    if (insert_image(r, id, name, desc, root, reboot ? iid : "", &err) < 0 ||
        ec2_apply_tag_specs(r, "image", id, &err) < 0 ||
        snapshot_tags_keep(r, id, &err) < 0 ||
        request_overrides(r->db, id, &req, &err) < 0)
        goto rollback;
    if (reboot) {
        /* Stopped first: the snapshots are taken once it is (round). */
        if (clc_exec(r->db,
                     "UPDATE instances SET state = 'stopping', desired ="
                     " 'stopped', transition_reason = 'CreateImage',"
                     " updated = ? WHERE id = ? AND state = 'running'",
                     "stopping the instance", &err, now, iid, NULL) < 0)
            goto rollback;
    } else if (snapshot_instance(r->db, r->who.id, id, iid, &err) < 0) {
        goto rollback;
    }
    if (db_commit(r->db, &err) < 0)
        goto out;
    log_info("account %lld: image %s of %s%s", (long long)r->who.id, id, iid,
             reboot ? " (stopping it first)" : "");
    struct xml_writer *w = ec2_reply_start(r, "CreateImage");
    xml_text_element(w, "imageId", id);
    ec2_reply_finish(r, w);
    clc_resend_orders_kick(r->clc);
    clc_ebs_kick(r->clc);
    goto out;
rollback:
    db_rollback(r->db);
out:
    clc_bdms_free(&req);
    if (err)
        ec2_fail(r, err);
}

/* ---- the round ---- */

/* A CreateImage that stops its instance first: once stopped, the
 * snapshots, and the instance started again. */
static void reboot_step(struct clc *clc, struct db *db, const char *image,
                        const char *instance, int64_t owner)
{
    struct koala_error *err = NULL;
    char state[16] = "";
    sqlite3_stmt *st =
        db_stmt(db, "SELECT state FROM instances WHERE id = ?", &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        clc_col(state, sizeof(state), st, 0);
    db_stmt_done(st);
    bool gone = strcmp(state, "terminated") == 0 ||
                strcmp(state, "shutting-down") == 0 || *state == '\0';
    if (!gone && strcmp(state, "stopped") != 0)
        goto out; /* still stopping */
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (db_begin(db, &err) < 0)
        goto out;
    if (gone) {
        if (clc_exec(db,
                     "UPDATE images SET state = 'failed', state_reason ="
                     " 'The instance was terminated before its volumes were"
                     " snapshotted', reboot_phase = '' WHERE id = ?",
                     "failing the image", &err, image, NULL) < 0 ||
            clc_exec(db,
                     "DELETE FROM image_block_devices WHERE image_id = ? AND"
                     " position < 0",
                     "failing the image", &err, image, NULL) < 0)
            goto rollback;
    } else if (snapshot_instance(db, owner, image, instance, &err) < 0 ||
               clc_exec(db,
                        "UPDATE images SET reboot_phase = 'started' WHERE"
                        " id = ?",
                        "recording the image", &err, image, NULL) < 0 ||
               clc_exec(db,
                        "UPDATE instances SET state = 'pending', desired ="
                        " 'running', transition_reason = '', updated = ?"
                        " WHERE id = ? AND state = 'stopped'",
                        "starting the instance", &err, now, instance,
                        NULL) < 0) {
        goto rollback;
    }
    if (db_commit(db, &err) < 0)
        goto out;
    log_info("%s: %s stopped: snapshots taken, started again", image, instance);
    clc_resend_orders(clc, db);
    goto out;
rollback:
    db_rollback(db);
out:
    if (err) {
        log_warn("%s: %s", image, error_message(err));
        error_free(err);
    }
}

void clc_ebs_images_sync(struct clc *clc, struct db *db)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT id, reboot_instance, reboot_phase,"
                               " owner FROM images WHERE state = 'pending'",
                               &err);
    struct row {
        char id[32], instance[32], phase[16];
        int64_t owner;
    } *v = NULL;
    size_t n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct row *nv = realloc(v, (n + 1) * sizeof(*nv));
        if (nv == NULL)
            break;
        v = nv;
        clc_col(v[n].id, sizeof(v[n].id), st, 0);
        clc_col(v[n].instance, sizeof(v[n].instance), st, 1);
        clc_col(v[n].phase, sizeof(v[n].phase), st, 2);
        v[n].owner = sqlite3_column_int64(st, 3);
        n++;
    }
    if (st)
        db_stmt_done(st);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].phase, "stopping") == 0)
            reboot_step(clc, db, v[i].id, v[i].instance, v[i].owner);
        if (settle_image(db, v[i].id, &err) < 0) {
            log_warn("%s: %s", v[i].id, error_message(err));
            error_clear(&err);
        }
    }
    free(v);
    if (err) {
        log_error("images: %s", error_message(err));
        error_free(err);
    }
}
