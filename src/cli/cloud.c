/* cloud.c: `koala init`, `koala account`, `koala register` and `koala
 * services`: the operator's side of the CLC.  They run on the CLC's host
 * and work on its data directory directly (SQLite WAL lets them while
 * koala-clc runs):
 *
 *   DIR/ca/ca.pem, ca.key       the cloud's certificate authority
 *   DIR/clc/clc.db              the CLC's database
 *   DIR/certs/KIND-NAME.pem|key the components' certificates
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca.h"
#include "clc.h"
#include "cli.h"

static int mkdirs(const char *path, struct koala_error **err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return error_set_errno(err, "mkdir %s", tmp);
            *p = '/';
        }
    if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", tmp);
    return 0;
}

static struct db_pool *open_clc(const char *dir, struct db **db,
                                struct koala_error **err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/clc", dir);
    struct db_pool *pool = clc_open_db(path, 1, err);
    *db = pool ? db_pool_get(pool, err) : NULL;
    if (pool && *db == NULL) {
        db_pool_free(pool);
        return NULL;
    }
    return pool;
}

static void close_clc(struct db_pool *pool, struct db *db)
{
    if (db)
        db_pool_put(pool, db);
    db_pool_free(pool);
}

/* The host part of an endpoint URL ("https://10.0.0.5:8775/" ->
 * "10.0.0.5"), as a subjectAltName ("IP:10.0.0.5" or "DNS:host"). */
static void endpoint_san(const char *url, char *out, size_t size)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, ":/");
    bool ip = n > 0;
    for (size_t i = 0; i < n; i++)
        ip &= (h[i] >= '0' && h[i] <= '9') || h[i] == '.';
    snprintf(out, size, "%s:%.*s", ip ? "IP" : "DNS", (int)n, h);
}

/* Issues DIR/certs/NAME.pem|key unless they exist: for TLS (server and
 * client, named for endpoint), or, endpoint NULL, a signing certificate
 * with no extended key usage (a CC's instance identity documents). */
static int component_cert_san(const char *dir, const char *file,
                              const char *cn, const char *endpoint,
                              const char *extra_san, struct koala_error **err)
{
    char certs[4096], cert[4200], key[4200], san[300];
    snprintf(certs, sizeof(certs), "%s/certs", dir);
    snprintf(cert, sizeof(cert), "%s/%s.pem", certs, file);
    snprintf(key, sizeof(key), "%s/%s.key", certs, file);
    if (access(cert, F_OK) == 0 && access(key, F_OK) == 0)
        return 0;
    if (mkdirs(certs, err) < 0)
        return -1;
    const char *sans[] = {san, "IP:127.0.0.1", extra_san, NULL};
    struct ca_request rq = {.cn = cn};
    if (endpoint) {
        endpoint_san(endpoint, san, sizeof(san));
        rq = (struct ca_request){
            .cn = cn, .sans = sans, .server = true, .client = true};
    }
    char ca[4096];
    snprintf(ca, sizeof(ca), "%s/ca", dir);
    return ca_issue(ca, &rq, cert, key, err);
}

static int component_cert(const char *dir, const char *file, const char *cn,
                          const char *endpoint, struct koala_error **err)
{
    return component_cert_san(dir, file, cn, endpoint, NULL, err);
}

/* The cloud-internal account the SCs store snapshots in Walrus as
 * (docs/storage.md): made once; its key written to
 * DIR/certs/koala-storage.credentials (0600) for the SCs' configuration
 * (sc.walrus_credentials).  Users never see its bucket. */
static int storage_account(const char *dir, struct db *db, char *path,
                           size_t size, struct koala_error **err)
{
    snprintf(path, size, "%s/certs/koala-storage.credentials", dir);
    struct account a;
    char key[21], secret[41];
    int rc = clc_account_by_name(db, "koala-storage", &a, err);
    if (rc == 1)
        rc = clc_account_create(db, "koala-storage", key, secret, err);
    else if (rc == 0) {
        rc = clc_account_any_key(db, a.id, key, secret, err);
        if (rc == 1)
            rc = error_set(err, ENOENT, NULL,
                           "the account koala-storage has no access key");
    }
    if (rc < 0)
        return -1;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = NULL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0)
        f = fdopen(fd, "w");
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        explicit_bzero(secret, sizeof(secret));
        return error_set_errno(err, "%s", tmp);
    }
    fprintf(f, "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", key,
            secret);
    explicit_bzero(secret, sizeof(secret));
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    fclose(f);
    if (!ok || rename(tmp, path) < 0)
        return error_set_errno(err, "writing %s", path);
    return 0;
}

