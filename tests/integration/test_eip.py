"""Elastic IPs end to end (docs/network.md "Elastic IPs and outbound
NAT"): the EC2 API surface and its errors with boto3 (addresses of other
accounts, released twice, wrong association ids, the quota, filters,
tags; nothing changed after a bad call), then real traffic: a cloud whose
cluster router has an uplink to a namespace standing for the outside
world (Cloud(outside=True)), two busybox guests, and the outside reaching
a guest's :8080 at its public address, the guest reaching the outside
with its public address as source, hairpin between guests, disassociate
cutting at once, reassociation, the metadata's public-ipv4 following, a
CC killed with -9 and its NAT table flushed rebuilding it at start, a CLC
killed with -9 keeping what it acknowledged, and terminate freeing the
association.

Security groups (another branch) will filter ingress to guests: the
traffic tests call authorize_8080() where they need the outside to reach
a guest, which is where the rule goes once groups exist."""
import ipaddress
import signal
import socket
import subprocess
import threading
import time

import botocore.exceptions
import pytest

from cloud import (IMAGES, OUTSIDE_HOST, OUTSIDE_ROUTER, PUBLIC_POOL, REGION,
                   Cloud)
from conftest import KOALA_BIN, sh, wait_until
from test_compute import wait_state

QUOTA = 3
POOL = ipaddress.ip_network(PUBLIC_POOL)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("eip"), n_nodes=1, node_cores=4,
              node_memory_mb=4096, outside=True,
              clc_args=["--address-quota", str(QUOTA),
                        "--poll-interval-ms", "500"]).start()
    c.ami, _, _ = c.upload_images()
    # The CLC learns the pool on its next poll of the cluster.
    wait_until(lambda: "100.64.112.16" in sh(
        KOALA_BIN, "addresses", "--data-dir", c.dir).stdout, 30, 0.3,
        "the pool known to the CLC")
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def bob(cloud):
    return cloud.ec2(*cloud.create_account("bob"))


def code(e):
    return e.value.response["Error"]["Code"]


def addresses(ec2, **kw):
    return ec2.describe_addresses(**kw)["Addresses"]


def release_all(ec2):
    for a in addresses(ec2):
        if a.get("AssociationId"):
            ec2.disassociate_address(AssociationId=a["AssociationId"])
        ec2.release_address(AllocationId=a["AllocationId"])


# ---- the API ----

def test_allocate_describe_release(cloud):
    ec2 = cloud.ec2()
    a = ec2.allocate_address(Domain="vpc", TagSpecifications=[{
        "ResourceType": "elastic-ip",
        "Tags": [{"Key": "Name", "Value": "web"}]}])
    assert a["AllocationId"].startswith("eipalloc-")
    assert len(a["AllocationId"]) == len("eipalloc-") + 17
    assert ipaddress.ip_address(a["PublicIp"]) in POOL
    assert a["Domain"] == "vpc"
    assert a["PublicIpv4Pool"] == "amazon"
    assert a["NetworkBorderGroup"] == cloud.cluster
    got = addresses(ec2, AllocationIds=[a["AllocationId"]])
    assert len(got) == 1 and got[0]["PublicIp"] == a["PublicIp"]
    assert got[0]["Tags"] == [{"Key": "Name", "Value": "web"}]
    assert "InstanceId" not in got[0] and "AssociationId" not in got[0]
    assert addresses(ec2, PublicIps=[a["PublicIp"]])[0]["AllocationId"] == \
        a["AllocationId"]
    # A second one without Domain is vpc too; filters pick each.
    b = ec2.allocate_address()
    assert b["Domain"] == "vpc" and b["PublicIp"] != a["PublicIp"]
    ec2.create_tags(Resources=[b["AllocationId"]],
                    Tags=[{"Key": "Name", "Value": "db"}])
    tags = ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [b["AllocationId"]]}])["Tags"]
    assert tags == [{"Key": "Name", "ResourceId": b["AllocationId"],
                     "ResourceType": "elastic-ip", "Value": "db"}]
    for f, v, want in [
            ("tag:Name", "web", a), ("tag:Name", "db", b),
            ("public-ip", b["PublicIp"], b),
            ("allocation-id", a["AllocationId"], a),
            ("domain", "vpc", None),
            ("network-border-group", cloud.cluster, None)]:
        got = addresses(ec2, Filters=[{"Name": f, "Values": [v]}])
        ids = sorted(x["AllocationId"] for x in got)
        if want is None:
            assert ids == sorted([a["AllocationId"], b["AllocationId"]])
        else:
            assert ids == [want["AllocationId"]], (f, v)
    assert addresses(ec2, Filters=[{"Name": "instance-id",
                                    "Values": ["i-0123456789abcdef0"]}]) == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_addresses(Filters=[{"Name": "nope", "Values": ["x"]}])
    assert code(e) == "InvalidParameterValue"
    # Release (by id and by address); twice is NotFound.
    ec2.release_address(AllocationId=a["AllocationId"])
    ec2.release_address(PublicIp=b["PublicIp"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.release_address(AllocationId=a["AllocationId"])
    assert code(e) == "InvalidAllocationID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_addresses(AllocationIds=[a["AllocationId"]])
    assert code(e) == "InvalidAllocationID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_addresses(PublicIps=[b["PublicIp"]])
    assert code(e) == "InvalidAddress.NotFound"
    assert addresses(ec2) == []
    # The tags went with it.
    assert ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [b["AllocationId"]]}])["Tags"] == []


