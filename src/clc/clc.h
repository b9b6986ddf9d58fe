/* clc.h: koala-clc internals shared by its files: the daemon, the EC2
 * request, and the interfaces between the EC2 API plumbing (api.c,
 * params.c, reply.c), the operations (images.c, instances.c, describe.c,
 * keypairs.c, tags.c, zones.c), the data (meta.c, accounts.c), the
 * clusters (cluster.c) and the components' SOAP interface (soap_api.c).
 *
 * Threads: EC2 requests run on http_server's worker threads, each with a
 * database connection of its own from the pool.  Launches continue on the
 * launch pool after RunInstances answered.  A poller thread keeps the
 * components' states and reconciles instance states with the clusters.
 */
#ifndef KOALA_CLC_H
#define KOALA_CLC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "claims.h"
#include "db.h"
#include "error.h"
#include "http_client.h"
#include "http_server.h"
#include "keycache.h"
#include "kicker.h"
#include "sigv4.h"
#include "workpool.h"
#include "xml.h"

#define EC2_XMLNS "http://ec2.amazonaws.com/doc/2016-11-15/"
#define CLC_NS "urn:koala:clc"
#define CC_NS "urn:koala:cc"
#define EC2_MAX_BODY (1024 * 1024)

struct clc_options {
    const char *data_dir;
    const char *api_addr; /* EC2 Query API */
    uint16_t api_port;
    const char *api_tls_cert, *api_tls_key; /* HTTPS for users, optional */
    const char *soap_addr;                  /* components (mutual TLS) */
    uint16_t soap_port;
    const char *tls_cert, *tls_key, *ca; /* the CLC's component identity */
    const char *region;
    unsigned poll_interval_ms;
    unsigned pending_timeout_s;
    const char *default_vpc_cidr; /* NULL: 10.96.0.0/12 */
    bool tunnel_encryption;       /* seal the tunnels between clusters */
    unsigned address_quota;       /* elastic IPs per account; 0: 5 */
};

struct clc {
    struct clc_options opt;
    char *data_dir;
    char *region;
    struct db_pool *db;
    struct keycache *keys;
    struct http_server *api;
    struct http_server *soap;
    struct workpool *launcher;
    /* Reservations whose launch job is queued or under way (launch.c),
     * so that the poller resumes only the others. */
    struct claims *launching;
    /* Instances whose metadata push to their cluster is under way
     * (metadata_options.c): one at a time each, so pushes stay in order. */
    struct claims *md_pushing;
    struct http_client_tls tls; /* to CCs and Walrus (strings in opt) */
    /* The cloud's tunnel secret (data_dir/tunnel.key), when the tunnels
     * are encrypted (tunnels.c). */
    unsigned char tunnel_secret[32];
    pthread_t poller;
    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;
    bool stopping;
    bool poller_started;
    bool poll_mu_ready;
    /* Pushes of the clusters' public address maps, one at a time
     * (eip_push.c): each reads the map once it runs. */
    struct clc_kicker eip;
    /* EBS work towards the SCs and clusters (ebs_sync.c). */
    struct clc_kicker ebs;
    /* The cloud's default network: every default VPC's CIDR (vpc.c). */
    uint32_t vpc_net;
    int vpc_prefix;
};

struct soap_client;

/* ---- identities ---- */
struct account {
    int64_t id;
    char number[13];    /* 12 digits: EC2 ownerId */
    char canonical[65]; /* S3 canonical id */
    char name[128];
};

/* ---- an EC2 request ---- */
struct ec2_param {
    char *name;
    char *value;
    size_t seq; /* its place in the request (params are kept by name) */
};

/* EC2's bounds on a request's parameters (see params.c). */
#define EC2_MAX_PARAMS 20000
#define EC2_MAX_MEMBERS 1000 /* InstanceId.N, Tag.N ... */
#define EC2_MAX_FILTERS 50
#define EC2_MAX_FILTER_VALUES 200

