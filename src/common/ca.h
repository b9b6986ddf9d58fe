/* ca.h: the cloud's own certificate authority.  `koala init` makes it;
 * registering a component issues that component a certificate signed by
 * it; components talk to each other only over mutual TLS with such
 * certificates (see ARCHITECTURE.md).
 *
 * Keys are ECDSA P-256, certificates X.509 v3 with SHA-256, written as PEM.
 * Private keys are created 0600 and never leave the host that made them:
 * the CA's key stays with the CLC.
 */
#ifndef KOALA_CA_H
#define KOALA_CA_H

#include <stdbool.h>

#include "error.h"

/* Creates DIR/ca.pem and DIR/ca.key (DIR must exist; existing files are
 * not overwritten: EEXIST). */
int ca_create(const char *dir, const char *name, unsigned days,
              struct koala_error **err);

struct ca_request {
    const char *cn;          /* subject common name: "koala-nc", "cc-zone1" */
    const char *const *sans; /* NULL-terminated "IP:127.0.0.1", "DNS:host" */
    bool server;             /* extendedKeyUsage serverAuth */
    bool client;             /* extendedKeyUsage clientAuth */
    unsigned days;           /* validity; 0: 3650 */
};

/* Issues a certificate for a new key, signed by the CA in ca_dir; writes
 * cert_out (PEM) and key_out (PEM, 0600). */
int ca_issue(const char *ca_dir, const struct ca_request *rq,
             const char *cert_out, const char *key_out,
             struct koala_error **err);

#endif
