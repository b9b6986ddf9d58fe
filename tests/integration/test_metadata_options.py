"""The CLC's side of the instance metadata service (issue 9): RunInstances
MetadataOptions, DescribeInstances metadataOptions and its
metadata-options.* filters, ModifyInstanceMetadataOptions, user data as
EC2 takes it (16 KiB of decoded bytes, gzip or any binary passed through
unchanged), and the push of options and user data to the cluster's CC
(SetInstanceMetadata, docs/wsdl/cc.wsdl): `pending` until the CC
acknowledges, then `applied`, kept across a kill -9 of the CLC.

Driven with Debian's aws-cli and python3-boto3 against real daemons and
the busybox test guest; the push's retries and restart are also shown
against a TEST DOUBLE of the CC (FakeCC below), which can refuse
SetInstanceMetadata the way a CC without it does (an older koala-cc)."""
import base64
import gzip
import html
import json
import os
import signal
import threading
import time

import botocore.exceptions
import pytest

from cloud import IMAGES, Cloud
from conftest import KOALA_BIN, free_port, sh, wait_until
from soapclient import SoapFault, SoapServer, child, children, text, to_dict
from test_compute import node_files, wait_state

CC_NS = "urn:koala:cc"
DEFAULTS = {"HttpTokens": "optional", "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled", "HttpProtocolIpv6": "disabled",
            "InstanceMetadataTags": "disabled"}


def wait_for(what, fn, timeout=60, every=0.3):
    return wait_until(fn, timeout, every, what)


def code(e):
    return e.value.response["Error"]["Code"]


def message(e):
    return e.value.response["Error"]["Message"]


def describe(ec2, iid):
    out = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    return out[0]["Instances"][0]


def options(ec2, iid):
    return describe(ec2, iid)["MetadataOptions"]


def all_instance_ids(ec2):
    return sorted(i["InstanceId"] for r in
                  ec2.describe_instances()["Reservations"]
                  for i in r["Instances"])


def launch(ec2, ami, **kw):
    args = dict(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t1.micro")
    args.update(kw)
    return ec2.run_instances(**args)["Instances"][0]


def wait_applied(ec2, iid, timeout=60):
    return wait_for(f"{iid} metadata options applied", lambda: (
        options(ec2, iid) if options(ec2, iid)["State"] == "applied"
        else None), timeout)


def end(ec2, ids):
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(ec2, ids, "terminated")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("mdopts"), n_nodes=1, node_cores=4,
              node_memory_mb=2048, cluster="zone-m").start()
    c.ami, _, _ = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


# ---- RunInstances MetadataOptions, DescribeInstances ----

