/* log.c: leveled per-module logging (see log.h). */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX_MODULES 32

struct module_level {
    char name[32];
    enum log_level level;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_level global_level = LOG_LVL_INFO;
static struct module_level modules[LOG_MAX_MODULES];
static int n_modules;
static int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = LOG_LVL_WARN;
        return 0;
    }
    return -1;
}

static void set_locked(const char *module, enum log_level level)
{
    if (module == NULL) {
        global_level = level;
        return;
    }
    for (int i = 0; i < n_modules; i++) {
        if (strcmp(modules[i].name, module) == 0) {
            modules[i].level = level;
            return;
        }
    }
    if (n_modules < LOG_MAX_MODULES) {
        snprintf(modules[n_modules].name, sizeof(modules[0].name), "%s",
                 module);
        modules[n_modules++].level = level;
    }
}

void log_set_level(const char *module, enum log_level level)
{
    pthread_mutex_lock(&log_lock);
    set_locked(module, level);
    pthread_mutex_unlock(&log_lock);
}

int log_set_level_spec(const char *spec)
{
    /* Parse fully first so that a bad spec changes nothing. */
    struct module_level parsed[LOG_MAX_MODULES + 1];
    int n = 0;
    char *copy = strdup(spec), *save = NULL;
    if (copy == NULL)
        return -1;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n > LOG_MAX_MODULES)
            goto bad;
        char *eq = strchr(tok, '=');
        const char *lvl = eq ? eq + 1 : tok;
        if (eq) {
            *eq = '\0';
            if (*tok == '\0' || strlen(tok) >= sizeof(parsed[0].name))
                goto bad;
            snprintf(parsed[n].name, sizeof(parsed[n].name), "%s", tok);
        } else {
            parsed[n].name[0] = '\0';
        }
        if (log_level_parse(lvl, &parsed[n].level) < 0)
            goto bad;
        n++;
    }
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < n; i++)
        set_locked(parsed[i].name[0] ? parsed[i].name : NULL, parsed[i].level);
    pthread_mutex_unlock(&log_lock);
    free(copy);
    return 0;
bad:
    free(copy);
    return -1;
}

int log_enabled(const char *module, enum log_level level)
{
    enum log_level threshold;
    pthread_mutex_lock(&log_lock);
    threshold = global_level;
    for (int i = 0; i < n_modules; i++) {
        if (strcmp(modules[i].name, module) == 0) {
            threshold = modules[i].level;
            break;
        }
    }
    pthread_mutex_unlock(&log_lock);
    return level <= threshold;
}

void log_set_fd(int fd)
{
    /* Atomic: threads read it while logging, without the lock. */
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
}

void log_reset(void)
{
    pthread_mutex_lock(&log_lock);
    global_level = LOG_LVL_INFO;
    n_modules = 0;
    __atomic_store_n(&log_fd, 2, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&log_lock);
}

void log_vmsg(enum log_level level, const char *module, const char *fmt,
              va_list ap)
{
    if (!log_enabled(module, level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(
        line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], module);
    if (n < 0)
        return;
    /* snprintf returns the length it wanted: a header longer than the line
     * (a very long module name) was cut, and the message gets no room. */
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(__atomic_load_n(&log_fd, __ATOMIC_RELAXED), line, len);
    (void)w;
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, module, fmt, ap);
    va_end(ap);
}
