/* api.c: the EC2 Query API's request lifecycle: the form-encoded body (or
 * query string), SigV4 authentication (service "ec2", or "sts" for the STS
 * actions of sts.c; the payload hash is the body's SHA-256, as EC2 clients
 * send no x-amz-content-sha256), the Action table, and the per-request
 * state.  Every action runs on a worker thread (http_request_defer): all
 * of them use the database. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "checksum.h"
#include "clc.h"
#include "ebs.h"
#include "id.h"
#include "log.h"
#include "secgroups.h"

static const struct {
    const char *name;
    void (*fn)(struct ec2_req *r);
} actions[] = {
    {"AllocateAddress", ec2_allocate_address},
    {"AssociateAddress", ec2_associate_address},
    /* security groups (secgroups.h) */
    {"AuthorizeSecurityGroupEgress", ec2_authorize_security_group_egress},
    {"AuthorizeSecurityGroupIngress", ec2_authorize_security_group_ingress},
    {"CreateSecurityGroup", ec2_create_security_group},
    {"DeleteSecurityGroup", ec2_delete_security_group},
    {"DescribeSecurityGroupRules", ec2_describe_security_group_rules},
    {"DescribeSecurityGroups", ec2_describe_security_groups},
    {"ModifySecurityGroupRules", ec2_modify_security_group_rules},
    {"RevokeSecurityGroupEgress", ec2_revoke_security_group_egress},
    {"RevokeSecurityGroupIngress", ec2_revoke_security_group_ingress},
    /* EBS (ebs.h) */
    {"AttachVolume", ec2_attach_volume},
    {"CopySnapshot", ec2_copy_snapshot},
    {"CreateSnapshot", ec2_create_snapshot},
    {"CreateSnapshots", ec2_create_snapshots},
    {"CreateVolume", ec2_create_volume},
    {"DeleteSnapshot", ec2_delete_snapshot},
    {"DeleteVolume", ec2_delete_volume},
    {"DescribeSnapshotAttribute", ec2_describe_snapshot_attribute},
    {"DescribeSnapshots", ec2_describe_snapshots},
    {"DescribeVolumeStatus", ec2_describe_volume_status},
    {"DescribeVolumes", ec2_describe_volumes},
    {"DescribeVolumesModifications", ec2_describe_volumes_modifications},
    {"DetachVolume", ec2_detach_volume},
    {"ModifySnapshotAttribute", ec2_modify_snapshot_attribute},
    {"ModifyVolume", ec2_modify_volume},
    {"ResetSnapshotAttribute", ec2_reset_snapshot_attribute},
    /* the rest */
    {"CreateKeyPair", ec2_create_key_pair},
    {"CreateTags", ec2_create_tags},
    {"DeleteKeyPair", ec2_delete_key_pair},
    {"DeleteTags", ec2_delete_tags},
    {"DeregisterImage", ec2_deregister_image},
    {"DescribeAccountAttributes", ec2_describe_account_attributes},
    {"DescribeAddresses", ec2_describe_addresses},
    {"DescribeAvailabilityZones", ec2_describe_availability_zones},
    {"DescribeImageAttribute", ec2_describe_image_attribute},
    {"DescribeImages", ec2_describe_images},
    {"DescribeInstanceAttribute", ec2_describe_instance_attribute},
    {"DescribeInstanceStatus", ec2_describe_instance_status},
    {"DescribeInstanceTypes", ec2_describe_instance_types},
    {"DescribeInstances", ec2_describe_instances},
    {"DescribeKeyPairs", ec2_describe_key_pairs},
    {"DescribeRegions", ec2_describe_regions},
    {"DescribeSubnets", ec2_describe_subnets},
    {"DescribeTags", ec2_describe_tags},
    {"DescribeVpcs", ec2_describe_vpcs},
    {"DisassociateAddress", ec2_disassociate_address},
    {"GetConsoleOutput", ec2_get_console_output},
    {"ImportKeyPair", ec2_import_key_pair},
    {"ModifyImageAttribute", ec2_modify_image_attribute},
    {"ModifyInstanceAttribute", ec2_modify_instance_attribute},
    {"ModifyInstanceMetadataOptions", ec2_modify_instance_metadata_options},
    {"ModifySubnetAttribute", ec2_modify_subnet_attribute},
    {"RebootInstances", ec2_reboot_instances},
    {"RegisterImage", ec2_register_image},
    {"CreateImage", ec2_create_image},
    {"ReleaseAddress", ec2_release_address},
    {"ResetImageAttribute", ec2_reset_image_attribute},
    {"RunInstances", ec2_run_instances},
    {"StartInstances", ec2_start_instances},
    {"StopInstances", ec2_stop_instances},
    {"TerminateInstances", ec2_terminate_instances},
};

