/* nc.h: koala-nc internals shared by its files: the daemon (nc.c), the
 * instances and their state files (instance.c), the lifecycle jobs and
 * the watchers (lifecycle.c), the operations and the re-adoption at
 * startup (ops.c), QEMU, disks and taps (vm.c), the choice of
 * KVM or TCG (hv.c), notifications to the CC (notify.c) and the SOAP
 * operations (server.c); EBS volumes: the attachment records, their
 * XML, JSON and QEMU arguments (volumes.c) and attaching and detaching
 * them through QMP (volops.c).  The image cache (cache.h), the QMP client
 * (qmp.h), the helper runner (exec.h), the anti-spoofing table
 * (antispoof.h) and the security-group table (sgfilter.h) stand on their
 * own.
 *
 * DESIGN.  An instance is a directory instances/<id>/ (instance.json, the
 * disks, console.log, qmp.sock, qemu.pid) and a `struct nc_instance` in
 * the node's list.  QEMU runs daemonized (it outlives koala-nc), in the
 * node's network namespace when one is configured.  Each live QEMU has a
 * watcher thread that reads its QMP events and checks its pid; it only
 * records what it saw (guest_shutdown, qemu_gone) and kicks the instance.
 * Everything that takes time (downloading, making disks, starting or
 * stopping QEMU, cleaning up) runs in a job: a thread of its own, at most
 * one per instance at a time (`busy`).  When a job ends, and whenever the
 * instance is kicked while no job runs, the instance is settled: a wanted
 * terminate, a guest that powered off (-> stopped) and a QEMU that died
 * (-> terminated, Server.InternalError) are dealt with, in that order.
 * SOAP requests run on the HTTP server's workers: they change the list and
 * start jobs, and answer at once.
 *
 * LOCKING.  One mutex, nc->lock, guards the list and every field of every
 * instance, the hypervisor choice and the counters; nc->cond is broadcast
 * on any change a thread may wait for (a job ended, a watcher stopped,
 * stopping).  It is never held across anything that blocks: I/O, QMP,
 * running a program.  A job or watcher may use its instance's fields
 * without the lock only where they cannot change while it runs (the id,
 * the directory, the request's fields).  instance.json is written under
 * inst->save_lock (taken before nc->lock), so writes of one instance
 * happen in the order of the states they hold.  Instances leave the list
 * only when terminated, idle (no job, no watcher) and older than
 * terminated_ttl.
 */
#ifndef KOALA_NC_H
#define KOALA_NC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "cache.h"
#include "error.h"
#include "http_server.h"
#include "qmp.h"
#include "xml.h"

#define NC_XMLNS "urn:koala:nc"
#define CC_XMLNS "urn:koala:cc"
#define NC_CONSOLE_MAX (64u * 1024)  /* bytes GetConsoleOutput returns */
#define NC_USERDATA_MAX (16u * 1024) /* decoded, as EC2 */

struct nc_options {
    const char *listen_addr;
    uint16_t port;
    const char *data_dir;
    const char *name;     /* node name; NULL: the host name */
    const char *tls_cert; /* PEM: this node's certificate and key */
    const char *tls_key;
    const char *ca;               /* the cloud CA: verifies peers both ways */
    const char *cc_endpoint;      /* NotifyInstanceState goes here; optional */
    int64_t max_cores;            /* 0: the host's CPUs */
    int64_t max_memory_mb;        /* 0: MemTotal minus a reserve */
    int64_t max_disk_gb;          /* 0: free space of data_dir */
    uint64_t cache_max;           /* bytes; 0: no limit */
    const char *bridge;           /* default kbr0 */
    const char *netns;            /* NULL: koala-nc's own namespace */
    const char *hypervisor;       /* auto | kvm | tcg */
    const char *qemu;             /* qemu-system-x86_64 */
    const char *qemu_img;         /* qemu-img */
    const char *kvm_probe_kernel; /* optional */
    const char *kvm_probe_initrd;
    unsigned kvm_probe_timeout_s; /* console output within; default 20 */
    unsigned stop_timeout_s;      /* powerdown grace; default 30 */
    unsigned terminated_ttl_s;    /* kept in memory; default 3600 */
    int vm_nice;                  /* QEMU's niceness; default 10 */
};

