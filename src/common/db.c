/* db.c: see db.h. */
