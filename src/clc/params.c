/* params.c: the parameters of an EC2 Query request (form-encoded body or
 * query string): lookups by name, numbered lists ("InstanceId.1") and
 * filters ("Filter.1.Name", "Filter.1.Value.1"), typed with EC2's errors. */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clc.h"
#include "id.h"

/* Orders parameters by name, then by their place in the request, so that a
 * lookup is a binary search and finds the first of duplicates. */
static int param_cmp(const void *a, const void *b)
{
    const struct ec2_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* EC2's bounds on numbered members, checked once per parameter so that no
 * operation walks a list longer than EC2 takes: Filter.N (50 filters) and
 * Filter.N.Value.M (200 values) answer FilterLimitExceeded, any other
 * member number past EC2_MAX_MEMBERS InvalidParameterValue. */
static int check_members(const char *name, struct koala_error **err)
{
    bool filter = str_has_prefix(name, "Filter.");
    int part = 0;
    for (const char *p = name; *p; part++) {
        size_t n = strcspn(p, ".");
        if (n > 0 && strspn(p, "0123456789") == n) {
            /* a member number: at most 9 digits are compared */
            long v = n > 9 ? 1000000000L : strtol(p, NULL, 10);
            long max = filter && part == 1   ? EC2_MAX_FILTERS
                       : filter && part == 3 ? EC2_MAX_FILTER_VALUES
                                             : EC2_MAX_MEMBERS;
            if (v < 1 || v > max) {
                if (filter)
                    return error_set(err, EINVAL, "FilterLimitExceeded",
                                     "The request uses too many filters or "
                                     "too many filter values (at most %d "
                                     "filters of %d values): %s",
                                     EC2_MAX_FILTERS, EC2_MAX_FILTER_VALUES,
                                     name);
                return error_set(err, EINVAL, "InvalidParameterValue",
                                 "Member number out of range (1 to %d) in "
                                 "%.64s",
                                 EC2_MAX_MEMBERS, name);
            }
        }
        p += n;
        if (*p == '.')
            p++;
    }
    return 0;
}

int ec2_parse_params(struct ec2_req *r, const char *text, size_t len,
                     struct koala_error **err)
{
    const char *p = text, *end = text + len;
    size_t cap = r->n_params;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t n = amp ? (size_t)(amp - p) : (size_t)(end - p);
        if (n > 0) {
            if (r->n_params == EC2_MAX_PARAMS)
                return error_set(err, EINVAL, "InvalidParameterValue",
                                 "The request has more than %d parameters",
                                 EC2_MAX_PARAMS);
            if (r->n_params == cap) {
                cap = cap ? cap * 2 : 16;
                struct ec2_param *np = realloc(r->params, cap * sizeof(*np));
                if (np == NULL)
                    return error_set(err, ENOMEM, NULL, "out of memory");
                r->params = np;
            }
            const char *eq = memchr(p, '=', n);
            size_t nlen = eq ? (size_t)(eq - p) : n;
            struct ec2_param *pp = &r->params[r->n_params];
            pp->seq = r->n_params;
            pp->name = str_uri_decode(p, nlen, true);
            pp->value =
                eq ? str_uri_decode(eq + 1, n - nlen - 1, true) : strdup("");
            if (pp->name == NULL || pp->value == NULL) {
                free(pp->name);
                free(pp->value);
                return error_set(err, EINVAL, "MalformedQueryString",
                                 "The query string is malformed.");
            }
            r->n_params++;
            if (check_members(pp->name, err) < 0)
                return -1;
        }
        p += n + 1;
    }
    if (r->n_params > 1) /* (params is NULL when there are none) */
        qsort(r->params, r->n_params, sizeof(*r->params), param_cmp);
    return 0;
}

const char *ec2_param(const struct ec2_req *r, const char *name)
{
    size_t lo = 0, hi = r->n_params;
    while (lo < hi) { /* the first parameter not ordered before name */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->params[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->n_params && strcmp(r->params[lo].name, name) == 0)
        return r->params[lo].value;
    return NULL;
}

const char *ec2_paramf(const struct ec2_req *r, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    return ec2_param(r, name);
}

size_t ec2_param_list(const struct ec2_req *r, const char *prefix,
                      const char ***out)
{
    size_t n = 0, cap = 0;
    const char **v = NULL;
    for (int i = 1;; i++) {
        const char *s = ec2_paramf(r, "%s.%d", prefix, i);
        if (s == NULL)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            const char **nv = realloc(v, cap * sizeof(*nv));
            if (nv == NULL)
                break;
            v = nv;
        }
        v[n++] = s;
    }
    *out = v;
    return n;
}

/* qsort_r's comparison of two positions in an id list, by id. */
static int id_pos_cmp(const void *a, const void *b, void *ctx)
{
    const char **v = ctx;
    return strcmp(v[*(const size_t *)a], v[*(const size_t *)b]);
}

