/* main.c: koala-walrus, the S3-compatible object store: parses arguments,
 * loads the configuration, runs until SIGINT/SIGTERM. */
#define LOG_MODULE "walrus"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "walrus.h"

struct walrus *walrus_new(const struct walrus_options *opt,
                          struct koala_error **err);
void walrus_free(struct walrus *w);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: koala-walrus [--config FILE] [--listen ADDR:PORT]\n"
            "                    [--data-dir DIR] [--region NAME]\n"
            "                    [--domain DOMAIN] [--log-level SPEC]\n"
            "                    [--tls-cert FILE --tls-key FILE]\n"
            "                    [--clc URL --ca FILE --clc-cert FILE "
            "--clc-key FILE]\n"
            "Serves the S3 API.  Command line options override the [walrus]\n"
            "section of the configuration file.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"region", required_argument, NULL, 'r'},
        {"domain", required_argument, NULL, 'D'},
        {"log-level", required_argument, NULL, 'v'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"clc", required_argument, NULL, 'L'},
        {"ca", required_argument, NULL, 'A'},
        {"clc-cert", required_argument, NULL, 'E'},
        {"clc-key", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct koala_error *err = NULL;
    const char *config_path = NULL;
    struct config *cfg = config_new_empty();
    int c;
    while ((c = getopt_long(argc, argv, "c:l:d:r:D:v:C:K:L:A:E:F:h", opts, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'l': key = "listen"; break;
        case 'd': key = "data_dir"; break;
        case 'r': key = "region"; break;
        case 'D': key = "domain"; break;
        case 'v': key = "log_level"; break;
        case 'C': key = "tls_cert"; break;
        case 'K': key = "tls_key"; break;
        case 'L': key = "clc_endpoint"; break;
        case 'A': key = "ca"; break;
        case 'E': key = "clc_cert"; break;
        case 'F': key = "clc_key"; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (key)
            config_set(cfg, "cmdline", key, optarg);
    }
    struct config *file = NULL;
    if (config_path && (file = config_load(config_path, &err)) == NULL) {
        fprintf(stderr, "koala-walrus: %s\n", error_message(err));
        return 1;
    }
#define GET(k, def)                                                            \
    config_get(cfg, "cmdline", k, config_get(file, "walrus", k, def))
    if (log_set_level_spec(GET("log_level", "info")) < 0) {
        fprintf(stderr, "koala-walrus: bad log level\n");
        return 2;
    }
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
    };
    char *addr = NULL;
    if (str_split_hostport(GET("listen", "127.0.0.1:8773"), &addr,
                           &opt.port) < 0) {
        fprintf(stderr, "koala-walrus: bad listen address\n");
        return 2;
    }
    opt.listen_addr = addr;
    int64_t v;
    if (config_get_int(file, "walrus", "max_connections", 256, &v, &err) < 0 ||
        (opt.max_connections = (unsigned)v,
         config_get_int(file, "walrus", "max_header_bytes", 16384, &v,
                        &err)) < 0) {
        fprintf(stderr, "koala-walrus: %s\n", error_message(err));
        return 2;
    }
    opt.max_header_bytes = (size_t)v;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    struct walrus *w = walrus_new(&opt, &err);
    if (w == NULL) {
        log_error("cannot start: %s", error_message(err));
        return 1;
    }
    log_info("listening on %s://%s:%u (data in %s)",
             opt.tls_cert ? "https" : "http", addr,
             (unsigned)http_server_port(w->http), opt.data_dir);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping", sig);
    walrus_free(w);
    free(addr);
    config_free(file);
    config_free(cfg);
    return 0;
}
