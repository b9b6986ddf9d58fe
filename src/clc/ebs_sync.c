/* ebs_sync.c: the CLC's EBS work towards the SCs and the clusters, one
 * round at a time (clc->ebs, kicker.h), from the poller and after each
 * change (ebs.h's DESIGN).
 *
 * Each round reads what the rows want and asks for it again: volumes
 * `creating` (the SC's CreateVolume is idempotent per id) and `deleting`,
 * snapshots `pending`, modifications `modifying` (the SC grows the
 * volume, the node gives its guest the new size), attachments `attaching`
 * (the SC exports the volume to the instance's node, then the CC plugs it)
 * and `detaching` (the CC unplugs it; the export goes once the node let go),
 * and sc_drops (SC work that outlived its row).  What fails is logged and
 * tried again next round; what an SC or node refuses outright ends the
 * work with the error recorded where the user sees it.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ebs.h"
#include "log.h"
#include "soap.h"

/* One unit of work read from the rows before any is done (the work
 * writes). */
struct job {
    char id[32];
    char zone[64];
    char a[64], b[64]; /* per kind */
    int64_t n;
};

typedef int (*job_fn)(struct clc *clc, struct db *db, struct job *j,
                      struct koala_error **err);

/* Runs fn for each row of sql (columns: id, zone, a, b, n), arg (if any)
 * bound to ?1. */
static void each(struct clc *clc, struct db *db, const char *what,
                 const char *sql, const char *arg, job_fn fn)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(db, sql, &err);
    if (st && arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    struct job *v = NULL;
    size_t n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct job *nv = realloc(v, (n + 1) * sizeof(*v));
        if (nv == NULL)
            break;
        v = nv;
        memset(&v[n], 0, sizeof(v[n]));
        clc_col(v[n].id, sizeof(v[n].id), st, 0);
        clc_col(v[n].zone, sizeof(v[n].zone), st, 1);
        clc_col(v[n].a, sizeof(v[n].a), st, 2);
        clc_col(v[n].b, sizeof(v[n].b), st, 3);
        v[n].n = sqlite3_column_int64(st, 4);
        n++;
    }
    if (st)
        db_stmt_done(st);
    for (size_t i = 0; i < n; i++) {
        if (fn(clc, db, &v[i], &err) < 0) {
            log_warn("%s %s: %s", what, v[i].id, error_message(err));
            error_clear(&err);
        }
    }
    if (err) {
        log_error("%s: %s", what, error_message(err));
        error_free(err);
    }
    free(v);
}

static char *now_arg(char buf[24])
{
    snprintf(buf, 24, CLC_INT "%lld", (long long)time_now_ms());
    return buf;
}

/* Is this error the peer refusing the request itself (its client
 * error), rather than being away? */
static bool refused(const struct koala_error *e)
{
    const char *c = e ? e->code : NULL;
    return c && strcmp(c, "ServiceUnavailable") != 0 &&
           strcmp(c, "InternalError") != 0 && strcmp(c, "RequestExpired") != 0;
}

/* ---- volumes ---- */

static int volume_state(struct db *db, const char *id, const char *state,
                        const char *sc_state, const char *message,
                        struct koala_error **err)
{
    /* (a volume made for a launch is attached already: in-use) */
    char now[24];
    return clc_exec(db,
                    "UPDATE volumes SET state = CASE WHEN ?1 = 'available' AND"
                    " EXISTS (SELECT 1 FROM attachments WHERE volume_id = ?5)"
                    " THEN 'in-use' ELSE ?1 END, sc_state = ?2, message = ?3,"
                    " updated = ?4 WHERE id = ?5",
                    "recording the volume", err, state, sc_state, message,
                    now_arg(now), id, NULL);
}

/* The pending instance whose launch made vol (into instance): true, or
 * false when the volume is no launch's or its instance is past pending. */
static bool pending_launch(struct db *db, const char *vol, char instance[32])
{
    instance[0] = '\0';
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT a.instance_id FROM attachments a JOIN"
                               " instances i ON i.id = a.instance_id WHERE"
                               " a.volume_id = ? AND i.state = 'pending'",
                               NULL);
    if (st == NULL)
        return false;
    sqlite3_bind_text(st, 1, vol, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        clc_col(instance, 32, st, 0);
    db_stmt_done(st);
    return instance[0] != '\0';
}

/* A volume made for a launch ended in error: its instance, still pending,
 * fails now rather than at the pending timeout. */