enum nc_state {
    NC_PENDING = 0,
    NC_RUNNING,
    NC_STOPPING,
    NC_STOPPED,
    NC_SHUTTING_DOWN,
    NC_TERMINATED,
};

enum nc_hv {
    NC_HV_TCG = 0,
    NC_HV_KVM,
};

/* An EBS volume attached to an instance (docs/storage.md): the guest
 * sees it through QEMU's own NBD client, connected to the SC's export. */
enum nc_vol_state {
    NC_VOL_ATTACHING = 0,
    NC_VOL_ATTACHED,
    NC_VOL_DETACHING,
    NC_VOL_DETACHED,
};

struct nc_export {
    char *transport; /* "unix" | "tcp" */
    char *path;      /* unix: the socket */
    char *host;      /* tcp */
    int64_t port;
    char *export_name;
    char *tls_hostname; /* the SC certificate's CN */
    int64_t size_bytes;
};

struct nc_volume {
    char id[32]; /* vol-... */
    char *device; /* what the user asked for (/dev/sdf), reported back */
    enum nc_vol_state state;
    bool force;    /* detaching: do not wait for the guest */
    bool stuck;    /* detaching: the guest did not let go; wait for a
                    * new request rather than retrying in a loop */
    struct nc_export ex;
    char *error;         /* why the last attach or detach failed */
    char error_code[48]; /* its EC2 code, "" for an internal error */
    int64_t detached_ms; /* monotonic; detached records are kept a while */
    int64_t grow_to;     /* attached: the size ncResizeVolume asked for,
                          * until the guest has it (instance.json too);
                          * 0 none */
    char *grow_error;    /* why the last growth failed */
    char grow_code[48];  /* its EC2 code */
    bool boot;           /* the instance's root disk (ncRunInstance's
                          * <boot>true</boot>): booted from, never
                          * detached while it runs; a launch waits for
                          * its export (ncAttachVolume) */
    struct nc_volume *next;
};

struct nc_type {
    char *name;
    int64_t cores;
    int64_t memory_mb;
    int64_t disk_gb;
};

struct nc_instance {
    /* ---- from the request, fixed ---- */
    char id[32];
    char *reservation_id;
    char *owner_id;
    int64_t launch_index;
    struct nc_type type;
    struct nc_image_ref image;   /* id NULL: none (boots from its boot
                                  * volume) */
    struct nc_image_ref kernel;  /* id NULL: none (whole-disk boot) */
    struct nc_image_ref ramdisk; /* id NULL: none */
    char *mac;
    char *private_ip;
    char *network;
    char *bridge;    /* the request's, or the node's */
    char *user_data; /* base64, as received */
    char *key_name;
    char *public_key;
    int64_t launch_time_ms;
    char tap[16];
    char *dir; /* data_dir/instances/<id> */
    struct nc_volume *volumes; /* its attachments (instance.json too) */

    /* ---- state (instance.json) ---- */
    enum nc_state state;
    char *reason_code; /* stateReasonCode, or NULL */
    char *reason_message;
    enum nc_hv hv; /* what it runs (or will run) with */
    bool booted;   /* its disks exist and it has run */
    pid_t pid;     /* QEMU's, 0: none */

    /* ---- runtime ---- */
    pthread_mutex_t save_lock;
    struct qmp *qmp;     /* while QEMU runs */
    bool watching;       /* a watcher thread runs */
    bool busy;           /* a job runs */
    bool want_terminate; /* terminate once the running job is done */
    bool awaiting_export; /* pending: its launch waits for the boot
                           * volume's export (ncAttachVolume) */
    bool guest_shutdown; /* the guest powered off (SHUTDOWN, guest) */
    bool qemu_gone;      /* QEMU exited (QMP EOF, pid gone) */
    bool pinned[3];      /* image, kernel, ramdisk pinned in the cache */
    char *console;       /* last console output, kept once terminated */
    size_t console_len;
    int64_t terminated_ms; /* monotonic */
    struct nc_instance *next;
};

