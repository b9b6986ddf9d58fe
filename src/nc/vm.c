/* vm.c: QEMU processes, their disks and their tap devices.
 *
 * QEMU runs daemonized (-daemonize: it forks, detaches with setsid and
 * tells its parent once it is initialised), so it outlives koala-nc, and a
 * launch that fails (a tap that cannot be opened, a disk that is missing)
 * fails here with QEMU's own message.  It starts in the instance's
 * directory (the QMP socket is the relative "qmp.sock", so directories
 * deep enough to overflow sun_path do not matter) and, when the node has
 * a network namespace, inside it, where its tap is.  -no-shutdown keeps
 * QEMU alive when the guest powers off, so that a guest shutdown can be
 * told from a crash even by a koala-nc that was restarted meanwhile (QMP
 * query-status then says "shutdown").
 *
 * Priority: guests run niced (vm_nice) so that on a busy host they yield
 * to the control plane.  But QEMU's own start (loading, machine setup,
 * until it daemonizes and its monitor answers) is part of the launch, and
 * among twenty booting guests it took 2-10 s.  So an instance's QEMU
 * starts paused (-S) at the NC's priority, and only once it answers are
 * all its threads (vCPUs included) and its autogroup reniced and the guest
 * let go (nc_vm_resume).  The autogroup matters most: with autogroup
 * scheduling (sched(7), on by default in Debian's kernels) the threads'
 * nice values only weigh against each other, and every daemonized QEMU is
 * a session, so a group, of its own.  A QEMU found still paused after a
 * restart of koala-nc is resumed then (ops.c, adopt).
 */
#define LOG_MODULE "nc"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"
#include "log.h"
#include "nc.h"
#include "qmp.h"
#include "util.h"

#define MAX_ARGS (80 + 6 * NC_MAX_VOLUMES + 8)

struct argv_builder {
    const char *argv[MAX_ARGS];
    char *owned[MAX_ARGS];
    int n, n_owned;
    bool oom;
};

static void arg(struct argv_builder *b, const char *s)
{
    if (b->n < MAX_ARGS - 1)
        b->argv[b->n++] = s;
    else
        b->oom = true;
}

static void argf(struct argv_builder *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void argf(struct argv_builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0 || b->n_owned >= MAX_ARGS) {
        b->oom = true;
        free(s);
    } else {
        b->owned[b->n_owned++] = s;
        arg(b, s);
    }
    va_end(ap);
}

