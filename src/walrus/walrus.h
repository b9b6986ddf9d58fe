/* walrus.h: koala-walrus internals shared by its files: the daemon, the
 * per-request state, and the interfaces between routing (server.c),
 * authentication (auth.c), access control (acl.c), metadata (meta.c),
 * object data (blob.c), upload bodies (upload.c), encryption at rest
 * (sse.c, bucket_sse.c) and the S3 operations (bucket.c, object.c, list.c,
 * multipart.c).
 *
 * Locking: there is no global lock.  Each request thread takes its own SQLite
 * connection from the pool; metadata changes are SQLite transactions (BEGIN
 * IMMEDIATE serialises writers).  Object data files are immutable once
 * written, so readers need no lock: a file replaced or deleted while it is
 * being sent stays readable through the open descriptor.
 */
#ifndef KOALA_WALRUS_H
#define KOALA_WALRUS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "checksum.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "http_server.h"
#include "policy.h"
#include "sigv4.h"

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
#define WALRUS_MAX_KEY 1024
#define WALRUS_MAX_XML_BODY (2u * 1024 * 1024)
#define WALRUS_MAX_META 2048           /* x-amz-meta-* total, as S3 */
#define WALRUS_MAX_OBJECT (5ull << 40) /* 5 TiB */
#define WALRUS_MAX_PUT (5ull << 30)    /* single PUT / part: 5 GiB */
#define WALRUS_MIN_PART (5u << 20)     /* all parts but the last */
#define WALRUS_MAX_PARTS 10000
#define WALRUS_MAX_DELETE 1000          /* keys in one multi-object Delete */
#define WALRUS_SMALL_REPLY (64u * 1024) /* GET bodies sent from memory */
#define WALRUS_INLINE_MAX (64u * 1024)  /* objects kept in the database */

struct walrus_options {
    const char *listen_addr;
    uint16_t port;
    const char *data_dir;
    const char *region;
    const char *domain; /* virtual-host suffix, "" for none */
    unsigned max_connections;
    size_t max_header_bytes;
    const char *tls_cert; /* HTTPS when set (PEM files) */
    const char *tls_key;
    /* The CLC, which owns the cloud's accounts: keys unknown here are
     * looked up there (GetAccessKey over mutual TLS, with this identity). */
    const char *clc_endpoint;
    const char *ca;
    const char *clc_cert, *clc_key;
    /* Lifecycle (lifecycle_worker.c): seconds between passes, and the
     * length of a lifecycle "day" (86400; shorter in tests). */
    double lifecycle_interval_s;
    int64_t lifecycle_day_s;
    /* Server access logs (access_log.c): seconds between deliveries. */
    double log_flush_interval_s;
    /* SSE-S3 master keys (sse.c); NULL: DATA/sse-master.keys. */
    const char *sse_key_file;
};

struct walrus {
    struct walrus_options opt;
    char *data_dir;
    char *tmp_dir;
    char *blob_dir;
    char *region;
    char *domain;
    struct db_pool *db;
    struct db_group *group; /* group commit of object writes */
    struct keycache *keys;  /* access keys, see keycache.h */
    struct http_server *http;
    struct blob_gc *gc;
    struct policy_cache *policies; /* authz.c */
    struct lc_worker *lifecycle;   /* lifecycle_worker.c */
    struct access_log *access_log; /* access_log.c */
    struct sse_keys *sse;          /* sse.c: master keys */
};
/* ---- server access logs (access_log.c) ---- */
struct s3_req;
int access_log_start(struct walrus *w, struct koala_error **err);
void access_log_stop(struct walrus *w); /* delivers what it holds */
/* At a request's end: its record, if its bucket logs. */
void access_log_record(struct s3_req *r, int64_t started_ms);
/* Delivers every buffered record now (the flusher's, and tests'). */
int access_log_flush(struct walrus *w);
/* A deleted bucket logs no more. */
void access_log_forget(struct walrus *w, const char *bucket);
struct policy_cache *policy_cache_new(void);
void policy_cache_free(struct policy_cache *c);

/* ---- identities and ACLs (acl.c) ---- */
struct identity {
    bool anonymous;
    int64_t account_id;
    char number[13]; /* 12 digits: the AWS account id clients know */
    char canonical_id[65];
    char display_name[128];
};

enum acl_perm {
    PERM_READ = 1,
    PERM_WRITE = 2,
    PERM_READ_ACP = 4,
    PERM_WRITE_ACP = 8,
    PERM_FULL_CONTROL = 15,
    /* Not an ACL permission: what only the bucket owner may (or whom the
     * bucket policy lets). */
    PERM_OWNER = 16,
};

/* PublicAccessBlock settings (buckets.pab). */
enum {
    PAB_BLOCK_PUBLIC_ACLS = 1,
    PAB_IGNORE_PUBLIC_ACLS = 2,
    PAB_BLOCK_PUBLIC_POLICY = 4,
    PAB_RESTRICT_PUBLIC_BUCKETS = 8,
};

#define ACL_MAX_GRANTS 100

enum grantee_kind { GRANTEE_USER, GRANTEE_ALL_USERS, GRANTEE_AUTH_USERS };

struct acl_grant {
    enum grantee_kind kind;
    char id[65]; /* canonical id for GRANTEE_USER */
    char display_name[128];
    unsigned perm; /* one PERM_* value */
};

struct acl {
    char owner_id[65];
    char owner_name[128];
    size_t n;
    struct acl_grant grants[ACL_MAX_GRANTS];
};

/* Builds the ACL of a canned name ("private", "public-read" ...) for owner;
 * for objects, bucket_owner gives the bucket-owner-* canned ACLs. */
int acl_canned(struct acl *acl, const char *canned,
               const struct identity *owner, const struct acl *bucket_acl,
               struct koala_error **err);
