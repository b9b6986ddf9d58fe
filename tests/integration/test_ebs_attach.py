"""EBS end to end through the EC2 API (issue 11, "Shown by"): a cloud of
two nodes and the zone's koala-sc, two busybox guests (one per node).  A
volume is created with boto3, attached to the first guest, a known pattern
written from inside it (dd, fsync), detached, attached to the second guest
and read back; snapshots before and after more writes, the second far
smaller in Walrus than the first; volumes from each with the right bytes;
the SC killed with -9 while a guest writes (the writes stall and resume,
nothing flushed is lost); ModifyVolume grows it online (the guest sees
the new size, data intact); a stopped instance keeps its volume; terminate
lets go of it; and the bad input EC2 refuses.  Commands run inside the
guests through their :8080 hook (tests/images/README.md), disks found by
their serial (the volume id without its dash, as Nitro guests see EBS)."""
import hashlib
import signal
import time

import botocore.exceptions
import pytest

from cloud import IMAGES, Cloud
from conftest import KOALA_BIN, sh, wait_until
from test_compute import wait_state
from test_sc import storage_s3, stored_blocks
from test_sg_traffic import node_of

FAST = {"Delay": 1, "MaxAttempts": 120}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("ebsattach"), n_nodes=2,
              scheduler="ROUNDROBIN", node_cores=4, node_memory_mb=2048,
              sc=True, clc_args=["--poll-interval-ms", "500"]).start()
    try:
        c.ami, _, _ = c.upload_images()
        ec2 = c.ec2()
        ids = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=c.ami, MinCount=2, MaxCount=2,
            InstanceType="m1.small")["Instances"]]
        got = wait_state(ec2, ids, "running", timeout=300)
        assert node_of(c, ids[0]) != node_of(c, ids[1])
        c.a, c.b = ids
        c.ip = {i: got[i]["PrivateIpAddress"] for i in ids}
        for i in ids:
            wait_until(lambda: run(c, i, "true")[0] == 0 or None, 180, 1,
                       f"{i}'s :8080")
    except BaseException:
        c.stop()
        raise
    yield c
    bad = {k: rc for k, rc in c.stop().items() if rc != 0}
    assert not bad, bad


def run(cloud, iid, script, timeout=60):
    try:
        return cloud.guest_run(cloud.ip[iid], script, timeout)
    except Exception as e:  # (not up yet)
        return (255, str(e))


def code(e):
    return e.value.response["Error"]["Code"]


def serial(vid):
    return "vol" + vid[4:]


def disks(cloud, iid):
    """{serial: device name} as the guest sees its disks."""
    rc, out = run(cloud, iid, "koala-disks", 20)
    assert rc == 0, out
    return {f[2]: f[0] for f in (l.split() for l in out.split("\n"))
            if len(f) == 3}


def wait_disk(cloud, iid, vid, present=True):
    s = serial(vid)
    return wait_until(
        lambda: (disks(cloud, iid).get(s) if present
                 else s not in disks(cloud, iid)),
        30, 0.3, f"{vid} {'in' if present else 'out of'} {iid}")


def attachment(ec2, vid):
    a = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Attachments"]
    return a[0] if a else None


def attach(ec2, cloud, vid, iid, device):
    r = ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device=device)
    assert r["State"] == "attaching" and r["Device"] == device
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=FAST)
    wait_until(lambda: (attachment(ec2, vid) or {}).get("State") ==
               "attached", 60, 0.3, f"{vid} attached")
    return wait_disk(cloud, iid, vid)


def detach(ec2, cloud, vid, iid, **kw):
    r = ec2.detach_volume(VolumeId=vid, **kw)
    assert r["State"] == "detaching"
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    assert attachment(ec2, vid) is None
    wait_disk(cloud, iid, vid, present=False)


def pattern(lines, tag):
    return "".join(f"{i}-{tag}\n" for i in range(1, lines + 1)).encode()


def write(cloud, iid, dev, lines, tag, seek_kib=0):
    data = pattern(lines, tag)
    rc, out = run(cloud, iid, f"""
        seq 1 {lines} | sed 's/$/-{tag}/' > /tmp/p
        dd if=/tmp/p of=/dev/{dev} bs=1024 seek={seek_kib} conv=fsync 2>&1
        sync""")
    assert rc == 0, out
    return data


