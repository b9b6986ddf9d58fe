/* eip_push.c: getting each cluster's public address map to its CC, and
 * learning the cluster's pool (docs/wsdl/cc.wsdl: DescribePublicAddresses,
 * SetPublicAddresses; docs/network.md).
 *
 * DESIGN: eip_push keeps per cluster the map's version (bumped in the
 * transaction of every change: addresses.c, and schema_v8's trigger when
 * an instance ends) and `applied`, the last version its CC acknowledged.
 * clc_eip_push sends every cluster that is behind its whole map with the
 * current version, and records what the CC answers it holds; a CC that
 * does not answer stays behind and gets the next round's (the poller's,
 * or the next change's kick), so nothing is lost while a CC is down, nor
 * across a restart of the CLC (the counters are the queue).  Pushes run
 * one at a time (clc->eip, kicker.h) and read the map once they run, so an
 * older map never follows a newer one.
 *
 * Each poll asks every CC DescribePublicAddresses: its pool replaces the
 * one recorded (the CC's configuration is the truth for it), and a CC
 * holding an older version than the one recorded as applied (a new or
 * restored cc.db) makes its map pending again; one holding a newer
 * version than the CLC's own (a restored clc.db) makes the CLC's version
 * jump past it, so that the CC takes the CLC's map.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "log.h"
#include "soap.h"

static int64_t ip_num(const char *s)
{
    unsigned a, b, c, d;
    char extra;
    if (s == NULL || sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4 ||
        a > 255 || b > 255 || c > 255 || d > 255)
        return -1;
    return ((int64_t)a << 24) | (b << 16) | (c << 8) | d;
}

/* Replaces the cluster's pool with the ranges of the answer, when they
 * differ from those recorded. */
static int record_pool(struct db *db, const char *cluster,
                       const struct xml_node *body, struct koala_error **err)
{
    struct buf now = {0}, was = {0};
    for (const struct xml_node *n = xml_next_child(body, NULL, "range"); n;
         n = xml_next_child(body, n, "range")) {
        _cleanup_free_ char *f = xml_child_text(n, "first");
        _cleanup_free_ char *l = xml_child_text(n, "last");
        int64_t a = ip_num(f ? str_trim(f) : NULL);
        int64_t b = ip_num(l ? str_trim(l) : NULL);
        if (a < 0 || b < a) {
            buf_free(&now);
            return error_set(err, EPROTO, "InternalError",
                             "cluster %s: a bad public range", cluster);
        }
        buf_printf(&now, "%lld-%lld,", (long long)a, (long long)b);
    }
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT first, last FROM public_pools WHERE"
                               " cluster = ? ORDER BY first",
                               err);
    if (st == NULL) {
        buf_free(&now);
        return -1;
    }
    sqlite3_bind_text(st, 1, cluster, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        buf_printf(&was, "%lld-%lld,", (long long)sqlite3_column_int64(st, 0),
                   (long long)sqlite3_column_int64(st, 1));
    db_stmt_done(st);
    bool same = now.len == was.len &&
                (now.len == 0 || memcmp(now.data, was.data, now.len) == 0);
    buf_free(&was);
    if (same) {
        buf_free(&now);
        return 0;
    }
    int rc = db_begin(db, err);
    if (rc == 0)
        rc = clc_exec(db, "DELETE FROM public_pools WHERE cluster = ?",
                      "replacing the pool", err, cluster, NULL);
    for (char *p = now.data, *save = NULL, *item;
         rc == 0 && p && (item = strtok_r(p, ",", &save)) != NULL; p = NULL) {
        char a[24], b[24];
        long long x, y;
        if (sscanf(item, "%lld-%lld", &x, &y) != 2)
            continue;
        snprintf(a, sizeof(a), CLC_INT "%lld", x);
        snprintf(b, sizeof(b), CLC_INT "%lld", y);
        rc = clc_exec(db,
                      "INSERT INTO public_pools (cluster, first, last)"
                      " VALUES (?, ?, ?)",
                      "recording the pool", err, cluster, a, b, NULL);
    }
    if (rc == 0)
        rc = db_commit(db, err);
    if (rc < 0)
        db_rollback(db);
    else
        log_info("cluster %s: public pool changed", cluster);
    buf_free(&now);
    return rc;
}

