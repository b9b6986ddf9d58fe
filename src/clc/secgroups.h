/* secgroups.h: security groups on the CLC (issue 10, docs/network.md): the
 * groups and their EC2 API (secgroups.c), their rules (sgrules.c) and the
 * actions on them (sgrules_api.c), the groups of instances
 * (sg_instances.c) and the network policy document pushed to each cluster
 * (netpolicy_push.c).
 *
 * The data (meta.c, schema_v7): security_groups (a group of one owner in
 * one VPC, names unique per VPC), sg_rules (one row per source or
 * destination: a CIDR or a group), instance_groups (an instance's 1 to 5
 * groups, in the order given), netpolicy (the cloud-wide version of the
 * policy documents, bumped by triggers) and netpolicy_clusters (the last
 * version each cluster acknowledged). */
#ifndef KOALA_CLC_SECGROUPS_H
#define KOALA_CLC_SECGROUPS_H

#include <jansson.h>

#include "clc.h"

#define SG_MAX_PER_INSTANCE 5
#define SG_MAX_RULES 60    /* per group and direction, as AWS's quota */
#define SG_MAX_GROUPS 2500 /* per VPC, as AWS's quota per region */
#define SG_MAX_TEXT 255    /* names and descriptions */

struct sg_group {
    char id[32];
    int64_t owner;
    char owner_number[13];
    char vpc[32];
    char name[SG_MAX_TEXT + 1];
    char description[SG_MAX_TEXT + 1];
};

struct sg_rule {
    char id[32];
    char group[32];
    char group_owner[13];
    bool egress;
    char proto[8]; /* tcp, udp, icmp, -1, or an IP protocol number */
    int from, to;  /* -1 where the protocol has no ports */
    char cidr[20]; /* one of cidr and ref_group */
    char ref_group[32];
    char ref_owner[13]; /* the referenced group's account number, name */
    char ref_name[SG_MAX_TEXT + 1];
    char ref_vpc[32];
    char description[SG_MAX_TEXT + 1];
};

/* ---- groups (secgroups.c) ---- */
/* The VPC's default group (members reach each other, all egress), made if
 * missing, inside the caller's transaction; the owner's instances in no
 * group (launched before) join it. */
int clc_sg_ensure_default(struct db *db, int64_t owner, const char *vpc,
                          struct koala_error **err);
/* The group of that id: of owner (owner < 0: of anyone).  0, or -1 with
 * InvalidGroupId.Malformed / InvalidGroup.NotFound. */
int clc_sg_get(struct db *db, int64_t owner, const char *id, struct sg_group *g,
               struct koala_error **err);
/* The owner's group of that name in vpc (NULL: the default VPC). */
int clc_sg_by_name(struct db *db, int64_t owner, const char *vpc,
                   const char *name, struct sg_group *g,
                   struct koala_error **err);
/* The group a request names by GroupId or GroupName (MissingParameter
 * without either). */
int clc_sg_from_request(struct ec2_req *r, struct sg_group *g,
                        struct koala_error **err);
/* Paging of Describe calls by id: MaxResults (5..1000) and NextToken. */
int clc_sg_page_args(struct ec2_req *r, const char *prefix, long long *max,
                     char after[32], struct koala_error **err);
void clc_sg_page_token(struct xml_writer *w, const char *last);

void ec2_create_security_group(struct ec2_req *r);
void ec2_delete_security_group(struct ec2_req *r);
void ec2_describe_security_groups(struct ec2_req *r);

/* ---- rules (sgrules.c) ---- */
/* A request's permissions (IpPermissions.N.*, or the flat IpProtocol,
 * FromPort, ToPort, CidrIp, SourceSecurityGroupName/OwnerId), normalized
 * as EC2 does, for group g; *out malloc'd. */
int sg_rules_parse(struct ec2_req *r, const struct sg_group *g, bool egress,
                   struct sg_rule **out, size_t *n, struct koala_error **err);
/* Loads the rules of one group (or all of the owner's groups with group
 * NULL, owner < 0: anyone's) after rule id `after` (NULL: all), ordered
 * by direction, protocol, ports, then creation (by_id: by id); *out
 * malloc'd. */
int sg_rules_load(struct db *db, int64_t owner, const char *group,
                  const char *after, bool by_id, struct sg_rule **out,
                  size_t *n, struct koala_error **err);
