/* log.h: leveled, per-module logging to stderr (or a file).
 *
 * Each source file defines LOG_MODULE before including this header
 * (default "koala").  The threshold is global and can be overridden per
 * module: log_set_level_spec("info,walrus=debug,http=warn").
 * Logging is thread safe: a line is written with one write(2).
 */
#ifndef KOALA_LOG_H
#define KOALA_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN,
    LOG_LVL_INFO,
    LOG_LVL_DEBUG,
};

#ifndef LOG_MODULE
#define LOG_MODULE "koala"
#endif

/* Returns -1 if the level name is unknown. */
int log_level_parse(const char *name, enum log_level *out);
/* "LEVEL[,module=LEVEL...]"; returns -1 on a malformed spec (nothing set). */
int log_set_level_spec(const char *spec);
void log_set_level(const char *module, enum log_level level);
int log_enabled(const char *module, enum log_level level);
/* Sends log lines to fd (default 2). */
void log_set_fd(int fd);
/* Drops all per-module overrides and resets the level to info. */
void log_reset(void);

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *module, const char *fmt,
              va_list ap);

#define log_error(...) log_msg(LOG_LVL_ERROR, LOG_MODULE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, LOG_MODULE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, LOG_MODULE, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_enabled(LOG_MODULE, LOG_LVL_DEBUG))                            \
            log_msg(LOG_LVL_DEBUG, LOG_MODULE, __VA_ARGS__);                   \
    } while (0)

#endif
