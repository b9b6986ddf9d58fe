"""Server-side encryption at rest (docs/walrus.md, "Encryption"): SSE-S3
(x-amz-server-side-encryption: AES256) and SSE-C (customer keys) on PUT,
GET and HEAD, ranges and partNumber reads of encrypted objects, S3's
errors for wrong and missing keys, the bytes on disk, and master key
rotation, copies between modes, multipart uploads, POST uploads and
bucket default encryption."""
import base64
import hashlib
import os
import sqlite3
import stat

import botocore.exceptions
import pytest

from conftest import Walrus, s3_client


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def ssec(key):
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def body(n, tag=b"x"):
    """n bytes that differ from position to position (a range taken from
    the wrong place shows)."""
    block = b"".join(hashlib.sha256(tag + i.to_bytes(4, "big")).digest()
                     for i in range(2048))
    return (block * (n // len(block) + 1))[:n]


SIZES = [0, 1, 15, 17, 1000, 70_000, 300_001]


@pytest.mark.parametrize("size", SIZES)
def test_sse_s3_roundtrip(s3, bucket, size):
    data = body(size, b"s3")
    put = s3.put_object(Bucket=bucket, Key="k", Body=data,
                        ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    # SSE-S3: the ETag of a single PUT is the plaintext's MD5, as S3.
    assert put["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == data
    assert got["ServerSideEncryption"] == "AES256"
    assert got["ContentLength"] == size
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("k", size)]


@pytest.mark.parametrize("size", SIZES)
def test_sse_c_roundtrip(s3, bucket, size):
    key = os.urandom(32)
    data = body(size, b"c")
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, **ssec(key))
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == md5
    assert "ServerSideEncryption" not in put
    # SSE-C: the ETag is not the plaintext's MD5 (it would reveal it).
    assert put["ETag"] != '"%s"' % hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="k", **ssec(key))
    assert got["Body"].read() == data
    assert got["SSECustomerKeyMD5"] == md5
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="k", **ssec(key))
    assert head["SSECustomerAlgorithm"] == "AES256"
    assert head["SSECustomerKeyMD5"] == md5
    assert head["ContentLength"] == size


@pytest.mark.parametrize("size", [1000, 300_001])
def test_sse_c_wrong_and_missing_key(s3, bucket, size):
    key = os.urandom(32)
    s3.put_object(Bucket=bucket, Key="k", Body=body(size), **ssec(key))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", **ssec(os.urandom(32)))
    assert code_of(e) == "AccessDenied" and status_of(e) == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", **ssec(os.urandom(32)))
    assert status_of(e) == 403
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert code_of(e) == "InvalidRequest" and status_of(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert status_of(e) == 400
    # The right key still opens it.
    got = s3.get_object(Bucket=bucket, Key="k", **ssec(key))["Body"].read()
    assert got == body(size)


def ssec_b64(key):
    """SSE-C parameters already encoded (botocore encodes the key only for
    some operations)."""
    return {"SSECustomerAlgorithm": "AES256",
            "SSECustomerKey": base64.b64encode(key).decode(),
            "SSECustomerKeyMD5": base64.b64encode(
                hashlib.md5(key).digest()).decode()}


def test_object_attributes_of_sse_c(s3, bucket):
    key = os.urandom(32)
    data = body(70_000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, **ssec(key))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k",
                                 ObjectAttributes=["ObjectSize"])
    assert code_of(e) == "InvalidRequest"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k",
                                 ObjectAttributes=["ObjectSize"],
                                 **ssec_b64(os.urandom(32)))
    assert code_of(e) == "AccessDenied"
    got = s3.get_object_attributes(Bucket=bucket, Key="k",
                                   ObjectAttributes=["ObjectSize", "ETag"],
                                   **ssec_b64(key))
    assert got["ObjectSize"] == len(data)
    s3.put_object(Bucket=bucket, Key="s3", Body=data,
                  ServerSideEncryption="AES256")
    got = s3.get_object_attributes(Bucket=bucket, Key="s3",
                                   ObjectAttributes=["ETag"])
    assert got["ETag"] == hashlib.md5(data).hexdigest()


def test_sse_c_key_for_an_unencrypted_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **ssec(os.urandom(32)))
    assert code_of(e) == "InvalidRequest" and status_of(e) == 400
    s3.put_object(Bucket=bucket, Key="s3", Body=b"s3",
                  ServerSideEncryption="AES256")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="s3", **ssec(os.urandom(32)))
    assert code_of(e) == "InvalidRequest"


