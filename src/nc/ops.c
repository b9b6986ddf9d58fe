/* ops.c: the operations the SOAP interface offers on instances (run,
 * terminate, reboot, stop, start, console output) and, at startup, taking
 * over the instances found on disk: QEMUs still running are re-adopted,
 * interrupted jobs resumed.  The work itself is done by the jobs of
 * lifecycle.c; these only check, change state and start them.  See the
 * DESIGN and LOCKING notes in nc.h. */
#define LOG_MODULE "nc"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "antispoof.h"
#include "log.h"
#include "nc.h"
#include "sgfilter.h"
#include "util.h"

/* ---- operations ---- */

static struct nc_instance *find(struct nc *nc, const char *id,
                                struct koala_error **err)
{
    struct nc_instance *inst = nc_find_locked(nc, id);
    if (inst == NULL)
        error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id);
    return inst;
}

static int incorrect_state(const struct nc_instance *inst, const char *what,
                           struct koala_error **err)
{
    return error_set(err, EINVAL, "IncorrectInstanceState",
                     "The instance '%s' is not in a state from which it "
                     "can be %s (it is %s%s)",
                     inst->id, what, nc_state_name(inst->state),
                     inst->busy ? ", busy" : "");
}

/* A tap name (at most 15 bytes) no other instance of the node uses:
 * "tap" and the id's last 12 digits, or, should two ids end alike, a
 * counter and the last 10.  Lock held. */
static void pick_tap_locked(struct nc *nc, struct nc_instance *inst)
{
    size_t n = strlen(inst->id);
    for (unsigned k = 0; k < 256; k++) {
        if (k == 0)
            snprintf(inst->tap, sizeof(inst->tap), "tap%s",
                     inst->id + (n > 14 ? n - 12 : 2));
        else
            snprintf(inst->tap, sizeof(inst->tap), "tap%02x%s", k,
                     inst->id + (n > 12 ? n - 10 : 2));
        bool used = false;
        for (struct nc_instance *i = nc->instances; i && !used; i = i->next)
            used = i->state != NC_TERMINATED && strcmp(i->tap, inst->tap) == 0;
        if (!used)
            return;
    }
}