def test_quota(cloud):
    ec2 = cloud.ec2()
    got = [ec2.allocate_address(Domain="vpc") for _ in range(QUOTA)]
    before = addresses(ec2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.allocate_address(Domain="vpc")
    assert code(e) == "AddressLimitExceeded"
    assert addresses(ec2) == before
    ec2.release_address(AllocationId=got[0]["AllocationId"])
    ec2.release_address(AllocationId=ec2.allocate_address()["AllocationId"])
    release_all(ec2)


def test_other_accounts_addresses(cloud, bob):
    ec2 = cloud.ec2()
    mine = ec2.allocate_address(Domain="vpc")
    try:
        before = addresses(ec2)
        assert addresses(bob) == []
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bob.describe_addresses(AllocationIds=[mine["AllocationId"]])
        assert code(e) == "InvalidAllocationID.NotFound"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bob.describe_addresses(PublicIps=[mine["PublicIp"]])
        assert code(e) == "InvalidAddress.NotFound"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bob.release_address(AllocationId=mine["AllocationId"])
        assert code(e) == "InvalidAllocationID.NotFound"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bob.release_address(PublicIp=mine["PublicIp"])
        assert code(e) == "AuthFailure"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bob.disassociate_address(PublicIp=mine["PublicIp"])
        assert code(e) == "AuthFailure"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bob.create_tags(Resources=[mine["AllocationId"]],
                            Tags=[{"Key": "k", "Value": "v"}])
        assert code(e) == "InvalidAllocationID.NotFound"
        # Bob's own comes from the same pool, never the same address.
        his = bob.allocate_address()
        assert his["PublicIp"] != mine["PublicIp"]
        assert [x["AllocationId"] for x in addresses(bob)] == \
            [his["AllocationId"]]
        bob.release_address(AllocationId=his["AllocationId"])
        assert addresses(ec2) == before
    finally:
        release_all(ec2)


def test_bad_input_changes_nothing(cloud):
    ec2 = cloud.ec2()
    a = ec2.allocate_address(Domain="vpc")
    try:
        before = addresses(ec2)
        bad = [
            (ec2.allocate_address, {"Domain": "classic"},
             "InvalidParameterValue"),
            (ec2.allocate_address, {"NetworkBorderGroup": "zone-x"},
             "InvalidParameterValue"),
            (ec2.allocate_address, {"Address": "198.51.100.7"},
             "InvalidAddress.NotFound"),
            (ec2.release_address, {"AllocationId": "eipalloc-nothex"},
             "InvalidAllocationID.NotFound"),
            (ec2.release_address, {"AllocationId": "eipalloc-" + "0" * 17},
             "InvalidAllocationID.NotFound"),
            (ec2.release_address, {"PublicIp": "100.64.112.300"},
             "InvalidParameterValue"),
            (ec2.release_address, {"PublicIp": "198.51.100.7"},
             "InvalidAddress.NotFound"),
            (ec2.release_address, {}, "MissingParameter"),
            (ec2.release_address, {"AllocationId": a["AllocationId"],
                                   "PublicIp": a["PublicIp"]},
             "InvalidParameterCombination"),
            (ec2.disassociate_address, {"AssociationId": "eipassoc-" +
                                        "0" * 17},
             "InvalidAssociationID.NotFound"),
            (ec2.disassociate_address, {"AssociationId": "bogus"},
             "InvalidAssociationID.NotFound"),
            (ec2.disassociate_address, {"PublicIp": a["PublicIp"]},
             "InvalidAssociationID.NotFound"),
            (ec2.associate_address, {"AllocationId": a["AllocationId"],
                                     "InstanceId": "i-0123456789abcdef0"},
             "InvalidInstanceID.NotFound"),
            (ec2.associate_address, {"AllocationId": a["AllocationId"],
                                     "InstanceId": "i-zz"},
             "InvalidInstanceID.Malformed"),
            (ec2.associate_address, {"AllocationId": a["AllocationId"]},
             "MissingParameter"),
        ]
        for fn, kw, want in bad:
            with pytest.raises(botocore.exceptions.ClientError) as e:
                fn(**kw)
            assert code(e) == want, (fn, kw, e.value.response["Error"])
        assert addresses(ec2) == before
        # DryRun answers and changes nothing either.
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.allocate_address(DryRun=True)
        assert code(e) == "DryRunOperation"
        assert addresses(ec2) == before
    finally:
        release_all(ec2)


# ---- traffic ----

def outside(cloud, *cmd, check=False, timeout=15):
    return cloud.netns_exec(cloud.outside_ns, *cmd, check=check,
                            timeout=timeout)


def page(cloud, ip, wait=2):
    """The guest page at ip:8080 as the outside sees it, or None."""
    r = outside(cloud, "curl", "-s", "-m", str(wait), f"http://{ip}:8080/")
    return r.stdout if r.returncode == 0 else None


def authorize_8080(ec2):
    """The default group lets anyone reach tcp/8080 (the outside through
    the public addresses, and a guest through another's, whose source the
    hairpin makes its own public address), as a user opens a web port."""
    try:
        ec2.authorize_security_group_ingress(
            GroupName="default", IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
                 "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "InvalidPermission.Duplicate":
            raise


class PeerRecorder:
    """A TCP server in the outside namespace that records the address each
    connection comes from (python3, started and ended by PID)."""

    SCRIPT = (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
        " socket.SO_REUSEADDR,1)\n"
        f"s.bind(('{OUTSIDE_HOST}',9000)); s.listen(8)\n"
        "print('ready',flush=True)\n"
        "while True:\n"
        "    c,a=s.accept(); print(a[0],flush=True); c.sendall(b'hi\\n');"
        " c.close()\n")

    def __init__(self, cloud):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cloud.outside_ns, "/usr/bin/python3",
             "-c", self.SCRIPT], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.peers = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.peers.append(line.strip())

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def recorder(cloud):
    r = PeerRecorder(cloud)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def pair(cloud):
    ec2 = cloud.ec2()
    authorize_8080(ec2)
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=cloud.ami, MinCount=2, MaxCount=2,
        InstanceType="m1.small")["Instances"]]
    got = wait_state(ec2, ids, "running", timeout=240)
    ips = [got[i]["PrivateIpAddress"] for i in ids]

    def answers(ip):
        try:
            return cloud.guest_run(ip, "echo ok", 5).output.strip() == "ok"
        except Exception:
            return False
    for ip in ips:
        wait_until(lambda: answers(ip), 240, 1, f"{ip} answers")
    return {"a": (ids[0], ips[0]), "b": (ids[1], ips[1])}


