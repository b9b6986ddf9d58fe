"""The instance metadata service (docs/metadata.md) as guests see it: the
busybox test guest asks 169.254.169.254 from inside the VM (its
/cgi-bin/run, raw HTTP through busybox nc), and every answer is compared
byte for byte with what the EC2 API says about the same instance.  Two
guests asking at once each get their own answers; a source address that
is no instance's gets nothing; IMDSv2 tokens, their TTLs and their
refusals; the options of ModifyInstanceMetadataOptions; the identity
document verified with the cloud's CA; the cluster's DNS; and metadata
still answering while the CLC is killed."""
import base64
import gzip
import json
import re
import signal
import subprocess
import threading
import time

import pytest

from cloud import IMAGES, Cloud
from conftest import sh, wait_until

MARKER = "KOALA-GUEST-READY"
IMDS = "169.254.169.254"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("imds"), n_nodes=1, node_cores=4,
              node_memory_mb=4096).start()
    c.ami, c.aki, c.ari = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def describe(ec2, iid):
    return ec2.describe_instances(
        InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def wait_running(cloud, ec2, iid, timeout=240):
    def ready():
        i = describe(ec2, iid)
        if i["State"]["Name"] == "terminated":
            raise AssertionError(f"{iid} terminated: {i.get('StateReason')}")
        if i["State"]["Name"] != "running" or not i.get("PrivateIpAddress"):
            return None
        out = ec2.get_console_output(InstanceId=iid).get("Output", "")
        return i if MARKER in out and "ip=none" not in out.split(MARKER)[-1] \
            else None
    i = wait_until(ready, timeout, 1, f"{iid} ready")
    # and its /cgi-bin/run answers
    wait_until(lambda: _alive(cloud, i["PrivateIpAddress"]), 60, 1,
               f"{iid} answers on :8080")
    return i


def _alive(cloud, ip):
    try:
        return cloud.guest_run(ip, "echo ok", timeout=5).output.strip() == "ok"
    except Exception:
        return False


# A raw HTTP exchange from inside the guest, one line of base64 per
# request, so that bodies come back byte for byte.
# req: one request, its whole answer in base64 on a line.  A connection
# that brought no answer at all is tried again (twice), as cloud-init's
# clients do: under a loaded CI the guest's busybox nc now and then came
# back empty (seen twice in CI, not reproduced by hand); an answer is never
# retried, so a wrong one still fails the test.
GUEST_LIB = r"""
req1() {
    m="$1"; p="$2"; shift 2
    { printf '%s %s HTTP/1.0\r\nHost: 169.254.169.254\r\n' "$m" "$p"
      for h in "$@"; do printf '%s\r\n' "$h"; done
      printf '\r\n'; } | nc -w 5 169.254.169.254 80 | base64 | tr -d '\n'
}
req() {
    for try in 1 2 3; do
        out=$(req1 "$@")
        [ -n "$out" ] && break
    done
    echo "$out"
}
"""


class Reply:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    @property
    def text(self):
        return self.body.decode()

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def guest_requests(cloud, ip, requests, timeout=60):
    """requests: [(method, path, [headers])] made from the guest at ip ->
    [Reply]."""
    script = GUEST_LIB
    for m, p, hs in requests:
        script += "req %s %s %s\n" % (
            m, sh_quote(p), " ".join(sh_quote(h) for h in hs))
    r = cloud.guest_run(ip, script, timeout=timeout)
    lines = r.output.splitlines()
    assert len(lines) == len(requests), r.output
    return [Reply(base64.b64decode(l)) for l in lines]


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def get(cloud, ip, path, *headers):
    return guest_requests(cloud, ip, [("GET", path, list(headers))])[0]


def token(cloud, ip, ttl=60):
    r = guest_requests(cloud, ip, [(
        "PUT", "/latest/api/token",
        [f"X-aws-ec2-metadata-token-ttl-seconds: {ttl}"])])[0]
    assert r.status == 200, r
    return r.text


@pytest.fixture(scope="module")
def pair(cloud, tmp_path_factory):
    """Two instances: A with a key pair and gzip'd user data, B with
    neither."""
    ec2 = cloud.ec2()
    key = ec2.create_key_pair(KeyName="imds-key")
    user_data = gzip.compress(b"#!/bin/sh\necho from user data\n" +
                              bytes(range(256)))
    a = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                          InstanceType="t2.micro", KeyName="imds-key",
                          UserData=user_data)["Instances"][0]["InstanceId"]
    b = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                          InstanceType="m1.small")["Instances"][0]["InstanceId"]
    ia = wait_running(cloud, ec2, a)
    ib = wait_running(cloud, ec2, b)
    pub = ec2.describe_key_pairs(KeyNames=["imds-key"],
                                 IncludePublicKey=True)["KeyPairs"][0]
    return {"a": ia, "b": ib, "user_data": user_data, "key": key,
            "public_key": pub["PublicKey"]}


