/* main.c: koala-clc, the cloud controller: parses arguments, loads the
 * configuration, runs until SIGINT/SIGTERM. */
#define LOG_MODULE "clc"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "config.h"
#include "daemon.h"
#include "log.h"

struct clc *clc_new(const struct clc_options *opt, struct koala_error **err);
void clc_free(struct clc *clc);

static const char *const keys[] = {
    "listen",
    "soap_listen",
    "data_dir",
    "tls_cert",
    "tls_key",
    "ca",
    "api_tls_cert",
    "api_tls_key",
    "region",
    "poll_interval_ms",
    "pending_timeout",
    "log_level",
    "default_vpc_cidr",
    "tunnel_encryption",
    "address_quota",
    NULL,
};

static const struct daemon_spec spec = {
    "koala-clc",
    "clc",
    keys,
    "Serves the EC2 API on --listen and the components' interface (SOAP,\n"
    "mutual TLS) on --soap-listen.\n"
    "  --listen ADDR:PORT          the EC2 API (127.0.0.1:8773)\n"
    "  --soap-listen ADDR:PORT     the components' interface "
    "(127.0.0.1:8777)\n"
    "  --data-dir DIR              clc.db (/var/lib/koala/clc)\n"
    "  --tls-cert F --tls-key F --ca F\n"
    "                              the CLC's certificate and the cloud CA\n"
    "  --api-tls-cert F --api-tls-key F\n"
    "                              serve the EC2 API over HTTPS\n"
    "  --region NAME               (koala-1)\n"
    "  --poll-interval-ms N        how often clusters are asked (2000)\n"
    "  --pending-timeout S         pending longer ends terminated (300)\n"
    "  --default-vpc-cidr CIDR     every default VPC's network, sliced\n"
    "                              per zone (10.96.0.0/12)\n"
    "  --tunnel-encryption BOOL    seal the tunnels between clusters'\n"
    "                              routers (false)\n"
    "  --address-quota N           elastic IPs per account (5)\n"
    "  --log-level SPEC            \"info\", \"info,clc=debug\" ...\n",
};

int main(int argc, char **argv)
{
    int status;
    _cleanup_config_ struct config *cfg =
        daemon_config(&spec, argc, argv, &status);
    if (cfg == NULL)
        return status;
    struct koala_error *err = NULL;
#define GET(k, def) config_get(cfg, "clc", k, def)
    struct clc_options opt = {
        .data_dir = GET("data_dir", "/var/lib/koala/clc"),
        .tls_cert = GET("tls_cert", NULL),
        .tls_key = GET("tls_key", NULL),
        .ca = GET("ca", NULL),
        .api_tls_cert = GET("api_tls_cert", NULL),
        .api_tls_key = GET("api_tls_key", NULL),
        .region = GET("region", "koala-1"),
        .default_vpc_cidr = GET("default_vpc_cidr", NULL),
    };
    char *api_addr = NULL, *soap_addr = NULL;
    if (str_split_hostport(GET("listen", "127.0.0.1:8773"), &api_addr,
                           &opt.api_port) < 0 ||
        str_split_hostport(GET("soap_listen", "127.0.0.1:8777"), &soap_addr,
                           &opt.soap_port) < 0) {
        fprintf(stderr, "koala-clc: bad listen address\n");
        return 2;
    }
    opt.api_addr = api_addr;
    opt.soap_addr = soap_addr;
    int64_t poll_ms, pending_s, quota;
    if (config_get_int(cfg, "clc", "poll_interval_ms", 2000, &poll_ms, &err) <
            0 ||
        config_get_int(cfg, "clc", "address_quota", 5, &quota, &err) < 0 ||
        config_get_int(cfg, "clc", "pending_timeout", 300, &pending_s, &err) <
            0 ||
        config_get_bool(cfg, "clc", "tunnel_encryption", false,
                        &opt.tunnel_encryption, &err) < 0) {
        fprintf(stderr, "koala-clc: %s\n", error_message(err));
        error_free(err);
        free(api_addr);
        free(soap_addr);
        return 2;
    }
    if (poll_ms < 10 || pending_s < 1 || quota < 1 || quota > 100000) {
        fprintf(stderr, "koala-clc: poll_interval_ms is at least 10, "
                        "pending_timeout at least 1 and address_quota 1 "
                        "to 100000\n");
        free(api_addr);
        free(soap_addr);
        return 2;
    }
    opt.poll_interval_ms = (unsigned)poll_ms;
    opt.pending_timeout_s = (unsigned)pending_s;
    opt.address_quota = (unsigned)quota;
    daemon_block_signals();
    struct clc *clc = clc_new(&opt, &err);
    if (clc == NULL) {
        log_error("cannot start: %s", error_message(err));
        error_free(err);
        free(api_addr);
        free(soap_addr);
        return 1;
    }
    log_info("EC2 API on %s://%s:%u, components on https://%s:%u (data in %s)",
             opt.api_tls_cert ? "https" : "http", api_addr,
             (unsigned)http_server_port(clc->api), soap_addr,
             clc->soap ? (unsigned)http_server_port(clc->soap) : 0,
             opt.data_dir);
    int sig = daemon_wait_signal();
    log_info("signal %d: stopping", sig);
    clc_free(clc);
    free(api_addr);
    free(soap_addr);
    return 0;
}
