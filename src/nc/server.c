/* server.c: the node's SOAP interface (urn:koala:nc, docs/wsdl/nc.wsdl):
 * reading requests, routing them to the operations and writing replies.
 * Every request runs on one of the HTTP server's workers (nothing here
 * waits for long: launches and the like continue in jobs). */
#define LOG_MODULE "nc"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nc.h"
#include "sgfilter.h"
#include "soap.h"

struct nc_req {
    struct buf body;
    bool too_large;
};

/* ---- reading requests ---- */

/* Trimmed text of a required child; MissingParameter when absent or
 * empty. */
static char *need(const struct xml_node *n, const char *name,
                  struct koala_error **err)
{
    char *t = n ? xml_child_text(n, name) : NULL;
    if (t) {
        char *s = str_trim(t);
        memmove(t, s, strlen(s) + 1);
    }
    if (t == NULL || t[0] == '\0') {
        free(t);
        error_set(err, EINVAL, "MissingParameter",
                  "The request must contain the parameter %s", name);
        return NULL;
    }
    return t;
}

/* Trimmed text of an optional child; NULL when absent or empty. */
static char *opt_text(const struct xml_node *n, const char *name)
{
    char *t = xml_child_text(n, name);
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

static int need_int(const struct xml_node *n, const char *name, int64_t min,
                    int64_t max, int64_t *out, struct koala_error **err)
{
    long long v;
    if (soap_int(n, name, LLONG_MIN, &v, err) < 0)
        return -1;
    if (v == LLONG_MIN)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter %s", name);
    if (v < min || v > max)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s must be between %lld and %lld", name,
                         (long long)min, (long long)max);
    *out = v;
    return 0;
}

static int parse_image(const struct xml_node *op, const char *elem,
                       struct nc_image_ref *r, struct koala_error **err)
{
    const struct xml_node *n = xml_child(op, elem);
    if (n == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter %s", elem);
    _cleanup_free_ char *size = NULL, *sha = NULL;
    if ((r->id = need(n, "id", err)) == NULL ||
        (r->url = need(n, "url", err)) == NULL ||
        (size = need(n, "size", err)) == NULL ||
        (sha = need(n, "sha256", err)) == NULL)
        return -1;
    if (!str_has_prefix(r->url, "http://") &&
        !str_has_prefix(r->url, "https://"))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s.url must be an http:// or https:// URL", elem);
    if (str_to_u64(size, &r->size) < 0 || r->size == 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s.size must be a positive number", elem);
    bool hex = strlen(sha) == 64;
    for (char *p = sha; *p && hex; p++) {
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
        hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    }
    if (!hex)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s.sha256 must be 64 hex digits", elem);
    memcpy(r->sha256, sha, 65);
    return 0;
}

static bool valid_mac(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                   (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    /* A unicast address: the low bit of the first octet clear. */
    int first = (int)strtol(s, NULL, 16);
    return (first & 1) == 0;
}

static int instance_id(const struct xml_node *op, char **id,
                       struct koala_error **err)
{
    if ((*id = need(op, "instanceId", err)) == NULL)
        return -1;
    if (!nc_valid_instance_id(*id))
        return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                         "Invalid id: \"%s\"", *id);
    return 0;
}

static int parse_run(struct nc *nc, const struct xml_node *op,
                     struct nc_instance *i, struct koala_error **err)
{
    _cleanup_free_ char *id = NULL;
    if (instance_id(op, &id, err) < 0)
        return -1;
    snprintf(i->id, sizeof(i->id), "%s", id);
    if ((i->reservation_id = need(op, "reservationId", err)) == NULL ||
        (i->owner_id = need(op, "ownerId", err)) == NULL)
        return -1;
    long long li;
    if (soap_int(op, "launchIndex", 0, &li, err) < 0)
        return -1;
    if (li < 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "launchIndex must not be negative");
    i->launch_index = li;
    const struct xml_node *t = xml_child(op, "instanceType");
    if (t == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter "
                         "instanceType");
    if ((i->type.name = need(t, "name", err)) == NULL ||
        need_int(t, "cores", 1, 1024, &i->type.cores, err) < 0 ||
        need_int(t, "memoryMb", 16, 16 << 20, &i->type.memory_mb, err) < 0 ||
        need_int(t, "diskGb", 0, 1 << 20, &i->type.disk_gb, err) < 0)
        return -1;
    if (nc_volumes_parse_run(op, i, err) < 0)
        return -1;
    /* An image, or a boot volume instead (no kernel, no ramdisk). */
    bool from_volume = nc_boot_volume(i) != NULL;
    if (from_volume && (xml_child(op, "image") || xml_child(op, "kernel") ||
                        xml_child(op, "ramdisk")))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "an instance booting from volume %s has no image, "
                         "kernel or ramdisk",
                         nc_boot_volume(i)->id);
    if (!from_volume && xml_child(op, "image") == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter image "
                         "(or a volume with boot true)");
    if (!from_volume && parse_image(op, "image", &i->image, err) < 0)
        return -1;
    if (xml_child(op, "kernel") &&
        parse_image(op, "kernel", &i->kernel, err) < 0)
        return -1;
    if (xml_child(op, "ramdisk")) {
        if (i->kernel.id == NULL)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "a ramdisk needs a kernel");
        if (parse_image(op, "ramdisk", &i->ramdisk, err) < 0)
            return -1;
    }
    const struct xml_node *net = xml_child(op, "net");
    if (net == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter net");
    if ((i->mac = need(net, "macAddress", err)) == NULL)
        return -1;
    if (!valid_mac(i->mac))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "macAddress '%s' is not a unicast MAC address",
                         i->mac);
    for (char *p = i->mac; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    i->private_ip = opt_text(net, "privateIp");
    i->network = opt_text(net, "network");
    i->bridge = opt_text(net, "bridge");
    if (i->network == NULL)
        i->network = strdup("default");
    if (i->bridge && !nc_valid_ifname(i->bridge))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "bridge '%s' is not an interface name", i->bridge);
    i->user_data = opt_text(op, "userData");
    if (i->user_data) {
        size_t n = 0;
        unsigned char *d = str_base64_decode(i->user_data, &n);
        free(d);
        if (d == NULL)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "userData must be base64");
        if (n > NC_USERDATA_MAX)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "userData is larger than %u bytes",
                             NC_USERDATA_MAX);
    }
    i->key_name = opt_text(op, "keyName");
    i->public_key = opt_text(op, "publicKey");
    (void)nc;
    return 0;
}

