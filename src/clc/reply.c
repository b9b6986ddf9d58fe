/* reply.c: EC2 Query API replies: the <ActionResponse> envelope with its
 * requestId, and errors in EC2's <Response><Errors><Error> form with the
 * HTTP status botocore expects for each code. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clc.h"
#include "log.h"

static const struct {
    const char *code;
    int status;
} statuses[] = {
    {"AuthFailure", 401},
    {"Blocked", 403},
    {"DryRunOperation", 412},
    {"IncompleteSignature", 400},
    {"InsufficientInstanceCapacity", 500},
    {"InternalError", 500},
    {"InternalFailure", 500},
    {"InvalidAction", 400},
    {"InvalidClientTokenId", 403},
    {"MissingAuthenticationToken", 403},
    {"OptInRequired", 403},
    {"RequestExpired", 400},
    {"ServiceUnavailable", 503},
    {"SignatureDoesNotMatch", 403},
    {"Unavailable", 503},
    {"UnauthorizedOperation", 403},
    {"UnsupportedProtocol", 400},
};

int ec2_status_for(const char *code)
{
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++)
        if (strcmp(statuses[i].code, code) == 0)
            return statuses[i].status;
    return 400; /* client errors: the EC2 default */
}

char *ec2_time(int64_t ms, char out[25])
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    gmtime_r(&t, &tm);
    snprintf(out, 25, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms % 1000));
    return out;
}

struct xml_writer *ec2_reply_start(struct ec2_req *r, const char *action)
{
    char root[96];
    snprintf(root, sizeof(root), "%sResponse", action);
    struct xml_writer *w = xml_writer_new(root, EC2_XMLNS);
    xml_text_element(w, "requestId", r->request_id);
    return w;
}

void ec2_reply_finish(struct ec2_req *r, struct xml_writer *w)
{
    size_t len = 0;
    char *doc = xml_writer_finish(w, &len);
    if (doc == NULL) {
        struct koala_error *err = NULL;
        error_set(&err, ENOMEM, NULL, "out of memory");
        return ec2_fail(r, err);
    }
    http_reply_take(r->http, 200, "text/xml;charset=UTF-8", doc, len);
}

void ec2_reply_end(struct ec2_req *r, struct xml_writer *w,
                   struct koala_error *err)
{
    if (err) {
        xml_writer_free(w);
        return ec2_fail(r, err);
    }
    if (w)
        ec2_reply_finish(r, w);
}

void ec2_reply_error(struct ec2_req *r, const struct koala_error *err)
{
    if (r->sts)
        return sts_reply_error(r, err);
    const char *code = error_code(err);
    int status = err && err->status ? err->status : ec2_status_for(code);
    bool internal = err == NULL || err->code == NULL;
    if (status >= 500)
        log_error("%s: %s: %s", r->action ? r->action : "?", code,
                  error_message(err));
    else
        log_debug("%s: %s: %s", r->action ? r->action : "?", code,
                  error_message(err));
    struct xml_writer *w = xml_writer_new("Response", NULL);
    xml_start(w, "Errors");
    xml_start(w, "Error");
    xml_text_element(w, "Code", code);
    xml_text_element(w, "Message",
                     internal ? "An internal error has occurred"
                              : error_message(err));
    xml_end(w);
    xml_end(w);
    xml_text_element(w, "RequestID", r->request_id);
    size_t len = 0;
    char *doc = xml_writer_finish(w, &len);
    if (doc == NULL) {
        http_reply_empty(r->http, 500);
        return;
    }
    http_reply_take(r->http, (unsigned)status, "text/xml;charset=UTF-8", doc,
                    len);
}

void ec2_fail(struct ec2_req *r, struct koala_error *err)
{
    ec2_reply_error(r, err);
    error_free(err);
}

bool ec2_dry_run(struct ec2_req *r)
{
    if (!r->dry_run)
        return false;
    struct koala_error *err = NULL;
    error_set(&err, 0, "DryRunOperation",
              "Request would have succeeded, but DryRun flag is set.");
    ec2_fail(r, err);
    return true;
}
