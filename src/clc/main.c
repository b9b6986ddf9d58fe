/* main.c: koala-clc, the cloud controller: parses arguments, loads the
 * configuration, runs until SIGINT/SIGTERM. */
#define LOG_MODULE "clc"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "config.h"
#include "log.h"

struct clc *clc_new(const struct clc_options *opt, struct koala_error **err);
void clc_free(struct clc *clc);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: koala-clc [--config FILE] [--data-dir DIR]\n"
            "                 [--listen ADDR:PORT] [--soap-listen ADDR:PORT]\n"
            "                 [--tls-cert F --tls-key F --ca F]\n"
            "                 [--region NAME] [--log-level SPEC]\n"
            "Serves the EC2 API on --listen and the components' interface\n"
            "(mutual TLS) on --soap-listen.  Options override the [clc]\n"
            "section of the configuration file.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"soap-listen", required_argument, NULL, 's'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"ca", required_argument, NULL, 'A'},
        {"region", required_argument, NULL, 'r'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct koala_error *err = NULL;
    const char *config_path = NULL;
    struct config *cfg = config_new_empty();
    int c;
    while ((c = getopt_long(argc, argv, "c:d:l:s:C:K:A:r:v:h", opts, NULL)) !=
           -1) {
        const char *key = NULL;
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'd': key = "data_dir"; break;
        case 'l': key = "listen"; break;
        case 's': key = "soap_listen"; break;
        case 'C': key = "tls_cert"; break;
        case 'K': key = "tls_key"; break;
        case 'A': key = "ca"; break;
        case 'r': key = "region"; break;
        case 'v': key = "log_level"; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (key)
            config_set(cfg, "cmdline", key, optarg);
    }
    struct config *file = NULL;
    if (config_path && (file = config_load(config_path, &err)) == NULL) {
        fprintf(stderr, "koala-clc: %s\n", error_message(err));
        return 1;
    }
#define GET(k, def)                                                            \
    config_get(cfg, "cmdline", k, config_get(file, "clc", k, def))
    if (log_set_level_spec(GET("log_level", "info")) < 0) {
        fprintf(stderr, "koala-clc: bad log level\n");
        return 2;
    }
    struct clc_options opt = {
        .data_dir = GET("data_dir", "/var/lib/koala/clc"),
        .tls_cert = GET("tls_cert", NULL),
        .tls_key = GET("tls_key", NULL),
        .ca = GET("ca", NULL),
        .api_tls_cert = GET("api_tls_cert", NULL),
        .api_tls_key = GET("api_tls_key", NULL),
        .region = GET("region", "koala-1"),
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
    int64_t v;
    if (config_get_int(file, "clc", "poll_interval_ms", 2000, &v, &err) < 0 ||
        (opt.poll_interval_ms = (unsigned)v,
         config_get_int(file, "clc", "pending_timeout", 300, &v, &err)) < 0) {
        fprintf(stderr, "koala-clc: %s\n", error_message(err));
        return 2;
    }
    opt.pending_timeout_s = (unsigned)v;
    const char *pi = config_get(cfg, "cmdline", "poll_interval_ms", NULL);
    if (pi)
        opt.poll_interval_ms = (unsigned)atoi(pi);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct clc *clc = clc_new(&opt, &err);
    if (clc == NULL) {
        log_error("cannot start: %s", error_message(err));
        return 1;
    }
    log_info("EC2 API on %s://%s:%u, components on https://%s:%u (data in %s)",
             opt.api_tls_cert ? "https" : "http", api_addr,
             (unsigned)http_server_port(clc->api), soap_addr,
             clc->soap ? (unsigned)http_server_port(clc->soap) : 0,
             opt.data_dir);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping", sig);
    clc_free(clc);
    free(api_addr);
    free(soap_addr);
    config_free(file);
    config_free(cfg);
    error_free(err);
    return 0;
}