def test_defaults_and_options_at_launch(cloud, tmp_path):
    ec2 = cloud.ec2()
    plain = launch(ec2, cloud.ami)
    # RunInstances answers with the options, not yet applied.
    assert plain["MetadataOptions"] == dict(DEFAULTS, State="pending")
    aws = cloud.aws_ec2(tmp_path)
    out = json.loads(aws(
        "run-instances", "--image-id", cloud.ami, "--instance-type",
        "t1.micro", "--metadata-options",
        "HttpTokens=required,HttpPutResponseHopLimit=3,HttpEndpoint=disabled,"
        "HttpProtocolIpv6=enabled,InstanceMetadataTags=enabled").stdout)
    tuned = out["Instances"][0]
    want = {"HttpTokens": "required", "HttpPutResponseHopLimit": 3,
            "HttpEndpoint": "disabled", "HttpProtocolIpv6": "enabled",
            "InstanceMetadataTags": "enabled"}
    assert tuned["MetadataOptions"] == dict(want, State="pending")
    # Some given, the rest AWS's defaults.
    partial = launch(ec2, cloud.ami, MetadataOptions={
        "HttpTokens": "required", "HttpPutResponseHopLimit": 64})
    ids = [plain["InstanceId"], tuned["InstanceId"], partial["InstanceId"]]
    # Applied once the cluster took the launch with them.
    assert wait_applied(ec2, ids[0]) == dict(DEFAULTS, State="applied")
    assert wait_applied(ec2, ids[1]) == dict(want, State="applied")
    assert wait_applied(ec2, ids[2]) == dict(
        DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=64,
        State="applied")
    out = json.loads(aws("describe-instances", "--instance-ids",
                         ids[1]).stdout)
    assert out["Reservations"][0]["Instances"][0]["MetadataOptions"] == \
        dict(want, State="applied")

    # The filters, with aws-cli and boto3.
    def found(*filters):
        out = ec2.describe_instances(Filters=[
            {"Name": n, "Values": v} for n, v in filters])
        return sorted(i["InstanceId"] for r in out["Reservations"]
                      for i in r["Instances"] if i["InstanceId"] in ids)
    assert found(("metadata-options.http-tokens", ["required"])) == \
        sorted(ids[1:])
    assert found(("metadata-options.http-tokens", ["optional"])) == [ids[0]]
    assert found(("metadata-options.http-put-response-hop-limit",
                  ["3", "64"])) == sorted(ids[1:])
    assert found(("metadata-options.http-put-response-hop-limit",
                  ["1"])) == [ids[0]]
    assert found(("metadata-options.http-endpoint", ["disabled"])) == \
        [ids[1]]
    assert found(("metadata-options.http-endpoint", ["enabled"])) == \
        sorted([ids[0], ids[2]])
    assert found(("metadata-options.http-protocol-ipv6", ["enabled"])) == \
        [ids[1]]
    assert found(("metadata-options.instance-metadata-tags",
                  ["enabled"])) == [ids[1]]
    assert found(("metadata-options.instance-metadata-tags", ["disabled"]),
                 ("metadata-options.http-tokens", ["req*"])) == [ids[2]]
    out = json.loads(aws(
        "describe-instances", "--filters",
        "Name=metadata-options.http-protocol-ipv6,Values=disabled",
        "Name=metadata-options.http-put-response-hop-limit,Values=1",
        "--query", "Reservations[].Instances[].InstanceId").stdout)
    assert [i for i in out if i in ids] == [ids[0]]
    end(ec2, ids)


def test_invalid_options_launch_nothing(cloud):
    ec2 = cloud.ec2()
    before = all_instance_ids(ec2)
    on_node = node_files(cloud, "nc1")
    cases = [
        ({"HttpTokens": "maybe"}, "HttpTokens", "maybe",
         "Specify either 'optional' or 'required' and try again."),
        ({"HttpTokens": "Required"}, "HttpTokens", "Required",
         "Specify either 'optional' or 'required' and try again."),
        ({"HttpEndpoint": "on"}, "HttpEndpoint", "on",
         "Specify either 'enabled' or 'disabled' and try again."),
        ({"HttpEndpoint": ""}, "HttpEndpoint", "",
         "Specify either 'enabled' or 'disabled' and try again."),
        ({"HttpProtocolIpv6": "yes"}, "HttpProtocolIpv6", "yes",
         "Specify either 'enabled' or 'disabled' and try again."),
        ({"InstanceMetadataTags": "true"}, "InstanceMetadataTags", "true",
         "Specify either 'enabled' or 'disabled' and try again."),
        ({"HttpPutResponseHopLimit": 0}, "HttpPutResponseHopLimit", "0",
         "Specify a value between 1 and 64 and try again."),
        ({"HttpPutResponseHopLimit": 65}, "HttpPutResponseHopLimit", "65",
         "Specify a value between 1 and 64 and try again."),
        ({"HttpPutResponseHopLimit": -1}, "HttpPutResponseHopLimit", "-1",
         "Specify a value between 1 and 64 and try again."),
    ]
    for opts, name, value, hint in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            launch(ec2, cloud.ami, MetadataOptions=opts)
        assert code(e) == "InvalidParameterValue", opts
        assert message(e) == \
            f"A value of '{value}' is not valid for {name}. {hint}", opts
    # What boto3 would not send: not an integer, by hand.
    st, body = cloud.raw_ec2({
        "Action": "RunInstances", "ImageId": cloud.ami, "MinCount": "1",
        "MaxCount": "1", "MetadataOptions.HttpPutResponseHopLimit": "two"})
    assert st == 400 and "<Code>InvalidParameterValue</Code>" in body, body
    assert "A value of 'two' is not valid for HttpPutResponseHopLimit" in \
        html.unescape(body)
    # A bad value among good ones refuses the whole launch; DryRun says the
    # value's error, not DryRunOperation.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        launch(ec2, cloud.ami, DryRun=True, MetadataOptions={
            "HttpTokens": "required", "HttpEndpoint": "off"})
    assert code(e) == "InvalidParameterValue"
    assert all_instance_ids(ec2) == before
    assert node_files(cloud, "nc1") == on_node