static void argv_free(struct argv_builder *b)
{
    for (int i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
}

/* QEMU's option syntax doubles commas inside values. */
static char *qemu_escape(const char *s)
{
    struct buf b = {0};
    for (; *s; s++) {
        buf_append_char(&b, *s);
        if (*s == ',')
            buf_append_char(&b, ',');
    }
    buf_append_str(&b, "");
    return buf_steal(&b);
}

void nc_vm_smbios_uuid(const char *instance_id, char out[37])
{
    /* "ec2", then the id's hex digits right-aligned in the other 29. */
    char hex[33];
    memset(hex, '0', 32);
    hex[32] = '\0';
    memcpy(hex, "ec2", 3);
    const char *d =
        instance_id && str_has_prefix(instance_id, "i-") ? instance_id + 2 : "";
    size_t n = strlen(d);
    if (n > 29)
        d += n - 29, n = 29;
    memcpy(hex + 32 - n, d, n);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
}

int nc_vm_launch(const struct nc_vm_spec *s, pid_t *pid,
                 struct koala_error **err)
{
    struct argv_builder b = {0};
    _cleanup_free_ char *dir = qemu_escape(s->dir);
    _cleanup_free_ char *pidfile = NULL;
    int rc = -1;
    if (asprintf(&pidfile, "%s/qemu.pid", s->dir) < 0 || dir == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    unlink(pidfile);
    arg(&b, s->qemu);
    arg(&b, "-name");
    argf(&b, "koala-%s", s->name);
    arg(&b, "-nodefaults");
    arg(&b, "-no-user-config");
    arg(&b, "-display");
    arg(&b, "none");
    arg(&b, "-no-shutdown");
    if (s->paused)
        arg(&b, "-S");
    if (s->hv == NC_HV_KVM) {
        arg(&b, "-accel");
        arg(&b, "kvm");
        arg(&b, "-cpu");
        arg(&b, "host");
    } else {
        arg(&b, "-accel");
        arg(&b, "tcg");
    }
    arg(&b, "-smp");
    argf(&b, "%lld", (long long)(s->cores > 0 ? s->cores : 1));
    arg(&b, "-m");
    argf(&b, "%lld", (long long)(s->memory_mb > 0 ? s->memory_mb : 128));
    /* microvm for direct kernel boot (virtio-mmio devices, no firmware to
     * speak of); a PC with its BIOS to boot a whole disk. */
    bool direct = s->kernel != NULL;
    const char *blk = direct ? "virtio-blk-device" : "virtio-blk-pci";
    const char *nic = direct ? "virtio-net-device" : "virtio-net-pci";
    arg(&b, "-M");
    arg(&b, direct ? "microvm" : "pc");
    /* A PC has SMBIOS: a system UUID and serial starting "ec2" (equal, as
     * on EC2's own machines) make stock cloud images' cloud-init
     * (ds-identify and the Ec2 datasource) take the platform for EC2.
     * microvm has no SMBIOS: the kernel command line says ci.ds=Ec2
     * (hv.c).  Only for instances, not the KVM probe. */
    if (!direct && nc_valid_instance_id(s->name)) {
        char uuid[37];
        nc_vm_smbios_uuid(s->name, uuid);
        arg(&b, "-uuid");
        argf(&b, "%s", uuid);
        arg(&b, "-smbios");
        argf(&b, "type=1,serial=%s,uuid=%s", uuid, uuid);
    }
    if (direct) {
        arg(&b, "-kernel");
        arg(&b, s->kernel);
        if (s->initrd) {
            arg(&b, "-initrd");
            arg(&b, s->initrd);
        }
        if (s->append) {
            arg(&b, "-append");
            arg(&b, s->append);
        }
    }
    arg(&b, "-chardev");
    argf(&b, "file,id=console,path=%s/console.log,append=on", dir);
    arg(&b, "-serial");
    arg(&b, "chardev:console");
    arg(&b, "-qmp");
    arg(&b, "unix:qmp.sock,server=on,wait=off");
    if (s->root == NULL)
        for (char *const *x = s->extra; x && *x; x++)
            arg(&b, *x);
    if (s->root) {
        _cleanup_free_ char *f = qemu_escape(s->root);
        arg(&b, "-drive");
        argf(&b, "id=root,if=none,format=qcow2,discard=unmap,file=%s", f);
        arg(&b, "-device");
        argf(&b, "%s,drive=root%s", blk, direct ? "" : ",bootindex=0");
    }
    if (s->ephemeral) {
        _cleanup_free_ char *f = qemu_escape(s->ephemeral);
        arg(&b, "-drive");
        argf(&b, "id=ephemeral,if=none,format=qcow2,discard=unmap,file=%s", f);
        arg(&b, "-device");
        argf(&b, "%s,drive=ephemeral", blk);
    }
    if (s->tap) {
        arg(&b, "-netdev");
        argf(&b, "tap,id=net0,ifname=%s,script=no,downscript=no", s->tap);
        arg(&b, "-device");
        argf(&b, "%s,netdev=net0,mac=%s", nic, s->mac);
    }
    for (char *const *x = s->extra; s->root && x && *x; x++)
        arg(&b, *x);
    arg(&b, "-daemonize");
    arg(&b, "-pidfile");
    arg(&b, pidfile);
    b.argv[b.n] = NULL;
    if (b.oom) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    struct nc_exec_opts o = {
        .netns_fd = s->netns_fd, .cwd = s->dir, .timeout_ms = 60000};
    if (log_enabled(LOG_MODULE, LOG_LVL_DEBUG)) {
        struct buf cmd = {0};
        for (int i = 0; i < b.n; i++)
            buf_printf(&cmd, "%s%s", i ? " " : "", b.argv[i]);
        log_debug("%s: %s", s->name, cmd.data);
        buf_free(&cmd);
    }
    if (nc_exec(b.argv, &o, NULL, err) < 0) {
        error_prefix(*err, "starting QEMU");
        goto out;
    }
    *pid = nc_vm_read_pid(s->dir);
    if (*pid <= 0) {
        error_set(err, EIO, NULL, "QEMU started but left no pid file");
        goto out;
    }
    rc = 0;
out:
    argv_free(&b);
    return rc;
}

int nc_vm_resume(struct qmp *q, pid_t pid, int nice, struct koala_error **err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return error_set(err, errno, NULL, "QEMU pid %d: %s: %s", (int)pid,
                         path, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t tid = 0;
        if (de->d_name[0] == '.' || str_to_i64(de->d_name, &tid) < 0)
            continue;
        /* A thread that just ended is no failure. */
        if (setpriority(PRIO_PROCESS, (id_t)tid, nice) < 0 && errno != ESRCH)
            log_warn("QEMU pid %d: renicing thread %lld: %s", (int)pid,
                     (long long)tid, strerror(errno));
    }
    closedir(d);
    /* With autogroup scheduling (Debian's default) each session is one
     * scheduling entity and the threads' own nice values only count within
     * it; QEMU's -daemonize makes a session of its own, so the group's nice
     * is what yields to the rest of the host.  No such file: no autogroup.
     * (Never our own session's group: that would renice koala-nc.) */
    snprintf(path, sizeof(path), "/proc/%d/autogroup", (int)pid);
    pid_t sid = getsid(pid);
    int fd =
        sid > 0 && sid != getsid(0) ? open(path, O_WRONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        char v[16];
        int n = snprintf(v, sizeof(v), "%d\n", nice);
        if (write(fd, v, (size_t)n) != n)
            log_warn("QEMU pid %d: setting its autogroup's nice: %s", (int)pid,
                     strerror(errno));
        close(fd);
    }
    json_t *r = qmp_execute(q, "cont", NULL, 10000, err);
    if (r == NULL) {
        error_prefix(*err, "resuming the guest");
        return -1;
    }
    json_decref(r);
    return 0;
}

pid_t nc_vm_read_pid(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/qemu.pid", dir);
    char *s = nc_read_file(path, 64, NULL, NULL);
    int64_t v = 0;
    if (s == NULL || str_to_i64(str_trim(s), &v) < 0 || v <= 0)
        v = 0;
    free(s);
    return (pid_t)v;
}

bool nc_vm_alive(pid_t pid, const char *name)
{
    if (pid <= 0)
        return false;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    size_t len = 0;
    char *s = nc_read_file(path, 1 << 20, &len, NULL);
    if (s == NULL)
        return false;
    /* Arguments are NUL separated; a zombie's cmdline is empty. */
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\0')
            s[i] = ' ';
    bool ok = len > 0 && strstr(s, name) != NULL;
    free(s);
    return ok;
}

bool nc_vm_wait_console(const char *dir, pid_t pid, const char *name,
                        off_t since, unsigned timeout_ms)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/console.log", dir);
    int64_t deadline = time_mono_ms() + timeout_ms;
    int n = 0;
    while (time_mono_ms() < deadline) {
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > since)
            return true;
        if ((n++ % 10) == 0 && !nc_vm_alive(pid, name))
            return false;
        usleep(50000);
    }
    return false;
}