/* From the request's x-amz-acl or x-amz-grant-* headers (or private). */
struct s3_req;
int acl_from_headers(struct s3_req *r, struct acl *acl,
                     const struct identity *owner, const struct acl *bucket_acl,
                     bool *given, struct koala_error **err);
/* From an AccessControlPolicy XML body; the owner stays `owner`. */
int acl_from_xml(struct s3_req *r, struct acl *acl, const char *body,
                 size_t len, const struct identity *owner,
                 struct koala_error **err);
/* The ACL a PUT ?acl asks for: from its x-amz-acl / x-amz-grant-*
 * headers or from its AccessControlPolicy body, exactly one of them. */
int acl_from_request(struct s3_req *r, struct acl *acl,
                     const struct identity *owner, const struct acl *bucket_acl,
                     struct koala_error **err);
/* Serialised form stored in the database, and back. */
char *acl_encode(const struct acl *acl);
int acl_decode(struct acl *acl, const char *text);
/* AccessControlPolicy document. */
char *acl_to_xml(const struct acl *acl, size_t *len);
/* Does the identity hold perm through this ACL (owner: always)? */
bool acl_allows(const struct acl *acl, const struct identity *who,
                unsigned perm);
/* The same, public grants (AllUsers, AuthenticatedUsers) left out when
 * ignore_public (PublicAccessBlock's IgnorePublicAcls). */
bool acl_allows_opts(const struct acl *acl, const struct identity *who,
                     unsigned perm, bool ignore_public);

/* ---- server-side encryption: the types (sse.c) ---- */
enum sse_mode { SSE_NONE = 0, SSE_S3, SSE_C };
/* What a request asks for (its x-amz-server-side-encryption* headers). */
struct sse_request {
    enum sse_mode mode;
    unsigned char key[32]; /* SSE-C: the customer's key */
    char key_md5[32];      /* SSE-C: base64 */
};
struct sse_ctr;
/* An object's keys, ready to cipher. */
struct sse_key {
    enum sse_mode mode;
    unsigned char dk[32]; /* data key */
    unsigned char iv[16];
    char key_md5[32];
    char desc[200]; /* seal: the record to store in object_row.sse */
    /* A multipart object: part i (from byte seg_start[i]) has its own IV
     * (sse_open allocates; sse_key_clear frees). */
    size_t n_seg;
    uint64_t *seg_start;
    unsigned char (*seg_iv)[16];
};
/* ---- metadata (meta.c) ---- */
extern const char *const walrus_migrations[];
extern const size_t walrus_n_migrations;

struct bucket_row {
    char name[64];
    int64_t owner;
    char region[64];
    int64_t created; /* unix seconds */
    char versioning[16]; /* "", "Enabled" or "Suspended" */
    char owner_number[13]; /* the owner's 12-digit account id */
    unsigned pab;          /* PAB_* */
    bool pab_set;          /* a PublicAccessBlock is configured */
    char ownership[24];    /* Object Ownership, "" when not set */
    bool object_lock;      /* Object Lock enabled (objlock.c) */
    char lock_default[40]; /* "MODE:days" default retention, "" none */
    bool has_lifecycle;    /* a lifecycle configuration is set */
    /* Default encryption (bucket_sse.c): "" none, "AES256", or
     * "AES256 bucket-key" (BucketKeyEnabled, kept only to be echoed). */
    char encryption[24];
    struct acl acl;
};

struct object_row {
    char *key;
    char blob[40];
    uint64_t size;
    char etag[72]; /* without quotes */
    int64_t mtime_ms;
    char *headers; /* "name: value\n" lines (content-type, x-amz-meta..) */
    char checksum_alg[8]; /* "" or "crc32" ... */
    char checksum[64];    /* base64 */
    int64_t owner;
    struct acl acl;
    int parts; /* number of parts for multipart objects, else 0 */
    /* Versioning (docs/walrus.md): "null" or 32 hex characters; seq orders
     * a key's versions; a delete marker has no blob.  meta_object_put sets
     * version_id and seq. */
    char version_id[40];
    int64_t seq;
    bool delete_marker;
    char *tags; /* stored form (tagging.c); put: borrowed, get: owned */
    char *part_sizes; /* "n1,n2,..." of a multipart object (parts.c) */
    char *part_checksums; /* "c1,c2,..." base64, "" when none */
    /* Object Lock (objlock.c): "", "GOVERNANCE" or "COMPLIANCE" until
     * lock_until_ms; legal hold on. */
    char lock_mode[16];
    int64_t lock_until_ms;
    bool legal_hold;
    /* Inline blob (see blob.c): the data, when `is_inline`.  put: borrowed;
     * from meta_object_get: owned (freed by object_row_clear). */
    bool is_inline;
    char *data;
    /* Encryption at rest (sse.c): "" or NULL none, else the stored
     * record.  put: borrowed, get: owned. */
    char *sse;
};
void object_row_clear(struct object_row *o);

/* Accounts.  Returns 0 found, 1 not found, -1 error. */
int meta_identity_by_key(struct db *db, const char *access_key, char **secret,
                         struct identity *who, struct koala_error **err);
int meta_identity_by_id(struct db *db, int64_t account_id, struct identity *who,
                        struct koala_error **err);
int meta_identity_by_canonical(struct db *db, const char *canonical_id,
                               struct identity *who, struct koala_error **err);
/* An access key of the CLC's accounts (clc.c): looks it up at the CLC
 * and makes sure the account exists here too (by its canonical id).  0,
 * 1 unknown, -1. */
int walrus_clc_lookup(struct walrus *w, struct db *db, const char *access_key,
                      char **secret, struct identity *who,
                      struct koala_error **err);
/* Creates an account with one access key; prints nothing. */
int meta_add_user(struct db *db, const char *name, char access_key[21],
                  char secret[41], struct koala_error **err);

