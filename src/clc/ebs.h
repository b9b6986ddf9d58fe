/* ebs.h: the CLC's side of EBS (docs/storage.md): volumes (volumes.c),
 * their attachments (vol_attach.c), snapshots (snapshots.c), the SC's
 * SOAP client (sc_client.c) and the work the poller carries towards the
 * SCs and clusters (ebs_sync.c).
 *
 * DESIGN: every request changes the CLC's rows in one transaction and
 * answers; the work it needs from an SC or a cluster is then tried at
 * once (on the launch pool) and again on every poll until the SC's and
 * the NC's reports agree with the rows.  So a volume is `creating` until
 * its SC has it, an attachment `attaching` until its node reports it
 * plugged, and nothing a user was told is lost when a component is down
 * for a while: it only waits.
 */
#ifndef KOALA_CLC_EBS_H
#define KOALA_CLC_EBS_H

#include "clc.h"

#define GIB (1024ull * 1024 * 1024)

/* ---- the SC's client (sc_client.c) ---- */
struct soap_client;
/* A SOAP client for the SC of zone: NULL with *err (InternalError or
 * ServiceUnavailable-like) when the zone has none registered. */
struct soap_client *clc_sc_client(struct clc *clc, struct db *db,
                                  const char *zone, struct koala_error **err);
/* What an SC says about one of its volumes. */
struct sc_volume {
    char status[16]; /* creating available deleting deleted error */
    uint64_t size;
    int progress; /* -1 unknown */
};
int clc_sc_create_volume(struct soap_client *c, const char *id, uint64_t size,
                         const char *snapshot, const char *snapshot_zone,
                         struct sc_volume *out, struct koala_error **err);
int clc_sc_delete_volume(struct soap_client *c, const char *id,
                         struct sc_volume *out, struct koala_error **err);
int clc_sc_resize_volume(struct soap_client *c, const char *id, uint64_t size,
                         struct sc_volume *out, struct koala_error **err);
/* 0 with out filled, 1 the SC does not know the volume, -1. */
int clc_sc_describe_volume(struct soap_client *c, const char *id,
                           struct sc_volume *out, struct koala_error **err);
/* The export record for node, as XML (the <export> element's children,
 * ready to copy into the CC's AttachVolume): *xml malloc'd. */
int clc_sc_export_volume(struct soap_client *c, const char *id,
                         const char *node, char **xml,
                         struct koala_error **err);
int clc_sc_unexport_volume(struct soap_client *c, const char *id,
                           const char *node, struct koala_error **err);
struct sc_snapshot {
    char status[16]; /* pending completed error */
    int progress;
    uint64_t uploaded, total;
    char message[256];
};
int clc_sc_create_snapshot(struct soap_client *c, const char *id,
                           const char *volume, struct sc_snapshot *out,
                           struct koala_error **err);
/* 0, 1 unknown to the SC, -1. */
int clc_sc_describe_snapshot(struct soap_client *c, const char *id,
                             struct sc_snapshot *out, struct koala_error **err);
int clc_sc_delete_snapshot(struct soap_client *c, const char *id,
                           struct koala_error **err);

/* ---- volumes (volumes.c) ---- */
struct volume_row {
    char id[32];
    int64_t owner;
    char zone[64];
    int64_t size_gb;
    char snapshot_id[32];
    char type[16];
    int64_t iops, throughput; /* 0: none */
    char state[16];
    int64_t created;
    bool multi_attach;
    /* its attachment, if any */
    char instance_id[32];
    char device[64];
    char attach_state[16];
    int64_t attach_time;
    bool delete_on_termination;
};
/* The caller's volume: 0, or -1 with InvalidVolume.NotFound. */
int clc_volume_get(struct db *db, int64_t owner, const char *id,
                   struct volume_row *out, struct koala_error **err);
