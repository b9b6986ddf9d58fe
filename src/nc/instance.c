/* instance.c: the instance record: states, instance.json (the crash-safe
 * state file each instance directory holds) and the <instance> element of
 * the SOAP replies. */
#define LOG_MODULE "nc"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nc.h"
#include "util.h"

static const char *const state_names[] = {
    [NC_PENDING] = "pending",
    [NC_RUNNING] = "running",
    [NC_STOPPING] = "stopping",
    [NC_STOPPED] = "stopped",
    [NC_SHUTTING_DOWN] = "shutting-down",
    [NC_TERMINATED] = "terminated",
};

const char *nc_state_name(enum nc_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

int nc_state_parse(const char *s, enum nc_state *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(state_names); i++)
        if (s && strcmp(s, state_names[i]) == 0) {
            *out = (enum nc_state)i;
            return 0;
        }
    return -1;
}

const char *nc_hv_name(enum nc_hv hv)
{
    return hv == NC_HV_KVM ? "kvm" : "tcg";
}

bool nc_valid_ifname(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 15)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

bool nc_valid_instance_id(const char *id)
{
    if (id == NULL || !str_has_prefix(id, "i-"))
        return false;
    size_t n = strlen(id + 2);
    if (n < 8 || n > 17)
        return false;
    for (const char *p = id + 2; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

struct nc_instance *nc_instance_new(void)
{
    struct nc_instance *inst = calloc(1, sizeof(*inst));
    if (inst)
        pthread_mutex_init(&inst->save_lock, NULL);
    return inst;
}

void nc_instance_free(struct nc_instance *inst)
{
    if (inst == NULL)
        return;
    free(inst->reservation_id);
    free(inst->owner_id);
    free(inst->type.name);
    nc_image_ref_clear(&inst->image);
    nc_image_ref_clear(&inst->kernel);
    nc_image_ref_clear(&inst->ramdisk);
    free(inst->mac);
    free(inst->private_ip);
    free(inst->network);
    free(inst->bridge);
    free(inst->user_data);
    free(inst->key_name);
    free(inst->public_key);
    free(inst->dir);
    free(inst->reason_code);
    free(inst->reason_message);
    free(inst->console);
    nc_volumes_free(inst->volumes);
    qmp_free(inst->qmp);
    pthread_mutex_destroy(&inst->save_lock);
    free(inst);
}

struct nc_instance *nc_find_locked(struct nc *nc, const char *id)
{
    for (struct nc_instance *i = nc->instances; i; i = i->next)
        if (strcmp(i->id, id) == 0)
            return i;
    return NULL;
}

/* ---- instance.json ---- */

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_string(v));
}

static json_t *image_json(const struct nc_image_ref *r)
{
    json_t *o = json_object();
    set_str(o, "id", r->id);
    set_str(o, "url", r->url);
    json_object_set_new(o, "size", json_integer((json_int_t)r->size));
    set_str(o, "sha256", r->sha256);
    return o;
}

char *nc_instance_to_json(const struct nc_instance *i)
{
    json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(1));
    set_str(o, "instanceId", i->id);
    set_str(o, "reservationId", i->reservation_id);
    set_str(o, "ownerId", i->owner_id);
    json_object_set_new(o, "launchIndex", json_integer(i->launch_index));
    json_object_set_new(o, "instanceType",
                        json_pack("{s:s, s:I, s:I, s:I}", "name",
                                  i->type.name ? i->type.name : "", "cores",
                                  (json_int_t)i->type.cores, "memoryMb",
                                  (json_int_t)i->type.memory_mb, "diskGb",
                                  (json_int_t)i->type.disk_gb));
    if (i->image.id) /* else: boots from its boot volume */
        json_object_set_new(o, "image", image_json(&i->image));
    if (i->kernel.id)
        json_object_set_new(o, "kernel", image_json(&i->kernel));
    if (i->ramdisk.id)
        json_object_set_new(o, "ramdisk", image_json(&i->ramdisk));
    json_t *net = json_object();
    set_str(net, "macAddress", i->mac);
    set_str(net, "privateIp", i->private_ip);
    set_str(net, "network", i->network);
    set_str(net, "bridge", i->bridge);
    json_object_set_new(o, "net", net);
    set_str(o, "userData", i->user_data);
    set_str(o, "keyName", i->key_name);
    set_str(o, "publicKey", i->public_key);
    json_object_set_new(o, "launchTime", json_integer(i->launch_time_ms));
    set_str(o, "tap", i->tap);
    set_str(o, "state", nc_state_name(i->state));
    set_str(o, "stateReasonCode", i->reason_code);
    set_str(o, "stateReasonMessage", i->reason_message);
    set_str(o, "hypervisor", nc_hv_name(i->hv));
    json_object_set_new(o, "booted", json_boolean(i->booted));
    json_object_set_new(o, "pid", json_integer(i->pid));
    json_object_set_new(o, "volumes", nc_volumes_to_json(i));
    char *text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

static char *get_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? strdup(s) : NULL;
}

/* Copies the string at key into a fixed buffer whole: -1 (nothing
 * copied) when it is absent or does not fit, never a cut copy. */
static int get_fixed(const json_t *o, const char *key, char *out, size_t size)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || strlen(s) >= size)
        return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int get_image(const json_t *o, struct nc_image_ref *r)
{
    if (!json_is_object(o))
        return -1;
    r->id = get_str(o, "id");
    r->url = get_str(o, "url");
    json_int_t size = json_integer_value(json_object_get(o, "size"));
    r->size = size > 0 ? (uint64_t)size : 0;
    if (get_fixed(o, "sha256", r->sha256, sizeof(r->sha256)) < 0)
        return -1;
    return r->id && strlen(r->sha256) == 64 &&
                   strspn(r->sha256, "0123456789abcdef") == 64
               ? 0
               : -1;
}

