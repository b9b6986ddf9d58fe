/* manifest.h: a snapshot's manifest (docs/storage.md): the volume's size,
 * the block size, and for each block the SHA-256 of its bytes, or nothing
 * for a block of zeros.  Stored as JSON in Walrus beside the
 * content-addressed blocks:
 *
 *   {"snapshotId":"snap-..","volumeId":"vol-..","volumeSize":N,
 *    "blockSize":524288,"blocks":["9f86..",null,...]}
 */
#ifndef KOALA_SC_MANIFEST_H
#define KOALA_SC_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct sc_manifest {
    uint64_t volume_size;
    uint32_t block_size;
    size_t n;         /* blocks: volume_size / block_size rounded up */
    char (*hash)[65]; /* hex SHA-256; "" for a block of zeros */
};

/* Blocks of a volume of that size. */
size_t sc_manifest_count(uint64_t volume_size, uint32_t block_size);
/* Every block zero.  0 / -1. */
int sc_manifest_init(struct sc_manifest *m, uint64_t volume_size,
                     uint32_t block_size, struct koala_error **err);
void sc_manifest_clear(struct sc_manifest *m);
/* The JSON text (malloc'd) or NULL. */
char *sc_manifest_dump(const struct sc_manifest *m, const char *snapshot_id,
                       const char *volume_id, size_t *len);
/* Parses and checks a manifest (sizes agree, hashes are 64 hex digits). */
int sc_manifest_parse(const char *text, size_t len, struct sc_manifest *m,
                      struct koala_error **err);
/* The block's hash into out; false (out "") when every byte is zero. */
bool sc_block_hash(const void *data, size_t len, char out[65]);
/* Whether s is 64 lower-case hex digits. */
bool sc_hash_valid(const char *s);

#endif
