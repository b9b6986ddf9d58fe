/* keypairs.c: CreateKeyPair (RSA 2048 or Ed25519, made here; the private
 * key is returned once and never stored), ImportKeyPair (an OpenSSH public
 * key), DescribeKeyPairs and DeleteKeyPair.  Fingerprints are AWS's: for
 * created RSA keys the SHA-1 of the private key's PKCS#8 DER, for imported
 * RSA keys the MD5 of the SSH public key blob (RFC 4716), for Ed25519 keys
 * the base64 SHA-256 of the blob (as ssh-keygen -l shows it). */
#define LOG_MODULE "clc"
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checksum.h"
#include "clc.h"
#include "id.h"

/* ---- SSH wire format ---- */

static int put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
    return buf_append(b, x, 4);
}

static int put_string(struct buf *b, const void *p, size_t n)
{
    return put_u32(b, (uint32_t)n) < 0 ? -1 : buf_append(b, p, n);
}

static int put_mpint(struct buf *b, const BIGNUM *bn)
{
    size_t n = (size_t)BN_num_bytes(bn);
    unsigned char *x = calloc(1, n + 1);
    if (x == NULL)
        return -1;
    BN_bn2bin(bn, x + 1);
    /* A leading zero byte keeps a set top bit from reading as negative. */
    bool pad = n > 0 && (x[1] & 0x80);
    int rc = put_string(b, pad ? x : x + 1, n + (pad ? 1 : 0));
    free(x);
    return rc;
}

/* The SSH public key blob of key ("ssh-rsa" / "ssh-ed25519"). */
static int ssh_blob(EVP_PKEY *key, struct buf *out)
{
    if (EVP_PKEY_is_a(key, "ED25519")) {
        unsigned char pub[32];
        size_t n = sizeof(pub);
        if (!EVP_PKEY_get_raw_public_key(key, pub, &n) || n != 32)
            return -1;
        return put_string(out, "ssh-ed25519", 11) < 0
                   ? -1
                   : put_string(out, pub, 32);
    }
    BIGNUM *e = NULL, *n = NULL;
    int rc = -1;
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) &&
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) &&
        put_string(out, "ssh-rsa", 7) == 0 && put_mpint(out, e) == 0 &&
        put_mpint(out, n) == 0)
        rc = 0;
    BN_free(e);
    BN_free(n);
    return rc;
}

static void hex_colons(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 3 * i, "%02x%s", d[i], i + 1 < n ? ":" : "");
}

static void sha256_b64(const struct buf *blob, char *out, size_t size)
{
    unsigned char d[32];
    checksum_sha256(blob->data, blob->len, d);
    _cleanup_free_ char *b64 = str_base64_encode(d, 32);
    snprintf(out, size, "%s", b64 ? b64 : "");
}

/* OpenSSH's own private key format, unencrypted, for Ed25519 (what ssh
 * expects; there is no PEM form of these keys it reads). */