static void launch_volume_failed(struct clc *clc, struct db *db,
                                 const char *vol, const char *why)
{
    char instance[32];
    if (!pending_launch(db, vol, instance))
        return;
    struct koala_error *e = NULL;
    error_set(&e, EIO, "InternalError", "its volume %s failed: %s", vol,
              why && *why ? why : "the storage controller could not make it");
    log_warn("%s: %s", instance, error_message(e));
    clc_fail_instances(db, NULL, instance, e);
    error_free(e);
    clc_resend_orders_kick(clc);
}

/* A launch waits on a volume its SC is still filling (from a snapshot):
 * the round comes again shortly rather than at the next poll, so that an
 * EBS-backed instance boots as soon as its root volume is there. */
#define FILLING_RECHECK_MS 150
static atomic_bool launch_filling;

static int sync_creating(struct clc *clc, struct db *db, struct job *j,
                         struct koala_error **err)
{
    struct soap_client *c = clc_sc_client(clc, db, j->zone, err);
    if (c == NULL)
        return -1;
    struct sc_volume sv;
    int rc = clc_sc_describe_volume(c, j->id, &sv, err);
    if (rc == 1) {
        /* (a): its snapshot's data, (b): that snapshot's zone */
        struct koala_error *e = NULL;
        rc = clc_sc_create_volume(c, j->id, (uint64_t)j->n * GIB, j->a, j->b,
                                  &sv, &e);
        if (rc < 0 && refused(e)) {
            rc = volume_state(db, j->id, "error", "", error_message(e), err);
            launch_volume_failed(clc, db, j->id, error_message(e));
            error_free(e);
            soap_client_free(c);
            return rc;
        }
        if (rc < 0)
            error_set(err, e->errnum, e->code, "%s", error_message(e));
        error_free(e);
    }
    soap_client_free(c);
    if (rc < 0)
        return -1;
    if (strcmp(sv.status, "error") == 0)
        launch_volume_failed(clc, db, j->id, NULL);
    if (strcmp(sv.status, "available") == 0 || strcmp(sv.status, "error") == 0)
        return volume_state(db, j->id, sv.status, sv.status, "", err);
    char instance[32];
    if (pending_launch(db, j->id, instance))
        atomic_store(&launch_filling, true);
    return 0;
}

static int sync_deleting(struct clc *clc, struct db *db, struct job *j,
                         struct koala_error **err)
{
    struct soap_client *c = clc_sc_client(clc, db, j->zone, err);
    if (c == NULL)
        return -1;
    struct sc_volume sv;
    int rc = clc_sc_delete_volume(c, j->id, &sv, err);
    soap_client_free(c);
    if (rc < 0 || strcmp(sv.status, "deleted") != 0)
        return rc;
    if (db_begin(db, err) < 0)
        return -1;
    if (clc_exec(db, "DELETE FROM tags WHERE resource_id = ?", "", err, j->id,
                 NULL) < 0 ||
        clc_exec(db, "DELETE FROM volume_mods WHERE volume_id = ?", "", err,
                 j->id, NULL) < 0 ||
        clc_exec(db, "DELETE FROM volumes WHERE id = ? AND state = 'deleting'",
                 "dropping the volume", err, j->id, NULL) < 0 ||
        db_commit(db, err) < 0) {
        db_rollback(db);
        return -1;
    }
    log_info("%s: deleted", j->id);
    return 0;
}

/* A grown volume's attachment: the running guest gets the new size (the
 * CC's ResizeVolume, done by the instance's node: docs/storage.md).  0
 * done or nothing to do (not attached; the node no longer has the
 * instance or the attachment: its next attach opens the export at its new
 * size), -1 with *err: refused() tells the node's refusal from its
 * absence.  An attachment still attaching is waited for: its node may
 * have connected before the SC grew the export. */
