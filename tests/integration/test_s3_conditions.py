"""Walrus' conditional writes (If-None-Match: * and If-Match on PutObject
and CompleteMultipartUpload, atomic against concurrent writers) and
x-amz-expected-bucket-owner, driven by boto3 (headers its model predates
are added on the wire, as newer SDKs send them)."""
import sqlite3
import threading

import botocore.exceptions
import pytest

from conftest import s3_client


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def with_headers(client, op, headers):
    """Adds headers to every `op` call of client (before it is signed)."""
    def add(request, **kw):
        for k, v in headers.items():
            request.headers[k] = v
    client.meta.events.register_first(f"before-sign.s3.{op}", add)
    return client


def test_if_none_match_creates_only_once(walrus, s3, bucket):
    c = with_headers(s3_client(walrus.endpoint, walrus.alice), "PutObject",
                     {"If-None-Match": "*"})
    c.put_object(Bucket=bucket, Key="k", Body=b"first")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert code_of(e) == "PreconditionFailed" and status_of(e) == 412
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    # A large body is refused before it is taken.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"x" * (3 << 20))
    assert code_of(e) == "PreconditionFailed"
    # Once deleted, the key can be created again.
    s3.delete_object(Bucket=bucket, Key="k")
    c.put_object(Bucket=bucket, Key="k", Body=b"third")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"third"


def test_if_none_match_on_a_delete_marker(walrus, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")
    s3.delete_object(Bucket=bucket, Key="k")
    c = with_headers(s3_client(walrus.endpoint, walrus.alice), "PutObject",
                     {"If-None-Match": "*"})
    c.put_object(Bucket=bucket, Key="k", Body=b"v2")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"


def test_if_none_match_other_than_star(walrus, bucket):
    c = with_headers(s3_client(walrus.endpoint, walrus.alice), "PutObject",
                     {"If-None-Match": '"abc"'})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert code_of(e) == "NotImplemented" and status_of(e) == 501


def test_if_match(walrus, s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    good = with_headers(s3_client(walrus.endpoint, walrus.alice),
                        "PutObject", {"If-Match": etag})
    etag2 = good.put_object(Bucket=bucket, Key="k", Body=b"two")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    # The old ETag no longer matches.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        good.put_object(Bucket=bucket, Key="k", Body=b"three")
    assert code_of(e) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="k")["ETag"] == etag2
    with pytest.raises(botocore.exceptions.ClientError) as e:
        good.put_object(Bucket=bucket, Key="missing", Body=b"x")
    assert code_of(e) == "NoSuchKey" and status_of(e) == 404


def test_concurrent_conditional_creates(walrus, bucket):
    """Of racing If-None-Match: * writers, exactly one wins."""
    results = []
    # (boto3 makes clients safely only on one thread)
    clients = [with_headers(s3_client(walrus.endpoint, walrus.alice),
                            "PutObject", {"If-None-Match": "*"})
               for _ in range(8)]

    def writer(i):
        c = clients[i]
        try:
            c.put_object(Bucket=bucket, Key="race", Body=f"w{i}".encode())
            results.append(("ok", i))
        except botocore.exceptions.ClientError as e:
            results.append((e.response["Error"]["Code"], i))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for r, i in results if r == "ok"]
    assert len(winners) == 1
    assert sorted(r for r, _ in results if r != "ok") == \
        ["PreconditionFailed"] * 7
    s3 = s3_client(walrus.endpoint, walrus.alice)
    assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() == \
        f"w{winners[0]}".encode()


def test_complete_multipart_conditions(walrus, s3, bucket):
    s3.put_object(Bucket=bucket, Key="mp", Body=b"exists")
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1,
                          Body=b"new data")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    c = with_headers(s3_client(walrus.endpoint, walrus.alice),
                     "CompleteMultipartUpload", {"If-None-Match": "*"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                    MultipartUpload=parts)
    assert code_of(e) == "PreconditionFailed"
    # The upload is still there; with the right If-Match it completes.
    assert len(s3.list_parts(Bucket=bucket, Key="mp",
                             UploadId=up)["Parts"]) == 1
    etag = s3.head_object(Bucket=bucket, Key="mp")["ETag"]
    c = with_headers(s3_client(walrus.endpoint, walrus.alice),
                     "CompleteMultipartUpload", {"If-Match": etag})
    c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                MultipartUpload=parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == \
        b"new data"


def account_number(walrus, name):
    db = sqlite3.connect(f"file:{walrus.data_dir}/walrus.db?mode=ro",
                         uri=True)
    try:
        (n,) = db.execute("SELECT printf('%012d', id) FROM accounts"
                          " WHERE name=?", (name,)).fetchone()
        return n
    finally:
        db.close()


def test_expected_bucket_owner(walrus, s3, bucket):
    alice = account_number(walrus, "alice")
    bob = account_number(walrus, "bob")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                  ExpectedBucketOwner=alice)
    assert s3.get_object(Bucket=bucket, Key="k",
                         ExpectedBucketOwner=alice)["Body"].read() == b"x"
    s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=alice)
    for call in (
            lambda: s3.get_object(Bucket=bucket, Key="k",
                                  ExpectedBucketOwner=bob),
            lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"y",
                                  ExpectedBucketOwner=bob),
            lambda: s3.list_objects_v2(Bucket=bucket,
                                       ExpectedBucketOwner=bob),
            lambda: s3.delete_object(Bucket=bucket, Key="k",
                                     ExpectedBucketOwner=bob)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code_of(e) == "AccessDenied" and status_of(e) == 403
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    assert "k2" not in [o["Key"] for o in
                        s3.list_objects_v2(Bucket=bucket)["Contents"]]
    # The copy source's owner is checked with its own header.
    s3.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/k",
                   ExpectedSourceBucketOwner=alice)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="c2", CopySource=f"{bucket}/k",
                       ExpectedSourceBucketOwner=bob)
    assert code_of(e) == "AccessDenied"
