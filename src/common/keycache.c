/* keycache.c: the access key cache (see keycache.h).  A fixed table indexed
 * by a hash of the access key; a new key simply replaces whatever occupied
 * its slot (a cache, not a map: a miss costs one lookup elsewhere). */
#include "keycache.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "sigv4.h"

struct slot {
    bool used;
    int64_t stored_ms;
    char access_key[KEYCACHE_MAX_KEY];
    char secret[KEYCACHE_MAX_SECRET];
    unsigned char owner[KEYCACHE_MAX_OWNER];
    size_t owner_len;
    bool have_signing_key;
    char scope[96]; /* "date/region/service" the signing key is for */
    unsigned char signing_key[32];
};

struct keycache {
    pthread_mutex_t lock;
    size_t n;
    unsigned ttl_ms;
    struct slot *slots;
};

static size_t slot_of(const struct keycache *kc, const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % kc->n);
}

struct keycache *keycache_new(size_t slots, unsigned ttl_ms)
{
    struct keycache *kc = calloc(1, sizeof(*kc));
    if (kc == NULL)
        return NULL;
    kc->n = slots ? slots : 1;
    kc->ttl_ms = ttl_ms;
    kc->slots = calloc(kc->n, sizeof(*kc->slots));
    if (kc->slots == NULL) {
        free(kc);
        return NULL;
    }
    pthread_mutex_init(&kc->lock, NULL);
    return kc;
}

void keycache_free(struct keycache *kc)
{
    if (kc == NULL)
        return;
    OPENSSL_cleanse(kc->slots, kc->n * sizeof(*kc->slots));
    free(kc->slots);
    pthread_mutex_destroy(&kc->lock);
    free(kc);
}

/* The slot holding a fresh entry for key, or NULL; called locked. */
static struct slot *find(struct keycache *kc, const char *key)
{
    struct slot *s = &kc->slots[slot_of(kc, key)];
    if (!s->used || strcmp(s->access_key, key) != 0)
        return NULL;
    if (time_mono_ms() - s->stored_ms >= (int64_t)kc->ttl_ms) {
        OPENSSL_cleanse(s, sizeof(*s));
        return NULL;
    }
    return s;
}

bool keycache_get(struct keycache *kc, const char *access_key,
                  char secret[KEYCACHE_MAX_SECRET], void *owner,
                  size_t owner_len)
{
    if (kc == NULL)
        return false;
    pthread_mutex_lock(&kc->lock);
    struct slot *s = find(kc, access_key);
    bool hit = s && s->owner_len == owner_len;
    if (hit) {
        memcpy(secret, s->secret, KEYCACHE_MAX_SECRET);
        memcpy(owner, s->owner, owner_len);
    }
    pthread_mutex_unlock(&kc->lock);
    return hit;
}

void keycache_put(struct keycache *kc, const char *access_key,
                  const char *secret, const void *owner, size_t owner_len)
{
    if (kc == NULL || strlen(access_key) >= KEYCACHE_MAX_KEY ||
        strlen(secret) >= KEYCACHE_MAX_SECRET || owner_len > KEYCACHE_MAX_OWNER)
        return;
    pthread_mutex_lock(&kc->lock);
    struct slot *s = &kc->slots[slot_of(kc, access_key)];
    bool same = s->used && strcmp(s->access_key, access_key) == 0 &&
                strcmp(s->secret, secret) == 0;
    if (!same)
        OPENSSL_cleanse(s, sizeof(*s));
    s->used = true;
    s->stored_ms = time_mono_ms();
    snprintf(s->access_key, sizeof(s->access_key), "%s", access_key);
    snprintf(s->secret, sizeof(s->secret), "%s", secret);
    memcpy(s->owner, owner, owner_len);
    s->owner_len = owner_len;
    pthread_mutex_unlock(&kc->lock);
}

void keycache_forget(struct keycache *kc, const char *access_key)
{
    if (kc == NULL)
        return;
    pthread_mutex_lock(&kc->lock);
    struct slot *s = find(kc, access_key);
    if (s)
        OPENSSL_cleanse(s, sizeof(*s));
    pthread_mutex_unlock(&kc->lock);
}

void keycache_signing_key(struct keycache *kc, const char *access_key,
                          const char *secret, const char *date,
                          const char *region, const char *service,
                          unsigned char out[32])
{
    char scope[96];
    int n = snprintf(scope, sizeof(scope), "%s/%s/%s", date, region, service);
    bool cacheable = kc && n > 0 && (size_t)n < sizeof(scope);
    if (cacheable) {
        pthread_mutex_lock(&kc->lock);
        struct slot *s = find(kc, access_key);
        bool hit = s && s->have_signing_key && strcmp(s->scope, scope) == 0 &&
                   strcmp(s->secret, secret) == 0;
        if (hit)
            memcpy(out, s->signing_key, 32);
        pthread_mutex_unlock(&kc->lock);
        if (hit)
            return;
    }
    sigv4_signing_key(secret, date, region, service, out);
    if (!cacheable)
        return;
    pthread_mutex_lock(&kc->lock);
    struct slot *s = find(kc, access_key);
    if (s && strcmp(s->secret, secret) == 0) {
        memcpy(s->signing_key, out, 32);
        snprintf(s->scope, sizeof(s->scope), "%s", scope);
        s->have_signing_key = true;
    }
    pthread_mutex_unlock(&kc->lock);
}