struct nc_notifier;
struct nc_sg;

struct nc {
    struct nc_options opt;
    char *data_dir;
    char *inst_dir; /* data_dir/instances */
    char *tls_dir;  /* data_dir/tls: QEMU's NBD client credentials */
    char *name;
    char *bridge;
    int64_t cores_max, memory_mb_max, disk_gb_max;
    struct nc_cache *cache;
    int netns_fd; /* -1: none */

    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    struct nc_instance *instances;
    bool stopping;
    unsigned threads; /* jobs and watchers running */

    enum nc_hv hv;    /* what new instances get */
    bool hv_verified; /* a guest booted (or failed to) with KVM here */
    bool hv_forced;   /* hypervisor = kvm | tcg in the config */
    char *hv_key;     /* "QEMU version | kernel release" */
    char *hv_reason;
    long tsc_khz; /* the host's TSC rate (TCG guests see it) */

    struct nc_notifier *notifier;
    struct nc_sg *sg; /* the security-group filter (sgfilter.h) */
    pthread_t housekeeper;
    bool housekeeper_started;
    struct http_server *http;
};

/* ---- nc.c ---- */
struct nc *nc_new(const struct nc_options *opt, struct koala_error **err);
void nc_free(struct nc *nc);
struct nc_resources {
    int64_t cores_max, cores_free, memory_mb_max, memory_mb_free, disk_gb_max,
        disk_gb_free;
    unsigned instances; /* not terminated */
};
void nc_resources_locked(struct nc *nc, struct nc_resources *r);
/* Waits on nc->cond until deadline (monotonic ms).  Lock held. */
void nc_wait_locked(struct nc *nc, int64_t deadline_ms);

/* ---- instance.c ---- */
struct nc_instance *nc_instance_new(void);
void nc_instance_free(struct nc_instance *inst);
const char *nc_state_name(enum nc_state s);
int nc_state_parse(const char *s, enum nc_state *out);
const char *nc_hv_name(enum nc_hv hv);
struct nc_instance *nc_find_locked(struct nc *nc, const char *id);
/* "i-" and 8 to 17 lower-case hex digits. */
bool nc_valid_instance_id(const char *id);
/* A network interface name that is safe in a command line or a rule: 1 to
 * 15 of [A-Za-z0-9._-]. */
bool nc_valid_ifname(const char *s);
/* instance.json: the whole instance as JSON text (malloc'd) and back. */
char *nc_instance_to_json(const struct nc_instance *inst);
struct nc_instance *nc_instance_from_json(const char *text, size_t len,
                                          struct koala_error **err);
/* Writes inst's instance.json atomically (takes save_lock and nc->lock:
 * call without nc->lock). */
int nc_instance_save(struct nc *nc, struct nc_instance *inst,
                     struct koala_error **err);
/* <instance>...</instance> into w.  Lock held. */
void nc_instance_describe(struct nc *nc, const struct nc_instance *inst,
                          struct xml_writer *w, const char *element);

/* ---- vm.c ---- */
struct nc_vm_spec {
    const char *qemu;
    enum nc_hv hv;
    const char *name; /* -name (the instance id: found in cmdline) */
    const char *dir;  /* cwd; qmp.sock, qemu.pid, console.log here */
    int64_t cores, memory_mb;
    const char *kernel; /* direct kernel boot (microvm) when set */
    const char *initrd;
    const char *append;
    const char *root; /* qcow2 files, or NULL */
    const char *ephemeral;
    const char *tap; /* NULL: no network */
    const char *mac;
    int netns_fd;
    bool paused; /* -S: the guest waits for nc_vm_resume(), which also
                  * gives QEMU its niceness (vm.c) */
    char *const *extra; /* more arguments (volumes.c), NULL-terminated;
                         * without a root disk they come where it would
                         * (a boot volume is then the first disk) */
};
/* The SMBIOS system UUID (and serial) of a whole-disk boot: "ec2" and the
 * instance id's hex digits, as a UUID string (36 characters and NUL). */