def test_bad_sse_headers_store_nothing(s3, bucket):
    key = os.urandom(32)
    bad = [
        # The key's MD5 does not match.
        ({"SSECustomerAlgorithm": "AES256",
          "SSECustomerKey": base64.b64encode(key).decode(),
          "SSECustomerKeyMD5": base64.b64encode(b"0" * 16).decode()},
         "InvalidArgument"),
        # A key of the wrong length.
        (ssec(os.urandom(16)), "InvalidArgument"),
        ({"SSECustomerAlgorithm": "AES128", "SSECustomerKey": key},
         "InvalidEncryptionAlgorithmError"),
        ({"ServerSideEncryption": "AES256", **ssec(key)}, "InvalidArgument"),
        ({"ServerSideEncryption": "aws:kms"}, "NotImplemented"),
    ]
    for kw, code in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket=bucket, Key="k", Body=b"secret", **kw)
        assert code_of(e) == code, kw
        assert status_of(e) == (501 if code == "NotImplemented" else 400)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"secret",
                      ServerSideEncryption="AES512")
    assert code_of(e) == "InvalidArgument"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


@pytest.mark.parametrize("mode", ["s3", "c"])
@pytest.mark.parametrize("size", [1000, 300_001])
def test_ranges_of_encrypted_objects(s3, bucket, mode, size):
    key = os.urandom(32)
    kw = {"ServerSideEncryption": "AES256"} if mode == "s3" else {}
    rkw = ssec(key) if mode == "c" else {}
    data = body(size, b"r")
    s3.put_object(Bucket=bucket, Key="k", Body=data, **kw, **rkw)
    ranges = [(0, 0), (1, 1), (15, 16), (16, 31), (17, 500), (999, 999),
              (5, size - 1), (size - 7, size - 1)]
    if size > 1000:
        ranges += [(65_530, 65_600), (100_003, 299_999), (1000, 200_000)]
    for first, last in ranges:
        got = s3.get_object(Bucket=bucket, Key="k",
                            Range=f"bytes={first}-{last}", **rkw)
        assert got["Body"].read() == data[first:last + 1], (first, last)
        assert got["ContentRange"] == f"bytes {first}-{last}/{size}"
    got = s3.get_object(Bucket=bucket, Key="k", Range="bytes=-33", **rkw)
    assert got["Body"].read() == data[-33:]
    got = s3.get_object(Bucket=bucket, Key="k", PartNumber=1, **rkw)
    assert got["Body"].read() == data


def test_encrypted_versions(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    key = os.urandom(32)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one" * 40000,
                       ServerSideEncryption="AES256")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two" * 10,
                       **ssec(key))["VersionId"]
    old = s3.get_object(Bucket=bucket, Key="k", VersionId=v1)
    assert old["Body"].read() == b"one" * 40000
    assert old["ServerSideEncryption"] == "AES256"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId=v2)
    assert code_of(e) == "InvalidRequest"
    new = s3.get_object(Bucket=bucket, Key="k", VersionId=v2, **ssec(key))
    assert new["Body"].read() == b"two" * 10


def src_ssec(key):
    return {"CopySourceSSECustomerAlgorithm": "AES256",
            "CopySourceSSECustomerKey": key}


MODES = ["plain", "s3", "c"]


@pytest.mark.parametrize("size", [1000, 300_001])
@pytest.mark.parametrize("dst", MODES)
@pytest.mark.parametrize("src", MODES)
def test_copy_between_modes(s3, bucket, src, dst, size):
    skey, dkey = os.urandom(32), os.urandom(32)
    data = body(size, f"{src}{dst}".encode())
    put_kw = {"plain": {}, "s3": {"ServerSideEncryption": "AES256"},
              "c": ssec(skey)}[src]
    s3.put_object(Bucket=bucket, Key="src", Body=data, **put_kw)
    kw = {"plain": {}, "s3": {"ServerSideEncryption": "AES256"},
          "c": ssec(dkey)}[dst]
    if src == "c":
        kw.update(src_ssec(skey))
    res = s3.copy_object(Bucket=bucket, Key="dst",
                         CopySource={"Bucket": bucket, "Key": "src"}, **kw)
    etag = res["CopyObjectResult"]["ETag"]
    if dst == "c":
        assert res["SSECustomerKeyMD5"] == base64.b64encode(
            hashlib.md5(dkey).digest()).decode()
        assert etag != '"%s"' % hashlib.md5(data).hexdigest()
    else:
        assert etag == '"%s"' % hashlib.md5(data).hexdigest()
        assert res.get("ServerSideEncryption") == (
            "AES256" if dst == "s3" else None)
    get_kw = ssec(dkey) if dst == "c" else {}
    got = s3.get_object(Bucket=bucket, Key="dst", **get_kw)
    assert got["Body"].read() == data
    assert got["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="dst", Range="bytes=999-999",
                        **get_kw)
    assert got["Body"].read() == data[999:1000]


