/* db.c: SQLite connections, statement cache, migrations and the connection
 * pool (see db.h).
 *
 * DESIGN: connections are opened with SQLITE_OPEN_NOMUTEX (SQLite's
 * "multi-thread" mode): a connection is only ever used by one thread at a
 * time (the pool hands it out exclusively), so SQLite's per-connection
 * mutex would only cost.  Extended result codes stay off, so callers can
 * compare sqlite3_step()'s result with SQLITE_CONSTRAINT.
 *
 * Waiting for the write lock: every connection has a busy timeout, and
 * db_begin() also retries BEGIN IMMEDIATE itself, because in WAL mode
 * SQLite returns SQLITE_BUSY without calling the busy handler in a few
 * cases (another connection running WAL recovery, for one).
 *
 * Pool locking: one mutex guards the idle list and the count of open
 * connections; db_pool_get() waits on the condition variable while every
 * connection is lent out.  Connections are opened outside the mutex, after
 * reserving a slot, so a slow open does not hold up db_pool_put().
 */
#define LOG_MODULE "db"
#include "db.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define DB_BUSY_TIMEOUT_MS 10000
/* How long db_begin() and db_commit() keep retrying on SQLITE_BUSY beyond
 * the busy handler. */
#define DB_BUSY_RETRY_MS 10000

/* SQLite's memory statistics take a global mutex on every allocation,
 * which every request thread would contend for; nothing reads them. */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct stmt_slot {
    const char *sql; /* the key: the address, not the text */
    sqlite3_stmt *stmt;
};

struct db {
    sqlite3 *h;
    struct stmt_slot *slots; /* open addressing, size a power of two */
    size_t n_slots, n_used;
};

static int errno_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EBUSY;
    case SQLITE_NOMEM:
        return ENOMEM;
    case SQLITE_FULL:
        return ENOSPC;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return EACCES;
    case SQLITE_CANTOPEN:
        return ENOENT;
    case SQLITE_CONSTRAINT:
        return EEXIST;
    default:
        return EIO;
    }
}

int db_error(struct db *db, const char *what, struct koala_error **err)
{
    int rc = sqlite3_extended_errcode(db->h);
    return error_set(err, errno_of(rc), NULL, "%s: %s (%d)", what,
                     sqlite3_errmsg(db->h), rc);
}

int db_step_row(struct db *db, sqlite3_stmt *st, const char *what,
                struct koala_error **err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return db_error(db, what, err);
}

sqlite3 *db_handle(struct db *db)
{
    return db->h;
}

int db_exec(struct db *db, const char *sql, struct koala_error **err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    error_set(err, errno_of(rc), NULL, "%s: %s (%d)", sql,
              msg ? msg : sqlite3_errstr(rc), rc);
    sqlite3_free(msg);
    return -1;
}

/* Runs a statement that returns one text row (a PRAGMA) into out. */
static int query_text(struct db *db, const char *sql, char *out, size_t size,
                      struct koala_error **err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(db, sql, err);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, size, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return error_set(err, errno_of(rc), NULL, "%s: %s", sql,
                         sqlite3_errstr(rc));
    return 0;
}

struct db *db_open(const char *path, struct koala_error **err)
{
    if (!sqlite3_threadsafe()) {
        error_set(err, ENOTSUP, NULL, "SQLite was built without threads");
        return NULL;
    }
    struct db *db = calloc(1, sizeof(*db));
    if (db == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pthread_once(&sqlite_once, sqlite_setup);
    int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db->h, flags, NULL);
    if (rc != SQLITE_OK) {
        if (db->h)
            db_error(db, path, err);
        else
            error_set(err, ENOMEM, NULL, "%s: out of memory", path);
        goto fail;
    }
    sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS);
    char mode[32];
    if (query_text(db, "PRAGMA journal_mode=WAL", mode, sizeof(mode), err) < 0)
        goto fail;
    /* An in-memory database (tests) cannot have a WAL. */
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        error_set(err, EIO, NULL, "%s: cannot enable WAL (journal mode %s)",
                  path, mode);
        goto fail;
    }
    if (db_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", err) < 0)
        goto fail;
    return db;
fail:
    error_prefix(err ? *err : NULL, "opening database %s", path);
    db_close(db);
    return NULL;
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->n_slots; i++)
        sqlite3_finalize(db->slots[i].stmt);
    free(db->slots);
    if (db->h && sqlite3_close(db->h) != SQLITE_OK) {
        /* Only a statement not made by db_stmt() can still be open: that
         * is a bug elsewhere; close_v2 frees the handle once it is gone. */
        log_error("closing database: %s", sqlite3_errmsg(db->h));
        sqlite3_close_v2(db->h);
    }
    free(db);
}

