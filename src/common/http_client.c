/* http_client.c: see http_client.h. */
