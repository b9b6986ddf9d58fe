/* alloc.c: the instances' network addresses: a MAC derived from the
 * instance id and the first free private IP of the network's subnet.
 *
 * Allocations are rows of the `addresses` table (network, ip, mac,
 * instance_id, each unique), written inside the transaction that records
 * the instance, so an address is never handed out twice and survives a
 * restart.  The network address, the router and the broadcast address are
 * never handed out.  A freed address is the first one reused (first free).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"

int cc_subnet_parse(const char *cidr, const char *router, struct cc_subnet *out,
                    struct koala_error **err)
{
    char addr[32];
    const char *slash = cidr ? strchr(cidr, '/') : NULL;
    if (slash == NULL || (size_t)(slash - cidr) >= sizeof(addr))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "subnet %s is not a CIDR (10.111.0.0/16)",
                         cidr ? cidr : "(none)");
    memcpy(addr, cidr, (size_t)(slash - cidr));
    addr[slash - cidr] = '\0';
    uint64_t prefix;
    struct in_addr a;
    if (inet_pton(AF_INET, addr, &a) != 1 ||
        str_to_u64(slash + 1, &prefix) < 0 || prefix < 8 || prefix > 30)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "subnet %s: an IPv4 CIDR with a prefix of 8 to 30 "
                         "is needed",
                         cidr);
    uint32_t net = ntohl(a.s_addr);
    uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
    if ((net & ~mask) != 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "subnet %s has host bits set", cidr);
    out->network = net;
    out->prefix = (unsigned)prefix;
    out->broadcast = net | ~mask;
    out->router = net + 1;
    if (router && *router) {
        if (inet_pton(AF_INET, router, &a) != 1)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "router %s is not an IPv4 address", router);
        uint32_t r = ntohl(a.s_addr);
        if ((r & mask) != net || r == net || r == out->broadcast)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "router %s is not a host of %s", router, cidr);
        out->router = r;
    }
    return 0;
}

void cc_ip_format(uint32_t ip, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255,
             (ip >> 8) & 255, ip & 255);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void cc_mac_for(const char *instance_id, unsigned attempt, char out[18])
{
    unsigned char b[4] = {0};
    size_t len = strlen(instance_id);
    bool hex = len >= 8;
    for (size_t i = 0; hex && i < 8; i++)
        hex = hexval(instance_id[len - 8 + i]) >= 0;
    if (hex && attempt == 0) {
        for (size_t i = 0; i < 4; i++)
            b[i] = (unsigned char)(hexval(instance_id[len - 8 + 2 * i]) << 4 |
                                   hexval(instance_id[len - 7 + 2 * i]));
    } else {
        /* FNV-1a of the id and the attempt number. */
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)instance_id[i]) * 16777619u;
        for (unsigned i = 0; i < 4; i++)
            h = (h ^ ((attempt >> (8 * i)) & 255)) * 16777619u;
        b[0] = (unsigned char)(h >> 24);
        b[1] = (unsigned char)(h >> 16);
        b[2] = (unsigned char)(h >> 8);
        b[3] = (unsigned char)h;
    }
    snprintf(out, 18, "d0:0d:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]);
}

/* 1 when the MAC is taken, 0 free, -1 error. */
static int mac_taken(struct db *db, const char *mac, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT 1 FROM addresses WHERE mac = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, mac, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        return db_error(db, "looking up a MAC", err);
    return 0;
}

/* The first host address of sn (after the router) not in the table. */
static int first_free_ip(struct db *db, const char *network,
                         const struct cc_subnet *sn, uint32_t *out,
                         struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT ip FROM addresses WHERE network = ? "
                               "AND ip > ? AND ip < ? ORDER BY ip",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, network, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sn->network);
    sqlite3_bind_int64(st, 3, sn->broadcast);
    uint32_t want = sn->network + 1;
    int rc;
    bool found = false;
    for (;;) {
        while (want == sn->router)
            want++;
        if (want >= sn->broadcast)
            break;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            if (rc != SQLITE_DONE) {
                db_stmt_done(st);
                return db_error(db, "listing addresses", err);
            }
            found = true; /* nothing above want is taken */
            break;
        }
        uint32_t used = (uint32_t)sqlite3_column_int64(st, 0);
        if (used > want) {
            found = true;
            break;
        }
        if (used == want)
            want++;
    }
    db_stmt_done(st);
    if (!found || want >= sn->broadcast)
        return error_set(err, ENOSPC, "InsufficientAddressCapacity",
                         "no free address left in the network %s", network);
    *out = want;
    return 0;
}

int alloc_address(struct db *db, const char *network,
                  const struct cc_subnet *sn, const char *instance_id,
                  char mac[18], char ip[16], struct koala_error **err)
{
    int taken = 1;
    for (unsigned attempt = 0; attempt < 64 && taken; attempt++) {
        cc_mac_for(instance_id, attempt, mac);
        if ((taken = mac_taken(db, mac, err)) < 0)
            return -1;
    }
    if (taken)
        return error_set(err, EEXIST, NULL, "no unique MAC for %s",
                         instance_id);
    uint32_t a = 0;
    if (first_free_ip(db, network, sn, &a, err) < 0)
        return -1;
    cc_ip_format(a, ip);
    sqlite3_stmt *st = db_stmt(db,
                               "INSERT INTO addresses (network, ip, ip_text, "
                               "mac, instance_id) VALUES (?, ?, ?, ?, ?)",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, network, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a);
    sqlite3_bind_text(st, 3, ip, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, mac, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, instance_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "allocating an address", err);
    return 0;
}

int alloc_release(struct db *db, const char *instance_id, bool *freed,
                  struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "DELETE FROM addresses WHERE instance_id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "freeing an address", err);
    if (freed)
        *freed = sqlite3_changes(db_handle(db)) > 0;
    return 0;
}
