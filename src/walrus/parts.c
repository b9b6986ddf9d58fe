/* parts.c: the parts of a completed multipart object.  Their sizes are kept
 * with the version (objects.part_sizes / versions.part_sizes, schema v5:
 * "n1,n2,..."), so that GET and HEAD with ?partNumber= answer one part's
 * bytes, and GetObjectAttributes lists the parts, long after the upload
 * itself is forgotten.  Objects completed before v5 have no sizes: they
 * answer as one part.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"

int s3_part_number_param(struct s3_req *r, int *n, struct koala_error **err)
{
    *n = 0;
    const char *v = s3_param(r, "partNumber");
    if (v == NULL)
        return 0;
    int64_t x;
    if (str_to_i64(v, &x) < 0 || x < 1 || x > WALRUS_MAX_PARTS)
        return error_set(err, EINVAL, "InvalidArgument",
                         "Part number must be an integer between 1 and "
                         "10000, inclusive");
    if (s3_header(r, "Range"))
        return error_set(err, EINVAL, "InvalidRequest",
                         "Cannot specify both Range header and partNumber "
                         "query parameter");
    *n = (int)x;
    return 0;
}

size_t object_part_sizes(const struct object_row *o, uint64_t **out)
{
    *out = NULL;
    const char *s = o->part_sizes ? o->part_sizes : "";
    if (o->parts <= 0 || *s == '\0')
        return 0;
    uint64_t *v = calloc((size_t)o->parts, sizeof(*v));
    if (v == NULL)
        return 0;
    size_t n = 0;
    while (*s && n < (size_t)o->parts) {
        char *end;
        v[n++] = strtoull(s, &end, 10);
        s = *end == ',' ? end + 1 : end;
        if (end == s && *s)
            break;
    }
    *out = v;
    return n;
}

int object_part_count(const struct object_row *o)
{
    uint64_t *sizes;
    size_t n = object_part_sizes(o, &sizes);
    free(sizes);
    return n ? (int)n : 1;
}

int object_part_range(const struct object_row *o, int part, uint64_t *first,
                      uint64_t *len, struct koala_error **err)
{
    uint64_t *sizes;
    size_t n = object_part_sizes(o, &sizes);
    int rc = 0;
    if (n == 0) { /* one part: the object */
        if (part != 1)
            rc = -1;
        *first = 0;
        *len = o->size;
    } else if ((size_t)part > n) {
        rc = -1;
    } else {
        uint64_t off = 0;
        for (int i = 0; i < part - 1; i++)
            off += sizes[i];
        *first = off;
        *len = sizes[part - 1];
        if (off + *len > o->size)
            rc = error_set(err, EIO, NULL, "part sizes of %s exceed it",
                           o->key);
    }
    free(sizes);
    if (rc < 0 && (err == NULL || *err == NULL))
        return error_set(err, EINVAL, "InvalidPartNumber",
                         "The requested partnumber is not satisfiable");
    return rc;
}
