/* run.c: RunInstances, the CC's part of a launch (compute.md, step 3):
 * validate again, place every instance on a node (all or none:
 * InsufficientInstanceCapacity with nothing started), allocate each a MAC
 * and a private IP and record it (one transaction), give DHCP its fixed
 * lease, then send the NCs ncRunInstance in parallel.  An instance its NC
 * refused ends terminated with the NC's reason.
 *
 * Booting from EBS (docs/storage.md): an instance whose <volume> has
 * <boot>true</boot> (at most one; its export may come later through
 * AttachVolume) has no image; a request without an image needs one for
 * every instance, one with an image none.
 *
 * Retries are safe: instances of the same reservation that are already
 * recorded are reported as they are and not placed again; those still
 * pending are sent to their node again, in case this CC died between
 * recording them and telling the node. */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "imds.h"
#include "log.h"
#include "soap.h"

struct image_ref {
    char *id, *url, *size, *sha256;
};

struct run_req {
    char *reservation, *owner, *user_data, *key_name, *public_key;
    struct cc_itype type;
    struct cc_imeta meta; /* what the metadata service serves */
    struct image_ref image, kernel, ramdisk;
    bool have_image, have_kernel, have_ramdisk;
    char image_id[32]; /* without image: the EBS-backed image's id, kept
                        * for DescribeInstances and ami-id (optional) */
    size_t n;
    char ids[CC_MAX_INSTANCES][32];
    int64_t launch_index[CC_MAX_INSTANCES];
    /* each <instance> of the request: its volume* go to its node */
    const struct xml_node *inst_el[CC_MAX_INSTANCES];
    bool is_new[CC_MAX_INSTANCES];
    /* What is sent to nodes: placed now, or recorded and still pending
     * (id[0] set), with its ncRunInstance request. */
    struct cc_instance placed[CC_MAX_INSTANCES];
    char *req[CC_MAX_INSTANCES];
    size_t req_len[CC_MAX_INSTANCES];
};

static void image_clear(struct image_ref *r)
{
    free(r->id);
    free(r->url);
    free(r->size);
    free(r->sha256);
}

static void run_req_free(struct run_req *q)
{
    if (q == NULL)
        return;
    free(q->reservation);
    free(q->owner);
    free(q->user_data);
    free(q->key_name);
    free(q->public_key);
    imeta_clear(&q->meta);
    image_clear(&q->image);
    image_clear(&q->kernel);
    image_clear(&q->ramdisk);
    for (size_t i = 0; i < CC_MAX_INSTANCES; i++)
        free(q->req[i]);
    free(q);
}

int cc_parse_itype(const struct xml_node *n, struct cc_itype *t,
                   struct koala_error **err)
{
    _cleanup_free_ char *name = soap_text(n, "name", err);
    if (name == NULL)
        return -1;
    long long c, m, d;
    if (soap_int(n, "cores", 1, &c, err) < 0 ||
        soap_int(n, "memoryMb", 0, &m, err) < 0 ||
        soap_int(n, "diskGb", 0, &d, err) < 0)
        return -1;
    str_trim(name);
    if (*name == '\0' || strlen(name) >= sizeof(t->name) || c < 1 || c > 4096 ||
        m < 1 || m > (1LL << 32) || d < 0 || d > (1LL << 24))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "instance type '%s' needs a name, cores >= 1, "
                         "memoryMb >= 1 and diskGb >= 0",
                         name);
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->cores = c;
    t->memory_mb = m;
    t->disk_gb = d;
    return 0;
}

static int parse_image(const struct xml_node *n, const char *what,
                       struct image_ref *r, struct koala_error **err)
{
    r->id = xml_child_text(n, "id");
    r->url = xml_child_text(n, "url");
    r->size = xml_child_text(n, "size");
    r->sha256 = xml_child_text(n, "sha256");
    if (r->id == NULL || *str_trim(r->id) == '\0' || strlen(r->id) >= 32 ||
        r->url == NULL || *str_trim(r->url) == '\0')
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s needs an id and a url", what);
    return 0;
}

