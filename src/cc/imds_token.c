/* imds_token.c: IMDSv2 session tokens and the identity document's
 * signatures.
 *
 * A token is base64 of: version (1 byte), expiry (8 bytes, big-endian
 * epoch seconds), a random nonce (13 bytes) and an HMAC-SHA256 (32 bytes)
 * with the CC's key (data_dir/imds.key) over a label, the instance id and
 * the bytes before it.  No table: a token dies with its expiry, is useless
 * for another instance, and survives a restart of the CC.
 *
 * The identity document is signed with the identity key the CC is
 * configured with (a certificate issued by the cloud's CA): pkcs7 is a
 * detached PKCS#7 signature carrying the signer's certificate, so that
 * `openssl smime -verify -CAfile ca.pem` checks it against the cloud's CA;
 * signature is the key's signature over SHA-256 of the document. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imds.h"

#define TOKEN_VERSION 1
#define NONCE_BYTES 13
#define MAC_BYTES 32
#define TOKEN_BYTES (1 + 8 + NONCE_BYTES + MAC_BYTES) /* 54: no padding */

static int read_key(const char *path, unsigned char key[IMDS_KEY_BYTES],
                    struct koala_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "open %s", path);
    ssize_t n = read(fd, key, IMDS_KEY_BYTES);
    close(fd);
    if (n != IMDS_KEY_BYTES)
        return error_set(err, EINVAL, NULL, "%s: not a %d-byte key", path,
                         IMDS_KEY_BYTES);
    return 0;
}

int imds_key_load(const char *dir, unsigned char key[IMDS_KEY_BYTES],
                  struct koala_error **err)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/imds.key", dir);
    if (access(path, F_OK) == 0)
        return read_key(path, key, err);
    if (RAND_bytes(key, IMDS_KEY_BYTES) != 1)
        return error_set(err, EIO, NULL, "no random bytes for the IMDS key");
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return error_set_errno(err, "create %s", tmp);
    bool ok =
        write(fd, key, IMDS_KEY_BYTES) == IMDS_KEY_BYTES && fsync(fd) == 0;
    close(fd);
    /* link: the first writer wins; a second one reads the first's key. */
    if (!ok || (link(tmp, path) < 0 && errno != EEXIST)) {
        error_set_errno(err, "write %s", path);
        unlink(tmp);
        return -1;
    }
    unlink(tmp);
    return read_key(path, key, err);
}

static void token_mac(const unsigned char key[IMDS_KEY_BYTES], const char *id,
                      const unsigned char *head, size_t head_len,
                      unsigned char mac[MAC_BYTES])
{
    static const char label[] = "koala-imds-token";
    unsigned int len = MAC_BYTES;
    /* HMAC() over label \0 id \0 head, built in one buffer. */
    unsigned char msg[sizeof(label) + 64 + 1 + 64];
    size_t n = 0, il = strnlen(id, 63);
    memcpy(msg, label, sizeof(label));
    n += sizeof(label);
    memcpy(msg + n, id, il);
    n += il;
    msg[n++] = '\0';
    memcpy(msg + n, head, head_len);
    n += head_len;
    HMAC(EVP_sha256(), key, IMDS_KEY_BYTES, msg, n, mac, &len);
}

char *imds_token_mint(const unsigned char key[IMDS_KEY_BYTES],
                      const char *instance_id, int64_t expires)
{
    unsigned char t[TOKEN_BYTES];
    t[0] = TOKEN_VERSION;
    for (int i = 0; i < 8; i++)
        t[1 + i] = (unsigned char)((uint64_t)expires >> (56 - 8 * i));
    if (RAND_bytes(t + 9, NONCE_BYTES) != 1)
        return NULL;
    token_mac(key, instance_id, t, 9 + NONCE_BYTES, t + 9 + NONCE_BYTES);
    return str_base64_encode(t, sizeof(t));
}

bool imds_token_check(const unsigned char key[IMDS_KEY_BYTES],
                      const char *instance_id, const char *token, int64_t now)
{
    if (token == NULL || strlen(token) != (TOKEN_BYTES / 3) * 4)
        return false;
    size_t n = 0;
    unsigned char *t = str_base64_decode(token, &n);
    bool ok = false;
    if (t && n == TOKEN_BYTES && t[0] == TOKEN_VERSION) {
        uint64_t exp = 0;
        for (int i = 0; i < 8; i++)
            exp = exp << 8 | t[1 + i];
        unsigned char mac[MAC_BYTES];
        token_mac(key, instance_id, t, 9 + NONCE_BYTES, mac);
        ok = CRYPTO_memcmp(mac, t + 9 + NONCE_BYTES, MAC_BYTES) == 0 &&
             (int64_t)exp > now;
    }
    free(t);
    return ok;
}

struct imds_signer {
    X509 *cert;
    EVP_PKEY *key;
};

struct imds_signer *imds_signer_load(const char *cert, const char *key,
                                     struct koala_error **err)
{
    struct imds_signer *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    FILE *f = fopen(cert, "re");
    if (f) {
        s->cert = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    if ((f = fopen(key, "re"))) {
        s->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (s->cert == NULL || s->key == NULL ||
        X509_check_private_key(s->cert, s->key) != 1) {
        error_set(err, EINVAL, "InvalidConfiguration",
                  "identity certificate %s and key %s: not a readable PEM "
                  "certificate with its key",
                  cert, key);
        imds_signer_free(s);
        return NULL;
    }
    return s;
}

void imds_signer_free(struct imds_signer *s)
{
    if (s == NULL)
        return;
    X509_free(s->cert);
    EVP_PKEY_free(s->key);
    free(s);
}

/* Base64 in lines of 64, as EC2 serves its signatures. */
static char *base64_lines(const unsigned char *der, size_t len)
{
    _cleanup_free_ char *flat = str_base64_encode(der, len);
    if (flat == NULL)
        return NULL;
    struct buf b = {0};
    size_t n = strlen(flat);
    for (size_t i = 0; i < n; i += 64)
        buf_printf(&b, "%s%.*s", i ? "\n" : "", (int)(n - i < 64 ? n - i : 64),
                   flat + i);
    return buf_steal(&b);
}

int imds_sign(struct imds_signer *s, const char *doc, char **pkcs7,
              char **signature, struct koala_error **err)
{
    *pkcs7 = *signature = NULL;
    size_t len = strlen(doc);
    BIO *in = BIO_new_mem_buf(doc, (int)len);
    PKCS7 *p7 = in ? PKCS7_sign(s->cert, s->key, NULL, in,
                                PKCS7_DETACHED | PKCS7_BINARY)
                   : NULL;
    BIO_free(in);
    unsigned char *der = NULL;
    int der_len = p7 ? i2d_PKCS7(p7, &der) : -1;
    PKCS7_free(p7);
    if (der_len > 0)
        *pkcs7 = base64_lines(der, (size_t)der_len);
    OPENSSL_free(der);

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[512];
    size_t sig_len = sizeof(sig);
    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->key) == 1 &&
        EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)doc, len) == 1)
        *signature = base64_lines(sig, sig_len);
    EVP_MD_CTX_free(md);
    if (*pkcs7 == NULL || *signature == NULL) {
        free(*pkcs7);
        free(*signature);
        *pkcs7 = *signature = NULL;
        return error_set(err, EIO, NULL, "signing the identity document");
    }
    return 0;
}