static const char *header_fn(void *ctx, const char *lname)
{
    return http_request_header_joined(ctx, lname);
}

static void foreach_fn(void *ctx,
                       int (*fn)(void *fn_ctx, const char *name,
                                 const char *value),
                       void *fn_ctx)
{
    http_request_headers_foreach(ctx, fn, fn_ctx);
}

/* S3-flavoured codes of the signature code, in EC2's words. */
static int ec2_auth_error(struct koala_error *e, struct koala_error **err)
{
    const char *code = error_code(e);
    const char *ec2 = code;
    if (strcmp(code, "RequestTimeTooSkewed") == 0)
        ec2 = "RequestExpired";
    else if (strcmp(code, "AuthorizationHeaderMalformed") == 0 ||
             strcmp(code, "AuthorizationQueryParametersError") == 0)
        ec2 = "IncompleteSignature";
    else if (strcmp(code, "AccessDenied") == 0)
        ec2 = "AuthFailure";
    else if (strcmp(code, "InvalidRequest") == 0 ||
             strcmp(code, "InvalidArgument") == 0)
        ec2 = "IncompleteSignature";
    error_set(err, e->errnum, ec2, "%s", error_message(e));
    error_free(e);
    return -1;
}

static int authenticate(struct ec2_req *r, struct koala_error **err)
{
    struct sigv4_request sr = {
        .method = http_request_method(r->http),
        .raw_path = http_request_path(r->http),
        .raw_query = http_request_query(r->http),
        .header = header_fn,
        .header_ctx = r->http,
        .header_foreach = foreach_fn,
    };
    struct sigv4_auth a = {0};
    struct koala_error *e = NULL;
    int rc = sigv4_parse(&sr, &a, &e);
    if (rc < 0)
        return ec2_auth_error(e, err);
    if (rc == SIGV4_NONE)
        return error_set(err, EACCES, "MissingAuthenticationToken",
                         "Request is missing Authentication Token");
    rc = -1;
    r->sts = strcmp(a.service, "sts") == 0;
    snprintf(r->access_key, sizeof(r->access_key), "%s", a.access_key);
    if (strcmp(a.service, "ec2") != 0 && !r->sts) {
        error_set(err, EINVAL, "IncompleteSignature",
                  "Credential should be scoped to correct service: 'ec2'.");
        goto out;
    }
    /* EC2 signs the body; its hash is ours to compute. */
    char hash[65];
    checksum_sha256_hex(r->body.data ? r->body.data : "", r->body.len, hash);
    free(a.payload_hash);
    a.payload_hash = strdup(hash);
    char secret[KEYCACHE_MAX_SECRET];
    bool cached = keycache_get(r->clc->keys, a.access_key, secret, &r->who,
                               sizeof(r->who));
    if (!cached) {
        char *s = NULL;
        int found = clc_account_by_key(r->db, a.access_key, &s, &r->who, err);
        if (found < 0)
            goto out;
        if (found == 1) {
            error_set(err, EACCES, "AuthFailure",
                      "AWS was not able to validate the provided access "
                      "credentials");
            goto out;
        }
        snprintf(secret, sizeof(secret), "%s", s);
        keycache_put(r->clc->keys, a.access_key, s, &r->who, sizeof(r->who));
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
    unsigned char key[32];
    keycache_signing_key(r->clc->keys, a.access_key, secret, a.date, a.region,
                         a.service, key);
    if (sigv4_verify_key(&sr, &a, key, time(NULL), &e) < 0) {
        if (cached)
            keycache_forget(r->clc->keys, a.access_key);
        ec2_auth_error(e, err);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    sigv4_auth_clear(&a);
    return rc;
}

static void handle(struct http_request *http)
{
    struct ec2_req *r = http_request_data(http);
    struct koala_error *err = NULL;
    r->db = db_pool_get(r->clc->db, &err);
    if (r->db == NULL)
        return ec2_fail(r, err);
    const char *type = http_request_header(http, "Content-Type");
    if (r->body.len > 0 && type &&
        strncasecmp(type, "application/x-www-form-urlencoded", 33) != 0)
        error_set(&err, EINVAL, "UnsupportedProtocol",
                  "Requests must be application/x-www-form-urlencoded");
    /* The signature covers the raw query and the body's hash: only a
     * caller it proves gets the parameters parsed. */
    const char *q = http_request_query(http);
    if (err || authenticate(r, &err) < 0 ||
        ec2_parse_params(r, q, strlen(q), &err) < 0 ||
        ec2_parse_params(r, r->body.data ? r->body.data : "", r->body.len,
                         &err) < 0)
        return ec2_fail(r, err);
    if (r->sts)
        return sts_handle(r);
    r->action = ec2_param(r, "Action");
    if (r->action == NULL) {
        error_set(&err, EINVAL, "MissingAction",
                  "The request must contain the parameter Action");
        return ec2_fail(r, err);
    }
    if (ec2_param_bool(r, "DryRun", false, &r->dry_run, &err) < 0)
        return ec2_fail(r, err);
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
        if (strcmp(actions[i].name, r->action) == 0) {
            actions[i].fn(r);
            if (!http_replied(http)) {
                error_set(&err, EIO, NULL, "%s gave no reply", r->action);
                ec2_fail(r, err);
            }
            return;
        }
    error_set(&err, EINVAL, "InvalidAction",
              "The action %s is not valid for this web service.", r->action);
    ec2_fail(r, err);
}

static void on_request(struct http_request *http, void *ctx)
{
    struct ec2_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_reply_empty(http, 503);
        return;
    }
    r->clc = ctx;
    r->http = http;
    id_uuid(r->request_id);
    http_request_set_data(http, r);
    const char *m = http_request_method(http);
    if (strcmp(m, "POST") != 0 && strcmp(m, "GET") != 0) {
        struct koala_error *err = NULL;
        error_set(&err, EINVAL, "UnsupportedProtocol",
                  "The EC2 API is served with GET and POST only");
        ec2_fail(r, err);
    }
}

static ssize_t on_body(struct http_request *http, const char *data, size_t len)
{
    struct ec2_req *r = http_request_data(http);
    if (r->body.len + len > EC2_MAX_BODY ||
        buf_append(&r->body, data, len) < 0) {
        r->too_big = true;
        return -1;
    }
    return (ssize_t)len;
}

static void on_complete(struct http_request *http)
{
    struct ec2_req *r = http_request_data(http);
    if (r->too_big) {
        struct koala_error *err = NULL;
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "The request body is larger than %d bytes", EC2_MAX_BODY);
        return ec2_fail(r, err);
    }
    http_request_defer(http, handle);
}

static void on_done(struct http_request *http)
{
    struct ec2_req *r = http_request_data(http);
    if (r == NULL)
        return;
    if (r->db)
        db_pool_put(r->clc->db, r->db);
    for (size_t i = 0; i < r->n_params; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    buf_free(&r->body);
    free(r);
}

static void on_oversized(struct http_request *http, void *ctx)
{
    struct ec2_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_reply_empty(http, 400);
        return;
    }
    r->clc = ctx;
    r->http = http;
    id_uuid(r->request_id);
    http_request_set_data(http, r);
    struct koala_error *err = NULL;
    error_set(&err, EINVAL, "InvalidParameterValue",
              "The request's headers are too large");
    ec2_fail(r, err);
}

const struct http_handler clc_api_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
    .on_oversized = on_oversized,
};