/* An account's 12-digit number: the stored one, else its id zero-padded. */
void meta_account_number(int64_t id, const char *stored, char out[13]);
int meta_bucket_get(struct db *db, const char *name, struct bucket_row *b,
                    struct koala_error **err); /* 0, 1 missing, -1 */

/* ---- object data (blob.c) ---- */
struct blob_writer {
    int fd;            /* -1 until the first bytes go to the file */
    bool allow_inline; /* may end up in the database (objects, not parts) */
    bool is_inline;    /* after sync: the data is `pending`, no file */
    char id[40];
    char *tmp_path;
    uint64_t size;
    uint64_t written;   /* bytes handed to write(2) */
    uint64_t writeback; /* bytes whose writeback to disk was started */
    struct buf pending; /* write-behind buffer */
};
int blob_dirs_init(struct walrus *w, struct koala_error **err);
int blob_writer_open(struct walrus *w, struct blob_writer *bw,
                     bool allow_inline, struct koala_error **err);
int blob_writer_write(struct blob_writer *bw, const void *data, size_t len,
                      struct koala_error **err);
/* Flushes and fsyncs the temporary file (data durable, not yet visible);
 * or, for a small blob that may be inline, leaves it in memory and sets
 * is_inline (the metadata transaction stores it). */
int blob_writer_sync(struct blob_writer *bw, struct koala_error **err);
/* After the metadata commit: moves the file into place and fsyncs its
 * directory. */
int blob_writer_publish(struct walrus *w, struct blob_writer *bw,
                        struct koala_error **err);
/* Appends a whole published blob (copy_file_range: no copy through user
 * space where the file system allows). */
int blob_writer_append_blob(struct walrus *w, struct blob_writer *bw,
                            const char *src_id, uint64_t len,
                            struct koala_error **err);
/* Drops an unfinished blob (temporary file removed). NULL-safe fields. */
void blob_writer_abort(struct blob_writer *bw);
/* Opens a published blob read-only; -1 with NoSuchKey-ish error if gone. */
int blob_open(struct walrus *w, const char *id, struct koala_error **err);
/* Marks blobs dead inside the caller's transaction; the GC thread removes
 * their files later. */
int blob_mark_dead(struct db *db, const char *id, struct koala_error **err);
/* Startup recovery: rolls forward or removes temporary files, removes dead
 * blobs.  Then starts the GC thread. */
int blob_recover(struct walrus *w, struct koala_error **err);
int blob_gc_start(struct walrus *w, struct koala_error **err);
void blob_gc_stop(struct walrus *w);

/* ---- per-request state (server.c) ---- */
enum s3_op {
    OP_NONE = 0,
    OP_LIST_BUCKETS,
    OP_CREATE_BUCKET,
    OP_DELETE_BUCKET,
    OP_HEAD_BUCKET,
    OP_GET_BUCKET_LOCATION,
    OP_GET_BUCKET_ACL,
    OP_PUT_BUCKET_ACL,
    OP_GET_BUCKET_VERSIONING,
    OP_PUT_BUCKET_VERSIONING,
    OP_GET_BUCKET_TAGGING,
    OP_PUT_BUCKET_TAGGING,
    OP_DELETE_BUCKET_TAGGING,
    OP_GET_OBJECT_TAGGING,
    OP_PUT_OBJECT_TAGGING,
    OP_DELETE_OBJECT_TAGGING,
    OP_GET_OBJECT_ATTRIBUTES,
    OP_GET_BUCKET_CORS,
    OP_PUT_BUCKET_CORS,
    OP_DELETE_BUCKET_CORS,
    OP_CORS_PREFLIGHT,
    OP_GET_BUCKET_POLICY,
    OP_PUT_BUCKET_POLICY,
    OP_DELETE_BUCKET_POLICY,
    OP_GET_BUCKET_POLICY_STATUS,
    OP_GET_PUBLIC_ACCESS_BLOCK,
    OP_PUT_PUBLIC_ACCESS_BLOCK,
    OP_DELETE_PUBLIC_ACCESS_BLOCK,
    OP_GET_OWNERSHIP_CONTROLS,
    OP_PUT_OWNERSHIP_CONTROLS,
    OP_DELETE_OWNERSHIP_CONTROLS,
    OP_GET_OBJECT_LOCK_CONFIG,
    OP_PUT_OBJECT_LOCK_CONFIG,
    OP_GET_OBJECT_RETENTION,
    OP_PUT_OBJECT_RETENTION,
    OP_GET_OBJECT_LEGAL_HOLD,
    OP_PUT_OBJECT_LEGAL_HOLD,
    OP_GET_BUCKET_LIFECYCLE,
    OP_PUT_BUCKET_LIFECYCLE,
    OP_DELETE_BUCKET_LIFECYCLE,
    OP_POST_OBJECT,
    OP_GET_BUCKET_LOGGING,
    OP_PUT_BUCKET_LOGGING,
    OP_GET_BUCKET_ENCRYPTION,
    OP_PUT_BUCKET_ENCRYPTION,
    OP_DELETE_BUCKET_ENCRYPTION,
    OP_LIST_OBJECTS,
    OP_LIST_OBJECTS_V2,
    OP_LIST_OBJECT_VERSIONS,
    OP_LIST_UPLOADS,
    OP_DELETE_OBJECTS,
    OP_PUT_OBJECT,
    OP_COPY_OBJECT,
    OP_GET_OBJECT,
    OP_HEAD_OBJECT,
    OP_DELETE_OBJECT,
    OP_GET_OBJECT_ACL,
    OP_PUT_OBJECT_ACL,
    OP_CREATE_UPLOAD,
    OP_UPLOAD_PART,
    OP_UPLOAD_PART_COPY,
    OP_COMPLETE_UPLOAD,
    OP_ABORT_UPLOAD,
    OP_LIST_PARTS,
};