static int grow_in_guest(struct clc *clc, struct db *db, struct job *j,
                         struct koala_error **err)
{
    char instance[32] = "", state[16] = "";
    sqlite3_stmt *st = db_stmt(
        db, "SELECT instance_id, state FROM attachments WHERE volume_id = ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        clc_col(instance, sizeof(instance), st, 0);
        clc_col(state, sizeof(state), st, 1);
    }
    db_stmt_done(st);
    if (strcmp(state, "attaching") == 0)
        return error_set(err, EAGAIN, NULL,
                         "waiting for its attachment to %s first", instance);
    if (strcmp(state, "attached") != 0)
        return 0;
    struct koala_error *e = NULL;
    struct soap_client *cc = clc_cc_client(clc, db, j->zone, err);
    if (cc == NULL)
        return -1;
    struct xml_writer *w = soap_start("ResizeVolume", CC_NS);
    xml_text_element(w, "instanceId", instance);
    xml_text_element(w, "volumeId", j->id);
    xml_u64_element(w, "sizeBytes", (uint64_t)j->n * GIB);
    size_t len;
    char *rq = soap_finish(w, &len);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    int rc = soap_call(cc, "ResizeVolume", rq, len, &doc, &body, &e);
    soap_client_free(cc);
    if (rc == 0) {
        log_info("%s: %s has it at %lld GiB", j->id, instance, (long long)j->n);
        return 0;
    }
    const char *code = e->code ? e->code : "";
    if (str_has_prefix(code, "InvalidInstanceID") ||
        str_has_prefix(code, "InvalidAttachment") ||
        strcmp(code, "IncorrectInstanceState") == 0) {
        log_info("%s: not on %s any more (%s): nothing to grow there", j->id,
                 instance, error_message(e));
        error_free(e);
        return 0;
    }
    error_set(err, e->errnum, e->code, "%s: %s", instance, error_message(e));
    error_free(e);
    return -1;
}

/* ModifyVolume: the SC grows the volume, the node of its attachment gives
 * the guest the new size; then the modification is completed.  (a): 'grow'
 * when the size grows. */
static int sync_modifying(struct clc *clc, struct db *db, struct job *j,
                          struct koala_error **err)
{
    char now[24];
    struct soap_client *c = clc_sc_client(clc, db, j->zone, err);
    if (c == NULL)
        return -1;
    struct sc_volume sv;
    struct koala_error *e = NULL;
    int rc = clc_sc_resize_volume(c, j->id, (uint64_t)j->n * GIB, &sv, &e);
    soap_client_free(c);
    /* (the SC's resize is idempotent: a round that finds the node away
     * asks both again) */
    if (rc == 0 && strcmp(j->a, "grow") == 0)
        rc = grow_in_guest(clc, db, j, &e);
    if (rc < 0 && !refused(e)) {
        error_set(err, e ? e->errnum : EIO, e ? e->code : NULL, "%s",
                  error_message(e));
        error_free(e);
        return -1;
    }
    if (rc < 0) {
        /* The volume keeps its size (in the CLC's rows; an SC that grew
         * it before the node refused keeps the space: a later
         * modification to that size or more finds it there); the
         * modification failed. */
        int r2 = clc_exec(db,
                          "UPDATE volume_mods SET state = 'failed', message"
                          " = ?, end_time = ? WHERE volume_id = ?",
                          "recording the modification", err, error_message(e),
                          now_arg(now), j->id, NULL);
        error_free(e);
        return r2;
    }
    if (db_begin(db, err) < 0)
        return -1;
    if (clc_exec(db,
                 "UPDATE volumes SET size_gb = m.target_size, type ="
                 " m.target_type, iops = m.target_iops, throughput ="
                 " m.target_throughput FROM volume_mods m WHERE"
                 " m.volume_id = volumes.id AND volumes.id = ?",
                 "applying the modification", err, j->id, NULL) < 0 ||
        clc_exec(db,
                 "UPDATE volume_mods SET state = 'completed', end_time = ?"
                 " WHERE volume_id = ?",
                 "recording the modification", err, now_arg(now), j->id,
                 NULL) < 0 ||
        db_commit(db, err) < 0) {
        db_rollback(db);
        return -1;
    }
    log_info("%s: modified (%lld GiB)", j->id, (long long)j->n);
    return 0;
}

/* ---- snapshots ---- */

void clc_ebs_snapshot_update(struct db *db, const char *sc_id,
                             const struct sc_snapshot *s, bool sent)
{
    struct koala_error *err = NULL;
    const char *state = strcmp(s->status, "completed") == 0 ? "completed"
                        : strcmp(s->status, "error") == 0   ? "error"
                                                            : "pending";
    char progress[24], size[24];
    int p = s->progress < 0 ? 0 : s->progress > 100 ? 100 : s->progress;
    if (strcmp(state, "completed") == 0)
        p = 100;
    snprintf(progress, sizeof(progress), CLC_INT "%d", p);
    snprintf(size, sizeof(size), CLC_INT "%llu", (unsigned long long)s->total);
    if (clc_exec(db,
                 "UPDATE snapshots SET state = ?, progress = ?, data_size = ?,"
                 " message = ?, sent = CASE WHEN ? = '1' THEN 1 ELSE sent END"
                 " WHERE sc_id = ? AND state = 'pending'",
                 "recording the snapshot", &err, state, progress, size,
                 s->message, sent ? "1" : "0", sc_id, NULL) < 0) {
        log_error("%s: %s", sc_id, error_message(err));
        error_free(err);
    }
}

