/* test_clc_netpolicy.c: the CLC's network policy document
 * (netpolicy_push.c, docs/network.md) over a real SQLite database made by
 * the CLC's own migrations: which instances, groups, rules and members a
 * cluster's document holds, and which changes bump the policy version (the
 * triggers of schema_v7); and the migration of a database from before
 * security groups (default groups made, instances joined). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "id.h"
#include "secgroups.h"

static char g_dir[64];

static int setup(void **s)
{
    (void)s;
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-np-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        snprintf(p, sizeof(p), "%s/clc.db%s", g_dir, suffixes[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

static void sql(struct db *db, const char *text)
{
    struct koala_error *err = NULL;
    if (db_exec(db, text, &err) < 0)
        fail_msg("%s: %s", text, error_message(err));
}

static int64_t version(struct db *db)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(db, "SELECT version FROM netpolicy", &err);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    return v;
}

/* Two accounts; instances i-a1 (web, zone-a), i-a2 (web + cli, zone-a,
 * no address yet), i-a3 (cli, zone-a, terminated), i-b1 (cli, zone-b),
 * i-b2 (bob's group, zone-b). */
static const char world[] =
    "INSERT INTO accounts VALUES (1, 'alice', '111111111111', 'c1', 0),"
    " (2, 'bob', '222222222222', 'c2', 0);"
    "INSERT INTO vpcs(id, owner, cidr, cidr_assoc, dhcp_options, is_default,"
    " created) VALUES ('vpc-a', 1, '10.96.0.0/12', 'x', 'y', 1, 0),"
    " ('vpc-b', 2, '10.96.0.0/12', 'x', 'y', 1, 0);"
    "INSERT INTO subnets(id, vpc, owner, zone, cidr, default_for_az, created)"
    " VALUES ('subnet-a', 'vpc-a', 1, 'zone-a', '10.111.0.0/16', 1, 0),"
    " ('subnet-b', 'vpc-a', 1, 'zone-b', '10.110.0.0/16', 1, 0),"
    " ('subnet-c', 'vpc-b', 2, 'zone-b', '10.110.0.0/16', 1, 0);"
    "INSERT INTO reservations VALUES ('r-1', 1, NULL, 0), ('r-2', 2, NULL, 0);"
    "INSERT INTO instances(id, reservation, owner, launch_index, image_id,"
    " instance_type, cluster, state, private_ip, launch_time, updated,"
    " subnet_id) VALUES"
    " ('i-a1', 'r-1', 1, 0, 'ami-1', 't1.micro', 'zone-a', 'running',"
    "  '10.111.0.5', 0, 0, 'subnet-a'),"
    " ('i-a2', 'r-1', 1, 1, 'ami-1', 't1.micro', 'zone-a', 'pending',"
    "  '', 0, 0, 'subnet-a'),"
    " ('i-a3', 'r-1', 1, 2, 'ami-1', 't1.micro', 'zone-a', 'terminated',"
    "  '10.111.0.7', 0, 0, 'subnet-a'),"
    " ('i-b1', 'r-1', 1, 3, 'ami-1', 't1.micro', 'zone-b', 'running',"
    "  '10.110.0.9', 0, 0, 'subnet-b'),"
    " ('i-b2', 'r-2', 2, 0, 'ami-1', 't1.micro', 'zone-b', 'running',"
    "  '10.110.0.4', 0, 0, 'subnet-c');"
    "INSERT INTO security_groups VALUES"
    " ('sg-web', 1, 'vpc-a', 'web', 'w', 0),"
    " ('sg-cli', 1, 'vpc-a', 'cli', 'c', 0),"
    " ('sg-bob', 2, 'vpc-b', 'bob', 'b', 0);"
    "INSERT INTO sg_rules(id, grp, egress, proto, from_port, to_port, cidr,"
    " ref_group, created) VALUES"
    " ('sgr-1', 'sg-web', 0, 'tcp', 8080, 8080, '10.0.0.0/8', NULL, 0),"
    " ('sgr-2', 'sg-web', 0, 'tcp', 8080, 8080, NULL, 'sg-cli', 0),"
    " ('sgr-3', 'sg-web', 0, 'icmp', 8, -1, '10.1.0.0/16', NULL, 0),"
    " ('sgr-4', 'sg-web', 0, '47', -1, -1, NULL, 'sg-bob', 0),"
    " ('sgr-5', 'sg-web', 1, '-1', -1, -1, '0.0.0.0/0', NULL, 0),"
    " ('sgr-6', 'sg-cli', 1, 'udp', 53, 53, '10.0.0.0/8', NULL, 0),"
    " ('sgr-7', 'sg-bob', 0, 'tcp', 22, 22, '0.0.0.0/0', NULL, 0);"
    "INSERT INTO instance_groups VALUES ('i-a1', 'sg-web', 0),"
    " ('i-a2', 'sg-cli', 0), ('i-a2', 'sg-web', 1), ('i-a3', 'sg-cli', 0),"
    " ('i-b1', 'sg-cli', 0), ('i-b2', 'sg-bob', 0);";