/* Inserts a rule (a new id), inside the caller's transaction. */
int sg_rule_insert(struct db *db, struct sg_rule *x, struct koala_error **err);
/* <ipPermissions> / <ipPermissionsEgress>: the rules of one direction,
 * those of one protocol and port range together, as EC2 shows them. */
void sg_write_permissions(struct xml_writer *w, const char *element,
                          const struct sg_rule *rules, size_t n, bool egress);
/* One <item> of a securityGroupRuleSet. */
int sg_write_rule(struct ec2_req *r, struct xml_writer *w,
                  const struct sg_rule *x, struct koala_error **err);
/* Does a rule match an ip-permission.* filter's last part (protocol,
 * from-port, to-port, cidr, group-id, group-name, user-id)? */
bool sg_rule_filter(const struct sg_rule *x, const char *what,
                    const struct ec2_filter *f);

/* Is there a parameter of that prefix ("IpPermissions.")? */
bool sg_any_param(const struct ec2_req *r, const char *prefix);
/* RulesPerSecurityGroupLimitExceeded if the group has more rules of that
 * direction than allowed (checked after the inserts). */
int sg_rules_check_limit(struct db *db, const char *group, bool egress,
                         struct koala_error **err);
/* ModifySecurityGroupRules' SecurityGroupRule.i.SecurityGroupRule: the new
 * content of rule x (its id and group stay). */
int sg_rule_modified(struct ec2_req *r, int i, struct sg_rule *x,
                     struct koala_error **err);

/* ---- the actions on rules (sgrules_api.c) ---- */
void ec2_authorize_security_group_ingress(struct ec2_req *r);
void ec2_authorize_security_group_egress(struct ec2_req *r);
void ec2_revoke_security_group_ingress(struct ec2_req *r);
void ec2_revoke_security_group_egress(struct ec2_req *r);
void ec2_describe_security_group_rules(struct ec2_req *r);
void ec2_modify_security_group_rules(struct ec2_req *r);

/* ---- the groups of instances (sg_instances.c) ---- */
struct clc_sg_set {
    char ids[SG_MAX_PER_INSTANCE][32];
    size_t n; /* 0: the VPC's default group */
};
/* RunInstances' SecurityGroupId.N and SecurityGroup.N (names in the
 * default VPC), each an existing group of the caller. */
int clc_sg_run_parse(struct ec2_req *r, struct clc_sg_set *s,
                     struct koala_error **err);
/* Records a new instance's groups (the default group of vpc if none),
 * which must be in vpc, inside the caller's transaction. */
int clc_sg_run_store(struct ec2_req *r, const struct clc_sg_set *s,
                     const char *vpc, const char *instance,
                     struct koala_error **err);
/* <element> with an item (groupId, groupName) per group of the instance. */
int clc_sg_write_instance_groups(struct ec2_req *r, struct xml_writer *w,
                                 const char *element, const char *instance,
                                 struct koala_error **err);
/* DescribeInstances' group filters (instance.group-id, group-name ...). */
bool clc_sg_is_instance_filter(const char *name);
bool clc_sg_instance_filter(struct ec2_req *r, const char *instance,
                            const struct ec2_filter *f);
/* The names of an instance's groups, one per line, into *names (malloc'd;
 * "" if none); of a reservation's first instance still at its launch's
 * metadata version with reservation set. */
int clc_sg_names(struct db *db, const char *instance, const char *reservation,
                 char **names, struct koala_error **err);
/* ModifyInstanceAttribute GroupId.N: replaces the instance's groups. */
int clc_sg_modify_instance(struct ec2_req *r, const char *instance,
                           const char *state, struct koala_error **err);

/* ---- the network policy push (netpolicy_push.c) ---- */
/* The policy document of one cluster (docs/network.md), read in one
 * snapshot; its "version" is the cloud's netpolicy version. */
json_t *clc_netpolicy_document(struct db *db, const char *cluster,
                               struct koala_error **err);
/* Sends SetNetworkPolicy to each cluster whose CC has not acknowledged the
 * current version; what fails waits for the next round. */
void clc_netpolicy_push(struct clc *clc, struct db *db);
/* The same, from the launch pool, off the caller's request. */
void clc_netpolicy_kick(struct clc *clc);

#endif
