/* lifecycle.c: what happens to instances: the jobs that do the work in
 * the background (launch, start, stop, reboot, terminate), the watchers of
 * the QEMU processes, and settling an instance after either (see the
 * DESIGN and LOCKING notes in nc.h; the operations are in ops.c).
 *
 * States:  pending -> running -> stopping -> stopped -> pending ...
 *          any -> shutting-down -> terminated
 * A launch that fails ends terminated with the failure's reason; a start
 * that fails goes back to stopped.  A guest that powers itself off is
 * stopped (EC2's instance-initiated shutdown behaviour "stop"); a QEMU that
 * dies any other way is terminated with Server.InternalError.
 *
 * An instance without an image boots from its boot volume (volumes.c):
 * its launch downloads nothing, makes no root disk and gives QEMU the
 * volume as its first disk.  Until the volume's export came (through
 * ncAttachVolume) the launch ends at once leaving the instance pending
 * and `awaiting_export`; settling starts it again once the export is
 * there (after a restart of koala-nc the loaded launch does the same).
 */
#define LOG_MODULE "nc"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "antispoof.h"
#include "log.h"
#include "nc.h"
#include "sgfilter.h"
#include "util.h"

static void settle(struct nc *nc, struct nc_instance *inst);

/* ---- small helpers ---- */

static void set_reason(struct nc_instance *inst, const char *code,
                       const char *msg)
{
    free(inst->reason_code);
    free(inst->reason_message);
    inst->reason_code = code ? strdup(code) : NULL;
    inst->reason_message = msg ? strdup(msg) : NULL;
}

/* Moves inst to st (with a reason, or none) and tells the CC.  While a
 * terminate is wanted the instance shows shutting-down whatever its job
 * does meanwhile.  Lock held. */
void nc_set_state_locked(struct nc *nc, struct nc_instance *inst,
                         enum nc_state st, const char *code, const char *msg)
{
    if (inst->want_terminate && st != NC_TERMINATED)
        st = NC_SHUTTING_DOWN;
    enum nc_state was = inst->state;
    inst->state = st;
    if (code || st == NC_PENDING || st == NC_RUNNING)
        set_reason(inst, code, msg);
    if (was != st) {
        log_info("instance %s: %s -> %s%s%s", inst->id, nc_state_name(was),
                 nc_state_name(st), inst->reason_code ? " " : "",
                 inst->reason_code ? inst->reason_code : "");
        nc_notify_locked(nc, inst);
    }
    pthread_cond_broadcast(&nc->cond);
}

static void set_state(struct nc *nc, struct nc_instance *inst, enum nc_state st,
                      const char *code, const char *msg)
{
    pthread_mutex_lock(&nc->lock);
    nc_set_state_locked(nc, inst, st, code, msg);
    pthread_mutex_unlock(&nc->lock);
}

void nc_save(struct nc *nc, struct nc_instance *inst)
{
    struct koala_error *err = NULL;
    if (nc_instance_save(nc, inst, &err) < 0)
        log_error("instance %s: saving its state: %s", inst->id,
                  error_message(err));
    error_free(err);
}

static bool stopping(struct nc *nc)
{
    pthread_mutex_lock(&nc->lock);
    bool s = nc->stopping;
    pthread_mutex_unlock(&nc->lock);
    return s;
}

/* An error's EC2 state reason code: "Client.X"/"Server.X" as they are,
 * anything else is the node's trouble. */
static const char *reason_code(const struct koala_error *e)
{
    const char *c = e ? e->code : NULL;
    if (c && (str_has_prefix(c, "Client.") || str_has_prefix(c, "Server.")))
        return c;
    return "Server.InternalError";
}

/* ---- the watcher: one thread per live QEMU ---- */

struct thread_arg {
    struct nc *nc;
    struct nc_instance *inst;
    nc_job_fn fn;
};

/* Something may need doing and no job runs: start one that settles the
 * instance.  Lock held. */
static void kick_locked(struct nc *nc, struct nc_instance *inst)
{
    if (!inst->busy && !nc->stopping)
        nc_job_spawn_locked(nc, inst, NULL);
}

