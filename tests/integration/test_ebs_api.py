"""EBS on the EC2 API with boto3 and aws-cli against a real koala-sc
(docs/storage.md): volumes created, described (ids, filters, paging, tags),
modified and deleted; snapshots taken, described (owners, restorable-by,
filters, paging), copied, shared through createVolumePermission and
deleted; volumes from snapshots; every waiter; and the bad input EC2
refuses, each with its code and nothing changed.  Attaching to guests is
test_ebs_attach.py's."""
import json
import signal

import botocore.exceptions
import pytest

from cloud import Cloud
from conftest import KOALA_BIN, sh, wait_until

FAST = {"Delay": 1, "MaxAttempts": 120}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("ebs"), n_nodes=0, sc=True,
              clc_args=["--poll-interval-ms", "500"]).start()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def bob(cloud):
    return cloud.account_ec2("bob")


def code(e):
    return e.value.response["Error"]["Code"]


def volumes(ec2, **kw):
    return ec2.describe_volumes(**kw)["Volumes"]


def new_volume(ec2, cloud, size=1, **kw):
    v = ec2.create_volume(AvailabilityZone=cloud.cluster, Size=size, **kw)
    ec2.get_waiter("volume_available").wait(VolumeIds=[v["VolumeId"]],
                                            WaiterConfig=FAST)
    return v["VolumeId"]


def test_services_show_the_sc(cloud):
    def sc_line():
        out = sh(KOALA_BIN, "services", "--data-dir", cloud.dir).stdout
        return [line.split() for line in out.splitlines()
                if line.startswith("sc ")]
    (line,) = wait_until(lambda: [x for x in sc_line() if "ENABLED" in x],
                         30, 0.5, "the SC enabled")
    assert line[2] == cloud.cluster


def test_create_describe_delete(cloud):
    ec2 = cloud.ec2()
    v = ec2.create_volume(
        AvailabilityZone=cloud.cluster, Size=2, VolumeType="gp3", Iops=4000,
        Throughput=250, TagSpecifications=[{
            "ResourceType": "volume", "Tags": [{"Key": "Name",
                                                "Value": "data"}]}])
    vid = v["VolumeId"]
    # Visible at once, in EC2's own first state.
    assert v["State"] in ("creating", "available")
    assert v["Size"] == 2 and v["VolumeType"] == "gp3"
    assert v["Iops"] == 4000 and v["Throughput"] == 250
    assert v["MultiAttachEnabled"] is False and v["Encrypted"] is False
    assert {"Key": "Name", "Value": "data"} in v["Tags"]
    got = volumes(ec2, VolumeIds=[vid])[0]
    assert got["AvailabilityZone"] == cloud.cluster
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    got = volumes(ec2, VolumeIds=[vid])[0]
    assert got["State"] == "available" and got["Attachments"] == []
    st = ec2.describe_volume_status(VolumeIds=[vid])["VolumeStatuses"][0]
    assert st["VolumeStatus"]["Status"] == "ok"
    # filters
    assert [x["VolumeId"] for x in volumes(
        ec2, Filters=[{"Name": "tag:Name", "Values": ["data"]}])] == [vid]
    assert vid in [x["VolumeId"] for x in volumes(
        ec2, Filters=[{"Name": "status", "Values": ["available"]},
                      {"Name": "size", "Values": ["2"]},
                      {"Name": "availability-zone",
                       "Values": [cloud.cluster]}])]
    assert volumes(ec2, Filters=[{"Name": "size", "Values": ["3"]}]) == []
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        volumes(ec2, VolumeIds=[vid])
    assert code(e) == "InvalidVolume.NotFound"


