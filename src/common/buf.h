/* buf.h: growable byte buffers and the small string helpers every module uses
 * (percent-encoding, hex, base64, time formats, cleanup attributes). */
#ifndef KOALA_BUF_H
#define KOALA_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* A growable buffer.  data is always NUL terminated (when non-NULL), so a
 * buf holding text can be used as a C string.  Zero-initialise to use. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* All return 0, or -1 when memory runs out (the buffer is then unchanged). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_append_char(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_reset(struct buf *b);  /* len = 0, keeps memory */
char *buf_steal(struct buf *b); /* caller owns; b is emptied */
void buf_free(struct buf *b);   /* frees data; b is emptied */

/* Percent-encoding as AWS signatures use it (RFC 3986 unreserved characters
 * kept, everything else %XX upper case).  When keep_slash is true '/' is kept.
 * Returns 0 / -1. */
int str_uri_encode(struct buf *out, const char *s, size_t len, bool keep_slash);
/* Decodes %XX (and '+' as space when plus_is_space).  Returns a malloc'd
 * string, or NULL on a malformed escape or a decoded NUL byte. */
char *str_uri_decode(const char *s, size_t len, bool plus_is_space);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void str_hex(const unsigned char *in, size_t len, char *out);
/* Base64 (standard alphabet, padded).  Returns malloc'd string or NULL. */
char *str_base64_encode(const unsigned char *in, size_t len);
/* Decodes into a malloc'd buffer; returns NULL when not valid base64.  The
 * output is followed by a NUL that *out_len does not count (it may hold
 * NULs of its own: binary data). */
unsigned char *str_base64_decode(const char *in, size_t *out_len);
/* Decodes a token that came back from a client (paging tokens): the
 * malloc'd text, or NULL unless it is base64 of 1..max_len bytes of UTF-8
 * without NULs. */
char *str_base64_decode_text(const char *in, size_t max_len);

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_prefix_nocase(const char *s, const char *prefix);
bool str_equal_nocase(const char *a, const char *b);
/* Strict decimal parse of the whole string; returns -1 if not a number or it
 * does not fit. */
int str_to_u64(const char *s, uint64_t *out);
int str_to_i64(const char *s, int64_t *out);
/* Trims ASCII whitespace in place, returns s moved past leading space. */
char *str_trim(char *s);
/* Valid UTF-8 check (rejects overlongs and surrogates). */
bool str_valid_utf8(const char *s, size_t len);
/* Characters (not bytes) of a string of valid UTF-8. */
size_t str_utf8_chars(const char *s);
/* "ADDR:PORT", "[IPV6]:PORT" -> *addr (malloc'd, without the brackets) and
 * *port (0..65535); -1 when malformed. */
int str_split_hostport(const char *s, char **addr, uint16_t *port);
/* "1024", "64K", "10M", "2G", "1T" (binary units) -> bytes; -1 on error. */
int str_parse_size(const char *s, uint64_t *out);

/* Time formats used by AWS: ISO8601 basic "20150830T123600Z",
 * ISO8601 extended with milliseconds "2015-08-30T12:36:00.000Z" and RFC 1123
 * "Sun, 30 Aug 2015 12:36:00 GMT".  The format_* functions write into out and
 * return out. */
char *time_format_iso8601_basic(time_t t, char out[17]);
char *time_format_iso8601(time_t t, char out[25]);
char *time_format_http(time_t t, char out[30]);
/* Parses any of the three forms above (and RFC 850 / asctime as HTTP allows);
 * returns -1 when it is not a date. */
int time_parse(const char *s, time_t *out);
/* Milliseconds: of the wall clock since the epoch (timestamps that are
 * stored), and of the monotonic clock (deadlines and ages). */
int64_t time_now_ms(void);
int64_t time_mono_ms(void);

/* Cleanup attributes. */
static inline void freep(void *p)
{
    free(*(void **)p);
}
static inline void closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void buf_freep(struct buf *b)
{
    buf_free(b);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))
#define _cleanup_close_ __attribute__((cleanup(closep)))
#define _cleanup_buf_ __attribute__((cleanup(buf_freep)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
