"""The CLC under hostile requests (issue 13): its EC2 Query API (a seeded,
time-bounded fuzz run of form-encoded requests signed with botocore's
SigV4Auth: hostile actions, parameter names and values, thousands of
InstanceId.N / Filter.N.Value.M, huge and negative numbers, NUL bytes,
invalid UTF-8 and percent-encoding, bad NextTokens, broken framing, slow
and cut connections, unsigned and garbled signatures), its SOAP endpoint
for the components (over mutual TLS with Walrus' and a cluster's
certificates), and the known hostile requests as tests of their own.

Oracles (fuzzlib): the CLC stays up, no sanitizer report, every reply is
EC2's XML (<Response><Errors><Error><Code>, never InternalError for a bad
request) or a SOAP Envelope, no request over the CPU budget, and the
admin's key pairs, image and tags made before the run read back the same
after it (the fuzzing runs as another account).  KOALA_FUZZ_SEED /
_SECONDS / _CASE: see fuzzlib.
"""
import base64
import os
import random
import struct
import time

import pytest

import fuzzlib
import fuzzsoap
from cloud import REGION, Cloud
from conftest import KOALA_BIN, sh
from fuzzlib import FuzzRun, hostile_text, http_request, sigv4_headers
from soapclient import client_context

ACTIONS = ["CreateKeyPair", "CreateTags", "DeleteKeyPair", "DeleteTags",
           "DeregisterImage", "DescribeAvailabilityZones", "DescribeImages",
           "DescribeInstanceAttribute", "DescribeInstanceStatus",
           "DescribeInstanceTypes", "DescribeInstances", "DescribeKeyPairs",
           "DescribeRegions", "DescribeTags", "GetConsoleOutput",
           "ImportKeyPair", "ModifyInstanceAttribute", "RebootInstances",
           "RegisterImage", "RunInstances", "StartInstances",
           "StopInstances", "TerminateInstances", "DescribeImageAttribute",
           "ModifyImageAttribute", "ResetImageAttribute"]


@pytest.fixture(scope="module")
def fz_cloud(tmp_path_factory):
    """The CLC and Walrus (no cluster), a fuzzing account, and the
    admin's canary data."""
    base = tmp_path_factory.mktemp("fuzz-ec2")
    c = Cloud(base, with_cluster=False).start()
    try:
        out = sh(KOALA_BIN, "account", "create", "fuzzer",
                 "--data-dir", c.dir).stdout
        kv = dict(line.split("=", 1) for line in out.split())
        c.fuzzer = (kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"])
        # a cluster (unreachable) whose certificate the SOAP fuzzing uses;
        # with a node: a cluster without one crashes the CLC (a test below)
        sh(KOALA_BIN, "register", "cluster", "zone-f", "--endpoint",
           "https://127.0.0.1:1/", "--data-dir", c.dir)
        sh(KOALA_BIN, "register", "node", "nf1", "--endpoint",
           "https://127.0.0.1:1/", "--cluster", "zone-f", "--data-dir", c.dir)
        c.canary = write_canaries(c, base)
    except BaseException:
        c.stop()
        raise
    yield c
    rcs = c.stop()
    logs = {n: d.log_text() for n, d in c.daemons.items()}
    assert all(rc == 0 for rc in rcs.values()), (rcs, {
        n: t[-3000:] for n, t in logs.items()})
    for n, t in logs.items():
        assert not fuzzlib.sanitizer_lines(t), (n, fuzzlib.sanitizer_lines(t))


def write_canaries(c, base):
    key = base / "canary"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "canary",
       "-f", key)
    ec2 = c.ec2()
    ec2.import_key_pair(KeyName="canary-imported",
                        PublicKeyMaterial=(base / "canary.pub").read_bytes())
    ec2.create_key_pair(KeyName="canary-made")
    s3 = c.s3()
    s3.create_bucket(Bucket="canary-images")
    s3.put_object(Bucket="canary-images", Key="img", Body=os.urandom(4096))
    ami = ec2.register_image(Name="canary-image",
                             ImageLocation="canary-images/img")["ImageId"]
    ec2.create_tags(Resources=[ami], Tags=[
        {"Key": "k", "Value": "v"}, {"Key": "ü odd & <key>", "Value": "x" * 255}])
    return read_canaries(c)


