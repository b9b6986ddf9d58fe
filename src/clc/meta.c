/* meta.c: the CLC's database: its schema, and the accounts, access keys,
 * services (registered components) and instance types in it.  Images,
 * instances, key pairs and tags have their own files. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clc.h"
#include "id.h"

static const char schema_v1[] =
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  number TEXT NOT NULL UNIQUE,"
    "  canonical_id TEXT NOT NULL UNIQUE,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  account INTEGER NOT NULL REFERENCES accounts(id),"
    "  name TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(account, name));"
    "CREATE TABLE access_keys ("
    "  access_key TEXT PRIMARY KEY,"
    "  secret TEXT NOT NULL,"
    "  user INTEGER NOT NULL REFERENCES users(id),"
    "  active INTEGER NOT NULL DEFAULT 1,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE services ("
    "  kind TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  partition TEXT NOT NULL DEFAULT '',"
    "  endpoint TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'NOTREADY',"
    "  message TEXT NOT NULL DEFAULT '',"
    "  last_seen INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(kind, name));"
    "CREATE TABLE instance_types ("
    "  name TEXT PRIMARY KEY,"
    "  cores INTEGER NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  disk_gb INTEGER NOT NULL);"
    /* Eucalyptus' VM types, with memory sized for small test guests. */
    "INSERT INTO instance_types VALUES"
    "  ('t1.micro', 1, 128, 1), ('m1.small', 1, 256, 5),"
    "  ('m1.medium', 1, 512, 10), ('c1.medium', 2, 512, 10),"
    "  ('m1.large', 2, 1024, 20), ('m1.xlarge', 4, 2048, 20),"
    "  ('c1.xlarge', 4, 2048, 20);"
    "CREATE TABLE images ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  kind TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  location TEXT NOT NULL,"
    "  format TEXT NOT NULL DEFAULT '',"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  sha256 TEXT NOT NULL DEFAULT '',"
    "  kernel_id TEXT,"
    "  ramdisk_id TEXT,"
    "  architecture TEXT NOT NULL DEFAULT 'x86_64',"
    "  root_device_name TEXT NOT NULL DEFAULT '/dev/sda1',"
    "  state TEXT NOT NULL,"
    "  state_reason TEXT NOT NULL DEFAULT '',"
    "  public INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(owner, name));"
    "CREATE TABLE keypairs ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  name TEXT NOT NULL,"
    "  fingerprint TEXT NOT NULL,"
    "  public_key TEXT NOT NULL,"
    "  key_type TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(owner, name));"
    "CREATE TABLE reservations ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  client_token TEXT,"
    "  created INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX reservations_token ON reservations(owner,"
    "  client_token) WHERE client_token IS NOT NULL;"
    "CREATE TABLE instances ("
    "  id TEXT PRIMARY KEY,"
    "  reservation TEXT NOT NULL REFERENCES reservations(id),"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  launch_index INTEGER NOT NULL,"
    "  image_id TEXT NOT NULL,"
    "  kernel_id TEXT,"
    "  ramdisk_id TEXT,"
    "  instance_type TEXT NOT NULL,"
    "  key_name TEXT,"
    "  user_data TEXT,"
    "  cluster TEXT NOT NULL,"
    "  node TEXT NOT NULL DEFAULT '',"
    "  state TEXT NOT NULL,"
    "  reason_code TEXT NOT NULL DEFAULT '',"
    "  reason_message TEXT NOT NULL DEFAULT '',"
    "  transition_reason TEXT NOT NULL DEFAULT '',"
    "  private_ip TEXT NOT NULL DEFAULT '',"
    "  mac TEXT NOT NULL DEFAULT '',"
    "  hypervisor TEXT NOT NULL DEFAULT '',"
    /* What the user asked for (running, stopped, terminated) and what the
     * cluster last said: orders are resent while they differ. */
    "  desired TEXT NOT NULL DEFAULT 'running',"
    "  reported TEXT NOT NULL DEFAULT '',"
    "  client_token TEXT,"
    "  launch_time INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE INDEX instances_owner ON instances(owner, launch_time, id);"
    "CREATE INDEX instances_state ON instances(state);"
    "CREATE TABLE tags ("
    "  resource_id TEXT NOT NULL,"
    "  resource_type TEXT NOT NULL,"
    "  owner INTEGER NOT NULL,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY(resource_id, key));"
    "CREATE INDEX tags_owner ON tags(owner, key);";

