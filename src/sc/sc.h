/* sc.h: koala-sc internals shared by its files: the daemon and its options
 * (sc.c), the SOAP routing (server.c), the volume and export operations
 * (ops.c), the database (state.c), the qemu-storage-daemon children
 * (qsd.c), snapshots (snapshot.c, uploader.c, catalog.c), volumes from
 * snapshots (restore.c) and Walrus (s3.c).  The design is docs/storage.md.
 *
 * Locking rules:
 *   sc->lock    the table of running QSDs (sc->active) and every change of
 *               a volume's QSD, export or bitmaps.  Held across the QMP
 *               calls and process starts of one operation (milliseconds to
 *               a fraction of a second), never across a transfer to or
 *               from Walrus.
 * The database is the truth for volumes, exports and snapshots: each
 * thread takes its own connection from sc->db and changes rows in
 * BEGIN IMMEDIATE transactions, before the work on disk starts.
 */
#ifndef KOALA_SC_H
#define KOALA_SC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "http_server.h"
#include "store.h"
#include "workpool.h"
#include "xml.h"

#define SC_NS "urn:koala:sc"
#define SC_MAX_BODY (1u << 20)
#define SC_HTTP_WORKERS 16
#define SC_GIB (1024ull * 1024 * 1024)
#define SC_MAX_VOLUME_BYTES (16384ull * SC_GIB) /* EC2's gp2/gp3 limit */
#define SC_BLOCK_SIZE (512u * 1024)             /* snapshot blocks */
#define SC_BUCKET "koala-snapshots"

/* ---- options (sc.c) ---- */
enum sc_transport { SC_EXPORT_UNIX = 0, SC_EXPORT_TCP };

struct sc_options {
    char *listen_addr;
    uint16_t port;
    char *data_dir;
    char *name; /* the SC's registered name: its CN is koala-sc-NAME */
    char *zone; /* its availability zone (cluster) */
    char *tls_cert, *tls_key, *ca;
    uint64_t capacity_bytes;
    enum sc_transport transport;
    char *export_dir;     /* unix sockets [data_dir/exports] */
    char *export_address; /* tcp: bound and advertised [listen's host] */
    char *qsd;            /* qemu-storage-daemon program */
    char *qemu_img;       /* qemu-img program */
    char *walrus_endpoint;    /* "http://127.0.0.1:8773" or NULL */
    char *walrus_credentials; /* file: AWS_ACCESS_KEY_ID=, ..SECRET.. */
    char *region;
    unsigned snapshot_workers;
};

int sc_options_load(const struct config *cfg, struct sc_options *opt,
                    struct koala_error **err);
void sc_options_clear(struct sc_options *opt);

/* ---- a running qemu-storage-daemon (qsd.c) ---- */
struct qmp;
struct sc_active {
    char volume_id[32];
    pid_t pid;
    struct qmp *qmp;
    int listen_fd; /* tcp: the NBD listening socket it inherited, or -1 */
    uint16_t port; /* its port */
    bool exported; /* the NBD server and export are set up */
    char node[64]; /* the node let in */
    int users;     /* snapshots and other jobs holding it */
    struct sc_active *next;
};

/* ---- the daemon ---- */
struct sc_s3;
struct sc {
    struct sc_options opt;
    struct db_pool *db;
    struct http_server *http;
    struct sc_store *store;
    struct sc_s3 *s3; /* NULL: no Walrus configured (no snapshots) */
    struct workpool *jobs;
    pthread_mutex_t lock;
    /* held by block garbage collection, and while a snapshot's pending
     * row is written: no block is collected that a pending snapshot may
     * use (snapshot.c) */
    pthread_mutex_t gc_lock;
    struct sc_active *active;
    char tls_dir[4096]; /* the QSDs' tls-creds-x509 directory */
    /* the process starter and supervisor thread (qsd.c) */
    pthread_t super;
    bool super_started;
    pthread_mutex_t spawn_lock;
    pthread_cond_t spawn_cond;
    struct sc_spawn *spawn_queue;
    bool stopping;  /* the supervisor ends (under spawn_lock) */
    bool jobs_stop; /* background jobs give up (under lock) */
};

