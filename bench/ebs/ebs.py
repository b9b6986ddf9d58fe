"""bench/ebs: see run.sh.  Runs a cloud of Walrus, the CLC and koala-sc
(tests/integration/cloud.py), plus a second koala-sc with
export_transport = tcp, and drives them over SOAP as the CLC does; the
NBD client is qemu-img with a node's certificate, as the NC's QEMU."""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cloud import SC_BIN, Cloud, Daemon  # noqa: E402
from conftest import AWS_BIN, KOALA_BIN, free_port, sh  # noqa: E402
from soapclient import child, text  # noqa: E402

GIB, MIB = 1 << 30, 1 << 20
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SIZE_MB = int(os.environ.get("SIZE_MB", "256"))


def call(sc, op, **kw):
    return sc.call(op, list(kw.items()))


def export(sc, vid, node):
    e = child(call(sc, "ExportVolume", volumeId=vid, node=node), "export")
    return {c.tag.split("}")[1]: c.text for c in e}


def nbd(e):
    if e["transport"] == "unix":
        server = f"server.type=unix,server.path={e['path']}"
    else:
        server = (f"server.type=inet,server.host={e['host']},"
                  f"server.port={e['port']}")
    return (f"driver=nbd,{server},export={e['exportName']},tls-creds=tls0,"
            f"tls-hostname={e['tlsHostname']}")


def qemu_io(target, tls, cmds):
    argv = ["qemu-io"]
    if tls:
        argv += ["--object",
                 f"tls-creds-x509,id=tls0,dir={tls},endpoint=client",
                 "--image-opts", target]
    else:
        # the same cache mode as the QSD behind an export: O_DIRECT
        argv += ["-f", "qcow2", "-t", "none", "-i", "native", target]
    for c in cmds:
        argv += ["-c", c]
    t = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True,
                         check=True).stdout
    return out, time.monotonic() - t