struct nc_instance *nc_instance_from_json(const char *text, size_t len,
                                          struct koala_error **err)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    struct nc_instance *i = o ? nc_instance_new() : NULL;
    if (o == NULL) {
        error_set(err, EINVAL, NULL, "instance.json: line %d: %s", jerr.line,
                  jerr.text);
        return NULL;
    }
    if (i == NULL) {
        json_decref(o);
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    int bad = get_fixed(o, "instanceId", i->id, sizeof(i->id));
    i->reservation_id = get_str(o, "reservationId");
    i->owner_id = get_str(o, "ownerId");
    i->launch_index = json_integer_value(json_object_get(o, "launchIndex"));
    json_t *t = json_object_get(o, "instanceType");
    i->type.name = get_str(t, "name");
    i->type.cores = json_integer_value(json_object_get(t, "cores"));
    i->type.memory_mb = json_integer_value(json_object_get(t, "memoryMb"));
    i->type.disk_gb = json_integer_value(json_object_get(t, "diskGb"));
    if (json_object_get(o, "image"))
        bad |= get_image(json_object_get(o, "image"), &i->image);
    if (json_object_get(o, "kernel"))
        bad |= get_image(json_object_get(o, "kernel"), &i->kernel);
    if (json_object_get(o, "ramdisk"))
        bad |= get_image(json_object_get(o, "ramdisk"), &i->ramdisk);
    json_t *net = json_object_get(o, "net");
    i->mac = get_str(net, "macAddress");
    i->private_ip = get_str(net, "privateIp");
    i->network = get_str(net, "network");
    i->bridge = get_str(net, "bridge");
    i->user_data = get_str(o, "userData");
    i->key_name = get_str(o, "keyName");
    i->public_key = get_str(o, "publicKey");
    i->launch_time_ms = json_integer_value(json_object_get(o, "launchTime"));
    bad |= get_fixed(o, "tap", i->tap, sizeof(i->tap));
    const char *st = json_string_value(json_object_get(o, "state"));
    i->reason_code = get_str(o, "stateReasonCode");
    i->reason_message = get_str(o, "stateReasonMessage");
    const char *hv = json_string_value(json_object_get(o, "hypervisor"));
    i->hv = hv && strcmp(hv, "kvm") == 0 ? NC_HV_KVM : NC_HV_TCG;
    i->booted = json_is_true(json_object_get(o, "booted"));
    i->pid = (pid_t)json_integer_value(json_object_get(o, "pid"));
    struct koala_error *verr = NULL;
    if (nc_volumes_from_json(json_object_get(o, "volumes"), i, &verr) < 0) {
        log_error("%s", error_message(verr));
        bad = -1;
    }
    error_free(verr);
    if (bad || !nc_valid_instance_id(i->id) || nc_state_parse(st, &i->state) ||
        i->type.name == NULL || i->mac == NULL || i->tap[0] == '\0') {
        error_set(err, EINVAL, NULL, "instance.json of %s: incomplete",
                  i->id[0] ? i->id : "(no id)");
        nc_instance_free(i);
        i = NULL;
    }
    json_decref(o);
    return i;
}

int nc_instance_save(struct nc *nc, struct nc_instance *inst,
                     struct koala_error **err)
{
    pthread_mutex_lock(&inst->save_lock);
    pthread_mutex_lock(&nc->lock);
    char *text = nc_instance_to_json(inst);
    bool gone = inst->state == NC_TERMINATED;
    pthread_mutex_unlock(&nc->lock);
    int rc = 0;
    if (text == NULL) {
        rc = error_set(err, ENOMEM, NULL, "out of memory");
    } else if (!gone) { /* a terminated instance's directory is gone */
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/instance.json", inst->dir) < 0)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
        else
            rc = nc_write_atomic(path, text, strlen(text), err);
    }
    free(text);
    pthread_mutex_unlock(&inst->save_lock);
    return rc;
}

/* ---- SOAP ---- */

void nc_instance_describe(struct nc *nc, const struct nc_instance *i,
                          struct xml_writer *w, const char *element)
{
    char t[25];
    xml_start(w, element);
    xml_text_element(w, "instanceId", i->id);
    xml_text_element(w, "reservationId", i->reservation_id);
    xml_text_element(w, "ownerId", i->owner_id);
    xml_text_elementf(w, "launchIndex", "%lld", (long long)i->launch_index);
    xml_text_element(w, "state", nc_state_name(i->state));
    if (i->reason_code)
        xml_text_element(w, "stateReasonCode", i->reason_code);
    if (i->reason_message)
        xml_text_element(w, "stateReasonMessage", i->reason_message);
    xml_text_element(w, "instanceType", i->type.name);
    if (i->image.id)
        xml_text_element(w, "imageId", i->image.id);
    if (i->kernel.id)
        xml_text_element(w, "kernelId", i->kernel.id);
    if (i->ramdisk.id)
        xml_text_element(w, "ramdiskId", i->ramdisk.id);
    xml_text_element(w, "macAddress", i->mac);
    xml_text_element(w, "privateIp", i->private_ip ? i->private_ip : "");
    xml_text_element(
        w, "launchTime",
        time_format_iso8601((time_t)(i->launch_time_ms / 1000), t));
    xml_text_element(w, "node", nc->name);
    xml_text_element(w, "hypervisor", nc_hv_name(i->hv));
    nc_volumes_describe(i, w);
    xml_end(w);
}
