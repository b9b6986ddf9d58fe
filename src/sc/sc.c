/* sc.c: starting and stopping koala-sc: its options, data directory,
 * database, volume store, the QSD supervisor, Walrus, the SOAP server,
 * and what a restart takes up again (sc_recover, ops.c).
 *
 * Configuration, section [sc] (defaults in brackets):
 *   listen              ADDR:PORT of the SOAP endpoint [127.0.0.1:8776]
 *   data_dir            sc.db, volumes/, run/, snapshot scratch files
 *                       [/var/lib/koala/sc]
 *   name                the SC's registered name (certificate CN
 *                       koala-sc-NAME, the exports' tlsHostname) [sc1]
 *   zone                its availability zone [zone-a]
 *   tls_cert, tls_key   the SC's certificate (server and client) [required]
 *   ca                  the cloud CA [required]
 *   capacity_gb         the sum of volume sizes allowed [100]
 *   export_transport    unix | tcp: how NBD exports listen [unix]
 *   export_dir          unix: where the sockets are [data_dir/exports]
 *   export_address      tcp: the address bound and handed to the NCs
 *                       [listen's address]
 *   qemu_storage_daemon, qemu_img   the programs [found in PATH]
 *   walrus_endpoint     Walrus' S3 endpoint for snapshots [none: no
 *                       snapshots]
 *   walrus_credentials  a file with AWS_ACCESS_KEY_ID= and
 *                       AWS_SECRET_ACCESS_KEY= lines (the cloud-internal
 *                       account koala-storage; `koala register sc` writes
 *                       it) [required with walrus_endpoint]
 *   region              the SigV4 region of Walrus [koala-1]
 *   snapshot_workers    snapshots and restores at once [2]
 *   log_level           "info", "info,sc=debug" ... [info]
 */
#define LOG_MODULE "sc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "s3.h"
#include "sc.h"

int64_t sc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int opt_str(const struct config *cfg, const char *key, const char *def,
                   char **out, struct koala_error **err)
{
    const char *v = config_get(cfg, "sc", key, def);
    if (v == NULL || *v == '\0') {
        *out = NULL;
        return 0;
    }
    *out = strdup(v);
    return *out ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789-_.") == n;
}

