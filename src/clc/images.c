/* images.c: RegisterImage, DescribeImages and DeregisterImage.  An image is
 * an object in Walrus ("bucket/key").  Its kind is read from its first
 * bytes: a Linux kernel (bzImage: "HdrS" at 0x202) registers as aki-, an
 * initramfs (gzip, xz, zstd, lz4 or cpio) as ari-, anything else (a raw or
 * qcow2 disk) as a machine image, ami-, booted with KernelId/RamdiskId when
 * given and from its own boot loader otherwise.  Registering reads the
 * object once for its size and SHA-256, which the NCs check downloads
 * against.
 *
 * Who may use an image: its owner, every account when it is public (the
 * launch permission of the group `all`), and the accounts it is shared
 * with (image_launch_perms, image_attrs.c); the kernel and ramdisk of
 * such an image go with it.  A deregistered image's row stays (instances
 * name it); DescribeImages answers nothing for its id. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "ebs.h"
#include "id.h"

struct image {
    char id[32];
    int64_t owner;
    char owner_number[13];
    char kind[16];
    char name[256];
    char description[4 * 255 + 1]; /* 255 characters */
    char location[1100];
    char format[16];
    uint64_t size;
    char sha256[65];
    char kernel_id[32];
    char ramdisk_id[32];
    char architecture[16];
    char root_device_name[32];
    char state[16];
    char state_reason[256];
    bool public_;
    int64_t created;
    char root_device_type[16];
    bool granted;         /* shared with the viewer */
    struct clc_bdms bdms; /* loaded for the ones answered */
};

#define IMAGE_COLS                                                             \
    "i.id, i.owner, a.number, i.kind, i.name, i.description, i.location,"      \
    " i.format, i.size, i.sha256, i.kernel_id, i.ramdisk_id, i.architecture,"  \
    " i.root_device_name, i.state, i.state_reason, i.public, i.created,"       \
    " i.root_device_type"

/* Whether the image i (m) is shared with the account whose id is ?1. */
#define SHARED_P                                                               \
    " EXISTS (SELECT 1 FROM image_launch_perms p WHERE p.account = (SELECT"    \
    " number FROM accounts WHERE id = ?1) AND p.image_id ="
#define GRANTED_I SHARED_P " i.id)"
#define GRANTED_M SHARED_P " m.id)"

static void read_image(sqlite3_stmt *st, struct image *im)
{
    memset(im, 0, sizeof(*im));
    clc_col(im->id, sizeof(im->id), st, 0);
    im->owner = sqlite3_column_int64(st, 1);
    clc_col(im->owner_number, sizeof(im->owner_number), st, 2);
    clc_col(im->kind, sizeof(im->kind), st, 3);
    clc_col(im->name, sizeof(im->name), st, 4);
    clc_col(im->description, sizeof(im->description), st, 5);
    clc_col(im->location, sizeof(im->location), st, 6);
    clc_col(im->format, sizeof(im->format), st, 7);
    im->size = (uint64_t)sqlite3_column_int64(st, 8);
    clc_col(im->sha256, sizeof(im->sha256), st, 9);
    clc_col(im->kernel_id, sizeof(im->kernel_id), st, 10);
    clc_col(im->ramdisk_id, sizeof(im->ramdisk_id), st, 11);
    clc_col(im->architecture, sizeof(im->architecture), st, 12);
    clc_col(im->root_device_name, sizeof(im->root_device_name), st, 13);
    clc_col(im->state, sizeof(im->state), st, 14);
    clc_col(im->state_reason, sizeof(im->state_reason), st, 15);
    im->public_ = sqlite3_column_int(st, 16) != 0;
    im->created = sqlite3_column_int64(st, 17);
    clc_col(im->root_device_type, sizeof(im->root_device_type), st, 18);
    im->granted = sqlite3_column_int(st, 19) != 0;
}

