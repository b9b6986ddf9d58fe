"""koala-sc, the storage controller, driven over SOAP as the CLC drives
it, with a real NBD client: qemu-io / qemu-img with a node's certificate
from the cloud's CA, as the NC's QEMU opens an export (docs/storage.md).
Snapshots go into the cloud's real Walrus; their uploads are measured
there."""
import os
import random
import signal
import subprocess
import time

import boto3
import botocore.config
import pytest

from cloud import Cloud
from conftest import KOALA_BIN, sh, wait_until
from soapclient import SoapFault, child, children, text

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("sc")
    c = Cloud(base, with_cluster=False, sc=True, sc_capacity_gb=20)
    c.start()
    # node certificates for the NBD clients (no NC runs: qemu-io is the
    # client here)
    for n in ("n1", "n2"):
        sh(KOALA_BIN, "register", "node", n, "--cluster", c.cluster,
           "--endpoint", "https://127.0.0.1:1/", "--data-dir", c.dir)
    yield c
    c.stop()


def vol_id():
    return "vol-%017x" % random.getrandbits(68)


def snap_id():
    return "snap-%017x" % random.getrandbits(68)


def call(sc, op, **kw):
    return sc.call(op, list(kw.items()))


def fault(sc, op, **kw):
    with pytest.raises(SoapFault) as e:
        call(sc, op, **kw)
    return e.value.code


def volume(sc, vid):
    vols = children(call(sc, "DescribeVolumes", volumeId=vid), "volume")
    return {c.tag.split("}")[1]: c.text for c in vols[0]} if vols else None


def resources(sc):
    r = call(sc, "DescribeResources")
    return {k: int(text(r, k)) for k in
            ("capacityBytes", "usedBytes", "volumes", "exports")}


def tls_dir(cloud, tmp_path, node):
    """A tls-creds-x509 directory (endpoint=client) with node's
    certificate."""
    d = tmp_path / f"tls-{node}"
    d.mkdir(exist_ok=True)
    cert, key = cloud.certs("node", node)
    for name, src in (("ca-cert.pem", cloud.ca), ("client-cert.pem", cert),
                      ("client-key.pem", key)):
        if not (d / name).exists():
            (d / name).symlink_to(src)
    return d


def nbd_opts(export, reconnect=0):
    if export["transport"] == "unix":
        server = f"server.type=unix,server.path={export['path']}"
    else:
        assert export["transport"] == "tcp"
        server = (f"server.type=inet,server.host={export['host']},"
                  f"server.port={export['port']}")
    o = (f"driver=nbd,{server},"
         f"export={export['exportName']},tls-creds=tls0,"
         f"tls-hostname={export['tlsHostname']}")
    return o + (f",reconnect-delay={reconnect}" if reconnect else "")


def qemu_io(tls, export, *cmds, check=True):
    argv = ["qemu-io", "--object",
            f"tls-creds-x509,id=tls0,dir={tls},endpoint=client",
            "--image-opts", nbd_opts(export)]
    for c in cmds:
        argv += ["-c", c]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0 and "error" not in r.stdout.lower() and \
            "fail" not in r.stdout.lower(), r.stdout + r.stderr
    return r


def export(sc, vid, node):
    e = child(call(sc, "ExportVolume", volumeId=vid, node=node), "export")
    return {c.tag.split("}")[1]: c.text for c in e}


def create(sc, size_gib=1, snapshot=None):
    vid = vol_id()
    kw = {"volumeId": vid, "sizeBytes": size_gib * GIB}
    if snapshot:
        kw["snapshotId"] = snapshot
    call(sc, "CreateVolume", **kw)
    return vid


# ---- volumes and bad input ----

