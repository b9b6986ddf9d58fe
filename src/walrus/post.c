/* post.c: browser uploads: POST Object, an HTML form sent as
 * multipart/form-data to the bucket's URL.
 *
 * The form's fields come first and the file last (S3's rule: fields after
 * the file are ignored).  The body is parsed as it streams in: fields are
 * kept in memory (64 KiB at most), and when the file part begins the form
 * is checked before one byte of the file is taken: the signature over the
 * base64 policy document (SigV4: x-amz-algorithm, x-amz-credential,
 * x-amz-date, x-amz-signature; SigV2: AWSAccessKeyId, signature), the
 * policy's expiration and conditions (exact matches, eq, starts-with,
 * content-length-range; every field the form sends must be covered by
 * one), and the right to write the key (the policy and ACLs, authz.c).
 * The file then streams into a blob as a PUT's body does; when the body
 * ends, the blob is fsynced and committed as the key's new version, and
 * the answer follows success_action_redirect or success_action_status.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "keycache.h"
#include "walrus.h"
#include "xml.h"

#define POST_MAX_FIELDS_BYTES (64 * 1024)
#define POST_MAX_FIELDS 64

enum post_state { PS_PREAMBLE, PS_HEADERS, PS_VALUE, PS_FILE, PS_DONE };

struct post_field {
    char *name;
    char *value;
};

struct post {
    char delim[128]; /* "\r\n--" boundary */
    size_t dlen;
    enum post_state state;
    struct buf in;
    size_t field_bytes;
    struct post_field fields[POST_MAX_FIELDS];
    size_t n;
    char *part_name;
    char *filename;
    char *file_type;
    bool have_file;
    int64_t min_len, max_len; /* content-length-range, -1 none */
    struct blob_writer bw;
    struct checksum *md5;
    struct bucket_row bucket;
    struct acl acl;
    char *headers;
    /* Encryption at rest (sse.c): the file is ciphered on its way to the
     * blob writer. */
    struct sse_key sse;
    struct sse_ctr *ctr;
    unsigned char *scratch;
};

#define POST_CIPHER_STEP (64u * 1024)

void post_free(struct post *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->fields[i].name);
        free(p->fields[i].value);
    }
    buf_free(&p->in);
    free(p->part_name);
    free(p->filename);
    free(p->file_type);
    blob_writer_abort(&p->bw);
    checksum_free(p->md5);
    free(p->headers);
    sse_ctr_free(p->ctr);
    free(p->scratch);
    sse_key_clear(&p->sse);
    free(p);
}

static const char *field(const struct post *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcasecmp(p->fields[i].name, name) == 0)
            return p->fields[i].value;
    return NULL;
}

int post_begin(struct s3_req *r, struct koala_error **err)
{
    const char *ct = s3_header(r, "Content-Type");
    const char *b = ct ? strcasestr(ct, "boundary=") : NULL;
    if (ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0 ||
        b == NULL)
        return error_set(err, EINVAL, "PreconditionFailed",
                         "Bucket POST must be of the enclosure-type "
                         "multipart/form-data");
    b += 9;
    size_t blen = strcspn(b, ";");
    if (blen >= 2 && b[0] == '"' && b[blen - 1] == '"') {
        b++;
        blen -= 2;
    }
    struct post *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    p->bw.fd = -1;
    p->min_len = p->max_len = -1;
    if (blen == 0 || blen > 100) {
        free(p);
        return error_set(err, EINVAL, "MalformedPOSTRequest",
                         "The body of your POST request is not well-formed "
                         "multipart/form-data.");
    }
    p->dlen = (size_t)snprintf(p->delim, sizeof(p->delim), "\r\n--%.*s",
                               (int)blen, b);
    /* The body starts with the boundary without its leading CRLF. */
    buf_append(&p->in, "\r\n", 2);
    r->post = p;
    return 0;
}

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedPOSTRequest",
                     "The body of your POST request is not well-formed "
                     "multipart/form-data.");
}

static int policy_failed(struct koala_error **err, const char *what)
{
    return error_set(err, EACCES, "AccessDenied",
                     "Invalid according to Policy: %s", what);
}