/* What the cluster last said of a running guest's network (EC2's instance
 * status reachability: passed, initializing; '' unknown). */
static const char schema_v2[] =
    "ALTER TABLE instances ADD COLUMN reachability TEXT NOT NULL DEFAULT '';";

/* Instance attributes (attributes.c): what the guest powering itself off
 * does (stop, terminate), and termination protection. */
static const char schema_v3[] =
    "ALTER TABLE instances ADD COLUMN shutdown_behavior TEXT NOT NULL"
    "  DEFAULT 'stop';"
    "ALTER TABLE instances ADD COLUMN disable_api_termination INTEGER"
    "  NOT NULL DEFAULT 0;";

/* The burstable sizes today's clients default to (Ansible's ec2_instance:
 * t2.micro), with AWS's vCPUs and memory; like AWS's they have no
 * instance store (the root disk is the image's overlay). */
static const char schema_v4[] =
    "INSERT OR IGNORE INTO instance_types VALUES"
    "  ('t2.nano', 1, 512, 0), ('t2.micro', 1, 1024, 0),"
    "  ('t2.small', 1, 2048, 0), ('t2.medium', 2, 4096, 0),"
    "  ('t3.nano', 2, 512, 0), ('t3.micro', 2, 1024, 0),"
    "  ('t3.small', 2, 2048, 0), ('t3.medium', 2, 4096, 0);";

/* The instance metadata service's options of each instance (RunInstances
 * MetadataOptions, ModifyInstanceMetadataOptions: metadata_options.c), and
 * how far its cluster has them: md_version counts the changes the CC must
 * learn (options or user data), md_applied is the last one it acknowledged
 * (0, 0: an instance from before, launched with the defaults). */
static const char schema_v5[] =
    "ALTER TABLE instances ADD COLUMN md_http_tokens TEXT NOT NULL"
    "  DEFAULT 'optional';"
    "ALTER TABLE instances ADD COLUMN md_hop_limit INTEGER NOT NULL"
    "  DEFAULT 1;"
    "ALTER TABLE instances ADD COLUMN md_http_endpoint TEXT NOT NULL"
    "  DEFAULT 'enabled';"
    "ALTER TABLE instances ADD COLUMN md_http_ipv6 TEXT NOT NULL"
    "  DEFAULT 'disabled';"
    "ALTER TABLE instances ADD COLUMN md_tags TEXT NOT NULL"
    "  DEFAULT 'disabled';"
    "ALTER TABLE instances ADD COLUMN md_version INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE instances ADD COLUMN md_applied INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX instances_md ON instances(md_applied, md_version)"
    "  WHERE md_applied < md_version;";

/* The default VPC of each account and its default subnet per zone (vpc.c,
 * docs/network.md).  The partial unique indexes make their lazy creation
 * idempotent (INSERT OR IGNORE); zone_networks records the slice of the
 * cloud's default network each zone was given, once and for good.  An
 * instance's subnet_id is NULL until its account's default VPC exists,
 * which then claims it for its zone's default subnet. */
static const char schema_v6[] =
    "CREATE TABLE zone_networks ("
    "  zone TEXT PRIMARY KEY,"
    "  slot INTEGER NOT NULL UNIQUE,"
    "  cidr TEXT NOT NULL UNIQUE);"
    "CREATE TABLE vpcs ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  cidr TEXT NOT NULL,"
    "  cidr_assoc TEXT NOT NULL,"
    "  dhcp_options TEXT NOT NULL,"
    "  is_default INTEGER NOT NULL DEFAULT 0,"
    "  domain TEXT NOT NULL DEFAULT 'default',"
    "  state TEXT NOT NULL DEFAULT 'available',"
    "  created INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX vpcs_default ON vpcs(owner) WHERE is_default = 1;"
    "CREATE TABLE subnets ("
    "  id TEXT PRIMARY KEY,"
    "  vpc TEXT NOT NULL REFERENCES vpcs(id),"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  zone TEXT NOT NULL,"
    "  cidr TEXT NOT NULL,"
    "  default_for_az INTEGER NOT NULL DEFAULT 0,"
    "  map_public_ip INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL DEFAULT 'available',"
    "  created INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX subnets_default ON subnets(vpc, zone)"
    "  WHERE default_for_az = 1;"
    "CREATE INDEX subnets_owner ON subnets(owner, id);"
    "ALTER TABLE instances ADD COLUMN subnet_id TEXT;"
    "CREATE INDEX instances_subnet ON instances(subnet_id);";

