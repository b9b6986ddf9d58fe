/* aws_chunked.c: the aws-chunked body decoder (see aws_chunked.h).
 *
 * DESIGN
 * A byte-driven state machine, so input may be split anywhere:
 *
 *   HEADER   "hex-size[;ext...]\r\n", gathered into a line buffer
 *   DATA     size bytes: signed modes hash and hold them, then check the
 *            chunk signature and hand the whole chunk to the sink; the
 *            unsigned mode passes them straight through
 *   DATA_CR / DATA_LF   the "\r\n" after the data
 *   TRAILER  after the zero-size chunk: "name:value\r\n" lines, ended by an
 *            empty line
 *   DONE     only stray CR/LF may follow
 *   FAILED   everything is refused
 *
 * Leniency, where real clients differ: a bare "\n" ends a line; extensions
 * other than chunk-signature are ignored; the signed-trailer example in the
 * AWS documentation puts an empty line between the final chunk and the
 * trailer, SDKs do not, and both are read; a trailer whose closing empty
 * line is missing at the end of the body is accepted (its lines are all
 * complete, and signed in the signed-trailer mode).
 */
#include "aws_chunked.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "checksum.h"
#include "sigv4.h"

#define MAX_HEADER_LINE 4096
#define MAX_TRAILER_BYTES 16384

enum state {
    ST_HEADER,
    ST_DATA,
    ST_DATA_CR,
    ST_DATA_LF,
    ST_TRAILER,
    ST_DONE,
    ST_FAILED,
};

struct trailer {
    char *name; /* lower case */
    char *value;
};

struct aws_chunked {
    enum aws_chunked_mode mode;
    bool is_signed;
    unsigned char key[32];
    char *amz_date;
    char *scope;
    char prev_sig[65]; /* the seed, then each verified chunk's signature */
    aws_chunked_sink sink;
    void *sink_ctx;

    enum state st;
    struct buf line;    /* the chunk header or trailer line being read */
    uint64_t remaining; /* data bytes left in the current chunk */
    char chunk_sig[65]; /* the current chunk's announced signature */
    EVP_MD_CTX *sha;    /* its running SHA-256 */
    struct buf data;    /* its bytes, signed modes */
    uint64_t decoded;

    struct trailer *trailers;
    size_t n_trailers;
    struct buf trailer_canon; /* "name:value\n" per trailer, as signed */
    char *trailer_sig;
    bool trailer_blank; /* an empty line came before any trailer line */
    size_t trailer_bytes;
};

static const char msg_incomplete[] =
    "You did not provide the number of bytes specified by the "
    "Content-Length HTTP header.";
static const char msg_mismatch[] =
    "The request signature we calculated does not match the signature you "
    "provided. Check your key and signing method.";

struct aws_chunked *aws_chunked_new(enum aws_chunked_mode mode,
                                    const unsigned char signing_key[32],
                                    const char *amz_date, const char *scope,
                                    const char *seed_signature,
                                    aws_chunked_sink sink, void *sink_ctx)
{
    bool is_signed = mode != AWS_CHUNKED_UNSIGNED_TRAILER;
    if (sink == NULL ||
        (is_signed &&
         (signing_key == NULL || amz_date == NULL || scope == NULL ||
          seed_signature == NULL || strlen(seed_signature) != 64)))
        return NULL;
    struct aws_chunked *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->mode = mode;
    d->is_signed = is_signed;
    d->sink = sink;
    d->sink_ctx = sink_ctx;
    d->st = ST_HEADER;
    if (is_signed) {
        memcpy(d->key, signing_key, 32);
        d->amz_date = strdup(amz_date);
        d->scope = strdup(scope);
        d->sha = EVP_MD_CTX_new();
        for (int i = 0; i < 64; i++)
            d->prev_sig[i] = (char)tolower((unsigned char)seed_signature[i]);
        if (d->amz_date == NULL || d->scope == NULL || d->sha == NULL) {
            aws_chunked_free(d);
            return NULL;
        }
    }
    return d;
}

