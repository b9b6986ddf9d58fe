/* id.c: random identifiers from the kernel's CSPRNG (see id.h).
 *
 * getrandom(2) without flags blocks only until the pool is first seeded at
 * boot, and never returns weak bytes: ids double as unguessable names
 * (upload ids, resource ids), so a userspace PRNG will not do.  Request
 * ids only need to be unique, and every request gets one: they are a
 * random per-process prefix and a counter, without a system call. */
#include "id.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

int id_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        /* Large requests may be cut short, and a signal can interrupt. */
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static void to_hex(const unsigned char *in, size_t n, char *out,
                   const char *digits)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int id_random_hex(char *out, size_t nbytes)
{
    unsigned char chunk[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t n =
            nbytes - done < sizeof(chunk) ? nbytes - done : sizeof(chunk);
        if (id_random_bytes(chunk, n) < 0)
            return -1;
        to_hex(chunk, n, out + 2 * done, "0123456789abcdef");
        done += n;
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int id_resource(char *out, size_t out_size, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (out_size < plen + 19) {
        errno = ERANGE;
        return -1;
    }
    char hex[19];
    if (id_random_hex(hex, 9) < 0)
        return -1;
    hex[17] = '\0'; /* EC2's long ids have 17 digits */
    snprintf(out, out_size, "%s-%s", prefix, hex);
    return 0;
}

static uint32_t request_prefix;
static _Atomic uint32_t request_counter;
static pthread_once_t request_once = PTHREAD_ONCE_INIT;

static void request_init(void)
{
    uint32_t seed[2] = {0, 0};
    if (id_random_bytes(seed, sizeof(seed)) < 0)
        seed[0] = (uint32_t)getpid() * 2654435761u; /* still unique enough */
    request_prefix = seed[0];
    request_counter = seed[1];
}

int id_request(char out[17])
{
    pthread_once(&request_once, request_init);
    uint32_t n = atomic_fetch_add(&request_counter, 1);
    snprintf(out, 17, "%08X%08X", request_prefix, n);
    return 0;
}

int id_uuid(char out[37])
{
    unsigned char b[16];
    if (id_random_bytes(b, sizeof(b)) < 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    char hex[33];
    to_hex(b, sizeof(b), hex, "0123456789abcdef");
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
    return 0;
}

bool id_resource_valid(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(s, prefix, pl) != 0)
        return false;
    s += pl;
    size_t n = strspn(s, "0123456789abcdef");
    return s[n] == '\0' && (n == 8 || n == 17);
}