static int sync_snapshot(struct clc *clc, struct db *db, struct job *j,
                         struct koala_error **err)
{
    /* id: the SC's id, a: the volume, n: sent already */
    struct soap_client *c = clc_sc_client(clc, db, j->zone, err);
    if (c == NULL)
        return -1;
    struct sc_snapshot ss;
    struct koala_error *e = NULL;
    int rc = clc_sc_describe_snapshot(c, j->id, &ss, &e);
    if (rc == 1 && j->n == 0)
        rc = clc_sc_create_snapshot(c, j->id, j->a, &ss, &e);
    soap_client_free(c);
    if (rc == 1) { /* told, and lost since */
        memset(&ss, 0, sizeof(ss));
        snprintf(ss.status, sizeof(ss.status), "error");
        snprintf(ss.message, sizeof(ss.message),
                 "the storage controller no longer has this snapshot");
    } else if (rc < 0 && refused(e)) {
        memset(&ss, 0, sizeof(ss));
        snprintf(ss.status, sizeof(ss.status), "error");
        snprintf(ss.message, sizeof(ss.message), "%s", error_message(e));
    } else if (rc < 0) {
        error_set(err, e->errnum, e->code, "%s", error_message(e));
        error_free(e);
        return -1;
    }
    error_free(e);
    clc_ebs_snapshot_update(db, j->id, &ss, true);
    return 0;
}

/* ---- attachments ---- */

static const char *const export_fields[] = {
    "volumeId", "transport",  "path",        "host",
    "port",     "exportName", "tlsHostname", "sizeBytes"};

/* The export text ("name\tvalue\n"...) as an <export> element. */
static void write_export(struct xml_writer *w, const char *text)
{
    xml_start(w, "export");
    _cleanup_free_ char *copy = strdup(text);
    for (char *line = copy, *save = NULL;
         copy && (line = strtok_r(line, "\n", &save)) != NULL; line = NULL) {
        char *tab = strchr(line, '\t');
        if (tab == NULL)
            continue;
        *tab = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(export_fields); i++)
            if (strcmp(line, export_fields[i]) == 0)
                xml_text_element(w, line, tab + 1);
    }
    xml_end(w);
}

/* The state a CC's answer gives the volume (its <volume> with that id, or
 * a <state> of its own), "" when it says none. */
static void answered_state(const struct xml_node *body, const char *vol,
                           char out[16])
{
    out[0] = '\0';
    const struct xml_node *inst = xml_child(body, "instance");
    const struct xml_node *parent = inst ? inst : body;
    for (const struct xml_node *v = xml_next_child(parent, NULL, "volume"); v;
         v = xml_next_child(parent, v, "volume")) {
        _cleanup_free_ char *id = xml_child_text(v, "volumeId");
        _cleanup_free_ char *st = xml_child_text(v, "state");
        if (id && st && strcmp(str_trim(id), vol) == 0)
            snprintf(out, 16, "%s", str_trim(st));
    }
    if (*out == '\0') {
        _cleanup_free_ char *st = xml_child_text(body, "state");
        if (st)
            snprintf(out, 16, "%s", str_trim(st));
    }
}

/* The attachment failed for good: the volume is available again. */
static int attach_failed(struct db *db, const char *vol,
                         const struct koala_error *why,
                         struct koala_error **err)
{
    log_warn("%s: attaching failed: %s", vol, error_message(why));
    return clc_attachment_done(db, vol, err);
}

