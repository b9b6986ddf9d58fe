/* launch.c: the launch of a reservation, after RunInstances answered:
 * the CC's RunInstances with presigned URLs (signed with the image
 * owner's key) for the image, kernel and ramdisk, and what the answer
 * means for the instances.
 *
 * DESIGN: until the cluster has placed them (`node` recorded), the launch
 * is the database's pending rows, not the job: if the CLC dies first, or
 * the cluster does not answer, the poller queues it again
 * (clc_resume_launches), and the CC takes a repeated RunInstances as the
 * same launch.  One RunInstances per reservation is under way at a time
 * (clc->launching).  A cluster's answer, even a fault, is final: a launch
 * it refused ends its instances terminated with the reason.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "ebs.h"
#include "log.h"
#include "secgroups.h"
#include "soap.h"

#define PRESIGN_SECONDS 3600

static int write_image_ref(struct clc *clc, struct db *db, struct xml_writer *w,
                           const char *element, const char *id, int64_t viewer,
                           struct koala_error **err)
{
    struct clc_image_ref ref;
    if (clc_image_get(db, id, viewer, &ref, err) < 0)
        return -1;
    _cleanup_free_ char *url =
        clc_presign(clc, db, ref.owner, ref.location, PRESIGN_SECONDS, err);
    if (url == NULL)
        return -1;
    xml_start(w, element);
    xml_text_element(w, "id", ref.id);
    xml_text_element(w, "url", url);
    xml_u64_element(w, "size", ref.size);
    xml_text_element(w, "sha256", ref.sha256);
    xml_end(w);
    return 0;
}

/* Ends instances that could not be launched, with a reason. */
int clc_fail_instances(struct db *db, const char *reservation,
                       const char *instance, const struct koala_error *why)
{
    const char *code = error_code(why);
    char reason[64];
    snprintf(reason, sizeof(reason), "Server.%s",
             strcmp(code, "InsufficientInstanceCapacity") == 0
                 ? "InsufficientInstanceCapacity"
                 : "InternalError");
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    struct koala_error *e = NULL;
    int rc = clc_exec(
        db,
        "UPDATE instances SET state = 'terminated', reason_code = ?,"
        " reason_message = ?, transition_reason = 'Server error', updated = ?"
        " WHERE (reservation = ?4 OR id = ?5) AND state != 'terminated'",
        "failing instances", &e, reason, error_message(why), now,
        reservation ? reservation : "", instance ? instance : "", NULL);
    if (rc < 0) {
        log_error("cannot record failed launch: %s", error_message(e));
        error_free(e);
    }
    return rc;
}

/* The public key of the owner's key pair name (malloc'd), or NULL. */
static char *public_key_of(struct db *db, int64_t owner, const char *name)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT public_key FROM keypairs WHERE owner = ? AND name = ?",
        NULL);
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, owner);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = strdup((const char *)sqlite3_column_text(st, 0));
    db_stmt_done(st);
    return out;
}