struct query_param {
    char *name;  /* decoded */
    char *value; /* decoded; "" when absent */
    bool has_value;
};

struct upload; /* upload.c: streaming body state */

struct s3_req {
    struct walrus *w;
    struct http_request *http;
    /* How s3_header reads the request's headers (set by s3_route; the
     * connection's, or a fuzz target's). */
    sigv4_header_fn header;
    void *header_ctx;
    char request_id[17];
    enum s3_op op;
    char *bucket;   /* decoded, NULL for service requests */
    char *key;      /* decoded, NULL for bucket requests */
    char *resource; /* "/bucket/key" for error replies */
    bool virtual_host;
    struct query_param *params;
    size_t n_params;
    struct identity who;
    bool signed_request; /* header- or query-signed (not anonymous) */
    struct sigv4_auth v4;
    bool have_v4;
    unsigned char signing_key[32];
    struct db *db;   /* borrowed from the pool for the request */
    struct buf body; /* small (XML) bodies */
    size_t body_limit;
    struct checksum *body_sha256; /* when x-amz-content-sha256 is a hash */
    struct upload *upload;
    struct koala_error *err; /* failure while receiving the body */
    /* PutObject: checked before its body is accepted (s3_upload_precheck);
     * allocated then, since an ACL is large and most requests need none. */
    struct put_target *put;
    char *obj_headers;
    bool cors_done; /* s3_cors_headers ran */
    struct post *post; /* POST Object: the form being read (post.c) */
    /* UploadPart(Copy) of an encrypted upload: the part's keys and fresh
     * IV (sse_part_open). */
    struct sse_key *sse_part;
    int64_t started_ms; /* for the access log's total time */
    bool presigned; /* signed in the query string */
    /* The policy of policy_bucket, read once (authz.c). */
    struct policy *policy;
    bool policy_loaded;
    char policy_bucket[64];
};

/* ---- answers of completed multipart uploads (completed.c) ---- */
int completed_upload_record(struct db *db, const char *upload_id,
                            const char *bucket, const char *key,
                            const char *etag, const char *vid,
                            struct koala_error **err);
/* 0 found (etag, vid), 1 none, -1. */
int completed_upload_find(struct db *db, const char *upload_id,
                          const char *bucket, const char *key, char etag[72],
                          char vid[40], struct koala_error **err);
/* alg, sum: the composite checksum ("" none). */
void s3_complete_reply(struct s3_req *r, const char *etag, const char *vid,
                       const char *alg, const char *sum);
/* Drops every incomplete upload of a bucket (part blobs marked dead) and
 * its completion records, in the caller's transaction (multipart.c). */
int meta_drop_bucket_uploads(struct db *db, const char *bucket,
                             struct koala_error **err);

/* Forgets an upload and retires its parts, in the caller's transaction
 * (multipart.c). */
int meta_drop_upload(struct db *db, const char *upload_id,
                     struct koala_error **err);

/* ---- parts of multipart objects (parts.c) ---- */
/* ?partNumber= of GET/HEAD: 0 when absent; InvalidArgument, or
 * InvalidRequest with a Range too. */
int s3_part_number_param(struct s3_req *r, int *n, struct koala_error **err);
/* The sizes of o's parts (*out malloc'd), 0 when unknown. */
size_t object_part_sizes(const struct object_row *o, uint64_t **out);
/* Parts as S3 counts them: 1 for a single-part object. */
int object_part_count(const struct object_row *o);
/* Where part lies in o; InvalidPartNumber (416) beyond the last. */
int object_part_range(const struct object_row *o, int part, uint64_t *first,
                      uint64_t *len, struct koala_error **err);

/* ---- conditional writes (conditions.c) ---- */
struct write_conditions {
    const char *if_match; /* ETag list, NULL: none */
    bool if_none_match;   /* If-None-Match: * */
};
/* Does an If-Match / If-None-Match list match the ETag? */
bool s3_etag_matches(const char *list, const char *etag);
/* The request's If-Match / If-None-Match for a write (only '*' is
 * supported for If-None-Match: NotImplemented otherwise). */
int s3_write_conditions(struct s3_req *r, struct write_conditions *c,
                        struct koala_error **err);
/* Checks them against the key's current object (inside the writer's
 * transaction): PreconditionFailed, NoSuchKey (If-Match, no object), or
 * ConditionalRequestConflict when existed_before (an earlier check saw
 * the object) and it is gone.  *exists_out (may be NULL): whether there
 * is a current object. */
int s3_write_conditions_check(struct db *db, const char *bucket,
                              const char *key, const struct write_conditions *c,
                              bool existed_before, bool *exists_out,
                              struct koala_error **err);

/* ---- Object Lock (objlock.c) ---- */
struct object_lock {
    char mode[16]; /* "", GOVERNANCE, COMPLIANCE */
    int64_t until_ms;
    bool legal_hold;
};
/* The lock a write asks for (x-amz-object-lock-* headers) or the bucket's
 * default retention; InvalidRequest on a bucket without object lock. */
int objlock_from_request(struct s3_req *r, const struct bucket_row *b,
                         struct object_lock *l, struct koala_error **err);
void objlock_apply(struct object_row *o, const struct object_lock *l);
void objlock_reply_headers(struct s3_req *r, const struct object_row *o);
/* 0 when the version may be deleted; AccessDenied when locked. */
int objlock_may_delete(const struct object_row *o, bool bypass,
                       struct koala_error **err);
/* x-amz-bypass-governance-retention: true, from someone who may. */
bool objlock_bypass(struct s3_req *r, const struct bucket_row *b,
                    const char *key);
