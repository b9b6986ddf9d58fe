/* snapshots.c: EBS snapshots on the EC2 API: CreateSnapshot,
 * CreateSnapshots, DescribeSnapshots, DeleteSnapshot, CopySnapshot and
 * (docs/storage.md).
 *
 * A snapshot's data is an SC snapshot in Walrus (sc_id: its own id, or
 * the source's for a copy: copies within the region share the data, which
 * goes when the last snapshot naming it is deleted).  The SC is asked in
 * the request, so the snapshot is the volume as it was when CreateSnapshot
 * answered; an SC that is away takes it when the poller reaches it.
 * createVolumePermission grants other accounts (or `all`) the use of a
 * snapshot; they see it in DescribeSnapshots and may create volumes from
 * it, nothing else (snap_perms.c).
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

struct snap_row {
    char id[32];
    int64_t owner;
    char owner_number[13];
    char volume_id[32];
    int64_t volume_size_gb;
    char zone[64];
    char sc_id[32];
    char state[16];
    int progress;
    char description[256];
    int64_t data_size;
    char message[256];
    int64_t start_time;
    bool public_;
};

#define SNAP_COLS                                                              \
    "s.id, s.owner, (SELECT number FROM accounts WHERE id = s.owner),"         \
    " s.volume_id, s.volume_size_gb, s.zone, s.sc_id, s.state, s.progress,"    \
    " s.description, s.data_size, s.message, s.start_time, EXISTS (SELECT 1"   \
    " FROM snapshot_perms p WHERE p.snapshot_id = s.id AND p.grantee ="        \
    " 'all')"

static void read_snap(sqlite3_stmt *st, struct snap_row *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->id, sizeof(x->id), st, 0);
    x->owner = sqlite3_column_int64(st, 1);
    clc_col(x->owner_number, sizeof(x->owner_number), st, 2);
    clc_col(x->volume_id, sizeof(x->volume_id), st, 3);
    x->volume_size_gb = sqlite3_column_int64(st, 4);
    clc_col(x->zone, sizeof(x->zone), st, 5);
    clc_col(x->sc_id, sizeof(x->sc_id), st, 6);
    clc_col(x->state, sizeof(x->state), st, 7);
    x->progress = sqlite3_column_int(st, 8);
    clc_col(x->description, sizeof(x->description), st, 9);
    x->data_size = sqlite3_column_int64(st, 10);
    clc_col(x->message, sizeof(x->message), st, 11);
    x->start_time = sqlite3_column_int64(st, 12);
    x->public_ = sqlite3_column_int(st, 13) != 0;
}

/* Snapshots the viewer may see: its own, and those shared with it or
 * with all. */
#define VISIBLE                                                                \
    " (s.owner = ?1 OR EXISTS (SELECT 1 FROM snapshot_perms p WHERE"           \
    " p.snapshot_id = s.id AND (p.grantee = 'all' OR p.grantee ="              \
    " (SELECT number FROM accounts WHERE id = ?1))))"

static int not_found(const char *id, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", id ? id : "");
    if (id == NULL || !id_resource_valid(id, "snap-"))
        return error_set(err, EINVAL, "InvalidSnapshotID.Malformed",
                         "Invalid id: \"%s\" (expecting \"snap-...\")", shown);
    return error_set(err, ENOENT, "InvalidSnapshot.NotFound",
                     "The snapshot '%s' does not exist.", shown);
}

/* A snapshot the viewer may see (own_only: its own): 0, or -1 with
 * InvalidSnapshot.NotFound. */
static int get_snap(struct db *db, int64_t viewer, const char *id,
                    bool own_only, struct snap_row *out,
                    struct koala_error **err)
{
    if (id == NULL || !id_resource_valid(id, "snap-"))
        return not_found(id, err);
    sqlite3_stmt *st = db_stmt(
        db,
        own_only ? "SELECT " SNAP_COLS " FROM snapshots s WHERE s.id = ?2 AND"
                   " s.owner = ?1"
                 : "SELECT " SNAP_COLS " FROM snapshots s WHERE s.id = ?2 AND"
                   VISIBLE,
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, viewer);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up snapshot", err);
    if (rc == 0)
        read_snap(st, out);
    db_stmt_done(st);
    return rc == 1 ? not_found(id, err) : rc;
}