void aws_chunked_free(struct aws_chunked *d)
{
    if (d == NULL)
        return;
    OPENSSL_cleanse(d->key, sizeof(d->key));
    free(d->amz_date);
    free(d->scope);
    EVP_MD_CTX_free(d->sha);
    buf_free(&d->line);
    buf_free(&d->data);
    for (size_t i = 0; i < d->n_trailers; i++) {
        free(d->trailers[i].name);
        free(d->trailers[i].value);
    }
    free(d->trailers);
    buf_free(&d->trailer_canon);
    free(d->trailer_sig);
    free(d);
}

/* Marks the decoder failed; returns -1 with *err set (first error wins, so a
 * sink's own error is kept). */
static int fail(struct aws_chunked *d, struct koala_error **err,
                const char *code, const char *msg)
{
    d->st = ST_FAILED;
    return error_set(err, EINVAL, code, "%s", msg);
}

static bool is_hex64(const char *s, size_t len)
{
    if (len != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Strips the line ending ("\r\n", or a bare "\n") of d->line. */
static void chop_line(struct buf *b)
{
    if (b->len > 0 && b->data[b->len - 1] == '\n')
        b->len--;
    if (b->len > 0 && b->data[b->len - 1] == '\r')
        b->len--;
    b->data[b->len] = '\0';
}

/* Checks the signature of the chunk whose SHA-256 is given against the one
 * its header announced, and advances the chain. */
static int check_chunk_sig(struct aws_chunked *d, const unsigned char hash[32],
                           struct koala_error **err)
{
    char want[65];
    sigv4_chunk_signature(d->key, d->amz_date, d->scope, d->prev_sig, hash,
                          want);
    if (CRYPTO_memcmp(want, d->chunk_sig, 64) != 0)
        return fail(d, err, "SignatureDoesNotMatch", msg_mismatch);
    memcpy(d->prev_sig, d->chunk_sig, 65);
    return 0;
}

/* Parses "hex-size[;name[=value]]..." (line ending already removed). */
static int parse_chunk_header(struct aws_chunked *d, struct koala_error **err)
{
    const char *p = d->line.data;
    uint64_t size = 0;
    int digits = 0;
    for (; isxdigit((unsigned char)*p); p++) {
        if (++digits > 16)
            return fail(d, err, "InvalidRequest", "chunk size is too large");
        int c = tolower((unsigned char)*p);
        size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (digits == 0 || (*p != '\0' && *p != ';'))
        return fail(d, err, "InvalidRequest",
                    "malformed aws-chunked chunk header");
    bool have_sig = false;
    while (*p == ';') {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *name = p;
        while (*p && *p != ';' && *p != '=')
            p++;
        size_t nlen = (size_t)(p - name);
        const char *value = "";
        size_t vlen = 0;
        if (*p == '=') {
            value = ++p;
            while (*p && *p != ';')
                p++;
            vlen = (size_t)(p - value);
            while (vlen > 0 &&
                   (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
                vlen--;
        }
        if (nlen == 15 && memcmp(name, "chunk-signature", 15) == 0 &&
            d->is_signed) {
            if (!is_hex64(value, vlen))
                return fail(d, err, "SignatureDoesNotMatch", msg_mismatch);
            for (int i = 0; i < 64; i++)
                d->chunk_sig[i] = (char)tolower((unsigned char)value[i]);
            d->chunk_sig[64] = '\0';
            have_sig = true;
        }
    }
    if (d->is_signed && !have_sig)
        return fail(d, err, "SignatureDoesNotMatch",
                    "A chunk of the aws-chunked body carries no "
                    "chunk-signature.");
    if (d->is_signed && size > AWS_CHUNKED_MAX_SIGNED_CHUNK)
        return fail(d, err, "InvalidRequest",
                    "An aws-chunked chunk is larger than the 16 MiB this "
                    "server accepts.");
    if (size == 0) {
        if (d->is_signed) {
            unsigned char hash[32];
            checksum_sha256("", 0, hash);
            if (check_chunk_sig(d, hash, err) < 0)
                return -1;
        }
        d->st = ST_TRAILER;
        return 0;
    }
    d->remaining = size;
    if (d->is_signed) {
        buf_reset(&d->data);
        if (EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL) != 1) {
            d->st = ST_FAILED;
            return error_set(err, ENOMEM, NULL, "SHA-256 init failed");
        }
    }
    d->st = ST_DATA;
    return 0;
}

static int deliver(struct aws_chunked *d, const char *data, size_t len,
                   struct koala_error **err)
{
    if (len == 0)
        return 0;
    if (d->sink(d->sink_ctx, data, len, err) < 0) {
        d->st = ST_FAILED;
        return error_set(err, EIO, NULL, "the aws-chunked sink failed");
    }
    d->decoded += len;
    return 0;
}

static int feed_data(struct aws_chunked *d, const char *data, size_t len,
                     struct koala_error **err)
{
    if (!d->is_signed) {
        if (deliver(d, data, len, err) < 0)
            return -1;
    } else {
        if (buf_append(&d->data, data, len) < 0) {
            d->st = ST_FAILED;
            return error_set(err, ENOMEM, NULL, "out of memory");
        }
        EVP_DigestUpdate(d->sha, data, len);
    }
    d->remaining -= len;
    if (d->remaining > 0)
        return 0;
    if (d->is_signed) {
        unsigned char hash[32];
        unsigned int n = 0;
        EVP_DigestFinal_ex(d->sha, hash, &n);
        if (check_chunk_sig(d, hash, err) < 0 ||
            deliver(d, d->data.data, d->data.len, err) < 0)
            return -1;
        buf_reset(&d->data);
    }
    d->st = ST_DATA_CR;
    return 0;
}

/* Checks the trailer signature (signed-trailer mode) and ends the body. */
static int end_trailer(struct aws_chunked *d, struct koala_error **err)
{
    if (d->mode == AWS_CHUNKED_SIGNED_TRAILER &&
        (d->n_trailers > 0 || d->trailer_sig != NULL)) {
        if (d->trailer_sig == NULL)
            return fail(d, err, "SignatureDoesNotMatch",
                        "The trailer of the aws-chunked body carries no "
                        "x-amz-trailer-signature.");
        char want[65];
        sigv4_trailer_signature(d->key, d->amz_date, d->scope, d->prev_sig,
                                d->trailer_canon.data ? d->trailer_canon.data
                                                      : "",
                                d->trailer_canon.len, want);
        if (CRYPTO_memcmp(want, d->trailer_sig, 64) != 0)
            return fail(d, err, "SignatureDoesNotMatch", msg_mismatch);
    }
    d->st = ST_DONE;
    return 0;
}

static int trailer_line(struct aws_chunked *d, struct koala_error **err)
{
    char *line = d->line.data;
    if (*line == '\0') {
        if (d->n_trailers == 0 && d->trailer_sig == NULL && !d->trailer_blank) {
            /* The end, or the empty line some writers put before the
             * trailer: finish() or the next line tells. */
            d->trailer_blank = true;
            return 0;
        }
        return end_trailer(d, err);
    }
    if (d->mode == AWS_CHUNKED_SIGNED)
        return fail(d, err, "InvalidRequest",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies carry no "
                    "trailer.");
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return fail(d, err, "InvalidRequest",
                    "malformed trailer in the aws-chunked body");
    *colon = '\0';
    char *name = str_trim(line);
    char *value = str_trim(colon + 1);
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (strcmp(name, "x-amz-trailer-signature") == 0) {
        if (d->mode != AWS_CHUNKED_SIGNED_TRAILER)
            return 0; /* nothing to check it against */
        if (d->trailer_sig != NULL || !is_hex64(value, strlen(value)))
            return fail(d, err, "SignatureDoesNotMatch", msg_mismatch);
        d->trailer_sig = strdup(value);
        if (d->trailer_sig == NULL)
            goto oom;
        for (char *p = d->trailer_sig; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        return 0;
    }
    struct trailer *nt =
        realloc(d->trailers, (d->n_trailers + 1) * sizeof(*nt));
    if (nt == NULL)
        goto oom;
    d->trailers = nt;
    nt[d->n_trailers].name = strdup(name);
    nt[d->n_trailers].value = strdup(value);
    d->n_trailers++;
    if (nt[d->n_trailers - 1].name == NULL ||
        nt[d->n_trailers - 1].value == NULL ||
        buf_printf(&d->trailer_canon, "%s:%s\n", name, value) < 0)
        goto oom;
    return 0;
oom:
    d->st = ST_FAILED;
    return error_set(err, ENOMEM, NULL, "out of memory");
}

/* Gathers a line (chunk header or trailer) from data; returns the bytes
 * used, sets *complete when the line ended. */
static size_t gather_line(struct buf *line, const char *data, size_t len,
                          bool *complete)
{
    const char *nl = memchr(data, '\n', len);
    size_t take = nl ? (size_t)(nl - data) + 1 : len;
    *complete = nl != NULL;
    if (buf_append(line, data, take) < 0)
        return (size_t)-1;
    return take;
}

int aws_chunked_feed(struct aws_chunked *d, const char *data, size_t len,
                     struct koala_error **err)
{
    if (d->st == ST_FAILED)
        return error_set(err, EINVAL, "InvalidRequest",
                         "the aws-chunked body was already rejected");
    size_t i = 0;
    while (i < len) {
        const char *p = data + i;
        size_t left = len - i;
        bool complete;
        size_t used;
        switch (d->st) {
        case ST_HEADER:
        case ST_TRAILER: {
            size_t limit =
                d->st == ST_HEADER ? MAX_HEADER_LINE : MAX_TRAILER_BYTES;
            used = gather_line(&d->line, p, left, &complete);
            if (used == (size_t)-1) {
                d->st = ST_FAILED;
                return error_set(err, ENOMEM, NULL, "out of memory");
            }
            i += used;
            if (d->st == ST_TRAILER)
                d->trailer_bytes += used;
            if ((d->st == ST_HEADER ? d->line.len : d->trailer_bytes) > limit)
                return fail(d, err, "InvalidRequest",
                            d->st == ST_HEADER
                                ? "aws-chunked chunk header too long"
                                : "aws-chunked trailer too long");
            if (!complete)
                break;
            chop_line(&d->line);
            int rc = d->st == ST_HEADER ? parse_chunk_header(d, err)
                                        : trailer_line(d, err);
            buf_reset(&d->line);
            if (rc < 0)
                return -1;
            break;
        }
        case ST_DATA:
            used = left < d->remaining ? left : (size_t)d->remaining;
            if (feed_data(d, p, used, err) < 0)
                return -1;
            i += used;
            break;
        case ST_DATA_CR:
            if (*p == '\n') { /* a bare LF */
                d->st = ST_HEADER;
            } else if (*p == '\r') {
                d->st = ST_DATA_LF;
            } else {
                return fail(d, err, "InvalidRequest",
                            "aws-chunked chunk data is not followed by "
                            "CRLF");
            }
            i++;
            break;
        case ST_DATA_LF:
            if (*p != '\n')
                return fail(d, err, "InvalidRequest",
                            "aws-chunked chunk data is not followed by "
                            "CRLF");
            d->st = ST_HEADER;
            i++;
            break;
        case ST_DONE:
            if (*p != '\r' && *p != '\n')
                return fail(d, err, "InvalidRequest",
                            "data after the end of the aws-chunked body");
            i++;
            break;
        case ST_FAILED:
            return error_set(err, EINVAL, "InvalidRequest",
                             "the aws-chunked body was already rejected");
        }
    }
    return 0;
}

int aws_chunked_finish(struct aws_chunked *d, struct koala_error **err)
{
    switch (d->st) {
    case ST_DONE:
        return 0;
    case ST_FAILED:
        return error_set(err, EINVAL, "InvalidRequest",
                         "the aws-chunked body was already rejected");
    case ST_TRAILER:
        if (d->line.len == 0 &&
            (d->trailer_blank || d->n_trailers > 0 || d->trailer_sig))
            return end_trailer(d, err);
        /* fall through */
    default:
        return fail(d, err, "IncompleteBody", msg_incomplete);
    }
}

const char *aws_chunked_trailer(const struct aws_chunked *d, const char *name)
{
    for (size_t i = 0; i < d->n_trailers; i++)
        if (strcasecmp(d->trailers[i].name, name) == 0)
            return d->trailers[i].value;
    return NULL;
}

uint64_t aws_chunked_decoded_length(const struct aws_chunked *d)
{
    return d->decoded;
}
