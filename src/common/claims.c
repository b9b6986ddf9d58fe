/* claims.c: the set of keys under way (see claims.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"

struct claims {
    pthread_mutex_t mu;
    char **keys;
    size_t n, cap;
};

struct claims *claims_new(void)
{
    struct claims *c = calloc(1, sizeof(*c));
    if (c)
        pthread_mutex_init(&c->mu, NULL);
    return c;
}

void claims_free(struct claims *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->keys[i]);
    free(c->keys);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Index of key, or c->n.  Under c->mu. */
static size_t find(const struct claims *c, const char *key)
{
    size_t i = 0;
    while (i < c->n && strcmp(c->keys[i], key) != 0)
        i++;
    return i;
}

bool claims_take(struct claims *c, const char *key)
{
    bool taken = false;
    pthread_mutex_lock(&c->mu);
    if (find(c, key) == c->n) {
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 16;
            char **k = realloc(c->keys, cap * sizeof(*k));
            if (k) {
                c->keys = k;
                c->cap = cap;
            }
        }
        char *copy = c->n < c->cap ? strdup(key) : NULL;
        if (copy) {
            c->keys[c->n++] = copy;
            taken = true;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return taken;
}

void claims_drop(struct claims *c, const char *key)
{
    pthread_mutex_lock(&c->mu);
    size_t i = find(c, key);
    if (i < c->n) {
        free(c->keys[i]);
        c->keys[i] = c->keys[--c->n];
    }
    pthread_mutex_unlock(&c->mu);
}

size_t claims_count(struct claims *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}
