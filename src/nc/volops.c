/* volops.c: attaching EBS volumes to instances and detaching them
 * (ncAttachVolume, ncDetachVolume), through QMP on the instance's QEMU.
 *
 * States: attaching -> attached -> detaching -> detached.  A request
 * changes the record under the lock and leaves the work to the instance's
 * job: settling an instance (lifecycle.c) plugs what is attaching and
 * unplugs what is detaching whenever no other job runs, so attaching
 * never races a stop or a terminate.  The request then waits a while for
 * the outcome, so that a caller usually gets "attached" (or the error) in
 * the reply; the CC's poll sees the rest.
 *
 * Plugging: object-add of the TLS credentials (once per QEMU),
 * blockdev-add of the NBD client, device_add of the disk.  A failure
 * undoes what was done (nothing half-plugged) and ends the attachment
 * detached with the reason.  Unplugging: device_del, then waiting for the
 * device to be gone (the guest lets go of a virtio-blk-pci disk; a scsi-hd
 * goes at once), then blockdev-del.  A guest that does not let go within
 * the grace leaves the attachment detaching ("stuck") until a new request;
 * Force does not wait for it.
 *
 * Every step looks at what QEMU has first (qom-list of the devices,
 * query-named-block-nodes), so the work can be redone after a koala-nc
 * that was killed halfway: an attachment found attaching or detaching in
 * instance.json is simply taken up again.  A stopped instance has no
 * QEMU: its attachments are only records, given to QEMU on the command
 * line at the next start (volumes.c).
 *
 * Boot volumes (volumes.c) are never plugged or unplugged here: the
 * launch puts one on QEMU's command line once its export came (the
 * ncAttachVolume that brings it only fills the record in and lets the
 * instance's settling start the launch), and it cannot be detached while
 * the instance has a QEMU (EC2: "Unable to detach root volume").  A
 * volume of ncRunInstance without its export waits for ncAttachVolume in
 * the same way, attaching, with nothing to plug yet.
 */
#define LOG_MODULE "nc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "nc.h"

#define NC_ATTACH_WAIT_MS 30000  /* a request waits for the outcome */
#define NC_DETACH_GRACE_MS 30000 /* the guest's time to let go */
#define NC_FORCE_GRACE_MS 2000

/* ---- QMP helpers ---- */

/* Whether QEMU has a device with id (1), has not (0), or -1. */
static int has_device(struct qmp *q, const char *id, struct koala_error **err)
{
    json_t *r = qmp_execute(q, "qom-list",
                            json_pack("{s:s}", "path", "/machine/peripheral"),
                            5000, err);
    if (r == NULL)
        return -1;
    int found = 0;
    size_t i;
    json_t *e;
    json_array_foreach(r, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, id) == 0)
            found = 1;
    }
    json_decref(r);
    return found;
}

/* Whether QEMU has block node `node` (1, its size into *size when asked),
 * has not (0), or -1. */
int nc_vol_node_info(struct qmp *q, const char *node, int64_t *size,
                     struct koala_error **err)
{
    json_t *r = qmp_execute(q, "query-named-block-nodes",
                            json_pack("{s:b}", "flat", 1), 5000, err);
    if (r == NULL)
        return -1;
    int found = 0;
    size_t i;
    json_t *e;
    json_array_foreach(r, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "node-name"));
        if (n && strcmp(n, node) == 0) {
            found = 1;
            if (size)
                *size = json_integer_value(json_object_get(
                    json_object_get(e, "image"), "virtual-size"));
        }
    }
    json_decref(r);
    return found;
}

int nc_vol_has_node(struct qmp *q, const char *node, struct koala_error **err)
{
    return nc_vol_node_info(q, node, NULL, err);
}

int nc_vol_qmp(struct qmp *q, const char *cmd, json_t *args, unsigned ms,
               struct koala_error **err)
{
    json_t *r = qmp_execute(q, cmd, args, ms, err);
    if (r == NULL)
        return -1;
    json_decref(r);
    return 0;
}

