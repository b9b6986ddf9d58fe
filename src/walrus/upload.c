/* upload.c: the body of PutObject and UploadPart, streamed to a blob file.
 *
 * The pipeline: the raw HTTP body -> aws-chunked decoding (when the client
 * streams, with chunk signature checks) -> digests (MD5 for the ETag, the
 * payload SHA-256 when signed, the declared x-amz-checksum-* algorithm) ->
 * the blob writer.  Every declared digest is checked at the end, before the
 * blob is made durable and long before it becomes visible; a mismatch
 * leaves nothing behind.
 *
 * DESIGN (large bodies): the connection's thread is an event loop thread
 * serving many connections, so it must not wait for the disk; and MD5,
 * which S3's ETag requires, runs at about the speed the network delivers.
 * Once a body passes UPLOAD_PIPELINE_AFTER bytes, a worker thread of the
 * upload's own takes over digesting and writing: the event loop only copies
 * the body into a ring of UPLOAD_STAGES buffers of UPLOAD_STAGE_SIZE bytes.
 * When the ring has no room for a piece, upload_feed takes none of it and
 * the body pauses (http_server's backpressure) until the worker frees a
 * buffer and resumes it.  Memory per upload is bounded by the ring; the
 * body is never held whole.  (A burst larger than the ring, which only
 * the aws-chunked decoder can produce with huge signed chunks, waits for
 * the worker instead.)
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "aws_chunked.h"
#include "log.h"
#include "walrus.h"

#define UPLOAD_PIPELINE_AFTER (2u << 20)
#define UPLOAD_STAGE_SIZE (1u << 20)
#define UPLOAD_STAGES 4

/* The worker and its ring (see DESIGN).  Stages are used in ring order:
 * the receiver fills stage `fill`, the worker processes from `next`; the
 * n_full stages from `next` on are the worker's, the rest the receiver's.
 * mu guards n_full, have_fill, want_resume, finishing, stop and err. */
struct pipeline {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct http_request *http; /* to resume a paused body */
    char *stage[UPLOAD_STAGES];
    size_t stage_len[UPLOAD_STAGES];
    unsigned fill; /* receiver: the stage being filled, if have_fill */
    bool have_fill;
    unsigned next;           /* worker: the next stage to process */
    unsigned n_full;         /* stages handed to the worker */
    bool want_resume;        /* the body paused for room */
    bool finishing;          /* no more stages will come */
    bool stop;               /* abandon the work (the request failed) */
    struct koala_error *err; /* the worker's failure */
};

struct upload {
    struct blob_writer blob;
    uint64_t received; /* payload bytes accepted (the receiver's count) */
    struct pipeline *pipe;
    struct http_request *http;
    bool blob_open;
    struct aws_chunked *chunked;
    bool has_trailer; /* a -TRAILER streaming mode */
    bool has_decoded_length;
    uint64_t decoded_length;
    uint64_t limit;
    struct checksum *md5;
    struct checksum *payload_sha256; /* raw body, signed non-streaming */
    struct checksum *sum;            /* x-amz-checksum-* algorithm */
    enum checksum_alg sum_alg;
    char *sum_expected; /* base64, from a header; NULL: trailer */
    char *sum_trailer;  /* trailer name carrying it */
    unsigned char content_md5[16];
    bool has_content_md5;
    char etag[33];
    char sum_value[64];
    /* Encryption at rest (sse.c): the bytes are ciphered on their way to
     * the blob writer, so no plaintext reaches a file or the database. */
    struct sse_key sse;
    struct sse_ctr *ctr;
    unsigned char *scratch;
};

#define UPLOAD_CIPHER_STEP (64u * 1024)

/* Digests and writes a piece of the payload (on whichever thread owns
 * the digests and the blob writer at the time). */
static int consume(struct upload *u, const char *data, size_t len,
                   struct koala_error **err)
{
    checksum_update(u->md5, data, len);
    if (u->sum)
        checksum_update(u->sum, data, len);
    if (u->ctr == NULL)
        return blob_writer_write(&u->blob, data, len, err);
    while (len > 0) {
        size_t step = len < UPLOAD_CIPHER_STEP ? len : UPLOAD_CIPHER_STEP;
        if (sse_ctr_apply(u->ctr, data, u->scratch, step) < 0)
            return error_set(err, EIO, NULL, "encryption failed");
        if (blob_writer_write(&u->blob, u->scratch, step, err) < 0)
            return -1;
        data += step;
        len -= step;
    }
    return 0;
}