# ---- ModifyInstanceMetadataOptions ----

def test_modify_changes_only_what_is_given(cloud, tmp_path):
    ec2 = cloud.ec2()
    iid = launch(ec2, cloud.ami, MetadataOptions={
        "HttpPutResponseHopLimit": 2})["InstanceId"]
    wait_state(ec2, [iid], "running")
    wait_applied(ec2, iid)
    out = ec2.modify_instance_metadata_options(InstanceId=iid,
                                               HttpTokens="required")
    assert out["InstanceId"] == iid
    assert out["InstanceMetadataOptions"] == dict(
        DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=2,
        State="pending")
    got = options(ec2, iid)
    assert {k: v for k, v in got.items() if k != "State"} == dict(
        DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=2)
    # aws-cli's spelling; then each option alone.
    aws = cloud.aws_ec2(tmp_path)
    out = json.loads(aws("modify-instance-metadata-options", "--instance-id",
                         iid, "--http-put-response-hop-limit", "7",
                         "--instance-metadata-tags", "enabled").stdout)
    assert out["InstanceMetadataOptions"] == dict(
        DEFAULTS, HttpTokens="required", HttpPutResponseHopLimit=7,
        InstanceMetadataTags="enabled", State="pending")
    ec2.modify_instance_metadata_options(InstanceId=iid,
                                         HttpEndpoint="disabled")
    ec2.modify_instance_metadata_options(InstanceId=iid,
                                         HttpProtocolIpv6="enabled")
    want = {"HttpTokens": "required", "HttpPutResponseHopLimit": 7,
            "HttpEndpoint": "disabled", "HttpProtocolIpv6": "enabled",
            "InstanceMetadataTags": "enabled"}
    got = options(ec2, iid)
    assert got["State"] in ("pending", "applied")
    assert {k: v for k, v in got.items() if k != "State"} == want
    # Nothing given: nothing changes (the answer still says pending).
    out = ec2.modify_instance_metadata_options(InstanceId=iid)
    assert out["InstanceMetadataOptions"] == dict(want, State="pending")
    # DryRun changes nothing.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_instance_metadata_options(InstanceId=iid, DryRun=True,
                                             HttpTokens="optional")
    assert code(e) == "DryRunOperation"
    assert options(ec2, iid)["HttpTokens"] == "required"
    # Back to the defaults, and the filters follow.
    ec2.modify_instance_metadata_options(
        InstanceId=iid, HttpTokens="optional", HttpPutResponseHopLimit=1,
        HttpEndpoint="enabled", HttpProtocolIpv6="disabled",
        InstanceMetadataTags="disabled")
    got = options(ec2, iid)
    assert {k: v for k, v in got.items() if k != "State"} == DEFAULTS
    out = ec2.describe_instances(Filters=[
        {"Name": "metadata-options.http-tokens", "Values": ["required"]},
        {"Name": "instance-id", "Values": [iid]}])
    assert out["Reservations"] == []
    end(ec2, [iid])


