/* error.c: the error object (see error.h). */
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int error_vset(struct koala_error **err, int errnum, int status,
                      const char *code, const char *fmt, va_list ap)
{
    if (err == NULL || *err != NULL)
        return -1;
    struct koala_error *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->errnum = errnum;
    e->status = status;
    /* The error's own copy: a code may come from another error (or a peer's
     * fault) that is freed before this one. */
    e->code = code ? strdup(code) : NULL;
    if (vasprintf(&e->message, fmt, ap) < 0)
        e->message = NULL;
    *err = e;
    return -1;
}

int error_set(struct koala_error **err, int errnum, const char *code,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, errnum, 0, code, fmt, ap);
    va_end(ap);
    return -1;
}

int error_set_status(struct koala_error **err, int status, const char *code,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, 0, status, code, fmt, ap);
    va_end(ap);
    return -1;
}

int error_set_errno(struct koala_error **err, const char *fmt, ...)
{
    int saved = errno;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    error_set(err, saved, NULL, "%s: %s", msg ? msg : "?", strerror(saved));
    free(msg);
    errno = saved;
    return -1;
}

void error_prefix(struct koala_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char *pre = NULL, *joined = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&pre, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (asprintf(&joined, "%s: %s", pre, err->message ? err->message : "") >=
        0) {
        free(err->message);
        err->message = joined;
    }
    free(pre);
}

void error_free(struct koala_error *err)
{
    if (err == NULL)
        return;
    free((char *)err->code);
    free(err->message);
    free(err);
}

void error_clear(struct koala_error **err)
{
    if (err == NULL)
        return;
    error_free(*err);
    *err = NULL;
}

const char *error_code(const struct koala_error *err)
{
    return err && err->code ? err->code : "InternalError";
}

const char *error_message(const struct koala_error *err)
{
    return err && err->message ? err->message : "unknown error";
}
