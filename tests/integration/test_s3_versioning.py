"""Walrus bucket versioning, driven by boto3 as an application would:
Put/GetBucketVersioning, version ids on every write, reads, copies and
deletes by version, delete markers, the null version of unversioned and
suspended writes, ListObjectVersions and its paging, DeleteObjects with
VersionId, and the errors S3 answers for each (docs/walrus.md)."""
import re
import sqlite3
import urllib.request

import botocore.exceptions
import pytest

from conftest import Walrus, s3_client

VID = re.compile(r"^[0-9a-f]{32}$")


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def headers_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]


def enable(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"Status": status})


def history(s3, bucket, **kw):
    """[(key, version id, is latest, is delete marker)] in listing order."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, **kw):
        entries = [(v["Key"], v["VersionId"], v["IsLatest"], False,
                    v["LastModified"]) for v in page.get("Versions", [])]
        entries += [(m["Key"], m["VersionId"], m["IsLatest"], True,
                     m["LastModified"]) for m in page.get("DeleteMarkers", [])]
        out += entries
    return out


def read(s3, bucket, key, **kw):
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


# ---- the bucket's state ----

def test_versioning_states(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_versioning_config_errors(s3, s3_bob, bucket):
    # A bucket never goes back to unversioned; nonsense is malformed.
    for body in ({"Status": "Disabled"}, {}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration=body)
        assert code_of(e) == "MalformedXML"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={
            "Status": "Enabled", "MFADelete": "Enabled"}, MFA="123 456")
    assert code_of(e) == "NotImplemented"
    for call in (lambda c: c.get_bucket_versioning(Bucket=bucket),
                 lambda c: enable(c, bucket)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(s3_bob)
        assert code_of(e) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        enable(s3, "no-such-bucket-here")
    assert code_of(e) == "NoSuchBucket"
    # Nothing changed.
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


# ---- writes and reads by version ----

def test_put_keeps_every_version(s3, bucket):
    enable(s3, bucket)
    bodies = [b"one", b"two" * 40000, b"three"]   # the middle one a file
    vids = [s3.put_object(Bucket=bucket, Key="k", Body=b)["VersionId"]
            for b in bodies]
    assert all(VID.match(v) for v in vids) and len(set(vids)) == 3
    assert read(s3, bucket, "k") == b"three"
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["VersionId"] == vids[2]
    for v, b in zip(vids, bodies):
        assert read(s3, bucket, "k", VersionId=v) == b
        head = s3.head_object(Bucket=bucket, Key="k", VersionId=v)
        assert head["ContentLength"] == len(b) and head["VersionId"] == v
    # A range of an old version.
    assert read(s3, bucket, "k", VersionId=vids[1],
                Range="bytes=3-5") == b"two"
    h = history(s3, bucket)
    assert [(k, v, latest) for k, v, latest, _, _ in h] == [
        ("k", vids[2], True), ("k", vids[1], False), ("k", vids[0], False)]
    # ListObjects shows one object.
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("k", 5)]


def test_version_id_errors(s3, bucket):
    enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for bad in ("nope", "0" * 31, "G" * 32):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.get_object(Bucket=bucket, Key="k", VersionId=bad)
        assert code_of(e) == "InvalidArgument" and status_of(e) == 400
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.delete_object(Bucket=bucket, Key="k", VersionId=bad)
        assert code_of(e) == "InvalidArgument"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert code_of(e) == "NoSuchVersion" and status_of(e) == 404
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert status_of(e) == 404
    # Deleting a version that does not exist succeeds and changes nothing.
    s3.delete_object(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert read(s3, bucket, "k") == b"x"
    assert len(history(s3, bucket)) == 1


# ---- delete markers ----

def test_delete_makes_a_marker(s3, bucket):
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"data")["VersionId"]
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True and VID.match(d["VersionId"])
    marker = d["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert code_of(e) == "NoSuchKey"
    assert headers_of(e)["x-amz-delete-marker"] == "true"
    assert headers_of(e)["x-amz-version-id"] == marker
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert status_of(e) == 404
    # The marker itself, by its id: 405.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    assert code_of(e) == "MethodNotAllowed" and status_of(e) == 405
    assert headers_of(e)["x-amz-delete-marker"] == "true"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    assert status_of(e) == 405
    # The data is still there by version; listings agree.
    assert read(s3, bucket, "k", VersionId=v1) == b"data"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert "Contents" not in s3.list_objects(Bucket=bucket)
    h = history(s3, bucket)
    assert sorted((v, latest, dm) for _, v, latest, dm, _ in h) == sorted(
        [(marker, True, True), (v1, False, False)])
    # A second DELETE stacks another marker.
    d2 = s3.delete_object(Bucket=bucket, Key="k")
    assert d2["DeleteMarker"] and d2["VersionId"] != marker
    # Removing the markers brings the object back.
    r = s3.delete_object(Bucket=bucket, Key="k", VersionId=d2["VersionId"])
    assert r["DeleteMarker"] is True and r["VersionId"] == d2["VersionId"]
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert read(s3, bucket, "k") == b"data"
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == v1


def test_delete_of_missing_key_still_marks(s3, bucket):
    enable(s3, bucket)
    d = s3.delete_object(Bucket=bucket, Key="never-was")
    assert d["DeleteMarker"] is True
    h = history(s3, bucket)
    assert [(k, dm, latest) for k, _, latest, dm, _ in h] == [
        ("never-was", True, True)]


def test_delete_version_removes_it(s3, walrus, bucket):
    enable(s3, bucket)
    big = b"B" * 200_000  # a blob file, not inline
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=big)["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"three")["VersionId"]
    # A noncurrent one: gone, the others stay.
    r = s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert r["VersionId"] == v2 and "DeleteMarker" not in r
    assert [v for _, v, _, _, _ in history(s3, bucket)] == [v3, v1]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId=v2)
    assert code_of(e) == "NoSuchVersion"
    # The current one: the newest left becomes current.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v3)
    assert read(s3, bucket, "k") == big
    assert [(v, latest) for _, v, latest, _, _ in history(s3, bucket)] == [
        (v1, True)]
    # The last one: the key is gone, its blob is given to the collector.
    blob = blob_of(walrus, bucket, "k")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    assert history(s3, bucket) == []
    assert is_dead(walrus, blob)


def blob_of(walrus, bucket, key):
    db = sqlite3.connect(f"file:{walrus.data_dir}/walrus.db?mode=ro",
                         uri=True)
    try:
        return db.execute("SELECT blob FROM objects WHERE bucket=? AND key=?",
                          (bucket, key)).fetchone()[0]
    finally:
        db.close()


def is_dead(walrus, blob):
    db = sqlite3.connect(f"file:{walrus.data_dir}/walrus.db?mode=ro",
                         uri=True)
    try:
        return db.execute("SELECT 1 FROM dead_blobs WHERE blob=?",
                          (blob,)).fetchone() is not None
    finally:
        db.close()


# ---- the null version ----

def test_objects_before_versioning_are_null(s3, bucket):
    s3.put_object(Bucket=bucket, Key="old", Body=b"before")
    # Unversioned buckets answer versionId=null and list the null version.
    assert read(s3, bucket, "old", VersionId="null") == b"before"
    enable(s3, bucket)
    v = s3.put_object(Bucket=bucket, Key="old", Body=b"after")["VersionId"]
    assert VID.match(v)
    assert read(s3, bucket, "old", VersionId="null") == b"before"
    assert s3.head_object(Bucket=bucket, Key="old",
                          VersionId="null")["VersionId"] == "null"
    assert [(vid, latest) for _, vid, latest, _, _ in history(s3, bucket)] \
        == [(v, True), ("null", False)]


def test_suspended_bucket_writes_null(s3, bucket):
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    enable(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-1")
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    # A second write replaces the null version, it does not add one.
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-2")
    assert [(v, latest) for _, v, latest, _, _ in history(s3, bucket)] == [
        ("null", True), (v1, False)]
    assert read(s3, bucket, "k", VersionId="null") == b"null-2"
    # DELETE: the null version goes, a null delete marker takes its place.
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    h = history(s3, bucket)
    assert sorted((v, latest, dm) for _, v, latest, dm, _ in h) == sorted(
        [("null", True, True), (v1, False, False)])
    # Writing again replaces the null marker.
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-3")
    assert read(s3, bucket, "k") == b"null-3"
    assert len(history(s3, bucket)) == 2
    # Re-enabled: the null version is kept as noncurrent.
    enable(s3, bucket)
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"v3")["VersionId"]
    assert [v for _, v, _, _, _ in history(s3, bucket)] == [v3, "null", v1]


def test_suspended_null_noncurrent_is_replaced(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-old")
    enable(s3, bucket)
    v = s3.put_object(Bucket=bucket, Key="k", Body=b"v")["VersionId"]
    enable(s3, bucket, "Suspended")
    # The noncurrent null version is the one replaced.
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-new")
    assert [(vid, latest) for _, vid, latest, _, _ in history(s3, bucket)] \
        == [("null", True), (v, False)]
    assert read(s3, bucket, "k", VersionId="null") == b"null-new"


# ---- listing ----

def test_list_object_versions_paging(s3, bucket):
    enable(s3, bucket)
    expect = []
    for key in ("a/1", "a/2", "b", "c"):
        vids = [s3.put_object(Bucket=bucket, Key=key,
                              Body=f"{key}{i}".encode())["VersionId"]
                for i in range(3)]
        expect += [(key, v) for v in reversed(vids)]
    m = s3.delete_object(Bucket=bucket, Key="c")["VersionId"]
    expect.append(("c", m))
    for page_size in (1, 2, 3, 5, 1000):
        got = []
        kw = {"MaxKeys": page_size}
        while True:
            page = s3.list_object_versions(Bucket=bucket, **kw)
            items = page.get("Versions", []) + page.get("DeleteMarkers", [])
            assert len(items) <= page_size
            got += [(v["Key"], v["VersionId"]) for v in items]
            if not page["IsTruncated"]:
                break
            kw = {"MaxKeys": page_size, "KeyMarker": page["NextKeyMarker"],
                  "VersionIdMarker": page["NextVersionIdMarker"]}
        assert sorted(got) == sorted(expect), page_size
        assert len(got) == len(expect)
    # Within a key, newest first (ids tell the order).
    whole = s3.list_object_versions(Bucket=bucket)
    b = [v["VersionId"] for v in whole["Versions"] if v["Key"] == "b"]
    assert b == sorted(b, reverse=True)
    # Prefix and delimiter.
    page = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/"]
    assert {v["Key"] for v in page["Versions"]} == {"b", "c"}
    page = s3.list_object_versions(Bucket=bucket, Prefix="a/")
    assert {v["Key"] for v in page["Versions"]} == {"a/1", "a/2"}
    assert len(page["Versions"]) == 6
    # key-marker alone: after that key.
    page = s3.list_object_versions(Bucket=bucket, KeyMarker="b")
    assert {v["Key"] for v in page["Versions"]} == {"c"}
    assert len(page["DeleteMarkers"]) == 1


def test_list_versions_marker_errors(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_object_versions(Bucket=bucket, VersionIdMarker="null")
    assert code_of(e) == "InvalidArgument"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_object_versions(Bucket=bucket, KeyMarker="a",
                                VersionIdMarker="bogus")
    assert code_of(e) == "InvalidArgument"


def test_list_versions_resumes_after_deleted_marker(s3, bucket):
    """Emptying a bucket page by page deletes the version the next page
    resumes after; nothing may be skipped for it."""
    enable(s3, bucket)
    for i in range(5):
        s3.put_object(Bucket=bucket, Key="k", Body=str(i).encode())
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    for v in page["Versions"]:
        s3.delete_object(Bucket=bucket, Key="k", VersionId=v["VersionId"])
    rest = s3.list_object_versions(
        Bucket=bucket, KeyMarker=page["NextKeyMarker"],
        VersionIdMarker=page["NextVersionIdMarker"])
    assert len(rest["Versions"]) == 3


# ---- copies, multipart, multi-object delete ----

def test_copy_by_version(s3, bucket):
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"second")
    r = s3.copy_object(Bucket=bucket, Key="dst",
                       CopySource={"Bucket": bucket, "Key": "src",
                                   "VersionId": v1})
    assert r["CopySourceVersionId"] == v1 and VID.match(r["VersionId"])
    assert read(s3, bucket, "dst") == b"first"
    # Restoring an old version in place is a copy onto itself by version.
    r = s3.copy_object(Bucket=bucket, Key="src",
                       CopySource={"Bucket": bucket, "Key": "src",
                                   "VersionId": v1})
    assert read(s3, bucket, "src") == b"first"
    assert len([v for v in history(s3, bucket) if v[0] == "src"]) == 3
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={
            "Bucket": bucket, "Key": "src", "VersionId": "0" * 32})
    assert code_of(e) == "NoSuchVersion"
    marker = s3.delete_object(Bucket=bucket, Key="src")["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={
            "Bucket": bucket, "Key": "src", "VersionId": marker})
    assert code_of(e) == "InvalidRequest" and status_of(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x",
                       CopySource={"Bucket": bucket, "Key": "src"})
    assert code_of(e) == "NoSuchKey"
    # UploadPartCopy reads an old version too.
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up,
                               PartNumber=1, CopySource={
                                   "Bucket": bucket, "Key": "src",
                                   "VersionId": v1})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert VID.match(done["VersionId"])
    assert read(s3, bucket, "mp") == b"first"


def test_multipart_complete_keeps_previous(s3, bucket):
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"small")["VersionId"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=1,
                        Body=b"a" * (5 << 20))
    p2 = s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=2,
                        Body=b"b")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": p1["ETag"]},
            {"PartNumber": 2, "ETag": p2["ETag"]}]})
    v2 = done["VersionId"]
    assert VID.match(v2) and v2 != v1
    assert read(s3, bucket, "k", VersionId=v1) == b"small"
    assert s3.head_object(Bucket=bucket, Key="k",
                          VersionId=v2)["ContentLength"] == (5 << 20) + 1


def test_delete_objects_with_versions(s3, bucket):
    enable(s3, bucket)
    va = s3.put_object(Bucket=bucket, Key="a", Body=b"a")["VersionId"]
    vb = s3.put_object(Bucket=bucket, Key="b", Body=b"b")["VersionId"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "VersionId": va},
        {"Key": "b"},
        {"Key": "c", "VersionId": "bogus"},
    ]})
    deleted = {d["Key"]: d for d in r["Deleted"]}
    assert deleted["a"]["VersionId"] == va
    assert "DeleteMarker" not in deleted["a"]
    assert deleted["b"]["DeleteMarker"] is True
    assert VID.match(deleted["b"]["DeleteMarkerVersionId"])
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [
        ("c", "InvalidArgument")]
    h = history(s3, bucket)
    assert sorted((k, v, dm) for k, v, _, dm, _ in h) == sorted(
        [("b", deleted["b"]["DeleteMarkerVersionId"], True),
         ("b", vb, False)])
    # Removing a marker by version says it was one.
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "b", "VersionId": deleted["b"]["DeleteMarkerVersionId"]}]})
    assert r["Deleted"][0]["DeleteMarker"] is True
    assert read(s3, bucket, "b") == b"b"


def test_object_acl_by_version(s3, s3_bob, bucket):
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    s3.put_object_acl(Bucket=bucket, Key="k", VersionId=v1,
                      ACL="public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key="k",
                               VersionId=v1)["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers")
               for g in grants)
    # Only that version became readable by others.
    assert read(s3_bob, bucket, "k", VersionId=v1) == b"1"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.get_object(Bucket=bucket, Key="k")
    assert code_of(e) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_acl(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert code_of(e) == "NoSuchVersion"


def test_bucket_with_versions_is_not_empty(s3, bucket):
    enable(s3, bucket)
    v = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    m = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert code_of(e) == "BucketNotEmpty"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=m)
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v)
    assert history(s3, bucket) == []


def test_unversioned_bucket_unchanged(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert "VersionId" not in r
    assert "VersionId" not in s3.get_object(Bucket=bucket, Key="k")
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert "DeleteMarker" not in d and "VersionId" not in d
    assert history(s3, bucket) == []


def test_versions_survive_restart(tmp_path):
    w = Walrus(tmp_path / "data").start()
    try:
        creds = w.add_user("restart")
        s3 = s3_client(w.endpoint, creds)
        s3.create_bucket(Bucket="vrestart")
        enable(s3, "vrestart")
        vids = [s3.put_object(Bucket="vrestart", Key="k",
                              Body=bytes([i]) * 100_000)["VersionId"]
                for i in range(3)]
        marker = s3.delete_object(Bucket="vrestart", Key="k")["VersionId"]
        assert w.stop() == 0
        w.start()
        s3 = s3_client(w.endpoint, creds)
        assert s3.get_bucket_versioning(Bucket="vrestart")["Status"] == "Enabled"
        for i, v in enumerate(vids):
            assert read(s3, "vrestart", "k", VersionId=v) == bytes([i]) * 100_000
        # (ids begin with the version's position: newest sorts last)
        assert sorted(v for _, v, _, _, _ in history(s3, "vrestart")) == \
            vids + [marker]
    finally:
        w.stop()


def test_version_id_in_raw_headers(walrus, s3, bucket):
    """The header names S3 uses, as a plain HTTP client sees them."""
    enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="pub", Body=b"p", ACL="public-read")
    with urllib.request.urlopen(f"{walrus.endpoint}/{bucket}/pub") as resp:
        assert VID.match(resp.headers["x-amz-version-id"])
