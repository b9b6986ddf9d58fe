/* cache.c: the image cache (see cache.h).
 *
 * DESIGN.  `lock` guards the entry list, the flights and the counters;
 * `cond` is broadcast when a flight lands.  nc_cache_get() is a loop:
 *   1. an entry for the digest exists: pin it, note the use, done;
 *   2. a flight for it is in the air: wait for it to land; on an error
 *      return that error, else go round again (the entry is there now);
 *   3. neither: start a flight, download with the lock released, add the
 *      entry, land the flight, go round again.
 * Landing and pinning are separate steps, so an entry might be evicted
 * between them by a concurrent trim; the loop then simply downloads again.
 * The index is written with the lock held (a few hundred bytes, on
 * changes only), so it always matches the list.
 */
#define LOG_MODULE "nc"
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "checksum.h"
#include "id.h"
#include "log.h"
#include "util.h"

#define INDEX_NAME "index.json"
#define PART_PREFIX ".part-"

struct entry {
    char sha[65];
    uint64_t size;
    const char *format; /* "raw" / "qcow2" */
    int64_t last_used;  /* wall clock ms */
    unsigned pins;
    json_t *ids; /* array of image ids seen with this digest */
    struct entry *next;
};

struct flight {
    char sha[65];
    unsigned refs; /* the downloader and its waiters */
    bool done;
    struct koala_error *err;
    struct flight *next;
};

struct nc_cache {
    char *dir;
    uint64_t max_bytes;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct entry *entries;
    struct flight *flights;
    atomic_bool cancelled;
    unsigned downloads, evictions;
    char *ca_file, *cert_file, *key_file;
    struct http_client_tls tls;
    bool have_tls;
    /* Only use times changed since the index was written: they are an
     * eviction hint, written with the next change that matters (or at
     * exit), not an fsync under the lock on every launch. */
    bool times_dirty;
};

void nc_image_ref_clear(struct nc_image_ref *ref)
{
    free(ref->id);
    free(ref->url);
    memset(ref, 0, sizeof(*ref));
}

static bool is_sha(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static struct entry *find_entry(struct nc_cache *c, const char *sha)
{
    for (struct entry *e = c->entries; e; e = e->next)
        if (strcmp(e->sha, sha) == 0)
            return e;
    return NULL;
}

static void entry_free(struct entry *e)
{
    json_decref(e->ids);
    free(e);
}

static char *entry_path(const struct nc_cache *c, const char *sha)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", c->dir, sha) < 0)
        return NULL;
    return p;
}

/* Rewrites the index.  Lock held.  A failure is logged: the files are
 * still right, and a restart rebuilds the entries from them. */
static void save_index(struct nc_cache *c)
{
    json_t *arr = json_array();
    for (struct entry *e = c->entries; e; e = e->next)
        json_array_append_new(
            arr,
            json_pack("{s:s, s:I, s:s, s:I, s:O}", "sha256", e->sha, "size",
                      (json_int_t)e->size, "format", e->format, "lastUsed",
                      (json_int_t)e->last_used, "ids", e->ids));
    json_t *root = json_pack("{s:i, s:o}", "version", 1, "images", arr);
    char *text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
    json_decref(root);
    _cleanup_free_ char *path = NULL;
    struct koala_error *err = NULL;
    if (text == NULL || asprintf(&path, "%s/%s", c->dir, INDEX_NAME) < 0)
        error_set(&err, ENOMEM, NULL, "out of memory");
    else
        nc_write_atomic(path, text, strlen(text), &err);
    if (err)
        log_error("image cache index: %s", error_message(err));
    else
        c->times_dirty = false;
    error_free(err);
    free(text);
}

/* "qcow2" or "raw" from the file's first bytes; rejects qcow2 images that
 * name a backing file or an external data file of their own: such a file
 * would make QEMU open a path on the node chosen by the image's author. */
