/* volumes.c: the cluster's part of EBS (docs/storage.md): AttachVolume,
 * DetachVolume and ResizeVolume forwarded to the node that hosts the
 * instance (ncAttachVolume, ncDetachVolume, ncResizeVolume), and the
 * instances' attachments as their NCs report them, kept with the instance
 * (its `volumes` column) so that DescribeInstances and the notifications
 * to the CLC carry them.
 *
 * The CC adds nothing to an attachment: the SC's export comes from the
 * CLC and goes to the node as it is; the node's answer (attached, or the
 * fault) goes back as it is.  The attachment's later states reach the CLC
 * the way instance states do: the NC pushes them, the poller reconciles.
 *
 * Stored form: one line per attachment, "volumeId TAB device TAB state
 * TAB serial TAB statusMessage", at most CC_VOLUMES_TEXT bytes (tabs and
 * line ends in the message become spaces; the message is cut at 120
 * bytes).
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

static void put_field(struct buf *b, const char *s, bool last)
{
    for (; s && *s; s++)
        buf_append_char(b, *s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s);
    buf_append_char(b, last ? '\n' : '\t');
}

void cc_volumes_from_xml(const struct xml_node *inst, char *out, size_t size)
{
    struct buf b = {0};
    out[0] = '\0';
    for (const struct xml_node *v = xml_next_child(inst, NULL, "volume"); v;
         v = xml_next_child(inst, v, "volume")) {
        static const char *const f[] = {"volumeId", "device", "state", "serial",
                                        "statusMessage"};
        size_t mark = b.len;
        for (int i = 0; i < 5; i++) {
            _cleanup_free_ char *t = xml_child_text(v, f[i]);
            char *s = t ? str_trim(t) : NULL;
            /* A reason is kept short, so that 16 attachments always fit. */
            if (s && i == 4 && strlen(s) > 120)
                s[120] = '\0';
            put_field(&b, s, i == 4);
        }
        if (b.len >= size) { /* the rest does not fit: left out */
            log_warn("instance attachments beyond %zu bytes left out", size);
            b.len = mark;
            break;
        }
    }
    if (b.data) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    buf_free(&b);
}

void cc_volumes_write(struct xml_writer *w, const char *text)
{
    static const char *const f[] = {"volumeId", "device", "state", "serial",
                                    "statusMessage"};
    _cleanup_free_ char *copy = strdup(text ? text : "");
    char *line, *save = NULL;
    for (line = copy ? strtok_r(copy, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        xml_start(w, "volume");
        char *p = line;
        for (int i = 0; i < 5; i++) {
            char *tab = strchr(p, '\t');
            if (tab)
                *tab = '\0';
            if (i < 4 || *p)
                xml_text_element(w, f[i], p);
            if (tab == NULL)
                break;
            p = tab + 1;
        }
        xml_end(w);
    }
}

void cc_xml_copy(struct xml_writer *w, const struct xml_node *n)
{
    const struct xml_node *c = xml_next_child(n, NULL, NULL);
    if (c == NULL) {
        _cleanup_free_ char *t = xml_text(n);
        xml_text_element(w, xml_name(n), t ? str_trim(t) : "");
        return;
    }
    xml_start(w, xml_name(n));
    for (; c; c = xml_next_child(n, c, NULL))
        cc_xml_copy(w, c);
    xml_end(w);
}

int cc_volume_check(const struct xml_node *v, bool need_export, bool *boot,
                    struct koala_error **err)
{
    _cleanup_free_ char *id = xml_child_text(v, "volumeId");
    _cleanup_free_ char *dev = xml_child_text(v, "device");
    _cleanup_free_ char *b = xml_child_text(v, "boot");
    if (id == NULL || *str_trim(id) == '\0' || dev == NULL ||
        *str_trim(dev) == '\0' ||
        (need_export && xml_child(v, "export") == NULL))
        return error_set(err, EINVAL, "MissingParameter",
                         need_export
                             ? "a volume needs volumeId, device and export"
                             : "a volume needs volumeId and device");
    if (strlen(str_trim(id)) >= 32 || !str_has_prefix(str_trim(id), "vol-"))
        return error_set(err, EINVAL, "InvalidVolumeID.Malformed",
                         "Invalid id: \"%s\"", str_trim(id));
    const char *t = b ? str_trim(b) : "false";
    bool yes = strcmp(t, "true") == 0 || strcmp(t, "1") == 0;
    if (!yes && strcmp(t, "false") != 0 && strcmp(t, "0") != 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "boot must be true or false, not %s", t);
    if (boot)
        *boot = yes;
    return 0;
}

/* The instance (this CC's, live) and its node's endpoint. */
static int locate(struct cc_req *r, const char *id, struct cc_instance *in,
                  char endpoint[256], struct koala_error **err)
{
    struct db *db = cc_req_db(r, err);
    if (db == NULL)
        return -1;
    if (!cc_instance_id_valid(id))
        return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                         "Invalid id: \"%s\"", id);
    int found = store_instance_get(db, id, in, err);
    if (found < 0)
        return -1;
    if (found == 1)
        return error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                         "The instance ID '%s' does not exist", id);
    if (strcmp(in->state, "terminated") == 0)
        return error_set(err, EINVAL, "IncorrectInstanceState",
                         "The instance '%s' is terminated", id);
    if (!nodes_endpoint(r->cc, in->node, endpoint))
        return error_set(err, ENOENT, "ServiceUnavailable",
                         "node %s of instance %s is no longer configured",
                         in->node, id);
    return 0;
}