def test_every_path_as_the_api_says(cloud, pair):
    a = pair["a"]
    res = cloud.ec2().describe_instances(
        InstanceIds=[a["InstanceId"]])["Reservations"][0]
    ip = a["PrivateIpAddress"]
    mac = a["NetworkInterfaces"][0]["MacAddress"] \
        if a.get("NetworkInterfaces") else None
    expected = {
        "/latest/meta-data/instance-id": a["InstanceId"],
        "/latest/meta-data/ami-id": a["ImageId"],
        "/latest/meta-data/ami-launch-index": str(a["AmiLaunchIndex"]),
        "/latest/meta-data/instance-type": a["InstanceType"],
        "/latest/meta-data/kernel-id": a["KernelId"],
        "/latest/meta-data/ramdisk-id": a["RamdiskId"],
        "/latest/meta-data/local-ipv4": ip,
        "/latest/meta-data/local-hostname": a["PrivateDnsName"],
        "/latest/meta-data/hostname": a["PrivateDnsName"],
        "/latest/meta-data/placement/availability-zone":
            a["Placement"]["AvailabilityZone"],
        "/latest/meta-data/placement/region": "koala-1",
        "/latest/meta-data/reservation-id": res["ReservationId"],
        "/latest/meta-data/public-keys/": "0=imds-key",
        "/latest/meta-data/public-keys/0/": "openssh-key",
        "/latest/meta-data/public-keys/0/openssh-key":
            pair["public_key"].rstrip("\n") + "\n",
        "/latest/meta-data/security-groups": "\n".join(
            g["GroupName"] for g in a.get("SecurityGroups", [])) or "default",
        "/latest/meta-data/services/domain": "amazonaws.com",
        "/latest/meta-data/services/partition": "aws",
        "/latest/meta-data/block-device-mapping/root": "/dev/vda",
    }
    paths = list(expected) + [
        "/", "/latest/", "/2009-04-04/meta-data/", "/latest/meta-data/",
        "/latest/meta-data/mac", "/latest/user-data",
        "/latest/meta-data/network/interfaces/macs/",
        "/latest/dynamic/instance-identity/document",
    ]
    got = dict(zip(paths, guest_requests(
        cloud, ip, [("GET", p, []) for p in paths])))
    for p, want in expected.items():
        assert got[p].status == 200, (p, got[p])
        assert got[p].text == want, p
        assert got[p].headers["content-type"] == "text/plain"
    versions = got["/"].text.split("\n")
    assert versions[0] == "1.0" and versions[-1] == "latest"
    assert {"2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23"} <= \
        set(versions)
    assert got["/latest/"].text == "dynamic/\nmeta-data/\nuser-data"
    listing = got["/latest/meta-data/"].text.split("\n")
    for leaf in ("ami-id", "ami-launch-index", "ami-manifest-path",
                 "block-device-mapping/", "hostname", "instance-id",
                 "instance-type", "kernel-id", "ramdisk-id", "local-hostname",
                 "local-ipv4", "mac", "network/", "placement/",
                 "public-keys/", "reservation-id", "security-groups",
                 "services/"):
        assert leaf in listing, leaf
    assert listing == sorted(listing)
    assert got["/2009-04-04/meta-data/"].text == got["/latest/meta-data/"].text
    # the MAC is the guest's own
    guest_mac = cloud.guest_run(ip, "cat /sys/class/net/eth0/address")
    assert got["/latest/meta-data/mac"].text == guest_mac.output.strip()
    if mac:
        assert got["/latest/meta-data/mac"].text == mac
    m = got["/latest/meta-data/mac"].text
    assert got["/latest/meta-data/network/interfaces/macs/"].text == m + "/"
    nic = guest_requests(cloud, ip, [
        ("GET", f"/latest/meta-data/network/interfaces/macs/{m}/{leaf}", [])
        for leaf in ("device-number", "local-ipv4s", "mac", "owner-id",
                     "subnet-ipv4-cidr-block")])
    assert [r.text for r in nic] == ["0", ip, m, res["OwnerId"],
                                     "10.111.0.0/16"]
    # user data: the bytes given to RunInstances, not decompressed
    ud = got["/latest/user-data"]
    assert ud.status == 200 and ud.body == pair["user_data"]
    doc = json.loads(got["/latest/dynamic/instance-identity/document"].text)
    assert doc["instanceId"] == a["InstanceId"]
    assert doc["imageId"] == a["ImageId"]
    assert doc["instanceType"] == a["InstanceType"]
    assert doc["privateIp"] == ip
    assert doc["availabilityZone"] == a["Placement"]["AvailabilityZone"]
    assert doc["region"] == "koala-1"
    assert doc["architecture"] == "x86_64"
    assert doc["accountId"] == res["OwnerId"]


