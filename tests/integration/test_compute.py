"""The compute path end to end: `aws ec2 run-instances` boots real VMs (QEMU;
TCG where KVM does not work) through the CLC, a CC and NCs, with the test
guest from tests/images.  The guests get their addresses from the CC's
DHCP server and answer HTTP on port 8080 inside the cluster's network
namespace, which is where the tests reach them.  Driven with Debian's
aws-cli and python3-boto3."""
import base64
import json

import botocore.exceptions
import pytest

from cloud import IMAGES, Cloud
from conftest import KOALA_BIN, sh, wait_until
from soapclient import SoapClient, SoapFault, to_dict

MARKER = "KOALA-GUEST-READY"


def wait_for(what, fn, timeout=120, every=0.5):
    return wait_until(fn, timeout, every, what)


def instances(ec2, ids):
    out = {}
    for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for i in r["Instances"]:
            out[i["InstanceId"]] = i
    return out


def wait_state(ec2, ids, state, timeout=180):
    def check():
        got = instances(ec2, ids)
        bad = [i for i in got.values() if i["State"]["Name"] == "terminated"
               and state != "terminated"]
        if bad:
            raise AssertionError(f"terminated: {bad[0].get('StateReason')}")
        return got if all(i["State"]["Name"] == state
                          for i in got.values()) else None
    return wait_for(f"{ids} {state}", check, timeout)


def console(ec2, iid):
    return ec2.get_console_output(InstanceId=iid).get("Output", "")


def wait_marker(ec2, iid, timeout=180):
    return wait_for(f"{iid} console marker",
                    lambda: MARKER in console(ec2, iid), timeout, 1)


def http_get(cloud, ip):
    r = cloud.netns_exec(cloud.cluster_ns, "curl", "-sS", "-m", "5",
                         f"http://{ip}:8080/", check=False)
    return r.stdout if r.returncode == 0 else ""


def capacity(ec2):
    """Eucalyptus' verbose zone listing: {type: (free, max)}."""
    zones = ec2.describe_availability_zones(
        ZoneNames=["verbose"])["AvailabilityZones"]
    out = {}
    for z in zones:
        name = z["ZoneName"]
        if name.startswith("|- ") and name != "|- vm types":
            free, _, mx = z["State"].split()[:3]
            out[name[3:]] = (int(free), int(mx))
    return out


def guest_page(cloud, ip, iid, timeout=180):
    """The guest's page once it shows its lease (the guest serves a page
    without an address first, and rewrites it when the lease comes)."""
    def ready():
        page = http_get(cloud, ip)
        return page if iid in page and f"ip={ip}" in page else ""
    return wait_for(f"{iid} page at {ip}:8080", ready, timeout, 1)


def node_files(cloud, node):
    d = cloud.dir / node / "instances"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def taps(cloud, node):
    out = sh("ip", "-n", cloud.node_ns[node], "-o", "link", "show").stdout
    return [l.split(":")[1].strip().split("@")[0] for l in out.splitlines()
            if "master kbr0" in l and "uplink" not in l]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("compute"), n_nodes=1,
              node_cores=4, node_memory_mb=4096).start()
    c.ami, c.aki, c.ari = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


# ---- the whole life of three instances, with aws-cli ----