def read_hash(cloud, iid, dev, n, skip_kib=0):
    rc, out = run(cloud, iid, f"dd if=/dev/{dev} bs=1024 skip={skip_kib} "
                  f"2>/dev/null | head -c {n} | sha256sum")
    assert rc == 0, out
    return out.split()[0]


def new_volume(ec2, cloud, **kw):
    vid = ec2.create_volume(AvailabilityZone=cloud.cluster,
                            **({"Size": 1} | kw))["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    return vid


def test_write_detach_and_read_on_another_node(cloud):
    ec2 = cloud.ec2()
    vid = new_volume(ec2, cloud)
    dev = attach(ec2, cloud, vid, cloud.a, "/dev/sdf")
    # DescribeInstances shows it in the instance's block device mapping.
    inst = ec2.describe_instances(InstanceIds=[cloud.a])[
        "Reservations"][0]["Instances"][0]
    (bdm,) = inst["BlockDeviceMappings"]
    assert bdm["DeviceName"] == "/dev/sdf"
    assert bdm["Ebs"]["VolumeId"] == vid
    assert bdm["Ebs"]["Status"] == "attached"
    data = write(cloud, cloud.a, dev, 200000, "first")  # 2.5 MB
    detach(ec2, cloud, vid, cloud.a)
    dev_b = attach(ec2, cloud, vid, cloud.b, "xvdg")
    assert read_hash(cloud, cloud.b, dev_b, len(data)) == \
        hashlib.sha256(data).hexdigest()
    cloud.vol, cloud.data = vid, data


def test_bad_attachments_change_nothing(cloud):
    ec2 = cloud.ec2()
    vid = cloud.vol  # attached to b as xvdg
    other = new_volume(ec2, cloud)
    before = ec2.describe_volumes(VolumeIds=[vid, other])["Volumes"]
    cases = [
        (dict(VolumeId=vid, InstanceId=cloud.a, Device="/dev/sdh"),
         "VolumeInUse"),
        (dict(VolumeId=other, InstanceId=cloud.b, Device="xvdg"),
         "InvalidParameterValue"),
        (dict(VolumeId=other, InstanceId=cloud.b, Device="/dev/nvme1n1"),
         "InvalidParameterValue"),
        (dict(VolumeId=other, InstanceId="i-0123456789abcdef0",
              Device="/dev/sdh"), "InvalidInstanceID.NotFound"),
    ]
    for kw, want in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.attach_volume(**kw)
        assert code(e) == want, kw
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_volume(VolumeId=vid)
    assert code(e) == "VolumeInUse"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.detach_volume(VolumeId=other)
    assert code(e) == "IncorrectState"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.detach_volume(VolumeId=vid, InstanceId=cloud.a)
    assert code(e) == "InvalidAttachment.NotFound"
    # A zone of its own (registered, its SC away): its volume stays
    # creating, and an instance of zone-a cannot have it.
    sh(KOALA_BIN, "register", "cluster", "zone-z", "--endpoint",
       "https://127.0.0.1:9/", "--data-dir", cloud.dir)
    sh(KOALA_BIN, "register", "sc", "sc-z", "--cluster", "zone-z",
       "--endpoint", "https://127.0.0.1:9/", "--data-dir", cloud.dir)
    far = ec2.create_volume(AvailabilityZone="zone-z", Size=1)["VolumeId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_volume(VolumeId=far, InstanceId=cloud.a, Device="/dev/sdh")
    assert code(e) == "InvalidVolume.ZoneMismatch"
    assert ec2.describe_volumes(VolumeIds=[vid, other])["Volumes"] == before
    ec2.delete_volume(VolumeId=other)


def test_incremental_snapshots_and_volumes_from_them(cloud):
    ec2 = cloud.ec2()
    s3 = storage_s3(cloud)
    vid, data = cloud.vol, cloud.data
    dev = disks(cloud, cloud.b)[serial(vid)]
    before = sum(stored_blocks(s3, cloud.cluster).values())
    s1 = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[s1],
                                              WaiterConfig=FAST)
    first = sum(stored_blocks(s3, cloud.cluster).values()) - before
    # More writes, past the first pattern's end (the first snapshot must
    # not see them): one 512 KiB block.
    more = write(cloud, cloud.b, dev, 300, "second", seek_kib=4096)
    s2 = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[s2],
                                              WaiterConfig=FAST)
    second = sum(stored_blocks(s3, cloud.cluster).values()) - before - first
    print(f"\nWalrus: first snapshot {first} bytes, second {second} bytes")
    assert first >= len(data) and 0 < second <= first // 4
    # Volumes from each, on the other guest.
    v1 = new_volume(ec2, cloud, SnapshotId=s1)
    v2 = new_volume(ec2, cloud, SnapshotId=s2, Size=2)
    assert ec2.describe_volumes(VolumeIds=[v2])["Volumes"][0]["Size"] == 2
    d1 = attach(ec2, cloud, v1, cloud.a, "/dev/sdg")
    d2 = attach(ec2, cloud, v2, cloud.a, "/dev/sdh")
    h = hashlib.sha256
    assert read_hash(cloud, cloud.a, d1, len(data)) == h(data).hexdigest()
    assert read_hash(cloud, cloud.a, d2, len(data)) == h(data).hexdigest()
    assert read_hash(cloud, cloud.a, d2, len(more), 4096) == \
        h(more).hexdigest()
    assert read_hash(cloud, cloud.a, d1, len(more), 4096) != \
        h(more).hexdigest()
    for v in (v1, v2):
        detach(ec2, cloud, v, cloud.a)
        ec2.delete_volume(VolumeId=v)
    cloud.more = more


