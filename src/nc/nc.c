/* nc.c: starting and stopping koala-nc: directories, the node's
 * resources, the hypervisor choice, the image cache, the instances found
 * on disk, the CC notifier, the housekeeper and the SOAP server. */
#define LOG_MODULE "nc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "exec.h"
#include "log.h"
#include "nc.h"
#include "sgfilter.h"
#include "util.h"

void nc_wait_locked(struct nc *nc, int64_t deadline_ms)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
                          .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
    pthread_cond_timedwait(&nc->cond, &nc->lock, &ts);
}

void nc_resources_locked(struct nc *nc, struct nc_resources *r)
{
    memset(r, 0, sizeof(*r));
    r->cores_max = nc->cores_max;
    r->memory_mb_max = nc->memory_mb_max;
    r->disk_gb_max = nc->disk_gb_max;
    int64_t cores = 0, mem = 0, disk = 0;
    for (struct nc_instance *i = nc->instances; i; i = i->next) {
        if (i->state == NC_TERMINATED)
            continue;
        cores += i->type.cores;
        mem += i->type.memory_mb;
        disk += i->type.disk_gb;
        r->instances++;
    }
    r->cores_free = r->cores_max - cores;
    r->memory_mb_free = r->memory_mb_max - mem;
    r->disk_gb_free = r->disk_gb_max - disk;
    if (r->cores_free < 0)
        r->cores_free = 0;
    if (r->memory_mb_free < 0)
        r->memory_mb_free = 0;
    if (r->disk_gb_free < 0)
        r->disk_gb_free = 0;
}

/* MemTotal in MiB, 0 when unknown. */
static int64_t mem_total_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    long long kb = 0;
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024;
}

static void detect_resources(struct nc *nc)
{
    const struct nc_options *o = &nc->opt;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    nc->cores_max = o->max_cores > 0 ? o->max_cores : (cpus > 0 ? cpus : 1);
    if (o->max_memory_mb > 0) {
        nc->memory_mb_max = o->max_memory_mb;
    } else {
        /* The host keeps 10% (at least 512 MiB) for itself and QEMU's own
         * overhead. */
        int64_t total = mem_total_mb();
        int64_t reserve = total / 10 > 512 ? total / 10 : 512;
        nc->memory_mb_max = total > reserve ? total - reserve : 0;
    }
    if (o->max_disk_gb > 0) {
        nc->disk_gb_max = o->max_disk_gb;
    } else {
        struct statvfs sv;
        nc->disk_gb_max =
            statvfs(nc->data_dir, &sv) == 0
                ? (int64_t)((uint64_t)sv.f_bavail * sv.f_frsize >> 30)
                : 0;
    }
    log_info("node %s: %lld cores, %lld MiB, %lld GiB for instances", nc->name,
             (long long)nc->cores_max, (long long)nc->memory_mb_max,
             (long long)nc->disk_gb_max);
}

static void *housekeeper_main(void *arg)
{
    struct nc *nc = arg;
    pthread_mutex_lock(&nc->lock);
    while (!nc->stopping) {
        nc_wait_locked(nc, time_mono_ms() + 5000);
        nc_instances_reap_locked(nc);
    }
    pthread_mutex_unlock(&nc->lock);
    return NULL;
}

void nc_free(struct nc *nc)
{
    if (nc == NULL)
        return;
    http_server_free(nc->http);
    pthread_mutex_lock(&nc->lock);
    nc->stopping = true;
    pthread_cond_broadcast(&nc->cond);
    pthread_mutex_unlock(&nc->lock);
    if (nc->cache)
        nc_cache_cancel(nc->cache);
    /* Jobs notice `stopping` (or their download is cancelled); watchers
     * stop within half a second.  QEMU processes keep running. */
    pthread_mutex_lock(&nc->lock);
    while (nc->threads > 0)
        nc_wait_locked(nc, time_mono_ms() + 1000);
    pthread_mutex_unlock(&nc->lock);
    if (nc->housekeeper_started)
        pthread_join(nc->housekeeper, NULL);
    nc_notifier_free(nc->notifier);
    nc_sgfilter_free(nc->sg);
    while (nc->instances) {
        struct nc_instance *i = nc->instances;
        nc->instances = i->next;
        nc_instance_free(i);
    }
    nc_cache_free(nc->cache);
    if (nc->netns_fd >= 0)
        close(nc->netns_fd);
    pthread_mutex_destroy(&nc->lock);
    pthread_cond_destroy(&nc->cond);
    free(nc->data_dir);
    free(nc->inst_dir);
    free(nc->tls_dir);
    free(nc->name);
    free(nc->bridge);
    free(nc->hv_key);
    free(nc->hv_reason);
    free(nc);
}

