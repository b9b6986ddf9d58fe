/* config.h: INI configuration files (read with inih).
 *
 *   [walrus]
 *   listen = 127.0.0.1:8773
 *   data_dir = /var/lib/koala/walrus
 *
 * Values are looked up by section and key; the getters return the default
 * when the key is absent and fail (with an error naming section.key) when it
 * is present but malformed.  A config is read-only after loading, so it may
 * be shared between threads. */
#ifndef KOALA_CONFIG_H
#define KOALA_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct config;

/* Loads path; a missing or malformed file is an error (line number given). */
struct config *config_load(const char *path, struct koala_error **err);
/* Parses INI text held in memory (for tests and built-in defaults). */
struct config *config_parse_string(const char *text, struct koala_error **err);
struct config *config_new_empty(void);
void config_free(struct config *cfg);

/* Sets (or replaces) a value, e.g. from a command line flag. 0 / -1. */
int config_set(struct config *cfg, const char *section, const char *key,
               const char *value);

const char *config_get(const struct config *cfg, const char *section,
                       const char *key, const char *def);
int config_get_int(const struct config *cfg, const char *section,
                   const char *key, int64_t def, int64_t *out,
                   struct koala_error **err);
int config_get_bool(const struct config *cfg, const char *section,
                    const char *key, bool def, bool *out,
                    struct koala_error **err);
/* Sizes accept binary suffixes: "512M", "10G". */
int config_get_size(const struct config *cfg, const char *section,
                    const char *key, uint64_t def, uint64_t *out,
                    struct koala_error **err);

/* The first key of `section` that is not among `known` (NULL-terminated),
 * or NULL when there is none: a misspelt setting is an error, not a
 * silently ignored line. */
const char *config_unknown_key(const struct config *cfg, const char *section,
                               const char *const *known);

static inline void config_freep(struct config **c)
{
    config_free(*c);
}
#define _cleanup_config_ __attribute__((cleanup(config_freep)))

#endif