int sc_options_load(const struct config *cfg, struct sc_options *opt,
                    struct koala_error **err)
{
    memset(opt, 0, sizeof(*opt));
    const char *listen = config_get(cfg, "sc", "listen", "127.0.0.1:8776");
    if (str_split_hostport(listen, &opt->listen_addr, &opt->port) < 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sc.listen: '%s' is not ADDRESS:PORT", listen);
    if (opt_str(cfg, "data_dir", "/var/lib/koala/sc", &opt->data_dir, err) ||
        opt_str(cfg, "name", "sc1", &opt->name, err) ||
        opt_str(cfg, "zone", "zone-a", &opt->zone, err) ||
        opt_str(cfg, "tls_cert", NULL, &opt->tls_cert, err) ||
        opt_str(cfg, "tls_key", NULL, &opt->tls_key, err) ||
        opt_str(cfg, "ca", NULL, &opt->ca, err) ||
        opt_str(cfg, "export_dir", NULL, &opt->export_dir, err) ||
        opt_str(cfg, "export_address", opt->listen_addr, &opt->export_address,
                err) ||
        opt_str(cfg, "qemu_storage_daemon", "qemu-storage-daemon", &opt->qsd,
                err) ||
        opt_str(cfg, "qemu_img", "qemu-img", &opt->qemu_img, err) ||
        opt_str(cfg, "walrus_endpoint", NULL, &opt->walrus_endpoint, err) ||
        opt_str(cfg, "walrus_credentials", NULL, &opt->walrus_credentials,
                err) ||
        opt_str(cfg, "region", "koala-1", &opt->region, err))
        return -1;
    if (opt->export_dir == NULL &&
        asprintf(&opt->export_dir, "%s/exports", opt->data_dir) < 0) {
        opt->export_dir = NULL;
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    int64_t cap, workers;
    if (config_get_int(cfg, "sc", "capacity_gb", 100, &cap, err) < 0 ||
        config_get_int(cfg, "sc", "snapshot_workers", 2, &workers, err) < 0)
        return -1;
    if (cap < 1 || cap > 1024 * 1024)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sc.capacity_gb: %lld is not 1 .. 1048576",
                         (long long)cap);
    opt->capacity_bytes = (uint64_t)cap * SC_GIB;
    opt->snapshot_workers = workers < 1 ? 1 : workers > 16 ? 16 : workers;
    const char *t = config_get(cfg, "sc", "export_transport", "unix");
    if (strcmp(t, "unix") == 0)
        opt->transport = SC_EXPORT_UNIX;
    else if (strcmp(t, "tcp") == 0)
        opt->transport = SC_EXPORT_TCP;
    else
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sc.export_transport: '%s' is not unix or tcp", t);
    if (!name_ok(opt->name) || !name_ok(opt->zone))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sc.name and sc.zone: letters, digits, '-_.'");
    if (opt->tls_cert == NULL || opt->tls_key == NULL || opt->ca == NULL)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sc.tls_cert, sc.tls_key and sc.ca are required");
    if (opt->walrus_endpoint && opt->walrus_credentials == NULL)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sc.walrus_endpoint needs sc.walrus_credentials");
    return 0;
}

void sc_options_clear(struct sc_options *opt)
{
    char **strs[] = {&opt->listen_addr,     &opt->data_dir,
                     &opt->name,            &opt->zone,
                     &opt->tls_cert,        &opt->tls_key,
                     &opt->ca,              &opt->export_dir,
                     &opt->export_address,  &opt->qsd,
                     &opt->qemu_img,        &opt->walrus_endpoint,
                     &opt->walrus_credentials, &opt->region};
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The QSDs' tls-creds-x509 directory: QEMU wants fixed file names. */
static int make_tls_dir(struct sc *sc, struct koala_error **err)
{
    snprintf(sc->tls_dir, sizeof(sc->tls_dir), "%s/tls", sc->opt.data_dir);
    if (mkdir(sc->tls_dir, 0700) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", sc->tls_dir);
    const struct {
        const char *name, *target;
    } links[] = {{"ca-cert.pem", sc->opt.ca},
                 {"server-cert.pem", sc->opt.tls_cert},
                 {"server-key.pem", sc->opt.tls_key}};
    for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
        char path[4300], target[4096];
        snprintf(path, sizeof(path), "%s/%s", sc->tls_dir, links[i].name);
        if (realpath(links[i].target, target) == NULL)
            return error_set_errno(err, "%s", links[i].target);
        unlink(path);
        if (symlink(target, path) < 0)
            return error_set_errno(err, "symlink %s", path);
    }
    return 0;
}

/* The snapshot bucket made at start, so that no user can take its name
 * first (bucket names are the whole Walrus' own); a Walrus not up yet is
 * fine, as every snapshot makes sure of the bucket again. */
static void make_bucket(void *ctx)
{
    struct sc *sc = ctx;
    struct koala_error *err = NULL;
    if (sc_s3_make_bucket(sc->s3, SC_BUCKET, &err) < 0)
        log_warn("the snapshot bucket %s: %s", SC_BUCKET, error_message(err));
    error_free(err);
}

struct sc *sc_new(const struct sc_options *opt, struct koala_error **err)
{
    struct sc *sc = calloc(1, sizeof(*sc));
    if (sc == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory"), NULL;
    pthread_mutex_init(&sc->lock, NULL);
    pthread_mutex_init(&sc->gc_lock, NULL);
    /* a private copy of the options */
    struct sc_options *o = &sc->opt;
    *o = *opt;
    char **strs[] = {&o->listen_addr,     &o->data_dir,  &o->name,
                     &o->zone,            &o->tls_cert,  &o->tls_key,
                     &o->ca,              &o->export_dir, &o->export_address,
                     &o->qsd,             &o->qemu_img,  &o->walrus_endpoint,
                     &o->walrus_credentials, &o->region};
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
        *strs[i] = dup_or_null(*strs[i]);
    char path[4200];
    if (mkdir(o->data_dir, 0750) < 0 && errno != EEXIST) {
        error_set_errno(err, "mkdir %s", o->data_dir);
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/sc.db", o->data_dir);
    sc->db = db_pool_new(path, sc_migrations, sc_n_migrations, 32, err);
    if (sc->db == NULL)
        goto fail;
    snprintf(path, sizeof(path), "%s/volumes", o->data_dir);
    sc->store = sc_store_file_new(path, o->qemu_img, err);
    if (sc->store == NULL || make_tls_dir(sc, err) < 0)
        goto fail;
    const char *subdirs[] = {"scratch", "manifests"};
    for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
        snprintf(path, sizeof(path), "%s/%s", o->data_dir, subdirs[i]);
        if (mkdir(path, 0750) < 0 && errno != EEXIST) {
            error_set_errno(err, "mkdir %s", path);
            goto fail;
        }
    }
    if (o->walrus_endpoint) {
        sc->s3 = sc_s3_new(o->walrus_endpoint, o->walrus_credentials,
                           o->region, err);
        if (sc->s3 == NULL)
            goto fail;
    }
    sc->jobs = workpool_new(o->snapshot_workers, "sc-jobs", err);
    if (sc->jobs == NULL || sc_qsd_init(sc, err) < 0)
        goto fail;
    if (sc->s3)
        workpool_submit(sc->jobs, make_bucket, sc);
    /* The exports come back before the server answers: a CLC that asks
     * sees them as they were. */
    if (sc_recover(sc, err) < 0)
        goto fail;
    struct http_server_config hc = {
        .address = o->listen_addr,
        .port = o->port,
        .workers = SC_HTTP_WORKERS,
        .tls_cert_file = o->tls_cert,
        .tls_key_file = o->tls_key,
        .tls_client_ca_file = o->ca,
    };
    sc->http = http_server_new(&hc, &sc_http_handler, sc, err);
    if (sc->http == NULL)
        goto fail;
    return sc;
fail:
    sc_free(sc);
    return NULL;
}

void sc_free(struct sc *sc)
{
    if (sc == NULL)
        return;
    http_server_free(sc->http);
    /* Jobs under way end with the pool (a snapshot being uploaded is
     * finished; see docs/storage.md for a kill instead). */
    pthread_mutex_lock(&sc->lock);
    sc->jobs_stop = true;
    pthread_mutex_unlock(&sc->lock);
    workpool_free(sc->jobs);
    sc_qsd_shutdown(sc);
    sc_s3_free(sc->s3);
    sc_store_free(sc->store);
    db_pool_free(sc->db);
    sc_options_clear(&sc->opt);
    pthread_mutex_destroy(&sc->lock);
    pthread_mutex_destroy(&sc->gc_lock);
    free(sc);
}