int ec2_id_list_get(const struct ec2_req *r, const char *prefix,
                    struct ec2_id_list *l, struct koala_error **err)
{
    l->n = ec2_param_list(r, prefix, &l->v);
    l->found = calloc(l->n + 1, sizeof(bool));
    l->order = calloc(l->n + 1, sizeof(size_t));
    if (l->found == NULL || l->order == NULL) {
        ec2_id_list_free(l);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    for (size_t i = 0; i < l->n; i++)
        l->order[i] = i;
    qsort_r(l->order, l->n, sizeof(size_t), id_pos_cmp, l->v);
    return 0;
}

bool ec2_id_list_has(struct ec2_id_list *l, const char *id)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) { /* the first position whose id is not before id */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(l->v[l->order[mid]], id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool has = false;
    for (; lo < l->n && strcmp(l->v[l->order[lo]], id) == 0; lo++)
        has = l->found[l->order[lo]] = true;
    return has;
}

const char *ec2_id_list_missing(const struct ec2_id_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (!l->found[i])
            return l->v[i];
    return NULL;
}

void ec2_id_list_free(struct ec2_id_list *l)
{
    free(l->v);
    free(l->found);
    free(l->order);
    l->v = NULL;
    l->found = NULL;
    l->order = NULL;
    l->n = 0;
}

int ec2_param_int(const struct ec2_req *r, const char *name, long long def,
                  long long min, long long max, long long *out,
                  struct koala_error **err)
{
    const char *s = ec2_param(r, name);
    if (s == NULL) {
        *out = def;
        return 0;
    }
    int64_t v;
    if (str_to_i64(s, &v) < 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid value '%s' for %s: not an integer", s, name);
    if (v < min || v > max)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Value (%lld) for parameter %s is invalid. It must "
                         "be between %lld and %lld.",
                         (long long)v, name, min, max);
    *out = v;
    return 0;
}

int ec2_param_bool(const struct ec2_req *r, const char *name, bool def,
                   bool *out, struct koala_error **err)
{
    const char *s = ec2_param(r, name);
    if (s == NULL) {
        *out = def;
        return 0;
    }
    if (strcasecmp(s, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(s, "false") == 0) {
        *out = false;
        return 0;
    }
    return error_set(err, EINVAL, "InvalidParameterValue",
                     "Invalid value '%s' for %s: expected true or false", s,
                     name);
}

const char *ec2_required(const struct ec2_req *r, const char *name,
                         struct koala_error **err)
{
    const char *s = ec2_param(r, name);
    if (s == NULL || *s == '\0')
        error_set(err, EINVAL, "MissingParameter",
                  "The request must contain the parameter %s", name);
    return s && *s ? s : NULL;
}

/* ---- filters ---- */

void ec2_filters_free(struct ec2_filters *fs)
{
    for (size_t i = 0; i < fs->n; i++)
        free(fs->f[i].values);
    free(fs->f);
    fs->f = NULL;
    fs->n = 0;
}

static bool filter_known(const char *name, const char *const *known)
{
    if (str_has_prefix(name, "tag:"))
        return true;
    for (const char *const *k = known; *k; k++)
        if (strcmp(*k, name) == 0)
            return true;
    return false;
}

int ec2_parse_filters(const struct ec2_req *r, const char *const *known,
                      struct ec2_filters *out, struct koala_error **err)
{
    memset(out, 0, sizeof(*out));
    for (int i = 1;; i++) {
        const char *name = ec2_paramf(r, "Filter.%d.Name", i);
        if (name == NULL)
            break;
        if (!filter_known(name, known)) {
            ec2_filters_free(out);
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "The filter '%s' is invalid", name);
        }
        struct ec2_filter *nf = realloc(out->f, (out->n + 1) * sizeof(*nf));
        if (nf == NULL) {
            ec2_filters_free(out);
            return error_set(err, ENOMEM, NULL, "out of memory");
        }
        out->f = nf;
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "Filter.%d.Value", i);
        struct ec2_filter *f = &out->f[out->n++];
        f->name = name;
        f->n_values = ec2_param_list(r, prefix, &f->values);
        if (f->n_values == 0) {
            ec2_filters_free(out);
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "The filter '%s' has no values", name);
        }
    }
    return 0;
}

bool ec2_filter_match(const struct ec2_filter *f, const char *value)
{
    if (value == NULL)
        return false;
    /* EC2 filter values take * and ? wildcards (and \\ escapes them):
     * exactly fnmatch's rules without special [ ]. */
    for (size_t i = 0; i < f->n_values; i++) {
        const char *pat = f->values[i];
        if (strpbrk(pat, "*?\\") == NULL) {
            if (strcmp(pat, value) == 0)
                return true;
        } else if (strchr(pat, '[') == NULL && fnmatch(pat, value, 0) == 0) {
            return true;
        } else if (strcmp(pat, value) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- Describe* paging tokens ---- */

int ec2_token_parse(const char *token, const char *prefix, const char *code,
                    int64_t *after_time, char after_id[32],
                    struct koala_error **err)
{
    *after_time = -1;
    after_id[0] = '\0';
    if (token == NULL)
        return 0;
    /* "time/id", as ec2_token_write made it; any other bytes are the
     * client's, and refused. */
    _cleanup_free_ char *t = str_base64_decode_text(token, 64);
    char *slash = t ? strchr(t, '/') : NULL;
    int64_t tt;
    if (slash == NULL || (*slash = '\0', str_to_i64(t, &tt)) < 0 || tt < 0 ||
        !id_resource_valid(slash + 1, prefix)) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", token);
        return error_set(err, EINVAL, code, "The token '%s' is invalid",
                         shown);
    }
    *after_time = tt;
    snprintf(after_id, 32, "%s", slash + 1);
    return 0;
}

void ec2_token_write(struct xml_writer *w, int64_t time, const char *id)
{
    char t[64];
    snprintf(t, sizeof(t), "%lld/%s", (long long)time, id);
    _cleanup_free_ char *b = str_base64_encode((unsigned char *)t, strlen(t));
    xml_text_element(w, "nextToken", b);
}

bool ec2_token_after(int64_t time, const char *id, int64_t after_time,
               const char *after_id)
{
    return after_time < 0 || time > after_time ||
           (time == after_time && strcmp(id, after_id) > 0);
}
