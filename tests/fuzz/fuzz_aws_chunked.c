/* fuzz_aws_chunked.c: libFuzzer target for the aws-chunked body decoder
 * and its trailers (src/common/aws_chunked.h).
 *
 * Input: byte 0 chooses the mode (bits 0-1: signed, signed with trailer,
 * unsigned with trailer) and whether the target re-signs the body (bit 2);
 * bytes 1-4 seed the sizes of the pieces the body is fed in (as a network
 * would split it, from one byte to a few KiB); the rest is the body.
 *
 * A fuzzer cannot forge HMACs, so in the signed modes most inputs would
 * stop at the first chunk's signature.  With bit 2 set the target first
 * walks the body's framing itself and writes the right signature over each
 * "chunk-signature=<64 chars>" and "x-amz-trailer-signature:<64 chars>" it
 * finds, so the decoder's later states (data, trailers, the trailer
 * signature) are reached in the signed modes too. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws_chunked.h"
#include "buf.h"
#include "checksum.h"
#include "sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"
#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char key[32];

static int sink(void *ctx, const char *data, size_t len,
                struct koala_error **err)
{
    uint64_t *total = ctx;
    if (len > 0) { /* touch every byte: ASan sees a bad pointer */
        volatile char c = data[0];
        c = data[len - 1];
        (void)c;
    }
    *total += len;
    return 0;
}

static const char *find_in(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0)
            return s + i;
    return NULL;
}

/* Writes the right signatures over the trailer's signature line. */
static void resign_trailer(char *b, size_t n, size_t p, const char *prev)
{
    struct buf canon = {0};
    char *sig_at = NULL;
    bool first = true;
    while (p < n) {
        char *nl = memchr(b + p, '\n', n - p);
        size_t e = nl ? (size_t)(nl - b) : n;
        size_t le = e;
        if (le > p && b[le - 1] == '\r')
            le--;
        if (le == p) {
            if (!first)
                break;
            first = false;
            p = e + 1;
            continue;
        }
        first = false;
        char *colon = memchr(b + p, ':', le - p);
        if (colon && colon != b + p) {
            size_t ns = p, ne = (size_t)(colon - b);
            while (ns < ne && isspace((unsigned char)b[ns]))
                ns++;
            while (ne > ns && isspace((unsigned char)b[ne - 1]))
                ne--;
            size_t vs = (size_t)(colon - b) + 1, ve = le;
            while (vs < ve && isspace((unsigned char)b[vs]))
                vs++;
            while (ve > vs && isspace((unsigned char)b[ve - 1]))
                ve--;
            static const char sig_name[] = "x-amz-trailer-signature";
            if (ne - ns == sizeof(sig_name) - 1 &&
                strncasecmp(b + ns, sig_name, ne - ns) == 0) {
                if (ve - vs == 64)
                    sig_at = b + vs;
            } else {
                for (size_t i = ns; i < ne; i++)
                    buf_append_char(&canon, (char)tolower((unsigned char)b[i]));
                buf_append(&canon, ":", 1);
                buf_append(&canon, b + vs, ve - vs);
                buf_append(&canon, "\n", 1);
            }
        }
        if (nl == NULL)
            break;
        p = e + 1;
    }
    if (sig_at) {
        char sig[65];
        sigv4_trailer_signature(key, AMZ_DATE, SCOPE, prev,
                                canon.data ? canon.data : "", canon.len, sig);
        memcpy(sig_at, sig, 64);
    }
    buf_free(&canon);
}

/* Writes the right chunk signatures into the body, as a client would. */
static void resign(char *b, size_t n, bool trailer)
{
    char prev[65] = SEED;
    size_t p = 0;
    while (p < n) {
        char *nl = memchr(b + p, '\n', n - p);
        if (nl == NULL)
            return;
        size_t line_len = (size_t)(nl - (b + p));
        uint64_t size = 0;
        int digits = 0;
        for (size_t i = p; i < p + line_len && isxdigit((unsigned char)b[i]);
             i++) {
            if (++digits > 16)
                return;
            int c = tolower((unsigned char)b[i]);
            size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        if (digits == 0)
            return;
        const char *s = find_in(b + p, line_len, "chunk-signature=");
        char *sig_at = NULL;
        if (s && (size_t)(nl - s) >= 16 + 64)
            sig_at = (char *)s + 16;
        size_t start = (size_t)(nl - b) + 1;
        if (size > n - start)
            return; /* incomplete: never checked */
        unsigned char hash[32];
        checksum_sha256(b + start, (size_t)size, hash);
        if (sig_at) {
            char sig[65];
            sigv4_chunk_signature(key, AMZ_DATE, SCOPE, prev, hash, sig);
            memcpy(sig_at, sig, 64);
            memcpy(prev, sig, 65);
        }
        if (size == 0) {
            if (trailer)
                resign_trailer(b, n, start, prev);
            return;
        }
        p = start + (size_t)size;
        if (p < n && b[p] == '\r')
            p++;
        if (p < n && b[p] == '\n')
            p++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        sigv4_signing_key(SECRET, "20130524", "us-east-1", "s3", key);
        init = true;
    }
    if (size < 5)
        return 0;
    enum aws_chunked_mode mode = (data[0] & 3) == 0 ? AWS_CHUNKED_SIGNED
                                 : (data[0] & 3) == 1
                                     ? AWS_CHUNKED_SIGNED_TRAILER
                                     : AWS_CHUNKED_UNSIGNED_TRAILER;
    uint32_t rnd = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
                   (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
    rnd |= 1;
    size_t n = size - 5;
    char *body = malloc(n ? n : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data + 5, n);
    if ((data[0] & 4) && mode != AWS_CHUNKED_UNSIGNED_TRAILER)
        resign(body, n, mode == AWS_CHUNKED_SIGNED_TRAILER);

    uint64_t total = 0;
    struct aws_chunked *d =
        aws_chunked_new(mode, key, AMZ_DATE, SCOPE, SEED, sink, &total);
    if (d == NULL) {
        free(body);
        return 0;
    }
    struct koala_error *err = NULL;
    size_t off = 0;
    int rc = 0;
    while (off < n && rc == 0) {
        rnd ^= rnd << 13; /* xorshift32 */
        rnd ^= rnd >> 17;
        rnd ^= rnd << 5;
        size_t piece =
            (rnd & 0xff) < 192 ? 1 + (rnd >> 8) % 16 : 1 + (rnd >> 8) % 4096;
        if (piece > n - off)
            piece = n - off;
        /* Each piece in its own buffer, as from the network: a read past
         * a piece's end is a bug even when the next bytes would follow. */
        char *copy = malloc(piece);
        if (copy == NULL)
            break;
        memcpy(copy, body + off, piece);
        rc = aws_chunked_feed(d, copy, piece, &err);
        free(copy);
        off += piece;
    }
    if (rc == 0 && aws_chunked_finish(d, &err) == 0) {
        static const char *const names[] = {
            "x-amz-checksum-crc32",    "x-amz-checksum-crc32c",
            "x-amz-checksum-sha1",     "x-amz-checksum-sha256",
            "x-amz-trailer-signature", "",
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            (void)aws_chunked_trailer(d, names[i]);
        if (aws_chunked_decoded_length(d) != total)
            abort(); /* the decoder miscounted what it delivered */
    }
    error_free(err);
    aws_chunked_free(d);
    free(body);
    return 0;
}
