/* sigv2.c: see sigv2.h. */