def test_sc_killed_mid_write(cloud):
    """koala-sc and its exports killed with -9 while the guest writes and
    flushes: the writes wait and finish once it is back; every flushed byte
    is there."""
    ec2 = cloud.ec2()
    vid = cloud.vol
    dev = disks(cloud, cloud.b)[serial(vid)]
    chunk = pattern(8000, "mid")[:65536]
    assert len(chunk) == 65536
    rc, out = run(cloud, cloud.b, f"""
        seq 1 8000 | sed "s/$/-mid/" | head -c 65536 > /tmp/chunk
        rm -f /tmp/w.done /tmp/w.err
        (for i in $(seq 0 399); do
            dd if=/tmp/chunk of=/dev/{dev} bs=65536 seek=$((64 + i)) \\
                count=1 conv=fsync 2>/dev/null || echo "FAIL $i" >> /tmp/w.err
            echo $i > /tmp/w.at
         done; echo done > /tmp/w.done) > /dev/null 2>&1 &
        sleep 1; cat /tmp/w.at""", 30)
    assert rc == 0, out
    assert cloud.daemons["sc"].stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        time.sleep(2)
        stalled = run(cloud, cloud.b, "ls /tmp/w.done", 10)[0] != 0
    finally:
        cloud.start_sc()
    assert stalled, "the writes finished while the SC was down"
    wait_until(lambda: run(cloud, cloud.b, "cat /tmp/w.done", 10)[0] == 0,
               120, 0.5, "the writes to finish")
    rc, out = run(cloud, cloud.b, "cat /tmp/w.err; dmesg | grep -i "
                  "'i/o error'; true")
    assert "FAIL" not in out and "I/O error" not in out, out
    h = hashlib.sha256
    assert read_hash(cloud, cloud.b, dev, 400 * 65536, 64 * 64) == \
        h(chunk * 400).hexdigest()
    assert read_hash(cloud, cloud.b, dev, len(cloud.data)) == \
        h(cloud.data).hexdigest()
    assert attachment(ec2, vid)["State"] == "attached"


def sectors(cloud, iid, vid):
    """The size the guest sees of the volume, in 512-byte sectors."""
    rc, out = run(cloud, iid, "koala-disks", 20)
    assert rc == 0, out
    got = [int(f[1]) for f in (l.split() for l in out.split("\n"))
           if len(f) == 3 and f[2] == serial(vid)]
    return got[0] if got else 0


