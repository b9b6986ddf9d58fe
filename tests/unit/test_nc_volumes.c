/* test_nc_volumes.c: the attachment records of volumes.c: ids and serials,
 * parsing a <volume> of a request (good and bad), instance.json round
 * trips (detached ones left out, damaged entries skipped without losing
 * the instance), the QEMU arguments of a launch (microvm and pc) and the
 * <volume> elements of the replies; boot volumes: the boot flag, an
 * export left for later, at most one per ncRunInstance, their JSON and
 * their disk (first, bootindex=0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nc.h"
#include "soap.h"

static void test_ids_and_serials(void **s)
{
    (void)s;
    assert_true(nc_valid_volume_id("vol-0123456789abcdef0"));
    assert_true(nc_valid_volume_id("vol-0123abcd"));
    assert_false(nc_valid_volume_id("vol-0123456789ABCDEF0"));
    assert_false(nc_valid_volume_id("vol-0123456"));
    assert_false(nc_valid_volume_id("vol-0123456789abcdef01"));
    assert_false(nc_valid_volume_id("i-0123456789abcdef0"));
    assert_false(nc_valid_volume_id(NULL));
    char serial[24];
    nc_volume_serial("vol-0123456789abcdef0", serial);
    /* 20 characters: virtio-blk's limit, as Nitro shows EBS volumes. */
    assert_string_equal(serial, "vol0123456789abcdef0");
    assert_int_equal(strlen(serial), 20);
    assert_string_equal(nc_vol_state_name(NC_VOL_DETACHING), "detaching");
}

/* Parses the Body element of an envelope holding `inner`: a volume
 * (inst NULL) or ncRunInstance's volume* into inst. */
static int parse_op(const char *inner, bool need_export, struct nc_volume **v,
                    struct nc_instance *inst, struct koala_error **err)
{
    char *doc = NULL;
    assert_true(asprintf(&doc,
                         "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap."
                         "org/soap/envelope/\"><soap:Body><ncAttachVolume "
                         "xmlns=\"urn:koala:nc\">%s</ncAttachVolume>"
                         "</soap:Body></soap:Envelope>",
                         inner) > 0);
    struct xml_doc *x = NULL;
    const struct xml_node *op = NULL;
    assert_int_equal(soap_parse_request(doc, strlen(doc), &x, &op, NULL), 0);
    int rc = inst ? nc_volumes_parse_run(op, inst, err)
                  : nc_volume_parse(op, need_export, v, err);
    xml_doc_free(x);
    free(doc);
    return rc;
}

static int parse(const char *inner, bool need_export, struct nc_volume **v,
                 struct koala_error **err)
{
    return parse_op(inner, need_export, v, NULL, err);
}

#define UNIX_EXPORT                                                            \
    "<export><transport>unix</transport><path>/var/lib/koala/sc/exports/"      \
    "vol-0123456789abcdef0.sock</path><exportName>vol-0123456789abcdef0"       \
    "</exportName><tlsHostname>koala-sc-sc1</tlsHostname><sizeBytes>"          \
    "1073741824</sizeBytes></export>"

