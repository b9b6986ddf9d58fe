/* volumes.c: the EBS attachments of an instance as records: parsing them
 * from requests, describing them in replies, keeping them in
 * instance.json, the QEMU arguments that give a launching instance its
 * volumes, and the TLS credentials QEMU's NBD client presents to the SC.
 * Attaching and detaching live in volops.c.
 *
 * Why QEMU opens the export itself (docs/storage.md): no kernel initiator
 * on the node and no secret but the node's own certificate; QEMU's NBD
 * client waits (reconnect-delay) while the SC restarts instead of failing
 * the guest's I/O.
 *
 * Nodes: the NBD client (nbd-ID) under a raw node (raw-ID) that the disk
 * (device ID) uses: a forced detach of a disk the guest does not let go
 * of points raw-ID at a null node (null-ID), so that the NBD client can be
 * closed while the device waits for the guest (volops.c).
 *
 * Machines: a microvm (direct kernel boot) cannot hot-plug virtio-mmio
 * devices, so every microvm instance gets a virtio-scsi-device at launch
 * and its volumes are scsi-hd disks on that bus (hot-pluggable; detach
 * needs nothing of the guest).  A pc (whole-disk boot) hot-plugs
 * virtio-blk-pci.  The disk's serial is the volume id without the dash,
 * which is what the guest sees (as on Nitro).
 *
 * Boot volumes (an instance without an image, docs/storage.md): a pc
 * whose first disk is the volume's virtio-blk-pci with bootindex=0, on
 * the command line of every launch and start (never hot-plugged).  The
 * record may come without its export (ncRunInstance; the SC exports to
 * a node only once the CC picked it): it stays attaching until
 * ncAttachVolume brings the export and the launch has QEMU running.
 */
#define LOG_MODULE "nc"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "nc.h"
#include "util.h"

/* Seconds QEMU's NBD client keeps a guest's requests waiting while the
 * export is away (an SC restarting) before failing them. */
#define NC_VOLUME_RECONNECT_S 300

static const char *const vol_states[] = {
    [NC_VOL_ATTACHING] = "attaching",
    [NC_VOL_ATTACHED] = "attached",
    [NC_VOL_DETACHING] = "detaching",
    [NC_VOL_DETACHED] = "detached",
};

const char *nc_vol_state_name(enum nc_vol_state s)
{
    return (unsigned)s < ARRAY_SIZE(vol_states) ? vol_states[s] : "unknown";
}

static int vol_state_parse(const char *s, enum nc_vol_state *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(vol_states); i++)
        if (s && strcmp(s, vol_states[i]) == 0) {
            *out = (enum nc_vol_state)i;
            return 0;
        }
    return -1;
}