static int parse_run(const struct xml_node *op, struct run_req *q,
                     struct koala_error **err)
{
    imeta_defaults(&q->meta);
    q->reservation = soap_text(op, "reservationId", err);
    q->owner = q->reservation ? soap_text(op, "ownerId", err) : NULL;
    if (q->owner == NULL)
        return -1;
    if (*str_trim(q->reservation) == '\0' || strlen(q->reservation) >= 32 ||
        *str_trim(q->owner) == '\0' || strlen(q->owner) >= 64)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "reservationId and ownerId must be short and "
                         "not empty");
    const struct xml_node *t = xml_child(op, "instanceType");
    const struct xml_node *img = xml_child(op, "image");
    if (t == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter "
                         "instanceType");
    if (cc_parse_itype(t, &q->type, err) < 0 ||
        (img && parse_image(img, "image", &q->image, err) < 0))
        return -1;
    q->have_image = img != NULL;
    _cleanup_free_ char *ebs_image = img ? NULL : xml_child_text(op, "imageId");
    if (ebs_image && (*str_trim(ebs_image) == '\0' ||
                      strlen(str_trim(ebs_image)) >= sizeof(q->image_id)))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "imageId must be an image id");
    snprintf(q->image_id, sizeof(q->image_id), "%s",
             ebs_image ? str_trim(ebs_image) : "");
    const struct xml_node *k = xml_child(op, "kernel");
    const struct xml_node *rd = xml_child(op, "ramdisk");
    if (img == NULL && (k || rd))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "a kernel or ramdisk needs an image");
    if ((k && parse_image(k, "kernel", &q->kernel, err) < 0) ||
        (rd && parse_image(rd, "ramdisk", &q->ramdisk, err) < 0))
        return -1;
    q->have_kernel = k != NULL;
    q->have_ramdisk = rd != NULL;
    q->user_data = xml_child_text(op, "userData");
    q->key_name = xml_child_text(op, "keyName");
    q->public_key = xml_child_text(op, "publicKey");
    const struct xml_node *md = xml_child(op, "metadata");
    if (md && imeta_parse(md, &q->meta, err) < 0)
        return -1;
    if ((q->meta.user_data == NULL && q->user_data && *q->user_data &&
         (q->meta.user_data = strdup(q->user_data)) == NULL) ||
        (q->key_name && (q->meta.key_name = strdup(q->key_name)) == NULL) ||
        (q->public_key &&
         (q->meta.public_key = strdup(q->public_key)) == NULL))
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (const struct xml_node *i = xml_next_child(op, NULL, "instance"); i;
         i = xml_next_child(op, i, "instance")) {
        if (q->n == CC_MAX_INSTANCES)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "at most %d instances per request",
                             CC_MAX_INSTANCES);
        _cleanup_free_ char *id = soap_text(i, "instanceId", err);
        long long li;
        if (id == NULL ||
            soap_int(i, "launchIndex", (long long)q->n, &li, err) < 0)
            return -1;
        str_trim(id);
        if (!cc_instance_id_valid(id))
            return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                             "Invalid id: \"%s\"", id);
        for (size_t j = 0; j < q->n; j++)
            if (strcmp(q->ids[j], id) == 0)
                return error_set(err, EINVAL, "InvalidParameterValue",
                                 "instance %s is listed twice", id);
        size_t boots = 0;
        for (const struct xml_node *v = xml_next_child(i, NULL, "volume"); v;
             v = xml_next_child(i, v, "volume")) {
            bool boot = false;
            if (cc_volume_check(v, false, &boot, err) < 0)
                return -1;
            boots += boot;
        }
        if (boots > 1)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "instance %s has %zu boot volumes: at most one",
                             id, boots);
        if (boots == 0 && img == NULL)
            return error_set(err, EINVAL, "MissingParameter",
                             "The request must contain the parameter image, "
                             "or a boot volume for instance %s",
                             id);
        if (boots == 1 && img)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "instance %s boots from a volume: the request "
                             "has no image then",
                             id);
        snprintf(q->ids[q->n], sizeof(q->ids[0]), "%s", id);
        q->inst_el[q->n] = i;
        q->launch_index[q->n++] = li;
    }
    if (q->n == 0)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter instance");
    return 0;
}

size_t cc_sched_view(struct cc *cc, struct db *db, struct cc_node *nodes,
                     struct sched_node *view, struct koala_error **err)
{
    size_t n = nodes_snapshot(cc, nodes);
    for (size_t i = 0; i < n; i++) {
        struct cc_res used = {0};
        const struct cc_node *nd = &nodes[i];
        if (store_node_usage(db, nd->name, &used, err) < 0)
            return SIZE_MAX;
        view[i] = (struct sched_node){
            .name = nd->name,
            /* not behind the network policy (netpush.c) */
            .usable = nd->state == CC_NODE_ENABLED &&
                      netpush_node_current(cc, nd->name),
            .max = nd->max,
            .free = {nd->max.cores - used.cores - nd->foreign.cores,
                     nd->max.memory_mb - used.memory_mb - nd->foreign.memory_mb,
                     nd->max.disk_gb - used.disk_gb - nd->foreign.disk_gb},
        };
    }
    return n;
}

