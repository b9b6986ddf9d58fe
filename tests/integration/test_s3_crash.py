"""kill -9 of koala-walrus in the middle of a stream of concurrent PUTs:
after a restart every acknowledged object reads back byte-identical, no
object is ever visible half written, and leftovers of the interrupted
uploads are cleaned up."""
import hashlib
import random
import threading
import time

import botocore.exceptions
import pytest

from conftest import Walrus, s3_client


def body_for(key, version):
    """Deterministic content, so the checker needs no copy of what was
    sent: size 0..3 MiB, bytes derived from key and version."""
    seed = hashlib.sha256(f"{key}/{version}".encode()).digest()
    rnd = random.Random(seed)
    size = rnd.choice([0, 1, 100, 4096, 65536, 300_000, 1_000_000,
                       3_000_000])
    block = hashlib.sha256(seed).digest() * 2048   # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class Writer(threading.Thread):
    def __init__(self, endpoint, creds, bucket, wid, stop):
        super().__init__(daemon=True)
        self.s3 = s3_client(endpoint, creds, connect_timeout=2,
                            read_timeout=30)
        self.bucket, self.wid, self.stop = bucket, wid, stop
        self.acked = {}        # key -> version acknowledged last
        self.attempted = {}    # key -> set of versions ever sent

    def run(self):
        n = 0
        while not self.stop.is_set():
            # Half the writes go to keys shared by every writer (racing
            # versions of one key), half to the writer's own keys.
            key = (f"shared-{n % 3}" if n % 2 else f"w{self.wid}-{n}")
            version = f"{self.wid}.{n}"
            self.attempted.setdefault(key, set()).add(version)
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key,
                                   Body=body_for(key, version))
                self.acked[key] = version
            except Exception:  # noqa: BLE001 - the server was killed
                return
            n += 1


def verify(s3, bucket, writers):
    versions_by_key = {}
    for w in writers:
        for key, vs in w.attempted.items():
            versions_by_key.setdefault(key, set()).update(vs)
    listed = {o["Key"]: o for page in
              s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
              for o in page.get("Contents", [])}
    checked = 0
    for w in writers:
        for key, version in w.acked.items():
            assert key in listed, f"acknowledged {key} lost"
    for key, obj in listed.items():
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert len(data) == obj["Size"]
        # Whatever is visible is one whole version that some writer sent.
        candidates = {body_for(key, v) for v in versions_by_key[key]}
        assert data in candidates, f"{key}: not a whole version"
        checked += 1
    # For private keys the acknowledged version is the only one possible.
    for w in writers:
        for key, version in w.acked.items():
            if key.startswith("w"):
                got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                assert got == body_for(key, version)
    return checked


@pytest.mark.parametrize("kill_after", [0.7, 1.9, 3.1])
def test_kill9_during_concurrent_puts(tmp_path, kill_after):
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("crash")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="crash")
        stop = threading.Event()
        writers = [Writer(w.endpoint, creds, "crash", i, stop)
                   for i in range(8)]
        for t in writers:
            t.start()
        time.sleep(kill_after)
        w.kill9()
        stop.set()
        for t in writers:
            t.join(60)
        acked = sum(len(t.acked) for t in writers)
        assert acked > 0, "no PUT was acknowledged before the kill"
        w.start()
        s3 = s3_client(w.endpoint, creds)
        checked = verify(s3, "crash", writers)
        assert checked >= len({k for t in writers for k in t.acked})
        # Recovery left no temporary files behind.
        assert not list((w.data_dir / "tmp").iterdir())
        # The service works normally afterwards.
        s3.put_object(Bucket="crash", Key="after", Body=b"fine")
        assert s3.get_object(Bucket="crash", Key="after")["Body"].read() == \
            b"fine"
    finally:
        w.stop()


