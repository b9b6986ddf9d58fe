/* qsd.c: the qemu-storage-daemon (QSD) children of koala-sc, one per
 * active volume (exported, or being snapshotted), and the helper programs
 * (qemu-img).
 *
 * A QSD must never outlive the SC: a restarted SC starts fresh ones from
 * its database, and a stale one would hold the image open.  The child
 * asks for SIGKILL when its parent dies (PR_SET_PDEATHSIG), but Linux
 * sends that when the *thread* that forked it exits, so every QSD is
 * forked by one long-lived thread of the SC, the supervisor, which also
 * restarts a QSD that died on its own (its export comes back; clients
 * with reconnect-delay wait meanwhile).
 *
 * Each QSD opens its volume as block node "vol", serves QMP on a unix
 * socket, RUN/vol-ID.qmp, and runs its NBD server from the start, with
 * TLS (the SC's certificate, the cloud CA, verify-peer) and an
 * authz-simple object that lets no one in.  Exporting the volume to a node
 * sets that object's identity to the node's DN (qom-set) and adds the
 * export; unexporting removes the export (cutting its clients) and lets no
 * one in again.  So one QSD serves both a snapshot and an attachment.
 *
 * The server is set up on the command line because of TCP: with
 * export_transport = tcp the QSD inherits, as fd 3, a listening socket
 * that koala-sc made with TCP_NODELAY (accepted sockets inherit it; QEMU
 * 7.2 does not set it, and TLS reads then wait for the peer's delayed ACK,
 * 44 ms each), and QSD's QMP refuses a numeric fd ("only QEMU supports
 * file descriptor passing"); only its command line takes one.
 */
#define LOG_MODULE "sc"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "qmp.h"
#include "sc.h"

#define QMP_TIMEOUT_MS 30000
/* The identity of a QSD's authz-simple while no node may connect: no
 * certificate of the cloud CA has this DN (every one starts O=Koala). */
#define NOBODY "CN=koala-no-node"
#define RUN_OUTPUT_MAX (64u << 20)

/* ---- helper programs ---- */

int sc_run(const char *const *argv, struct buf *out, struct koala_error **err)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0)
        return error_set_errno(err, "pipe");
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return error_set_errno(err, "pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return error_set_errno(err, "fork");
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    _cleanup_buf_ struct buf e = {0};
    struct pollfd p[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    char chunk[65536];
    while (open_fds > 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(p[i].fd, chunk, sizeof(chunk));
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
                continue;
            }
            struct buf *b = i == 0 ? out : &e;
            if (b && b->len < RUN_OUTPUT_MAX)
                buf_append(b, chunk, (size_t)n);
        }
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    while (e.len && (e.data[e.len - 1] == '\n' || e.data[e.len - 1] == ' '))
        e.data[--e.len] = '\0';
    return error_set(err, EIO, NULL, "%s failed (%s%d): %s", argv[0],
                     WIFEXITED(st) ? "exit " : "signal ",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                     e.len ? e.data : "no message");
}

/* ---- spawning on the supervisor thread ---- */

struct sc_spawn {
    const char *const *argv;
    const char *cwd;
    const char *log_path;
    int keep_fd; /* becomes fd 3, or -1 */
    pid_t pid;
    int errnum;
    bool done;
    struct sc_spawn *next;
};

static pid_t spawn_now(struct sc_spawn *s)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* child: only async-signal-safe calls */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    if (s->cwd && chdir(s->cwd) < 0)
        _exit(127);
    int null = open("/dev/null", O_RDONLY);
    int log = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 ||
        dup2(log, 2) < 0)
        _exit(127);
    if (s->keep_fd >= 0) {
        if (s->keep_fd == 3) {
            fcntl(3, F_SETFD, 0);
        } else if (dup2(s->keep_fd, 3) < 0) {
            _exit(127);
        }
        close_range(4, ~0u, 0);
    } else {
        close_range(3, ~0u, 0);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(s->argv[0], (char *const *)s->argv);
    _exit(127);
}

/* Forks on the supervisor thread and waits for the child's pid. */
static pid_t spawn(struct sc *sc, struct sc_spawn *s, struct koala_error **err)
{
    if (pthread_equal(pthread_self(), sc->super)) {
        s->pid = spawn_now(s);
        s->errnum = s->pid < 0 ? errno : 0;
    } else {
        pthread_mutex_lock(&sc->spawn_lock);
        s->next = sc->spawn_queue;
        sc->spawn_queue = s;
        pthread_cond_broadcast(&sc->spawn_cond);
        while (!s->done)
            pthread_cond_wait(&sc->spawn_cond, &sc->spawn_lock);
        pthread_mutex_unlock(&sc->spawn_lock);
    }
    if (s->pid < 0)
        return error_set(err, s->errnum, NULL, "fork: %s",
                         strerror(s->errnum));
    return s->pid;
}

