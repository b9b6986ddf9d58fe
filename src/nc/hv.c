/* hv.c: KVM or TCG.  /dev/kvm existing says little: on nested hosts
 * KVM_CREATE_VM succeeds but `-cpu host` aborts (MSR 0x10a) and other CPU
 * models hang in early boot.  So the answer comes from booting a guest:
 *
 *   1. hypervisor = kvm | tcg in the config: that, no questions asked.
 *   2. An answer remembered in DATA_DIR/hypervisor.json for this QEMU
 *      version and host kernel.
 *   3. QEMU cannot even start with -accel kvm (no /dev/kvm, no rights):
 *      TCG, not remembered (a module loaded later changes it).
 *   4. kvm_probe_kernel (+ initrd) configured: boot it with KVM and wait
 *      for console output (kvm_probe_timeout); remember what happened.
 *   5. Otherwise the first instance is the probe: KVM launches are
 *      watched until the guest writes to its console, and one that does
 *      not (or whose QEMU dies) is relaunched with TCG and the node
 *      remembers TCG (lifecycle.c).
 *
 * TCG guests read the host's TSC (QEMU's rdtsc is the host's), but a
 * Linux guest calibrates it against the emulated PIT, and on a busy host
 * the two disagree: calibration fails and the kernel hangs in early boot
 * about half the time.  So the kernel is told the rate (tsc_early_khz,
 * measured here once) for direct kernel boots under TCG.
 */
#define LOG_MODULE "nc"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "exec.h"
#include "log.h"
#include "nc.h"
#include "util.h"

static char *hv_file(const struct nc *nc)
{
    char *p = NULL;
    if (asprintf(&p, "%s/hypervisor.json", nc->data_dir) < 0)
        return NULL;
    return p;
}

static char *probe_dir(const struct nc *nc)
{
    char *p = NULL;
    if (asprintf(&p, "%s/kvm-probe", nc->data_dir) < 0)
        return NULL;
    return p;
}

void nc_hv_record(struct nc *nc, enum nc_hv hv, const char *reason)
{
    pthread_mutex_lock(&nc->lock);
    bool changed = nc->hv != hv || !nc->hv_verified;
    nc->hv = hv;
    nc->hv_verified = true;
    free(nc->hv_reason);
    nc->hv_reason = strdup(reason ? reason : "");
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:I}", "key", nc->hv_key, "hypervisor", nc_hv_name(hv),
        "reason", reason ? reason : "", "time", (json_int_t)time_now_ms());
    pthread_mutex_unlock(&nc->lock);
    if (changed)
        log_info("hypervisor: %s (%s)", nc_hv_name(hv), reason);
    char *text = o ? json_dumps(o, JSON_INDENT(1)) : NULL;
    json_decref(o);
    _cleanup_free_ char *path = hv_file(nc);
    struct koala_error *err = NULL;
    if (text && path)
        nc_write_atomic(path, text, strlen(text), &err);
    if (err)
        log_error("remembering the hypervisor: %s", error_message(err));
    error_free(err);
    free(text);
}

/* QEMU initialises with -accel kvm (it daemonizes once it has). */
static int kvm_accel_works(struct nc *nc, struct koala_error **err)
{
    _cleanup_free_ char *dir = probe_dir(nc);
    if (dir == NULL || nc_mkdir_p(dir, err) < 0)
        return -1;
    struct nc_vm_spec s = {.qemu = nc->opt.qemu,
                           .hv = NC_HV_KVM,
                           .name = "kvm-probe",
                           .dir = dir,
                           .cores = 1,
                           .memory_mb = 64,
                           .netns_fd = -1};
    pid_t pid = 0;
    int rc = nc_vm_launch(&s, &pid, err);
    if (rc == 0)
        nc_vm_kill(pid, "kvm-probe");
    nc_rmtree(dir, NULL);
    return rc;
}

/* Boots the probe kernel with KVM; true when it writes to its console. */
static bool kvm_boots(struct nc *nc, char *why, size_t why_size)
{
    _cleanup_free_ char *dir = probe_dir(nc);
    struct koala_error *err = NULL;
    if (dir == NULL || nc_mkdir_p(dir, &err) < 0) {
        snprintf(why, why_size, "%s", error_message(err));
        error_free(err);
        return false;
    }
    struct nc_vm_spec s = {.qemu = nc->opt.qemu,
                           .hv = NC_HV_KVM,
                           .name = "kvm-probe",
                           .dir = dir,
                           .cores = 1,
                           .memory_mb = 256,
                           .kernel = nc->opt.kvm_probe_kernel,
                           .initrd = nc->opt.kvm_probe_initrd,
                           .append = "console=ttyS0 panic=-1",
                           .netns_fd = -1};
    pid_t pid = 0;
    bool ok = false;
    int64_t t0 = time_mono_ms();
    if (nc_vm_launch(&s, &pid, &err) < 0) {
        snprintf(why, why_size, "%s", error_message(err));
    } else if (nc_vm_wait_console(dir, pid, "kvm-probe", 0,
                                  nc->opt.kvm_probe_timeout_s * 1000)) {
        ok = true;
        snprintf(why, why_size, "probe kernel booted with KVM in %lld ms",
                 (long long)(time_mono_ms() - t0));
    } else {
        snprintf(why, why_size,
                 "probe kernel wrote nothing to its console with KVM "
                 "within %u s",
                 nc->opt.kvm_probe_timeout_s);
    }
    if (pid > 0)
        nc_vm_kill(pid, "kvm-probe");
    error_free(err);
    nc_rmtree(dir, NULL);
    return ok;
}