/* Moves the export from `from` into `to` (whose old one is freed). */
static void export_clear_move(struct nc_export *to, struct nc_export *from)
{
    free(to->transport);
    free(to->path);
    free(to->host);
    free(to->export_name);
    free(to->tls_hostname);
    *to = *from;
    memset(from, 0, sizeof(*from));
}

/* Removes block node `node` if QEMU has it. */
int nc_vol_drop_node(struct qmp *q, const char *node, struct koala_error **err)
{
    int has = nc_vol_has_node(q, node, err);
    if (has <= 0)
        return has;
    /* A device just deleted lets go of its node a moment later (QEMU
     * finalizes it after the guest's requests drained): "in use" until
     * then. */
    int64_t deadline = time_mono_ms() + 10000;
    for (;;) {
        struct koala_error *e = NULL;
        if (nc_vol_qmp(q, "blockdev-del", json_pack("{s:s}", "node-name", node),
                       10000, &e) == 0)
            return 0;
        if (strstr(error_message(e), "in use") == NULL ||
            time_mono_ms() >= deadline) {
            if (err && *err == NULL)
                *err = e;
            else
                error_free(e);
            return -1;
        }
        error_free(e);
        usleep(20000);
    }
}

/* Removes every node of the volume (the raw or null one first: they sit
 * on the NBD client). */
static int drop_nodes(struct qmp *q, const struct nc_volume *v,
                      struct koala_error **err)
{
    static const char *const kinds[] = {"raw", "null", "grow", "nbd"};
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        char node[40];
        nc_volume_node(v, kinds[i], node);
        if (nc_vol_drop_node(q, node, err) < 0)
            return -1;
    }
    return 0;
}

/* A forced detach of a disk the guest holds on to: its raw node is
 * pointed at a null node of the same size (reads zeros, writes go
 * nowhere) and the NBD client closed, so the volume is free for another
 * node while the device waits for the guest to let go. */
static int cut_loose(struct qmp *q, const struct nc_volume *v,
                     struct koala_error **err)
{
    char raw[40], null[40], nbd[40];
    nc_volume_node(v, "raw", raw);
    nc_volume_node(v, "null", null);
    nc_volume_node(v, "nbd", nbd);
    int64_t size = 0;
    int has = nc_vol_node_info(q, raw, &size, err);
    if (has < 0)
        return -1;
    if (has == 1) {
        int hn = nc_vol_has_node(q, null, err);
        if (hn < 0)
            return -1;
        if (hn == 0 &&
            nc_vol_qmp(q, "blockdev-add",
                       json_pack("{s:s, s:s, s:I, s:b}", "driver", "null-co",
                                 "node-name", null, "size",
                                 (json_int_t)(size > 0 ? size : 1 << 30),
                                 "read-zeroes", 1),
                       10000, err) < 0)
            return -1;
        json_t *opts =
            json_pack("[{s:s, s:s, s:s, s:s}]", "driver", "raw", "node-name",
                      raw, "file", null, "discard", "unmap");
        if (nc_vol_qmp(q, "blockdev-reopen",
                       json_pack("{s:o}", "options", opts), 10000, err) < 0) {
            error_prefix(*err, "moving %s off its export", v->id);
            return -1;
        }
    }
    char grow[40]; /* a growth cut short (volgrow.c) may have left it */
    nc_volume_node(v, "grow", grow);
    if (nc_vol_drop_node(q, grow, err) < 0)
        return -1;
    return nc_vol_drop_node(q, nbd, err);
}

/* ---- plugging and unplugging (no lock held; v's fields are stable
 * while the instance's job runs) ---- */