/* ---- operations ---- */

typedef int (*op_fn)(struct nc *nc, const struct xml_node *op,
                     struct xml_writer *w, struct koala_error **err);

static int op_run(struct nc *nc, const struct xml_node *op,
                  struct xml_writer *w, struct koala_error **err)
{
    struct nc_instance *inst = nc_instance_new();
    if (inst == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (parse_run(nc, op, inst, err) < 0) {
        nc_instance_free(inst);
        return -1;
    }
    return nc_run_instance(nc, inst, w, err);
}

typedef int (*id_fn)(struct nc *nc, const char *id, struct xml_writer *w,
                     struct koala_error **err);

static int by_id(id_fn fn, struct nc *nc, const struct xml_node *op,
                 struct xml_writer *w, struct koala_error **err)
{
    _cleanup_free_ char *id = NULL;
    if (instance_id(op, &id, err) < 0)
        return -1;
    return fn(nc, id, w, err);
}

static int op_terminate(struct nc *nc, const struct xml_node *op,
                        struct xml_writer *w, struct koala_error **err)
{
    return by_id(nc_terminate_instance, nc, op, w, err);
}

static int op_reboot(struct nc *nc, const struct xml_node *op,
                     struct xml_writer *w, struct koala_error **err)
{
    return by_id(nc_reboot_instance, nc, op, w, err);
}

static int op_stop(struct nc *nc, const struct xml_node *op,
                   struct xml_writer *w, struct koala_error **err)
{
    return by_id(nc_stop_instance, nc, op, w, err);
}

static int op_start(struct nc *nc, const struct xml_node *op,
                    struct xml_writer *w, struct koala_error **err)
{
    return by_id(nc_start_instance, nc, op, w, err);
}

static int op_describe_instances(struct nc *nc, const struct xml_node *op,
                                 struct xml_writer *w, struct koala_error **err)
{
    int rc = 0;
    pthread_mutex_lock(&nc->lock);
    const struct xml_node *n = xml_next_child(op, NULL, "instanceId");
    if (n == NULL) {
        for (struct nc_instance *i = nc->instances; i; i = i->next)
            nc_instance_describe(nc, i, w, "instance");
    }
    for (; n && rc == 0; n = xml_next_child(op, n, "instanceId")) {
        _cleanup_free_ char *t = xml_text(n);
        const char *id = t ? str_trim(t) : "";
        struct nc_instance *i = nc_find_locked(nc, id);
        if (!nc_valid_instance_id(id))
            rc = error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                           "Invalid id: \"%s\"", id);
        else if (i == NULL)
            rc = error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                           "The instance ID '%s' does not exist", id);
        else
            nc_instance_describe(nc, i, w, "instance");
    }
    pthread_mutex_unlock(&nc->lock);
    return rc;
}