/* Security groups (secgroups.c, sgrules.c, sg_instances.c) and the network
 * policy push (netpolicy_push.c, docs/network.md).  A group belongs to a
 * VPC; each default VPC has a group named "default".  A rule is one source
 * or destination (a CIDR or a group) of one protocol and port range, as
 * EC2's security group rules are; from_port/to_port are -1 where the
 * protocol has none.  netpolicy.version counts the changes of any cluster's
 * policy document: the triggers bump it in the transaction of the change
 * itself (a rule, a group, a membership, an instance's address, cluster or
 * end), and netpolicy_clusters records what each CC acknowledged.  The
 * default VPCs made before get their default group, and their instances
 * join it. */
#define SG_ID "'sg-' || substr(lower(hex(randomblob(9))), 1, 17)"
#define SGR_ID "'sgr-' || substr(lower(hex(randomblob(9))), 1, 17)"
#define NP_BUMP " BEGIN UPDATE netpolicy SET version = version + 1; END;"
static const char schema_v7[] =
    "CREATE TABLE security_groups ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  vpc TEXT NOT NULL REFERENCES vpcs(id),"
    "  name TEXT NOT NULL,"
    "  description TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE(vpc, name));"
    "CREATE INDEX security_groups_owner ON security_groups(owner, id);"
    "CREATE TABLE sg_rules ("
    "  id TEXT PRIMARY KEY,"
    "  grp TEXT NOT NULL REFERENCES security_groups(id),"
    "  egress INTEGER NOT NULL,"
    "  proto TEXT NOT NULL,"
    "  from_port INTEGER NOT NULL,"
    "  to_port INTEGER NOT NULL,"
    "  cidr TEXT,"
    "  ref_group TEXT REFERENCES security_groups(id),"
    "  description TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL,"
    "  CHECK ((cidr IS NULL) != (ref_group IS NULL)));"
    "CREATE UNIQUE INDEX sg_rules_key ON sg_rules(grp, egress, proto,"
    "  from_port, to_port, IFNULL(cidr, ''), IFNULL(ref_group, ''));"
    "CREATE INDEX sg_rules_ref ON sg_rules(ref_group)"
    "  WHERE ref_group IS NOT NULL;"
    "CREATE TABLE instance_groups ("
    "  instance TEXT NOT NULL REFERENCES instances(id),"
    "  grp TEXT NOT NULL REFERENCES security_groups(id),"
    "  position INTEGER NOT NULL,"
    "  PRIMARY KEY(instance, grp));"
    "CREATE INDEX instance_groups_grp ON instance_groups(grp);"
    "CREATE TABLE netpolicy ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  version INTEGER NOT NULL);"
    "INSERT INTO netpolicy VALUES (1, 1);"
    "CREATE TABLE netpolicy_clusters ("
    "  cluster TEXT PRIMARY KEY,"
    "  applied INTEGER NOT NULL DEFAULT 0);"
    "CREATE TRIGGER np_rule_add AFTER INSERT ON sg_rules" NP_BUMP
    "CREATE TRIGGER np_rule_del AFTER DELETE ON sg_rules" NP_BUMP
    "CREATE TRIGGER np_rule_mod AFTER UPDATE ON sg_rules" NP_BUMP
    "CREATE TRIGGER np_member_add AFTER INSERT ON instance_groups" NP_BUMP
    "CREATE TRIGGER np_member_del AFTER DELETE ON instance_groups" NP_BUMP
    "CREATE TRIGGER np_group_del AFTER DELETE ON security_groups" NP_BUMP
    "CREATE TRIGGER np_instance AFTER UPDATE OF state, private_ip, cluster"
    "  ON instances WHEN OLD.private_ip IS NOT NEW.private_ip OR"
    "  OLD.cluster IS NOT NEW.cluster OR"
    "  (OLD.state = 'terminated') != (NEW.state = 'terminated')" NP_BUMP
    "INSERT INTO security_groups(id, owner, vpc, name, description, created)"
    "  SELECT " SG_ID ", v.owner, v.id, 'default', 'default VPC security"
    " group', v.created FROM vpcs v;"
    "INSERT INTO sg_rules(id, grp, egress, proto, from_port, to_port, cidr,"
    "  ref_group, created) SELECT " SGR_ID ", g.id, 0, '-1', -1, -1, NULL,"
    "  g.id, g.created FROM security_groups g;"
    "INSERT INTO sg_rules(id, grp, egress, proto, from_port, to_port, cidr,"
    "  ref_group, created) SELECT " SGR_ID ", g.id, 1, '-1', -1, -1,"
    "  '0.0.0.0/0', NULL, g.created FROM security_groups g;"
    "INSERT INTO instance_groups(instance, grp, position)"
    "  SELECT i.id, g.id, 0 FROM instances i JOIN subnets s ON"
    "  s.id = i.subnet_id JOIN security_groups g ON g.vpc = s.vpc AND"
    "  g.name = 'default';";

