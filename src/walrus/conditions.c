/* conditions.c: ETag lists and conditional writes.
 *
 * PutObject and CompleteMultipartUpload take `If-None-Match: *` (write only
 * if the key has no current object) and `If-Match: <etag>` (only if the
 * current object has that ETag), as S3 does since 2024.  They are checked
 * twice: before a PUT's body is accepted (so a doomed upload is refused
 * early), and again inside the transaction that makes the new version
 * current, which is what makes them safe against a concurrent writer: of
 * two conditional creates of one key, exactly one succeeds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"

bool s3_etag_matches(const char *list, const char *etag)
{
    _cleanup_free_ char *copy = strdup(list);
    char *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
         t = strtok_r(NULL, ",", &save)) {
        t = str_trim(t);
        if (str_has_prefix(t, "W/"))
            t += 2;
        size_t n = strlen(t);
        if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
            t[n - 1] = '\0';
            t++;
        }
        if (strcmp(t, "*") == 0 || strcmp(t, etag) == 0)
            return true;
    }
    return false;
}

int s3_write_conditions(struct s3_req *r, struct write_conditions *c,
                        struct koala_error **err)
{
    memset(c, 0, sizeof(*c));
    const char *inm = s3_header(r, "If-None-Match");
    c->if_match = s3_header(r, "If-Match");
    if (inm) {
        if (strcmp(inm, "*") != 0)
            return error_set(err, ENOTSUP, "NotImplemented",
                             "A header you provided implies functionality "
                             "that is not implemented: If-None-Match other "
                             "than '*'.");
        c->if_none_match = true;
    }
    return 0;
}

int s3_write_conditions_check(struct db *db, const char *bucket,
                              const char *key, const struct write_conditions *c,
                              bool existed_before, bool *exists_out,
                              struct koala_error **err)
{
    if (c->if_match == NULL && !c->if_none_match)
        return 0;
    struct object_row o;
    int rc = meta_object_get(db, bucket, key, &o, err);
    if (rc < 0)
        return -1;
    bool exists = rc == 0;
    if (exists_out)
        *exists_out = exists;
    bool etag_ok = exists && c->if_match && s3_etag_matches(c->if_match, o.etag);
    object_row_clear(&o);
    if (c->if_none_match && exists)
        return error_set(err, EEXIST, "PreconditionFailed",
                         "At least one of the pre-conditions you specified "
                         "did not hold");
    if (c->if_match && !exists && existed_before)
        return error_set(err, EAGAIN, "ConditionalRequestConflict",
                         "The conditional request cannot succeed due to a "
                         "conflicting operation against this resource.");
    if (c->if_match && !exists)
        return error_set(err, ENOENT, "NoSuchKey",
                         "The specified key does not exist.");
    if (c->if_match && !etag_ok)
        return error_set(err, EINVAL, "PreconditionFailed",
                         "At least one of the pre-conditions you specified "
                         "did not hold");
    return 0;
}
