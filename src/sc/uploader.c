/* uploader.c: parallel block uploads for a snapshot (uploader.h). */
#define LOG_MODULE "sc"
#include "uploader.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "s3.h"
#include "sc.h"

#define MAX_THREADS 8
#define QUEUE 16 /* blocks waiting: 8 MiB */

struct item {
    size_t index;
    char *data;
    size_t len;
};

struct sc_uploader {
    struct sc *sc;
    struct sc_manifest *m;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item queue[QUEUE];
    size_t head, count;
    bool closing;
    struct koala_error *error; /* the first failure */
    uint64_t uploaded;
    pthread_t threads[MAX_THREADS];
    unsigned n_threads;
    /* the hashes queued in this job (open addressing, raw SHA-256) */
    unsigned char (*seen)[32];
    size_t seen_cap, seen_n;
};

static int unhex(const char *h, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = h[2 * i + k];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* Adds key to the set: true if it was new.  Under u->lock. */
static bool seen_add(struct sc_uploader *u, const unsigned char key[32])
{
    static const unsigned char empty[32];
    if ((u->seen_n + 1) * 2 > u->seen_cap) {
        size_t cap = u->seen_cap ? u->seen_cap * 2 : 1024;
        unsigned char (*t)[32] = calloc(cap, 32);
        if (t == NULL)
            return true; /* worst case: a duplicate upload */
        for (size_t i = 0; i < u->seen_cap; i++) {
            if (memcmp(u->seen[i], empty, 32) == 0)
                continue;
            uint64_t h;
            memcpy(&h, u->seen[i], 8);
            size_t j = h & (cap - 1);
            while (memcmp(t[j], empty, 32) != 0)
                j = (j + 1) & (cap - 1);
            memcpy(t[j], u->seen[i], 32);
        }
        free(u->seen);
        u->seen = t;
        u->seen_cap = cap;
    }
    uint64_t h;
    memcpy(&h, key, 8);
    size_t j = h & (u->seen_cap - 1);
    while (memcmp(u->seen[j], empty, 32) != 0) {
        if (memcmp(u->seen[j], key, 32) == 0)
            return false;
        j = (j + 1) & (u->seen_cap - 1);
    }
    memcpy(u->seen[j], key, 32);
    u->seen_n++;
    return true;
}

static void *worker(void *arg)
{
    struct sc_uploader *u = arg;
    struct sc *sc = u->sc;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(sc->db, &err);
    pthread_mutex_lock(&u->lock);
    for (;;) {
        while (u->count == 0 && !u->closing)
            pthread_cond_wait(&u->cond, &u->lock);
        if (u->count == 0)
            break;
        struct item it = u->queue[u->head];
        u->head = (u->head + 1) % QUEUE;
        u->count--;
        pthread_cond_broadcast(&u->cond);
        bool failed = u->error != NULL;
        pthread_mutex_unlock(&u->lock);
        int rc = 0;
        bool upload = false;
        char *hash = u->m->hash[it.index];
        if (!failed && db && sc_block_hash(it.data, it.len, hash)) {
            unsigned char key[32];
            unhex(hash, key);
            pthread_mutex_lock(&u->lock);
            upload = seen_add(u, key);
            pthread_mutex_unlock(&u->lock);
            bool known = false;
            if (upload && (rc = sc_block_known(db, hash, &known, &err)) == 0)
                upload = !known;
        }
        if (upload && rc == 0) {
            char okey[256];
            snprintf(okey, sizeof(okey), "%s/blocks/%s", sc->opt.zone, hash);
            rc = sc_s3_put_hashed(sc->s3, SC_BUCKET, okey, it.data, it.len,
                                  hash, &err);
            if (rc == 0)
                rc = sc_block_stored(db, hash, it.len, &err);
        }
        free(it.data);
        pthread_mutex_lock(&u->lock);
        if (rc == 0 && upload)
            u->uploaded += it.len;
        if ((rc < 0 || db == NULL) && u->error == NULL) {
            u->error = err;
            err = NULL;
        }
        error_clear(&err);
    }
    pthread_mutex_unlock(&u->lock);
    if (db)
        db_pool_put(sc->db, db);
    error_free(err);
    return NULL;
}

struct sc_uploader *sc_uploader_new(struct sc *sc, unsigned threads,
                                    struct sc_manifest *m,
                                    struct koala_error **err)
{
    struct sc_uploader *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory"), NULL;
    u->sc = sc;
    u->m = m;
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL);
    threads = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&u->threads[i], NULL, worker, u) != 0)
            break;
        u->n_threads++;
    }
    if (u->n_threads == 0) {
        free(u);
        return error_set(err, EAGAIN, NULL, "cannot start a thread"), NULL;
    }
    return u;
}

int sc_uploader_put(struct sc_uploader *u, size_t index, const void *data,
                    size_t len, struct koala_error **err)
{
    char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    memcpy(copy, data, len);
    pthread_mutex_lock(&u->lock);
    while (u->count == QUEUE && u->error == NULL)
        pthread_cond_wait(&u->cond, &u->lock);
    if (u->error) {
        pthread_mutex_unlock(&u->lock);
        free(copy);
        return error_set(err, u->error->errnum, u->error->code, "%s",
                         error_message(u->error));
    }
    struct item *it = &u->queue[(u->head + u->count) % QUEUE];
    it->index = index;
    it->data = copy;
    it->len = len;
    u->count++;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->lock);
    return 0;
}

int sc_uploader_finish(struct sc_uploader *u, uint64_t *uploaded,
                       struct koala_error **err)
{
    pthread_mutex_lock(&u->lock);
    u->closing = true;
    pthread_cond_broadcast(&u->cond);
    pthread_mutex_unlock(&u->lock);
    for (unsigned i = 0; i < u->n_threads; i++)
        pthread_join(u->threads[i], NULL);
    int rc = 0;
    if (u->error) {
        rc = error_set(err, u->error->errnum, u->error->code, "%s",
                       error_message(u->error));
        error_free(u->error);
    }
    if (uploaded)
        *uploaded = u->uploaded;
    pthread_mutex_destroy(&u->lock);
    pthread_cond_destroy(&u->cond);
    free(u->seen);
    free(u);
    return rc;
}