static void write_image(struct xml_writer *w, const char *elem,
                        const struct image_ref *r)
{
    xml_start(w, elem);
    xml_text_element(w, "id", r->id);
    xml_text_element(w, "url", r->url);
    if (r->size)
        xml_text_element(w, "size", r->size);
    if (r->sha256)
        xml_text_element(w, "sha256", r->sha256);
    xml_end(w);
}

/* in's ncRunInstance request (malloc'd, *len bytes). */
static char *launch_request(const struct cc *cc, const struct run_req *q,
                            const struct cc_instance *in,
                            const struct xml_node *inst_el, size_t *len)
{
    struct xml_writer *w = soap_start("ncRunInstance", NC_NS);
    xml_text_element(w, "instanceId", in->id);
    xml_text_element(w, "reservationId", in->reservation);
    xml_text_element(w, "ownerId", in->owner);
    xml_u64_element(w, "launchIndex", (uint64_t)in->launch_index);
    xml_start(w, "instanceType");
    xml_text_element(w, "name", q->type.name);
    xml_u64_element(w, "cores", (uint64_t)q->type.cores);
    xml_u64_element(w, "memoryMb", (uint64_t)q->type.memory_mb);
    xml_u64_element(w, "diskGb", (uint64_t)q->type.disk_gb);
    xml_end(w);
    if (q->have_image) /* else it boots from its boot volume */
        write_image(w, "image", &q->image);
    if (q->have_kernel)
        write_image(w, "kernel", &q->kernel);
    if (q->have_ramdisk)
        write_image(w, "ramdisk", &q->ramdisk);
    xml_start(w, "net");
    xml_text_element(w, "macAddress", in->mac);
    xml_text_element(w, "privateIp", in->ip);
    xml_text_element(w, "network", in->network);
    xml_text_element(w, "bridge",
                     cc->opt.node_bridge ? cc->opt.node_bridge : "");
    xml_end(w);
    if (q->user_data)
        xml_text_element(w, "userData", q->user_data);
    if (q->key_name)
        xml_text_element(w, "keyName", q->key_name);
    if (q->public_key)
        xml_text_element(w, "publicKey", q->public_key);
    /* EBS volumes it has from its start (booting from one), as the CLC
     * gave them. */
    for (const struct xml_node *v = xml_next_child(inst_el, NULL, "volume");
         v; v = xml_next_child(inst_el, v, "volume"))
        cc_xml_copy(w, v);
    return soap_finish(w, len);
}

/* Picks nodes and addresses and records the new instances; sched_lock
 * makes placement and recording one step. */
