/* test_db.c: the SQLite wrapper: pragmas, migrations, the statement cache,
 * transactions and the connection pool under concurrent writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "db.h"

static char g_dir[64];
static char g_path[128];

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-db-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/test.db", g_dir);
    return 0;
}

static int teardown(void **s)
{
    char p[160];
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        snprintf(p, sizeof(p), "%s%s", g_path, suffixes[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

static const char *const migrations[] = {
    "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO counter VALUES(1, 0);",
    "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
    "CREATE TABLE child(id INTEGER PRIMARY KEY,"
    " parent INTEGER NOT NULL REFERENCES parent(id));",
    "CREATE TABLE log(id INTEGER PRIMARY KEY, who INTEGER, what TEXT);",
};

static long pragma_int(struct db *db, const char *sql)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(db, sql, &err);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long v = (long)sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    return v;
}

static void test_open_pragmas(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_db_ struct db *db = db_open(g_path, &err);
    assert_non_null(db);
    sqlite3_stmt *st = db_stmt(db, "PRAGMA journal_mode", &err);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    db_stmt_done(st);
    assert_int_equal(pragma_int(db, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(pragma_int(db, "PRAGMA foreign_keys"), 1);
    assert_true(pragma_int(db, "PRAGMA busy_timeout") >= 1000);
}

static void test_open_fails(void **s)
{
    struct koala_error *err = NULL;
    assert_null(db_open("/nonexistent-dir/x/y.db", &err));
    assert_non_null(err);
    assert_null(err->code);
    assert_non_null(strstr(error_message(err), "/nonexistent-dir/x/y.db"));
    error_free(err);
}

static void test_migrations(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_db_ struct db *db = db_open(g_path, &err);
    assert_non_null(db);
    assert_int_equal(pragma_int(db, "PRAGMA user_version"), 0);
    assert_int_equal(db_migrate(db, migrations, 2, &err), 0);
    assert_int_equal(pragma_int(db, "PRAGMA user_version"), 2);
    /* Idempotent: running again changes nothing (the INSERT of migration 1
     * would fail on the primary key if it ran twice). */
    assert_int_equal(db_migrate(db, migrations, 2, &err), 0);
    assert_int_equal(db_migrate(db, migrations, 3, &err), 0);
    assert_int_equal(pragma_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(db_migrate(db, migrations, 3, &err), 0);
    assert_int_equal(pragma_int(db, "SELECT count(*) FROM counter"), 1);
    /* A program older than the database refuses it. */
    assert_int_equal(db_migrate(db, migrations, 2, &err), -1);
    assert_non_null(strstr(error_message(err), "newer"));
    error_clear(&err);
    /* Foreign keys are enforced. */
    assert_int_equal(db_exec(db, "INSERT INTO child VALUES(1, 42)", &err), -1);
    assert_non_null(strstr(error_message(err), "FOREIGN KEY"));
    error_clear(&err);
}

static void test_failed_migration_rolls_back(void **s)
{
    static const char *const bad[] = {
        "CREATE TABLE a(x);",
        "CREATE TABLE b(x); INSERT INTO nosuchtable VALUES(1);",
    };
    struct koala_error *err = NULL;
    _cleanup_db_ struct db *db = db_open(g_path, &err);
    assert_non_null(db);
    assert_int_equal(db_migrate(db, bad, 2, &err), -1);
    assert_non_null(strstr(error_message(err), "migration 2"));
    error_clear(&err);
    /* The first one stays applied; nothing of the second one does. */
    assert_int_equal(pragma_int(db, "PRAGMA user_version"), 1);
    assert_int_equal(
        pragma_int(db, "SELECT count(*) FROM sqlite_master WHERE name='b'"), 0);
    assert_true(sqlite3_get_autocommit(db_handle(db)));
}