/* What each cluster's router said of itself for the tunnels between
 * clusters (tunnels.c): its address between routers ('' none), the
 * subnet it hands out and its router address there. */
static const char schema_v8[] = "CREATE TABLE cluster_tunnels ("
                                "  zone TEXT PRIMARY KEY,"
                                "  address TEXT NOT NULL,"
                                "  subnet TEXT NOT NULL,"
                                "  router TEXT NOT NULL);";

/* Elastic and public IPs (addresses.c, eip_push.c, docs/network.md):
 * each cluster's pool as its CC reports it; the addresses handed out (an
 * elastic IP has an allocation id, an address auto-assigned at launch
 * none), each of one cluster; and per cluster the version of its map
 * (public -> private) and the last one its CC acknowledged: every change
 * bumps the version and the push sends the whole map until the CC has it.
 * An instance that ends loses its association (and an auto-assigned
 * address) in the same transaction, whichever path ends it; one that
 * stops loses an auto-assigned address (it gets a new one when it runs
 * again, as on EC2).  public_ip_wanted: RunInstances asked for a public
 * address (AssociatePublicIpAddress, or the subnet's MapPublicIpOnLaunch). */
static const char schema_v9[] =
    "CREATE TABLE public_pools ("
    "  cluster TEXT NOT NULL,"
    "  first INTEGER NOT NULL,"
    "  last INTEGER NOT NULL,"
    "  PRIMARY KEY (cluster, first));"
    "CREATE TABLE addresses ("
    "  public_ip TEXT PRIMARY KEY,"
    "  ip INTEGER NOT NULL UNIQUE,"
    "  cluster TEXT NOT NULL,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  allocation_id TEXT UNIQUE,"
    "  domain TEXT NOT NULL DEFAULT 'vpc',"
    "  instance_id TEXT UNIQUE,"
    "  association_id TEXT UNIQUE,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX addresses_owner ON addresses(owner, ip);"
    "CREATE TABLE eip_push ("
    "  cluster TEXT PRIMARY KEY,"
    "  version INTEGER NOT NULL DEFAULT 1,"
    "  applied INTEGER NOT NULL DEFAULT 0);"
    "ALTER TABLE instances ADD COLUMN public_ip_wanted INTEGER NOT NULL"
    "  DEFAULT 0;"
    "CREATE TRIGGER addresses_instance_stop AFTER UPDATE OF state ON"
    "  instances WHEN new.state = 'stopped' AND old.state != 'stopped' AND"
    "  EXISTS (SELECT 1 FROM addresses WHERE instance_id = new.id AND"
    "  allocation_id IS NULL) BEGIN"
    "  UPDATE eip_push SET version = version + 1 WHERE cluster IN"
    "    (SELECT cluster FROM addresses WHERE instance_id = new.id);"
    "  DELETE FROM addresses WHERE instance_id = new.id AND"
    "    allocation_id IS NULL;"
    "  END;"
    "CREATE TRIGGER addresses_instance_end AFTER UPDATE OF state ON instances"
    "  WHEN new.state = 'terminated' AND old.state != 'terminated' AND"
    "  EXISTS (SELECT 1 FROM addresses WHERE instance_id = new.id) BEGIN"
    "  INSERT OR IGNORE INTO eip_push (cluster) SELECT cluster FROM"
    "    addresses WHERE instance_id = new.id;"
    "  UPDATE eip_push SET version = version + 1 WHERE cluster IN"
    "    (SELECT cluster FROM addresses WHERE instance_id = new.id);"
    "  DELETE FROM addresses WHERE instance_id = new.id AND"
    "    allocation_id IS NULL;"
    "  UPDATE addresses SET instance_id = NULL, association_id = NULL"
    "    WHERE instance_id = new.id;"
    "  END;";