def test_copy_source_keys(s3, bucket):
    key = os.urandom(32)
    s3.put_object(Bucket=bucket, Key="src", Body=b"secret", **ssec(key))
    cs = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=cs)
    assert code_of(e) == "InvalidRequest" and status_of(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=cs,
                       **src_ssec(os.urandom(32)))
    assert code_of(e) == "AccessDenied" and status_of(e) == 403
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst",
                       CopySource={"Bucket": bucket, "Key": "plain"},
                       **src_ssec(key))
    assert code_of(e) == "InvalidRequest"
    assert sorted(o["Key"] for o in
                  s3.list_objects_v2(Bucket=bucket)["Contents"]) == \
        ["plain", "src"]
    # In place, changing only the encryption: allowed, as S3.
    s3.copy_object(Bucket=bucket, Key="plain",
                   CopySource={"Bucket": bucket, "Key": "plain"},
                   ServerSideEncryption="AES256")
    head = s3.head_object(Bucket=bucket, Key="plain")
    assert head["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == \
        b"plain"


MIB = 1 << 20


@pytest.mark.parametrize("mode", ["s3", "c"])
def test_multipart_encrypted(s3, bucket, mode):
    key, src_key = os.urandom(32), os.urandom(32)
    create_kw = ({"ServerSideEncryption": "AES256"} if mode == "s3"
                 else ssec(key))
    part_kw = ssec(key) if mode == "c" else {}
    p1, p2 = body(5 * MIB + 3, b"p1"), body(100_000, b"p2")
    src = body(6 * MIB, b"src")
    s3.put_object(Bucket=bucket, Key="src", Body=src, **ssec(src_key))
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **create_kw)
    if mode == "s3":
        assert up["ServerSideEncryption"] == "AES256"
    else:
        assert up["SSECustomerKeyMD5"] == base64.b64encode(
            hashlib.md5(key).digest()).decode()
    uid = up["UploadId"]
    if mode == "c":
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid,
                           PartNumber=1, Body=p1)
        assert code_of(e) == "InvalidRequest"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid,
                           PartNumber=1, Body=p1, **ssec(os.urandom(32)))
        assert code_of(e) == "AccessDenied"
    else:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid,
                           PartNumber=1, Body=p1, **ssec(key))
        assert code_of(e) == "InvalidRequest"
    # Part 1 twice: the second upload replaces the first.
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1,
                   Body=body(5 * MIB + 3, b"old"), **part_kw)
    r1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid,
                        PartNumber=1, Body=p1, **part_kw)
    if mode == "s3":
        assert r1["ETag"] == '"%s"' % hashlib.md5(p1).hexdigest()
        assert r1["ServerSideEncryption"] == "AES256"
    else:
        assert r1["ETag"] != '"%s"' % hashlib.md5(p1).hexdigest()
    # Part 2 copied from a range of an SSE-C object.
    r2 = s3.upload_part_copy(
        Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange=f"bytes=1000-{1000 + 5 * MIB - 1}",
        **src_ssec(src_key), **part_kw)
    p2copy = src[1000:1000 + 5 * MIB]
    r3 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid,
                        PartNumber=3, Body=p2, **part_kw)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": r1["ETag"]},
            {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
            {"PartNumber": 3, "ETag": r3["ETag"]}]})
    if mode == "s3":
        assert done["ServerSideEncryption"] == "AES256"
    whole = p1 + p2copy + p2
    got = s3.get_object(Bucket=bucket, Key="mp", **part_kw)
    assert got["Body"].read() == whole
    assert got["ETag"].endswith('-3"')
    # Ranges across the part boundaries, and each part by number.
    b1, b2 = len(p1), len(p1) + len(p2copy)
    for first, last in [(b1 - 5, b1 + 5), (b1 - 16, b1 + 16), (b2 - 1, b2),
                        (3, len(whole) - 3), (b1, b2 - 1), (b2, b2)]:
        got = s3.get_object(Bucket=bucket, Key="mp",
                            Range=f"bytes={first}-{last}", **part_kw)
        assert got["Body"].read() == whole[first:last + 1], (first, last)
    for n, data in ((1, p1), (2, p2copy), (3, p2)):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n, **part_kw)
        assert got["Body"].read() == data
    if mode == "c":
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket=bucket, Key="mp")
        assert code_of(e) == "InvalidRequest"
    # A copy of the multipart object into plain text reads back whole.
    s3.copy_object(Bucket=bucket, Key="flat",
                   CopySource={"Bucket": bucket, "Key": "mp"},
                   **(src_ssec(key) if mode == "c" else {}))
    assert s3.get_object(Bucket=bucket, Key="flat")["Body"].read() == whole


