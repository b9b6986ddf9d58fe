"""Walrus server access logging: Put/GetBucketLogging with their errors,
and records in S3's server access log format delivered as objects into the
target bucket under the target prefix (this Walrus delivers every 0.3 s,
and at a clean stop)."""
import re
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import Walrus, s3_client

# bucket_owner bucket [time] ip requester request_id operation key
# "request_uri" status error_code bytes_sent object_size total_time
# turn_around "referer" "user_agent" version_id host_id sig_version cipher
# auth_type host tls_version access_point acl_required
LINE = re.compile(
    r'^(?P<owner>\S+) (?P<bucket>\S+) \[(?P<time>[^\]]+)\] (?P<ip>\S+) '
    r'(?P<requester>\S+) (?P<rid>\S+) (?P<op>\S+) (?P<key>\S+) '
    r'"(?P<uri>[^"]*)" (?P<status>\d+) (?P<err>\S+) (?P<bytes>\S+) \S+ '
    r'(?P<total>\d+) \S+ "(?P<ref>[^"]*)" "(?P<ua>[^"]*)" (?P<vid>\S+) '
    r'\S+ (?P<sig>\S+) \S+ (?P<auth>\S+) (?P<host>\S+) \S+ \S+ \S+$')


@pytest.fixture(scope="module")
def lw(tmp_path_factory):
    w = Walrus(tmp_path_factory.mktemp("logging") / "data",
               extra_args=["--log-flush-interval", "0.3"]).start()
    w.alice = w.add_user("alice")
    w.bob = w.add_user("bob")
    yield w
    assert w.stop() == 0


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def records(s3, bucket, prefix):
    out = []
    for o in s3.list_objects_v2(Bucket=bucket,
                                Prefix=prefix).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        out += body.decode().splitlines()
    return out


def test_logging_configuration(lw):
    s3 = s3_client(lw.endpoint, lw.alice)
    bob = s3_client(lw.endpoint, lw.bob)
    s3.create_bucket(Bucket="logged-a")
    s3.create_bucket(Bucket="logs-a")
    bob.create_bucket(Bucket="logs-bob")
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket="logged-a")
    for target in ("no-such-bucket-logs", "logs-bob"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_bucket_logging(Bucket="logged-a", BucketLoggingStatus={
                "LoggingEnabled": {"TargetBucket": target,
                                   "TargetPrefix": "x/"}})
        assert code_of(e) == "InvalidTargetBucketForLogging"
    s3.put_bucket_logging(Bucket="logged-a", BucketLoggingStatus={
        "LoggingEnabled": {"TargetBucket": "logs-a", "TargetPrefix": "a/"}})
    got = s3.get_bucket_logging(Bucket="logged-a")["LoggingEnabled"]
    assert got == {"TargetBucket": "logs-a", "TargetPrefix": "a/"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.get_bucket_logging(Bucket="logged-a")
    assert code_of(e) == "AccessDenied"
    s3.put_bucket_logging(Bucket="logged-a", BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket="logged-a")


def test_records_delivered(lw):
    s3 = s3_client(lw.endpoint, lw.alice)
    s3.create_bucket(Bucket="logged-b")
    s3.create_bucket(Bucket="logs-b")
    s3.put_bucket_logging(Bucket="logged-b", BucketLoggingStatus={
        "LoggingEnabled": {"TargetBucket": "logs-b", "TargetPrefix": "b/"}})
    put = s3.put_object(Bucket="logged-b", Key="dir/file one.txt",
                        Body=b"hello log")
    rid_put = put["ResponseMetadata"]["RequestId"]
    s3.get_object(Bucket="logged-b", Key="dir/file one.txt")["Body"].read()
    with pytest.raises(botocore.exceptions.ClientError):
        s3.get_object(Bucket="logged-b", Key="missing")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{lw.endpoint}/logged-b/dir/file%20one.txt")
    s3.list_objects_v2(Bucket="logged-b")
    end = time.monotonic() + 10
    lines = []
    while time.monotonic() < end and len(lines) < 5:
        time.sleep(0.3)
        lines = records(s3, "logs-b", "b/")
    parsed = [LINE.match(l) for l in lines]
    assert all(parsed), lines
    by_op = {}
    for m in parsed:
        by_op.setdefault(m["op"], []).append(m)
    put_rec = by_op["REST.PUT.OBJECT"][0]
    assert put_rec["bucket"] == "logged-b" and put_rec["rid"] == rid_put
    assert put_rec["key"] == "dir/file%20one.txt"
    assert put_rec["status"] == "200" and put_rec["sig"] == "SigV4"
    assert put_rec["auth"] == "AuthHeader" and put_rec["ip"] == "127.0.0.1"
    gets = by_op["REST.GET.OBJECT"]
    statuses = sorted(g["status"] for g in gets)
    assert statuses == ["200", "403", "404"], statuses
    ok = [g for g in gets if g["status"] == "200"][0]
    assert ok["bytes"] == "9"
    anon = [g for g in gets if g["status"] == "403"][0]
    assert anon["requester"] == "-"
    assert by_op["REST.GET.BUCKET"][0]["uri"].startswith("GET /logged-b")
    # Log objects are the target owner's, named under the prefix.
    keys = [o["Key"] for o in
            s3.list_objects_v2(Bucket="logs-b")["Contents"]]
    assert all(re.match(r"^b/\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-[0-9a-f]{16}$",
                        k) for k in keys), keys


def test_records_flushed_at_a_clean_stop(tmp_path):
    w = Walrus(tmp_path / "data",
               extra_args=["--log-flush-interval", "3600"]).start()
    try:
        creds = w.add_user("stopper")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="logged-c")
        s3.create_bucket(Bucket="logs-c")
        s3.put_bucket_logging(Bucket="logged-c", BucketLoggingStatus={
            "LoggingEnabled": {"TargetBucket": "logs-c",
                               "TargetPrefix": ""}})
        s3.put_object(Bucket="logged-c", Key="k", Body=b"x")
        assert "Contents" not in s3.list_objects_v2(Bucket="logs-c")
        assert w.stop() == 0
        w.start()
        s3 = s3_client(w.endpoint, creds)
        lines = records(s3, "logs-c", "")
        assert any(" REST.PUT.OBJECT k " in l for l in lines), lines
        # The setting survived the restart: logging goes on.
        assert s3.get_bucket_logging(Bucket="logged-c")["LoggingEnabled"][
            "TargetBucket"] == "logs-c"
    finally:
        w.stop()