int clc_snapshot_own(struct db *db, int64_t owner, const char *id,
                     struct koala_error **err)
{
    struct snap_row s;
    return get_snap(db, owner, id, true, &s, err);
}

int clc_snapshot_usable(struct db *db, int64_t viewer, const char *id,
                        char sc_id[32], char zone[64], int64_t *size_gb,
                        struct koala_error **err)
{
    struct snap_row s;
    if (get_snap(db, viewer, id, false, &s, err) < 0)
        return -1;
    if (strcmp(s.state, "completed") != 0)
        return error_set(err, EINVAL, "IncorrectState",
                         "Snapshot '%s' is not completed (it is %s).", s.id,
                         s.state);
    snprintf(sc_id, 32, "%s", s.sc_id);
    snprintf(zone, 64, "%s", s.zone);
    *size_gb = s.volume_size_gb;
    return 0;
}

int clc_snapshot_still_there(struct db *db, const char *id,
                             struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT 1 FROM snapshots WHERE id = ? AND state = 'completed'",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up snapshot", err);
    db_stmt_done(st);
    return rc == 1 ? not_found(id, err) : rc;
}

static void write_snap(struct ec2_req *r, struct xml_writer *w,
                       const struct snap_row *x, struct koala_error **err)
{
    char t[25];
    xml_text_element(w, "snapshotId", x->id);
    xml_text_element(w, "volumeId", x->volume_id);
    xml_text_element(w, "status", x->state);
    if (*x->message && strcmp(x->state, "error") == 0)
        xml_text_element(w, "statusMessage", x->message);
    xml_text_element(w, "startTime", ec2_time(x->start_time, t));
    xml_text_elementf(w, "progress", "%d%%", x->progress);
    xml_text_element(w, "ownerId", x->owner_number);
    xml_text_elementf(w, "volumeSize", "%lld", (long long)x->volume_size_gb);
    xml_text_element(w, "description", x->description);
    xml_bool_element(w, "encrypted", false);
    xml_text_element(w, "storageTier", "standard");
    if (x->data_size)
        xml_text_elementf(w, "fullSnapshotSizeInBytes", "%lld",
                          (long long)x->data_size);
    ec2_write_tag_set(r, w, x->id, err);
}

/* ---- CreateSnapshot(s) ---- */

/* The SC's snapshot of a snapshot row just committed: records its answer;
 * an SC that is away is asked again by the poller. */
static void ask_sc(struct ec2_req *r, struct snap_row *s)
{
    struct koala_error *e = NULL;
    struct soap_client *c = clc_sc_client(r->clc, r->db, s->zone, &e);
    struct sc_snapshot ss;
    int rc = c ? clc_sc_create_snapshot(c, s->sc_id, s->volume_id, &ss, &e)
               : -1;
    soap_client_free(c);
    if (rc < 0) {
        log_warn("%s: the storage controller of %s: %s (asked again)", s->id,
                 s->zone, error_message(e));
        error_free(e);
        return;
    }
    clc_ebs_snapshot_update(r->db, s->sc_id, &ss, true);
}

