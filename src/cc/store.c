/* store.c: koala-cc's state in SQLite (data_dir/cc.db): its nodes, the
 * instances it placed (with node, MAC, IP and last known state) and the
 * address allocations.  Everything a restart needs is here; the poller
 * refreshes the rest from the NCs. */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"

static const char schema_v1[] =
    "CREATE TABLE nodes ("
    "  name TEXT PRIMARY KEY,"
    "  endpoint TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  hypervisor TEXT NOT NULL DEFAULT '',"
    "  cores_max INTEGER NOT NULL DEFAULT 0,"
    "  cores_avail INTEGER NOT NULL DEFAULT 0,"
    "  memory_max INTEGER NOT NULL DEFAULT 0,"
    "  memory_avail INTEGER NOT NULL DEFAULT 0,"
    "  disk_max INTEGER NOT NULL DEFAULT 0,"
    "  disk_avail INTEGER NOT NULL DEFAULT 0,"
    "  instance_count INTEGER NOT NULL DEFAULT 0,"
    "  fails INTEGER NOT NULL DEFAULT 0,"
    "  last_seen_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE instances ("
    "  id TEXT PRIMARY KEY,"
    "  reservation TEXT NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  launch_index INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  reason_code TEXT NOT NULL DEFAULT '',"
    "  reason_message TEXT NOT NULL DEFAULT '',"
    "  type_name TEXT NOT NULL,"
    "  cores INTEGER NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  disk_gb INTEGER NOT NULL,"
    "  image_id TEXT NOT NULL,"
    "  kernel_id TEXT NOT NULL DEFAULT '',"
    "  ramdisk_id TEXT NOT NULL DEFAULT '',"
    "  node TEXT NOT NULL,"
    "  mac TEXT NOT NULL,"
    "  ip TEXT NOT NULL,"
    "  network TEXT NOT NULL,"
    "  launch_ms INTEGER NOT NULL,"
    "  hypervisor TEXT NOT NULL DEFAULT '',"
    "  seen INTEGER NOT NULL DEFAULT 0,"
    "  terminate_requested INTEGER NOT NULL DEFAULT 0,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE INDEX instances_node ON instances(node, state);"
    "CREATE TABLE addresses ("
    "  network TEXT NOT NULL,"
    "  ip INTEGER NOT NULL,"
    "  ip_text TEXT NOT NULL,"
    "  mac TEXT NOT NULL UNIQUE,"
    "  instance_id TEXT NOT NULL UNIQUE,"
    "  PRIMARY KEY (network, ip)) WITHOUT ROWID;";

/* ncRunInstance requests not yet confirmed by their node (run.c). */
static const char schema_v2[] = "CREATE TABLE launches ("
                                "  instance_id TEXT PRIMARY KEY,"
                                "  request TEXT NOT NULL);";

/* The guests' DHCP leases (leases.c). */
static const char schema_v3[] =
    "ALTER TABLE instances ADD COLUMN lease_expiry INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE instances ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 0;";

/* What the metadata service serves beyond the instance record (imeta.c);
 * goes with the instance. */
static const char schema_v4[] =
    "CREATE TABLE instance_meta ("
    "  id TEXT PRIMARY KEY,"
    "  region TEXT NOT NULL,"
    "  groups TEXT,"
    "  http_tokens TEXT NOT NULL,"
    "  http_endpoint TEXT NOT NULL,"
    "  hop_limit INTEGER NOT NULL,"
    "  tags TEXT NOT NULL,"
    "  user_data TEXT,"
    "  key_name TEXT,"
    "  public_key TEXT);"
    "CREATE TRIGGER instance_meta_gc AFTER DELETE ON instances BEGIN"
    "  DELETE FROM instance_meta WHERE id = old.id; END;";

/* The network policy document held (netpush.c): one row. */
static const char schema_v5[] = "CREATE TABLE net_policy ("
                                "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                                "  version INTEGER NOT NULL,"
                                "  document TEXT NOT NULL);";

/* The peers of the tunnels between clusters' routers, as the CLC last
 * listed them (tunnel.c). */
static const char schema_v6[] =
    "CREATE TABLE tunnel_peers ("
    "  zone TEXT PRIMARY KEY,"
    "  address TEXT NOT NULL,"
    "  subnet TEXT NOT NULL,"
    "  router TEXT NOT NULL);"
    /* the cloud's tunnel secret (hex) when they are encrypted, else '' */
    "CREATE TABLE tunnel_config ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  secret TEXT NOT NULL);";

/* The public address map the CLC pushes (eip.c): the version held and
 * its pairs, applied as the router's 1:1 NAT (eipnat.c). */