def test_modify_errors(cloud):
    ec2 = cloud.ec2()
    iid = launch(ec2, cloud.ami)["InstanceId"]

    def err(**kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.modify_instance_metadata_options(**kw)
        return code(e), message(e)
    assert err(InstanceId="i-0123456789abcdef0") == (
        "InvalidInstanceID.NotFound",
        "The instance ID 'i-0123456789abcdef0' does not exist")
    assert err(InstanceId="i-nothex") == (
        "InvalidInstanceID.Malformed", 'Invalid id: "i-nothex"')
    assert err(InstanceId="vol-0123456789abcdef0")[0] == \
        "InvalidInstanceID.Malformed"
    assert err(InstanceId=iid, HttpTokens="sometimes") == (
        "InvalidParameterValue",
        "A value of 'sometimes' is not valid for HttpTokens. Specify either "
        "'optional' or 'required' and try again.")
    assert err(InstanceId=iid, HttpPutResponseHopLimit=100)[0] == \
        "InvalidParameterValue"
    assert err(InstanceId=iid, HttpEndpoint="enabled",
               InstanceMetadataTags="")[0] == "InvalidParameterValue"
    st, body = cloud.raw_ec2({"Action": "ModifyInstanceMetadataOptions",
                              "HttpTokens": "required"})
    assert st == 400 and "<Code>MissingParameter</Code>" in body, body
    # Nothing of that changed anything.
    assert {k: v for k, v in options(ec2, iid).items() if k != "State"} == \
        DEFAULTS
    # Only the caller's instances: another account's is not found.
    out = sh(KOALA_BIN, "account", "create", "mallory",
             "--data-dir", cloud.dir).stdout
    kv = dict(line.split("=", 1) for line in out.split())
    other = cloud.ec2(kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.modify_instance_metadata_options(InstanceId=iid,
                                               HttpTokens="required")
    assert code(e) == "InvalidInstanceID.NotFound"
    assert options(ec2, iid)["HttpTokens"] == "optional"
    # Terminated: refused, as EC2 refuses it.
    end(ec2, [iid])
    c, m = err(InstanceId=iid, HttpTokens="required")
    assert c == "IncorrectInstanceState", m
    assert iid in m
    assert options(ec2, iid)["HttpTokens"] == "optional"


# ---- user data: EC2's limit and bytes through unchanged ----

def user_data_attr(ec2, iid):
    out = ec2.describe_instance_attribute(InstanceId=iid,
                                          Attribute="userData")
    return out["UserData"].get("Value")


def test_user_data_bytes_and_limit(cloud, tmp_path):
    ec2 = cloud.ec2()
    before = all_instance_ids(ec2)
    on_node = node_files(cloud, "nc1")
    script = b"#!/bin/sh\necho 'hello from user data'\n" * 40
    gz = gzip.compress(script)
    blob = os.urandom(4096) + bytes(range(256))
    # boto3 base64-encodes bytes itself; aws-cli reads fileb:// as bytes.
    a = launch(ec2, cloud.ami, UserData=gz)["InstanceId"]
    (tmp_path / "blob.bin").write_bytes(blob)
    aws = cloud.aws_ec2(tmp_path)
    out = json.loads(aws("run-instances", "--image-id", cloud.ami,
                         "--instance-type", "t1.micro", "--user-data",
                         f"fileb://{tmp_path / 'blob.bin'}").stdout)
    b = out["Instances"][0]["InstanceId"]
    # Exactly 16 KiB of decoded bytes is allowed.
    limit = os.urandom(16 * 1024)
    c = launch(ec2, cloud.ami, UserData=limit)["InstanceId"]
    assert base64.b64decode(user_data_attr(ec2, a)) == gz
    assert gzip.decompress(base64.b64decode(user_data_attr(ec2, a))) == script
    assert base64.b64decode(user_data_attr(ec2, b)) == blob
    assert base64.b64decode(user_data_attr(ec2, c)) == limit
    launched = [a, b, c]
    assert sorted(before + launched) == all_instance_ids(ec2)
    # One byte more is refused, in EC2's words, with aws-cli and boto3, and
    # nothing is launched.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        launch(ec2, cloud.ami, UserData=limit + b"x")
    assert code(e) == "InvalidParameterValue"
    assert message(e) == "User data is limited to 16384 bytes"
    big = gzip.compress(os.urandom(16 * 1024 + 1))  # gzip is not unpacked:
    assert len(big) > 16 * 1024                      # its own bytes count
    (tmp_path / "big.gz").write_bytes(big)
    p = aws("run-instances", "--image-id", cloud.ami, "--instance-type",
            "t1.micro", "--user-data", f"fileb://{tmp_path / 'big.gz'}",
            check=False)
    assert p.returncode != 0
    assert "InvalidParameterValue" in p.stderr
    assert "User data is limited to 16384 bytes" in p.stderr
    st, body = cloud.raw_ec2({"Action": "RunInstances", "ImageId": cloud.ami,
                              "MinCount": "1", "MaxCount": "1",
                              "UserData": "not base64!"})
    assert st == 400 and "<Code>InvalidParameterValue</Code>" in body
    assert "Invalid BASE64 encoding of user data." in html.unescape(body)
    assert sorted(before + launched) == all_instance_ids(ec2)
    assert set(node_files(cloud, "nc1")) - set(on_node) <= set(launched)
    end(ec2, launched)


# ---- the push to the real CC ----

def test_changes_reach_the_cc(cloud):
    """pending at once, applied once koala-cc acknowledged SetInstanceMetadata
    (after ModifyInstanceMetadataOptions, and after new user data)."""
    ec2 = cloud.ec2()
    iid = launch(ec2, cloud.ami, UserData=b"first")["InstanceId"]
    wait_state(ec2, [iid], "running")
    wait_applied(ec2, iid)
    out = ec2.modify_instance_metadata_options(InstanceId=iid,
                                               HttpTokens="required")
    assert out["InstanceMetadataOptions"]["State"] == "pending"
    assert wait_applied(ec2, iid)["HttpTokens"] == "required"
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    gz = gzip.compress(b"x")
    ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": gz})
    assert options(ec2, iid)["State"] == "pending"
    wait_applied(ec2, iid)
    assert base64.b64decode(user_data_attr(ec2, iid)) == gz
    end(ec2, [iid])


# ---- the push, against a TEST DOUBLE of the CC ----

class FakeCC:
    """TEST DOUBLE of koala-cc for the CLC's side of the push: places
    instances at once (state running on node fk1) and records every
    RunInstances and SetInstanceMetadata.  `has_set` False answers
    SetInstanceMetadata with InvalidAction, as a CC without it does;
    `set_delay` and `run_delay` hold those answers that long."""

    def __init__(self, cloud, name):
        self.name = name
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/"
        self.lock = threading.Lock()
        self.instances = {}
        self.runs = []
        self.sets = []  # (instance id, metadata dict), as acknowledged
        self.set_calls = 0
        self.has_set = False
        self.set_delay = 0.0
        self.run_delay = 0.0
        sh(KOALA_BIN, "register", "cluster", name, "--endpoint", self.url,
           "--data-dir", cloud.dir)
        cert, key = cloud.certs("cluster", name)
        self.server = SoapServer(self.port, cert, key, cloud.ca, CC_NS,
                                 self.handle)

    def record(self, inst):
        return [("instanceId", inst["id"]),
                ("reservationId", inst["reservation"]),
                ("ownerId", inst["owner"]),
                ("launchIndex", inst["index"]), ("state", inst["state"]),
                ("instanceType", "t1.micro"), ("imageId", inst["image"]),
                ("macAddress", inst["mac"]), ("privateIp", inst["ip"]),
                ("launchTime", "2026-11-25T08:41:16.000Z"),
                ("node", "fk1"), ("hypervisor", "tcg")]

    def handle(self, op, el, req):
        if op == "SetInstanceMetadata":
            return self.set_metadata(el)
        if op == "RunInstances":
            time.sleep(self.run_delay)
        with self.lock:
            if op == "DescribeResources":
                return [("resource", [("instanceType", text(t, "name")),
                                      ("max", 16), ("available", 16)])
                        for t in children(el, "instanceType")]
            if op == "ConfigureNodes":
                return []
            if op == "DescribeInstances":
                return [("instance", self.record(i))
                        for i in self.instances.values()]
            if op == "RunInstances":
                self.runs.append(to_dict(el))
                out = []
                for n in children(el, "instance"):
                    iid = text(n, "instanceId")
                    k = len(self.instances) + 2
                    inst = self.instances.setdefault(iid, {
                        "id": iid, "reservation": text(el, "reservationId"),
                        "owner": text(el, "ownerId"),
                        "index": text(n, "launchIndex"), "state": "running",
                        "image": text(child(el, "image"), "id"),
                        "mac": f"d0:0d:00:00:00:{k:02x}",
                        "ip": f"10.99.0.{k}"})
                    out.append(("instance", self.record(inst)))
                return out
            states = {"TerminateInstances": "terminated",
                      "StopInstances": "stopped",
                      "StartInstances": "running"}
            if op in states:
                out = []
                for iid in [(i.text or "").strip()
                            for i in children(el, "instanceId")]:
                    if iid in self.instances:
                        self.instances[iid]["state"] = states[op]
                        out.append(("instance",
                                    self.record(self.instances[iid])))
                return out
        raise SoapFault("InvalidAction", f"{op} is not an operation of the "
                        "cluster controller")

    def set_metadata(self, el):
        with self.lock:
            self.set_calls += 1
            has_set, delay = self.has_set, self.set_delay
        time.sleep(delay)
        if not has_set:
            raise SoapFault("InvalidAction", "SetInstanceMetadata is not an "
                            "operation of the cluster controller")
        iid = text(el, "instanceId")
        md = child(el, "metadata")
        with self.lock:
            if iid not in self.instances:
                raise SoapFault("InvalidInstanceID.NotFound", iid)
            self.sets.append((iid, to_dict(md),
                              [c.tag.rsplit("}", 1)[-1] for c in md]))
        return [("instanceId", iid)]

    def last_set(self, iid):
        with self.lock:
            got = [md for i, md, _ in self.sets if i == iid]
        return got[-1] if got else None


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("mdfake"), with_cluster=False).start()
    c.ami, _, _ = c.upload_images()
    c.fake = FakeCC(c, "zone-f")
    c.fake.server.start()
    try:
        ec2 = c.ec2()
        wait_for("the fake cluster available", lambda: any(
            z["ZoneName"] == "zone-f" and z["State"] == "available"
            for z in ec2.describe_availability_zones()["AvailabilityZones"]))
        yield c
    finally:
        rcs = c.stop()
        c.fake.server.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def test_launch_carries_the_metadata(fake):
    ec2 = fake.ec2()
    r = ec2.run_instances(ImageId=fake.ami, MinCount=2, MaxCount=2,
                          InstanceType="t1.micro", UserData=b"\x1f\x8bhi",
                          MetadataOptions={"HttpTokens": "required",
                                           "HttpPutResponseHopLimit": 5,
                                           "InstanceMetadataTags": "enabled"})
    ids = sorted(i["InstanceId"] for i in r["Instances"])
    for iid in ids:
        assert wait_applied(ec2, iid)["HttpTokens"] == "required"
    run = next(x for x in fake.fake.runs
               if x["reservationId"] == r["ReservationId"])
    # cc.wsdl's instanceMetadata: the CLC's region, the groups ("default":
    # the CLC keeps none yet), the options; the user data is RunInstances'
    # own element.
    assert run["metadata"] == {
        "region": "koala-1", "securityGroup": "default",
        "httpTokens": "required", "httpEndpoint": "enabled",
        "httpPutResponseHopLimit": "5", "instanceMetadataTags": "enabled"}
    assert base64.b64decode(run["userData"]) == b"\x1f\x8bhi"
    # Nothing more to tell the CC.
    assert fake.fake.set_calls == 0
    end(ec2, ids)


def test_push_waits_for_the_cc_and_survives_kill9(fake):
    ec2 = fake.ec2()
    cc = fake.fake
    iid = launch(ec2, fake.ami, UserData=b"one")["InstanceId"]
    wait_applied(ec2, iid)
    # A CC without SetInstanceMetadata: the change stays pending and is
    # offered again on every poll; the API answers at once all the same.
    cc.set_delay = 3.0
    t0 = time.monotonic()
    out = ec2.modify_instance_metadata_options(
        InstanceId=iid, HttpTokens="required", HttpPutResponseHopLimit=9)
    assert time.monotonic() - t0 < 2.0
    assert out["InstanceMetadataOptions"]["State"] == "pending"
    wait_for("two refused pushes", lambda: cc.set_calls >= 2, 30)
    cc.set_delay = 0.0
    assert options(ec2, iid)["State"] == "pending"
    ec2.modify_instance_metadata_options(InstanceId=iid,
                                         HttpEndpoint="disabled")
    # kill -9 of the CLC: the change is still owed to the CC afterwards.
    clc = fake.daemons["clc"]
    assert clc.stop(signal.SIGKILL) == -signal.SIGKILL
    clc.start()
    calls = cc.set_calls
    wait_for("pushed again after the restart",
             lambda: cc.set_calls > calls, 30)
    assert options(ec2, iid)["State"] == "pending"
    # The CC learns the operation: the last version is applied, whole.
    cc.has_set = True
    got = wait_applied(ec2, iid, 30)
    assert got == dict(DEFAULTS, HttpTokens="required",
                       HttpPutResponseHopLimit=9, HttpEndpoint="disabled",
                       State="applied")
    assert cc.last_set(iid) == {
        "region": "koala-1", "securityGroup": "default",
        "httpTokens": "required", "httpEndpoint": "disabled",
        "httpPutResponseHopLimit": "9", "instanceMetadataTags": "disabled",
        "userData": base64.b64encode(b"one").decode()}
    # In the WSDL's order.
    assert cc.sets[-1][2] == ["region", "securityGroup", "httpTokens",
                              "httpEndpoint", "httpPutResponseHopLimit",
                              "instanceMetadataTags", "userData"]
    # Applied: not sent again.
    n = len(cc.sets)
    time.sleep(5)
    assert len(cc.sets) == n
    end(ec2, [iid])


def test_quick_changes_end_with_the_last(fake):
    ec2 = fake.ec2()
    cc = fake.fake
    cc.has_set = True
    iid = launch(ec2, fake.ami)["InstanceId"]
    wait_applied(ec2, iid)
    for hop in range(2, 12):
        ec2.modify_instance_metadata_options(InstanceId=iid,
                                             HttpPutResponseHopLimit=hop)
    got = wait_applied(ec2, iid, 30)
    assert got["HttpPutResponseHopLimit"] == 11
    assert cc.last_set(iid)["httpPutResponseHopLimit"] == "11"
    end(ec2, [iid])


def test_user_data_change_is_pushed(fake):
    ec2 = fake.ec2()
    cc = fake.fake
    cc.has_set = True
    iid = launch(ec2, fake.ami, UserData=b"before")["InstanceId"]
    wait_applied(ec2, iid)
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    n = len(cc.sets)
    blob = gzip.compress(os.urandom(1000))
    ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": blob})
    wait_applied(ec2, iid, 30)
    assert base64.b64decode(cc.last_set(iid)["userData"]) == blob
    assert len(cc.sets) > n
    # Removed: the CC is told there is none.
    st, body = fake.raw_ec2({"Action": "ModifyInstanceAttribute",
                             "InstanceId": iid, "UserData.Value": ""})
    assert st == 200, body
    wait_applied(ec2, iid, 30)
    last = cc.last_set(iid)
    assert "userData" not in last and last["noUserData"] == "true"
    assert user_data_attr(ec2, iid) is None
    end(ec2, [iid])


def test_change_before_the_cluster_placed_it(fake):
    """Changed while its launch is on the way: the launch carries what
    RunInstances said, and the change follows once the CC placed it."""
    ec2 = fake.ec2()
    cc = fake.fake
    cc.has_set = True
    cc.run_delay = 3.0
    try:
        r = ec2.run_instances(ImageId=fake.ami, MinCount=2, MaxCount=2,
                              InstanceType="t1.micro")
        ids = sorted(i["InstanceId"] for i in r["Instances"])
        ec2.modify_instance_metadata_options(InstanceId=ids[1],
                                             HttpEndpoint="disabled")
    finally:
        cc.run_delay = 0.0
    assert wait_applied(ec2, ids[0]) == dict(DEFAULTS, State="applied")
    assert wait_applied(ec2, ids[1]) == dict(DEFAULTS,
                                             HttpEndpoint="disabled",
                                             State="applied")
    run = next(x for x in cc.runs if x["reservationId"] == r["ReservationId"])
    assert run["metadata"]["httpEndpoint"] == "enabled"
    assert cc.last_set(ids[0]) is None
    assert cc.last_set(ids[1])["httpEndpoint"] == "disabled"
    assert cc.last_set(ids[1])["noUserData"] == "true"
    end(ec2, ids)