static int new_snapshot(struct ec2_req *r, const struct volume_row *v,
                        const char *description, const char *tag_source,
                        struct snap_row *s, struct koala_error **err)
{
    memset(s, 0, sizeof(*s));
    if (id_resource(s->id, sizeof(s->id), "snap") < 0)
        return error_set(err, EIO, NULL, "cannot make a snapshot id");
    s->owner = r->who.id;
    snprintf(s->owner_number, sizeof(s->owner_number), "%s", r->who.number);
    snprintf(s->volume_id, sizeof(s->volume_id), "%s", v->id);
    s->volume_size_gb = v->size_gb;
    snprintf(s->zone, sizeof(s->zone), "%s", v->zone);
    snprintf(s->sc_id, sizeof(s->sc_id), "%s", s->id);
    snprintf(s->state, sizeof(s->state), "pending");
    snprintf(s->description, sizeof(s->description), "%s",
             description ? description : "");
    s->start_time = time_now_ms();
    char owner[24], gb[24], now[24];
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)s->owner);
    snprintf(gb, sizeof(gb), CLC_INT "%lld", (long long)s->volume_size_gb);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)s->start_time);
    if (clc_exec(r->db,
                 "INSERT INTO snapshots (id, owner, volume_id, volume_size_gb,"
                 " zone, sc_id, state, description, start_time) VALUES"
                 " (?,?,?,?,?,?,'pending',?,?)",
                 "recording the snapshot", err, s->id, owner, s->volume_id, gb,
                 s->zone, s->sc_id, s->description, now, NULL) < 0 ||
        ec2_apply_tag_specs(r, "snapshot", s->id, err) < 0)
        return -1;
    if (tag_source &&
        clc_exec(r->db,
                 "INSERT OR IGNORE INTO tags (resource_id, resource_type,"
                 " owner, key, value) SELECT ?, 'snapshot', owner, key, value"
                 " FROM tags WHERE resource_id = ?",
                 "copying the volume's tags", err, s->id, tag_source,
                 NULL) < 0)
        return -1;
    return 0;
}

/* A volume's state that allows a snapshot. */
static int snapshot_allowed(const struct volume_row *v,
                            struct koala_error **err)
{
    if (strcmp(v->state, "available") == 0 || strcmp(v->state, "in-use") == 0)
        return 0;
    return error_set(err, EINVAL, "IncorrectState",
                     "The volume '%s' is '%s': snapshots are taken of "
                     "available or in-use volumes.",
                     v->id, v->state);
}

void ec2_create_snapshot(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const tag_types[] = {"snapshot", NULL};
    struct volume_row v;
    const char *desc = ec2_param(r, "Description");
    if (ec2_check_tag_specs(r, tag_types, &err) < 0 ||
        (ec2_required(r, "VolumeId", &err) == NULL) ||
        clc_volume_get(r->db, r->who.id, ec2_param(r, "VolumeId"), &v, &err) <
            0 ||
        snapshot_allowed(&v, &err) < 0)
        return ec2_fail(r, err);
    if (desc && strlen(desc) > 255) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "The description is at most 255 characters");
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    struct snap_row s;
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (new_snapshot(r, &v, desc, NULL, &s, &err) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    log_info("account %lld: snapshot %s of %s", (long long)r->who.id, s.id,
             v.id);
    ask_sc(r, &s);
    struct xml_writer *w = ec2_reply_start(r, "CreateSnapshot");
    write_snap(r, w, &s, &err);
    ec2_reply_end(r, w, err);
    clc_ebs_kick(r->clc);
}