static int send_launch(struct clc *clc, struct db *db, const char *reservation,
                       struct koala_error **err)
{
    /* What the reservation still needs launched (a terminate may have come
     * first). */
    static const char sql[] =
        "SELECT i.id, i.launch_index, i.owner, a.number, i.image_id,"
        " i.kernel_id, i.ramdisk_id, i.instance_type, i.key_name,"
        " i.user_data, i.cluster, " CLC_MD_COLS ", i.root_device_type"
        " FROM instances i JOIN accounts a ON"
        " a.id = i.owner WHERE i.reservation = ? AND i.state = 'pending' AND"
        " i.node = '' ORDER BY i.launch_index";
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, reservation, -1, SQLITE_STATIC);
    struct xml_writer *w = NULL;
    char cluster[64] = "", image[32] = "", kernel[32] = "", ramdisk[32] = "",
         type[32] = "", key[256] = "", owner_number[16] = "",
         root_type[16] = "";
    int64_t owner = 0, md_version = 0, md_applied = 0;
    struct clc_md_options md;
    clc_md_defaults(&md);
    struct buf user_data = {0}, instances = {0};
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n++ == 0) {
            owner = sqlite3_column_int64(st, 2);
            clc_col(owner_number, sizeof(owner_number), st, 3);
            clc_col(image, sizeof(image), st, 4);
            clc_col(kernel, sizeof(kernel), st, 5);
            clc_col(ramdisk, sizeof(ramdisk), st, 6);
            clc_col(type, sizeof(type), st, 7);
            clc_col(key, sizeof(key), st, 8);
            const unsigned char *ud = sqlite3_column_text(st, 9);
            buf_append_str(&user_data, ud ? (const char *)ud : "");
            clc_col(cluster, sizeof(cluster), st, 10);
            clc_md_read_cols(st, 11, &md, &md_version, &md_applied);
            clc_col(root_type, sizeof(root_type), st, 11 + CLC_MD_NCOLS);
        }
        buf_printf(&instances, "%s %d\n",
                   (const char *)sqlite3_column_text(st, 0),
                   sqlite3_column_int(st, 1));
    }
    db_stmt_done(st);
    int rc = -1;
    struct instance_type t;
    struct soap_client *c = NULL;
    struct xml_doc *doc = NULL;
    char *groups = NULL; /* the security groups' names, for the metadata */
    if (n == 0) {
        rc = 0;
        goto out;
    }
    if (clc_instance_type(db, type, &t, err) != 0) {
        error_set(err, EINVAL, NULL, "instance type %s vanished", type);
        goto out;
    }
    w = soap_start("RunInstances", CC_NS);
    xml_text_element(w, "reservationId", reservation);
    xml_text_element(w, "ownerId", owner_number);
    clc_write_type(w, &t);
    /* An EBS-backed instance boots from its root volume: no image. */
    bool ebs_root = strcmp(root_type, "ebs") == 0;
    if (ebs_root) /* (only named: the metadata's ami-id) */
        xml_text_element(w, "imageId", image);
    if ((!ebs_root &&
         write_image_ref(clc, db, w, "image", image, owner, err) < 0) ||
        (*kernel &&
         write_image_ref(clc, db, w, "kernel", kernel, owner, err) < 0) ||
        (*ramdisk &&
         write_image_ref(clc, db, w, "ramdisk", ramdisk, owner, err) < 0))
        goto out;
    if (user_data.len)
        xml_text_element(w, "userData", user_data.data);
    if (*key) {
        _cleanup_free_ char *pub = public_key_of(db, owner, key);
        xml_text_element(w, "keyName", key);
        if (pub)
            xml_text_element(w, "publicKey", pub);
    }
    /* The reservation's metadata and options as RunInstances gave them
     * (its first instance's: a change made since is pushed once the
     * cluster placed it). */
    if (clc_sg_names(db, NULL, reservation, &groups, err) < 0)
        goto out;
    clc_md_write_cc(w, "metadata", clc->region, groups, &md, false, NULL);
    for (char *line = instances.data, *save = NULL;
         (line = strtok_r(line, "\n", &save)) != NULL; line = NULL) {
        char id[32];
        int index;
        if (sscanf(line, "%31s %d", id, &index) != 2)
            continue;
        xml_start(w, "instance");
        xml_text_element(w, "instanceId", id);
        xml_u64_element(w, "launchIndex", (uint64_t)index);
        if (clc_write_launch_volumes(db, w, id, err) < 0)
            goto out;
        xml_end(w);
    }
    size_t len;
    char *rq = soap_finish(w, &len);
    w = NULL;
    c = clc_cc_client(clc, db, cluster, err);
    const struct xml_node *body;
    if (c == NULL ||
        soap_call(c, "RunInstances", rq, len, &doc, &body, err) < 0) {
        if (c == NULL)
            free(rq);
        goto out;
    }
    rc = clc_apply_instance_states(clc, db, cluster, body, false, err);
    if (rc == 0 && md_version == 1)
        clc_md_launch_acked(db, body);
    if (rc == 0)
        clc_eip_kick(clc); /* a public address auto-assigned at launch */
    if (rc == 0)
        clc_ebs_kick(clc); /* placed: its volumes can be exported now */
out:
    free(groups);
    xml_writer_free(w);
    xml_doc_free(doc);
    soap_client_free(c);
    buf_free(&user_data);
    buf_free(&instances);
    return rc;
}

struct launch_job {
    struct clc *clc;
    char reservation[32];
};

static void launch(void *arg)
{
    struct launch_job *job = arg;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(job->clc->db, &err);
    if (db && send_launch(job->clc, db, job->reservation, &err) < 0) {
        /* The cluster did not answer (down, restarting, unreachable): the
         * instances stay pending and the poller tries again, until the
         * pending timeout.  Its answer, even a fault, is final. */
        if (strcmp(error_code(err), "ServiceUnavailable") == 0) {
            log_warn("%s: launch: %s (will retry)", job->reservation,
                     error_message(err));
        } else {
            log_warn("%s: launch failed: %s: %s", job->reservation,
                     error_code(err), error_message(err));
            clc_fail_instances(db, job->reservation, NULL, err);
        }
    }
    if (db == NULL)
        log_error("%s: launch: %s", job->reservation, error_message(err));
    claims_drop(job->clc->launching, job->reservation);
    if (db)
        /* A terminate that came while the launch was on its way. */
        clc_resend_orders(job->clc, db);
    error_free(err);
    db_pool_put(job->clc->db, db);
    free(job);
}

void clc_queue_launch(struct clc *clc, const char *reservation)
{
    /* One RunInstances at a time per reservation reaches the cluster. */
    if (!claims_take(clc->launching, reservation))
        return; /* under way already (or out of memory: the poller) */
    struct launch_job *job = calloc(1, sizeof(*job));
    if (job) {
        job->clc = clc;
        snprintf(job->reservation, sizeof(job->reservation), "%s", reservation);
        if (workpool_submit(clc->launcher, launch, job) == 0)
            return;
        free(job);
    }
    claims_drop(clc->launching, reservation);
    log_error("%s: cannot queue its launch (the poller will)", reservation);
}

void clc_resume_launches(struct clc *clc, struct db *db)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT DISTINCT reservation FROM instances"
                               " WHERE state = 'pending' AND node = ''",
                               &err);
    if (st == NULL) {
        log_error("launches: %s", error_message(err));
        error_free(err);
        return;
    }
    struct buf ids = {0}; /* "r-a\nr-b\n": queued once the statement ends */
    while (sqlite3_step(st) == SQLITE_ROW)
        buf_printf(&ids, "%s\n", sqlite3_column_text(st, 0));
    db_stmt_done(st);
    for (char *id = ids.data, *save = NULL;
         id && (id = strtok_r(id, "\n", &save)) != NULL; id = NULL)
        clc_queue_launch(clc, id);
    buf_free(&ids);
}
