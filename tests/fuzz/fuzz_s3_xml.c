/* fuzz_s3_xml.c: libFuzzer target for the S3 request bodies Walrus reads
 * as XML (src/walrus): AccessControlPolicy (acl_from_xml, with grantees
 * resolved against a real, temporary Walrus database holding one account),
 * CreateBucketConfiguration (s3_parse_location), and the shapes of the
 * multi-object Delete and CompleteMultipartUpload bodies.  Every input is
 * given to each of them; each checks the root element's name itself.
 *
 * The Delete and CompleteMultipartUpload bodies are parsed inline in
 * s3_delete_objects (object.c) and choose_parts (multipart.c), which need a
 * live request and database rows; until they are factored out, this target
 * walks those documents the same way (same lookups, same checks). */
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

/* As s3_delete_objects reads its body. */
static void delete_body(const char *data, size_t size)
{
    struct koala_error *err = NULL;
    struct xml_doc *doc = xml_parse(data, size, WALRUS_MAX_XML_BODY, &err);
    error_free(err);
    if (doc == NULL)
        return;
    const struct xml_node *root = xml_root(doc);
    size_t count = 0;
    for (const struct xml_node *n = xml_next_child(root, NULL, "Object"); n;
         n = xml_next_child(root, n, "Object"))
        count++;
    if (strcmp(xml_name(root), "Delete") == 0 && count > 0 && count <= 1000) {
        char *quiet = xml_child_text(root, "Quiet");
        if (quiet)
            (void)strcasecmp(str_trim(quiet), "true");
        free(quiet);
        for (const struct xml_node *n = xml_next_child(root, NULL, "Object"); n;
             n = xml_next_child(root, n, "Object")) {
            char *key = xml_child_text(n, "Key");
            char *version = xml_child_text(n, "VersionId");
            if (key)
                (void)str_valid_utf8(key, strlen(key));
            free(version);
            free(key);
        }
    }
    xml_doc_free(doc);
}

/* As choose_parts (multipart.c) reads its body, up to the database. */
static void complete_body(const char *data, size_t size)
{
    struct koala_error *err = NULL;
    struct xml_doc *doc = xml_parse(data, size, WALRUS_MAX_XML_BODY, &err);
    error_free(err);
    if (doc == NULL)
        return;
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "CompleteMultipartUpload") == 0) {
        int64_t prev = 0;
        for (const struct xml_node *p = xml_next_child(root, NULL, "Part"); p;
             p = xml_next_child(root, p, "Part")) {
            char *num = xml_child_text(p, "PartNumber");
            char *etag = xml_child_text(p, "ETag");
            int64_t pn;
            if (num && etag && str_to_i64(str_trim(num), &pn) == 0 &&
                pn > prev) {
                prev = pn > WALRUS_MAX_PARTS ? WALRUS_MAX_PARTS + 1 : pn;
                char *e = str_trim(etag);
                size_t elen = strlen(e);
                if (elen >= 2 && e[0] == '"' && e[elen - 1] == '"') {
                    e[elen - 1] = '\0';
                    e++;
                }
            }
            free(num);
            free(etag);
        }
    }
    xml_doc_free(doc);
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
