/* ncwire.c: calls to the NCs (urn:koala:nc) over mutual TLS, the instance
 * records as the CC writes them, and applying what an NC reports about an
 * instance (from a poll, a push or a reply) to the database. */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

static const char *const states[] = {"pending", "running",       "stopping",
                                     "stopped", "shutting-down", "terminated"};

bool cc_state_valid(const char *state)
{
    for (size_t i = 0; i < ARRAY_SIZE(states); i++)
        if (strcmp(state, states[i]) == 0)
            return true;
    return false;
}

bool cc_instance_id_valid(const char *id)
{
    if (!str_has_prefix(id, "i-"))
        return false;
    size_t n = strlen(id + 2);
    if (n != 8 && n != 17)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[2 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

int nc_call(struct cc *cc, const char *endpoint, const char *op, char *req,
            size_t len, unsigned timeout_ms, struct xml_doc **doc,
            const struct xml_node **body, struct koala_error **err)
{
    struct soap_client *c =
        soap_client_new(endpoint, &cc->tls, timeout_ms, err);
    if (c == NULL) {
        free(req);
        return -1;
    }
    int rc = soap_call(c, op, req, len, doc, body, err);
    soap_client_free(c);
    return rc;
}

static void copy_child(const struct xml_node *n, const char *name, char *out,
                       size_t size)
{
    _cleanup_free_ char *t = xml_child_text(n, name);
    snprintf(out, size, "%s", t ? str_trim(t) : "");
}

int nc_report_parse(const struct xml_node *n, struct nc_report *out,
                    struct koala_error **err)
{
    memset(out, 0, sizeof(*out));
    copy_child(n, "instanceId", out->id, sizeof(out->id));
    copy_child(n, "state", out->state, sizeof(out->state));
    copy_child(n, "stateReasonCode", out->reason_code,
               sizeof(out->reason_code));
    copy_child(n, "stateReasonMessage", out->reason_message,
               sizeof(out->reason_message));
    copy_child(n, "hypervisor", out->hypervisor, sizeof(out->hypervisor));
    cc_volumes_from_xml(n, out->volumes, sizeof(out->volumes));
    out->have_volumes = true;
    if (!cc_instance_id_valid(out->id))
        return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                         "instance id '%s' is malformed", out->id);
    if (!cc_state_valid(out->state))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "instance %s: unknown state '%s'", out->id,
                         out->state);
    return 0;
}

int nc_instance_op(struct cc *cc, const char *endpoint, const char *op,
                   const char *instance_id, struct nc_report *out,
                   struct koala_error **err)
{
    struct xml_writer *w = soap_start(op, NC_NS);
    xml_text_element(w, "instanceId", instance_id);
    size_t len;
    char *req = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    if (nc_call(cc, endpoint, op, req, len, (unsigned)cc->opt.nc_timeout_ms,
                &doc, &body, err) < 0)
        return -1;
    const struct xml_node *inst = xml_child(body, "instance");
    int rc = nc_report_parse(inst ? inst : body, out, err);
    xml_doc_free(doc);
    return rc;
}

void cc_instance_write(struct xml_writer *w, const char *elem,
                       const struct cc_instance *in)
{
    char t[25];
    xml_start(w, elem);
    xml_text_element(w, "instanceId", in->id);
    xml_text_element(w, "reservationId", in->reservation);
    xml_text_element(w, "ownerId", in->owner);
    xml_u64_element(w, "launchIndex", (uint64_t)in->launch_index);
    xml_text_element(w, "state", in->state);
    if (in->reason_code[0])
        xml_text_element(w, "stateReasonCode", in->reason_code);
    if (in->reason_message[0])
        xml_text_element(w, "stateReasonMessage", in->reason_message);
    xml_text_element(w, "instanceType", in->type.name);
    xml_text_element(w, "imageId", in->image_id);
    if (in->kernel_id[0])
        xml_text_element(w, "kernelId", in->kernel_id);
    if (in->ramdisk_id[0])
        xml_text_element(w, "ramdiskId", in->ramdisk_id);
    xml_text_element(w, "macAddress", in->mac);
    xml_text_element(w, "privateIp", in->ip);
    time_format_iso8601((time_t)(in->launch_ms / 1000), t);
    xml_text_element(w, "launchTime", t);
    xml_text_element(w, "node", in->node);
    xml_text_element(w, "hypervisor", in->hypervisor);
    const char *reach = cc_reachability(in);
    if (reach)
        xml_text_element(w, "reachability", reach);
    cc_volumes_write(w, in->volumes);
    xml_end(w);
}

int cc_apply_report(struct cc *cc, struct db *db, const char *node,
                    const struct nc_report *r, bool mark_seen, bool *dhcp_dirty,
                    struct koala_error **err)
{
    struct cc_instance in, now;
    if (db_begin(db, err) < 0)
        return -1;
    int found = store_instance_get(db, r->id, &in, err);
    if (found != 0 || strcmp(in.node, node) != 0 ||
        strcmp(in.state, "terminated") == 0) {
        /* Unknown here, another node's, or already over. */
        db_rollback(db);
        return found < 0 ? -1 : 0;
    }
    now = in;
    snprintf(now.state, sizeof(now.state), "%s", r->state);
    /* Asked to terminate: it is going away whatever the NC says until
     * it says terminated (the poller asks the NC again). */
    if (in.terminate_requested && strcmp(r->state, "terminated") != 0)
        snprintf(now.state, sizeof(now.state), "shutting-down");
    if (r->reason_code[0] || strcmp(now.state, in.state) != 0) {
        snprintf(now.reason_code, sizeof(now.reason_code), "%s",
                 r->reason_code);
        snprintf(now.reason_message, sizeof(now.reason_message), "%s",
                 r->reason_message);
    }
    if (r->hypervisor[0])
        snprintf(now.hypervisor, sizeof(now.hypervisor), "%s", r->hypervisor);
    if (mark_seen)
        now.seen = true;
    if (r->have_volumes)
        snprintf(now.volumes, sizeof(now.volumes), "%s", r->volumes);
    /* Its guest is down: the next start must show a new lease. */
    if (strcmp(now.state, "running") != 0 && strcmp(now.state, "pending") != 0)
        now.lease_ms = 0;
    bool changed = strcmp(now.state, in.state) != 0 ||
                   strcmp(now.reason_code, in.reason_code) != 0 ||
                   strcmp(now.reason_message, in.reason_message) != 0 ||
                   strcmp(now.volumes, in.volumes) != 0;
    bool touched = changed || now.seen != in.seen ||
                   now.lease_ms != in.lease_ms ||
                   strcmp(now.hypervisor, in.hypervisor) != 0;
    bool freed = false;
    if (strcmp(now.state, "terminated") == 0 &&
        alloc_release(db, now.id, &freed, err) < 0) {
        db_rollback(db);
        return -1;
    }
    if (changed)
        now.updated_ms = time_now_ms();
    if (touched && store_instance_update(db, &now, err) < 0) {
        db_rollback(db);
        return -1;
    }
    if (db_commit(db, err) < 0)
        return -1;
    if (freed)
        *dhcp_dirty = true;
    if (changed) {
        log_info("instance %s on %s: %s -> %s%s%s", now.id, node, in.state,
                 now.state, now.reason_code[0] ? " " : "", now.reason_code);
        notifier_push(cc->notify, &now);
    }
    return 0;
}
