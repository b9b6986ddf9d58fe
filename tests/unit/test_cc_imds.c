/* test_cc_imds.c: the metadata service's pure parts: the tree of paths
 * (listings, leaves, what is absent, the public key and user data forms),
 * IMDSv2 tokens (their instance, expiry, tampering), the identity
 * document's signatures verified against the CA that issued the identity
 * certificate, the instanceMetadata message, and the DNS names file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca.h"
#include "imds.h"

static char g_dir[64];

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-imds-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct cc_instance g_in;
static struct cc_imeta g_meta;

static void make_instance(bool with_key, const char *user_data_b64)
{
    memset(&g_in, 0, sizeof(g_in));
    snprintf(g_in.id, sizeof(g_in.id), "i-0123456789abcdef0");
    snprintf(g_in.reservation, sizeof(g_in.reservation), "r-00000000000000001");
    snprintf(g_in.owner, sizeof(g_in.owner), "000000000001");
    g_in.launch_index = 2;
    snprintf(g_in.type.name, sizeof(g_in.type.name), "t2.micro");
    g_in.type.cores = 1;
    g_in.type.memory_mb = 1024;
    snprintf(g_in.image_id, sizeof(g_in.image_id), "emi-00000001");
    snprintf(g_in.kernel_id, sizeof(g_in.kernel_id), "eki-00000002");
    snprintf(g_in.mac, sizeof(g_in.mac), "d0:0d:9a:bc:de:f0");
    snprintf(g_in.ip, sizeof(g_in.ip), "10.111.0.5");
    g_in.launch_ms = 1700000000123;
    imeta_clear(&g_meta);
    imeta_defaults(&g_meta);
    snprintf(g_meta.region, sizeof(g_meta.region), "koala-1");
    if (with_key) {
        g_meta.key_name = strdup("mykey");
        g_meta.public_key = strdup("ssh-ed25519 AAAAC3Nza mykey");
    }
    if (user_data_b64)
        g_meta.user_data = strdup(user_data_b64);
}

static char *get(const char *path, enum imds_result *res)
{
    struct imds_view v = {.in = &g_in,
                          .meta = &g_meta,
                          .zone = "zone1",
                          .subnet = "10.111.0.0/16",
                          .identity_doc = "{}",
                          .identity_pkcs7 = "P7",
                          .identity_signature = "SIG"};
    struct buf b = {0};
    const char *ct;
    *res = imds_resolve(&v, path, &b, &ct);
    if (b.data == NULL)
        buf_append_str(&b, "");
    return buf_steal(&b);
}

static void expect(const char *path, const char *want)
{
    enum imds_result res;
    char *got = get(path, &res);
    if (res != IMDS_FOUND || strcmp(got, want) != 0)
        fail_msg("%s: got %s [%s], want [%s]", path,
                 res == IMDS_FOUND ? "found" : "not found", got, want);
    free(got);
}

static void expect_404(const char *path)
{
    enum imds_result res;
    char *got = get(path, &res);
    if (res != IMDS_NOT_FOUND)
        fail_msg("%s: found [%s], want not found", path, got);
    free(got);
}

static void test_tree(void **s)
{
    make_instance(true, "IyEvYmluL3NoCmVjaG8gaGk=");
    enum imds_result res;
    char *versions = get("/", &res);
    assert_int_equal(res, IMDS_FOUND);
    assert_non_null(strstr(versions, "1.0\n2007-01-19\n"));
    assert_non_null(strstr(versions, "\n2021-03-23\nlatest"));
    free(versions);
    expect("/latest", "dynamic/\nmeta-data/\nuser-data");
    expect("/latest/", "dynamic/\nmeta-data/\nuser-data");
    expect("/2009-04-04/", "dynamic/\nmeta-data/\nuser-data");
    expect("/latest/meta-data/",
           "ami-id\nami-launch-index\nami-manifest-path\n"
           "block-device-mapping/\nhostname\ninstance-action\ninstance-id\n"
           "instance-life-cycle\ninstance-type\nkernel-id\nlocal-hostname\n"
           "local-ipv4\nmac\nnetwork/\nplacement/\nprofile\npublic-keys/\n"
           "reservation-id\nsecurity-groups\nservices/");
    expect("/latest/meta-data/instance-id", "i-0123456789abcdef0");
    expect("/latest/meta-data/ami-launch-index", "2");
    expect("/latest/meta-data/local-hostname",
           "ip-10-111-0-5.koala-1.compute.internal");
    expect("/latest/meta-data/placement/", "availability-zone\nregion");
    expect("/latest/meta-data/placement/availability-zone", "zone1");
    expect("/latest/meta-data/public-keys", "0=mykey");
    expect("/latest/meta-data/public-keys/", "0=mykey");
    expect("/latest/meta-data/public-keys/0/", "openssh-key");
    expect("/latest/meta-data/public-keys/0/openssh-key",
           "ssh-ed25519 AAAAC3Nza mykey\n");
    expect("/latest/meta-data/block-device-mapping/", "ami\nroot");
    expect("/latest/meta-data/network/interfaces/macs/", "d0:0d:9a:bc:de:f0/");
    expect("/latest/meta-data/network/interfaces/macs/d0:0d:9a:bc:de:f0/"
           "interface-id",
           "eni-0123456789abcdef0");
    expect("/latest/meta-data/security-groups", "default");
    expect("/latest/meta-data/services/partition", "aws");
    expect("/latest/user-data", "#!/bin/sh\necho hi");
    expect("/latest/dynamic/instance-identity/", "document\npkcs7\nsignature");
    expect_404("/latest/meta-data/ramdisk-id");
    expect_404("/latest/meta-data/public-ipv4");
    expect_404("/latest/meta-data/instance-id/");
    expect_404("/latest/user-data/");
    expect_404("/latest/meta-data//instance-id");
    expect_404("/latest/nothing");
    expect_404("/2099-01-01/meta-data/");
    expect_404("/latestx/");
    expect_404("latest");
}

static void test_tree_without_key_or_user_data(void **s)
{
    make_instance(false, NULL);
    g_in.type.disk_gb = 5;
    g_meta.groups = strdup("web\ndb");
    expect("/latest/", "dynamic/\nmeta-data/");
    expect_404("/latest/user-data");
    expect_404("/latest/meta-data/public-keys/");
    expect("/latest/meta-data/security-groups", "web\ndb");
    expect("/latest/meta-data/block-device-mapping/", "ami\nephemeral0\nroot");
    /* Binary user data comes back byte for byte. */
    free(g_meta.user_data);
    g_meta.user_data = strdup("H4sIAAAAAAAAA0vLz+cCAAAA//8=");
    enum imds_result res;
    struct imds_view v = {
        .in = &g_in, .meta = &g_meta, .zone = "z", .subnet = "10.0.0.0/8"};
    struct buf b = {0};
    const char *ct;
    res = imds_resolve(&v, "/latest/user-data", &b, &ct);
    assert_int_equal(res, IMDS_FOUND);
    assert_string_equal(ct, "application/octet-stream");
    size_t n;
    unsigned char *raw = str_base64_decode(g_meta.user_data, &n);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, raw, n);
    free(raw);
    buf_free(&b);
    /* No identity document: dynamic/ is empty. */
    assert_int_equal(
        imds_resolve(&v, "/latest/dynamic/instance-identity/document", &b, &ct),
        IMDS_NOT_FOUND);
    buf_free(&b);
    imeta_clear(&g_meta);
}

