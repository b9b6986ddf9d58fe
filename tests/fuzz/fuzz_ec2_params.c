/* fuzz_ec2_params.c: libFuzzer target for the EC2 Query parameters
 * (src/clc/params.c): the form-encoded body or query string
 * (ec2_parse_params), then the typed lookups the actions make on it:
 * numbered lists (InstanceId.N), id lists, Filter.N.Name/Value.M with
 * EC2's wildcard matching, integers and booleans with their bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const known_filters[] = {
    "instance-id", "instance-state-name", "instance-type", "image-id",
    "key-name",    "resource-id",         "resource-type", "key",
    "value",       "availability-zone",   "state",         NULL,
};

static void lookups(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    (void)ec2_param(r, "Action");
    (void)ec2_param(r, "Version");
    (void)ec2_paramf(r, "Filter.%d.Name", 1);
    (void)ec2_required(r, "ImageId", &err);
    error_free(err);
    err = NULL;

    const char **v = NULL;
    size_t n = ec2_param_list(r, "InstanceId", &v);
    for (size_t i = 0; i < n; i++)
        if (v[i] == NULL)
            abort();
    free(v);

    struct ec2_id_list ids = {0};
    if (ec2_id_list_get(r, "ResourceId", &ids, &err) == 0) {
        (void)ec2_id_list_has(&ids, "i-12345678");
        if (ids.n > 0)
            (void)ec2_id_list_has(&ids, ids.v[0]);
        (void)ec2_id_list_missing(&ids);
        ec2_id_list_free(&ids);
    }
    error_free(err);
    err = NULL;

    long long ll;
    ec2_param_int(r, "MaxResults", 1000, 5, 1000, &ll, &err);
    error_free(err);
    err = NULL;
    ec2_param_int(r, "MinCount", 1, 1, 100, &ll, &err);
    error_free(err);
    err = NULL;
    bool b;
    ec2_param_bool(r, "DryRun", false, &b, &err);
    error_free(err);
    err = NULL;

    struct ec2_filters fs;
    if (ec2_parse_filters(r, known_filters, &fs, &err) == 0) {
        /* Each filter against each parameter value (bounded). */
        for (size_t i = 0; i < fs.n; i++)
            for (size_t j = 0; j < r->n_params && j < 64; j++)
                (void)ec2_filter_match(&fs.f[i], r->params[j].value);
        ec2_filters_free(&fs);
    }
    error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec2_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return 0;
    /* The body, as received: not NUL-terminated. */
    char *text = malloc(size ? size : 1);
    if (text == NULL) {
        free(r);
        return 0;
    }
    memcpy(text, data, size);
    struct koala_error *err = NULL;
    if (ec2_parse_params(r, text, size, &err) == 0)
        lookups(r);
    error_free(err);
    /* As api.c's on_done frees a request. */
    for (size_t i = 0; i < r->n_params; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    free(text);
    free(r);
    return 0;
}
