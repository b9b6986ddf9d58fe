/* checksum.c: see checksum.h. */
