/* main.c: koala-walrus, the S3-compatible object store: parses arguments,
 * loads the configuration, runs until SIGINT/SIGTERM. */
#define LOG_MODULE "walrus"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "walrus.h"

struct walrus *walrus_new(const struct walrus_options *opt,
                          struct koala_error **err);
void walrus_free(struct walrus *w);

static const char *const keys[] = {
    "listen",          "data_dir",         "region",    "domain",   "tls_cert",
    "tls_key",         "clc_endpoint",     "ca",        "clc_cert", "clc_key",
    "max_connections", "max_header_bytes", "log_level",
    "lifecycle_interval", "lifecycle_day", "log_flush_interval",
    "sse_key_file",    NULL,
};

static const struct daemon_spec spec = {
    "koala-walrus",
    "walrus",
    keys,
    "Serves the S3 API.\n"
    "  --listen ADDR:PORT        (127.0.0.1:8773)\n"
    "  --data-dir DIR            buckets and objects "
    "(/var/lib/koala/walrus)\n"
    "  --region NAME             (us-east-1)\n"
    "  --domain DOMAIN           virtual-host style under DOMAIN\n"
    "  --tls-cert F --tls-key F  serve HTTPS\n"
    "  --clc-endpoint URL --ca F --clc-cert F --clc-key F\n"
    "                            check keys with the CLC (mutual TLS)\n"
    "  --max-connections N       (256)\n"
    "  --max-header-bytes N      (16384)\n"
    "  --lifecycle-interval S    seconds between lifecycle passes (3600)\n"
    "  --lifecycle-day S         seconds in a lifecycle day (86400; tests)\n"
    "  --log-flush-interval S    seconds between access log deliveries "
    "(300)\n"
    "  --sse-key-file F          SSE-S3 master keys (DATA/sse-master.keys;\n"
    "                            made at first start, mode 0600)\n"
    "  --log-level SPEC          \"info\", \"info,walrus=debug\" ...\n",
};

int main(int argc, char **argv)
{
    int status;
    _cleanup_config_ struct config *cfg =
        daemon_config(&spec, argc, argv, &status);
    if (cfg == NULL)
        return status;
    struct koala_error *err = NULL;
#define GET(k, def) config_get(cfg, "walrus", k, def)
    struct walrus_options opt = {
        .data_dir = GET("data_dir", "/var/lib/koala/walrus"),
        .region = GET("region", "us-east-1"),
        .domain = GET("domain", ""),
        .tls_cert = GET("tls_cert", NULL),
        .tls_key = GET("tls_key", NULL),
        .clc_endpoint = GET("clc_endpoint", NULL),
        .ca = GET("ca", NULL),
        .clc_cert = GET("clc_cert", NULL),
        .clc_key = GET("clc_key", NULL),
        .sse_key_file = GET("sse_key_file", NULL),
    };
    char *addr = NULL;
    if (str_split_hostport(GET("listen", "127.0.0.1:8773"), &addr, &opt.port) <
        0) {
        fprintf(stderr, "koala-walrus: bad listen address\n");
        return 2;
    }
    opt.listen_addr = addr;
    int64_t v;
    if (config_get_int(cfg, "walrus", "max_connections", 256, &v, &err) < 0 ||
        (opt.max_connections = (unsigned)v,
         config_get_int(cfg, "walrus", "max_header_bytes", 16384, &v, &err)) <
            0) {
        fprintf(stderr, "koala-walrus: %s\n", error_message(err));
        error_free(err);
        free(addr);
        return 2;
    }
    opt.max_header_bytes = (size_t)v;
    opt.lifecycle_interval_s = atof(GET("lifecycle_interval", "3600"));
    opt.lifecycle_day_s = atoll(GET("lifecycle_day", "86400"));
    opt.log_flush_interval_s = atof(GET("log_flush_interval", "300"));
    if (opt.lifecycle_interval_s <= 0 || opt.lifecycle_day_s <= 0 ||
        opt.log_flush_interval_s <= 0) {
        fprintf(stderr, "koala-walrus: lifecycle interval and day, log "
                        "flush interval must be positive\n");
        free(addr);
        return 2;
    }
    daemon_block_signals();
    struct walrus *w = walrus_new(&opt, &err);
    if (w == NULL) {
        log_error("cannot start: %s", error_message(err));
        return 1;
    }
    log_info("listening on %s://%s:%u (data in %s)",
             opt.tls_cert ? "https" : "http", addr,
             (unsigned)http_server_port(w->http), opt.data_dir);
    int sig = daemon_wait_signal();
    log_info("signal %d: stopping", sig);
    walrus_free(w);
    free(addr);
    return 0;
}