static const char schema_v7[] = "CREATE TABLE public_map ("
                                "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                                "  version INTEGER NOT NULL);"
                                "CREATE TABLE public_addresses ("
                                "  public_ip TEXT PRIMARY KEY,"
                                "  private_ip TEXT NOT NULL UNIQUE,"
                                "  instance_id TEXT NOT NULL UNIQUE);";

/* EBS: the instance's attachments as its NC reports them (volumes.c). */
static const char schema_v8[] =
    "ALTER TABLE instances ADD COLUMN volumes TEXT NOT NULL DEFAULT '';";

const char *const cc_migrations[] = {schema_v1, schema_v2, schema_v3,
                                     schema_v4, schema_v5, schema_v6,
                                     schema_v7, schema_v8};
const size_t cc_n_migrations = ARRAY_SIZE(cc_migrations);

#define INSTANCE_COLUMNS                                                       \
    "id, reservation, owner, launch_index, state, reason_code, "               \
    "reason_message, type_name, cores, memory_mb, disk_gb, image_id, "         \
    "kernel_id, ramdisk_id, node, mac, ip, network, launch_ms, hypervisor, "   \
    "seen, terminate_requested, updated_ms, lease_expiry, lease_ms, volumes"

static void col_copy(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, size, "%s", t ? (const char *)t : "");
}

static void instance_from_row(sqlite3_stmt *st, struct cc_instance *in)
{
    memset(in, 0, sizeof(*in));
    col_copy(st, 0, in->id, sizeof(in->id));
    col_copy(st, 1, in->reservation, sizeof(in->reservation));
    col_copy(st, 2, in->owner, sizeof(in->owner));
    in->launch_index = sqlite3_column_int64(st, 3);
    col_copy(st, 4, in->state, sizeof(in->state));
    col_copy(st, 5, in->reason_code, sizeof(in->reason_code));
    col_copy(st, 6, in->reason_message, sizeof(in->reason_message));
    col_copy(st, 7, in->type.name, sizeof(in->type.name));
    in->type.cores = sqlite3_column_int64(st, 8);
    in->type.memory_mb = sqlite3_column_int64(st, 9);
    in->type.disk_gb = sqlite3_column_int64(st, 10);
    col_copy(st, 11, in->image_id, sizeof(in->image_id));
    col_copy(st, 12, in->kernel_id, sizeof(in->kernel_id));
    col_copy(st, 13, in->ramdisk_id, sizeof(in->ramdisk_id));
    col_copy(st, 14, in->node, sizeof(in->node));
    col_copy(st, 15, in->mac, sizeof(in->mac));
    col_copy(st, 16, in->ip, sizeof(in->ip));
    col_copy(st, 17, in->network, sizeof(in->network));
    in->launch_ms = sqlite3_column_int64(st, 18);
    col_copy(st, 19, in->hypervisor, sizeof(in->hypervisor));
    in->seen = sqlite3_column_int(st, 20) != 0;
    in->terminate_requested = sqlite3_column_int(st, 21) != 0;
    in->updated_ms = sqlite3_column_int64(st, 22);
    in->lease_expiry = sqlite3_column_int64(st, 23);
    in->lease_ms = sqlite3_column_int64(st, 24);
    col_copy(st, 25, in->volumes, sizeof(in->volumes));
}