/* EBS (ebs.h, docs/storage.md).  sc_state is what the volume's SC last
 * said of it; sc_drops holds SC work that outlives its row (a deleted
 * snapshot's data, an export after its detach). */
static const char schema_v10[] =
    "CREATE TABLE volumes ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  zone TEXT NOT NULL,"
    "  size_gb INTEGER NOT NULL,"
    "  snapshot_id TEXT NOT NULL DEFAULT '',"
    "  type TEXT NOT NULL,"
    "  iops INTEGER NOT NULL DEFAULT 0,"
    "  throughput INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL,"
    "  sc_state TEXT NOT NULL DEFAULT '',"
    "  message TEXT NOT NULL DEFAULT '',"
    "  client_token TEXT,"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL,"
    "  UNIQUE(owner, client_token));"
    "CREATE INDEX volumes_owner ON volumes(owner, created, id);"
    "CREATE TABLE attachments ("
    "  volume_id TEXT PRIMARY KEY REFERENCES volumes(id),"
    "  instance_id TEXT NOT NULL,"
    "  device TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  node TEXT NOT NULL DEFAULT '',"
    "  force INTEGER NOT NULL DEFAULT 0,"
    "  delete_on_termination INTEGER NOT NULL DEFAULT 0,"
    "  attach_time INTEGER NOT NULL,"
    "  UNIQUE(instance_id, device));"
    "CREATE TABLE volume_mods ("
    "  volume_id TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL,"
    "  orig_size INTEGER NOT NULL, target_size INTEGER NOT NULL,"
    "  orig_type TEXT NOT NULL, target_type TEXT NOT NULL,"
    "  orig_iops INTEGER NOT NULL, target_iops INTEGER NOT NULL,"
    "  orig_throughput INTEGER NOT NULL,"
    "  target_throughput INTEGER NOT NULL,"
    "  message TEXT NOT NULL DEFAULT '',"
    "  start_time INTEGER NOT NULL,"
    "  end_time INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE snapshots ("
    "  id TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  volume_id TEXT NOT NULL,"
    "  volume_size_gb INTEGER NOT NULL,"
    "  zone TEXT NOT NULL,"
    "  sc_id TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  progress INTEGER NOT NULL DEFAULT 0,"
    "  sent INTEGER NOT NULL DEFAULT 0,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  data_size INTEGER NOT NULL DEFAULT 0,"
    "  message TEXT NOT NULL DEFAULT '',"
    "  start_time INTEGER NOT NULL);"
    "CREATE INDEX snapshots_owner ON snapshots(owner, start_time, id);"
    "CREATE TABLE snapshot_perms ("
    "  snapshot_id TEXT NOT NULL,"
    "  grantee TEXT NOT NULL,"
    "  PRIMARY KEY(snapshot_id, grantee));"
    "CREATE TABLE sc_drops ("
    "  id INTEGER PRIMARY KEY,"
    "  zone TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  target TEXT NOT NULL,"
    "  node TEXT NOT NULL DEFAULT '');"
    /* EBS-backed images: their block device mapping. */
    "CREATE TABLE image_block_devices ("
    "  image_id TEXT NOT NULL,"
    "  device TEXT NOT NULL,"
    "  snapshot_id TEXT NOT NULL DEFAULT '',"
    "  volume_size_gb INTEGER NOT NULL DEFAULT 0,"
    "  volume_type TEXT NOT NULL DEFAULT 'gp2',"
    "  delete_on_termination INTEGER NOT NULL DEFAULT 1,"
    "  PRIMARY KEY(image_id, device));"
    "CREATE INDEX image_block_devices_snapshot ON"
    "  image_block_devices(snapshot_id);";