void nc_vm_smbios_uuid(const char *instance_id, char out[37]);
/* Starts QEMU daemonized; *pid from its pid file. */
int nc_vm_launch(const struct nc_vm_spec *s, pid_t *pid,
                 struct koala_error **err);
/* Gives every thread of QEMU pid the niceness `nice`, then lets its guest
 * run (QMP cont).  For a QEMU started paused. */
struct qmp;
int nc_vm_resume(struct qmp *q, pid_t pid, int nice, struct koala_error **err);
/* pid is a live QEMU whose command line names `name`. */
bool nc_vm_alive(pid_t pid, const char *name);
/* Reads DIR/qemu.pid; 0 when absent. */
pid_t nc_vm_read_pid(const char *dir);
/* Waits until DIR/console.log grows past `since` bytes (true), QEMU
 * died or the timeout passed (false). */
bool nc_vm_wait_console(const char *dir, pid_t pid, const char *name,
                        off_t since, unsigned timeout_ms);
/* Sends SIGKILL and waits (up to 5 s) until the process is gone. */
void nc_vm_kill(pid_t pid, const char *name);
int nc_tap_add(struct nc *nc, const char *tap, const char *bridge,
               struct koala_error **err);
int nc_tap_del(struct nc *nc, const char *tap, struct koala_error **err);
/* root.qcow2 over the cached image (of disk_gb where the image is
 * smaller; none when image_path is NULL: the root is a volume),
 * ephemeral.qcow2 of disk_gb. */
int nc_disks_create(struct nc *nc, struct nc_instance *inst,
                    const char *image_path, const char *image_format,
                    struct koala_error **err);

/* ---- hv.c ---- */
/* Decides what new instances run with (config, remembered answer, or a
 * probe); fills nc->hv*. */
int nc_hv_init(struct nc *nc, struct koala_error **err);
/* The kernel command line of a direct kernel boot with hv (malloc'd). */
char *nc_hv_append(const struct nc *nc, enum nc_hv hv);
/* A KVM boot succeeded (kvm) or failed (tcg): remember it for this host. */
void nc_hv_record(struct nc *nc, enum nc_hv hv, const char *reason);

/* ---- lifecycle.c: jobs and watchers ---- */
typedef void (*nc_job_fn)(struct nc *nc, struct nc_instance *inst);
/* Starts fn (NULL: only settle the instance) on a thread of its own;
 * inst is busy until it ends.  Lock held. */
int nc_job_spawn_locked(struct nc *nc, struct nc_instance *inst, nc_job_fn fn);
/* Starts the watcher of inst's QEMU (inst->qmp and pid set).  Lock held. */
int nc_watch_locked(struct nc *nc, struct nc_instance *inst);
/* Moves inst to st with a reason (or none) and notifies.  Lock held. */
void nc_set_state_locked(struct nc *nc, struct nc_instance *inst,
                         enum nc_state st, const char *code, const char *msg);
/* Writes instance.json; a failure is logged. */
void nc_save(struct nc *nc, struct nc_instance *inst);
/* The jobs (run through nc_job_spawn_locked). */
void nc_launch_job(struct nc *nc, struct nc_instance *inst);
void nc_start_job(struct nc *nc, struct nc_instance *inst);
void nc_stop_job(struct nc *nc, struct nc_instance *inst);
void nc_reboot_job(struct nc *nc, struct nc_instance *inst);
void nc_crash_job(struct nc *nc, struct nc_instance *inst);
void nc_finish_stop_job(struct nc *nc, struct nc_instance *inst);