void s3_get_object_lock_config(struct s3_req *r);
void s3_put_object_lock_config(struct s3_req *r);
void s3_get_object_retention(struct s3_req *r);
void s3_put_object_retention(struct s3_req *r);
void s3_get_object_legal_hold(struct s3_req *r);
void s3_put_object_legal_hold(struct s3_req *r);

struct put_target {
    struct bucket_row bucket;
    struct acl acl;
    struct object_lock lock;
    int64_t owner; /* the new object's owner (Object Ownership) */
    char *tags; /* x-amz-tagging, stored form */
    struct write_conditions cond;
    bool cond_existed; /* the precheck saw a current object */
    struct sse_request sse; /* what the PUT asks for (sse.c) */
};

/* Frees a request and all it holds (NULL-safe): at its end, and for
 * requests made outside a connection (the fuzz targets). */
void s3_req_free(struct s3_req *r);
/* Addressing and routing, apart from the connection (the fuzz target
 * tests/fuzz/fuzz_s3_router.c calls it too): from the method, the raw
 * path and query and the Host and x-amz-copy-source headers (looked up
 * with header, which s3_header uses from then on), fills r's bucket, key,
 * resource and params (r->w gives the virtual-host domain) and returns the
 * operation, or OP_NONE with *err set. */
enum s3_op s3_route(struct s3_req *r, const char *method, const char *path,
                    const char *query, sigv4_header_fn header, void *hctx,
                    struct koala_error **err);
const char *s3_param(const struct s3_req *r, const char *name);
bool s3_has_param(const struct s3_req *r, const char *name);
const char *s3_header(const struct s3_req *r, const char *name);

/* Replies. */
void s3_reply_error(struct s3_req *r, struct koala_error *err);
/* Replies with err and frees it: where a request ends in failure. */
void s3_fail(struct s3_req *r, struct koala_error *err);
void s3_reply_xml(struct s3_req *r, unsigned status, char *doc, size_t len);
int s3_status_for(const char *code);

/* Borrows a DB connection for the request (once). */
struct db *s3_db(struct s3_req *r, struct koala_error **err);

/* ---- browser uploads (post.c) ---- */
struct post;
/* POST Object: from the Content-Type's boundary (before the body). */
int post_begin(struct s3_req *r, struct koala_error **err);
/* A piece of the form: len, or -1 (the form checked, the file streamed). */
ssize_t post_feed(struct s3_req *r, const char *data, size_t len,
                  struct koala_error **err);
void s3_post_object(struct s3_req *r);
void s3_get_bucket_logging(struct s3_req *r);
void s3_put_bucket_logging(struct s3_req *r);
void post_free(struct post *p);
/* The secret of an access key, and r->who (auth.c). */
int s3_lookup_secret(struct s3_req *r, const char *access_key,
                     char secret[128], struct koala_error **err);

/* ---- body pipeline for PutObject / UploadPart (upload.c) ---- */
/* Sets up r->upload from the request headers (content encodings, declared
 * digests, signing).  Errors are reported before any byte is accepted. */
int upload_begin(struct s3_req *r, struct koala_error **err);
/* Takes a piece of the body: returns len, 0 when there is no room for it
 * yet (the body pauses until the upload resumes it), or -1. */
ssize_t upload_feed(struct s3_req *r, const char *data, size_t len,
                    struct koala_error **err);
/* Ends the body: checks lengths and digests, fsyncs.  The blob is ready
 * for blob_writer_publish after the metadata commit. */
int upload_finish(struct s3_req *r, struct koala_error **err);
struct blob_writer *upload_blob(struct s3_req *r);
const char *upload_etag(struct s3_req *r); /* md5 hex */
/* The keys the body was ciphered with (mode SSE_NONE: none). */
const struct sse_key *upload_sse(struct s3_req *r);
/* Checksum to store: alg name ("" none) and base64 value. */
void upload_checksum(struct s3_req *r, const char **alg, const char **value);
void upload_free(struct upload *u);
/* After blob_writer_publish: the upload no longer owns the file. */
void upload_published(struct s3_req *r);

/* ---- operations ---- */
void s3_list_buckets(struct s3_req *r);
void s3_create_bucket(struct s3_req *r);
void s3_delete_bucket(struct s3_req *r);
void s3_head_bucket(struct s3_req *r);
void s3_get_bucket_location(struct s3_req *r);
void s3_get_bucket_versioning(struct s3_req *r);
void s3_get_bucket_acl(struct s3_req *r);
void s3_put_bucket_acl(struct s3_req *r);
void s3_list_objects(struct s3_req *r, int version); /* 1, 2 */
void s3_list_object_versions(struct s3_req *r);     /* list_versions.c */
/* Shared by the listings (list.c). */
struct xml_writer;
char *list_prefix_successor(const char *s, size_t len);
size_t list_common_prefix_len(const char *prefix, const char *delimiter,
                              const char *key);
/* A name/value element, URL-encoded when url (encoding-type=url). */
void list_text_el(struct xml_writer *x, const char *name, const char *v,
                  bool url);
/* An Owner element of account owner (cache: the last one looked up). */
void list_owner_el(struct s3_req *r, struct xml_writer *x, int64_t owner,
                   struct identity *cache);
/* max-keys (and the like): 1000 when absent, at most 1000. */
int list_parse_max(const char *v, long *out, struct koala_error **err);
void s3_list_uploads(struct s3_req *r);
void s3_delete_objects(struct s3_req *r);
void s3_put_object(struct s3_req *r);
void s3_copy_object(struct s3_req *r);
void s3_get_object(struct s3_req *r, bool head);
void s3_delete_object(struct s3_req *r);
void s3_get_object_acl(struct s3_req *r);
void s3_put_object_acl(struct s3_req *r);
void s3_create_upload(struct s3_req *r);
void s3_upload_part(struct s3_req *r);
void s3_upload_part_copy(struct s3_req *r);
void s3_complete_upload(struct s3_req *r);
void s3_abort_upload(struct s3_req *r);
void s3_list_parts(struct s3_req *r);