struct nc *nc_new(const struct nc_options *opt, struct koala_error **err)
{
    struct nc *nc = calloc(1, sizeof(*nc));
    if (nc == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    nc->opt = *opt;
    nc->netns_fd = -1;
    pthread_mutex_init(&nc->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&nc->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (nc->opt.kvm_probe_timeout_s == 0)
        nc->opt.kvm_probe_timeout_s = 20;
    if (nc->opt.stop_timeout_s == 0)
        nc->opt.stop_timeout_s = 30;
    if (nc->opt.qemu == NULL)
        nc->opt.qemu = "qemu-system-x86_64";
    if (nc->opt.qemu_img == NULL)
        nc->opt.qemu_img = "qemu-img";
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    /* Absolute: QEMU's PID files and qcow2 backing paths must not depend
     * on a working directory. */
    char cwd[4096];
    if (opt->data_dir[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
        nc->data_dir = strdup(opt->data_dir);
    else if (asprintf(&nc->data_dir, "%s/%s", cwd, opt->data_dir) < 0)
        nc->data_dir = NULL;
    nc->name = strdup(opt->name ? opt->name : host);
    nc->bridge = strdup(opt->bridge ? opt->bridge : "kbr0");
    _cleanup_free_ char *cache_dir = NULL;
    if (nc->data_dir == NULL || nc->name == NULL || nc->bridge == NULL ||
        asprintf(&nc->inst_dir, "%s/instances", nc->data_dir) < 0 ||
        asprintf(&cache_dir, "%s/cache", nc->data_dir) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (opt->tls_cert == NULL || opt->tls_key == NULL || opt->ca == NULL) {
        error_set(err, EINVAL, NULL,
                  "tls_cert, tls_key and ca are required (the node only "
                  "speaks mutual TLS)");
        goto fail;
    }
    if (nc_mkdir_p(nc->inst_dir, err) < 0 || nc_volumes_tls_init(nc, err) < 0)
        goto fail;
    if (opt->netns && (nc->netns_fd = nc_netns_open(opt->netns, err)) < 0)
        goto fail;
    detect_resources(nc);
    if (nc_hv_init(nc, err) < 0)
        goto fail;
    /* Images come over plain HTTP or HTTPS (Walrus with a certificate
     * from the cloud CA). */
    struct http_client_tls tls = {.ca_file = opt->ca};
    nc->cache = nc_cache_new(cache_dir, opt->cache_max, &tls, err);
    if (nc->cache == NULL)
        goto fail;
    if (opt->cc_endpoint && (nc->notifier = nc_notifier_new(nc, err)) == NULL)
        goto fail;
    /* The held policy, before the instances that it filters. */
    if (nc_sgfilter_init(nc, err) < 0)
        goto fail;
    if (nc_instances_load(nc, err) < 0)
        goto fail;
    /* Only now that every instance has pinned its images. */
    nc_cache_trim(nc->cache);
    if (pthread_create(&nc->housekeeper, NULL, housekeeper_main, nc) != 0) {
        error_set(err, EAGAIN, NULL, "cannot start a thread");
        goto fail;
    }
    nc->housekeeper_started = true;
    struct http_server_config hc = {
        .address = opt->listen_addr,
        .port = opt->port,
        .max_connections = 256,
        .tls_cert_file = opt->tls_cert,
        .tls_key_file = opt->tls_key,
        .tls_client_ca_file = opt->ca,
    };
    nc->http = http_server_new(&hc, &nc_http_handler, nc, err);
    if (nc->http == NULL)
        goto fail;
    return nc;
fail:
    nc_free(nc);
    return NULL;
}
