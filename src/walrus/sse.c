/* sse.c: server-side encryption at rest (docs/walrus.md, "Encryption").
 *
 * Every encrypted object has its own 256-bit data key and a random 128-bit
 * IV; its bytes are AES-256-CTR under them, in the blob file or the inline
 * row alike.  CTR keeps the ciphertext the plaintext's length and lets any
 * byte be deciphered alone (the counter of byte n is IV + n/16), so ranges,
 * partNumber reads and the sizes every other file relies on stay as they
 * are.  What the object row keeps (objects.sse, "" when not encrypted):
 *   SSE-S3  "S3:<kv>:<nonce>:<wrapped key>:<tag>:<iv>"  the data key under
 *           master key version kv (AES-256-GCM, so a wrong or damaged key
 *           file is detected rather than deciphering to garbage);
 *   SSE-C   "C:<iv>:<salt>:<hmac>:<key md5>"  the data key is the
 *           customer's and is never stored: only HMAC-SHA256(salt, key),
 *           which proves a later key is the same one.
 * A multipart object appends "|<iv1>,<iv2>,...": each part was ciphered
 * with an IV of its own (it was uploaded before its offset was known), so
 * the cipher switches IV where a part ends (the parts' sizes say where).
 * Master keys live in DATA/sse-master.keys or the sse_key_file setting
 * (mode 0600, made at first start), one "<version> <64 hex>" a line; the
 * highest version wraps new keys, every listed one still unwraps.
 * Rotating is appending a line (docs/walrus.md).
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "log.h"
#include "walrus.h"

#define SSE_MAX_MASTER 256
#define SSE_WRAP_AAD "koala-walrus sse-s3 data key v1"

struct sse_master {
    unsigned version;
    unsigned char key[32];
};

struct sse_keys {
    size_t n;
    struct sse_master k[SSE_MAX_MASTER];
    size_t newest; /* index of the highest version */
};

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex(const char *in, size_t len, unsigned char *out, size_t n)
{
    if (len != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = in[2 * i + (size_t)j];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* The first master key: written to a temporary file, fsynced, renamed
 * into place and the directory fsynced, so that no object is ever wrapped
 * with a key a crash could still take back (nor an empty file left). */
static int create_key_file(const char *dir, const char *path,
                           struct koala_error **err)
{
    unsigned char k[32];
    char line[96], h[65];
    if (RAND_bytes(k, sizeof(k)) != 1)
        return error_set(err, EIO, NULL, "RAND_bytes failed");
    hex(k, sizeof(k), h);
    OPENSSL_cleanse(k, sizeof(k));
    int n = snprintf(line, sizeof(line), "1 %s\n", h);
    OPENSSL_cleanse(h, sizeof(h));
    _cleanup_free_ char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) {
        tmp = NULL;
        OPENSSL_cleanse(line, sizeof(line));
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && fchmod(fd, 0600) == 0 &&
              write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    OPENSSL_cleanse(line, sizeof(line));
    if (fd >= 0 && close(fd) < 0)
        ok = false;
    if (!ok || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return error_set_errno(err, "writing %s", path);
    }
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        return error_set_errno(err, "fsync %s", dir);
    log_info("created SSE master key file %s (version 1)", path);
    return 0;
}

int sse_keys_load(struct walrus *w, struct koala_error **err)
{
    _cleanup_free_ char *path = NULL, *dir = NULL;
    const char *given = w->opt.sse_key_file;
    if (given && *given)
        path = strdup(given);
    else if (asprintf(&path, "%s/sse-master.keys", w->data_dir) < 0)
        path = NULL;
    if (path && (dir = strdup(path)) != NULL) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, strlen(dir) + 1, ".");
        else if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    if (path == NULL || dir == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (access(path, F_OK) != 0 && create_key_file(dir, path, err) < 0)
        return -1;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return error_set_errno(err, "opening %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || (st.st_mode & 077) != 0) {
        fclose(f);
        return error_set(err, EPERM, NULL,
                         "%s must be readable by its owner only (chmod 600)",
                         path);
    }
    struct sse_keys *ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        fclose(f);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    char line[256];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        char *h = end;
        while (*h == ' ' || *h == '\t')
            h++;
        size_t hl = strcspn(h, " \t\r\n");
        if (end == p || v == 0 || v > 1000000 || ks->n == SSE_MAX_MASTER ||
            unhex(h, hl, ks->k[ks->n].key, 32) < 0) {
            rc = error_set(err, EINVAL, NULL,
                           "%s: bad line (want \"<version> <64 hex>\")",
                           path);
            break;
        }
        for (size_t i = 0; i < ks->n; i++)
            if (ks->k[i].version == v)
                rc = error_set(err, EINVAL, NULL,
                               "%s: version %lu given twice", path, v);
        ks->k[ks->n].version = (unsigned)v;
        if (ks->n == 0 || v > ks->k[ks->newest].version)
            ks->newest = ks->n;
        ks->n++;
    }
    OPENSSL_cleanse(line, sizeof(line));
    fclose(f);
    if (rc == 0 && ks->n == 0)
        rc = error_set(err, EINVAL, NULL, "%s holds no key", path);
    if (rc < 0) {
        OPENSSL_cleanse(ks, sizeof(*ks));
        free(ks);
        return -1;
    }
    w->sse = ks;
    log_info("SSE master keys: %zu, wrapping with version %u", ks->n,
             ks->k[ks->newest].version);
    return 0;
}

void sse_keys_free(struct walrus *w)
{
    if (w->sse) {
        OPENSSL_cleanse(w->sse, sizeof(*w->sse));
        free(w->sse);
        w->sse = NULL;
    }
}

/* ---- what a request asks for ---- */

static int bad_arg(struct koala_error **err, const char *msg)
{
    return error_set(err, EINVAL, "InvalidArgument", "%s", msg);
}

static const char *sse_header(struct s3_req *r, bool source,
                              const char *name)
{
    char full[96];
    snprintf(full, sizeof(full), "%s%s", source ? "x-amz-copy-source-" : "x-amz-",
             name);
    return s3_header(r, full);
}

int sse_from_request(struct s3_req *r, enum sse_use use, struct sse_request *q,
                     struct koala_error **err)
{
    bool source = use == SSE_USE_SOURCE;
    return sse_from_values(
        source ? NULL : s3_header(r, "x-amz-server-side-encryption"),
        sse_header(r, source, "server-side-encryption-customer-algorithm"),
        sse_header(r, source, "server-side-encryption-customer-key"),
        sse_header(r, source, "server-side-encryption-customer-key-MD5"),
        use == SSE_USE_WRITE, q, err);
}

int sse_from_values(const char *mode, const char *alg, const char *key,
                    const char *md5, bool write, struct sse_request *q,
                    struct koala_error **err)
{
    memset(q, 0, sizeof(*q));
    if (mode && !write)
        return bad_arg(err, "x-amz-server-side-encryption header is not "
                            "supported for this operation.");
    if (mode && (alg || key || md5))
        return bad_arg(err, "Server Side Encryption with Customer provided "
                            "key is incompatible with the encryption method "
                            "specified");
    if (mode) {
        if (strcmp(mode, "aws:kms") == 0 || strcmp(mode, "aws:kms:dsse") == 0)
            return error_set(err, ENOTSUP, "NotImplemented",
                             "SSE-KMS is not available: Koala has no KMS; "
                             "use AES256.");
        if (strcmp(mode, "AES256") != 0)
            return bad_arg(err, "The encryption method specified is not "
                                "supported");
        q->mode = SSE_S3;
        return 0;
    }
    if (!alg && !key && !md5)
        return 0;
    if (!alg)
        return bad_arg(err, "Requests specifying Server Side Encryption with "
                            "Customer provided keys must provide a valid "
                            "encryption algorithm.");
    if (strcmp(alg, "AES256") != 0)
        return error_set(err, EINVAL, "InvalidEncryptionAlgorithmError",
                         "The encryption request you specified is not valid. "
                         "The valid value is AES256.");
    if (!key)
        return bad_arg(err, "Requests specifying Server Side Encryption with "
                            "Customer provided keys must provide an "
                            "appropriate secret key.");
    if (!md5)
        return bad_arg(err, "Requests specifying Server Side Encryption with "
                            "Customer provided keys must provide the "
                            "client calculated MD5 of the secret key.");
    size_t n = 0;
    unsigned char *raw = str_base64_decode(key, &n);
    if (raw == NULL || n != 32) {
        if (raw)
            OPENSSL_cleanse(raw, n);
        free(raw);
        return bad_arg(err, "The secret key was invalid for the specified "
                            "algorithm.");
    }
    memcpy(q->key, raw, 32);
    OPENSSL_cleanse(raw, n);
    free(raw);
    unsigned char d[16];
    if (EVP_Digest(q->key, 32, d, NULL, EVP_md5(), NULL) != 1)
        return error_set(err, EIO, NULL, "MD5 failed");
    _cleanup_free_ char *want = str_base64_encode(d, 16);
    if (want == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (strcmp(want, md5) != 0) {
        OPENSSL_cleanse(q->key, 32);
        return bad_arg(err, "The calculated MD5 hash of the key did not "
                            "match the hash that was provided.");
    }
    snprintf(q->key_md5, sizeof(q->key_md5), "%s", want);
    q->mode = SSE_C;
    return 0;
}

/* ---- sealing and opening a data key ---- */

static int key_hmac(const unsigned char key[32], const unsigned char salt[16],
                    unsigned char out[32])
{
    unsigned int n = 32;
    return HMAC(EVP_sha256(), salt, 16, key, 32, out, &n) ? 0 : -1;
}

static int gcm(bool enc, const unsigned char mk[32], const unsigned char *nonce,
               const unsigned char *in, unsigned char *out,
               unsigned char tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c != NULL &&
                    EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, mk, nonce,
                                      enc) == 1 &&
                    EVP_CipherUpdate(c, NULL, &n,
                                     (const unsigned char *)SSE_WRAP_AAD,
                                     (int)strlen(SSE_WRAP_AAD)) == 1 &&
                    EVP_CipherUpdate(c, out, &n, in, 32) == 1 &&
                    (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
                                                tag) == 1) &&
                    EVP_CipherFinal_ex(c, out + n, &n) == 1 &&
                    (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16,
                                                 tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

int sse_seal(struct walrus *w, const struct sse_request *q,
             struct sse_key *k, struct koala_error **err)
{
    memset(k, 0, sizeof(*k));
    if (q->mode == SSE_NONE)
        return 0;
    char ivh[33];
    if (RAND_bytes(k->iv, 16) != 1)
        return error_set(err, EIO, NULL, "RAND_bytes failed");
    hex(k->iv, 16, ivh);
    k->mode = q->mode;
    if (q->mode == SSE_C) {
        unsigned char salt[16], mac[32];
        char sh[33], mh[65];
        memcpy(k->dk, q->key, 32);
        if (RAND_bytes(salt, 16) != 1 || key_hmac(q->key, salt, mac) < 0)
            return error_set(err, EIO, NULL, "RAND_bytes/HMAC failed");
        hex(salt, 16, sh);
        hex(mac, 32, mh);
        snprintf(k->desc, sizeof(k->desc), "C:%s:%s:%s:%s", ivh, sh, mh,
                 q->key_md5);
        snprintf(k->key_md5, sizeof(k->key_md5), "%s", q->key_md5);
        return 0;
    }
    const struct sse_master *m = &w->sse->k[w->sse->newest];
    unsigned char nonce[12], wrapped[32], tag[16];
    char nh[25], wh[65], th[33];
    if (RAND_bytes(k->dk, 32) != 1 || RAND_bytes(nonce, 12) != 1 ||
        gcm(true, m->key, nonce, k->dk, wrapped, tag) < 0)
        return error_set(err, EIO, NULL, "wrapping a data key failed");
    hex(nonce, 12, nh);
    hex(wrapped, 32, wh);
    hex(tag, 16, th);
    snprintf(k->desc, sizeof(k->desc), "S3:%u:%s:%s:%s:%s", m->version, nh, wh,
             th, ivh);
    return 0;
}

static int fields(char *s, char **f, int n)
{
    int i = 0;
    for (char *save = NULL, *t = strtok_r(s, ":", &save); t && i < n;
         t = strtok_r(NULL, ":", &save))
        f[i++] = t;
    return i;
}

void sse_key_clear(struct sse_key *k)
{
    free(k->seg_start);
    free(k->seg_iv);
    OPENSSL_cleanse(k, sizeof(*k));
}

int sse_new_iv(struct sse_key *k, struct koala_error **err)
{
    return RAND_bytes(k->iv, 16) == 1
               ? 0
               : error_set(err, EIO, NULL, "RAND_bytes failed");
}

void sse_iv_hex(const struct sse_key *k, char out[33])
{
    hex(k->iv, 16, out);
}

int sse_part_open(struct s3_req *r, const char *upload_desc,
                  struct koala_error **err)
{
    struct sse_request q;
    struct sse_key k;
    if (r->sse_part) {
        sse_key_clear(r->sse_part);
        free(r->sse_part);
        r->sse_part = NULL;
    }
    int rc = sse_from_request(r, SSE_USE_READ, &q, err);
    if (rc == 0)
        rc = sse_open(r->w, upload_desc, NULL, &q, &k, err);
    OPENSSL_cleanse(&q, sizeof(q));
    if (rc < 0)
        return -1;
    if (k.mode == SSE_NONE)
        return 0;
    /* Every part gets its own IV: a part uploaded again under the same
     * number must not reuse the keystream of the bytes it replaces. */
    if (sse_new_iv(&k, err) < 0) {
        sse_key_clear(&k);
        return -1;
    }
    if ((r->sse_part = malloc(sizeof(k))) == NULL) {
        sse_key_clear(&k);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    *r->sse_part = k;
    return 0;
}

void sse_reply_record(struct s3_req *r, const char *desc)
{
    struct sse_key k = {0};
    if (strncmp(desc, "S3:", 3) == 0) {
        k.mode = SSE_S3;
    } else if (strncmp(desc, "C:", 2) == 0) {
        const char *md5 = desc;
        for (int i = 0; i < 4 && md5; i++)
            md5 = strchr(md5 + 1, ':');
        k.mode = SSE_C;
        snprintf(k.key_md5, sizeof(k.key_md5), "%.*s",
                 md5 ? (int)strcspn(md5 + 1, "|") : 0, md5 ? md5 + 1 : "");
    }
    sse_reply_headers(r, &k);
}

/* "<record>|iv1,iv2,..." of a multipart object: part i's IV, from where
 * part i starts (part_sizes: "n1,n2,..."). */
static int open_segments(const char *ivs, const char *part_sizes,
                         struct sse_key *k, struct koala_error **err)
{
    size_t n = 1;
    for (const char *p = ivs; *p; p++)
        n += *p == ',';
    k->seg_start = calloc(n, sizeof(*k->seg_start));
    k->seg_iv = calloc(n, sizeof(*k->seg_iv));
    if (k->seg_start == NULL || k->seg_iv == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    const char *p = ivs, *q = part_sizes ? part_sizes : "";
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        char *end;
        unsigned long long sz = strtoull(q, &end, 10);
        if (unhex(p, len, k->seg_iv[i], 16) < 0 || end == q)
            return error_set(err, EIO, NULL, "bad SSE part record");
        k->seg_start[i] = at;
        at += sz;
        p += len + (p[len] == ',');
        q = *end == ',' ? end + 1 : end;
    }
    k->n_seg = n;
    return 0;
}

static int open_key(struct walrus *w, const char *desc, const char *part_sizes,
                    const struct sse_request *q, struct sse_key *k,
                    struct koala_error **err)
{
    if (desc == NULL)
        desc = "";
    bool is_c = strncmp(desc, "C:", 2) == 0;
    if (!is_c && q->mode == SSE_C)
        return error_set(err, EINVAL, "InvalidRequest",
                         "The encryption parameters are not applicable to "
                         "this object.");
    if (desc[0] == '\0')
        return 0;
    char copy[sizeof(k->desc)];
    size_t dl = strcspn(desc, "|");
    if (dl >= sizeof(copy))
        return error_set(err, EIO, NULL, "bad SSE record");
    memcpy(copy, desc, dl);
    copy[dl] = '\0';
    if (desc[dl] == '|' && open_segments(desc + dl + 1, part_sizes, k, err) < 0)
        return -1;
    char *f[6];
    int n = fields(copy, f, 6);
    if (is_c) {
        unsigned char salt[16], mac[32], got[32];
        if (q->mode != SSE_C)
            return error_set(err, EINVAL, "InvalidRequest",
                             "The object was stored using a form of Server "
                             "Side Encryption. The correct parameters must "
                             "be provided to retrieve the object.");
        if (n != 5 || unhex(f[1], strlen(f[1]), k->iv, 16) < 0 ||
            unhex(f[2], strlen(f[2]), salt, 16) < 0 ||
            unhex(f[3], strlen(f[3]), mac, 32) < 0)
            return error_set(err, EIO, NULL, "bad SSE-C record");
        if (key_hmac(q->key, salt, got) < 0 || CRYPTO_memcmp(got, mac, 32))
            return error_set(err, EACCES, "AccessDenied",
                             "The provided encryption key does not match the "
                             "key the object was stored with.");
        memcpy(k->dk, q->key, 32);
        snprintf(k->key_md5, sizeof(k->key_md5), "%s", f[4]);
        k->mode = SSE_C;
        return 0;
    }
    unsigned char nonce[12], wrapped[32], tag[16];
    unsigned long v = n == 6 ? strtoul(f[1], NULL, 10) : 0;
    if (n != 6 || strcmp(f[0], "S3") != 0 ||
        unhex(f[2], strlen(f[2]), nonce, 12) < 0 ||
        unhex(f[3], strlen(f[3]), wrapped, 32) < 0 ||
        unhex(f[4], strlen(f[4]), tag, 16) < 0 ||
        unhex(f[5], strlen(f[5]), k->iv, 16) < 0)
        return error_set(err, EIO, NULL, "bad SSE record");
    const struct sse_master *m = NULL;
    for (size_t i = 0; i < w->sse->n; i++)
        if (w->sse->k[i].version == v)
            m = &w->sse->k[i];
    if (m == NULL)
        return error_set(err, EIO, NULL,
                         "SSE master key version %lu is not in the key file",
                         v);
    if (gcm(false, m->key, nonce, wrapped, k->dk, tag) < 0)
        return error_set(err, EIO, NULL,
                         "SSE data key does not open with master key %lu", v);
    k->mode = SSE_S3;
    return 0;
}

int sse_open(struct walrus *w, const char *desc, const char *part_sizes,
             const struct sse_request *q, struct sse_key *k,
             struct koala_error **err)
{
    memset(k, 0, sizeof(*k));
    if (open_key(w, desc, part_sizes, q, k, err) == 0)
        return 0;
    sse_key_clear(k);
    return -1;
}

/* ---- the data: AES-256-CTR from any offset ---- */

struct sse_ctr {
    EVP_CIPHER_CTX *c;
    unsigned char dk[32];
    /* Segments (a multipart object's parts, each with its own IV); one
     * from 0 for a single object. */
    size_t n_seg, seg;
    uint64_t *start;
    unsigned char (*iv)[16];
    uint64_t pos; /* object offset of the next byte */
};

/* Positions the cipher at object offset `pos` of segment x->seg: the
 * counter block of byte n of a segment is its IV + n/16, big-endian. */
static int ctr_seek(struct sse_ctr *x, uint64_t pos)
{
    uint64_t rel = pos - x->start[x->seg];
    unsigned char iv[16];
    memcpy(iv, x->iv[x->seg], 16);
    uint64_t add = rel / 16;
    for (int i = 15; i >= 0 && add; i--) {
        uint64_t s = (uint64_t)iv[i] + (add & 0xff);
        iv[i] = (unsigned char)s;
        add = (add >> 8) + (s >> 8);
    }
    unsigned char skip[16] = {0};
    int n;
    x->pos = pos;
    return EVP_EncryptInit_ex(x->c, EVP_aes_256_ctr(), NULL, x->dk, iv) == 1 &&
                   EVP_EncryptUpdate(x->c, skip, &n, skip, (int)(rel % 16)) ==
                       1
               ? 0
               : -1;
}

struct sse_ctr *sse_ctr_new(const struct sse_key *k, uint64_t offset)
{
    struct sse_ctr *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    size_t n = k->n_seg ? k->n_seg : 1;
    x->c = EVP_CIPHER_CTX_new();
    x->start = calloc(n, sizeof(*x->start));
    x->iv = calloc(n, sizeof(*x->iv));
    if (x->c == NULL || x->start == NULL || x->iv == NULL) {
        sse_ctr_free(x);
        return NULL;
    }
    memcpy(x->dk, k->dk, 32);
    x->n_seg = n;
    if (k->n_seg) {
        memcpy(x->start, k->seg_start, n * sizeof(*x->start));
        memcpy(x->iv, k->seg_iv, n * sizeof(*x->iv));
    } else {
        memcpy(x->iv[0], k->iv, 16);
    }
    while (x->seg + 1 < n && x->start[x->seg + 1] <= offset)
        x->seg++;
    if (ctr_seek(x, offset) < 0) {
        sse_ctr_free(x);
        return NULL;
    }
    return x;
}

int sse_ctr_apply(struct sse_ctr *x, const void *in, void *out, size_t len)
{
    const unsigned char *i = in;
    unsigned char *o = out;
    while (len > 0) {
        /* Up to the end of the segment, where the next IV takes over. */
        size_t step = len > (1u << 30) ? 1u << 30 : len;
        if (x->seg + 1 < x->n_seg) {
            uint64_t left = x->start[x->seg + 1] - x->pos;
            if (left == 0) {
                x->seg++;
                if (ctr_seek(x, x->pos) < 0)
                    return -1;
                continue;
            }
            if (step > left)
                step = (size_t)left;
        }
        int n;
        if (EVP_EncryptUpdate(x->c, o, &n, i, (int)step) != 1)
            return -1;
        i += step;
        o += step;
        len -= step;
        x->pos += step;
    }
    return 0;
}

void sse_ctr_free(struct sse_ctr *x)
{
    if (x) {
        EVP_CIPHER_CTX_free(x->c);
        free(x->start);
        free(x->iv);
        OPENSSL_cleanse(x->dk, sizeof(x->dk));
        free(x);
    }
}

void sse_reply_headers(struct s3_req *r, const struct sse_key *k)
{
    if (k->mode == SSE_S3) {
        http_reply_header(r->http, "x-amz-server-side-encryption", "AES256");
    } else if (k->mode == SSE_C) {
        http_reply_header(r->http,
                          "x-amz-server-side-encryption-customer-algorithm",
                          "AES256");
        http_reply_header(r->http,
                          "x-amz-server-side-encryption-customer-key-MD5",
                          k->key_md5);
    }
}

/* An SSE-C object's ETag: not the plaintext's MD5 (which would let anyone
 * test a guess of the contents), but a MAC of it under the object's key. */
void sse_etag(const struct sse_key *k, const char *md5_hex, char out[33])
{
    if (k->mode != SSE_C)
        return;
    unsigned char mac[32];
    unsigned int n = 32;
    HMAC(EVP_sha256(), k->dk, 32, (const unsigned char *)md5_hex,
         strlen(md5_hex), mac, &n);
    hex(mac, 16, out);
}

/* ---- GET of an encrypted file blob: deciphered as it is sent ---- */

struct sse_reader {
    int fd;
    uint64_t first; /* where the reply starts in the object */
    struct sse_ctr *ctr;
    uint64_t pos; /* next reply position the cipher is at */
};

static ssize_t reader_read(void *ctx, uint64_t pos, char *buf, size_t max)
{
    struct sse_reader *rd = ctx;
    if (pos != rd->pos)
        return HTTP_READER_ERROR; /* MHD reads in order */
    ssize_t n;
    do
        n = pread(rd->fd, buf, max, (off_t)(rd->first + pos));
    while (n < 0 && errno == EINTR);
    if (n <= 0 || sse_ctr_apply(rd->ctr, buf, buf, (size_t)n) < 0)
        return HTTP_READER_ERROR;
    rd->pos += (uint64_t)n;
    return n;
}

static void reader_done(void *ctx)
{
    struct sse_reader *rd = ctx;
    close(rd->fd);
    sse_ctr_free(rd->ctr);
    free(rd);
}

int sse_reply_fd(struct s3_req *r, unsigned status, const struct sse_key *k,
                 int fd, uint64_t first, uint64_t len)
{
    struct sse_reader *rd = calloc(1, sizeof(*rd));
    struct sse_ctr *ctr = sse_ctr_new(k, first);
    if (rd == NULL || ctr == NULL) {
        free(rd);
        sse_ctr_free(ctr);
        close(fd);
        return -1;
    }
    rd->fd = fd;
    rd->first = first;
    rd->ctr = ctr;
    return http_reply_reader(r->http, status, NULL, len, reader_read,
                             reader_done, rd);
}