def test_kill9_during_multipart(tmp_path):
    """Parts acknowledged before a crash survive it; the upload completes
    afterwards."""
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("mp")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="mp-crash")
        uid = s3.create_multipart_upload(Bucket="mp-crash", Key="k")["UploadId"]
        part = bytes(range(256)) * (5 * 4096)
        etag = s3.upload_part(Bucket="mp-crash", Key="k", UploadId=uid,
                              PartNumber=1, Body=part)["ETag"]
        w.kill9()
        w.start()
        s3 = s3_client(w.endpoint, creds)
        etag2 = s3.upload_part(Bucket="mp-crash", Key="k", UploadId=uid,
                               PartNumber=2, Body=b"tail")["ETag"]
        s3.complete_multipart_upload(
            Bucket="mp-crash", Key="k", UploadId=uid, MultipartUpload={"Parts": [
                {"PartNumber": 1, "ETag": etag},
                {"PartNumber": 2, "ETag": etag2}]})
        assert s3.get_object(Bucket="mp-crash", Key="k")["Body"].read() == \
            part + b"tail"
        with pytest.raises(botocore.exceptions.ClientError):
            s3.list_parts(Bucket="mp-crash", Key="k", UploadId=uid)
    finally:
        w.stop()


class VersionedWriter(threading.Thread):
    """PUTs, DELETEs (delete markers) and DELETEs of its own versions on a
    versioned bucket, remembering what was acknowledged."""

    def __init__(self, endpoint, creds, bucket, wid, stop):
        super().__init__(daemon=True)
        self.s3 = s3_client(endpoint, creds, connect_timeout=2,
                            read_timeout=30)
        self.bucket, self.wid, self.stop = bucket, wid, stop
        self.rnd = random.Random(wid)
        self.attempted = {}   # key -> set of tags ever sent
        self.versions = {}    # acknowledged version id -> (key, tag)
        self.markers = {}     # acknowledged delete marker id -> key
        self.removed = set()  # version ids whose DELETE was acknowledged
        self.removing = None  # the DELETE in flight (outcome unknown)

    def run(self):
        n = 0
        while not self.stop.is_set():
            key = f"shared-{n % 3}" if n % 2 else f"w{self.wid}-{n % 5}"
            op = self.rnd.random()
            try:
                if op < 0.7:
                    tag = f"{self.wid}.{n}"
                    self.attempted.setdefault(key, set()).add(tag)
                    vid = self.s3.put_object(
                        Bucket=self.bucket, Key=key,
                        Body=body_for(key, tag))["VersionId"]
                    self.versions[vid] = (key, tag)
                elif op < 0.85:
                    r = self.s3.delete_object(Bucket=self.bucket, Key=key)
                    self.markers[r["VersionId"]] = key
                else:
                    mine = [v for v in self.versions
                            if v not in self.removed]
                    if mine:
                        vid = self.rnd.choice(mine)
                        self.removing = vid
                        self.s3.delete_object(
                            Bucket=self.bucket, Key=self.versions[vid][0],
                            VersionId=vid)
                        self.removed.add(vid)
                        self.removing = None
            except Exception:  # noqa: BLE001 - the server was killed
                return
            n += 1


def verify_versions(s3, bucket, writers, skip=None):
    """skip: a key prefix that is not the writers' (left unchecked)."""
    attempted = {}
    for w in writers:
        for key, tags in w.attempted.items():
            attempted.setdefault(key, set()).update(tags)
    listed, markers, latest = {}, {}, {}
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket):
        ours = [e for e in page.get("Versions", []) +
                page.get("DeleteMarkers", [])
                if not (skip and e["Key"].startswith(skip))]
        for v in page.get("Versions", []):
            if v in ours:
                listed[v["VersionId"]] = v
        for m in page.get("DeleteMarkers", []):
            if m in ours:
                markers[m["VersionId"]] = m
        for e in ours:
            if e["IsLatest"]:
                assert e["Key"] not in latest, f"{e['Key']}: two latest"
                latest[e["Key"]] = e["VersionId"]
    # Every version listed is whole: one body some writer sent for its key.
    for vid, v in listed.items():
        data = s3.get_object(Bucket=bucket, Key=v["Key"],
                             VersionId=vid)["Body"].read()
        assert len(data) == v["Size"]
        assert data in {body_for(v["Key"], t) for t in attempted[v["Key"]]}
    for w in writers:
        # Acknowledged versions are there, with their own bytes, unless
        # their removal was acknowledged too; removed ones are gone.
        for vid, (key, tag) in w.versions.items():
            if vid in w.removed:
                assert vid not in listed, f"{key} {vid}: removed, listed"
                continue
            if vid == w.removing:  # its DELETE was cut: either outcome
                continue
            assert vid in listed, f"acknowledged version {key} {vid} lost"
            got = s3.get_object(Bucket=bucket, Key=key,
                                VersionId=vid)["Body"].read()
            assert got == body_for(key, tag)
        for vid, key in w.markers.items():
            assert vid in markers, f"acknowledged delete marker {key} lost"
    # Each key with a history has exactly one latest version.
    keys = {v["Key"] for v in listed.values()} | {
        m["Key"] for m in markers.values()}
    assert keys == set(latest)
    return len(listed) + len(markers)