static void *pipeline_main(void *arg)
{
    struct upload *u = arg;
    struct pipeline *p = u->pipe;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->n_full == 0 && !p->finishing && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop || p->n_full == 0)
            break;
        unsigned i = p->next;
        pthread_mutex_unlock(&p->mu);
        struct koala_error *e = NULL;
        consume(u, p->stage[i], p->stage_len[i], &e);
        pthread_mutex_lock(&p->mu);
        p->next = (i + 1) % UPLOAD_STAGES;
        p->n_full--;
        p->err = e;
        pthread_cond_broadcast(&p->cv);
        bool resume = p->want_resume;
        p->want_resume = false;
        if (resume) {
            /* The request cannot end while its body is paused, so it is
             * still there to resume. */
            pthread_mutex_unlock(&p->mu);
            http_request_resume(p->http);
            pthread_mutex_lock(&p->mu);
        }
        if (e)
            break;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int pipeline_start(struct upload *u, struct koala_error **err)
{
    struct pipeline *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (unsigned i = 0; i < UPLOAD_STAGES; i++)
        if ((p->stage[i] = malloc(UPLOAD_STAGE_SIZE)) == NULL) {
            for (unsigned j = 0; j < i; j++)
                free(p->stage[j]);
            free(p);
            return error_set(err, ENOMEM, NULL, "out of memory");
        }
    p->http = u->http;
    p->have_fill = true;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    u->pipe = p;
    if (pthread_create(&p->thread, NULL, pipeline_main, u) != 0) {
        u->pipe = NULL;
        for (unsigned i = 0; i < UPLOAD_STAGES; i++)
            free(p->stage[i]);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return error_set(err, EAGAIN, NULL, "cannot start upload worker");
    }
    return 0;
}

/* The worker's error, copied into *err; -1, or 0 if it has none.  Called
 * with p->mu held. */
static int worker_failed(struct pipeline *p, struct koala_error **err)
{
    if (p->err == NULL)
        return 0;
    return error_set(err, p->err->errnum, p->err->code, "%s",
                     error_message(p->err));
}

/* Room for len bytes without waiting?  If not, asks the worker to resume
 * the body once it freed a stage.  -1 when the worker failed. */