static char *openssh_private_ed25519(EVP_PKEY *key, const struct buf *blob,
                                     const char *comment)
{
    unsigned char priv[32], pub[32];
    size_t np = 32, nq = 32;
    uint32_t check;
    if (!EVP_PKEY_get_raw_private_key(key, priv, &np) ||
        !EVP_PKEY_get_raw_public_key(key, pub, &nq) ||
        id_random_bytes(&check, sizeof(check)) < 0)
        return NULL;
    struct buf sec = {0}, all = {0};
    unsigned char both[64];
    memcpy(both, priv, 32);
    memcpy(both + 32, pub, 32);
    put_u32(&sec, check);
    put_u32(&sec, check);
    put_string(&sec, "ssh-ed25519", 11);
    put_string(&sec, pub, 32);
    put_string(&sec, both, 64);
    put_string(&sec, comment, strlen(comment));
    for (unsigned char pad = 1; sec.len % 8; pad++)
        buf_append(&sec, &pad, 1);
    buf_append(&all, "openssh-key-v1", 15); /* with its NUL */
    put_string(&all, "none", 4);
    put_string(&all, "none", 4);
    put_string(&all, "", 0);
    put_u32(&all, 1);
    put_string(&all, blob->data, blob->len);
    put_string(&all, sec.data, sec.len);
    OPENSSL_cleanse(both, sizeof(both));
    OPENSSL_cleanse(priv, sizeof(priv));
    if (sec.data)
        OPENSSL_cleanse(sec.data, sec.len);
    buf_free(&sec);
    char *b64 =
        all.data ? str_base64_encode((unsigned char *)all.data, all.len) : NULL;
    buf_free(&all);
    if (b64 == NULL)
        return NULL;
    struct buf pem = {0};
    buf_append_str(&pem, "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for (size_t i = 0, n = strlen(b64); i < n; i += 70)
        buf_printf(&pem, "%.70s\n", b64 + i);
    buf_append_str(&pem, "-----END OPENSSH PRIVATE KEY-----\n");
    OPENSSL_cleanse(b64, strlen(b64));
    free(b64);
    return buf_steal(&pem);
}

static char *pem_private_rsa(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    /* "BEGIN RSA PRIVATE KEY", the PKCS#1 form EC2 hands out. */
    if (bio && PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0,
                                                    NULL, NULL)) {
        char *p;
        long n = BIO_get_mem_data(bio, &p);
        out = strndup(p, (size_t)n);
    }
    BIO_free(bio);
    return out;
}

static int rsa_created_fingerprint(EVP_PKEY *key, char out[60])
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
    unsigned char *der = NULL;
    int n = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (n <= 0)
        return -1;
    unsigned char d[20];
    unsigned int dn = 0;
    EVP_Digest(der, (size_t)n, d, &dn, EVP_sha1(), NULL);
    OPENSSL_clear_free(der, (size_t)n);
    hex_colons(d, 20, out);
    return 0;
}

static bool key_name_valid(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 255)
        return false;
    for (const char *p = n; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return false;
    return true;
}

struct new_key {
    char id[32];
    char fingerprint[96];
    char *public_key; /* "ssh-rsa AAAA... name" (malloc'd) */
    const char *type; /* "rsa" or "ed25519" */
};

