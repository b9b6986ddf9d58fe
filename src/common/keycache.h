/* keycache.h: an in-memory cache of access keys for the servers that check
 * signatures (Walrus now; the CLC and Walrus-asking-the-CLC later): the
 * secret, an opaque blob describing the key's owner, and the SigV4 signing
 * key last derived from the secret.
 *
 * Why: looking a key up costs a database read (or a request to the CLC), and
 * deriving a signing key four HMACs, on every request; a client uses the
 * same key for thousands of requests.  Entries expire ttl_ms after they were
 * stored, so a changed or deleted key takes effect within that time (as
 * AWS's own credential changes are eventually consistent).
 *
 * Threads: every function may be called from any thread (one mutex; the
 * critical sections copy a few hundred bytes).
 */
#ifndef KOALA_KEYCACHE_H
#define KOALA_KEYCACHE_H

#include <stdbool.h>
#include <stddef.h>

#define KEYCACHE_MAX_KEY 128
#define KEYCACHE_MAX_SECRET 128
#define KEYCACHE_MAX_OWNER 512

struct keycache;

/* slots: how many keys are kept (a power of two is not needed). */
struct keycache *keycache_new(size_t slots, unsigned ttl_ms);
void keycache_free(struct keycache *kc); /* NULL-safe */

/* Copies the cached secret and owner blob of access_key into the caller's
 * buffers; returns true on a hit (fresh entry), false on a miss.  A NULL
 * cache always misses. */
bool keycache_get(struct keycache *kc, const char *access_key,
                  char secret[KEYCACHE_MAX_SECRET], void *owner,
                  size_t owner_len);
/* Stores (or refreshes) an entry.  Keys, secrets or owners longer than the
 * limits are not cached. */
void keycache_put(struct keycache *kc, const char *access_key,
                  const char *secret, const void *owner, size_t owner_len);
/* Drops an entry (a signature failed with it: the secret may be stale). */
void keycache_forget(struct keycache *kc, const char *access_key);

/* The SigV4 signing key of secret for date/region/service, from the cache
 * when the entry of access_key last derived it for the same scope and the
 * same secret, else derived (and remembered when the entry exists). */
void keycache_signing_key(struct keycache *kc, const char *access_key,
                          const char *secret, const char *date,
                          const char *region, const char *service,
                          unsigned char out[32]);

#endif
