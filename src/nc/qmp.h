/* qmp.h: a client of QEMU's machine protocol (QMP) on a unix socket.
 *
 * QMP is JSON, one message a line: a greeting, then replies to commands
 * ({"return": ...} or {"error": ...}, matched to the command by "id") and
 * asynchronous events ({"event": "SHUTDOWN", ...}) in between.  A QEMU
 * monitor serves one client at a time, so one `struct qmp` is the only
 * connection to a VM and is shared by every thread that talks to it.
 *
 * Threads: any number of threads may call qmp_execute() and
 * qmp_next_event() at once.  Whichever thread needs input and finds no one
 * else reading becomes the reader (leader/follower): it polls the socket
 * with the lock released, then files what it read (replies by id, events
 * in a queue) and wakes the others.  So a thread waiting for events never
 * delays a command, and replies are never lost to another waiter.
 *
 * The connection ends (EOF) when QEMU exits; every call then fails with
 * errnum EPIPE, after the events that arrived before the end were taken.
 */
#ifndef KOALA_NC_QMP_H
#define KOALA_NC_QMP_H

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

struct qmp;

/* Connects to the socket at path (long paths are fine), reads the
 * greeting and enters command mode (qmp_capabilities), all within
 * timeout_ms; a socket that does not exist yet or refuses is retried until
 * then. */
struct qmp *qmp_connect(const char *path, unsigned timeout_ms,
                        struct koala_error **err);
void qmp_free(struct qmp *q); /* NULL-safe; closes the connection */

/* Runs cmd with args (a JSON object, taken over; may be NULL) and waits
 * up to timeout_ms for its reply.  Returns the "return" value (new
 * reference, the caller's), or NULL with *err: the QMP error's class and
 * description, ETIMEDOUT, or EPIPE when the connection ended. */
json_t *qmp_execute(struct qmp *q, const char *cmd, json_t *args,
                    unsigned timeout_ms, struct koala_error **err);

/* Waits up to timeout_ms for the next event.  Returns 1 with *event (the
 * whole message, the caller's), 0 when none came in time, -1 with *err
 * (EPIPE) when the connection ended and no event is left. */
int qmp_next_event(struct qmp *q, unsigned timeout_ms, json_t **event,
                   struct koala_error **err);

/* The connection ended (QEMU exited or closed it). */
bool qmp_closed(struct qmp *q);

/* Convenience: the event's name ("SHUTDOWN"), or "" (borrowed). */
const char *qmp_event_name(const json_t *event);

static inline void qmp_freep(struct qmp **q)
{
    qmp_free(*q);
}
#define _cleanup_qmp_ __attribute__((cleanup(qmp_freep)))

#endif
