"""Walrus bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration with
their errors, and the worker applying the rules (expiration of current
objects, delete markers in versioned buckets, expired delete markers,
noncurrent versions with NewerNoncurrentVersions, incomplete multipart
uploads; prefix, tag and size filters; Object Lock respected), with
x-amz-expiration on PUT, GET and HEAD.  The Walrus here counts a lifecycle
day as one second and runs its worker five times a second, so that the
rules act in seconds."""
import time

import botocore.exceptions
import pytest

from conftest import Walrus, s3_client

DAY = 1.0  # seconds, as --lifecycle-day says


@pytest.fixture(scope="module")
def lw(tmp_path_factory):
    w = Walrus(tmp_path_factory.mktemp("lifecycle") / "data", extra_args=[
        "--lifecycle-interval", "0.2", "--lifecycle-day", "1"]).start()
    w.alice = w.add_user("alice")
    w.bob = w.add_user("bob")
    yield w
    assert w.stop() == 0


@pytest.fixture
def s3(lw):
    return s3_client(lw.endpoint, lw.alice)


_n = [0]


@pytest.fixture
def lbucket(s3):
    _n[0] += 1
    name = f"lc-{_n[0]}"
    s3.create_bucket(Bucket=name)
    return name


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def rules(*r):
    return {"Rules": list(r)}


def wait_for(pred, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def keys(s3, bucket):
    return sorted(o["Key"] for o in
                  s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_configuration_roundtrip(lw, s3, lbucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=lbucket)
    assert code_of(e) == "NoSuchLifecycleConfiguration"
    conf = rules(
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
         "Expiration": {"Days": 30}},
        {"ID": "tmp", "Status": "Disabled",
         "Filter": {"And": {"Prefix": "tmp/", "Tags": [
             {"Key": "kind", "Value": "scratch"}],
             "ObjectSizeGreaterThan": 10}},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7,
                                         "NewerNoncurrentVersions": 2}},
        {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
        {"ID": "date", "Status": "Enabled", "Filter": {"Prefix": "old/"},
         "Expiration": {"Date": "2030-01-01T00:00:00Z"}},
    )
    s3.put_bucket_lifecycle_configuration(Bucket=lbucket,
                                          LifecycleConfiguration=conf)
    got = s3.get_bucket_lifecycle_configuration(Bucket=lbucket)["Rules"]
    assert [r["ID"] for r in got] == ["logs", "tmp", "uploads", "date"]
    assert got[0]["Expiration"] == {"Days": 30}
    assert got[0]["Filter"] == {"Prefix": "logs/"}
    assert got[1]["Status"] == "Disabled"
    assert got[1]["Filter"]["And"]["Tags"] == [{"Key": "kind",
                                               "Value": "scratch"}]
    assert got[1]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 7, "NewerNoncurrentVersions": 2}
    assert got[2]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 3}
    assert got[3]["Expiration"]["Date"].year == 2030
    s3.delete_bucket_lifecycle(Bucket=lbucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=lbucket)
    assert code_of(e) == "NoSuchLifecycleConfiguration"


