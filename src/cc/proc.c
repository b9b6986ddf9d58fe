/* proc.c: the programs koala-cc runs for the cluster network (ip, nft,
 * dnsmasq), inside the cluster's network namespace when one is configured.
 *
 * A child joins the namespace with setns(2) on /run/netns/NAME between
 * fork and exec; only async-signal-safe calls happen there, since the
 * parent has threads.  Children are waited for by their pid only, so
 * nothing else this process started is ever reaped by mistake.
 */
#define LOG_MODULE "cc"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cc.h"
#include "log.h"

char *proc_find(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0 ? strdup(prog) : NULL;
    const char *path = getenv("PATH");
    _cleanup_free_ char *dirs = NULL;
    if (asprintf(&dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "") <
        0)
        return NULL;
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d;
         d = strtok_r(NULL, ":", &save)) {
        char full[PATH_MAX];
        snprintf(full, sizeof(full), "%s/%s", d, prog);
        if (*d && access(full, X_OK) == 0)
            return strdup(full);
    }
    return NULL;
}

/* Opens the namespace file (-1 with *err set when it does not exist). */
static int open_netns(const char *netns, struct koala_error **err)
{
    if (netns == NULL || *netns == '\0')
        return -2; /* none: stay where we are */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/run/netns/%s", netns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        error_set_errno(err, "network namespace %s (%s)", netns, path);
    return fd;
}

/* In the child: joins the namespace; exits 127 when it cannot. */
static void child_enter(int nsfd)
{
    if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
        _exit(127);
}

int proc_run(const char *netns, const char *const *argv, const char *input,
             struct koala_error **err)
{
    return proc_run_output(netns, argv, input, NULL, err);
}

int proc_run_output(const char *netns, const char *const *argv,
                    const char *input, struct buf *out_text,
                    struct koala_error **err)
{
    int nsfd = open_netns(netns, err);
    if (nsfd == -1)
        return -1;
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        error_set_errno(err, "pipe");
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_set_errno(err, "fork");
        goto fail;
    }
    if (pid == 0) {
        child_enter(nsfd);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    in[0] = out[1] = -1;
    if (nsfd >= 0)
        close(nsfd);
    nsfd = -1;
    if (input) {
        size_t len = strlen(input), off = 0;
        while (off < len) {
            ssize_t w = write(in[1], input + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
    }
    close(in[1]);
    in[1] = -1;
    struct buf output = {0};
    char chunk[1024];
    for (;;) {
        ssize_t r = read(out[0], chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (output.len < 4096 || out_text)
            buf_append(&output, chunk, (size_t)r);
    }
    close(out[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int rc = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const char *msg = output.data ? str_trim(output.data) : "";
        rc = error_set(err, EIO, NULL, "%s%s%s exited with %d: %s", argv[0],
                       netns ? " in netns " : "", netns ? netns : "",
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1, msg);
    }
    if (rc == 0 && out_text) {
        *out_text = output;
        return 0;
    }
    buf_free(&output);
    return rc;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    if (nsfd >= 0)
        close(nsfd);
    return -1;
}

pid_t proc_spawn(const char *netns, const char *const *argv, int log_fd,
                 struct koala_error **err)
{
    int nsfd = open_netns(netns, err);
    if (nsfd == -1)
        return -1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        error_set_errno(err, "fork");
    } else if (pid == 0) {
        /* Gone with us: a crashed koala-cc leaves no dnsmasq behind. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(0);
        child_enter(nsfd);
        int o = log_fd >= 0 ? log_fd : devnull;
        if (dup2(devnull, 0) < 0 || dup2(o, 1) < 0 || dup2(o, 2) < 0)
            _exit(127);
        /* Signals blocked by the daemon's threads are not the child's, nor
         * those ignored where it was started (nohup ignores SIGHUP, and a
         * shell may not trap a signal ignored on entry): the child is told
         * to reload with SIGHUP. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (devnull >= 0)
        close(devnull);
    if (nsfd >= 0)
        close(nsfd);
    return pid;
}

int proc_sysctl(const char *netns, const char *path, const char *value,
                struct koala_error **err)
{
    char file[256];
    snprintf(file, sizeof(file), "/proc/sys/%s", path);
    size_t len = strlen(value);
    int nsfd = open_netns(netns, err);
    if (nsfd == -1)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        if (nsfd >= 0)
            close(nsfd);
        return error_set_errno(err, "fork");
    }
    if (pid == 0) {
        child_enter(nsfd);
        /* /proc/sys/net is the namespace of the task that opens it. */
        int fd = open(file, O_WRONLY);
        if (fd < 0 || write(fd, value, len) != (ssize_t)len)
            _exit(1);
        _exit(0);
    }
    if (nsfd >= 0)
        close(nsfd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return error_set(err, EIO, NULL, "cannot write %s%s%s", file,
                         netns ? " in netns " : "", netns ? netns : "");
    return 0;
}

int proc_enable_forwarding(const char *netns, struct koala_error **err)
{
    if (proc_sysctl(netns, "net/ipv4/ip_forward", "1\n", err) < 0) {
        error_prefix(*err, "cannot enable IPv4 forwarding");
        return -1;
    }
    return 0;
}

/* ---- sockets inside a namespace ---- */

struct socket_job {
    const char *netns;
    int type;
    const char *addr;
    uint16_t port;
    int fd;
    int err;
    char what[64];
};

static void *socket_thread(void *arg)
{
    struct socket_job *j = arg;
    if (j->netns) {
        char path[300];
        snprintf(path, sizeof(path), "/run/netns/%s", j->netns);
        int ns = open(path, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
            j->err = errno;
            snprintf(j->what, sizeof(j->what), "entering netns %s", j->netns);
            if (ns >= 0)
                close(ns);
            return NULL;
        }
        close(ns);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(j->port)};
    inet_pton(AF_INET, j->addr, &sa.sin_addr);
    int one = 1;
    int fd = socket(AF_INET, j->type | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        (j->type == SOCK_STREAM && listen(fd, 256) < 0)) {
        j->err = errno;
        snprintf(j->what, sizeof(j->what), "binding %s:%u", j->addr,
                 (unsigned)j->port);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    j->fd = fd;
    return NULL; /* the thread ends; its namespace goes with it */
}

int proc_socket_in(const char *netns, int type, const char *addr,
                   uint16_t port, struct koala_error **err)
{
    struct socket_job j = {
        .netns = netns, .type = type, .addr = addr, .port = port, .fd = -1};
    pthread_t t;
    if (pthread_create(&t, NULL, socket_thread, &j) != 0)
        return error_set(err, EAGAIN, NULL, "cannot start a thread");
    pthread_join(t, NULL);
    if (j.fd < 0) {
        errno = j.err;
        return error_set_errno(err, "%s", j.what);
    }
    return j.fd;
}