void nc_vm_kill(pid_t pid, const char *name)
{
    for (int i = 0; i < 250 && nc_vm_alive(pid, name); i++) {
        if (i % 50 == 0)
            kill(pid, SIGKILL);
        usleep(20000);
    }
}

/* ---- taps ---- */

static int ip_cmd(struct nc *nc, const char *const *args,
                  struct koala_error **err)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = "ip";
    if (nc->opt.netns) {
        argv[n++] = "-n";
        argv[n++] = nc->opt.netns;
    }
    for (; *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    return nc_exec(argv, NULL, NULL, err);
}

int nc_tap_add(struct nc *nc, const char *tap, const char *bridge,
               struct koala_error **err)
{
    /* A tap of the same name left behind by a crash goes first. */
    nc_tap_del(nc, tap, NULL);
    const char *add[] = {"tuntap", "add", "dev", tap, "mode", "tap", NULL};
    if (ip_cmd(nc, add, err) < 0) {
        error_prefix(*err, "creating tap %s", tap);
        return -1;
    }
    const char *plug[] = {"link",   "set",  "dev", tap,
                          "master", bridge, "up",  NULL};
    if (ip_cmd(nc, plug, err) < 0) {
        error_prefix(*err, "plugging tap %s into bridge %s", tap, bridge);
        nc_tap_del(nc, tap, NULL);
        return -1;
    }
    return 0;
}