void ec2_create_volume(struct ec2_req *r);
void ec2_delete_volume(struct ec2_req *r);
void ec2_describe_volumes(struct ec2_req *r);
void ec2_describe_volume_status(struct ec2_req *r);
void ec2_modify_volume(struct ec2_req *r);
void ec2_describe_volumes_modifications(struct ec2_req *r);

/* Does the cloud have the zone (a registered cluster), and an SC there? */
int clc_zone_known(struct db *db, const char *zone, bool *known, bool *has_sc,
                   struct koala_error **err);
/* Checks a volume's type, size, iops and throughput against EC2's
 * bounds (InvalidParameterValue ...). */
int clc_volume_check_spec(const char *type, int64_t size_gb, int64_t iops,
                          int64_t throughput, struct koala_error **err);
/* A volume's fields, as DescribeVolumes' item and CreateVolume's answer. */
void clc_write_volume(struct ec2_req *r, struct xml_writer *w,
                      const struct volume_row *x, struct koala_error **err);

/* ---- attachments (vol_attach.c) ---- */
/* EC2's EBS device names (/dev/sdf, xvdf ...). */
bool clc_device_name_valid(const char *d);
/* The node let go of the volume (or its instance is over): the export is
 * queued to go, the attachment goes, the volume is available (deleting
 * when it was to go with its terminated instance). */
int clc_attachment_done(struct db *db, const char *volume,
                        struct koala_error **err);
void ec2_attach_volume(struct ec2_req *r);
void ec2_detach_volume(struct ec2_req *r);
/* <blockDeviceMapping> items of an instance's attached volumes. */
int ec2_write_instance_volumes(struct ec2_req *r, struct xml_writer *w,
                               const char *instance_id,
                               struct koala_error **err);
/* ModifyInstanceAttribute's BlockDeviceMapping.N (DeviceName,
 * Ebs.DeleteOnTermination) on the instance's attached volumes. */
int clc_ebs_modify_instance_bdm(struct ec2_req *r, const char *instance_id,
                                struct koala_error **err);
/* The volumes a cluster reports on one instance (its <volume> children):
 * attaching -> attached, detaching -> done. */
int clc_ebs_apply_instance(struct clc *clc, struct db *db, const char *iid,
                           const char *state, const struct xml_node *inst,
                           struct koala_error **err);

/* ---- snapshots (snapshots.c, snap_perms.c) ---- */
void ec2_create_snapshot(struct ec2_req *r);
void ec2_create_snapshots(struct ec2_req *r);
void ec2_describe_snapshots(struct ec2_req *r);
void ec2_delete_snapshot(struct ec2_req *r);
void ec2_copy_snapshot(struct ec2_req *r);
void ec2_describe_snapshot_attribute(struct ec2_req *r);
void ec2_modify_snapshot_attribute(struct ec2_req *r);
void ec2_reset_snapshot_attribute(struct ec2_req *r);
/* The image (not deregistered) whose block device mapping names the
 * snapshot, "" for none. */
int clc_snapshot_image(struct db *db, const char *snapshot, char image[32],
                       struct koala_error **err);
/* 0 when the snapshot is the owner's, or -1 with InvalidSnapshot.NotFound
 * (InvalidSnapshotID.Malformed). */
int clc_snapshot_own(struct db *db, int64_t owner, const char *id,
                     struct koala_error **err);
/* The snapshot, if the viewer may create volumes from it: 0, or -1 with
 * InvalidSnapshot.NotFound; its SC data id and zone into sc_id / zone,
 * its volume size into *size_gb. */
int clc_snapshot_usable(struct db *db, int64_t viewer, const char *id,
                        char sc_id[32], char zone[64], int64_t *size_gb,
                        struct koala_error **err);
/* In the transaction that records a volume from snapshot id: it is still
 * there (a DeleteSnapshot may have come in since it was checked), so
 * that its SC data is held until the volume is filled (ebs_sync.c).  0,
 * or -1 with InvalidSnapshot.NotFound. */
int clc_snapshot_still_there(struct db *db, const char *id,
                             struct koala_error **err);