/* Sends req (an ncAttachVolume / ncDetachVolume / ncResizeVolume of the
 * CLC's request, copied) to the instance's node and answers with the
 * node's volume (and its sizeBytes, of a resize). */
static void forward(struct cc_req *r, const char *nc_op, const char *reply_op)
{
    struct koala_error *err = NULL;
    _cleanup_free_ char *id = soap_text(r->op, "instanceId", &err);
    struct cc_instance in;
    char endpoint[256];
    if (id == NULL || locate(r, str_trim(id), &in, endpoint, &err) < 0)
        return cc_fail(r, err);
    struct xml_writer *w = soap_start(nc_op, NC_NS);
    for (const struct xml_node *c = xml_next_child(r->op, NULL, NULL); c;
         c = xml_next_child(r->op, c, NULL))
        cc_xml_copy(w, c);
    size_t len = 0;
    char *req = soap_finish(w, &len);
    if (req == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        return cc_fail(r, err);
    }
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    /* Attaching waits on the node for the plug (or the guest's letting
     * go, on detach; the new NBD client, on resize): longer than an
     * ordinary call. */
    if (nc_call(r->cc, endpoint, nc_op, req, len,
                (unsigned)r->cc->opt.nc_timeout_ms + 60000, &doc, &body,
                &err) < 0)
        return cc_fail(r, err);
    const struct xml_node *v = xml_child(body, "volume");
    const struct xml_node *size = xml_child(body, "sizeBytes");
    struct xml_writer *out = soap_start(reply_op, CC_NS);
    xml_text_element(out, "instanceId", in.id);
    xml_text_element(out, "node", in.node);
    if (v)
        cc_xml_copy(out, v);
    if (size)
        cc_xml_copy(out, size);
    xml_doc_free(doc);
    log_info("%s %s on %s: done", nc_op, in.id, in.node);
    /* The node's push brings the new state; poll soon besides. */
    nodes_poll_soon(r->cc);
    cc_reply(r, out);
}

void cc_op_attach_volume(struct cc_req *r)
{
    struct koala_error *err = NULL;
    if (cc_volume_check(r->op, true, NULL, &err) < 0)
        return cc_fail(r, err);
    forward(r, "ncAttachVolume", "AttachVolumeResponse");
}

void cc_op_detach_volume(struct cc_req *r)
{
    struct koala_error *err = NULL;
    _cleanup_free_ char *vol = soap_text(r->op, "volumeId", &err);
    if (vol == NULL)
        return cc_fail(r, err);
    forward(r, "ncDetachVolume", "DetachVolumeResponse");
}

void cc_op_resize_volume(struct cc_req *r)
{
    struct koala_error *err = NULL;
    _cleanup_free_ char *vol = soap_text(r->op, "volumeId", &err);
    _cleanup_free_ char *size =
        vol ? soap_text(r->op, "sizeBytes", &err) : NULL;
    if (size == NULL)
        return cc_fail(r, err);
    forward(r, "ncResizeVolume", "ResizeVolumeResponse");
}
