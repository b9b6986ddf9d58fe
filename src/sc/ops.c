/* ops.c: the SC's volume and export operations (CreateVolume ...
 * DescribeResources, docs/wsdl/sc.wsdl), the records they answer with, and
 * what a restarted SC takes up again (sc_recover). */
#define LOG_MODULE "sc"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "id.h"
#include "log.h"
#include "manifest.h"
#include "sc.h"
#include "soap.h"

/* ---- records ---- */

void sc_write_time(struct xml_writer *w, const char *name, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    xml_text_elementf(w, name, "%s.%03dZ", buf, (int)(ms % 1000));
}

void sc_write_volume(struct xml_writer *w, const struct sc_volume *v)
{
    xml_start(w, "volume");
    xml_text_element(w, "volumeId", v->id);
    xml_u64_element(w, "sizeBytes", v->size);
    xml_text_element(w, "status", v->status);
    if (v->snapshot_id[0])
        xml_text_element(w, "snapshotId", v->snapshot_id);
    if (v->snapshot_id[0] || strcmp(v->status, "creating") == 0)
        xml_text_elementf(w, "progress", "%d", v->progress);
    sc_write_time(w, "createTime", v->create_ms);
    if (v->message[0])
        xml_text_element(w, "statusMessage", v->message);
    xml_end(w);
}

void sc_write_export(struct sc *sc, struct xml_writer *w,
                     const struct sc_volume *v, const struct sc_export *e)
{
    xml_start(w, "export");
    xml_text_element(w, "volumeId", v->id);
    if (sc->opt.transport == SC_EXPORT_TCP) {
        xml_text_element(w, "transport", "tcp");
        xml_text_element(w, "host", sc->opt.export_address);
        xml_text_elementf(w, "port", "%d", e->port);
    } else {
        xml_text_element(w, "transport", "unix");
        xml_text_elementf(w, "path", "%s/%s.sock", sc->opt.export_dir, v->id);
    }
    xml_text_element(w, "exportName", v->id);
    xml_text_elementf(w, "tlsHostname", "koala-sc-%s", sc->opt.name);
    xml_u64_element(w, "sizeBytes", v->size);
    xml_text_element(w, "node", e->node);
    xml_end(w);
}

/* ---- shared checks ---- */

static int volume_id_arg(struct sc_req *r, char out[32],
                         struct koala_error **err)
{
    _cleanup_free_ char *id = sc_req_text(r, "volumeId", err);
    if (id == NULL)
        return -1;
    if (!id_resource_valid(id, "vol-"))
        return error_set(err, EINVAL, "InvalidVolume.Malformed",
                         "Invalid id: \"%s\" (expecting \"vol-...\")", id);
    snprintf(out, 32, "%s", id);
    return 0;
}

/* The volume, or InvalidVolume.NotFound (deleted ones too, unless
 * allow_deleted). */
static int volume_load(struct db *db, const char *id, struct sc_volume *v,
                       bool allow_deleted, struct koala_error **err)
{
    int rc = sc_volume_get(db, id, v, err);
    if (rc < 0)
        return -1;
    if (rc == 1 || (!allow_deleted && strcmp(v->status, "deleted") == 0))
        return error_set(err, ENOENT, "InvalidVolume.NotFound",
                         "The volume '%s' does not exist.", id);
    return 0;
}

static int size_arg(struct sc_req *r, uint64_t *size, struct koala_error **err)
{
    long long v;
    if (xml_child(r->op, "sizeBytes") == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "sizeBytes is required");
    if (soap_int(r->op, "sizeBytes", 0, &v, err) < 0)
        return -1;
    if (v < (long long)SC_GIB || (unsigned long long)v > SC_MAX_VOLUME_BYTES ||
        v % (long long)SC_GIB != 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Volume size %lld is not a whole number of GiB "
                         "from 1 to 16384 GiB",
                         v);
    *size = (uint64_t)v;
    return 0;
}

/* Under sc->lock: there is room for `more` bytes of volumes. */
static int capacity_check(struct sc *sc, struct db *db, uint64_t more,
                          struct koala_error **err)
{
    uint64_t used;
    int64_t n;
    if (sc_volume_usage(db, &used, &n, err) < 0)
        return -1;
    if (used + more > sc->opt.capacity_bytes)
        return error_set(err, ENOSPC, "InsufficientVolumeCapacity",
                         "There is not enough capacity in zone %s for a "
                         "volume of %llu GiB (%llu of %llu GiB used)",
                         sc->opt.zone, (unsigned long long)(more / SC_GIB),
                         (unsigned long long)(used / SC_GIB),
                         (unsigned long long)(sc->opt.capacity_bytes / SC_GIB));
    return 0;
}

