/* vol_modify.c: ModifyVolume and DescribeVolumesModifications (Elastic
 * Volumes).  A modification is a row per volume (its latest): modifying
 * while the SC grows the volume and the node of its attachment gives the
 * guest the new size (ebs_sync.c), then completed (or failed, the volume
 * unchanged).  Sizes only grow, as on EC2; a volume attached to a running
 * instance grows online (the SC resizes its export, the node's QEMU opens
 * it again and tells the guest, which sees the new size by itself).  One
 * modification at a time per volume (IncorrectModificationState).
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"
#include "id.h"
#include "log.h"

struct mod_row {
    char volume_id[32];
    char state[16];
    int64_t orig_size, target_size;
    char orig_type[16], target_type[16];
    int64_t orig_iops, target_iops, orig_tput, target_tput;
    char message[256];
    int64_t start_time, end_time;
};

#define MOD_COLS                                                               \
    "m.volume_id, m.state, m.orig_size, m.target_size, m.orig_type,"           \
    " m.target_type, m.orig_iops, m.target_iops, m.orig_throughput,"           \
    " m.target_throughput, m.message, m.start_time, m.end_time"

static void read_mod(sqlite3_stmt *st, struct mod_row *x)
{
    memset(x, 0, sizeof(*x));
    clc_col(x->volume_id, sizeof(x->volume_id), st, 0);
    clc_col(x->state, sizeof(x->state), st, 1);
    x->orig_size = sqlite3_column_int64(st, 2);
    x->target_size = sqlite3_column_int64(st, 3);
    clc_col(x->orig_type, sizeof(x->orig_type), st, 4);
    clc_col(x->target_type, sizeof(x->target_type), st, 5);
    x->orig_iops = sqlite3_column_int64(st, 6);
    x->target_iops = sqlite3_column_int64(st, 7);
    x->orig_tput = sqlite3_column_int64(st, 8);
    x->target_tput = sqlite3_column_int64(st, 9);
    clc_col(x->message, sizeof(x->message), st, 10);
    x->start_time = sqlite3_column_int64(st, 11);
    x->end_time = sqlite3_column_int64(st, 12);
}

static void write_mod(struct xml_writer *w, const struct mod_row *m)
{
    char t[25];
    xml_text_element(w, "volumeId", m->volume_id);
    xml_text_element(w, "modificationState", m->state);
    if (*m->message)
        xml_text_element(w, "statusMessage", m->message);
    xml_text_elementf(w, "targetSize", "%lld", (long long)m->target_size);
    if (m->target_iops)
        xml_text_elementf(w, "targetIops", "%lld", (long long)m->target_iops);
    xml_text_element(w, "targetVolumeType", m->target_type);
    if (m->target_tput)
        xml_text_elementf(w, "targetThroughput", "%lld",
                          (long long)m->target_tput);
    xml_bool_element(w, "targetMultiAttachEnabled", false);
    xml_text_elementf(w, "originalSize", "%lld", (long long)m->orig_size);
    if (m->orig_iops)
        xml_text_elementf(w, "originalIops", "%lld", (long long)m->orig_iops);
    xml_text_element(w, "originalVolumeType", m->orig_type);
    if (m->orig_tput)
        xml_text_elementf(w, "originalThroughput", "%lld",
                          (long long)m->orig_tput);
    xml_bool_element(w, "originalMultiAttachEnabled", false);
    xml_text_elementf(w, "progress", "%d",
                      strcmp(m->state, "completed") == 0 ? 100 : 0);
    xml_text_element(w, "startTime", ec2_time(m->start_time, t));
    if (m->end_time)
        xml_text_element(w, "endTime", ec2_time(m->end_time, t));
}

void ec2_modify_volume(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct volume_row v;
    long long size = 0, iops = 0, tput = 0;
    bool multi = false;
    if (clc_volume_get(r->db, r->who.id, ec2_param(r, "VolumeId"), &v, &err) <
            0 ||
        ec2_param_int(r, "Size", 0, 0, 1LL << 40, &size, &err) < 0 ||
        ec2_param_int(r, "Iops", 0, 0, 1LL << 30, &iops, &err) < 0 ||
        ec2_param_int(r, "Throughput", 0, 0, 1LL << 30, &tput, &err) < 0 ||
        ec2_param_bool(r, "MultiAttachEnabled", false, &multi, &err) < 0)
        return ec2_fail(r, err);
    const char *type = ec2_param(r, "VolumeType");
    if (multi) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "Multi-Attach is not supported by this cloud");
        return ec2_fail(r, err);
    }
    if (!ec2_param(r, "Size") && !type && !iops && !tput) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain at least one of size, "
                  "volumeType, iops or throughput");
        return ec2_fail(r, err);
    }
    if (strcmp(v.state, "available") != 0 && strcmp(v.state, "in-use") != 0) {
        error_set(&err, EINVAL, "IncorrectState",
                  "The volume '%s' is '%s'; only available or in-use "
                  "volumes can be modified.",
                  v.id, v.state);
        return ec2_fail(r, err);
    }
    struct mod_row m = {0};
    snprintf(m.volume_id, sizeof(m.volume_id), "%s", v.id);
    m.orig_size = v.size_gb;
    m.target_size = ec2_param(r, "Size") ? size : v.size_gb;
    snprintf(m.orig_type, sizeof(m.orig_type), "%s", v.type);
    snprintf(m.target_type, sizeof(m.target_type), "%s", type ? type : v.type);
    m.orig_iops = v.iops;
    /* A new type drops settings the old one had and the new one lacks. */
    m.target_iops = iops ? iops : type && strcmp(type, v.type) ? 0 : v.iops;
    m.orig_tput = v.throughput;
    m.target_tput = tput ? tput : type && strcmp(type, v.type) ? 0
                                                               : v.throughput;
    if (m.target_size < m.orig_size) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "New size cannot be smaller than existing size");
        return ec2_fail(r, err);
    }
    if (clc_volume_check_spec(m.target_type, m.target_size, m.target_iops,
                              m.target_tput, &err) < 0)
        return ec2_fail(r, err);
    sqlite3_stmt *st = db_stmt(
        r->db, "SELECT state FROM volume_mods WHERE volume_id = ?", &err);
    if (st == NULL)
        return ec2_fail(r, err);
    sqlite3_bind_text(st, 1, v.id, -1, SQLITE_STATIC);
    bool busy = sqlite3_step(st) == SQLITE_ROW &&
                (strcmp((const char *)sqlite3_column_text(st, 0),
                        "modifying") == 0 ||
                 strcmp((const char *)sqlite3_column_text(st, 0),
                        "optimizing") == 0);
    db_stmt_done(st);
    if (busy) {
        error_set(&err, EINVAL, "IncorrectModificationState",
                  "Volume %s is already being modified.", v.id);
        return ec2_fail(r, err);
    }
    if (ec2_dry_run(r))
        return;
    m.start_time = time_now_ms();
    snprintf(m.state, sizeof(m.state), "modifying");
    char os[24], ts[24], oi[24], ti[24], ot[24], tt[24], now[24];
    snprintf(os, sizeof(os), CLC_INT "%lld", (long long)m.orig_size);
    snprintf(ts, sizeof(ts), CLC_INT "%lld", (long long)m.target_size);
    snprintf(oi, sizeof(oi), CLC_INT "%lld", (long long)m.orig_iops);
    snprintf(ti, sizeof(ti), CLC_INT "%lld", (long long)m.target_iops);
    snprintf(ot, sizeof(ot), CLC_INT "%lld", (long long)m.orig_tput);
    snprintf(tt, sizeof(tt), CLC_INT "%lld", (long long)m.target_tput);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)m.start_time);
    if (clc_exec(r->db,
                 "INSERT OR REPLACE INTO volume_mods (volume_id, state,"
                 " orig_size, target_size, orig_type, target_type, orig_iops,"
                 " target_iops, orig_throughput, target_throughput,"
                 " start_time) VALUES (?,'modifying',?,?,?,?,?,?,?,?,?)",
                 "recording the modification", &err, v.id, os, ts, m.orig_type,
                 m.target_type, oi, ti, ot, tt, now, NULL) < 0)
        return ec2_fail(r, err);
    log_info("account %lld: modifying %s to %lld GiB %s", (long long)r->who.id,
             v.id, (long long)m.target_size, m.target_type);
    struct xml_writer *w = ec2_reply_start(r, "ModifyVolume");
    xml_start(w, "volumeModification");
    write_mod(w, &m);
    xml_end(w);
    ec2_reply_finish(r, w);
    clc_ebs_kick(r->clc);
}