/* A part's Content-Disposition name and filename, and its Content-Type. */
static int part_headers(struct post *p, const char *h, size_t len,
                        struct koala_error **err)
{
    free(p->part_name);
    free(p->filename);
    p->part_name = p->filename = NULL;
    _cleanup_free_ char *copy = strndup(h, len);
    char *save = NULL;
    for (char *line = copy ? strtok_r(copy, "\r\n", &save) : NULL; line;
         line = strtok_r(NULL, "\r\n", &save)) {
        if (strncasecmp(line, "Content-Type:", 13) == 0) {
            free(p->file_type);
            p->file_type = strdup(str_trim(line + 13));
            continue;
        }
        if (strncasecmp(line, "Content-Disposition:", 20) != 0)
            continue;
        for (char *a = line + 20; a && *a;) {
            char *semi = strchr(a, ';');
            if (semi)
                *semi = '\0';
            char *kv = str_trim(a);
            char *eq = strchr(kv, '=');
            if (eq) {
                *eq = '\0';
                char *v = eq + 1;
                size_t vl = strlen(v);
                if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                    v[vl - 1] = '\0';
                    v++;
                }
                if (strcasecmp(str_trim(kv), "name") == 0)
                    p->part_name = strdup(v);
                else if (strcasecmp(str_trim(kv), "filename") == 0)
                    p->filename = strdup(v);
            }
            a = semi ? semi + 1 : NULL;
        }
    }
    return p->part_name ? 0 : malformed(err);
}

/* ---- the policy ---- */

static const char *cond_field(struct s3_req *r, const char *name)
{
    if (*name == '$')
        name++;
    if (strcasecmp(name, "bucket") == 0)
        return r->bucket;
    return field(r->post, name);
}

static int check_conditions(struct s3_req *r, json_t *conds,
                            struct koala_error **err)
{
    struct post *p = r->post;
    bool covered[POST_MAX_FIELDS] = {false};
    size_t i;
    json_t *c;
    json_array_foreach(conds, i, c)
    {
        char *txt = json_dumps(c, JSON_COMPACT);
        struct koala_error *fail = NULL;
        if (json_is_object(c) && json_object_size(c) == 1) {
            const char *k = json_object_iter_key(json_object_iter(c));
            json_t *v = json_object_iter_value(json_object_iter(c));
            const char *have = cond_field(r, k);
            if (!json_is_string(v) || have == NULL ||
                strcmp(have, json_string_value(v)) != 0)
                policy_failed(&fail, "Policy Condition failed");
            for (size_t f = 0; f < p->n; f++)
                covered[f] |= strcasecmp(p->fields[f].name, k) == 0;
        } else if (json_is_array(c) && json_array_size(c) == 3) {
            const char *op = json_string_value(json_array_get(c, 0));
            json_t *a = json_array_get(c, 1), *b = json_array_get(c, 2);
            if (op && strcasecmp(op, "content-length-range") == 0 &&
                json_is_integer(a) && json_is_integer(b)) {
                p->min_len = json_integer_value(a);
                p->max_len = json_integer_value(b);
            } else if (op && json_is_string(a) && json_is_string(b) &&
                       (strcasecmp(op, "eq") == 0 ||
                        strcasecmp(op, "starts-with") == 0)) {
                const char *name = json_string_value(a);
                const char *want = json_string_value(b);
                const char *have = cond_field(r, name);
                bool ok = have && (strcasecmp(op, "eq") == 0
                                       ? strcmp(have, want) == 0
                                       : str_has_prefix(have, want));
                /* starts-with "" allows the field, even absent */
                if (!ok && !(have == NULL && *want == '\0' &&
                             strcasecmp(op, "starts-with") == 0))
                    policy_failed(&fail, "Policy Condition failed");
                for (size_t f = 0; f < p->n; f++)
                    covered[f] |= strcasecmp(p->fields[f].name,
                                             name + (*name == '$')) == 0;
            } else {
                policy_failed(&fail, "Unknown condition");
            }
        } else {
            policy_failed(&fail, "Unknown condition");
        }
        if (fail) {
            error_set(err, EACCES, "AccessDenied", "%s: %s",
                      error_message(fail), txt ? txt : "");
            error_free(fail);
            free(txt);
            return -1;
        }
        free(txt);
    }
    static const char *const free_fields[] = {
        "policy", "x-amz-signature", "signature", "awsaccesskeyid", "file",
    };
    for (size_t f = 0; f < p->n; f++) {
        bool ok = covered[f] || str_has_prefix(p->fields[f].name, "x-ignore-");
        for (size_t k = 0; k < ARRAY_SIZE(free_fields) && !ok; k++)
            ok = strcasecmp(p->fields[f].name, free_fields[k]) == 0;
        if (!ok) {
            char what[300];
            snprintf(what, sizeof(what), "Extra input fields: %s",
                     p->fields[f].name);
            return policy_failed(err, what);
        }
    }
    return 0;
}