int clc_image_get(struct db *db, const char *id, int64_t viewer,
                  struct clc_image_ref *ref, struct koala_error **err)
{
    /* (the kernel and ramdisk an image boots with are lent with it: who
     * may launch the image may launch them) */
    static const char sql[] =
        "SELECT i.id, i.owner, i.kind, i.location, i.size, i.sha256,"
        " i.kernel_id, i.ramdisk_id, i.state, i.public, i.root_device_type,"
        " i.root_device_name," GRANTED_I ", EXISTS (SELECT 1 FROM images m"
        " WHERE (m.kernel_id = i.id OR m.ramdisk_id = i.id) AND m.owner ="
        " i.owner AND m.state != 'deregistered' AND (m.public = 1"
        " OR" GRANTED_M ")) FROM images i WHERE i.id = ?2";
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, viewer);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up image", err);
    if (rc == 0) {
        memset(ref, 0, sizeof(*ref));
        clc_col(ref->id, sizeof(ref->id), st, 0);
        ref->owner = sqlite3_column_int64(st, 1);
        clc_col(ref->kind, sizeof(ref->kind), st, 2);
        clc_col(ref->location, sizeof(ref->location), st, 3);
        ref->size = (uint64_t)sqlite3_column_int64(st, 4);
        clc_col(ref->sha256, sizeof(ref->sha256), st, 5);
        clc_col(ref->kernel_id, sizeof(ref->kernel_id), st, 6);
        clc_col(ref->ramdisk_id, sizeof(ref->ramdisk_id), st, 7);
        clc_col(ref->root_device_type, sizeof(ref->root_device_type), st, 10);
        clc_col(ref->root_device_name, sizeof(ref->root_device_name), st, 11);
        char state[16];
        clc_col(state, sizeof(state), st, 8);
        bool visible = ref->owner == viewer || sqlite3_column_int(st, 9) ||
                       sqlite3_column_int(st, 12) || sqlite3_column_int(st, 13);
        if (!visible || strcmp(state, "deregistered") == 0)
            rc = 1;
        else if (strcmp(state, "available") != 0)
            rc = error_set(err, EINVAL, "InvalidAMIID.Unavailable",
                           "The image '%s' is not available (%s)", id, state);
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidAMIID.NotFound",
                         "The image id '[%s]' does not exist", id);
    return rc;
}

/* ---- RegisterImage ---- */