static int op_describe_resource(struct nc *nc, const struct xml_node *op,
                                struct xml_writer *w, struct koala_error **err)
{
    struct nc_resources r;
    pthread_mutex_lock(&nc->lock);
    nc_resources_locked(nc, &r);
    xml_text_element(w, "node", nc->name);
    xml_text_element(w, "hypervisor", nc_hv_name(nc->hv));
    pthread_mutex_unlock(&nc->lock);
    xml_u64_element(w, "coresMax", (uint64_t)r.cores_max);
    xml_u64_element(w, "coresAvailable", (uint64_t)r.cores_free);
    xml_u64_element(w, "memoryMbMax", (uint64_t)r.memory_mb_max);
    xml_u64_element(w, "memoryMbAvailable", (uint64_t)r.memory_mb_free);
    xml_u64_element(w, "diskGbMax", (uint64_t)r.disk_gb_max);
    xml_u64_element(w, "diskGbAvailable", (uint64_t)r.disk_gb_free);
    xml_u64_element(w, "instanceCount", r.instances);
    xml_u64_element(w, "networkPolicyVersion",
                    (uint64_t)nc_sgfilter_version(nc));
    return 0;
}

static int op_console(struct nc *nc, const struct xml_node *op,
                      struct xml_writer *w, struct koala_error **err)
{
    _cleanup_free_ char *id = NULL, *out = NULL, *b64 = NULL;
    size_t len = 0;
    if (instance_id(op, &id, err) < 0 ||
        nc_console_output(nc, id, &out, &len, err) < 0)
        return -1;
    b64 = str_base64_encode((const unsigned char *)out, len);
    if (b64 == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    char t[25];
    xml_text_element(w, "instanceId", id);
    xml_text_element(w, "output", b64);
    xml_text_element(w, "timestamp", time_format_iso8601(time(NULL), t));
    return 0;
}

/* The CC's network policy (sgfilter.h): <version>, <policy> (the JSON
 * document as text), <router> (optional); answers the version held. */
static int op_set_network_policy(struct nc *nc, const struct xml_node *op,
                                 struct xml_writer *w, struct koala_error **err)
{
    int64_t version, held = 0;
    if (need_int(op, "version", 1, NETPOLICY_MAX_VERSION, &version, err) < 0)
        return -1;
    _cleanup_free_ char *policy = need(op, "policy", err);
    if (policy == NULL)
        return -1;
    _cleanup_free_ char *router = opt_text(op, "router");
    if (nc_sgfilter_set(nc, version, policy, strlen(policy), router, &held,
                        err) < 0)
        return -1;
    xml_u64_element(w, "version", (uint64_t)held);
    return 0;
}

static int op_attach_volume(struct nc *nc, const struct xml_node *op,
                            struct xml_writer *w, struct koala_error **err)
{
    _cleanup_free_ char *id = NULL;
    struct nc_volume *v = NULL;
    if (instance_id(op, &id, err) < 0 || nc_volume_parse(op, true, &v, err) < 0)
        return -1;
    return nc_attach_volume(nc, id, v, w, err);
}

static int op_detach_volume(struct nc *nc, const struct xml_node *op,
                            struct xml_writer *w, struct koala_error **err)
{
    _cleanup_free_ char *id = NULL, *vol = NULL, *force = NULL;
    if (instance_id(op, &id, err) < 0 ||
        (vol = need(op, "volumeId", err)) == NULL)
        return -1;
    if (!nc_valid_volume_id(vol))
        return error_set(err, EINVAL, "InvalidVolumeID.Malformed",
                         "Invalid id: \"%s\" (expecting \"vol-...\")", vol);
    force = opt_text(op, "force");
    if (force && strcmp(force, "true") != 0 && strcmp(force, "false") != 0 &&
        strcmp(force, "1") != 0 && strcmp(force, "0") != 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "force must be true or false");
    bool f = force && (strcmp(force, "true") == 0 || strcmp(force, "1") == 0);
    return nc_detach_volume(nc, id, vol, f, w, err);
}

/* instanceId, volumeId, sizeBytes (the export's new size, after the SC's
 * ResizeVolume). */
static int op_resize_volume(struct nc *nc, const struct xml_node *op,
                            struct xml_writer *w, struct koala_error **err)
{
    _cleanup_free_ char *id = NULL, *vol = NULL;
    int64_t size;
    if (instance_id(op, &id, err) < 0 ||
        (vol = need(op, "volumeId", err)) == NULL ||
        need_int(op, "sizeBytes", 1, INT64_MAX, &size, err) < 0)
        return -1;
    if (!nc_valid_volume_id(vol))
        return error_set(err, EINVAL, "InvalidVolumeID.Malformed",
                         "Invalid id: \"%s\" (expecting \"vol-...\")", vol);
    return nc_resize_volume(nc, id, vol, size, w, err);
}

static const struct {
    const char *name;
    op_fn fn;
} ops[] = {
    {"ncAttachVolume", op_attach_volume},
    {"ncDetachVolume", op_detach_volume},
    {"ncResizeVolume", op_resize_volume},
    {"ncRunInstance", op_run},
    {"ncTerminateInstance", op_terminate},
    {"ncRebootInstance", op_reboot},
    {"ncStopInstance", op_stop},
    {"ncStartInstance", op_start},
    {"ncDescribeInstances", op_describe_instances},
    {"ncDescribeResource", op_describe_resource},
    {"ncGetConsoleOutput", op_console},
    {"ncSetNetworkPolicy", op_set_network_policy},
};

/* ---- HTTP ---- */

static void fail(struct http_request *http, struct koala_error *err,
                 const char *op)
{
    if (err->code == NULL)
        log_error("%s from %s: %s", op, http_request_peer_name(http),
                  error_message(err));
    else
        log_info("%s from %s: %s: %s", op, http_request_peer_name(http),
                 error_code(err), error_message(err));
    soap_reply_fault(http, err);
    error_free(err);
}

static void handle(struct http_request *http)
{
    struct nc *nc = http_request_ctx(http);
    struct nc_req *r = http_request_data(http);
    struct koala_error *err = NULL;
    if (r->too_large) {
        error_set(&err, EFBIG, "InvalidRequest", "request larger than %u bytes",
                  SOAP_MAX_MESSAGE);
        return fail(http, err, "request");
    }
    struct xml_doc *doc = NULL;
    const struct xml_node *op = NULL;
    if (soap_parse_request(r->body.data ? r->body.data : "", r->body.len, &doc,
                           &op, &err) < 0)
        return fail(http, err, "request");
    const char *name = xml_name(op);
    op_fn fn = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(ops) && fn == NULL; i++)
        if (strcmp(name, ops[i].name) == 0)
            fn = ops[i].fn;
    if (fn == NULL) {
        error_set(&err, EINVAL, "InvalidAction",
                  "The action %s is not valid for this web service", name);
        fail(http, err, name);
        xml_doc_free(doc);
        return;
    }
    char resp_name[64];
    snprintf(resp_name, sizeof(resp_name), "%sResponse", name);
    struct xml_writer *w = soap_start(resp_name, NC_XMLNS);
    log_debug("%s from %s", name, http_request_peer_name(http));
    if (fn(nc, op, w, &err) < 0) {
        xml_writer_free(w);
        fail(http, err, name);
    } else {
        size_t len;
        char *out = soap_finish(w, &len);
        soap_reply(http, out, len);
    }
    xml_doc_free(doc);
}

static void on_request(struct http_request *http, void *ctx)
{
    if (strcmp(http_request_method(http), "POST") != 0) {
        http_reply_header(http, "Allow", "POST");
        http_reply_buffer(http, 405, "text/plain", "SOAP requests are POSTed\n",
                          25);
        return;
    }
    struct nc_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_reply_empty(http, 503);
        return;
    }
    http_request_set_data(http, r);
}

static ssize_t on_body(struct http_request *http, const char *data, size_t len)
{
    struct nc_req *r = http_request_data(http);
    if (r->body.len + len > SOAP_MAX_MESSAGE) {
        r->too_large = true;
        return -1;
    }
    if (buf_append(&r->body, data, len) < 0)
        return -1;
    return (ssize_t)len;
}

static void on_complete(struct http_request *http)
{
    http_request_defer(http, handle);
}

static void on_done(struct http_request *http)
{
    struct nc_req *r = http_request_data(http);
    if (r) {
        buf_free(&r->body);
        free(r);
    }
}

const struct http_handler nc_http_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
};
