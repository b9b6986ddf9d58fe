/* qmp.c: the QMP client (see qmp.h for the protocol and the threading).
 *
 * State: `in` holds bytes read but not yet a whole line; `replies` maps
 * the id of each command someone waits for to its reply (JSON null until
 * it comes); `events` is a FIFO of events nobody took yet (at most
 * MAX_EVENTS: older ones are dropped, so a VM whose events nobody reads
 * cannot grow koala-nc).  `lock` guards all of it; `wlock` keeps commands
 * from interleaving on the socket.
 */
#define LOG_MODULE "qmp"
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define MAX_EVENTS 256
#define MAX_LINE (4u * 1024 * 1024)

struct qmp {
    int fd;
    pthread_mutex_t lock;
    pthread_mutex_t wlock;
    pthread_cond_t cond;
    bool reading; /* a thread is polling the socket */
    bool closed;  /* EOF or a read error */
    bool greeted; /* the {"QMP": ...} line came */
    struct buf in;
    json_t *replies; /* object: id -> reply (null while awaited) */
    json_t *events;  /* array, oldest first */
    unsigned long long next_id;
};

static void deadline_ts(int64_t deadline_ms, struct timespec *ts)
{
    /* The condition variable runs on CLOCK_MONOTONIC, as time_mono_ms. */
    ts->tv_sec = (time_t)(deadline_ms / 1000);
    ts->tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
}

/* Files one line of input.  Called with the lock held. */
static void file_line(struct qmp *q, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, 0, &jerr);
    if (msg == NULL || !json_is_object(msg)) {
        log_debug("ignoring a line that is not a JSON object: %s", jerr.text);
        json_decref(msg);
        return;
    }
    if (json_object_get(msg, "QMP")) {
        q->greeted = true;
    } else if (json_object_get(msg, "event")) {
        if (json_array_size(q->events) >= MAX_EVENTS)
            json_array_remove(q->events, 0);
        json_array_append(q->events, msg);
    } else {
        json_t *id = json_object_get(msg, "id");
        char key[32];
        if (json_is_integer(id)) {
            snprintf(key, sizeof(key), "%lld",
                     (long long)json_integer_value(id));
            if (json_object_get(q->replies, key))
                json_object_set(q->replies, key, msg);
        }
    }
    json_decref(msg);
}

/* Makes progress towards the deadline: reads input if no other thread
 * does, else waits for the reader's news.  Called with the lock held;
 * returns with it held. */