def test_three_instances_with_aws_cli(cloud, tmp_path):
    aws = cloud.aws_ec2(tmp_path)

    out = json.loads(aws("describe-availability-zones").stdout)
    assert [z["ZoneName"] for z in out["AvailabilityZones"]] == \
        [cloud.cluster]
    assert out["AvailabilityZones"][0]["State"] == "available"
    run_out = json.loads(aws(
        "run-instances", "--image-id", cloud.ami, "--count", "3",
        "--instance-type", "m1.small",
        "--tag-specifications",
        "ResourceType=instance,Tags=[{Key=Name,Value=cli}]",
        # as Ansible's ec2_instance sends: accepted, tagging no volume yet
        "ResourceType=volume,Tags=[{Key=Name,Value=cli}]").stdout)
    ids = [i["InstanceId"] for i in run_out["Instances"]]
    assert len(ids) == 3
    bad = aws("run-instances", "--image-id", cloud.ami, "--tag-specifications",
              "ResourceType=image,Tags=[{Key=Name,Value=cli}]", check=False)
    assert bad.returncode != 0
    assert "InvalidParameterValue" in bad.stderr
    assert "'image' is not a valid taggable resource type" in bad.stderr
    assert all(i["State"]["Name"] == "pending" for i in run_out["Instances"])
    assert sorted(i["AmiLaunchIndex"] for i in run_out["Instances"]) == \
        [0, 1, 2]
    ec2 = cloud.ec2()
    got = wait_state(ec2, ids, "running")
    # The operator's view (euca-describe-availability-zones verbose): 4 cores
    # and 4 GiB, three m1.small (1 core, 256 MiB) in use.
    out = json.loads(aws("describe-availability-zones", "--zone-names",
                         "verbose").stdout)["AvailabilityZones"]
    assert [z["ZoneName"] for z in out][:2] == [cloud.cluster, "|- vm types"]
    rows = {z["ZoneName"]: z["State"].split() for z in out}
    assert rows["|- m1.small"] == ["0001", "/", "0004", "1", "256", "5"]
    assert rows["|- c1.xlarge"][:3] == ["0000", "/", "0001"]
    ips = {iid: i["PrivateIpAddress"] for iid, i in got.items()}
    assert len(set(ips.values())) == 3
    assert all(ip.startswith("10.111.") for ip in ips.values())
    assert all(i["Placement"]["AvailabilityZone"] == cloud.cluster
               for i in got.values())
    assert all({"Key": "Name", "Value": "cli"} in i["Tags"]
               for i in got.values())
    for iid in ids:
        wait_marker(ec2, iid)
    # The console shows the address the CC gave, and the guest answers there.
    for iid, ip in ips.items():
        out = json.loads(aws("get-console-output", "--instance-id",
                             iid).stdout)["Output"]
        assert f"{MARKER} ip={ip}" in out
        guest_page(cloud, ip, iid)
    # Filters, as people use them.
    out = json.loads(aws("describe-instances", "--filters",
                         "Name=instance-state-name,Values=running",
                         "Name=tag:Name,Values=cli").stdout)
    found = [i["InstanceId"] for r in out["Reservations"]
             for i in r["Instances"]]
    assert sorted(found) == sorted(ids)

    # Reboot one: its guest boots again (a second marker).
    aws("reboot-instances", "--instance-ids", ids[0])
    wait_for("second boot", lambda: console(ec2, ids[0]).count(MARKER) >= 2,
             180, 1)
    assert instances(ec2, [ids[0]])[ids[0]]["State"]["Name"] == "running"

    # Stop and start one: it keeps its address and disks.
    out = json.loads(aws("stop-instances", "--instance-ids", ids[1]).stdout)
    assert out["StoppingInstances"][0]["CurrentState"]["Name"] == "stopping"
    assert out["StoppingInstances"][0]["PreviousState"]["Name"] == "running"
    wait_state(ec2, [ids[1]], "stopped")
    out = json.loads(aws("start-instances", "--instance-ids", ids[1]).stdout)
    assert out["StartingInstances"][0]["CurrentState"]["Name"] == "pending"
    again = wait_state(ec2, [ids[1]], "running")
    assert again[ids[1]]["PrivateIpAddress"] == ips[ids[1]]
    wait_for("boot after start",
             lambda: http_get(cloud, ips[ids[1]]), 180, 1)

    # Terminate all: every resource on the node is freed.
    out = json.loads(aws("terminate-instances", "--instance-ids",
                         *ids).stdout)
    assert {i["CurrentState"]["Name"] for i in
            out["TerminatingInstances"]} == {"shutting-down"}
    wait_state(ec2, ids, "terminated")
    wait_for("files removed", lambda: not any(
        iid in node_files(cloud, "nc1") for iid in ids), 60)
    wait_for("taps removed", lambda: taps(cloud, "nc1") == [], 60)
    wait_for("capacity back", lambda: capacity(ec2)["m1.small"] == (4, 4), 30)
    # Terminating again is fine, and says so.
    out = json.loads(aws("terminate-instances", "--instance-ids",
                         ids[0]).stdout)
    assert out["TerminatingInstances"][0]["CurrentState"]["Name"] == \
        "terminated"


# ---- boto3: idempotency, paging, limits, errors ----