static bool parse_expiration(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return false;
    *out = timegm(&tm);
    return true;
}

static int check_policy(struct s3_req *r, const char *b64,
                        struct koala_error **err)
{
    size_t n = 0;
    _cleanup_free_ unsigned char *raw = str_base64_decode(b64, &n);
    json_error_t je;
    json_t *doc = raw ? json_loadb((const char *)raw, n, 0, &je) : NULL;
    if (doc == NULL)
        return error_set(err, EINVAL, "InvalidPolicyDocument",
                         "Invalid Policy: Invalid JSON.");
    int rc = 0;
    const char *exp = json_string_value(json_object_get(doc, "expiration"));
    json_t *conds = json_object_get(doc, "conditions");
    time_t t;
    if (exp == NULL || !parse_expiration(exp, &t))
        rc = error_set(err, EINVAL, "InvalidPolicyDocument",
                       "Invalid Policy: Invalid 'expiration' value.");
    else if (!json_is_array(conds))
        rc = error_set(err, EINVAL, "InvalidPolicyDocument",
                       "Invalid Policy: Policy missing conditions.");
    else if (t < time(NULL))
        rc = policy_failed(err, "Policy expired.");
    else
        rc = check_conditions(r, conds, err);
    json_decref(doc);
    return rc;
}

/* The form's signature: SigV4 or SigV2, over the base64 policy. */
static int check_signature(struct s3_req *r, struct koala_error **err)
{
    struct post *p = r->post;
    const char *policy = field(p, "policy");
    const char *sig4 = field(p, "x-amz-signature");
    const char *sig2 = field(p, "signature");
    if (sig4 == NULL && sig2 == NULL) {
        if (policy)
            return error_set(err, EINVAL, "InvalidArgument",
                             "Bucket POST must contain a field named "
                             "'x-amz-signature'.");
        memset(&r->who, 0, sizeof(r->who));
        r->who.anonymous = true;
        return 0;
    }
    if (policy == NULL)
        return error_set(err, EINVAL, "InvalidArgument",
                         "Bucket POST must contain a field named 'policy'.");
    char key[128] = "";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    char want[EVP_MAX_MD_SIZE * 2 + 1];
    char secret[KEYCACHE_MAX_SECRET];
    if (sig4) {
        const char *cred = field(p, "x-amz-credential");
        const char *alg = field(p, "x-amz-algorithm");
        char date[16], region[64], service[16], term[16];
        if (cred == NULL || alg == NULL || field(p, "x-amz-date") == NULL ||
            strcmp(alg, "AWS4-HMAC-SHA256") != 0 ||
            sscanf(cred, "%127[^/]/%15[^/]/%63[^/]/%15[^/]/%15s", key, date,
                   region, service, term) != 5 ||
            strcmp(term, "aws4_request") != 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "POST requires x-amz-algorithm AWS4-HMAC-SHA256, "
                             "x-amz-credential and x-amz-date.");
        if (s3_lookup_secret(r, key, secret, err) < 0)
            return -1;
        unsigned char sk[32];
        sigv4_signing_key(secret, date, region, service, sk);
        HMAC(EVP_sha256(), sk, 32, (const unsigned char *)policy,
             strlen(policy), mac, &mlen);
        str_hex(mac, mlen, want);
        r->have_v4 = true;
        if (strcasecmp(want, sig4) != 0)
            return error_set(err, EACCES, "SignatureDoesNotMatch",
                             "The request signature we calculated does not "
                             "match the signature you provided.");
    } else {
        const char *ak = field(p, "AWSAccessKeyId");
        if (ak == NULL)
            return error_set(err, EINVAL, "InvalidArgument",
                             "Bucket POST must contain a field named "
                             "'AWSAccessKeyId'.");
        snprintf(key, sizeof(key), "%s", ak);
        if (s3_lookup_secret(r, key, secret, err) < 0)
            return -1;
        HMAC(EVP_sha1(), secret, (int)strlen(secret),
             (const unsigned char *)policy, strlen(policy), mac, &mlen);
        _cleanup_free_ char *b64 = str_base64_encode(mac, mlen);
        if (b64 == NULL || strcmp(b64, sig2) != 0)
            return error_set(err, EACCES, "SignatureDoesNotMatch",
                             "The request signature we calculated does not "
                             "match the signature you provided.");
    }
    r->signed_request = true;
    return check_policy(r, policy, err);
}