void ec2_create_snapshots(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const tag_types[] = {"snapshot", NULL};
    const char *iid = ec2_param(r, "InstanceSpecification.InstanceId");
    const char *desc = ec2_param(r, "Description");
    const char *copy = ec2_param(r, "CopyTagsFromSource");
    const char **excluded = NULL;
    size_t n_excluded =
        ec2_param_list(r, "InstanceSpecification.ExcludeDataVolumeId",
                       &excluded);
    struct volume_row *vols = NULL;
    struct snap_row *snaps = NULL;
    size_t n = 0;
    struct xml_writer *w = NULL;
    if (iid == NULL) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter "
                  "InstanceSpecification.InstanceId");
        goto out;
    }
    if (copy && strcmp(copy, "volume") != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "CopyTagsFromSource is 'volume' or absent");
        goto out;
    }
    if (ec2_check_tag_specs(r, tag_types, &err) < 0)
        goto out;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT 1 FROM instances WHERE id = ? AND"
                               " owner = ? AND state != 'terminated'",
                               &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, iid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up instance", &err);
    db_stmt_done(st);
    if (rc == 1) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", iid);
        error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", shown);
    }
    if (rc != 0)
        goto out;
    st = db_stmt(r->db,
                 "SELECT volume_id FROM attachments WHERE instance_id = ?"
                 " ORDER BY attach_time, volume_id",
                 &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, iid, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW && err == NULL) {
        char vid[32];
        clc_col(vid, sizeof(vid), st, 0);
        bool skip = false;
        for (size_t i = 0; i < n_excluded; i++)
            skip = skip || strcmp(excluded[i], vid) == 0;
        if (skip)
            continue;
        struct volume_row *nv = realloc(vols, (n + 1) * sizeof(*vols));
        if (nv == NULL) {
            error_set(&err, ENOMEM, NULL, "out of memory");
            break;
        }
        vols = nv;
        if (clc_volume_get(r->db, r->who.id, vid, &vols[n], &err) == 0)
            n++;
    }
    db_stmt_done(st);
    if (err || ec2_dry_run(r))
        goto out;
    snaps = calloc(n ? n : 1, sizeof(*snaps));
    if (snaps == NULL || db_begin(r->db, &err) < 0) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && err == NULL; i++)
        new_snapshot(r, &vols[i], desc, copy ? vols[i].id : NULL, &snaps[i],
                     &err);
    if (err || db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        ask_sc(r, &snaps[i]);
    w = ec2_reply_start(r, "CreateSnapshots");
    xml_start(w, "snapshotSet");
    for (size_t i = 0; i < n && err == NULL; i++) {
        xml_start(w, "item");
        write_snap(r, w, &snaps[i], &err);
        xml_end(w);
    }
    xml_end(w);
    clc_ebs_kick(r->clc);
out:
    free(excluded);
    free(vols);
    free(snaps);
    ec2_reply_end(r, w, err);
}

/* ---- DescribeSnapshots ---- */

static const char *snap_filter(const struct snap_row *x, const char *f,
                               char *tmp, size_t size)
{
    if (strcmp(f, "volume-size") == 0) {
        snprintf(tmp, size, "%lld", (long long)x->volume_size_gb);
        return tmp;
    }
    if (strcmp(f, "progress") == 0) {
        snprintf(tmp, size, "%d%%", x->progress);
        return tmp;
    }
    if (strcmp(f, "start-time") == 0)
        return ec2_time(x->start_time, tmp);
    return strcmp(f, "snapshot-id") == 0    ? x->id
           : strcmp(f, "volume-id") == 0    ? x->volume_id
           : strcmp(f, "status") == 0       ? x->state
           : strcmp(f, "owner-id") == 0     ? x->owner_number
           : strcmp(f, "description") == 0 ? x->description
           : strcmp(f, "encrypted") == 0    ? "false"
           : strcmp(f, "storage-tier") == 0 ? "standard"
                                            : "";
}

/* OwnerId.N: "self", account numbers ("amazon" owns nothing here). */
static bool owner_wanted(struct ec2_req *r, const char *const *owners,
                         size_t n, const struct snap_row *x)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if ((strcmp(owners[i], "self") == 0 && x->owner == r->who.id) ||
            strcmp(owners[i], x->owner_number) == 0)
            return true;
    return false;
}

/* RestorableByUserId.N: snapshots those accounts may create volumes
 * from ("all": the public ones). */
static bool restorable_wanted(struct ec2_req *r, const char *const *users,
                              size_t n, const struct snap_row *x)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        const char *u = users[i];
        if (strcmp(u, "self") == 0)
            u = r->who.number;
        if (x->public_ || strcmp(u, x->owner_number) == 0)
            return true;
        sqlite3_stmt *st = db_stmt(r->db,
                                   "SELECT 1 FROM snapshot_perms WHERE"
                                   " snapshot_id = ? AND grantee = ?",
                                   NULL);
        if (st == NULL)
            continue;
        sqlite3_bind_text(st, 1, x->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, u, -1, SQLITE_STATIC);
        bool yes = sqlite3_step(st) == SQLITE_ROW;
        db_stmt_done(st);
        if (yes)
            return true;
    }
    return false;
}