def test_volumes_and_bad_input(cloud):
    sc = cloud.sc_soap()
    before = resources(sc)
    vid = vol_id()
    t = time.monotonic()
    v = child(call(sc, "CreateVolume", volumeId=vid,
                   sizeBytes=16 * GIB), "volume")
    took = time.monotonic() - t
    assert text(v, "status") == "available", took
    # sparse: a 16 GiB volume takes almost nothing
    f = cloud.dir / "sc" / "volumes" / f"{vid}.qcow2"
    assert f.stat().st_blocks * 512 < 4 * MIB
    assert resources(sc)["usedBytes"] == before["usedBytes"] + 16 * GIB
    # the same request again: the same volume; other parameters: refused
    assert volume(sc, vid)["sizeBytes"] == str(16 * GIB)
    call(sc, "CreateVolume", volumeId=vid, sizeBytes=16 * GIB)
    assert fault(sc, "CreateVolume", volumeId=vid, sizeBytes=2 * GIB) == \
        "IdempotentParameterMismatch"
    # bad input: EC2's codes, nothing changed
    state = resources(sc)
    assert fault(sc, "CreateVolume", volumeId=vol_id(),
                 sizeBytes=0) == "InvalidParameterValue"
    assert fault(sc, "CreateVolume", volumeId=vol_id(),
                 sizeBytes=GIB + 1) == "InvalidParameterValue"
    assert fault(sc, "CreateVolume", volumeId=vol_id(),
                 sizeBytes=20 * GIB) == "InsufficientVolumeCapacity"
    assert fault(sc, "CreateVolume", volumeId="vol-nothex",
                 sizeBytes=GIB) == "InvalidVolume.Malformed"
    assert fault(sc, "CreateVolume", volumeId=vol_id()) == "MissingParameter"
    assert fault(sc, "CreateVolume", volumeId=vol_id(), sizeBytes=GIB,
                 snapshotId=snap_id()) == "InvalidSnapshot.NotFound"
    assert fault(sc, "DeleteVolume", volumeId=vol_id()) == \
        "InvalidVolume.NotFound"
    assert fault(sc, "ResizeVolume", volumeId=vid, sizeBytes=GIB) == \
        "InvalidParameterValue"
    assert fault(sc, "ResizeVolume", volumeId=vid, sizeBytes=40 * GIB) == \
        "InsufficientVolumeCapacity"
    assert fault(sc, "ExportVolume", volumeId=vol_id(), node="n1") == \
        "InvalidVolume.NotFound"
    assert fault(sc, "ExportVolume", volumeId=vid, node="a/b") == \
        "InvalidParameterValue"
    assert fault(sc, "CreateSnapshot", snapshotId=snap_id(),
                 volumeId=vol_id()) == "InvalidVolume.NotFound"
    assert fault(sc, "NoSuchOperation") == "InvalidAction"
    assert resources(sc) == state
    # grow offline
    call(sc, "ResizeVolume", volumeId=vid, sizeBytes=17 * GIB)
    assert volume(sc, vid)["sizeBytes"] == str(17 * GIB)
    assert "17 GiB" in subprocess.run(["qemu-img", "info", "-U", str(f)],
                                      capture_output=True, text=True).stdout
    d = child(call(sc, "DeleteVolume", volumeId=vid), "volume")
    assert text(d, "status") == "deleted"
    assert not f.exists()
    assert volume(sc, vid)["status"] == "deleted"
    assert resources(sc)["usedBytes"] == before["usedBytes"]
    # a snapshot of a deleted volume
    assert fault(sc, "CreateSnapshot", snapshotId=snap_id(),
                 volumeId=vid) == "InvalidVolume.NotFound"


def test_only_the_clc_ca(cloud, tmp_path):
    """A client without a certificate of the cloud's CA is refused."""
    other = tmp_path / "other"
    sh(KOALA_BIN, "init", "--data-dir", other)
    from soapclient import SoapClient
    c = SoapClient(f"https://127.0.0.1:{cloud.ports['sc']}/",
                   "urn:koala:sc", ca=cloud.ca,
                   cert=other / "certs" / "clc.pem",
                   key=other / "certs" / "clc.key")
    with pytest.raises(Exception):
        c.call("DescribeResources")


# ---- exports ----

