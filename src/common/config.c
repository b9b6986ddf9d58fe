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
    if (*name == '\0') /* "= value": inih then reports the line */
        return 0;
    return config_set(user, section, name, value ? value : "") == 0;
}

/* Feeds inih one line at a time, from a file or from a string.
 *
 * Leading white space is removed first: inih (built with multi-line
 * entries, as distributions ship it) takes an indented line for the
 * continuation of the previous value and hands it over under the previous
 * key, so keys indented under their section header silently replaced each
 * other.  A line longer than inih's line buffer would be split in two and
 * its tail parsed as a line of its own; it is remembered and reported. */
struct line_src {
    FILE *f; /* read from f, or else from s */
    const char *s;
    int lineno;
    int too_long; /* first line that did not fit, or 0 */
    int max_len;  /* what fits */
};

static char *next_line(char *str, int num, void *stream)
{
    struct line_src *src = stream;
    size_t cap = (size_t)num - 1, n = 0;
    int c = EOF;
    src->max_len = num - 2; /* room for the newline and the NUL */
    for (;;) {
        if (src->f)
            c = getc(src->f);
        else
            c = *src->s ? (unsigned char)*src->s++ : EOF;
        if (c == EOF)
            break;
        if (n < cap)
            str[n++] = (char)c;
        else if (src->too_long == 0)
            src->too_long = src->lineno + 1;
        if (c == '\n')
            break;
    }
    if (n == 0 && c == EOF)
        return NULL;
    str[n] = '\0';
    src->lineno++;
    size_t skip = strspn(str, " \t");
    memmove(str, str + skip, n - skip + 1);
    return str;
}

static struct config *parse(struct line_src *src, const char *what,
                            struct koala_error **err)
{
    struct config *cfg = config_new_empty();
    if (cfg == NULL) {
        error_set(err, ENOMEM, NULL, "%s: out of memory", what);
        return NULL;
    }
    int rc = ini_parse_stream(next_line, src, on_entry, cfg);
    if (src->too_long && (rc == 0 || rc >= src->too_long)) {
        error_set(err, EINVAL, "InvalidConfiguration",
                  "%s: line %d: longer than %d characters", what, src->too_long,
                  src->max_len);
    } else if (rc == -2) {
        error_set(err, ENOMEM, NULL, "%s: out of memory", what);
    } else if (rc != 0) {
        error_set(err, EINVAL, "InvalidConfiguration",
                  "%s: line %d: syntax error", what, rc);
    } else if (src->f && ferror(src->f)) {
        error_set(err, EIO, "InvalidConfiguration", "%s: read error", what);
    } else {
        return cfg;
    }
    config_free(cfg);
    return NULL;
}

struct config *config_load(const char *path, struct koala_error **err)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        error_set(err, errno, "InvalidConfiguration", "%s: cannot open: %s",
                  path, strerror(errno));
        return NULL;
    }
    struct line_src src = {.f = f};
    struct config *cfg = parse(&src, path, err);
    fclose(f);
    return cfg;
}

struct config *config_parse_string(const char *text, struct koala_error **err)
{
    struct line_src src = {.s = text};
    return parse(&src, "config", err);
}

const char *config_get(const struct config *cfg, const char *section,
                       const char *key, const char *def)
{
    const struct config_entry *e = cfg ? find(cfg, section, key) : NULL;
    return e ? e->value : def;
}

const char *config_unknown_key(const struct config *cfg, const char *section,
                               const char *const *known)
{
    for (size_t i = 0; cfg && i < cfg->n; i++) {
        if (strcasecmp(cfg->entries[i].section, section) != 0)
            continue;
        const char *const *k = known;
        while (*k && strcasecmp(*k, cfg->entries[i].key) != 0)
            k++;
        if (*k == NULL)
            return cfg->entries[i].key;
    }
    return NULL;
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