void clc_eip_poll(struct clc *clc, struct db *db, const char *cluster,
                  struct soap_client *c)
{
    (void)clc;
    struct koala_error *err = NULL;
    struct xml_writer *w = soap_start("DescribePublicAddresses", CC_NS);
    size_t len;
    char *rq = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    long long held = 0;
    if (soap_call(c, "DescribePublicAddresses", rq, len, &doc, &body, &err) <
            0 ||
        soap_int(body, "version", 0, &held, &err) < 0 ||
        record_pool(db, cluster, body, &err) < 0)
        goto out;
    char h[24];
    snprintf(h, sizeof(h), CLC_INT "%lld", held);
    /* A CC behind what it acknowledged lost it: push again; one ahead of
     * the CLC: the CLC's next version must pass it. */
    if (clc_exec(db,
                 "INSERT OR IGNORE INTO eip_push (cluster, version, applied)"
                 " VALUES (?, 1, 0)",
                 "recording the map", &err, cluster, NULL) < 0 ||
        clc_exec(db,
                 "UPDATE eip_push SET applied = ?2 WHERE cluster = ?1 AND"
                 " applied > ?2",
                 "recording the map", &err, cluster, h, NULL) < 0 ||
        clc_exec(db,
                 "UPDATE eip_push SET version = ?2 + 1 WHERE cluster = ?1"
                 " AND version <= ?2 AND applied < ?2",
                 "recording the map", &err, cluster, h, NULL) < 0)
        goto out;
out:
    if (err && strcmp(error_code(err), "InvalidAction") != 0)
        log_warn("cluster %s: public addresses: %s", cluster,
                 error_message(err));
    error_free(err);
    xml_doc_free(doc);
}

/* One cluster's whole map, sent; *held is what its CC answers it holds. */
static int push_one(struct clc *clc, struct db *db, const char *cluster,
                    int64_t *sent, int64_t *held, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT version FROM eip_push WHERE cluster = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, cluster, -1, SQLITE_STATIC);
    *sent = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    struct xml_writer *w = soap_start("SetPublicAddresses", CC_NS);
    xml_u64_element(w, "version", (uint64_t)*sent);
    st = db_stmt(db,
                 "SELECT a.public_ip, i.private_ip, i.id FROM addresses a"
                 " JOIN instances i ON i.id = a.instance_id WHERE"
                 " a.cluster = ? AND i.private_ip != '' AND i.state !="
                 " 'terminated' ORDER BY a.ip",
                 err);
    size_t len;
    if (st == NULL) {
        free(soap_finish(w, &len));
        return -1;
    }
    sqlite3_bind_text(st, 1, cluster, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        xml_start(w, "address");
        xml_text_element(w, "publicIp",
                         (const char *)sqlite3_column_text(st, 0));
        xml_text_element(w, "privateIp",
                         (const char *)sqlite3_column_text(st, 1));
        xml_text_element(w, "instanceId",
                         (const char *)sqlite3_column_text(st, 2));
        xml_end(w);
    }
    db_stmt_done(st);
    char *rq = soap_finish(w, &len);
    struct soap_client *c = clc_cc_client(clc, db, cluster, err);
    if (c == NULL) {
        free(rq);
        return -1;
    }
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    long long v = 0;
    int rc = soap_call(c, "SetPublicAddresses", rq, len, &doc, &body, err);
    if (rc == 0)
        rc = soap_int(body, "version", 0, &v, err);
    xml_doc_free(doc);
    soap_client_free(c);
    *held = v;
    return rc;
}

/* The poller's round and the kicked ones (kicker.h). */
void clc_eip_push(struct clc *clc, struct db *db)
{
    clc_kicker_poll(&clc->eip, clc, db);
}

void clc_eip_kick(struct clc *clc)
{
    clc_kicker_kick(&clc->eip, clc);
}

void clc_eip_round(struct clc *clc, struct db *db)
{
    clc_eip_autoassign(clc, db);
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT cluster FROM eip_push WHERE applied < version", &err);
    char(*names)[64] = NULL;
    size_t n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        char(*nv)[64] = realloc(names, (n + 1) * sizeof(*names));
        if (nv == NULL)
            break;
        names = nv;
        clc_col(names[n++], 64, st, 0);
    }
    if (st)
        db_stmt_done(st);
    for (size_t i = 0; i < n; i++) {
        int64_t sent = 0, held = 0;
        if (push_one(clc, db, names[i], &sent, &held, &err) < 0) {
            if (strcmp(error_code(err), "ServiceUnavailable") == 0 ||
                strcmp(error_code(err), "InvalidAction") == 0)
                log_debug("cluster %s: map not pushed yet: %s", names[i],
                          error_message(err));
            else
                log_warn("cluster %s: public address map: %s: %s", names[i],
                         error_code(err), error_message(err));
            error_free(err);
            err = NULL;
            continue;
        }
        char s[24], h[24];
        snprintf(s, sizeof(s), CLC_INT "%lld", (long long)sent);
        snprintf(h, sizeof(h), CLC_INT "%lld", (long long)held);
        /* Held past what was sent: the CC has a newer map than this CLC
         * knows of; the next version passes it. */
        if (clc_exec(db,
                     "UPDATE eip_push SET applied = MAX(applied, MIN(?2,"
                     " ?3)), version = MAX(version, CASE WHEN ?3 > ?2 THEN"
                     " ?3 + 1 ELSE 0 END) WHERE cluster = ?1",
                     "recording the map applied", &err, names[i], s, h,
                     NULL) < 0) {
            log_warn("%s", error_message(err));
            error_free(err);
            err = NULL;
        } else {
            log_debug("cluster %s: public address map %lld applied", names[i],
                      (long long)sent);
        }
    }
    error_free(err);
    free(names);
}