def test_client_token_and_paging(cloud):
    ec2 = cloud.ec2()
    r1 = ec2.run_instances(ImageId=cloud.ami, MinCount=2, MaxCount=2,
                           InstanceType="t1.micro", ClientToken="tok-1")
    r2 = ec2.run_instances(ImageId=cloud.ami, MinCount=2, MaxCount=2,
                           InstanceType="t1.micro", ClientToken="tok-1")
    assert r1["ReservationId"] == r2["ReservationId"]
    ids = sorted(i["InstanceId"] for i in r1["Instances"])
    assert sorted(i["InstanceId"] for i in r2["Instances"]) == ids
    wait_state(ec2, ids, "running")
    # Pages of one instance, then the rest.
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = ec2.describe_instances(MaxResults=5, Filters=[
            {"Name": "client-token", "Values": ["tok-1"]}], **kw)
        seen += [i["InstanceId"] for r in page["Reservations"]
                 for i in r["Instances"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == ids
    ec2.terminate_instances(InstanceIds=ids)
    wait_state(ec2, ids, "terminated")


def test_bad_requests(cloud):
    ec2 = cloud.ec2()

    def err(**kw):
        args = dict(ImageId=cloud.ami, MinCount=1, MaxCount=1)
        args.update(kw)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.run_instances(**args)
        return e.value.response["Error"]["Code"]
    before = len(node_files(cloud, "nc1"))
    assert err(ImageId="ami-0123456789abcdef0") == "InvalidAMIID.NotFound"
    assert err(ImageId=cloud.aki) == "InvalidParameterValue"
    assert err(InstanceType="x9.huge") == "InvalidParameterValue"
    assert err(KeyName="no-such-key") == "InvalidKeyPair.NotFound"
    assert err(MinCount=3, MaxCount=2) == "InvalidParameterValue"
    # (boto3 base64-encodes UserData itself: send a broken one by hand.)
    st, body = cloud.raw_ec2({"Action": "RunInstances", "ImageId": cloud.ami,
                              "MinCount": "1", "MaxCount": "1",
                              "UserData": "%%% not base64"})
    assert st == 400 and "InvalidParameterValue" in body, body
    assert err(Placement={"AvailabilityZone": "zone-nope"}) == \
        "InvalidParameterValue"
    # Beyond capacity (4 cores and 4 GiB on the node; c1.xlarge wants 4 cores
    # and 2 GiB each).
    assert err(InstanceType="c1.xlarge", MinCount=2, MaxCount=2) == \
        "InsufficientInstanceCapacity"
    assert err(DryRun=True) == "DryRunOperation"
    for call in (lambda: ec2.terminate_instances(
                     InstanceIds=["i-0123456789abcdef0"]),
                 lambda: ec2.get_console_output(
                     InstanceId="i-0123456789abcdef0"),
                 lambda: ec2.reboot_instances(
                     InstanceIds=["i-0123456789abcdef0"])):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == \
            "InvalidInstanceID.NotFound"
    # Nothing was started by any of that.
    assert len(node_files(cloud, "nc1")) == before
    # MaxCount beyond capacity with a MinCount that fits: what fits runs.
    r = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=9,
                          InstanceType="c1.xlarge")
    assert len(r["Instances"]) == 1
    iid = r["Instances"][0]["InstanceId"]
    # Starting an instance that is on its way up changes nothing (as in
    # EC2); starting a terminated one is IncorrectInstanceState.
    out = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert out["CurrentState"]["Name"] == out["PreviousState"]["Name"]
    ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "terminated")
    # Terminated while its launch was on the way: the node still ends it,
    # and its capacity comes back.  (The CLC shows it terminated at once, so
    # the node's own log says when it got there: capacity read before the
    # launch reached the cluster would look free too.)
    nc_log = cloud.daemons["nc1"].log_text
    wait_for(f"{iid} ended on the node",
             lambda: f"instance {iid}: shutting-down -> terminated" in nc_log(),
             60)
    wait_for("capacity back", lambda: capacity(ec2)["c1.xlarge"] == (1, 1),
             60)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.start_instances(InstanceIds=[iid])
    assert e.value.response["Error"]["Code"] == "IncorrectInstanceState"


def test_key_pair_and_user_data_reach_the_node(cloud):
    ec2 = cloud.ec2()
    ec2.create_key_pair(KeyName="launch-key")
    r = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                          InstanceType="t1.micro", KeyName="launch-key",
                          UserData="#!/bin/sh\necho hello\n")
    iid = r["Instances"][0]["InstanceId"]
    got = wait_state(ec2, [iid], "running")[iid]
    assert got["KeyName"] == "launch-key"
    # Its address was another (terminated) instance's before: the guest
    # still gets its lease (the old one was released).
    assert got["PrivateIpAddress"] == "10.111.0.2"
    guest_page(cloud, got["PrivateIpAddress"], iid)
    ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "terminated")
    ec2.delete_key_pair(KeyName="launch-key")