def test_an_instance_without_key_or_user_data(cloud, pair):
    ip = pair["b"]["PrivateIpAddress"]
    r = guest_requests(cloud, ip, [
        ("GET", "/latest/user-data", []),
        ("GET", "/latest/meta-data/public-keys/", []),
        ("GET", "/latest/", []),
        ("GET", "/latest/meta-data/instance-id", []),
    ])
    assert r[0].status == 404 and r[1].status == 404
    assert r[0].headers["content-type"] == "text/html"
    assert "<title>404 - Not Found</title>" in r[0].text
    assert r[2].text == "dynamic/\nmeta-data/"
    assert r[3].text == pair["b"]["InstanceId"]


def test_two_guests_at_once_get_their_own(cloud, pair):
    out = {}

    def ask(name):
        ip = pair[name]["PrivateIpAddress"]
        out[name] = guest_requests(
            cloud, ip, [("GET", "/latest/meta-data/instance-id", [])] * 20)
    ts = [threading.Thread(target=ask, args=(n,)) for n in ("a", "b")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for n in ("a", "b"):
        assert {r.text for r in out[n]} == {pair[n]["InstanceId"]}


def test_bad_requests(cloud, pair):
    ip = pair["a"]["PrivateIpAddress"]
    r = guest_requests(cloud, ip, [
        ("GET", "/latest/meta-data/no-such-thing", []),
        ("GET", "/2099-01-01/meta-data/", []),
        ("POST", "/latest/meta-data/", []),
        ("PUT", "/latest/api/token", []),
        ("PUT", "/latest/api/token",
         ["X-aws-ec2-metadata-token-ttl-seconds: 0"]),
        ("PUT", "/latest/api/token",
         ["X-aws-ec2-metadata-token-ttl-seconds: 21601"]),
        ("PUT", "/latest/api/token",
         ["X-aws-ec2-metadata-token-ttl-seconds: ten"]),
        ("PUT", "/latest/api/token",
         ["X-aws-ec2-metadata-token-ttl-seconds: 60",
          "X-Forwarded-For: 10.0.0.9"]),
        ("PUT", "/latest/meta-data/",
         ["X-aws-ec2-metadata-token-ttl-seconds: 60"]),
        ("GET", "/latest/meta-data/instance-id",
         ["X-aws-ec2-metadata-token: not-a-token"]),
    ])
    assert [x.status for x in r] == [404, 404, 405, 400, 400, 400, 400, 403,
                                     405, 401]
    for x in r:
        assert x.headers["content-type"] == "text/html"
        assert f"<h1>{x.status} - " in x.text


def test_imdsv2_tokens(cloud, pair):
    a, b = pair["a"]["PrivateIpAddress"], pair["b"]["PrivateIpAddress"]
    ta = token(cloud, a, ttl=21600)
    tb = token(cloud, b, ttl=1)
    ok = get(cloud, a, "/latest/meta-data/instance-id",
             f"X-aws-ec2-metadata-token: {ta}")
    assert ok.status == 200 and ok.text == pair["a"]["InstanceId"]
    # another instance's token is no token here
    other = get(cloud, a, "/latest/meta-data/instance-id",
                f"X-aws-ec2-metadata-token: {tb}")
    assert other.status == 401
    time.sleep(1.5)
    expired = get(cloud, b, "/latest/meta-data/instance-id",
                  f"X-aws-ec2-metadata-token: {tb}")
    assert expired.status == 401
    # the TTL comes back as a header
    r = guest_requests(cloud, a, [(
        "PUT", "/latest/api/token",
        ["X-aws-ec2-metadata-token-ttl-seconds: 30"])])[0]
    assert r.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "30"


def test_a_source_that_is_no_instance_gets_nothing(cloud, pair):
    # the router's own address (the cluster namespace) is no instance's
    r = cloud.netns_exec(cloud.cluster_ns, "curl", "-sS", "-o", "/dev/null",
                         "-w", "%{http_code}", "-m", "5",
                         f"http://{IMDS}/latest/meta-data/instance-id")
    assert r.stdout == "404"


def test_identity_document_verifies_with_the_cloud_ca(cloud, pair, tmp_path):
    ip = pair["a"]["PrivateIpAddress"]
    doc, p7, sig = guest_requests(cloud, ip, [
        ("GET", f"/latest/dynamic/instance-identity/{x}", [])
        for x in ("document", "pkcs7", "signature")])
    assert doc.status == p7.status == sig.status == 200
    (tmp_path / "document").write_bytes(doc.body)
    (tmp_path / "pkcs7").write_text(
        "-----BEGIN PKCS7-----\n" + p7.text + "\n-----END PKCS7-----\n")
    ok = subprocess.run(
        ["openssl", "smime", "-verify", "-in", tmp_path / "pkcs7",
         "-inform", "PEM", "-content", tmp_path / "document", "-binary",
         "-CAfile", cloud.ca, "-out", "/dev/null"],
        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "document").write_bytes(doc.body.replace(b"x86_64", b"arm64"))
    bad = subprocess.run(
        ["openssl", "smime", "-verify", "-in", tmp_path / "pkcs7",
         "-inform", "PEM", "-content", tmp_path / "document", "-binary",
         "-CAfile", cloud.ca, "-out", "/dev/null"],
        capture_output=True, text=True)
    assert bad.returncode != 0
    # signature: over the document with the identity certificate's key
    cert, _ = cloud.certs("identity", cloud.cluster)
    (tmp_path / "document").write_bytes(doc.body)
    (tmp_path / "sig").write_bytes(base64.b64decode(sig.text))
    sh("openssl", "x509", "-in", cert, "-pubkey", "-noout",
       "-out", tmp_path / "pub.pem")
    sh("openssl", "dgst", "-sha256", "-verify", tmp_path / "pub.pem",
       "-signature", tmp_path / "sig", tmp_path / "document")


DNS_QUERY = r"""
import socket, struct, sys, time
name, qtype = sys.argv[1], int(sys.argv[2])
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
t = time.monotonic()
s.sendto(q, ("10.111.0.1", 53))
r = s.recv(2048)
print(r[3] & 15, struct.unpack(">H", r[6:8])[0], time.monotonic() - t)
"""


def dns_query(cloud, name, qtype=1):
    """(rcode, answers, seconds) of one query to the cluster's DNS."""
    out = cloud.netns_exec(cloud.cluster_ns, "/usr/bin/python3", "-c",
                           DNS_QUERY, name, qtype).stdout.split()
    return int(out[0]), int(out[1]), float(out[2])


def test_dns_answers_the_cluster_and_refuses_the_rest_fast(cloud, pair):
    a = pair["a"]
    ip = a["PrivateIpAddress"]
    name = a["PrivateDnsName"]
    # from the guest: its own name, the other instance by id, and the
    # metadata service's
    r = cloud.guest_run(ip, f"""
nslookup {name} 10.111.0.1
nslookup {pair['b']['InstanceId']} 10.111.0.1
nslookup instance-data 10.111.0.1
""", timeout=60)
    out = r.output
    assert f"Address: {ip}" in out, out
    assert f"Address: {pair['b']['PrivateIpAddress']}" in out, out
    assert f"Address: {IMDS}" in out, out
    # names of the cluster's domain that do not exist: NXDOMAIN, never
    # forwarded; other names with no upstream configured: REFUSED; both
    # at once (a resolver timing out costs cloud-init 40 s)
    rcode, n, took = dns_query(cloud, "nothing.koala-1.compute.internal")
    assert (rcode, n) == (3, 0) and took < 0.5
    rcode, n, took = dns_query(cloud, "www.example.com")
    assert (rcode, n) == (5, 0) and took < 0.5
    rcode, n, took = dns_query(cloud, name)
    assert (rcode, n) == (0, 1)
    # reverse lookups of the cluster's addresses are answered locally
    rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    rcode, n, took = dns_query(cloud, rev, 12)
    assert (rcode, n) == (0, 1) or n >= 1


def test_metadata_options(cloud, pair):
    ec2 = cloud.ec2()
    iid = pair["b"]["InstanceId"]
    ip = pair["b"]["PrivateIpAddress"]

    def applied(**want):
        def check():
            o = describe(ec2, iid)["MetadataOptions"]
            return o if o.get("State") == "applied" and all(
                o.get(k) == v for k, v in want.items()) else None
        return wait_until(check, 30, 0.5, f"options {want} applied")

    ec2.modify_instance_metadata_options(InstanceId=iid,
                                         HttpTokens="required")
    applied(HttpTokens="required")
    assert get(cloud, ip, "/latest/meta-data/instance-id").status == 401
    t = token(cloud, ip)
    r = get(cloud, ip, "/latest/meta-data/instance-id",
            f"X-aws-ec2-metadata-token: {t}")
    assert r.status == 200 and r.text == iid
    ec2.modify_instance_metadata_options(InstanceId=iid,
                                         HttpEndpoint="disabled")
    applied(HttpEndpoint="disabled")
    r = get(cloud, ip, "/latest/meta-data/instance-id",
            f"X-aws-ec2-metadata-token: {t}")
    assert r.status == 403
    ec2.modify_instance_metadata_options(InstanceId=iid,
                                         HttpEndpoint="enabled",
                                         HttpTokens="optional")
    applied(HttpEndpoint="enabled", HttpTokens="optional")
    assert get(cloud, ip, "/latest/meta-data/instance-id").text == iid


def test_metadata_answers_while_the_clc_is_down(cloud, pair):
    ip = pair["a"]["PrivateIpAddress"]
    clc = cloud.daemons["clc"]
    assert clc.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        r = get(cloud, ip, "/latest/meta-data/instance-id")
        assert r.status == 200 and r.text == pair["a"]["InstanceId"]
        r = get(cloud, ip, "/latest/user-data")
        assert r.body == pair["user_data"]
    finally:
        clc.start()


def test_metadata_survives_a_cc_restart(cloud, pair):
    """Tokens are HMACs with the CC's own key: valid across its restart."""
    ip = pair["a"]["PrivateIpAddress"]
    t = token(cloud, ip, ttl=600)
    cc = cloud.daemons["cc"]
    assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
    cc.start()
    r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
        get(cloud, ip, "/latest/meta-data/instance-id",
            f"X-aws-ec2-metadata-token: {t}")), 30, 0.5, "metadata back")
    assert r.text == pair["a"]["InstanceId"]