int store_instance_get(struct db *db, const char *id, struct cc_instance *out,
                       struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT " INSTANCE_COLUMNS " FROM instances WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        instance_from_row(st, out);
    db_stmt_done(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return db_error(db, "reading an instance", err);
}

int store_instance_by_mac(struct db *db, const char *mac,
                          struct cc_instance *out, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT " INSTANCE_COLUMNS " FROM instances"
                               " WHERE mac = ? AND state != 'terminated'",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, mac, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up an instance by MAC", err);
    if (rc == 0)
        instance_from_row(st, out);
    db_stmt_done(st);
    return rc;
}

int store_instance_insert(struct db *db, const struct cc_instance *in,
                          struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "INSERT INTO instances (" INSTANCE_COLUMNS ") VALUES (?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        err);
    if (st == NULL)
        return -1;
    int c = 1;
    sqlite3_bind_text(st, c++, in->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->reservation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, c++, in->launch_index);
    sqlite3_bind_text(st, c++, in->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->reason_code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->reason_message, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->type.name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, c++, in->type.cores);
    sqlite3_bind_int64(st, c++, in->type.memory_mb);
    sqlite3_bind_int64(st, c++, in->type.disk_gb);
    sqlite3_bind_text(st, c++, in->image_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->kernel_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->ramdisk_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->mac, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->ip, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, c++, in->network, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, c++, in->launch_ms);
    sqlite3_bind_text(st, c++, in->hypervisor, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, c++, in->seen);
    sqlite3_bind_int(st, c++, in->terminate_requested);
    sqlite3_bind_int64(st, c++, in->updated_ms);
    sqlite3_bind_int64(st, c++, in->lease_expiry);
    sqlite3_bind_int64(st, c++, in->lease_ms);
    sqlite3_bind_text(st, c++, in->volumes, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "recording an instance", err);
    return 0;
}

int store_instance_update(struct db *db, const struct cc_instance *in,
                          struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "UPDATE instances SET state = ?, reason_code = ?, reason_message = ?,"
        " hypervisor = ?, seen = ?, terminate_requested = ?, node = ?,"
        " updated_ms = ?, lease_expiry = ?, lease_ms = ?, volumes = ?"
        " WHERE id = ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, in->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, in->reason_code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, in->reason_message, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, in->hypervisor, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, in->seen);
    sqlite3_bind_int(st, 6, in->terminate_requested);
    sqlite3_bind_text(st, 7, in->node, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, in->updated_ms);
    sqlite3_bind_int64(st, 9, in->lease_expiry);
    sqlite3_bind_int64(st, 10, in->lease_ms);
    sqlite3_bind_text(st, 11, in->volumes, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, in->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "updating an instance", err);
    /* Its node has it (or it is over): its launch is no longer needed. */
    if (in->seen || strcmp(in->state, "terminated") == 0)
        return store_launch_drop(db, in->id, err);
    return 0;
}

int store_launch_drop(struct db *db, const char *id, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "DELETE FROM launches WHERE instance_id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "dropping a launch", err);
    return 0;
}

int store_launch_put(struct db *db, const char *id, const char *req, size_t len,
                     struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "INSERT OR REPLACE INTO launches (instance_id, request) VALUES (?, ?)",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, req, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "recording a launch", err);
    return 0;
}

char *store_launch_get(struct db *db, const char *id, size_t *len,
                       struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT request FROM launches WHERE instance_id = ?", err);
    if (st == NULL)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    char *out = NULL;
    if (db_step_row(db, st, "reading a launch", err) == 0) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        out = malloc(*len + 1);
        if (out) {
            memcpy(out, sqlite3_column_text(st, 0), *len);
            out[*len] = '\0';
        } else {
            error_set(err, ENOMEM, NULL, "out of memory");
        }
    }
    db_stmt_done(st);
    return out;
}

/* Appends the rows of st to a growing array. */
static int collect(struct db *db, sqlite3_stmt *st, struct cc_instance **out,
                   size_t *n, size_t *cap, struct koala_error **err)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            struct cc_instance *g = realloc(*out, nc * sizeof(**out));
            if (g == NULL)
                return error_set(err, ENOMEM, NULL, "out of memory");
            *out = g;
            *cap = nc;
        }
        instance_from_row(st, &(*out)[(*n)++]);
    }
    if (rc != SQLITE_DONE)
        return db_error(db, "listing instances", err);
    return 0;
}