static void test_stmt_cache(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_db_ struct db *db = db_open(g_path, &err);
    assert_non_null(db);
    assert_int_equal(db_migrate(db, migrations, 3, &err), 0);
    static const char sql[] = "SELECT n + ? FROM counter WHERE id=1";
    sqlite3_stmt *a = db_stmt(db, sql, &err);
    assert_non_null(a);
    sqlite3_bind_int(a, 1, 5);
    assert_int_equal(sqlite3_step(a), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(a, 0), 5);
    db_stmt_done(a);
    /* Same address: the same statement, reset and unbound. */
    sqlite3_stmt *b = db_stmt(db, sql, &err);
    assert_ptr_equal(a, b);
    assert_int_equal(sqlite3_step(b), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(b, 0), SQLITE_NULL); /* unbound */
    db_stmt_done(b);
    /* Same text at another address: another statement. */
    char copy[sizeof(sql)];
    memcpy(copy, sql, sizeof(sql));
    sqlite3_stmt *c = db_stmt(db, copy, &err);
    assert_non_null(c);
    assert_ptr_not_equal(a, c);
    db_stmt_done(c);
    /* The same buffer with other text (SQL made with snprintf, used again):
     * the new statement, not the one cached at that address. */
    snprintf(copy, sizeof(copy), "SELECT n + 7 FROM counter WHERE id=1");
    sqlite3_stmt *e = db_stmt(db, copy, &err);
    assert_non_null(e);
    assert_string_equal(sqlite3_sql(e), copy);
    assert_int_equal(sqlite3_step(e), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(e, 0), 7);
    db_stmt_done(e);
    /* A statement left mid-iteration is reset before it is handed out. */
    sqlite3_stmt *d = db_stmt(db, sql, &err);
    sqlite3_bind_int(d, 1, 1);
    assert_int_equal(sqlite3_step(d), SQLITE_ROW);
    d = db_stmt(db, sql, &err);
    assert_false(sqlite3_stmt_busy(d));
    db_stmt_done(d);
    db_stmt_done(NULL);
    /* Many statements: the cache grows and keeps finding them all. */
    static char texts[300][48];
    sqlite3_stmt *stmts[300];
    for (int i = 0; i < 300; i++) {
        snprintf(texts[i], sizeof(texts[i]), "SELECT %d", i);
        stmts[i] = db_stmt(db, texts[i], &err);
        assert_non_null(stmts[i]);
    }
    for (int i = 0; i < 300; i++) {
        assert_ptr_equal(db_stmt(db, texts[i], &err), stmts[i]);
        assert_int_equal(sqlite3_step(stmts[i]), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(stmts[i], 0), i);
        db_stmt_done(stmts[i]);
    }
    /* Errors. */
    assert_null(db_stmt(db, "SELEKT 1", &err));
    assert_non_null(strstr(error_message(err), "SELEKT"));
    error_clear(&err);
    assert_null(db_stmt(db, "SELECT 1; SELECT 2", &err));
    error_clear(&err);
    assert_null(db_stmt(db, "  ", &err));
    error_clear(&err);
    assert_non_null(db_stmt(db, "SELECT 3;  ", &err));
}

