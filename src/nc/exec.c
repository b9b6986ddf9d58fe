/* exec.c: running helper programs (see exec.h). */
#define LOG_MODULE "nc"
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define OUTPUT_MAX (64u * 1024)

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child(const char *const *argv, const struct nc_exec_opts *o,
                  int out_fd, int status_fd)
{
    int e = 0;
    if (o->netns_fd >= 0 && setns(o->netns_fd, CLONE_NEWNET) < 0)
        goto fail;
    if (o->cwd && chdir(o->cwd) < 0)
        goto fail;
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 ||
        dup2(out_fd, 2) < 0)
        goto fail;
    /* The status pipe moves to fd 3 (close-on-exec, so a successful exec
     * closes it); everything above it is closed. */
    if (status_fd != 3) {
        if (dup2(status_fd, 3) < 0)
            goto fail;
        status_fd = 3;
    }
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    close_range(4, ~0u, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], (char *const *)argv);
fail:
    e = errno;
    (void)!write(status_fd, &e, sizeof(e));
    _exit(127);
}

/* The last non-empty line of the output, for error messages. */
static const char *last_line(const char *s, char *tmp, size_t tmp_size)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    size_t start = n;
    while (start > 0 && s[start - 1] != '\n')
        start--;
    size_t len = n - start;
    if (len >= tmp_size)
        len = tmp_size - 1;
    memcpy(tmp, s + start, len);
    tmp[len] = '\0';
    return tmp;
}

int nc_exec(const char *const *argv, const struct nc_exec_opts *opts,
            char **output, struct koala_error **err)
{
    static const struct nc_exec_opts defaults = {.netns_fd = -1};
    const struct nc_exec_opts *o = opts ? opts : &defaults;
    int out[2] = {-1, -1}, st[2] = {-1, -1};
    _cleanup_buf_ struct buf b = {0};
    int rc = -1;
    if (output)
        *output = NULL;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0) {
        error_set_errno(err, "%s: pipe", argv[0]);
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error_set_errno(err, "%s: fork", argv[0]);
        goto out;
    }
    if (pid == 0)
        child(argv, o, out[1], st[1]);
    close(out[1]);
    close(st[1]);
    out[1] = st[1] = -1;
    int64_t deadline = o->timeout_ms ? time_mono_ms() + o->timeout_ms : 0;
    bool timed_out = false;
    buf_append_str(&b, "");
    for (;;) {
        int wait_ms = -1;
        if (deadline) {
            int64_t left = deadline - time_mono_ms();
            if (left <= 0) {
                timed_out = true;
                kill(pid, SIGKILL);
                break;
            }
            wait_ms = (int)left;
        }
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int n = poll(&p, 1, wait_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            continue;
        char tmp[4096];
        ssize_t r = read(out[0], tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (b.len < OUTPUT_MAX)
            buf_append(&b, tmp, (size_t)r);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int exec_errno = 0;
    if (read(st[0], &exec_errno, sizeof(exec_errno)) != sizeof(exec_errno))
        exec_errno = 0;
    char line[512];
    if (exec_errno) {
        error_set(err, exec_errno, NULL, "cannot run %s: %s", argv[0],
                  strerror(exec_errno));
    } else if (timed_out) {
        error_set(err, ETIMEDOUT, NULL, "%s: no answer in %u ms", argv[0],
                  o->timeout_ms);
    } else if (WIFSIGNALED(status)) {
        error_set(err, EIO, NULL, "%s: killed by signal %d: %s", argv[0],
                  WTERMSIG(status), last_line(b.data, line, sizeof(line)));
    } else if (WEXITSTATUS(status) != 0) {
        error_set(err, EIO, NULL, "%s: exit status %d: %s", argv[0],
                  WEXITSTATUS(status), last_line(b.data, line, sizeof(line)));
    } else {
        rc = 0;
    }
    if (output)
        *output = buf_steal(&b);
out:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (st[i] >= 0)
            close(st[i]);
    }
    return rc;
}

int nc_netns_open(const char *name, struct koala_error **err)
{
    char path[512];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        error_set_errno(err, "network namespace %s", name);
    return fd;
}
