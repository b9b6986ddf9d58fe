/* id.c: see id.h. */