static bool all_hex(const char *p)
{
    for (; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

bool nc_valid_volume_id(const char *id)
{
    if (id == NULL || !str_has_prefix(id, "vol-"))
        return false;
    size_t n = strlen(id + 4);
    return (n == 8 || n == 17) && all_hex(id + 4);
}

void nc_volume_serial(const char *volume_id, char out[24])
{
    snprintf(out, 24, "vol%s",
             str_has_prefix(volume_id, "vol-") ? volume_id + 4 : volume_id);
}

static void export_clear(struct nc_export *e)
{
    free(e->transport);
    free(e->path);
    free(e->host);
    free(e->export_name);
    free(e->tls_hostname);
    memset(e, 0, sizeof(*e));
}

void nc_volume_free(struct nc_volume *v)
{
    if (v == NULL)
        return;
    free(v->device);
    free(v->error);
    free(v->grow_error);
    export_clear(&v->ex);
    free(v);
}

void nc_volumes_free(struct nc_volume *list)
{
    while (list) {
        struct nc_volume *v = list;
        list = v->next;
        nc_volume_free(v);
    }
}

bool nc_volume_has_export(const struct nc_volume *v)
{
    return v->ex.transport != NULL;
}

struct nc_volume *nc_boot_volume(const struct nc_instance *inst)
{
    for (struct nc_volume *v = inst->volumes; v; v = v->next)
        if (v->boot && v->state != NC_VOL_DETACHED)
            return v;
    return NULL;
}

bool nc_boot_volume_missing(const struct nc_instance *inst)
{
    const struct nc_volume *v = nc_boot_volume(inst);
    return inst->image.id == NULL && (v == NULL || !nc_volume_has_export(v));
}

struct nc_volume *nc_volume_find(const struct nc_instance *inst,
                                 const char *volume_id)
{
    for (struct nc_volume *v = inst->volumes; v; v = v->next)
        if (strcmp(v->id, volume_id) == 0)
            return v;
    return NULL;
}

/* ---- requests ---- */

static char *child_text(const struct xml_node *n, const char *name)
{
    char *t = n ? xml_child_text(n, name) : NULL;
    if (t) {
        char *s = str_trim(t);
        memmove(t, s, strlen(s) + 1);
        if (t[0] == '\0') {
            free(t);
            t = NULL;
        }
    }
    return t;
}

static int missing(struct koala_error **err, const char *name)
{
    return error_set(err, EINVAL, "MissingParameter",
                     "The request must contain the parameter %s", name);
}

/* A device name as EC2 takes them (/dev/sdf, /dev/xvdf, xvdba, sdf1):
 * an optional /dev/, 2 to 4 letters, 1 or 2 digits at most. */
static bool valid_device(const char *d)
{
    if (str_has_prefix(d, "/dev/"))
        d += 5;
    size_t letters = strspn(d, "abcdefghijklmnopqrstuvwxyz");
    size_t digits = strspn(d + letters, "0123456789");
    return letters >= 2 && letters <= 5 && digits <= 2 &&
           d[letters + digits] == '\0';
}

/* Something QEMU and the guest are handed: printable, no quotes or
 * commas (QEMU's option syntax), not empty. */
static bool plain(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == ',' || *s == '"' || *s == '\'' ||
            *s == '\\' || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static int parse_export(const struct xml_node *e, struct nc_export *ex,
                        struct koala_error **err)
{
    _cleanup_free_ char *port = NULL, *size = NULL;
    ex->transport = child_text(e, "transport");
    ex->path = child_text(e, "path");
    ex->host = child_text(e, "host");
    ex->export_name = child_text(e, "exportName");
    ex->tls_hostname = child_text(e, "tlsHostname");
    port = child_text(e, "port");
    size = child_text(e, "sizeBytes");
    if (ex->transport == NULL)
        return missing(err, "export.transport");
    if (ex->export_name == NULL)
        return missing(err, "export.exportName");
    if (ex->tls_hostname == NULL)
        return missing(err, "export.tlsHostname");
    if (!plain(ex->export_name, 256) || !plain(ex->tls_hostname, 255))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "export.exportName and export.tlsHostname must be "
                         "plain names");
    if (strcmp(ex->transport, "unix") == 0) {
        if (ex->path == NULL)
            return missing(err, "export.path");
        if (ex->path[0] != '/' || !plain(ex->path, PATH_MAX))
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "export.path must be an absolute path");
    } else if (strcmp(ex->transport, "tcp") == 0) {
        if (ex->host == NULL)
            return missing(err, "export.host");
        if (port == NULL)
            return missing(err, "export.port");
        if (!plain(ex->host, 255) || str_to_i64(port, &ex->port) < 0 ||
            ex->port < 1 || ex->port > 65535)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "export.host and export.port must be a host "
                             "and a port (1-65535)");
    } else {
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "export.transport must be unix or tcp, not %s",
                         ex->transport);
    }
    if (size && (str_to_i64(size, &ex->size_bytes) < 0 || ex->size_bytes < 0))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "export.sizeBytes must be a number of bytes");
    return 0;
}

int nc_volume_parse(const struct xml_node *n, bool need_export,
                    struct nc_volume **out, struct koala_error **err)
{
    *out = NULL;
    struct nc_volume *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    _cleanup_free_ char *id = child_text(n, "volumeId");
    _cleanup_free_ char *boot = child_text(n, "boot");
    v->device = child_text(n, "device");
    const struct xml_node *e = xml_child(n, "export");
    int rc = -1;
    if (id == NULL) {
        missing(err, "volumeId");
    } else if (!nc_valid_volume_id(id)) {
        error_set(err, EINVAL, "InvalidVolumeID.Malformed",
                  "Invalid id: \"%s\" (expecting \"vol-...\")", id);
    } else if (v->device == NULL) {
        missing(err, "device");
    } else if (!valid_device(v->device)) {
        error_set(err, EINVAL, "InvalidParameterValue",
                  "Value (%s) for parameter device is invalid. %s is not a "
                  "valid EBS device name.",
                  v->device, v->device);
    } else if (boot && strcmp(boot, "true") != 0 && strcmp(boot, "1") != 0 &&
               strcmp(boot, "false") != 0 && strcmp(boot, "0") != 0) {
        error_set(err, EINVAL, "InvalidParameterValue",
                  "boot must be true or false, not %s", boot);
    } else if (e == NULL && need_export) {
        missing(err, "export");
    } else if (e && parse_export(e, &v->ex, err) < 0) {
        /* err set */
    } else {
        snprintf(v->id, sizeof(v->id), "%s", id);
        v->boot = boot && (strcmp(boot, "true") == 0 || strcmp(boot, "1") == 0);
        rc = 0;
    }
    if (rc < 0)
        nc_volume_free(v);
    else
        *out = v;
    return rc;
}

