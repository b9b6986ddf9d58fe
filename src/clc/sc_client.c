/* sc_client.c: the CLC's calls to a zone's storage controller (koala-sc,
 * docs/wsdl/sc.wsdl): volumes, exports and snapshots.  Each call is one
 * SOAP request over mutual TLS; the SC's faults come back as its errors
 * (its codes are EC2's, so they reach the user as they are). */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"
#include "soap.h"

#define SC_NS "urn:koala:sc"
#define SC_TIMEOUT_MS 30000

struct find_sc {
    const char *zone;
    char endpoint[256];
    bool found;
};

static int find_sc(void *ctx, const struct service *s)
{
    struct find_sc *f = ctx;
    if (strcmp(s->partition, f->zone) != 0)
        return 0;
    snprintf(f->endpoint, sizeof(f->endpoint), "%s", s->endpoint);
    f->found = true;
    return 1;
}

struct soap_client *clc_sc_client(struct clc *clc, struct db *db,
                                  const char *zone, struct koala_error **err)
{
    struct find_sc f = {.zone = zone};
    if (clc_services_each(db, "sc", find_sc, &f, err) < 0)
        return NULL;
    if (!f.found) {
        error_set(err, ENOENT, "ServiceUnavailable",
                  "no storage controller is registered for zone '%s'", zone);
        return NULL;
    }
    return soap_client_new(f.endpoint, &clc->tls, SC_TIMEOUT_MS, err);
}

/* The element a response carries (its <name> child), or the body. */
static const struct xml_node *item(const struct xml_node *body,
                                   const char *name)
{
    const struct xml_node *n = xml_child(body, name);
    return n ? n : body;
}

static void child_str(const struct xml_node *n, const char *name, char *out,
                      size_t size)
{
    _cleanup_free_ char *v = xml_child_text(n, name);
    snprintf(out, size, "%s", v ? str_trim(v) : "");
}

static uint64_t child_u64(const struct xml_node *n, const char *name)
{
    _cleanup_free_ char *v = xml_child_text(n, name);
    return v ? strtoull(str_trim(v), NULL, 10) : 0;
}

static void read_volume(const struct xml_node *body, struct sc_volume *out)
{
    const struct xml_node *v = item(body, "volume");
    memset(out, 0, sizeof(*out));
    child_str(v, "status", out->status, sizeof(out->status));
    out->size = child_u64(v, "sizeBytes");
    _cleanup_free_ char *p = xml_child_text(v, "progress");
    out->progress = p ? atoi(str_trim(p)) : -1;
}

static void read_snapshot(const struct xml_node *body, struct sc_snapshot *out)
{
    const struct xml_node *s = item(body, "snapshot");
    memset(out, 0, sizeof(*out));
    child_str(s, "status", out->status, sizeof(out->status));
    out->progress = (int)child_u64(s, "progress");
    out->uploaded = child_u64(s, "uploadedBytes");
    out->total = child_u64(s, "totalBytes");
    child_str(s, "statusMessage", out->message, sizeof(out->message));
}

/* Hands e to the caller (the first error wins): -1. */
static int pass(struct koala_error **err, struct koala_error *e)
{
    if (err && *err == NULL)
        *err = e;
    else
        error_free(e);
    return -1;
}

/* Sends w (finished here) as op: 0 with *doc / *body, or -1. */
static int call(struct soap_client *c, const char *op, struct xml_writer *w,
                struct xml_doc **doc, const struct xml_node **body,
                struct koala_error **err)
{
    size_t len;
    char *rq = soap_finish(w, &len);
    return soap_call(c, op, rq, len, doc, body, err);
}

/* Is err the SC saying it does not know the object? */
static bool not_found(const struct koala_error *err)
{
    const char *code = err ? err->code : NULL;
    return code && (strstr(code, ".NotFound") != NULL);
}

int clc_sc_create_volume(struct soap_client *c, const char *id, uint64_t size,
                         const char *snapshot, const char *snapshot_zone,
                         struct sc_volume *out, struct koala_error **err)
{
    struct xml_writer *w = soap_start("CreateVolume", SC_NS);
    xml_text_element(w, "volumeId", id);
    xml_u64_element(w, "sizeBytes", size);
    if (snapshot && *snapshot) {
        xml_text_element(w, "snapshotId", snapshot);
        if (snapshot_zone && *snapshot_zone)
            xml_text_element(w, "snapshotZone", snapshot_zone);
    }
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (call(c, "CreateVolume", w, &doc, &body, err) < 0)
        return -1;
    read_volume(body, out);
    return 0;
}

int clc_sc_delete_volume(struct soap_client *c, const char *id,
                         struct sc_volume *out, struct koala_error **err)
{
    struct xml_writer *w = soap_start("DeleteVolume", SC_NS);
    xml_text_element(w, "volumeId", id);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct koala_error *e = NULL;
    if (call(c, "DeleteVolume", w, &doc, &body, &e) < 0) {
        if (not_found(e)) { /* gone already: what we wanted */
            error_free(e);
            memset(out, 0, sizeof(*out));
            snprintf(out->status, sizeof(out->status), "deleted");
            return 0;
        }
        return pass(err, e);
    }
    read_volume(body, out);
    return 0;
}