static struct db_pool *open_world(struct db **db)
{
    struct koala_error *err = NULL;
    struct db_pool *pool = clc_open_db(g_dir, 1, &err);
    if (pool == NULL)
        fail_msg("%s", error_message(err));
    *db = db_pool_get(pool, &err);
    assert_non_null(*db);
    sql(*db, world);
    return pool;
}

static json_t *document(struct db *db, const char *cluster)
{
    struct koala_error *err = NULL;
    json_t *doc = clc_netpolicy_document(db, cluster, &err);
    if (doc == NULL)
        fail_msg("%s", error_message(err));
    return doc;
}

static void assert_json(json_t *got, const char *want_text)
{
    json_error_t e;
    json_t *want = json_loads(want_text, 0, &e);
    if (want == NULL)
        fail_msg("bad expected JSON: %s", e.text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS);
        char *w = json_dumps(want, JSON_SORT_KEYS);
        print_error("got  %s\nwant %s\n", g, w);
        free(g);
        free(w);
        json_decref(want);
        fail();
    }
    json_decref(want);
}

static void test_document_of_a_cluster(void **s)
{
    (void)s;
    struct db *db;
    struct db_pool *pool = open_world(&db);
    json_t *doc = document(db, "zone-a");
    /* The terminated i-a3 and the other zone's instances are not here;
     * the members come from every zone (i-b1), without addresses not yet
     * known (i-a2) or of terminated instances (i-a3); bob's group, named
     * by a rule, lists its members, not its rules. */
    char want[2048];
    snprintf(want, sizeof(want),
             "{\"version\": %lld,"
             " \"instances\": {\"i-a1\": [\"sg-web\"],"
             "                 \"i-a2\": [\"sg-cli\", \"sg-web\"]},"
             " \"groups\": {"
             "  \"sg-web\": {\"ingress\": ["
             "     {\"proto\": 47, \"group\": \"sg-bob\"},"
             "     {\"proto\": \"icmp\", \"from\": 8, \"to\": -1,"
             "      \"cidr\": \"10.1.0.0/16\"},"
             "     {\"proto\": \"tcp\", \"from\": 8080, \"to\": 8080,"
             "      \"group\": \"sg-cli\"},"
             "     {\"proto\": \"tcp\", \"from\": 8080, \"to\": 8080,"
             "      \"cidr\": \"10.0.0.0/8\"}],"
             "   \"egress\": [{\"proto\": \"all\", \"cidr\": \"0.0.0.0/0\"}]},"
             "  \"sg-cli\": {\"ingress\": [], \"egress\": ["
             "     {\"proto\": \"udp\", \"from\": 53, \"to\": 53,"
             "      \"cidr\": \"10.0.0.0/8\"}]}},"
             " \"members\": {\"sg-web\": [\"10.111.0.5\"],"
             "               \"sg-cli\": [\"10.110.0.9\"],"
             "               \"sg-bob\": [\"10.110.0.4\"]}}",
             (long long)version(db));
    assert_json(doc, want);
    json_decref(doc);

    /* zone-b: i-b1 and bob's i-b2; sg-cli names no group. */
    doc = document(db, "zone-b");
    assert_json(json_object_get(doc, "instances"),
                "{\"i-b1\": [\"sg-cli\"], \"i-b2\": [\"sg-bob\"]}");
    assert_json(json_object_get(doc, "members"),
                "{\"sg-cli\": [\"10.110.0.9\"], \"sg-bob\": [\"10.110.0.4\"]}");
    json_decref(doc);

    /* A cluster without instances has an empty document. */
    doc = document(db, "zone-z");
    assert_json(json_object_get(doc, "groups"), "{}");
    assert_json(json_object_get(doc, "instances"), "{}");
    json_decref(doc);
    db_pool_put(pool, db);
    db_pool_free(pool);
}

