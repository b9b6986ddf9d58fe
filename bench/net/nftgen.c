/* nftgen.c: the node's two nftables scripts as koala-nc itself compiles
 * them (src/nc/sgfilter.c, antispoof.c), for bench/net: the security-group
 * table of a policy document for a list of local instances, and the
 * anti-spoofing table of their taps.  The bench loads them into network
 * namespaces of its own, so the data path it measures filters with the
 * same rules a node would hold.
 *
 *   nftgen sg POLICY.json ROUTER INSTANCES   > koala_nc_sg.nft
 *   nftgen antispoof INSTANCES               > koala_nc.nft
 *
 * INSTANCES: one instance a line, "id ip mac tap".  The time the compiler
 * took is written to stderr as "compile_us N" (sg only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "antispoof.h"
#include "buf.h"
#include "error.h"
#include "netpolicy.h"
#include "sgfilter.h"

struct row {
    char id[32], ip[16], mac[18], tap[16];
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *s = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *t = realloc(s, cap);
            if (t == NULL) {
                free(s);
                fclose(f);
                return NULL;
            }
            s = t;
        }
        size_t r = fread(s + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    s[n] = '\0';
    *len = n;
    return s;
}

static struct row *read_rows(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    struct row *v = NULL;
    size_t cap = 0;
    char line[256];
    *n = 0;
    while (fgets(line, sizeof(line), f)) {
        struct row r = {0};
        if (sscanf(line, "%31s %15s %17s %15s", r.id, r.ip, r.mac, r.tap) != 4)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            struct row *t = realloc(v, cap * sizeof(*v));
            if (t == NULL) {
                free(v);
                fclose(f);
                return NULL;
            }
            v = t;
        }
        v[(*n)++] = r;
    }
    fclose(f);
    return v;
}

static int usage(void)
{
    fprintf(stderr, "usage: nftgen sg POLICY.json ROUTER INSTANCES\n"
                    "       nftgen antispoof INSTANCES\n");
    return 2;
}

static int gen_sg(const char *policy, const char *router, const char *list)
{
    size_t len = 0, n = 0;
    char *text = slurp(policy, &len);
    struct row *rows = read_rows(list, &n);
    struct nc_sg_inst *insts = calloc(n ? n : 1, sizeof(*insts));
    struct koala_error *err = NULL;
    struct netpolicy *p = text ? netpolicy_parse(text, len, &err) : NULL;
    struct buf out = {0};
    int rc = 1;
    if (p == NULL || rows == NULL || insts == NULL) {
        fprintf(stderr, "nftgen: %s\n",
                err ? error_message(err) : "cannot read the input");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        insts[i] = (struct nc_sg_inst){rows[i].id, rows[i].ip};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int count = nc_sgfilter_script(p, router, insts, n, &out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (count < 0)
        goto out;
    fwrite(out.data, 1, out.len, stdout);
    fprintf(stderr, "compile_us %lld\ninstances %d\n",
            (long long)(t1.tv_sec - t0.tv_sec) * 1000000 +
                (t1.tv_nsec - t0.tv_nsec) / 1000,
            count);
    rc = 0;
out:
    buf_free(&out);
    netpolicy_free(p);
    error_free(err);
    free(insts);
    free(rows);
    free(text);
    return rc;
}

static int gen_antispoof(const char *list)
{
    size_t n = 0;
    struct row *rows = read_rows(list, &n);
    struct nc_antispoof_tap *taps = calloc(n ? n : 1, sizeof(*taps));
    struct buf out = {0};
    int rc = 1;
    if (rows == NULL || taps == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        taps[i] = (struct nc_antispoof_tap){rows[i].id, rows[i].tap,
                                            rows[i].mac, rows[i].ip};
    if (nc_antispoof_script(taps, n, &out) < 0)
        goto out;
    fwrite(out.data, 1, out.len, stdout);
    rc = 0;
out:
    buf_free(&out);
    free(taps);
    free(rows);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "sg") == 0)
        return gen_sg(argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "antispoof") == 0)
        return gen_antispoof(argv[2]);
    return usage();
}
