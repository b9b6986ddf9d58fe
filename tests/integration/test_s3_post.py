"""Walrus browser uploads (POST Object): forms made by boto3's
generate_presigned_post (SigV4) and by hand (SigV2, anonymous), their
policy conditions (exact, eq, starts-with, content-length-range, every
field covered), success_action_status and success_action_redirect,
metadata and ACL fields, and the errors for an expired or violated policy,
a bad signature and a malformed form."""
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import re
import uuid

import botocore.exceptions
import pytest

from conftest import s3_client


def form_body(fields, file_data, filename="upload.bin", file_first=False):
    boundary = "----koala" + uuid.uuid4().hex
    parts = []
    items = list(fields.items())
    file_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream'
        f'\r\n\r\n').encode() + file_data + b"\r\n"
    if file_first:
        parts.append(file_part)
    for k, v in items:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; '
                     f'name="{k}"\r\n\r\n{v}\r\n'.encode())
    if not file_first:
        parts.append(file_part)
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(walrus, bucket, fields, data=b"hello", **kw):
    body, ctype = form_body(fields, data, **kw)
    c = http.client.HTTPConnection("127.0.0.1", walrus.port, timeout=30)
    try:
        c.request("POST", f"/{bucket}", body=body,
                  headers={"Content-Type": ctype,
                           "Origin": "https://app.example.com"})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def error_code(body):
    m = re.search(rb"<Code>(.*?)</Code>", body)
    return m.group(1).decode() if m else None


def test_presigned_post_v4(walrus, s3, bucket):
    p = s3.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "text/plain", "x-amz-meta-who": "browser",
                "success_action_status": "201"},
        Conditions=[["starts-with", "$Content-Type", "text/"],
                    {"x-amz-meta-who": "browser"},
                    {"success_action_status": "201"},
                    ["content-length-range", 1, 1000]],
        ExpiresIn=300)
    assert p["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    st, h, body = post(walrus, bucket, p["fields"], b"from a form",
                       filename="note.txt")
    assert st == 201, body
    assert b"<Key>uploads/note.txt</Key>" in body
    assert h["etag"] == '"%s"' % hashlib.md5(b"from a form").hexdigest()
    got = s3.get_object(Bucket=bucket, Key="uploads/note.txt")
    assert got["Body"].read() == b"from a form"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"who": "browser"}


def test_policy_conditions_enforced(walrus, s3, bucket):
    p = s3.generate_presigned_post(
        bucket, "fixed-key",
        Conditions=[["content-length-range", 5, 10]], ExpiresIn=300)
    st, _, body = post(walrus, bucket, p["fields"], b"abc")
    assert st == 400 and error_code(body) == "EntityTooSmall"
    st, _, body = post(walrus, bucket, p["fields"], b"x" * 11)
    assert st == 400 and error_code(body) == "EntityTooLarge"
    # Another key than the policy's.
    fields = dict(p["fields"], key="other-key")
    st, _, body = post(walrus, bucket, fields, b"123456")
    assert st == 403 and error_code(body) == "AccessDenied"
    assert b"Policy Condition failed" in body
    # A field the policy does not cover.
    fields = dict(p["fields"], **{"x-amz-meta-extra": "1"})
    st, _, body = post(walrus, bucket, fields, b"123456")
    assert st == 403 and b"Extra input fields" in body
    # A signature that does not match.
    fields = dict(p["fields"], **{"x-amz-signature": "0" * 64})
    st, _, body = post(walrus, bucket, fields, b"123456")
    assert st == 403 and error_code(body) == "SignatureDoesNotMatch"
    # Nothing was stored by any of them; the right form works.
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    st, _, _ = post(walrus, bucket, p["fields"], b"123456")
    assert st == 204
    assert s3.get_object(Bucket=bucket, Key="fixed-key")["Body"].read() == \
        b"123456"


def test_expired_policy(walrus, s3, bucket):
    p = s3.generate_presigned_post(bucket, "k", ExpiresIn=-10)
    st, _, body = post(walrus, bucket, p["fields"])
    assert st == 403 and b"Policy expired" in body


def sigv2_form(creds, bucket, key, extra_conditions=(), **fields):
    exp = (datetime.datetime.now(datetime.timezone.utc) +
           datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = {"expiration": exp, "conditions": [
        {"bucket": bucket}, {"key": key}, *extra_conditions]}
    b64 = base64.b64encode(json.dumps(policy).encode()).decode()
    sig = base64.b64encode(hmac.new(creds.secret.encode(), b64.encode(),
                                    hashlib.sha1).digest()).decode()
    return dict({"key": key, "AWSAccessKeyId": creds.key, "policy": b64,
                 "signature": sig}, **fields)


def test_sigv2_form_redirect_and_acl(walrus, s3, bucket):
    fields = sigv2_form(
        walrus.alice, bucket, "v2.txt",
        extra_conditions=[{"acl": "public-read"},
                          ["starts-with", "$success_action_redirect",
                           "https://app.example.com/"]],
        acl="public-read",
        success_action_redirect="https://app.example.com/done")
    st, h, _ = post(walrus, bucket, fields, b"v2 data")
    assert st == 303
    loc = h["location"]
    assert loc.startswith("https://app.example.com/done?bucket=")
    assert "key=v2.txt" in loc and "etag=" in loc
    # public-read: an anonymous GET works.
    c = http.client.HTTPConnection("127.0.0.1", walrus.port)
    c.request("GET", f"/{bucket}/v2.txt")
    assert c.getresponse().read() == b"v2 data"
    c.close()


def test_anonymous_form_needs_a_writable_bucket(walrus, s3, bucket):
    st, _, body = post(walrus, bucket, {"key": "anon"})
    assert st == 403 and error_code(body) == "AccessDenied"
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/drop/*"}]}))
    st, _, body = post(walrus, bucket, {"key": "drop/anon"})
    assert st == 204, body
    st, _, body = post(walrus, bucket, {"key": "elsewhere"})
    assert st == 403


def test_malformed_forms(walrus, s3, bucket):
    p = s3.generate_presigned_post(bucket, "k", ExpiresIn=300)
    # No key field.
    fields = {k: v for k, v in p["fields"].items() if k != "key"}
    st, _, body = post(walrus, bucket, fields)
    assert st == 400 and error_code(body) == "InvalidArgument"
    # The file before the fields: they are not there yet.
    st, _, body = post(walrus, bucket, p["fields"], file_first=True)
    assert st == 400
    # Not a form at all.
    c = http.client.HTTPConnection("127.0.0.1", walrus.port)
    c.request("POST", f"/{bucket}", body=b"x",
              headers={"Content-Type": "text/plain"})
    r = c.getresponse()
    assert r.status == 412 and b"multipart/form-data" in r.read()
    c.close()
    # A form without a file.
    body, ctype = form_body(p["fields"], b"")
    body = body[:body.index(b'name="file"') - 60] + b"--\r\n"
    c = http.client.HTTPConnection("127.0.0.1", walrus.port)
    c.request("POST", f"/{bucket}", body=body,
              headers={"Content-Type": ctype})
    r = c.getresponse()
    assert r.status == 400
    c.close()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_large_file_through_a_form(walrus, s3, bucket):
    data = bytes(range(256)) * 20000  # 5 MB, crosses many reads
    p = s3.generate_presigned_post(bucket, "big", ExpiresIn=300)
    st, h, _ = post(walrus, bucket, p["fields"], data)
    assert st == 204
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data