int nc_tap_del(struct nc *nc, const char *tap, struct koala_error **err)
{
    const char *del[] = {"link", "del", "dev", tap, NULL};
    struct koala_error *e = NULL;
    if (ip_cmd(nc, del, &e) == 0)
        return 0;
    /* Already gone is what we wanted. */
    if (strstr(error_message(e), "Cannot find device") ||
        strstr(error_message(e), "does not exist")) {
        error_free(e);
        return 0;
    }
    if (err && *err == NULL)
        *err = e;
    else
        error_free(e);
    return -1;
}

/* ---- disks ---- */

/* The size of the disk an image holds: a raw file's length, a qcow2's
 * virtual size (big-endian at offset 24 of its header).  -1: unreadable. */
static int64_t image_virtual_size(const char *path, const char *format)
{
    errno = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int64_t size = -1;
    struct stat st;
    unsigned char h[32];
    if (strcmp(format, "qcow2") != 0) {
        if (fstat(fd, &st) == 0)
            size = st.st_size;
    } else if (pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
               memcmp(h, "QFI\xfb", 4) == 0) {
        uint64_t v = 0;
        for (int i = 24; i < 32; i++)
            v = (v << 8) | h[i];
        size = v > INT64_MAX ? -1 : (int64_t)v;
    }
    close(fd);
    return size;
}

/* root.qcow2: a copy-on-write overlay on the image; creating it copies
 * nothing.  It is the type's disk size where the image is smaller (a
 * cloud image is made small, and cloud-init grows its file system to the
 * disk), never smaller than the image. */
static int root_create(struct nc *nc, struct nc_instance *inst,
                       const char *root, const char *image_path,
                       const char *image_format, struct koala_error **err)
{
    char root_size[32] = "";
    int64_t want = inst->type.disk_gb * (1LL << 30);
    int64_t have = image_virtual_size(image_path, image_format);
    if (have < 0)
        return error_set(err, errno ? errno : EIO, NULL,
                         "root disk: cannot read the size of %s", image_path);
    if (want > have)
        snprintf(root_size, sizeof(root_size), "%lld", (long long)want);
    const char *mk_root[] = {nc->opt.qemu_img,
                             "create",
                             "-q",
                             "-f",
                             "qcow2",
                             "-F",
                             image_format,
                             "-b",
                             image_path,
                             root,
                             root_size[0] ? root_size : NULL,
                             NULL};
    if (nc_exec(mk_root, NULL, NULL, err) < 0) {
        error_prefix(*err, "root disk");
        return -1;
    }
    return 0;
}

int nc_disks_create(struct nc *nc, struct nc_instance *inst,
                    const char *image_path, const char *image_format,
                    struct koala_error **err)
{
    _cleanup_free_ char *root = NULL, *eph = NULL;
    if (asprintf(&root, "%s/root.qcow2", inst->dir) < 0 ||
        asprintf(&eph, "%s/ephemeral.qcow2", inst->dir) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    unlink(root);
    unlink(eph);
    /* No image: the root is the boot volume. */
    if (image_path &&
        root_create(nc, inst, root, image_path, image_format, err) < 0)
        return -1;
    if (inst->type.disk_gb > 0) {
        char size[32];
        snprintf(size, sizeof(size), "%lldG", (long long)inst->type.disk_gb);
        const char *mk_eph[] = {nc->opt.qemu_img, "create", "-q", "-f",
                                "qcow2",          eph,      size, NULL};
        if (nc_exec(mk_eph, NULL, NULL, err) < 0) {
            error_prefix(*err, "ephemeral disk");
            return -1;
        }
    }
    return 0;
}
