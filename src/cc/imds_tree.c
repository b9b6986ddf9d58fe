/* imds_tree.c: the paths the metadata service serves, as EC2 serves them
 * and cloud-init crawls them: the version list, then per version
 * meta-data/ (a tree), user-data and dynamic/instance-identity/.  The
 * tree of one instance is made at each request as a sorted list of leaves
 * (path, bytes); a path that is a leaf answers its bytes, a path that is
 * a prefix of leaves answers the listing of its children (directories with
 * a trailing '/'), anything else is not found.  Pure: no I/O, no locks. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imds.h"

/* EC2's metadata versions up to the one cloud-init 22.4 asks first. */
static const char *const versions[] = {
    "1.0",        "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
    "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01",
    "2011-05-01", "2012-01-12", "2014-02-25", "2014-11-05", "2015-10-20",
    "2016-04-19", "2016-06-30", "2016-09-02", "2018-03-28", "2018-08-17",
    "2018-09-24", "2019-10-01", "2020-10-27", "2021-01-03", "2021-03-23",
};

struct leaf {
    char *path;
    char *data;
    size_t len;
    bool listing; /* data is the listing of the directory path */
};

struct tree {
    struct leaf *v;
    size_t n, cap;
    bool oom;
};

static void add_len(struct tree *t, const char *path, const char *data,
                    size_t len, bool listing)
{
    if (t->oom || data == NULL)
        return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct leaf *v = realloc(t->v, cap * sizeof(*v));
        if (v == NULL) {
            t->oom = true;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    struct leaf *l = &t->v[t->n];
    l->path = strdup(path);
    l->data = malloc(len + 1);
    if (l->path == NULL || l->data == NULL) {
        free(l->path);
        free(l->data);
        t->oom = true;
        return;
    }
    memcpy(l->data, data, len);
    l->data[len] = '\0';
    l->len = len;
    l->listing = listing;
    t->n++;
}

static void add(struct tree *t, const char *path, const char *value)
{
    if (value)
        add_len(t, path, value, strlen(value), false);
}

static void addf(struct tree *t, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void addf(struct tree *t, const char *path, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    add(t, path, tmp);
}

static void tree_free(struct tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].path);
        free(t->v[i].data);
    }
    free(t->v);
}

/* Path order with '/' before every other character, so that a directory's
 * leaves are together and listed in name order. */
static int path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned ca = *a == '/' ? 1 : (unsigned char)*a;
        unsigned cb = *b == '/' ? 1 : (unsigned char)*b;
        if (ca != cb || ca == 0)
            return (int)ca - (int)cb;
    }
}

static int leaf_cmp(const void *x, const void *y)
{
    return path_cmp(((const struct leaf *)x)->path,
                    ((const struct leaf *)y)->path);
}

void imds_private_dns(const char *ip, const char *region, char *out,
                      size_t size)
{
    char label[20], domain[128];
    dns_ip_label(ip, label);
    dns_domain_for(region, domain, sizeof(domain));
    snprintf(out, size, "%s.%s", label, domain);
}

void imds_public_dns(const char *ip, const char *region, char *out, size_t size)
{
    char label[20];
    dns_ip_label(ip, label); /* "ip-A-B-C-D" */
    snprintf(out, size, "ec2-%s.%s.compute.koala", label + 3,
             region && *region ? region : "koala-1");
}