static void test_changes_bump_the_version(void **s)
{
    (void)s;
    struct db *db;
    struct db_pool *pool = open_world(&db);
    static const struct {
        const char *sql;
        bool bumps;
    } changes[] = {
        {"UPDATE instances SET reachability = 'passed', node = 'n1'", false},
        {"UPDATE instances SET state = 'running' WHERE id = 'i-a2'", false},
        {"UPDATE instances SET private_ip = '10.111.0.6' WHERE id = 'i-a2'",
         true},
        {"UPDATE instances SET state = 'terminated' WHERE id = 'i-b1'", true},
        {"INSERT INTO sg_rules(id, grp, egress, proto, from_port, to_port,"
         " cidr, created) VALUES ('sgr-8', 'sg-cli', 0, 'tcp', 1, 1,"
         " '10.0.0.0/8', 0)",
         true},
        {"UPDATE sg_rules SET description = 'x' WHERE id = 'sgr-8'", true},
        {"DELETE FROM sg_rules WHERE id = 'sgr-8'", true},
        {"DELETE FROM instance_groups WHERE instance = 'i-a2' AND"
         " grp = 'sg-web'",
         true},
        {"INSERT INTO instance_groups VALUES ('i-a2', 'sg-bob', 1)", true},
        {"INSERT INTO security_groups VALUES ('sg-new', 1, 'vpc-a', 'n',"
         " 'n', 0)",
         false},
        {"DELETE FROM security_groups WHERE id = 'sg-new'", true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(changes); i++) {
        int64_t before = version(db);
        sql(db, changes[i].sql);
        if (changes[i].bumps)
            assert_true(version(db) > before);
        else
            assert_int_equal(version(db), before);
    }
    /* The document follows: i-a2 has its address and bob's group. */
    json_t *doc = document(db, "zone-a");
    assert_int_equal(json_integer_value(json_object_get(doc, "version")),
                     version(db));
    assert_json(json_object_get(json_object_get(doc, "instances"), "i-a2"),
                "[\"sg-cli\", \"sg-bob\"]");
    assert_json(json_object_get(doc, "members"),
                "{\"sg-web\": [\"10.111.0.5\"], \"sg-cli\": [\"10.111.0.6\"],"
                " \"sg-bob\": [\"10.110.0.4\", \"10.111.0.6\"]}");
    json_decref(doc);
    db_pool_put(pool, db);
    db_pool_free(pool);
}

/* A cloud from before security groups: its default VPCs get their
 * default group (ingress from itself, all egress) and their instances
 * join it. */
static void test_migration_from_v6(void **s)
{
    (void)s;
    struct koala_error *err = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/clc.db", g_dir);
    struct db_pool *pool = db_pool_new(path, clc_migrations, 6, 1, &err);
    assert_non_null(pool);
    struct db *db = db_pool_get(pool, &err);
    sql(db, "INSERT INTO accounts VALUES (1, 'alice', '111111111111', 'c', 0);"
            "INSERT INTO vpcs(id, owner, cidr, cidr_assoc, dhcp_options,"
            " is_default, created) VALUES ('vpc-a', 1, '10.96.0.0/12', 'x',"
            " 'y', 1, 0);"
            "INSERT INTO subnets(id, vpc, owner, zone, cidr, default_for_az,"
            " created) VALUES ('subnet-a', 'vpc-a', 1, 'zone-a',"
            " '10.111.0.0/16', 1, 0);"
            "INSERT INTO reservations VALUES ('r-1', 1, NULL, 0);"
            "INSERT INTO instances(id, reservation, owner, launch_index,"
            " image_id, instance_type, cluster, state, private_ip,"
            " launch_time, updated, subnet_id) VALUES ('i-a1', 'r-1', 1, 0,"
            " 'ami-1', 't1.micro', 'zone-a', 'running', '10.111.0.5', 0, 0,"
            " 'subnet-a');");
    db_pool_put(pool, db);
    db_pool_free(pool);

    pool = clc_open_db(g_dir, 1, &err);
    assert_non_null(pool);
    db = db_pool_get(pool, &err);
    struct sg_group g;
    assert_int_equal(clc_sg_by_name(db, 1, NULL, "default", &g, &err), 0);
    assert_true(id_resource_valid(g.id, "sg-"));
    assert_string_equal(g.vpc, "vpc-a");
    struct sg_rule *rules = NULL;
    size_t n = 0;
    assert_int_equal(sg_rules_load(db, 1, g.id, NULL, false, &rules, &n, &err),
                     0);
    assert_int_equal(n, 2);
    assert_false(rules[0].egress);
    assert_string_equal(rules[0].ref_group, g.id);
    assert_string_equal(rules[0].proto, "-1");
    assert_true(rules[1].egress);
    assert_string_equal(rules[1].cidr, "0.0.0.0/0");
    assert_true(id_resource_valid(rules[0].id, "sgr-"));
    free(rules);
    json_t *doc = document(db, "zone-a");
    json_t *want = json_pack("{s:[s]}", "i-a1", g.id);
    assert_true(json_equal(json_object_get(doc, "instances"), want));
    json_decref(want);
    json_decref(doc);
    db_pool_put(pool, db);
    db_pool_free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_document_of_a_cluster, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_changes_bump_the_version, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v6, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
