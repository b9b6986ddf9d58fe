/* claims.h: a thread-safe set of string keys that one worker at a time may
 * hold: "this launch is under way", so that a retry from elsewhere (a
 * poller) leaves it alone until its holder is done.
 *
 * Keys are copied; the set is small (what is in flight at once) and
 * searched linearly. */
#ifndef KOALA_CLAIMS_H
#define KOALA_CLAIMS_H

#include <stdbool.h>
#include <stddef.h>

struct claims;

/* NULL when memory runs out. */
struct claims *claims_new(void);
/* NULL-safe. */
void claims_free(struct claims *c);
/* Takes key: true when it was free (the caller now holds it), false when
 * somebody holds it already, or when memory runs out. */
bool claims_take(struct claims *c, const char *key);
/* Gives key back (a key not held is ignored). */
void claims_drop(struct claims *c, const char *key);
/* How many keys are held (for tests and logs). */
size_t claims_count(struct claims *c);

#endif
