/* daemon.h: what every Koala daemon's main() does the same way.
 *
 * The command line and the configuration file are one set of keys: each key
 * of the daemon's section (data_dir) is also an option (--data-dir VALUE),
 * and an option overrides the file.  --config FILE names the file, --help
 * prints the usage.  daemon_config() merges both into one view, in the
 * daemon's section, and sets the log level from its log_level key.
 *
 *   static const char *const keys[] = {"listen", "data_dir", ..., NULL};
 *   static const struct daemon_spec spec = {"koala-cc", "cc", keys, HELP};
 *   int status;
 *   _cleanup_config_ struct config *cfg = daemon_config(&spec, argc, argv,
 *                                                       &status);
 *   if (cfg == NULL)
 *       return status;
 *   daemon_block_signals();   (before any thread starts)
 *   ... start ...
 *   int sig = daemon_wait_signal();
 */
#ifndef KOALA_DAEMON_H
#define KOALA_DAEMON_H

#include "config.h"

struct daemon_spec {
    const char *name;        /* "koala-nc": the usage line and messages */
    const char *section;     /* "nc": the configuration file's section */
    const char *const *keys; /* every key of the section; NULL-terminated */
    const char *help;        /* the options explained, after the usage line */
};

/* The file's section with the command line over it (only the spec's keys),
 * the log level set.  NULL when the process is to exit with *status: 0
 * after --help, 1 for a configuration file that cannot be read, 2 for a
 * bad command line or log level (the reason said on stderr). */
struct config *daemon_config(const struct daemon_spec *d, int argc, char **argv,
                             int *status);

/* Blocks SIGINT and SIGTERM (in the caller and the threads it starts
 * later, which inherit the mask) and ignores SIGPIPE. */
void daemon_block_signals(void);
/* Waits for SIGINT or SIGTERM (blocked before); returns which came. */
int daemon_wait_signal(void);

#endif
