/* walrus.c: starting and stopping the Walrus service: data directories,
 * database, crash recovery, blob GC, the HTTP server. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keycache.h"
#include "log.h"
#include "walrus.h"

extern const struct http_handler walrus_http_handler;

struct walrus *walrus_new(const struct walrus_options *opt,
                          struct koala_error **err);
void walrus_free(struct walrus *w);
struct db_pool *walrus_open_db(const char *data_dir, unsigned conns,
                               struct koala_error **err);

struct db_pool *walrus_open_db(const char *data_dir, unsigned conns,
                               struct koala_error **err)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/walrus.db", data_dir) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    return db_pool_new(path, walrus_migrations, walrus_n_migrations, conns,
                       err);
}

void walrus_free(struct walrus *w)
{
    if (w == NULL)
        return;
    http_server_free(w->http);
    access_log_stop(w);
    lc_worker_stop(w);
    blob_gc_stop(w);
    db_group_free(w->group);
    db_pool_free(w->db);
    keycache_free(w->keys);
    policy_cache_free(w->policies);
    sse_keys_free(w);
    free(w->data_dir);
    free(w->tmp_dir);
    free(w->blob_dir);
    free(w->region);
    free(w->domain);
    free(w);
}

struct walrus *walrus_new(const struct walrus_options *opt,
                          struct koala_error **err)
{
    struct walrus *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    w->opt = *opt;
    w->data_dir = strdup(opt->data_dir);
    w->region = strdup(opt->region ? opt->region : "us-east-1");
    w->domain = strdup(opt->domain ? opt->domain : "");
    if (w->data_dir == NULL || w->region == NULL || w->domain == NULL ||
        asprintf(&w->tmp_dir, "%s/tmp", opt->data_dir) < 0 ||
        asprintf(&w->blob_dir, "%s/blobs", opt->data_dir) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    unsigned conns = opt->max_connections ? opt->max_connections : 256;
    /* Keys changed with `koala walrus` take effect within 10 s. */
    w->keys = keycache_new(4096, 10000);
    w->policies = policy_cache_new();
    if (w->keys == NULL || w->policies == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (blob_dirs_init(w, err) < 0 || sse_keys_load(w, err) < 0)
        goto fail;
    w->db = walrus_open_db(w->data_dir, conns + 4, err);
    if (w->db && (w->group = db_group_new(w->db, 0)) == NULL)
        error_set(err, ENOMEM, NULL, "out of memory");
    if (w->opt.lifecycle_interval_s <= 0)
        w->opt.lifecycle_interval_s = 3600;
    if (w->opt.lifecycle_day_s <= 0)
        w->opt.lifecycle_day_s = 86400;
    if (w->group == NULL || blob_recover(w, err) < 0 ||
        blob_gc_start(w, err) < 0 || lc_worker_start(w, err) < 0)
        goto fail;
    if (w->opt.log_flush_interval_s <= 0)
        w->opt.log_flush_interval_s = 300;
    if (access_log_start(w, err) < 0)
        goto fail;
    struct http_server_config hc = {
        .address = opt->listen_addr,
        .port = opt->port,
        .max_connections = conns,
        .max_header_bytes = opt->max_header_bytes,
        .tls_cert_file = opt->tls_cert,
        .tls_key_file = opt->tls_key,
    };
    w->http = http_server_new(&hc, &walrus_http_handler, w, err);
    if (w->http == NULL)
        goto fail;
    return w;
fail:
    walrus_free(w);
    return NULL;
}