static void test_tokens(void **s)
{
    unsigned char key[IMDS_KEY_BYTES], again[IMDS_KEY_BYTES];
    struct koala_error *err = NULL;
    assert_int_equal(imds_key_load(g_dir, key, &err), 0);
    assert_int_equal(imds_key_load(g_dir, again, &err), 0);
    assert_memory_equal(key, again, sizeof(key)); /* kept across restarts */
    char *t = imds_token_mint(key, "i-00000001", 1000);
    assert_non_null(t);
    assert_true(imds_token_check(key, "i-00000001", t, 999));
    assert_false(imds_token_check(key, "i-00000001", t, 1000)); /* expired */
    assert_false(imds_token_check(key, "i-00000002", t, 10));   /* another's */
    char *t2 = imds_token_mint(key, "i-00000001", 1000);
    assert_string_not_equal(t, t2); /* a nonce each */
    t[10] = t[10] == 'A' ? 'B' : 'A';
    assert_false(imds_token_check(key, "i-00000001", t, 10));
    assert_false(imds_token_check(key, "i-00000001", "", 10));
    assert_false(imds_token_check(key, "i-00000001", "x", 10));
    assert_false(imds_token_check(key, "i-00000001", NULL, 10));
    key[0] ^= 1; /* another CC's key */
    assert_false(imds_token_check(key, "i-00000001", t2, 10));
    free(t);
    free(t2);
}