static int sync_attaching(struct clc *clc, struct db *db, struct job *j,
                          struct koala_error **err)
{
    /* id: volume, zone, a: instance, b: node, n: unused; the device is
     * read here (it may be longer than b). */
    char device[64] = "";
    bool boot = false;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT device, boot FROM attachments WHERE volume_id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        clc_col(device, sizeof(device), st, 0);
        boot = sqlite3_column_int(st, 1) != 0;
    }
    db_stmt_done(st);
    struct koala_error *e = NULL;
    _cleanup_free_ char *export = NULL;
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct soap_client *sc = clc_sc_client(clc, db, j->zone, err);
    if (sc == NULL)
        return -1;
    int rc = clc_sc_export_volume(sc, j->id, j->b, &export, &e);
    soap_client_free(sc);
    if (rc < 0)
        goto fail;
    struct soap_client *cc = clc_cc_client(clc, db, j->zone, &e);
    if (cc == NULL)
        goto fail;
    struct xml_writer *w = soap_start("AttachVolume", CC_NS);
    xml_text_element(w, "instanceId", j->a);
    xml_text_element(w, "volumeId", j->id);
    xml_text_element(w, "device", device);
    if (boot) /* the root of an EBS-backed instance */
        xml_text_element(w, "boot", "true");
    write_export(w, export);
    size_t len;
    char *rq = soap_finish(w, &len);
    rc = soap_call(cc, "AttachVolume", rq, len, &doc, &body, &e);
    soap_client_free(cc);
    if (rc < 0)
        goto fail;
    /* (a launch's attachment learns its node here: its export goes from
     * there when it ends) */
    if (clc_exec(db,
                 "UPDATE attachments SET node = ? WHERE volume_id = ? AND"
                 " node = ''",
                 "recording the attachment", err, j->b, j->id, NULL) < 0)
        return -1;
    char state[16];
    answered_state(body, j->id, state);
    if (strcmp(state, "attached") == 0)
        return clc_exec(db,
                        "UPDATE attachments SET state = 'attached' WHERE"
                        " volume_id = ? AND state = 'attaching'",
                        "recording the attachment", err, j->id, NULL);
    return 0;
fail:
    if (refused(e)) {
        rc = attach_failed(db, j->id, e, err);
        error_free(e);
        return rc;
    }
    error_set(err, e ? e->errnum : EIO, e ? e->code : NULL, "%s",
              error_message(e));
    error_free(e);
    return -1;
}

static int sync_detaching(struct clc *clc, struct db *db, struct job *j,
                          struct koala_error **err)
{
    /* id: volume, zone, a: instance, n: force */
    struct koala_error *e = NULL;
    struct soap_client *cc = clc_cc_client(clc, db, j->zone, err);
    if (cc == NULL)
        return -1;
    struct xml_writer *w = soap_start("DetachVolume", CC_NS);
    xml_text_element(w, "instanceId", j->a);
    xml_text_element(w, "volumeId", j->id);
    xml_text_element(w, "force", j->n ? "true" : "false");
    size_t len;
    char *rq = soap_finish(w, &len);
    _cleanup_xml_doc_ struct xml_doc *doc = NULL;
    const struct xml_node *body;
    int rc = soap_call(cc, "DetachVolume", rq, len, &doc, &body, &e);
    soap_client_free(cc);
    if (rc < 0) {
        /* A node that no longer has the instance or the volume has let
         * go of it. */
        const char *code = e->code ? e->code : "";
        if (str_has_prefix(code, "InvalidInstanceID") ||
            str_has_prefix(code, "InvalidVolume") ||
            str_has_prefix(code, "InvalidAttachment")) {
            error_free(e);
            return clc_attachment_done(db, j->id, err);
        }
        error_set(err, e->errnum, e->code, "%s", error_message(e));
        error_free(e);
        return -1;
    }
    char state[16];
    answered_state(body, j->id, state);
    if (strcmp(state, "detached") == 0)
        return clc_attachment_done(db, j->id, err);
    return 0; /* the node's report finishes it (clc_ebs_apply_instance) */
}

static int sync_ended(struct clc *clc, struct db *db, struct job *j,
                      struct koala_error **err)
{
    (void)clc;
    return clc_attachment_done(db, j->id, err);
}

/* ---- SC work that outlived its row ---- */

/* A snapshot's data is kept while a volume of any zone is still being
 * filled from it: the SC of another zone reads its blocks, and only the
 * CLC knows of that volume (docs/storage.md).  1 held, 0 not, -1. */
static int snapshot_held(struct db *db, struct job *j, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT 1 FROM volumes WHERE state ="
                               " 'creating' AND sc_snapshot = ? AND"
                               " snapshot_zone = ? LIMIT 1",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, j->b, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->zone, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up volumes", err);
    db_stmt_done(st);
    return rc < 0 ? -1 : rc == 0;
}