def post_form(s3, bucket, key, fields, data):
    import requests
    post = s3.generate_presigned_post(
        bucket, key, Fields=dict(fields),
        Conditions=[{k: v} for k, v in fields.items()])
    return requests.post(post["url"], data=post["fields"],
                         files={"file": ("f", data)}, timeout=30)


def test_post_encrypted(s3, bucket):
    key = os.urandom(32)
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    data = body(200_000, b"post")
    r = post_form(s3, bucket, "s3", {"x-amz-server-side-encryption":
                                     "AES256"}, data)
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption"] == "AES256"
    assert r.headers["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
    got = s3.get_object(Bucket=bucket, Key="s3")
    assert got["Body"].read() == data
    assert got["ServerSideEncryption"] == "AES256"
    r = post_form(s3, bucket, "c", {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key":
            base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": md5}, data)
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption-customer-key-MD5"] == md5
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c")
    assert code_of(e) == "InvalidRequest"
    assert s3.get_object(Bucket=bucket, Key="c", **ssec(key))[
        "Body"].read() == data
    # A key that does not match its MD5: refused, nothing stored.
    r = post_form(s3, bucket, "bad", {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key":
            base64.b64encode(os.urandom(32)).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": md5}, data)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    # The bucket's default applies to a POST without SSE fields.
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=AES256_DEFAULT)
    r = post_form(s3, bucket, "default", {}, b"by default")
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="default")[
        "ServerSideEncryption"] == "AES256"
    assert sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket=bucket)["Contents"]) == ["c", "default", "s3"]


AES256_DEFAULT = {"Rules": [{"ApplyServerSideEncryptionByDefault": {
    "SSEAlgorithm": "AES256"}}]}


def test_bucket_encryption_config(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code_of(e) == "ServerSideEncryptionConfigurationNotFoundError"
    assert status_of(e) == 404
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=AES256_DEFAULT)
    rules = s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}
    assert rules[0]["BucketKeyEnabled"] is False
    bad = [
        ({"Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k"}}]},
         "NotImplemented"),
        ({"Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "AES256", "KMSMasterKeyID": "k"}}]},
         "InvalidArgument"),
        ({"Rules": [{"ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "DES"}}]}, "MalformedXML"),
    ]
    for conf, code in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_bucket_encryption(Bucket=bucket,
                                     ServerSideEncryptionConfiguration=conf)
        assert code_of(e) == code, conf
    # Refused changes left the configuration as it was.
    assert s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"] == rules
    s3.delete_bucket_encryption(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code_of(e) == "ServerSideEncryptionConfigurationNotFoundError"


def test_bucket_default_applies(s3, s3_bob, bucket):
    s3.put_object(Bucket=bucket, Key="before", Body=b"before")
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=AES256_DEFAULT)
    # Others may not read or change it.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.get_bucket_encryption(Bucket=bucket)
    assert code_of(e) == "AccessDenied"
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data" * 30000)
    assert put["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="k")[
        "ServerSideEncryption"] == "AES256"
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket,
                                                        Key="before")
    res = s3.copy_object(Bucket=bucket, Key="copy",
                         CopySource={"Bucket": bucket, "Key": "before"})
    assert res["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert got["Body"].read() == b"before"
    assert got["ServerSideEncryption"] == "AES256"
    # The request's own SSE-C wins over the default.
    key = os.urandom(32)
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"c", **ssec(key))
    assert "ServerSideEncryption" not in put
    assert s3.get_object(Bucket=bucket, Key="c", **ssec(key))[
        "Body"].read() == b"c"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    assert up["ServerSideEncryption"] == "AES256"
    r1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                        PartNumber=1, Body=b"one part")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r1["ETag"]}]})
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"one part"
    assert got["ServerSideEncryption"] == "AES256"
    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(
        Bucket=bucket, Key="after", Body=b"after")


def files_containing(root, needle):
    hits = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                if needle in f.read():
                    hits.append(p)
    return hits