/* When the file part starts: the whole form is known. */
static int post_sse(struct s3_req *r, struct post *p, struct koala_error **err);

static int post_check(struct s3_req *r, struct koala_error **err)
{
    struct post *p = r->post;
    const char *key = field(p, "key");
    if (key == NULL || *key == '\0')
        return error_set(err, EINVAL, "InvalidArgument",
                         "Bucket POST must contain a field named 'key'.  If "
                         "it is specified, please check the order of the "
                         "fields.");
    /* ${filename} in the key is the file's name. */
    struct buf k = {0};
    const char *var = strstr(key, "${filename}");
    if (var)
        buf_printf(&k, "%.*s%s%s", (int)(var - key), key,
                   p->filename ? p->filename : "", var + 11);
    else
        buf_printf(&k, "%s", key);
    free(r->key);
    r->key = buf_steal(&k);
    if (r->key == NULL || *r->key == '\0' ||
        strlen(r->key) > WALRUS_MAX_KEY ||
        !str_valid_utf8(r->key, strlen(r->key)))
        return error_set(err, EINVAL, "KeyTooLongError",
                         "Your key is too long");
    if (check_signature(r, err) < 0 ||
        s3_bucket_access(r, PERM_WRITE, &p->bucket, err) < 0)
        return -1;
    if (post_sse(r, p, err) < 0)
        return -1;
    const char *canned = field(p, "acl");
    if (acl_canned(&p->acl, canned, &r->who, &p->bucket.acl, err) < 0 ||
        s3_acl_guard(r, &p->bucket, &p->acl, canned != NULL, err) < 0)
        return -1;
    /* Stored headers from the fields, as a PUT's. */
    static const char *const kept[] = {
        "content-type",  "cache-control", "content-disposition",
        "content-encoding", "expires",    "content-language",
    };
    struct buf h = {0};
    size_t meta = 0;
    for (size_t i = 0; i < p->n; i++) {
        char lname[256];
        snprintf(lname, sizeof(lname), "%s", p->fields[i].name);
        for (char *c = lname; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        bool keep = str_has_prefix(lname, "x-amz-meta-");
        if (keep)
            meta += strlen(lname) - 11 + strlen(p->fields[i].value);
        for (size_t k2 = 0; k2 < ARRAY_SIZE(kept) && !keep; k2++)
            keep = strcmp(lname, kept[k2]) == 0;
        if (keep && !strpbrk(p->fields[i].value, "\r\n"))
            buf_printf(&h, "%s: %s\n", lname, p->fields[i].value);
    }
    if (field(p, "content-type") == NULL && p->file_type)
        buf_printf(&h, "content-type: %s\n", p->file_type);
    buf_append(&h, "", 0);
    p->headers = buf_steal(&h);
    if (meta > WALRUS_MAX_META)
        return error_set(err, EINVAL, "MetadataTooLarge",
                         "Your metadata headers exceed the maximum allowed "
                         "metadata size.");
    p->md5 = checksum_new(CHECKSUM_MD5);
    if (p->md5 == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return blob_writer_open(r->w, &p->bw, true, err);
}

/* The form's SSE fields, else the bucket's default encryption. */
static int post_sse(struct s3_req *r, struct post *p, struct koala_error **err)
{
    struct sse_request q;
    int rc = sse_from_values(
        field(p, "x-amz-server-side-encryption"),
        field(p, "x-amz-server-side-encryption-customer-algorithm"),
        field(p, "x-amz-server-side-encryption-customer-key"),
        field(p, "x-amz-server-side-encryption-customer-key-MD5"), true, &q,
        err);
    if (rc == 0 && q.mode == SSE_NONE && p->bucket.encryption[0])
        q.mode = SSE_S3;
    if (rc == 0)
        rc = sse_seal(r->w, &q, &p->sse, err);
    OPENSSL_cleanse(&q, sizeof(q));
    if (rc < 0 || p->sse.mode == SSE_NONE)
        return rc;
    p->ctr = sse_ctr_new(&p->sse, 0);
    p->scratch = malloc(POST_CIPHER_STEP);
    if (p->ctr == NULL || p->scratch == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

static int file_bytes(struct post *p, const char *d, size_t n,
                      struct koala_error **err)
{
    if (p->max_len >= 0 && p->bw.size + n > (uint64_t)p->max_len)
        return error_set(err, EINVAL, "EntityTooLarge",
                         "Your proposed upload exceeds the maximum allowed "
                         "size");
    if (p->bw.size + n > WALRUS_MAX_PUT)
        return error_set(err, EINVAL, "EntityTooLarge",
                         "Your proposed upload exceeds the maximum allowed "
                         "size");
    checksum_update(p->md5, d, n);
    if (p->ctr == NULL)
        return blob_writer_write(&p->bw, d, n, err);
    while (n > 0) {
        size_t step = n < POST_CIPHER_STEP ? n : POST_CIPHER_STEP;
        if (sse_ctr_apply(p->ctr, d, p->scratch, step) < 0)
            return error_set(err, EIO, NULL, "encryption failed");
        if (blob_writer_write(&p->bw, p->scratch, step, err) < 0)
            return -1;
        d += step;
        n -= step;
    }
    return 0;
}

/* After a delimiter: "--" ends the body, CRLF starts another part. */
static int after_delim(struct post *p, struct koala_error **err)
{
    if (p->in.len < 2)
        return 1; /* more bytes needed */
    if (memcmp(p->in.data, "--", 2) == 0)
        p->state = PS_DONE;
    else if (memcmp(p->in.data, "\r\n", 2) == 0)
        p->state = PS_HEADERS;
    else
        return malformed(err);
    memmove(p->in.data, p->in.data + 2, p->in.len - 2);
    p->in.len -= 2;
    return 0;
}

ssize_t post_feed(struct s3_req *r, const char *data, size_t len,
                  struct koala_error **err)
{
    struct post *p = r->post;
    if (p->state == PS_DONE)
        return (ssize_t)len;
    if (buf_append(&p->in, data, len) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (;;) {
        char *s = p->in.data;
        size_t n = p->in.len;
        char *hit = n ? memmem(s, n, p->delim, p->dlen) : NULL;
        if (p->state == PS_PREAMBLE || p->state == PS_VALUE) {
            if (hit == NULL) {
                if (p->field_bytes + n > POST_MAX_FIELDS_BYTES)
                    return error_set(err, EINVAL,
                                     "MaxPostPreDataLengthExceededError",
                                     "Your POST request fields preceding the "
                                     "upload file were too large.");
                return (ssize_t)len;
            }
            if (p->state == PS_VALUE) {
                if (p->n == POST_MAX_FIELDS)
                    return error_set(err, EINVAL, "InvalidArgument",
                                     "Too many fields in the POST form.");
                p->fields[p->n].name = p->part_name;
                p->part_name = NULL;
                p->fields[p->n].value = strndup(s, (size_t)(hit - s));
                p->field_bytes += (size_t)(hit - s);
                if (p->fields[p->n++].value == NULL)
                    return error_set(err, ENOMEM, NULL, "out of memory");
            }
            size_t used = (size_t)(hit - s) + p->dlen;
            memmove(s, s + used, n - used);
            p->in.len -= used;
            int a = after_delim(p, err);
            if (a < 0)
                return -1;
            if (a > 0)
                return (ssize_t)len; /* wait for the two bytes */
            if (p->state == PS_DONE)
                return (ssize_t)len;
        } else if (p->state == PS_HEADERS) {
            char *end = n ? memmem(s, n, "\r\n\r\n", 4) : NULL;
            if (end == NULL) {
                if (n > 8192)
                    return malformed(err);
                return (ssize_t)len;
            }
            if (part_headers(p, s, (size_t)(end - s), err) < 0)
                return -1;
            /* The data follows; its end is the next delimiter (at once for
             * an empty value). */
            size_t used = (size_t)(end - s) + 4;
            memmove(s, s + used, n - used);
            p->in.len = n - used;
            if (strcasecmp(p->part_name, "file") == 0) {
                if (post_check(r, err) < 0)
                    return -1;
                p->have_file = true;
                p->state = PS_FILE;
            } else {
                p->state = PS_VALUE;
            }
        } else if (p->state == PS_FILE) {
            if (hit == NULL) {
                /* keep what could be the start of the delimiter */
                size_t keep = n < p->dlen - 1 ? n : p->dlen - 1;
                if (file_bytes(p, s, n - keep, err) < 0)
                    return -1;
                memmove(s, s + n - keep, keep);
                p->in.len = keep;
                return (ssize_t)len;
            }
            if (file_bytes(p, s, (size_t)(hit - s), err) < 0)
                return -1;
            size_t used = (size_t)(hit - s) + p->dlen;
            memmove(s, s + used, n - used);
            p->in.len -= used;
            /* fields after the file are ignored (S3) */
            p->state = PS_DONE;
            return (ssize_t)len;
        } else {
            return (ssize_t)len;
        }
    }
}

/* On a worker once the body is in: fsync, commit, answer. */
void s3_post_object(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct post *p = r->post;
    if (!p->have_file || p->state != PS_DONE) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "POST requires exactly one file upload per request.");
        return s3_fail(r, err);
    }
    if (p->min_len >= 0 && p->bw.size < (uint64_t)p->min_len) {
        error_set(&err, EINVAL, "EntityTooSmall",
                  "Your proposed upload is smaller than the minimum allowed "
                  "size");
        return s3_fail(r, err);
    }
    struct object_row o = {0};
    unsigned char d[CHECKSUM_MAX_LEN];
    checksum_final(p->md5, d);
    str_hex(d, 16, o.etag);
    sse_etag(&p->sse, o.etag, o.etag);
    o.sse = p->sse.desc;
    if (blob_writer_sync(&p->bw, &err) < 0)
        return s3_fail(r, err);
    o.key = r->key;
    snprintf(o.blob, sizeof(o.blob), "%s", p->bw.id);
    o.size = p->bw.size;
    o.mtime_ms = time_now_ms();
    o.headers = p->headers;
    o.owner = r->who.account_id;
    o.acl = p->acl;
    o.is_inline = p->bw.is_inline;
    o.data = p->bw.pending.data;
    if (s3_apply_ownership(r, &p->bucket, &o.owner, &o.acl, &err) < 0 ||
        s3_commit_object(r, &o, &p->bw, &err) < 0)
        return s3_fail(r, err);
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", o.etag);
    http_reply_header(r->http, "ETag", quoted);
    sse_reply_headers(r, &p->sse);
    s3_reply_version(r, o.version_id, false);
    struct buf loc = {0};
    buf_printf(&loc, "/%s/", r->bucket);
    str_uri_encode(&loc, r->key, strlen(r->key), true);
    http_reply_header(r->http, "Location", loc.data ? loc.data : "");
    const char *redirect = field(p, "success_action_redirect");
    if (redirect == NULL)
        redirect = field(p, "redirect");
    const char *status = field(p, "success_action_status");
    if (redirect && *redirect) {
        struct buf u = {0};
        buf_printf(&u, "%s%cbucket=", redirect,
                   strchr(redirect, '?') ? '&' : '?');
        str_uri_encode(&u, r->bucket, strlen(r->bucket), false);
        buf_printf(&u, "&key=");
        str_uri_encode(&u, r->key, strlen(r->key), false);
        buf_printf(&u, "&etag=");
        str_uri_encode(&u, quoted, strlen(quoted), false);
        http_reply_header(r->http, "Location", u.data ? u.data : redirect);
        buf_free(&u);
        buf_free(&loc);
        http_reply_header(r->http, "x-amz-request-id", r->request_id);
        http_reply_empty(r->http, 303);
        return;
    }
    if (status && strcmp(status, "201") == 0) {
        struct xml_writer *x = xml_writer_new("PostResponse", NULL);
        xml_text_element(x, "Location", loc.data ? loc.data : "");
        xml_text_element(x, "Bucket", r->bucket);
        xml_text_element(x, "Key", r->key);
        xml_text_element(x, "ETag", quoted);
        buf_free(&loc);
        size_t len;
        char *doc = xml_writer_finish(x, &len);
        s3_reply_xml(r, 201, doc, len);
        return;
    }
    buf_free(&loc);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http,
                     status && strcmp(status, "200") == 0 ? 200 : 204);
}