int cli_init(const char *dir, const char *admin, struct koala_error **err)
{
    char ca[4096], clc[4096];
    snprintf(ca, sizeof(ca), "%s/ca", dir);
    snprintf(clc, sizeof(clc), "%s/clc", dir);
    if (mkdirs(ca, err) < 0 || mkdirs(clc, err) < 0)
        return -1;
    char pem[4200];
    snprintf(pem, sizeof(pem), "%s/ca.pem", ca);
    if (access(pem, F_OK) != 0 &&
        ca_create(ca, "Koala cloud CA", 3650, err) < 0)
        return -1;
    if (component_cert(dir, "clc", "koala-clc", "https://127.0.0.1:8777/",
                       err) < 0)
        return -1;
    struct db *db = NULL;
    struct db_pool *pool = open_clc(dir, &db, err);
    if (pool == NULL)
        return -1;
    struct account a;
    int rc = clc_account_by_name(db, admin, &a, err);
    if (rc == 1) {
        char key[21], secret[41];
        rc = clc_account_create(db, admin, key, secret, err);
        if (rc == 0)
            printf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", key,
                   secret);
    } else if (rc == 0) {
        fprintf(stderr, "koala: %s is already initialised\n", dir);
    }
    close_clc(pool, db);
    return rc < 0 ? -1 : 0;
}

int cli_account_create(const char *dir, const char *name,
                       struct koala_error **err)
{
    struct db *db = NULL;
    struct db_pool *pool = open_clc(dir, &db, err);
    if (pool == NULL)
        return -1;
    char key[21], secret[41];
    int rc = clc_account_create(db, name, key, secret, err);
    if (rc == 0)
        printf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", key, secret);
    close_clc(pool, db);
    return rc;
}

/* clc_services_each callback: the name of an SC of zone q->zone other
 * than q->name. */
struct sc_zone_query {
    const char *zone, *name;
    char other[64];
};

static int sc_of_zone(void *ctx, const struct service *s)
{
    struct sc_zone_query *q = ctx;
    if (strcmp(s->partition, q->zone) == 0 && strcmp(s->name, q->name) != 0)
        snprintf(q->other, sizeof(q->other), "%s", s->name);
    return 0;
}

/* One SC per zone: another name for the same zone is refused (before
 * any certificate is issued for it). */
static int one_sc_per_zone(const char *dir, const char *name,
                           const char *zone, struct koala_error **err)
{
    struct db *db = NULL;
    struct db_pool *pool = open_clc(dir, &db, err);
    if (pool == NULL)
        return -1;
    struct sc_zone_query q = {zone, name, ""};
    int rc = clc_services_each(db, "sc", sc_of_zone, &q, err);
    close_clc(pool, db);
    if (rc == 0 && q.other[0])
        rc = error_set(err, EEXIST, NULL,
                       "zone %s has a storage controller already: %s", zone,
                       q.other);
    return rc;
}

static int register_service(const char *dir, const char *kind, const char *name,
                            const char *endpoint, const char *cluster,
                            bool verbose, struct koala_error **err)
{
    static const char *const kinds[] = {"cluster", "node", "walrus", "sc",
                                        NULL};
    bool ok = false;
    for (const char *const *k = kinds; *k; k++)
        ok |= strcmp(*k, kind) == 0;
    if (!ok)
        return error_set(err, EINVAL, NULL,
                         "unknown component kind '%s' (cluster, node, "
                         "walrus, sc)",
                         kind);
    if (strcmp(kind, "node") == 0 && cluster == NULL)
        return error_set(err, EINVAL, NULL, "a node needs --cluster");
    bool sc_kind = strcmp(kind, "sc") == 0;
    if (sc_kind && cluster == NULL)
        return error_set(err, EINVAL, NULL,
                         "a storage controller needs --cluster (its zone)");
    char cn[160], file[160], dns[200];
    snprintf(cn, sizeof(cn), "koala-%s-%s", kind, name);
    snprintf(file, sizeof(file), "%s-%s", kind, name);
    if (sc_kind && one_sc_per_zone(dir, name, cluster, err) < 0)
        return -1;
    /* An SC's name is also a DNS name of its certificate: QEMU checks the
     * NBD server's tls-hostname against the subjectAltNames only (gnutls
     * ignores the CN once there are any). */
    snprintf(dns, sizeof(dns), "DNS:%s", cn);
    if (component_cert_san(dir, file, cn, endpoint, sc_kind ? dns : NULL,
                           err) < 0)
        return -1;
    /* A cluster's CC signs its instances' identity documents. */
    char id_file[160], id_cn[200];
    snprintf(id_file, sizeof(id_file), "identity-%s", name);
    snprintf(id_cn, sizeof(id_cn), "koala-instance-identity-%s", name);
    bool cluster_kind = strcmp(kind, "cluster") == 0;
    if (cluster_kind && component_cert(dir, id_file, id_cn, NULL, err) < 0)
        return -1;
    struct db *db = NULL;
    struct db_pool *pool = open_clc(dir, &db, err);
    if (pool == NULL)
        return -1;
    struct service s = {0};
    snprintf(s.kind, sizeof(s.kind), "%s", kind);
    snprintf(s.name, sizeof(s.name), "%s", name);
    snprintf(s.partition, sizeof(s.partition), "%s", cluster ? cluster : "");
    snprintf(s.endpoint, sizeof(s.endpoint), "%s", endpoint);
    char creds[4200] = "";
    int rc = 0;
    if (sc_kind)
        rc = storage_account(dir, db, creds, sizeof(creds), err);
    if (rc == 0)
        rc = clc_service_register(db, &s, err);
    close_clc(pool, db);
    if (rc == 0 && verbose)
        printf("registered %s %s at %s\n  certificate: %s/certs/%s.pem\n"
               "  key:         %s/certs/%s.key\n  cloud CA:    %s/ca/ca.pem\n",
               kind, name, endpoint, dir, file, dir, file, dir);
    if (rc == 0 && verbose && sc_kind)
        printf("  walrus:      %s (walrus_credentials of the SC: the "
               "cloud-internal account koala-storage)\n",
               creds);
    if (rc == 0 && verbose && cluster_kind)
        printf("  identity:    %s/certs/%s.pem (identity_cert, identity_key "
               "of the CC: signs instance identity documents)\n",
               dir, id_file);
    return rc;
}