def connect_out(cloud, ip, recorder):
    """From the guest at ip, a TCP connection to the outside recorder:
    the source address it saw."""
    n = len(recorder.peers)
    r = cloud.guest_run(ip, f"echo | nc -w 3 {OUTSIDE_HOST} 9000", 10)
    assert "hi" in r.output, r
    wait_until(lambda: len(recorder.peers) > n, 5, 0.05, "peer recorded")
    return recorder.peers[n]


def metadata(cloud, ip, path):
    r = cloud.guest_run(
        ip, f"wget -q -O - http://169.254.169.254/latest/meta-data/{path}"
            " 2>/dev/null || echo NOTFOUND", 10)
    return r.output.strip()


def instance(ec2, iid):
    return ec2.describe_instances(
        InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def nat_table(cloud):
    return cloud.netns_exec(cloud.cluster_ns, "nft", "list", "table", "ip",
                            "koala_cc_default", check=False).stdout


def test_associate_reaches_the_guest_from_outside(cloud, pair, recorder):
    ec2 = cloud.ec2()
    ia, ipa = pair["a"]
    ib, ipb = pair["b"]
    # Without a public address: unreachable from outside; out through the
    # router's masquerade.
    assert connect_out(cloud, ipa, recorder) == OUTSIDE_ROUTER
    assert metadata(cloud, ipa, "public-ipv4") == "NOTFOUND"
    assert "public-ipv4" not in metadata(cloud, ipa, "")
    p1 = ec2.allocate_address(Domain="vpc")
    # an unassociated public address answers nothing
    assert page(cloud, p1["PublicIp"], wait=1) is None
    t0 = time.monotonic()
    assoc = ec2.associate_address(AllocationId=p1["AllocationId"],
                                  InstanceId=ia)["AssociationId"]
    assert assoc.startswith("eipassoc-") and len(assoc) == 9 + 17
    text = wait_until(lambda: page(cloud, p1["PublicIp"], wait=0.3), 10,
                      0.02, "the guest at its public address")
    took = time.monotonic() - t0
    assert f"ip={ipa}" in text
    print(f"associate to traffic: {took:.3f} s")
    assert took < 1, took
    # the guest's connections out leave with its public address
    assert connect_out(cloud, ipa, recorder) == p1["PublicIp"]
    # the other still masqueraded
    assert connect_out(cloud, ipb, recorder) == OUTSIDE_ROUTER
    # the API and the metadata say so
    i = instance(ec2, ia)
    assert i["PublicIpAddress"] == p1["PublicIp"]
    dns = "ec2-" + p1["PublicIp"].replace(".", "-") + \
        f".{REGION}.compute.koala"
    assert i["PublicDnsName"] == dns
    assoc_shown = i["NetworkInterfaces"][0]["Association"]
    assert assoc_shown["PublicIp"] == p1["PublicIp"]
    assert assoc_shown["PublicDnsName"] == dns
    got = addresses(ec2, AllocationIds=[p1["AllocationId"]])[0]
    assert got["InstanceId"] == ia and got["AssociationId"] == assoc
    assert got["PrivateIpAddress"] == ipa
    for f, v in [("instance-id", ia), ("association-id", assoc),
                 ("private-ip-address", ipa)]:
        assert [x["AllocationId"] for x in addresses(
            ec2, Filters=[{"Name": f, "Values": [v]}])] == \
            [p1["AllocationId"]]
    assert [r["Instances"][0]["InstanceId"] for r in ec2.describe_instances(
        Filters=[{"Name": "ip-address", "Values": [p1["PublicIp"]]}])[
            "Reservations"]] == [ia]
    assert metadata(cloud, ipa, "public-ipv4") == p1["PublicIp"]
    assert metadata(cloud, ipa, "public-hostname") == dns
    mac = i["NetworkInterfaces"][0]["MacAddress"]
    assert metadata(cloud, ipa, f"network/interfaces/macs/{mac}/"
                                "public-ipv4s") == p1["PublicIp"]
    assert metadata(cloud, ipb, "public-ipv4") == "NOTFOUND"
    # released while associated: refused
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.release_address(AllocationId=p1["AllocationId"])
    assert code(e) == "InvalidIPAddress.InUse"
    # once more to the same instance: the same association
    assert ec2.associate_address(AllocationId=p1["AllocationId"],
                                 InstanceId=ia)["AssociationId"] == assoc
    cloud.p1, cloud.assoc1 = p1, assoc


def test_hairpin(cloud, pair):
    ec2 = cloud.ec2()
    ia, ipa = pair["a"]
    ib, ipb = pair["b"]
    p2 = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(PublicIp=p2["PublicIp"], InstanceId=ib)
    wait_until(lambda: page(cloud, p2["PublicIp"], wait=1), 10, 0.05,
               "b at its public address")
    # a reaches b's public address, and b sees a's public address
    r = cloud.guest_run(
        ipa, f"wget -q -O - http://{p2['PublicIp']}:8080/", 10)
    assert r.returncode == 0 and f"ip={ipb}" in r.output, r
    r = cloud.guest_run(
        ipa, f"wget -q -O - http://{p2['PublicIp']}:8080/cgi-bin/run "
             "--post-data 'echo $REMOTE_ADDR'", 10)
    # (busybox httpd names an IPv4 peer in its IPv6 form)
    assert r.output.strip() in (cloud.p1["PublicIp"],
                                f"[::ffff:{cloud.p1['PublicIp']}]"), r
    # and b its own
    r = cloud.guest_run(
        ipb, f"wget -q -O - http://{p2['PublicIp']}:8080/", 10)
    assert f"ip={ipb}" in r.output, r
    cloud.p2 = p2


def test_reassociation_rules(cloud, pair):
    ec2 = cloud.ec2()
    ib, _ = pair["b"]
    before = addresses(ec2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.associate_address(AllocationId=cloud.p1["AllocationId"],
                              InstanceId=ib)
    assert code(e) == "Resource.AlreadyAssociated"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.associate_address(AllocationId=cloud.p1["AllocationId"],
                              InstanceId=ib, PrivateIpAddress="10.111.9.9")
    assert code(e) == "InvalidParameterValue"
    assert addresses(ec2) == before


def test_disassociate_cuts_at_once(cloud, pair, recorder):
    ec2 = cloud.ec2()
    ia, ipa = pair["a"]
    p1 = cloud.p1
    assert page(cloud, p1["PublicIp"]) is not None
    # A connection from outside under way: its answer comes 3 s later,
    # after the disassociation, and must not arrive.
    slow = subprocess.Popen(
        ["ip", "netns", "exec", cloud.outside_ns, "curl", "-s", "-m", "8",
         "--data-binary", "sleep 3; echo late",
         f"http://{p1['PublicIp']}:8080/cgi-bin/run?timeout=10"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    ec2.disassociate_address(AssociationId=cloud.assoc1)
    t0 = time.monotonic()
    wait_until(lambda: page(cloud, p1["PublicIp"], wait=1) is None, 5, 0.05,
               "the public address cut")
    assert time.monotonic() - t0 < 3
    assert "late" not in slow.communicate(timeout=15)[0]
    assert connect_out(cloud, ipa, recorder) == OUTSIDE_ROUTER
    assert metadata(cloud, ipa, "public-ipv4") == "NOTFOUND"
    i = instance(ec2, ia)
    assert "PublicIpAddress" not in i and i["PublicDnsName"] == ""
    got = addresses(ec2, AllocationIds=[p1["AllocationId"]])[0]
    assert "InstanceId" not in got and "AssociationId" not in got
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.disassociate_address(AssociationId=cloud.assoc1)
    assert code(e) == "InvalidAssociationID.NotFound"


def test_reassociate_to_another_instance(cloud, pair):
    """p1 to b, which holds p2: b now answers at p1, p2 is free."""
    ec2 = cloud.ec2()
    ib, ipb = pair["b"]
    assoc = ec2.associate_address(AllocationId=cloud.p1["AllocationId"],
                                  InstanceId=ib,
                                  AllowReassociation=True)["AssociationId"]
    text = wait_until(lambda: page(cloud, cloud.p1["PublicIp"], wait=1), 10,
                      0.05, "b at p1")
    assert f"ip={ipb}" in text
    wait_until(lambda: page(cloud, cloud.p2["PublicIp"], wait=1) is None, 5,
               0.05, "p2 cut")
    assert "InstanceId" not in addresses(
        ec2, AllocationIds=[cloud.p2["AllocationId"]])[0]
    assert metadata(cloud, ipb, "public-ipv4") == cloud.p1["PublicIp"]
    cloud.assoc1 = assoc


def test_cc_restart_rebuilds_the_nat(cloud, pair):
    _, ipb = pair["b"]
    cc = cloud.daemons["cc"]
    assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
    # The kernel kept the table; take it away to prove the rebuild.
    cloud.netns_exec(cloud.cluster_ns, "nft", "delete", "table", "ip",
                     "koala_cc_default")
    assert page(cloud, cloud.p1["PublicIp"], wait=1) is None
    cc.start()
    assert f"{cloud.p1['PublicIp']} : {ipb}" in nat_table(cloud)
    text = wait_until(lambda: page(cloud, cloud.p1["PublicIp"], wait=1), 20,
                      0.1, "b at p1 after the CC's restart")
    assert f"ip={ipb}" in text


def test_clc_restart_keeps_addresses(cloud, pair):
    ec2 = cloud.ec2()
    before = addresses(ec2)
    clc = cloud.daemons["clc"]
    assert clc.stop(signal.SIGKILL) == -signal.SIGKILL
    clc.start()
    assert addresses(ec2) == before
    # the data path never noticed
    assert page(cloud, cloud.p1["PublicIp"]) is not None


def test_terminate_frees_the_association(cloud, pair):
    ec2 = cloud.ec2()
    ib, ipb = pair["b"]
    ec2.terminate_instances(InstanceIds=[ib])
    wait_state(ec2, [ib], "terminated", timeout=120)
    got = addresses(ec2, AllocationIds=[cloud.p1["AllocationId"]])[0]
    assert "InstanceId" not in got
    wait_until(lambda: ipb not in nat_table(cloud), 10, 0.1,
               "the map without b")
    assert page(cloud, cloud.p1["PublicIp"], wait=1) is None
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.associate_address(AllocationId=cloud.p1["AllocationId"],
                              InstanceId=ib)
    assert code(e) == "IncorrectInstanceState"
    release_all(ec2)
    assert addresses(ec2) == []


def test_koala_addresses_shows_the_pool(cloud):
    out = sh(KOALA_BIN, "addresses", "--data-dir", cloud.dir).stdout
    assert cloud.cluster in out and "100.64.112.16-100.64.112.31" in out



def test_public_address_at_launch(cloud, recorder):
    """MapPublicIpOnLaunch of the default subnet, and RunInstances'
    AssociatePublicIpAddress: an address of the zone's pool without an
    allocation id (DescribeAddresses does not show it), reachable from
    outside, the guest's source outside, gone at terminate."""
    ec2 = cloud.ec2()
    sub = ec2.describe_subnets(Filters=[
        {"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    assert sub["MapPublicIpOnLaunch"] is False
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_subnet_attribute(SubnetId="subnet-0123456789abcdef0",
                                    MapPublicIpOnLaunch={"Value": True})
    assert code(e) == "InvalidSubnetID.NotFound"
    ec2.modify_subnet_attribute(SubnetId=sub["SubnetId"],
                                MapPublicIpOnLaunch={"Value": True})
    try:
        assert ec2.describe_subnets(SubnetIds=[sub["SubnetId"]])[
            "Subnets"][0]["MapPublicIpOnLaunch"] is True
        iid = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                                InstanceType="m1.small")["Instances"][0][
                                    "InstanceId"]
    finally:
        ec2.modify_subnet_attribute(SubnetId=sub["SubnetId"],
                                    MapPublicIpOnLaunch={"Value": False})
    # asked for explicitly, the subnet's default being off again
    none = ec2.run_instances(
        ImageId=cloud.ami, MinCount=1, MaxCount=1, InstanceType="m1.small",
        NetworkInterfaces=[{"DeviceIndex": 0,
                            "AssociatePublicIpAddress": True}])[
                                "Instances"][0]["InstanceId"]
    got = wait_state(ec2, [iid, none], "running", timeout=240)
    i = wait_until(lambda: (lambda x: x if x.get("PublicIpAddress") else None)(
        instance(ec2, iid)), 20, 0.2, "a public address at launch")
    pub, priv = i["PublicIpAddress"], i["PrivateIpAddress"]
    assert ipaddress.ip_address(pub) in POOL
    assert i["NetworkInterfaces"][0]["Association"]["IpOwnerId"] == "amazon"
    j = wait_until(lambda: (lambda x: x if x.get("PublicIpAddress") else None)(
        instance(ec2, none)), 20, 0.2, "AssociatePublicIpAddress")
    assert j["PublicIpAddress"] != pub
    assert addresses(ec2) == []
    text = wait_until(lambda: page(cloud, pub, wait=1), 240, 0.5,
                      "the guest at its launch address")
    assert f"ip={priv}" in text
    assert connect_out(cloud, priv, recorder) == pub
    ec2.terminate_instances(InstanceIds=[iid, none])
    wait_state(ec2, [iid, none], "terminated", timeout=120)
    wait_until(lambda: pub not in nat_table(cloud).split("set pool")[0],
               10, 0.1, "the launch address freed")
    assert page(cloud, pub, wait=1) is None
    out = sh(KOALA_BIN, "addresses", "--data-dir", cloud.dir).stdout
    assert out.splitlines()[1].split()[3:] == ["0", "0"], out


# ---- the CC's side alone (SOAP, as the CLC) ----

def test_cc_public_address_map(tmp_path):
    """SetPublicAddresses on a CC of its own: a stale version is ignored,
    a bad document refused whole (nothing changes), the map survives a
    kill -9 and is the router's NAT again at start."""
    from conftest import PKI, Netns
    from soapclient import SoapFault, children, text
    from test_cc import CC
    (tmp_path / "pki").mkdir()
    pki = PKI.create(tmp_path / "pki")
    pki.issue("koala-cc-zone-a")
    pki.issue("koala-clc")
    ns = Netns("e")
    cc = None
    try:
        ns.ip("link", "add", "klan0", "type", "bridge")
        ns.ip("link", "add", "uplink0", "type", "veth", "peer", "name",
              "world0")
        ns.ip("link", "set", "uplink0", "up")
        cc = CC(pki, tmp_path / "cc", ns, uplink="uplink0",
                public_ips="198.51.100.8/30, 198.51.100.20")
        cc.start()

        def held():
            body = cc.call("DescribePublicAddresses")
            return (int(text(body, "version")),
                    [(text(a, "publicIp"), text(a, "privateIp"),
                      text(a, "instanceId"))
                     for a in children(body, "address")])
        body = cc.call("DescribePublicAddresses")
        assert [(text(r, "first"), text(r, "last"))
                for r in children(body, "range")] == \
            [("198.51.100.8", "198.51.100.11"),
             ("198.51.100.20", "198.51.100.20")]
        assert held() == (0, [])

        def addr(pub, priv, iid):
            return ("address", [("publicIp", pub), ("privateIp", priv),
                                ("instanceId", iid)])
        one = addr("198.51.100.9", "10.111.0.5", "i-0123456789abcdef0")
        two = addr("198.51.100.20", "10.111.0.6", "i-0123456789abcdef1")
        r = cc.call("SetPublicAddresses", [("version", "3"), one, two])
        assert text(r, "version") == "3"
        want = (3, [("198.51.100.20", "10.111.0.6", "i-0123456789abcdef1"),
                    ("198.51.100.9", "10.111.0.5", "i-0123456789abcdef0")])
        assert held() == want

        def nat():
            return ns.run("nft", "list", "table", "ip",
                          "koala_cc_default").stdout
        assert "198.51.100.9 : 10.111.0.5" in nat()
        assert "10.111.0.6 : 198.51.100.20" in nat()
        # the pool is on the uplink
        addrs = ns.ip("-4", "-o", "addr", "show", "dev", "uplink0").stdout
        for a in ("198.51.100.8/32", "198.51.100.11/32", "198.51.100.20/32"):
            assert a in addrs
        # stale and equal versions: ignored, the version held answered
        for v in ("2", "3"):
            r = cc.call("SetPublicAddresses", [("version", v)])
            assert text(r, "version") == "3"
        assert held() == want
        # bad documents: refused whole
        bad = [
            [("version", "4"), addr("198.51.100.12", "10.111.0.5",
                                    "i-0123456789abcdef0")],  # not pool
            [("version", "4"), addr("198.51.100.9", "10.112.0.5",
                                    "i-0123456789abcdef0")],  # not subnet
            [("version", "4"), addr("198.51.100.9", "10.111.0.1",
                                    "i-0123456789abcdef0")],  # the router
            [("version", "4"), one, addr("198.51.100.10", "10.111.0.5",
                                         "i-0123456789abcdef2")],  # twice
            [("version", "4"), addr("198.51.100.9", "10.111.0.5", "i-x")],
            [("version", "x")],
            [one],
        ]
        for items in bad:
            with pytest.raises(SoapFault) as e:
                cc.call("SetPublicAddresses", items)
            assert e.value.code in ("InvalidParameterValue",
                                    "MissingParameter",
                                    "InvalidInstanceID.Malformed"), items
        assert held() == want
        # kill -9, the table flushed: rebuilt from cc.db at start
        assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
        ns.run("nft", "delete", "table", "ip", "koala_cc_default")
        cc.start()
        assert held() == want
        assert "198.51.100.9 : 10.111.0.5" in nat()
        # an empty map empties the NAT
        cc.call("SetPublicAddresses", [("version", "4")])
        assert held() == (4, [])
        assert "198.51.100.9" not in nat().split("set pool")[0]
    finally:
        if cc:
            cc.stop()
        ns.delete()
