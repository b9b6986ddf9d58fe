"""EBS-backed images and instances (issue 11, docs/storage.md "EBS-backed
images and instances") with boto3 against a real koala-sc and one node:
the test guest's whole-disk image written onto a volume from inside a
running guest (as one makes an image by hand), snapshotted and registered
as the root of an image; instances launched from it boot from their own
volume made from the snapshot (with an extra EBS device and its tags),
keep what was written across stop and start, are imaged with CreateImage
(stopped first, snapshots, started again) and launched from that image
with the data there; terminate deletes the root volumes and keeps those
whose DeleteOnTermination was turned off; DeregisterImage leaves the
snapshots.  And the bad input EC2 refuses, each with its code, changing
nothing."""
import base64
import hashlib
import json
import pathlib
import signal
import subprocess
import tempfile

import botocore.exceptions
import pytest

from cloud import IMAGES, Cloud
from conftest import wait_until
from test_compute import wait_state

FAST = {"Delay": 1, "MaxAttempts": 180}
MARK_KIB = 512 * 1024  # where the tests write on the 1 GiB root disk


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "disk.qcow2").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("ebsimages"), n_nodes=1,
              node_cores=4, node_memory_mb=2048, sc=True,
              clc_args=["--poll-interval-ms", "500"]).start()
    try:
        c.ami, _, _ = c.upload_images()
        c.ip = {}
    except BaseException:
        c.stop()
        raise
    yield c
    bad = {k: rc for k, rc in c.stop().items() if rc != 0}
    assert not bad, bad


def code(e):
    return e.value.response["Error"]["Code"]


def run(cloud, iid, script, timeout=60):
    try:
        return cloud.guest_run(cloud.ip[iid], script, timeout)
    except Exception as e:  # (not up yet)
        return (255, str(e))


def boot(cloud, ec2, ids):
    got = wait_state(ec2, ids, "running", timeout=300)
    for i in ids:
        cloud.ip[i] = got[i]["PrivateIpAddress"]
        wait_until(lambda: run(cloud, i, "true")[0] == 0 or None, 240, 1,
                   f"{i}'s :8080")
    return got


def disks(cloud, iid):
    """{serial: device name} as the guest sees its disks."""
    rc, out = run(cloud, iid, "koala-disks", 20)
    assert rc == 0, out
    return {f[2]: f[0] for f in (l.split() for l in out.split("\n"))
            if len(f) == 3}


def serial(vid):
    return "vol" + vid[4:]


def volume_of(inst, device):
    for m in inst["BlockDeviceMappings"]:
        if m["DeviceName"] == device:
            return m["Ebs"]["VolumeId"]
    raise AssertionError(f"{device} not in {inst['BlockDeviceMappings']}")


def write_mark(cloud, iid, dev, text, seek_kib):
    rc, out = run(cloud, iid, f"printf '%s' '{text}' > /tmp/m\n"
                  f"dd if=/tmp/m of=/dev/{dev} bs=1024 seek={seek_kib}"
                  " conv=fsync,notrunc 2>&1 && sync")
    assert rc == 0, out


def read_mark(cloud, iid, dev, n, skip_kib):
    rc, out = run(cloud, iid, f"dd if=/dev/{dev} bs=1024 skip={skip_kib}"
                  f" count=1 2>/dev/null | head -c {n}")
    assert rc == 0, out
    return out