def read_canaries(c):
    ec2 = c.ec2()
    keys = ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
    for k in keys:
        k.pop("CreateTime", None)
    images = ec2.describe_images(Owners=["self"])["Images"]
    tags = ec2.describe_tags()["Tags"]
    return (sorted(keys, key=lambda k: k["KeyName"]),
            sorted(images, key=lambda i: i["ImageId"]),
            sorted(tags, key=lambda t: (t["ResourceId"], t["Key"])))


# ---- the request generator --------------------------------------------------------

def b64(data):
    return base64.b64encode(data).decode()


def ssh_rsa_blob(modulus_bytes, r):
    """An ssh-rsa public key line whose modulus has that many bytes (a
    well-formed blob, not a real key)."""
    def s(b):
        return struct.pack(">I", len(b)) + b
    n = b"\x00" + bytes([0xc1]) + r.randbytes(modulus_bytes - 1)
    blob = s(b"ssh-rsa") + s(b"\x01\x00\x01") + s(n)
    return b"ssh-rsa " + base64.b64encode(blob) + b" big"


class EC2Gen:
    def __init__(self, cloud):
        self.c = cloud
        self.port = cloud.ports["clc"]

    def value(self, r, name=""):
        k = r.randrange(10)
        if k < 3:
            return hostile_text(r)
        if k < 5:
            return r.choice(fuzzlib.NUMBERS).encode()
        if k == 5:
            return r.choice([b"i-0000000000000001", b"i-1", b"ami-1",
                             b"ami-00000000000000001", b"i-" + b"f" * 200,
                             b"r-1", b"emi-1"])
        if k == 6:  # tokens that decode to anything
            return r.choice([b"MTIzNDUvaS0xMjM0", base64.b64encode(
                r.randbytes(r.randrange(0, 64))), b"====", b"A", b"AA=",
                base64.b64encode(b"1" * 300 + b"/i-1"), b"-1/x",
                base64.b64encode(b"99999999999999999999/i-1")])
        if k == 7:
            return r.choice([b"true", b"false", b"TRUE", b"1", b""])
        if k == 8:
            return base64.b64encode(r.randbytes(r.choice([0, 10, 17000,
                                                          30000])))
        return r.choice([b"m1.small", b"t1.micro", b"koala-1", b"zone-a",
                         b"stop", b"terminate", b"rsa", b"ed25519"])

    def params(self, r, action):
        p = [("Action", action.encode()), ("Version", b"2016-11-15")]
        k = r.randrange(16)
        if k == 0:      # many ids
            n = r.choice([10, 100, 1000, 3000, 6000])
            p += [(f"InstanceId.{j}", b"i-%016x" % j) for j in range(1, n + 1)]
        elif k == 1:    # many filter values
            n = r.choice([10, 200, 1000, 3000])
            p += [("Filter.1.Name", r.choice([b"tag:k", b"key", b"value",
                                              b"resource-id", b"instance-id",
                                              b"instance-state-name",
                                              b"no-such"]))]
            p += [(f"Filter.1.Value.{j}", b"v%d" % j) for j in range(1, n + 1)]
        elif k == 2:    # many filters
            n = r.choice([10, 50, 51, 500])
            p += [(f"Filter.{j}.Name", b"tag:k") for j in range(1, n + 1)]
            p += [(f"Filter.{j}.Value.1", b"v") for j in range(1, n + 1)]
        elif k == 3:    # odd indexes
            for name in r.sample(["InstanceId", "Filter", "ImageId",
                                  "KeyName", "ResourceId", "Tag",
                                  "Owner", "RegionName", "ZoneName"], 3):
                idx = r.choice(["0", "-1", "99999999999999999999", "1.2",
                                "", "1.Value", "01", "1e3", " 1", "1\x00"])
                p.append((f"{name}.{idx}", self.value(r)))
        elif k == 4:    # tags
            n = r.choice([1, 50, 51, 1000])
            p += [("ResourceId.1", b"ami-00000000000000001")]
            for j in range(1, n + 1):
                p += [(f"Tag.{j}.Key", hostile_text(r)),
                      (f"Tag.{j}.Value", hostile_text(r))]
        elif k == 5:    # key material
            p += [("KeyName", self.value(r)), ("PublicKeyMaterial", r.choice([
                base64.b64encode(ssh_rsa_blob(r.choice([256, 1024, 2048,
                                                        4096, 20000]), r)),
                ssh_rsa_blob(512, r), base64.b64encode(hostile_text(r)),
                hostile_text(r), b"ssh-ed25519 AAAA", b""]))]
        elif k == 6:    # user data and run parameters
            p += [("ImageId", self.value(r)), ("MinCount", self.value(r)),
                  ("MaxCount", self.value(r)), ("UserData", self.value(r)),
                  ("InstanceType", self.value(r)),
                  ("ClientToken", hostile_text(r)),
                  ("TagSpecification.1.ResourceType", b"instance"),
                  ("TagSpecification.1.Tag.1.Key", hostile_text(r))]
        elif k == 7:    # paging
            p += [("MaxResults", self.value(r)), ("NextToken", self.value(r))]
        elif k == 8:    # the same name many times
            p += [("InstanceId.1", self.value(r))] * r.choice([2, 100, 3000])
        elif k == 9:    # names that are not EC2's
            for _ in range(r.randrange(1, 20)):
                p.append((hostile_text(r), hostile_text(r)))
        elif k == 10:   # attribute calls
            p += [("InstanceId", self.value(r)), ("Attribute", self.value(r)),
                  ("Value", self.value(r)),
                  ("DisableApiTermination.Value", self.value(r))]
        elif k == 11:   # register image
            p += [("Name", hostile_text(r)), ("ImageLocation", hostile_text(r)),
                  ("KernelId", self.value(r)), ("RamdiskId", self.value(r)),
                  ("Architecture", self.value(r)),
                  ("BlockDeviceMapping.1.DeviceName", hostile_text(r))]
        elif k == 12:   # image attributes, of the admin's image too
            image = r.choice([self.c.canary[1][0]["ImageId"].encode(),
                              self.value(r)])
            p += [("ImageId", image), ("Attribute", r.choice(
                [b"launchPermission", b"description", b"Description ",
                 b"blockDeviceMapping", b"lastLaunchedTime",
                 self.value(r)])),
                  (r.choice(["LaunchPermission.Add.1.UserId",
                             "LaunchPermission.Remove.1.Group",
                             "LaunchPermission.Add.1.Group", "UserId.1",
                             "UserGroup.1", "Description.Value", "Value",
                             "ProductCode.1"]),
                   r.choice([b"all", b"000000000001", self.value(r)])),
                  ("OperationType", r.choice([b"add", b"remove",
                                              self.value(r)]))]
        else:           # a few plausible parameters with hostile values
            for name in r.sample(["InstanceId.1", "ImageId.1", "KeyName.1",
                                  "KeyName", "DryRun", "Owner.1",
                                  "ExecutableBy.1", "RegionName.1",
                                  "ZoneName.1", "InstanceType.1",
                                  "IncludeAllInstances", "ImageId",
                                  "InstanceId", "Latest", "KeyType",
                                  "IncludePublicKey"], 4):
                p.append((name, self.value(r)))
        return p

    def encode(self, r, params):
        k = r.randrange(8)
        if k == 0:      # raw bytes, not percent-encoded
            return b"&".join(fuzzlib._hbytes(n) + b"=" + v
                             for n, v in params)
        if k == 1:      # broken percent-encoding and separators
            body = "&".join(f"{fuzzlib.quote_bytes(n)}="
                            f"{fuzzlib.quote_bytes(v)}"
                            for n, v in params).encode()
            return body + r.choice([b"&%", b"&%zz=1", b"&&&=&", b"&a",
                                    b"&=x", b"%00=1", b"&a=%f", b"+++=+"])
        return "&".join(f"{fuzzlib.quote_bytes(n)}={fuzzlib.quote_bytes(v)}"
                        for n, v in params).encode()

    def case(self, r, i):
        kind = r.randrange(100)
        action = r.choice(ACTIONS) if kind < 85 else \
            hostile_text(r).decode("latin-1")
        params = self.params(r, action if isinstance(action, str) else "x")
        body = self.encode(r, params)
        host = f"127.0.0.1:{self.port}"
        ctype = r.choice(["application/x-www-form-urlencoded; charset=utf-8"]
                         * 6 + ["", "multipart/form-data", "text/xml",
                                "application/x-www-form-urlencoded; "
                                "charset=EBCDIC"])
        headers = [("Content-Type", ctype)] if ctype else []
        method, target = "POST", "/"
        if r.random() < 0.1:    # the query string instead of a body
            method, target, body = "GET", "/?" + body.decode("latin-1"), b""
        how = r.randrange(20)
        creds = self.c.fuzzer
        url = f"http://{host}{target}"
        try:
            url.encode("ascii")
        except UnicodeEncodeError:
            how = 19
        if how < 16:
            signed = sigv4_headers(creds, "ec2", REGION, method, url,
                                   headers, body)
            how_s = "signed"
        elif how == 16:
            signed = sigv4_headers(creds, "ec2", REGION, method, url,
                                   headers, body)
            signed = [(k, v[:-4] + "0000") if k == "Authorization" else (k, v)
                      for k, v in signed]
            how_s = "bad signature"
        elif how == 17:
            signed = sigv4_headers((creds[0], "x" * 40), "ec2", r.choice(
                [REGION, "us-east-1", "x" * 300]), method, url, headers, body)
            how_s = "wrong secret or region"
        elif how == 18:
            signed = headers + [("Authorization", r.choice([
                "AWS4-HMAC-SHA256 Credential=" + "/" * 300,
                f"AWS4-HMAC-SHA256 Credential={creds[0]}/x/y/ec2/aws4_request,"
                " SignedHeaders=, Signature=", "AWS4-HMAC-SHA256 " + "," * 1000,
                "x"])), ("X-Amz-Date", r.choice(["", "20240101T000000Z",
                                                 "x" * 100]))]
            how_s = "garbled authorization"
        else:
            signed = headers
            how_s = "unsigned"
        signed = [("Host", host)] + [(k, v) for k, v in signed
                                     if k.lower() != "host"]
        label = f"{how_s} {action[:40]!r} {len(params)} params"
        return fuzzlib.framed_case(r, method, target, signed, body, label,
                                   fuzzlib.check_ec2_reply, too_big=2 << 20,
                                   chunk_sizes=[1, 100, 5000])


