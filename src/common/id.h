/* id.h: identifiers: random hex, request ids, and AWS-style resource ids
 * ("i-0a1b2c3d4e5f60718", "vol-...", "ami-...") from the kernel's CSPRNG. */
#ifndef KOALA_ID_H
#define KOALA_ID_H

#include <stdbool.h>
#include <stddef.h>

/* Fills buf with n random bytes (getrandom); 0 / -1. */
int id_random_bytes(void *buf, size_t n);
/* 2*nbytes lower-case hex characters + NUL into out. */
int id_random_hex(char *out, size_t nbytes);
/* "prefix-" + 17 hex digits (EC2's long ids) into out (size >= strlen(prefix)
 * + 19). */
int id_resource(char *out, size_t out_size, const char *prefix);
/* Whether s is a resource id of that prefix ("i-"): the prefix and 8 or 17
 * lower-case hex digits, nothing else. */
bool id_resource_valid(const char *s, const char *prefix);
/* 16 upper-case hex characters, as S3's x-amz-request-id, into out[17]. */
int id_request(char out[17]);
/* RFC 4122 version 4 UUID, lower case, into out[37]. */
int id_uuid(char out[37]);

#endif