def test_services(cloud):
    out = sh(KOALA_BIN, "services", "--data-dir", cloud.dir).stdout
    rows = {tuple(l.split()[:2]): l.split()[3] for l in out.splitlines()[1:]}
    assert rows[("cluster", cloud.cluster)] == "ENABLED"
    assert rows[("node", "nc1")] == "ENABLED"
    assert rows[("walrus", "w1")] == "ENABLED"
    # The CLC's own DescribeService, as a component (here Walrus' certificate)
    # asks it; an operation it does not have is a SOAP fault.
    cert, key = cloud.certs("walrus", "w1")
    clc = SoapClient(f"https://127.0.0.1:{cloud.ports['clc_soap']}/",
                     "urn:koala:clc", ca=cloud.ca, cert=cert, key=key)
    svc = to_dict(clc.call("DescribeService"))
    assert svc == {"name": "clc", "state": "ENABLED",
                   "message": "1 of 1 clusters enabled"}
    with pytest.raises(SoapFault) as e:
        clc.call("RebootCloud")
    assert e.value.code == "InvalidAction"


# ---- status checks: the guest's network, seen by the cluster's DHCP ----

def statuses(ec2, iid, **kw):
    got = ec2.describe_instance_status(InstanceIds=[iid], **kw)
    return got["InstanceStatuses"]


def watch_instance_status(ec2, iid, leases_before):
    """Polls until the instance status is ok; the statuses seen must be
    initializing until then, and ok only once the guest's console shows
    a DHCP lease it did not show before (the check follows the guest)."""
    seen = []

    def ok():
        st = statuses(ec2, iid)[0]
        status = st["InstanceStatus"]["Status"]
        seen.append(status)
        assert st["SystemStatus"]["Status"] == "ok", st
        assert status in ("initializing", "ok"), st
        if status != "ok":
            assert st["InstanceStatus"]["Details"] == \
                [{"Name": "reachability", "Status": "initializing"}]
            return False
        assert st["InstanceStatus"]["Details"] == \
            [{"Name": "reachability", "Status": "passed"}]
        assert console(ec2, iid).count("lease of") > leases_before, seen
        return True
    wait_for(f"{iid} status ok", ok, 180, 0.3)
    return seen


def test_instance_status(cloud, tmp_path):
    ec2 = cloud.ec2()
    iid = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                            InstanceType="t1.micro")["Instances"][0][
        "InstanceId"]
    # Not running yet: listed only with IncludeAllInstances.
    early = statuses(ec2, iid, IncludeAllInstances=True)[0]
    if early["InstanceState"]["Name"] != "running":
        assert early["InstanceStatus"] == {"Status": "not-applicable"}
        assert early["SystemStatus"] == {"Status": "not-applicable"}
        assert statuses(ec2, iid) == [] or \
            statuses(ec2, iid)[0]["InstanceState"]["Name"] == "running"
    wait_state(ec2, [iid], "running")
    watch_instance_status(ec2, iid, 0)
    # what aws-cli's and boto3's waiters look for
    ec2.get_waiter("instance_status_ok").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    ec2.get_waiter("system_status_ok").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    aws = cloud.aws_ec2(tmp_path)
    aws("wait", "instance-status-ok", "--instance-ids", iid)
    out = json.loads(aws("describe-instance-status", "--filters",
                         "Name=instance-status.reachability,Values=passed",
                         "Name=availability-zone,Values=" + cloud.cluster
                         ).stdout)["InstanceStatuses"]
    assert [s["InstanceId"] for s in out] == [iid]
    assert out[0]["InstanceState"] == {"Code": 16, "Name": "running"}
    out = ec2.describe_instance_status(Filters=[
        {"Name": "instance-status.status", "Values": ["initializing"]}])
    assert out["InstanceStatuses"] == []

    # Stopped: not listed by default, not-applicable with all instances.
    leases = console(ec2, iid).count("lease of")
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    assert statuses(ec2, iid) == []
    st = statuses(ec2, iid, IncludeAllInstances=True)[0]
    assert st["InstanceState"]["Name"] == "stopped"
    assert st["InstanceStatus"] == {"Status": "not-applicable"}
    # Started again: initializing until the guest takes its lease again.
    ec2.start_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "running")
    watch_instance_status(ec2, iid, leases)

    # Bad input, in EC2's words.
    for kw, code in [
            ({"InstanceIds": ["i-0123456789abcdef0"]},
             "InvalidInstanceID.NotFound"),
            ({"InstanceIds": [iid], "MaxResults": 5},
             "InvalidParameterCombination"),
            ({"MaxResults": 2}, "InvalidParameterValue"),
            ({"Filters": [{"Name": "bogus", "Values": ["x"]}]},
             "InvalidParameterValue"),
            ({"NextToken": "not-a-token"}, "InvalidParameterValue")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.describe_instance_status(**kw)
        assert e.value.response["Error"]["Code"] == code, kw
    ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "terminated")
    st = statuses(ec2, iid, IncludeAllInstances=True)[0]
    assert st["InstanceState"]["Name"] == "terminated"