def test_put_response_hop_limit_is_the_replies_ttl(cloud, pair):
    """HttpPutResponseHopLimit: the IP TTL of the token reply's packets, as
    they reach the guest's tap (counted by a bridge rule of the test's own
    in the node's namespace)."""
    ec2 = cloud.ec2()
    iid = pair["b"]["InstanceId"]
    ip = pair["b"]["PrivateIpAddress"]
    ns = cloud.node_ns["nc1"]

    def counted(ttl):
        out = cloud.netns_exec(ns, "nft", "list", "table", "bridge",
                               "koala_ttl_test").stdout
        m = re.search(rf"ip ttl {ttl} counter packets (\d+)", out)
        return int(m.group(1)) if m else 0

    rules = ("table bridge koala_ttl_test {\n"
             " chain c { type filter hook forward priority 0;\n"
             f"  ip saddr {IMDS} ip daddr {ip} tcp sport 80 ip ttl 1 counter\n"
             f"  ip saddr {IMDS} ip daddr {ip} tcp sport 80 ip ttl 7 counter\n"
             " }\n}\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                   input=rules, text=True, check=True)
    try:
        before = counted(1)
        token(cloud, ip)
        assert counted(1) > before  # the default hop limit is 1
        ec2.modify_instance_metadata_options(InstanceId=iid,
                                             HttpPutResponseHopLimit=7)
        wait_until(lambda: describe(ec2, iid)["MetadataOptions"]["State"]
                   == "applied", 30, 0.5, "hop limit applied")
        before7 = counted(7)
        token(cloud, ip)
        assert counted(7) > before7
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table",
                        "bridge", "koala_ttl_test"], check=False)
        ec2.modify_instance_metadata_options(InstanceId=iid,
                                             HttpPutResponseHopLimit=1)