/* The host TSC's rate in kHz, 0 where there is none to measure. */
static long measure_tsc_khz(void)
{
#if defined(__x86_64__) || defined(__i386__)
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC_RAW, &a);
    unsigned long long t0 = __rdtsc();
    usleep(50000);
    clock_gettime(CLOCK_MONOTONIC_RAW, &b);
    unsigned long long t1 = __rdtsc();
    double ns =
        (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return ns > 0 ? (long)((double)(t1 - t0) / ns * 1e6) : 0;
#else
    return 0;
#endif
}

/* ci.ds=Ec2: microvm has no SMBIOS, so cloud-init's ds-identify cannot
 * tell the platform from DMI; this names the datasource (the EC2-style
 * metadata service at 169.254.169.254).  Guests without cloud-init ignore
 * it. */
#define NC_APPEND "console=ttyS0 root=/dev/vda ro panic=-1 ci.ds=Ec2"

char *nc_hv_append(const struct nc *nc, enum nc_hv hv)
{
    char *s = NULL;
    int rc;
    if (hv == NC_HV_TCG && nc->tsc_khz > 0)
        rc = asprintf(&s, NC_APPEND " no_timer_check tsc_early_khz=%ld",
                      nc->tsc_khz);
    else
        rc = asprintf(&s, NC_APPEND);
    return rc < 0 ? NULL : s;
}

int nc_hv_init(struct nc *nc, struct koala_error **err)
{
    nc->tsc_khz = measure_tsc_khz();
    const char *argv[] = {nc->opt.qemu, "-version", NULL};
    _cleanup_free_ char *out = NULL;
    if (nc_exec(argv, NULL, &out, err) < 0) {
        error_prefix(*err, "QEMU (%s)", nc->opt.qemu);
        return -1;
    }
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = '\0';
    struct utsname u;
    uname(&u);
    if (asprintf(&nc->hv_key, "%s | %s", out, u.release) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    const char *conf = nc->opt.hypervisor ? nc->opt.hypervisor : "auto";
    if (strcmp(conf, "kvm") == 0 || strcmp(conf, "tcg") == 0) {
        nc->hv = strcmp(conf, "kvm") == 0 ? NC_HV_KVM : NC_HV_TCG;
        nc->hv_forced = nc->hv_verified = true;
        nc->hv_reason = strdup("configured");
        log_info("hypervisor: %s (configured)", conf);
        return 0;
    }
    if (strcmp(conf, "auto") != 0)
        return error_set(err, EINVAL, NULL,
                         "hypervisor must be auto, kvm or tcg, not %s", conf);
    /* Remembered for this QEMU and kernel? */
    _cleanup_free_ char *path = hv_file(nc);
    json_t *o = path ? json_load_file(path, 0, NULL) : NULL;
    const char *key = json_string_value(json_object_get(o, "key"));
    const char *hv = json_string_value(json_object_get(o, "hypervisor"));
    if (key && hv && strcmp(key, nc->hv_key) == 0) {
        nc->hv = strcmp(hv, "kvm") == 0 ? NC_HV_KVM : NC_HV_TCG;
        nc->hv_verified = true;
        const char *r = json_string_value(json_object_get(o, "reason"));
        nc->hv_reason = strdup(r ? r : "remembered");
        log_info("hypervisor: %s (remembered: %s)", hv, nc->hv_reason);
        json_decref(o);
        return 0;
    }
    json_decref(o);
    struct koala_error *e = NULL;
    if (kvm_accel_works(nc, &e) < 0) {
        nc->hv = NC_HV_TCG;
        nc->hv_verified = true;
        if (asprintf(&nc->hv_reason, "KVM unavailable: %s", error_message(e)) <
            0)
            nc->hv_reason = NULL;
        log_info("hypervisor: tcg (%s)", error_message(e));
        error_free(e);
        return 0;
    }
    if (nc->opt.kvm_probe_kernel) {
        char why[512];
        bool ok = kvm_boots(nc, why, sizeof(why));
        nc_hv_record(nc, ok ? NC_HV_KVM : NC_HV_TCG, why);
        return 0;
    }
    nc->hv = NC_HV_KVM;
    nc->hv_verified = false;
    nc->hv_reason = strdup("KVM starts; the first instance will tell");
    log_info("hypervisor: kvm, to be confirmed by the first instance");
    return 0;
}
