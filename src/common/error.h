/* error.h: the error object every fallible libkoala function reports into.
 *
 * A function that fails returns -1 (or NULL) and fills `*err` (its last
 * argument) once, where the failure is detected.  Callers up the stack may add
 * context with error_prefix(); the error is logged or turned into an API error
 * reply exactly once, where the request or job ends, and then freed.
 *
 * An error carries:
 *   errnum   the errno behind it, or 0
 *   code     the API error code it maps to at the edge ("NoSuchKey",
 *            "InvalidParameterValue" ...); the error's own copy of the
 *            string given to error_set.  NULL means an internal error
 *            ("InternalError").
 *   status   the HTTP status at the edge (0: derive from the code)
 *   message  human readable text (owned)
 */
#ifndef KOALA_ERROR_H
#define KOALA_ERROR_H

#include <stdarg.h>

struct koala_error {
    int errnum;
    const char *code;
    int status;
    char *message;
};

/* Fills *err (if err is not NULL and *err is NULL: the first error wins) and
 * returns -1, so callers can write `return error_set(err, ...)`. */
int error_set(struct koala_error **err, int errnum, const char *code,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* As error_set, with an explicit HTTP status for the edge. */
int error_set_status(struct koala_error **err, int status, const char *code,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* As error_set with errno as errnum and strerror(errno) appended. */
int error_set_errno(struct koala_error **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prepends "context: " to the message of an existing error. */
void error_prefix(struct koala_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void error_free(struct koala_error *err);
/* Frees *err and sets it to NULL: for retry paths. */
void error_clear(struct koala_error **err);

const char *error_code(const struct koala_error *err);    /* never NULL */
const char *error_message(const struct koala_error *err); /* never NULL */

static inline void error_freep(struct koala_error **e)
{
    error_free(*e);
}
#define _cleanup_error_ __attribute__((cleanup(error_freep)))

#endif