/* EBS-backed images and instances (ebs_images.c): the root device of
 * each, the attachment an instance boots from, the mapping's other kinds
 * of rows, and CreateImage's stop-snapshot-start ('reboot': the instance
 * to start again once the snapshots are taken; 'phase': '' none,
 * 'stopping', 'started'). */
static const char schema_v11[] =
    "ALTER TABLE images ADD COLUMN root_device_type TEXT NOT NULL"
    "  DEFAULT 'instance-store';"
    "ALTER TABLE images ADD COLUMN reboot_instance TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE images ADD COLUMN reboot_phase TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE instances ADD COLUMN root_device_type TEXT NOT NULL"
    "  DEFAULT 'instance-store';"
    "ALTER TABLE instances ADD COLUMN root_device_name TEXT NOT NULL"
    "  DEFAULT '/dev/sda1';"
    "ALTER TABLE attachments ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE image_block_devices ADD COLUMN virtual_name TEXT NOT NULL"
    "  DEFAULT '';"
    "ALTER TABLE image_block_devices ADD COLUMN no_device INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE image_block_devices ADD COLUMN iops INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE image_block_devices ADD COLUMN throughput INTEGER NOT NULL"
    "  DEFAULT 0;"
    "ALTER TABLE image_block_devices ADD COLUMN position INTEGER NOT NULL"
    "  DEFAULT 0;"
    /* CreateImage's TagSpecifications for its snapshots, until they are
     * made (a stop first may take a while) */
    "CREATE TABLE image_snapshot_tags ("
    "  image_id TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  PRIMARY KEY(image_id, key));";

/* A volume records the SC snapshot it is filled from and that
 * snapshot's zone (any zone's: docs/storage.md), so that its SC can be
 * asked again, and the snapshot's data kept until it is filled, after
 * the snapshot rows that named the data are deleted. */
static const char schema_v12[] =
    "ALTER TABLE volumes ADD COLUMN sc_snapshot TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE volumes ADD COLUMN snapshot_zone TEXT NOT NULL DEFAULT '';"
    "UPDATE volumes SET"
    "  sc_snapshot = COALESCE((SELECT s.sc_id FROM snapshots s WHERE"
    "    s.id = volumes.snapshot_id), ''),"
    "  snapshot_zone = COALESCE((SELECT s.zone FROM snapshots s WHERE"
    "    s.id = volumes.snapshot_id), '')"
    "  WHERE snapshot_id != '';";

/* Image launch permissions (image_attrs.c): the accounts, by number, an
 * image is shared with (the group `all` is images.public); and the
 * instances of an image, for its lastLaunchedTime. */
static const char schema_v13[] =
    "CREATE TABLE image_launch_perms ("
    "  image_id TEXT NOT NULL,"
    "  account TEXT NOT NULL,"
    "  PRIMARY KEY(image_id, account));"
    "CREATE INDEX image_launch_perms_account ON"
    "  image_launch_perms(account, image_id);"
    "CREATE INDEX instances_image ON instances(image_id, launch_time);";

const char *const clc_migrations[] = {
    schema_v1,  schema_v2,  schema_v3, schema_v4, schema_v5,
    schema_v6,  schema_v7,  schema_v8, schema_v9, schema_v10,
    schema_v11, schema_v12, schema_v13};
const size_t clc_n_migrations = ARRAY_SIZE(clc_migrations);

struct db_pool *clc_open_db(const char *data_dir, unsigned conns,
                            struct koala_error **err)
{
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/clc.db", data_dir) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    return db_pool_new(path, clc_migrations, clc_n_migrations, conns, err);
}

void clc_col(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static void fill_account(sqlite3_stmt *st, int col, struct account *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, col);
    clc_col(a->number, sizeof(a->number), st, col + 1);
    clc_col(a->canonical, sizeof(a->canonical), st, col + 2);
    clc_col(a->name, sizeof(a->name), st, col + 3);
}