/* CreateBucket's body (a CreateBucketConfiguration, r->body, may be
 * empty): its LocationConstraint must be this Walrus' region (bucket.c;
 * the fuzz target tests/fuzz/fuzz_s3_xml.c calls it too). */
int s3_parse_location(struct s3_req *r, struct koala_error **err);
/* Checks that the bucket exists and the caller holds perm on it; fills b. */
/* Stores text in one of the request's bucket's configuration columns
 * (cors, lifecycle, tags, encryption, logging); "" clears it. */
int s3_bucket_set_text(struct s3_req *r, const char *column, const char *text,
                       struct koala_error **err);
int s3_bucket_access(struct s3_req *r, unsigned perm, struct bucket_row *b,
                     struct koala_error **err);
/* Stores an object row as the key's current version inside the caller's
 * transaction, by the bucket's versioning state: the version it replaces
 * is dropped (its blob marked dead) or kept as noncurrent.  Sets
 * o->version_id and o->seq. */
int meta_object_put(struct db *db, const char *bucket, struct object_row *o,
                    struct koala_error **err);
/* The current version, not a delete marker: 0 found, 1 missing, -1. */
int meta_object_get(struct db *db, const char *bucket, const char *key,
                    struct object_row *o, struct koala_error **err);
/* A version by id (vid NULL: the current one, maybe a delete marker):
 * 0 found, 1 missing, -1. */
int meta_object_get_version(struct db *db, const char *bucket,
                            const char *key, const char *vid,
                            struct object_row *o, struct koala_error **err);
/* Removes the current version of an unversioned bucket's key (blob marked
 * dead) inside the caller's transaction; 0 or 1 (missing), -1. */
int meta_object_delete(struct db *db, const char *bucket, const char *key,
                       struct koala_error **err);
/* Marks a version's blob dead ("" for a delete marker: nothing). */
int meta_retire_blob(struct db *db, const char *blob,
                     struct koala_error **err);

/* ---- versioning (version.c) ---- */
struct version_current {
    bool exists;
    char blob[40];
    char version_id[40];
    int64_t seq;
    bool delete_marker;
};
int meta_current_get(struct db *db, const char *bucket, const char *key,
                     struct version_current *cur, struct koala_error **err);
/* Before a new current version of key is stored: by the bucket's state,
 * drops or archives what it replaces; the new version's id in vid. */
int version_make_room(struct db *db, const char *bucket, const char *key,
                      const struct version_current *cur, int64_t seq,
                      char vid[40], struct koala_error **err);
/* A version id's position in its key's history (its first 16 hex digits
 * are the seq it was written with); -1 for "null". */
int version_id_seq(const char *vid, int64_t *seq);
struct version_deleted {
    bool found;         /* something was removed or a marker made */
    bool delete_marker; /* a marker was made, or the version removed was one */
    char version_id[40];
};
/* DeleteObject inside the caller's transaction: vid NULL deletes by the
 * bucket's state (a delete marker when versioned), else removes that
 * version.  owner: who makes a delete marker. */
int version_delete(struct db *db, const char *bucket, const char *key,
                   const char *vid, int64_t owner, bool bypass,
                   struct version_deleted *res, struct koala_error **err);
/* The request's versionId parameter: *vid NULL when absent; "" or a
 * malformed id is InvalidArgument. */
int s3_version_param(struct s3_req *r, const char **vid,
                     struct koala_error **err);
bool version_id_valid(const char *vid);
/* Sets field "acl" or "tags" of a version (vid NULL: the current one),
 * not a delete marker; 0, 1 if there is none, -1. */
int meta_object_set_field(struct db *db, const char *bucket, const char *key,
                          const char *vid, const char *field,
                          const char *value, struct koala_error **err);
/* Loads the object the request names (versionId too), not a delete marker
 * (NoSuchKey, or MethodNotAllowed by id), checking perm on its ACL (0: no
 * check); b: its bucket. */
int s3_load_object(struct s3_req *r, unsigned perm, struct bucket_row *b,
                   struct object_row *o, struct koala_error **err);

/* ---- tags (tagging.c) ---- */
#define TAGS_MAX_OBJECT 10
#define TAGS_MAX_BUCKET 50
struct tag_set {
    size_t n;
    char *keys[TAGS_MAX_BUCKET];
    char *values[TAGS_MAX_BUCKET];
};
void tag_set_clear(struct tag_set *t);
/* The stored form ("k=v&..." percent-encoded; "" none). */
char *tags_encode(const struct tag_set *t);
/* x-amz-tagging, checked against AWS's limits, in the stored form ("" when
 * absent); *out malloc'd. */
int tags_from_header(struct s3_req *r, char **out, struct koala_error **err);
size_t tags_count(const char *stored);
/* Parses the stored (or x-amz-tagging) form; 0 or -1. */
int tags_decode(const char *stored, struct tag_set *t);
void s3_get_object_tagging(struct s3_req *r);
void s3_get_object_attributes(struct s3_req *r); /* attributes.c */
/* cors.c */
void s3_get_bucket_cors(struct s3_req *r);
void s3_put_bucket_cors(struct s3_req *r);
void s3_delete_bucket_cors(struct s3_req *r);
void s3_cors_preflight(struct s3_req *r);
/* The Access-Control-* headers of the bucket's first rule matching the
 * request's Origin and method (once a request; none without an Origin). */
