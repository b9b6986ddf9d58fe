/* attributes.c: DescribeInstanceAttribute and ModifyInstanceAttribute.
 *
 * Every attribute EC2 names can be read, and each answer is what this
 * cloud really does: no EBS (empty block device mapping, not EBS-optimized),
 * virtio rather than ENA or SR-IOV, no enclaves, no stop protection,
 * and no source/destination check (the cluster's
 * bridge does not filter spoofed addresses), so sourceDestCheck is false.
 * What can be changed: termination protection (TerminateInstances then
 * answers OperationNotPermitted), what a guest powering itself off does
 * (stop or terminate: cluster.c carries it out) and, while the instance
 * is stopped, its user data (which metadata_options.c then pushes to the
 * cluster's metadata service).  Changing the instance type, kernel or
 * ramdisk of a stopped instance needs its node to boot it differently,
 * which the components cannot ask for yet: UnsupportedOperation, nothing
 * changed.  The security groups (groupSet, GroupId.N) of an instance that
 * is not ending can be read and replaced (sg_instances.c). */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "ebs.h"
#include "secgroups.h"

/* EC2 counts the decoded bytes, whatever they are: gzip-compressed user
 * data is bytes like any other (neither EC2 nor this cloud unpacks it; the
 * guest's cloud-init does). */
int clc_check_user_data(const char *b64, struct koala_error **err)
{
    size_t n = 0;
    unsigned char *raw = str_base64_decode(b64, &n);
    if (raw == NULL)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid BASE64 encoding of user data.");
    free(raw);
    if (n > CLC_MAX_USER_DATA)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "User data is limited to %d bytes", CLC_MAX_USER_DATA);
    return 0;
}

int clc_check_shutdown_behavior(const char *value, struct koala_error **err)
{
    if (strcmp(value, "stop") == 0 || strcmp(value, "terminate") == 0)
        return 0;
    return error_set(err, EINVAL, "InvalidParameterValue",
                     "Value (%s) for parameter "
                     "instanceInitiatedShutdownBehavior is invalid: stop or "
                     "terminate",
                     value);
}

/* The attributes kept for an instance of the caller. */
struct attrs {
    char id[32];
    char state[16];
    char type[32];
    char kernel[32];
    char ramdisk[32];
    char *user_data; /* base64, NULL: none */
    char shutdown[16];
    bool protected;
    char root_device[32];
};

static int load_attrs(struct ec2_req *r, const char *id, struct attrs *a,
                      struct koala_error **err)
{
    memset(a, 0, sizeof(*a));
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT state, instance_type, kernel_id, ramdisk_id,"
                " user_data, shutdown_behavior, disable_api_termination,"
                " root_device_name FROM instances WHERE id = ? AND owner = ?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up instance", err);
    if (rc == 0) {
        snprintf(a->id, sizeof(a->id), "%s", id);
        clc_col(a->state, sizeof(a->state), st, 0);
        clc_col(a->type, sizeof(a->type), st, 1);
        clc_col(a->kernel, sizeof(a->kernel), st, 2);
        clc_col(a->ramdisk, sizeof(a->ramdisk), st, 3);
        const unsigned char *ud = sqlite3_column_text(st, 4);
        if (ud && (a->user_data = strdup((const char *)ud)) == NULL)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
        clc_col(a->shutdown, sizeof(a->shutdown), st, 5);
        a->protected = sqlite3_column_int(st, 6) != 0;
        clc_col(a->root_device, sizeof(a->root_device), st, 7);
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                         "The instance ID '%s' does not exist", id);
    return rc;
}

/* <name><value>v</value></name>; no value element when v is empty. */
static void attr_value(struct xml_writer *w, const char *name, const char *v)
{
    xml_start(w, name);
    if (v && *v)
        xml_text_element(w, "value", v);
    xml_end(w);
}

static void attr_bool(struct xml_writer *w, const char *name, bool v)
{
    xml_start(w, name);
    xml_bool_element(w, "value", v);
    xml_end(w);
}