void ec2_describe_snapshots(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {
        "description", "encrypted",   "owner-alias", "owner-id",
        "progress",    "snapshot-id", "start-time",  "status",
        "storage-tier", "volume-id",  "volume-size", "tag-key",
        "tag-value",   NULL};
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    struct ec2_id_list ids = {0};
    const char **owners = NULL, **users = NULL;
    size_t n_owners = ec2_param_list(r, "Owner", &owners);
    size_t n_users = ec2_param_list(r, "RestorableBy", &users);
    struct xml_writer *w = NULL;
    struct snap_row *rows = NULL;
    size_t n = 0;
    long long max = 0;
    int64_t after_time;
    char after_id[32];
    if (ec2_id_list_get(r, "SnapshotId", &ids, &err) < 0)
        goto out;
    for (size_t i = 0; i < ids.n; i++)
        if (!id_resource_valid(ids.v[i], "snap-")) {
            not_found(ids.v[i], &err);
            goto out;
        }
    if (ec2_param(r, "MaxResults") && ids.n) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "The parameter snapshotSet cannot be used with the "
                  "parameter maxResults");
        goto out;
    }
    if (ec2_param_int(r, "MaxResults", 0, 5, 1000, &max, &err) < 0 ||
        ec2_token_parse(ec2_param(r, "NextToken"), "snap-",
                        "InvalidNextToken", &after_time,
                        after_id, &err) < 0 ||
        ec2_dry_run(r))
        goto out;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT " SNAP_COLS " FROM snapshots s WHERE"
                               VISIBLE " ORDER BY s.start_time, s.id",
                               &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct snap_row *nr = realloc(rows, (n + 1) * sizeof(*rows));
        if (nr == NULL) {
            error_set(&err, ENOMEM, NULL, "out of memory");
            break;
        }
        rows = nr;
        read_snap(st, &rows[n++]);
    }
    db_stmt_done(st);
    if (err)
        goto out;
    w = ec2_reply_start(r, "DescribeSnapshots");
    xml_start(w, "snapshotSet");
    long long shown = 0;
    const struct snap_row *last = NULL;
    bool more = false;
    for (size_t i = 0; i < n && err == NULL; i++) {
        const struct snap_row *x = &rows[i];
        bool wanted = (ids.n == 0 || ec2_id_list_has(&ids, x->id)) &&
                      owner_wanted(r, owners, n_owners, x) &&
                      restorable_wanted(r, users, n_users, x);
        for (size_t j = 0; wanted && j < fs.n; j++) {
            char tmp[32];
            wanted = ec2_is_tag_filter(fs.f[j].name)
                         ? ec2_tag_filter(r, x->id, &fs.f[j])
                         : ec2_filter_match(&fs.f[j],
                                            snap_filter(x, fs.f[j].name, tmp,
                                                        sizeof(tmp)));
        }
        if (!wanted ||
            !ec2_token_after(x->start_time, x->id, after_time, after_id))
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        xml_start(w, "item");
        write_snap(r, w, x, &err);
        xml_end(w);
        last = x;
        shown++;
    }
    xml_end(w);
    if (more && last)
        ec2_token_write(w, last->start_time, last->id);
    const char *missing = ec2_id_list_missing(&ids);
    if (err == NULL && missing)
        not_found(missing, &err);
out:
    free(rows);
    free(owners);
    free(users);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}

/* ---- DeleteSnapshot, CopySnapshot ---- */

int clc_snapshot_image(struct db *db, const char *snapshot, char image[32],
                       struct koala_error **err)
{
    image[0] = '\0';
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT b.image_id FROM image_block_devices b"
                               " JOIN images i ON i.id = b.image_id WHERE"
                               " b.snapshot_id = ? AND i.state !="
                               " 'deregistered' LIMIT 1",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, snapshot, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        clc_col(image, 32, st, 0);
    db_stmt_done(st);
    return 0;
}

