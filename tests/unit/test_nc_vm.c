/* test_nc_vm.c: the QEMU command lines and disks the NC makes (vm.c, hv.c),
 * with stand-ins for qemu-system-x86_64 and qemu-img that write down their
 * arguments: direct kernel boots carry ci.ds=Ec2 on the kernel command
 * line, whole-disk boots an SMBIOS UUID and serial starting "ec2", and the
 * root disk is the type's size when the image is smaller. */
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
#include "util.h"

static char tmp[] = "/tmp/koala-test-nc-vm.XXXXXX";
static char fake[4200]; /* the stand-in: args to DIR/args, its pid file */
static char args[4200];

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(tmp) == NULL)
        return -1;
    snprintf(fake, sizeof(fake), "%s/fake-qemu", tmp);
    snprintf(args, sizeof(args), "%s/args", tmp);
    FILE *f = fopen(fake, "w");
    if (f == NULL)
        return -1;
    /* One argument a line, a blank line after each run; -pidfile's file
     * gets its pid, as QEMU's would. */
    fprintf(f,
            "#!/bin/sh\n"
            "prev=\n"
            "for a in \"$@\"; do\n"
            "  printf '%%s\\n' \"$a\" >> '%s'\n"
            "  [ \"$prev\" = -pidfile ] && echo $$ > \"$a\"\n"
            "  prev=$a\n"
            "done\n"
            "echo >> '%s'\n",
            args, args);
    fclose(f);
    return chmod(fake, 0755);
}

static int teardown(void **state)
{
    (void)state;
    return nc_rmtree(tmp, NULL);
}

/* The arguments of the last run, one string "a\nb\n...". */
static char *last_args(void)
{
    char *s = nc_read_file(args, 1 << 20, NULL, NULL);
    assert_non_null(s);
    unlink(args);
    return s;
}

/* Option X with value Y: the lines "X" and "Y" in a row. */
static bool has_opt(const char *all, const char *opt, const char *val)
{
    char *want = NULL;
    assert_true(asprintf(&want, "\n%s\n%s\n", opt, val) > 0);
    bool ok = strstr(all, want) != NULL;
    free(want);
    return ok;
}

static void test_smbios_uuid(void **state)
{
    (void)state;
    char u[37];
    nc_vm_smbios_uuid("i-0123abcd", u);
    assert_string_equal(u, "ec200000-0000-0000-0000-00000123abcd");
    nc_vm_smbios_uuid("i-0123456789abcdef0", u);
    assert_string_equal(u, "ec200000-0000-0000-1234-56789abcdef0");
    nc_vm_smbios_uuid("i-ffffffffffffffff1", u);
    assert_string_equal(u, "ec200000-0000-000f-ffff-fffffffffff1");
}

static void test_whole_disk_has_smbios(void **state)
{
    (void)state;
    struct nc_vm_spec s = {.qemu = fake,
                           .hv = NC_HV_TCG,
                           .name = "i-0123abcd",
                           .dir = tmp,
                           .cores = 1,
                           .memory_mb = 256,
                           .root = "/x/root.qcow2",
                           .netns_fd = -1};
    pid_t pid = 0;
    struct koala_error *err = NULL;
    assert_int_equal(nc_vm_launch(&s, &pid, &err), 0);
    assert_true(pid > 0);
    char *a = last_args();
    assert_true(has_opt(a, "-M", "pc"));
    assert_true(has_opt(a, "-uuid", "ec200000-0000-0000-0000-00000123abcd"));
    assert_true(has_opt(a, "-smbios",
                        "type=1,serial=ec200000-0000-0000-0000-00000123abcd,"
                        "uuid=ec200000-0000-0000-0000-00000123abcd"));
    assert_null(strstr(a, "-kernel"));
    free(a);
}