static void pump(struct qmp *q, int64_t deadline_ms)
{
    if (q->closed)
        return;
    if (q->reading) {
        struct timespec ts;
        deadline_ts(deadline_ms, &ts);
        pthread_cond_timedwait(&q->cond, &q->lock, &ts);
        return;
    }
    q->reading = true;
    pthread_mutex_unlock(&q->lock);
    int64_t left = deadline_ms - time_mono_ms();
    struct pollfd p = {.fd = q->fd, .events = POLLIN};
    char tmp[65536];
    ssize_t n = -2;
    int e = 0;
    int rc = poll(&p, 1, left > 0 ? (int)left : 0);
    if (rc > 0) {
        n = recv(q->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        e = errno;
    }
    pthread_mutex_lock(&q->lock);
    q->reading = false;
    if (n == 0 || (n == -1 && e != EAGAIN && e != EINTR)) {
        q->closed = true;
    } else if (n > 0) {
        buf_append(&q->in, tmp, (size_t)n);
        char *start = q->in.data;
        char *nl;
        while ((nl = memchr(start, '\n',
                            q->in.len - (size_t)(start - q->in.data)))) {
            file_line(q, start, (size_t)(nl - start));
            start = nl + 1;
        }
        size_t rest = q->in.len - (size_t)(start - q->in.data);
        memmove(q->in.data, start, rest);
        q->in.len = rest;
        q->in.data[rest] = '\0';
        if (rest > MAX_LINE) {
            log_warn("QMP line longer than %u bytes: closing", MAX_LINE);
            q->closed = true;
        }
    }
    pthread_cond_broadcast(&q->cond);
}

static int connect_path(const char *path, struct koala_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int dirfd = -1;
    if (strlen(path) < sizeof(sa.sun_path)) {
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    } else {
        /* Too long for sun_path: go through the directory's descriptor. */
        _cleanup_free_ char *d1 = strdup(path), *d2 = strdup(path);
        if (d1 == NULL || d2 == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        dirfd = open(dirname(d1), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return error_set_errno(err, "QMP socket %s", path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd,
                 basename(d2));
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error_set_errno(err, "socket");
    } else if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        error_set_errno(err, "QMP socket %s", path);
        close(fd);
        fd = -1;
    }
    if (dirfd >= 0)
        close(dirfd);
    return fd;
}

struct qmp *qmp_connect(const char *path, unsigned timeout_ms,
                        struct koala_error **err)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    int fd;
    for (;;) {
        struct koala_error *e = NULL;
        fd = connect_path(path, &e);
        if (fd >= 0)
            break;
        int en = e ? e->errnum : 0;
        if ((en != ENOENT && en != ECONNREFUSED) ||
            time_mono_ms() >= deadline) {
            if (err && *err == NULL)
                *err = e;
            else
                error_free(e);
            return NULL;
        }
        error_free(e);
        usleep(20000);
    }
    struct qmp *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        close(fd);
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    q->fd = fd;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->wlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    q->replies = json_object();
    q->events = json_array();
    if (q->replies == NULL || q->events == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        qmp_free(q);
        return NULL;
    }
    pthread_mutex_lock(&q->lock);
    while (!q->greeted && !q->closed && time_mono_ms() < deadline)
        pump(q, deadline);
    bool greeted = q->greeted, closed = q->closed;
    pthread_mutex_unlock(&q->lock);
    if (!greeted) {
        error_set(err, closed ? EPIPE : ETIMEDOUT, NULL,
                  "QMP %s: no greeting (%s)", path,
                  closed ? "connection closed" : "timed out");
        qmp_free(q);
        return NULL;
    }
    int64_t left = deadline - time_mono_ms();
    json_t *r = qmp_execute(q, "qmp_capabilities", NULL,
                            left > 0 ? (unsigned)left : 1, err);
    if (r == NULL) {
        qmp_free(q);
        return NULL;
    }
    json_decref(r);
    return q;
}

void qmp_free(struct qmp *q)
{
    if (q == NULL)
        return;
    if (q->fd >= 0)
        close(q->fd);
    json_decref(q->replies);
    json_decref(q->events);
    buf_free(&q->in);
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->wlock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

static int send_all(struct qmp *q, const char *data, size_t len)
{
    pthread_mutex_lock(&q->wlock);
    int rc = 0;
    while (len > 0) {
        ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        data += n;
        len -= (size_t)n;
    }
    pthread_mutex_unlock(&q->wlock);
    return rc;
}

json_t *qmp_execute(struct qmp *q, const char *cmd, json_t *args,
                    unsigned timeout_ms, struct koala_error **err)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    char key[32];
    pthread_mutex_lock(&q->lock);
    unsigned long long id = ++q->next_id;
    snprintf(key, sizeof(key), "%llu", id);
    json_object_set_new(q->replies, key, json_null());
    bool closed = q->closed;
    pthread_mutex_unlock(&q->lock);
    json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)id);
    if (msg && args)
        json_object_set(msg, "arguments", args);
    json_decref(args);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    json_t *result = NULL;
    if (text == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    size_t tlen = strlen(text);
    text[tlen] = '\n'; /* json_dumps' NUL becomes the line end */
    int sent = closed ? -1 : send_all(q, text, tlen + 1);
    free(text);
    pthread_mutex_lock(&q->lock);
    if (sent < 0)
        q->closed = true;
    json_t *reply;
    while (json_is_null(reply = json_object_get(q->replies, key)) &&
           !q->closed && time_mono_ms() < deadline)
        pump(q, deadline);
    reply = json_incref(json_object_get(q->replies, key));
    json_object_del(q->replies, key);
    closed = q->closed;
    pthread_mutex_unlock(&q->lock);
    if (json_is_object(reply)) {
        json_t *ret = json_object_get(reply, "return");
        json_t *e = json_object_get(reply, "error");
        if (ret) {
            result = json_incref(ret);
        } else {
            const char *cls = json_string_value(json_object_get(e, "class"));
            const char *desc = json_string_value(json_object_get(e, "desc"));
            error_set(err, EIO, NULL, "QMP %s: %s: %s", cmd,
                      cls ? cls : "error", desc ? desc : "(no description)");
        }
    } else if (closed) {
        error_set(err, EPIPE, NULL, "QMP %s: connection closed", cmd);
    } else {
        error_set(err, ETIMEDOUT, NULL, "QMP %s: no reply in %u ms", cmd,
                  timeout_ms);
    }
    json_decref(reply);
out:
    return result;
}

int qmp_next_event(struct qmp *q, unsigned timeout_ms, json_t **event,
                   struct koala_error **err)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    *event = NULL;
    pthread_mutex_lock(&q->lock);
    while (json_array_size(q->events) == 0 && !q->closed &&
           time_mono_ms() < deadline)
        pump(q, deadline);
    int rc = 0;
    if (json_array_size(q->events) > 0) {
        *event = json_incref(json_array_get(q->events, 0));
        json_array_remove(q->events, 0);
        rc = 1;
    } else if (q->closed) {
        rc = error_set(err, EPIPE, NULL, "QMP connection closed");
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

bool qmp_closed(struct qmp *q)
{
    pthread_mutex_lock(&q->lock);
    bool c = q->closed;
    pthread_mutex_unlock(&q->lock);
    return c;
}

const char *qmp_event_name(const json_t *event)
{
    const char *s = json_string_value(json_object_get(event, "event"));
    return s ? s : "";
}