static int plug(struct nc *nc, struct qmp *q, const struct nc_volume *v,
                bool microvm, struct koala_error **err)
{
    char null[40];
    nc_volume_node(v, "null", null);
    int dev = has_device(q, v->id, err);
    if (dev < 0)
        return -1;
    if (dev == 1) {
        /* There already (a restart), unless it is the disk of a forced
         * detach that the guest still holds. */
        int held = nc_vol_has_node(q, null, err);
        if (held != 0)
            return held < 0 ? -1
                            : error_set(err, EBUSY, "VolumeInUse",
                                        "the guest still holds the disk of "
                                        "an earlier forced detach of %s",
                                        v->id);
        return 0;
    }
    /* The credentials, once per QEMU (a second add says "duplicate"). */
    struct koala_error *e = NULL;
    if (nc_vol_qmp(q, "object-add", nc_volume_tls_object(nc), 10000, &e) < 0) {
        if (strstr(error_message(e), "duplicate") == NULL &&
            strstr(error_message(e), "already") == NULL) {
            if (err && *err == NULL)
                *err = e;
            else
                error_free(e);
            error_prefix(*err, "the TLS credentials");
            return -1;
        }
        error_free(e);
    }
    /* Nodes left by an attach cut short or a forced detach go first. */
    if (drop_nodes(q, v, err) < 0)
        return -1;
    /* open-timeout stays 0: one connection attempt, so an export that
     * cannot be reached fails the attach at once. */
    if (nc_vol_qmp(q, "blockdev-add", nc_volume_blockdev(v), 60000, err) < 0) {
        if (v->ex.path)
            error_prefix(*err, "connecting to the export of %s (unix %s)",
                         v->id, v->ex.path);
        else
            error_prefix(*err, "connecting to the export of %s (tcp %s:%lld)",
                         v->id, v->ex.host, (long long)v->ex.port);
        return -1;
    }
    if (nc_vol_qmp(q, "blockdev-add", nc_volume_format(v), 10000, err) < 0 ||
        nc_vol_qmp(q, "device_add", nc_volume_device(v, microvm), 10000, err) <
            0) {
        error_prefix(*err, "plugging %s into the guest", v->id);
        struct koala_error *e2 = NULL;
        if (drop_nodes(q, v, &e2) < 0)
            log_error("volume %s: %s", v->id, error_message(e2));
        error_free(e2);
        return -1;
    }
    return 0;
}

/* 0 unplugged, -1 with *err (the guest did not let go: EBUSY). */
static int unplug(struct qmp *q, const struct nc_volume *v, bool force,
                  struct koala_error **err)
{
    int dev = has_device(q, v->id, err);
    if (dev < 0)
        return -1;
    if (dev == 1) {
        /* A second device_del of a PCI device whose unplug is under way
         * is refused; that is fine, its presence is what counts. */
        json_decref(qmp_execute(q, "device_del",
                                json_pack("{s:s}", "id", v->id), 10000, NULL));
        int64_t deadline =
            time_mono_ms() + (force ? NC_FORCE_GRACE_MS : NC_DETACH_GRACE_MS);
        while ((dev = has_device(q, v->id, err)) == 1 &&
               time_mono_ms() < deadline)
            usleep(50000);
        if (dev < 0)
            return -1;
        if (dev == 1 && !force)
            return error_set(err, EBUSY, "IncorrectState",
                             "the guest has not released %s", v->id);
        if (dev == 1) {
            log_warn("volume %s: the guest has not released it: forced off "
                     "its export",
                     v->id);
            return cut_loose(q, v, err);
        }
    }
    return drop_nodes(q, v, err);
}

static void set_vol_state(struct nc *nc, struct nc_instance *inst,
                          struct nc_volume *v, enum nc_vol_state st,
                          const char *error)
{
    if (v->state != st)
        log_info("instance %s: volume %s (%s): %s -> %s%s%s", inst->id, v->id,
                 v->device, nc_vol_state_name(v->state), nc_vol_state_name(st),
                 error ? ": " : "", error ? error : "");
    v->state = st;
    free(v->error);
    v->error = error ? strdup(error) : NULL;
    v->error_code[0] = '\0';
    if (st == NC_VOL_DETACHED)
        v->detached_ms = time_mono_ms();
    nc_notify_locked(nc, inst);
    pthread_cond_broadcast(&nc->cond);
}

