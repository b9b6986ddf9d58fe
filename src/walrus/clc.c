/* clc.c: Walrus and the CLC.  Once a cloud has a CLC, its accounts and
 * access keys live there, so that one set of credentials works for EC2 and
 * S3: a key Walrus does not know is looked up at the CLC (GetAccessKey,
 * SOAP over mutual TLS; the answer is cached by auth.c's key cache), and
 * the account gets a local row with the CLC's canonical id, which is what
 * buckets and ACLs refer to. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "soap.h"
#include "walrus.h"

/* The local account of a CLC account, made on first sight. */
static int local_account(struct db *db, const char *canonical, const char *name,
                         const char *number, struct identity *who,
                         struct koala_error **err)
{
    int rc = meta_identity_by_canonical(db, canonical, who, err);
    if (rc == 0 && number && strcmp(who->number, number) != 0) {
        /* made before Walrus kept the CLC's account number */
        sqlite3_stmt *st = db_stmt(
            db, "UPDATE accounts SET number=? WHERE canonical_id=?", err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, number, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, canonical, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE)
            return db_error(db, "updating account", err);
        snprintf(who->number, sizeof(who->number), "%s", number);
        return 0;
    }
    if (rc != 1)
        return rc;
    char local[160];
    snprintf(local, sizeof(local), "clc/%s", name);
    sqlite3_stmt *st =
        db_stmt(db,
                "INSERT OR IGNORE INTO accounts(name, canonical_id, created,"
                " number) VALUES(?,?,?,?)",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, local, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, canonical, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
    sqlite3_bind_text(st, 4, number ? number : "", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "adding account", err);
    return meta_identity_by_canonical(db, canonical, who, err) == 0
               ? 0
               : error_set(err, EIO, NULL, "account %s vanished", canonical);
}

int walrus_clc_lookup(struct walrus *w, struct db *db, const char *access_key,
                      char **secret, struct identity *who,
                      struct koala_error **err)
{
    struct http_client_tls tls = {w->opt.ca, w->opt.clc_cert, w->opt.clc_key,
                                  false};
    struct soap_client *c =
        soap_client_new(w->opt.clc_endpoint, &tls, 10000, err);
    if (c == NULL)
        return -1;
    struct xml_writer *x = soap_start("GetAccessKey", "urn:koala:clc");
    xml_text_element(x, "accessKey", access_key);
    size_t len;
    char *rq = soap_finish(x, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    struct koala_error *e = NULL;
    int rc = soap_call(c, "GetAccessKey", rq, len, &doc, &body, &e);
    soap_client_free(c);
    if (rc < 0) {
        if (strcmp(error_code(e), "InvalidAccessKeyId") == 0) {
            error_free(e);
            return 1;
        }
        log_warn("asking the CLC for a key: %s", error_message(e));
        error_set(err, EIO, "ServiceUnavailable",
                  "The access key cannot be checked right now.");
        error_free(e);
        return -1;
    }
    char *s = xml_child_text(body, "secretKey");
    _cleanup_free_ char *canonical = xml_child_text(body, "canonicalId");
    _cleanup_free_ char *name = xml_child_text(body, "accountName");
    _cleanup_free_ char *number = xml_child_text(body, "accountId");
    xml_doc_free(doc);
    if (s == NULL || canonical == NULL || name == NULL) {
        free(s);
        return error_set(err, EIO, NULL, "the CLC's answer is incomplete");
    }
    if (number && strlen(str_trim(number)) != 12) {
        free(number);
        number = NULL;
    }
    if (local_account(db, str_trim(canonical), str_trim(name), number, who,
                      err) < 0) {
        explicit_bzero(s, strlen(s));
        free(s);
        return -1;
    }
    *secret = s;
    return 0;
}