/* ---- the work towards SCs and clusters (ebs_sync.c) ---- */
/* One round: volumes creating / deleting, snapshots pending, attachments
 * attaching / detaching, exports and SC objects to drop.  From the poller
 * and (clc_ebs_kick) after each change. */
void clc_ebs_sync(struct clc *clc, struct db *db);
void clc_ebs_kick(struct clc *clc);
/* AttachVolume's work for one volume (a checked id), in the request: the
 * export and the plug, so that the attachment is usually attached when
 * AttachVolume answers (EC2's answer still says attaching); what fails
 * is the rounds' to retry. */
void clc_ebs_attach_now(struct clc *clc, struct db *db, const char *volume);
/* Records what the SC says of a snapshot's data (every snapshot row
 * naming it that is still pending); sent: the SC has been asked. */
void clc_ebs_snapshot_update(struct db *db, const char *sc_id,
                             const struct sc_snapshot *s, bool sent);

/* ---- EBS-backed images and instances (ebs_images.c) ---- */
#define CLC_MAX_BDMS 16 /* mappings per image or instance (the NC's limit) */
/* One BlockDeviceMapping.N: an EBS volume (a snapshot's, or new and
 * empty), an instance-store device (VirtualName) or none (NoDevice). */
struct clc_bdm {
    char device[64];
    char virtual_name[16];
    bool no_device;
    bool ebs;
    char snapshot_id[32];
    int64_t size_gb; /* 0: the snapshot's */
    char type[16];   /* "": gp2 */
    int64_t iops, throughput;
    bool dot, dot_given;             /* DeleteOnTermination (default true) */
    bool boot;                       /* the root of an EBS-backed instance */
    char sc_snap[32], snap_zone[64]; /* the snapshot's SC data */
};
struct clc_bdms {
    struct clc_bdm *v;
    size_t n;
};
void clc_bdms_free(struct clc_bdms *b);
/* BlockDeviceMapping.N of the request (root: the root device's name, or
 * NULL), checked for form: names, one kind per mapping, no device twice,
 * no encryption. */
int clc_bdms_parse(struct ec2_req *r, const char *root, struct clc_bdms *out,
                   struct koala_error **err);
/* An image's mapping rows, in the caller's transaction / loaded. */
int clc_image_bdms_store(struct ec2_req *r, const char *image,
                         const struct clc_bdms *b, struct koala_error **err);
int clc_image_bdms_load(struct db *db, const char *image, struct clc_bdms *out,
                        struct koala_error **err);
/* <blockDeviceMapping> of DescribeImages. */
void clc_write_image_bdms(struct xml_writer *w, const struct clc_bdms *b);
/* A block-device-mapping.* filter against an image's mapping (any row). */
bool clc_image_bdm_filter(const struct clc_bdms *b, const struct ec2_filter *f);
/* RegisterImage without ImageLocation: the root is a snapshot. */
void clc_register_ebs_image(struct ec2_req *r, const char *name,
                            const char *desc, const char *root);
/* RunInstances: the volumes each instance gets (the image's EBS devices
 * with the request's mapping over them, or the request's alone), checked;
 * and their rows for one instance, in the reservation's transaction. */
int clc_run_bdms_plan(struct ec2_req *r, const struct clc_image_ref *image,
                      struct clc_bdms *plan, struct koala_error **err);
int clc_run_bdms_store(struct ec2_req *r, const struct clc_bdms *plan,
                       const char *instance, const char *zone,
                       struct koala_error **err);
/* The <volume>s (no export: the rounds bring it) of an instance's launch. */
int clc_write_launch_volumes(struct db *db, struct xml_writer *w,
                             const char *instance, struct koala_error **err);
void ec2_create_image(struct ec2_req *r);
/* Pending images: CreateImage's stop-snapshot-start, then available once
 * their snapshots are completed (or failed). */
void clc_ebs_images_sync(struct clc *clc, struct db *db);

#endif