/* Whether v waits for the instance's job: plugging, unplugging (not a
 * stuck one: that waits for a new request), growing.  A boot volume
 * attaching is the launch's, except on a stopped instance (its root
 * attached again: recorded for the next start). */
static bool wants_work(const struct nc_volume *v, bool stopped)
{
    if (v->state == NC_VOL_ATTACHING &&
        ((v->boot && !stopped) || !nc_volume_has_export(v)))
        return false; /* the launch's, or waiting for its export */
    return v->state == NC_VOL_ATTACHING ||
           (v->state == NC_VOL_DETACHING && !v->stuck) ||
           (v->state == NC_VOL_ATTACHED && v->grow_to > 0);
}

bool nc_volumes_pending_locked(const struct nc_instance *inst)
{
    for (const struct nc_volume *v = inst->volumes; v; v = v->next)
        if (wants_work(v, inst->state == NC_STOPPED))
            return true;
    return false;
}

/* The end of a growth (lock held): done, or failed with err. */
static void grow_done_locked(struct nc *nc, struct nc_instance *inst,
                             struct nc_volume *v, int64_t to,
                             const struct koala_error *err)
{
    free(v->grow_error);
    v->grow_error = NULL;
    v->grow_code[0] = '\0';
    if (err == NULL) {
        if (v->ex.size_bytes < to)
            v->ex.size_bytes = to;
    } else {
        v->grow_error = strdup(error_message(err));
        snprintf(v->grow_code, sizeof(v->grow_code), "%s",
                 err->code ? err->code : "");
        log_warn("instance %s: volume %s: growing to %lld bytes: %s", inst->id,
                 v->id, (long long)to, error_message(err));
    }
    /* A bigger size asked for meanwhile stays to do. */
    if (v->grow_to <= to)
        v->grow_to = 0;
    pthread_cond_broadcast(&nc->cond);
}

void nc_volumes_booted_locked(struct nc *nc, struct nc_instance *inst)
{
    struct nc_volume *v = nc_boot_volume(inst);
    if (v && v->state == NC_VOL_ATTACHING && nc_volume_has_export(v))
        set_vol_state(nc, inst, v, NC_VOL_ATTACHED, NULL);
}

void nc_volumes_qemu_gone_locked(struct nc *nc, struct nc_instance *inst,
                                 bool all)
{
    for (struct nc_volume *v = inst->volumes; v; v = v->next)
        if (v->state != NC_VOL_DETACHED &&
            (all || v->state == NC_VOL_DETACHING))
            set_vol_state(nc, inst, v, NC_VOL_DETACHED, NULL);
}

