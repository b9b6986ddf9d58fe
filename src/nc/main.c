/* main.c: koala-nc, the node controller: parses arguments, loads the
 * configuration ([nc] section; command line options override it), runs
 * until SIGINT/SIGTERM.  Running instances keep running when it stops. */
#define LOG_MODULE "nc"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "nc.h"

/* Every key of [nc]; each is also a command line option (--data-dir for
 * data_dir). */
static const char *const keys[] = {
    "listen",
    "data_dir",
    "name",
    "tls_cert",
    "tls_key",
    "ca",
    "cc_endpoint",
    "max_cores",
    "max_memory_mb",
    "max_disk_gb",
    "cache_max",
    "bridge",
    "netns",
    "hypervisor",
    "qemu",
    "qemu_img",
    "kvm_probe_kernel",
    "kvm_probe_initrd",
    "kvm_probe_timeout",
    "stop_timeout",
    "terminated_ttl",
    "vm_nice",
    "log_level",
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: koala-nc [--config FILE] [--OPTION VALUE]...\n"
               "Runs the node controller.  Options (also keys of the [nc]\n"
               "section of the configuration file, with _ for -):\n"
               "  --listen ADDR:PORT       SOAP over mutual TLS "
               "(127.0.0.1:8775)\n"
               "  --data-dir DIR           instances and image cache "
               "(/var/lib/koala/nc)\n"
               "  --name NAME              node name (the host name)\n"
               "  --tls-cert F --tls-key F this node's certificate\n"
               "  --ca FILE                the cloud CA (peers are checked "
               "with it)\n"
               "  --cc-endpoint URL        where state changes are pushed\n"
               "  --max-cores N --max-memory-mb N --max-disk-gb N\n"
               "  --cache-max SIZE         image cache limit (16G)\n"
               "  --bridge NAME            bridge for the taps (kbr0)\n"
               "  --netns NAME             network namespace of bridge and "
               "taps\n"
               "  --hypervisor auto|kvm|tcg\n"
               "  --qemu PATH --qemu-img PATH\n"
               "  --kvm-probe-kernel F --kvm-probe-initrd F "
               "--kvm-probe-timeout S\n"
               "  --stop-timeout S         guest powerdown grace (30)\n"
               "  --terminated-ttl S       terminated instances are "
               "remembered (3600)\n"
               "  --vm-nice N              QEMU's niceness, so that the\n"
               "                           control plane stays responsive on "
               "a busy host (10)\n"
               "  --log-level SPEC\n");
}

int main(int argc, char **argv)
{
    struct option opts[N_KEYS + 3];
    static char names[N_KEYS][32];
    for (size_t i = 0; i < N_KEYS; i++) {
        snprintf(names[i], sizeof(names[i]), "%s", keys[i]);
        for (char *p = names[i]; *p; p++)
            if (*p == '_')
                *p = '-';
        opts[i] =
            (struct option){names[i], required_argument, NULL, (int)(256 + i)};
    }
    opts[N_KEYS] = (struct option){"config", required_argument, NULL, 'c'};
    opts[N_KEYS + 1] = (struct option){"help", no_argument, NULL, 'h'};
    opts[N_KEYS + 2] = (struct option){NULL, 0, NULL, 0};
    struct koala_error *err = NULL;
    const char *config_path = NULL;
    struct config *cmd = config_new_empty();
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config_path = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else if (c >= 256 && c < 256 + (int)N_KEYS) {
            config_set(cmd, "nc", keys[c - 256], optarg);
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    struct config *file = NULL;
    if (config_path && (file = config_load(config_path, &err)) == NULL) {
        fprintf(stderr, "koala-nc: %s\n", error_message(err));
        return 1;
    }
    /* One view: the file's [nc], then the command line over it. */
    struct config *cfg = config_new_empty();
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *v = config_get(cmd, "nc", keys[i],
                                   config_get(file, "nc", keys[i], NULL));
        if (v)
            config_set(cfg, "nc", keys[i], v);
    }
#define GET(k, def) config_get(cfg, "nc", k, def)
    if (log_set_level_spec(GET("log_level", "info")) < 0) {
        fprintf(stderr, "koala-nc: bad log level\n");
        return 2;
    }
    struct nc_options opt = {
        .data_dir = GET("data_dir", "/var/lib/koala/nc"),
        .name = GET("name", NULL),
        .tls_cert = GET("tls_cert", NULL),
        .tls_key = GET("tls_key", NULL),
        .ca = GET("ca", NULL),
        .cc_endpoint = GET("cc_endpoint", NULL),
        .bridge = GET("bridge", "kbr0"),
        .netns = GET("netns", NULL),
        .hypervisor = GET("hypervisor", "auto"),
        .qemu = GET("qemu", "qemu-system-x86_64"),
        .qemu_img = GET("qemu_img", "qemu-img"),
        .kvm_probe_kernel = GET("kvm_probe_kernel", NULL),
        .kvm_probe_initrd = GET("kvm_probe_initrd", NULL),
    };
    int64_t probe_s, stop_s, ttl_s, vm_nice;
    if (config_get_int(cfg, "nc", "max_cores", 0, &opt.max_cores, &err) < 0 ||
        config_get_int(cfg, "nc", "max_memory_mb", 0, &opt.max_memory_mb,
                       &err) < 0 ||
        config_get_int(cfg, "nc", "max_disk_gb", 0, &opt.max_disk_gb, &err) <
            0 ||
        config_get_size(cfg, "nc", "cache_max", 16ull << 30, &opt.cache_max,
                        &err) < 0 ||
        config_get_int(cfg, "nc", "kvm_probe_timeout", 20, &probe_s, &err) <
            0 ||
        config_get_int(cfg, "nc", "stop_timeout", 30, &stop_s, &err) < 0 ||
        config_get_int(cfg, "nc", "terminated_ttl", 3600, &ttl_s, &err) < 0 ||
        config_get_int(cfg, "nc", "vm_nice", 10, &vm_nice, &err) < 0) {
        fprintf(stderr, "koala-nc: %s\n", error_message(err));
        return 2;
    }
    if (probe_s < 1 || stop_s < 1 || ttl_s < 0) {
        fprintf(stderr, "koala-nc: timeouts must be positive\n");
        return 2;
    }
    if (vm_nice < 0 || vm_nice > 19) {
        fprintf(stderr, "koala-nc: vm_nice is 0 to 19\n");
        return 2;
    }
    opt.vm_nice = (int)vm_nice;
    opt.kvm_probe_timeout_s = (unsigned)probe_s;
    opt.stop_timeout_s = (unsigned)stop_s;
    opt.terminated_ttl_s = (unsigned)ttl_s;
    char *addr = NULL;
    if (str_split_hostport(GET("listen", "127.0.0.1:8775"), &addr,
                           &opt.port) < 0) {
        fprintf(stderr, "koala-nc: bad listen address\n");
        return 2;
    }
    opt.listen_addr = addr;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */
    signal(SIGPIPE, SIG_IGN);
    struct nc *nc = nc_new(&opt, &err);
    if (nc == NULL) {
        log_error("cannot start: %s", error_message(err));
        error_free(err);
        free(addr);
        config_free(cfg);
        config_free(cmd);
        config_free(file);
        return 1;
    }
    log_info("node %s listening on https://%s:%u (data in %s)", nc->name, addr,
             (unsigned)http_server_port(nc->http), opt.data_dir);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping (instances keep running)", sig);
    nc_free(nc);
    free(addr);
    config_free(cfg);
    config_free(cmd);
    config_free(file);
    return 0;
}