# ---- the fuzz runs -----------------------------------------------------------------

def clc(cloud):
    return cloud.daemons["clc"]


def restarter(d):
    def restart():
        d.stop(timeout=5)
        d.start()
    return restart


def test_fuzz_ec2(fz_cloud, tmp_path):
    c = fz_cloud
    gen = EC2Gen(c)
    run = FuzzRun("ec2", clc(c), c.ports["clc"], tmp_path,
                  restart=restarter(clc(c)))
    try:
        run.run(gen.case, fuzzlib.SECONDS * 2 / 3)
    finally:
        print(run.report())
    assert read_canaries(c) == c.canary
    run.assert_clean()


CLC_OPS = {
    "DescribeService": [],
    "GetAccessKey": ["accessKeyId"],
    "NotifyInstanceState": ["cluster", "instance"],
}


def test_fuzz_clc_soap(fz_cloud, tmp_path):
    """The CLC's endpoint for the components, as Walrus and as a cluster
    (which may report for itself only)."""
    c = fz_cloud
    walrus_ctx = client_context(c.ca, *c.certs("walrus", "w1"))
    cluster_ctx = client_context(c.ca, *c.certs("cluster", "zone-f"))

    def values(r, name):
        return {"accessKeyId": r.choice([c.key, c.fuzzer[0], "AKIA" + "A" * 300,
                                         "%", ""]),
                "cluster": r.choice(["zone-f", "zone-a", "x" * 400]),
                "instanceId": r.choice(["i-0000000000000001", "i-x"]),
                "state": r.choice(["running", "terminated", "x"])}.get(name)
    port = c.ports["clc_soap"]
    gen = fuzzsoap.SoapGen(CLC_OPS, "urn:koala:clc", port, values)
    for name, ctx in (("clc-soap-walrus", walrus_ctx),
                      ("clc-soap-cluster", cluster_ctx)):
        run = FuzzRun(name, clc(c), port, tmp_path, tls=ctx,
                      restart=restarter(clc(c)))
        try:
            run.run(gen.case, fuzzlib.SECONDS / 6)
        finally:
            print(run.report())
        run.assert_clean()
    assert read_canaries(c) == c.canary