struct sc *sc_new(const struct sc_options *opt, struct koala_error **err);
void sc_free(struct sc *sc);

/* ---- one SOAP request (server.c) ---- */
struct sc_req {
    struct sc *sc;
    struct http_request *http;
    struct buf body;
    bool too_big;
    struct xml_doc *doc;
    const struct xml_node *op;
    struct db *db;
};

extern const struct http_handler sc_http_handler;
void sc_fail(struct sc_req *r, struct koala_error *err); /* takes err */
void sc_reply(struct sc_req *r, struct xml_writer *w);
struct db *sc_req_db(struct sc_req *r, struct koala_error **err);
/* The text of child `name`, or NULL with MissingParameter. */
char *sc_req_text(struct sc_req *r, const char *name, struct koala_error **err);

/* ---- the database (state.c) ---- */
extern const char *const sc_migrations[];
extern const size_t sc_n_migrations;

struct sc_volume {
    char id[32];
    uint64_t size;
    char status[16]; /* creating available deleting deleted error */
    char snapshot_id[32];
    char snapshot_zone[64]; /* the zone whose blocks it is filled from, if
                               not this SC's own ("") */
    int progress;
    int64_t create_ms;
    char message[256];
    char bitmap[64];        /* tracks writes since base_snapshot, or "" */
    char base_snapshot[32]; /* the manifest the bitmap is relative to */
};

struct sc_export {
    char volume_id[32];
    char node[64];
    int port; /* tcp: the port kept across restarts; 0: unix */
};

struct sc_snapshot {
    char id[32];
    char volume_id[32];
    uint64_t volume_size;
    char status[16]; /* pending completed error */
    int progress;
    int64_t start_ms;
    uint64_t uploaded, total;
    char message[256];
};

/* 0 found, 1 none, -1 error. */
int sc_volume_get(struct db *db, const char *id, struct sc_volume *v,
                  struct koala_error **err);
int sc_volume_put(struct db *db, const struct sc_volume *v,
                  struct koala_error **err); /* insert or replace */
int sc_volume_set_status(struct db *db, const char *id, const char *status,
                         int progress, const char *message,
                         struct koala_error **err);
int sc_volume_set_bitmap(struct db *db, const char *id, const char *bitmap,
                         const char *base, struct koala_error **err);
/* Sum of the sizes of volumes not deleted, and their count. */
int sc_volume_usage(struct db *db, uint64_t *bytes, int64_t *count,
                    struct koala_error **err);
int sc_volumes_each(struct db *db, int (*fn)(void *ctx,
                                             const struct sc_volume *v),
                    void *ctx, struct koala_error **err);

int sc_export_get(struct db *db, const char *volume_id, struct sc_export *e,
                  struct koala_error **err);
int sc_export_put(struct db *db, const struct sc_export *e,
                  struct koala_error **err);
int sc_export_delete(struct db *db, const char *volume_id,
                     struct koala_error **err);
int sc_exports_each(struct db *db,
                    int (*fn)(void *ctx, const struct sc_export *e), void *ctx,
                    struct koala_error **err);

int sc_snapshot_get(struct db *db, const char *id, struct sc_snapshot *s,
                    struct koala_error **err);
int sc_snapshot_put(struct db *db, const struct sc_snapshot *s,
                    struct koala_error **err);
int sc_snapshots_each(struct db *db,
                      int (*fn)(void *ctx, const struct sc_snapshot *s),
                      void *ctx, struct koala_error **err);
/* Whether a pending snapshot of the volume exists: 1 yes, 0 no, -1. */
int sc_snapshot_pending_for(struct db *db, const char *volume_id,
                            struct koala_error **err);
/* Blocks stored in Walrus (whether or not a manifest uses them yet):
 * whether one is, and recording one once Walrus has it. */
int sc_block_known(struct db *db, const char *hash, bool *known,
                   struct koala_error **err);
int sc_block_stored(struct db *db, const char *hash, size_t len,
                    struct koala_error **err);
/* Counts in the SC's records: exports, snapshots not deleted. */
int sc_count(struct db *db, const char *sql, int64_t *n,
             struct koala_error **err);

