/* acl.c: S3 access control lists: canned ACLs, x-amz-grant-* headers,
 * AccessControlPolicy documents, their stored form, and access checks. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "walrus.h"
#include "xml.h"

#define URI_ALL_USERS "http://acs.amazonaws.com/groups/global/AllUsers"
#define URI_AUTH_USERS                                                         \
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
#define XSI_NS "http://www.w3.org/2001/XMLSchema-instance"

static const struct {
    const char *name;
    unsigned perm;
} perm_names[] = {
    {"FULL_CONTROL", PERM_FULL_CONTROL},
    {"READ", PERM_READ},
    {"WRITE", PERM_WRITE},
    {"READ_ACP", PERM_READ_ACP},
    {"WRITE_ACP", PERM_WRITE_ACP},
};

static const char *perm_name(unsigned perm)
{
    for (size_t i = 0; i < ARRAY_SIZE(perm_names); i++)
        if (perm_names[i].perm == perm)
            return perm_names[i].name;
    return "READ";
}

static int perm_parse(const char *s, unsigned *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(perm_names); i++)
        if (s && strcmp(perm_names[i].name, s) == 0) {
            *out = perm_names[i].perm;
            return 0;
        }
    return -1;
}

static int add_grant(struct acl *acl, enum grantee_kind kind, const char *id,
                     const char *name, unsigned perm, struct koala_error **err)
{
    if (acl->n >= ACL_MAX_GRANTS)
        return error_set(err, EINVAL, "MalformedACLError",
                         "An ACL may hold at most %d grants.", ACL_MAX_GRANTS);
    struct acl_grant *g = &acl->grants[acl->n++];
    memset(g, 0, sizeof(*g));
    g->kind = kind;
    g->perm = perm;
    snprintf(g->id, sizeof(g->id), "%s", id ? id : "");
    snprintf(g->display_name, sizeof(g->display_name), "%s", name ? name : "");
    return 0;
}

static void set_owner(struct acl *acl, const char *id, const char *name)
{
    memset(acl, 0, sizeof(*acl));
    snprintf(acl->owner_id, sizeof(acl->owner_id), "%s", id);
    snprintf(acl->owner_name, sizeof(acl->owner_name), "%s", name);
}

int acl_canned(struct acl *acl, const char *canned,
               const struct identity *owner, const struct acl *bucket_acl,
               struct koala_error **err)
{
    set_owner(acl, owner->canonical_id, owner->display_name);
    add_grant(acl, GRANTEE_USER, owner->canonical_id, owner->display_name,
              PERM_FULL_CONTROL, err);
    if (canned == NULL || strcmp(canned, "private") == 0 ||
        strcmp(canned, "aws-exec-read") == 0)
        return 0;
    if (strcmp(canned, "public-read") == 0)
        return add_grant(acl, GRANTEE_ALL_USERS, NULL, NULL, PERM_READ, err);
    if (strcmp(canned, "public-read-write") == 0)
        return add_grant(acl, GRANTEE_ALL_USERS, NULL, NULL, PERM_READ, err) |
               add_grant(acl, GRANTEE_ALL_USERS, NULL, NULL, PERM_WRITE, err);
    if (strcmp(canned, "authenticated-read") == 0)
        return add_grant(acl, GRANTEE_AUTH_USERS, NULL, NULL, PERM_READ, err);
    if (bucket_acl && (strcmp(canned, "bucket-owner-read") == 0 ||
                       strcmp(canned, "bucket-owner-full-control") == 0)) {
        if (strcmp(bucket_acl->owner_id, owner->canonical_id) == 0)
            return 0;
        return add_grant(
            acl, GRANTEE_USER, bucket_acl->owner_id, bucket_acl->owner_name,
            canned[13] == 'r' ? PERM_READ : PERM_FULL_CONTROL, err);
    }
    return error_set(err, EINVAL, "InvalidArgument",
                     "The canned ACL '%s' is not valid here.", canned);
}

static int resolve_user(struct s3_req *r, const char *id, char *name,
                        size_t size, struct koala_error **err)
{
    struct db *db = s3_db(r, err);
    if (db == NULL)
        return -1;
    struct identity who;
    int rc = meta_identity_by_canonical(db, id, &who, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return error_set(err, EINVAL, "InvalidArgument", "Invalid id");
    snprintf(name, size, "%s", who.display_name);
    return 0;
}

/* One x-amz-grant-* header: 'id="..", uri="..", emailAddress=".."'. */
static int parse_grant_header(struct s3_req *r, struct acl *acl,
                              const char *value, unsigned perm,
                              struct koala_error **err)
{
    _cleanup_free_ char *copy = strdup(value);
    if (copy == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = str_trim(tok);
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            return error_set(err, EINVAL, "InvalidArgument",
                             "Invalid grant header value.");
        *eq = '\0';
        char *type = str_trim(tok), *v = str_trim(eq + 1);
        size_t vlen = strlen(v);
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
            v[vlen - 1] = '\0';
            v++;
        }
        int rc;
        if (strcasecmp(type, "id") == 0) {
            char name[128];
            rc = resolve_user(r, v, name, sizeof(name), err);
            if (rc == 0)
                rc = add_grant(acl, GRANTEE_USER, v, name, perm, err);
        } else if (strcasecmp(type, "uri") == 0 &&
                   strcmp(v, URI_ALL_USERS) == 0) {
            rc = add_grant(acl, GRANTEE_ALL_USERS, NULL, NULL, perm, err);
        } else if (strcasecmp(type, "uri") == 0 &&
                   strcmp(v, URI_AUTH_USERS) == 0) {
            rc = add_grant(acl, GRANTEE_AUTH_USERS, NULL, NULL, perm, err);
        } else if (strcasecmp(type, "emailAddress") == 0) {
            rc = error_set(err, EINVAL, "UnresolvableGrantByEmailAddress",
                           "The email address you provided does not match "
                           "any account on record.");
        } else {
            rc = error_set(err, EINVAL, "InvalidArgument",
                           "Invalid grantee type '%s'.", type);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

int acl_from_headers(struct s3_req *r, struct acl *acl,
                     const struct identity *owner, const struct acl *bucket_acl,
                     bool *given, struct koala_error **err)
{
    static const struct {
        const char *header;
        unsigned perm;
    } grants[] = {
        {"x-amz-grant-full-control", PERM_FULL_CONTROL},
        {"x-amz-grant-read", PERM_READ},
        {"x-amz-grant-write", PERM_WRITE},
        {"x-amz-grant-read-acp", PERM_READ_ACP},
        {"x-amz-grant-write-acp", PERM_WRITE_ACP},
    };
    const char *canned = s3_header(r, "x-amz-acl");
    bool any_grant = false;
    for (size_t i = 0; i < ARRAY_SIZE(grants); i++)
        any_grant |= s3_header(r, grants[i].header) != NULL;
    *given = canned || any_grant;
    if (canned && any_grant)
        return error_set(err, EINVAL, "InvalidRequest",
                         "Specifying both Canned ACLs and Header Grants is "
                         "not allowed");
    if (!any_grant)
        return acl_canned(acl, canned, owner, bucket_acl, err);
    set_owner(acl, owner->canonical_id, owner->display_name);
    for (size_t i = 0; i < ARRAY_SIZE(grants); i++) {
        const char *v = s3_header(r, grants[i].header);
        if (v && parse_grant_header(r, acl, v, grants[i].perm, err) < 0)
            return -1;
    }
    return 0;
}

static int parse_xml_grant(struct s3_req *r, struct acl *acl,
                           const struct xml_node *g, struct koala_error **err)
{
    const struct xml_node *grantee = xml_child(g, "Grantee");
    _cleanup_free_ char *perm_s = xml_child_text(g, "Permission");
    unsigned perm;
    if (grantee == NULL || perm_parse(perm_s, &perm) < 0)
        return error_set(err, EINVAL, "MalformedACLError",
                         "The XML you provided was not well-formed or did "
                         "not validate against our published schema");
    _cleanup_free_ char *type = xml_attr_value(grantee, "type");
    _cleanup_free_ char *id = xml_child_text(grantee, "ID");
    _cleanup_free_ char *uri = xml_child_text(grantee, "URI");
    _cleanup_free_ char *email = xml_child_text(grantee, "EmailAddress");
    if (id && (type == NULL || strcmp(type, "CanonicalUser") == 0)) {
        char name[128];
        if (resolve_user(r, id, name, sizeof(name), err) < 0)
            return -1;
        return add_grant(acl, GRANTEE_USER, id, name, perm, err);
    }
    if (uri && strcmp(uri, URI_ALL_USERS) == 0)
        return add_grant(acl, GRANTEE_ALL_USERS, NULL, NULL, perm, err);
    if (uri && strcmp(uri, URI_AUTH_USERS) == 0)
        return add_grant(acl, GRANTEE_AUTH_USERS, NULL, NULL, perm, err);
    if (email)
        return error_set(err, EINVAL, "UnresolvableGrantByEmailAddress",
                         "The email address you provided does not match any "
                         "account on record.");
    return error_set(err, EINVAL, "MalformedACLError",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

int acl_from_xml(struct s3_req *r, struct acl *acl, const char *body,
                 size_t len, const struct identity *owner,
                 struct koala_error **err)
{
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(body, len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    const struct xml_node *list = xml_child(root, "AccessControlList");
    if (strcmp(xml_name(root), "AccessControlPolicy") != 0 || list == NULL)
        return error_set(err, EINVAL, "MalformedACLError",
                         "The XML you provided was not well-formed or did "
                         "not validate against our published schema");
    set_owner(acl, owner->canonical_id, owner->display_name);
    for (const struct xml_node *g = xml_next_child(list, NULL, "Grant"); g;
         g = xml_next_child(list, g, "Grant"))
        if (parse_xml_grant(r, acl, g, err) < 0)
            return -1;
    return 0;
}

char *acl_encode(const struct acl *acl)
{
    struct buf b = {0};
    buf_printf(&b, "O\t%s\t%s\n", acl->owner_id, acl->owner_name);
    for (size_t i = 0; i < acl->n; i++) {
        const struct acl_grant *g = &acl->grants[i];
        buf_printf(&b, "G\t%d\t%u\t%s\t%s\n", (int)g->kind, g->perm, g->id,
                   g->display_name);
    }
    return b.data ? buf_steal(&b) : NULL;
}

int acl_decode(struct acl *acl, const char *text)
{
    memset(acl, 0, sizeof(*acl));
    if (text == NULL)
        return -1;
    _cleanup_free_ char *copy = strdup(text);
    if (copy == NULL)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[5] = {0};
        int n = 0;
        for (char *p = line; n < 5; n++) {
            f[n] = p;
            char *tab = strchr(p, '\t');
            if (tab == NULL) {
                n++;
                break;
            }
            *tab = '\0';
            p = tab + 1;
        }
        if (f[0][0] == 'O' && n >= 3) {
            snprintf(acl->owner_id, sizeof(acl->owner_id), "%s", f[1]);
            snprintf(acl->owner_name, sizeof(acl->owner_name), "%s", f[2]);
        } else if (f[0][0] == 'G' && n >= 5 && acl->n < ACL_MAX_GRANTS) {
            struct acl_grant *g = &acl->grants[acl->n++];
            g->kind = (enum grantee_kind)atoi(f[1]);
            g->perm = (unsigned)atoi(f[2]);
            snprintf(g->id, sizeof(g->id), "%s", f[3]);
            snprintf(g->display_name, sizeof(g->display_name), "%s", f[4]);
        } else {
            return -1;
        }
    }
    return 0;
}

char *acl_to_xml(const struct acl *acl, size_t *len)
{
    struct xml_writer *x = xml_writer_new("AccessControlPolicy", S3_XMLNS);
    xml_start(x, "Owner");
    xml_text_element(x, "ID", acl->owner_id);
    xml_text_element(x, "DisplayName", acl->owner_name);
    xml_end(x);
    xml_start(x, "AccessControlList");
    for (size_t i = 0; i < acl->n; i++) {
        const struct acl_grant *g = &acl->grants[i];
        xml_start(x, "Grant");
        xml_start(x, "Grantee");
        xml_attr(x, "xmlns:xsi", XSI_NS);
        if (g->kind == GRANTEE_USER) {
            xml_attr(x, "xsi:type", "CanonicalUser");
            xml_text_element(x, "ID", g->id);
            xml_text_element(x, "DisplayName", g->display_name);
        } else {
            xml_attr(x, "xsi:type", "Group");
            xml_text_element(x, "URI",
                             g->kind == GRANTEE_ALL_USERS ? URI_ALL_USERS
                                                          : URI_AUTH_USERS);
        }
        xml_end(x);
        xml_text_element(x, "Permission", perm_name(g->perm));
        xml_end(x);
    }
    return xml_writer_finish(x, len);
}

bool acl_allows(const struct acl *acl, const struct identity *who,
                unsigned perm)
{
    return acl_allows_opts(acl, who, perm, false);
}

bool acl_allows_opts(const struct acl *acl, const struct identity *who,
                     unsigned perm, bool ignore_public)
{
    if (!who->anonymous && strcmp(who->canonical_id, acl->owner_id) == 0)
        return true;
    for (size_t i = 0; i < acl->n; i++) {
        const struct acl_grant *g = &acl->grants[i];
        if (ignore_public && g->kind != GRANTEE_USER)
            continue;
        bool match = g->kind == GRANTEE_ALL_USERS ||
                     (g->kind == GRANTEE_AUTH_USERS && !who->anonymous) ||
                     (g->kind == GRANTEE_USER && !who->anonymous &&
                      strcmp(g->id, who->canonical_id) == 0);
        if (match && (g->perm & perm) == perm)
            return true;
    }
    return false;
}

int acl_from_request(struct s3_req *r, struct acl *acl,
                     const struct identity *owner, const struct acl *bucket_acl,
                     struct koala_error **err)
{
    bool given;
    if (acl_from_headers(r, acl, owner, bucket_acl, &given, err) < 0)
        return -1;
    if (r->body.len > 0) {
        if (given)
            return error_set(err, EINVAL, "UnexpectedContent",
                             "This request does not support content");
        return acl_from_xml(r, acl, r->body.data, r->body.len, owner, err);
    }
    if (!given)
        return error_set(err, EINVAL, "MissingSecurityHeader",
                         "Your request was missing a required header");
    return 0;
}