static void test_direct_boot_names_the_datasource(void **state)
{
    (void)state;
    struct nc nc = {.tsc_khz = 2500000};
    char *tcg = nc_hv_append(&nc, NC_HV_TCG);
    char *kvm = nc_hv_append(&nc, NC_HV_KVM);
    assert_non_null(strstr(tcg, " ci.ds=Ec2"));
    assert_non_null(strstr(tcg, " tsc_early_khz=2500000"));
    assert_non_null(strstr(kvm, " ci.ds=Ec2"));
    assert_non_null(strstr(kvm, "root=/dev/vda"));
    struct nc_vm_spec s = {.qemu = fake,
                           .hv = NC_HV_TCG,
                           .name = "i-0123abcd",
                           .dir = tmp,
                           .kernel = "/x/vmlinuz",
                           .initrd = "/x/initrd.img",
                           .append = tcg,
                           .root = "/x/root.qcow2",
                           .netns_fd = -1};
    pid_t pid = 0;
    struct koala_error *err = NULL;
    assert_int_equal(nc_vm_launch(&s, &pid, &err), 0);
    char *a = last_args();
    assert_true(has_opt(a, "-M", "microvm"));
    assert_true(has_opt(a, "-append", tcg));
    /* microvm has no SMBIOS to give. */
    assert_null(strstr(a, "-smbios"));
    assert_null(strstr(a, "-uuid"));
    free(a);
    free(tcg);
    free(kvm);
}

static void make_file(const char *path, const void *data, size_t len,
                      off_t size)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    assert_int_equal(truncate(path, size), 0);
}

/* Runs nc_disks_create for an image and a type; returns the root disk's
 * qemu-img arguments (the first run). */
static char *disks_for(const char *image, const char *format, int64_t disk_gb)
{
    struct nc nc = {.opt = {.qemu_img = fake}};
    struct nc_instance *inst = nc_instance_new();
    assert_true(asprintf(&inst->dir, "%s", tmp) > 0);
    inst->type.disk_gb = disk_gb;
    struct koala_error *err = NULL;
    assert_int_equal(nc_disks_create(&nc, inst, image, format, &err), 0);
    nc_instance_free(inst);
    char *a = last_args();
    char *end = strstr(a, "\n\n");
    assert_non_null(end);
    end[1] = '\0';
    return a;
}

static void test_root_disk_size(void **state)
{
    (void)state;
    char raw[4200], qcow[4200], root[4200];
    snprintf(raw, sizeof(raw), "%s/small.img", tmp);
    snprintf(qcow, sizeof(qcow), "%s/big.qcow2", tmp);
    snprintf(root, sizeof(root), "%s/root.qcow2\n", tmp);
    make_file(raw, NULL, 0, 600 << 20);
    /* A 7 GiB qcow2: magic, version, then the size at offset 24. */
    unsigned char h[32] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};
    uint64_t v = 7ULL << 30;
    for (int i = 0; i < 8; i++)
        h[24 + i] = (unsigned char)(v >> (56 - 8 * i));
    make_file(qcow, h, sizeof(h), 4096);

    /* Smaller image: the root disk is the type's 5 GiB. */
    char *a = disks_for(raw, "raw", 5);
    char *tail = strstr(a, root);
    assert_non_null(tail);
    assert_string_equal(tail + strlen(root), "5368709120\n");
    assert_true(has_opt(a, "-F", "raw"));
    free(a);
    /* Larger image: its own size (no size argument). */
    a = disks_for(qcow, "qcow2", 5);
    tail = strstr(a, root);
    assert_non_null(tail);
    assert_string_equal(tail + strlen(root), "");
    free(a);
    /* No disk size in the type: the image's. */
    a = disks_for(raw, "raw", 0);
    tail = strstr(a, root);
    assert_non_null(tail);
    assert_string_equal(tail + strlen(root), "");
    free(a);
    /* An image that cannot be read fails the launch. */
    struct nc nc = {.opt = {.qemu_img = fake}};
    struct nc_instance *inst = nc_instance_new();
    assert_true(asprintf(&inst->dir, "%s", tmp) > 0);
    inst->type.disk_gb = 1;
    struct koala_error *err = NULL;
    assert_int_equal(
        nc_disks_create(&nc, inst, "/nonexistent/img", "raw", &err), -1);
    assert_non_null(strstr(error_message(err), "/nonexistent/img"));
    error_free(err);
    nc_instance_free(inst);
    unlink(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smbios_uuid),
        cmocka_unit_test(test_whole_disk_has_smbios),
        cmocka_unit_test(test_direct_boot_names_the_datasource),
        cmocka_unit_test(test_root_disk_size),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