/* volume*: attachments the instance has from its start: a stopped
 * instance started again, or one booting from a volume (boot true, at
 * most one).  One without its export (it comes with ncAttachVolume) is
 * attaching; so is the boot volume until QEMU runs with it. */
int nc_volumes_parse_run(const struct xml_node *op, struct nc_instance *i,
                         struct koala_error **err)
{
    struct nc_volume **tail = &i->volumes;
    size_t count = 0;
    bool boot = false;
    for (const struct xml_node *n = xml_next_child(op, NULL, "volume"); n;
         n = xml_next_child(op, n, "volume")) {
        struct nc_volume *v = NULL;
        if (nc_volume_parse(n, false, &v, err) < 0)
            return -1;
        *tail = v;
        tail = &v->next;
        v->state = v->boot || !nc_volume_has_export(v) ? NC_VOL_ATTACHING
                                                       : NC_VOL_ATTACHED;
        if (v->boot && boot)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "at most one boot volume per instance (%s is "
                             "another)",
                             v->id);
        boot |= v->boot;
        for (struct nc_volume *o = i->volumes; o != v; o = o->next)
            if (strcmp(o->id, v->id) == 0 || strcmp(o->device, v->device) == 0)
                return error_set(err, EINVAL, "InvalidParameterValue",
                                 "volume %s (%s) is given twice", v->id,
                                 v->device);
        if (++count > NC_MAX_VOLUMES)
            return error_set(err, ENOSPC, "AttachmentLimitExceeded",
                             "at most %d volumes per instance", NC_MAX_VOLUMES);
    }
    return 0;
}

/* ---- replies ---- */

void nc_volumes_describe(const struct nc_instance *inst, struct xml_writer *w)
{
    for (const struct nc_volume *v = inst->volumes; v; v = v->next) {
        char serial[24];
        nc_volume_serial(v->id, serial);
        xml_start(w, "volume");
        xml_text_element(w, "volumeId", v->id);
        xml_text_element(w, "device", v->device);
        xml_text_element(w, "state", nc_vol_state_name(v->state));
        xml_text_element(w, "serial", serial);
        if (v->error)
            xml_text_element(w, "statusMessage", v->error);
        if (v->boot)
            xml_text_element(w, "boot", "true");
        xml_end(w);
    }
}

/* ---- instance.json ---- */

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_string(v));
}

json_t *nc_volumes_to_json(const struct nc_instance *inst)
{
    json_t *a = json_array();
    for (const struct nc_volume *v = inst->volumes; v && a; v = v->next) {
        if (v->state == NC_VOL_DETACHED)
            continue;
        json_t *o = json_object(), *e = json_object();
        set_str(o, "volumeId", v->id);
        set_str(o, "device", v->device);
        set_str(o, "state", nc_vol_state_name(v->state));
        json_object_set_new(o, "force", json_boolean(v->force));
        if (v->boot)
            json_object_set_new(o, "boot", json_true());
        set_str(e, "transport", v->ex.transport);
        set_str(e, "path", v->ex.path);
        set_str(e, "host", v->ex.host);
        json_object_set_new(e, "port", json_integer(v->ex.port));
        set_str(e, "exportName", v->ex.export_name);
        set_str(e, "tlsHostname", v->ex.tls_hostname);
        json_object_set_new(e, "sizeBytes", json_integer(v->ex.size_bytes));
        if (nc_volume_has_export(v)) /* else: still to come */
            json_object_set_new(o, "export", e);
        else
            json_decref(e);
        if (v->grow_to > 0) /* a growth to take up again after a restart */
            json_object_set_new(o, "growTo", json_integer(v->grow_to));
        json_array_append_new(a, o);
    }
    return a;
}

static char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? strdup(s) : NULL;
}

