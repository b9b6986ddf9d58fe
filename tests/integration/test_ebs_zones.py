"""EBS snapshots are regional: a volume in one zone from a snapshot taken
in another (docs/storage.md, "A volume from another zone's snapshot").
Two zones, each with its own koala-sc, one Walrus; no node runs and no
guest boots: the bytes go in and come out through the SCs' exports with
qemu-io / qemu-img holding a node's certificate, as test_sc.py does."""
import time

import botocore.exceptions
import pytest

from conftest import KOALA_BIN, sh, wait_until
from soapclient import child, text
from test_sc import (GIB, MIB, call, export, fault, same_bytes, snap_id,
                     storage_s3, stored_blocks, tls_dir, vol_id,
                     write_random)
from zones import ZonesCloud

FAST = {"Delay": 1, "MaxAttempts": 120}
A, B = "zone-a", "zone-b"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = ZonesCloud(tmp_path_factory.mktemp("xzone"), zones=(A, B),
                   nodes_per_zone=0, tunnels=False, sc=True,
                   clc_args=["--poll-interval-ms", "500"])
    c.start()
    # node certificates for the NBD clients, one per zone (no NC runs)
    for node, zone in (("n1", A), ("n2", B)):
        sh(KOALA_BIN, "register", "node", node, "--cluster", zone,
           "--endpoint", "https://127.0.0.1:1/", "--data-dir", c.dir)
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def code(e):
    return e.value.response["Error"]["Code"]


def available(ec2, vid):
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    return ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]


def written_volume(cloud, tmp_path, size_gib=2):
    """A volume in zone A with known bytes (through its SC's export to
    n1), and a file with the same bytes."""
    ec2 = cloud.ec2()
    vid = ec2.create_volume(AvailabilityZone=A, Size=size_gib)["VolumeId"]
    available(ec2, vid)
    sc = cloud.sc_soap(A)
    e = export(sc, vid, "n1")
    n1 = tls_dir(cloud, tmp_path, "n1")
    ref = tmp_path / f"{vid}.raw"
    with open(ref, "wb") as f:
        f.truncate(size_gib * GIB)
    write_random(tmp_path, n1, e, ref, 0, 4 * MIB)
    write_random(tmp_path, n1, e, ref, 300 * MIB + 4096, 4096)
    write_random(tmp_path, n1, e, ref, size_gib * GIB - MIB, MIB)
    call(sc, "UnexportVolume", volumeId=vid, node="n1")
    return vid, ref


def snapshot(ec2, vid):
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid],
                                              WaiterConfig=FAST)
    return sid


def reads_back(cloud, tmp_path, zone, node, vid, ref):
    """The volume's bytes, read through its zone's SC, are ref's."""
    sc = cloud.sc_soap(zone)
    e = export(sc, vid, node)
    try:
        ok, out = same_bytes(tls_dir(cloud, tmp_path, node), e, ref)
        assert ok, out
    finally:
        call(sc, "UnexportVolume", volumeId=vid, node=node)


def delete_volume(ec2, vid):
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid],
                                          WaiterConfig=FAST)


def test_volume_in_b_from_a_snapshot_of_a(cloud, tmp_path):
    ec2 = cloud.ec2()
    s3 = storage_s3(cloud)
    vid, ref = written_volume(cloud, tmp_path)
    blocks_before = stored_blocks(s3, A)
    sid = snapshot(ec2, vid)
    a_blocks = set(stored_blocks(s3, A)) - set(blocks_before)
    assert len(a_blocks) == 8 + 1 + 2, a_blocks  # 512 KiB blocks written
    b_before = stored_blocks(s3, B)
    # boto3, a zone other than the snapshot's; the size is the snapshot's
    v = ec2.create_volume(AvailabilityZone=B, SnapshotId=sid)
    assert v["SnapshotId"] == sid and v["AvailabilityZone"] == B
    assert v["Size"] == 2 and v["State"] == "creating"
    got = available(ec2, v["VolumeId"])
    assert got["SnapshotId"] == sid and got["AvailabilityZone"] == B
    assert got["Size"] == 2
    bv = v["VolumeId"]
    assert bv in [x["VolumeId"] for x in ec2.describe_volumes(
        Filters=[{"Name": "snapshot-id", "Values": [sid]}])["Volumes"]]
    # zone B read zone A's blocks where they are: nothing stored under B
    assert stored_blocks(s3, B) == b_before
    log = (cloud.base / f"{cloud.sc_daemon(B)}.log").read_text()
    assert f"{bv}: filled from {sid} of {A}" in log
    reads_back(cloud, tmp_path, B, "n2", bv, ref)
    # a bigger one: the rest reads as zeros
    big = ec2.create_volume(AvailabilityZone=B, SnapshotId=sid,
                            Size=3)["VolumeId"]
    assert available(ec2, big)["Size"] == 3
    reads_back(cloud, tmp_path, B, "n2", big, ref)
    delete_volume(ec2, big)
    # B's volume's first snapshot is full, its blocks stored under B (a
    # manifest of B naming A's blocks would outlive them), and it goes
    # back to zone A byte for byte
    s2 = snapshot(ec2, bv)
    log = (cloud.base / f"{cloud.sc_daemon(B)}.log").read_text()
    assert f"{s2}: completed (full of {bv}" in log
    b_blocks = set(stored_blocks(s3, B)) - set(b_before)
    assert {k.split("/")[-1] for k in b_blocks} == \
        {k.split("/")[-1] for k in a_blocks}
    back = ec2.create_volume(AvailabilityZone=A, SnapshotId=s2)["VolumeId"]
    available(ec2, back)
    reads_back(cloud, tmp_path, A, "n1", back, ref)
    # the source snapshot deleted: its blocks go from zone A, and B's
    # volume keeps its bytes (it holds them itself once available)
    ec2.delete_snapshot(SnapshotId=sid)
    wait_until(lambda: stored_blocks(s3, A) == blocks_before, timeout=30,
               what="zone A's blocks of the deleted snapshot collected")
    reads_back(cloud, tmp_path, B, "n2", bv, ref)
    ec2.delete_snapshot(SnapshotId=s2)
    wait_until(lambda: stored_blocks(s3, B) == b_before, timeout=30,
               what="zone B's blocks collected")
    for v_, zone in ((bv, B), (back, A), (vid, A)):
        delete_volume(ec2, v_)


