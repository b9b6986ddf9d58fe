/* object_acl.c: loading the object a request names (by versionId too,
 * delete markers answered as S3 does) and the object ACL operations. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "walrus.h"
#include "xml.h"

int s3_load_object(struct s3_req *r, unsigned perm, struct bucket_row *b,
                   struct object_row *o, struct koala_error **err)
{
    const char *vid;
    if (s3_version_param(r, &vid, err) < 0 ||
        s3_bucket_access(r, 0, b, err) < 0)
        return -1;
    int rc = meta_object_get_version(r->db, r->bucket, r->key, vid, o, err);
    if (rc == 0 && o->delete_marker) {
        object_row_clear(o);
        if (vid)
            return error_set(err, EINVAL, "MethodNotAllowed",
                             "The specified method is not allowed against "
                             "this resource.");
        rc = 1;
    }
    if (rc == 1 && vid)
        return error_set(err, ENOENT, "NoSuchVersion",
                         "The specified version does not exist.");
    if (rc == 1)
        return error_set(err, ENOENT, "NoSuchKey",
                         "The specified key does not exist.");
    if (rc < 0)
        return -1;
    if (s3_authorize(r, b, s3_op_action(r), r->key, o, &o->acl, perm, err) <
        0) {
        object_row_clear(o);
        return -1;
    }
    return 0;
}

void s3_get_object_acl(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct object_row o;
    struct bucket_row b;
    if (s3_load_object(r, PERM_READ_ACP, &b, &o, &err) < 0)
        return s3_fail(r, err);
    size_t len;
    char *doc = acl_to_xml(&o.acl, &len);
    object_row_clear(&o);
    s3_reply_xml(r, 200, doc, len);
}

void s3_put_object_acl(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct object_row o;
    struct identity owner;
    struct acl acl;
    struct bucket_row ob;
    if (s3_load_object(r, PERM_WRITE_ACP, &ob, &o, &err) < 0)
        return s3_fail(r, err);
    int rc = meta_identity_by_id(r->db, o.owner, &owner, &err);
    object_row_clear(&o);
    if (rc != 0) {
        if (rc == 1)
            error_set(&err, ENOENT, NULL, "object owner vanished");
        return s3_fail(r, err);
    }
    struct bucket_row b;
    rc = meta_bucket_get(r->db, r->bucket, &b, &err);
    if (rc == 1)
        error_set(&err, ENOENT, "NoSuchBucket",
                  "The specified bucket does not exist");
    if (rc != 0 || acl_from_request(r, &acl, &owner, &b.acl, &err) < 0 ||
        s3_acl_guard(r, &b, &acl, true, &err) < 0)
        return s3_fail(r, err);
    _cleanup_free_ char *text = acl_encode(&acl);
    if (text == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        return s3_fail(r, err);
    }
    if (meta_object_set_field(r->db, r->bucket, r->key,
                              s3_param(r, "versionId"), "acl", text, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}