int nc_volumes_from_json(const json_t *arr, struct nc_instance *inst,
                         struct koala_error **err)
{
    if (arr && !json_is_array(arr)) {
        log_error("instance.json of %s: volumes is not a list: left out",
                  inst->id);
        return 0;
    }
    struct nc_volume **tail = &inst->volumes;
    while (*tail)
        tail = &(*tail)->next;
    size_t i;
    const json_t *o;
    json_array_foreach(arr, i, o)
    {
        struct nc_volume *v = calloc(1, sizeof(*v));
        if (v == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        const char *id = json_string_value(json_object_get(o, "volumeId"));
        const char *st = json_string_value(json_object_get(o, "state"));
        const json_t *e = json_object_get(o, "export");
        v->device = jstr(o, "device");
        v->force = json_is_true(json_object_get(o, "force"));
        v->boot = json_is_true(json_object_get(o, "boot"));
        v->ex.transport = jstr(e, "transport");
        v->ex.path = jstr(e, "path");
        v->ex.host = jstr(e, "host");
        v->ex.port = json_integer_value(json_object_get(e, "port"));
        v->ex.export_name = jstr(e, "exportName");
        v->ex.tls_hostname = jstr(e, "tlsHostname");
        v->ex.size_bytes = json_integer_value(json_object_get(e, "sizeBytes"));
        v->grow_to = json_integer_value(json_object_get(o, "growTo"));
        /* No export: one still to come, only while attaching. */
        bool no_export = v->ex.transport == NULL && v->ex.export_name == NULL &&
                         v->ex.tls_hostname == NULL;
        if (!nc_valid_volume_id(id) || vol_state_parse(st, &v->state) < 0 ||
            v->device == NULL ||
            (no_export ? v->state != NC_VOL_ATTACHING
                       : v->ex.transport == NULL || v->ex.export_name == NULL ||
                             v->ex.tls_hostname == NULL)) {
            /* Only that attachment is lost, never the instance (whose
             * loading would remove it). */
            log_error("instance.json of %s: volume %zu is incomplete: "
                      "left out",
                      inst->id, i);
            nc_volume_free(v);
            continue;
        }
        snprintf(v->id, sizeof(v->id), "%s", id);
        *tail = v;
        tail = &v->next;
    }
    return 0;
}

/* ---- QEMU ---- */

void nc_volume_node(const struct nc_volume *v, const char *kind, char out[40])
{
    snprintf(out, 40, "%s-%s", kind, v->id);
}

json_t *nc_volume_blockdev(const struct nc_volume *v)
{
    char node[40], port[16];
    nc_volume_node(v, "nbd", node);
    snprintf(port, sizeof(port), "%lld", (long long)v->ex.port);
    json_t *server =
        strcmp(v->ex.transport, "unix") == 0
            ? json_pack("{s:s, s:s}", "type", "unix", "path", v->ex.path)
            : json_pack("{s:s, s:s, s:s}", "type", "inet", "host", v->ex.host,
                        "port", port);
    /* discard passes the guest's TRIM to the SC's sparse file. */
    return json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:i, s:s}", "driver",
                     "nbd", "node-name", node, "server", server, "export",
                     v->ex.export_name, "tls-creds", "nc-tls", "tls-hostname",
                     v->ex.tls_hostname, "reconnect-delay",
                     NC_VOLUME_RECONNECT_S, "discard", "unmap");
}

json_t *nc_volume_format(const struct nc_volume *v)
{
    char node[40], file[40];
    nc_volume_node(v, "raw", node);
    nc_volume_node(v, "nbd", file);
    return json_pack("{s:s, s:s, s:s, s:s}", "driver", "raw", "node-name", node,
                     "file", file, "discard", "unmap");
}

json_t *nc_volume_device(const struct nc_volume *v, bool microvm)
{
    char node[40], serial[24];
    nc_volume_node(v, "raw", node);
    nc_volume_serial(v->id, serial);
    if (microvm)
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "driver", "scsi-hd",
                         "bus", "vscsi.0", "drive", node, "id", v->id, "serial",
                         serial);
    return json_pack("{s:s, s:s, s:s, s:s}", "driver", "virtio-blk-pci",
                     "drive", node, "id", v->id, "serial", serial);
}

json_t *nc_volume_tls_object(const struct nc *nc)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:b}", "qom-type", "tls-creds-x509",
                     "id", "nc-tls", "endpoint", "client", "dir", nc->tls_dir,
                     "verify-peer", 1);
}

void nc_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Appends json (taken over) as compact text. */
static void push_json(char **v, size_t *n, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    v[(*n)++] = s ? s : strdup("{}");
}

/* Whether v is on the command line of a launch: attached, or the boot
 * volume with its export (attaching until QEMU runs). */