def test_source_deleted_while_b_is_creating(cloud, tmp_path):
    """The snapshot (here a copy, which shares its source's data) deleted
    while a volume of zone B is still being made from it: zone A's SC
    keeps the blocks until the volume is available.  Zone B's SC is away
    meanwhile, so the volume stays `creating` as long as the test wants;
    when it comes back the CLC asks it again, from the volume's own
    record of the snapshot's data."""
    ec2 = cloud.ec2()
    s3 = storage_s3(cloud)
    vid, ref = written_volume(cloud, tmp_path, size_gib=1)
    before = stored_blocks(s3, A)
    sid = snapshot(ec2, vid)
    cid = ec2.copy_snapshot(SourceSnapshotId=sid,
                            SourceRegion="koala-1")["SnapshotId"]
    ec2.delete_snapshot(SnapshotId=sid)
    held = stored_blocks(s3, A)
    assert len(held) > len(before)
    cloud.daemons[cloud.sc_daemon(B)].stop()
    try:
        bv = ec2.create_volume(AvailabilityZone=B,
                               SnapshotId=cid)["VolumeId"]
        ec2.delete_snapshot(SnapshotId=cid)
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.describe_snapshots(SnapshotIds=[cid])
        assert code(e) == "InvalidSnapshot.NotFound"
        # several rounds of the CLC (500 ms each): the data stays
        for _ in range(6):
            v = ec2.describe_volumes(VolumeIds=[bv])["Volumes"][0]
            assert v["State"] == "creating" and v["SnapshotId"] == cid
            time.sleep(0.5)
        assert stored_blocks(s3, A) == held
    finally:
        cloud.start_sc(B)
    got = available(ec2, bv)
    assert got["SnapshotId"] == cid and got["Size"] == 1
    reads_back(cloud, tmp_path, B, "n2", bv, ref)
    # filled: now the deleted snapshot's data goes
    wait_until(lambda: stored_blocks(s3, A) == before, timeout=30,
               what="zone A's blocks collected once B's volume was filled")
    reads_back(cloud, tmp_path, B, "n2", bv, ref)
    for v_ in (bv, vid):
        delete_volume(ec2, v_)


def test_bad_input_across_zones(cloud, tmp_path):
    ec2 = cloud.ec2()
    vid, _ = written_volume(cloud, tmp_path)
    sid = snapshot(ec2, vid)
    before = ec2.describe_volumes()["Volumes"]
    for kw, want in [
            (dict(AvailabilityZone=B, SnapshotId=sid, Size=1),
             "InvalidParameterValue"),  # smaller than the snapshot
            (dict(AvailabilityZone=B, SnapshotId="snap-0123456789abcdef0"),
             "InvalidSnapshot.NotFound"),
            (dict(AvailabilityZone=B, SnapshotId="nope"),
             "InvalidSnapshotID.Malformed"),
            (dict(AvailabilityZone="nowhere-1z", SnapshotId=sid),
             "InvalidZone.NotFound")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.create_volume(**kw)
        assert code(e) == want, kw
    assert ec2.describe_volumes()["Volumes"] == before
    # zone B's SC itself, as the CLC calls it: another zone's snapshot
    # it cannot find, a zone name that is no zone's, too small a volume
    sc = cloud.sc_soap(B)
    assert fault(sc, "CreateVolume", volumeId=vol_id(), sizeBytes=2 * GIB,
                 snapshotId=snap_id(), snapshotZone=A) == \
        "InvalidSnapshot.NotFound"
    assert fault(sc, "CreateVolume", volumeId=vol_id(), sizeBytes=2 * GIB,
                 snapshotId=sid, snapshotZone="../zone-a") == \
        "InvalidParameterValue"
    assert fault(sc, "CreateVolume", volumeId=vol_id(), sizeBytes=GIB,
                 snapshotId=sid, snapshotZone=A) == "InvalidParameterValue"
    # ... and the same volume id again is the same volume
    x = vol_id()
    for _ in range(2):
        v = child(call(sc, "CreateVolume", volumeId=x, sizeBytes=2 * GIB,
                       snapshotId=sid, snapshotZone=A), "volume")
        assert text(v, "snapshotId") == sid
    assert fault(sc, "CreateVolume", volumeId=x, sizeBytes=3 * GIB,
                 snapshotId=sid, snapshotZone=A) == \
        "IdempotentParameterMismatch"
    wait_until(lambda: text(child(call(sc, "DescribeVolumes", volumeId=x),
                                  "volume"), "status") == "available",
               timeout=60)
    call(sc, "DeleteVolume", volumeId=x)
    ec2.delete_snapshot(SnapshotId=sid)
    delete_volume(ec2, vid)
