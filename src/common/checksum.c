/* checksum.c: streaming digests (see checksum.h).
 *
 * MD5, SHA-1 and SHA-256 go through OpenSSL's EVP interface; CRC32 is zlib's.
 * CRC32C (Castagnoli) has no library on Debian we could lean on, so it lives
 * here: the SSE 4.2 crc32 instruction where the CPU has it (picked at run time,
 * so one binary runs everywhere), else slice-by-8 tables.  It hashes whole
 * uploads, so its speed matters: the instruction gives several GB/s, the
 * tables about a third of that.
 */
#include "checksum.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define CRC32C_HW 1
#endif

struct checksum {
    enum checksum_alg alg;
    EVP_MD_CTX *md; /* the EVP algorithms */
    uint32_t crc;   /* the CRCs: the running value, zlib convention */
    bool done;
    unsigned char digest[CHECKSUM_MAX_LEN]; /* kept after final */
};

/* ---- CRC32C ---- */

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
        crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc32c_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = crc32c_table[0][c & 0xFF] ^ (c >> 8);
            crc32c_table[t][i] = c;
        }
    }
}

static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* unaligned-safe; a plain load on x86 */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Slice-by-8 on the inverted register (no pre/post inversion here). */
static uint32_t crc32c_sw(uint32_t c, const unsigned char *p, size_t len)
{
    pthread_once(&crc32c_once, crc32c_init_tables);
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t v = load_le64(p) ^ c;
        c = crc32c_table[7][v & 0xFF] ^ crc32c_table[6][(v >> 8) & 0xFF] ^
            crc32c_table[5][(v >> 16) & 0xFF] ^
            crc32c_table[4][(v >> 24) & 0xFF] ^
            crc32c_table[3][(v >> 32) & 0xFF] ^
            crc32c_table[2][(v >> 40) & 0xFF] ^
            crc32c_table[1][(v >> 48) & 0xFF] ^ crc32c_table[0][v >> 56];
        p += 8;
        len -= 8;
    }
    while (len-- > 0)
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#ifdef CRC32C_HW
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t c, const unsigned char *p, size_t len)
{
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8(c, *p++);
        len--;
    }
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len-- > 0)
        c = _mm_crc32_u8(c, *p++);
    return c;
}

static bool have_sse42(void)
{
    static int cached = -1; /* a benign race: every thread computes the same */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}
#endif

uint32_t checksum_crc32c_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t c = ~crc;
    if (len == 0)
        return crc;
#ifdef CRC32C_HW
    if (have_sse42())
        return ~crc32c_hw(c, p, len);
#endif
    return ~crc32c_sw(c, p, len);
}

/* ---- the object ---- */

static const EVP_MD *alg_md(enum checksum_alg alg)
{
    switch (alg) {
    case CHECKSUM_MD5:
        return EVP_md5();
    case CHECKSUM_SHA1:
        return EVP_sha1();
    case CHECKSUM_SHA256:
        return EVP_sha256();
    default:
        return NULL;
    }
}

struct checksum *checksum_new(enum checksum_alg alg)
{
    if (alg < CHECKSUM_MD5 || alg > CHECKSUM_CRC32C)
        return NULL;
    struct checksum *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->alg = alg;
    const EVP_MD *md = alg_md(alg);
    if (md != NULL) {
        c->md = EVP_MD_CTX_new();
        if (c->md == NULL || EVP_DigestInit_ex(c->md, md, NULL) != 1) {
            checksum_free(c);
            return NULL;
        }
    }
    return c;
}

void checksum_update(struct checksum *c, const void *data, size_t len)
{
    if (c == NULL || c->done || len == 0)
        return;
    switch (c->alg) {
    case CHECKSUM_CRC32:
        c->crc = (uint32_t)crc32_z(c->crc, data, len);
        break;
    case CHECKSUM_CRC32C:
        c->crc = checksum_crc32c_update(c->crc, data, len);
        break;
    default:
        EVP_DigestUpdate(c->md, data, len);
        break;
    }
}

size_t checksum_final(struct checksum *c, unsigned char out[CHECKSUM_MAX_LEN])
{
    size_t n = checksum_alg_len(c->alg);
    if (!c->done) {
        if (c->md != NULL) {
            unsigned int len = 0;
            EVP_DigestFinal_ex(c->md, c->digest, &len);
        } else {
            c->digest[0] = (unsigned char)(c->crc >> 24);
            c->digest[1] = (unsigned char)(c->crc >> 16);
            c->digest[2] = (unsigned char)(c->crc >> 8);
            c->digest[3] = (unsigned char)c->crc;
        }
        c->done = true;
    }
    memcpy(out, c->digest, n);
    return n;
}

void checksum_free(struct checksum *c)
{
    if (c == NULL)
        return;
    EVP_MD_CTX_free(c->md);
    free(c);
}

/* ---- names ---- */

static const struct {
    const char *name;
    enum checksum_alg alg;
    size_t len;
} algs[] = {
    {"md5", CHECKSUM_MD5, 16},       {"sha1", CHECKSUM_SHA1, 20},
    {"sha256", CHECKSUM_SHA256, 32}, {"crc32", CHECKSUM_CRC32, 4},
    {"crc32c", CHECKSUM_CRC32C, 4},
};

int checksum_alg_parse(const char *name, enum checksum_alg *out)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strcasecmp(name, algs[i].name) == 0) {
            *out = algs[i].alg;
            return 0;
        }
    }
    return -1;
}

const char *checksum_alg_name(enum checksum_alg alg)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (algs[i].alg == alg)
            return algs[i].name;
    return "";
}

size_t checksum_alg_len(enum checksum_alg alg)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (algs[i].alg == alg)
            return algs[i].len;
    return 0;
}

/* ---- one-shot helpers ---- */

void checksum_sha256(const void *data, size_t len, unsigned char out[32])
{
    EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}

void checksum_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    checksum_sha256(data, len, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

void checksum_md5(const void *data, size_t len, unsigned char out[16])
{
    EVP_Digest(data, len, out, NULL, EVP_md5(), NULL);
}
