"""Walrus against the hostile requests of issue 13, each one a regression
test of a bug that was found: the request gets S3's error, the daemon stays
up, and what was stored before reads back the same."""
import base64
import hashlib
import time

from s3raw import Signed, exchange

EMPTY = hashlib.sha256(b"").hexdigest()


def alive(walrus, s3, bucket):
    assert walrus.proc.poll() is None, walrus.log_text()[-3000:]
    s3.put_object(Bucket=bucket, Key="canary", Body=b"still here")
    assert s3.get_object(Bucket=bucket,
                         Key="canary")["Body"].read() == b"still here"


def test_copy_source_key_too_long_unauthenticated(walrus, s3, bucket):
    """A copy source with a key over 1024 bytes freed its names twice (one
    anonymous request stopped the object store).  Anonymous: the bucket's
    ACL refuses before the header is parsed."""
    long_key = "k" * 1025
    for target in (f"/{bucket}/x", "/no-such-bucket/x",
                   f"/{bucket}/x?partNumber=1&uploadId=nope"):
        r = exchange(walrus.port, "PUT", target,
                     {"Host": f"127.0.0.1:{walrus.port}",
                      "x-amz-copy-source": f"b/{long_key}",
                      "Content-Length": "0"})
        assert r.status in (403, 404), r
        assert b"<Error>" in r.body and b"<Code>" in r.body
    alive(walrus, s3, bucket)


def test_copy_source_key_too_long_signed(walrus, s3, bucket):
    """The owner's own CopyObject and UploadPartCopy with an over-long
    source key: KeyTooLongError, nothing written."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    for key, query in (("dst", ""), ("mp", f"partNumber=1&uploadId={up}")):
        req = Signed(walrus.alice, "PUT", f"/{bucket}/{key}", query,
                     headers={"x-amz-copy-source": f"{bucket}/{'k' * 1025}"},
                     host=f"127.0.0.1:{walrus.port}")
        r = exchange(walrus.port, "PUT", req.target(), req.headers)
        assert r.status == 400, r
        assert b"<Code>KeyTooLongError</Code>" in r.body
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="mp",
                                        UploadId=up)
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    alive(walrus, s3, bucket)


def put_xml(walrus, bucket, query, body):
    req = Signed(walrus.alice, "PUT", f"/{bucket}", query,
                 payload_hash=hashlib.sha256(body).hexdigest(),
                 headers={"content-length": str(len(body))},
                 host=f"127.0.0.1:{walrus.port}")
    t0 = time.monotonic()
    r = exchange(walrus.port, "PUT", req.target(), req.headers, body,
                 timeout=120)
    return r, time.monotonic() - t0


def test_xml_many_attributes(walrus, s3, bucket):
    """An ACL body whose root carries 100 000 attributes cost ~30 s of CPU
    in libxml2's pairwise attribute check; the reader refuses it at once,
    and the ACL stays as it was."""
    before = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    attrs = " ".join(f"a{i}=\"\"" for i in range(100_000))
    body = (f"<AccessControlPolicy {attrs}><Owner><ID>x</ID></Owner>"
            "<AccessControlList/></AccessControlPolicy>").encode()
    r, _ = put_xml(walrus, bucket, "acl=", body)
    assert r.status == 400, r
    assert b"<Code>MalformedXML</Code>" in r.body
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == before
    alive(walrus, s3, bucket)


def test_xml_deep_and_wide(walrus, s3, bucket):
    """Nesting, element counts and text past what any S3 body needs are
    refused with MalformedXML; a real body of the same kind still works."""
    deep = b"<Delete>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</Delete>"
    wide = (b"<Delete><Object><Key>k</Key></Object>" + b"<x/>" * 250_000 +
            b"</Delete>")
    for body in (deep, wide):
        req = Signed(walrus.alice, "POST", f"/{bucket}", "delete=",
                     payload_hash=hashlib.sha256(body).hexdigest(),
                     headers={"content-length": str(len(body)),
                              "content-md5": base64.b64encode(
                                  hashlib.md5(body).digest()).decode()},
                     host=f"127.0.0.1:{walrus.port}")
        r = exchange(walrus.port, "POST", req.target(), req.headers, body,
                     timeout=120)
        assert r.status == 400, r
        assert b"<Code>MalformedXML</Code>" in r.body, r.body
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    out = s3.delete_objects(Bucket=bucket,
                            Delete={"Objects": [{"Key": "gone"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["gone"]
    alive(walrus, s3, bucket)