static void test_transactions(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_db_ struct db *db = db_open(g_path, &err);
    assert_non_null(db);
    assert_int_equal(db_migrate(db, migrations, 3, &err), 0);
    assert_int_equal(db_begin(db, &err), 0);
    assert_false(sqlite3_get_autocommit(db_handle(db)));
    assert_int_equal(db_exec(db, "UPDATE counter SET n = 10", &err), 0);
    db_rollback(db);
    assert_true(sqlite3_get_autocommit(db_handle(db)));
    assert_int_equal(pragma_int(db, "SELECT n FROM counter"), 0);
    db_rollback(db); /* no transaction: harmless */

    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, "UPDATE counter SET n = 7", &err), 0);
    assert_int_equal(db_commit(db, &err), 0);
    assert_int_equal(pragma_int(db, "SELECT n FROM counter"), 7);

    /* Seen by another connection. */
    _cleanup_db_ struct db *other = db_open(g_path, &err);
    assert_non_null(other);
    assert_int_equal(pragma_int(other, "SELECT n FROM counter"), 7);

    /* A failing commit (deferred foreign key) ends the transaction. */
    assert_int_equal(db_exec(db, "PRAGMA defer_foreign_keys=ON", &err), 0);
    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, "INSERT INTO child VALUES(1, 99)", &err), 0);
    assert_int_equal(db_commit(db, &err), -1);
    assert_non_null(err);
    assert_null(err->code);
    error_clear(&err);
    assert_true(sqlite3_get_autocommit(db_handle(db)));
    assert_int_equal(pragma_int(db, "SELECT count(*) FROM child"), 0);

    /* db_error reports the last SQLite error. */
    assert_int_equal(db_exec(db, "INSERT INTO parent VALUES(1)", &err), 0);
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO parent VALUES(1)", &err);
    assert_int_equal(sqlite3_step(st), SQLITE_CONSTRAINT);
    assert_int_equal(db_error(db, "adding parent", &err), -1);
    db_stmt_done(st);
    assert_non_null(strstr(error_message(err), "adding parent"));
    assert_non_null(strstr(error_message(err), "UNIQUE"));
    assert_int_equal(err->errnum, EEXIST);
    error_clear(&err);
}

struct waiter {
    struct db *db;
    int rc;
    int64_t waited_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *begin_waiting(void *arg)
{
    struct waiter *w = arg;
    struct koala_error *err = NULL;
    int64_t t0 = now_ms();
    w->rc = db_begin(w->db, &err);
    w->waited_ms = now_ms() - t0;
    error_free(err);
    return NULL;
}

static void test_write_lock_waits(void **s)
{
    /* A second writer waits for the first instead of failing at once, and
     * readers are not blocked meanwhile (WAL). */
    struct koala_error *err = NULL;
    _cleanup_db_ struct db *a = db_open(g_path, &err);
    _cleanup_db_ struct db *b = db_open(g_path, &err);
    _cleanup_db_ struct db *c = db_open(g_path, &err);
    assert_int_equal(db_migrate(a, migrations, 3, &err), 0);
    assert_int_equal(db_begin(a, &err), 0);
    assert_int_equal(db_exec(a, "UPDATE counter SET n = 5", &err), 0);
    struct waiter w = {.db = b, .rc = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, begin_waiting, &w), 0);
    usleep(300 * 1000);
    assert_int_equal(pragma_int(c, "SELECT n FROM counter"), 0);
    assert_int_equal(db_commit(a, &err), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_true(w.waited_ms >= 200);
    assert_int_equal(pragma_int(b, "SELECT n FROM counter"), 5);
    db_rollback(b);
}

struct worker {
    struct db_pool *pool;
    int id;
    int iterations;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->iterations; i++) {
        struct koala_error *err = NULL;
        struct db *db = db_pool_get(w->pool, &err);
        if (db == NULL) {
            w->failures++;
            error_free(err);
            continue;
        }
        int ok = db_begin(db, &err) == 0;
        sqlite3_stmt *st = NULL;
        long n = -1;
        if (ok) {
            st = db_stmt(db, "SELECT n FROM counter WHERE id=1", &err);
            ok = st && sqlite3_step(st) == SQLITE_ROW;
            if (ok)
                n = (long)sqlite3_column_int64(st, 0);
            db_stmt_done(st);
        }
        if (ok) {
            /* Read-modify-write: only correct if BEGIN IMMEDIATE really
             * serialises writers. */
            st = db_stmt(db, "UPDATE counter SET n=? WHERE id=1", &err);
            ok = st != NULL;
            if (ok) {
                sqlite3_bind_int64(st, 1, n + 1);
                ok = sqlite3_step(st) == SQLITE_DONE;
            }
            db_stmt_done(st);
        }
        if (ok) {
            st = db_stmt(db, "INSERT INTO log(who, what) VALUES(?, ?)", &err);
            ok = st != NULL;
            if (ok) {
                sqlite3_bind_int(st, 1, w->id);
                sqlite3_bind_text(st, 2, "x", -1, SQLITE_STATIC);
                ok = sqlite3_step(st) == SQLITE_DONE;
            }
            db_stmt_done(st);
        }
        if (ok)
            ok = db_commit(db, &err) == 0;
        else
            db_rollback(db);
        if (!ok) {
            fprintf(stderr, "worker %d: %s\n", w->id, error_message(err));
            w->failures++;
        }
        error_free(err);
        db_pool_put(w->pool, db);
    }
    return NULL;
}