void ec2_delete_snapshot(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct snap_row s;
    if (get_snap(r->db, r->who.id, ec2_param(r, "SnapshotId"), true, &s,
                 &err) < 0)
        return ec2_fail(r, err);
    char image[32] = "";
    if (clc_snapshot_image(r->db, s.id, image, &err) < 0)
        return ec2_fail(r, err);
    if (*image) {
        error_set(&err, EINVAL, "InvalidSnapshot.InUse",
                  "The snapshot %s is currently in use by %s", s.id, image);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    /* The SC's data goes with the last snapshot naming it. */
    if (clc_exec(r->db,
                 "INSERT INTO sc_drops (zone, kind, target) SELECT ?1,"
                 " 'snapshot', ?2 WHERE NOT EXISTS (SELECT 1 FROM snapshots"
                 " WHERE sc_id = ?2 AND id != ?3)",
                 "recording the data to drop", &err, s.zone, s.sc_id, s.id,
                 NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM snapshot_perms WHERE snapshot_id = ?",
                 "dropping permissions", &err, s.id, NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM tags WHERE resource_id = ?",
                 "dropping tags", &err, s.id, NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM snapshots WHERE id = ?",
                 "deleting the snapshot", &err, s.id, NULL) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    log_info("account %lld: deleted snapshot %s", (long long)r->who.id, s.id);
    struct xml_writer *w = ec2_reply_start(r, "DeleteSnapshot");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
    clc_ebs_kick(r->clc);
}

void ec2_copy_snapshot(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const tag_types[] = {"snapshot", NULL};
    const char *region = ec2_param(r, "SourceRegion");
    const char *desc = ec2_param(r, "Description");
    bool encrypted;
    struct snap_row src;
    if (ec2_required(r, "SourceSnapshotId", &err) == NULL ||
        ec2_param_bool(r, "Encrypted", false, &encrypted, &err) < 0 ||
        ec2_check_tag_specs(r, tag_types, &err) < 0)
        return ec2_fail(r, err);
    if (region && strcmp(region, r->clc->region) != 0) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", region);
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Snapshots are copied within the region %s only, not "
                  "from '%s'",
                  r->clc->region, shown);
        return ec2_fail(r, err);
    }
    if (encrypted || ec2_param(r, "KmsKeyId")) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "Encrypted snapshots are not supported by this cloud yet");
        return ec2_fail(r, err);
    }
    if (get_snap(r->db, r->who.id, ec2_param(r, "SourceSnapshotId"), false,
                 &src, &err) < 0)
        return ec2_fail(r, err);
    if (strcmp(src.state, "completed") != 0) {
        error_set(&err, EINVAL, "IncorrectState",
                  "Snapshot '%s' is not completed (it is %s).", src.id,
                  src.state);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    char id[32], owner[24], gb[24], now[24], size[24];
    if (id_resource(id, sizeof(id), "snap") < 0) {
        error_set(&err, EIO, NULL, "cannot make a snapshot id");
        return ec2_fail(r, err);
    }
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(gb, sizeof(gb), CLC_INT "%lld", (long long)src.volume_size_gb);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    snprintf(size, sizeof(size), CLC_INT "%lld", (long long)src.data_size);
    char description[300];
    snprintf(description, sizeof(description), "%s",
             desc ? desc : src.description);
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    /* EC2's copies carry the id of a volume that never existed
     * (vol-ffffffff); this one keeps its source's. */
    if (clc_exec(r->db,
                 "INSERT INTO snapshots (id, owner, volume_id, volume_size_gb,"
                 " zone, sc_id, state, progress, description, data_size,"
                 " start_time) VALUES (?,?,?,?,?,?,'completed',100,?,?,?)",
                 "recording the copy", &err, id, owner, src.volume_id, gb,
                 src.zone, src.sc_id, description, size, now, NULL) < 0 ||
        ec2_apply_tag_specs(r, "snapshot", id, &err) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    log_info("account %lld: copied %s to %s", (long long)r->who.id, src.id,
             id);
    struct xml_writer *w = ec2_reply_start(r, "CopySnapshot");
    xml_text_element(w, "snapshotId", id);
    ec2_write_tag_set(r, w, id, &err);
    ec2_reply_end(r, w, err);
}