int nc_run_instance(struct nc *nc, struct nc_instance *inst,
                    struct xml_writer *w, struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *old = nc_find_locked(nc, inst->id);
    if (old) { /* a repeated request (the CC retrying): same answer */
        nc_instance_describe(nc, old, w, "instance");
        pthread_mutex_unlock(&nc->lock);
        nc_instance_free(inst);
        return 0;
    }
    if (nc->stopping) {
        pthread_mutex_unlock(&nc->lock);
        nc_instance_free(inst);
        return error_set(err, ESHUTDOWN, "ServiceUnavailable",
                         "the node is shutting down");
    }
    struct nc_resources r;
    nc_resources_locked(nc, &r);
    if (inst->type.cores > r.cores_free ||
        inst->type.memory_mb > r.memory_mb_free ||
        inst->type.disk_gb > r.disk_gb_free) {
        error_set(err, ENOSPC, "InsufficientInstanceCapacity",
                  "node %s cannot host %s (%lld cores, %lld MiB, %lld GiB): "
                  "%lld cores, %lld MiB, %lld GiB available",
                  nc->name, inst->type.name, (long long)inst->type.cores,
                  (long long)inst->type.memory_mb,
                  (long long)inst->type.disk_gb, (long long)r.cores_free,
                  (long long)r.memory_mb_free, (long long)r.disk_gb_free);
        pthread_mutex_unlock(&nc->lock);
        nc_instance_free(inst);
        return -1;
    }
    inst->state = NC_PENDING;
    inst->hv = nc->hv;
    inst->launch_time_ms = time_now_ms();
    pick_tap_locked(nc, inst);
    if (asprintf(&inst->dir, "%s/%s", nc->inst_dir, inst->id) < 0)
        inst->dir = NULL;
    if (inst->bridge == NULL || inst->bridge[0] == '\0') {
        free(inst->bridge);
        inst->bridge = strdup(nc->bridge);
    }
    if (inst->dir == NULL || inst->bridge == NULL) {
        pthread_mutex_unlock(&nc->lock);
        nc_instance_free(inst);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    inst->busy = true; /* nothing may start on it before its launch */
    inst->next = nc->instances;
    nc->instances = inst;
    pthread_mutex_unlock(&nc->lock);
    int rc = nc_mkdir_p(inst->dir, err);
    if (rc == 0)
        rc = nc_instance_save(nc, inst, err);
    pthread_mutex_lock(&nc->lock);
    if (rc < 0) {
        /* Without its state file the instance cannot be kept: it ends
         * here (the record stays, terminated, like any other). */
        inst->terminated_ms = time_mono_ms();
        nc_set_state_locked(nc, inst, NC_TERMINATED, "Server.InternalError",
                            error_message(*err));
        inst->busy = false;
        pthread_mutex_unlock(&nc->lock);
        nc_rmtree(inst->dir, NULL);
        return -1;
    }
    const struct nc_volume *bv = nc_boot_volume(inst);
    log_info("instance %s: pending (%s, %s %s)", inst->id, inst->type.name,
             inst->image.id ? "image" : "boot volume",
             inst->image.id ? inst->image.id
             : bv           ? bv->id
                            : "?");
    nc_notify_locked(nc, inst);
    inst->busy = false;
    if (nc_job_spawn_locked(nc, inst, nc_launch_job) < 0) {
        inst->busy = true; /* nobody will run it: fail it right away */
        nc_set_state_locked(nc, inst, NC_TERMINATED, "Server.InternalError",
                            "cannot start the launch");
        inst->terminated_ms = time_mono_ms();
        inst->busy = false;
    }
    nc_instance_describe(nc, inst, w, "instance");
    pthread_mutex_unlock(&nc->lock);
    return 0;
}

int nc_terminate_instance(struct nc *nc, const char *id, struct xml_writer *w,
                          struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = find(nc, id, err);
    bool save_it = false;
    if (inst && inst->state != NC_TERMINATED && !inst->want_terminate) {
        inst->want_terminate = true;
        nc_set_state_locked(nc, inst, NC_SHUTTING_DOWN, NULL, NULL);
        if (inst->busy) /* its job ends first, then settles */
            save_it = true;
        else if (nc_job_spawn_locked(nc, inst, NULL) < 0)
            inst->want_terminate = false; /* retried on the next request */
    }
    if (inst)
        nc_instance_describe(nc, inst, w, "instance");
    pthread_mutex_unlock(&nc->lock);
    if (save_it)
        nc_save(nc, inst);
    return inst ? 0 : -1;
}

/* Starts fn on an idle instance in state `from` (moving it to `to`);
 * an instance already in one of the `same` states is left as it is. */
static int simple_op(struct nc *nc, const char *id, enum nc_state from,
                     enum nc_state to, unsigned same, nc_job_fn fn,
                     const char *what, struct xml_writer *w,
                     struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = find(nc, id, err);
    int rc = inst ? 0 : -1;
    /* A job that has already moved the instance to `from` (a guest's own
     * shutdown reaching "stopped") may still be tidying up after it (the
     * nft rewrite): a request that saw the new state waits for that
     * rather than being refused for a state it was just shown. */
    int64_t deadline = time_mono_ms() + 10000;
    while (inst && inst->busy && inst->state == from &&
           !inst->want_terminate && !nc->stopping &&
           time_mono_ms() < deadline)
        nc_wait_locked(nc, deadline);
    if (inst && (same & (1u << inst->state)) && !inst->want_terminate) {
        /* nothing to do */
    } else if (inst && inst->state == from && !inst->busy &&
               !inst->want_terminate) {
        nc_set_state_locked(nc, inst, to, NULL, NULL);
        if (nc_job_spawn_locked(nc, inst, fn) < 0)
            rc = error_set(err, EAGAIN, NULL, "cannot start a thread");
    } else if (inst) {
        rc = incorrect_state(inst, what, err);
    }
    if (rc == 0)
        nc_instance_describe(nc, inst, w, "instance");
    pthread_mutex_unlock(&nc->lock);
    return rc;
}

int nc_reboot_instance(struct nc *nc, const char *id, struct xml_writer *w,
                       struct koala_error **err)
{
    return simple_op(nc, id, NC_RUNNING, NC_RUNNING, 0, nc_reboot_job,
                     "rebooted", w, err);
}

int nc_stop_instance(struct nc *nc, const char *id, struct xml_writer *w,
                     struct koala_error **err)
{
    return simple_op(nc, id, NC_RUNNING, NC_STOPPING,
                     1u << NC_STOPPING | 1u << NC_STOPPED, nc_stop_job,
                     "stopped", w, err);
}

int nc_start_instance(struct nc *nc, const char *id, struct xml_writer *w,
                      struct koala_error **err)
{
    /* One that boots from a volume needs it (it may have been detached
     * while stopped).  A detach while the start is under way is refused
     * (volops.c), so this holds once it starts. */
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = nc_find_locked(nc, id);
    bool no_root =
        inst && inst->state == NC_STOPPED && nc_boot_volume_missing(inst);
    pthread_mutex_unlock(&nc->lock);
    if (no_root)
        return error_set(err, EINVAL, "IncorrectInstanceState",
                         "The instance '%s' has no root volume: it cannot "
                         "be started",
                         id);
    return simple_op(nc, id, NC_STOPPED, NC_PENDING,
                     1u << NC_PENDING | 1u << NC_RUNNING, nc_start_job,
                     "started", w, err);
}

int nc_console_output(struct nc *nc, const char *id, char **out, size_t *len,
                      struct koala_error **err)
{
    pthread_mutex_lock(&nc->lock);
    struct nc_instance *inst = find(nc, id, err);
    char path[4096] = "";
    *out = NULL;
    *len = 0;
    if (inst && inst->state == NC_TERMINATED) {
        *out = malloc(inst->console_len + 1);
        if (*out) {
            memcpy(*out, inst->console ? inst->console : "", inst->console_len);
            (*out)[inst->console_len] = '\0';
            *len = inst->console_len;
        }
    } else if (inst) {
        snprintf(path, sizeof(path), "%s/console.log", inst->dir);
    }
    pthread_mutex_unlock(&nc->lock);
    if (inst == NULL)
        return -1;
    if (path[0])
        *out = nc_read_tail(path, NC_CONSOLE_MAX, len);
    if (*out == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

void nc_instances_reap_locked(struct nc *nc)
{
    int64_t now = time_mono_ms();
    int64_t ttl = (int64_t)nc->opt.terminated_ttl_s * 1000;
    for (struct nc_instance **p = &nc->instances; *p;) {
        struct nc_instance *i = *p;
        if (i->state == NC_TERMINATED && !i->busy && !i->watching &&
            now - i->terminated_ms >= ttl) {
            *p = i->next;
            log_debug("instance %s: forgotten", i->id);
            nc_instance_free(i);
        } else {
            nc_volumes_reap_locked(i, now, 600 * 1000);
            p = &i->next;
        }
    }
}

/* ---- startup: re-adopting ---- */

/* Reconnects to the instance's QEMU if it still runs.  1: adopted, 0: no
 * QEMU (or one that would not answer, now killed). */
static int adopt(struct nc *nc, struct nc_instance *inst)
{
    pid_t pid = nc_vm_read_pid(inst->dir);
    if (!nc_vm_alive(pid, inst->id))
        return 0;
    char sock[4096];
    snprintf(sock, sizeof(sock), "%s/qmp.sock", inst->dir);
    struct koala_error *err = NULL;
    struct qmp *q = qmp_connect(sock, 10000, &err);
    json_t *st = q ? qmp_execute(q, "query-status", NULL, 5000, &err) : NULL;
    if (st == NULL) {
        log_error("instance %s: QEMU pid %d does not answer (%s): killing it",
                  inst->id, (int)pid, error_message(err));
        error_free(err);
        qmp_free(q);
        nc_vm_kill(pid, inst->id);
        return 0;
    }
    const char *status = json_string_value(json_object_get(st, "status"));
    bool shut = status && strcmp(status, "shutdown") == 0;
    log_info("instance %s: re-adopted QEMU pid %d (%s)", inst->id, (int)pid,
             status ? status : "?");
    /* Started paused (vm.c) and the NC went away before letting it go. */
    if (status && strcmp(status, "prelaunch") == 0 &&
        nc_vm_resume(q, pid, nc->opt.vm_nice, &err) < 0) {
        log_error("instance %s: %s: killing it", inst->id, error_message(err));
        error_free(err);
        json_decref(st);
        qmp_free(q);
        nc_vm_kill(pid, inst->id);
        return 0;
    }
    json_decref(st);
    pthread_mutex_lock(&nc->lock);
    inst->qmp = q;
    inst->pid = pid;
    int rc = nc_watch_locked(nc, inst);
    if (rc == 0 && shut)
        inst->guest_shutdown = true; /* powered off while we were away */
    pthread_mutex_unlock(&nc->lock);
    if (rc < 0) {
        pthread_mutex_lock(&nc->lock);
        inst->qmp = NULL;
        pthread_mutex_unlock(&nc->lock);
        qmp_free(q);
        return 0;
    }
    return 1;
}

/* Reads instances/<id>: the instance (its images pinned), or NULL when
 * there is none to keep. */
static struct nc_instance *load_one(struct nc *nc, const char *id)
{
    _cleanup_free_ char *dir = NULL, *path = NULL;
    if (asprintf(&dir, "%s/%s", nc->inst_dir, id) < 0 ||
        asprintf(&path, "%s/instance.json", dir) < 0)
        return NULL;
    struct koala_error *err = NULL;
    size_t len;
    _cleanup_free_ char *text = nc_read_file(path, 1 << 20, &len, &err);
    struct nc_instance *inst =
        text ? nc_instance_from_json(text, len, &err) : NULL;
    if (inst == NULL || strcmp(inst->id, id) != 0) {
        /* A directory whose launch never got as far as its state file. */
        log_warn("instances/%s: %s: removed", id,
                 inst ? "id does not match" : error_message(err));
        error_free(err);
        nc_instance_free(inst);
        nc_rmtree(dir, NULL);
        return NULL;
    }
    inst->dir = dir;
    dir = NULL;
    if (inst->state == NC_TERMINATED) {
        nc_rmtree(inst->dir, NULL);
        nc_instance_free(inst);
        return NULL;
    }
    const char *shas[3] = {inst->image.id ? inst->image.sha256 : NULL,
                           inst->kernel.id ? inst->kernel.sha256 : NULL,
                           inst->ramdisk.id ? inst->ramdisk.sha256 : NULL};
    for (int i = 0; i < 3; i++) {
        if (shas[i] == NULL)
            continue;
        inst->pinned[i] = nc_cache_pin(nc->cache, shas[i], NULL, NULL) == 0;
        if (!inst->pinned[i] && inst->booted)
            log_error("instance %s: image %s is no longer cached", inst->id,
                      shas[i]);
    }
    return inst;
}

/* Takes a loaded instance over: re-adopts its QEMU and starts what its
 * state needs. */
static void take_over(struct nc *nc, struct nc_instance *inst)
{
    enum nc_state st = inst->state;
    if (st == NC_SHUTTING_DOWN)
        inst->want_terminate = true;
    /* Busy until it is set up: a watcher's kick must not start a job
     * before the one chosen below. */
    inst->busy = true;
    int adopted = st == NC_STOPPED ? 0 : adopt(nc, inst);
    pthread_mutex_lock(&nc->lock);
    inst->next = nc->instances;
    nc->instances = inst;
    inst->busy = false;
    nc_job_fn fn = NULL;
    bool spawn = true;
    switch (st) {
    case NC_PENDING:
        if (adopted) {
            inst->booted = true;
            nc_volumes_booted_locked(nc, inst);
            nc_set_state_locked(nc, inst, NC_RUNNING, NULL, NULL);
        } else {
            fn = inst->booted ? nc_start_job : nc_launch_job;
        }
        break;
    case NC_RUNNING:
        if (!adopted)
            fn = nc_crash_job;
        break;
    case NC_STOPPING:
        fn = adopted ? nc_stop_job : nc_finish_stop_job;
        break;
    case NC_SHUTTING_DOWN:
        break; /* settle terminates */
    default:
        /* A stopped one only has attachment records to settle. */
        spawn = st == NC_STOPPED && nc_volumes_pending_locked(inst);
        break;
    }
    if (spawn) /* fn NULL: settles whatever the watcher saw meanwhile */
        nc_job_spawn_locked(nc, inst, fn);
    pthread_mutex_unlock(&nc->lock);
    if (adopted && st == NC_PENDING)
        nc_save(nc, inst);
    log_info("instance %s: loaded (%s%s)", inst->id, nc_state_name(st),
             adopted ? ", QEMU running" : "");
}

int nc_instances_load(struct nc *nc, struct koala_error **err)
{
    DIR *d = opendir(nc->inst_dir);
    if (d == NULL)
        return error_set_errno(err, "opendir %s", nc->inst_dir);
    struct dirent *de;
    struct nc_instance *loaded = NULL;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (!nc_valid_instance_id(de->d_name)) {
            log_warn("instances/%s: not an instance: left alone", de->d_name);
            continue;
        }
        struct nc_instance *inst = load_one(nc, de->d_name);
        if (inst) {
            inst->next = loaded;
            loaded = inst;
        }
    }
    closedir(d);
    /* The anti-spoofing table is rewritten from what is on disk before any
     * QEMU is touched (it may have been lost or be stale).  A failure
     * leaves the kernel's table as it was; launches fail until nft works. */
    struct koala_error *e = NULL;
    if (nc_antispoof_sync_list(nc, loaded, &e) < 0)
        log_error("%s", error_message(e));
    error_clear(&e);
    /* So is the security-group table, from the held policy. */
    if (nc_sgfilter_sync_list(nc, loaded, &e) < 0)
        log_error("%s", error_message(e));
    error_free(e);
    while (loaded) {
        struct nc_instance *inst = loaded;
        loaded = inst->next;
        inst->next = NULL;
        take_over(nc, inst);
    }
    return 0;
}