static void run_workers(struct db_pool *pool, int threads, int iterations)
{
    pthread_t t[16];
    struct worker w[16];
    assert_true(threads <= 16);
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){pool, i, iterations, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
}

static void test_pool_concurrent_writers(void **s)
{
    struct koala_error *err = NULL;
    struct db_pool *pool = db_pool_new(g_path, migrations, 3, 4, &err);
    assert_non_null(pool);
    /* More threads than connections: some wait for a free one. */
    run_workers(pool, 12, 40);
    struct db *db = db_pool_get(pool, &err);
    assert_non_null(db);
    assert_int_equal(pragma_int(db, "SELECT n FROM counter"), 12 * 40);
    assert_int_equal(pragma_int(db, "SELECT count(*) FROM log"), 12 * 40);
    assert_int_equal(pragma_int(db, "PRAGMA user_version"), 3);
    db_pool_put(pool, db);
    db_pool_free(pool);

    /* Reopening runs no migration again, and the data survived. */
    pool = db_pool_new(g_path, migrations, 3, 1, &err);
    assert_non_null(pool);
    db = db_pool_get(pool, &err);
    assert_int_equal(pragma_int(db, "SELECT n FROM counter"), 12 * 40);
    db_pool_put(pool, db);
    db_pool_free(pool);
}

static void test_pool_separate_pools(void **s)
{
    /* Two pools on one file act like two processes: writers of both
     * queue on the database lock. */
    struct koala_error *err = NULL;
    struct db_pool *p1 = db_pool_new(g_path, migrations, 3, 3, &err);
    struct db_pool *p2 = db_pool_new(g_path, migrations, 3, 3, &err);
    assert_non_null(p1);
    assert_non_null(p2);
    pthread_t t[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){i % 2 ? p2 : p1, i, 30, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    struct db *db = db_pool_get(p1, &err);
    assert_int_equal(pragma_int(db, "SELECT n FROM counter"), 8 * 30);
    db_pool_put(p1, db);
    db_pool_free(p1);
    db_pool_free(p2);
}

static void test_pool_put_rolls_back(void **s)
{
    struct koala_error *err = NULL;
    struct db_pool *pool = db_pool_new(g_path, migrations, 3, 1, &err);
    assert_non_null(pool);
    struct db *db = db_pool_get(pool, &err);
    assert_int_equal(db_begin(db, &err), 0);
    assert_int_equal(db_exec(db, "UPDATE counter SET n = 123", &err), 0);
    db_pool_put(pool, db); /* forgot to commit: rolled back */
    db = db_pool_get(pool, &err);
    assert_true(sqlite3_get_autocommit(db_handle(db)));
    assert_int_equal(pragma_int(db, "SELECT n FROM counter"), 0);
    db_pool_put(pool, db);
    db_pool_put(pool, NULL);
    db_pool_free(pool);
    db_pool_free(NULL);
}

static void test_pool_bad_migration(void **s)
{
    static const char *const bad[] = {"THIS IS NOT SQL"};
    struct koala_error *err = NULL;
    assert_null(db_pool_new(g_path, bad, 1, 2, &err));
    assert_non_null(err);
    error_free(err);
    err = NULL;
    assert_null(db_pool_new("/nonexistent-dir/x.db", migrations, 3, 2, &err));
    assert_non_null(err);
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_pragmas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stmt_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_lock_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_concurrent_writers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_separate_pools, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_put_rolls_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_bad_migration, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