# ---- instance attributes: protection, shutdown behaviour, user data ----

def attribute(ec2, iid, name):
    out = ec2.describe_instance_attribute(InstanceId=iid, Attribute=name)
    assert out["InstanceId"] == iid
    return {k: v for k, v in out.items()
            if k not in ("InstanceId", "ResponseMetadata")}


def test_instance_attributes(cloud, tmp_path):
    ec2 = cloud.ec2()
    iid = ec2.run_instances(
        ImageId=cloud.ami, MinCount=1, MaxCount=1, InstanceType="t1.micro",
        UserData="first", DisableApiTermination=True,
        InstanceInitiatedShutdownBehavior="terminate")["Instances"][0][
        "InstanceId"]
    assert attribute(ec2, iid, "instanceType") == \
        {"InstanceType": {"Value": "t1.micro"}}
    assert attribute(ec2, iid, "kernel") == {"KernelId": {"Value": cloud.aki}}
    assert attribute(ec2, iid, "ramdisk") == \
        {"RamdiskId": {"Value": cloud.ari}}
    assert attribute(ec2, iid, "userData") == \
        {"UserData": {"Value": base64.b64encode(b"first").decode()}}
    assert attribute(ec2, iid, "disableApiTermination") == \
        {"DisableApiTermination": {"Value": True}}
    assert attribute(ec2, iid, "instanceInitiatedShutdownBehavior") == \
        {"InstanceInitiatedShutdownBehavior": {"Value": "terminate"}}
    assert attribute(ec2, iid, "rootDeviceName") == \
        {"RootDeviceName": {"Value": "/dev/sda1"}}
    assert attribute(ec2, iid, "blockDeviceMapping") == \
        {"BlockDeviceMappings": []}
    # launched without groups: its VPC's default group (test_secgroups)
    default = ec2.describe_security_groups(GroupNames=["default"])[
        "SecurityGroups"][0]["GroupId"]
    assert attribute(ec2, iid, "groupSet") == \
        {"Groups": [{"GroupId": default, "GroupName": "default"}]}
    assert attribute(ec2, iid, "sourceDestCheck") == \
        {"SourceDestCheck": {"Value": False}}
    assert attribute(ec2, iid, "enclaveOptions") == \
        {"EnclaveOptions": {"Enabled": False}}
    wait_state(ec2, [iid], "running")

    # Termination protection: refused, nothing changes (also for the
    # unprotected instance named with it).
    other = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                              InstanceType="t1.micro")["Instances"][0][
        "InstanceId"]
    wait_state(ec2, [other], "running")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.terminate_instances(InstanceIds=[other, iid])
    assert e.value.response["Error"]["Code"] == "OperationNotPermitted"
    assert iid in e.value.response["Error"]["Message"]
    got = instances(ec2, [iid, other])
    assert {i["State"]["Name"] for i in got.values()} == {"running"}
    assert iid in node_files(cloud, "nc1")

    # aws-cli's two spellings of a change, and boto3's.
    aws = cloud.aws_ec2(tmp_path)
    aws("modify-instance-attribute", "--instance-id", iid,
        "--no-disable-api-termination")
    assert attribute(ec2, iid, "disableApiTermination") == \
        {"DisableApiTermination": {"Value": False}}
    aws("modify-instance-attribute", "--instance-id", iid, "--attribute",
        "instanceInitiatedShutdownBehavior", "--value", "stop")
    ec2.modify_instance_attribute(InstanceId=iid,
                                  DisableApiTermination={"Value": True})
    assert attribute(ec2, iid, "instanceInitiatedShutdownBehavior") == \
        {"InstanceInitiatedShutdownBehavior": {"Value": "stop"}}
    # User data changes only while stopped.
    for kw, code in [
            ({"UserData": {"Value": b"second"}}, "IncorrectInstanceState"),
            ({"InstanceInitiatedShutdownBehavior": {"Value": "hibernate"}},
             "InvalidParameterValue"),
            ({"InstanceType": {"Value": "m1.small"}}, "UnsupportedOperation"),
            ({"Attribute": "disableApiTermination", "Value": "maybe"},
             "InvalidParameterValue"),
            ({"Attribute": "instanceType"}, "MissingParameter"),
            ({}, "MissingParameter")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.modify_instance_attribute(InstanceId=iid, **kw)
        assert e.value.response["Error"]["Code"] == code, kw
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instance_attribute(InstanceId=iid, Attribute="color")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instance_attribute(InstanceId="i-0123456789abcdef0",
                                        Attribute="userData")
    assert e.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_instance_attribute(
            InstanceId=iid, DisableApiTermination={"Value": False},
            DryRun=True)
    assert e.value.response["Error"]["Code"] == "DryRunOperation"
    assert attribute(ec2, iid, "disableApiTermination") == \
        {"DisableApiTermination": {"Value": True}}
    ec2.stop_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], "stopped")
    ec2.modify_instance_attribute(InstanceId=iid,
                                  UserData={"Value": b"second"})
    assert attribute(ec2, iid, "userData") == \
        {"UserData": {"Value": base64.b64encode(b"second").decode()}}
    # Protected while stopped too; unprotected, it goes.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.terminate_instances(InstanceIds=[iid])
    assert e.value.response["Error"]["Code"] == "OperationNotPermitted"
    ec2.modify_instance_attribute(InstanceId=iid,
                                  DisableApiTermination={"Value": False})
    ec2.terminate_instances(InstanceIds=[iid, other])
    wait_state(ec2, [iid, other], "terminated")