def test_modify_volume_grows_online(cloud):
    """ModifyVolume Size on a volume attached to a running guest: the SC
    grows it, the node gives the guest the new size (a second NBD client
    under the disk, block_resize: docs/storage.md); completed once the
    guest has it, which sees it by itself (scsi-hd: Linux takes the
    capacity change without a rescan); what it held is intact and it
    writes past the old end.  With the node away, the modification waits
    for it (asked again each round) and completes once it is back."""
    ec2 = cloud.ec2()
    vid = cloud.vol
    dev = disks(cloud, cloud.b)[serial(vid)]
    assert sectors(cloud, cloud.b, vid) == (1 << 30) // 512
    t0 = time.monotonic()
    m = ec2.modify_volume(VolumeId=vid, Size=2)["VolumeModification"]
    assert m["ModificationState"] == "modifying" and m["TargetSize"] == 2
    got = wait_until(lambda: (lambda x: x["ModificationState"] in (
        "completed", "failed") and x)(ec2.describe_volumes_modifications(
            VolumeIds=[vid])["VolumesModifications"][0]),
        60, 0.2, "the modification to end")
    t_done = time.monotonic() - t0
    assert got["ModificationState"] == "completed", got
    # Completed only once the node answered: the guest has it by now, or
    # a moment later (its own handling of the event).
    wait_until(lambda: sectors(cloud, cloud.b, vid) == (2 << 30) // 512,
               10, 0.2, "the new size in the guest")
    t_seen = time.monotonic() - t0
    print(f"\nModifyVolume 1 -> 2 GiB, attached: completed in {t_done:.2f} s,"
          f" in the guest {t_seen:.2f} s")
    v = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
    assert v["Size"] == 2 and v["State"] == "in-use"
    assert read_hash(cloud, cloud.b, dev, len(cloud.data)) == \
        hashlib.sha256(cloud.data).hexdigest()
    tail = write(cloud, cloud.b, dev, 100, "grown", seek_kib=(1 << 20) + 64)
    assert read_hash(cloud, cloud.b, dev, len(tail), (1 << 20) + 64) == \
        hashlib.sha256(tail).hexdigest()
    cloud.tail = tail

    # The node away (koala-nc killed; the guest's QEMU runs on): the SC
    # grows the volume but the modification waits, asked again each
    # round, until the node is back and has given the guest the size.
    nc = cloud.daemons[node_of(cloud, cloud.b)]
    assert nc.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        ec2.modify_volume(VolumeId=vid, Size=3)
        time.sleep(3)  # six rounds of the CLC's poll
        m = ec2.describe_volumes_modifications(
            VolumeIds=[vid])["VolumesModifications"][0]
        assert m["ModificationState"] == "modifying", m
        assert sectors(cloud, cloud.b, vid) == (2 << 30) // 512
    finally:
        nc.start()
    wait_until(lambda: ec2.describe_volumes_modifications(VolumeIds=[vid])[
        "VolumesModifications"][0]["ModificationState"] == "completed",
        60, 0.3, "the modification completed once the node is back")
    wait_until(lambda: sectors(cloud, cloud.b, vid) == (3 << 30) // 512,
               10, 0.2, "3 GiB in the guest")
    assert read_hash(cloud, cloud.b, dev, len(cloud.data)) == \
        hashlib.sha256(cloud.data).hexdigest()


def test_stop_start_keeps_and_terminate_lets_go(cloud):
    ec2 = cloud.ec2()
    vid = cloud.vol
    ec2.stop_instances(InstanceIds=[cloud.b])
    wait_state(ec2, [cloud.b], "stopped", timeout=120)
    assert attachment(ec2, vid)["InstanceId"] == cloud.b
    # A stopped instance takes a volume and lets go of one.
    extra = new_volume(ec2, cloud)
    ec2.attach_volume(VolumeId=extra, InstanceId=cloud.b, Device="/dev/sdk")
    wait_until(lambda: (attachment(ec2, extra) or {}).get("State") ==
               "attached", 60, 0.3, f"{extra} attached to a stopped instance")
    ec2.detach_volume(VolumeId=extra)
    ec2.get_waiter("volume_available").wait(VolumeIds=[extra],
                                            WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=extra)
    ec2.start_instances(InstanceIds=[cloud.b])
    got = wait_state(ec2, [cloud.b], "running", timeout=300)
    cloud.ip[cloud.b] = got[cloud.b]["PrivateIpAddress"]
    wait_until(lambda: run(cloud, cloud.b, "true")[0] == 0 or None, 180, 1,
               "the guest back")
    dev = wait_disk(cloud, cloud.b, vid)
    assert read_hash(cloud, cloud.b, dev, len(cloud.data)) == \
        hashlib.sha256(cloud.data).hexdigest()
    assert attachment(ec2, vid)["State"] == "attached"
    # The grown size from the start (a new QEMU opens the export afresh).
    assert sectors(cloud, cloud.b, vid) == (3 << 30) // 512
    assert read_hash(cloud, cloud.b, dev, len(cloud.tail),
                     (1 << 20) + 64) == hashlib.sha256(cloud.tail).hexdigest()
    # Terminate: the volume is the user's again, available.
    ec2.terminate_instances(InstanceIds=[cloud.b])
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
