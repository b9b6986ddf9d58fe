/* eip.c: the cluster's public addresses: the pool configured for this CC
 * (cc.public_ips), and the map of public -> private addresses the CLC
 * pushes whole and versioned with SetPublicAddresses (docs/wsdl/cc.wsdl,
 * docs/network.md "Elastic IPs and outbound NAT"), kept in cc.db
 * (public_map, public_addresses) and applied by eipnat.c.
 * DescribePublicAddresses tells the CLC the pool and the version held, so
 * that the CLC learns each cluster's pool and pushes again to a CC that
 * is behind (a new or restored cc.db).
 *
 * A document older than (or as old as) the one held is ignored and the
 * version held answered: pushes may cross, the last version wins.  A bad
 * document (an address outside the pool or the subnet, a public or
 * private address twice) is refused whole and changes nothing.
 */
#define LOG_MODULE "cc"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

/* ---- the pool ---- */

int cc_ip_parse(const char *s, uint32_t *ip)
{
    struct in_addr a;
    if (s == NULL || inet_pton(AF_INET, s, &a) != 1)
        return -1;
    *ip = ntohl(a.s_addr);
    return 0;
}

/* One item: "a.b.c.d", "a.b.c.d/p" (p 16..32) or "a.b.c.d-e.f.g.h". */
static int parse_item(const char *item, uint32_t *first, uint32_t *last)
{
    char a[64];
    if (strlen(item) >= sizeof(a))
        return -1;
    snprintf(a, sizeof(a), "%s", item);
    char *dash = strchr(a, '-'), *slash = strchr(a, '/');
    if (dash) {
        *dash = '\0';
        return cc_ip_parse(a, first) < 0 || cc_ip_parse(dash + 1, last) < 0 ||
                       *last < *first
                   ? -1
                   : 0;
    }
    if (slash) {
        *slash = '\0';
        uint64_t prefix;
        if (cc_ip_parse(a, first) < 0 || str_to_u64(slash + 1, &prefix) < 0 ||
            prefix < 16 || prefix > 32)
            return -1;
        uint32_t mask = prefix == 32 ? ~0u : ~(~0u >> prefix);
        if ((*first & ~mask) != 0)
            return -1;
        *last = *first | ~mask;
        return 0;
    }
    if (cc_ip_parse(a, first) < 0)
        return -1;
    *last = *first;
    return 0;
}

int cc_pool_parse(const char *spec, struct cc_pool *out,
                  struct koala_error **err)
{
    memset(out, 0, sizeof(*out));
    if (spec == NULL)
        return 0;
    _cleanup_free_ char *copy = strdup(spec);
    if (copy == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    uint64_t total = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok;
         tok = strtok_r(NULL, ", \t", &save)) {
        uint32_t first, last;
        if (parse_item(tok, &first, &last) < 0)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "cc.public_ips: '%s' is not an IPv4 address, "
                             "CIDR (/16 to /32) or range A-B",
                             tok);
        if (out->n == CC_POOL_MAX_RANGES)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "cc.public_ips: at most %d ranges",
                             CC_POOL_MAX_RANGES);
        /* Insert in order; a range touching another overlaps it. */
        size_t at = 0;
        while (at < out->n && out->r[at].first < first)
            at++;
        if ((at > 0 && out->r[at - 1].last >= first) ||
            (at < out->n && out->r[at].first <= last))
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "cc.public_ips: '%s' overlaps another range", tok);
        memmove(&out->r[at + 1], &out->r[at],
                (out->n - at) * sizeof(out->r[0]));
        out->r[at].first = first;
        out->r[at].last = last;
        out->n++;
        total += (uint64_t)last - first + 1;
        if (total > CC_POOL_MAX_ADDRS)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "cc.public_ips: more than %d addresses",
                             CC_POOL_MAX_ADDRS);
    }
    out->count = (uint32_t)total;
    return 0;
}

bool cc_pool_has(const struct cc_pool *p, uint32_t ip)
{
    for (size_t i = 0; i < p->n; i++)
        if (ip >= p->r[i].first && ip <= p->r[i].last)
            return true;
    return false;
}

/* ---- the map in cc.db ---- */

