/* main.c: `koala`, the operators' command line.
 *
 *   koala walrus add-user NAME [--data-dir DIR]   new account + access key
 *   koala walrus list-users [--data-dir DIR]
 *   koala ca create DIR [--name NAME]              a new certificate authority
 *   koala ca issue DIR NAME --cert F --key F [--san IP:a|DNS:h]...
 *                  [--server] [--client] [--days N] a certificate signed by it
 *   koala init [--data-dir DIR]                    a new cloud (CA, CLC, admin)
 *   koala account create NAME [--data-dir DIR]     an account + access key
 *   koala register KIND NAME --endpoint URL [--cluster C] [--data-dir DIR]
 *   koala services [--data-dir DIR]                the components and states
 *   koala addresses [--data-dir DIR]               public pools and their use
 *
 * Until the CLC exists, Walrus keeps accounts in its own database; these
 * commands open it directly (SQLite WAL allows it while the daemon runs).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "cli.h"
#include "db.h"
#include "walrus.h"

struct db_pool *walrus_open_db(const char *data_dir, unsigned conns,
                               struct koala_error **err);

static void usage(FILE *f)
{
    fprintf(f, "usage: koala walrus add-user NAME [--data-dir DIR]\n"
               "       koala walrus list-users [--data-dir DIR]\n"
               "       koala ca create DIR [--name NAME]\n"
               "       koala ca issue DIR NAME --cert FILE --key FILE\n"
               "                [--san IP:ADDR|DNS:NAME]... [--server] "
               "[--client] [--days N]\n"
               "       koala init [--data-dir DIR]\n"
               "       koala account create NAME [--data-dir DIR]\n"
               "       koala register cluster|node|walrus|sc NAME "
               "--endpoint URL\n"
               "                [--cluster CLUSTER] [--data-dir DIR]\n"
               "       koala services [--data-dir DIR]\n"
               "       koala addresses [--data-dir DIR]\n"
               "       koala up [--data-dir DIR] [--images DIR]\n"
               "       koala down [--data-dir DIR]\n"
               "DIR defaults to $KOALA_HOME, or /var/lib/koala.\n");
}

/* The cloud commands: init, account, register, services. */
static int cloud_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, 'd'},
        {"endpoint", required_argument, NULL, 'e'},
        {"cluster", required_argument, NULL, 'c'},
        {"admin", required_argument, NULL, 'a'},
        {"images", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = getenv("KOALA_HOME");
    const char *endpoint = NULL, *cluster = NULL, *admin = "admin";
    const char *image_dir = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'e':
            endpoint = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'a':
            admin = optarg;
            break;
        case 'i':
            image_dir = optarg;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (dir == NULL)
        dir = "/var/lib/koala";
    const char *cmd = argv[0];
    int left = argc - optind;
    char **args = argv + optind;
    struct koala_error *err = NULL;
    int rc = -2;
    if (strcmp(cmd, "init") == 0 && left == 0)
        rc = cli_init(dir, admin, &err);
    else if (strcmp(cmd, "account") == 0 && left == 2 &&
             strcmp(args[0], "create") == 0)
        rc = cli_account_create(dir, args[1], &err);
    else if (strcmp(cmd, "register") == 0 && left == 2 && endpoint)
        rc = cli_register(dir, args[0], args[1], endpoint, cluster, &err);
    else if (strcmp(cmd, "services") == 0 && left == 0)
        rc = cli_services(dir, &err);
    else if (strcmp(cmd, "addresses") == 0 && left == 0)
        rc = cli_addresses(dir, &err);
    else if (strcmp(cmd, "up") == 0 && left == 0)
        rc = cli_up(dir, image_dir, &err);
    else if (strcmp(cmd, "down") == 0 && left == 0)
        rc = cli_down(dir, &err);
    if (rc == -2) {
        usage(stderr);
        return 2;
    }
    if (rc < 0)
        fprintf(stderr, "koala: %s\n", error_message(err));
    error_free(err);
    return rc < 0 ? 1 : 0;
}

static int ca_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"san", required_argument, NULL, 's'},
        {"server", no_argument, NULL, 'S'},
        {"client", no_argument, NULL, 'C'},
        {"days", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    const char *name = "Koala CA", *cert = NULL, *key = NULL;
    const char *sans[17] = {NULL};
    size_t n_sans = 0;
    struct ca_request rq = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 's':
            if (n_sans + 1 >= ARRAY_SIZE(sans)) {
                fprintf(stderr, "koala: too many --san\n");
                return 2;
            }
            sans[n_sans++] = optarg;
            break;
        case 'S':
            rq.server = true;
            break;
        case 'C':
            rq.client = true;
            break;
        case 'd':
            rq.days = (unsigned)atoi(optarg);
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    struct koala_error *err = NULL;
    int rc;
    if (optind + 2 == argc && strcmp(argv[optind], "create") == 0) {
        rc = ca_create(argv[optind + 1], name, rq.days, &err);
    } else if (optind + 3 == argc && strcmp(argv[optind], "issue") == 0 &&
               cert && key) {
        rq.cn = argv[optind + 2];
        rq.sans = sans;
        rc = ca_issue(argv[optind + 1], &rq, cert, key, &err);
    } else {
        usage(stderr);
        return 2;
    }
    if (rc < 0)
        fprintf(stderr, "koala: %s\n", error_message(err));
    error_free(err);
    return rc < 0 ? 1 : 0;
}

static int walrus_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    const char *data_dir = "/var/lib/koala/walrus";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
        if (c == 'd') {
            data_dir = optarg;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *verb = argv[optind];
    struct koala_error *err = NULL;
    struct db_pool *pool = NULL;
    struct db *db = NULL;
    int rc = 1;
    if (strcmp(verb, "add-user") == 0 && optind + 1 < argc) {
        char key[21], secret[41];
        if ((pool = walrus_open_db(data_dir, 1, &err)) == NULL ||
            (db = db_pool_get(pool, &err)) == NULL ||
            meta_add_user(db, argv[optind + 1], key, secret, &err) < 0)
            goto out;
        printf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", key, secret);
        rc = 0;
    } else if (strcmp(verb, "list-users") == 0) {
        if ((pool = walrus_open_db(data_dir, 1, &err)) == NULL ||
            (db = db_pool_get(pool, &err)) == NULL)
            goto out;
        sqlite3_stmt *st = db_stmt(
            db,
            "SELECT a.name, a.canonical_id, k.access_key FROM accounts a"
            " JOIN access_keys k ON k.account_id = a.id ORDER BY a.name",
            &err);
        if (st == NULL)
            goto out;
        while (sqlite3_step(st) == SQLITE_ROW)
            printf("%s\t%s\t%s\n", sqlite3_column_text(st, 0),
                   sqlite3_column_text(st, 2), sqlite3_column_text(st, 1));
        db_stmt_done(st);
        rc = 0;
    } else {
        usage(stderr);
        rc = 2;
    }
out:
    if (err)
        fprintf(stderr, "koala: %s\n", error_message(err));
    if (db)
        db_pool_put(pool, db);
    db_pool_free(pool);
    error_free(err);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "walrus") == 0)
        return walrus_cmd(argc - 1, argv + 1);
    if (strcmp(argv[1], "ca") == 0)
        return ca_cmd(argc - 1, argv + 1);
    static const char *const cloud[] = {
        "init", "account", "register", "services", "addresses", "up", "down"};
    for (size_t i = 0; i < ARRAY_SIZE(cloud); i++)
        if (strcmp(argv[1], cloud[i]) == 0)
            return cloud_cmd(argc - 1, argv + 1);
    fprintf(stderr, "koala: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
