/* cache.h: the node's image cache.  Images (machine images, kernels,
 * ramdisks) are downloaded once from the presigned URL of a launch request
 * and kept under their SHA-256 in DIR, so every instance of an image
 * shares one copy, used as the backing file of the instances' qcow2 root
 * disks.
 *
 *   - A download streams to a temporary file (never into memory), checks
 *     the size and SHA-256 the request promised, and only then is renamed
 *     into place (and the directory synced).
 *   - Single flight: concurrent requests for one image share one download;
 *     each waiter gets its result, or its error.
 *   - Pins: every nc_cache_get() pins the image until nc_cache_unpin(); a
 *     pinned image (the backing file of an instance's disk) is never
 *     evicted.  Pins are not stored: after a restart the node pins what
 *     its instances use (nc_cache_pin()) before anything is evicted.
 *   - LRU: past max_bytes the least recently used unpinned images are
 *     removed (nc_cache_trim(), and after each download).
 *   - The index (DIR/index.json: size, format, last use, image ids of each
 *     image) is rewritten atomically on every change, so it survives
 *     restarts; a file found without an entry is hashed again and kept
 *     only if it is what its name says.
 *
 * Errors carry EC2 state reason codes: "Client.InvalidImage" when the
 * image is not what was promised (HTTP 4xx, size or digest mismatch, a
 * qcow2 with a backing file of its own), code NULL (Server.InternalError)
 * for the node's own trouble (disk, network).
 *
 * Threads: all functions may be called from any thread; downloads run on
 * the caller's thread with no lock held.
 */
#ifndef KOALA_NC_CACHE_H
#define KOALA_NC_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "http_client.h"

struct nc_image_ref {
    char *id;        /* "emi-...", "eki-..."; informational */
    char *url;       /* presigned GET */
    uint64_t size;   /* bytes */
    char sha256[65]; /* lower-case hex */
};

struct nc_cache;

/* tls: for https:// image URLs (copied; NULL: the system's CAs). */
struct nc_cache *nc_cache_new(const char *dir, uint64_t max_bytes,
                              const struct http_client_tls *tls,
                              struct koala_error **err);
void nc_cache_free(struct nc_cache *c); /* NULL-safe */

/* Makes sure ref's image is in the cache and pins it once.  *path gets
 * its file (malloc'd), *format "raw" or "qcow2" (static).  Blocks for the
 * download. */
int nc_cache_get(struct nc_cache *c, const struct nc_image_ref *ref,
                 char **path, const char **format, struct koala_error **err);
/* Pins an image already cached (after a restart); -1 if it is not. */
int nc_cache_pin(struct nc_cache *c, const char *sha256, char **path,
                 const char **format);
void nc_cache_unpin(struct nc_cache *c, const char *sha256);
/* The file an image is (or would be) cached in (malloc'd). */
char *nc_cache_path(const struct nc_cache *c, const char *sha256);
/* Evicts LRU unpinned images until the cache fits max_bytes. */
void nc_cache_trim(struct nc_cache *c);
/* Makes running and future downloads fail (ECANCELED): shutting down. */
void nc_cache_cancel(struct nc_cache *c);

struct nc_cache_stats {
    uint64_t bytes; /* sum of the cached images' sizes */
    unsigned images;
    unsigned downloads; /* downloads started since nc_cache_new */
    unsigned evictions;
};
void nc_cache_stats(struct nc_cache *c, struct nc_cache_stats *out);

/* Frees what a ref holds (not ref itself). */
void nc_image_ref_clear(struct nc_image_ref *ref);

#endif
