"""bench/launch/ebs.py: how fast RunInstances boots an EBS-backed instance
(its root volume made from a snapshot by koala-sc, exported over NBD to
the node, booted from) against the same whole-disk guest as an
instance-store image (downloaded from Walrus into the node's cache, a
qcow2 overlay), in one run, alternating.

A whole Koala cloud (Walrus, CLC, CC, one NC, the zone's SC; the harness
of the integration tests) runs on this host.  The test guest's whole-disk
image (tests/images: MBR, syslinux, the busybox kernel and initramfs) is
registered twice: as an instance-store machine image from Walrus, and as
the snapshot root of an EBS-backed image (written onto a volume from
inside a running guest with dd, as tests/integration/test_ebs_images.py
does, then snapshotted).  Each round launches one of each, one after the
other, and measures from the client's call: "running" in
DescribeInstances (polled every 50 ms), the guest's first console line
after mounting its disks (KOALA-GUEST-DISKS) and its DHCP lease
(KOALA-GUEST-READY); then terminates it (and, for EBS, waits for its root
volume to be deleted).  p50 and p95 over ROUNDS rounds; ratio EBS /
instance-store.

The CLC polls at its default interval (2 s), as a cloud would.

Environment: KOALA_BUILD_DIR, KOALA_IMAGES, ROUNDS (8), KEEP=1 keeps the
cloud's directory.
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench" / "launch"))

from cloud import IMAGES, Cloud  # noqa: E402
from conftest import wait_until  # noqa: E402
from launch import DISKS, READY, pct  # noqa: E402
import test_ebs_images as t  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "8"))
FAST = {"Delay": 1, "MaxAttempts": 300}


def ebs_image(cloud, ec2):
    """The whole-disk guest as a snapshot, registered as an EBS root."""
    (a,) = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=cloud.ami, MinCount=1, MaxCount=1,
        InstanceType="m1.small")["Instances"]]
    t.boot(cloud, ec2, [a])
    vid = ec2.create_volume(AvailabilityZone=cloud.cluster,
                            Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    ec2.attach_volume(VolumeId=vid, InstanceId=a, Device="/dev/sdf")
    dev = wait_until(lambda: t.disks(cloud, a).get(t.serial(vid)), 60, 0.5,
                     f"{vid} in {a}")
    t.write_image_onto(cloud, a, dev)
    ec2.terminate_instances(InstanceIds=[a])
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    snap = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap],
                                              WaiterConfig=FAST)
    ami = ec2.register_image(
        Name="bench-ebs", RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"SnapshotId": snap}}])["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    return ami


def store_image(cloud, ec2):
    """The same whole-disk guest as an instance-store image in Walrus."""
    cloud.s3().upload_file(str(IMAGES / "disk.qcow2"), "images",
                           "disk.qcow2")
    return ec2.register_image(Name="bench-store",
                              ImageLocation="images/disk.qcow2")["ImageId"]


def one(cloud, ec2, ami, timeout=300):
    """RunInstances of ami: {running, disks, ready} seconds, and its id."""
    inst_dir = cloud.dir / "nc1" / "instances"
    t0 = time.monotonic()
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                            InstanceType="m1.small")["Instances"][0][
        "InstanceId"]
    times, next_describe = {}, 0.0
    while time.monotonic() - t0 < timeout:
        now = time.monotonic()
        if now >= next_describe and "running" not in times:
            next_describe = now + 0.05
            i = ec2.describe_instances(InstanceIds=[iid])[
                "Reservations"][0]["Instances"][0]
            if i["State"]["Name"] == "running":
                times["running"] = time.monotonic() - t0
            elif i["State"]["Name"] in ("terminated", "shutting-down"):
                raise RuntimeError(f"{iid}: {i.get('StateReason')}")
        try:
            text = (inst_dir / iid / "console.log").read_text(
                errors="replace")
        except OSError:
            text = ""
        if DISKS in text and "disks" not in times:
            times["disks"] = time.monotonic() - t0
        if READY in text and "ready" not in times:
            times["ready"] = time.monotonic() - t0
        if len(times) == 3:
            return times, iid
        time.sleep(0.02)
    raise RuntimeError(f"{iid} timed out: {times}")


def main():
    base = Path(tempfile.mkdtemp(prefix="koala-bench-ebs-"))
    cloud = Cloud(base, n_nodes=1, node_cores=4, node_memory_mb=2048,
                  sc=True).start()
    try:
        cloud.ami, _, _ = cloud.upload_images()
        cloud.ip = {}
        ec2 = cloud.ec2()
        images = {"ebs": ebs_image(cloud, ec2),
                  "instance-store": store_image(cloud, ec2)}
        got = {k: {"running": [], "disks": [], "ready": []} for k in images}
        for r in range(ROUNDS):
            for kind, ami in images.items():
                times, iid = one(cloud, ec2, ami)
                for k, v in times.items():
                    got[kind][k].append(v)
                vols = [m["Ebs"]["VolumeId"] for m in ec2.describe_instances(
                    InstanceIds=[iid])["Reservations"][0]["Instances"][0][
                    "BlockDeviceMappings"]]
                ec2.terminate_instances(InstanceIds=[iid])
                ec2.get_waiter("instance_terminated").wait(
                    InstanceIds=[iid], WaiterConfig=FAST)
                if vols:
                    ec2.get_waiter("volume_deleted").wait(
                        VolumeIds=vols, WaiterConfig=FAST)
        print(f"RunInstances -> ... (s, p50 / p95 over {ROUNDS} rounds; the "
              "same whole-disk busybox guest, TCG)")
        print(f"{'':<16}{'EBS-backed':>20}{'instance-store':>20}"
              f"{'ratio p50':>11}")
        for k in ("running", "disks", "ready"):
            e, s = got["ebs"][k], got["instance-store"][k]
            print(f"{k:<16}{pct(e, 50):>9.2f} /{pct(e, 95):>6.2f} s"
                  f"{pct(s, 50):>11.2f} /{pct(s, 95):>6.2f} s"
                  f"{pct(e, 50) / pct(s, 50):>10.2f}x")
    finally:
        rcs = cloud.stop()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")
    return 0 if all(rc == 0 for rc in rcs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