static void *watcher_main(void *arg)
{
    struct thread_arg *a = arg;
    struct nc *nc = a->nc;
    struct nc_instance *inst = a->inst;
    free(a);
    pthread_mutex_lock(&nc->lock);
    struct qmp *q = inst->qmp;
    pid_t pid = inst->pid;
    pthread_mutex_unlock(&nc->lock);
    bool gone = false;
    int64_t next_check = time_mono_ms() + 1000;
    while (!stopping(nc)) {
        json_t *ev = NULL;
        int rc = qmp_next_event(q, 500, &ev, NULL);
        if (rc < 0) {
            gone = true;
            break;
        }
        if (rc == 1) {
            const char *name = qmp_event_name(ev);
            json_t *data = json_object_get(ev, "data");
            log_debug("instance %s: QMP event %s", inst->id, name);
            if (strcmp(name, "SHUTDOWN") == 0 &&
                json_is_true(json_object_get(data, "guest"))) {
                pthread_mutex_lock(&nc->lock);
                log_info("instance %s: the guest shut down (%s)", inst->id,
                         json_string_value(json_object_get(data, "reason")));
                inst->guest_shutdown = true;
                kick_locked(nc, inst);
                pthread_cond_broadcast(&nc->cond);
                pthread_mutex_unlock(&nc->lock);
            }
            json_decref(ev);
        }
        if (time_mono_ms() >= next_check) {
            next_check = time_mono_ms() + 1000;
            if (!nc_vm_alive(pid, inst->id)) {
                gone = true;
                break;
            }
        }
    }
    pthread_mutex_lock(&nc->lock);
    if (gone) {
        inst->qemu_gone = true;
        log_info("instance %s: QEMU (pid %d) is gone", inst->id, (int)pid);
        kick_locked(nc, inst);
    }
    inst->watching = false;
    nc->threads--;
    pthread_cond_broadcast(&nc->cond);
    pthread_mutex_unlock(&nc->lock);
    return NULL;
}

/* inst->qmp and inst->pid are set.  Lock held. */
int nc_watch_locked(struct nc *nc, struct nc_instance *inst)
{
    struct thread_arg *a = malloc(sizeof(*a));
    if (a == NULL)
        return -1;
    *a = (struct thread_arg){nc, inst, NULL};
    inst->qemu_gone = false;
    inst->guest_shutdown = false;
    inst->watching = true;
    nc->threads++;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&(pthread_t){0}, &at, watcher_main, a);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        free(a);
        inst->watching = false;
        nc->threads--;
        return -1;
    }
    return 0;
}

/* ---- jobs ---- */

static void *job_main(void *arg)
{
    struct thread_arg *a = arg;
    struct nc *nc = a->nc;
    struct nc_instance *inst = a->inst;
    nc_job_fn fn = a->fn;
    free(a);
    if (fn)
        fn(nc, inst);
    settle(nc, inst); /* clears busy */
    pthread_mutex_lock(&nc->lock);
    nc->threads--;
    pthread_cond_broadcast(&nc->cond);
    pthread_mutex_unlock(&nc->lock);
    return NULL;
}

/* Starts fn (NULL: only settle) on a thread of its own; inst is busy
 * until it ends.  Lock held. */
int nc_job_spawn_locked(struct nc *nc, struct nc_instance *inst, nc_job_fn fn)
{
    struct thread_arg *a = malloc(sizeof(*a));
    if (a == NULL)
        return -1;
    *a = (struct thread_arg){nc, inst, fn};
    inst->busy = true;
    nc->threads++;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&(pthread_t){0}, &at, job_main, a);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        free(a);
        inst->busy = false;
        nc->threads--;
        log_error("instance %s: cannot start a thread", inst->id);
        return -1;
    }
    return 0;
}

/* Ends QEMU: quit over QMP, SIGKILL if that does not do it, then waits
 * for the watcher to stop and drops the QMP connection.  No lock held. */
static void qemu_end(struct nc *nc, struct nc_instance *inst)
{
    pthread_mutex_lock(&nc->lock);
    struct qmp *q = inst->qmp;
    pid_t pid = inst->pid;
    pthread_mutex_unlock(&nc->lock);
    if (q && !qmp_closed(q))
        json_decref(qmp_execute(q, "quit", NULL, 3000, NULL));
    pthread_mutex_lock(&nc->lock);
    int64_t deadline = time_mono_ms() + 5000;
    while (inst->watching && time_mono_ms() < deadline)
        nc_wait_locked(nc, deadline);
    pthread_mutex_unlock(&nc->lock);
    for (int i = 0; i < 100 && nc_vm_alive(pid, inst->id); i++)
        usleep(20000); /* QEMU closes QMP a little before it exits */
    if (nc_vm_alive(pid, inst->id)) {
        log_warn("instance %s: QEMU (pid %d) did not quit: killing it",
                 inst->id, (int)pid);
        nc_vm_kill(pid, inst->id);
    }
    pthread_mutex_lock(&nc->lock);
    /* The watcher sees the pid gone within a second. */
    while (inst->watching)
        nc_wait_locked(nc, time_mono_ms() + 1000);
    q = inst->qmp;
    inst->qmp = NULL;
    inst->pid = 0;
    pthread_mutex_unlock(&nc->lock);
    qmp_free(q);
}