static const char *sniff_kind(const unsigned char *h, size_t n,
                              const char **format)
{
    if (n >= 0x206 && memcmp(h + 0x202, "HdrS", 4) == 0) {
        *format = "kernel";
        return "kernel";
    }
    static const struct {
        const char *magic;
        size_t len;
    } ramdisks[] = {
        {"\x1f\x8b", 2}, /* gzip */
        {"\xfd"
         "7zXZ",
         5},                     /* xz */
        {"\x28\xb5\x2f\xfd", 4}, /* zstd */
        {"\x02\x21\x4c\x18", 4}, /* lz4 legacy */
        {"070701", 6},
        {"070702", 6} /* cpio newc */
    };
    for (size_t i = 0; i < ARRAY_SIZE(ramdisks); i++)
        if (n >= ramdisks[i].len &&
            memcmp(h, ramdisks[i].magic, ramdisks[i].len) == 0) {
            *format = "initrd";
            return "ramdisk";
        }
    *format = n >= 4 && memcmp(h, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
    return "machine";
}

static const char *id_prefix(const char *kind)
{
    return strcmp(kind, "kernel") == 0    ? "aki"
           : strcmp(kind, "ramdisk") == 0 ? "ari"
                                          : "ami";
}

/* KernelId / RamdiskId given to RegisterImage or RunInstances: they must
 * be images of that kind the caller may use. */
int clc_check_boot_image(struct db *db, const char *id, const char *kind,
                         int64_t viewer, struct koala_error **err)
{
    struct clc_image_ref ref;
    if (clc_image_get(db, id, viewer, &ref, err) < 0)
        return -1;
    if (strcmp(ref.kind, kind) != 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s is not a %s image", id, kind);
    return 0;
}

int clc_image_name_check(const char *name, const char *desc,
                         struct koala_error **err)
{
    if (name && (strlen(name) < 3 || strlen(name) > 128))
        return error_set(err, EINVAL, "InvalidAMIName.Malformed",
                         "AMI names must be between 3 and 128 characters "
                         "long");
    if (desc &&
        (!str_valid_utf8(desc, strlen(desc)) || str_utf8_chars(desc) > 255))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Descriptions are up to 255 UTF-8 characters");
    return 0;
}

void ec2_register_image(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *name = ec2_required(r, "Name", &err);
    const char *location = name ? ec2_param(r, "ImageLocation") : NULL;
    const char *arch = ec2_param(r, "Architecture");
    const char *kernel = ec2_param(r, "KernelId");
    const char *ramdisk = ec2_param(r, "RamdiskId");
    const char *desc = ec2_param(r, "Description");
    const char *root = ec2_param(r, "RootDeviceName");
    static const char *const tag_types[] = {"image", NULL};
    if (name == NULL)
        return ec2_fail(r, err);
    if (clc_image_name_check(name, desc, &err) < 0)
        return ec2_fail(r, err);
    if (arch && strcmp(arch, "x86_64") != 0) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Architecture '%s' is not supported: x86_64", arch);
        return ec2_fail(r, err);
    }
    if (location == NULL) /* the root is a snapshot (ebs_images.c) */
        return clc_register_ebs_image(r, name, desc, root);
    if (ec2_param(r, "BlockDeviceMapping.1.DeviceName")) {
        /* (EBS devices over an image on Walrus: RunInstances takes them
         * from the request) */
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "An image in Walrus (ImageLocation) takes no block device "
                  "mapping here: give the volumes to RunInstances, or "
                  "register a snapshot as the root");
        return ec2_fail(r, err);
    }
    if ((kernel &&
         clc_check_boot_image(r->db, kernel, "kernel", r->who.id, &err) < 0) ||
        (ramdisk && clc_check_boot_image(r->db, ramdisk, "ramdisk", r->who.id,
                                         &err) < 0) ||
        ec2_check_tag_specs(r, tag_types, &err) < 0)
        return ec2_fail(r, err);
    if (strlen(location) >= 1024) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "ImageLocation is too long");
        return ec2_fail(r, err);
    }
    /* Read the object now: whether it exists and the caller may read it
     * is part of what a DryRun checks. */
    unsigned char head[4096];
    size_t head_len = 0;
    uint64_t size = 0;
    char sha[65];
    if (clc_walrus_digest(r->clc, r->db, r->who.id, location, head, &head_len,
                          &size, sha, &err) < 0)
        return ec2_fail(r, err);
    if (size == 0) {
        error_set(&err, EINVAL, "InvalidManifest", "Image '%s' is empty",
                  location);
        return ec2_fail(r, err);
    }
    const char *format;
    const char *kind = sniff_kind(head, head_len, &format);
    if (strcmp(kind, "machine") != 0 && (kernel || ramdisk)) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "%s is a %s: it takes no KernelId or RamdiskId", location,
                  kind);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    char id[32], owner[24], size_s[32], now[24];
    if (id_resource(id, sizeof(id), id_prefix(kind)) < 0) {
        error_set_errno(&err, "getrandom");
        return ec2_fail(r, err);
    }
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(size_s, sizeof(size_s), CLC_INT "%llu", (unsigned long long)size);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    int rc = clc_exec(
        r->db,
        "INSERT INTO images(id, owner, kind, name, description, location,"
        " format, size, sha256, kernel_id, ramdisk_id, root_device_name,"
        " state, created) VALUES(?,?,?,?,?,?,?,?,?,NULLIF(?, ''),"
        " NULLIF(?, ''),?,'available',?)",
        "registering image", &err, id, owner, kind, name, desc ? desc : "",
        location, format, size_s, sha, kernel ? kernel : "",
        ramdisk ? ramdisk : "", root ? root : "/dev/sda1", now, NULL);
    if (rc == 0)
        rc = ec2_apply_tag_specs(r, "image", id, &err);
    if (rc < 0) {
        db_rollback(r->db);
        if (err && err->errnum == EEXIST) {
            error_clear(&err);
            error_set(&err, EEXIST, "InvalidAMIName.Duplicate",
                      "AMI name %s is already in use by AMI", name);
        }
        return ec2_fail(r, err);
    }
    if (db_commit(r->db, &err) < 0)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "RegisterImage");
    xml_text_element(w, "imageId", id);
    ec2_reply_finish(r, w);
}

/* ---- DescribeImages ---- */