/* ---- starting and stopping a QSD ---- */

static void run_path(struct sc *sc, const char *id, const char *ext,
                     char *out, size_t size)
{
    snprintf(out, size, "%s/run/%s%s", sc->opt.data_dir, id, ext);
}

static int tcp_listener(struct sc *sc, uint16_t port, uint16_t *bound,
                        struct koala_error **err)
{
    const char *addr = sc->opt.export_address;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return error_set(err, EINVAL, NULL, "export_address %s", addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return error_set_errno(err, "socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted connections inherit it: see the comment atop. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        error_set_errno(err, "NBD listener on %s:%u", addr, port);
        close(fd);
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

/* The persistent bitmaps the QSD found in the volume: those that are not
 * the volume's own, and any left inconsistent ("in-use") by a QSD that was
 * killed, are removed; a volume whose bitmap is gone falls back to a full
 * read at its next snapshot (docs/storage.md). */
static int check_bitmaps(struct sc *sc, struct db *db, struct sc_active *a,
                         const struct sc_volume *v, struct koala_error **err)
{
    json_t *nodes = qmp_execute(a->qmp, "query-named-block-nodes",
                                json_pack("{s:b}", "flat", 1), QMP_TIMEOUT_MS,
                                err);
    if (nodes == NULL)
        return -1;
    bool kept = false;
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
        if (strcmp(json_string_value(json_object_get(n, "node-name")) ?: "",
                   "vol") != 0)
            continue;
        size_t j;
        json_t *b;
        json_array_foreach(json_object_get(n, "dirty-bitmaps"), j, b) {
            const char *name = json_string_value(json_object_get(b, "name"));
            bool bad = json_is_true(json_object_get(b, "inconsistent"));
            if (name && !bad && strcmp(name, v->bitmap) == 0) {
                kept = true;
                continue;
            }
            log_info("%s: dropping bitmap %s%s", v->id, name ? name : "?",
                     bad ? " (inconsistent: its QSD was killed)" : "");
            struct koala_error *e2 = NULL;
            json_t *r = qmp_execute(
                a->qmp, "block-dirty-bitmap-remove",
                json_pack("{s:s, s:s}", "node", "vol", "name", name ? name : ""),
                QMP_TIMEOUT_MS, &e2);
            if (r == NULL) {
                log_warn("%s: removing bitmap %s: %s", v->id, name,
                         error_message(e2));
                error_free(e2);
            }
            json_decref(r);
        }
    }
    json_decref(nodes);
    if (!kept && v->bitmap[0] &&
        sc_volume_set_bitmap(db, v->id, NULL, NULL, err) < 0)
        return -1;
    return 0;
}

static int qsd_start(struct sc *sc, struct sc_active *a,
                     struct koala_error **err)
{
    char qmp_path[4200], log_path[4200], run_dir[4200];
    run_path(sc, a->volume_id, ".qmp", qmp_path, sizeof(qmp_path));
    run_path(sc, a->volume_id, ".log", log_path, sizeof(log_path));
    snprintf(run_dir, sizeof(run_dir), "%s/run", sc->opt.data_dir);
    unlink(qmp_path);
    json_t *bd = sc->store->ops->blockdev(sc->store, a->volume_id, "vol");
    char *bd_text = bd ? json_dumps(bd, JSON_COMPACT) : NULL;
    json_decref(bd);
    if (bd_text == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    /* The QMP socket by a relative path (the QSD runs in RUN): a unix
     * socket's path is limited to 107 bytes. */
    char chardev[256], sock[4200];
    snprintf(chardev, sizeof(chardev),
             "socket,id=qmp,path=%s.qmp,server=on,wait=off", a->volume_id);
    snprintf(sock, sizeof(sock), "%s/%s.sock", sc->opt.export_dir,
             a->volume_id);
    json_t *tls = json_pack("{s:s, s:s, s:s, s:s, s:b}", "qom-type",
                            "tls-creds-x509", "id", "tls0", "dir",
                            sc->tls_dir, "endpoint", "server", "verify-peer",
                            1);
    json_t *authz = json_pack("{s:s, s:s, s:s}", "qom-type", "authz-simple",
                              "id", "authz0", "identity", NOBODY);
    json_t *addr = sc->opt.transport == SC_EXPORT_TCP
                       ? json_pack("{s:s, s:s}", "type", "fd", "str", "3")
                       : json_pack("{s:s, s:s}", "type", "unix", "path", sock);
    json_t *nbd = json_pack("{s:o, s:s, s:s}", "addr", addr, "tls-creds",
                            "tls0", "tls-authz", "authz0");
    char *tls_text = json_dumps(tls, JSON_COMPACT);
    char *authz_text = json_dumps(authz, JSON_COMPACT);
    char *nbd_text = json_dumps(nbd, JSON_COMPACT);
    json_decref(tls);
    json_decref(authz);
    json_decref(nbd);
    if (sc->opt.transport == SC_EXPORT_UNIX)
        unlink(sock);
    const char *argv[] = {sc->opt.qsd,  "--chardev",   chardev,
                          "--monitor",  "chardev=qmp", "--object",
                          tls_text,     "--object",    authz_text,
                          "--nbd-server", nbd_text,    "--blockdev",
                          bd_text,      NULL};
    if (!tls_text || !authz_text || !nbd_text) {
        free(tls_text), free(authz_text), free(nbd_text), free(bd_text);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    struct sc_spawn s = {.argv = argv, .cwd = run_dir, .log_path = log_path,
                         .keep_fd = a->listen_fd};
    pid_t pid = spawn(sc, &s, err);
    free(bd_text);
    free(tls_text);
    free(authz_text);
    free(nbd_text);
    if (pid < 0)
        return -1;
    a->pid = pid;
    a->qmp = qmp_connect(qmp_path, 10000, err);
    if (a->qmp == NULL) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        a->pid = 0;
        error_prefix(*err, "qemu-storage-daemon of %s (see %s)", a->volume_id,
                     log_path);
        return -1;
    }
    log_debug("%s: qemu-storage-daemon %d", a->volume_id, (int)pid);
    return 0;
}

static void qsd_stop(struct sc_active *a)
{
    if (a->pid <= 0)
        return;
    /* quit: the QSD closes the image, so its bitmaps are stored and stay
     * consistent; SIGKILL only if it hangs. */
    struct koala_error *e = NULL;
    json_t *r = a->qmp ? qmp_execute(a->qmp, "quit", NULL, 5000, &e) : NULL;
    json_decref(r);
    error_free(e);
    int st;
    for (int i = 0; i < 200; i++) {
        if (waitpid(a->pid, &st, WNOHANG) == a->pid)
            goto done;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    log_warn("%s: qemu-storage-daemon %d did not quit: killed", a->volume_id,
             (int)a->pid);
    kill(a->pid, SIGKILL);
    waitpid(a->pid, &st, 0);
done:
    qmp_free(a->qmp);
    a->qmp = NULL;
    a->pid = 0;
}

struct sc_active *sc_qsd_find(struct sc *sc, const char *volume_id)
{
    for (struct sc_active *a = sc->active; a; a = a->next)
        if (strcmp(a->volume_id, volume_id) == 0)
            return a;
    return NULL;
}

static void active_free(struct sc_active *a)
{
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    free(a);
}

struct sc_active *sc_qsd_get(struct sc *sc, struct db *db,
                             const struct sc_volume *v, int port,
                             struct koala_error **err)
{
    struct sc_active *a = sc_qsd_find(sc, v->id);
    if (a)
        return a;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory"), NULL;
    snprintf(a->volume_id, sizeof(a->volume_id), "%s", v->id);
    a->listen_fd = -1;
    if (sc->opt.transport == SC_EXPORT_TCP) {
        a->listen_fd = tcp_listener(sc, (uint16_t)port, &a->port, err);
        if (a->listen_fd < 0) {
            free(a);
            return NULL;
        }
    }
    if (qsd_start(sc, a, err) < 0 || check_bitmaps(sc, db, a, v, err) < 0) {
        qsd_stop(a);
        active_free(a);
        return NULL;
    }
    a->next = sc->active;
    sc->active = a;
    return a;
}

void sc_qsd_release(struct sc *sc, struct sc_active *a)
{
    if (a == NULL || a->exported || a->users > 0)
        return;
    for (struct sc_active **p = &sc->active; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    qsd_stop(a);
    if (sc->opt.transport == SC_EXPORT_UNIX) {
        char sock[4200];
        snprintf(sock, sizeof(sock), "%s/%s.sock", sc->opt.export_dir,
                 a->volume_id);
        unlink(sock);
    }
    active_free(a);
}

json_t *sc_qsd_qmp(struct sc_active *a, const char *cmd, json_t *args,
                   struct koala_error **err)
{
    if (a->qmp == NULL) {
        json_decref(args);
        return error_set(err, EPIPE, NULL, "%s: no qemu-storage-daemon",
                         a->volume_id),
               NULL;
    }
    json_t *r = qmp_execute(a->qmp, cmd, args, QMP_TIMEOUT_MS, err);
    if (r == NULL)
        error_prefix(*err, "%s: %s", a->volume_id, cmd);
    return r;
}

static int qmp_ok(struct sc_active *a, const char *cmd, json_t *args,
                  struct koala_error **err)
{
    json_t *r = sc_qsd_qmp(a, cmd, args, err);
    json_decref(r);
    return r ? 0 : -1;
}

/* Lets one node in and adds the export. */
static int export_setup(struct sc *sc, struct sc_active *a, const char *node,
                        struct koala_error **err)
{
    char identity[160];
    snprintf(identity, sizeof(identity), "O=Koala,CN=koala-node-%s", node);
    if (qmp_ok(a, "qom-set",
               json_pack("{s:s, s:s, s:s}", "path", "authz0", "property",
                         "identity", "value", identity),
               err) < 0 ||
        qmp_ok(a, "block-export-add",
               json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "type", "nbd",
                         "id", "exp0", "node-name", "vol", "name",
                         a->volume_id, "writable", 1, "writethrough", 1),
               err) < 0)
        return -1;
    return 0;
}

int sc_qsd_export(struct sc *sc, struct sc_active *a, const char *node,
                  struct koala_error **err)
{
    if (a->exported && strcmp(a->node, node) == 0)
        return 0;
    if (a->exported && sc_qsd_unexport(sc, a, err) < 0)
        return -1;
    if (export_setup(sc, a, node, err) < 0) {
        struct koala_error *e2 = NULL;
        a->exported = true; /* undo whatever part was set up */
        sc_qsd_unexport(sc, a, &e2);
        error_free(e2);
        return -1;
    }
    a->exported = true;
    snprintf(a->node, sizeof(a->node), "%s", node);
    return 0;
}

static void wait_exports_gone(struct sc_active *a);

int sc_qsd_unexport(struct sc *sc, struct sc_active *a,
                    struct koala_error **err)
{
    if (!a->exported)
        return 0;
    /* hard: the node's connections are cut now, not when it lets go */
    struct koala_error *e = NULL;
    if (qmp_ok(a, "block-export-del",
               json_pack("{s:s, s:s}", "id", "exp0", "mode", "hard"),
               &e) < 0 &&
        strstr(error_message(e), "not found") == NULL) {
        error_prefix(e, "unexporting");
        *err = e;
        return -1;
    }
    error_clear(&e);
    wait_exports_gone(a);
    if (qmp_ok(a, "qom-set",
               json_pack("{s:s, s:s, s:s}", "path", "authz0", "property",
                         "identity", "value", NOBODY),
               err) < 0)
        return -1;
    a->exported = false;
    a->node[0] = '\0';
    (void)sc;
    return 0;
}

static void wait_exports_gone(struct sc_active *a)
{
    struct koala_error *e = NULL;
    for (int i = 0; i < 100; i++) {
        json_t *l = sc_qsd_qmp(a, "query-block-exports", NULL, &e);
        bool gone = l == NULL || json_array_size(l) == 0;
        json_decref(l);
        error_clear(&e);
        if (gone)
            return;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int sc_qsd_resize(struct sc *sc, struct sc_active *a, uint64_t size,
                  struct koala_error **err)
{
    /* QEMU 7.2's NBD export does not share the resize permission, so an
     * exported volume grows with its export taken down and put back; the
     * NBD server (and its socket) stays, and a connected client sees a
     * disconnect it rides out with reconnect-delay. */
    if (a->exported) {
        if (qmp_ok(a, "block-export-del",
                   json_pack("{s:s, s:s}", "id", "exp0", "mode", "hard"),
                   err) < 0)
            return -1;
        wait_exports_gone(a);
    }
    int rc = qmp_ok(a, "block_resize",
                    json_pack("{s:s, s:I}", "node-name", "vol", "size",
                              (json_int_t)size),
                    err);
    if (a->exported) {
        struct koala_error *e2 = NULL;
        if (qmp_ok(a, "block-export-add",
                   json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "type", "nbd",
                             "id", "exp0", "node-name", "vol", "name",
                             a->volume_id, "writable", 1, "writethrough",
                             1),
                   rc < 0 ? &e2 : err) < 0)
            rc = -1;
        error_free(e2);
    }
    (void)sc;
    return rc;
}

/* ---- the supervisor thread ---- */

/* A QSD that exited on its own: started again, its export re-created. */
static void revive(struct sc *sc, struct sc_active *a)
{
    qmp_free(a->qmp);
    a->qmp = NULL;
    a->pid = 0;
    struct koala_error *err = NULL;
    bool exported = a->exported;
    a->exported = false;
    /* the dead QSD left the volume's bitmaps in-use: check_bitmaps drops
     * them, and the next snapshot reads every block */
    struct db *db = db_pool_get(sc->db, &err);
    struct sc_volume v;
    int rc = db ? sc_volume_get(db, a->volume_id, &v, &err) : -1;
    if (rc == 1)
        rc = error_set(&err, ENOENT, NULL, "no such volume");
    if (rc == 0 && qsd_start(sc, a, &err) == 0 &&
        check_bitmaps(sc, db, a, &v, &err) == 0 &&
        (!exported || sc_qsd_export(sc, a, a->node, &err) == 0)) {
        db_pool_put(sc->db, db);
        log_warn("%s: qemu-storage-daemon restarted", a->volume_id);
        return;
    }
    if (db)
        db_pool_put(sc->db, db);
    a->exported = exported;
    log_error("%s: restarting qemu-storage-daemon: %s", a->volume_id,
              error_message(err));
    error_free(err);
}

static void *supervisor(void *arg)
{
    struct sc *sc = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&sc->spawn_lock);
    while (!sc->stopping) {
        while (sc->spawn_queue) {
            struct sc_spawn *s = sc->spawn_queue;
            sc->spawn_queue = s->next;
            s->pid = spawn_now(s);
            s->errnum = s->pid < 0 ? errno : 0;
            s->done = true;
        }
        pthread_cond_broadcast(&sc->spawn_cond);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec ||
            (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec)) {
            next = now;
            next.tv_nsec += 500 * 1000 * 1000;
            if (next.tv_nsec >= 1000000000) {
                next.tv_sec++;
                next.tv_nsec -= 1000000000;
            }
            pthread_mutex_unlock(&sc->spawn_lock);
            /* trylock: a request holding sc->lock may be waiting for this
             * very thread to fork its QSD. */
            if (pthread_mutex_trylock(&sc->lock) == 0) {
                for (struct sc_active *a = sc->active; a; a = a->next) {
                    int st;
                    if (a->pid > 0 && waitpid(a->pid, &st, WNOHANG) == a->pid) {
                        log_warn("%s: qemu-storage-daemon %d exited (%s %d)",
                                 a->volume_id, (int)a->pid,
                                 WIFEXITED(st) ? "status" : "signal",
                                 WIFEXITED(st) ? WEXITSTATUS(st)
                                               : WTERMSIG(st));
                        revive(sc, a);
                    }
                }
                pthread_mutex_unlock(&sc->lock);
            }
            pthread_mutex_lock(&sc->spawn_lock);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (sc->spawn_queue == NULL)
            pthread_cond_timedwait(&sc->spawn_cond, &sc->spawn_lock, &until);
    }
    pthread_mutex_unlock(&sc->spawn_lock);
    return NULL;
}

int sc_qsd_init(struct sc *sc, struct koala_error **err)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/run", sc->opt.data_dir);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", dir);
    if (mkdir(sc->opt.export_dir, 0750) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", sc->opt.export_dir);
    pthread_mutex_init(&sc->spawn_lock, NULL);
    pthread_cond_init(&sc->spawn_cond, NULL);
    if (pthread_create(&sc->super, NULL, supervisor, sc) != 0)
        return error_set(err, EAGAIN, NULL, "cannot start a thread");
    sc->super_started = true;
    return 0;
}

void sc_qsd_shutdown(struct sc *sc)
{
    if (!sc->super_started)
        return;
    pthread_mutex_lock(&sc->lock);
    /* Stopping the QSDs cuts the NCs' connections; they reconnect to the
     * QSDs the next koala-sc starts from its database. */
    while (sc->active) {
        struct sc_active *a = sc->active;
        sc->active = a->next;
        qsd_stop(a);
        active_free(a);
    }
    pthread_mutex_unlock(&sc->lock);
    pthread_mutex_lock(&sc->spawn_lock);
    sc->stopping = true;
    pthread_cond_broadcast(&sc->spawn_cond);
    pthread_mutex_unlock(&sc->spawn_lock);
    pthread_join(sc->super, NULL);
    sc->super_started = false;
}