void nc_volumes_converge(struct nc *nc, struct nc_instance *inst)
{
    bool changed = false;
    for (;;) {
        pthread_mutex_lock(&nc->lock);
        struct nc_volume *v = inst->volumes;
        while (v && !wants_work(v, inst->state == NC_STOPPED))
            v = v->next;
        struct qmp *q = inst->qmp;
        bool running = inst->state == NC_RUNNING && q && !inst->qemu_gone;
        bool microvm = inst->kernel.id != NULL;
        bool force = v && v->force;
        bool attach = v && v->state == NC_VOL_ATTACHING;
        bool grow = v && v->state == NC_VOL_ATTACHED;
        int64_t grow_to = v ? v->grow_to : 0;
        if (v && !running && grow) {
            /* The next start opens the export afresh, at its new size. */
            grow_done_locked(nc, inst, v, grow_to, NULL);
            changed = true;
            pthread_mutex_unlock(&nc->lock);
            continue;
        }
        if (v && !running) {
            /* No QEMU: the records are all there is (the next start puts
             * attached volumes on the command line). */
            set_vol_state(nc, inst, v,
                          v->state == NC_VOL_ATTACHING ? NC_VOL_ATTACHED
                                                       : NC_VOL_DETACHED,
                          NULL);
            changed = true;
            pthread_mutex_unlock(&nc->lock);
            continue;
        }
        pthread_mutex_unlock(&nc->lock);
        if (v == NULL)
            break;
        /* v stays in the list while the job runs: requests only add
         * records or change states, and reaping skips non-detached ones. */
        struct koala_error *err = NULL;
        int64_t t0 = time_mono_ms();
        int rc = grow     ? nc_volume_grow(q, v, grow_to, &err)
                 : attach ? plug(nc, q, v, microvm, &err)
                          : unplug(q, v, force, &err);
        pthread_mutex_lock(&nc->lock);
        if (grow) {
            grow_done_locked(nc, inst, v, grow_to, rc == 0 ? NULL : err);
            if (rc == 0)
                log_info("instance %s: volume %s grown to %lld bytes in "
                         "%lld ms",
                         inst->id, v->id, (long long)grow_to,
                         (long long)(time_mono_ms() - t0));
        } else if (rc == 0) {
            set_vol_state(nc, inst, v,
                          attach ? NC_VOL_ATTACHED : NC_VOL_DETACHED, NULL);
            log_info("instance %s: volume %s %s in %lld ms", inst->id, v->id,
                     attach ? "plugged" : "unplugged",
                     (long long)(time_mono_ms() - t0));
        } else if (attach) {
            set_vol_state(nc, inst, v, NC_VOL_DETACHED, error_message(err));
            snprintf(v->error_code, sizeof(v->error_code), "%s",
                     err && err->code ? err->code : "");
        } else {
            /* Still detaching: a new request (Force) tries again. */
            v->stuck = true;
            free(v->error);
            v->error = strdup(error_message(err));
            log_warn("instance %s: volume %s: %s", inst->id, v->id,
                     error_message(err));
            pthread_cond_broadcast(&nc->cond);
        }
        pthread_mutex_unlock(&nc->lock);
        error_free(err);
        changed = true;
    }
    if (changed)
        nc_save(nc, inst);
}

/* ---- the operations ---- */

static struct nc_instance *find(struct nc *nc, const char *id,
                                struct koala_error **err)
{
    struct nc_instance *inst = nc_find_locked(nc, id);
    if (inst == NULL)
        error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id);
    return inst;
}

/* The instance whose attachment this volume is (not detached), or NULL. */
static struct nc_instance *holder_locked(struct nc *nc, const char *volume_id,
                                         struct nc_volume **vol)
{
    for (struct nc_instance *i = nc->instances; i; i = i->next) {
        struct nc_volume *v = nc_volume_find(i, volume_id);
        if (v && v->state != NC_VOL_DETACHED) {
            *vol = v;
            return i;
        }
    }
    return NULL;
}

/* Lets the instance's settling do the work: a job that only settles when
 * none runs (one that runs settles when it ends).  Lock held. */
static int kick_locked(struct nc *nc, struct nc_instance *inst,
                       struct koala_error **err)
{
    if (inst->busy || nc->stopping)
        return 0;
    if (nc_job_spawn_locked(nc, inst, NULL) < 0)
        return error_set(err, EAGAIN, NULL, "cannot start a thread");
    return 0;
}

/* Waits (lock held) until v leaves `from` or the deadline passes. */
static void wait_leaves_locked(struct nc *nc, struct nc_volume *v,
                               enum nc_vol_state from, int64_t deadline)
{
    while (v->state == from && !v->stuck && !nc->stopping &&
           time_mono_ms() < deadline)
        nc_wait_locked(nc, deadline);
}

static void reply(struct xml_writer *w, const struct nc_instance *inst,
                  const struct nc_volume *v)
{
    char serial[24];
    nc_volume_serial(v->id, serial);
    xml_text_element(w, "instanceId", inst->id);
    xml_start(w, "volume");
    xml_text_element(w, "volumeId", v->id);
    xml_text_element(w, "device", v->device);
    xml_text_element(w, "state", nc_vol_state_name(v->state));
    xml_text_element(w, "serial", serial);
    if (v->error)
        xml_text_element(w, "statusMessage", v->error);
    xml_end(w);
}