static const char *image_filter_value(const struct image *im, const char *f,
                                      char *tmp, size_t size)
{
    if (strcmp(f, "image-id") == 0)
        return im->id;
    if (strcmp(f, "name") == 0)
        return im->name;
    if (strcmp(f, "state") == 0)
        return im->state;
    if (strcmp(f, "image-type") == 0)
        return im->kind;
    if (strcmp(f, "owner-id") == 0)
        return im->owner_number;
    if (strcmp(f, "architecture") == 0)
        return im->architecture;
    if (strcmp(f, "is-public") == 0)
        return im->public_ ? "true" : "false";
    if (strcmp(f, "kernel-id") == 0)
        return im->kernel_id;
    if (strcmp(f, "ramdisk-id") == 0)
        return im->ramdisk_id;
    if (strcmp(f, "manifest-location") == 0)
        return im->location;
    if (strcmp(f, "description") == 0)
        return im->description;
    if (strcmp(f, "root-device-type") == 0)
        return im->root_device_type;
    if (strcmp(f, "root-device-name") == 0)
        return im->root_device_name;
    if (strcmp(f, "virtualization-type") == 0)
        return "hvm";
    snprintf(tmp, size, "%s", "");
    return tmp;
}

static void image_item(struct ec2_req *r, struct xml_writer *w,
                       const struct image *im, struct koala_error **err)
{
    char t[25];
    xml_start(w, "item");
    xml_text_element(w, "imageId", im->id);
    if (*im->location)
        xml_text_element(w, "imageLocation", im->location);
    xml_text_element(w, "imageState", im->state);
    xml_text_element(w, "imageOwnerId", im->owner_number);
    xml_text_element(w, "creationDate", ec2_time(im->created, t));
    xml_bool_element(w, "isPublic", im->public_);
    xml_text_element(w, "architecture", im->architecture);
    xml_text_element(w, "imageType", im->kind);
    if (*im->kernel_id)
        xml_text_element(w, "kernelId", im->kernel_id);
    if (*im->ramdisk_id)
        xml_text_element(w, "ramdiskId", im->ramdisk_id);
    xml_text_element(w, "name", im->name);
    if (*im->description)
        xml_text_element(w, "description", im->description);
    xml_text_element(w, "rootDeviceType", im->root_device_type);
    xml_text_element(w, "rootDeviceName", im->root_device_name);
    clc_write_image_bdms(w, &im->bdms);
    xml_text_element(w, "virtualizationType", "hvm");
    xml_text_element(w, "hypervisor", "xen");
    xml_text_element(w, "platformDetails", "Linux/UNIX");
    if (*im->state_reason) {
        xml_start(w, "stateReason");
        xml_text_element(w, "code",
                         strcmp(im->state, "failed") == 0
                             ? "Client.InternalError"
                             : "Client.InvalidImage");
        xml_text_element(w, "message", im->state_reason);
        xml_end(w);
    }
    if (im->owner == r->who.id)
        ec2_write_tag_set(r, w, im->id, err);
    else { /* tags are the owner's own, as EC2's: not shared */
        xml_start(w, "tagSet");
        xml_end(w);
    }
    xml_end(w);
}

/* ExecutableBy: self (or the caller's number) for the images it owns or
 * that are shared with it, all for public ones, another account's number
 * for the caller's images shared with that account. */
static int executable_by(struct ec2_req *r, const struct image *im,
                         const char **users, size_t n, bool *wanted,
                         struct koala_error **err)
{
    bool ok = false;
    for (size_t j = 0; j < n && !ok; j++) {
        const char *u = users[j];
        if (strcmp(u, "self") == 0 || strcmp(u, r->who.number) == 0)
            ok = im->owner == r->who.id || im->granted;
        else if (strcmp(u, "all") == 0)
            ok = im->public_;
        else if (im->owner == r->who.id) {
            int rc = clc_image_shared_with(r->db, im->id, u, err);
            if (rc < 0)
                return -1;
            ok = rc == 1;
        }
    }
    *wanted = ok;
    return 0;
}