int store_instance_list(struct db *db, const char *const *ids, size_t n_ids,
                        struct cc_instance **out, size_t *n,
                        struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    int rc = 0;
    if (ids == NULL) {
        sqlite3_stmt *st = db_stmt(db,
                                   "SELECT " INSTANCE_COLUMNS
                                   " FROM instances ORDER BY launch_ms, "
                                   "reservation, launch_index, id",
                                   err);
        if (st == NULL)
            return -1;
        rc = collect(db, st, out, n, &cap, err);
        db_stmt_done(st);
    } else {
        for (size_t i = 0; i < n_ids && rc == 0; i++) {
            sqlite3_stmt *st = db_stmt(
                db, "SELECT " INSTANCE_COLUMNS " FROM instances WHERE id = ?",
                err);
            if (st == NULL)
                return -1;
            sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
            rc = collect(db, st, out, n, &cap, err);
            db_stmt_done(st);
        }
    }
    if (rc < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int store_instances_on_node(struct db *db, const char *node,
                            struct cc_instance **out, size_t *n,
                            struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT " INSTANCE_COLUMNS " FROM instances WHERE node = ? AND "
                "state != 'terminated' ORDER BY id",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int rc = collect(db, st, out, n, &cap, err);
    db_stmt_done(st);
    if (rc < 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int store_node_usage(struct db *db, const char *node, struct cc_res *out,
                     struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT COALESCE(SUM(cores), 0), COALESCE(SUM(memory_mb), 0), "
                "COALESCE(SUM(disk_gb), 0) FROM instances WHERE node = ? AND "
                "state != 'terminated'",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->cores = sqlite3_column_int64(st, 0);
        out->memory_mb = sqlite3_column_int64(st, 1);
        out->disk_gb = sqlite3_column_int64(st, 2);
    }
    db_stmt_done(st);
    if (rc != SQLITE_ROW)
        return db_error(db, "summing a node's instances", err);
    return 0;
}

int store_purge_terminated(struct db *db, int64_t before_ms, int *purged,
                           struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "DELETE FROM instances WHERE state = "
                               "'terminated' AND updated_ms < ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "purging instances", err);
    *purged = sqlite3_changes(db_handle(db));
    return 0;
}

int store_node_put(struct db *db, const struct cc_node *n,
                   struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "INSERT OR REPLACE INTO nodes (name, endpoint, state, hypervisor, "
        "cores_max, cores_avail, memory_max, memory_avail, disk_max, "
        "disk_avail, instance_count, fails, last_seen_ms) VALUES (?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, n->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, n->endpoint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cc_node_state_name(n->state), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, n->hypervisor, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, n->max.cores);
    sqlite3_bind_int64(st, 6, n->avail.cores);
    sqlite3_bind_int64(st, 7, n->max.memory_mb);
    sqlite3_bind_int64(st, 8, n->avail.memory_mb);
    sqlite3_bind_int64(st, 9, n->max.disk_gb);
    sqlite3_bind_int64(st, 10, n->avail.disk_gb);
    sqlite3_bind_int64(st, 11, n->instance_count);
    sqlite3_bind_int(st, 12, n->fails);
    sqlite3_bind_int64(st, 13, n->last_seen_ms);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "recording a node", err);
    return 0;
}

int store_node_delete(struct db *db, const char *name, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, "DELETE FROM nodes WHERE name = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "removing a node", err);
    return 0;
}

static enum cc_node_state state_from_name(const char *s)
{
    if (strcmp(s, "ENABLED") == 0)
        return CC_NODE_ENABLED;
    if (strcmp(s, "BROKEN") == 0)
        return CC_NODE_BROKEN;
    return CC_NODE_NOTREADY;
}

int store_node_list(struct db *db, struct cc_node **out, size_t *n,
                    struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT name, endpoint, state, hypervisor, cores_max, cores_avail, "
        "memory_max, memory_avail, disk_max, disk_avail, instance_count, "
        "fails, last_seen_ms FROM nodes ORDER BY name",
        err);
    if (st == NULL)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            struct cc_node *g = realloc(*out, cap * sizeof(**out));
            if (g == NULL) {
                db_stmt_done(st);
                free(*out);
                *out = NULL;
                return error_set(err, ENOMEM, NULL, "out of memory");
            }
            *out = g;
        }
        struct cc_node *nd = &(*out)[(*n)++];
        memset(nd, 0, sizeof(*nd));
        col_copy(st, 0, nd->name, sizeof(nd->name));
        col_copy(st, 1, nd->endpoint, sizeof(nd->endpoint));
        char state[16];
        col_copy(st, 2, state, sizeof(state));
        nd->state = state_from_name(state);
        col_copy(st, 3, nd->hypervisor, sizeof(nd->hypervisor));
        nd->max.cores = sqlite3_column_int64(st, 4);
        nd->avail.cores = sqlite3_column_int64(st, 5);
        nd->max.memory_mb = sqlite3_column_int64(st, 6);
        nd->avail.memory_mb = sqlite3_column_int64(st, 7);
        nd->max.disk_gb = sqlite3_column_int64(st, 8);
        nd->avail.disk_gb = sqlite3_column_int64(st, 9);
        nd->instance_count = sqlite3_column_int64(st, 10);
        nd->fails = sqlite3_column_int(st, 11);
        nd->last_seen_ms = sqlite3_column_int64(st, 12);
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return db_error(db, "listing nodes", err);
    }
    return 0;
}

int store_dhcp_hosts(struct db *db, const char *network, struct buf *out,
                     struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT mac, ip_text, instance_id FROM "
                               "addresses WHERE network = ? ORDER BY ip",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, network, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *mac = (const char *)sqlite3_column_text(st, 0);
        const char *ip = (const char *)sqlite3_column_text(st, 1);
        const char *name = (const char *)sqlite3_column_text(st, 2);
        if (dhcp_hosts_format(&mac, &ip, &name, 1, out) < 0) {
            db_stmt_done(st);
            return error_set(err, ENOMEM, NULL, "out of memory");
        }
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "listing DHCP hosts", err);
    return 0;
}
