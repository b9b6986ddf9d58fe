"""kill -9 of koala-walrus in the middle of concurrent encrypted PUTs
(SSE-S3 and SSE-C, inline and file blobs, and multipart parts): after a
restart every acknowledged object reads back with its key, and no
plaintext is anywhere in the data directory, neither in blobs, temporary
files, nor the database and its WAL."""
import os
import threading
import time

import pytest

from conftest import Walrus, s3_client

MARKER = b"PLAINTEXT-MUST-NOT-REACH-DISK:"
KEY = os.urandom(32)


def body_for(key, version):
    size = [0, 100, 4096, 70_000, 300_000, 1_500_000][hash(version) % 6]
    line = MARKER + f"{key}/{version}/".encode()
    return (line * (size // len(line) + 1))[:size]


def sse_for(n):
    if n % 2:
        return {"ServerSideEncryption": "AES256"}
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY}


class Writer(threading.Thread):
    def __init__(self, endpoint, creds, bucket, wid, stop):
        super().__init__(daemon=True)
        self.s3 = s3_client(endpoint, creds, connect_timeout=2,
                            read_timeout=30)
        self.bucket, self.wid, self.stop = bucket, wid, stop
        self.acked = {}   # key -> (version, n)

    def run(self):
        n = 0
        while not self.stop.is_set():
            key = f"w{self.wid}-{n}"
            version = f"{self.wid}.{n}"
            try:
                if n % 7 == 3:   # now and then a part of an upload
                    uid = self.s3.create_multipart_upload(
                        Bucket=self.bucket, Key=key,
                        **sse_for(n))["UploadId"]
                    kw = {} if n % 2 else sse_for(n)
                    self.s3.upload_part(Bucket=self.bucket, Key=key,
                                        UploadId=uid, PartNumber=1,
                                        Body=body_for(key, version) or b"x",
                                        **kw)
                else:
                    self.s3.put_object(Bucket=self.bucket, Key=key,
                                       Body=body_for(key, version),
                                       **sse_for(n))
                    self.acked[key] = (version, n)
            except Exception:  # noqa: BLE001 - the server was killed
                return
            n += 1


def plaintext_files(root):
    hits = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                if MARKER in f.read():
                    hits.append(path)
    return hits


@pytest.mark.parametrize("kill_after", [0.8, 2.2])
def test_kill9_during_encrypted_puts(tmp_path, kill_after):
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("crash")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="crash")
        stop = threading.Event()
        writers = [Writer(w.endpoint, creds, "crash", i, stop)
                   for i in range(6)]
        for t in writers:
            t.start()
        time.sleep(kill_after)
        w.kill9()
        stop.set()
        for t in writers:
            t.join(60)
        acked = sum(len(t.acked) for t in writers)
        assert acked > 0, "no PUT was acknowledged before the kill"
        # What the kill left, before any recovery ran: no plaintext.
        assert plaintext_files(w.data_dir) == []
        w.start()
        s3 = s3_client(w.endpoint, creds)
        for t in writers:
            for key, (version, n) in t.acked.items():
                kw = {} if n % 2 else sse_for(n)
                got = s3.get_object(Bucket="crash", Key=key, **kw)
                assert got["Body"].read() == body_for(key, version), key
                if n % 2:
                    assert got["ServerSideEncryption"] == "AES256"
        assert not list((w.data_dir / "tmp").iterdir())
        s3.put_object(Bucket="crash", Key="after", Body=MARKER + b"after",
                      ServerSideEncryption="AES256")
        assert s3.get_object(Bucket="crash", Key="after")["Body"].read() == \
            MARKER + b"after"
    finally:
        w.stop()
    assert plaintext_files(w.data_dir) == []
