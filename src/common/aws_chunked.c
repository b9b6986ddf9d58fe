/* aws_chunked.c: see aws_chunked.h. */
