/* test_clc_ebs_images.c: the block device mappings of EBS-backed images
 * and instances (ebs_images.c, docs/storage.md) over a real SQLite
 * database made by the CLC's own migrations: BlockDeviceMapping.N parsed
 * and refused as EC2 does, an image's mapping with a RunInstances
 * request's over it (sizes, DeleteOnTermination, NoDevice, new devices),
 * the volume and attachment rows a launch gets, the <volume>s its
 * cluster is sent, and a pending image settling once its snapshots are
 * completed (or failing when one is in error). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ebs.h"
#include "xml.h"

static char g_dir[64];
static struct db_pool *g_pool;
static struct db *g_db;

static void sql(struct db *db, const char *text)
{
    struct koala_error *err = NULL;
    if (db_exec(db, text, &err) < 0)
        fail_msg("%s: %s", text, error_message(err));
}

static const char world[] =
    "INSERT INTO accounts VALUES (1, 'alice', '111111111111', 'c1', 0),"
    " (2, 'bob', '222222222222', 'c2', 0);"
    "INSERT INTO snapshots (id, owner, volume_id, volume_size_gb, zone,"
    " sc_id, state, start_time) VALUES"
    " ('snap-00000000000000001', 1, 'vol-1', 8, 'z1', 'snap-00000000000000001',"
    "  'completed', 0),"
    " ('snap-00000000000000002', 1, 'vol-2', 2, 'z1', 'snap-00000000000000002',"
    "  'completed', 0),"
    " ('snap-00000000000000003', 1, 'vol-3', 2, 'z1', 'snap-00000000000000003',"
    "  'pending', 0),"
    " ('snap-00000000000000009', 2, 'vol-9', 2, 'z1', 'snap-00000000000000009',"
    "  'completed', 0);"
    "INSERT INTO images (id, owner, kind, name, location, state, created,"
    " root_device_name, root_device_type) VALUES"
    " ('ami-00000000000000001', 1, 'machine', 'ebs', '', 'available', 0,"
    "  '/dev/xvda', 'ebs'),"
    " ('ami-00000000000000002', 1, 'machine', 'store', 'b/k', 'available', 0,"
    "  '/dev/sda1', 'instance-store');"
    "INSERT INTO image_block_devices (image_id, device, snapshot_id,"
    " volume_size_gb, volume_type, delete_on_termination, position) VALUES"
    " ('ami-00000000000000001', '/dev/xvda', 'snap-00000000000000001', 8,"
    "  'gp3', 1, 0),"
    " ('ami-00000000000000001', '/dev/sdf', 'snap-00000000000000002', 2,"
    "  'gp2', 0, 1);";

static int setup(void **s)
{
    (void)s;
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-ebsimg-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    struct koala_error *err = NULL;
    g_pool = clc_open_db(g_dir, 1, &err);
    if (g_pool == NULL)
        fail_msg("%s", error_message(err));
    g_db = db_pool_get(g_pool, &err);
    assert_non_null(g_db);
    sql(g_db, world);
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    db_pool_put(g_pool, g_db);
    db_pool_free(g_pool);
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        snprintf(p, sizeof(p), "%s/clc.db%s", g_dir, suffixes[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

/* A request of account 1 with the query string q. */
static struct ec2_req *req(const char *q)
{
    struct ec2_req *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->who.id = 1;
    snprintf(r->who.number, sizeof(r->who.number), "111111111111");
    r->db = g_db;
    struct koala_error *err = NULL;
    if (ec2_parse_params(r, q, strlen(q), &err) < 0)
        fail_msg("%s", error_message(err));
    return r;
}