static const char *mod_filter(const struct mod_row *m, const char *f,
                              char *tmp, size_t size)
{
    if (strcmp(f, "target-size") == 0 || strcmp(f, "original-size") == 0) {
        snprintf(tmp, size, "%lld",
                 (long long)(f[0] == 't' ? m->target_size : m->orig_size));
        return tmp;
    }
    if (strcmp(f, "start-time") == 0)
        return ec2_time(m->start_time, tmp);
    return strcmp(f, "volume-id") == 0              ? m->volume_id
           : strcmp(f, "modification-state") == 0   ? m->state
           : strcmp(f, "target-volume-type") == 0   ? m->target_type
           : strcmp(f, "original-volume-type") == 0 ? m->orig_type
                                                    : "";
}

void ec2_describe_volumes_modifications(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {
        "modification-state", "original-size", "original-volume-type",
        "start-time",         "target-size",   "target-volume-type",
        "volume-id",          NULL};
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    struct ec2_id_list ids = {0};
    struct xml_writer *w = NULL;
    long long max = 0;
    int64_t after_time;
    char after_id[32];
    if (ec2_id_list_get(r, "VolumeId", &ids, &err) < 0 ||
        ec2_param_int(r, "MaxResults", 0, 1, 500, &max, &err) < 0 ||
        ec2_token_parse(ec2_param(r, "NextToken"), "vol-",
                        "InvalidNextToken", &after_time,
                        after_id, &err) < 0 ||
        ec2_dry_run(r))
        goto out;
    /* Each named volume must be the caller's. */
    for (size_t i = 0; i < ids.n && err == NULL; i++) {
        struct volume_row v;
        clc_volume_get(r->db, r->who.id, ids.v[i], &v, &err);
    }
    if (err)
        goto out;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT " MOD_COLS " FROM volume_mods m JOIN"
                               " volumes v ON v.id = m.volume_id WHERE"
                               " v.owner = ? ORDER BY m.start_time,"
                               " m.volume_id",
                               &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    w = ec2_reply_start(r, "DescribeVolumesModifications");
    xml_start(w, "volumeModificationSet");
    long long shown = 0;
    struct mod_row last = {0};
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct mod_row m;
        read_mod(st, &m);
        bool wanted = ids.n == 0 || ec2_id_list_has(&ids, m.volume_id);
        for (size_t j = 0; wanted && j < fs.n; j++) {
            char tmp[32];
            wanted = ec2_filter_match(
                &fs.f[j], mod_filter(&m, fs.f[j].name, tmp, sizeof(tmp)));
        }
        if (!wanted ||
            !ec2_token_after(m.start_time, m.volume_id, after_time, after_id))
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        xml_start(w, "item");
        write_mod(w, &m);
        xml_end(w);
        last = m;
        shown++;
    }
    db_stmt_done(st);
    xml_end(w);
    if (more)
        ec2_token_write(w, last.start_time, last.volume_id);
out:
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}
