"""Walrus against S3's answers where a new user's first scripts go: GET and
HEAD by partNumber, GetObjectAttributes, ListBuckets paging, and the edge
cases of issue 12 (DeleteBucket with only incomplete uploads, max-keys=0,
an empty delimiter, metadata replaced by none or by empty values,
non-ASCII metadata, re-creating a bucket, a repeated
CompleteMultipartUpload, aws-chunked Content-Encoding)."""
import base64
import hashlib
import http.client
import urllib.parse

import botocore.exceptions
import pytest

from conftest import s3_client
from s3raw import Signed, chunked_signed, exchange

MIB = 1 << 20


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def multipart(s3, bucket, key, sizes):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts, data = [], b""
    for i, size in enumerate(sizes, 1):
        body = bytes([i]) * size
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up,
                              PartNumber=i, Body=body)["ETag"]
        parts.append({"PartNumber": i, "ETag": etag})
        data += body
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                        MultipartUpload={"Parts": parts})
    return up, parts, data, done


# ---- partNumber ----

def test_get_and_head_by_part_number(s3, bucket):
    _, _, data, _ = multipart(s3, bucket, "mp", [5 * MIB, 5 * MIB, 1000])
    got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert got["Body"].read() == data[5 * MIB:10 * MIB]
    assert got["PartsCount"] == 3
    assert got["ContentRange"] == f"bytes {5 * MIB}-{10 * MIB - 1}/{len(data)}"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=3)
    assert head["ContentLength"] == 1000 and head["PartsCount"] == 3
    # Beyond the last part: 416.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert code_of(e) == "InvalidPartNumber" and status_of(e) == 416
    for bad in (0, 10001):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket=bucket, Key="mp", PartNumber=bad)
        assert code_of(e) == "InvalidArgument"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-1")
    assert code_of(e) == "InvalidRequest"
    # A ranged GET across and beyond the parts of the whole object.
    r = s3.get_object(Bucket=bucket, Key="mp",
                      Range=f"bytes={5 * MIB - 10}-{5 * MIB + 9}")
    assert r["Body"].read() == data[5 * MIB - 10:5 * MIB + 10]
    r = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={len(data) - 5}-")
    assert r["Body"].read() == data[-5:]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={len(data)}-")
    assert code_of(e) == "InvalidRange" and status_of(e) == 416


def test_part_number_of_a_plain_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert got["Body"].read() == b"0123456789"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="plain", PartNumber=2)
    assert status_of(e) == 416


# ---- GetObjectAttributes ----

def test_get_object_attributes(s3, bucket):
    _, _, data, done = multipart(s3, bucket, "mp", [5 * MIB, 7])
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key="mp",
        ObjectAttributes=["ETag", "ObjectParts", "StorageClass",
                          "ObjectSize"])
    assert attrs["ETag"] == done["ETag"].strip('"')
    assert attrs["ObjectSize"] == len(data)
    assert attrs["StorageClass"] == "STANDARD"
    parts = attrs["ObjectParts"]
    assert parts["TotalPartsCount"] == 2 and not parts["IsTruncated"]
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [
        (1, 5 * MIB), (2, 7)]
    assert "LastModified" in attrs
    paged = s3.get_object_attributes(Bucket=bucket, Key="mp",
                                     ObjectAttributes=["ObjectParts"],
                                     MaxParts=1)["ObjectParts"]
    assert paged["IsTruncated"] and paged["NextPartNumberMarker"] == 1
    assert [p["PartNumber"] for p in paged["Parts"]] == [1]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp",
                                    ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=1)["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [2]


def test_get_object_attributes_checksum_and_versions(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    body = b"checked"
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=body,
                       ChecksumAlgorithm="SHA256")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"later")
    a = s3.get_object_attributes(Bucket=bucket, Key="k", VersionId=v1,
                                 ObjectAttributes=["Checksum", "ObjectSize"])
    assert a["VersionId"] == v1 and a["ObjectSize"] == len(body)
    assert a["Checksum"]["ChecksumSHA256"] == base64.b64encode(
        hashlib.sha256(body).digest()).decode()
    assert "ObjectParts" not in a


def test_get_object_attributes_errors(s3, s3_bob, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k",
                                 ObjectAttributes=["Colour"])
    assert code_of(e) == "InvalidArgument"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="none",
                                 ObjectAttributes=["ETag"])
    assert code_of(e) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.get_object_attributes(Bucket=bucket, Key="k",
                                     ObjectAttributes=["ETag"])
    assert code_of(e) == "AccessDenied"