static void test_identity_signatures(void **s)
{
    char ca[128], cert[128], keyf[128];
    snprintf(ca, sizeof(ca), "%s/ca", g_dir);
    snprintf(cert, sizeof(cert), "%s/identity.pem", g_dir);
    snprintf(keyf, sizeof(keyf), "%s/identity.key", g_dir);
    mkdir(ca, 0700);
    struct koala_error *err = NULL;
    assert_int_equal(ca_create(ca, "test CA", 0, &err), 0);
    struct ca_request rq = {.cn = "koala-instance-identity"};
    assert_int_equal(ca_issue(ca, &rq, cert, keyf, &err), 0);
    struct imds_signer *sg = imds_signer_load(cert, keyf, &err);
    assert_non_null(sg);
    make_instance(false, NULL);
    char *doc = imds_identity_document(&g_in, &g_meta, "zone1");
    assert_non_null(strstr(doc, "\"instanceId\": \"i-0123456789abcdef0\""));
    assert_non_null(strstr(doc, "\"pendingTime\": \"2023-11-14T22:13:20Z\""));
    assert_non_null(strstr(doc, "\"ramdiskId\": null"));
    assert_non_null(strstr(doc, "\"region\": \"koala-1\""));
    char *p7 = NULL, *sig = NULL;
    assert_int_equal(imds_sign(sg, doc, &p7, &sig, &err), 0);

    /* pkcs7: verifies against the CA, with the document as content. */
    struct buf pem = {0};
    buf_printf(&pem, "-----BEGIN PKCS7-----\n%s\n-----END PKCS7-----\n", p7);
    BIO *pb = BIO_new_mem_buf(pem.data, (int)pem.len);
    PKCS7 *pk = PEM_read_bio_PKCS7(pb, NULL, NULL, NULL);
    assert_non_null(pk);
    X509_STORE *store = X509_STORE_new();
    char ca_pem[160];
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", ca);
    assert_int_equal(X509_STORE_load_file(store, ca_pem), 1);
    BIO *content = BIO_new_mem_buf(doc, (int)strlen(doc));
    assert_int_equal(PKCS7_verify(pk, NULL, store, content, NULL, PKCS7_BINARY),
                     1);
    BIO_free(content);
    /* ... and not a changed document. */
    char *bad = strdup(doc);
    bad[strlen(bad) - 3] ^= 1;
    content = BIO_new_mem_buf(bad, (int)strlen(bad));
    assert_int_not_equal(
        PKCS7_verify(pk, NULL, store, content, NULL, PKCS7_BINARY), 1);
    BIO_free(content);
    free(bad);

    /* signature: the certificate's key over the document. */
    FILE *f = fopen(cert, "r");
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    struct buf flat = {0};
    for (const char *c = sig; *c; c++)
        if (*c != '\n')
            buf_append_char(&flat, *c);
    size_t sl;
    unsigned char *raw = str_base64_decode(flat.data, &sl);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)),
        1);
    assert_int_equal(
        EVP_DigestVerify(md, raw, sl, (const unsigned char *)doc, strlen(doc)),
        1);
    EVP_MD_CTX_free(md);
    free(raw);
    buf_free(&flat);
    X509_free(x);
    X509_STORE_free(store);
    PKCS7_free(pk);
    BIO_free(pb);
    buf_free(&pem);
    free(p7);
    free(sig);
    free(doc);
    imds_signer_free(sg);
    /* A key that is not the certificate's is refused. */
    char other_cert[128], other_key[128];
    snprintf(other_cert, sizeof(other_cert), "%s/o.pem", g_dir);
    snprintf(other_key, sizeof(other_key), "%s/o.key", g_dir);
    assert_int_equal(ca_issue(ca, &rq, other_cert, other_key, &err), 0);
    assert_null(imds_signer_load(cert, other_key, &err));
    error_free(err);
}

static struct xml_doc *parse(const char *xml, const struct xml_node **root)
{
    struct koala_error *err = NULL;
    struct xml_doc *d = xml_parse(xml, strlen(xml), 1 << 20, &err);
    assert_non_null(d);
    *root = xml_root(d);
    return d;
}

