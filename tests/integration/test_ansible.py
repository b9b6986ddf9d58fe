"""Koala as a new user of Ansible meets it (issue 10, "Shown by"): the
playbook tests/integration/ansible/web.yml, written as for AWS, run with
Debian's ansible-playbook (collection amazon.aws): ec2_security_group
creates a VPC group with its rules, ec2_instance launches an instance into
the default VPC by name and tags (DescribeVpcs isDefault, DescribeSubnets
default-for-az, STS GetCallerIdentity on the EC2 endpoint, RunInstances
with TagSpecifications for the instance and its volumes) and waits for it,
ec2_eip gives it an elastic IP.  Then the guest's page is fetched from
the namespace standing for the outside world at that public address, and
the playbook run again changes nothing.

Then tests/integration/ansible/ebs.yml (issue 11): ec2_vol makes a data
volume for that instance and attaches it (DeleteOnTermination through
ModifyInstanceAttribute), ec2_snapshot snapshots it, ec2_vol detaches it,
makes a volume from the snapshot, and both go.  Before the snapshot goes,
ec2_ami registers an image with it as the root (waiting for it, tagging
it, sharing it with an account through ModifyImageAttribute), a second
ec2_ami takes the share back (DescribeImageAttribute launchPermission and
productCodes on every look), ec2_ami_info finds it, and ec2_ami deregisters
it, waiting until DescribeImages answers nothing for its id.
"""
import json
import os
import shutil
import subprocess

import pytest

from cloud import IMAGES, Cloud
from conftest import wait_until
from test_compute import wait_state

PLAYBOOK = os.path.join(os.path.dirname(__file__), "ansible", "web.yml")
EBS_PLAYBOOK = os.path.join(os.path.dirname(__file__), "ansible", "ebs.yml")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    if shutil.which("ansible-playbook") is None:
        pytest.fail("ansible-playbook is not installed (scripts/deps.sh)")
    c = Cloud(tmp_path_factory.mktemp("ansible"), outside=True,
              sc=True).start()
    c.ami, c.aki, c.ari = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def play(cloud, tmp_path, name, playbook=PLAYBOOK):
    result = tmp_path / f"{name}.json"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(cloud.env(), EC2_URL=cloud.ec2_endpoint, AMI=cloud.ami,
               RESULT=str(result), HOME=str(home),
               PATH="/usr/bin:/bin", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3")
    r = subprocess.run(["ansible-playbook", "-i", "localhost,", playbook],
                       env=env, capture_output=True, text=True, timeout=600)
    (tmp_path / f"{name}.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return json.loads(result.read_text())


def test_playbook_runs_unchanged_and_again_changes_nothing(cloud, tmp_path):
    first = play(cloud, tmp_path, "first")
    assert first["sg_changed"] and first["instance_changed"] and \
        first["eip_changed"]
    ec2 = cloud.ec2()
    (grp,) = ec2.describe_security_groups(
        GroupNames=["web"])["SecurityGroups"]
    assert grp["GroupId"] == first["sg"]
    perms = grp["IpPermissions"]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"],
             [r["CidrIp"] for r in p["IpRanges"]]) for p in perms] == \
        [("tcp", 8080, 8080, ["0.0.0.0/0"])]
    assert grp["IpPermissions"][0]["IpRanges"][0]["Description"] == "the page"
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault",
                                      "Values": ["true"]}])["Vpcs"][0]
    assert grp["VpcId"] == vpc["VpcId"]
    # ec2_instance's state `present` waits for the instance to exist, not
    # to run (amazon.aws 5: `running` would)
    inst = wait_state(ec2, [first["instance"]], "running")[first["instance"]]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags == {"Name": "web-1", "role": "web"}
    assert [g["GroupName"] for g in inst["SecurityGroups"]] == ["web"]
    assert inst["VpcId"] == vpc["VpcId"]
    assert inst["PublicIpAddress"] == first["public_ip"]
    (addr,) = ec2.describe_addresses(
        PublicIps=[first["public_ip"]])["Addresses"]
    assert addr["InstanceId"] == first["instance"]

    # the page from the outside world at the public address: the group's
    # rule and the router's 1:1 NAT, for real
    def page():
        r = cloud.netns_exec(cloud.outside_ns, "curl", "-sS", "-m", "3",
                             f"http://{first['public_ip']}:8080/",
                             check=False)
        return r.stdout if first["instance"] in r.stdout else ""
    assert f"ip={inst['PrivateIpAddress']}" in wait_until(page, timeout=180)

    again = play(cloud, tmp_path, "again")
    assert (again["sg"], again["instance"], again["public_ip"]) == \
        (first["sg"], first["instance"], first["public_ip"])
    assert not again["sg_changed"], again
    assert not again["instance_changed"], again
    assert not again["eip_changed"], again
    assert len(ec2.describe_instances(Filters=[
        {"Name": "tag:Name", "Values": ["web-1"]},
        {"Name": "instance-state-name", "Values": ["running"]}])
        ["Reservations"]) == 1


def test_ebs_playbook(cloud, tmp_path):
    """After the web playbook: its instance runs."""
    ec2 = cloud.ec2()
    r = play(cloud, tmp_path, "ebs", EBS_PLAYBOOK)
    assert r["volume_changed"] and r["snapshot_changed"], r
    assert r["device"] == "/dev/sdf", r
    assert not r["again_changed"], r
    assert r["detached_changed"], r
    assert r["restored_snapshot"] == r["snapshot"], r
    assert r["snapshot_gone"] and r["volumes_gone"] == [True, True], r
    # the image: registered from the snapshot, shared, taken back, found,
    # deregistered
    assert r["image_changed"] and r["image"].startswith("ami-"), r
    assert r["image_state"] == "available", r
    assert (r["image_root"], r["image_root_type"]) == ("/dev/xvda", "ebs"), r
    assert r["image_mappings"] == {"/dev/xvda": {
        "size": 1, "snapshot_id": r["snapshot"], "volume_type": "gp3",
        "encrypted": False, "delete_on_termination": True}}, r
    assert r["image_tags"] == {"role": "image"}, r
    assert r["image_perms"] == [{"user_id": "111122223333"}], r
    assert r["image_description"] == "the nightly data", r
    assert r["unshared_changed"] and r["unshared_perms"] == [], r
    assert not r["unshared_again_changed"], r
    assert r["info_ids"] == [r["image"]] and r["info_perms"] == [[]], r
    assert r["image_gone"] and not r["image_gone_again"], r
    assert ec2.describe_images(ImageIds=[r["image"]])["Images"] == []
    # the image the web instance was launched from knows when
    last = ec2.describe_image_attribute(
        ImageId=cloud.ami, Attribute="lastLaunchedTime")["LastLaunchedTime"]
    assert last["Value"].startswith("20"), last
    for vid in (r["volume"], r["restored"]):
        ec2.get_waiter("volume_deleted").wait(
            VolumeIds=[vid], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert not [s for s in ec2.describe_snapshots(OwnerIds=["self"])
                ["Snapshots"] if s["SnapshotId"] == r["snapshot"]]
