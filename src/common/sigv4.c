/* sigv4.c: see sigv4.h. */