def test_bad_volumes_change_nothing(cloud):
    ec2 = cloud.ec2()
    before = volumes(ec2)
    cases = [
        (dict(AvailabilityZone=cloud.cluster, Size=0),
         "InvalidParameterValue"),
        (dict(AvailabilityZone=cloud.cluster, Size=16385),
         "InvalidParameterValue"),
        (dict(AvailabilityZone=cloud.cluster, Size=2000,
              VolumeType="standard"), "InvalidParameterValue"),
        (dict(AvailabilityZone="nowhere-1z", Size=1),
         "InvalidZone.NotFound"),
        (dict(AvailabilityZone=cloud.cluster), "MissingParameter"),
        (dict(AvailabilityZone=cloud.cluster, Size=1, VolumeType="gp9"),
         "InvalidParameterValue"),
        (dict(AvailabilityZone=cloud.cluster, Size=1, VolumeType="gp2",
              Iops=300), "InvalidParameterCombination"),
        (dict(AvailabilityZone=cloud.cluster, Size=1, Encrypted=True),
         "UnsupportedOperation"),
        (dict(AvailabilityZone=cloud.cluster, Size=1,
              SnapshotId="snap-0123456789abcdef0"),
         "InvalidSnapshot.NotFound"),
    ]
    for kw, want in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.create_volume(**kw)
        assert code(e) == want, kw
    for call, kw, want in [
            (ec2.delete_volume, dict(VolumeId="vol-0123456789abcdef0"),
             "InvalidVolume.NotFound"),
            (ec2.delete_volume, dict(VolumeId="nope"),
             "InvalidVolumeID.Malformed"),
            (ec2.create_snapshot, dict(VolumeId="vol-0123456789abcdef0"),
             "InvalidVolume.NotFound"),
            (ec2.describe_volumes, dict(VolumeIds=["vol-0123456789abcdef0"]),
             "InvalidVolume.NotFound"),
            (ec2.describe_snapshots,
             dict(SnapshotIds=["snap-0123456789abcdef0"]),
             "InvalidSnapshot.NotFound"),
            (ec2.attach_volume, dict(VolumeId="vol-0123456789abcdef0",
                                     InstanceId="i-0123456789abcdef0",
                                     Device="/dev/sdf"),
             "InvalidVolume.NotFound"),
            (ec2.detach_volume, dict(VolumeId="vol-0123456789abcdef0"),
             "InvalidVolume.NotFound")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(**kw)
        assert code(e) == want, (call, kw)
    assert volumes(ec2) == before


def test_capacity(cloud):
    """The SC's configured capacity: a volume beyond it is refused by
    CreateVolume itself and leaves no trace."""
    ec2 = cloud.ec2()
    before = volumes(ec2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_volume(AvailabilityZone=cloud.cluster, Size=16000)
    assert code(e) in ("VolumeLimitExceeded", "InsufficientVolumeCapacity")
    assert volumes(ec2) == before


def test_paging_and_accounts(cloud, bob):
    ec2 = cloud.ec2()
    mine = [new_volume(ec2, cloud) for _ in range(6)]
    theirs = new_volume(bob, cloud)
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5}
        if token:
            kw["NextToken"] = token
        page = ec2.describe_volumes(**kw)
        assert len(page["Volumes"]) <= 5
        seen += [v["VolumeId"] for v in page["Volumes"]]
        token = page.get("NextToken")
        if not token:
            break
    assert set(mine) <= set(seen) and theirs not in seen
    assert len(seen) == len(set(seen))
    # Another account's volume does not exist for this one.
    for call, kw in [(ec2.describe_volumes, dict(VolumeIds=[theirs])),
                     (ec2.delete_volume, dict(VolumeId=theirs)),
                     (ec2.create_snapshot, dict(VolumeId=theirs))]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(**kw)
        assert code(e) == "InvalidVolume.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_volumes(MaxResults=5, NextToken="garbage")
    assert code(e) == "InvalidNextToken"
    for v in mine:
        ec2.delete_volume(VolumeId=v)
    bob.delete_volume(VolumeId=theirs)


def test_modify_volume(cloud):
    ec2 = cloud.ec2()
    vid = new_volume(ec2, cloud, size=1)
    m = ec2.modify_volume(VolumeId=vid, Size=3, VolumeType="gp3")
    m = m["VolumeModification"]
    assert m["OriginalSize"] == 1 and m["TargetSize"] == 3
    assert m["TargetVolumeType"] == "gp3"
    wait_until(lambda: ec2.describe_volumes_modifications(
        VolumeIds=[vid])["VolumesModifications"][0]["ModificationState"]
        == "completed", 30, 0.3, "the modification")
    v = volumes(ec2, VolumeIds=[vid])[0]
    assert v["Size"] == 3 and v["VolumeType"] == "gp3"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_volume(VolumeId=vid, Size=2)
    assert code(e) == "InvalidParameterValue"
    assert volumes(ec2, VolumeIds=[vid])[0]["Size"] == 3
    ec2.delete_volume(VolumeId=vid)


def test_snapshots(cloud, bob):
    ec2 = cloud.ec2()
    vid = new_volume(ec2, cloud, size=1)
    s = ec2.create_snapshot(VolumeId=vid, Description="first",
                            TagSpecifications=[{
                                "ResourceType": "snapshot",
                                "Tags": [{"Key": "k", "Value": "v"}]}])
    sid = s["SnapshotId"]
    assert s["State"] in ("pending", "completed") and s["VolumeId"] == vid
    assert s["VolumeSize"] == 1 and s["Description"] == "first"
    # Visible at once.
    assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid],
                                              WaiterConfig=FAST)
    got = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    assert got["Progress"] == "100%" and got["State"] == "completed"
    assert {"Key": "k", "Value": "v"} in got["Tags"]
    assert sid in [x["SnapshotId"] for x in ec2.describe_snapshots(
        OwnerIds=["self"])["Snapshots"]]
    assert sid in [x["SnapshotId"] for x in ec2.describe_snapshots(
        Filters=[{"Name": "volume-id", "Values": [vid]}])["Snapshots"]]
    # Not bob's, until shared with him.
    assert sid not in [x["SnapshotId"] for x in bob.describe_snapshots(
        )["Snapshots"]]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.create_volume(AvailabilityZone=cloud.cluster, SnapshotId=sid)
    assert code(e) == "InvalidSnapshot.NotFound"
    ec2.modify_snapshot_attribute(
        SnapshotId=sid, Attribute="createVolumePermission",
        OperationType="add", UserIds=[bob.account])
    perms = ec2.describe_snapshot_attribute(
        SnapshotId=sid, Attribute="createVolumePermission")
    assert perms["CreateVolumePermissions"] == [{"UserId": bob.account}]
    assert sid in [x["SnapshotId"] for x in bob.describe_snapshots(
        RestorableByUserIds=["self"])["Snapshots"]]
    bv = bob.create_volume(AvailabilityZone=cloud.cluster,
                           SnapshotId=sid)["VolumeId"]
    bob.get_waiter("volume_available").wait(VolumeIds=[bv], WaiterConfig=FAST)
    assert volumes(bob, VolumeIds=[bv])[0]["SnapshotId"] == sid
    # Bob may not delete or share it.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.delete_snapshot(SnapshotId=sid)
    assert code(e) == "InvalidSnapshot.NotFound"
    ec2.reset_snapshot_attribute(SnapshotId=sid,
                                 Attribute="createVolumePermission")
    assert sid not in [x["SnapshotId"] for x in bob.describe_snapshots(
        )["Snapshots"]]
    # A volume smaller than its snapshot is refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_volume(AvailabilityZone=cloud.cluster, SnapshotId=sid,
                          Size=0)
    assert code(e) == "InvalidParameterValue"
    # A copy shares the data and outlives its source.
    cid = ec2.copy_snapshot(SourceSnapshotId=sid, SourceRegion="koala-1",
                            Description="copy")["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[cid],
                                              WaiterConfig=FAST)
    ec2.delete_snapshot(SnapshotId=sid)
    nv = new_volume(ec2, cloud, size=1, SnapshotId=cid)
    # A snapshot of a deleted volume: the volume is gone.
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_snapshot(VolumeId=vid)
    assert code(e) == "InvalidVolume.NotFound"
    for v in (nv,):
        ec2.delete_volume(VolumeId=v)
    bob.delete_volume(VolumeId=bv)
    ec2.delete_snapshot(SnapshotId=cid)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_snapshots(SnapshotIds=[cid])
    assert code(e) == "InvalidSnapshot.NotFound"


def test_aws_cli_waiters(cloud, tmp_path):
    """aws-cli's own waiters (15 s between polls: the volume and snapshot
    are ready before the first)."""
    aws = cloud.aws_ec2(tmp_path)
    v = json.loads(aws("create-volume", "--availability-zone", cloud.cluster,
                       "--size", "1").stdout)
    aws("wait", "volume-available", "--volume-ids", v["VolumeId"])
    s = json.loads(aws("create-snapshot", "--volume-id",
                       v["VolumeId"]).stdout)
    aws("wait", "snapshot-completed", "--snapshot-ids", s["SnapshotId"])
    aws("delete-snapshot", "--snapshot-id", s["SnapshotId"])
    aws("delete-volume", "--volume-id", v["VolumeId"])
    aws("wait", "volume-deleted", "--volume-ids", v["VolumeId"])


def test_clc_kill9_keeps_what_it_answered(cloud):
    ec2 = cloud.ec2()
    vid = ec2.create_volume(AvailabilityZone=cloud.cluster,
                            Size=1)["VolumeId"]
    cloud.daemons["clc"].stop(signal.SIGKILL)
    cloud.daemons["clc"].start()
    ec2 = cloud.ec2()
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=vid)
