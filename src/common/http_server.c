/* http_server.c: see http_server.h. */