void ec2_describe_instance_attribute(struct ec2_req *r)
{
    static const char *const names[] = {"instanceType",
                                        "kernel",
                                        "ramdisk",
                                        "userData",
                                        "disableApiTermination",
                                        "instanceInitiatedShutdownBehavior",
                                        "rootDeviceName",
                                        "blockDeviceMapping",
                                        "productCodes",
                                        "sourceDestCheck",
                                        "groupSet",
                                        "ebsOptimized",
                                        "sriovNetSupport",
                                        "enaSupport",
                                        "enclaveOptions",
                                        "disableApiStop",
                                        NULL};
    struct koala_error *err = NULL;
    const char *id = ec2_required(r, "InstanceId", &err);
    const char *name = id ? ec2_required(r, "Attribute", &err) : NULL;
    if (name == NULL)
        return ec2_fail(r, err);
    size_t k = 0;
    while (names[k] && strcmp(names[k], name) != 0)
        k++;
    if (names[k] == NULL) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Value (%s) for parameter attribute is invalid. Unknown "
                  "attribute.",
                  name);
        return ec2_fail(r, err);
    }
    struct attrs a;
    if (load_attrs(r, id, &a, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r)) {
        free(a.user_data);
        return;
    }
    struct xml_writer *w = ec2_reply_start(r, "DescribeInstanceAttribute");
    xml_text_element(w, "instanceId", a.id);
    if (strcmp(name, "instanceType") == 0)
        attr_value(w, name, a.type);
    else if (strcmp(name, "kernel") == 0)
        attr_value(w, name, a.kernel);
    else if (strcmp(name, "ramdisk") == 0)
        attr_value(w, name, a.ramdisk);
    else if (strcmp(name, "userData") == 0)
        attr_value(w, name, a.user_data);
    else if (strcmp(name, "disableApiTermination") == 0)
        attr_bool(w, name, a.protected);
    else if (strcmp(name, "instanceInitiatedShutdownBehavior") == 0)
        attr_value(w, name, a.shutdown);
    else if (strcmp(name, "rootDeviceName") == 0)
        attr_value(w, name, a.root_device);
    else if (strcmp(name, "sriovNetSupport") == 0)
        attr_value(w, name, NULL);
    else if (strcmp(name, "enclaveOptions") == 0) {
        xml_start(w, name);
        xml_bool_element(w, "enabled", false);
        xml_end(w);
    } else if (strcmp(name, "groupSet") == 0) {
        clc_sg_write_instance_groups(r, w, name, a.id, &err);
    } else if (strcmp(name, "blockDeviceMapping") == 0) {
        xml_start(w, name);
        ec2_write_instance_volumes(r, w, a.id, &err);
        xml_end(w);
    } else if (strcmp(name, "productCodes") == 0) {
        xml_start(w, name); /* empty lists */
        xml_end(w);
    } else { /* sourceDestCheck, ebsOptimized, enaSupport, disableApiStop */
        attr_bool(w, name, false);
    }
    free(a.user_data);
    ec2_reply_end(r, w, err);
}

/* ModifyInstanceAttribute names its change either as Attribute + Value
 * (aws-cli's --attribute/--value) or as a structure X.Value (boto3 and
 * aws-cli's own options). */
struct change_req {
    const char *attribute; /* EC2's name */
    const char *param;     /* the parameter holding the value */
    const char *value;
};

