/* main.c: koala-sc, the storage controller: parses arguments, loads the
 * configuration ([sc] section; command line options override it), runs
 * until SIGINT/SIGTERM. */
#define LOG_MODULE "sc"
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "sc.h"

/* Every key of [sc]: see sc.c for what each means. */
static const char *const keys[] = {
    "listen",          "data_dir",           "name",
    "zone",            "tls_cert",           "tls_key",
    "ca",              "capacity_gb",        "export_transport",
    "export_dir",      "export_address",     "qemu_storage_daemon",
    "qemu_img",        "walrus_endpoint",    "walrus_credentials",
    "region",          "snapshot_workers",   "log_level",
    NULL,
};

static const struct daemon_spec spec = {
    "koala-sc",
    "sc",
    keys,
    "Runs the storage controller (EBS volumes and snapshots).\n"
    "  --listen ADDR:PORT        SOAP over mutual TLS (127.0.0.1:8776)\n"
    "  --data-dir DIR            sc.db, volumes/ (/var/lib/koala/sc)\n"
    "  --name NAME --zone ZONE   registered name (sc1), zone (zone-a)\n"
    "  --tls-cert F --tls-key F --ca F\n"
    "  --capacity-gb N           sum of volume sizes allowed (100)\n"
    "  --export-transport unix|tcp  --export-dir DIR --export-address A\n"
    "  --walrus-endpoint URL --walrus-credentials FILE --region R\n"
    "  --qemu-storage-daemon P --qemu-img P --snapshot-workers N\n"
    "  --log-level SPEC          \"info\", \"info,sc=debug\" ...\n",
};

int main(int argc, char **argv)
{
    int status;
    _cleanup_config_ struct config *cfg =
        daemon_config(&spec, argc, argv, &status);
    if (cfg == NULL)
        return status;
    struct koala_error *err = NULL;
    struct sc_options opt;
    if (sc_options_load(cfg, &opt, &err) < 0) {
        fprintf(stderr, "koala-sc: %s\n", error_message(err));
        error_free(err);
        sc_options_clear(&opt);
        return 2;
    }
    daemon_block_signals();
    struct sc *sc = sc_new(&opt, &err);
    if (sc == NULL) {
        log_error("cannot start: %s", error_message(err));
        error_free(err);
        sc_options_clear(&opt);
        return 1;
    }
    log_info("storage controller %s (zone %s): listening on https://%s:%u "
             "(data in %s, %s exports)",
             opt.name, opt.zone, opt.listen_addr,
             (unsigned)http_server_port(sc->http), opt.data_dir,
             opt.transport == SC_EXPORT_TCP ? "tcp" : "unix");
    int sig = daemon_wait_signal();
    log_info("signal %d: stopping", sig);
    sc_free(sc);
    sc_options_clear(&opt);
    return 0;
}
