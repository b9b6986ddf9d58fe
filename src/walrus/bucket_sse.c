/* bucket_sse.c: a bucket's default encryption (Put/Get/DeleteBucketEncryption)
 * and where it applies: a write without SSE headers of its own is encrypted
 * as the bucket says (sse_for_write).  Only SSE-S3 (AES256) can be a
 * default: Koala has no KMS, so aws:kms is refused with NotImplemented
 * rather than accepted and not honoured.  Stored in buckets.encryption
 * (schema v12). */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"
#include "xml.h"

int sse_for_write(struct s3_req *r, const struct bucket_row *b,
                  struct sse_request *q, struct koala_error **err)
{
    if (sse_from_request(r, SSE_USE_WRITE, q, err) < 0)
        return -1;
    if (q->mode == SSE_NONE && b->encryption[0])
        q->mode = SSE_S3;
    return 0;
}

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

/* <ServerSideEncryptionConfiguration> with one Rule, as S3 takes it. */
static int parse(const char *body, size_t len, char out[24],
                 struct koala_error **err)
{
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(body, len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "ServerSideEncryptionConfiguration") != 0)
        return malformed(err);
    const struct xml_node *rule = xml_next_child(root, NULL, "Rule");
    if (rule == NULL || xml_next_child(root, rule, "Rule") != NULL)
        return malformed(err);
    const struct xml_node *def =
        xml_child(rule, "ApplyServerSideEncryptionByDefault");
    if (def == NULL)
        return malformed(err);
    _cleanup_free_ char *alg = xml_child_text(def, "SSEAlgorithm");
    _cleanup_free_ char *kms = xml_child_text(def, "KMSMasterKeyID");
    _cleanup_free_ char *bk = xml_child_text(rule, "BucketKeyEnabled");
    if (alg == NULL)
        return malformed(err);
    if (strcmp(alg, "aws:kms") == 0 || strcmp(alg, "aws:kms:dsse") == 0)
        return error_set(err, ENOTSUP, "NotImplemented",
                         "SSE-KMS is not available: Koala has no KMS; use "
                         "SSEAlgorithm AES256.");
    if (strcmp(alg, "AES256") != 0)
        return malformed(err);
    if (kms)
        return error_set(err, EINVAL, "InvalidArgument",
                         "a KMSMasterKeyID is not applicable if the default "
                         "sse algorithm is not aws:kms or aws:kms:dsse");
    if (bk && strcmp(bk, "true") != 0 && strcmp(bk, "false") != 0)
        return malformed(err);
    snprintf(out, 24, "AES256%s", bk && strcmp(bk, "true") == 0
                                      ? " bucket-key"
                                      : "");
    return 0;
}

void s3_put_bucket_encryption(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    char value[24];
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0 ||
        parse(r->body.data, r->body.len, value, &err) < 0 ||
        s3_bucket_set_text(r, "encryption", value, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

void s3_get_bucket_encryption(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    if (b.encryption[0] == '\0') {
        error_set(&err, ENOENT, "ServerSideEncryptionConfigurationNotFoundError",
                  "The server side encryption configuration was not found");
        return s3_fail(r, err);
    }
    struct xml_writer *x =
        xml_writer_new("ServerSideEncryptionConfiguration", S3_XMLNS);
    xml_start(x, "Rule");
    xml_start(x, "ApplyServerSideEncryptionByDefault");
    xml_text_element(x, "SSEAlgorithm", "AES256");
    xml_end(x);
    xml_text_element(x, "BucketKeyEnabled",
                     strstr(b.encryption, "bucket-key") ? "true" : "false");
    xml_end(x);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_delete_bucket_encryption(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0 ||
        s3_bucket_set_text(r, "encryption", "", &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}