/* ---- ops.c: the operations, and taking over at startup ---- */
/* ncRunInstance: inst (fully parsed, taken over) becomes pending and its
 * launch starts in the background.  The description of the instance (as
 * it is, for a repeated request) is written into w. */
int nc_run_instance(struct nc *nc, struct nc_instance *inst,
                    struct xml_writer *w, struct koala_error **err);
int nc_terminate_instance(struct nc *nc, const char *id, struct xml_writer *w,
                          struct koala_error **err);
int nc_reboot_instance(struct nc *nc, const char *id, struct xml_writer *w,
                       struct koala_error **err);
int nc_stop_instance(struct nc *nc, const char *id, struct xml_writer *w,
                     struct koala_error **err);
int nc_start_instance(struct nc *nc, const char *id, struct xml_writer *w,
                      struct koala_error **err);
/* Console output: the last NC_CONSOLE_MAX bytes (malloc'd). */
int nc_console_output(struct nc *nc, const char *id, char **out, size_t *len,
                      struct koala_error **err);
/* Loads instances/ at startup: re-adopts live QEMUs, resumes jobs. */
int nc_instances_load(struct nc *nc, struct koala_error **err);
/* Drops terminated instances older than the TTL.  Lock held. */
void nc_instances_reap_locked(struct nc *nc);

/* ---- volumes.c: attachment records ---- */
#define NC_MAX_VOLUMES 16 /* per instance */
/* "vol-" and 8 or 17 lower-case hex digits. */
bool nc_valid_volume_id(const char *id);
/* What the guest sees as the disk's serial: "vol" and the id's hex digits
 * (20 characters at most: virtio-blk's limit; as on Nitro). */
void nc_volume_serial(const char *volume_id, char out[24]);
const char *nc_vol_state_name(enum nc_vol_state s);
void nc_volume_free(struct nc_volume *v); /* one record; NULL-safe */
void nc_volumes_free(struct nc_volume *list);
struct nc_volume *nc_volume_find(const struct nc_instance *inst,
                                 const char *volume_id);
/* A <volume> of a request: volumeId, device, boot? (true|false) and
 * (need_export or present) export.  *out malloc'd. */
int nc_volume_parse(const struct xml_node *n, bool need_export,
                    struct nc_volume **out, struct koala_error **err);
/* ncRunInstance's volume* into inst->volumes: the same one twice, more
 * than NC_MAX_VOLUMES or more than one with boot true are refused; one
 * without its export, and the boot volume, are attaching, the others
 * attached. */
int nc_volumes_parse_run(const struct xml_node *op, struct nc_instance *inst,
                         struct koala_error **err);
/* Whether v has its export (one given in ncRunInstance may come later,
 * through ncAttachVolume). */
bool nc_volume_has_export(const struct nc_volume *v);
/* inst's boot volume (not detached), or NULL. */
struct nc_volume *nc_boot_volume(const struct nc_instance *inst);
/* inst boots from a volume (it has no image) that is not there to boot
 * from: detached, or its export not come yet.  Lock held. */
bool nc_boot_volume_missing(const struct nc_instance *inst);
/* Every <volume> (attachment) of inst into w.  Lock held. */
void nc_volumes_describe(const struct nc_instance *inst, struct xml_writer *w);
/* instance.json's "volumes" (the records not detached) and back. */
json_t *nc_volumes_to_json(const struct nc_instance *inst);
int nc_volumes_from_json(const json_t *arr, struct nc_instance *inst,
                         struct koala_error **err);
/* The QEMU arguments of inst's volumes at launch: the disk bus a microvm
 * needs for hot-plugging later, the TLS credentials and each attached
 * volume's -blockdev and -device, the boot volume (attaching while its
 * launch runs, with its export) first with bootindex=0 (malloc'd vector,
 * NULL-terminated; free with nc_strv_free).  Lock held. */
char **nc_volumes_qemu_args_locked(const struct nc *nc,
                                   const struct nc_instance *inst);
void nc_strv_free(char **v);
/* QMP arguments (new references): blockdev-add of the volume's NBD
 * client and of the raw node over it, device_add of its disk, object-add
 * of the credentials. */