# ---- ListBuckets paging ----

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def list_buckets(w, creds, **params):
    """ListBuckets with the paging parameters this botocore predates: a
    signed request, the reply parsed here.  (names, token, prefix, status,
    error code)"""
    import xml.etree.ElementTree as ET
    query = urllib.parse.urlencode(params)
    req = Signed(creds, "GET", "/", query, host=f"127.0.0.1:{w.port}")
    r = exchange(w.port, "GET", req.target(), req.headers)
    root = ET.fromstring(r.body)
    if r.status != 200:
        return [], None, None, r.status, root.findtext("Code")
    names = [b.findtext(NS + "Name") for b in
             root.iter(NS + "Bucket")]
    return (names, root.findtext(NS + "ContinuationToken"),
            root.findtext(NS + "Prefix"), r.status, None)


def test_list_buckets_paging(tmp_path):
    from conftest import Walrus
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("pager")
        s3 = s3_client(w.endpoint, creds)
        names = [f"page-{c}-{i}" for c in "ab" for i in range(3)]
        for n in names:
            s3.create_bucket(Bucket=n)
        seen, token = [], None
        while True:
            params = {"max-buckets": 2}
            if token:
                params["continuation-token"] = token
            got, token, _, status, _ = list_buckets(w, creds, **params)
            assert status == 200 and len(got) <= 2
            seen += got
            if not token:
                break
        assert seen == sorted(names)
        got, token, prefix, _, _ = list_buckets(w, creds, prefix="page-b")
        assert got == names[3:] and prefix == "page-b" and token is None
        # boto3 without parameters still sees them all.
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == names
        for bad in ({"max-buckets": 0}, {"max-buckets": 10001},
                    {"max-buckets": "x"}, {"continuation-token": "%%%"}):
            _, _, _, status, code = list_buckets(w, creds, **bad)
            assert (status, code) == (400, "InvalidArgument"), bad
    finally:
        assert w.stop() == 0


# ---- the edge cases ----

def test_delete_bucket_with_only_incomplete_uploads(walrus, s3):
    s3.create_bucket(Bucket="only-uploads")
    up = s3.create_multipart_upload(Bucket="only-uploads",
                                    Key="k")["UploadId"]
    s3.upload_part(Bucket="only-uploads", Key="k", UploadId=up, PartNumber=1,
                   Body=b"p" * 1000)
    s3.delete_bucket(Bucket="only-uploads")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_bucket(Bucket="only-uploads")
    assert status_of(e) == 404
    # The name is free again, with nothing of the old uploads in it.
    s3.create_bucket(Bucket="only-uploads")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="only-uploads")
    s3.delete_bucket(Bucket="only-uploads")


def test_list_max_keys_zero_and_empty_delimiter(s3, bucket):
    for k in ("a/1", "a/2", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    for call in (s3.list_objects, s3.list_objects_v2,
                 s3.list_object_versions):
        r = call(Bucket=bucket, MaxKeys=0)
        assert r["IsTruncated"] is False and r["MaxKeys"] == 0
        assert "Contents" not in r and "Versions" not in r
        assert "NextMarker" not in r and "NextContinuationToken" not in r
    # An empty delimiter is no delimiter: every key, no prefixes.
    r = s3.list_objects(Bucket=bucket, Delimiter="")
    assert [o["Key"] for o in r["Contents"]] == ["a/1", "a/2", "b"]
    assert "CommonPrefixes" not in r
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="")
    assert r["KeyCount"] == 3


def test_empty_continuation_token(s3, bucket):
    # An empty token is no token (S3 lists from the start and echoes it);
    # a token it never gave is refused.
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    r = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert [o["Key"] for o in r["Contents"]] == ["a", "b"]
    assert r["ContinuationToken"] == "" and not r["IsTruncated"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="%%%")
    assert code_of(e) == "InvalidArgument"


def test_metadata_replaced_by_none_and_by_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                  Metadata={"a": "1", "b": "2"}, ContentType="text/plain")
    s3.copy_object(Bucket=bucket, Key="k", CopySource=f"{bucket}/k",
                   MetadataDirective="REPLACE")
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["Metadata"] == {}
    assert head["ContentType"] == "binary/octet-stream"
    s3.copy_object(Bucket=bucket, Key="k", CopySource=f"{bucket}/k",
                   MetadataDirective="REPLACE", Metadata={"e": "", "f": "v"})
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {
        "e": "", "f": "v"}
    s3.put_object(Bucket=bucket, Key="p", Body=b"x", Metadata={"e": ""})
    assert s3.get_object(Bucket=bucket, Key="p")["Metadata"] == {"e": ""}