def test_bytes_on_disk_are_not_the_plaintext(tmp_path):
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("disk")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="disk")
        key = os.urandom(32)
        for size in (100, 50_000, 2_000_000):   # inline and file blobs
            for name, kw in (("s3", {"ServerSideEncryption": "AES256"}),
                             ("c", ssec(key))):
                marker = f"SECRET-{name}-{size}-".encode()
                data = (marker * (size // len(marker) + 1))[:size]
                s3.put_object(Bucket="disk", Key=f"{name}-{size}",
                              Body=data, **kw)
        # Multipart: parts and the completed object.
        for name, kw in (("mps3", {"ServerSideEncryption": "AES256"}),
                         ("mpc", ssec(key))):
            pkw = ssec(key) if name == "mpc" else {}
            uid = s3.create_multipart_upload(Bucket="disk", Key=name,
                                             **kw)["UploadId"]
            marker = f"SECRET-{name}-".encode()
            parts = []
            for n, size in ((1, 5 * MIB), (2, 1000)):
                data = (marker * (size // len(marker) + 1))[:size]
                etag = s3.upload_part(Bucket="disk", Key=name, UploadId=uid,
                                      PartNumber=n, Body=data,
                                      **pkw)["ETag"]
                parts.append({"PartNumber": n, "ETag": etag})
            if name == "mpc":   # left incomplete: parts on disk only
                continue
            s3.complete_multipart_upload(Bucket="disk", Key=name,
                                         UploadId=uid,
                                         MultipartUpload={"Parts": parts})
        # The scan finds plaintext where there is some: a plain object.
        s3.put_object(Bucket="disk", Key="plain", Body=b"PLAINMARK" * 10)
        s3.put_object(Bucket="disk", Key="plainbig",
                      Body=b"PLAINBIG" * 100_000)
        assert files_containing(w.data_dir, b"PLAINMARK")
        assert files_containing(w.data_dir, b"PLAINBIG")
        assert files_containing(w.data_dir, b"SECRET-") == []
        # The customer's key is nowhere either.
        assert files_containing(w.data_dir, key) == []
        assert files_containing(w.data_dir,
                                base64.b64encode(key)) == []
        got = s3.get_object(Bucket="disk", Key="c-2000000", **ssec(key))
        assert got["Body"].read().startswith(b"SECRET-c-2000000-")
    finally:
        w.stop()
    # Nor after a restart (the WAL checkpointed into the database).
    assert files_containing(w.data_dir, b"SECRET-") == []


def test_master_key_rotation(tmp_path):
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("rot")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="rot")
        s3.put_object(Bucket="rot", Key="old", Body=b"old" * 30000,
                      ServerSideEncryption="AES256")
        s3.put_object(Bucket="rot", Key="oldsmall", Body=b"small",
                      ServerSideEncryption="AES256")
    finally:
        assert w.stop() == 0
    keyfile = w.data_dir / "sse-master.keys"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert not (w.data_dir / "sse-master.keys.tmp").exists()
    lines = keyfile.read_text().split("\n")
    assert lines[0].startswith("1 ") and len(lines[0].split()[1]) == 64
    # Rotation, as docs/walrus.md tells operators: append a new version.
    with open(keyfile, "a") as f:
        f.write(f"2 {os.urandom(32).hex()}\n")
    w.start()
    try:
        s3 = s3_client(w.endpoint, creds)
        assert s3.get_object(Bucket="rot", Key="old")["Body"].read() == \
            b"old" * 30000
        assert s3.get_object(Bucket="rot", Key="oldsmall")["Body"].read() == \
            b"small"
        s3.put_object(Bucket="rot", Key="new", Body=b"new" * 30000,
                      ServerSideEncryption="AES256")
        assert s3.get_object(Bucket="rot", Key="new")["Body"].read() == \
            b"new" * 30000
    finally:
        assert w.stop() == 0
    db = sqlite3.connect(w.data_dir / "walrus.db")
    recs = dict(db.execute("SELECT key, sse FROM objects"))
    db.close()
    assert recs["old"].startswith("S3:1:") and recs["new"].startswith("S3:2:")
    # Without version 1 the old objects no longer open (the key file is
    # what protects them), the new one still does.
    keyfile.write_text(keyfile.read_text().split("\n", 1)[1])
    w.start()
    try:
        s3 = s3_client(w.endpoint, creds)
        assert s3.get_object(Bucket="rot", Key="new")["Body"].read() == \
            b"new" * 30000
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket="rot", Key="oldsmall")
        assert status_of(e) == 500
    finally:
        w.stop()


def test_key_file_elsewhere(tmp_path):
    """--sse-key-file (sse_key_file in the config) puts the master keys
    outside the data directory, e.g. on another volume."""
    keys = tmp_path / "keys" / "walrus.keys"
    keys.parent.mkdir()
    w = Walrus(tmp_path / "data",
               extra_args=["--sse-key-file", str(keys)]).start()
    try:
        creds = w.add_user("kf")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="kfile")
        s3.put_object(Bucket="kfile", Key="k", Body=b"v" * 100_000,
                      ServerSideEncryption="AES256")
    finally:
        assert w.stop() == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert not (w.data_dir / "sse-master.keys").exists()
    w.start()
    try:
        s3 = s3_client(w.endpoint, creds)
        assert s3.get_object(Bucket="kfile", Key="k")["Body"].read() == \
            b"v" * 100_000
    finally:
        assert w.stop() == 0


def test_key_file_readable_by_others_is_refused(tmp_path):
    w = Walrus(tmp_path / "data").start()
    w.stop()
    keyfile = w.data_dir / "sse-master.keys"
    keyfile.chmod(0o644)
    with pytest.raises(Exception):
        w.start()
    assert "chmod 600" in w.log_text()


def test_access_logs_into_an_encrypted_bucket(tmp_path):
    """Server access logs delivered into a bucket with default encryption
    are SSE-S3 objects, as S3 delivers them."""
    from conftest import wait_until
    w = Walrus(tmp_path / "data",
               extra_args=["--log-flush-interval", "0.3"]).start()
    try:
        creds = w.add_user("logs")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="src")
        s3.create_bucket(Bucket="logs")
        s3.put_bucket_encryption(
            Bucket="logs", ServerSideEncryptionConfiguration=AES256_DEFAULT)
        s3.put_bucket_logging(Bucket="src", BucketLoggingStatus={
            "LoggingEnabled": {"TargetBucket": "logs",
                               "TargetPrefix": "LOGLINE-"}})
        s3.put_object(Bucket="src", Key="LOGGED-KEY", Body=b"x")
        wait_until(lambda: s3.list_objects_v2(Bucket="logs").get(
            "Contents"), timeout=30, what="a log object")
        name = s3.list_objects_v2(Bucket="logs")["Contents"][0]["Key"]
        got = s3.get_object(Bucket="logs", Key=name)
        assert got["ServerSideEncryption"] == "AES256"
        assert b"LOGGED-KEY" in got["Body"].read()
    finally:
        w.stop()
    assert files_containing(w.data_dir, b"REST.PUT.OBJECT LOGGED-KEY") == []