static void reply_volume(struct sc_req *r, const char *op,
                         const struct sc_volume *v)
{
    char name[64];
    snprintf(name, sizeof(name), "%sResponse", op);
    struct xml_writer *w = soap_start(name, SC_NS);
    sc_write_volume(w, v);
    sc_reply(r, w);
}

/* ---- CreateVolume ---- */

/* A zone name as sc.zone allows it, starting with a letter or digit (it
 * becomes a key prefix in Walrus). */
static bool zone_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 && isalnum((unsigned char)s[0]) &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789-_.") == n;
}

/* Another zone's snapshot, which this SC has no record of: its manifest
 * in Walrus (under that zone's prefix) says that it is there and its
 * size.  The CLC keeps that zone's SC from deleting it while the volume
 * is creating (docs/storage.md, "A volume from another zone's
 * snapshot"). */
static int foreign_snapshot_check(struct sc *sc, const char *zone,
                                  const char *sid, uint64_t size,
                                  struct koala_error **err)
{
    if (!zone_name_ok(zone))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid zone name \"%.64s\"", zone);
    if (sc->s3 == NULL)
        return error_set(err, ENOTSUP, "UnsupportedOperation",
                         "this storage controller has no Walrus");
    struct sc_manifest m;
    struct koala_error *e = NULL;
    if (sc_manifest_load_zone(sc, zone, sid, &m, &e) < 0) {
        if (e->errnum == ENOENT) {
            error_free(e);
            return error_set(err, ENOENT, "InvalidSnapshot.NotFound",
                             "The snapshot '%s' does not exist.", sid);
        }
        *err = e;
        return -1;
    }
    uint64_t need = m.volume_size;
    sc_manifest_clear(&m);
    if (size < need)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Volume of %llu GiB is smaller than snapshot "
                         "'%s' (%llu GiB)",
                         (unsigned long long)(size / SC_GIB), sid,
                         (unsigned long long)((need + SC_GIB - 1) / SC_GIB));
    return 0;
}

