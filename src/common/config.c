/* config.c: INI configuration via inih (see config.h). */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

struct config_entry {
    char *section;
    char *key;
    char *value;
};

struct config {
    struct config_entry *entries;
    size_t n, cap;
};

struct config *config_new_empty(void)
{
    return calloc(1, sizeof(struct config));
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->entries[i].section);
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
    }
    free(cfg->entries);
    free(cfg);
}

static struct config_entry *find(const struct config *cfg, const char *section,
                                 const char *key)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcasecmp(cfg->entries[i].section, section) == 0 &&
            strcasecmp(cfg->entries[i].key, key) == 0)
            return &cfg->entries[i];
    return NULL;
}

int config_set(struct config *cfg, const char *section, const char *key,
               const char *value)
{
    char *v = strdup(value);
    if (v == NULL)
        return -1;
    struct config_entry *e = find(cfg, section, key);
    if (e) {
        free(e->value);
        e->value = v;
        return 0;
    }
    if (cfg->n == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 16;
        struct config_entry *p = realloc(cfg->entries, cap * sizeof(*p));
        if (p == NULL)
            goto oom;
        cfg->entries = p;
        cfg->cap = cap;
    }
    e = &cfg->entries[cfg->n];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = v;
    if (e->section == NULL || e->key == NULL) {
        free(e->section);
        free(e->key);
        goto oom;
    }
    cfg->n++;
    return 0;
oom:
    free(v);
    return -1;
}

static int on_entry(void *user, const char *section, const char *name,
                    const char *value)
{
    return config_set(user, section, name, value ? value : "") == 0;
}

static struct config *finish(struct config *cfg, int rc, const char *what,
                             struct koala_error **err)
{
    if (rc == 0)
        return cfg;
    config_free(cfg);
    if (rc == -1)
        error_set(err, errno, "InvalidConfiguration", "%s: cannot open: %s",
                  what, strerror(errno));
    else if (rc == -2)
        error_set(err, ENOMEM, NULL, "%s: out of memory", what);
    else
        error_set(err, EINVAL, "InvalidConfiguration",
                  "%s: line %d: syntax error", what, rc);
    return NULL;
}

struct config *config_load(const char *path, struct koala_error **err)
{
    struct config *cfg = config_new_empty();
    if (cfg == NULL)
        return finish(NULL, -2, path, err);
    return finish(cfg, ini_parse(path, on_entry, cfg), path, err);
}

struct config *config_parse_string(const char *text, struct koala_error **err)
{
    struct config *cfg = config_new_empty();
    if (cfg == NULL)
        return finish(NULL, -2, "config", err);
    return finish(cfg, ini_parse_string(text, on_entry, cfg), "config", err);
}

const char *config_get(const struct config *cfg, const char *section,
                       const char *key, const char *def)
{
    const struct config_entry *e = cfg ? find(cfg, section, key) : NULL;
    return e ? e->value : def;
}

int config_get_int(const struct config *cfg, const char *section,
                   const char *key, int64_t def, int64_t *out,
                   struct koala_error **err)
{
    const char *v = config_get(cfg, section, key, NULL);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (str_to_i64(v, out) < 0)
        return error_set(err, EINVAL, "InvalidConfiguration",
                         "%s.%s: '%s' is not an integer", section, key, v);
    return 0;
}

int config_get_bool(const struct config *cfg, const char *section,
                    const char *key, bool def, bool *out,
                    struct koala_error **err)
{
    const char *v = config_get(cfg, section, key, NULL);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return error_set(err, EINVAL, "InvalidConfiguration",
                     "%s.%s: '%s' is not a boolean", section, key, v);
}

int config_get_size(const struct config *cfg, const char *section,
                    const char *key, uint64_t def, uint64_t *out,
                    struct koala_error **err)
{
    const char *v = config_get(cfg, section, key, NULL);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (str_parse_size(v, out) < 0)
        return error_set(err, EINVAL, "InvalidConfiguration",
                         "%s.%s: '%s' is not a size", section, key, v);
    return 0;
}