@pytest.mark.parametrize("kill_after", [0.9, 2.3])
def test_kill9_during_versioned_puts_and_deletes(tmp_path, kill_after):
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("vcrash")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="vcrash")
        s3.put_bucket_versioning(Bucket="vcrash", VersioningConfiguration={
            "Status": "Enabled"})
        stop = threading.Event()
        writers = [VersionedWriter(w.endpoint, creds, "vcrash", i, stop)
                   for i in range(6)]
        for t in writers:
            t.start()
        time.sleep(kill_after)
        w.kill9()
        stop.set()
        for t in writers:
            t.join(60)
        assert sum(len(t.versions) for t in writers) > 0
        assert sum(len(t.removed) + len(t.markers) for t in writers) > 0
        w.start()
        s3 = s3_client(w.endpoint, creds)
        assert verify_versions(s3, "vcrash", writers) > 0
        assert not list((w.data_dir / "tmp").iterdir())
        v = s3.put_object(Bucket="vcrash", Key="after", Body=b"fine")
        assert s3.get_object(Bucket="vcrash", Key="after",
                             VersionId=v["VersionId"])["Body"].read() == b"fine"
    finally:
        w.stop()


def test_kill9_during_lifecycle_expiry(tmp_path):
    """The worker expiring hundreds of versions while writers add others:
    after a kill -9 and a restart nothing the rules do not cover is lost,
    every key's history is consistent, and the worker finishes the job."""
    import sqlite3
    args = ["--lifecycle-interval", "0.05", "--lifecycle-day", "1"]
    w = Walrus(tmp_path / "data", extra_args=args).start()
    try:
        creds = w.add_user("lc")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="lc-crash")
        s3.put_bucket_versioning(Bucket="lc-crash", VersioningConfiguration={
            "Status": "Enabled"})
        for i in range(300):
            for n in range(2):
                s3.put_object(Bucket="lc-crash", Key=f"exp/{i}",
                              Body=body_for(f"exp/{i}", str(n))[:2000])
        stop = threading.Event()
        writers = [VersionedWriter(w.endpoint, creds, "lc-crash", i, stop)
                   for i in range(3)]
        for t in writers:
            t.start()
        # Current versions of exp/ expire into delete markers, noncurrent
        # ones are deleted; the writers' keys are not covered.
        s3.put_bucket_lifecycle_configuration(
            Bucket="lc-crash", LifecycleConfiguration={"Rules": [
                {"ID": "exp", "Status": "Enabled",
                 "Filter": {"Prefix": "exp/"}, "Expiration": {"Days": 1}},
                {"ID": "nc", "Status": "Enabled",
                 "Filter": {"Prefix": "exp/"},
                 "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
        time.sleep(1.3)
        w.kill9()
        stop.set()
        for t in writers:
            t.join(60)
        w.start()
        s3 = s3_client(w.endpoint, creds)
        # The writers' acknowledged history is intact.
        verify_versions(s3, "lc-crash", writers, skip="exp/")
        # The worker goes on after the restart: only delete markers are
        # left under exp/, every key's noncurrent versions gone.
        def exp_left():
            page = s3.list_object_versions(Bucket="lc-crash", Prefix="exp/")
            return len(page.get("Versions", []))
        end = time.monotonic() + 60
        while exp_left() and time.monotonic() < end:
            time.sleep(0.3)
        assert exp_left() == 0
        # Every key with noncurrent versions still has a current row.
        db = sqlite3.connect(f"file:{w.data_dir}/walrus.db?mode=ro", uri=True)
        orphans = db.execute(
            "SELECT count(*) FROM versions v WHERE NOT EXISTS (SELECT 1 FROM"
            " objects o WHERE o.bucket=v.bucket AND o.key=v.key)").fetchone()
        db.close()
        assert orphans == (0,)
        assert not list((w.data_dir / "tmp").iterdir())
    finally:
        w.stop()