int store_eip_get(struct db *db, int64_t *version, struct cc_eip **out,
                  size_t *n, struct koala_error **err)
{
    *version = 0;
    if (out) {
        *out = NULL;
        *n = 0;
    }
    sqlite3_stmt *st =
        db_stmt(db, "SELECT version FROM public_map WHERE id = 1", err);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(db, "reading the public address map", err);
    if (out == NULL)
        return 0;
    st = db_stmt(db,
                 "SELECT public_ip, private_ip, instance_id FROM"
                 " public_addresses ORDER BY public_ip",
                 err);
    if (st == NULL)
        return -1;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct cc_eip *v = realloc(*out, cap * sizeof(*v));
            if (v == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = v;
        }
        struct cc_eip *e = &(*out)[(*n)++];
        const unsigned char *t;
        t = sqlite3_column_text(st, 0);
        snprintf(e->public_ip, sizeof(e->public_ip), "%s", t ? (char *)t : "");
        t = sqlite3_column_text(st, 1);
        snprintf(e->private_ip, sizeof(e->private_ip), "%s",
                 t ? (char *)t : "");
        t = sqlite3_column_text(st, 2);
        snprintf(e->instance_id, sizeof(e->instance_id), "%s",
                 t ? (char *)t : "");
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM
                   ? error_set(err, ENOMEM, NULL, "out of memory")
                   : db_error(db, "reading the public address map", err);
    }
    return 0;
}

int store_eip_of(struct db *db, const char *instance_id, char out[16],
                 struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT public_ip FROM public_addresses WHERE"
                               " instance_id = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, 16, "%s", t ? (const char *)t : "");
    }
    db_stmt_done(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return db_error(db, "reading a public address", err);
}

/* ---- SetPublicAddresses ---- */

/* The document's pairs, checked against the pool and the subnet. */
static int parse_map(const struct cc *cc, const struct xml_node *op,
                     struct cc_eip **out, size_t *n, struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    const struct cc_subnet *sn = &cc->net.subnet;
    uint32_t mask = ~0u << (32 - sn->prefix);
    for (const struct xml_node *a = xml_next_child(op, NULL, "address"); a;
         a = xml_next_child(op, a, "address")) {
        if (*n == CC_POOL_MAX_ADDRS)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "at most %d addresses", CC_POOL_MAX_ADDRS);
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct cc_eip *v = realloc(*out, cap * sizeof(*v));
            if (v == NULL)
                return error_set(err, ENOMEM, NULL, "out of memory");
            *out = v;
        }
        _cleanup_free_ char *pub = soap_text(a, "publicIp", err);
        _cleanup_free_ char *priv = pub ? soap_text(a, "privateIp", err) : NULL;
        _cleanup_free_ char *id = priv ? soap_text(a, "instanceId", err) : NULL;
        if (id == NULL)
            return -1;
        str_trim(pub);
        str_trim(priv);
        str_trim(id);
        uint32_t p, q;
        if (cc_ip_parse(pub, &p) < 0 || !cc_pool_has(&cc->net.pool, p))
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "public address '%.40s' is not in the pool of "
                             "cluster %s",
                             pub, cc->opt.name);
        if (cc_ip_parse(priv, &q) < 0 || (q & mask) != sn->network ||
            q == sn->network || q == sn->broadcast || q == sn->router)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "private address '%.40s' is not a host of the "
                             "cluster's subnet",
                             priv);
        if (!cc_instance_id_valid(id))
            return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                             "Invalid id: \"%.40s\"", id);
        struct cc_eip *e = &(*out)[*n];
        cc_ip_format(p, e->public_ip);
        cc_ip_format(q, e->private_ip);
        snprintf(e->instance_id, sizeof(e->instance_id), "%s", id);
        for (size_t i = 0; i < *n; i++)
            if (strcmp((*out)[i].public_ip, e->public_ip) == 0 ||
                strcmp((*out)[i].private_ip, e->private_ip) == 0 ||
                strcmp((*out)[i].instance_id, e->instance_id) == 0)
                return error_set(err, EINVAL, "InvalidParameterValue",
                                 "%s -> %s (%s): an address or instance "
                                 "twice in the map",
                                 e->public_ip, e->private_ip, id);
        (*n)++;
    }
    return 0;
}

/* Stores the map unless the one held is as new: *held is the version held
 * afterwards, *stored whether it was this one. */
