/* fuzz_req.c: splits a fuzz input into an HTTP request (see fuzz_req.h). */
#include "fuzz_req.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Cuts the next line off *p (ending at "\n", "\r\n", or the end). */
static char *next_line(char **p, char *end)
{
    char *s = *p;
    if (s >= end)
        return NULL;
    char *nl = memchr(s, '\n', (size_t)(end - s));
    char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r')
        e--;
    *e = '\0';
    return s;
}

const char *fuzz_req_header(void *ctx, const char *name)
{
    struct fuzz_req *r = ctx;
    const char *first = NULL;
    size_t n = 0, total = 0;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) {
            if (n++ == 0)
                first = r->headers[i].value;
            total += strlen(r->headers[i].value) + 1;
        }
    if (n <= 1)
        return first;
    char **nj = realloc(r->joined, (r->n_joined + 1) * sizeof(*nj));
    if (nj == NULL)
        return first;
    r->joined = nj;
    char *out = malloc(total), *o = out;
    if (out == NULL)
        return first;
    r->joined[r->n_joined++] = out;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) {
            size_t l = strlen(r->headers[i].value);
            if (o != out)
                *o++ = ',';
            memcpy(o, r->headers[i].value, l);
            o += l;
        }
    *o = '\0';
    return out;
}

static void header_foreach(void *ctx,
                           int (*fn)(void *fn_ctx, const char *name,
                                     const char *value),
                           void *fn_ctx)
{
    struct fuzz_req *r = ctx;
    for (size_t i = 0; i < r->n_headers; i++)
        if (fn(fn_ctx, r->headers[i].name, r->headers[i].value) != 0)
            break;
}

int fuzz_req_parse(struct fuzz_req *r, const uint8_t *data, size_t size)
{
    memset(r, 0, sizeof(*r));
    r->text = malloc(size + 1);
    if (r->text == NULL)
        return -1;
    memcpy(r->text, data, size);
    r->text[size] = '\0';
    char *p = r->text, *end = r->text + size;
    char *empty = r->text + size; /* "" */
    r->method = next_line(&p, end);
    r->path = next_line(&p, end);
    r->query = next_line(&p, end);
    if (r->method == NULL)
        r->method = empty;
    if (r->path == NULL)
        r->path = empty;
    if (r->query == NULL)
        r->query = empty;
    char *line;
    while ((line = next_line(&p, end)) != NULL && *line != '\0') {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue; /* as a server would refuse it: not a header */
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        struct fuzz_header *nh =
            realloc(r->headers, (r->n_headers + 1) * sizeof(*nh));
        if (nh == NULL)
            return -1;
        r->headers = nh;
        r->headers[r->n_headers].name = line;
        r->headers[r->n_headers].value = v;
        r->n_headers++;
    }
    r->body = p;
    r->body_len = (size_t)(end - p);
    r->sr = (struct sigv4_request){
        .method = r->method,
        .raw_path = r->path,
        .raw_query = r->query,
        .header = fuzz_req_header,
        .header_ctx = r,
        .header_foreach = header_foreach,
    };
    return 0;
}

void fuzz_req_free(struct fuzz_req *r)
{
    free(r->headers);
    for (size_t i = 0; i < r->n_joined; i++)
        free(r->joined[i]);
    free(r->joined);
    free(r->text);
    memset(r, 0, sizeof(*r));
}
