/* sts.c: the STS actions the CLC's endpoint answers for requests signed
 * for service "sts" (api.c routes them here): GetCallerIdentity, which
 * Ansible's modules and many scripts call on the EC2 endpoint before
 * anything else.  Replies and errors are STS's own XML (the 2011-06-15
 * namespace, <ErrorResponse>), not EC2's.
 *
 * Who the caller is: the key's user.  An account's "admin" user (made
 * with the account by `koala account create`) is the account's root
 * identity, as in Eucalyptus: arn:aws:iam::<account>:root with the account
 * number as UserId, as AWS answers for root keys.  Any other user is
 * arn:aws:iam::<account>:user/<name> with a stable AIDA... id. */
#define LOG_MODULE "clc"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "clc.h"
#include "log.h"

/* EC2's words for authentication failures, in STS's. */
static const char *sts_code(const char *code)
{
    if (strcmp(code, "AuthFailure") == 0)
        return "InvalidClientTokenId";
    if (strcmp(code, "InternalError") == 0)
        return "InternalFailure";
    return code;
}

void sts_reply_error(struct ec2_req *r, const struct koala_error *err)
{
    const char *code = sts_code(error_code(err));
    int status = err && err->status ? err->status : ec2_status_for(code);
    bool internal = err == NULL || err->code == NULL;
    if (status >= 500)
        log_error("sts %s: %s: %s", r->action ? r->action : "?", code,
                  error_message(err));
    struct xml_writer *w = xml_writer_new("ErrorResponse", STS_XMLNS);
    xml_start(w, "Error");
    xml_text_element(w, "Type", status >= 500 ? "Receiver" : "Sender");
    xml_text_element(w, "Code", code);
    xml_text_element(w, "Message",
                     internal ? "An internal error has occurred"
                              : error_message(err));
    xml_end(w);
    xml_text_element(w, "RequestId", r->request_id);
    size_t len = 0;
    char *doc = xml_writer_finish(w, &len);
    if (doc == NULL) {
        http_reply_empty(r->http, 500);
        return;
    }
    http_reply_take(r->http, (unsigned)status, "text/xml", doc, len);
}

static void get_caller_identity(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT u.id, u.name FROM access_keys k JOIN"
                               " users u ON u.id = k.user WHERE"
                               " k.access_key = ?",
                               &err);
    if (st == NULL)
        return ec2_fail(r, err);
    sqlite3_bind_text(st, 1, r->access_key, -1, SQLITE_STATIC);
    char name[128] = "";
    int64_t user = 0;
    int rc = db_step_row(r->db, st, "looking up user", &err);
    if (rc == 0) {
        user = sqlite3_column_int64(st, 0);
        clc_col(name, sizeof(name), st, 1);
    }
    db_stmt_done(st);
    if (rc == 1)
        error_set(&err, EACCES, "InvalidClientTokenId",
                  "The security token included in the request is invalid.");
    if (rc != 0)
        return ec2_fail(r, err);
    char arn[256], user_id[32];
    if (strcmp(name, "admin") == 0) {
        snprintf(arn, sizeof(arn), "arn:aws:iam::%s:root", r->who.number);
        snprintf(user_id, sizeof(user_id), "%s", r->who.number);
    } else {
        char seed[64], hex[65];
        snprintf(arn, sizeof(arn), "arn:aws:iam::%s:user/%s", r->who.number,
                 name);
        snprintf(seed, sizeof(seed), "koala-user:%s:%lld", r->who.number,
                 (long long)user);
        checksum_sha256_hex(seed, strlen(seed), hex);
        snprintf(user_id, sizeof(user_id), "AIDA%.17s", hex);
        for (char *p = user_id; *p; p++)
            *p = (char)toupper((unsigned char)*p);
    }
    struct xml_writer *w =
        xml_writer_new("GetCallerIdentityResponse", STS_XMLNS);
    xml_start(w, "GetCallerIdentityResult");
    xml_text_element(w, "Arn", arn);
    xml_text_element(w, "UserId", user_id);
    xml_text_element(w, "Account", r->who.number);
    xml_end(w);
    xml_start(w, "ResponseMetadata");
    xml_text_element(w, "RequestId", r->request_id);
    xml_end(w);
    size_t len = 0;
    char *doc = xml_writer_finish(w, &len);
    if (doc == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        return ec2_fail(r, err);
    }
    http_reply_take(r->http, 200, "text/xml", doc, len);
}

void sts_handle(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    r->action = ec2_param(r, "Action");
    if (r->action == NULL) {
        error_set(&err, EINVAL, "MissingAction",
                  "The request must contain the parameter Action");
        return ec2_fail(r, err);
    }
    if (strcmp(r->action, "GetCallerIdentity") == 0)
        return get_caller_identity(r);
    error_set(&err, EINVAL, "InvalidAction",
              "Could not find operation %s for version %s", r->action,
              ec2_param(r, "Version") ? ec2_param(r, "Version")
                                      : "NO_VERSION_SPECIFIED");
    ec2_fail(r, err);
}