static int store_map(struct db *db, int64_t version, const struct cc_eip *m,
                     size_t n, int64_t *held, bool *stored,
                     struct koala_error **err)
{
    *stored = false;
    if (db_begin(db, err) < 0)
        return -1;
    if (store_eip_get(db, held, NULL, NULL, err) < 0)
        goto fail;
    if (*held >= version) {
        db_rollback(db);
        return 0;
    }
    if (db_exec(db, "DELETE FROM public_addresses", err) < 0)
        goto fail;
    sqlite3_stmt *st = db_stmt(db,
                               "INSERT OR REPLACE INTO public_map (id, version)"
                               " VALUES (1, ?)",
                               err);
    if (st == NULL)
        goto fail;
    sqlite3_bind_int64(st, 1, version);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(db, "writing the public address map", err);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        st = db_stmt(db,
                     "INSERT INTO public_addresses (public_ip, private_ip,"
                     " instance_id) VALUES (?, ?, ?)",
                     err);
        if (st == NULL)
            goto fail;
        sqlite3_bind_text(st, 1, m[i].public_ip, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, m[i].private_ip, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, m[i].instance_id, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE) {
            db_error(db, "writing the public address map", err);
            goto fail;
        }
    }
    if (db_commit(db, err) < 0)
        goto fail;
    *held = version;
    *stored = true;
    return 0;
fail:
    db_rollback(db);
    return -1;
}

void cc_op_set_public_addresses(struct cc_req *r)
{
    struct koala_error *err = NULL;
    struct cc_eip *map = NULL;
    size_t n = 0;
    long long version;
    struct db *db;
    int64_t held = 0;
    bool stored = false;
    if (soap_int(r->op, "version", -1, &version, &err) < 0)
        goto fail;
    if (version < 1) {
        error_set(&err, EINVAL, "MissingParameter",
                  "SetPublicAddresses needs a version (1 or more)");
        goto fail;
    }
    if (r->cc->net.pool.n == 0 && xml_child(r->op, "address")) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "cluster %s has no public addresses", r->cc->opt.name);
        goto fail;
    }
    if (parse_map(r->cc, r->op, &map, &n, &err) < 0 ||
        (db = cc_req_db(r, &err)) == NULL ||
        store_map(db, version, map, n, &held, &stored, &err) < 0)
        goto fail;
    free(map);
    map = NULL;
    if (stored) {
        log_info("public address map version %lld: %zu associations", version,
                 n);
        /* Stored is acknowledged: a failed apply is retried by the
         * poller (eip_dirty), the map is not lost. */
        if (eipnat_apply(r->cc, db, &err) < 0) {
            log_error("public address NAT: %s", error_message(err));
            error_free(err);
            err = NULL;
        }
    }
    struct xml_writer *w = soap_start("SetPublicAddressesResponse", CC_NS);
    xml_u64_element(w, "version", (uint64_t)held);
    cc_reply(r, w);
    return;
fail:
    free(map);
    cc_fail(r, err);
}

void cc_op_describe_public_addresses(struct cc_req *r)
{
    struct koala_error *err = NULL;
    struct cc_eip *map = NULL;
    size_t n = 0;
    int64_t version = 0;
    struct db *db = cc_req_db(r, &err);
    if (db == NULL || store_eip_get(db, &version, &map, &n, &err) < 0)
        return cc_fail(r, err);
    const struct cc_pool *p = &r->cc->net.pool;
    struct xml_writer *w = soap_start("DescribePublicAddressesResponse", CC_NS);
    xml_u64_element(w, "version", (uint64_t)version);
    for (size_t i = 0; i < p->n; i++) {
        char a[16], b[16];
        cc_ip_format(p->r[i].first, a);
        cc_ip_format(p->r[i].last, b);
        xml_start(w, "range");
        xml_text_element(w, "first", a);
        xml_text_element(w, "last", b);
        xml_end(w);
    }
    for (size_t i = 0; i < n; i++) {
        xml_start(w, "address");
        xml_text_element(w, "publicIp", map[i].public_ip);
        xml_text_element(w, "privateIp", map[i].private_ip);
        xml_text_element(w, "instanceId", map[i].instance_id);
        xml_end(w);
    }
    free(map);
    cc_reply(r, w);
}