struct ec2_req {
    struct clc *clc;
    struct http_request *http;
    char request_id[37];
    struct buf body;
    struct ec2_param *params;
    size_t n_params;
    const char *action;
    struct account who;
    struct db *db;
    bool dry_run;
    bool too_big;        /* the body passed EC2_MAX_BODY */
    bool sts;            /* signed for service "sts": STS's replies (sts.c) */
    char access_key[32]; /* the caller's, once authenticated */
};

/* params.c: EC2 query parameters ("InstanceId.1", "Filter.1.Value.2"). */
int ec2_parse_params(struct ec2_req *r, const char *text, size_t len,
                     struct koala_error **err);
const char *ec2_param(const struct ec2_req *r, const char *name);
/* name with printf-style numbering: ec2_paramf(r, "Filter.%d.Name", i). */
const char *ec2_paramf(const struct ec2_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The values of "prefix.1", "prefix.2" ... (stops at the first gap);
 * returns how many, *out points into the request (free only the array). */
size_t ec2_param_list(const struct ec2_req *r, const char *prefix,
                      const char ***out);
int ec2_param_int(const struct ec2_req *r, const char *name, long long def,
                  long long min, long long max, long long *out,
                  struct koala_error **err);
int ec2_param_bool(const struct ec2_req *r, const char *name, bool def,
                   bool *out, struct koala_error **err);
/* The ids a Describe call names (X.1, X.2 ...), and which of them it
 * found: each must exist, or the call fails with the first missing one. */
struct ec2_id_list {
    const char **v; /* into the request's parameters */
    size_t n;
    bool *found;
    size_t *order; /* positions in v, ordered by id (for lookups) */
};
int ec2_id_list_get(const struct ec2_req *r, const char *prefix,
                    struct ec2_id_list *l, struct koala_error **err);
/* Whether id is one of them (and marks it found). */
bool ec2_id_list_has(struct ec2_id_list *l, const char *id);
/* The first named id not found, or NULL. */
const char *ec2_id_list_missing(const struct ec2_id_list *l);
void ec2_id_list_free(struct ec2_id_list *l);
/* A required parameter, or MissingParameter. */
const char *ec2_required(const struct ec2_req *r, const char *name,
                         struct koala_error **err);

/* Filters ("Filter.N.Name" / "Filter.N.Value.M"). */
struct ec2_filter {
    const char *name;
    const char **values;
    size_t n_values;
};
struct ec2_filters {
    struct ec2_filter *f;
    size_t n;
};
int ec2_parse_filters(const struct ec2_req *r, const char *const *known,
                      struct ec2_filters *out, struct koala_error **err);
void ec2_filters_free(struct ec2_filters *fs);
/* Does value match one of the filter's values (EC2 wildcards * and ?)? */
bool ec2_filter_match(const struct ec2_filter *f, const char *value);

/* reply.c */
struct xml_writer *ec2_reply_start(struct ec2_req *r, const char *action);
void ec2_reply_finish(struct ec2_req *r, struct xml_writer *w);
/* Ends an operation: with err, drops w and answers err (freeing it); else
 * sends w, unless w is NULL (answered already, e.g. a dry run). */
void ec2_reply_end(struct ec2_req *r, struct xml_writer *w,
                   struct koala_error *err);
void ec2_reply_error(struct ec2_req *r, const struct koala_error *err);
/* Replies with err and frees it. */
void ec2_fail(struct ec2_req *r, struct koala_error *err);
/* DryRun: after the checks an operation makes, answers DryRunOperation
 * and returns true when the request was a dry run. */
bool ec2_dry_run(struct ec2_req *r);
int ec2_status_for(const char *code);
/* "2026-11-25T08:41:16.000Z" of a millisecond time. */
char *ec2_time(int64_t ms, char out[25]);

/* ---- data (meta.c) ---- */
/* The mark of an integer argument of clc_exec: CLC_INT "123" (or
 * snprintf(buf, n, CLC_INT "%lld", x)) binds the integer 123.  A byte
 * that valid UTF-8 never holds, so that no user's text ("#7 nightly")
 * is ever taken for a number. */
#define CLC_INT "\xff"
/* Runs sql binding the NULL-terminated string arguments in order (a string
 * CLC_INT "123" binds the integer 123).  A constraint violation is
 * EntityAlreadyExists (errnum EEXIST). */
int clc_exec(struct db *db, const char *sql, const char *what,
             struct koala_error **err, ...) __attribute__((sentinel));
/* Copies a text column (NULL as ""). */
void clc_col(char *dst, size_t size, sqlite3_stmt *st, int col);
extern const char *const clc_migrations[];
extern const size_t clc_n_migrations;
struct db_pool *clc_open_db(const char *data_dir, unsigned conns,
                            struct koala_error **err);
/* 0 found, 1 missing, -1 error. */
int clc_account_by_key(struct db *db, const char *access_key, char **secret,
                       struct account *a, struct koala_error **err);
int clc_account_by_name(struct db *db, const char *name, struct account *a,
                        struct koala_error **err);
int clc_account_by_id(struct db *db, int64_t id, struct account *a,
                      struct koala_error **err);
/* A new account with a user "admin" and one access key. */
int clc_account_create(struct db *db, const char *name, char access_key[21],
                       char secret[41], struct koala_error **err);
/* The secret of one of the account's active keys (for presigning on the
 * account's behalf); 0 / 1 none / -1. */
int clc_account_any_key(struct db *db, int64_t account, char key[21],
                        char secret[41], struct koala_error **err);

/* Services (components) registered with the cloud. */
struct service {
    char kind[16]; /* cluster, node, walrus, sc */
    char name[64];
    char partition[64]; /* the cluster of a node */
    char endpoint[256];
    char state[16]; /* ENABLED, NOTREADY, BROKEN */
    char message[256];
    int64_t last_seen_ms;
};
int clc_service_register(struct db *db, const struct service *s,
                         struct koala_error **err);
/* Calls fn for each registered service of kind (NULL: all). */
int clc_services_each(struct db *db, const char *kind,
                      int (*fn)(void *ctx, const struct service *s), void *ctx,
                      struct koala_error **err);
int clc_service_set_state(struct db *db, const char *kind, const char *name,
                          const char *state, const char *message,
                          struct koala_error **err);

/* Instance types. */
struct instance_type {
    char name[32];
    int cores;
    int memory_mb;
    int disk_gb;
};
int clc_instance_type(struct db *db, const char *name, struct instance_type *t,
                      struct koala_error **err);
/* Asks the cluster's CC how many instances of each type it holds at most
 * (max[i]) and can take now (avail[i]). */
int clc_cluster_capacity(struct clc *clc, struct db *db, const char *cluster,
                         const struct instance_type *types, size_t n,
                         long long *max, long long *avail,
                         struct koala_error **err);

/* ---- images (images.c) ---- */
struct clc_image_ref {
    char id[32];
    int64_t owner;
    char kind[16]; /* machine, kernel, ramdisk */
    char location[1100];
    uint64_t size;
    char sha256[65];
    char kernel_id[32];
    char ramdisk_id[32];
    char root_device_type[16]; /* instance-store | ebs */
    char root_device_name[32];
};
/* An available image the viewer may use (its own, a public one, or one
 * shared with it): 0, or -1 (InvalidAMIID.NotFound,
 * InvalidAMIID.Unavailable ...). */
int clc_image_get(struct db *db, const char *id, int64_t viewer,
                  struct clc_image_ref *ref, struct koala_error **err);
/* An AMI name (3 to 128 characters, or NULL) and description (255 UTF-8
 * characters at most, or NULL). */
int clc_image_name_check(const char *name, const char *desc,
                         struct koala_error **err);
int clc_check_boot_image(struct db *db, const char *id, const char *kind,
                         int64_t viewer, struct koala_error **err);

/* ---- the metadata service's options (metadata_options.c) ---- */
struct clc_md_options {
    char http_tokens[16];   /* optional | required */
    int hop_limit;          /* 1..64 */
    char http_endpoint[16]; /* enabled | disabled */
    char http_ipv6[16];     /* enabled | disabled */
    char tags[16];          /* enabled | disabled: instance tags served */
};

/* ---- instances (describe.c) ---- */
struct instance_row {
    char id[32];
    char reservation[32];
    int64_t owner;
    char owner_number[13];
    int launch_index;
    char image_id[32];
    char kernel_id[32];
    char ramdisk_id[32];
    char type[32];
    char key_name[256];
    char cluster[64];
    char node[64];
    char state[16];
    char reason_code[64];
    char reason_message[256];
    char transition_reason[256];
    char private_ip[48];
    char mac[24];
    char hypervisor[16];
    char client_token[68];
    int64_t launch_time;
    int64_t updated;
    char reachability[16];
    struct clc_md_options md;
    int64_t md_version, md_applied; /* applied once md_applied catches up */
    char subnet_id[32]; /* "" until the account's default VPC exists */
    char vpc_id[32];
    char public_ip[16];        /* "" without one (addresses.c) */
    bool public_elastic;       /* it is an elastic IP (else auto-assigned) */
    char root_device_type[16]; /* instance-store | ebs */
    char root_device_name[32];
};
int ec2_state_code(const char *state);
void clc_read_instance(sqlite3_stmt *st, struct instance_row *x);
/* The owner's instances (of one reservation, or all), in launch order;
 * *rows is malloc'd. */
int clc_load_instances(struct db *db, int64_t owner, const char *reservation,
                       struct instance_row **rows, size_t *n,
                       struct koala_error **err);
void ec2_write_state(struct xml_writer *w, const char *element,
                     const char *state);
int ec2_write_instance(struct ec2_req *r, struct xml_writer *w,
                       const struct instance_row *x, struct koala_error **err);
/* reservationId, ownerId, groupSet and instancesSet of rows. */
int ec2_write_reservation(struct ec2_req *r, struct xml_writer *w,
                          const struct instance_row *rows, size_t n,
                          struct koala_error **err);

/* ---- operations ---- */
void ec2_describe_regions(struct ec2_req *r);
void ec2_describe_availability_zones(struct ec2_req *r);
void ec2_describe_instance_types(struct ec2_req *r);
void ec2_create_key_pair(struct ec2_req *r);
void ec2_import_key_pair(struct ec2_req *r);
void ec2_describe_key_pairs(struct ec2_req *r);
void ec2_delete_key_pair(struct ec2_req *r);
void ec2_create_tags(struct ec2_req *r);
void ec2_delete_tags(struct ec2_req *r);
void ec2_describe_tags(struct ec2_req *r);
void ec2_register_image(struct ec2_req *r);
void ec2_describe_images(struct ec2_req *r);
void ec2_deregister_image(struct ec2_req *r);
/* image_attrs.c: an image's attributes and launch permissions. */
void ec2_describe_image_attribute(struct ec2_req *r);
void ec2_modify_image_attribute(struct ec2_req *r);
void ec2_reset_image_attribute(struct ec2_req *r);
/* Whether the image is shared with the account of that number: 1 or 0,
 * or -1. */
int clc_image_shared_with(struct db *db, const char *image_id,
                          const char *number, struct koala_error **err);
void ec2_run_instances(struct ec2_req *r);
void ec2_describe_instances(struct ec2_req *r);
/* Describe* paging over (time, id) order: a NextToken names the position
 * after the last item shown (id of that prefix: "vol-"); *after_time is -1
 * without a token; a token not made here is an error of that code. */
int ec2_token_parse(const char *token, const char *prefix, const char *code,
                    int64_t *after_time, char after_id[32],
                    struct koala_error **err);
void ec2_token_write(struct xml_writer *w, int64_t time, const char *id);
bool ec2_token_after(int64_t time, const char *id, int64_t after_time,
                     const char *after_id);
/* Describe* paging over instances in launch order: a NextToken names the
 * position after the last instance shown.  *after_time is -1 without a
 * token. */
int ec2_instance_token_parse(const char *token, int64_t *after_time,
                             char after_id[32], struct koala_error **err);
bool ec2_instance_after(const struct instance_row *x, int64_t after_time,
                        const char *after_id);
void ec2_instance_token_write(struct xml_writer *w,
                              const struct instance_row *last);
/* The instances a Describe call names (InstanceId.N) and its MaxResults
 * (0: none; 5 to 1000, and not with named instances). */
int ec2_instance_listing(const struct ec2_req *r, struct ec2_id_list *ids,
                         long long *max, struct koala_error **err);
/* InvalidInstanceID.NotFound into *err (unless set) for the first
 * instance named and not found. */
void ec2_instances_found(const struct ec2_id_list *ids,
                         struct koala_error **err);
/* Terminated instances stay visible for an hour, as on EC2. */
bool ec2_instance_visible(const struct instance_row *x, int64_t now_ms);
/* status.c */
void ec2_describe_instance_status(struct ec2_req *r);
/* attributes.c */
void ec2_describe_instance_attribute(struct ec2_req *r);
void ec2_modify_instance_attribute(struct ec2_req *r);
/* User data: base64 of at most CLC_MAX_USER_DATA bytes, else
 * InvalidParameterValue. */
#define CLC_MAX_USER_DATA (16 * 1024)
int clc_check_user_data(const char *b64, struct koala_error **err);
/* "stop" or "terminate", else InvalidParameterValue. */
int clc_check_shutdown_behavior(const char *value, struct koala_error **err);
void ec2_terminate_instances(struct ec2_req *r);
void ec2_reboot_instances(struct ec2_req *r);
void ec2_stop_instances(struct ec2_req *r);
void ec2_start_instances(struct ec2_req *r);
void ec2_get_console_output(struct ec2_req *r);

/* metadata_options.c: the instance metadata service's options (EC2's
 * MetadataOptions) and getting them and the user data to the cluster. */
void ec2_modify_instance_metadata_options(struct ec2_req *r);
/* AWS's defaults: optional, 1, enabled, disabled, disabled. */
void clc_md_defaults(struct clc_md_options *o);
/* RunInstances' MetadataOptions.*: the defaults and what is given, or
 * InvalidParameterValue. */
int clc_md_parse_run(const struct ec2_req *r, struct clc_md_options *o,
                     struct koala_error **err);
/* Stores a new instance's options (its first version, not yet applied),
 * inside the caller's transaction. */
int clc_md_store_new(struct db *db, const char *id,
                     const struct clc_md_options *o, struct koala_error **err);
/* The SQL columns of the options and versions, in the order
 * clc_md_read_cols reads them from col on. */
#define CLC_MD_COLS                                                            \
    "i.md_http_tokens, i.md_hop_limit, i.md_http_endpoint, i.md_http_ipv6,"    \
    " i.md_tags, i.md_version, i.md_applied"
#define CLC_MD_NCOLS 7
void clc_md_read_cols(sqlite3_stmt *st, int col, struct clc_md_options *o,
                      int64_t *version, int64_t *applied);
/* <metadataOptions> of DescribeInstances. */
void ec2_write_metadata_options(struct xml_writer *w,
                                const struct instance_row *x);
/* The value of a metadata-options.* filter, or NULL for other filters. */
const char *clc_md_filter_value(const struct instance_row *x, const char *f,
                                char *tmp, size_t size);
/* The CC's instanceMetadata element (cc.wsdl) named element: the region,
 * the groups (their names, one per line: clc_sg_names), the options and,
 * with_user_data, user_data (base64) or noUserData when it is NULL or
 * empty. */
void clc_md_write_cc(struct xml_writer *w, const char *element,
                     const char *region, const char *groups,
                     const struct clc_md_options *o, bool with_user_data,
                     const char *user_data);
/* A launch the cluster answered carried each instance's first version:
 * records it acknowledged for those of the answer still at it. */
void clc_md_launch_acked(struct db *db, const struct xml_node *answer);
/* Sends SetInstanceMetadata for every placed instance whose cluster has
 * not acknowledged its last change; what fails waits for the next round
 * (the poller's, or the next change's). */
void clc_md_push(struct clc *clc, struct db *db);
/* Sends each ENABLED cluster the list of its tunnel peers and records its
 * own (tunnels.c); from the poller. */
void clc_tunnels_push(struct clc *clc, struct db *db);
/* With opt.tunnel_encryption: reads data_dir/tunnel.key, made at first. */
int clc_tunnels_init(struct clc *clc, struct koala_error **err);
/* The same, from the launch pool, off the caller's request. */
void clc_md_kick(struct clc *clc);

/* Tags of a resource, as a <tagSet> (tags.c). */
int ec2_write_tag_set(struct ec2_req *r, struct xml_writer *w,
                      const char *resource_id, struct koala_error **err);
/* TagSpecification.N for resource_type applied to id, inside the caller's
 * transaction. */
int ec2_apply_tag_specs(struct ec2_req *r, const char *resource_type,
                        const char *id, struct koala_error **err);
int ec2_check_tag_specs(struct ec2_req *r, const char *const *types,
                        struct koala_error **err);
/* fn for each tag (key, value: "" or NULL) TagSpecification.N gives
 * resource_type; stops at fn's -1. */
typedef int (*ec2_tag_fn)(struct ec2_req *r, void *ctx, const char *key,
                          const char *value, struct koala_error **err);
int ec2_tag_specs_each(struct ec2_req *r, const char *resource_type,
                       ec2_tag_fn fn, void *ctx, struct koala_error **err);
/* A tag:KEY, tag-key or tag-value filter against a resource's tags. */
bool ec2_tag_filter(struct ec2_req *r, const char *resource_id,
                    const struct ec2_filter *f);
/* Is this filter one of the tag filters? */
static inline bool ec2_is_tag_filter(const char *name)
{
    return str_has_prefix(name, "tag:") || strcmp(name, "tag-key") == 0 ||
           strcmp(name, "tag-value") == 0;
}

/* ---- the default VPC and its subnets (vpc.c) ---- */
/* "10.96.0.0/12" into network and prefix (8..28, host bits zero). */
int clc_cidr_parse(const char *s, uint32_t *net, int *prefix,
                   struct koala_error **err);
/* Reads opt.default_vpc_cidr into clc->vpc_net / vpc_prefix. */
int clc_vpc_init(struct clc *clc, struct koala_error **err);
/* Makes the account's default VPC and its default subnet in every zone
 * if they are missing (one transaction, idempotent); its id into vpc_id
 * (may be NULL). */
int clc_vpc_ensure(struct clc *clc, struct db *db, int64_t owner, char *vpc_id,
                   struct koala_error **err);
struct clc_subnet {
    char id[32];
    char vpc[32];
    char zone[64];
    char cidr[20];
};
/* The owner's subnet of that id: 0, or -1 with InvalidSubnetID.NotFound
 * (another account's too). */
int clc_subnet_get(struct db *db, int64_t owner, const char *id,
                   struct clc_subnet *out, struct koala_error **err);
/* The owner's default subnet in zone (made if missing): 0 / -1. */
int clc_default_subnet(struct clc *clc, struct db *db, int64_t owner,
                       const char *zone, struct clc_subnet *out,
                       struct koala_error **err);
/* RunInstances' SubnetId (or NetworkInterface.1.SubnetId): the caller's
 * subnet, whose zone becomes *zone (InvalidParameterCombination if
 * Placement.AvailabilityZone names another); *given false without one. */
int clc_run_subnet(const struct ec2_req *r, const char **zone,
                   struct clc_subnet *out, bool *given,
                   struct koala_error **err);
void ec2_describe_vpcs(struct ec2_req *r);
void ec2_describe_subnets(struct ec2_req *r);
void ec2_describe_account_attributes(struct ec2_req *r);

/* ---- elastic and public IPs (addresses.c, eip_push.c) ---- */
void ec2_allocate_address(struct ec2_req *r);
void ec2_associate_address(struct ec2_req *r);
void ec2_disassociate_address(struct ec2_req *r);
void ec2_release_address(struct ec2_req *r);
void ec2_describe_addresses(struct ec2_req *r);
/* "ec2-198-51-100-5.<region>.compute.koala": the public DNS name of a
 * public address (docs/network.md); "" for "". */
void clc_public_dns(const char *ip, const char *region, char *out, size_t size);
/* Marks the cluster's map changed (inside the caller's transaction). */
int clc_eip_bump(struct db *db, const char *cluster, struct koala_error **err);
/* Asks the cluster's CC (client c) for its pool and the map version it
 * holds (DescribePublicAddresses): records the pool, and marks the map
 * for a push when the CC is behind.  Quiet about a CC without it. */
void clc_eip_poll(struct clc *clc, struct db *db, const char *cluster,
                  struct soap_client *c);
/* Sends SetPublicAddresses to every cluster whose CC has not acknowledged
 * its map's last version; what fails waits for the next round
 * (clc_eip_round; clc_eip_push is the poller's, through clc->eip). */
void clc_eip_round(struct clc *clc, struct db *db);
void clc_eip_push(struct clc *clc, struct db *db);
/* The same, from the launch pool, off the caller's request. */
void clc_eip_kick(struct clc *clc);
/* Gives each placed instance that wants a public address (RunInstances'
 * AssociatePublicIpAddress or its subnet's MapPublicIpOnLaunch) and has
 * none one of its cluster's pool, without an allocation id; what finds
 * the pool full waits for the next round. */
void clc_eip_autoassign(struct clc *clc, struct db *db);
/* The subnet's MapPublicIpOnLaunch. */
int clc_subnet_maps_public_ip(struct db *db, const char *subnet, bool *out,
                              struct koala_error **err);
void ec2_modify_subnet_attribute(struct ec2_req *r);

/* ---- STS on the EC2 endpoint (sts.c) ---- */
#define STS_XMLNS "https://sts.amazonaws.com/doc/2011-06-15/"
/* Runs an STS action (GetCallerIdentity; others are InvalidAction). */
void sts_handle(struct ec2_req *r);
/* An error in STS's <ErrorResponse> form. */
void sts_reply_error(struct ec2_req *r, const struct koala_error *err);

/* ---- clusters (cluster.c) ---- */
struct soap_client;
/* A SOAP client for the cluster's CC (NULL with *err if unknown). */
struct soap_client *clc_cc_client(struct clc *clc, struct db *db,
                                  const char *cluster,
                                  struct koala_error **err);
int clc_poller_start(struct clc *clc, struct koala_error **err);
void clc_poller_stop(struct clc *clc);
/* Applies instance states reported by a cluster (NotifyInstanceState or
 * polling): body is the element holding <instance> children. */
int clc_apply_instance_states(struct clc *clc, struct db *db,
                              const char *cluster,
                              const struct xml_node *parent, bool complete,
                              struct koala_error **err);
/* Sends the clusters the orders their instances still need (terminate,
 * stop, start: what the user wants and the cluster has not done). */
void clc_resend_orders(struct clc *clc, struct db *db);
/* The same, from the launch pool, off the caller's request. */
void clc_resend_orders_kick(struct clc *clc);
/* An instanceType element (name, cores, memoryMb, diskGb) for a CC. */
void clc_write_type(struct xml_writer *w, const struct instance_type *t);
/* Queues the launch of a reservation's instances that no cluster has
 * placed yet, unless it is queued or under way already (launch.c). */
void clc_queue_launch(struct clc *clc, const char *reservation);
/* Queues every launch not under way whose instances are still unplaced:
 * after a restart of the CLC, or while their cluster was unreachable. */
void clc_resume_launches(struct clc *clc, struct db *db);
/* Ends the instances of a reservation (or one instance) with a reason
 * from why (launch.c). */
int clc_fail_instances(struct db *db, const char *reservation,
                       const char *instance, const struct koala_error *why);

/* soap_api.c: the components' interface. */
extern const struct http_handler clc_soap_handler;
extern const struct http_handler clc_api_handler;

/* Walrus access for the CLC (walrus.c): reads the first bytes / the whole
 * of an object as its owner, and presigns GETs for NCs. */
int clc_walrus_endpoint(struct db *db, char *out, size_t size,
                        struct koala_error **err);
char *clc_presign(struct clc *clc, struct db *db, int64_t owner,
                  const char *location, long expires_s,
                  struct koala_error **err);
/* Reads a whole object as its owner: its first bytes (up to 4 KiB), size
 * and SHA-256 (hex). */
int clc_walrus_digest(struct clc *clc, struct db *db, int64_t owner,
                      const char *location, unsigned char head[4096],
                      size_t *head_len, uint64_t *size, char sha256[65],
                      struct koala_error **err);

#endif
