/* imds.h: koala-cc's instance metadata service (docs/metadata.md): what an
 * instance's metadata is beyond its record (imeta.c: parsed from the CLC's
 * messages, kept in cc.db), the tree of paths served (imds_tree.c), the
 * IMDSv2 tokens and the signed identity document (imds_token.c), and the
 * HTTP listener inside the cluster's namespace (imds.c).
 */
#ifndef KOALA_CC_IMDS_H
#define KOALA_CC_IMDS_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "cc.h"
#include "db.h"
#include "error.h"
#include "xml.h"

#define IMDS_ADDRESS "169.254.169.254"
#define IMDS_TOKEN_TTL_MAX 21600
#define IMDS_MAX_GROUPS 16
#define IMDS_WORKERS 8 /* threads answering; each holds a db connection */
#define IMDS_USERDATA_MAX (16u * 1024) /* decoded, as EC2 */

/* ---- an instance's metadata (imeta.c) ---- */
struct cc_imeta {
    char region[64];
    char *groups;           /* names, one per line; NULL: "default" */
    char http_tokens[16];   /* optional | required */
    char http_endpoint[16]; /* enabled | disabled */
    int hop_limit;          /* 1..64 */
    char tags[16];          /* enabled | disabled */
    char *user_data;        /* base64; NULL: none */
    char *key_name;         /* NULL: none */
    char *public_key;       /* OpenSSH line; NULL: none */
};

/* Defaults of an instance launched by a CLC that sent no metadata. */
void imeta_defaults(struct cc_imeta *m);
void imeta_clear(struct cc_imeta *m);
/* Parses an instanceMetadata element (cc.wsdl) into m, whose user data,
 * key name and key are kept unless the element changes them.  Bad values:
 * -1 with InvalidParameterValue, m unchanged. */
int imeta_parse(const struct xml_node *n, struct cc_imeta *m,
                struct koala_error **err);
/* Writes m as the instance's metadata (inside or outside a transaction). */
int store_imeta_put(struct db *db, const char *id, const struct cc_imeta *m,
                    struct koala_error **err);
/* 0 found, 1 none recorded (m gets the defaults), -1 error. */
int store_imeta_get(struct db *db, const char *id, struct cc_imeta *m,
                    struct koala_error **err);
/* The live instance holding address ip in network: 0, 1 none, -1. */
int store_instance_by_ip(struct db *db, const char *network, const char *ip,
                         struct cc_instance *out, struct koala_error **err);
/* SetInstanceMetadata (cc.wsdl): replies. */
void cc_op_set_instance_metadata(struct cc_req *r);

/* ---- the tree (imds_tree.c), pure ---- */
/* Everything served for one instance, computed at the request. */
struct imds_view {
    const struct cc_instance *in;
    const struct cc_imeta *meta;
    const char *zone;   /* the cluster */
    const char *subnet; /* "10.111.0.0/16" */
    const char *public_ip; /* its public address (eip.c), NULL: none */
    /* dynamic/instance-identity: the document and its signatures (NULL:
     * not served, e.g. no identity key configured). */
    const char *identity_doc;
    const char *identity_pkcs7;
    const char *identity_signature;
};

enum imds_result { IMDS_FOUND = 0, IMDS_NOT_FOUND };
/* Answers a GET of path (raw, starting with '/', query removed): a leaf's
 * bytes or a directory's listing into out, with its content type.  The
 * version list at "/", then "/latest/..." and "/<version>/...". */
enum imds_result imds_resolve(const struct imds_view *v, const char *path,
                              struct buf *out, const char **content_type);
/* The instance's private DNS name ("ip-10-111-0-5.<region>.compute.internal",
 * or ".ec2.internal" for us-east-1, as EC2 names them). */
void imds_private_dns(const char *ip, const char *region, char *out,
                      size_t size);
/* The public DNS name of a public address:
 * "ec2-198-51-100-5.<region>.compute.koala" (docs/network.md). */
void imds_public_dns(const char *ip, const char *region, char *out,
                     size_t size);
/* The identity document (JSON, malloc'd). */
char *imds_identity_document(const struct cc_instance *in,
                             const struct cc_imeta *m, const char *zone);

/* ---- tokens and signatures (imds_token.c) ---- */
#define IMDS_KEY_BYTES 32
/* Loads dir/imds.key, creating it (random, 0600, atomically) on first
 * use. */
int imds_key_load(const char *dir, unsigned char key[IMDS_KEY_BYTES],
                  struct koala_error **err);
/* A token for instance_id valid until expires (epoch seconds):
 * malloc'd text. */
char *imds_token_mint(const unsigned char key[IMDS_KEY_BYTES],
                      const char *instance_id, int64_t expires);
/* Whether token was minted with key for instance_id and has not expired
 * at now. */
bool imds_token_check(const unsigned char key[IMDS_KEY_BYTES],
                      const char *instance_id, const char *token, int64_t now);

struct imds_signer;
/* The identity key and its certificate (PEM files). */
struct imds_signer *imds_signer_load(const char *cert, const char *key,
                                     struct koala_error **err);
void imds_signer_free(struct imds_signer *s);
/* doc signed: pkcs7 (detached, DER in base64 without PEM lines, signer
 * certificate included) and signature (base64 of the key's signature over
 * SHA-256 of doc); both malloc'd.  0 / -1. */
int imds_sign(struct imds_signer *s, const char *doc, char **pkcs7,
              char **signature, struct koala_error **err);

/* ---- the listener (imds.c) ---- */
struct imds;
/* Starts serving IMDS_ADDRESS:port in the cluster's namespace (the
 * address is put on the LAN bridge by net_setup). */
struct imds *imds_start(struct cc *cc, struct koala_error **err);
void imds_stop(struct imds *s); /* NULL-safe */
/* Requests answered (for logs and tests). */
uint64_t imds_served(struct imds *s);

#endif