static int create_volume(struct sc_req *r, struct sc_volume *v,
                         struct koala_error **err)
{
    struct sc *sc = r->sc;
    char id[32];
    uint64_t size;
    if (volume_id_arg(r, id, err) < 0 || size_arg(r, &size, err) < 0)
        return -1;
    _cleanup_free_ char *snap = xml_child_text(r->op, "snapshotId");
    if (snap && *str_trim(snap) == '\0') {
        free(snap);
        snap = NULL;
    }
    /* the snapshot's zone: another zone's is read from its prefix */
    _cleanup_free_ char *szone = xml_child_text(r->op, "snapshotZone");
    const char *from = szone ? str_trim(szone) : "";
    if (snap == NULL || strcmp(from, sc->opt.zone) == 0)
        from = "";
    struct db *db = sc_req_db(r, err);
    if (db == NULL)
        return -1;
    if (snap && *from) {
        const char *sid = str_trim(snap);
        if (!id_resource_valid(sid, "snap-"))
            return error_set(err, EINVAL, "InvalidSnapshot.Malformed",
                             "Invalid id: \"%s\" (expecting \"snap-...\")",
                             sid);
        if (foreign_snapshot_check(sc, from, sid, size, err) < 0)
            return -1;
    } else if (snap) {
        const char *sid = str_trim(snap);
        if (!id_resource_valid(sid, "snap-"))
            return error_set(err, EINVAL, "InvalidSnapshot.Malformed",
                             "Invalid id: \"%s\" (expecting \"snap-...\")",
                             sid);
        struct sc_snapshot s;
        int rc = sc_snapshot_get(db, sid, &s, err);
        if (rc < 0)
            return -1;
        if (rc == 1 || strcmp(s.status, "deleted") == 0)
            return error_set(err, ENOENT, "InvalidSnapshot.NotFound",
                             "The snapshot '%s' does not exist.", sid);
        if (strcmp(s.status, "completed") != 0)
            return error_set(err, EINVAL, "IncorrectState",
                             "Snapshot '%s' is %s, not completed", sid,
                             s.status);
        if (size < s.volume_size)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Volume of %llu GiB is smaller than snapshot "
                             "'%s' (%llu GiB)",
                             (unsigned long long)(size / SC_GIB), sid,
                             (unsigned long long)(s.volume_size / SC_GIB));
        if (sc->s3 == NULL)
            return error_set(err, ENOTSUP, "UnsupportedOperation",
                             "this storage controller has no Walrus");
    }
    pthread_mutex_lock(&sc->lock);
    int rc = sc_volume_get(db, id, v, err);
    if (rc == 0) {
        pthread_mutex_unlock(&sc->lock);
        if (v->size == size && strcmp(v->snapshot_id, snap ? snap : "") == 0 &&
            strcmp(v->snapshot_zone, from) == 0 &&
            strcmp(v->status, "deleted") != 0)
            return 0; /* the same request again */
        return error_set(err, EEXIST, "IdempotentParameterMismatch",
                         "Volume '%s' exists with other parameters", id);
    }
    if (rc < 0 || capacity_check(sc, db, size, err) < 0) {
        pthread_mutex_unlock(&sc->lock);
        return -1;
    }
    memset(v, 0, sizeof(*v));
    snprintf(v->id, sizeof(v->id), "%s", id);
    v->size = size;
    snprintf(v->status, sizeof(v->status), "creating");
    snprintf(v->snapshot_id, sizeof(v->snapshot_id), "%s", snap ? snap : "");
    snprintf(v->snapshot_zone, sizeof(v->snapshot_zone), "%s", from);
    v->create_ms = sc_now_ms();
    /* recorded before the file is made: a restart finishes it */
    rc = sc_volume_put(db, v, err);
    if (rc == 0 && snap == NULL) {
        if (sc->store->ops->create(sc->store, id, size, NULL, NULL, err) < 0) {
            struct koala_error *e2 = NULL;
            sc_volume_set_status(db, id, "error", 0, error_message(*err), &e2);
            error_free(e2);
            rc = -1;
        } else {
            rc = sc_volume_set_status(db, id, "available", 100, NULL, err);
            snprintf(v->status, sizeof(v->status), "available");
        }
    }
    pthread_mutex_unlock(&sc->lock);
    if (rc == 0 && snap)
        rc = sc_restore_start(sc, id, err);
    if (rc == 0)
        log_info("%s: %s, %llu GiB%s%s", id, v->status,
                 (unsigned long long)(size / SC_GIB), snap ? " from " : "",
                 snap ? snap : "");
    return rc;
}

void sc_op_create_volume(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct sc_volume v;
    if (create_volume(r, &v, &err) < 0)
        return sc_fail(r, err);
    struct db *db = sc_req_db(r, &err);
    if (db && sc_volume_get(db, v.id, &v, &err) < 0)
        return sc_fail(r, err);
    reply_volume(r, "CreateVolume", &v);
}

/* ---- DeleteVolume ---- */

static int delete_volume(struct sc_req *r, struct sc_volume *v,
                         struct koala_error **err)
{
    struct sc *sc = r->sc;
    char id[32];
    struct db *db = sc_req_db(r, err);
    if (db == NULL || volume_id_arg(r, id, err) < 0)
        return -1;
    pthread_mutex_lock(&sc->lock);
    int rc = -1;
    struct sc_export e;
    if (volume_load(db, id, v, true, err) < 0)
        goto out;
    if (strcmp(v->status, "deleted") == 0) {
        rc = 0;
        goto out;
    }
    int x = sc_export_get(db, id, &e, err);
    if (x < 0)
        goto out;
    if (x == 0) {
        error_set(err, EBUSY, "VolumeInUse",
                  "Volume '%s' is exported to node %s", id, e.node);
        goto out;
    }
    x = sc_snapshot_pending_for(db, id, err);
    if (x != 0) {
        if (x > 0)
            error_set(err, EBUSY, "VolumeInUse",
                      "Volume '%s' has a snapshot in progress", id);
        goto out;
    }
    if (strcmp(v->status, "creating") == 0 && v->snapshot_id[0]) {
        error_set(err, EBUSY, "IncorrectState",
                  "Volume '%s' is still being created from %s", id,
                  v->snapshot_id);
        goto out;
    }
    if (sc_volume_set_status(db, id, "deleting", 0, NULL, err) < 0)
        goto out;
    if (sc->store->ops->remove(sc->store, id, err) < 0)
        goto out;
    if (sc_volume_set_status(db, id, "deleted", 0, NULL, err) < 0)
        goto out;
    snprintf(v->status, sizeof(v->status), "deleted");
    log_info("%s: deleted", id);
    rc = 0;
out:
    pthread_mutex_unlock(&sc->lock);
    return rc;
}

