/* main.c: koala-cc, the cluster controller: parses arguments, loads the
 * configuration ([cc] section; command line options override it), runs
 * until SIGINT/SIGTERM. */
#define LOG_MODULE "cc"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "config.h"
#include "log.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: koala-cc [--config FILE] [--listen ADDR:PORT]\n"
            "                [--data-dir DIR] [--name CLUSTER]\n"
            "                [--tls-cert FILE --tls-key FILE --ca FILE]\n"
            "                [--clc-endpoint URL] [--nodes name=URL,...]\n"
            "                [--netns NAME] [--log-level SPEC]\n"
            "Runs the cluster controller.  Command line options override\n"
            "the [cc] section of the configuration file.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"data-dir", required_argument, NULL, 'd'},
        {"name", required_argument, NULL, 'n'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"ca", required_argument, NULL, 'A'},
        {"clc-endpoint", required_argument, NULL, 'E'},
        {"nodes", required_argument, NULL, 'N'},
        {"netns", required_argument, NULL, 'S'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct koala_error *err = NULL;
    const char *config_path = NULL;
    const char *keys[32], *values[32];
    size_t n_over = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:d:n:C:K:A:E:N:S:v:h", opts,
                            NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'l': key = "listen"; break;
        case 'd': key = "data_dir"; break;
        case 'n': key = "name"; break;
        case 'C': key = "tls_cert"; break;
        case 'K': key = "tls_key"; break;
        case 'A': key = "ca"; break;
        case 'E': key = "clc_endpoint"; break;
        case 'N': key = "nodes"; break;
        case 'S': key = "netns"; break;
        case 'v': key = "log_level"; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (key && n_over < ARRAY_SIZE(keys)) {
            keys[n_over] = key;
            values[n_over++] = optarg;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    struct config *cfg = config_path ? config_load(config_path, &err)
                                     : config_new_empty();
    if (cfg == NULL) {
        fprintf(stderr, "koala-cc: %s\n", error_message(err));
        error_free(err);
        return 1;
    }
    for (size_t i = 0; i < n_over; i++)
        config_set(cfg, "cc", keys[i], values[i]);
    if (log_set_level_spec(config_get(cfg, "cc", "log_level", "info")) < 0) {
        fprintf(stderr, "koala-cc: bad log level\n");
        config_free(cfg);
        return 2;
    }
    struct cc_options opt;
    if (cc_options_load(cfg, &opt, &err) < 0) {
        fprintf(stderr, "koala-cc: %s\n", error_message(err));
        error_free(err);
        cc_options_clear(&opt);
        config_free(cfg);
        return 2;
    }
    config_free(cfg);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    struct cc *cc = cc_new(&opt, &err);
    if (cc == NULL) {
        log_error("cannot start: %s", error_message(err));
        error_free(err);
        cc_options_clear(&opt);
        return 1;
    }
    log_info("cluster %s: listening on https://%s:%u (data in %s, %s)",
             opt.name, opt.listen_addr, (unsigned)http_server_port(cc->http),
             opt.data_dir,
             opt.policy == CC_SCHED_GREEDY ? "GREEDY" : "ROUNDROBIN");
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping", sig);
    cc_free(cc);
    cc_options_clear(&opt);
    return 0;
}
