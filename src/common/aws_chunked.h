/* aws_chunked.h: a streaming decoder for the "aws-chunked" content encoding
 * that S3 clients use for streamed uploads:
 *
 *   hex-size[;chunk-signature=sig]\r\n data \r\n ...
 * 0[;chunk-signature=sig]\r\n [trailer-name:value\r\n ...
 * [x-amz-trailer-signature:sig\r\n]] \r\n
 *
 * It is fed the HTTP body in pieces of any size (as they arrive from the
 * network, split anywhere) and hands the payload bytes, never the framing, to
 * a sink.  In the signed modes it checks each chunk's signature, chained from
 * the seed (request) signature, before any of the chunk's bytes reach the
 * sink, so a forged chunk never gets stored.
 *
 * Memory: a chunk's signature can only be checked once all of its bytes are
 * in, so in the signed modes the decoder holds the current chunk (hashing it
 * as it arrives) and hands it to the sink in one call once it verifies.
 * Clients send 64 KiB (aws-cli, boto3) to 1 MiB chunks; a signed chunk
 * declared larger than AWS_CHUNKED_MAX_SIGNED_CHUNK is refused.  The unsigned
 * mode holds no data: bytes go to the sink as they arrive.  Besides that it
 * keeps one chunk header line (at most 4 KiB) and the trailer (at most
 * 16 KiB).
 */
#ifndef KOALA_AWS_CHUNKED_H
#define KOALA_AWS_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The largest chunk accepted in the signed modes (held in memory). */
#define AWS_CHUNKED_MAX_SIGNED_CHUNK (16u * 1024 * 1024)

enum aws_chunked_mode {
    AWS_CHUNKED_SIGNED,         /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
    AWS_CHUNKED_SIGNED_TRAILER, /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    AWS_CHUNKED_UNSIGNED_TRAILER /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
};

/* Receives decoded payload bytes; returns 0, or -1 to abort (with *err set). */
typedef int (*aws_chunked_sink)(void *ctx, const char *data, size_t len,
                                struct koala_error **err);

struct aws_chunked;

/* For the signed modes, signing_key/amz_date/scope/seed_signature come from
 * the verified request (see sigv4.h); they are copied.  For the unsigned mode
 * they may be NULL.  A chunk (other than the last) smaller than 8 KiB is
 * accepted (clients do send them). */
struct aws_chunked *aws_chunked_new(enum aws_chunked_mode mode,
                                    const unsigned char signing_key[32],
                                    const char *amz_date, const char *scope,
                                    const char *seed_signature,
                                    aws_chunked_sink sink, void *sink_ctx);
void aws_chunked_free(struct aws_chunked *d);

/* Feeds body bytes.  Errors (err->code): "IncompleteBody" / "InvalidRequest"
 * for bad framing, "SignatureDoesNotMatch" for a bad chunk or trailer
 * signature, or whatever the sink reported.  After an error the decoder
 * refuses further input. */
int aws_chunked_feed(struct aws_chunked *d, const char *data, size_t len,
                     struct koala_error **err);
/* At the end of the body: checks that the final chunk and the trailer (if the
 * mode has one) arrived complete ("IncompleteBody" otherwise). */
int aws_chunked_finish(struct aws_chunked *d, struct koala_error **err);

/* After finish: the value of a trailer header (lower-case name, e.g.
 * "x-amz-checksum-crc32"), or NULL. */
const char *aws_chunked_trailer(const struct aws_chunked *d, const char *name);
/* Payload bytes delivered so far (x-amz-decoded-content-length check). */
uint64_t aws_chunked_decoded_length(const struct aws_chunked *d);

#endif