/* ncAttachVolume brings the export of held, a record of ncRunInstance
 * without one (v: the request's).  A boot volume's waiting launch then
 * starts (settling the instance does it); another volume is plugged as
 * any attach.  Waits a while for the outcome, as an attach.  Lock held. */
static int export_arrives_locked(struct nc *nc, struct nc_instance *inst,
                                 struct nc_volume *held, struct nc_volume *v,
                                 struct xml_writer *w, struct koala_error **err)
{
    if (strcmp(held->device, v->device) != 0) {
        for (struct nc_volume *o = inst->volumes; o; o = o->next)
            if (o != held && o->state != NC_VOL_DETACHED &&
                strcmp(o->device, v->device) == 0)
                return error_set(err, EINVAL, "InvalidParameterValue",
                                 "Invalid value '%s' for unixDevice. "
                                 "Attachment point %s is already in use",
                                 v->device, v->device);
        free(held->device);
        held->device = v->device;
        v->device = NULL;
    }
    export_clear_move(&held->ex, &v->ex);
    log_info("instance %s: the export of %s%s came", inst->id, held->id,
             held->boot ? " (its boot volume)" : "");
    nc_notify_locked(nc, inst);
    if (kick_locked(nc, inst, err) < 0)
        return -1;
    pthread_mutex_unlock(&nc->lock);
    nc_save(nc, inst);
    pthread_mutex_lock(&nc->lock);
    wait_leaves_locked(nc, held, NC_VOL_ATTACHING,
                       time_mono_ms() + NC_ATTACH_WAIT_MS);
    if (held->state == NC_VOL_DETACHED && held->error)
        return error_set(
            err, EIO, held->error_code[0] ? held->error_code : NULL,
            "attaching %s to %s: %s", held->id, inst->id, held->error);
    if (held->boot && inst->state == NC_TERMINATED) /* its launch failed */
        return error_set(
            err, EIO, NULL, "booting %s from %s: %s", inst->id, held->id,
            inst->reason_message ? inst->reason_message : "terminated");
    reply(w, inst, held);
    return 0;
}