/* Starts QEMU with hypervisor hv, connects QMP and starts the watcher. */
static int qemu_start(struct nc *nc, struct nc_instance *inst, enum nc_hv hv,
                      struct koala_error **err)
{
    _cleanup_free_ char *root = NULL, *eph = NULL, *kernel = NULL,
                        *initrd = NULL, *sock = NULL, *append = NULL;
    if ((inst->image.id && asprintf(&root, "%s/root.qcow2", inst->dir) < 0) ||
        asprintf(&eph, "%s/ephemeral.qcow2", inst->dir) < 0 ||
        asprintf(&sock, "%s/qmp.sock", inst->dir) < 0 ||
        (append = nc_hv_append(nc, hv)) == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (inst->kernel.id)
        kernel = nc_cache_path(nc->cache, inst->kernel.sha256);
    if (inst->ramdisk.id)
        initrd = nc_cache_path(nc->cache, inst->ramdisk.sha256);
    struct nc_vm_spec s = {
        .qemu = nc->opt.qemu,
        .hv = hv,
        .name = inst->id,
        .dir = inst->dir,
        .cores = inst->type.cores,
        .memory_mb = inst->type.memory_mb,
        .kernel = kernel,
        .initrd = initrd,
        .append = kernel ? append : NULL,
        .root = root,
        .ephemeral = inst->type.disk_gb > 0 ? eph : NULL,
        .tap = inst->tap,
        .mac = inst->mac,
        .netns_fd = nc->netns_fd,
        .paused = true,
    };
    /* Its volumes (and, on a microvm, the bus they plug into later). */
    pthread_mutex_lock(&nc->lock);
    char **extra = nc_volumes_qemu_args_locked(nc, inst);
    pthread_mutex_unlock(&nc->lock);
    if (extra == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    s.extra = extra;
    pid_t pid = 0;
    int launched = nc_vm_launch(&s, &pid, err);
    nc_strv_free(extra);
    if (launched < 0)
        return -1;
    struct qmp *q = qmp_connect(sock, 10000, err);
    if (q == NULL) {
        nc_vm_kill(pid, inst->id);
        error_prefix(*err, "QEMU's monitor");
        return -1;
    }
    if (nc_vm_resume(q, pid, nc->opt.vm_nice, err) < 0) {
        qmp_free(q);
        nc_vm_kill(pid, inst->id);
        return -1;
    }
    pthread_mutex_lock(&nc->lock);
    inst->qmp = q;
    inst->pid = pid;
    inst->hv = hv;
    int rc = nc_watch_locked(nc, inst);
    pthread_mutex_unlock(&nc->lock);
    if (rc < 0) {
        qemu_end(nc, inst);
        return error_set(err, EAGAIN, NULL, "cannot start a thread");
    }
    log_info("instance %s: QEMU pid %d (%s)", inst->id, (int)pid,
             nc_hv_name(hv));
    return 0;
}

static off_t console_size(const struct nc_instance *inst)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/console.log", inst->dir);
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Plugs the tap and starts QEMU, with KVM when the node says so.  A KVM
 * launch not forced by the config is a probe: QEMU must start and the
 * guest must write to its console in time, else it is relaunched with
 * TCG and the node remembers that KVM does not work here. */
static int boot(struct nc *nc, struct nc_instance *inst,
                struct koala_error **err)
{
    if (nc_antispoof_check(inst->id, inst->tap, inst->mac, inst->private_ip,
                           err) < 0 ||
        nc_sgfilter_ready(nc, err) < 0)
        return -1;
    if (nc_tap_add(nc, inst->tap, inst->bridge, err) < 0)
        return -1;
    /* No frame of the guest may pass unfiltered: its chains (anti-spoofing
     * and security groups) are in before QEMU opens the tap. */
    if (nc_antispoof_sync(nc, err) < 0 || nc_sgfilter_sync(nc, err) < 0) {
        nc_tap_del(nc, inst->tap, NULL);
        return -1;
    }
    pthread_mutex_lock(&nc->lock);
    enum nc_hv hv = nc->hv;
    bool probe = hv == NC_HV_KVM && !nc->hv_forced;
    pthread_mutex_unlock(&nc->lock);
    off_t since = console_size(inst);
    int64_t t0 = time_mono_ms();
    struct koala_error *e = NULL;
    int rc = qemu_start(nc, inst, hv, probe ? &e : err);
    if (probe) {
        char why[1024];
        if (rc < 0) {
            snprintf(why, sizeof(why), "KVM launch of %s failed: %s", inst->id,
                     error_message(e));
        } else if (!nc_vm_wait_console(inst->dir, inst->pid, inst->id, since,
                                       nc->opt.kvm_probe_timeout_s * 1000)) {
            snprintf(why, sizeof(why),
                     "%s wrote nothing to its console with KVM within %u s",
                     inst->id, nc->opt.kvm_probe_timeout_s);
            qemu_end(nc, inst);
            rc = -1;
        } else {
            snprintf(why, sizeof(why), "%s booted with KVM in %lld ms",
                     inst->id, (long long)(time_mono_ms() - t0));
        }
        error_free(e);
        if (rc < 0) {
            log_warn("%s: falling back to TCG", why);
            nc_hv_record(nc, NC_HV_TCG, why);
            rc = qemu_start(nc, inst, NC_HV_TCG, err);
        } else {
            pthread_mutex_lock(&nc->lock);
            bool verified = nc->hv_verified;
            pthread_mutex_unlock(&nc->lock);
            if (!verified)
                nc_hv_record(nc, NC_HV_KVM, why);
        }
    }
    if (rc < 0)
        nc_tap_del(nc, inst->tap, NULL);
    return rc;
}

/* The instance left the states that have a tap: its chains go. */
static void antispoof_resync(struct nc *nc, struct nc_instance *inst)
{
    struct koala_error *err = NULL;
    if (nc_antispoof_sync(nc, &err) < 0)
        log_error("instance %s: %s", inst->id, error_message(err));
    error_clear(&err);
    if (nc_sgfilter_sync(nc, &err) < 0)
        log_error("instance %s: %s", inst->id, error_message(err));
    error_free(err);
}

/* Frees everything of an instance and ends it terminated.  Its last
 * console output stays in memory for GetConsoleOutput. */
static void terminate_now(struct nc *nc, struct nc_instance *inst,
                          const char *code, const char *msg)
{
    set_state(nc, inst, NC_SHUTTING_DOWN, NULL, NULL);
    nc_save(nc, inst);
    qemu_end(nc, inst);
    struct koala_error *err = NULL;
    if (nc_tap_del(nc, inst->tap, &err) < 0)
        log_error("instance %s: %s", inst->id, error_message(err));
    error_clear(&err);
    char path[4096];
    snprintf(path, sizeof(path), "%s/console.log", inst->dir);
    size_t len = 0;
    char *console = nc_read_tail(path, NC_CONSOLE_MAX, &len);
    const char *shas[3] = {inst->image.sha256, inst->kernel.sha256,
                           inst->ramdisk.sha256};
    for (int i = 0; i < 3; i++) {
        pthread_mutex_lock(&nc->lock);
        bool pinned = inst->pinned[i];
        inst->pinned[i] = false;
        pthread_mutex_unlock(&nc->lock);
        if (pinned)
            nc_cache_unpin(nc->cache, shas[i]);
    }
    if (nc_rmtree(inst->dir, &err) < 0)
        log_error("instance %s: %s", inst->id, error_message(err));
    error_free(err);
    pthread_mutex_lock(&nc->lock);
    free(inst->console);
    inst->console = console;
    inst->console_len = len;
    inst->want_terminate = false;
    inst->terminated_ms = time_mono_ms();
    nc_volumes_qemu_gone_locked(nc, inst, true);
    nc_set_state_locked(nc, inst, NC_TERMINATED, code, msg);
    pthread_mutex_unlock(&nc->lock);
    antispoof_resync(nc, inst);
}

/* QEMU is gone or no longer needed: the instance is stopped. */
static void stop_now(struct nc *nc, struct nc_instance *inst, const char *code,
                     const char *msg)
{
    qemu_end(nc, inst);
    struct koala_error *err = NULL;
    if (nc_tap_del(nc, inst->tap, &err) < 0)
        log_error("instance %s: %s", inst->id, error_message(err));
    error_free(err);
    pthread_mutex_lock(&nc->lock);
    nc_volumes_qemu_gone_locked(nc, inst, false);
    nc_set_state_locked(nc, inst, NC_STOPPED, code, msg);
    pthread_mutex_unlock(&nc->lock);
    nc_save(nc, inst);
    antispoof_resync(nc, inst);
}

enum action {
    ACT_NONE,
    ACT_TERMINATE,
    ACT_GUEST_STOP,
    ACT_CRASH,
    ACT_VOLUMES,
    ACT_LAUNCH,
};

/* A launch waited for its boot volume's export, which is there now. */
static bool export_came_locked(const struct nc_instance *inst)
{
    const struct nc_volume *v = nc_boot_volume(inst);
    return inst->state == NC_PENDING && inst->awaiting_export && v &&
           nc_volume_has_export(v);
}

static enum action next_action_locked(struct nc *nc, struct nc_instance *inst)
{
    if (nc->stopping)
        return ACT_NONE;
    if (inst->want_terminate && inst->state != NC_TERMINATED)
        return ACT_TERMINATE;
    if (inst->state == NC_RUNNING && inst->guest_shutdown)
        return ACT_GUEST_STOP;
    if (inst->state == NC_RUNNING && inst->qemu_gone)
        return ACT_CRASH;
    /* Attachments to plug or unplug (volops.c), with its QEMU running or
     * none at all (stopped, or a launch waiting for its boot volume). */
    if ((inst->state == NC_RUNNING || inst->state == NC_STOPPED ||
         (inst->state == NC_PENDING && inst->awaiting_export)) &&
        nc_volumes_pending_locked(inst))
        return ACT_VOLUMES;
    if (export_came_locked(inst))
        return ACT_LAUNCH;
    return ACT_NONE;
}

/* Deals with whatever happened meanwhile; clears busy once there is
 * nothing left to do (checked and cleared under one lock, so a watcher's
 * kick is never lost). */
static void settle(struct nc *nc, struct nc_instance *inst)
{
    for (;;) {
        pthread_mutex_lock(&nc->lock);
        enum action a = next_action_locked(nc, inst);
        if (a == ACT_NONE) {
            inst->busy = false;
            pthread_cond_broadcast(&nc->cond);
            pthread_mutex_unlock(&nc->lock);
            return;
        }
        pthread_mutex_unlock(&nc->lock);
        switch (a) {
        case ACT_TERMINATE:
            terminate_now(nc, inst, "Client.UserInitiatedShutdown",
                          "User initiated shutdown");
            break;
        case ACT_GUEST_STOP:
            stop_now(nc, inst, "Client.InstanceInitiatedShutdown",
                     "Instance initiated shutdown");
            break;
        case ACT_CRASH:
            terminate_now(nc, inst, "Server.InternalError",
                          "QEMU exited unexpectedly");
            break;
        case ACT_VOLUMES:
            nc_volumes_converge(nc, inst);
            break;
        case ACT_LAUNCH:
            nc_launch_job(nc, inst);
            break;
        case ACT_NONE:
            break;
        }
    }
}

/* ---- the jobs ---- */

void nc_launch_job(struct nc *nc, struct nc_instance *inst)
{
    struct nc_image_ref *refs[3] = {&inst->image, &inst->kernel,
                                    &inst->ramdisk};
    struct koala_error *err = NULL;
    _cleanup_free_ char *image_path = NULL;
    const char *image_format = "raw";
    int64_t t0 = time_mono_ms();
    pthread_mutex_lock(&nc->lock);
    inst->awaiting_export = nc_boot_volume_missing(inst);
    bool wait = inst->awaiting_export;
    pthread_mutex_unlock(&nc->lock);
    if (wait) { /* pending until ncAttachVolume brings it (settle) */
        log_info("instance %s: waiting for the export of its boot volume",
                 inst->id);
        return;
    }
    for (int i = 0; i < 3; i++) {
        if (refs[i]->id == NULL)
            continue;
        char *path = NULL;
        const char *fmt = NULL;
        pthread_mutex_lock(&nc->lock);
        bool pinned = inst->pinned[i];
        pthread_mutex_unlock(&nc->lock);
        int rc = pinned ? nc_cache_pin(nc->cache, refs[i]->sha256, &path, &fmt)
                        : nc_cache_get(nc->cache, refs[i], &path, &fmt, &err);
        if (rc < 0 && pinned) /* pinned, yet gone: fetch it again */
            rc = nc_cache_get(nc->cache, refs[i], &path, &fmt, &err);
        if (rc < 0)
            goto fail;
        if (pinned) /* the pin above was only to learn the path */
            nc_cache_unpin(nc->cache, refs[i]->sha256);
        pthread_mutex_lock(&nc->lock);
        inst->pinned[i] = true;
        pthread_mutex_unlock(&nc->lock);
        if (i == 0) {
            image_path = path;
            image_format = fmt;
        } else {
            free(path);
        }
    }
    int64_t t1 = time_mono_ms();
    pthread_mutex_lock(&nc->lock);
    bool give_up = inst->want_terminate || nc->stopping;
    pthread_mutex_unlock(&nc->lock);
    if (give_up)
        return;
    if (nc_disks_create(nc, inst, image_path, image_format, &err) < 0)
        goto fail;
    int64_t t2 = time_mono_ms();
    if (boot(nc, inst, &err) < 0)
        goto fail;
    pthread_mutex_lock(&nc->lock);
    inst->booted = true;
    nc_volumes_booted_locked(nc, inst);
    nc_set_state_locked(nc, inst, NC_RUNNING, NULL, NULL);
    pthread_mutex_unlock(&nc->lock);
    nc_save(nc, inst);
    log_info("instance %s: running (images %lld ms, disks %lld ms, tap and "
             "QEMU %lld ms)",
             inst->id, (long long)(t1 - t0), (long long)(t2 - t1),
             (long long)(time_mono_ms() - t2));
    return;
fail:
    if (stopping(nc)) { /* cancelled by the shutdown: resumed on restart */
        error_free(err);
        return;
    }
    log_warn("instance %s: launch failed: %s", inst->id, error_message(err));
    terminate_now(nc, inst, reason_code(err), error_message(err));
    error_free(err);
}

void nc_start_job(struct nc *nc, struct nc_instance *inst)
{
    struct koala_error *err = NULL;
    nc_save(nc, inst);
    pthread_mutex_lock(&nc->lock);
    bool no_root = nc_boot_volume_missing(inst);
    pthread_mutex_unlock(&nc->lock);
    if (no_root) /* its boot volume was detached meanwhile */
        error_set(&err, EINVAL, "Client.IncorrectInstanceState",
                  "%s has no root volume", inst->id);
    if (no_root || boot(nc, inst, &err) < 0) {
        log_warn("instance %s: start failed: %s", inst->id, error_message(err));
        set_state(nc, inst, NC_STOPPED, reason_code(err), error_message(err));
        nc_save(nc, inst);
        error_free(err);
        return;
    }
    set_state(nc, inst, NC_RUNNING, NULL, NULL);
    nc_save(nc, inst);
}

void nc_stop_job(struct nc *nc, struct nc_instance *inst)
{
    nc_save(nc, inst);
    pthread_mutex_lock(&nc->lock);
    struct qmp *q = inst->qmp;
    pthread_mutex_unlock(&nc->lock);
    if (q)
        json_decref(qmp_execute(q, "system_powerdown", NULL, 3000, NULL));
    pthread_mutex_lock(&nc->lock);
    int64_t deadline = time_mono_ms() + nc->opt.stop_timeout_s * 1000ll;
    while (q && !inst->guest_shutdown && !inst->qemu_gone && !nc->stopping &&
           time_mono_ms() < deadline)
        nc_wait_locked(nc, deadline);
    bool clean = inst->guest_shutdown, quit = nc->stopping;
    pthread_mutex_unlock(&nc->lock);
    if (quit) /* still stopping on disk: finished after a restart */
        return;
    if (!clean)
        log_warn("instance %s: the guest did not power off within %u s",
                 inst->id, nc->opt.stop_timeout_s);
    stop_now(nc, inst, "Client.UserInitiatedShutdown",
             "User initiated shutdown");
}

void nc_reboot_job(struct nc *nc, struct nc_instance *inst)
{
    pthread_mutex_lock(&nc->lock);
    struct qmp *q = inst->qmp;
    pthread_mutex_unlock(&nc->lock);
    struct koala_error *err = NULL;
    json_t *r = q ? qmp_execute(q, "system_reset", NULL, 5000, &err) : NULL;
    if (r == NULL && err)
        log_warn("instance %s: reboot: %s", inst->id, error_message(err));
    json_decref(r);
    error_free(err);
}

void nc_crash_job(struct nc *nc, struct nc_instance *inst)
{
    terminate_now(nc, inst, "Server.InternalError",
                  "QEMU exited while koala-nc was not running");
}

void nc_finish_stop_job(struct nc *nc, struct nc_instance *inst)
{
    stop_now(nc, inst, "Client.UserInitiatedShutdown",
             "User initiated shutdown");
}