static int sync_drop(struct clc *clc, struct db *db, struct job *j,
                     struct koala_error **err)
{
    /* id: the row's number, a: kind, b: target (node: read here) */
    char node[64] = "";
    if (strcmp(j->a, "snapshot") == 0) {
        int held = snapshot_held(db, j, err);
        if (held != 0)
            return held < 0 ? -1 : 0; /* asked again next round */
    }
    sqlite3_stmt *st =
        db_stmt(db, "SELECT node FROM sc_drops WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, j->n);
    if (sqlite3_step(st) == SQLITE_ROW)
        clc_col(node, sizeof(node), st, 0);
    db_stmt_done(st);
    struct soap_client *c = clc_sc_client(clc, db, j->zone, err);
    if (c == NULL)
        return -1;
    int rc = strcmp(j->a, "export") == 0
                 ? clc_sc_unexport_volume(c, j->b, node, err)
                 : clc_sc_delete_snapshot(c, j->b, err);
    soap_client_free(c);
    if (rc < 0)
        return -1;
    char num[24];
    snprintf(num, sizeof(num), CLC_INT "%lld", (long long)j->n);
    return clc_exec(db, "DELETE FROM sc_drops WHERE id = ?", "", err, num,
                    NULL);
}

/* Attachments to plug (?1: only that volume's; NULL: all): those of a
 * launch once the SC made the volume and the cluster placed the instance
 * (their node is the instance's). */
#define ATTACHING                                                              \
    "SELECT a.volume_id, v.zone, a.instance_id, CASE WHEN a.node != '' THEN"   \
    " a.node ELSE i.node END, 0 FROM attachments a JOIN volumes v ON v.id ="   \
    " a.volume_id JOIN instances i ON i.id = a.instance_id WHERE a.state ="    \
    " 'attaching' AND v.state = 'in-use' AND (a.node != '' OR i.node != '')"   \
    " AND (?1 IS NULL OR a.volume_id = ?1)"

void clc_ebs_sync(struct clc *clc, struct db *db)
{
    atomic_store(&launch_filling, false);
    each(clc, db, "volume",
         "SELECT id, zone, sc_snapshot, snapshot_zone, size_gb FROM volumes"
         " WHERE state = 'creating'",
         NULL, sync_creating);
    each(clc, db, "volume",
         "SELECT id, zone, '', '', 0 FROM volumes WHERE state = 'deleting'",
         NULL, sync_deleting);
    each(clc, db, "volume",
         "SELECT m.volume_id, v.zone, CASE WHEN m.target_size > v.size_gb"
         " THEN 'grow' ELSE '' END, '', m.target_size FROM volume_mods m"
         " JOIN volumes v ON v.id = m.volume_id WHERE m.state ="
         " 'modifying'",
         NULL, sync_modifying);
    each(clc, db, "snapshot",
         "SELECT sc_id, zone, volume_id, '', MAX(sent) FROM snapshots WHERE"
         " state = 'pending' GROUP BY sc_id",
         NULL, sync_snapshot);
    clc_ebs_images_sync(clc, db);
    /* Attachments of instances that are over: their node let go. */
    each(clc, db, "attachment",
         "SELECT a.volume_id, '', '', '', 0 FROM attachments a JOIN"
         " instances i ON i.id = a.instance_id WHERE i.state ="
         " 'terminated'",
         NULL, sync_ended);
    each(clc, db, "attachment", ATTACHING, NULL, sync_attaching);
    each(clc, db, "attachment",
         "SELECT a.volume_id, v.zone, a.instance_id, '', a.force FROM"
         " attachments a JOIN volumes v ON v.id = a.volume_id WHERE"
         " a.state = 'detaching'",
         NULL, sync_detaching);
    each(clc, db, "storage controller",
         "SELECT '', zone, kind, target, id FROM sc_drops ORDER BY id", NULL,
         sync_drop);
    if (atomic_load(&launch_filling)) {
        struct timespec ts = {0, FILLING_RECHECK_MS * 1000000L};
        nanosleep(&ts, NULL);
        clc_ebs_kick(clc);
    }
}

void clc_ebs_attach_now(struct clc *clc, struct db *db, const char *volume)
{
    /* (the same work as the round's: the SC's export and the node's plug
     * are idempotent, so a round doing it at the same time is harmless) */
    each(clc, db, "attachment", ATTACHING, volume, sync_attaching);
}

void clc_ebs_kick(struct clc *clc)
{
    clc_kicker_kick(&clc->ebs, clc);
}