json_t *nc_volume_blockdev(const struct nc_volume *v);
json_t *nc_volume_format(const struct nc_volume *v);
/* A node name of the volume: kind "nbd", "raw", "null" or "grow" (the
 * second NBD client while it grows, volgrow.c), "-" and its id. */
void nc_volume_node(const struct nc_volume *v, const char *kind, char out[40]);
json_t *nc_volume_device(const struct nc_volume *v, bool microvm);
json_t *nc_volume_tls_object(const struct nc *nc);
/* Writes data_dir/tls (the CA, the node's certificate and key under the
 * names QEMU's tls-creds-x509 wants). */
int nc_volumes_tls_init(struct nc *nc, struct koala_error **err);
/* Drops detached records older than ttl_ms.  Lock held. */
void nc_volumes_reap_locked(struct nc_instance *inst, int64_t now_ms,
                            int64_t ttl_ms);

/* ---- volops.c: attaching and detaching ---- */
/* ncAttachVolume: v (taken over) becomes an attachment of the instance;
 * answers once it is attached (or still attaching after a while). */
int nc_attach_volume(struct nc *nc, const char *instance_id,
                     struct nc_volume *v, struct xml_writer *w,
                     struct koala_error **err);
int nc_detach_volume(struct nc *nc, const char *instance_id,
                     const char *volume_id, bool force, struct xml_writer *w,
                     struct koala_error **err);
/* ncResizeVolume: the attached volume's export grew to size_bytes (the
 * SC resized it); the running guest is given the new size (volgrow.c);
 * a stopped instance's next start opens the export afresh.  Answers
 * once the guest has it. */
int nc_resize_volume(struct nc *nc, const char *instance_id,
                     const char *volume_id, int64_t size_bytes,
                     struct xml_writer *w, struct koala_error **err);
/* QMP steps shared by volops.c and volgrow.c: whether QEMU has block node
 * `node` (1, its size into *size when asked), has not (0), or -1;
 * a command whose answer is not needed; removing a node if present. */
int nc_vol_node_info(struct qmp *q, const char *node, int64_t *size,
                     struct koala_error **err);
int nc_vol_has_node(struct qmp *q, const char *node, struct koala_error **err);
int nc_vol_qmp(struct qmp *q, const char *cmd, json_t *args, unsigned ms,
               struct koala_error **err);
int nc_vol_drop_node(struct qmp *q, const char *node,
                     struct koala_error **err);
/* volgrow.c: the running QEMU's disk of v (attached) grown to the size
 * of its export, at least min_bytes; idempotent, resumable after a kill
 * at any step.  No lock held (the instance's job). */
int nc_volume_grow(struct qmp *q, const struct nc_volume *v, int64_t min_bytes,
                   struct koala_error **err);
/* Some attachment waits for work (plugging, unplugging, growing) that
 * settling the instance does.  Lock held. */
bool nc_volumes_pending_locked(const struct nc_instance *inst);
/* The job part of settling: plugs and unplugs what waits. */
void nc_volumes_converge(struct nc *nc, struct nc_instance *inst);
/* QEMU runs with the boot volume: it is attached.  Lock held. */
void nc_volumes_booted_locked(struct nc *nc, struct nc_instance *inst);
/* QEMU is gone: attachments being undone are (detaching -> detached);
 * with all, every one is (the instance terminated).  Lock held. */
void nc_volumes_qemu_gone_locked(struct nc *nc, struct nc_instance *inst,
                                 bool all);

/* ---- notify.c ---- */
struct nc_notifier *nc_notifier_new(struct nc *nc, struct koala_error **err);
void nc_notifier_free(struct nc_notifier *n);
/* Queues the instance's current state for the CC.  Lock held. */
void nc_notify_locked(struct nc *nc, const struct nc_instance *inst);

/* ---- server.c ---- */
extern const struct http_handler nc_http_handler;

#endif