static int place(struct cc *cc, struct db *db, struct run_req *q, size_t *n_new,
                 struct koala_error **err)
{
    struct cc_node *nodes = malloc(CC_MAX_NODES * sizeof(*nodes));
    struct sched_node *view = malloc(CC_MAX_NODES * sizeof(*view));
    size_t idx[CC_MAX_INSTANCES], which[CC_MAX_INSTANCES];
    int rc = -1;
    if (nodes == NULL || view == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto out_free;
    }
    *n_new = 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->is_new[i])
            which[(*n_new)++] = i;
    if (*n_new == 0) {
        rc = 0; /* a retry: everything is recorded already */
        goto out_free;
    }
    pthread_mutex_lock(&cc->sched_lock);
    size_t n = cc_sched_view(cc, db, nodes, view, err);
    if (n == SIZE_MAX)
        goto out;
    bool fits_somewhere = false;
    for (size_t i = 0; i < n; i++)
        fits_somewhere |=
            view[i].usable && sched_fits(&view[i].max, &q->type) > 0;
    if (!fits_somewhere) {
        error_set(err, ENOSPC, "InsufficientInstanceCapacity",
                  "There is no node in cluster %s that can hold an instance "
                  "of type %s",
                  cc->opt.name, q->type.name);
        goto out;
    }
    pthread_mutex_lock(&cc->lock);
    size_t cursor = SIZE_MAX;
    for (size_t i = 0; i < n && cc->rr_last[0]; i++)
        if (strcmp(view[i].name, cc->rr_last) <= 0)
            cursor = i; /* the last node at or before the one used last */
    pthread_mutex_unlock(&cc->lock);
    if (sched_place(cc->opt.policy, view, n, &q->type, *n_new, &cursor, idx) <
        0) {
        int64_t max, avail;
        sched_capacity(view, n, &q->type, &max, &avail);
        error_set(err, ENOSPC, "InsufficientInstanceCapacity",
                  "There is not enough capacity in cluster %s for %zu "
                  "instances of type %s (room for %lld)",
                  cc->opt.name, *n_new, q->type.name,
                  (long long)(avail < 0 ? 0 : avail));
        goto out;
    }
    if (db_begin(db, err) < 0)
        goto out;
    int64_t now = time_now_ms();
    for (size_t k = 0; k < *n_new; k++) {
        size_t i = which[k];
        struct cc_instance *in = &q->placed[i];
        memset(in, 0, sizeof(*in));
        memcpy(in->id, q->ids[i], sizeof(in->id));
        snprintf(in->reservation, sizeof(in->reservation), "%s",
                 q->reservation);
        snprintf(in->owner, sizeof(in->owner), "%s", q->owner);
        in->launch_index = q->launch_index[i];
        snprintf(in->state, sizeof(in->state), "pending");
        in->type = q->type;
        snprintf(in->image_id, sizeof(in->image_id), "%s",
                 q->have_image ? q->image.id : q->image_id);
        if (q->have_kernel)
            snprintf(in->kernel_id, sizeof(in->kernel_id), "%s", q->kernel.id);
        if (q->have_ramdisk)
            snprintf(in->ramdisk_id, sizeof(in->ramdisk_id), "%s",
                     q->ramdisk.id);
        snprintf(in->node, sizeof(in->node), "%s", view[idx[k]].name);
        snprintf(in->network, sizeof(in->network), "%s", cc->net.name);
        in->launch_ms = now;
        in->updated_ms = now;
        if (alloc_address(db, cc->net.name, &cc->net.subnet, in->id, in->mac,
                          in->ip, err) < 0 ||
            store_instance_insert(db, in, err) < 0 ||
            store_imeta_put(db, in->id, &q->meta, err) < 0) {
            db_rollback(db);
            goto out;
        }
        q->req[i] = launch_request(cc, q, in, q->inst_el[i], &q->req_len[i]);
        if (q->req[i] == NULL) {
            error_set(err, ENOMEM, NULL, "out of memory");
            db_rollback(db);
            goto out;
        }
        if (store_launch_put(db, in->id, q->req[i], q->req_len[i], err) < 0) {
            db_rollback(db);
            goto out;
        }
    }
    if (db_commit(db, err) < 0)
        goto out;
    if (cc->opt.policy == CC_SCHED_ROUNDROBIN && *n_new > 0) {
        pthread_mutex_lock(&cc->lock);
        snprintf(cc->rr_last, sizeof(cc->rr_last), "%s", view[cursor].name);
        pthread_mutex_unlock(&cc->lock);
    }
    rc = 0;
out:
    pthread_mutex_unlock(&cc->sched_lock);
out_free:
    free(nodes);
    free(view);
    return rc;
}

/* "Server.InternalError" and the like, for an instance's state reason. */
static void reason_code(const struct koala_error *e, char *out, size_t size)
{
    const char *code = error_code(e);
    if (strchr(code, '.') &&
        (str_has_prefix(code, "Server.") || str_has_prefix(code, "Client.")))
        snprintf(out, size, "%s", code);
    else if (strcmp(code, "ServiceUnavailable") == 0)
        snprintf(out, size, "Server.InternalError");
    else if (strcmp(code, "InsufficientInstanceCapacity") == 0 ||
             strcmp(code, "InternalError") == 0)
        snprintf(out, size, "Server.%s", code);
    else
        snprintf(out, size, "Client.%s", code);
}

bool cc_launch_send(struct cc *cc, struct db *db, const struct cc_instance *in,
                    char *req, size_t len, bool *dhcp_dirty)
{
    if (!claims_take(cc->launching, in->id)) {
        free(req); /* on its way already */
        return false;
    }
    struct koala_error *e = NULL;
    struct nc_report r;
    char endpoint[256];
    if (!nodes_endpoint(cc, in->node, endpoint)) {
        free(req);
        error_set(&e, ENOENT, NULL, "node %s was removed", in->node);
    } else {
        struct xml_doc *doc = NULL;
        const struct xml_node *body = NULL;
        /* Launching may fetch nothing yet (the NC answers pending), but
         * give it more time than a poll. */
        if (nc_call(cc, endpoint, "ncRunInstance", req, len,
                    (unsigned)(cc->opt.nc_timeout_ms * 3), &doc, &body,
                    &e) == 0) {
            const struct xml_node *x = xml_child(body, "instance");
            nc_report_parse(x ? x : body, &r, &e);
            xml_doc_free(doc);
        }
    }
    /* The node's answer says it has the instance: its launch need not be
     * sent again.  (Not "seen": a poll's listing taken before this answer
     * would then call it gone.) */
    if (e == NULL && store_launch_drop(db, in->id, &e) < 0) {
        log_error("instance %s: %s", in->id, error_message(e));
        error_clear(&e);
    } else if (e) {
        log_warn("ncRunInstance %s on %s: %s", in->id, in->node,
                 error_message(e));
        memset(&r, 0, sizeof(r));
        snprintf(r.id, sizeof(r.id), "%s", in->id);
        snprintf(r.state, sizeof(r.state), "terminated");
        reason_code(e, r.reason_code, sizeof(r.reason_code));
        snprintf(r.reason_message, sizeof(r.reason_message), "%s",
                 error_message(e));
        error_clear(&e);
    }
    if (cc_apply_report(cc, db, in->node, &r, false, dhcp_dirty, &e) < 0)
        log_error("instance %s: %s", in->id, error_message(e));
    error_free(e);
    claims_drop(cc->launching, in->id);
    return true;
}