def bench(target, tls, count, depth, size, write):
    """(seconds per request, bytes per second).  qemu-img bench takes no
    --object (TLS) in QEMU 7.2, so qemu-io drives both sides alike: QD1 as
    one request at a time (each one's own ops/sec), QD>1 as batches of
    `depth` aio requests and an aio_flush, timed against an empty run."""
    op = "write -P 0x3a" if write else "read"
    if depth == 1:
        out, _ = qemu_io(target, tls, [f"{op} {i * size} {size}"
                                       for i in range(count)])
        rates = [float(x) for x in re.findall(r"and ([0-9.]+) ops/sec", out)]
        assert len(rates) == count, out
        lat = statistics.median(1 / r for r in rates)
        return lat, size / lat
    aio = "aio_write -q -P 0x3a" if write else "aio_read -q"
    cmds = []
    for b in range(count // depth):
        cmds += [f"{aio} {(b * depth + k) * size} {size}"
                 for k in range(depth)] + ["aio_flush"]
    _, empty = qemu_io(target, tls, ["length"])
    _, secs = qemu_io(target, tls, cmds)
    secs = max(secs - empty, 1e-6)
    return secs / count, count * size / secs


def median(fn):
    return statistics.median(fn() for _ in range(ROUNDS))


def prefill(target, tls, length):
    argv = ["qemu-io"]
    if tls:
        argv += ["--object",
                 f"tls-creds-x509,id=tls0,dir={tls},endpoint=client",
                 "--image-opts", target]
    else:
        argv += ["-f", "qcow2", "-t", "none", target]
    subprocess.run(argv + ["-c", f"write -P 0x5c 0 {length}"], check=True,
                   capture_output=True)


def io_table(targets):
    """targets: [(label, target, tls)]; first is the local peer."""
    cases = [("4 KiB QD1 read latency", 1000, 1, 4096, False, "lat"),
             ("4 KiB QD1 write latency", 1000, 1, 4096, True, "lat"),
             ("1 MiB QD8 read", 256, 8, MIB, False, "bw"),
             ("1 MiB QD8 write", 256, 8, MIB, True, "bw")]
    print(f"\n{'':28}" + "".join(f"{t[0]:>22}" for t in targets))
    for name, count, depth, size, write, kind in cases:
        vals = []
        for _, target, tls in targets:
            lat, bw = (median(lambda: bench(target, tls, count, depth, size,
                                            write)[0]),
                       None) if kind == "lat" else \
                (None, median(lambda: bench(target, tls, count, depth, size,
                                            write)[1]))
            vals.append(lat if kind == "lat" else bw)
        base = vals[0]
        cells = []
        for v in vals:
            if kind == "lat":
                cells.append(f"{v * 1e3:.3f} ms ({v / base:.2f}x)")
            else:
                cells.append(f"{v / MIB:.0f} MB/s ({v / base:.2f}x)")
        print(f"{name:28}" + "".join(f"{c:>22}" for c in cells))


def wait_status(fn, want, timeout=600):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if fn() == want:
            return time.monotonic() - t
        time.sleep(0.05)
    raise TimeoutError(want)


def main():
    base = Path(tempfile.mkdtemp(prefix="bench-ebs-"))
    cloud = Cloud(base, with_cluster=False, sc=True, sc_capacity_gb=100)
    tcp = None
    try:
        cloud.start()
        sh(KOALA_BIN, "register", "node", "n1", "--cluster", cloud.cluster,
           "--endpoint", "https://127.0.0.1:1/", "--data-dir", cloud.dir)
        tls = base / "tls-n1"
        tls.mkdir()
        cert, key = cloud.certs("node", "n1")
        for n, s in (("ca-cert.pem", cloud.ca), ("client-cert.pem", cert),
                     ("client-key.pem", key)):
            (tls / n).symlink_to(s)
        # a second SC exporting over TCP (TCP_NODELAY socket as fd 3)
        port = free_port()
        sc_cert, sc_key = cloud.certs("sc", "sc1")
        conf = base / "sc-tcp.conf"
        conf.write_text(
            f"[sc]\nlisten = 127.0.0.1:{port}\n"
            f"data_dir = {base / 'sc-tcp'}\nname = sc1\n"
            f"tls_cert = {sc_cert}\ntls_key = {sc_key}\nca = {cloud.ca}\n"
            "export_transport = tcp\ncapacity_gb = 100\n")
        tcp = Daemon("sc-tcp", [SC_BIN, "--config", conf],
                     base / "sc-tcp.log", port)
        tcp.start()
        sc = cloud.sc_soap()
        sct = cloud.sc_soap()
        sct.port = port
        region = 512 * MIB
        vid, vtcp = "vol-0000000000000000a", "vol-0000000000000000b"
        t = time.monotonic()
        call(sc, "CreateVolume", volumeId=vid, sizeBytes=8 * GIB)
        create_s = time.monotonic() - t
        call(sct, "CreateVolume", volumeId=vtcp, sizeBytes=8 * GIB)
        t = time.monotonic()
        e = export(sc, vid, "n1")
        export_s = time.monotonic() - t
        et = export(sct, vtcp, "n1")
        local = base / "local.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", local,
                        "8G"], check=True)
        for target, t_tls in ((str(local), None), (nbd(e), tls),
                              (nbd(et), tls)):
            prefill(target, t_tls, region)
        print(f"CreateVolume (8 GiB, sparse qcow2): {create_s * 1e3:.1f} ms;"
              f" ExportVolume (QSD start + export): {export_s * 1e3:.1f} ms")
        print(f"qemu-io, median of {ROUNDS}; ratios to the local qcow2 "
              "(O_DIRECT, aio=native); exports: NBD+TLS, QSD O_DIRECT")
        io_table([("local qcow2", str(local), None),
                  ("export (unix)", nbd(e), tls),
                  ("export (tcp)", nbd(et), tls)])
        # snapshot / restore beside aws s3 cp of the same bytes
        data = base / "data.bin"
        data.write_bytes(os.urandom(SIZE_MB * MIB))
        subprocess.run(
            ["qemu-img", "convert", "-n", "-f", "raw", "--object",
             f"tls-creds-x509,id=tls0,dir={tls},endpoint=client",
             "--target-image-opts", str(data), nbd(e)], check=True)
        snap = "snap-0000000000000000a"
        t = time.monotonic()
        call(sc, "CreateSnapshot", snapshotId=snap, volumeId=vid)
        snap_s = time.monotonic() - t + wait_status(
            lambda: text(child(call(sc, "DescribeSnapshots",
                                    snapshotId=snap), "snapshot"),
                         "status"), "completed")
        s = child(call(sc, "DescribeSnapshots", snapshotId=snap), "snapshot")
        up = int(text(s, "uploadedBytes"))
        vnew = "vol-0000000000000000c"
        t = time.monotonic()
        call(sc, "CreateVolume", volumeId=vnew, sizeBytes=8 * GIB,
             snapshotId=snap)

        def status():
            v = child(call(sc, "DescribeVolumes", volumeId=vnew), "volume")
            return text(v, "status")
        restore_s = time.monotonic() - t + wait_status(status, "available")
        # the harness' Walrus runs without a region: us-east-1, as its
        # tests' S3 clients
        env = dict(cloud.env(), HOME=str(base), AWS_CONFIG_FILE="/dev/null",
                   AWS_PAGER="", AWS_DEFAULT_REGION="us-east-1")
        cp = [AWS_BIN, "--endpoint-url", cloud.s3_endpoint, "s3", "cp",
              "--quiet"]
        subprocess.run([AWS_BIN, "--endpoint-url", cloud.s3_endpoint, "s3",
                        "mb", "s3://bench"], env=env, check=True,
                       capture_output=True)
        t = time.monotonic()
        subprocess.run(cp + [str(data), "s3://bench/data.bin"], env=env,
                       check=True)
        put_s = time.monotonic() - t
        t = time.monotonic()
        subprocess.run(cp + ["s3://bench/data.bin", str(base / "back.bin")],
                       env=env, check=True)
        get_s = time.monotonic() - t
        mb = SIZE_MB * MIB / 1e6
        print(f"\n{SIZE_MB} MiB of random data ({up / MIB:.0f} MiB uploaded "
              "by the snapshot):")
        print(f"  snapshot (CreateSnapshot -> completed) {mb / snap_s:7.1f} "
              f"MB/s   aws s3 cp up   {mb / put_s:7.1f} MB/s   "
              f"({put_s / snap_s:.2f}x)")
        print(f"  restore (CreateVolume -> available)   {mb / restore_s:7.1f}"
              f" MB/s   aws s3 cp down {mb / get_s:7.1f} MB/s   "
              f"({get_s / restore_s:.2f}x)")
        # an incremental snapshot after 4 MiB of writes
        small = base / "small.bin"
        small.write_bytes(os.urandom(4 * MIB))
        subprocess.run(["qemu-io", "--object",
                        f"tls-creds-x509,id=tls0,dir={tls},endpoint=client",
                        "--image-opts", nbd(e), "-c",
                        f"write -s {small} 64M 4M"], check=True,
                       capture_output=True)
        snap2 = "snap-0000000000000000b"
        t = time.monotonic()
        call(sc, "CreateSnapshot", snapshotId=snap2, volumeId=vid)
        inc_s = time.monotonic() - t + wait_status(
            lambda: text(child(call(sc, "DescribeSnapshots",
                                    snapshotId=snap2), "snapshot"),
                         "status"), "completed")
        s = child(call(sc, "DescribeSnapshots", snapshotId=snap2),
                  "snapshot")
        print(f"  incremental snapshot after 4 MiB of random writes: "
              f"{inc_s:.2f} s,"
              f" {int(text(s, 'uploadedBytes')) / MIB:.1f} MiB uploaded")
    finally:
        if tcp:
            tcp.stop()
        cloud.stop()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")


if __name__ == "__main__":
    main()
