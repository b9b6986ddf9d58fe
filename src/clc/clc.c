/* clc.c: starting and stopping the CLC: its database, access key cache,
 * launch pool, the EC2 API listener, the components' SOAP listener and the
 * poller. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "ebs.h"
#include "log.h"

struct clc *clc_new(const struct clc_options *opt, struct koala_error **err);
void clc_free(struct clc *clc);

void clc_free(struct clc *clc)
{
    if (clc == NULL)
        return;
    /* Listeners first: no new work; then the background work. */
    http_server_free(clc->api);
    http_server_free(clc->soap);
    clc_poller_stop(clc);
    workpool_free(clc->launcher);
    if (clc->poll_mu_ready) {
        pthread_mutex_destroy(&clc->poll_mu);
        pthread_cond_destroy(&clc->poll_cv);
    }
    claims_free(clc->launching);
    claims_free(clc->md_pushing);
    clc_kicker_destroy(&clc->eip);
    clc_kicker_destroy(&clc->ebs);
    db_pool_free(clc->db);
    keycache_free(clc->keys);
    free(clc->data_dir);
    free(clc->region);
    free(clc);
}

struct clc *clc_new(const struct clc_options *opt, struct koala_error **err)
{
    struct clc *clc = calloc(1, sizeof(*clc));
    if (clc == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    clc->opt = *opt;
    clc_kicker_init(&clc->eip, "public address push", clc_eip_round);
    clc_kicker_init(&clc->ebs, "volumes and snapshots", clc_ebs_sync);
    if (clc->opt.address_quota == 0)
        clc->opt.address_quota = 5;
    if (clc->opt.poll_interval_ms == 0)
        clc->opt.poll_interval_ms = 2000;
    if (clc->opt.pending_timeout_s == 0)
        clc->opt.pending_timeout_s = 300;
    clc->data_dir = strdup(opt->data_dir);
    clc->region = strdup(opt->region ? opt->region : "koala-1");
    clc->tls =
        (struct http_client_tls){opt->ca, opt->tls_cert, opt->tls_key, false};
    clc->keys = keycache_new(4096, 10000);
    clc->launching = claims_new();
    clc->md_pushing = claims_new();
    if (clc->data_dir == NULL || clc->region == NULL || clc->keys == NULL ||
        clc->launching == NULL || clc->md_pushing == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (clc_vpc_init(clc, err) < 0 || clc_tunnels_init(clc, err) < 0)
        goto fail;
    clc->db = clc_open_db(opt->data_dir, 64, err);
    if (clc->db == NULL)
        goto fail;
    clc->launcher = workpool_new(8, "clc-launch", err);
    if (clc->launcher == NULL)
        goto fail;
    struct http_server_config api = {
        .address = opt->api_addr,
        .port = opt->api_port,
        .tls_cert_file = opt->api_tls_cert,
        .tls_key_file = opt->api_tls_key,
    };
    clc->api = http_server_new(&api, &clc_api_handler, clc, err);
    if (clc->api == NULL)
        goto fail;
    if (opt->tls_cert && opt->tls_key && opt->ca) {
        struct http_server_config soap = {
            .address = opt->soap_addr,
            .port = opt->soap_port,
            .tls_cert_file = opt->tls_cert,
            .tls_key_file = opt->tls_key,
            .tls_client_ca_file = opt->ca,
        };
        clc->soap = http_server_new(&soap, &clc_soap_handler, clc, err);
        if (clc->soap == NULL)
            goto fail;
    } else {
        log_warn("no certificate: components cannot reach this CLC");
    }
    if (clc_poller_start(clc, err) < 0)
        goto fail;
    return clc;
fail:
    clc_free(clc);
    return NULL;
}
