/* leases.c: the guests' DHCP leases as their sign of life.
 *
 * EC2's instance status check asks whether the guest's operating system
 * answers on its network.  Here the cluster's own DHCP server sees that:
 * a guest that took (or renewed) its lease since it last started has
 * brought its network up.  dnsmasq rewrites its lease file on every lease
 * it gives, and a lease's expiry moves each time the guest asks again, so
 * each poller round compares the expiries in the file (read only when the
 * file changed) with the ones recorded, and an instance whose expiry moved
 * while it runs is "passed" from then on, until it stops.  A guest with a
 * static address, or none, stays "initializing". */
#define LOG_MODULE "cc"
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"

const char *cc_reachability(const struct cc_instance *in)
{
    if (strcmp(in->state, "running") != 0)
        return NULL;
    return in->lease_ms > 0 ? "passed" : "initializing";
}

void leases_notice(struct cc *cc, struct db *db)
{
    if (cc->net.dhcp == NULL)
        return;
    struct dhcp_lease *ls = NULL;
    size_t n = 0;
    struct koala_error *e = NULL;
    if (dhcp_leases(cc->net.dhcp, &cc->leases_stamp, &ls, &n, &e) < 0) {
        log_warn("DHCP leases: %s", error_message(e));
        error_free(e);
        return;
    }
    int64_t now = time_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct cc_instance in;
        int known = store_instance_by_mac(db, ls[i].mac, &in, &e);
        error_clear(&e);
        if (known != 0 || in.lease_expiry == ls[i].expiry)
            continue; /* not ours, or nothing new: no write lock taken */
        /* Read again and written in one transaction: a report applied
         * meanwhile (cc_apply_report) is not overwritten with the state
         * read here. */
        if (db_begin(db, &e) < 0) {
            log_warn("DHCP leases: %s", error_message(e));
            error_clear(&e);
            cc->leases_stamp = 0; /* the rest: read again next round */
            break;
        }
        int found = store_instance_by_mac(db, ls[i].mac, &in, &e);
        if (found != 0 || in.lease_expiry == ls[i].expiry) {
            db_rollback(db);
            if (found < 0)
                log_warn("DHCP leases: %s", error_message(e));
            error_clear(&e);
            continue;
        }
        const char *before = cc_reachability(&in);
        in.lease_expiry = ls[i].expiry;
        /* A lease written as the guest went down says nothing of its
         * next start. */
        if (strcmp(in.state, "running") == 0 ||
            strcmp(in.state, "pending") == 0)
            in.lease_ms = now;
        if (store_instance_update(db, &in, &e) < 0) {
            db_rollback(db);
            log_warn("instance %s: %s", in.id, error_message(e));
            error_clear(&e);
            continue;
        }
        if (db_commit(db, &e) < 0) {
            log_warn("instance %s: %s", in.id, error_message(e));
            error_clear(&e);
            continue;
        }
        const char *after = cc_reachability(&in);
        if (before != after) {
            log_info("instance %s: DHCP lease taken: reachability %s", in.id,
                     after ? after : "-");
            notifier_push(cc->notify, &in);
        }
    }
    free(ls);
}