void ec2_describe_images(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"image-id",
                                        "name",
                                        "state",
                                        "image-type",
                                        "owner-id",
                                        "architecture",
                                        "is-public",
                                        "kernel-id",
                                        "ramdisk-id",
                                        "manifest-location",
                                        "description",
                                        "root-device-type",
                                        "root-device-name",
                                        "block-device-mapping.device-name",
                                        "block-device-mapping.snapshot-id",
                                        "block-device-mapping.volume-size",
                                        "block-device-mapping.volume-type",
                                        "block-device-mapping."
                                        "delete-on-termination",
                                        "block-device-mapping.encrypted",
                                        "virtualization-type",
                                        "tag-key",
                                        "tag-value",
                                        NULL};
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    struct ec2_id_list ids = {0};
    const char **owners = NULL, **users = NULL;
    size_t n_owners = ec2_param_list(r, "Owner", &owners);
    size_t n_users = ec2_param_list(r, "ExecutableBy", &users);
    bool include_deregistered = false;
    struct image *all = NULL;
    size_t n = 0;
    struct xml_writer *w = NULL;
    if (ec2_id_list_get(r, "ImageId", &ids, &err) < 0 ||
        ec2_param_bool(r, "IncludeDeprecated", false, &include_deregistered,
                       &err) < 0)
        goto out;
    if (ec2_dry_run(r))
        goto out;
    /* Deregistered images only when ids are named: they are found, and
     * not shown (EC2's "recently deregistered images ... return empty
     * results"). */
    static const char sql[] =
        "SELECT " IMAGE_COLS "," GRANTED_I " FROM images i JOIN accounts a ON"
        " a.id = i.owner WHERE (i.owner = ?1 OR i.public = 1 OR" GRANTED_I ")"
        " AND (i.state != 'deregistered' OR ?2) ORDER BY i.id";
    sqlite3_stmt *st = db_stmt(r->db, sql, &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_int(st, 2, ids.n > 0);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct image *na = realloc(all, (n + 1) * sizeof(*na));
        if (na == NULL)
            break;
        all = na;
        read_image(st, &all[n++]);
    }
    db_stmt_done(st);
    w = ec2_reply_start(r, "DescribeImages");
    xml_start(w, "imagesSet");
    for (size_t i = 0; i < n && err == NULL; i++) {
        struct image *im = &all[i];
        bool wanted = ids.n == 0 || ec2_id_list_has(&ids, im->id);
        if (strcmp(im->state, "deregistered") == 0)
            continue;
        if (wanted && strcmp(im->root_device_type, "ebs") == 0 &&
            clc_image_bdms_load(r->db, im->id, &im->bdms, &err) < 0)
            break;
        if (n_owners) {
            bool ok = false;
            for (size_t j = 0; j < n_owners; j++)
                ok |= (strcmp(owners[j], "self") == 0 &&
                       im->owner == r->who.id) ||
                      strcmp(owners[j], im->owner_number) == 0;
            wanted &= ok;
        }
        if (wanted && n_users &&
            executable_by(r, im, users, n_users, &wanted, &err) < 0)
            break;
        for (size_t j = 0; wanted && j < fs.n; j++) {
            char tmp[8];
            wanted = ec2_is_tag_filter(fs.f[j].name)
                         ? im->owner == r->who.id &&
                               ec2_tag_filter(r, im->id, &fs.f[j])
                     : str_has_prefix(fs.f[j].name, "block-device-mapping.")
                         ? clc_image_bdm_filter(&im->bdms, &fs.f[j])
                         : ec2_filter_match(
                               &fs.f[j], image_filter_value(im, fs.f[j].name,
                                                            tmp, sizeof(tmp)));
        }
        if (wanted)
            image_item(r, w, im, &err);
    }
    const char *missing = ec2_id_list_missing(&ids);
    if (err == NULL && missing)
        error_set(&err, ENOENT, "InvalidAMIID.NotFound",
                  "The image id '[%s]' does not exist", missing);
out:
    for (size_t i = 0; i < n; i++)
        clc_bdms_free(&all[i].bdms);
    free(all);
    ec2_id_list_free(&ids);
    free(owners);
    free(users);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}

void ec2_deregister_image(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *id = ec2_required(r, "ImageId", &err);
    if (id == NULL)
        return ec2_fail(r, err);
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT owner FROM images WHERE id = ? AND"
                               " state != 'deregistered'",
                               &err);
    if (st == NULL)
        return ec2_fail(r, err);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up image", &err);
    int64_t owner = rc == 0 ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    if (rc == 1)
        error_set(&err, ENOENT, "InvalidAMIID.NotFound",
                  "The image id '[%s]' does not exist", id);
    else if (rc == 0 && owner != r->who.id)
        error_set(&err, EACCES, "AuthFailure", "Not authorized for image:%s",
                  id);
    if (err)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    /* The row stays: instances launched from it still name it. */
    if (clc_exec(r->db, "UPDATE images SET state = 'deregistered' WHERE id = ?",
                 "deregistering image", &err, id, NULL) < 0)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "DeregisterImage");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}