char *imds_identity_document(const struct cc_instance *in,
                             const struct cc_imeta *m, const char *zone)
{
    char pending[25];
    time_format_iso8601((time_t)(in->launch_ms / 1000), pending);
    /* EC2's form: seconds, no fraction. */
    char when[32];
    snprintf(when, sizeof(when), "%.19sZ", pending);
    json_t *o = json_object();
    json_object_set_new(o, "accountId", json_string(in->owner));
    json_object_set_new(o, "architecture", json_string("x86_64"));
    json_object_set_new(o, "availabilityZone", json_string(zone));
    json_object_set_new(o, "billingProducts", json_null());
    json_object_set_new(o, "devpayProductCodes", json_null());
    json_object_set_new(o, "marketplaceProductCodes", json_null());
    json_object_set_new(o, "imageId", json_string(in->image_id));
    json_object_set_new(o, "instanceId", json_string(in->id));
    json_object_set_new(o, "instanceType", json_string(in->type.name));
    json_object_set_new(o, "kernelId",
                        in->kernel_id[0] ? json_string(in->kernel_id)
                                         : json_null());
    json_object_set_new(o, "pendingTime", json_string(when));
    json_object_set_new(o, "privateIp", json_string(in->ip));
    json_object_set_new(o, "ramdiskId",
                        in->ramdisk_id[0] ? json_string(in->ramdisk_id)
                                          : json_null());
    json_object_set_new(o, "region", json_string(m->region));
    json_object_set_new(o, "version", json_string("2017-09-30"));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* The groups' names, one per line ("default" when none were given). */
static const char *group_lines(const struct cc_imeta *m)
{
    return m->groups && *m->groups ? m->groups : "default";
}

static void build(struct tree *t, const struct imds_view *v,
                  bool want_user_data)
{
    const struct cc_instance *in = v->in;
    const struct cc_imeta *m = v->meta;
    char dns[128], p[256];
    imds_private_dns(in->ip, m->region, dns, sizeof(dns));
    add(t, "meta-data/ami-id", in->image_id);
    addf(t, "meta-data/ami-launch-index", "%lld", (long long)in->launch_index);
    add(t, "meta-data/ami-manifest-path", "(unknown)");
    add(t, "meta-data/block-device-mapping/ami", "/dev/vda");
    add(t, "meta-data/block-device-mapping/root", "/dev/vda");
    if (in->type.disk_gb > 0)
        add(t, "meta-data/block-device-mapping/ephemeral0", "vdb");
    add(t, "meta-data/hostname", dns);
    add(t, "meta-data/instance-action", "none");
    add(t, "meta-data/instance-id", in->id);
    add(t, "meta-data/instance-life-cycle", "on-demand");
    add(t, "meta-data/instance-type", in->type.name);
    if (in->kernel_id[0])
        add(t, "meta-data/kernel-id", in->kernel_id);
    if (in->ramdisk_id[0])
        add(t, "meta-data/ramdisk-id", in->ramdisk_id);
    add(t, "meta-data/local-hostname", dns);
    add(t, "meta-data/local-ipv4", in->ip);
    add(t, "meta-data/mac", in->mac);
    /* The instance's one interface; its id follows the instance's. */
    const char *hex = strncmp(in->id, "i-", 2) == 0 ? in->id + 2 : in->id;
    struct {
        const char *leaf, *value;
    } nic[] = {
        {"device-number", "0"},
        {"local-hostname", dns},
        {"local-ipv4s", in->ip},
        {"mac", in->mac},
        {"owner-id", in->owner},
        {"security-groups", group_lines(m)},
        {"subnet-ipv4-cidr-block", v->subnet},
    };
    for (size_t i = 0; i < ARRAY_SIZE(nic); i++) {
        snprintf(p, sizeof(p), "meta-data/network/interfaces/macs/%s/%s",
                 in->mac, nic[i].leaf);
        add(t, p, nic[i].value);
    }
    snprintf(p, sizeof(p), "meta-data/network/interfaces/macs/%s/interface-id",
             in->mac);
    addf(t, p, "eni-%s", hex);
    /* A public address: served only while the instance has one, as EC2
     * (absent, 404, otherwise). */
    if (v->public_ip && *v->public_ip) {
        char pub[128];
        imds_public_dns(v->public_ip, m->region, pub, sizeof(pub));
        add(t, "meta-data/public-ipv4", v->public_ip);
        add(t, "meta-data/public-hostname", pub);
        snprintf(p, sizeof(p),
                 "meta-data/network/interfaces/macs/%s/public-ipv4s", in->mac);
        add(t, p, v->public_ip);
        snprintf(p, sizeof(p),
                 "meta-data/network/interfaces/macs/%s/public-hostname",
                 in->mac);
        add(t, p, pub);
    }
    add(t, "meta-data/placement/availability-zone", v->zone);
    if (m->region[0])
        add(t, "meta-data/placement/region", m->region);
    add(t, "meta-data/profile", "default-hvm");
    if (m->public_key && m->key_name) {
        char listing[300];
        snprintf(listing, sizeof(listing), "0=%s", m->key_name);
        add_len(t, "meta-data/public-keys", listing, strlen(listing), true);
        /* EC2 ends the key with a newline. */
        size_t n = strlen(m->public_key);
        bool nl = n > 0 && m->public_key[n - 1] == '\n';
        char *key = malloc(n + 2);
        if (key == NULL) {
            t->oom = true;
        } else {
            memcpy(key, m->public_key, n);
            if (!nl)
                key[n++] = '\n';
            add_len(t, "meta-data/public-keys/0/openssh-key", key, n, false);
            free(key);
        }
    }
    add(t, "meta-data/reservation-id", in->reservation);
    add(t, "meta-data/security-groups", group_lines(m));
    add(t, "meta-data/services/domain", "amazonaws.com");
    add(t, "meta-data/services/partition", "aws");
    /* Decoded only when it is what was asked (it was checked to be base64
     * when stored); elsewhere it only needs to be listed. */
    if (m->user_data && *m->user_data && !want_user_data) {
        add_len(t, "user-data", "", 0, false);
    } else if (m->user_data && *m->user_data) {
        size_t n = 0;
        unsigned char *raw = str_base64_decode(m->user_data, &n);
        if (raw)
            add_len(t, "user-data", (const char *)raw, n, false);
        free(raw);
    }
    if (v->identity_doc) {
        add(t, "dynamic/instance-identity/document", v->identity_doc);
        add(t, "dynamic/instance-identity/pkcs7", v->identity_pkcs7);
        add(t, "dynamic/instance-identity/signature", v->identity_signature);
    }
    qsort(t->v, t->n, sizeof(*t->v), leaf_cmp);
}

/* The listing of directory dir ("" for the version's root): each child
 * once, in order, directories with '/'. */
static bool listing(const struct tree *t, const char *dir, struct buf *out)
{
    size_t dl = strlen(dir);
    const char *last = NULL;
    size_t last_len = 0;
    bool any = false;
    for (size_t i = 0; i < t->n; i++) {
        const char *p = t->v[i].path;
        if (dl) {
            if (strncmp(p, dir, dl) != 0 || p[dl] != '/')
                continue;
            p += dl + 1;
        }
        size_t len = strcspn(p, "/");
        bool is_dir = p[len] == '/' || t->v[i].listing;
        if (last && len == last_len && memcmp(p, last, len) == 0)
            continue;
        if (any)
            buf_append_char(out, '\n');
        buf_append(out, p, len);
        if (is_dir)
            buf_append_char(out, '/');
        last = p;
        last_len = len;
        any = true;
    }
    return any;
}

enum imds_result imds_resolve(const struct imds_view *v, const char *path,
                              struct buf *out, const char **content_type)
{
    *content_type = "text/plain";
    if (path[0] != '/')
        return IMDS_NOT_FOUND;
    path++;
    if (*path == '\0') {
        for (size_t i = 0; i < ARRAY_SIZE(versions); i++)
            buf_printf(out, "%s\n", versions[i]);
        buf_append_str(out, "latest");
        return IMDS_FOUND;
    }
    size_t vl = strcspn(path, "/");
    bool known = vl == 6 && strncmp(path, "latest", 6) == 0;
    for (size_t i = 0; !known && i < ARRAY_SIZE(versions); i++)
        known =
            strlen(versions[i]) == vl && strncmp(path, versions[i], vl) == 0;
    if (!known)
        return IMDS_NOT_FOUND;
    const char *rest = path + vl;
    if (*rest == '/')
        rest++;
    /* One trailing '/' names the same thing; empty components do not
     * exist. */
    char rel[512];
    size_t rl = strlen(rest);
    if (rl >= sizeof(rel))
        return IMDS_NOT_FOUND;
    memcpy(rel, rest, rl + 1);
    bool slash = rl > 0 && rel[rl - 1] == '/';
    if (slash)
        rel[--rl] = '\0';
    if (strstr(rel, "//") || rel[0] == '/')
        return IMDS_NOT_FOUND;

    struct tree t = {0};
    build(&t, v, strcmp(rel, "user-data") == 0);
    enum imds_result res = IMDS_NOT_FOUND;
    if (t.oom)
        goto out;
    for (size_t i = 0; i < t.n; i++) {
        if (strcmp(t.v[i].path, rel) != 0)
            continue;
        /* A leaf asked as a directory ("user-data/") is not found. */
        if (!t.v[i].listing && slash)
            goto out;
        buf_append(out, t.v[i].data, t.v[i].len);
        if (strcmp(rel, "user-data") == 0)
            *content_type = "application/octet-stream";
        res = IMDS_FOUND;
        goto out;
    }
    if (listing(&t, rel, out))
        res = IMDS_FOUND;
out:
    tree_free(&t);
    return res;
}