# ---- the known hostile requests -----------------------------------------------------

def signed(c, params, creds=None):
    host = f"127.0.0.1:{c.ports['clc']}"
    body = "&".join(f"{fuzzlib.quote_bytes(k)}={fuzzlib.quote_bytes(v)}"
                    for k, v in params).encode()
    h = sigv4_headers(creds or (c.key, c.secret), "ec2", REGION, "POST",
                      f"http://{host}/",
                      [("Content-Type", "application/x-www-form-urlencoded; "
                        "charset=utf-8")], body)
    return http_request("POST", "/", [("Host", host)] + h +
                        [("Content-Length", str(len(body))),
                         ("Connection", "close")], body)


def one(c, data, timeout=20.0, budget=None, tls=None, port=None):
    d = clc(c)
    budget = budget or fuzzlib.CPU_BUDGET
    c0 = fuzzlib.cpu_seconds(d.proc.pid)
    ex = fuzzlib.exchange(port or c.ports["clc"], data, timeout=timeout,
                          tls=tls)
    c1 = fuzzlib.cpu_seconds(d.proc.pid)
    time.sleep(0.1)
    assert d.proc.poll() is None, d.log_text()[-3000:]
    assert not fuzzlib.sanitizer_lines(d.log_text())
    cpu = (c1 or 0) - (c0 or 0)
    print(f"CPU {cpu:.3f} s, wall {ex.wall:.3f} s, {len(data)} bytes, "
          f"{ex.reply!r}")
    assert cpu <= budget, f"{cpu:.2f} s of CPU for one request"
    assert ex.reply is not None, f"no reply: {ex.error}"
    return ex.reply