# ---- a node that dies mid-launch ----

def test_node_killed_mid_launch(tmp_path):
    c = Cloud(tmp_path, n_nodes=1, cluster="zone-k").start()
    try:
        c.ami, _, _ = c.upload_images()
        ec2 = c.ec2()
        nc = c.daemons["nc1"]
        r = ec2.run_instances(ImageId=c.ami, MinCount=1, MaxCount=1,
                              InstanceType="t1.micro")
        iid = r["Instances"][0]["InstanceId"]
        nc.stop(sig=9)   # the NC dies (its QEMU may or may not be up)
        # Nothing stays pending for ever: either it runs (its QEMU lived
        # and the NC comes back to adopt it) or it ends with a reason.
        c.start_nc("nc1")
        final = wait_for("a final state", lambda: (
            instances(ec2, [iid])[iid] if instances(ec2, [iid])[iid]
            ["State"]["Name"] in ("running", "terminated") else None), 180)
        if final["State"]["Name"] == "terminated":
            assert final["StateReason"]["Code"].startswith("Server.")
        ec2.terminate_instances(InstanceIds=[iid])
        wait_state(ec2, [iid], "terminated")
    finally:
        rcs = c.stop()
    assert rcs["clc"] == 0 and rcs["cc"] == 0


# ---- two nodes: scheduling spreads ----

def test_two_nodes_round_robin(tmp_path):
    c = Cloud(tmp_path, n_nodes=2, scheduler="ROUNDROBIN", node_cores=2,
              node_memory_mb=1024, cluster="zone-b").start()
    try:
        c.ami, _, _ = c.upload_images()
        ec2 = c.ec2()
        r = ec2.run_instances(ImageId=c.ami, MinCount=4, MaxCount=4,
                              InstanceType="t1.micro")
        ids = [i["InstanceId"] for i in r["Instances"]]
        got = wait_state(ec2, ids, "running")
        on = {}
        for iid in ids:
            node = next(n for n in ("nc1", "nc2")
                        if iid in node_files(c, n))
            on.setdefault(node, []).append(iid)
        assert len(on.get("nc1", [])) == 2 and len(on.get("nc2", [])) == 2
        # Every guest, on either host, is reachable on the cluster's LAN.
        for iid in ids:
            ip = got[iid]["PrivateIpAddress"]
            guest_page(c, ip, iid)
        # Capacity is the sum of both nodes (2 cores each, c1.medium = 2).
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.run_instances(ImageId=c.ami, MinCount=1, MaxCount=1,
                              InstanceType="c1.medium")
        assert e.value.response["Error"]["Code"] == \
            "InsufficientInstanceCapacity"
        ec2.terminate_instances(InstanceIds=ids)
        wait_state(ec2, ids, "terminated")
        wait_for("nodes empty", lambda: not node_files(c, "nc1") and
                 not node_files(c, "nc2"), 60)
    finally:
        rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs
