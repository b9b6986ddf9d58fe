/* checksum.h: streaming digests of request and object bodies: MD5 (ETags,
 * Content-MD5), SHA-1, SHA-256 (SigV4 payload hashes), CRC32 and CRC32C
 * (x-amz-checksum-*).  One object computes one algorithm; feed it any number
 * of times, then finish once. */
#ifndef KOALA_CHECKSUM_H
#define KOALA_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

enum checksum_alg {
    CHECKSUM_MD5,
    CHECKSUM_SHA1,
    CHECKSUM_SHA256,
    CHECKSUM_CRC32,
    CHECKSUM_CRC32C,
};

#define CHECKSUM_MAX_LEN 32 /* bytes of the longest digest (SHA-256) */

struct checksum; /* opaque */

struct checksum *checksum_new(enum checksum_alg alg);
void checksum_update(struct checksum *c, const void *data, size_t len);
/* Writes the raw digest (big-endian for the CRCs, as S3 encodes them) and
 * returns its length.  The object may not be updated afterwards. */
size_t checksum_final(struct checksum *c, unsigned char out[CHECKSUM_MAX_LEN]);
void checksum_free(struct checksum *c);

/* "crc32" / "CRC32" / "crc32c" / "sha1" / "sha256" / "md5" -> alg; -1 if
 * unknown. */
int checksum_alg_parse(const char *name, enum checksum_alg *out);
/* Lower-case S3 name: "crc32", "crc32c", "sha1", "sha256", "md5". */
const char *checksum_alg_name(enum checksum_alg alg);
size_t checksum_alg_len(enum checksum_alg alg);

/* One-shot helpers. */
void checksum_sha256(const void *data, size_t len, unsigned char out[32]);
void checksum_sha256_hex(const void *data, size_t len, char out[65]);
void checksum_md5(const void *data, size_t len, unsigned char out[16]);
uint32_t checksum_crc32c_update(uint32_t crc, const void *data, size_t len);

static inline void checksum_freep(struct checksum **c)
{
    checksum_free(*c);
}
#define _cleanup_checksum_ __attribute__((cleanup(checksum_freep)))

#endif
