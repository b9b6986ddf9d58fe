"""Walrus object and bucket tagging, driven by boto3: x-amz-tagging on PUT,
COPY (with the tagging directive) and multipart uploads, Put/Get/Delete
ObjectTagging (by version too), Put/Get/DeleteBucketTagging, the tag count
on GET, and AWS's limits with its error codes."""
import botocore.exceptions
import pytest


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def tags_of(s3, bucket, key, **kw):
    return {t["Key"]: t["Value"] for t in
            s3.get_object_tagging(Bucket=bucket, Key=key, **kw)["TagSet"]}


def tagset(d):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in d.items()]}


def test_put_with_tagging_header(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                  Tagging="team=koala&env=test%20one&empty=")
    assert tags_of(s3, bucket, "k") == {"team": "koala", "env": "test one",
                                        "empty": ""}
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3
    # No tags: no count.
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="plain")
    assert tags_of(s3, bucket, "plain") == {}
    # A new PUT replaces the tags with its own.
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert tags_of(s3, bucket, "k") == {}


def test_put_get_delete_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    s3.put_object_tagging(Bucket=bucket, Key="k",
                          Tagging=tagset({"b": "2", "c": "3"}))
    assert tags_of(s3, bucket, "k") == {"b": "2", "c": "3"}
    # The data and its metadata are untouched.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert tags_of(s3, bucket, "k") == {}
    for call in (lambda: s3.get_object_tagging(Bucket=bucket, Key="nope"),
                 lambda: s3.put_object_tagging(Bucket=bucket, Key="nope",
                                               Tagging=tagset({"a": "1"})),
                 lambda: s3.delete_object_tagging(Bucket=bucket, Key="nope")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code_of(e) == "NoSuchKey"


def test_unicode_tags(s3, bucket):
    key = "ключ" * 32            # 128 characters, 256 bytes
    value = "значение/é:@" * 21   # 252 characters
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="k",
                          Tagging=tagset({key: value}))
    assert tags_of(s3, bucket, "k") == {key: value}


@pytest.mark.parametrize("tags,code", [
    ({f"k{i}": "v" for i in range(11)}, "BadRequest"),
    ({"k" * 129: "v"}, "InvalidTag"),
    ({"k": "v" * 257}, "InvalidTag"),
    ({"aws:reserved": "v"}, "InvalidTag"),
    ({"bad*char": "v"}, "InvalidTag"),
    ({"k": "bad<char>"}, "InvalidTag"),
])
def test_object_tag_limits(s3, bucket, tags, code):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(tags))
    assert code_of(e) == code and status_of(e) == 400
    assert tags_of(s3, bucket, "k") == {"keep": "me"}


def test_duplicate_tag_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [
            {"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]})
    assert code_of(e) == "InvalidTag"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="dup", Body=b"x", Tagging="a=1&a=2")
    assert code_of(e) == "InvalidTag"


def test_bad_tagging_header_stores_nothing(s3, bucket):
    eleven = "&".join(f"k{i}=v" for i in range(11))
    for header, code in ((eleven, "BadRequest"), ("a=%zz", "InvalidArgument"),
                         ("a=1&&b=2", "InvalidArgument")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_object(Bucket=bucket, Key="bad", Body=b"x",
                          Tagging=header)
        assert code_of(e) == code
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="bad", Tagging=eleven)
    assert code_of(e) == "BadRequest"
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_malformed_tagging_body(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    def garble(request, **kw):
        request.data = b"<Tagging><Oops/>"
        for name in [h for h in request.headers.keys()
                     if h.lower() == "content-md5"
                     or h.lower().startswith("x-amz-checksum-")]:
            del request.headers[name]
    s3.meta.events.register_first("before-sign.s3.PutObjectTagging", garble)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k",
                              Tagging=tagset({"a": "1"}))
    assert code_of(e) == "MalformedXML"


def test_copy_tagging_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Tagging="from=src")
    src = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=src)
    assert tags_of(s3, bucket, "copied") == {"from": "src"}
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=src,
                   TaggingDirective="REPLACE", Tagging="new=1")
    assert tags_of(s3, bucket, "replaced") == {"new": "1"}
    s3.copy_object(Bucket=bucket, Key="cleared", CopySource=src,
                   TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "cleared") == {}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=src,
                       TaggingDirective="MERGE")
    assert code_of(e) == "InvalidArgument"


def test_multipart_tagging(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp",
                                    Tagging="phase=upload")["UploadId"]
    p = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1,
                       Body=b"data")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": p["ETag"]}]})
    assert tags_of(s3, bucket, "mp") == {"phase": "upload"}
    assert s3.get_object(Bucket=bucket, Key="mp")["TagCount"] == 1


def test_tagging_by_version(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1",
                       Tagging="v=1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2",
                       Tagging="v=2")["VersionId"]
    assert tags_of(s3, bucket, "k") == {"v": "2"}
    got = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)
    assert got["VersionId"] == v1 and got["TagSet"] == [
        {"Key": "v", "Value": "1"}]
    r = s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=v1,
                              Tagging=tagset({"old": "yes"}))
    assert r["VersionId"] == v1
    assert tags_of(s3, bucket, "k", VersionId=v1) == {"old": "yes"}
    assert tags_of(s3, bucket, "k", VersionId=v2) == {"v": "2"}
    s3.delete_object_tagging(Bucket=bucket, Key="k", VersionId=v2)
    assert tags_of(s3, bucket, "k") == {}
    # The tags stay with their version when it becomes current again.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert tags_of(s3, bucket, "k") == {"old": "yes"}
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="k")
    assert code_of(e) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=marker)
    assert code_of(e) == "MethodNotAllowed"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert code_of(e) == "NoSuchVersion"


def test_object_tagging_access(s3, s3_bob, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"x", Tagging="a=1")
    s3.put_object(Bucket=bucket, Key="public", Body=b"x", Tagging="a=1",
                  ACL="public-read")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.get_object_tagging(Bucket=bucket, Key="private")
    assert code_of(e) == "AccessDenied"
    assert tags_of(s3_bob, bucket, "public") == {"a": "1"}
    for key in ("private", "public"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3_bob.put_object_tagging(Bucket=bucket, Key=key,
                                      Tagging=tagset({"b": "2"}))
        assert code_of(e) == "AccessDenied"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3_bob.delete_object_tagging(Bucket=bucket, Key=key)
        assert code_of(e) == "AccessDenied"
    assert tags_of(s3, bucket, "public") == {"a": "1"}


def test_bucket_tagging(s3, s3_bob, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code_of(e) == "NoSuchTagSet" and status_of(e) == 404
    fifty = {f"k{i}": f"v{i}" for i in range(50)}
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(fifty))
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == fifty
    for bad in ({f"k{i}": "v" for i in range(51)}, {"k" * 129: "v"},
                {"aws:x": "v"}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(bad))
        assert code_of(e) == "InvalidTag"
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    for call in (lambda c: c.get_bucket_tagging(Bucket=bucket),
                 lambda c: c.put_bucket_tagging(Bucket=bucket,
                                                Tagging=tagset({"a": "b"})),
                 lambda c: c.delete_bucket_tagging(Bucket=bucket)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(s3_bob)
        assert code_of(e) == "AccessDenied"
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code_of(e) == "NoSuchTagSet"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_tagging(Bucket="no-such-bucket-tags")
    assert code_of(e) == "NoSuchBucket"
