/* test_nc_instance.c: the instance record: instance.json round trips
 * (every field, optional ones absent), state files that are damaged or
 * incomplete, atomic saves, ids and state names, and the <instance>
 * element of the SOAP replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nc.h"
#include "soap.h"
#include "util.h"

static void fill_ref(struct nc_image_ref *r, const char *id, char c)
{
    r->id = strdup(id);
    assert_true(asprintf(&r->url, "http://walrus/%s?X-Amz-Signature=s", id) >
                0);
    r->size = 12345;
    memset(r->sha256, c, 64);
    r->sha256[64] = '\0';
}

static struct nc_instance *full_instance(void)
{
    struct nc_instance *i = nc_instance_new();
    snprintf(i->id, sizeof(i->id), "i-0123456789abcdef0");
    i->reservation_id = strdup("r-0123456789abcdef0");
    i->owner_id = strdup("123456789012");
    i->launch_index = 3;
    i->type.name = strdup("m1.small");
    i->type.cores = 2;
    i->type.memory_mb = 512;
    i->type.disk_gb = 5;
    fill_ref(&i->image, "emi-12345678", 'a');
    fill_ref(&i->kernel, "eki-12345678", 'b');
    fill_ref(&i->ramdisk, "eri-12345678", 'c');
    i->mac = strdup("d0:0d:01:02:03:04");
    i->private_ip = strdup("10.0.0.7");
    i->network = strdup("default");
    i->bridge = strdup("kbr0");
    i->user_data = strdup("aGVsbG8gIndvcmxkIg==");
    i->key_name = strdup("my key <&>");
    i->public_key = strdup("ssh-ed25519 AAAA x@y");
    i->launch_time_ms = 1795597564192;
    snprintf(i->tap, sizeof(i->tap), "tap56789abcdef0");
    i->state = NC_STOPPED;
    i->reason_code = strdup("Client.UserInitiatedShutdown");
    i->reason_message = strdup("User initiated shutdown");
    i->hv = NC_HV_KVM;
    i->booted = true;
    i->pid = 4242;
    return i;
}

static void same_ref(const struct nc_image_ref *a, const struct nc_image_ref *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->url, b->url);
    assert_int_equal(a->size, b->size);
    assert_string_equal(a->sha256, b->sha256);
}

static void test_roundtrip(void **s)
{
    struct nc_instance *a = full_instance();
    char *text = nc_instance_to_json(a);
    assert_non_null(text);
    struct koala_error *err = NULL;
    struct nc_instance *b = nc_instance_from_json(text, strlen(text), &err);
    assert_non_null(b);
    assert_string_equal(b->id, a->id);
    assert_string_equal(b->reservation_id, a->reservation_id);
    assert_string_equal(b->owner_id, a->owner_id);
    assert_int_equal(b->launch_index, 3);
    assert_string_equal(b->type.name, "m1.small");
    assert_int_equal(b->type.cores, 2);
    assert_int_equal(b->type.memory_mb, 512);
    assert_int_equal(b->type.disk_gb, 5);
    same_ref(&a->image, &b->image);
    same_ref(&a->kernel, &b->kernel);
    same_ref(&a->ramdisk, &b->ramdisk);
    assert_string_equal(b->mac, a->mac);
    assert_string_equal(b->private_ip, a->private_ip);
    assert_string_equal(b->network, a->network);
    assert_string_equal(b->bridge, a->bridge);
    assert_string_equal(b->user_data, a->user_data);
    assert_string_equal(b->key_name, a->key_name);
    assert_string_equal(b->public_key, a->public_key);
    assert_int_equal(b->launch_time_ms, a->launch_time_ms);
    assert_string_equal(b->tap, a->tap);
    assert_int_equal(b->state, NC_STOPPED);
    assert_string_equal(b->reason_code, a->reason_code);
    assert_string_equal(b->reason_message, a->reason_message);
    assert_int_equal(b->hv, NC_HV_KVM);
    assert_true(b->booted);
    assert_int_equal(b->pid, 4242);
    /* The same text again: the format is stable (sorted keys). */
    char *again = nc_instance_to_json(b);
    assert_string_equal(text, again);
    free(again);
    free(text);
    nc_instance_free(b);

    /* Optional parts absent: whole-disk boot, no user data. */
    nc_image_ref_clear(&a->kernel);
    nc_image_ref_clear(&a->ramdisk);
    free(a->user_data);
    free(a->key_name);
    free(a->public_key);
    free(a->reason_code);
    free(a->reason_message);
    a->user_data = a->key_name = a->public_key = NULL;
    a->reason_code = a->reason_message = NULL;
    a->state = NC_PENDING;
    a->hv = NC_HV_TCG;
    a->booted = false;
    text = nc_instance_to_json(a);
    b = nc_instance_from_json(text, strlen(text), &err);
    assert_non_null(b);
    assert_null(b->kernel.id);
    assert_null(b->ramdisk.id);
    assert_null(b->user_data);
    assert_null(b->reason_code);
    assert_int_equal(b->state, NC_PENDING);
    assert_int_equal(b->hv, NC_HV_TCG);
    assert_false(b->booted);
    free(text);
    nc_instance_free(b);
    nc_instance_free(a);
}