@pytest.mark.parametrize("rule,code", [
    ({"ID": "a", "Status": "Enabled", "Filter": {"Prefix": ""},
      "Expiration": {"Days": 0}}, "InvalidArgument"),
    ({"ID": "a", "Status": "Enabled", "Filter": {"Prefix": ""},
      "Expiration": {"Date": "2030-01-01T12:00:00Z"}}, "InvalidArgument"),
    ({"ID": "a", "Status": "Enabled", "Filter": {"Prefix": ""}},
     "InvalidRequest"),
    ({"ID": "a", "Status": "Enabled", "Filter": {"Prefix": ""},
      "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
     "NotImplemented"),
    ({"ID": "a", "Status": "Enabled", "Filter": {"Prefix": ""},
      "NoncurrentVersionExpiration": {"NoncurrentDays": 0}},
     "InvalidArgument"),
    ({"ID": "a", "Status": "Enabled",
      "Filter": {"Tag": {"Key": "k", "Value": "v"}},
      "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
     "InvalidRequest"),
])
def test_bad_rules(s3, lbucket, rule, code):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_lifecycle_configuration(Bucket=lbucket,
                                              LifecycleConfiguration=rules(
                                                  rule))
    assert code_of(e) == code
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=lbucket)
    assert code_of(e) == "NoSuchLifecycleConfiguration"


def test_duplicate_ids_and_access(lw, s3, lbucket):
    r = {"ID": "same", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Expiration": {"Days": 5}}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_lifecycle_configuration(
            Bucket=lbucket, LifecycleConfiguration=rules(r, dict(r)))
    assert code_of(e) == "InvalidArgument"
    bob = s3_client(lw.endpoint, lw.bob)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.put_bucket_lifecycle_configuration(
            Bucket=lbucket, LifecycleConfiguration=rules(r))
    assert code_of(e) == "AccessDenied"


def test_expiration_of_current_objects(s3, lbucket):
    for k in ("logs/a", "logs/b", "keep/c"):
        s3.put_object(Bucket=lbucket, Key=k, Body=b"x")
    s3.put_object(Bucket=lbucket, Key="logs/big", Body=b"x" * 5000)
    s3.put_object(Bucket=lbucket, Key="logs/tagged", Body=b"x",
                  Tagging="hold=yes")
    s3.put_bucket_lifecycle_configuration(
        Bucket=lbucket, LifecycleConfiguration=rules(
            {"ID": "logs", "Status": "Enabled",
             "Filter": {"And": {"Prefix": "logs/",
                                "ObjectSizeLessThan": 1000}},
             "Expiration": {"Days": 2}}))
    head = s3.head_object(Bucket=lbucket, Key="logs/a")
    assert 'rule-id="logs"' in head["Expiration"]
    assert "Expiration" not in s3.head_object(Bucket=lbucket, Key="keep/c")
    assert "Expiration" not in s3.head_object(Bucket=lbucket, Key="logs/big")
    put = s3.put_object(Bucket=lbucket, Key="logs/new", Body=b"x")
    assert 'rule-id="logs"' in put["Expiration"]
    assert wait_for(lambda: keys(s3, lbucket) == ["keep/c", "logs/big"])


def test_tag_filter(s3, lbucket):
    s3.put_object(Bucket=lbucket, Key="a", Body=b"x", Tagging="tmp=1&x=2")
    s3.put_object(Bucket=lbucket, Key="b", Body=b"x", Tagging="tmp=0")
    s3.put_object(Bucket=lbucket, Key="c", Body=b"x")
    s3.put_bucket_lifecycle_configuration(
        Bucket=lbucket, LifecycleConfiguration=rules(
            {"ID": "t", "Status": "Enabled",
             "Filter": {"Tag": {"Key": "tmp", "Value": "1"}},
             "Expiration": {"Days": 1}}))
    assert wait_for(lambda: keys(s3, lbucket) == ["b", "c"])


def test_versioned_expiration_and_markers(s3, lbucket):
    s3.put_bucket_versioning(Bucket=lbucket,
                             VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=lbucket, Key="doc", Body=b"1")["VersionId"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=lbucket, LifecycleConfiguration=rules(
            {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Expiration": {"Days": 1}}))
    # The current version expires into a delete marker; the data stays.
    assert wait_for(lambda: keys(s3, lbucket) == [])
    hist = s3.list_object_versions(Bucket=lbucket)
    assert [m["IsLatest"] for m in hist["DeleteMarkers"]] == [True]
    assert [v["VersionId"] for v in hist["Versions"]] == [v1]
    # Noncurrent versions go too, and then the lone delete marker.
    s3.put_bucket_lifecycle_configuration(
        Bucket=lbucket, LifecycleConfiguration=rules(
            {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
            {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Expiration": {"ExpiredObjectDeleteMarker": True}}))
    assert wait_for(lambda: "Versions" not in s3.list_object_versions(
        Bucket=lbucket) and "DeleteMarkers" not in s3.list_object_versions(
            Bucket=lbucket))


def test_newer_noncurrent_versions_kept(s3, lbucket):
    s3.put_bucket_versioning(Bucket=lbucket,
                             VersioningConfiguration={"Status": "Enabled"})
    vids = [s3.put_object(Bucket=lbucket, Key="k",
                          Body=str(i).encode())["VersionId"]
            for i in range(5)]
    s3.put_bucket_lifecycle_configuration(
        Bucket=lbucket, LifecycleConfiguration=rules(
            {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1,
                                             "NewerNoncurrentVersions": 2}}))

    def left():
        return [v["VersionId"] for v in
                s3.list_object_versions(Bucket=lbucket)["Versions"]]
    assert wait_for(lambda: len(left()) == 3)
    time.sleep(3 * DAY)  # nothing more goes
    assert sorted(left()) == sorted(vids[2:])


def test_abort_incomplete_uploads(s3, lbucket):
    old = s3.create_multipart_upload(Bucket=lbucket, Key="u")["UploadId"]
    s3.upload_part(Bucket=lbucket, Key="u", UploadId=old, PartNumber=1,
                   Body=b"p")
    s3.put_bucket_lifecycle_configuration(
        Bucket=lbucket, LifecycleConfiguration=rules(
            {"ID": "abort", "Status": "Enabled", "Filter": {"Prefix": ""},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}))
    assert wait_for(lambda: "Uploads" not in s3.list_multipart_uploads(
        Bucket=lbucket))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_parts(Bucket=lbucket, Key="u", UploadId=old)
    assert code_of(e) == "NoSuchUpload"


def test_object_lock_respected(s3):
    s3.create_bucket(Bucket="lc-locked", ObjectLockEnabledForBucket=True)
    import datetime
    until = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(days=2)
    v1 = s3.put_object(Bucket="lc-locked", Key="k", Body=b"1",
                       ObjectLockMode="COMPLIANCE",
                       ObjectLockRetainUntilDate=until)["VersionId"]
    v2 = s3.put_object(Bucket="lc-locked", Key="k", Body=b"2")["VersionId"]
    s3.put_object(Bucket="lc-locked", Key="k", Body=b"3")
    s3.put_bucket_lifecycle_configuration(
        Bucket="lc-locked", LifecycleConfiguration=rules(
            {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}))

    def left():
        return {v["VersionId"] for v in s3.list_object_versions(
            Bucket="lc-locked")["Versions"] if not v["IsLatest"]}
    assert wait_for(lambda: v2 not in left())
    assert left() == {v1}