/* ---- statement cache ---- */

static size_t slot_of(const char *sql, size_t n_slots)
{
    /* Fibonacci hashing of the address; its low bits are alignment. */
    uint64_t k = (uint64_t)(uintptr_t)sql * 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 32) & (n_slots - 1);
}

static int cache_grow(struct db *db)
{
    size_t n = db->n_slots ? db->n_slots * 2 : 64;
    struct stmt_slot *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < db->n_slots; i++) {
        if (db->slots[i].sql == NULL)
            continue;
        size_t j = slot_of(db->slots[i].sql, n);
        while (slots[j].sql)
            j = (j + 1) & (n - 1);
        slots[j] = db->slots[i];
    }
    free(db->slots);
    db->slots = slots;
    db->n_slots = n;
    return 0;
}

/* One statement of sql, prepared to be kept. */
static sqlite3_stmt *prepare(struct db *db, const char *sql,
                             struct koala_error **err)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                           &tail) != SQLITE_OK) {
        db_error(db, "preparing statement", err);
        error_prefix(err ? *err : NULL, "%s", sql);
        return NULL;
    }
    if (st == NULL || tail[strspn(tail, " \t\r\n;")] != '\0') {
        sqlite3_finalize(st);
        error_set(err, EINVAL, NULL, "%s: not exactly one SQL statement", sql);
        return NULL;
    }
    return st;
}

sqlite3_stmt *db_stmt(struct db *db, const char *sql, struct koala_error **err)
{
    size_t i = 0;
    if (db->n_slots) {
        for (i = slot_of(sql, db->n_slots); db->slots[i].sql;
             i = (i + 1) & (db->n_slots - 1)) {
            if (db->slots[i].sql != sql)
                continue;
            sqlite3_stmt *st = db->slots[i].stmt;
            /* The same address with other text: a caller's buffer (SQL
             * made with snprintf) used again for another statement.  The
             * slot takes the new one. */
            if (strcmp(sqlite3_sql(st), sql) != 0) {
                sqlite3_stmt *fresh = prepare(db, sql, err);
                if (fresh == NULL)
                    return NULL;
                sqlite3_finalize(st);
                db->slots[i].stmt = fresh;
                return fresh;
            }
            /* A caller that forgot db_stmt_done() must not hand the next
             * one a half-run statement with stale bindings. */
            if (sqlite3_stmt_busy(st)) {
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
            }
            return st;
        }
    }
    sqlite3_stmt *st = prepare(db, sql, err);
    if (st == NULL)
        return NULL;
    if ((db->n_used + 1) * 2 > db->n_slots) {
        if (cache_grow(db) < 0) {
            sqlite3_finalize(st);
            error_set(err, ENOMEM, NULL, "out of memory");
            return NULL;
        }
    }
    for (i = slot_of(sql, db->n_slots); db->slots[i].sql;
         i = (i + 1) & (db->n_slots - 1))
        ;
    db->slots[i].sql = sql;
    db->slots[i].stmt = st;
    db->n_used++;
    return st;
}

