/* ca.c: the certificate authority on OpenSSL (see ca.h). */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

static int ssl_error(struct koala_error **err, const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[256] = "";
    if (e)
        ERR_error_string_n(e, msg, sizeof(msg));
    ERR_clear_error();
    return error_set(err, EIO, NULL, "%s: %s", what, msg[0] ? msg : "failed");
}

/* Writes a key (mode 0600) or a certificate (0644) as PEM into a new
 * file (never replacing one), durably. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *cert,
                     struct koala_error **err)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, key ? 0600 : 0644);
    if (fd < 0)
        return error_set_errno(err, "creating %s", path);
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(path);
        return error_set_errno(err, "%s", path);
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_X509(f, cert);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    fclose(f);
    if (!ok) {
        unlink(path);
        return ssl_error(err, path);
    }
    return 0;
}

static int add_ext(X509 *x, X509 *issuer, const char *name, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, name, value);
    if (e == NULL)
        return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/* A new certificate for key, named cn, valid for days; issuer NULL makes
 * it self-signed.  Extensions are added by the caller before signing. */
static X509 *new_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                      unsigned days)
{
    X509 *x = X509_new();
    unsigned char serial[16];
    if (x == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f; /* a positive INTEGER */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    if (!ok || !X509_set_version(x, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -300) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) ||
        !X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                    (const unsigned char *)"Koala", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

int ca_create(const char *dir, const char *name, unsigned days,
              struct koala_error **err)
{
    _cleanup_free_ char *cert_path = NULL, *key_path = NULL;
    if (asprintf(&cert_path, "%s/ca.pem", dir) < 0 ||
        asprintf(&key_path, "%s/ca.key", dir) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (access(cert_path, F_OK) == 0 || access(key_path, F_OK) == 0)
        return error_set(err, EEXIST, NULL, "%s already holds a CA", dir);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = key ? new_cert(name, key, NULL, days ? days : 3650) : NULL;
    int rc = -1;
    if (x == NULL || add_ext(x, x, "basicConstraints", "critical,CA:TRUE") ||
        add_ext(x, x, "keyUsage", "critical,keyCertSign,cRLSign") ||
        add_ext(x, x, "subjectKeyIdentifier", "hash") ||
        !X509_sign(x, key, EVP_sha256())) {
        ssl_error(err, "making the CA certificate");
        goto out;
    }
    if (write_pem(key_path, key, NULL, err) < 0)
        goto out;
    if (write_pem(cert_path, NULL, x, err) < 0) {
        unlink(key_path);
        goto out;
    }
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static int load_ca(const char *dir, X509 **cert, EVP_PKEY **key,
                   struct koala_error **err)
{
    _cleanup_free_ char *cert_path = NULL, *key_path = NULL;
    if (asprintf(&cert_path, "%s/ca.pem", dir) < 0 ||
        asprintf(&key_path, "%s/ca.key", dir) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    FILE *f = fopen(cert_path, "re");
    if (f == NULL)
        return error_set_errno(err, "%s", cert_path);
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (*cert == NULL)
        return ssl_error(err, cert_path);
    f = fopen(key_path, "re");
    if (f == NULL) {
        X509_free(*cert);
        *cert = NULL;
        return error_set_errno(err, "%s", key_path);
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*key == NULL) {
        X509_free(*cert);
        *cert = NULL;
        return ssl_error(err, key_path);
    }
    return 0;
}

int ca_issue(const char *ca_dir, const struct ca_request *rq,
             const char *cert_out, const char *key_out,
             struct koala_error **err)
{
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    if (rq->cn == NULL || *rq->cn == '\0')
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "a certificate needs a name");
    if (load_ca(ca_dir, &ca, &ca_key, err) < 0)
        return -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x =
        key ? new_cert(rq->cn, key, ca, rq->days ? rq->days : 3650) : NULL;
    struct buf sans = {0}, eku = {0};
    for (const char *const *s = rq->sans; s && *s; s++)
        buf_printf(&sans, "%s%s", sans.len ? "," : "", *s);
    if (rq->server)
        buf_append_str(&eku, "serverAuth");
    if (rq->client)
        buf_printf(&eku, "%sclientAuth", eku.len ? "," : "");
    int rc = -1;
    if (x == NULL || add_ext(x, ca, "basicConstraints", "critical,CA:FALSE") ||
        add_ext(x, ca, "keyUsage", "critical,digitalSignature") ||
        add_ext(x, ca, "authorityKeyIdentifier", "keyid") ||
        (eku.len && add_ext(x, ca, "extendedKeyUsage", eku.data)) ||
        (sans.len && add_ext(x, ca, "subjectAltName", sans.data)) ||
        !X509_sign(x, ca_key, EVP_sha256())) {
        ssl_error(err, "issuing a certificate");
        goto out;
    }
    if (write_pem(key_out, key, NULL, err) < 0)
        goto out;
    if (write_pem(cert_out, NULL, x, err) < 0) {
        unlink(key_out);
        goto out;
    }
    rc = 0;
out:
    buf_free(&sans);
    buf_free(&eku);
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc;
}