static int detect_format(int fd, const char **format, struct koala_error **err)
{
    unsigned char h[104] = {0};
    ssize_t n = pread(fd, h, sizeof(h), 0);
    if (n < 0)
        return error_set_errno(err, "reading the image header");
    if (n < 8 || memcmp(h, "QFI\xfb", 4) != 0) {
        *format = "raw";
        return 0;
    }
    uint64_t backing = 0, incompat = 0;
    for (int i = 0; i < 8; i++)
        backing = backing << 8 | h[8 + i];
    uint32_t version = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 |
                       (uint32_t)h[6] << 8 | h[7];
    if (version >= 3 && n >= 80)
        for (int i = 0; i < 8; i++)
            incompat = incompat << 8 | h[72 + i];
    if (backing != 0)
        return error_set(err, EINVAL, "Client.InvalidImage",
                         "qcow2 image names a backing file");
    if (incompat & 4)
        return error_set(err, EINVAL, "Client.InvalidImage",
                         "qcow2 image uses an external data file");
    *format = "qcow2";
    return 0;
}

struct dl {
    struct nc_cache *c;
    int fd;
    struct checksum *sha;
    uint64_t got, max;
};

static int dl_write(void *ctx, const char *data, size_t len)
{
    struct dl *d = ctx;
    if (atomic_load(&d->c->cancelled)) {
        errno = ECANCELED;
        return -1;
    }
    d->got += len;
    if (d->got > d->max) {
        errno = EFBIG;
        return -1;
    }
    checksum_update(d->sha, data, len);
    while (len > 0) {
        ssize_t n = write(d->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Downloads ref into DIR/<sha> (checked).  No lock held. */
static int download(struct nc_cache *c, const struct nc_image_ref *ref,
                    const char **format, struct koala_error **err)
{
    char rnd[17];
    id_random_hex(rnd, 8);
    _cleanup_free_ char *tmp = NULL;
    _cleanup_free_ char *final = entry_path(c, ref->sha256);
    if (final == NULL ||
        asprintf(&tmp, "%s/" PART_PREFIX "%s-%s", c->dir, ref->sha256, rnd) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    struct dl d = {.c = c, .max = ref->size};
    d.fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (d.fd < 0)
        return error_set_errno(err, "create %s", tmp);
    d.sha = checksum_new(CHECKSUM_SHA256);
    int rc = -1;
    struct http_client_request rq = {
        .url = ref->url,
        .sink = {.kind = HTTP_CLIENT_SINK_CALLBACK,
                 .write = dl_write,
                 .ctx = &d},
        .tls = c->have_tls ? &c->tls : NULL,
        .idle_timeout_s = 60,
    };
    struct http_client_response resp = {0};
    struct koala_error *e = NULL;
    int64_t t0 = time_mono_ms();
    if (d.sha == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (http_client_do(NULL, &rq, &resp, &e) < 0) {
        if (e->errnum == EFBIG)
            error_set(err, EFBIG, "Client.InvalidImage",
                      "image %s is larger than its size %llu", ref->id,
                      (unsigned long long)ref->size);
        else
            error_set(err, e->errnum, NULL, "image %s: %s", ref->id,
                      error_message(e));
        error_free(e);
        goto out;
    }
    if (resp.status != 200) {
        error_set(
            err, EIO,
            resp.status >= 400 && resp.status < 500 ? "Client.InvalidImage"
                                                    : NULL,
            "image %s: download failed with HTTP %ld", ref->id, resp.status);
        goto out;
    }
    if (d.got != ref->size) {
        error_set(err, EINVAL, "Client.InvalidImage",
                  "image %s: got %llu bytes, expected %llu", ref->id,
                  (unsigned long long)d.got, (unsigned long long)ref->size);
        goto out;
    }
    unsigned char digest[CHECKSUM_MAX_LEN];
    char hex[65];
    checksum_final(d.sha, digest);
    str_hex(digest, 32, hex);
    if (strcmp(hex, ref->sha256) != 0) {
        error_set(err, EINVAL, "Client.InvalidImage",
                  "image %s: SHA-256 is %s, expected %s", ref->id, hex,
                  ref->sha256);
        goto out;
    }
    if (detect_format(d.fd, format, err) < 0)
        goto out;
    if (fsync(d.fd) < 0) {
        error_set_errno(err, "fsync %s", tmp);
        goto out;
    }
    if (rename(tmp, final) < 0) {
        error_set_errno(err, "rename %s", tmp);
        goto out;
    }
    if (nc_fsync_dir(c->dir, err) < 0) {
        unlink(final);
        goto out;
    }
    log_info("image %s (%s, %llu bytes, %s) cached in %lld ms", ref->id,
             ref->sha256, (unsigned long long)ref->size, *format,
             (long long)(time_mono_ms() - t0));
    rc = 0;
out:
    http_client_response_free(&resp);
    checksum_free(d.sha);
    close(d.fd);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

static uint64_t total_bytes(const struct nc_cache *c)
{
    uint64_t t = 0;
    for (const struct entry *e = c->entries; e; e = e->next)
        t += e->size;
    return t;
}

/* Evicts LRU unpinned entries past max_bytes.  Lock held. */
static void trim_locked(struct nc_cache *c)
{
    bool changed = false;
    uint64_t total = total_bytes(c);
    while (c->max_bytes && total > c->max_bytes) {
        struct entry **victim = NULL;
        for (struct entry **pe = &c->entries; *pe; pe = &(*pe)->next)
            if ((*pe)->pins == 0 &&
                (victim == NULL || (*pe)->last_used < (*victim)->last_used))
                victim = pe;
        if (victim == NULL) {
            log_warn("image cache holds %llu bytes (max %llu), all in use",
                     (unsigned long long)total,
                     (unsigned long long)c->max_bytes);
            break;
        }
        struct entry *e = *victim;
        *victim = e->next;
        _cleanup_free_ char *path = entry_path(c, e->sha);
        if (path && unlink(path) < 0 && errno != ENOENT)
            log_error("evicting %s: %s", path, strerror(errno));
        log_info("image %s evicted (%llu bytes)", e->sha,
                 (unsigned long long)e->size);
        total -= e->size;
        c->evictions++;
        entry_free(e);
        changed = true;
    }
    if (changed)
        save_index(c);
}

/* True when id is new to the entry. */
static bool add_id(struct entry *e, const char *id)
{
    if (id == NULL || *id == '\0')
        return false;
    for (size_t i = 0; i < json_array_size(e->ids); i++)
        if (strcmp(json_string_value(json_array_get(e->ids, i)), id) == 0)
            return false;
    json_array_append_new(e->ids, json_string(id));
    return true;
}

static struct entry *entry_new(const char *sha, uint64_t size,
                               const char *format, int64_t last_used)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->sha, sizeof(e->sha), "%s", sha);
    e->size = size;
    e->format = strcmp(format, "qcow2") == 0 ? "qcow2" : "raw";
    e->last_used = last_used;
    e->ids = json_array();
    if (e->ids == NULL) {
        free(e);
        return NULL;
    }
    return e;
}

static void flight_put(struct flight *f)
{
    if (--f->refs > 0)
        return;
    error_free(f->err);
    free(f);
}

/* The download ended: later callers no longer find the flight (they find
 * the entry, or start again after an error); its waiters still hold it. */
static void flight_land(struct nc_cache *c, struct flight *f,
                        struct koala_error *err)
{
    for (struct flight **pf = &c->flights; *pf; pf = &(*pf)->next)
        if (*pf == f) {
            *pf = f->next;
            break;
        }
    f->err = err;
    f->done = true;
    pthread_cond_broadcast(&c->cond);
}

int nc_cache_get(struct nc_cache *c, const struct nc_image_ref *ref,
                 char **path, const char **format, struct koala_error **err)
{
    if (!is_sha(ref->sha256))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "sha256 must be 64 lower-case hex digits");
    *path = entry_path(c, ref->sha256);
    if (*path == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_lock(&c->lock);
    int rc = -1;
    for (;;) {
        struct entry *e = find_entry(c, ref->sha256);
        if (e) {
            if (e->size != ref->size) {
                error_set(err, EINVAL, "Client.InvalidImage",
                          "image %s: size %llu, but its digest is cached "
                          "with %llu bytes",
                          ref->id, (unsigned long long)ref->size,
                          (unsigned long long)e->size);
                break;
            }
            e->pins++;
            e->last_used = time_now_ms();
            *format = e->format;
            if (add_id(e, ref->id))
                save_index(c);
            else
                c->times_dirty = true;
            rc = 0;
            break;
        }
        struct flight *f;
        for (f = c->flights; f; f = f->next)
            if (strcmp(f->sha, ref->sha256) == 0)
                break;
        if (f) {
            f->refs++;
            while (!f->done)
                pthread_cond_wait(&c->cond, &c->lock);
            if (f->err) {
                error_set(err, f->err->errnum, f->err->code, "%s",
                          error_message(f->err));
                flight_put(f);
                break;
            }
            flight_put(f);
            continue;
        }
        if (atomic_load(&c->cancelled)) {
            error_set(err, ECANCELED, NULL, "image %s: shutting down", ref->id);
            break;
        }
        f = calloc(1, sizeof(*f));
        if (f == NULL) {
            error_set(err, ENOMEM, NULL, "out of memory");
            break;
        }
        snprintf(f->sha, sizeof(f->sha), "%s", ref->sha256);
        f->refs = 1;
        f->next = c->flights;
        c->flights = f;
        c->downloads++;
        pthread_mutex_unlock(&c->lock);
        const char *fmt = "raw";
        struct koala_error *derr = NULL;
        int drc = download(c, ref, &fmt, &derr);
        pthread_mutex_lock(&c->lock);
        if (drc == 0) {
            struct entry *ne =
                entry_new(ref->sha256, ref->size, fmt, time_now_ms());
            if (ne == NULL) {
                error_set(&derr, ENOMEM, NULL, "out of memory");
            } else {
                add_id(ne, ref->id);
                ne->pins = 1; /* held until this caller pins it below */
                ne->next = c->entries;
                c->entries = ne;
                save_index(c);
                trim_locked(c);
                ne->pins = 0;
            }
        }
        flight_land(c, f, derr);
        if (derr) {
            error_set(err, derr->errnum, derr->code, "%s", error_message(derr));
            flight_put(f);
            break;
        }
        flight_put(f);
    }
    pthread_mutex_unlock(&c->lock);
    if (rc < 0) {
        free(*path);
        *path = NULL;
    }
    return rc;
}

char *nc_cache_path(const struct nc_cache *c, const char *sha256)
{
    return entry_path(c, sha256);
}

int nc_cache_pin(struct nc_cache *c, const char *sha256, char **path,
                 const char **format)
{
    pthread_mutex_lock(&c->lock);
    struct entry *e = find_entry(c, sha256);
    if (e) {
        e->pins++;
        if (format)
            *format = e->format;
    }
    pthread_mutex_unlock(&c->lock);
    if (e && path)
        *path = entry_path(c, sha256);
    return e ? 0 : -1;
}

void nc_cache_unpin(struct nc_cache *c, const char *sha256)
{
    pthread_mutex_lock(&c->lock);
    struct entry *e = find_entry(c, sha256);
    if (e && e->pins > 0) {
        e->pins--;
        e->last_used = time_now_ms();
        c->times_dirty = true;
    }
    if (e && e->pins == 0)
        trim_locked(c);
    pthread_mutex_unlock(&c->lock);
}

void nc_cache_trim(struct nc_cache *c)
{
    pthread_mutex_lock(&c->lock);
    trim_locked(c);
    pthread_mutex_unlock(&c->lock);
}

void nc_cache_cancel(struct nc_cache *c)
{
    atomic_store(&c->cancelled, true);
}

void nc_cache_stats(struct nc_cache *c, struct nc_cache_stats *out)
{
    pthread_mutex_lock(&c->lock);
    memset(out, 0, sizeof(*out));
    for (struct entry *e = c->entries; e; e = e->next) {
        out->bytes += e->size;
        out->images++;
    }
    out->downloads = c->downloads;
    out->evictions = c->evictions;
    pthread_mutex_unlock(&c->lock);
}

/* ---- loading ---- */

/* SHA-256 of a file, for files found without an index entry. */
static int hash_file(const char *path, char hex[65], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    _cleanup_checksum_ struct checksum *s = checksum_new(CHECKSUM_SHA256);
    char *buf = malloc(1 << 20);
    *size = 0;
    int rc = s && buf ? 0 : -1;
    while (rc == 0) {
        ssize_t n = read(fd, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -1;
        if (n <= 0)
            break;
        checksum_update(s, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    free(buf);
    close(fd);
    if (rc == 0) {
        unsigned char d[CHECKSUM_MAX_LEN];
        checksum_final(s, d);
        str_hex(d, 32, hex);
    }
    return rc;
}

static void load_index(struct nc_cache *c)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s", c->dir, INDEX_NAME) < 0)
        return;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *arr = json_object_get(root, "images");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *sha = json_string_value(json_object_get(v, "sha256"));
        const char *fmt = json_string_value(json_object_get(v, "format"));
        json_int_t size = json_integer_value(json_object_get(v, "size"));
        json_int_t used = json_integer_value(json_object_get(v, "lastUsed"));
        if (sha == NULL || !is_sha(sha) || fmt == NULL || size <= 0 ||
            find_entry(c, sha))
            continue;
        _cleanup_free_ char *file = entry_path(c, sha);
        struct stat st;
        if (file == NULL || stat(file, &st) < 0 ||
            (uint64_t)st.st_size != (uint64_t)size) {
            log_warn("image cache: %s missing or of the wrong size: dropped",
                     sha);
            continue;
        }
        struct entry *e = entry_new(sha, (uint64_t)size, fmt, used);
        if (e == NULL)
            continue;
        json_t *ids = json_object_get(v, "ids");
        size_t j;
        json_t *id;
        json_array_foreach(ids, j, id) add_id(e, json_string_value(id));
        e->next = c->entries;
        c->entries = e;
    }
    json_decref(root);
}

/* Files the index does not know: parts of interrupted downloads go; an
 * image renamed into place just before a crash (before its entry was
 * written) is kept if its content matches its name. */
static void scan_dir(struct nc_cache *c)
{
    DIR *d = opendir(c->dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || strcmp(n, "..") == 0))
            continue;
        if (strcmp(n, INDEX_NAME) == 0 || find_entry(c, n))
            continue;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", c->dir, n) < 0)
            continue;
        char hex[65];
        uint64_t size;
        const char *fmt = "raw";
        if (is_sha(n) && hash_file(path, hex, &size) == 0 &&
            strcmp(hex, n) == 0 && size > 0) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            struct koala_error *e = NULL;
            int ok = fd >= 0 ? detect_format(fd, &fmt, &e) : -1;
            if (fd >= 0)
                close(fd);
            error_free(e);
            struct entry *en = ok == 0 ? entry_new(n, size, fmt, 0) : NULL;
            if (en) {
                en->next = c->entries;
                c->entries = en;
                log_info("image cache: %s recovered", n);
                continue;
            }
        }
        log_info("image cache: removing stray %s", n);
        unlink(path);
    }
    closedir(d);
}

struct nc_cache *nc_cache_new(const char *dir, uint64_t max_bytes,
                              const struct http_client_tls *tls,
                              struct koala_error **err)
{
    if (nc_mkdir_p(dir, err) < 0)
        return NULL;
    struct nc_cache *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->dir = strdup(dir)) == NULL) {
        free(c);
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (tls) {
        c->ca_file = tls->ca_file ? strdup(tls->ca_file) : NULL;
        c->cert_file = tls->cert_file ? strdup(tls->cert_file) : NULL;
        c->key_file = tls->key_file ? strdup(tls->key_file) : NULL;
        c->tls = (struct http_client_tls){c->ca_file, c->cert_file, c->key_file,
                                          tls->insecure};
        c->have_tls = true;
    }
    load_index(c);
    scan_dir(c);
    pthread_mutex_lock(&c->lock);
    save_index(c);
    pthread_mutex_unlock(&c->lock);
    return c;
}

void nc_cache_free(struct nc_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->times_dirty)
        save_index(c);
    pthread_mutex_unlock(&c->lock);
    while (c->entries) {
        struct entry *e = c->entries;
        c->entries = e->next;
        entry_free(e);
    }
    /* No flight may be in the air: the node joins its jobs first. */
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->dir);
    free(c);
}