static int one_change(struct ec2_req *r, struct change_req *c,
                      struct koala_error **err)
{
    static const struct {
        const char *param, *attribute;
    } forms[] = {
        {"DisableApiTermination.Value", "disableApiTermination"},
        {"InstanceInitiatedShutdownBehavior.Value",
         "instanceInitiatedShutdownBehavior"},
        {"UserData.Value", "userData"},
        {"InstanceType.Value", "instanceType"},
        {"Kernel.Value", "kernel"},
        {"Ramdisk.Value", "ramdisk"},
        {"SourceDestCheck.Value", "sourceDestCheck"},
        {"EbsOptimized.Value", "ebsOptimized"},
        {"EnaSupport.Value", "enaSupport"},
        {"SriovNetSupport.Value", "sriovNetSupport"},
        {"DisableApiStop.Value", "disableApiStop"},
        {"GroupId.1", "groupSet"},
        {"BlockDeviceMapping.1.DeviceName", "blockDeviceMapping"},
    };
    size_t n = 0;
    c->attribute = ec2_param(r, "Attribute");
    c->param = "Value";
    c->value = ec2_param(r, "Value");
    if (c->attribute)
        n++;
    for (size_t i = 0; i < ARRAY_SIZE(forms); i++) {
        const char *v = ec2_param(r, forms[i].param);
        if (v) {
            c->attribute = forms[i].attribute;
            c->param = forms[i].param;
            c->value = v;
            n++;
        }
    }
    if (n == 0)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain one attribute to modify");
    if (n > 1)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "Only one attribute can be modified at a time");
    if (c->value == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter value");
    return 0;
}

void ec2_modify_instance_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct change_req c;
    struct attrs a = {0};
    const char *id = ec2_required(r, "InstanceId", &err);
    if (id == NULL || one_change(r, &c, &err) < 0 ||
        load_attrs(r, id, &a, &err) < 0)
        goto out;
    const char *column = NULL, *value = c.value;
    bool flag = false;
    if (strcmp(c.attribute, "disableApiTermination") == 0) {
        if (ec2_param_bool(r, c.param, false, &flag, &err) < 0)
            goto out;
        column = "disable_api_termination";
        value = flag ? CLC_INT "1" : CLC_INT "0";
    } else if (strcmp(c.attribute, "instanceInitiatedShutdownBehavior") == 0) {
        if (clc_check_shutdown_behavior(c.value, &err) < 0)
            goto out;
        column = "shutdown_behavior";
    } else if (strcmp(c.attribute, "groupSet") == 0) {
        /* Its own transaction, metadata and policy pushes. */
        int rc = clc_sg_modify_instance(r, a.id, a.state, &err);
        if (rc != 0)
            goto out;
        goto done;
    } else if (strcmp(c.attribute, "blockDeviceMapping") == 0) {
        /* DeleteOnTermination of attached volumes (vol_attach.c). */
        if (clc_ebs_modify_instance_bdm(r, a.id, &err) != 0)
            goto out;
        goto done;
    } else if (strcmp(c.attribute, "userData") == 0) {
        if (clc_check_user_data(c.value, &err) < 0)
            goto out;
        if (strcmp(a.state, "stopped") != 0) {
            error_set(&err, EINVAL, "IncorrectInstanceState",
                      "The instance '%s' is not in the 'stopped' state.", a.id);
            goto out;
        }
        column = "user_data";
    } else {
        error_set(&err, EOPNOTSUPP, "UnsupportedOperation",
                  "Modifying the attribute '%s' is not supported by this "
                  "cloud",
                  c.attribute);
        goto out;
    }
    if (ec2_dry_run(r))
        goto out;
    /* New user data is a change the cluster's metadata service must learn
     * (md_version), pushed after the reply. */
    bool user_data = strcmp(column, "user_data") == 0;
    char sql[128];
    snprintf(sql, sizeof(sql),
             "UPDATE instances SET %s = NULLIF(?, '')%s WHERE id = ?", column,
             user_data ? ", md_version = md_version + 1" : "");
    if (clc_exec(r->db, sql, "modifying instance attribute", &err, value, a.id,
                 NULL) < 0)
        goto out;
    if (user_data)
        clc_md_kick(r->clc);
done:;
    struct xml_writer *w = ec2_reply_start(r, "ModifyInstanceAttribute");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
out:
    free(a.user_data);
    if (err)
        ec2_fail(r, err);
}