static bool on_command_line(const struct nc_volume *v)
{
    return v->state == NC_VOL_ATTACHED ||
           (v->boot && v->state == NC_VOL_ATTACHING && nc_volume_has_export(v));
}

char **nc_volumes_qemu_args_locked(const struct nc *nc,
                                   const struct nc_instance *inst)
{
    bool microvm = inst->kernel.id != NULL;
    size_t count = 0;
    for (const struct nc_volume *v = inst->volumes; v; v = v->next)
        count++;
    char **a = calloc(6 * count + 5, sizeof(char *));
    const struct nc_volume **order = calloc(count + 1, sizeof(*order));
    if (a == NULL || order == NULL) {
        free(a);
        free(order);
        return NULL;
    }
    /* The boot volume first: the guest's first disk. */
    size_t k = 0;
    for (const struct nc_volume *v = inst->volumes; v; v = v->next)
        if (v->boot && on_command_line(v))
            order[k++] = v;
    for (const struct nc_volume *v = inst->volumes; v; v = v->next)
        if (!v->boot && on_command_line(v))
            order[k++] = v;
    size_t n = 0;
    if (microvm) {
        a[n++] = strdup("-device");
        a[n++] = strdup("virtio-scsi-device,id=vscsi");
    }
    bool creds = false;
    for (size_t j = 0; j < k; j++) {
        const struct nc_volume *v = order[j];
        if (!creds) {
            a[n++] = strdup("-object");
            push_json(a, &n, nc_volume_tls_object(nc));
            creds = true;
        }
        a[n++] = strdup("-blockdev");
        push_json(a, &n, nc_volume_blockdev(v));
        a[n++] = strdup("-blockdev");
        push_json(a, &n, nc_volume_format(v));
        a[n++] = strdup("-device");
        if (v->boot && !microvm) {
            /* QEMU creates the -device of the key=value syntax before the
             * JSON ones: in this one the boot volume takes the first PCI
             * slot of the disks, before the ephemeral one (the guest's
             * first disk, as the root device is on EC2).  Its names are
             * plain (hex ids). */
            char node[40], serial[24];
            nc_volume_node(v, "raw", node);
            nc_volume_serial(v->id, serial);
            if (asprintf(&a[n],
                         "virtio-blk-pci,drive=%s,id=%s,serial=%s,"
                         "bootindex=0",
                         node, v->id, serial) < 0)
                a[n] = NULL;
            n++;
        } else {
            push_json(a, &n, nc_volume_device(v, microvm));
        }
    }
    free(order);
    for (size_t i = 0; i < n; i++)
        if (a[i] == NULL) {
            nc_strv_free(a);
            return NULL;
        }
    return a;
}

/* ---- credentials ---- */

static int copy_file(const char *from, const char *to, size_t max,
                     struct koala_error **err)
{
    size_t len = 0;
    _cleanup_free_ char *data = nc_read_file(from, max, &len, err);
    if (data == NULL) {
        error_prefix(*err, "reading %s", from);
        return -1;
    }
    return nc_write_atomic(to, data, len, err);
}

int nc_volumes_tls_init(struct nc *nc, struct koala_error **err)
{
    /* QEMU wants a directory with these three names; the key stays
     * readable to root only (the directory is 0700). */
    if (asprintf(&nc->tls_dir, "%s/tls", nc->data_dir) < 0) {
        nc->tls_dir = NULL;
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    if (nc_mkdir_p(nc->tls_dir, err) < 0)
        return -1;
    if (chmod(nc->tls_dir, 0700) < 0)
        return error_set_errno(err, "chmod %s", nc->tls_dir);
    const char *from[3] = {nc->opt.ca, nc->opt.tls_cert, nc->opt.tls_key};
    const char *names[3] = {"ca-cert.pem", "client-cert.pem", "client-key.pem"};
    for (int i = 0; i < 3; i++) {
        _cleanup_free_ char *to = NULL;
        if (asprintf(&to, "%s/%s", nc->tls_dir, names[i]) < 0)
            return error_set(err, ENOMEM, NULL, "out of memory");
        if (copy_file(from[i], to, 1 << 20, err) < 0)
            return -1;
    }
    return 0;
}

void nc_volumes_reap_locked(struct nc_instance *inst, int64_t now_ms,
                            int64_t ttl_ms)
{
    for (struct nc_volume **p = &inst->volumes; *p;) {
        struct nc_volume *v = *p;
        if (v->state == NC_VOL_DETACHED && now_ms - v->detached_ms >= ttl_ms) {
            *p = v->next;
            nc_volume_free(v);
        } else {
            p = &v->next;
        }
    }
}