/* ---- running QSDs (qsd.c) ---- */
int sc_qsd_init(struct sc *sc, struct koala_error **err);
void sc_qsd_shutdown(struct sc *sc);
/* Under sc->lock: the volume's running QSD, started when there is none
 * (with its bitmaps checked, see qsd.c).  NULL with *err. */
struct sc_active *sc_qsd_get(struct sc *sc, struct db *db,
                             const struct sc_volume *v, int port,
                             struct koala_error **err);
struct sc_active *sc_qsd_find(struct sc *sc, const char *volume_id);
/* Under sc->lock: stops the QSD if nothing uses it any more. */
void sc_qsd_release(struct sc *sc, struct sc_active *a);
/* Under sc->lock: the NBD server and export for node (idempotent). */
int sc_qsd_export(struct sc *sc, struct sc_active *a, const char *node,
                  struct koala_error **err);
int sc_qsd_unexport(struct sc *sc, struct sc_active *a,
                    struct koala_error **err);
/* Under sc->lock: grows the volume the QSD has open (its export, if
 * any, is re-added around it). */
int sc_qsd_resize(struct sc *sc, struct sc_active *a, uint64_t size,
                  struct koala_error **err);
/* Runs a QMP command on the QSD; the reply (the caller's) or NULL. */
struct json_t;
struct json_t *sc_qsd_qmp(struct sc_active *a, const char *cmd,
                          struct json_t *args, struct koala_error **err);
/* Runs argv (a program and its arguments) to completion; its stdout into
 * out (if not NULL).  0 if it exited 0; else -1 with its stderr. */
int sc_run(const char *const *argv, struct buf *out, struct koala_error **err);

/* ---- operations (ops.c, snapshot.c) ---- */
void sc_op_create_volume(struct sc_req *r);
void sc_op_delete_volume(struct sc_req *r);
void sc_op_resize_volume(struct sc_req *r);
void sc_op_describe_volumes(struct sc_req *r);
void sc_op_export_volume(struct sc_req *r);
void sc_op_unexport_volume(struct sc_req *r);
void sc_op_describe_resources(struct sc_req *r);
void sc_op_create_snapshot(struct sc_req *r);
void sc_op_delete_snapshot(struct sc_req *r);
void sc_op_describe_snapshots(struct sc_req *r);

/* An xs:dateTime element for ms since the epoch (ops.c). */
void sc_write_time(struct xml_writer *w, const char *name, int64_t ms);
/* DATA/manifests/SNAP.json, the local copy of a manifest, and the Walrus
 * key ZONE/KIND/NAME of a block or manifest (snapshot.c). */
void sc_manifest_path(struct sc *sc, const char *snapshot_id, char *out,
                      size_t size);
void sc_object_key(struct sc *sc, const char *kind, const char *name,
                   char *out, size_t size);
/* The same key under another zone's prefix (NULL or "": this SC's). */
void sc_zone_key(struct sc *sc, const char *zone, const char *kind,
                 const char *name, char *out, size_t size);
/* Writes <volume> / <snapshot> / <export> into w. */
void sc_write_volume(struct xml_writer *w, const struct sc_volume *v);
void sc_write_snapshot(struct xml_writer *w, const struct sc_snapshot *s);
void sc_write_export(struct sc *sc, struct xml_writer *w,
                     const struct sc_volume *v, const struct sc_export *e);

/* Restarts the work a killed SC left: exports, creating volumes, pending
 * snapshots (sc.c calls it once the server runs). */
int sc_recover(struct sc *sc, struct koala_error **err);
/* Fills a volume from a snapshot in the background (restore.c). */
int sc_restore_start(struct sc *sc, const char *volume_id,
                     struct koala_error **err);

/* The manifest of a completed snapshot: the local copy, or Walrus'
 * (snapshot.c).  _zone: a snapshot of that zone (NULL or "": this SC's
 * own), read from Walrus under that zone's prefix. */
struct sc_manifest;
int sc_manifest_load(struct sc *sc, const char *snapshot_id,
                     struct sc_manifest *m, struct koala_error **err);
int sc_manifest_load_zone(struct sc *sc, const char *zone,
                          const char *snapshot_id, struct sc_manifest *m,
                          struct koala_error **err);

int64_t sc_now_ms(void);

#endif