int clc_account_by_key(struct db *db, const char *access_key, char **secret,
                       struct account *a, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT k.secret, a.id, a.number, a.canonical_id, a.name"
                " FROM access_keys k JOIN users u ON u.id = k.user"
                " JOIN accounts a ON a.id = u.account"
                " WHERE k.access_key = ? AND k.active = 1",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, access_key, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up access key", err);
    if (rc == 0) {
        fill_account(st, 1, a);
        *secret = strdup((const char *)sqlite3_column_text(st, 0));
        if (*secret == NULL)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
    }
    db_stmt_done(st);
    return rc;
}

static int account_where(struct db *db, const char *sql, const char *text,
                         int64_t id, struct account *a,
                         struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    int rc = db_step_row(db, st, "looking up account", err);
    if (rc == 0)
        fill_account(st, 0, a);
    db_stmt_done(st);
    return rc;
}

int clc_account_by_name(struct db *db, const char *name, struct account *a,
                        struct koala_error **err)
{
    return account_where(db,
                         "SELECT id, number, canonical_id, name FROM accounts"
                         " WHERE name = ?",
                         name, 0, a, err);
}

int clc_account_by_id(struct db *db, int64_t id, struct account *a,
                      struct koala_error **err)
{
    return account_where(db,
                         "SELECT id, number, canonical_id, name FROM accounts"
                         " WHERE id = ?",
                         NULL, id, a, err);
}

/* Access keys look like AWS's: "AKIA" + 16 of [A-Z2-7]; secrets 40 of the
 * base64 alphabet. */
static int make_keys(char key[21], char secret[41])
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char rnd[56];
    if (id_random_bytes(rnd, sizeof(rnd)) < 0)
        return -1;
    memcpy(key, "AKIA", 4);
    for (int i = 0; i < 16; i++)
        key[4 + i] = b32[rnd[i] & 31];
    key[20] = '\0';
    for (int i = 0; i < 40; i++)
        secret[i] = b64[rnd[16 + i] & 63];
    secret[40] = '\0';
    return 0;
}

int clc_exec(struct db *db, const char *sql, const char *what,
             struct koala_error **err, ...)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    va_list ap;
    va_start(ap, err);
    int i = 1;
    for (const char *v = va_arg(ap, const char *); v;
         v = va_arg(ap, const char *), i++) {
        if (v[0] == CLC_INT[0])
            sqlite3_bind_int64(st, i, strtoll(v + 1, NULL, 10));
        else
            sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    }
    va_end(ap);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc == SQLITE_CONSTRAINT)
        return error_set(err, EEXIST, "EntityAlreadyExists", "%s: exists",
                         what);
    return rc == SQLITE_DONE ? 0 : db_error(db, what, err);
}

int clc_account_create(struct db *db, const char *name, char access_key[21],
                       char secret[41], struct koala_error **err)
{
    char number[13], canonical[65];
    unsigned char rnd[6];
    if (make_keys(access_key, secret) < 0 || id_random_hex(canonical, 32) < 0 ||
        id_random_bytes(rnd, sizeof(rnd)) < 0)
        return error_set_errno(err, "getrandom");
    /* Account numbers are 12 decimal digits, as AWS's. */
    uint64_t v = 0;
    for (int i = 0; i < 6; i++)
        v = v << 8 | rnd[i];
    snprintf(number, sizeof(number), "%012llu",
             (unsigned long long)(v % 1000000000000ull));
    char now[24], acct[24], user[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time(NULL));
    if (db_begin(db, err) < 0)
        return -1;
    if (clc_exec(db,
                 "INSERT INTO accounts(name, number, canonical_id, created)"
                 " VALUES(?,?,?,?)",
                 "account", err, name, number, canonical, now, NULL) < 0)
        goto fail;
    snprintf(acct, sizeof(acct), CLC_INT "%lld",
             (long long)sqlite3_last_insert_rowid(db_handle(db)));
    if (clc_exec(db, "INSERT INTO users(account, name, created) VALUES(?,?,?)",
                 "user", err, acct, "admin", now, NULL) < 0)
        goto fail;
    snprintf(user, sizeof(user), CLC_INT "%lld",
             (long long)sqlite3_last_insert_rowid(db_handle(db)));
    if (clc_exec(db,
                 "INSERT INTO access_keys(access_key, secret, user, created)"
                 " VALUES(?,?,?,?)",
                 "access key", err, access_key, secret, user, now, NULL) < 0)
        goto fail;
    return db_commit(db, err);
fail:
    db_rollback(db);
    if (err && *err && (*err)->errnum == EEXIST)
        error_prefix(*err, "account '%s'", name);
    return -1;
}

