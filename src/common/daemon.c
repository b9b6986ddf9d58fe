/* daemon.c: the command line, configuration and signals of the daemons
 * (see daemon.h). */
#include "daemon.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_KEYS 64
#define KEY_MAX 40

static void usage(const struct daemon_spec *d, FILE *f)
{
    fprintf(f,
            "usage: %s [--config FILE] [--OPTION VALUE]...\n"
            "Options are also the keys of the [%s] section of the "
            "configuration\nfile (with _ for -); an option overrides the "
            "file.\n%s",
            d->name, d->section, d->help);
}

struct config *daemon_config(const struct daemon_spec *d, int argc, char **argv,
                             int *status)
{
    size_t n = 0;
    while (d->keys[n])
        n++;
    if (n > MAX_KEYS) {
        fprintf(stderr, "%s: too many configuration keys\n", d->name);
        *status = 2;
        return NULL;
    }
    struct option opts[MAX_KEYS + 3];
    char names[MAX_KEYS][KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "%s", d->keys[i]);
        for (char *p = names[i]; *p; p++)
            if (*p == '_')
                *p = '-';
        opts[i] =
            (struct option){names[i], required_argument, NULL, (int)(256 + i)};
    }
    opts[n] = (struct option){"config", required_argument, NULL, 'c'};
    opts[n + 1] = (struct option){"help", no_argument, NULL, 'h'};
    opts[n + 2] = (struct option){NULL, 0, NULL, 0};

    /* Whole option names only: getopt_long would take a prefix of one
     * (--max-core for --max-cores), which a key added later can make mean
     * something else, and a misspelt key must not pass. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            if (strcmp(argv[i], "-c") == 0)
                i++; /* its value */
            continue;
        }
        const char *name = argv[i] + 2;
        size_t len = strcspn(name, "=");
        const struct option *o = opts;
        while (o->name &&
               (strlen(o->name) != len || strncmp(o->name, name, len) != 0))
            o++;
        if (o->name == NULL) {
            fprintf(stderr, "%s: unknown option %.*s\n", d->name, (int)len + 2,
                    argv[i]);
            usage(d, stderr);
            *status = 2;
            return NULL;
        }
        if (o->has_arg == required_argument && name[len] != '=')
            i++; /* its value, whatever it looks like */
    }

    const char *config_path = NULL;
    _cleanup_config_ struct config *cmd = config_new_empty();
    _cleanup_config_ struct config *file = NULL;
    struct config *cfg = NULL;
    struct koala_error *err = NULL;
    *status = 2;
    optind = 0; /* glibc: start afresh (callers may parse more than once) */
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config_path = optarg;
        } else if (c == 'h') {
            usage(d, stdout);
            *status = 0;
            return NULL;
        } else if (c >= 256 && c < 256 + (int)n) {
            if (cmd == NULL ||
                config_set(cmd, d->section, d->keys[c - 256], optarg) < 0)
                goto oom;
        } else {
            usage(d, stderr);
            return NULL;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument: %s\n", d->name, argv[optind]);
        usage(d, stderr);
        return NULL;
    }
    if (config_path && (file = config_load(config_path, &err)) == NULL) {
        fprintf(stderr, "%s: %s\n", d->name, error_message(err));
        error_free(err);
        *status = 1;
        return NULL;
    }
    const char *unknown = config_unknown_key(file, d->section, d->keys);
    if (unknown) {
        fprintf(stderr, "%s: %s: unknown key %s in [%s]\n", d->name,
                config_path, unknown, d->section);
        return NULL;
    }
    if ((cfg = config_new_empty()) == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        const char *v =
            config_get(cmd, d->section, d->keys[i],
                       config_get(file, d->section, d->keys[i], NULL));
        if (v && config_set(cfg, d->section, d->keys[i], v) < 0)
            goto oom;
    }
    if (log_set_level_spec(config_get(cfg, d->section, "log_level", "info")) <
        0) {
        fprintf(stderr, "%s: bad log level\n", d->name);
        config_free(cfg);
        return NULL;
    }
    return cfg;
oom:
    fprintf(stderr, "%s: out of memory\n", d->name);
    config_free(cfg);
    *status = 1;
    return NULL;
}

static sigset_t stop_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

void daemon_block_signals(void)
{
    sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int daemon_wait_signal(void)
{
    sigset_t set = stop_signals();
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}