static void test_parse(void **s)
{
    (void)s;
    struct nc_volume *v = NULL;
    struct koala_error *err = NULL;
    assert_int_equal(parse("<volumeId>vol-0123456789abcdef0</volumeId>"
                           "<device>/dev/sdf</device>" UNIX_EXPORT,
                           true, &v, &err),
                     0);
    assert_string_equal(v->id, "vol-0123456789abcdef0");
    assert_string_equal(v->device, "/dev/sdf");
    assert_string_equal(v->ex.transport, "unix");
    assert_string_equal(v->ex.tls_hostname, "koala-sc-sc1");
    assert_int_equal(v->ex.size_bytes, 1073741824);
    assert_false(v->boot);
    nc_volume_free(v);
    assert_int_equal(
        parse("<volumeId>vol-0123abcd</volumeId><device>xvdba</device>"
              "<export><transport>tcp</transport><host>10.0.0.9</host>"
              "<port>10809</port><exportName>vol-0123abcd</exportName>"
              "<tlsHostname>koala-sc-a</tlsHostname></export>",
              true, &v, &err),
        0);
    assert_string_equal(v->ex.host, "10.0.0.9");
    assert_int_equal(v->ex.port, 10809);
    nc_volume_free(v);

    static const struct {
        const char *inner, *code;
    } bad[] = {
        {"<device>/dev/sdf</device>" UNIX_EXPORT, "MissingParameter"},
        {"<volumeId>vol-XYZ</volumeId><device>/dev/sdf</device>" UNIX_EXPORT,
         "InvalidVolumeID.Malformed"},
        {"<volumeId>vol-0123abcd</volumeId>" UNIX_EXPORT, "MissingParameter"},
        {"<volumeId>vol-0123abcd</volumeId><device>/dev/../x</"
         "device>" UNIX_EXPORT,
         "InvalidParameterValue"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf123</device>" UNIX_EXPORT,
         "InvalidParameterValue"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device>",
         "MissingParameter"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device><export>"
         "<transport>iscsi</transport><exportName>x</exportName>"
         "<tlsHostname>h</tlsHostname></export>",
         "InvalidParameterValue"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device><export>"
         "<transport>unix</transport><path>rel.sock</path><exportName>x"
         "</exportName><tlsHostname>h</tlsHostname></export>",
         "InvalidParameterValue"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device><export>"
         "<transport>tcp</transport><host>h</host><port>0</port><exportName>"
         "x</exportName><tlsHostname>h</tlsHostname></export>",
         "InvalidParameterValue"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device><export>"
         "<transport>unix</transport><path>/a,b</path><exportName>x"
         "</exportName><tlsHostname>h</tlsHostname></export>",
         "InvalidParameterValue"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device><export>"
         "<transport>unix</transport><path>/a</path><exportName>x"
         "</exportName></export>",
         "MissingParameter"},
        {"<volumeId>vol-0123abcd</volumeId><device>sdf</device>"
         "<boot>yes</boot>" UNIX_EXPORT,
         "InvalidParameterValue"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        v = (struct nc_volume *)1;
        if (parse(bad[i].inner, true, &v, &err) != -1 || v != NULL ||
            err == NULL || strcmp(error_code(err), bad[i].code) != 0)
            fail_msg("case %zu: %s", i, err ? error_code(err) : "no error");
        error_free(err);
    }
}

/* <boot>: a flag; the export may be left for later where the caller
 * allows it (ncRunInstance), not where it needs one (ncAttachVolume). */
static void test_parse_boot(void **s)
{
    (void)s;
    struct nc_volume *v = NULL;
    struct koala_error *err = NULL;
    assert_int_equal(parse("<volumeId>vol-0123abcd</volumeId><device>/dev/"
                           "xvda</device><boot>true</boot>",
                           false, &v, &err),
                     0);
    assert_true(v->boot);
    assert_false(nc_volume_has_export(v));
    assert_null(v->ex.transport);
    nc_volume_free(v);
    assert_int_equal(parse("<volumeId>vol-0123abcd</volumeId><device>/dev/"
                           "xvda</device><boot>false</boot>" UNIX_EXPORT,
                           false, &v, &err),
                     0);
    assert_false(v->boot);
    assert_true(nc_volume_has_export(v));
    nc_volume_free(v);
    assert_int_equal(parse("<volumeId>vol-0123abcd</volumeId><device>/dev/"
                           "xvda</device><boot>true</boot>",
                           true, &v, &err),
                     -1);
    assert_string_equal(error_code(err), "MissingParameter");
    error_free(err);
}

/* ncRunInstance's volume*: states, at most one boot volume. */
static void test_parse_run(void **s)
{
    (void)s;
    struct koala_error *err = NULL;
    struct nc_instance *i = nc_instance_new();
    assert_int_equal(
        parse_op("<volume><volumeId>vol-0000000a</volumeId><device>xvda"
                 "</device><boot>true</boot></volume>"
                 "<volume><volumeId>vol-0000000b</volumeId><device>sdf"
                 "</device></volume>"
                 "<volume><volumeId>vol-0000000c</volumeId><device>sdg"
                 "</device>" UNIX_EXPORT "</volume>",
                 false, NULL, i, &err),
        0);
    struct nc_volume *a = i->volumes, *b = a->next, *c = b->next;
    assert_ptr_equal(nc_boot_volume(i), a);
    assert_int_equal(a->state, NC_VOL_ATTACHING); /* until QEMU runs */
    assert_int_equal(b->state, NC_VOL_ATTACHING); /* its export to come */
    assert_int_equal(c->state, NC_VOL_ATTACHED);
    assert_false(b->boot || c->boot);
    nc_instance_free(i);

    i = nc_instance_new();
    assert_int_equal(
        parse_op("<volume><volumeId>vol-0000000a</volumeId><device>xvda"
                 "</device><boot>true</boot></volume>"
                 "<volume><volumeId>vol-0000000b</volumeId><device>sdf"
                 "</device><boot>true</boot></volume>",
                 false, NULL, i, &err),
        -1);
    assert_string_equal(error_code(err), "InvalidParameterValue");
    assert_non_null(strstr(error_message(err), "at most one boot volume"));
    error_free(err);
    nc_instance_free(i);
}

static struct nc_volume *vol(const char *id, const char *dev,
                             enum nc_vol_state st)
{
    struct nc_volume *v = calloc(1, sizeof(*v));
    snprintf(v->id, sizeof(v->id), "%s", id);
    v->device = strdup(dev);
    v->state = st;
    v->ex.transport = strdup("unix");
    assert_true(asprintf(&v->ex.path, "/sc/%s.sock", id) > 0);
    v->ex.export_name = strdup(id);
    v->ex.tls_hostname = strdup("koala-sc-sc1");
    v->ex.size_bytes = 1 << 30;
    return v;
}

static struct nc_instance *instance(bool microvm)
{
    struct nc_instance *i = nc_instance_new();
    snprintf(i->id, sizeof(i->id), "i-0123456789abcdef0");
    if (microvm)
        i->kernel.id = strdup("eki-12345678");
    i->volumes = vol("vol-0000000000000000a", "/dev/sdf", NC_VOL_ATTACHED);
    i->volumes->next = vol("vol-0000000b", "xvdg", NC_VOL_DETACHING);
    i->volumes->next->next =
        vol("vol-0000000000000000c", "/dev/sdh", NC_VOL_DETACHED);
    return i;
}

static void test_json(void **s)
{
    (void)s;
    struct nc_instance *a = instance(true);
    a->volumes->grow_to = 2147483648; /* a growth under way */
    json_t *j = nc_volumes_to_json(a);
    assert_int_equal(json_array_size(j), 2); /* detached: not kept */
    struct nc_instance *b = nc_instance_new();
    snprintf(b->id, sizeof(b->id), "%s", a->id);
    assert_int_equal(nc_volumes_from_json(j, b, NULL), 0);
    struct nc_volume *x = b->volumes, *y = x ? x->next : NULL;
    assert_non_null(y);
    assert_null(y->next);
    assert_string_equal(x->id, "vol-0000000000000000a");
    assert_int_equal(x->state, NC_VOL_ATTACHED);
    assert_string_equal(x->ex.path, "/sc/vol-0000000000000000a.sock");
    assert_int_equal(x->grow_to, 2147483648); /* taken up after a restart */
    assert_string_equal(y->device, "xvdg");
    assert_int_equal(y->state, NC_VOL_DETACHING);
    assert_int_equal(y->grow_to, 0);
    json_decref(j);
    nc_instance_free(b);
    /* A damaged entry is left out; the others and the instance stay. */
    json_error_t e, e2;
    j = json_loads("[{\"volumeId\": \"vol-bad\", \"state\": \"attached\"},"
                   " {\"volumeId\": \"vol-0000000d\", \"device\": \"sdi\","
                   "  \"state\": \"attached\", \"export\": {\"transport\":"
                   "  \"unix\", \"path\": \"/p\", \"exportName\": \"x\","
                   "  \"tlsHostname\": \"h\"}}]",
                   0, &e);
    b = nc_instance_new();
    assert_int_equal(nc_volumes_from_json(j, b, NULL), 0);
    assert_non_null(b->volumes);
    assert_string_equal(b->volumes->id, "vol-0000000d");
    assert_null(b->volumes->next);
    json_decref(j);
    nc_instance_free(b);
    nc_instance_free(a);

    /* A boot volume waiting for its export: the flag and the missing
     * export survive a restart (a record without an export is kept only
     * while attaching). */
    a = nc_instance_new();
    snprintf(a->id, sizeof(a->id), "i-0123456789abcdef0");
    snprintf(a->tap, sizeof(a->tap), "tap0123");
    a->type.name = strdup("t1.tiny");
    a->mac = strdup("d0:0d:00:00:00:01");
    a->volumes = calloc(1, sizeof(*a->volumes));
    snprintf(a->volumes->id, sizeof(a->volumes->id), "vol-0000000e");
    a->volumes->device = strdup("/dev/xvda");
    a->volumes->boot = true;
    a->volumes->next = vol("vol-0000000f", "sdf", NC_VOL_ATTACHED);
    char *text = nc_instance_to_json(a);
    assert_non_null(strstr(text, "\"boot\": true"));
    b = nc_instance_from_json(text, strlen(text), NULL);
    assert_non_null(b);
    assert_null(b->image.id); /* none: boots from the volume */
    assert_non_null(b->volumes);
    assert_true(b->volumes->boot);
    assert_int_equal(b->volumes->state, NC_VOL_ATTACHING);
    assert_false(nc_volume_has_export(b->volumes));
    assert_string_equal(b->volumes->device, "/dev/xvda");
    assert_non_null(b->volumes->next);
    assert_false(b->volumes->next->boot);
    assert_true(nc_volume_has_export(b->volumes->next));
    nc_instance_free(b);
    free(text);
    /* ... and with its export, attached. */
    struct nc_volume *ev = vol("vol-0000000e", "/dev/xvda", NC_VOL_ATTACHED);
    ev->boot = true;
    ev->next = a->volumes->next;
    a->volumes->next = NULL;
    nc_volumes_free(a->volumes);
    a->volumes = ev;
    text = nc_instance_to_json(a);
    b = nc_instance_from_json(text, strlen(text), NULL);
    assert_non_null(b);
    assert_true(b->volumes->boot);
    assert_int_equal(b->volumes->state, NC_VOL_ATTACHED);
    assert_string_equal(b->volumes->ex.path, "/sc/vol-0000000e.sock");
    nc_instance_free(b);
    free(text);
    nc_instance_free(a);
    /* Without an export, only attaching makes sense: other states are
     * damaged entries. */
    j = json_loads("[{\"volumeId\": \"vol-0000000d\", \"device\": \"sdi\","
                   "  \"state\": \"attached\", \"boot\": true}]",
                   0, &e2);
    b = nc_instance_new();
    assert_int_equal(nc_volumes_from_json(j, b, NULL), 0);
    assert_null(b->volumes);
    json_decref(j);
    nc_instance_free(b);
}

static bool has_arg(char **v, const char *needle)
{
    for (; v && *v; v++)
        if (strstr(*v, needle))
            return true;
    return false;
}

static void test_qemu_args(void **s)
{
    (void)s;
    char dir[] = "/var/lib/koala/nc/tls";
    struct nc nc = {.tls_dir = dir};
    struct nc_instance *m = instance(true);
    char **a = nc_volumes_qemu_args_locked(&nc, m);
    /* The bus for later hot-plugs, the credentials, the one attached
     * volume (neither the detaching nor the detached one). */
    assert_string_equal(a[0], "-device");
    assert_string_equal(a[1], "virtio-scsi-device,id=vscsi");
    assert_string_equal(a[2], "-object");
    assert_true(has_arg(a, "\"qom-type\":\"tls-creds-x509\""));
    assert_true(has_arg(a, "\"dir\":\"/var/lib/koala/nc/tls\""));
    assert_true(has_arg(a, "\"node-name\":\"nbd-vol-0000000000000000a\""));
    assert_true(has_arg(a, "\"node-name\":\"raw-vol-0000000000000000a\","
                           "\"file\":\"nbd-vol-0000000000000000a\""));
    assert_true(has_arg(a, "\"drive\":\"raw-vol-0000000000000000a\""));
    assert_true(has_arg(a, "\"tls-hostname\":\"koala-sc-sc1\""));
    assert_true(has_arg(a, "\"driver\":\"scsi-hd\""));
    assert_true(has_arg(a, "\"serial\":\"vol0000000000000000a\""));
    assert_false(has_arg(a, "vol-0000000b"));
    assert_false(has_arg(a, "vol-0000000000000000c"));
    size_t n = 0;
    while (a[n])
        n++;
    assert_int_equal(n, 10);
    nc_strv_free(a);
    nc_instance_free(m);

    struct nc_instance *p = instance(false);
    a = nc_volumes_qemu_args_locked(&nc, p);
    assert_string_equal(a[0], "-object"); /* no SCSI bus on a pc */
    assert_true(has_arg(a, "\"driver\":\"virtio-blk-pci\""));
    assert_false(has_arg(a, "vscsi"));
    nc_strv_free(a);
    /* No attached volume: nothing at all on a pc. */
    p->volumes->state = NC_VOL_DETACHED;
    a = nc_volumes_qemu_args_locked(&nc, p);
    assert_null(a[0]);
    nc_strv_free(a);
    nc_instance_free(p);

    /* Booting from a volume: a pc whose first disk is the boot volume
     * (while its launch runs it is still attaching), bootindex=0 on it
     * only; a boot volume without its export is not there. */
    p = instance(false);
    struct nc_volume *bv =
        vol("vol-0000000000000000e", "/dev/xvda", NC_VOL_ATTACHING);
    bv->boot = true;
    bv->next = p->volumes;
    p->volumes = bv;
    /* the boot volume last in the list, yet first on the command line */
    p->volumes = bv->next;
    bv->next = NULL;
    struct nc_volume *t = p->volumes;
    while (t->next)
        t = t->next;
    t->next = bv;
    a = nc_volumes_qemu_args_locked(&nc, p);
    assert_string_equal(a[0], "-object");
    assert_non_null(strstr(a[3], "nbd-vol-0000000000000000e"));
    assert_string_equal(a[6], "-device");
    /* (key=value: QEMU makes these devices before the JSON ones, so the
     * boot volume is the first disk) */
    assert_string_equal(a[7], "virtio-blk-pci,drive=raw-vol-0000000000000000e,"
                              "id=vol-0000000000000000e,serial="
                              "vol0000000000000000e,bootindex=0");
    assert_non_null(strstr(a[13], "raw-vol-0000000000000000a"));
    assert_null(strstr(a[13], "bootindex"));
    n = 0;
    while (a[n])
        n++;
    assert_int_equal(n, 14);
    nc_strv_free(a);
    /* No export yet: not on the command line. */
    free(bv->ex.transport);
    bv->ex.transport = NULL;
    a = nc_volumes_qemu_args_locked(&nc, p);
    assert_false(has_arg(a, "vol-0000000000000000e"));
    assert_false(has_arg(a, "bootindex"));
    nc_strv_free(a);
    nc_instance_free(p);
}

static void test_describe(void **s)
{
    (void)s;
    struct nc_instance *i = instance(true);
    free(i->volumes->next->error);
    i->volumes->next->error = strdup("the guest has not released it");
    struct xml_writer *w = soap_start("x", NC_XMLNS);
    nc_volumes_describe(i, w);
    size_t len;
    char *doc = soap_finish(w, &len);
    const char *want =
        "<volume><volumeId>vol-0000000000000000a</volumeId>"
        "<device>/dev/sdf</device><state>attached</state>"
        "<serial>vol0000000000000000a</serial></volume>"
        "<volume><volumeId>vol-0000000b</volumeId><device>xvdg</device>"
        "<state>detaching</state><serial>vol0000000b</serial>"
        "<statusMessage>the guest has not released it</statusMessage>"
        "</volume><volume><volumeId>vol-0000000000000000c</volumeId>";
    if (strstr(doc, want) == NULL)
        fail_msg("got %s", doc);
    free(doc);
    nc_instance_free(i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_serials),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_boot),
        cmocka_unit_test(test_parse_run),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_qemu_args),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