def test_export_only_to_its_node(cloud, tmp_path):
    sc = cloud.sc_soap()
    vid = create(sc)
    e = export(sc, vid, "n1")
    assert e["tlsHostname"] == "koala-sc-sc1" and e["node"] == "n1"
    assert export(sc, vid, "n1") == e  # idempotent
    n1, n2 = tls_dir(cloud, tmp_path, "n1"), tls_dir(cloud, tmp_path, "n2")
    qemu_io(n1, e, "write -P 0x5a 0 1M", "flush", "read -P 0x5a 0 1M")
    # another node of the same CA: cut off in the TLS handshake
    r = qemu_io(n2, e, "read 0 4k", check=False)
    assert r.returncode != 0
    # a node certificate of another cloud's CA
    other = tmp_path / "other"
    sh(KOALA_BIN, "init", "--data-dir", other)
    sh(KOALA_BIN, "register", "node", "n1", "--cluster", "zone-a",
       "--endpoint", "https://127.0.0.1:1/", "--data-dir", other)
    d = tmp_path / "tls-other"
    d.mkdir()
    (d / "ca-cert.pem").symlink_to(cloud.ca)
    (d / "client-cert.pem").symlink_to(other / "certs" / "node-n1.pem")
    (d / "client-key.pem").symlink_to(other / "certs" / "node-n1.key")
    assert qemu_io(d, e, "read 0 4k", check=False).returncode != 0
    # a wrong tls-hostname is refused by the client
    bad = dict(e, tlsHostname="koala-sc-other")
    assert qemu_io(n1, bad, "read 0 4k", check=False).returncode != 0
    # in use: no second node, no delete
    assert fault(sc, "ExportVolume", volumeId=vid, node="n2") == "VolumeInUse"
    assert fault(sc, "DeleteVolume", volumeId=vid) == "VolumeInUse"
    assert resources(sc)["exports"] >= 1
    # online growth
    call(sc, "ResizeVolume", volumeId=vid, sizeBytes=2 * GIB)
    r = qemu_io(n1, e, "length")
    assert "2 GiB" in r.stdout, r.stdout
    call(sc, "UnexportVolume", volumeId=vid, node="n2")  # not its: no-op
    qemu_io(n1, e, "read -P 0x5a 0 1M")
    call(sc, "UnexportVolume", volumeId=vid, node="n1")
    call(sc, "UnexportVolume", volumeId=vid, node="n1")  # idempotent
    assert qemu_io(n1, e, "read 0 4k", check=False).returncode != 0
    # to another node now, the data still there
    e2 = export(sc, vid, "n2")
    qemu_io(n2, e2, "read -P 0x5a 0 1M")
    call(sc, "UnexportVolume", volumeId=vid, node="n2")
    call(sc, "DeleteVolume", volumeId=vid)