void s3_cors_headers(struct s3_req *r);
/* bucket_access.c */
void s3_get_bucket_policy(struct s3_req *r);
void s3_put_bucket_policy(struct s3_req *r);
void s3_delete_bucket_policy(struct s3_req *r);
void s3_get_bucket_policy_status(struct s3_req *r);
void s3_get_public_access_block(struct s3_req *r);
void s3_put_public_access_block(struct s3_req *r);
void s3_delete_public_access_block(struct s3_req *r);
void s3_get_ownership_controls(struct s3_req *r);
void s3_put_ownership_controls(struct s3_req *r);
void s3_delete_ownership_controls(struct s3_req *r);
/* The ACL a write asks for (given: by headers) against the bucket's
 * settings: AccessControlListNotSupported when ACLs are off, AccessDenied
 * for a public one under BlockPublicAcls. */
int s3_acl_guard(struct s3_req *r, const struct bucket_row *b,
                 const struct acl *acl, bool given, struct koala_error **err);
/* Object Ownership: the bucket owner becomes the new object's owner under
 * BucketOwnerEnforced (and BucketOwnerPreferred with
 * bucket-owner-full-control); *owner and *acl adjusted. */
int s3_apply_ownership(struct s3_req *r, const struct bucket_row *b,
                       int64_t *owner, struct acl *acl,
                       struct koala_error **err);
/* authz.c: the S3 action of the request's operation ("s3:GetObject"). */
const char *s3_op_action(const struct s3_req *r);
/* What the bucket policy says of action on the bucket (key NULL) or an
 * object of it (o: its row, for s3:ExistingObjectTag); (enum)-1 on error. */
enum policy_effect s3_policy_effect(struct s3_req *r,
                                    const struct bucket_row *b,
                                    const char *action, const char *key,
                                    const struct object_row *o,
                                    struct koala_error **err);
/* The decision: a policy Deny refuses, an Allow grants, else acl must give
 * perm (0: nothing asked of the ACL; PERM_OWNER: the bucket owner). */
int s3_authorize(struct s3_req *r, const struct bucket_row *b,
                 const char *action, const char *key,
                 const struct object_row *o, const struct acl *acl,
                 unsigned perm, struct koala_error **err);
void s3_put_object_tagging(struct s3_req *r);
void s3_delete_object_tagging(struct s3_req *r);
void s3_get_bucket_tagging(struct s3_req *r);
void s3_put_bucket_tagging(struct s3_req *r);
void s3_delete_bucket_tagging(struct s3_req *r);
void s3_put_bucket_versioning(struct s3_req *r);

/* Headers stored with an object, from the request (content-type,
 * content-encoding ..., x-amz-meta-*); malloc'd "name: value\n" lines. */
int s3_collect_object_headers(struct s3_req *r, char **out,
                              struct koala_error **err);
/* Sends stored headers back as reply headers. */
void s3_emit_object_headers(struct s3_req *r, const char *headers);
/* Copies len bytes of object src's data from offset into bw, feeding md5
 * (and sum, if not NULL). */
/* sk: the source's keys (mode SSE_NONE: not encrypted); enc: the
 * cipher of the destination (NULL: written in the clear). */
int blob_copy_range(struct walrus *w, const struct object_row *src,
                    const struct sse_key *sk, uint64_t offset, uint64_t len,
                    struct blob_writer *bw, struct sse_ctr *enc,
                    struct checksum *md5, struct checksum *sum,
                    struct koala_error **err);
/* Parses x-amz-copy-source into bucket and key (malloc'd). */
/* bodies.c: the listing bodies, parsed from their bytes alone. */
struct s3_delete_body {
    char **keys;     /* each NULL where an Object had no Key */
    char **versions; /* each NULL where an Object had no VersionId */
    size_t n;
    bool quiet;
};
/* <Delete>: 1 to WALRUS_MAX_DELETE objects; MalformedXML otherwise. */
int s3_parse_delete_body(const char *body, size_t len, struct s3_delete_body *d,
                         struct koala_error **err);
void s3_delete_body_free(struct s3_delete_body *d);
struct s3_complete_part {
    int64_t number;
    char etag[72];     /* without quotes; "" when longer than any ETag */
    char checksum[72]; /* its Checksum<ALG> element, "" when none */
};
/* <CompleteMultipartUpload>: 1 to WALRUS_MAX_PARTS parts in ascending
 * order (InvalidPartOrder), each with a PartNumber and an ETag; *out is
 * malloc'd. */
int s3_parse_complete_body(const char *body, size_t len,
                           struct s3_complete_part **out, size_t *n_out,
                           struct koala_error **err);

/* Parses x-amz-copy-source into bucket, key and version (NULL when it
 * names none); all malloc'd. */
int s3_copy_source(struct s3_req *r, char **bucket, char **key,
                   char **version, struct koala_error **err);
/* Loads the copy source, checking READ access and the
 * x-amz-copy-source-if-* conditions; sk: its keys from the
 * x-amz-copy-source-server-side-encryption-customer-* headers (NULL:
 * encrypted sources are refused). */
int s3_copy_source_load(struct s3_req *r, const char *bucket, const char *key,
                        const char *vid, struct object_row *src,
                        struct sse_key *sk, struct koala_error **err);
/* RFC 7232 evaluation as S3 does it: 0, or PreconditionFailed (412) /
 * NotModified (304); copy: the x-amz-copy-source-if-* headers, 412 only
 * (object.c). */
int s3_check_read_conditions(struct s3_req *r, const struct object_row *o,
                             bool copy, struct koala_error **err);
/* Commits o as the key's current version (group commit, with the PUT's
 * conditions) and publishes its blob (object.c). */
int s3_commit_object(struct s3_req *r, struct object_row *o,
                     struct blob_writer *bw, struct koala_error **err);
/* x-amz-version-id, when vid is not "null" or the bucket is versioned. */
void s3_reply_version(struct s3_req *r, const char *vid, bool versioned);
/* "YYYY-MM-DDTHH:MM:SS.mmmZ" of a millisecond time. */
char *s3_iso_time(int64_t ms, char out[25]);
/* Upload precheck for UploadPart (multipart.c). */
int s3_upload_part_precheck(struct s3_req *r, struct koala_error **err);