static void expect_bad(const char *text)
{
    struct koala_error *err = NULL;
    assert_null(nc_instance_from_json(text, strlen(text), &err));
    assert_non_null(err);
    error_free(err);
}

static void test_damaged(void **s)
{
    expect_bad("");
    expect_bad("{\"instanceId\": ");
    expect_bad("[]");
    struct nc_instance *a = full_instance();
    char *text = nc_instance_to_json(a);
    nc_instance_free(a);
    /* Each of these edits makes the file unusable. */
    const char *edits[][2] = {
        {"\"i-0123456789abcdef0\"", "\"x-1\""},
        {"\"stopped\"", "\"sleeping\""},
        {"\"d0:0d:01:02:03:04\"", "1"},
        {"\"tap56789abcdef0\"", "\"\""},
        {"aaaaaaaaaaaaaaaa", "zz"},
    };
    for (size_t e = 0; e < ARRAY_SIZE(edits); e++) {
        char *p = strstr(text, edits[e][0]);
        assert_non_null(p);
        struct buf b = {0};
        buf_append(&b, text, (size_t)(p - text));
        buf_append_str(&b, edits[e][1]);
        buf_append_str(&b, p + strlen(edits[e][0]));
        expect_bad(b.data);
        buf_free(&b);
    }
    free(text);
}

static void test_save(void **s)
{
    char dir[] = "/tmp/koala-inst-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char node[] = "node-a";
    struct nc nc = {.name = node};
    pthread_mutex_init(&nc.lock, NULL);
    struct nc_instance *a = full_instance();
    a->dir = strdup(dir);
    assert_int_equal(nc_instance_save(&nc, a, NULL), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/instance.json", dir);
    size_t len;
    char *text = nc_read_file(path, 1 << 20, &len, NULL);
    assert_non_null(text);
    struct nc_instance *b = nc_instance_from_json(text, len, NULL);
    assert_non_null(b);
    assert_int_equal(b->state, NC_STOPPED);
    free(text);
    nc_instance_free(b);
    /* No temporary file is left behind. */
    snprintf(path, sizeof(path), "%s/instance.json.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);
    /* A terminated instance's directory is gone: nothing is written. */
    a->state = NC_TERMINATED;
    assert_int_equal(nc_rmtree(dir, NULL), 0);
    assert_int_equal(nc_instance_save(&nc, a, NULL), 0);
    assert_int_equal(access(dir, F_OK), -1);
    nc_instance_free(a);
    pthread_mutex_destroy(&nc.lock);
}

static void test_names(void **s)
{
    assert_true(nc_valid_instance_id("i-0123abcd"));
    assert_true(nc_valid_instance_id("i-0123456789abcdef0"));
    assert_false(nc_valid_instance_id("i-0123abc"));
    assert_false(nc_valid_instance_id("i-0123456789abcdef01"));
    assert_false(nc_valid_instance_id("i-0123ABCD"));
    assert_false(nc_valid_instance_id("i-../../etc"));
    assert_false(nc_valid_instance_id("r-0123abcd"));
    assert_false(nc_valid_instance_id(NULL));
    static const char *const names[] = {"pending",       "running",
                                        "stopping",      "stopped",
                                        "shutting-down", "terminated"};
    for (int i = 0; i < 6; i++) {
        enum nc_state st;
        assert_int_equal(nc_state_parse(names[i], &st), 0);
        assert_int_equal(st, i);
        assert_string_equal(nc_state_name(st), names[i]);
    }
    enum nc_state st;
    assert_int_equal(nc_state_parse("Running", &st), -1);
    assert_string_equal(nc_hv_name(NC_HV_KVM), "kvm");
    assert_string_equal(nc_hv_name(NC_HV_TCG), "tcg");
}

static void test_describe(void **s)
{
    char node[] = "node-a";
    struct nc nc = {.name = node};
    struct nc_instance *a = full_instance();
    struct xml_writer *w = soap_start("ncDescribeInstancesResponse", NC_XMLNS);
    nc_instance_describe(&nc, a, w, "instance");
    size_t len;
    char *doc = soap_finish(w, &len);
    const char *want =
        "<instance><instanceId>i-0123456789abcdef0</instanceId>"
        "<reservationId>r-0123456789abcdef0</reservationId>"
        "<ownerId>123456789012</ownerId><launchIndex>3</launchIndex>"
        "<state>stopped</state>"
        "<stateReasonCode>Client.UserInitiatedShutdown</stateReasonCode>"
        "<stateReasonMessage>User initiated shutdown</stateReasonMessage>"
        "<instanceType>m1.small</instanceType>"
        "<imageId>emi-12345678</imageId><kernelId>eki-12345678</kernelId>"
        "<ramdiskId>eri-12345678</ramdiskId>"
        "<macAddress>d0:0d:01:02:03:04</macAddress>"
        "<privateIp>10.0.0.7</privateIp>"
        "<launchTime>2026-11-25T09:06:04.000Z</launchTime>"
        "<node>node-a</node><hypervisor>kvm</hypervisor></instance>";
    if (strstr(doc, want) == NULL)
        fail_msg("got %s", doc);
    free(doc);
    nc_instance_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_save),      cmocka_unit_test(test_names),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