int nc_attach_volume(struct nc *nc, const char *instance_id,
                     struct nc_volume *v, struct xml_writer *w,
                     struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = find(nc, instance_id, err);
    struct nc_volume *held = NULL;
    struct nc_instance *holder = holder_locked(nc, v->id, &held);
    int rc = -1;
    size_t count = 0;
    bool used = false;
    if (inst == NULL)
        goto out;
    for (struct nc_volume *o = inst->volumes; o; o = o->next)
        if (o->state != NC_VOL_DETACHED) {
            count++;
            used |=
                strcmp(o->device, v->device) == 0 && strcmp(o->id, v->id) != 0;
        }
    if (holder == inst && !nc_volume_has_export(held)) {
        /* The export of a volume ncRunInstance gave without one. */
        rc = export_arrives_locked(nc, inst, held, v, w, err);
    } else if (holder == inst && strcmp(held->device, v->device) == 0 &&
               held->state != NC_VOL_DETACHING) {
        /* The same request again (a retry): the same answer. */
        reply(w, inst, held);
        rc = 0;
    } else if (v->boot && (inst->state != NC_STOPPED || nc_boot_volume(inst))) {
        /* (a root detached from a stopped instance may come back as its
         * root; otherwise the boot volume is ncRunInstance's) */
        error_set(err, EINVAL, "InvalidParameterValue",
                  "%s is not a boot volume of %s: a boot volume is given "
                  "by ncRunInstance, or attached again to a stopped "
                  "instance that has none",
                  v->id, inst->id);
    } else if (holder) {
        error_set(err, EBUSY, "VolumeInUse", "%s is already attached to %s",
                  v->id, holder->id);
    } else if (inst->want_terminate ||
               (inst->state != NC_RUNNING && inst->state != NC_PENDING &&
                inst->state != NC_STOPPED && inst->state != NC_STOPPING)) {
        error_set(err, EINVAL, "IncorrectInstanceState",
                  "The instance '%s' is not 'running' or 'stopped' (it is "
                  "%s)",
                  inst->id, nc_state_name(inst->state));
    } else if (used) {
        error_set(err, EINVAL, "InvalidParameterValue",
                  "Invalid value '%s' for unixDevice. Attachment point %s "
                  "is already in use",
                  v->device, v->device);
    } else if (count >= NC_MAX_VOLUMES) {
        error_set(err, ENOSPC, "AttachmentLimitExceeded",
                  "%s has %zu volumes attached, the most this node gives "
                  "an instance",
                  inst->id, count);
    } else {
        /* An old detached record of the volume is reused (a request may
         * still be waiting on it), else the new one goes last. */
        struct nc_volume *old = nc_volume_find(inst, v->id);
        if (old) {
            free(old->device);
            free(old->error);
            export_clear_move(&old->ex, &v->ex);
            old->device = v->device;
            v->device = NULL;
            old->error = NULL;
            old->error_code[0] = '\0';
            old->force = old->stuck = false;
            old->grow_to = 0;
            old->boot = v->boot;
            old->state = NC_VOL_ATTACHING;
            held = old;
        } else {
            struct nc_volume **tail = &inst->volumes;
            while (*tail)
                tail = &(*tail)->next;
            v->state = NC_VOL_ATTACHING;
            *tail = v;
            held = v;
            v = NULL;
        }
        log_info("instance %s: attaching %s as %s", inst->id, held->id,
                 held->device);
        nc_notify_locked(nc, inst);
        rc = kick_locked(nc, inst, err);
        if (rc == 0) {
            pthread_mutex_unlock(&nc->lock);
            nc_save(nc, inst);
            pthread_mutex_lock(&nc->lock);
            wait_leaves_locked(nc, held, NC_VOL_ATTACHING,
                               time_mono_ms() + NC_ATTACH_WAIT_MS);
            if (held->state == NC_VOL_DETACHED && held->error) {
                error_set(
                    err, EIO, held->error_code[0] ? held->error_code : NULL,
                    "attaching %s to %s: %s", held->id, inst->id, held->error);
                rc = -1;
            } else {
                reply(w, inst, held);
            }
        }
    }
out:
    pthread_mutex_unlock(&nc->lock);
    nc_volume_free(v);
    return rc;
}

int nc_detach_volume(struct nc *nc, const char *instance_id,
                     const char *volume_id, bool force, struct xml_writer *w,
                     struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = find(nc, instance_id, err);
    struct nc_volume *v = inst ? nc_volume_find(inst, volume_id) : NULL;
    int rc = -1;
    if (inst == NULL)
        goto out;
    if (v == NULL) {
        error_set(err, ENOENT, "InvalidAttachment.NotFound",
                  "The volume '%s' is not attached to instance '%s'", volume_id,
                  instance_id);
    } else if (v->boot && v->state != NC_VOL_DETACHED &&
               inst->state != NC_STOPPED) {
        /* The root disk: only of a stopped instance (EC2's words). */
        error_set(err, EINVAL, "IncorrectState",
                  "Unable to detach root volume '%s' from instance '%s'",
                  volume_id, instance_id);
    } else if (v->state == NC_VOL_ATTACHING && !nc_volume_has_export(v) &&
               !v->boot) {
        /* Its export never came: only a record to let go of. */
        set_vol_state(nc, inst, v, NC_VOL_DETACHED, NULL);
        pthread_mutex_unlock(&nc->lock);
        nc_save(nc, inst);
        pthread_mutex_lock(&nc->lock);
        reply(w, inst, v);
        rc = 0;
    } else if (v->state == NC_VOL_ATTACHING) {
        error_set(err, EINVAL, "IncorrectState",
                  "Volume '%s' is still being attached to '%s'", volume_id,
                  instance_id);
    } else if (v->state == NC_VOL_DETACHED) {
        reply(w, inst, v); /* a retry: done already */
        rc = 0;
    } else {
        if (v->state == NC_VOL_ATTACHED || v->stuck || (force && !v->force)) {
            v->force = v->force || force;
            v->stuck = false;
            if (v->state == NC_VOL_ATTACHED) {
                log_info("instance %s: detaching %s%s", inst->id, v->id,
                         force ? " (force)" : "");
                v->state = NC_VOL_DETACHING;
                free(v->error);
                v->error = NULL;
                nc_notify_locked(nc, inst);
            }
        }
        rc = kick_locked(nc, inst, err);
        if (rc == 0) {
            pthread_mutex_unlock(&nc->lock);
            nc_save(nc, inst);
            pthread_mutex_lock(&nc->lock);
            wait_leaves_locked(nc, v, NC_VOL_DETACHING,
                               time_mono_ms() + NC_ATTACH_WAIT_MS);
            reply(w, inst, v);
        }
    }
out:
    pthread_mutex_unlock(&nc->lock);
    return rc;
}