/* ---- server-side encryption (sse.c; types above) ---- */
/* Master keys from DATA/sse-master.keys (made at first start). */
int sse_keys_load(struct walrus *w, struct koala_error **err);
void sse_keys_free(struct walrus *w);
/* Which headers: a write's (x-amz-server-side-encryption allowed), a
 * read's, or a copy's source (x-amz-copy-source-server-side-encryption-
 * customer-*).  S3's errors for bad headers. */
enum sse_use { SSE_USE_READ, SSE_USE_WRITE, SSE_USE_SOURCE };
int sse_from_request(struct s3_req *r, enum sse_use use, struct sse_request *q,
                     struct koala_error **err);
/* The same from the values of x-amz-server-side-encryption and the
 * -customer-algorithm, -key, -key-MD5 headers (POST's form fields). */
int sse_from_values(const char *mode, const char *alg, const char *key,
                    const char *md5, bool write, struct sse_request *q,
                    struct koala_error **err);
/* A new object's keys (k->mode SSE_NONE when q asks for none). */
int sse_seal(struct walrus *w, const struct sse_request *q,
             struct sse_key *k, struct koala_error **err);
/* A stored object's keys from its record (part_sizes: a multipart
 * object's, else NULL) and the request: InvalidRequest (key missing, or
 * given for an object without SSE-C), AccessDenied (another key). */
int sse_open(struct walrus *w, const char *desc, const char *part_sizes,
             const struct sse_request *q, struct sse_key *k,
             struct koala_error **err);
/* Frees what sse_open allocated and wipes the keys. */
void sse_key_clear(struct sse_key *k);
/* A fresh random IV in k->iv (a part's, sse_parts.c). */
int sse_new_iv(struct sse_key *k, struct koala_error **err);
/* UploadPart(Copy): checks the request's SSE-C key against the upload's
 * record and sets r->sse_part (left NULL for an unencrypted upload). */
int sse_part_open(struct s3_req *r, const char *upload_desc,
                  struct koala_error **err);
/* k->iv in hex (a part's, kept in parts.iv). */
void sse_iv_hex(const struct sse_key *k, char out[33]);
/* Reply headers from a stored record (CompleteMultipartUpload's). */
void sse_reply_record(struct s3_req *r, const char *desc);
struct sse_ctr;
/* A cipher positioned at byte offset of the object (NULL: no memory). */
struct sse_ctr *sse_ctr_new(const struct sse_key *k, uint64_t offset);
int sse_ctr_apply(struct sse_ctr *x, const void *in, void *out, size_t len);
void sse_ctr_free(struct sse_ctr *x);
void sse_reply_headers(struct s3_req *r, const struct sse_key *k);
/* SSE-C: the ETag to give instead of the MD5 (out untouched otherwise). */
void sse_etag(const struct sse_key *k, const char *md5_hex, char out[33]);
/* Bucket default encryption (bucket_sse.c). */
void s3_get_bucket_encryption(struct s3_req *r);
void s3_put_bucket_encryption(struct s3_req *r);
void s3_delete_bucket_encryption(struct s3_req *r);
/* The request's own SSE headers, or else the bucket's default. */
int sse_for_write(struct s3_req *r, const struct bucket_row *b,
                  struct sse_request *q, struct koala_error **err);
/* Replies len bytes of fd from first, deciphered (takes fd). */
int sse_reply_fd(struct s3_req *r, unsigned status, const struct sse_key *k,
                 int fd, uint64_t first, uint64_t len);

/* ---- lifecycle (lifecycle.c, lifecycle_worker.c) ---- */
struct lc_rule {
    char id[256];
    bool enabled;
    char *prefix;                     /* filter: "" for all */
    struct tag_set tags;              /* filter: all of them */
    int64_t size_gt, size_lt;         /* filter: -1 none */
    int64_t exp_days, exp_date_ms;    /* Expiration: -1 none */
    bool exp_marker;                  /* ExpiredObjectDeleteMarker */
    int64_t nc_days, nc_newer;        /* NoncurrentVersionExpiration */
    int64_t abort_days;               /* AbortIncompleteMultipartUpload */
};
struct lc_config {
    struct lc_rule *rules;
    size_t n;
};
int lc_parse(const char *body, size_t len, struct lc_config *c,
             struct koala_error **err);
void lc_config_free(struct lc_config *c);
/* The bucket's configuration: 0, 1 none, -1. */
int lc_load(struct db *db, const char *bucket, struct lc_config *c,
            struct koala_error **err);
bool lc_rule_matches(const struct lc_rule *r, const char *key, uint64_t size,
                     const char *tags);
/* from_ms + days lifecycle days (to the next midnight UTC, real days). */
int64_t lc_after_days(const struct walrus *w, int64_t from_ms, int64_t days);
/* When a current object expires (ms; -1 never), and by which rule. */
int64_t lc_expiry(const struct walrus *w, const struct lc_config *c,
                  const char *key, uint64_t size, const char *tags,
                  int64_t mtime_ms, const char **rule_id);
/* x-amz-expiration for an object of bucket b. */
void s3_reply_expiration(struct s3_req *r, const struct bucket_row *b,
                         const struct object_row *o);
void s3_get_bucket_lifecycle(struct s3_req *r);
void s3_put_bucket_lifecycle(struct s3_req *r);
void s3_delete_bucket_lifecycle(struct s3_req *r);
/* One pass over every configured bucket (the worker's, and tests'). */
int lc_run_once(struct walrus *w, struct koala_error **err);
int lc_worker_start(struct walrus *w, struct koala_error **err);
void lc_worker_stop(struct walrus *w);

#endif