def qsd_pids(cloud):
    out = subprocess.run(["pgrep", "-f", "qemu-storage-daemon"],
                         capture_output=True, text=True).stdout.split()
    mine = []
    for p in out:
        try:
            cwd = os.readlink(f"/proc/{p}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(cloud.dir)):
            mine.append(int(p))
    return mine


def writer_across_kill(cloud, sc, daemon, restart, tmp_path,
                       snapshot_after=False):
    """A client writing through kill -9 and restart() of the SC daemon:
    it stalls in reconnect-delay and resumes; flushed data intact."""
    vid = create(sc)
    e = export(sc, vid, "n1")
    n1 = tls_dir(cloud, tmp_path, "n1")
    p = subprocess.Popen(
        ["qemu-io", "--object",
         f"tls-creds-x509,id=tls0,dir={n1},endpoint=client",
         "--image-opts", nbd_opts(e, reconnect=60)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        p.stdin.write("write -P 0x11 0 1M\nflush\n")
        p.stdin.flush()
        time.sleep(1)
        old = qsd_pids(cloud)
        assert old
        daemon.stop(signal.SIGKILL)
        # the QSD dies with it (PR_SET_PDEATHSIG)
        wait_until(lambda: not set(old) & set(qsd_pids(cloud)), timeout=10,
                   what="the QSD to die with koala-sc")
        # written while the SC is away: waits in reconnect-delay
        p.stdin.write("write -P 0x22 1M 1M\nflush\n"
                      "read -P 0x11 0 1M\nread -P 0x22 1M 1M\nquit\n")
        p.stdin.flush()
        time.sleep(2)
        assert p.poll() is None
        restart()
        out, _ = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out
    assert "fail" not in out.lower() and "error" not in out.lower(), out
    assert out.count("read 1048576/1048576") == 2, out
    # a new client sees it all too, at the same address
    assert export(sc, vid, "n1") == e
    qemu_io(n1, e, "read -P 0x11 0 1M", "read -P 0x22 1M 1M")
    if snapshot_after:
        # a first snapshot, then one after the QSD's death: full again
        sid, _ = snapshot(sc, vid)
        for pid in qsd_pids(cloud):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: qemu_io(n1, e, "read 0 4k",
                                   check=False).returncode == 0,
                   timeout=20, what="the supervisor to restart the QSD")
        qemu_io(n1, e, "write -P 0x33 2M 1M", "flush")
        sid2, st = snapshot(sc, vid)
        log = (cloud.base / "sc.log").read_text()
        assert f"{sid2}: completed (full" in log
        assert st["uploadedBytes"] == 512 * 1024  # two equal new blocks
        for x in (sid, sid2):
            call(sc, "DeleteSnapshot", snapshotId=x)
    call(sc, "UnexportVolume", volumeId=vid, node="n1")
    call(sc, "DeleteVolume", volumeId=vid)


def test_export_over_tcp(cloud, tmp_path):
    """export_transport = tcp: the NBD socket koala-sc made (TCP_NODELAY)
    and handed to the QSD; the same port again after a kill -9."""
    from cloud import SC_BIN, Daemon
    from conftest import free_port
    port = free_port()
    cert, key = cloud.certs("sc", "sc1")
    conf = tmp_path / "sc-tcp.conf"
    conf.write_text(
        "[sc]\n"
        f"listen = 127.0.0.1:{port}\ndata_dir = {cloud.dir / 'sc-tcp'}\n"
        f"name = sc1\nzone = {cloud.cluster}\n"
        f"tls_cert = {cert}\ntls_key = {key}\nca = {cloud.ca}\n"
        "export_transport = tcp\nexport_address = 127.0.0.1\n")
    d = Daemon("sc-tcp", [SC_BIN, "--config", conf], tmp_path / "sc.log",
               port)
    d.start()
    try:
        sc = cloud.sc_soap()
        sc.port = port
        vid = create(sc)
        e = export(sc, vid, "n1")
        assert e["transport"] == "tcp" and e["host"] == "127.0.0.1"
        n1, n2 = tls_dir(cloud, tmp_path, "n1"), tls_dir(cloud, tmp_path, "n2")
        qemu_io(n1, e, "write -P 0x3c 0 1M", "flush", "read -P 0x3c 0 1M")
        assert qemu_io(n2, e, "read 0 4k", check=False).returncode != 0
        call(sc, "UnexportVolume", volumeId=vid, node="n1")
        call(sc, "DeleteVolume", volumeId=vid)
        # no snapshots without Walrus: a clear error
        vid = create(sc)
        assert fault(sc, "CreateSnapshot", snapshotId=snap_id(),
                     volumeId=vid) == "UnsupportedOperation"
        call(sc, "DeleteVolume", volumeId=vid)
        writer_across_kill(cloud, sc, d, d.start, tmp_path)
    finally:
        d.stop()


def test_export_survives_kill9(cloud, tmp_path):
    writer_across_kill(cloud, cloud.sc_soap(), cloud.daemons["sc"],
                       cloud.start_sc, tmp_path)


class QsdProcess:
    """The volume's qemu-storage-daemon, as a Process-like thing for
    writer_across_kill: killed by its PID; the SC's supervisor starts it
    again by itself."""

    def __init__(self, cloud):
        self.cloud = cloud

    def stop(self, sig):
        for pid in qsd_pids(self.cloud):
            os.kill(pid, sig)


def test_qsd_killed_alone(cloud, tmp_path):
    """The QSD dies on its own: koala-sc starts it again with the export;
    the client rides it out; the next snapshot is a full read (the dead
    QSD's bitmap is gone) and completes."""
    writer_across_kill(cloud, cloud.sc_soap(), QsdProcess(cloud),
                       lambda: None, tmp_path, snapshot_after=True)


# ---- snapshots ----

def storage_s3(cloud):
    """Walrus as the cloud-internal account koala-storage (its bucket is
    where the SC keeps snapshots)."""
    kv = dict(line.split("=", 1) for line in
              (cloud.dir / "certs" / "koala-storage.credentials")
              .read_text().split())
    return boto3.client(
        "s3", endpoint_url=cloud.s3_endpoint, region_name="us-east-1",
        aws_access_key_id=kv["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=kv["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(s3={"addressing_style": "path"}))


def stored_blocks(s3, zone):
    objs = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket="koala-snapshots", Prefix=f"{zone}/blocks/"):
            objs += page.get("Contents", [])
    except s3.exceptions.NoSuchBucket:
        return {}
    return {o["Key"]: o["Size"] for o in objs}


def snapshot(sc, vid):
    sid = snap_id()
    s = child(call(sc, "CreateSnapshot", snapshotId=sid, volumeId=vid),
              "snapshot")
    assert text(s, "status") in ("pending", "completed")

    def done():
        s = child(call(sc, "DescribeSnapshots", snapshotId=sid), "snapshot")
        assert text(s, "status") != "error", text(s, "statusMessage")
        return text(s, "status") == "completed" and s
    s = wait_until(done, timeout=120, what=f"{sid} completed")
    return sid, {k: int(text(s, k)) for k in
                 ("uploadedBytes", "totalBytes", "progress")}


def write_random(tmp_path, n1, e, ref, off, length):
    data = os.urandom(length)
    chunk = tmp_path / f"chunk-{off}-{length}"
    chunk.write_bytes(data)
    qemu_io(n1, e, f"write -s {chunk} {off} {length}", "flush")
    with open(ref, "r+b") as f:
        f.seek(off)
        f.write(data)


def same_bytes(n1, e, ref):
    r = subprocess.run(
        ["qemu-img", "compare", "--object",
         f"tls-creds-x509,id=tls0,dir={n1},endpoint=client",
         "--image-opts", nbd_opts(e), f"driver=raw,file.filename={ref}"],
        capture_output=True, text=True, timeout=120)
    return r.returncode == 0, r.stdout + r.stderr


def restored(sc, sid, size_gib=1):
    vid = create(sc, size_gib, snapshot=sid)
    wait_until(lambda: volume(sc, vid)["status"] == "available",
               timeout=120, what=f"{vid} from {sid}")
    return vid


def test_snapshots_incremental_dedup_restore(cloud, tmp_path):
    sc = cloud.sc_soap()
    s3 = storage_s3(cloud)
    zone = cloud.cluster
    vid = create(sc)
    e = export(sc, vid, "n1")
    n1 = tls_dir(cloud, tmp_path, "n1")
    ref1 = tmp_path / "ref1.raw"
    with open(ref1, "wb") as f:
        f.truncate(GIB)
    write_random(tmp_path, n1, e, ref1, 0, 4 * MIB)
    write_random(tmp_path, n1, e, ref1, 100 * MIB, 1 * MIB)
    before = stored_blocks(s3, zone)
    # a snapshot of an attached volume, taken while it is written to
    s1, st1 = snapshot(sc, vid)
    after1 = stored_blocks(s3, zone)
    new1 = {k: v for k, v in after1.items() if k not in before}
    assert st1["uploadedBytes"] == sum(new1.values()) == 5 * MIB
    assert st1["totalBytes"] == 5 * MIB and st1["progress"] == 100
    # small writes: the second snapshot reads and uploads only them
    ref2 = tmp_path / "ref2.raw"
    subprocess.run(["cp", "--sparse=always", ref1, ref2], check=True)
    write_random(tmp_path, n1, e, ref2, 512 * 1024, 512 * 1024)
    write_random(tmp_path, n1, e, ref2, 300 * MIB, 4096)
    s2, st2 = snapshot(sc, vid)
    after2 = stored_blocks(s3, zone)
    new2 = {k: v for k, v in after2.items() if k not in after1}
    assert len(new2) == 2 and st2["uploadedBytes"] == sum(new2.values()) \
        == 2 * 512 * 1024, (st2, new2)
    assert st2["uploadedBytes"] * 5 <= st1["uploadedBytes"]
    assert st2["totalBytes"] == 5 * MIB + 512 * 1024
    log = (cloud.base / "sc.log").read_text()
    assert f"{s2}: completed (incremental" in log
    # volumes from each: the right bytes, usable as soon as available
    for sid, ref in ((s1, ref1), (s2, ref2)):
        v = restored(sc, sid)
        ev = export(sc, v, "n1")
        ok, out = same_bytes(n1, ev, ref)
        assert ok, out
        call(sc, "UnexportVolume", volumeId=v, node="n1")
        call(sc, "DeleteVolume", volumeId=v)
    # a bigger volume from a snapshot: the rest reads as zeros
    big = restored(sc, s2, size_gib=2)
    assert volume(sc, big)["sizeBytes"] == str(2 * GIB)
    eb = export(sc, big, "n1")
    ok, out = same_bytes(n1, eb, ref2)
    assert ok, out
    call(sc, "UnexportVolume", volumeId=big, node="n1")
    call(sc, "DeleteVolume", volumeId=big)
    # deleting a snapshot removes only the blocks no other one uses
    call(sc, "DeleteSnapshot", snapshotId=s1)
    after_del = stored_blocks(s3, zone)
    gone = set(after2) - set(after_del)
    assert len(gone) == 1 and all(k in new1 for k in gone), gone
    assert fault(sc, "CreateVolume", volumeId=vol_id(), sizeBytes=GIB,
                 snapshotId=s1) == "InvalidSnapshot.NotFound"
    call(sc, "DeleteSnapshot", snapshotId=s1)  # idempotent
    # the bucket is the cloud's own: a user of the cloud cannot list it
    with pytest.raises(Exception):
        cloud.s3().list_objects_v2(Bucket="koala-snapshots")
    # the SC killed: the bitmap the QSD held is lost, so the next
    # snapshot reads every block but uploads only the new ones
    cloud.daemons["sc"].stop(signal.SIGKILL)
    cloud.start_sc()
    write_random(tmp_path, n1, e, ref2, 0, 512 * 1024)
    s3_, st3 = snapshot(sc, vid)
    assert f"{s3_}: completed (full" in (cloud.base / "sc.log").read_text()
    assert st3["uploadedBytes"] == 512 * 1024, st3
    call(sc, "UnexportVolume", volumeId=vid, node="n1")
    for s in (s2, s3_):
        call(sc, "DeleteSnapshot", snapshotId=s)
    assert stored_blocks(s3, zone) == before
    call(sc, "DeleteVolume", volumeId=vid)


def test_snapshot_is_point_in_time(cloud, tmp_path):
    """What is written after CreateSnapshot returned is not in the
    snapshot, however far its upload got (copy-before-write)."""
    sc = cloud.sc_soap()
    vid = create(sc)
    e = export(sc, vid, "n1")
    n1 = tls_dir(cloud, tmp_path, "n1")
    ref = tmp_path / "ref.raw"
    with open(ref, "wb") as f:
        f.truncate(GIB)
    write_random(tmp_path, n1, e, ref, 0, 64 * MIB)
    sid = snap_id()
    call(sc, "CreateSnapshot", snapshotId=sid, volumeId=vid)
    # at once, before the job can have read much
    qemu_io(n1, e, "write -P 0xee 0 64M", "flush")
    wait_until(lambda: text(child(call(sc, "DescribeSnapshots",
                                       snapshotId=sid), "snapshot"),
                            "status") == "completed", timeout=120)
    v = restored(sc, sid)
    ev = export(sc, v, "n1")
    ok, out = same_bytes(n1, ev, ref)
    assert ok, out
    qemu_io(n1, e, "read -P 0xee 0 64M")
    for x in (ev, e):
        call(sc, "UnexportVolume", volumeId=x["volumeId"], node="n1")
    # snapshots of a volume attached nowhere (a QSD just for the job): the
    # bitmap survives the QSD's end, so the second one reads nothing
    s2, st2 = snapshot(sc, vid)
    assert st2["uploadedBytes"] == 512 * 1024  # the 0xee block, once
    s3_, st3 = snapshot(sc, vid)
    assert st3["uploadedBytes"] == 0
    log = (cloud.base / "sc.log").read_text()
    assert f"{s3_}: completed (incremental of {vid}: 0 of 2048 blocks" in log
    for x in (v, vid):
        call(sc, "DeleteVolume", volumeId=x)
    for x in (sid, s2, s3_):
        call(sc, "DeleteSnapshot", snapshotId=x)


def test_kill9_during_snapshot(cloud, tmp_path):
    """kill -9 of the SC while a snapshot is pending: after the restart it
    is `error` (its point in time died with the QSD), the volume's next
    snapshot reads every block and completes with the right bytes, and the
    blocks the killed one uploaded are not uploaded again."""
    sc = cloud.sc_soap()
    s3 = storage_s3(cloud)
    before = stored_blocks(s3, cloud.cluster)
    vid = create(sc)
    e = export(sc, vid, "n1")
    n1 = tls_dir(cloud, tmp_path, "n1")
    ref = tmp_path / "ref.raw"
    with open(ref, "wb") as f:
        f.truncate(GIB)
    write_random(tmp_path, n1, e, ref, 0, 128 * MIB)
    sid = snap_id()
    call(sc, "CreateSnapshot", snapshotId=sid, volumeId=vid)
    cloud.daemons["sc"].stop(signal.SIGKILL)
    cloud.start_sc()
    s = child(call(sc, "DescribeSnapshots", snapshotId=sid), "snapshot")
    if text(s, "status") == "completed":
        pytest.skip("the snapshot completed before the kill")
    assert text(s, "status") == "error"
    assert "restarted" in text(s, "statusMessage")
    partial = len(stored_blocks(s3, cloud.cluster)) - len(before)
    s2, st2 = snapshot(sc, vid)
    assert st2["uploadedBytes"] == (256 - partial) * 512 * 1024
    v = restored(sc, s2)
    ev = export(sc, v, "n1")
    ok, out = same_bytes(n1, ev, ref)
    assert ok, out
    for x in (ev, e):
        call(sc, "UnexportVolume", volumeId=x["volumeId"], node="n1")
    call(sc, "DeleteSnapshot", snapshotId=sid)
    call(sc, "DeleteSnapshot", snapshotId=s2)
    for x in (v, vid):
        call(sc, "DeleteVolume", volumeId=x)
    assert stored_blocks(s3, cloud.cluster) == before


def test_snapshot_after_its_base_is_deleted(cloud, tmp_path):
    """A volume's bitmap counts from its last snapshot (or the one it was
    made from); once that snapshot is deleted (its manifest gone), the
    volume's next snapshot is full and right, not an error."""
    sc = cloud.sc_soap()
    vid = create(sc)
    e = export(sc, vid, "n1")
    n1 = tls_dir(cloud, tmp_path, "n1")
    ref = tmp_path / "ref.raw"
    with open(ref, "wb") as f:
        f.truncate(GIB)
    write_random(tmp_path, n1, e, ref, 0, 4 * MIB)
    s1, _ = snapshot(sc, vid)
    v = restored(sc, s1)  # its bitmap counts from s1 too
    ref1 = tmp_path / "ref1.raw"
    subprocess.run(["cp", "--sparse=always", ref, ref1], check=True)
    call(sc, "DeleteSnapshot", snapshotId=s1)
    write_random(tmp_path, n1, e, ref, 8 * MIB, MIB)
    s2, st2 = snapshot(sc, vid)
    s3_, st3 = snapshot(sc, v)
    log = (cloud.base / "sc.log").read_text()
    assert f"{s2}: completed (full of {vid}" in log
    assert f"{s3_}: completed (full of {v}" in log
    for sid, want in ((s2, ref), (s3_, ref1)):
        r = restored(sc, sid)
        er = export(sc, r, "n1")
        ok, out = same_bytes(n1, er, want)
        assert ok, out
        call(sc, "UnexportVolume", volumeId=r, node="n1")
        call(sc, "DeleteVolume", volumeId=r)
    call(sc, "UnexportVolume", volumeId=vid, node="n1")
    for x in (s2, s3_):
        call(sc, "DeleteSnapshot", snapshotId=x)
    for x in (v, vid):
        call(sc, "DeleteVolume", volumeId=x)


def test_one_sc_per_zone(tmp_path):
    """ZonesCloud(sc=True): an SC for each zone, each answering for its
    own; a second SC for a zone is refused at registration."""
    from zones import ZonesCloud
    z = ZonesCloud(tmp_path, sc=True, nodes_per_zone=1, tunnels=False)
    z.start()
    try:
        for zone in z.zones:
            r = z.sc_soap(zone).call("DescribeResources")
            assert text(r, "zone") == zone
        out = sh(KOALA_BIN, "services", "--data-dir", z.dir).stdout
        for zone in z.zones:
            assert any(line.split()[:3] == ["sc", f"sc-{zone}", zone]
                       for line in out.splitlines()), out
        r = subprocess.run(
            [str(KOALA_BIN), "register", "sc", "another", "--cluster",
             "zone-a", "--endpoint", "https://127.0.0.1:1/", "--data-dir",
             str(z.dir)], capture_output=True, text=True)
        assert r.returncode != 0 and "sc-zone-a" in r.stderr, r.stderr
        assert "another" not in sh(KOALA_BIN, "services", "--data-dir",
                                   z.dir).stdout
        assert not (z.dir / "certs" / "sc-another.pem").exists()
    finally:
        z.stop()
