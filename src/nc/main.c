/* main.c: koala-nc, the node controller: parses arguments, loads the
 * configuration ([nc] section; command line options override it), runs
 * until SIGINT/SIGTERM.  Running instances keep running when it stops. */
#define LOG_MODULE "nc"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
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
    NULL,
};

static const struct daemon_spec spec = {
    "koala-nc",
    "nc",
    keys,
    "Runs the node controller.\n"
    "  --listen ADDR:PORT       SOAP over mutual TLS (127.0.0.1:8775)\n"
    "  --data-dir DIR           instances and image cache "
    "(/var/lib/koala/nc)\n"
    "  --name NAME              node name (the host name)\n"
    "  --tls-cert F --tls-key F this node's certificate\n"
    "  --ca FILE                the cloud CA (peers are checked with it)\n"
    "  --cc-endpoint URL        where state changes are pushed\n"
    "  --max-cores N --max-memory-mb N --max-disk-gb N\n"
    "  --cache-max SIZE         image cache limit (16G)\n"
    "  --bridge NAME            bridge for the taps (kbr0)\n"
    "  --netns NAME             network namespace of bridge and taps\n"
    "  --hypervisor auto|kvm|tcg\n"
    "  --qemu PATH --qemu-img PATH\n"
    "  --kvm-probe-kernel F --kvm-probe-initrd F --kvm-probe-timeout S\n"
    "  --stop-timeout S         guest powerdown grace (30)\n"
    "  --terminated-ttl S       terminated instances are remembered "
    "(3600)\n"
    "  --vm-nice N              QEMU's niceness, so that the control plane\n"
    "                           stays responsive on a busy host (10)\n"
    "  --log-level SPEC         \"info\", \"info,nc=debug\" ...\n",
};

int main(int argc, char **argv)
{
    int status;
    _cleanup_config_ struct config *cfg =
        daemon_config(&spec, argc, argv, &status);
    if (cfg == NULL)
        return status;
    struct koala_error *err = NULL;
#define GET(k, def) config_get(cfg, "nc", k, def)
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
        error_free(err);
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
    if (str_split_hostport(GET("listen", "127.0.0.1:8775"), &addr, &opt.port) <
        0) {
        fprintf(stderr, "koala-nc: bad listen address\n");
        return 2;
    }
    opt.listen_addr = addr;
    daemon_block_signals();
    struct nc *nc = nc_new(&opt, &err);
    if (nc == NULL) {
        log_error("cannot start: %s", error_message(err));
        error_free(err);
        free(addr);
        return 1;
    }
    log_info("node %s listening on https://%s:%u (data in %s)", nc->name, addr,
             (unsigned)http_server_port(nc->http), opt.data_dir);
    int sig = daemon_wait_signal();
    log_info("signal %d: stopping (instances keep running)", sig);
    nc_free(nc);
    free(addr);
    return 0;
}
