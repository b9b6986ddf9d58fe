/* xml.c: see xml.h. */
