/* fuzz_s3_xml.c: libFuzzer target for the S3 request bodies Walrus reads
 * as XML (src/walrus): AccessControlPolicy (acl_from_xml, with grantees
 * resolved against a real, temporary Walrus database holding one account),
 * CreateBucketConfiguration (s3_parse_location), and the multi-object
 * Delete and CompleteMultipartUpload bodies (s3_parse_delete_body,
 * s3_parse_complete_body: bodies.c, the daemon's own parsers).  Every input
 * is given to each of them; each checks the root element's name itself. */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "walrus.h"
#include "xml.h"

#define CANONICAL                                                              \
    "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* walrus.c */
struct db_pool *walrus_open_db(const char *data_dir, unsigned conns,
                               struct koala_error **err);

static struct walrus w;
static char region[] = "us-east-1";
static char dir[] = "/tmp/koala-fuzz-s3xml-XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    return remove(path);
}

static void cleanup(void)
{
    db_pool_free(w.db);
    w.db = NULL;
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    struct koala_error *err = NULL;
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    w.region = region;
    w.data_dir = dir;
    w.db = walrus_open_db(dir, 1, &err);
    struct db *db = w.db ? db_pool_get(w.db, &err) : NULL;
    if (db == NULL ||
        db_exec(db,
                "INSERT INTO accounts(name, canonical_id, created)"
                " VALUES('alice', '" CANONICAL "', 0)",
                &err) < 0) {
        fprintf(stderr, "fuzz_s3_xml: %s\n", error_message(err));
        abort();
    }
    db_pool_put(w.db, db);
    atexit(cleanup);
}

static void request_end(struct s3_req *r)
{
    if (r->db)
        db_pool_put(w.db, r->db);
    r->db = NULL;
}

static void acl_body(const char *data, size_t size)
{
    struct s3_req r = {.w = &w};
    struct identity owner = {.account_id = 1};
    snprintf(owner.canonical_id, sizeof(owner.canonical_id), "%s", CANONICAL);
    snprintf(owner.display_name, sizeof(owner.display_name), "alice");
    struct acl *acl = calloc(1, sizeof(*acl));
    struct koala_error *err = NULL;
    if (acl && acl_from_xml(&r, acl, data, size, &owner, &err) == 0) {
        /* What is stored must read back as the same ACL. */
        char *text = acl_encode(acl);
        struct acl *back = calloc(1, sizeof(*back));
        if (text && back) {
            if (acl_decode(back, text) < 0)
                abort();
            char *again = acl_encode(back);
            if (again == NULL || strcmp(again, text) != 0)
                abort();
            free(again);
        }
        free(back);
        free(text);
        size_t len;
        free(acl_to_xml(acl, &len));
    }
    error_free(err);
    free(acl);
    request_end(&r);
}

static void location_body(const char *data, size_t size)
{
    struct s3_req r = {.w = &w};
    r.body.data = malloc(size + 1);
    if (r.body.data == NULL)
        return;
    memcpy(r.body.data, data, size);
    r.body.len = size;
    struct koala_error *err = NULL;
    s3_parse_location(&r, &err);
    error_free(err);
    free(r.body.data);
    request_end(&r);
}

/* The Delete body, as s3_delete_objects reads it. */
static void delete_body(const char *data, size_t size)
{
    struct koala_error *err = NULL;
    struct s3_delete_body d;
    if (s3_parse_delete_body(data, size, &d, &err) == 0) {
        if (d.n == 0 || d.n > WALRUS_MAX_DELETE)
            abort();
        for (size_t i = 0; i < d.n; i++)
            if (d.keys[i])
                (void)strlen(d.keys[i]);
    }
    s3_delete_body_free(&d);
    error_free(err);
}

/* The CompleteMultipartUpload body, as choose_parts (multipart.c) reads it
 * before it looks the parts up. */
static void complete_body(const char *data, size_t size)
{
    struct koala_error *err = NULL;
    struct s3_complete_part *parts = NULL;
    size_t n = 0;
    if (s3_parse_complete_body(data, size, &parts, &n, &err) == 0) {
        if (n == 0 || n > WALRUS_MAX_PARTS)
            abort();
        for (size_t i = 1; i < n; i++) /* strictly ascending */
            if (parts[i].number <= parts[i - 1].number &&
                parts[i - 1].number <= WALRUS_MAX_PARTS)
                abort();
    }
    free(parts);
    error_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (w.db == NULL)
        setup();
    const char *s = (const char *)data;
    acl_body(s, size);
    location_body(s, size);
    delete_body(s, size);
    complete_body(s, size);
    return 0;
}
