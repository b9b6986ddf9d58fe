/* exec.h: running the helper programs the node controller drives
 * (qemu-img, ip, QEMU itself) and waiting for them.
 *
 * The child is started with fork + execvp; before exec it may enter a
 * network namespace (setns on an open /run/netns/NAME) and change its
 * directory.  It gets /dev/null as stdin, its stdout and stderr go to a
 * pipe whose first 64 KiB are collected (for error messages), every other
 * descriptor is closed, the signal mask is emptied and SIGPIPE is back to
 * its default, so a daemonizing QEMU inherits nothing of koala-nc.
 *
 * These calls block: run them on worker or job threads only.
 */
#ifndef KOALA_NC_EXEC_H
#define KOALA_NC_EXEC_H

#include <sys/types.h>

#include "error.h"

struct nc_exec_opts {
    int netns_fd;        /* -1: stay in koala-nc's network namespace */
    const char *cwd;     /* NULL: keep */
    unsigned timeout_ms; /* 0: none; past it the child is killed (SIGKILL) */
};

/* Runs argv[0] (looked up in PATH) and waits for it.  Returns 0 when it
 * exited with status 0; otherwise -1 with *err naming the program, its
 * status and the last line(s) of its output.  *output (when not NULL)
 * receives the collected output (malloc'd, NUL terminated) either way. */
int nc_exec(const char *const *argv, const struct nc_exec_opts *opts,
            char **output, struct koala_error **err);

/* Opens /run/netns/NAME (O_RDONLY | O_CLOEXEC); -1 with *err. */
int nc_netns_open(const char *name, struct koala_error **err);

#endif
