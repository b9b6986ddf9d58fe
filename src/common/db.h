/* db.h: the embedded database (SQLite in WAL mode) every daemon keeps its
 * state in.
 *
 * Durability: connections run with journal_mode=WAL, synchronous=FULL and
 * foreign_keys=ON, so a committed transaction survives kill -9 and power
 * loss.  Writers use BEGIN IMMEDIATE and a busy timeout, so concurrent writers
 * queue instead of failing.
 *
 * Threads: a `struct db` (one connection) is used by one thread at a time.
 * Servers keep a `struct db_pool` and take a connection per request.
 * Prepared statements are cached per connection, keyed by the SQL text's
 * address, so hot queries are prepared once (pass string literals).
 *
 * Schema: db_migrate() applies an array of migration scripts in order,
 * tracking progress in PRAGMA user_version, each in its own transaction.
 */
#ifndef KOALA_DB_H
#define KOALA_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct db;

struct db *db_open(const char *path, struct koala_error **err);
void db_close(struct db *db);
sqlite3 *db_handle(struct db *db);

int db_exec(struct db *db, const char *sql, struct koala_error **err);
int db_migrate(struct db *db, const char *const *migrations, size_t n,
               struct koala_error **err);

/* Returns the cached, reset, unbound statement for sql, or NULL with *err
 * set.  The cache is keyed by sql's address (a literal's is looked up in
 * one step); a buffer used again with other text gets its new statement. */
sqlite3_stmt *db_stmt(struct db *db, const char *sql, struct koala_error **err);
/* Resets and clears bindings of a statement obtained from db_stmt.  Always
 * call it when done (it is what makes the statement reusable). */
void db_stmt_done(sqlite3_stmt *stmt);

int db_begin(struct db *db, struct koala_error **err); /* BEGIN IMMEDIATE */
/* BEGIN (deferred): several reads see one snapshot, and pay for SQLite's
 * locks once instead of once per statement. */
int db_begin_read(struct db *db, struct koala_error **err);
int db_commit(struct db *db, struct koala_error **err);
void db_rollback(struct db *db); /* never fails */

/* Turns the last SQLite error of db into *err (code NULL: internal) and
 * returns -1. */
int db_error(struct db *db, const char *what, struct koala_error **err);
/* Steps st once: 0 with a row, 1 when there is none, -1 with *err. */
int db_step_row(struct db *db, sqlite3_stmt *st, const char *what,
                struct koala_error **err);

/* ---- group commit (db_group.c) ---- */
struct db_group;
struct db_pool;

/* A job's changes: statements on db, inside a transaction the job shares
 * with others.  Returns 0, or -1 with *err set (its changes are then rolled
 * back; the other jobs' are not). */
typedef int (*db_group_fn)(struct db *db, void *ctx, struct koala_error **err);

/* Commits jobs of concurrent callers together, one fsync for many (see
 * db_group.c).  Connections come from pool.  max_batch: jobs per
 * transaction at most (0: 256). */
struct db_group *db_group_new(struct db_pool *pool, unsigned max_batch);
void db_group_free(struct db_group *g); /* NULL-safe; no caller may wait */
/* Runs fn(db, ctx) in a group transaction; returns once it is committed
 * (durable), 0, or -1 with *err set (the job failed, or the commit). */
int db_group_run(struct db_group *g, db_group_fn fn, void *ctx,
                 struct koala_error **err);

/* ---- pool ---- */
struct db_pool;

/* Opens the database once to run the migrations, then lends up to max_conns
 * connections (opened lazily). */
struct db_pool *db_pool_new(const char *path, const char *const *migrations,
                            size_t n_migrations, unsigned max_conns,
                            struct koala_error **err);
void db_pool_free(struct db_pool *pool);
/* Blocks until a connection is free. */
struct db *db_pool_get(struct db_pool *pool, struct koala_error **err);
void db_pool_put(struct db_pool *pool, struct db *db);

static inline void db_closep(struct db **d)
{
    db_close(*d);
}
#define _cleanup_db_ __attribute__((cleanup(db_closep)))

#endif