/* Sets k->public_key, the OpenSSH line of the key's blob named name. */
static int set_public_key(struct new_key *k, const struct buf *blob,
                          const char *name, struct koala_error **err)
{
    _cleanup_free_ char *b64 =
        str_base64_encode((const unsigned char *)blob->data, blob->len);
    if (b64 == NULL ||
        asprintf(&k->public_key, "%s %s %s",
                 strcmp(k->type, "rsa") == 0 ? "ssh-rsa" : "ssh-ed25519", b64,
                 name) < 0) {
        k->public_key = NULL;
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    return 0;
}

/* Stores a key pair (with its TagSpecifications) in one transaction. */
static int store_key(struct ec2_req *r, const char *name,
                     const struct new_key *k, struct koala_error **err)
{
    char owner[24], now[24];
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (db_begin(r->db, err) < 0)
        return -1;
    if (clc_exec(r->db,
                 "INSERT INTO keypairs(id, owner, name, fingerprint,"
                 " public_key, key_type, created) VALUES(?,?,?,?,?,?,?)",
                 "storing key pair", err, k->id, owner, name, k->fingerprint,
                 k->public_key, k->type, now, NULL) < 0 ||
        ec2_apply_tag_specs(r, "key-pair", k->id, err) < 0) {
        db_rollback(r->db);
        if (err && *err && (*err)->errnum == EEXIST) {
            error_clear(err);
            error_set(err, EEXIST, "InvalidKeyPair.Duplicate",
                      "The keypair '%s' already exists.", name);
        }
        return -1;
    }
    return db_commit(r->db, err);
}

static void key_reply(struct ec2_req *r, const char *action, const char *name,
                      const struct new_key *k, const char *material)
{
    struct koala_error *err = NULL;
    struct xml_writer *w = ec2_reply_start(r, action);
    xml_text_element(w, "keyName", name);
    xml_text_element(w, "keyFingerprint", k->fingerprint);
    if (material)
        xml_text_element(w, "keyMaterial", material);
    xml_text_element(w, "keyPairId", k->id);
    ec2_write_tag_set(r, w, k->id, &err);
    ec2_reply_end(r, w, err);
}

static int check_key_args(struct ec2_req *r, const char **name,
                          struct koala_error **err)
{
    static const char *const types[] = {"key-pair", NULL};
    *name = ec2_required(r, "KeyName", err);
    if (*name == NULL)
        return -1;
    if (!key_name_valid(*name))
        return error_set(err, EINVAL, "InvalidKeyPair.Format",
                         "Key pair names are 1 to 255 ASCII characters");
    return ec2_check_tag_specs(r, types, err);
}

void ec2_create_key_pair(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *name;
    if (check_key_args(r, &name, &err) < 0)
        return ec2_fail(r, err);
    const char *type = ec2_param(r, "KeyType");
    const char *format = ec2_param(r, "KeyFormat");
    bool ed = type && strcmp(type, "ed25519") == 0;
    if (type && !ed && strcmp(type, "rsa") != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Invalid KeyType '%s': rsa or ed25519", type);
        return ec2_fail(r, err);
    }
    if (format && strcmp(format, "pem") != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "KeyFormat '%s' is not supported: pem", format);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    struct new_key k = {.type = ed ? "ed25519" : "rsa"};
    EVP_PKEY *key =
        ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : EVP_RSA_gen(2048);
    struct buf blob = {0};
    char *material = NULL;
    if (key == NULL || ssh_blob(key, &blob) < 0 ||
        id_resource(k.id, sizeof(k.id), "key") < 0) {
        error_set(&err, EIO, NULL, "cannot make a key pair");
        goto out;
    }
    if (set_public_key(&k, &blob, name, &err) < 0)
        goto out;
    if (ed) {
        sha256_b64(&blob, k.fingerprint, sizeof(k.fingerprint));
        material = openssh_private_ed25519(key, &blob, name);
    } else if (rsa_created_fingerprint(key, k.fingerprint) == 0) {
        material = pem_private_rsa(key);
    }
    if (material == NULL) {
        error_set(&err, EIO, NULL, "cannot encode the key pair");
        goto out;
    }
    if (store_key(r, name, &k, &err) < 0)
        goto out;
    key_reply(r, "CreateKeyPair", name, &k, material);
out:
    if (material) {
        OPENSSL_cleanse(material, strlen(material));
        free(material);
    }
    free(k.public_key);
    buf_free(&blob);
    EVP_PKEY_free(key);
    if (err)
        ec2_fail(r, err);
}

/* Reads an SSH wire-format string at *p (of *left bytes) into *s / *n. */
static bool get_string(const unsigned char **p, size_t *left,
                       const unsigned char **s, size_t *n)
{
    if (*left < 4)
        return false;
    uint32_t len = (uint32_t)(*p)[0] << 24 | (uint32_t)(*p)[1] << 16 |
                   (uint32_t)(*p)[2] << 8 | (*p)[3];
    if (len > *left - 4)
        return false;
    *s = *p + 4;
    *n = len;
    *p += 4 + len;
    *left -= 4 + len;
    return true;
}

/* Whether blob is exactly what EC2 imports: an Ed25519 key, or an RSA key
 * of 1024 to 4096 bits, with nothing after it. */
static bool blob_valid(const char *kind, const unsigned char *blob, size_t n)
{
    const unsigned char *p = blob, *s, *e, *m;
    size_t left = n, sl, el, ml;
    if (!get_string(&p, &left, &s, &sl) || sl != strlen(kind) ||
        memcmp(s, kind, sl) != 0)
        return false;
    if (strcmp(kind, "ssh-ed25519") == 0)
        return get_string(&p, &left, &s, &sl) && sl == 32 && left == 0;
    if (!get_string(&p, &left, &e, &el) || !get_string(&p, &left, &m, &ml) ||
        left != 0 || el == 0 || ml == 0 || (e[0] & 0x80) || (m[0] & 0x80))
        return false;
    while (ml > 0 && m[0] == 0) { /* mpint sign padding */
        m++;
        ml--;
    }
    size_t bits = ml * 8;
    for (unsigned char top = ml ? m[0] : 0; top && !(top & 0x80); top <<= 1)
        bits--;
    return bits >= 1024 && bits <= 4096;
}

/* Parses "ssh-rsa AAAA... comment" (any length: nothing is cut) into its
 * type and blob. */
static int parse_openssh_public(const char *text, size_t len, const char **type,
                                struct buf *blob, struct koala_error **err)
{
    static const char ws[] = " \t\r\n";
    _cleanup_free_ char *line = strndup(text, len);
    _cleanup_free_ unsigned char *raw = NULL;
    size_t n = 0;
    if (line == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (strlen(line) != len) /* a NUL inside */
        goto bad;
    char *save = NULL;
    const char *kind = strtok_r(line, ws, &save);
    const char *b64 = kind ? strtok_r(NULL, ws, &save) : NULL;
    if (b64 == NULL)
        goto bad;
    if (strcmp(kind, "ssh-rsa") == 0)
        *type = "rsa";
    else if (strcmp(kind, "ssh-ed25519") == 0)
        *type = "ed25519";
    else
        goto bad;
    raw = str_base64_decode(b64, &n);
    if (raw == NULL || !blob_valid(kind, raw, n))
        goto bad;
    if (buf_append(blob, raw, n) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
bad:
    return error_set(err, EINVAL, "InvalidKey.Format",
                     "Key is not in valid OpenSSH public key format (an "
                     "ssh-ed25519 key, or an ssh-rsa key of 1024 to 4096 "
                     "bits)");
}

void ec2_import_key_pair(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *name, *material;
    if (check_key_args(r, &name, &err) < 0 ||
        (material = ec2_required(r, "PublicKeyMaterial", &err)) == NULL)
        return ec2_fail(r, err);
    size_t n = 0;
    _cleanup_free_ unsigned char *text = str_base64_decode(material, &n);
    struct new_key k = {0};
    struct buf blob = {0};
    if (text == NULL) {
        error_set(&err, EINVAL, "InvalidKey.Format",
                  "PublicKeyMaterial must be base64");
        return ec2_fail(r, err);
    }
    if (parse_openssh_public((char *)text, n, &k.type, &blob, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r)) {
        buf_free(&blob);
        return;
    }
    if (strcmp(k.type, "rsa") == 0) {
        unsigned char d[16];
        checksum_md5(blob.data, blob.len, d);
        hex_colons(d, 16, k.fingerprint);
    } else {
        sha256_b64(&blob, k.fingerprint, sizeof(k.fingerprint));
    }
    set_public_key(&k, &blob, name, &err);
    buf_free(&blob);
    if (!err && id_resource(k.id, sizeof(k.id), "key") < 0)
        error_set_errno(&err, "getrandom");
    if (err || store_key(r, name, &k, &err) < 0)
        ec2_fail(r, err);
    else
        key_reply(r, "ImportKeyPair", name, &k, NULL);
    free(k.public_key);
}

void ec2_describe_key_pairs(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {
        "key-name", "fingerprint", "key-pair-id", "key-type",
        "tag-key",  "tag-value",   NULL};
    struct ec2_filters fs;
    bool with_public;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_param_bool(r, "IncludePublicKey", false, &with_public, &err) < 0) {
        ec2_filters_free(&fs);
        return ec2_fail(r, err);
    }
    struct ec2_id_list names = {0}, ids = {0};
    struct xml_writer *w = NULL;
    sqlite3_stmt *st = NULL;
    if (ec2_id_list_get(r, "KeyName", &names, &err) < 0 ||
        ec2_id_list_get(r, "KeyPairId", &ids, &err) < 0 || ec2_dry_run(r))
        goto out;
    st = db_stmt(r->db,
                 "SELECT id, name, fingerprint, key_type, public_key, created"
                 " FROM keypairs WHERE owner = ? ORDER BY name",
                 &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    w = ec2_reply_start(r, "DescribeKeyPairs");
    xml_start(w, "keySet");
    /* Rows are gathered first: writing the tag sets needs the connection. */
    struct row {
        char id[32], name[256], fp[96], type[16];
        char *pub; /* any length: never cut */
        int64_t created;
    } *rows = NULL;
    size_t n_rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct row *nr = realloc(rows, (n_rows + 1) * sizeof(*nr));
        if (nr == NULL)
            break;
        rows = nr;
        struct row *x = &rows[n_rows++];
        clc_col(x->id, sizeof(x->id), st, 0);
        clc_col(x->name, sizeof(x->name), st, 1);
        clc_col(x->fp, sizeof(x->fp), st, 2);
        clc_col(x->type, sizeof(x->type), st, 3);
        const char *pub = (const char *)sqlite3_column_text(st, 4);
        x->pub = strdup(pub ? pub : "");
        if (x->pub == NULL) {
            n_rows--;
            error_set(&err, ENOMEM, NULL, "out of memory");
            break;
        }
        x->created = sqlite3_column_int64(st, 5);
    }
    db_stmt_done(st);
    st = NULL;
    for (size_t i = 0; i < n_rows && err == NULL; i++) {
        struct row *x = &rows[i];
        /* (both lists are marked, so both are evaluated) */
        bool by_name = ec2_id_list_has(&names, x->name);
        bool by_id = ec2_id_list_has(&ids, x->id);
        bool wanted = (names.n == 0 && ids.n == 0) || by_name || by_id;
        for (size_t j = 0; wanted && j < fs.n; j++) {
            const char *f = fs.f[j].name;
            const char *v = strcmp(f, "key-name") == 0      ? x->name
                            : strcmp(f, "fingerprint") == 0 ? x->fp
                            : strcmp(f, "key-type") == 0    ? x->type
                                                            : x->id;
            wanted = ec2_is_tag_filter(f) ? ec2_tag_filter(r, x->id, &fs.f[j])
                                          : ec2_filter_match(&fs.f[j], v);
        }
        if (!wanted)
            continue;
        char t[25];
        xml_start(w, "item");
        xml_text_element(w, "keyPairId", x->id);
        xml_text_element(w, "keyFingerprint", x->fp);
        xml_text_element(w, "keyName", x->name);
        xml_text_element(w, "keyType", x->type);
        xml_text_element(w, "createTime", ec2_time(x->created, t));
        if (with_public)
            xml_text_element(w, "publicKey", x->pub);
        ec2_write_tag_set(r, w, x->id, &err);
        xml_end(w);
    }
    for (size_t i = 0; i < n_rows; i++)
        free(rows[i].pub);
    free(rows);
    const char *no_name = ec2_id_list_missing(&names);
    const char *no_id = ec2_id_list_missing(&ids);
    if (err == NULL && no_name)
        error_set(&err, ENOENT, "InvalidKeyPair.NotFound",
                  "The key pair '%s' does not exist", no_name);
    else if (err == NULL && no_id)
        error_set(&err, ENOENT, "InvalidKeyPair.NotFound",
                  "The key pair ID '%s' does not exist", no_id);
out:
    ec2_id_list_free(&names);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}

void ec2_delete_key_pair(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *name = ec2_param(r, "KeyName"), *id = ec2_param(r, "KeyPairId");
    if (name == NULL && id == NULL) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter KeyName or "
                  "KeyPairId");
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    char owner[24];
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (clc_exec(r->db,
                 "DELETE FROM tags WHERE resource_id IN (SELECT id FROM"
                 " keypairs WHERE owner = ?1 AND (name = ?2 OR id = ?3))",
                 "deleting key pair tags", &err, owner, name ? name : "",
                 id ? id : "", NULL) < 0 ||
        clc_exec(r->db,
                 "DELETE FROM keypairs WHERE owner = ?1 AND"
                 " (name = ?2 OR id = ?3)",
                 "deleting key pair", &err, owner, name ? name : "",
                 id ? id : "", NULL) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    if (db_commit(r->db, &err) < 0)
        return ec2_fail(r, err);
    /* Deleting a key pair that is not there succeeds, as on EC2. */
    struct xml_writer *w = ec2_reply_start(r, "DeleteKeyPair");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}
