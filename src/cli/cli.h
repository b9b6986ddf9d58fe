/* cli.h: the koala command's subcommands, one file each (main.c parses
 * the command line and calls them). */
#ifndef KOALA_CLI_H
#define KOALA_CLI_H

#include "error.h"

/* cloud.c: the CLC's side (DIR is the cloud's data directory). */
int cli_init(const char *dir, const char *admin, struct koala_error **err);
int cli_account_create(const char *dir, const char *name,
                       struct koala_error **err);
int cli_register(const char *dir, const char *kind, const char *name,
                 const char *endpoint, const char *cluster,
                 struct koala_error **err);
int cli_services(const char *dir, struct koala_error **err);
/* Each cluster's public pool and how much of it is in use. */
int cli_addresses(const char *dir, struct koala_error **err);
/* cli_register without the report on stdout. */
int cli_register_quiet(const char *dir, const char *kind, const char *name,
                       const char *endpoint, const char *cluster,
                       struct koala_error **err);

/* up.c: the all-in-one cloud on this host. */
int cli_up(const char *dir, const char *image_dir, struct koala_error **err);
int cli_down(const char *dir, struct koala_error **err);

#endif