def fill(prefix, value, limit=(1 << 20) - 200, head=()):
    """As many prefix.N=value parameters as fit in the body limit."""
    out, size = list(head), sum(len(k) + len(v) + 2 for k, v in head)
    j = 1
    while True:
        k = f"{prefix}.{j}" if "{}" not in prefix else prefix.format(j)
        size += len(k) + len(value) + 2
        if size > limit:
            return out
        out.append((k, value))
        j += 1


@pytest.mark.parametrize("what", ["instance-ids", "filter-values",
                                  "tag-filters", "image-ids"])
def test_many_parameters_cost(fz_cloud, what):
    """As many parameters as fit in the 1 MiB body: EC2's error (or an
    answer) within the CPU budget (params.c scanned the whole list for
    each Prefix.N: 50 000 InstanceId.N took seconds)."""
    c = fz_cloud
    if what == "instance-ids":
        p = fill("InstanceId", "i-1", head=[("Action", "DescribeInstances")])
    elif what == "filter-values":
        p = fill("Filter.1.Value", "v", head=[("Action", "DescribeTags"),
                                              ("Filter.1.Name", "key")])
    elif what == "tag-filters":
        p = fill("Filter.{}.Name", "tag:k", head=[("Action",
                                                   "DescribeInstances")])
    else:
        p = fill("ImageId", "ami-1", head=[("Action", "DescribeImages")])
    print(f"{len(p)} parameters")
    r = one(c, signed(c, p), timeout=30)
    assert fuzzlib.check_ec2_reply(r) is None, r
    assert r.status in (200, 400), r


def test_import_key_pair_never_truncates(fz_cloud):
    """A public key over 2 KB is stored whole or refused, never cut."""
    c = fz_cloud
    r0 = random.Random(fuzzlib.SEED)
    for nbytes in (1024, 2048, 4096):
        line = ssh_rsa_blob(nbytes, r0)
        name = f"big-{nbytes}"
        r = one(c, signed(c, [("Action", "ImportKeyPair"),
                              ("KeyName", name),
                              ("PublicKeyMaterial",
                               base64.b64encode(line).decode())]))
        assert fuzzlib.check_ec2_reply(r) is None, r
        if r.status != 200:
            continue
        got = c.ec2().describe_key_pairs(KeyNames=[name],
                                         IncludePublicKey=True)
        pub = got["KeyPairs"][0]["PublicKey"].strip()
        assert pub.split()[:2] == line.decode().split()[:2], \
            f"{len(line)}-byte key came back as {len(pub)} bytes"