int clc_sc_resize_volume(struct soap_client *c, const char *id, uint64_t size,
                         struct sc_volume *out, struct koala_error **err)
{
    struct xml_writer *w = soap_start("ResizeVolume", SC_NS);
    xml_text_element(w, "volumeId", id);
    xml_u64_element(w, "sizeBytes", size);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (call(c, "ResizeVolume", w, &doc, &body, err) < 0)
        return -1;
    read_volume(body, out);
    return 0;
}

int clc_sc_describe_volume(struct soap_client *c, const char *id,
                           struct sc_volume *out, struct koala_error **err)
{
    struct xml_writer *w = soap_start("DescribeVolumes", SC_NS);
    xml_text_element(w, "volumeId", id);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct koala_error *e = NULL;
    if (call(c, "DescribeVolumes", w, &doc, &body, &e) < 0) {
        if (not_found(e)) {
            error_free(e);
            return 1;
        }
        return pass(err, e);
    }
    for (const struct xml_node *v = xml_next_child(body, NULL, "volume"); v;
         v = xml_next_child(body, v, "volume")) {
        char vid[64];
        child_str(v, "volumeId", vid, sizeof(vid));
        if (strcmp(vid, id) == 0) {
            memset(out, 0, sizeof(*out));
            child_str(v, "status", out->status, sizeof(out->status));
            out->size = child_u64(v, "sizeBytes");
            _cleanup_free_ char *p = xml_child_text(v, "progress");
            out->progress = p ? atoi(str_trim(p)) : -1;
            return 0;
        }
    }
    return 1;
}

int clc_sc_export_volume(struct soap_client *c, const char *id,
                         const char *node, char **xml, struct koala_error **err)
{
    struct xml_writer *w = soap_start("ExportVolume", SC_NS);
    xml_text_element(w, "volumeId", id);
    xml_text_element(w, "node", node);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (call(c, "ExportVolume", w, &doc, &body, err) < 0)
        return -1;
    const struct xml_node *e = item(body, "export");
    /* The record's fields, as text, for the CC's <export>. */
    static const char *const fields[] = {
        "volumeId", "transport",   "path",      "host",
        "port",     "exportName", "tlsHostname", "sizeBytes"};
    struct buf b = {0};
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
        _cleanup_free_ char *v = xml_child_text(e, fields[i]);
        if (v)
            buf_printf(&b, "%s\t%s\n", fields[i], str_trim(v));
    }
    if (b.data == NULL)
        return error_set(err, EPROTO, "InternalError",
                         "the storage controller's export of %s is empty", id);
    *xml = b.data;
    return 0;
}

int clc_sc_unexport_volume(struct soap_client *c, const char *id,
                           const char *node, struct koala_error **err)
{
    struct xml_writer *w = soap_start("UnexportVolume", SC_NS);
    xml_text_element(w, "volumeId", id);
    xml_text_element(w, "node", node);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct koala_error *e = NULL;
    if (call(c, "UnexportVolume", w, &doc, &body, &e) < 0) {
        if (not_found(e)) {
            error_free(e);
            return 0;
        }
        return pass(err, e);
    }
    return 0;
}

int clc_sc_create_snapshot(struct soap_client *c, const char *id,
                           const char *volume, struct sc_snapshot *out,
                           struct koala_error **err)
{
    struct xml_writer *w = soap_start("CreateSnapshot", SC_NS);
    xml_text_element(w, "snapshotId", id);
    xml_text_element(w, "volumeId", volume);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (call(c, "CreateSnapshot", w, &doc, &body, err) < 0)
        return -1;
    read_snapshot(body, out);
    return 0;
}

int clc_sc_describe_snapshot(struct soap_client *c, const char *id,
                             struct sc_snapshot *out, struct koala_error **err)
{
    struct xml_writer *w = soap_start("DescribeSnapshots", SC_NS);
    xml_text_element(w, "snapshotId", id);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct koala_error *e = NULL;
    if (call(c, "DescribeSnapshots", w, &doc, &body, &e) < 0) {
        if (not_found(e)) {
            error_free(e);
            return 1;
        }
        return pass(err, e);
    }
    for (const struct xml_node *s = xml_next_child(body, NULL, "snapshot"); s;
         s = xml_next_child(body, s, "snapshot")) {
        char sid[64];
        child_str(s, "snapshotId", sid, sizeof(sid));
        if (strcmp(sid, id) == 0) {
            read_snapshot(s, out);
            return 0;
        }
    }
    return 1;
}

int clc_sc_delete_snapshot(struct soap_client *c, const char *id,
                           struct koala_error **err)
{
    struct xml_writer *w = soap_start("DeleteSnapshot", SC_NS);
    xml_text_element(w, "snapshotId", id);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct koala_error *e = NULL;
    if (call(c, "DeleteSnapshot", w, &doc, &body, &e) < 0) {
        if (not_found(e)) {
            error_free(e);
            return 0;
        }
        return pass(err, e);
    }
    return 0;
}