static int pipeline_room(struct pipeline *p, size_t len,
                         struct koala_error **err)
{
    pthread_mutex_lock(&p->mu);
    int rc = worker_failed(p, err);
    if (rc == 0) {
        size_t room =
            (p->have_fill ? UPLOAD_STAGE_SIZE - p->stage_len[p->fill] : 0) +
            (size_t)(UPLOAD_STAGES - p->n_full - p->have_fill) *
                UPLOAD_STAGE_SIZE;
        rc = room >= len;
        p->want_resume = rc == 0;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int pipeline_feed(struct upload *u, const char *data, size_t len,
                         struct koala_error **err)
{
    struct pipeline *p = u->pipe;
    while (len > 0) {
        if (!p->have_fill) {
            /* The stage after the last one handed over is free once the
             * worker holds fewer than all of them. */
            pthread_mutex_lock(&p->mu);
            while (p->n_full == UPLOAD_STAGES && p->err == NULL)
                pthread_cond_wait(&p->cv, &p->mu);
            int rc = worker_failed(p, err);
            if (rc == 0) {
                p->fill = (p->fill + 1) % UPLOAD_STAGES;
                p->stage_len[p->fill] = 0;
                p->have_fill = true;
            }
            pthread_mutex_unlock(&p->mu);
            if (rc < 0)
                return -1;
        }
        size_t *used = &p->stage_len[p->fill];
        size_t n =
            UPLOAD_STAGE_SIZE - *used < len ? UPLOAD_STAGE_SIZE - *used : len;
        memcpy(p->stage[p->fill] + *used, data, n);
        *used += n;
        data += n;
        len -= n;
        if (*used == UPLOAD_STAGE_SIZE) {
            pthread_mutex_lock(&p->mu);
            p->n_full++;
            p->have_fill = false;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return 0;
}

/* Ends the worker: with finish, after it processed everything (its error,
 * if any, is returned); without, as soon as it can (the request failed).
 * Afterwards the digests and the blob writer are the caller's again. */
static int pipeline_end(struct upload *u, bool finish, struct koala_error **err)
{
    struct pipeline *p = u->pipe;
    if (p == NULL)
        return 0;
    pthread_mutex_lock(&p->mu);
    if (finish && p->have_fill && p->stage_len[p->fill] > 0) {
        p->n_full++; /* the last, partly filled stage */
        p->have_fill = false;
    }
    p->finishing = true;
    p->stop = !finish;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    int rc = 0;
    if (p->err) {
        rc = finish ? worker_failed(p, err) : -1;
        error_free(p->err);
    }
    for (unsigned i = 0; i < UPLOAD_STAGES; i++)
        free(p->stage[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    u->pipe = NULL;
    return rc;
}

static int deliver(void *ctx, const char *data, size_t len,
                   struct koala_error **err)
{
    struct upload *u = ctx;
    if (u->received + len > u->limit)
        return error_set(err, EFBIG, "EntityTooLarge",
                         "Your proposed upload exceeds the maximum allowed "
                         "size");
    u->received += len;
    if (u->pipe == NULL && u->received > UPLOAD_PIPELINE_AFTER &&
        pipeline_start(u, err) < 0)
        return -1;
    if (u->pipe) /* everything from here on goes through the ring */
        return pipeline_feed(u, data, len, err);
    return consume(u, data, len, err);
}

void upload_free(struct upload *u)
{
    if (u == NULL)
        return;
    pipeline_end(u, false, NULL);
    if (u->blob_open)
        blob_writer_abort(&u->blob);
    else
        buf_free(&u->blob.pending); /* published inline data */
    aws_chunked_free(u->chunked);
    checksum_free(u->md5);
    sse_ctr_free(u->ctr);
    free(u->scratch);
    OPENSSL_cleanse(&u->sse, sizeof(u->sse));
    checksum_free(u->payload_sha256);
    checksum_free(u->sum);
    free(u->sum_expected);
    free(u->sum_trailer);
    free(u);
}

/* Finds the declared x-amz-checksum-<alg>: a header with the value, or
 * x-amz-trailer naming the trailer that will carry it. */
static int setup_checksum(struct s3_req *r, struct upload *u,
                          struct koala_error **err)
{
    static const char *const algs[] = {"crc32", "crc32c", "sha1", "sha256"};
    int found = 0;
    for (size_t i = 0; i < ARRAY_SIZE(algs); i++) {
        char name[32];
        snprintf(name, sizeof(name), "x-amz-checksum-%s", algs[i]);
        const char *v = s3_header(r, name);
        if (v == NULL)
            continue;
        if (found++)
            return error_set(err, EINVAL, "InvalidRequest",
                             "Expecting a single x-amz-checksum- header. "
                             "Multiple checksum Types are not allowed.");
        checksum_alg_parse(algs[i], &u->sum_alg);
        u->sum_expected = strdup(v);
    }
    const char *trailer = s3_header(r, "x-amz-trailer");
    if (trailer) {
        char *t = strdup(trailer);
        if (t == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        char *name = str_trim(t);
        for (char *p = name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        enum checksum_alg alg;
        if (!str_has_prefix(name, "x-amz-checksum-") ||
            checksum_alg_parse(name + 15, &alg) < 0 || alg == CHECKSUM_MD5 ||
            found++ || u->chunked == NULL || !u->has_trailer) {
            free(t);
            return error_set(err, EINVAL, "InvalidRequest",
                             "The value specified in the x-amz-trailer header "
                             "is not supported");
        }
        u->sum_alg = alg;
        u->sum_trailer = strdup(name);
        free(t);
    }
    const char *sdk = s3_header(r, "x-amz-sdk-checksum-algorithm");
    if (sdk && !found) {
        enum checksum_alg alg;
        if (checksum_alg_parse(sdk, &alg) < 0 || alg == CHECKSUM_MD5)
            return error_set(err, EINVAL, "InvalidRequest",
                             "Value for x-amz-sdk-checksum-algorithm header "
                             "is invalid.");
        /* Declared but with no value to check: compute and store it. */
        u->sum_alg = alg;
        found = 1;
    }
    if (found) {
        u->sum = checksum_new(u->sum_alg);
        if (u->sum == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
    }
    return 0;
}

static int setup_chunked(struct s3_req *r, struct upload *u,
                         struct koala_error **err)
{
    const char *ph = r->have_v4 ? r->v4.payload_hash : NULL;
    if (ph == NULL || !str_has_prefix(ph, "STREAMING-"))
        return 0;
    enum aws_chunked_mode mode;
    if (strcmp(ph, SIGV4_STREAMING_PAYLOAD) == 0)
        mode = AWS_CHUNKED_SIGNED;
    else if (strcmp(ph, SIGV4_STREAMING_PAYLOAD_TRAILER) == 0)
        mode = AWS_CHUNKED_SIGNED_TRAILER;
    else
        mode = AWS_CHUNKED_UNSIGNED_TRAILER;
    u->has_trailer = mode != AWS_CHUNKED_SIGNED;
    const char *dl = s3_header(r, "x-amz-decoded-content-length");
    if (dl) {
        if (str_to_u64(dl, &u->decoded_length) < 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "Invalid x-amz-decoded-content-length.");
        u->has_decoded_length = true;
        if (u->decoded_length > u->limit)
            return error_set(err, EFBIG, "EntityTooLarge",
                             "Your proposed upload exceeds the maximum "
                             "allowed size");
    } else if (mode == AWS_CHUNKED_SIGNED) {
        return error_set(err, EINVAL, "MissingContentLength",
                         "You must provide the Content-Length HTTP header.");
    }
    _cleanup_free_ char *scope = sigv4_scope(&r->v4);
    if (scope == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    u->chunked = aws_chunked_new(mode, r->signing_key, r->v4.amz_date, scope,
                                 r->v4.signature, deliver, u);
    if (u->chunked == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

int upload_begin(struct s3_req *r, struct koala_error **err)
{
    struct upload *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    r->upload = u;
    u->http = r->http;
    u->limit = WALRUS_MAX_PUT;
    uint64_t clen;
    bool has_len = http_request_content_length(r->http, &clen);
    const char *te = s3_header(r, "Transfer-Encoding");
    if (!has_len && !(te && strcasestr(te, "chunked")))
        return error_set(err, EINVAL, "MissingContentLength",
                         "You must provide the Content-Length HTTP header.");
    if (setup_chunked(r, u, err) < 0)
        return -1;
    if (has_len && u->chunked == NULL && clen > u->limit)
        return error_set(err, EFBIG, "EntityTooLarge",
                         "Your proposed upload exceeds the maximum allowed "
                         "size");
    const char *md5 = s3_header(r, "Content-MD5");
    if (md5) {
        size_t n = 0;
        unsigned char *raw = str_base64_decode(md5, &n);
        if (raw == NULL || n != 16) {
            free(raw);
            return error_set(err, EINVAL, "InvalidDigest",
                             "The Content-MD5 you specified was invalid.");
        }
        memcpy(u->content_md5, raw, 16);
        u->has_content_md5 = true;
        free(raw);
    }
    if (setup_checksum(r, u, err) < 0)
        return -1;
    u->md5 = checksum_new(CHECKSUM_MD5);
    if (u->md5 == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    /* The raw body's SHA-256 is checked by server.c for XML bodies; for
     * uploads it is ours, unless the body is aws-chunked. */
    if (r->body_sha256 && u->chunked == NULL) {
        u->payload_sha256 = r->body_sha256;
        r->body_sha256 = NULL;
    }
    if ((r->op == OP_PUT_OBJECT && r->put && r->put->sse.mode != SSE_NONE) ||
        (r->op == OP_UPLOAD_PART && r->sse_part)) {
        if (r->sse_part)
            u->sse = *r->sse_part; /* a part: no segments to own */
        else if (sse_seal(r->w, &r->put->sse, &u->sse, err) < 0)
            return -1;
        u->ctr = sse_ctr_new(&u->sse, 0);
        u->scratch = malloc(UPLOAD_CIPHER_STEP);
        if (u->ctr == NULL || u->scratch == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
    }
    /* A part is always a file: completing concatenates files. */
    if (blob_writer_open(r->w, &u->blob, r->op == OP_PUT_OBJECT, err) < 0)
        return -1;
    u->blob_open = true;
    return 0;
}

ssize_t upload_feed(struct s3_req *r, const char *data, size_t len,
                    struct koala_error **err)
{
    struct upload *u = r->upload;
    if (u->pipe) {
        /* A piece decodes to at most its own size: if it fits, the whole
         * of it can be taken; if not, none (the body pauses). */
        int room = pipeline_room(u->pipe, len, err);
        if (room <= 0)
            return room;
    }
    if (u->payload_sha256)
        checksum_update(u->payload_sha256, data, len);
    int rc = u->chunked ? aws_chunked_feed(u->chunked, data, len, err)
                        : deliver(u, data, len, err);
    return rc < 0 ? -1 : (ssize_t)len;
}

static int check_sum(struct upload *u, const char *expected,
                     struct koala_error **err)
{
    unsigned char d[CHECKSUM_MAX_LEN];
    size_t n = checksum_final(u->sum, d);
    checksum_free(u->sum);
    u->sum = NULL;
    _cleanup_free_ char *b64 = str_base64_encode(d, n);
    if (b64 == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    snprintf(u->sum_value, sizeof(u->sum_value), "%s", b64);
    if (expected && strcmp(expected, b64) != 0) {
        const char *name = checksum_alg_name(u->sum_alg);
        char upper[16];
        size_t i;
        for (i = 0; name[i] && i < sizeof(upper) - 1; i++)
            upper[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32
                                                               : name[i]);
        upper[i] = '\0';
        return error_set(err, EINVAL, "BadDigest",
                         "The %s you specified did not match the calculated "
                         "checksum.",
                         upper);
    }
    return 0;
}

int upload_finish(struct s3_req *r, struct koala_error **err)
{
    struct upload *u = r->upload;
    unsigned char d[CHECKSUM_MAX_LEN];
    if (u->chunked) {
        if (aws_chunked_finish(u->chunked, err) < 0)
            return -1;
        if (u->has_decoded_length &&
            aws_chunked_decoded_length(u->chunked) != u->decoded_length)
            return error_set(err, EINVAL, "IncompleteBody",
                             "You did not provide the number of bytes "
                             "specified by the x-amz-decoded-content-length "
                             "header.");
    }
    if (pipeline_end(u, true, err) < 0)
        return -1;
    if (u->payload_sha256) {
        char hex[65];
        checksum_final(u->payload_sha256, d);
        str_hex(d, 32, hex);
        if (strcasecmp(hex, r->v4.payload_hash) != 0)
            return error_set(err, EINVAL, "XAmzContentSHA256Mismatch",
                             "The provided 'x-amz-content-sha256' header "
                             "does not match what was computed.");
    }
    checksum_final(u->md5, d);
    str_hex(d, 16, u->etag);
    if (u->has_content_md5 && memcmp(d, u->content_md5, 16) != 0)
        return error_set(err, EINVAL, "BadDigest",
                         "The Content-MD5 you specified did not match what "
                         "we received.");
    if (u->sum) {
        const char *expected = u->sum_expected;
        if (u->sum_trailer) {
            expected = aws_chunked_trailer(u->chunked, u->sum_trailer);
            if (expected == NULL)
                return error_set(err, EINVAL, "InvalidRequest",
                                 "The trailer %s was declared but not sent.",
                                 u->sum_trailer);
        }
        if (check_sum(u, expected, err) < 0)
            return -1;
    }
    return blob_writer_sync(&u->blob, err);
}

struct blob_writer *upload_blob(struct s3_req *r)
{
    return &r->upload->blob;
}

const char *upload_etag(struct s3_req *r)
{
    return r->upload->etag;
}

void upload_checksum(struct s3_req *r, const char **alg, const char **value)
{
    struct upload *u = r->upload;
    bool have = u->sum_value[0] != '\0';
    *alg = have ? checksum_alg_name(u->sum_alg) : "";
    *value = have ? u->sum_value : "";
}

const struct sse_key *upload_sse(struct s3_req *r)
{
    return &r->upload->sse;
}

void upload_published(struct s3_req *r)
{
    r->upload->blob_open = false;
}