void sc_op_delete_volume(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct sc_volume v;
    if (delete_volume(r, &v, &err) < 0)
        return sc_fail(r, err);
    reply_volume(r, "DeleteVolume", &v);
}

/* ---- ResizeVolume ---- */

static int resize_volume(struct sc_req *r, struct sc_volume *v,
                         struct koala_error **err)
{
    struct sc *sc = r->sc;
    char id[32];
    uint64_t size;
    struct db *db = sc_req_db(r, err);
    if (db == NULL || volume_id_arg(r, id, err) < 0 ||
        size_arg(r, &size, err) < 0)
        return -1;
    pthread_mutex_lock(&sc->lock);
    int rc = -1;
    if (volume_load(db, id, v, false, err) < 0)
        goto out;
    if (strcmp(v->status, "available") != 0) {
        error_set(err, EINVAL, "IncorrectState", "Volume '%s' is %s", id,
                  v->status);
        goto out;
    }
    if (size == v->size) {
        rc = 0;
        goto out;
    }
    if (size < v->size) {
        error_set(err, EINVAL, "InvalidParameterValue",
                  "New size %llu GiB is smaller than the volume's %llu GiB: "
                  "volumes only grow",
                  (unsigned long long)(size / SC_GIB),
                  (unsigned long long)(v->size / SC_GIB));
        goto out;
    }
    if (capacity_check(sc, db, size - v->size, err) < 0)
        goto out;
    struct sc_active *a = sc_qsd_find(sc, id);
    if (a) {
        /* online: the NC's QEMU keeps its old size until the CLC has
         * the node open the export again (ncResizeVolume) */
        if (sc_qsd_resize(sc, a, size, err) < 0)
            goto out;
    } else if (sc->store->ops->resize(sc->store, id, size, err) < 0) {
        goto out;
    }
    v->size = size;
    if (sc_volume_put(db, v, err) < 0)
        goto out;
    log_info("%s: grown to %llu GiB%s", id,
             (unsigned long long)(size / SC_GIB), a ? " online" : "");
    rc = 0;
out:
    pthread_mutex_unlock(&sc->lock);
    return rc;
}

void sc_op_resize_volume(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct sc_volume v;
    if (resize_volume(r, &v, &err) < 0)
        return sc_fail(r, err);
    reply_volume(r, "ResizeVolume", &v);
}

/* ---- DescribeVolumes ---- */

static int describe_one(void *ctx, const struct sc_volume *v)
{
    sc_write_volume(ctx, v);
    return 0;
}

void sc_op_describe_volumes(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct db *db = sc_req_db(r, &err);
    if (db == NULL)
        return sc_fail(r, err);
    struct xml_writer *w = soap_start("DescribeVolumesResponse", SC_NS);
    bool any = false;
    for (const struct xml_node *n = xml_next_child(r->op, NULL, "volumeId"); n;
         n = xml_next_child(r->op, n, "volumeId")) {
        any = true;
        _cleanup_free_ char *t = xml_text(n);
        const char *id = t ? str_trim(t) : "";
        if (!id_resource_valid(id, "vol-")) {
            xml_writer_free(w);
            error_set(&err, EINVAL, "InvalidVolume.Malformed",
                      "Invalid id: \"%s\"", id);
            return sc_fail(r, err);
        }
        struct sc_volume v;
        int rc = sc_volume_get(db, id, &v, &err);
        if (rc < 0) {
            xml_writer_free(w);
            return sc_fail(r, err);
        }
        if (rc == 0)
            sc_write_volume(w, &v);
    }
    if (!any && sc_volumes_each(db, describe_one, w, &err) < 0) {
        xml_writer_free(w);
        return sc_fail(r, err);
    }
    sc_reply(r, w);
}