@pytest.mark.parametrize("token", [
    "MTIzNDUvaS0xMjM0", "MQ", "MTIzNDU=", "LTE=", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5",
    "AAAAAAAAAAAAAAAA", "////", "%%%", "",
    base64.b64encode(b"5/" + b"i" * 3000).decode(),
    base64.b64encode(b"i-1\t" + b"k" * 3000).decode(),
    base64.b64encode(b"\xff\xfe\x00/i-1").decode()])
@pytest.mark.parametrize("action", ["DescribeInstances", "DescribeTags",
                                    "DescribeImages", "DescribeKeyPairs"])
def test_next_token_is_untrusted(fz_cloud, action, token):
    """A NextToken the CLC never made: EC2's error, or (for one that
    parses) a page; never a crash or a read past the decoded bytes (a
    decoded token was not NUL-terminated)."""
    c = fz_cloud
    r = one(c, signed(c, [("Action", action), ("NextToken", token),
                          ("MaxResults", "5")], creds=c.fuzzer))
    assert fuzzlib.check_ec2_reply(r) is None, r
    assert r.status in (200, 400), r
    if action in ("DescribeInstances", "DescribeTags") and \
            token not in ("MTIzNDUvaS0xMjM0",):
        assert r.status == 400, r


def test_soap_many_attributes(fz_cloud):
    """A SOAP request with 100 000 attributes from a holder of a cloud
    certificate (~30 s of CPU before a bound)."""
    c = fz_cloud
    port = c.ports["clc_soap"]
    ctx = client_context(c.ca, *c.certs("walrus", "w1"))
    r = one(c, fuzzsoap.post(port, fuzzsoap.attributes_envelope(
        "DescribeService", "urn:koala:clc", 100_000)), tls=ctx, port=port,
        timeout=10)
    assert fuzzlib.check_soap_reply(r) is None, r


def test_soap_body_is_a_fault(fz_cloud):
    c = fz_cloud
    port = c.ports["clc_soap"]
    ctx = client_context(c.ca, *c.certs("walrus", "w1"))
    r = one(c, fuzzsoap.post(port, fuzzsoap.fault("SomeCode", "x")),
            tls=ctx, port=port)
    assert fuzzlib.check_soap_reply(r) is None, r


def test_slow_clients_do_not_stall_others(fz_cloud):
    c = fz_cloud
    port = c.ports["clc"]
    head = http_request("POST", "/", [("Host", f"127.0.0.1:{port}"),
                                      ("Content-Length", "100")])
    loris = fuzzlib.Slowloris(port, head, n=40)
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        c.ec2().describe_regions()
        assert time.monotonic() - t0 < 5
    finally:
        loris.close()


def test_sigterm_during_long_request(tmp_path):
    """SIGTERM while a long request is under way ends the CLC with exit
    code 0 (it aborted: libmicrohttpd stopped with suspended
    connections)."""
    c = Cloud(tmp_path, with_cluster=False).start()
    try:
        d = clc(c)
        p = fill("InstanceId", "i-1", head=[("Action", "DescribeInstances")])
        data = signed(c, p)
        rc = fuzzlib.sigterm_during(d.proc, c.ports["clc"], data, settle=0.5)
        log = d.log_text()
        assert rc == 0, f"koala-clc exited with {rc}:\n{log[-3000:]}"
        assert not fuzzlib.sanitizer_lines(log)
    finally:
        c.stop()


def test_cluster_without_nodes(tmp_path):
    """A cluster registered without any node (found by this suite: the
    CLC's poller passed a NULL list to strtok_r and died)."""
    c = Cloud(tmp_path, with_cluster=False).start()
    try:
        sh(KOALA_BIN, "register", "cluster", "zone-e", "--endpoint",
           "https://127.0.0.1:1/", "--data-dir", c.dir)
        time.sleep(5)   # a few poll rounds (every 2 s)
        d = clc(c)
        assert d.proc.poll() is None, d.log_text()[-3000:]
        assert not fuzzlib.sanitizer_lines(d.log_text())
        c.ec2().describe_regions()
    finally:
        c.stop()
