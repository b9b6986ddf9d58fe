/* test_db_group.c: group commit: many threads' jobs all land, a failing
 * job is rolled back alone, jobs really share transactions, and a failed
 * commit fails every job of its batch. */
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
#include <unistd.h>

#include "buf.h"
#include "db.h"

static char g_dir[64];
static char g_path[128];
static struct db_pool *g_pool;
static struct db_group *g_group;

static const char *const migrations[] = {
    "CREATE TABLE items(id INTEGER PRIMARY KEY, who INTEGER NOT NULL,"
    " n INTEGER NOT NULL, UNIQUE(who, n));"
    "CREATE TABLE commits(id INTEGER PRIMARY KEY);",
};

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-dbgroup-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/test.db", g_dir);
    struct koala_error *err = NULL;
    g_pool = db_pool_new(g_path, migrations, 1, 8, &err);
    assert_non_null(g_pool);
    g_group = db_group_new(g_pool, 0);
    assert_non_null(g_group);
    return 0;
}

static int teardown(void **s)
{
    db_group_free(g_group);
    db_pool_free(g_pool);
    char p[160];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        snprintf(p, sizeof(p), "%s%s", g_path, suffixes[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

struct item {
    int who, n;
    bool fail; /* insert, then report failure */
};

static int insert_item(struct db *db, void *ctx, struct koala_error **err)
{
    struct item *it = ctx;
    sqlite3_stmt *st =
        db_stmt(db, "INSERT INTO items(who, n) VALUES(?, ?)", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int(st, 1, it->who);
    sqlite3_bind_int(st, 2, it->n);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "insert", err);
    if (it->fail)
        return error_set(err, EINVAL, "InvalidArgument", "job %d/%d fails",
                         it->who, it->n);
    return 0;
}

static long count(const char *sql)
{
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(g_pool, &err);
    assert_non_null(db);
    sqlite3_stmt *st = db_stmt(db, sql, &err);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    db_pool_put(g_pool, db);
    return n;
}

#define THREADS 12
#define PER_THREAD 60

static _Atomic int g_failures;

static void *worker(void *arg)
{
    int who = (int)(intptr_t)arg;
    for (int n = 0; n < PER_THREAD; n++) {
        struct item it = {who, n, n % 10 == 7};
        struct koala_error *err = NULL;
        int rc = db_group_run(g_group, insert_item, &it, &err);
        if (it.fail) {
            if (rc != -1 || strcmp(error_code(err), "InvalidArgument") != 0)
                g_failures++;
        } else if (rc != 0) {
            g_failures++;
        }
        error_free(err);
    }
    return NULL;
}

static void test_concurrent_jobs(void **s)
{
    long before = count("SELECT count(*) FROM items");
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(g_failures, 0);
    /* Every successful job is there, and no failing job left a row. */
    long per_thread = PER_THREAD - PER_THREAD / 10;
    assert_int_equal(count("SELECT count(*) FROM items") - before,
                     THREADS * per_thread);
    assert_int_equal(count("SELECT count(*) FROM items WHERE n % 10 = 7"), 0);
}

/* A job that holds the leader while others queue: the queued ones must
 * then share one transaction (SQLite's total_changes on the leader's
 * connection would not tell; a job sees the rows of its batch-mates). */
struct probe {
    int who;
    long seen; /* rows of batch 100 visible when the job ran */
};

static int probe_job(struct db *db, void *ctx, struct koala_error **err)
{
    struct probe *p = ctx;
    struct item it = {100, p->who, false};
    if (insert_item(db, &it, err) < 0)
        return -1;
    sqlite3_stmt *st =
        db_stmt(db, "SELECT count(*) FROM items WHERE who = 100", err);
    if (st == NULL)
        return -1;
    sqlite3_step(st);
    p->seen = (long)sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    if (p->who == 0)
        usleep(300 * 1000); /* hold the leadership: the others queue up */
    return 0;
}

static void *probe_worker(void *arg)
{
    struct probe *p = arg;
    struct koala_error *err = NULL;
    if (db_group_run(g_group, probe_job, p, &err) < 0)
        g_failures++;
    error_free(err);
    return NULL;
}

static void test_jobs_share_transactions(void **s)
{
    struct probe p[6];
    pthread_t t[6];
    p[0].who = 0;
    assert_int_equal(pthread_create(&t[0], NULL, probe_worker, &p[0]), 0);
    usleep(100 * 1000);
    for (int i = 1; i < 6; i++) {
        p[i].who = i;
        assert_int_equal(pthread_create(&t[i], NULL, probe_worker, &p[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(g_failures, 0);
    /* The five that queued behind job 0 ran as one batch: the last of them
     * saw the four before it, uncommitted, in its own transaction. */
    long max_seen = 0;
    for (int i = 1; i < 6; i++)
        max_seen = p[i].seen > max_seen ? p[i].seen : max_seen;
    assert_int_equal(max_seen, 6);
    assert_int_equal(count("SELECT count(*) FROM items WHERE who = 100"), 6);
}

static int bad_sql_job(struct db *db, void *ctx, struct koala_error **err)
{
    return db_exec(db, "INSERT INTO nowhere VALUES(1)", err);
}

static void test_failing_job_reports(void **s)
{
    struct koala_error *err = NULL;
    assert_int_equal(db_group_run(g_group, bad_sql_job, NULL, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(error_message(err), "nowhere"));
    error_free(err);
    /* And the group still works afterwards. */
    struct item it = {200, 1, false};
    assert_int_equal(db_group_run(g_group, insert_item, &it, NULL), 0);
    assert_int_equal(count("SELECT count(*) FROM items WHERE who = 200"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_jobs),
        cmocka_unit_test(test_jobs_share_transactions),
        cmocka_unit_test(test_failing_job_reports),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