/* ---- ExportVolume / UnexportVolume ---- */

static int node_arg(struct sc_req *r, char out[64], struct koala_error **err)
{
    _cleanup_free_ char *n = sc_req_text(r, "node", err);
    if (n == NULL)
        return -1;
    size_t len = strlen(n);
    if (len >= 64 ||
        strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789-_.") != len)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "node: '%s' is not a node name", n);
    snprintf(out, 64, "%s", n);
    return 0;
}

static int export_volume(struct sc_req *r, struct sc_volume *v,
                         struct sc_export *e, struct koala_error **err)
{
    struct sc *sc = r->sc;
    char id[32], node[64];
    struct db *db = sc_req_db(r, err);
    if (db == NULL || volume_id_arg(r, id, err) < 0 ||
        node_arg(r, node, err) < 0)
        return -1;
    pthread_mutex_lock(&sc->lock);
    int rc = -1;
    if (volume_load(db, id, v, false, err) < 0)
        goto out;
    if (strcmp(v->status, "available") != 0) {
        error_set(err, EINVAL, "IncorrectState",
                  "Volume '%s' is %s, not available", id, v->status);
        goto out;
    }
    int x = sc_export_get(db, id, e, err);
    if (x < 0)
        goto out;
    if (x == 0 && strcmp(e->node, node) != 0) {
        error_set(err, EBUSY, "VolumeInUse",
                  "Volume '%s' is exported to node %s", id, e->node);
        goto out;
    }
    struct sc_active *a = sc_qsd_get(sc, db, v, x == 0 ? e->port : 0, err);
    if (a == NULL)
        goto out;
    memset(e, 0, sizeof(*e));
    snprintf(e->volume_id, sizeof(e->volume_id), "%s", id);
    snprintf(e->node, sizeof(e->node), "%s", node);
    e->port = sc->opt.transport == SC_EXPORT_TCP ? a->port : 0;
    if (sc_export_put(db, e, err) < 0) {
        sc_qsd_release(sc, a);
        goto out;
    }
    if (sc_qsd_export(sc, a, node, err) < 0) {
        struct koala_error *e2 = NULL;
        sc_export_delete(db, id, &e2);
        error_free(e2);
        sc_qsd_release(sc, a);
        goto out;
    }
    log_info("%s: exported to node %s", id, node);
    rc = 0;
out:
    pthread_mutex_unlock(&sc->lock);
    return rc;
}

void sc_op_export_volume(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct sc_volume v;
    struct sc_export e;
    if (export_volume(r, &v, &e, &err) < 0)
        return sc_fail(r, err);
    struct xml_writer *w = soap_start("ExportVolumeResponse", SC_NS);
    sc_write_export(r->sc, w, &v, &e);
    sc_reply(r, w);
}

static int unexport_volume(struct sc_req *r, struct koala_error **err)
{
    struct sc *sc = r->sc;
    char id[32], node[64];
    struct db *db = sc_req_db(r, err);
    if (db == NULL || volume_id_arg(r, id, err) < 0 ||
        node_arg(r, node, err) < 0)
        return -1;
    pthread_mutex_lock(&sc->lock);
    int rc = -1;
    struct sc_volume v;
    struct sc_export e;
    if (volume_load(db, id, &v, true, err) < 0)
        goto out;
    int x = sc_export_get(db, id, &e, err);
    if (x < 0)
        goto out;
    /* Not exported, or exported to another node: nothing of this node's
     * to undo (idempotent). */
    if (x == 1 || strcmp(e.node, node) != 0) {
        rc = 0;
        goto out;
    }
    struct sc_active *a = sc_qsd_find(sc, id);
    if (a && sc_qsd_unexport(sc, a, err) < 0)
        goto out;
    if (sc_export_delete(db, id, err) < 0)
        goto out;
    sc_qsd_release(sc, a);
    log_info("%s: no longer exported to node %s", id, node);
    rc = 0;
out:
    pthread_mutex_unlock(&sc->lock);
    return rc;
}

void sc_op_unexport_volume(struct sc_req *r)
{
    struct koala_error *err = NULL;
    if (unexport_volume(r, &err) < 0)
        return sc_fail(r, err);
    sc_reply(r, soap_start("UnexportVolumeResponse", SC_NS));
}

/* ---- DescribeResources ---- */

void sc_op_describe_resources(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct db *db = sc_req_db(r, &err);
    uint64_t used = 0;
    int64_t vols = 0, exps = 0, snaps = 0;
    if (db == NULL || sc_volume_usage(db, &used, &vols, &err) < 0 ||
        sc_count(db, "SELECT count(*) FROM exports", &exps, &err) < 0 ||
        sc_count(db,
                 "SELECT count(*) FROM snapshots WHERE status != 'deleted'",
                 &snaps, &err) < 0)
        return sc_fail(r, err);
    struct xml_writer *w = soap_start("DescribeResourcesResponse", SC_NS);
    xml_text_element(w, "zone", r->sc->opt.zone);
    xml_u64_element(w, "capacityBytes", r->sc->opt.capacity_bytes);
    xml_u64_element(w, "usedBytes", used);
    xml_u64_element(w, "volumes", (uint64_t)vols);
    xml_u64_element(w, "exports", (uint64_t)exps);
    xml_u64_element(w, "snapshots", (uint64_t)snaps);
    sc_reply(r, w);
}

/* ---- restart ---- */

struct recover_ctx {
    struct sc *sc;
    struct db *db;
    struct koala_error **err;
};

static int recover_volume(void *ctx, const struct sc_volume *v)
{
    struct recover_ctx *c = ctx;
    struct sc *sc = c->sc;
    struct koala_error *e = NULL;
    if (strcmp(v->status, "creating") == 0 && v->snapshot_id[0] == '\0') {
        if (sc->store->ops->create(sc->store, v->id, v->size, NULL, NULL,
                                   &e) == 0)
            sc_volume_set_status(c->db, v->id, "available", 100, NULL, &e);
        else
            sc_volume_set_status(c->db, v->id, "error", 0, error_message(e),
                                 &e);
        log_info("%s: creation taken up again", v->id);
    } else if (strcmp(v->status, "creating") == 0) {
        /* filled again from the start: content-addressed blocks make it
         * the same result */
        sc_restore_start(sc, v->id, &e);
    } else if (strcmp(v->status, "deleting") == 0) {
        if (sc->store->ops->remove(sc->store, v->id, &e) == 0)
            sc_volume_set_status(c->db, v->id, "deleted", 0, NULL, &e);
    }
    if (e) {
        log_error("%s: recovering: %s", v->id, error_message(e));
        error_free(e);
    }
    return 0;
}

static int recover_snapshot(void *ctx, const struct sc_snapshot *s)
{
    struct recover_ctx *c = ctx;
    if (strcmp(s->status, "pending") != 0)
        return 0;
    struct sc_snapshot n = *s;
    snprintf(n.status, sizeof(n.status), "error");
    snprintf(n.message, sizeof(n.message),
             "the storage controller restarted while the snapshot was taken");
    log_warn("%s: pending at restart: error", s->id);
    return sc_snapshot_put(c->db, &n, c->err);
}

static int recover_export(void *ctx, const struct sc_export *e)
{
    struct recover_ctx *c = ctx;
    struct sc_volume v;
    struct koala_error *err = NULL;
    if (sc_volume_get(c->db, e->volume_id, &v, &err) == 0) {
        struct sc_active *a = sc_qsd_get(c->sc, c->db, &v, e->port, &err);
        if (a && sc_qsd_export(c->sc, a, e->node, &err) == 0) {
            log_info("%s: export to node %s re-created", e->volume_id,
                     e->node);
            return 0;
        }
    }
    log_error("%s: re-creating the export: %s", e->volume_id,
              error_message(err));
    error_free(err);
    return 0;
}

static void clear_scratch(struct sc *sc)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/scratch", sc->opt.data_dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

int sc_recover(struct sc *sc, struct koala_error **err)
{
    struct db *db = db_pool_get(sc->db, err);
    if (db == NULL)
        return -1;
    clear_scratch(sc);
    struct recover_ctx c = {sc, db, err};
    pthread_mutex_lock(&sc->lock);
    int rc = 0;
    if (sc_snapshots_each(db, recover_snapshot, &c, err) < 0 ||
        sc_volumes_each(db, recover_volume, &c, err) < 0 ||
        sc_exports_each(db, recover_export, &c, err) < 0)
        rc = -1;
    pthread_mutex_unlock(&sc->lock);
    db_pool_put(sc->db, db);
    return rc;
}