int nc_resize_volume(struct nc *nc, const char *instance_id,
                     const char *volume_id, int64_t size_bytes,
                     struct xml_writer *w, struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = find(nc, instance_id, err);
    struct nc_volume *v = inst ? nc_volume_find(inst, volume_id) : NULL;
    int rc = -1;
    if (inst == NULL)
        goto out;
    if (v == NULL || v->state == NC_VOL_DETACHED) {
        error_set(err, ENOENT, "InvalidAttachment.NotFound",
                  "The volume '%s' is not attached to instance '%s'", volume_id,
                  instance_id);
        goto out;
    }
    if (v->state == NC_VOL_ATTACHING) {
        /* No code: the caller asks again once it is plugged (an export
         * opened after the SC's growth has the size already). */
        error_set(err, EAGAIN, NULL, "Volume '%s' is still being attached",
                  volume_id);
        goto out;
    }
    if (v->state != NC_VOL_ATTACHED) {
        error_set(err, EINVAL, "IncorrectState",
                  "Volume '%s' is %s, not attached to '%s'", volume_id,
                  nc_vol_state_name(v->state), instance_id);
        goto out;
    }
    /* The work, unless the volume has the size already (a retry, or an
     * attach after the SC's growth, which opened the export at its new
     * size): then only the answer. */
    if (v->ex.size_bytes < size_bytes || v->grow_to > 0) {
        if (v->grow_to < size_bytes) {
            log_info("instance %s: growing %s to %lld bytes", inst->id, v->id,
                     (long long)size_bytes);
            v->grow_to = size_bytes;
        }
        if (kick_locked(nc, inst, err) < 0)
            goto out;
        pthread_mutex_unlock(&nc->lock);
        nc_save(nc, inst);
        pthread_mutex_lock(&nc->lock);
        int64_t deadline = time_mono_ms() + NC_ATTACH_WAIT_MS;
        while (v->state == NC_VOL_ATTACHED && v->grow_to > 0 && !nc->stopping &&
               time_mono_ms() < deadline)
            nc_wait_locked(nc, deadline);
        if (v->state != NC_VOL_ATTACHED) {
            error_set(err, EINVAL, "IncorrectState",
                      "Volume '%s' was detached from '%s' while it grew",
                      volume_id, instance_id);
            goto out;
        }
        if (v->grow_to > 0) {
            /* The caller asks again; the job goes on meanwhile. */
            error_set(err, EAGAIN, NULL, "%s is still growing", volume_id);
            goto out;
        }
        if (v->ex.size_bytes < size_bytes) {
            error_set(err, EIO, v->grow_code[0] ? v->grow_code : NULL,
                      "growing %s on %s: %s", volume_id, instance_id,
                      v->grow_error ? v->grow_error : "not done");
            goto out;
        }
    }
    reply(w, inst, v);
    xml_u64_element(w, "sizeBytes", (uint64_t)v->ex.size_bytes);
    rc = 0;
out:
    pthread_mutex_unlock(&nc->lock);
    return rc;
}