def test_aws_cli_sse(walrus, cli_env, tmp_path, s3):
    """aws s3 cp --sse AES256 and --sse-c (single PUT and multipart, and
    the download with the key), as a user types them."""
    from conftest import AWS_BIN, run

    def aws(*args, check=True):
        return run([AWS_BIN, "--endpoint-url", walrus.endpoint, *args],
                   cli_env, check=check)
    key = tmp_path / "sse.key"
    key.write_bytes(os.urandom(32))
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(body(100_000, b"cli"))
    big.write_bytes(body(20 * MIB, b"clibig"))   # > 8 MiB: multipart
    aws("s3", "mb", "s3://cli-sse")
    try:
        for f in (small, big):
            aws("s3", "cp", str(f), f"s3://cli-sse/s3-{f.name}",
                "--sse", "AES256")
            aws("s3", "cp", str(f), f"s3://cli-sse/c-{f.name}",
                "--sse-c", "AES256", "--sse-c-key", f"fileb://{key}")
            assert s3.head_object(Bucket="cli-sse", Key=f"s3-{f.name}")[
                "ServerSideEncryption"] == "AES256"
            back = tmp_path / "back"
            aws("s3", "cp", f"s3://cli-sse/s3-{f.name}", str(back))
            assert back.read_bytes() == f.read_bytes()
            aws("s3", "cp", f"s3://cli-sse/c-{f.name}", str(back),
                "--sse-c", "AES256", "--sse-c-key", f"fileb://{key}")
            assert back.read_bytes() == f.read_bytes()
            # Without the key: refused.
            p = aws("s3", "cp", f"s3://cli-sse/c-{f.name}", str(back),
                    check=False)
            assert p.returncode != 0
    finally:
        aws("s3", "rb", "--force", "s3://cli-sse")