static void test_parse_metadata(void **s)
{
    struct cc_imeta m;
    imeta_defaults(&m);
    m.user_data = strdup("AAAA");
    const struct xml_node *root;
    struct koala_error *err = NULL;
    struct xml_doc *d = parse(
        "<metadata><region>koala-1</region><securityGroup>web</securityGroup>"
        "<securityGroup>db</securityGroup><httpTokens>required</httpTokens>"
        "<httpEndpoint>enabled</httpEndpoint>"
        "<httpPutResponseHopLimit>3</httpPutResponseHopLimit></metadata>",
        &root);
    assert_int_equal(imeta_parse(root, &m, &err), 0);
    assert_string_equal(m.region, "koala-1");
    assert_string_equal(m.groups, "web\ndb");
    assert_string_equal(m.http_tokens, "required");
    assert_int_equal(m.hop_limit, 3);
    assert_string_equal(m.user_data, "AAAA"); /* not named: kept */
    xml_doc_free(d);
    d = parse("<metadata><region>koala-1</region><httpTokens>optional"
              "</httpTokens><httpEndpoint>disabled</httpEndpoint>"
              "<noUserData>true</noUserData></metadata>",
              &root);
    assert_int_equal(imeta_parse(root, &m, &err), 0);
    assert_null(m.user_data);
    assert_null(m.groups);
    assert_string_equal(m.http_endpoint, "disabled");
    xml_doc_free(d);
    const char *bad[] = {
        "<metadata><region>koala-1</region><httpTokens>maybe</httpTokens>"
        "<httpEndpoint>enabled</httpEndpoint></metadata>",
        "<metadata><region>koala-1</region><httpTokens>optional</httpTokens>"
        "<httpEndpoint>enabled</httpEndpoint><httpPutResponseHopLimit>65"
        "</httpPutResponseHopLimit></metadata>",
        "<metadata><region>Bad Region</region><httpTokens>optional"
        "</httpTokens><httpEndpoint>enabled</httpEndpoint></metadata>",
        "<metadata><httpTokens>optional</httpTokens></metadata>",
        "<metadata><region>r</region><httpTokens>optional</httpTokens>"
        "<httpEndpoint>enabled</httpEndpoint><userData>!!!</userData>"
        "</metadata>",
        "<metadata><region>r</region><httpTokens>optional</httpTokens>"
        "<httpEndpoint>enabled</httpEndpoint><securityGroup></securityGroup>"
        "</metadata>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = parse(bad[i], &root);
        assert_int_equal(imeta_parse(root, &m, &err), -1);
        error_free(err);
        err = NULL;
        assert_string_equal(m.http_endpoint, "disabled"); /* unchanged */
        xml_doc_free(d);
    }
    imeta_clear(&m);
}

static void test_dns_names(void **s)
{
    struct buf b = {0};
    assert_int_equal(
        dns_hosts_format("d0:0d:00:00:00:01,10.111.0.2,i-00000001\n"
                         "d0:0d:00:00:00:02,10.111.0.3,i-00000002\n",
                         "koala-1.compute.internal", true, &b),
        0);
    assert_string_equal(
        b.data, "169.254.169.254 instance-data.koala-1.compute.internal "
                "instance-data\n"
                "10.111.0.2 ip-10-111-0-2.koala-1.compute.internal "
                "ip-10-111-0-2 i-00000001.koala-1.compute.internal "
                "i-00000001\n"
                "10.111.0.3 ip-10-111-0-3.koala-1.compute.internal "
                "ip-10-111-0-3 i-00000002.koala-1.compute.internal "
                "i-00000002\n");
    buf_free(&b);
    assert_int_equal(dns_hosts_format("", NULL, false, &b), 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
    assert_int_equal(dns_server_args("10.0.0.1, 10.0.0.2", &b), 0);
    assert_int_equal(b.len, strlen("--server=10.0.0.1") + 1 +
                                strlen("--server=10.0.0.2") + 1 + 1);
    assert_string_equal(b.data, "--server=10.0.0.1");
    buf_free(&b);
    char dom[64];
    dns_domain_for("us-east-1", dom, sizeof(dom));
    assert_string_equal(dom, "ec2.internal");
    dns_domain_for("koala-1", dom, sizeof(dom));
    assert_string_equal(dom, "koala-1.compute.internal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree),
        cmocka_unit_test(test_tree_without_key_or_user_data),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_signatures, setup,
                                        teardown),
        cmocka_unit_test(test_parse_metadata),
        cmocka_unit_test(test_dns_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