void db_stmt_done(sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* ---- transactions ---- */

/* Runs a transaction control statement, retrying while the database is
 * busy, with a growing pause (1, 2, 4 ... 64 ms). */
static int exec_retry(struct db *db, const char *sql)
{
    int64_t deadline = time_mono_ms() + DB_BUSY_RETRY_MS;
    useconds_t pause = 1000;
    for (;;) {
        int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
        if ((rc & 0xff) != SQLITE_BUSY || time_mono_ms() >= deadline)
            return rc;
        usleep(pause);
        if (pause < 64000)
            pause *= 2;
    }
}

int db_begin(struct db *db, struct koala_error **err)
{
    if (exec_retry(db, "BEGIN IMMEDIATE") != SQLITE_OK)
        return db_error(db, "beginning transaction", err);
    return 0;
}

int db_begin_read(struct db *db, struct koala_error **err)
{
    if (exec_retry(db, "BEGIN") != SQLITE_OK)
        return db_error(db, "beginning read transaction", err);
    return 0;
}

int db_commit(struct db *db, struct koala_error **err)
{
    if (exec_retry(db, "COMMIT") == SQLITE_OK)
        return 0;
    db_error(db, "committing transaction", err);
    /* Callers treat a failed commit as the end of the transaction. */
    db_rollback(db);
    return -1;
}

void db_rollback(struct db *db)
{
    if (db == NULL || sqlite3_get_autocommit(db->h))
        return; /* no transaction open */
    if (sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
        log_error("rollback: %s", sqlite3_errmsg(db->h));
}

/* ---- migrations ---- */

static int user_version(struct db *db, long *out, struct koala_error **err)
{
    char v[32];
    if (query_text(db, "PRAGMA user_version", v, sizeof(v), err) < 0)
        return -1;
    *out = strtol(v, NULL, 10);
    return 0;
}

int db_migrate(struct db *db, const char *const *migrations, size_t n,
               struct koala_error **err)
{
    long version;
    if (user_version(db, &version, err) < 0)
        return -1;
    if (version < 0 || (size_t)version > n)
        return error_set(err, EINVAL, NULL,
                         "database schema version %ld is newer than this "
                         "program knows (%zu)",
                         version, n);
    while ((size_t)version < n) {
        if (db_begin(db, err) < 0)
            return -1;
        /* Another process may have migrated while we waited for the lock. */
        if (user_version(db, &version, err) < 0)
            goto fail;
        if ((size_t)version < n) {
            char set[64];
            snprintf(set, sizeof(set), "PRAGMA user_version=%ld", version + 1);
            if (db_exec(db, migrations[version], err) < 0 ||
                db_exec(db, set, err) < 0)
                goto fail;
        }
        if (db_commit(db, err) < 0)
            goto fail;
        if (user_version(db, &version, err) < 0)
            return -1;
    }
    return 0;
fail:
    db_rollback(db);
    error_prefix(err ? *err : NULL, "migration %ld", version + 1);
    return -1;
}

/* ---- pool ---- */

struct db_pool {
    char *path;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct db **idle; /* room for max_conns */
    unsigned n_idle;
    unsigned n_open; /* including ones being opened */
    unsigned max_conns;
};

struct db_pool *db_pool_new(const char *path, const char *const *migrations,
                            size_t n_migrations, unsigned max_conns,
                            struct koala_error **err)
{
    struct db_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pool->max_conns = max_conns ? max_conns : 1;
    pool->path = strdup(path);
    pool->idle = calloc(pool->max_conns, sizeof(*pool->idle));
    if (pool->path == NULL || pool->idle == NULL) {
        free(pool->path);
        free(pool->idle);
        free(pool);
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    struct db *db = db_open(path, err);
    if (db == NULL || db_migrate(db, migrations, n_migrations, err) < 0) {
        db_close(db);
        db_pool_free(pool);
        return NULL;
    }
    /* The connection that migrated is the first one lent out. */
    pool->idle[pool->n_idle++] = db;
    pool->n_open = 1;
    return pool;
}

void db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    if (pool->n_idle != pool->n_open)
        log_error("database pool freed with %u connections still lent out",
                  pool->n_open - pool->n_idle);
    for (unsigned i = 0; i < pool->n_idle; i++)
        db_close(pool->idle[i]);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->idle);
    free(pool->path);
    free(pool);
}

struct db *db_pool_get(struct db_pool *pool, struct koala_error **err)
{
    pthread_mutex_lock(&pool->mu);
    while (pool->n_idle == 0 && pool->n_open >= pool->max_conns)
        pthread_cond_wait(&pool->cv, &pool->mu);
    if (pool->n_idle > 0) {
        struct db *db = pool->idle[--pool->n_idle];
        pthread_mutex_unlock(&pool->mu);
        return db;
    }
    pool->n_open++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&pool->mu);
    struct db *db = db_open(pool->path, err);
    if (db == NULL) {
        pthread_mutex_lock(&pool->mu);
        pool->n_open--;
        pthread_cond_signal(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    return db;
}

void db_pool_put(struct db_pool *pool, struct db *db)
{
    if (db == NULL)
        return;
    if (!sqlite3_get_autocommit(db->h)) {
        /* The borrower left a transaction open; the next one must not
         * inherit it (nor the write lock). */
        log_error("connection returned to the pool inside a transaction");
        db_rollback(db);
    }
    pthread_mutex_lock(&pool->mu);
    pool->idle[pool->n_idle++] = db;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}