def disk_extents():
    """The data extents of the whole-disk test image, as raw bytes:
    [(offset, bytes)] (the rest of its 64 MiB is zeros)."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["qemu-img", "convert", "-O", "raw",
                        str(IMAGES / "disk.qcow2"), f"{d}/disk.raw"],
                       capture_output=True, check=True)
        raw = pathlib.Path(f"{d}/disk.raw").read_bytes()
    m = json.loads(subprocess.run(
        ["qemu-img", "map", "--output=json", str(IMAGES / "disk.qcow2")],
        capture_output=True, check=True, text=True).stdout)
    out = []
    for e in m:
        if e["data"]:
            out.append((e["start"], raw[e["start"]:e["start"] + e["length"]]))
    return raw, out


def write_image_onto(cloud, iid, dev):
    """dd the test guest's whole-disk image onto /dev/dev from inside the
    guest: the data, base64, after the script itself (the guest's hook
    keeps the script as a file: sed takes what follows its marker)."""
    raw, extents = disk_extents()
    chunk = 2 << 20
    for start, data in extents:
        for off in range(0, len(data), chunk):
            part = data[off:off + chunk]
            if part.count(0) == len(part):
                continue
            at = start + off
            assert at % 1024 == 0
            script = (
                f"sed '1,/^__DATA__$/d' \"$0\" | base64 -d | dd "
                f"of=/dev/{dev} bs=1024 seek={at // 1024} conv=notrunc,fsync"
                " 2>&1\nexit $?\n__DATA__\n" +
                base64.encodebytes(part).decode())
            rc, out = run(cloud, iid, script, timeout=120)
            assert rc == 0, out
    return raw


def kill9_clc(cloud):
    cloud.daemons["clc"].stop(signal.SIGKILL)
    cloud.daemons["clc"].start()


def test_boot_from_ebs_image_stop_start_create_image(cloud):
    ec2 = cloud.ec2()
    # A volume holding the whole-disk image, written from inside a guest.
    (a,) = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=cloud.ami, MinCount=1, MaxCount=1,
        InstanceType="m1.small")["Instances"]]
    boot(cloud, ec2, [a])
    vid = ec2.create_volume(AvailabilityZone=cloud.cluster,
                            Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    ec2.attach_volume(VolumeId=vid, InstanceId=a, Device="/dev/sdf")
    dev = wait_until(lambda: disks(cloud, a).get(serial(vid)), 60, 0.5,
                     f"{vid} in {a}")
    raw = write_image_onto(cloud, a, dev)
    rc, out = run(cloud, a, f"dd if=/dev/{dev} bs=1M count=64 2>/dev/null"
                  " | sha256sum")
    assert rc == 0 and out.split()[0] == hashlib.sha256(
        raw).hexdigest(), out
    ec2.detach_volume(VolumeId=vid)
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    snap = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap],
                                              WaiterConfig=FAST)
    ec2.terminate_instances(InstanceIds=[a])

    # The snapshot as the root of an image.
    ami = ec2.register_image(
        Name="busybox-ebs", RootDeviceName="/dev/sda1",
        VirtualizationType="hvm", Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"SnapshotId": snap,
                                      "VolumeType": "gp3"}}])["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    im = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert im["RootDeviceType"] == "ebs" and im["RootDeviceName"] == "/dev/sda1"
    assert im["BlockDeviceMappings"] == [{
        "DeviceName": "/dev/sda1", "Ebs": {
            "SnapshotId": snap, "VolumeSize": 1, "DeleteOnTermination": True,
            "VolumeType": "gp3", "Encrypted": False}}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_snapshot(SnapshotId=snap)
    assert code(e) == "InvalidSnapshot.InUse"

    # An instance booting from its own volume, with an extra one.
    r = ec2.run_instances(
        ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m1.small",
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {
            "VolumeSize": 1, "DeleteOnTermination": False}}],
        TagSpecifications=[{"ResourceType": "volume", "Tags": [
            {"Key": "made-by", "Value": "run-instances"}]}])
    b = r["Instances"][0]["InstanceId"]
    assert r["Instances"][0]["RootDeviceType"] == "ebs"
    inst = boot(cloud, ec2, [b])[b]
    assert inst["RootDeviceType"] == "ebs"
    assert inst["RootDeviceName"] == "/dev/sda1"
    assert ec2.describe_instance_attribute(
        InstanceId=b, Attribute="rootDeviceName")["RootDeviceName"] == {
            "Value": "/dev/sda1"}
    root, extra = volume_of(inst, "/dev/sda1"), volume_of(inst, "/dev/sdf")
    vols = {v["VolumeId"]: v for v in ec2.describe_volumes(
        VolumeIds=[root, extra])["Volumes"]}
    assert vols[root]["SnapshotId"] == snap and vols[root]["Size"] == 1
    assert vols[root]["VolumeType"] == "gp3"
    for v, dot in ((root, True), (extra, False)):
        assert vols[v]["State"] == "in-use"
        (att,) = vols[v]["Attachments"]
        assert att["InstanceId"] == b and att["State"] == "attached"
        assert att["DeleteOnTermination"] is dot
        assert {"Key": "made-by", "Value": "run-instances"} in vols[v]["Tags"]
    seen = disks(cloud, b)
    assert serial(root) in seen and serial(extra) in seen, seen
    # The root volume cannot go while the instance runs.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.detach_volume(VolumeId=root)
    assert code(e) == "IncorrectState"
    write_mark(cloud, b, seen[serial(root)], "root-before-stop", MARK_KIB)
    write_mark(cloud, b, seen[serial(extra)], "extra-before-stop", 0)

    # Stop and start: the same volumes, the data there.
    ec2.stop_instances(InstanceIds=[b])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[b],
                                            WaiterConfig=FAST)
    # A stopped instance lets its root go, will not start without it,
    # and takes it back as its root.
    ec2.detach_volume(VolumeId=root)
    ec2.get_waiter("volume_available").wait(VolumeIds=[root],
                                            WaiterConfig=FAST)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.start_instances(InstanceIds=[b])
    assert code(e) == "IncorrectInstanceState"
    ec2.attach_volume(VolumeId=root, InstanceId=b, Device="/dev/sda1")
    wait_until(lambda: ec2.describe_volumes(VolumeIds=[root])["Volumes"][0][
        "Attachments"][0]["State"] == "attached", 60, 0.5, "root attached")
    # (attached by hand, it stays on termination unless told, as EC2's)
    assert ec2.describe_volumes(VolumeIds=[root])["Volumes"][0][
        "Attachments"][0]["DeleteOnTermination"] is False
    ec2.modify_instance_attribute(InstanceId=b, BlockDeviceMappings=[{
        "DeviceName": "/dev/sda1", "Ebs": {"DeleteOnTermination": True}}])
    ec2.start_instances(InstanceIds=[b])
    boot(cloud, ec2, [b])
    seen = disks(cloud, b)
    assert read_mark(cloud, b, seen[serial(root)], 16,
                     MARK_KIB) == "root-before-stop"
    assert read_mark(cloud, b, seen[serial(extra)], 17,
                     0) == "extra-before-stop"

    # CreateImage: stopped first, a snapshot per volume, started again.
    write_mark(cloud, b, seen[serial(root)], "root-for-image", MARK_KIB)
    # (its mapping over the volumes': kept through the stop, so that the
    # image's /dev/sdf goes with the instances launched from it)
    ami2 = ec2.create_image(
        InstanceId=b, Name="busybox-ebs-2", Description="from b",
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf",
                              "Ebs": {"DeleteOnTermination": True}}],
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "k", "Value": "i"}]},
            {"ResourceType": "snapshot",
             "Tags": [{"Key": "k", "Value": "s"}]}])["ImageId"]
    # (the CLC killed while the instance stops: its restart carries on)
    kill9_clc(cloud)
    ec2 = cloud.ec2()
    ec2.get_waiter("image_available").wait(ImageIds=[ami2],
                                           WaiterConfig=FAST)
    im2 = ec2.describe_images(ImageIds=[ami2])["Images"][0]
    assert im2["Tags"] == [{"Key": "k", "Value": "i"}]
    maps = {m["DeviceName"]: m["Ebs"] for m in im2["BlockDeviceMappings"]}
    assert set(maps) == {"/dev/sda1", "/dev/sdf"}
    assert maps["/dev/sda1"]["DeleteOnTermination"] is True
    assert maps["/dev/sdf"]["DeleteOnTermination"] is True
    snaps = ec2.describe_snapshots(
        SnapshotIds=[m["SnapshotId"] for m in maps.values()])["Snapshots"]
    assert {s["VolumeId"] for s in snaps} == {root, extra}
    assert all(s["Tags"] == [{"Key": "k", "Value": "s"}] and
               ami2 in s["Description"] for s in snaps)
    ec2.get_waiter("instance_running").wait(InstanceIds=[b],
                                            WaiterConfig=FAST)
    boot(cloud, ec2, [b])

    # An instance of the new image has what its volumes had.
    (c,) = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=ami2, MinCount=1, MaxCount=1,
        InstanceType="m1.small")["Instances"]]
    kill9_clc(cloud)  # (its volumes and launch are rows: they go on)
    ec2 = cloud.ec2()
    inst = boot(cloud, ec2, [c])[c]
    croot, cextra = volume_of(inst, "/dev/sda1"), volume_of(inst, "/dev/sdf")
    seen = disks(cloud, c)
    assert read_mark(cloud, c, seen[serial(croot)], 14,
                     MARK_KIB) == "root-for-image"
    assert read_mark(cloud, c, seen[serial(cextra)], 17,
                     0) == "extra-before-stop"

    # NoReboot: the snapshots at once, the instance running throughout.
    ami3 = ec2.create_image(
        InstanceId=c, Name="busybox-ebs-3", NoReboot=True,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "NoDevice": ""}])[
        "ImageId"]
    assert ec2.describe_instances(InstanceIds=[c])["Reservations"][0][
        "Instances"][0]["State"]["Name"] == "running"
    ec2.get_waiter("image_available").wait(ImageIds=[ami3],
                                           WaiterConfig=FAST)
    maps3 = {m["DeviceName"]: m["Ebs"]["SnapshotId"] for m in
             ec2.describe_images(ImageIds=[ami3])["Images"][0][
                 "BlockDeviceMappings"]}
    assert set(maps3) == {"/dev/sda1"}  # (NoDevice: left out)
    assert ec2.describe_instances(InstanceIds=[c])["Reservations"][0][
        "Instances"][0]["State"]["Name"] == "running"
    assert run(cloud, c, "true")[0] == 0

    # Terminate: roots deleted, and c's /dev/sdf (its image said so); b's
    # /dev/sdf kept (as mapped).
    ec2.terminate_instances(InstanceIds=[b, c])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[b, c],
                                               WaiterConfig=FAST)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[root, croot, cextra],
                                          WaiterConfig=FAST)
    ec2.get_waiter("volume_available").wait(VolumeIds=[extra],
                                            WaiterConfig=FAST)

    # Deregistered, the images leave their snapshots, which may go now.
    for i in (ami, ami2, ami3):
        ec2.deregister_image(ImageId=i)
    left = ([snap] + [m["SnapshotId"] for m in maps.values()] +
            list(maps3.values()))
    assert len(ec2.describe_snapshots(SnapshotIds=left)["Snapshots"]) == 4
    for s in left:
        ec2.delete_snapshot(SnapshotId=s)
    for v in (vid, extra):
        ec2.delete_volume(VolumeId=v)


def test_bad_mappings_change_nothing(cloud):
    ec2 = cloud.ec2()
    vid = ec2.create_volume(AvailabilityZone=cloud.cluster,
                            Size=2)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    snap = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap],
                                              WaiterConfig=FAST)
    root = {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}

    def images():
        return sorted(i["ImageId"] for i in ec2.describe_images(
            Owners=["self"])["Images"])

    def vols():
        return sorted(v["VolumeId"] for v in
                      ec2.describe_volumes()["Volumes"])

    before_images, before_vols = images(), vols()
    bad = [
        ({"BlockDeviceMappings": [root]}, "MissingParameter"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": snap}}]},
         "InvalidBlockDeviceMapping"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 2}}]},
         "InvalidBlockDeviceMapping"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda",
             "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}]},
         "InvalidSnapshot.NotFound"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda",
             "Ebs": {"SnapshotId": snap, "VolumeSize": 1}}]},
         "InvalidBlockDeviceMapping"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            root, {"DeviceName": "/dev/xvda", "NoDevice": ""}]},
         "InvalidBlockDeviceMapping"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda",
             "Ebs": {"SnapshotId": snap, "Encrypted": True}}]},
         "UnsupportedOperation"),
        ({"RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda",
             "Ebs": {"SnapshotId": snap, "VolumeType": "io9"}}]},
         "InvalidParameterValue"),
        ({"RootDeviceName": "/dev/xvda", "KernelId": "aki-01234567",
          "BlockDeviceMappings": [root]}, "InvalidParameterCombination"),
    ]
    for kw, want in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.register_image(Name="bad-ebs", **kw)
        assert code(e) == want, (kw, e.value)
    ami = ec2.register_image(Name="good-ebs", RootDeviceName="/dev/xvda",
                             BlockDeviceMappings=[
                                 root, {"DeviceName": "/dev/sdb",
                                        "VirtualName": "ephemeral0"}])[
        "ImageId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.register_image(Name="good-ebs", RootDeviceName="/dev/xvda",
                           BlockDeviceMappings=[root])
    assert code(e) == "InvalidAMIName.Duplicate"
    assert images() == sorted(before_images + [ami])
    got = ec2.describe_images(Filters=[
        {"Name": "block-device-mapping.snapshot-id", "Values": [snap]},
        {"Name": "root-device-type", "Values": ["ebs"]}])["Images"]
    assert [i["ImageId"] for i in got] == [ami]
    assert got[0]["BlockDeviceMappings"][1] == {
        "DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}
    assert ec2.describe_images(Filters=[
        {"Name": "root-device-type", "Values": ["instance-store"]},
        {"Name": "image-id", "Values": [ami]}])["Images"] == []

    # RunInstances: the mapping over the image's, checked before anything.
    run_bad = [
        ([{"DeviceName": "/dev/xvda", "NoDevice": ""}],
         "InvalidBlockDeviceMapping"),
        ([{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 1}}],
         "InvalidBlockDeviceMapping"),
        ([{"DeviceName": "/dev/sdf", "Ebs": {}}],
         "InvalidBlockDeviceMapping"),
        ([{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 0}}],
         "InvalidParameterValue"),
        ([{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}},
          {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2}}],
         "InvalidBlockDeviceMapping"),
    ]
    for m, want in run_bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                              BlockDeviceMappings=m)
        assert code(e) == want, (m, e.value)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                          KernelId="aki-01234567")
    assert code(e) == "InvalidParameterCombination"
    # CreateImage of an instance-store instance, of none.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_image(InstanceId="i-0123456789abcdef0", Name="x-image")
    assert code(e) == "InvalidInstanceID.NotFound"
    assert vols() == before_vols
    # The image holds its snapshot until deregistered.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_snapshot(SnapshotId=snap)
    assert code(e) == "InvalidSnapshot.InUse"
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=snap)
    ec2.delete_volume(VolumeId=vid)