static void req_free(struct ec2_req *r)
{
    for (size_t i = 0; i < r->n_params; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    free(r);
}

/* The code a parse (root /dev/xvda) of q fails with, "" when it passes. */
static const char *parse_code(const char *q, struct clc_bdms *out)
{
    static char code[64];
    struct ec2_req *r = req(q);
    struct koala_error *err = NULL;
    struct clc_bdms b;
    int rc = clc_bdms_parse(r, "/dev/xvda", &b, &err);
    snprintf(code, sizeof(code), "%s", rc < 0 ? error_code(err) : "");
    if (rc == 0 && out)
        *out = b;
    else if (rc == 0)
        clc_bdms_free(&b);
    error_free(err);
    req_free(r);
    return code;
}

#define M "BlockDeviceMapping."

static void test_parse(void **s)
{
    (void)s;
    struct clc_bdms b;
    assert_string_equal(
        parse_code(M "1.DeviceName=/dev/xvda&" M
                     "1.Ebs.SnapshotId=snap-00000000000000001&" M
                     "1.Ebs.DeleteOnTermination=false&" M
                     "2.DeviceName=/dev/sdb&" M "2.VirtualName=ephemeral0&" M
                     "3.DeviceName=xvdf&" M "3.Ebs.VolumeSize=4&" M
                     "3.Ebs.VolumeType=gp3&" M "3.Ebs.Iops=3000&" M
                     "4.DeviceName=/dev/sdg&" M "4.NoDevice=",
                   &b),
        "");
    assert_int_equal(b.n, 4);
    assert_true(b.v[0].ebs);
    assert_string_equal(b.v[0].snapshot_id, "snap-00000000000000001");
    assert_false(b.v[0].dot);
    assert_true(b.v[0].dot_given);
    assert_false(b.v[1].ebs);
    assert_string_equal(b.v[1].virtual_name, "ephemeral0");
    assert_int_equal(b.v[2].size_gb, 4);
    assert_true(b.v[2].dot); /* EC2's default */
    assert_string_equal(b.v[2].type, "gp3");
    assert_int_equal(b.v[2].iops, 3000);
    assert_true(b.v[3].no_device);
    clc_bdms_free(&b);

    static const struct {
        const char *q, *code;
    } bad[] = {
        {M "1.DeviceName=/dev/xvda", "InvalidBlockDeviceMapping"},
        {M "1.DeviceName=/dev/sdf&" M "1.Ebs.VolumeSize=1&" M
           "2.DeviceName=/dev/sdf&" M "2.Ebs.VolumeSize=1",
         "InvalidBlockDeviceMapping"},
        {M "1.DeviceName=/dev/sdf&" M "1.Ebs.VolumeSize=1&" M "1.NoDevice=",
         "InvalidBlockDeviceMapping"},
        {M "1.DeviceName=/etc/passwd&" M "1.Ebs.VolumeSize=1",
         "InvalidBlockDeviceMapping"},
        {M "1.DeviceName=/dev/sdb&" M "1.VirtualName=swap",
         "InvalidBlockDeviceMapping"},
        {M "1.DeviceName=/dev/sdf&" M "1.Ebs.VolumeSize=0",
         "InvalidParameterValue"},
        {M "1.DeviceName=/dev/sdf&" M "1.Ebs.VolumeSize=1&" M
           "1.Ebs.Encrypted=true",
         "UnsupportedOperation"},
        {M "1.Ebs.VolumeSize=1", "MissingParameter"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (strcmp(parse_code(bad[i].q, NULL), bad[i].code) != 0)
            fail_msg("%s: %s, not %s", bad[i].q, parse_code(bad[i].q, NULL),
                     bad[i].code);
}

static int plan(const char *image, const char *q, struct clc_bdms *out,
                const char **code)
{
    static char c[64];
    struct ec2_req *r = req(q);
    struct koala_error *err = NULL;
    struct clc_image_ref ref;
    if (clc_image_get(g_db, image, 1, &ref, &err) < 0)
        fail_msg("%s", error_message(err));
    int rc = clc_run_bdms_plan(r, &ref, out, &err);
    snprintf(c, sizeof(c), "%s", rc < 0 ? error_code(err) : "");
    *code = c;
    error_free(err);
    req_free(r);
    return rc;
}

static void test_run_plan(void **s)
{
    (void)s;
    struct clc_bdms p;
    const char *code;
    /* The image's mapping as it is. */
    assert_int_equal(plan("ami-00000000000000001", "", &p, &code), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.v[0].device, "/dev/xvda");
    assert_true(p.v[0].boot);
    assert_int_equal(p.v[0].size_gb, 8);
    assert_string_equal(p.v[0].sc_snap, "snap-00000000000000001");
    assert_string_equal(p.v[0].snap_zone, "z1");
    assert_false(p.v[1].boot);
    assert_false(p.v[1].dot);
    clc_bdms_free(&p);
    /* The request's over it: a bigger root kept on termination, the
     * image's second device left out, a new empty one. */
    assert_int_equal(plan("ami-00000000000000001",
                          M "1.DeviceName=/dev/xvda&" M "1.Ebs.VolumeSize=20&" M
                            "1.Ebs.DeleteOnTermination=false&" M
                            "2.DeviceName=/dev/sdf&" M "2.NoDevice=&" M
                            "3.DeviceName=/dev/sdh&" M "3.Ebs.VolumeSize=3",
                          &p, &code),
                     0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.v[0].device, "/dev/xvda");
    assert_int_equal(p.v[0].size_gb, 20);
    assert_false(p.v[0].dot);
    assert_true(p.v[0].boot);
    assert_string_equal(p.v[0].type, "gp3");
    assert_string_equal(p.v[1].device, "/dev/sdh");
    assert_int_equal(p.v[1].size_gb, 3);
    assert_string_equal(p.v[1].snapshot_id, "");
    assert_false(p.v[1].boot);
    clc_bdms_free(&p);
    /* Refused. */
    static const struct {
        const char *image, *q, *code;
    } bad[] = {
        {"ami-00000000000000001",
         M "1.DeviceName=/dev/xvda&" M "1.Ebs.VolumeSize=4",
         "InvalidBlockDeviceMapping"}, /* smaller than its snapshot */
        {"ami-00000000000000001", M "1.DeviceName=/dev/xvda&" M "1.NoDevice=",
         "InvalidBlockDeviceMapping"},
        {"ami-00000000000000001",
         M "1.DeviceName=/dev/xvda&" M
           "1.Ebs.SnapshotId=snap-00000000000000002",
         "InvalidBlockDeviceMapping"}, /* another snapshot for the root */
        {"ami-00000000000000001",
         M "1.DeviceName=/dev/sdh&" M "1.Ebs.SnapshotId=snap-0000000000000000f",
         "InvalidSnapshot.NotFound"},
        {"ami-00000000000000001",
         M "1.DeviceName=/dev/sdh&" M "1.Ebs.SnapshotId=snap-00000000000000003",
         "IncorrectState"}, /* pending */
        {"ami-00000000000000001",
         M "1.DeviceName=/dev/sdh&" M "1.Ebs.SnapshotId=snap-00000000000000009",
         "InvalidSnapshot.NotFound"}, /* bob's, not shared */
        {"ami-00000000000000002",
         M "1.DeviceName=/dev/sda1&" M "1.Ebs.VolumeSize=4",
         "InvalidBlockDeviceMapping"}, /* an instance-store root */
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (plan(bad[i].image, bad[i].q, &p, &code) == 0)
            fail_msg("%s: passed", bad[i].q);
        if (strcmp(code, bad[i].code) != 0)
            fail_msg("%s: %s, not %s", bad[i].q, code, bad[i].code);
    }
    /* An instance-store image takes new EBS devices. */
    assert_int_equal(plan("ami-00000000000000002",
                          M "1.DeviceName=/dev/sdf&" M "1.Ebs.VolumeSize=1", &p,
                          &code),
                     0);
    assert_int_equal(p.n, 1);
    assert_false(p.v[0].boot);
    clc_bdms_free(&p);
}

static int64_t count(const char *q)
{
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(g_db, q, &err);
    if (st == NULL)
        fail_msg("%s", error_message(err));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    return n;
}

static void test_store_and_launch_volumes(void **s)
{
    (void)s;
    struct clc_bdms p;
    const char *code;
    assert_int_equal(plan("ami-00000000000000001", "", &p, &code), 0);
    struct ec2_req *r =
        req("TagSpecification.1.ResourceType=volume&"
            "TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v");
    struct koala_error *err = NULL;
    sql(g_db, "BEGIN");
    if (clc_run_bdms_store(r, &p, "i-0000000000000000a", "z1", &err) < 0)
        fail_msg("%s", error_message(err));
    sql(g_db, "COMMIT");
    req_free(r);
    clc_bdms_free(&p);
    assert_int_equal(count("SELECT count(*) FROM volumes v JOIN attachments a"
                           " ON a.volume_id = v.id WHERE a.instance_id ="
                           " 'i-0000000000000000a' AND v.state = 'creating'"
                           " AND a.state = 'attaching' AND a.node = ''"),
                     2);
    assert_int_equal(count("SELECT count(*) FROM volumes v JOIN attachments a"
                           " ON a.volume_id = v.id WHERE a.boot = 1 AND"
                           " a.device = '/dev/xvda' AND v.snapshot_id ="
                           " 'snap-00000000000000001' AND v.size_gb = 8 AND"
                           " v.type = 'gp3' AND a.delete_on_termination = 1"),
                     1);
    assert_int_equal(count("SELECT count(*) FROM tags t JOIN attachments a ON"
                           " a.volume_id = t.resource_id WHERE t.key = 'k' AND"
                           " t.value = 'v' AND t.resource_type = 'volume'"),
                     2);
    /* What the cluster is sent: the boot volume first, no export. */
    struct xml_writer *w = xml_writer_new("instance", NULL);
    if (clc_write_launch_volumes(g_db, w, "i-0000000000000000a", &err) < 0)
        fail_msg("%s", error_message(err));
    size_t len;
    char *text = xml_writer_finish(w, &len);
    const char *boot = strstr(text, "<boot>true</boot>");
    assert_non_null(boot);
    assert_null(strstr(boot + 1, "<boot>"));
    assert_true(strstr(text, "/dev/xvda") < boot);
    assert_true(strstr(text, "/dev/sdf") > boot);
    assert_null(strstr(text, "export"));
    free(text);
}

static const char *image_state(const char *id)
{
    static char st_[16];
    struct koala_error *err = NULL;
    sqlite3_stmt *st =
        db_stmt(g_db, "SELECT state FROM images WHERE id = ?", &err);
    assert_non_null(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    clc_col(st_, sizeof(st_), st, 0);
    db_stmt_done(st);
    return st_;
}

static void test_pending_image_settles(void **s)
{
    (void)s;
    sql(g_db,
        "INSERT INTO snapshots (id, owner, volume_id, volume_size_gb, zone,"
        " sc_id, state, start_time) VALUES"
        " ('snap-0000000000000000a', 1, 'vol-a', 1, 'z1',"
        "  'snap-0000000000000000a', 'pending', 0),"
        " ('snap-0000000000000000b', 1, 'vol-b', 1, 'z1',"
        "  'snap-0000000000000000b', 'completed', 0);"
        "INSERT INTO images (id, owner, kind, name, location, state, created,"
        " root_device_type) VALUES"
        " ('ami-0000000000000000a', 1, 'machine', 'p1', '', 'pending', 0,"
        "  'ebs'),"
        " ('ami-0000000000000000b', 1, 'machine', 'p2', '', 'pending', 0,"
        "  'ebs');"
        "INSERT INTO image_block_devices (image_id, device, snapshot_id)"
        " VALUES ('ami-0000000000000000a', '/dev/xvda',"
        "  'snap-0000000000000000a'),"
        " ('ami-0000000000000000a', '/dev/sdf', 'snap-0000000000000000b'),"
        " ('ami-0000000000000000b', '/dev/xvda', 'snap-0000000000000000b');");
    clc_ebs_images_sync(NULL, g_db);
    assert_string_equal(image_state("ami-0000000000000000a"), "pending");
    assert_string_equal(image_state("ami-0000000000000000b"), "available");
    sql(g_db, "UPDATE snapshots SET state = 'completed' WHERE id ="
              " 'snap-0000000000000000a'");
    clc_ebs_images_sync(NULL, g_db);
    assert_string_equal(image_state("ami-0000000000000000a"), "available");
    /* One in error fails the image, with a reason. */
    sql(g_db,
        "INSERT INTO snapshots (id, owner, volume_id, volume_size_gb, zone,"
        " sc_id, state, start_time) VALUES ('snap-0000000000000000c', 1,"
        " 'vol-c', 1, 'z1', 'snap-0000000000000000c', 'error', 0);"
        "INSERT INTO images (id, owner, kind, name, location, state, created,"
        " root_device_type) VALUES ('ami-0000000000000000c', 1, 'machine',"
        " 'p3', '', 'pending', 0, 'ebs');"
        "INSERT INTO image_block_devices (image_id, device, snapshot_id)"
        " VALUES ('ami-0000000000000000c', '/dev/xvda',"
        "  'snap-0000000000000000c');");
    clc_ebs_images_sync(NULL, g_db);
    assert_string_equal(image_state("ami-0000000000000000c"), "failed");
    assert_int_equal(count("SELECT count(*) FROM images WHERE id ="
                           " 'ami-0000000000000000c' AND state_reason != ''"),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_run_plan),
        cmocka_unit_test(test_store_and_launch_volumes),
        cmocka_unit_test(test_pending_image_settles),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