int cli_register(const char *dir, const char *kind, const char *name,
                 const char *endpoint, const char *cluster,
                 struct koala_error **err)
{
    return register_service(dir, kind, name, endpoint, cluster, true, err);
}

int cli_register_quiet(const char *dir, const char *kind, const char *name,
                       const char *endpoint, const char *cluster,
                       struct koala_error **err)
{
    return register_service(dir, kind, name, endpoint, cluster, false, err);
}

static int print_service(void *ctx, const struct service *s)
{
    char seen[32] = "never";
    if (s->last_seen_ms) {
        time_t t = (time_t)(s->last_seen_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(seen, sizeof(seen), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    printf("%-8s %-16s %-12s %-9s %-22s %s%s%s\n", s->kind, s->name,
           *s->partition ? s->partition : "-", s->state, seen, s->endpoint,
           *s->message ? "  " : "", s->message);
    return 0;
}

int cli_services(const char *dir, struct koala_error **err)
{
    struct db *db = NULL;
    struct db_pool *pool = open_clc(dir, &db, err);
    if (pool == NULL)
        return -1;
    printf("%-8s %-16s %-12s %-9s %-22s %s\n", "KIND", "NAME", "CLUSTER",
           "STATE", "LAST SEEN", "ENDPOINT");
    printf("%-8s %-16s %-12s %-9s %-22s %s\n", "clc", "clc", "-", "ENABLED",
           "-", "(this host)");
    int rc = clc_services_each(db, NULL, print_service, NULL, err);
    close_clc(pool, db);
    return rc;
}

static void ip_text(int64_t v, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", (unsigned)(v >> 24) & 255,
             (unsigned)(v >> 16) & 255, (unsigned)(v >> 8) & 255,
             (unsigned)v & 255);
}

int cli_addresses(const char *dir, struct koala_error **err)
{
    struct db *db = NULL;
    struct db_pool *pool = open_clc(dir, &db, err);
    if (pool == NULL)
        return -1;
    /* Per cluster: its pool as its CC last reported it, how many of its
     * addresses are handed out (elastic or auto-assigned) and how many
     * are associated with an instance. */
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT p.cluster, p.first, p.last,"
        " (SELECT count(*) FROM addresses a WHERE a.ip BETWEEN p.first AND"
        "  p.last),"
        " (SELECT count(*) FROM addresses a WHERE a.ip BETWEEN p.first AND"
        "  p.last AND a.instance_id IS NOT NULL)"
        " FROM public_pools p ORDER BY p.cluster, p.first",
        err);
    if (st == NULL) {
        close_clc(pool, db);
        return -1;
    }
    printf("%-16s %-33s %6s %9s %10s\n", "CLUSTER", "PUBLIC RANGE", "SIZE",
           "ALLOCATED", "ASSOCIATED");
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char a[16], b[16], range[40];
        int64_t first = sqlite3_column_int64(st, 1);
        int64_t last = sqlite3_column_int64(st, 2);
        ip_text(first, a);
        ip_text(last, b);
        snprintf(range, sizeof(range), "%s-%s", a, b);
        printf("%-16s %-33s %6lld %9lld %10lld\n",
               (const char *)sqlite3_column_text(st, 0), range,
               (long long)(last - first + 1),
               (long long)sqlite3_column_int64(st, 3),
               (long long)sqlite3_column_int64(st, 4));
        rows++;
    }
    db_stmt_done(st);
    if (rows == 0)
        printf("(no cluster reports a public pool: cc.public_ips)\n");
    close_clc(pool, db);
    return 0;
}