def test_non_ascii_metadata(walrus, s3, bucket):
    """Raw UTF-8 in a metadata value (which SDKs refuse to send but HTTP
    clients do) is kept and answered RFC 2047-encoded, as S3 does."""
    value = "héllo wörld ✓"
    path = f"/{bucket}/nonascii"
    req = Signed(walrus.alice, "PUT", path,
                 headers={"content-length": "1"},
                 payload_hash=hashlib.sha256(b"x").hexdigest(),
                 host=f"127.0.0.1:{walrus.port}")
    conn = http.client.HTTPConnection("127.0.0.1", walrus.port)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for k, v in req.headers.items():
        conn.putheader(k, v)
    conn.putheader("x-amz-meta-name", value.encode("utf-8"))
    conn.endheaders(b"x")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    head = s3.head_object(Bucket=bucket, Key="nonascii")
    encoded = head["Metadata"]["name"]
    assert encoded == "=?UTF-8?B?%s?=" % base64.b64encode(
        value.encode()).decode()
    # ASCII values are answered as they were given.
    s3.put_object(Bucket=bucket, Key="ascii", Body=b"x",
                  Metadata={"name": "=?UTF-8?B?aGk=?="})
    assert s3.head_object(Bucket=bucket, Key="ascii")["Metadata"] == {
        "name": "=?UTF-8?B?aGk=?="}


def test_complete_multipart_upload_repeated(s3, bucket):
    up, parts, data, done = multipart(s3, bucket, "mp", [5 * MIB, 3])
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp",
                                         UploadId=up,
                                         MultipartUpload={"Parts": parts})
    assert again["ETag"] == done["ETag"] and again["Key"] == "mp"
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == data
    # Not for another key, and an unknown upload stays unknown.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="other",
                                     UploadId=up,
                                     MultipartUpload={"Parts": parts})
    assert code_of(e) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp",
                                     UploadId="0" * 64,
                                     MultipartUpload={"Parts": parts})
    assert code_of(e) == "NoSuchUpload"


def test_aws_chunked_content_encoding(walrus, s3, bucket):
    """aws-chunked is framing: the object keeps the other encodings only,
    and none when aws-chunked was all."""
    data = b"chunked body " * 1000
    for given, kept in (("aws-chunked", None), ("aws-chunked,gzip", "gzip")):
        key = f"ce-{kept}"
        req = Signed(walrus.alice, "PUT", f"/{bucket}/{key}", headers={
            "content-encoding": given,
            "x-amz-decoded-content-length": str(len(data))},
            payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            host=f"127.0.0.1:{walrus.port}")
        body = chunked_signed(req, data, chunk=4096)
        req.headers["content-length"] = str(len(body))
        r = exchange(walrus.port, "PUT", f"/{bucket}/{key}", req.headers,
                     body)
        assert r.status == 200, r.body
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == data
        assert got.get("ContentEncoding") == kept


# ---- composite multipart checksums ----

def test_composite_multipart_checksum(s3, bucket):
    import zlib
    up = s3.create_multipart_upload(Bucket=bucket, Key="ck",
                                    ChecksumAlgorithm="CRC32")
    assert up["ChecksumAlgorithm"] == "CRC32"
    bodies = [b"a" * (5 * MIB), b"b" * 100]
    parts, raw = [], b""
    for i, body in enumerate(bodies, 1):
        r = s3.upload_part(Bucket=bucket, Key="ck", UploadId=up["UploadId"],
                           PartNumber=i, Body=body, ChecksumAlgorithm="CRC32")
        crc = zlib.crc32(body).to_bytes(4, "big")
        assert r["ChecksumCRC32"] == base64.b64encode(crc).decode()
        parts.append({"PartNumber": i, "ETag": r["ETag"],
                      "ChecksumCRC32": r["ChecksumCRC32"]})
        raw += crc
    # A part checksum that is not the part's: InvalidPart.
    bad = [dict(parts[0]), parts[1]]
    bad[0]["ChecksumCRC32"] = base64.b64encode(b"\0\0\0\0").decode()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="ck",
                                     UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": bad})
    assert code_of(e) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="ck",
                                        UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts})
    want = base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + \
        "-2"
    assert done["ChecksumCRC32"] == want
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == want
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key="ck", ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"]["ChecksumCRC32"] == want
    assert [p["ChecksumCRC32"] for p in attrs["ObjectParts"]["Parts"]] == [
        p["ChecksumCRC32"] for p in parts]


def test_composite_checksum_errors(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="x",
                                   ChecksumAlgorithm="MD5")
    assert code_of(e) in ("InvalidRequest",)
    up = s3.create_multipart_upload(Bucket=bucket, Key="x",
                                    ChecksumAlgorithm="SHA256")["UploadId"]
    # A part with another algorithm is refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="x", UploadId=up, PartNumber=1,
                       Body=b"x", ChecksumAlgorithm="CRC32")
    assert code_of(e) == "InvalidRequest"
    # UploadPartCopy makes the part's checksum itself.
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied")
    r = s3.upload_part_copy(Bucket=bucket, Key="x", UploadId=up,
                            PartNumber=1, CopySource=f"{bucket}/src")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="x", UploadId=up, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
    part = hashlib.sha256(b"copied").digest()
    assert done["ChecksumSHA256"] == base64.b64encode(
        hashlib.sha256(part).digest()).decode() + "-1"

