"""Walrus at the byte level: what current SDKs send (aws-chunked bodies with
chunk signatures or unsigned trailers, no Content-Length, checksum trailers,
Expect: 100-continue) and what broken or hostile clients send (bad
signatures, skewed clocks, oversized headers, malformed XML).  Each bad
request must get S3's error and store nothing."""
import base64
import hashlib
import os
import zlib

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

import s3raw
from s3raw import Signed, exchange


def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def keys(s3, bucket):
    return [o["Key"] for o in
            s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_signer_matches_botocore(walrus):
    """The test signer agrees with botocore's, so what follows tests
    Walrus, not the helper."""
    creds = botocore.credentials.Credentials(walrus.alice.key,
                                             walrus.alice.secret)
    amz = s3raw.amz_now()
    req = botocore.awsrequest.AWSRequest(
        method="GET", url=f"http://127.0.0.1:{walrus.port}/b/k%20x?acl=",
        headers={"X-Amz-Date": amz})
    auth = botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1")
    auth._timestamp = amz  # botocore reads the time itself; pin it
    import unittest.mock
    with unittest.mock.patch("botocore.auth.datetime") as dt:
        import datetime
        dt.datetime.utcnow.return_value = datetime.datetime.strptime(
            amz, "%Y%m%dT%H%M%SZ")
        auth.add_auth(req)
    mine = Signed(walrus.alice, "GET", "/b/k%20x", "acl=",
                  host=f"127.0.0.1:{walrus.port}", amz_date=amz)
    assert req.headers["Authorization"].split("Signature=")[1] == \
        mine.signature


def put_raw(walrus, bucket, key, body, headers, payload_hash,
            creds=None, **kw):
    req = Signed(creds or walrus.alice, "PUT", f"/{bucket}/{key}",
                 headers=headers, payload_hash=payload_hash,
                 host=f"127.0.0.1:{walrus.port}")
    return req, exchange(walrus.port, "PUT", req.target(), req.headers,
                         body, **kw)


# ---- aws-chunked: STREAMING-UNSIGNED-PAYLOAD-TRAILER, no Content-Length ----

@pytest.mark.parametrize("alg", ["crc32", "crc32c", "sha1", "sha256"])
def test_unsigned_trailer_no_content_length(walrus, s3, bucket, alg):
    # pure-python CRC32C is slow: a smaller body, in smaller chunks
    data = os.urandom(3000 if alg == "crc32c" else 300_000)
    if alg == "crc32":
        value = crc32_b64(data)
    elif alg == "crc32c":
        value = base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()
    else:
        value = base64.b64encode(hashlib.new(alg, data).digest()).decode()
    body = s3raw.chunked_unsigned(data, 1000 if alg == "crc32c" else 65536,
                                  {f"x-amz-checksum-{alg}": value})
    req, r = put_raw(walrus, bucket, "trailer", s3raw.http_chunked(body, 7000),
                     {"Transfer-Encoding": "chunked",
                      "Content-Encoding": "aws-chunked",
                      "x-amz-decoded-content-length": str(len(data)),
                      "x-amz-trailer": f"x-amz-checksum-{alg}",
                      "x-amz-sdk-checksum-algorithm": alg.upper()},
                     "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert r.status == 200, r
    assert r.header("etag") == '"%s"' % hashlib.md5(data).hexdigest()
    g = s3.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert g["Body"].read() == data     # the payload, never the framing
    assert g["ContentLength"] == len(data)
    assert g.get("ContentEncoding") in (None, "")
    assert g[f"Checksum{alg.upper()}"] == value


def test_unsigned_trailer_bad_checksum(walrus, s3, bucket):
    data = os.urandom(100_000)
    body = s3raw.chunked_unsigned(
        data, 8192, {"x-amz-checksum-crc32": crc32_b64(data + b"x")})
    _, r = put_raw(walrus, bucket, "bad", s3raw.http_chunked(body),
                   {"Transfer-Encoding": "chunked",
                    "Content-Encoding": "aws-chunked",
                    "x-amz-decoded-content-length": str(len(data)),
                    "x-amz-trailer": "x-amz-checksum-crc32"},
                   "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.body, r
    assert keys(s3, bucket) == []


def test_unsigned_trailer_with_content_length(walrus, s3, bucket):
    data = b"hello trailer world" * 1000
    body = s3raw.chunked_unsigned(data, 4096,
                                  {"x-amz-checksum-crc32": crc32_b64(data)})
    _, r = put_raw(walrus, bucket, "cl", body,
                   {"Content-Length": str(len(body)),
                    "Content-Encoding": "aws-chunked",
                    "x-amz-decoded-content-length": str(len(data)),
                    "x-amz-trailer": "x-amz-checksum-crc32"},
                   "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert r.status == 200, r
    assert s3.get_object(Bucket=bucket, Key="cl")["Body"].read() == data


def test_unsigned_trailer_truncated(walrus, s3, bucket):
    data = os.urandom(50_000)
    body = s3raw.chunked_unsigned(data, 8192,
                                  {"x-amz-checksum-crc32": crc32_b64(data)})
    cut = body[:len(body) // 2]
    _, r = put_raw(walrus, bucket, "cut", s3raw.http_chunked(cut),
                   {"Transfer-Encoding": "chunked",
                    "Content-Encoding": "aws-chunked",
                    "x-amz-decoded-content-length": str(len(data)),
                    "x-amz-trailer": "x-amz-checksum-crc32"},
                   "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert r.status == 400 and b"IncompleteBody" in r.body, r
    assert keys(s3, bucket) == []


# ---- aws-chunked with chunk signatures ----

def test_signed_chunks(walrus, s3, bucket):
    data = os.urandom(200_000)
    req = Signed(walrus.alice, "PUT", f"/{bucket}/signed-chunks",
                 headers={"Content-Encoding": "aws-chunked",
                          "x-amz-decoded-content-length": str(len(data))},
                 payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                 host=f"127.0.0.1:{walrus.port}")
    body = s3raw.chunked_signed(req, data, 65536)
    req.headers["content-length"] = str(len(body))
    r = exchange(walrus.port, "PUT", req.target(), req.headers, body)
    assert r.status == 200, r
    assert s3.get_object(Bucket=bucket, Key="signed-chunks")["Body"].read() \
        == data


def test_signed_chunk_tampered(walrus, s3, bucket):
    data = os.urandom(200_000)
    req = Signed(walrus.alice, "PUT", f"/{bucket}/forged",
                 headers={"Content-Encoding": "aws-chunked",
                          "x-amz-decoded-content-length": str(len(data))},
                 payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                 host=f"127.0.0.1:{walrus.port}")

    def tamper(i, p):
        return p[:10] + bytes([p[10] ^ 1]) + p[11:] if i == 1 else p
    body = s3raw.chunked_signed(req, data, 65536, tamper=tamper)
    req.headers["content-length"] = str(len(body))
    r = exchange(walrus.port, "PUT", req.target(), req.headers, body)
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.body, r
    assert keys(s3, bucket) == []


def test_signed_chunks_with_trailer(walrus, s3, bucket):
    data = os.urandom(150_000)
    req = Signed(walrus.alice, "PUT", f"/{bucket}/signed-trailer",
                 headers={"Content-Encoding": "aws-chunked",
                          "x-amz-decoded-content-length": str(len(data)),
                          "x-amz-trailer": "x-amz-checksum-crc32"},
                 payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                 host=f"127.0.0.1:{walrus.port}")
    body = s3raw.chunked_signed(req, data, 65536,
                                trailers={"x-amz-checksum-crc32":
                                          crc32_b64(data)})
    req.headers["content-length"] = str(len(body))
    r = exchange(walrus.port, "PUT", req.target(), req.headers, body)
    assert r.status == 200, r
    g = s3.get_object(Bucket=bucket, Key="signed-trailer",
                      ChecksumMode="ENABLED")
    assert g["Body"].read() == data
    assert g["ChecksumCRC32"] == crc32_b64(data)


# ---- Expect: 100-continue ----

@pytest.mark.parametrize("expect", ["100-continue", "100-Continue"])
def test_expect_continue(walrus, s3, bucket, expect):
    data = os.urandom(70_000)
    _, r = put_raw(walrus, bucket, "cont", data,
                   {"Content-Length": str(len(data)), "Expect": expect},
                   hashlib.sha256(data).hexdigest(), expect_continue=True)
    assert r.status == 200, r
    assert s3.get_object(Bucket=bucket, Key="cont")["Body"].read() == data


def test_expect_continue_refused_early(walrus, s3, bucket):
    """A request that will fail is answered before the body is sent."""
    data = os.urandom(70_000)
    _, r = put_raw(walrus, "no-such-bucket-xyz", "k", data,
                   {"Content-Length": str(len(data)),
                    "Expect": "100-continue"},
                   hashlib.sha256(data).hexdigest(), expect_continue=True)
    assert r.status == 404 and b"NoSuchBucket" in r.body, r


# ---- authentication failures ----

def test_request_time_too_skewed(walrus, s3, bucket):
    req = Signed(walrus.alice, "PUT", f"/{bucket}/skew",
                 headers={"Content-Length": "1"},
                 payload_hash=hashlib.sha256(b"x").hexdigest(),
                 amz_date=s3raw.amz_now(-16 * 60),
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "PUT", req.target(), req.headers, b"x")
    assert r.status == 403 and b"RequestTimeTooSkewed" in r.body, r
    req = Signed(walrus.alice, "GET", f"/{bucket}",
                 amz_date=s3raw.amz_now(14 * 60),
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "GET", req.target(), req.headers)
    assert r.status == 200, r
    assert keys(s3, bucket) == []


def test_payload_hash_mismatch(walrus, s3, bucket):
    _, r = put_raw(walrus, bucket, "mismatch", b"actual body",
                   {"Content-Length": "11"},
                   hashlib.sha256(b"other body").hexdigest())
    assert r.status == 400 and b"XAmzContentSHA256Mismatch" in r.body, r
    assert keys(s3, bucket) == []


def test_signature_mismatch_stores_nothing(walrus, s3, bucket):
    req = Signed(walrus.alice, "PUT", f"/{bucket}/sig",
                 headers={"Content-Length": "3"},
                 payload_hash="UNSIGNED-PAYLOAD",
                 host=f"127.0.0.1:{walrus.port}")
    req.headers["x-amz-meta-added"] = "after signing"   # not signed: fine
    req.headers["host"] = "127.0.0.1:1"                 # signed: breaks
    r = exchange(walrus.port, "PUT", req.target(), req.headers, b"abc")
    assert r.status == 403, r
    assert b"<Code>SignatureDoesNotMatch</Code>" in r.body
    assert r.header("x-amz-request-id")
    assert keys(s3, bucket) == []


def test_malformed_authorization(walrus):
    r = exchange(walrus.port, "GET", "/", {
        "Host": "127.0.0.1", "x-amz-date": s3raw.amz_now(),
        "x-amz-content-sha256": s3raw.EMPTY_SHA256,
        "Authorization": "AWS4-HMAC-SHA256 Credential=garbage"})
    assert r.status == 400
    assert b"AuthorizationHeaderMalformed" in r.body


def test_anonymous_list_buckets_denied(walrus):
    r = exchange(walrus.port, "GET", "/", {"Host": "127.0.0.1"})
    assert r.status == 403 and b"AccessDenied" in r.body


# ---- bad input ----

def test_oversized_headers(walrus, bucket, s3):
    req = Signed(walrus.alice, "PUT", f"/{bucket}/big-headers",
                 headers={"Content-Length": "1",
                          "x-amz-meta-pad": "p" * 20000},
                 payload_hash="UNSIGNED-PAYLOAD",
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "PUT", req.target(), req.headers, b"x")
    assert r.status == 400, r
    assert b"RequestHeaderSectionTooLarge" in r.body
    assert keys(s3, bucket) == []


@pytest.mark.parametrize("body", [
    b"<CompleteMultipartUpload><Part>",
    b"not xml at all",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>'
    b"<CompleteMultipartUpload/>",
    b"<Wrong/>",
])
def test_malformed_xml_complete(walrus, s3, bucket, body):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="x")["UploadId"]
    req = Signed(walrus.alice, "POST", f"/{bucket}/x", f"uploadId={uid}",
                 headers={"Content-Length": str(len(body))},
                 payload_hash=hashlib.sha256(body).hexdigest(),
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "POST", req.target(), req.headers, body)
    assert r.status == 400 and b"MalformedXML" in r.body, r
    assert keys(s3, bucket) == []
    assert len(s3.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1


def test_malformed_xml_delete_and_create(walrus, s3, bucket):
    for method, path, query, body in [
            ("POST", f"/{bucket}", "delete=", b"<Delete><Object>"),
            ("PUT", "/new-bucket-malformed", "", b"<CreateBucketConfiguration"),
            ("PUT", f"/{bucket}", "acl=", b"<AccessControlPolicy><Owner>")]:
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        req = Signed(walrus.alice, method, path, query,
                     headers={"Content-Length": str(len(body)),
                              "Content-MD5": md5},
                     payload_hash=hashlib.sha256(body).hexdigest(),
                     host=f"127.0.0.1:{walrus.port}")
        r = exchange(walrus.port, method, req.target(), req.headers, body)
        assert r.status == 400, (path, r)
        assert b"MalformedXML" in r.body or b"MalformedACLError" in r.body
    assert "new-bucket-malformed" not in \
        [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_unknown_subresource_and_method(walrus, bucket):
    req = Signed(walrus.alice, "GET", f"/{bucket}", "website=",
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "GET", req.target(), req.headers)
    assert r.status == 501 and b"NotImplemented" in r.body
    req = Signed(walrus.alice, "POST", f"/{bucket}/k",
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "POST", req.target(), req.headers)
    assert r.status == 405 and b"MethodNotAllowed" in r.body


def test_missing_content_length(walrus, s3, bucket):
    req = Signed(walrus.alice, "PUT", f"/{bucket}/nolen",
                 payload_hash="UNSIGNED-PAYLOAD",
                 host=f"127.0.0.1:{walrus.port}")
    r = exchange(walrus.port, "PUT", req.target(), req.headers)
    assert r.status == 411 and b"MissingContentLength" in r.body, r
    assert keys(s3, bucket) == []


def test_connection_cut_mid_upload(walrus, s3, bucket):
    """A client that disappears half way leaves no object behind."""
    import socket
    import time
    data = os.urandom(1_000_000)
    req = Signed(walrus.alice, "PUT", f"/{bucket}/half",
                 headers={"Content-Length": str(len(data))},
                 payload_hash="UNSIGNED-PAYLOAD",
                 host=f"127.0.0.1:{walrus.port}")
    s = socket.create_connection(("127.0.0.1", walrus.port))
    head = f"PUT {req.target()} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    s.sendall(head.encode() + data[:400_000])
    time.sleep(0.3)
    s.close()
    time.sleep(0.5)
    assert keys(s3, bucket) == []
    tmp = walrus.data_dir / "tmp"
    deadline = time.monotonic() + 10
    while any(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(tmp.iterdir())


def test_server_still_healthy(s3):
    """Runs last in this file: nothing above took the server down."""
    s3.list_buckets()