int clc_account_any_key(struct db *db, int64_t account, char key[21],
                        char secret[41], struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT k.access_key, k.secret FROM access_keys k"
                " JOIN users u ON u.id = k.user WHERE u.account = ? AND"
                " k.active = 1 ORDER BY k.created LIMIT 1",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, account);
    int rc = db_step_row(db, st, "looking up an access key", err);
    if (rc == 0) {
        clc_col(key, 21, st, 0);
        clc_col(secret, 41, st, 1);
    }
    db_stmt_done(st);
    return rc;
}

/* ---- services ---- */

int clc_service_register(struct db *db, const struct service *s,
                         struct koala_error **err)
{
    return clc_exec(db,
                    "INSERT INTO services(kind, name, partition, endpoint)"
                    " VALUES(?,?,?,?) ON CONFLICT(kind, name) DO UPDATE"
                    " SET partition = excluded.partition,"
                    " endpoint = excluded.endpoint",
                    "registering service", err, s->kind, s->name, s->partition,
                    s->endpoint, NULL);
}

int clc_services_each(struct db *db, const char *kind,
                      int (*fn)(void *ctx, const struct service *s), void *ctx,
                      struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT kind, name, partition, endpoint, state, message,"
                " last_seen FROM services WHERE ?1 IS NULL OR kind = ?1"
                " ORDER BY kind, name",
                err);
    if (st == NULL)
        return -1;
    if (kind)
        sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    int rc;
    struct service *all = NULL;
    size_t n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct service *na = realloc(all, (n + 1) * sizeof(*na));
        if (na == NULL)
            break;
        all = na;
        struct service *s = &all[n++];
        clc_col(s->kind, sizeof(s->kind), st, 0);
        clc_col(s->name, sizeof(s->name), st, 1);
        clc_col(s->partition, sizeof(s->partition), st, 2);
        clc_col(s->endpoint, sizeof(s->endpoint), st, 3);
        clc_col(s->state, sizeof(s->state), st, 4);
        clc_col(s->message, sizeof(s->message), st, 5);
        s->last_seen_ms = sqlite3_column_int64(st, 6);
    }
    db_stmt_done(st);
    int out = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        out = db_error(db, "listing services", err);
    else if (rc == SQLITE_ROW)
        out = error_set(err, ENOMEM, NULL, "out of memory");
    /* The statement is finished before the callbacks run: they may use
     * the connection themselves. */
    for (size_t i = 0; out == 0 && i < n; i++)
        if (fn(ctx, &all[i]) != 0)
            break;
    free(all);
    return out;
}

int clc_service_set_state(struct db *db, const char *kind, const char *name,
                          const char *state, const char *message,
                          struct koala_error **err)
{
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    const char *msg = message ? message : "";
    if (strcmp(state, "ENABLED") == 0)
        return clc_exec(db,
                        "UPDATE services SET state = ?, message = ?,"
                        " last_seen = ? WHERE kind = ? AND name = ?",
                        "updating service", err, state, msg, now, kind, name,
                        NULL);
    return clc_exec(db,
                    "UPDATE services SET state = ?, message = ?"
                    " WHERE kind = ? AND name = ?",
                    "updating service", err, state, msg, kind, name, NULL);
}

int clc_instance_type(struct db *db, const char *name, struct instance_type *t,
                      struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT name, cores, memory_mb, disk_gb FROM instance_types"
                " WHERE name = ?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up instance type", err);
    if (rc == 0) {
        clc_col(t->name, sizeof(t->name), st, 0);
        t->cores = sqlite3_column_int(st, 1);
        t->memory_mb = sqlite3_column_int(st, 2);
        t->disk_gb = sqlite3_column_int(st, 3);
    }
    db_stmt_done(st);
    return rc;
}