struct run_job {
    struct cc *cc;
    struct run_req *q;
    size_t which[CC_MAX_INSTANCES];
    bool dirty[CC_MAX_INSTANCES];
};

static void run_one(size_t k, void *ctx)
{
    struct run_job *job = ctx;
    struct run_req *q = job->q;
    size_t i = job->which[k];
    struct koala_error *e = NULL;
    struct db *db = db_pool_get(job->cc->db, &e);
    if (db == NULL) {
        log_error("instance %s: %s", q->placed[i].id, error_message(e));
        error_free(e);
        return;
    }
    cc_launch_send(job->cc, db, &q->placed[i], q->req[i], q->req_len[i],
                   &job->dirty[k]);
    q->req[i] = NULL; /* taken over */
    db_pool_put(job->cc->db, db);
}

void cc_op_run_instances(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    struct run_req *q = calloc(1, sizeof(*q));
    struct run_job *job = calloc(1, sizeof(*job));
    struct db *db;
    if (q == NULL || job == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (parse_run(r->op, q, &err) < 0 || (db = cc_req_db(r, &err)) == NULL)
        goto fail;
    for (size_t i = 0; i < q->n; i++) {
        struct cc_instance old;
        int found = store_instance_get(db, q->ids[i], &old, &err);
        if (found < 0)
            goto fail;
        if (found == 0 && strcmp(old.reservation, q->reservation) != 0) {
            error_set(&err, EEXIST, "InvalidParameterValue",
                      "instance %s already belongs to reservation %s",
                      q->ids[i], old.reservation);
            goto fail;
        }
        q->is_new[i] = found == 1;
        /* Recorded but still pending: this CC may have died before its
         * node heard of it.  Sent again (the NC takes a repeated
         * ncRunInstance as the same launch). */
        if (found == 0 && strcmp(old.state, "pending") == 0) {
            q->req[i] = store_launch_get(db, old.id, &q->req_len[i], &err);
            if (err)
                goto fail;
            if (q->req[i])
                q->placed[i] = old;
        }
    }
    size_t n_new = 0;
    if (place(cc, db, q, &n_new, &err) < 0)
        goto fail;
    job->cc = cc;
    job->q = q;
    size_t n_send = 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->placed[i].id[0])
            job->which[n_send++] = i;
    if (n_new > 0 && cc_dhcp_sync(cc, db, &err) < 0) {
        /* The lease is there before the guest asks for it. */
        log_error("DHCP hosts: %s", error_message(err));
        error_clear(&err);
    }
    if (n_send > 0) {
        cc_parallel(cc, cc->pool, n_send, run_one, job);
        bool dirty = false;
        for (size_t i = 0; i < n_send; i++)
            dirty |= job->dirty[i];
        if (dirty && cc_dhcp_sync(cc, db, &err) < 0) {
            log_error("DHCP hosts: %s", error_message(err));
            error_clear(&err);
        }
        if (n_new > 0)
            log_info("RunInstances %s: %zu instances of %s placed",
                     q->reservation, n_new, q->type.name);
        if (n_send > n_new)
            log_info("RunInstances %s: %zu instances sent to their nodes "
                     "again",
                     q->reservation, n_send - n_new);
    }
    struct xml_writer *w = soap_start("RunInstancesResponse", CC_NS);
    for (size_t i = 0; i < q->n; i++) {
        struct cc_instance in;
        if (store_instance_get(db, q->ids[i], &in, &err) == 0)
            cc_instance_write(w, "instance", &in);
        error_clear(&err);
    }
    cc_reply(r, w);
    run_req_free(q);
    free(job);
    return;
fail:
    run_req_free(q);
    free(job);
    cc_fail(r, err);
}
