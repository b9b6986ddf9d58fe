"""Walrus Object Lock, driven by boto3: buckets created with object lock
(versioning forced on), Put/GetObjectLockConfiguration with default
retention, retention and legal hold set on PUT and afterwards, GOVERNANCE
bypassed only when asked and allowed, COMPLIANCE never shortened, and no
locked version deleted by anyone."""
import datetime
import json
import sqlite3

import botocore.exceptions
import pytest


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def later(**kw):
    return (datetime.datetime.now(datetime.timezone.utc) +
            datetime.timedelta(**kw)).replace(microsecond=0)


@pytest.fixture
def locked(s3, request):
    name = "lock-" + request.node.name[5:40].lower().replace("_", "-")
    name = name.strip("-")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    # Locked versions outlive the test; their bucket stays (as in S3).


def test_lock_bucket_is_versioned(s3, locked):
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    conf = s3.get_object_lock_configuration(Bucket=locked)
    assert conf["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={
            "Status": "Suspended"})
    assert code_of(e) == "InvalidBucketState" and status_of(e) == 409


def test_no_lock_configuration(s3, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert code_of(e) == "ObjectLockConfigurationNotFoundError"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                      ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=later(days=1))
    assert code_of(e) == "InvalidRequest"
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_retention(Bucket=bucket, Key="k")
    assert code_of(e) == "InvalidRequest"
    # An unversioned bucket cannot take a lock configuration...
    conf = {"ObjectLockEnabled": "Enabled"}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_lock_configuration(Bucket=bucket,
                                         ObjectLockConfiguration=conf)
    assert code_of(e) == "InvalidBucketState"
    # ...a versioned one can.
    s3.put_bucket_versioning(Bucket=bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket,
                                     ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=bucket)[
        "ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"


def test_default_retention(s3, locked):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_lock_configuration(Bucket=locked,
                                         ObjectLockConfiguration={
                                             "ObjectLockEnabled": "Enabled",
                                             "Rule": {"DefaultRetention": {
                                                 "Mode": "GOVERNANCE",
                                                 "Days": 0}}})
    assert code_of(e) == "InvalidArgument"
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}})
    rule = s3.get_object_lock_configuration(Bucket=locked)[
        "ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert rule == {"Mode": "GOVERNANCE", "Days": 2}
    v = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
    ret = s3.get_object_retention(Bucket=locked, Key="k")["Retention"]
    assert ret["Mode"] == "GOVERNANCE"
    delta = ret["RetainUntilDate"] - later()
    assert datetime.timedelta(days=1, hours=23) < delta <= \
        datetime.timedelta(days=2, seconds=5)
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_object(Bucket=locked, Key="k", VersionId=v)
    assert code_of(e) == "AccessDenied"
    # The owner may bypass GOVERNANCE when it asks to.
    s3.delete_object(Bucket=locked, Key="k", VersionId=v,
                     BypassGovernanceRetention=True)


def test_compliance_never_shortened(s3, locked):
    until = later(days=3)
    v = s3.put_object(Bucket=locked, Key="c", Body=b"x",
                      ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=until)["VersionId"]
    got = s3.get_object(Bucket=locked, Key="c")
    assert got["ObjectLockMode"] == "COMPLIANCE"
    assert got["ObjectLockRetainUntilDate"] == until
    for attempt in (
            lambda: s3.delete_object(Bucket=locked, Key="c", VersionId=v),
            lambda: s3.delete_object(Bucket=locked, Key="c", VersionId=v,
                                     BypassGovernanceRetention=True),
            lambda: s3.put_object_retention(
                Bucket=locked, Key="c", VersionId=v,
                Retention={"Mode": "COMPLIANCE",
                           "RetainUntilDate": later(days=1)},
                BypassGovernanceRetention=True),
            lambda: s3.put_object_retention(
                Bucket=locked, Key="c", VersionId=v,
                Retention={"Mode": "GOVERNANCE",
                           "RetainUntilDate": later(days=5)},
                BypassGovernanceRetention=True)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            attempt()
        assert code_of(e) == "AccessDenied"
    # Extending it is fine.
    s3.put_object_retention(Bucket=locked, Key="c", VersionId=v, Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": later(days=10)})
    assert s3.get_object_retention(Bucket=locked, Key="c", VersionId=v)[
        "Retention"]["RetainUntilDate"] > until
    # A DELETE without version only stacks a delete marker: allowed.
    assert s3.delete_object(Bucket=locked, Key="c")["DeleteMarker"]
    versions = s3.list_object_versions(Bucket=locked)["Versions"]
    assert [x["VersionId"] for x in versions] == [v]


def test_governance_rules(walrus, s3, s3_bob, locked):
    v = s3.put_object(Bucket=locked, Key="g", Body=b"x",
                      ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=later(days=3))["VersionId"]
    # Shortening needs the bypass.
    short = {"Mode": "GOVERNANCE", "RetainUntilDate": later(days=1)}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_retention(Bucket=locked, Key="g", VersionId=v,
                                Retention=short)
    assert code_of(e) == "AccessDenied"
    s3.put_object_retention(Bucket=locked, Key="g", VersionId=v,
                            Retention=short, BypassGovernanceRetention=True)
    # Bob, allowed to delete versions but not to bypass, cannot.
    db = sqlite3.connect(f"file:{walrus.data_dir}/walrus.db?mode=ro",
                         uri=True)
    (bob,) = db.execute("SELECT printf('%012d', id) FROM accounts"
                        " WHERE name='bob'").fetchone()
    db.close()
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": bob},
        "Action": "s3:DeleteObjectVersion",
        "Resource": f"arn:aws:s3:::{locked}/*"}]}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.delete_object(Bucket=locked, Key="g", VersionId=v,
                             BypassGovernanceRetention=True)
    assert code_of(e) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=locked)
    # Past dates are refused.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=locked, Key="p", Body=b"x",
                      ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=later(days=-1))
    assert code_of(e) == "InvalidArgument"


def test_legal_hold(s3, locked):
    v = s3.put_object(Bucket=locked, Key="h", Body=b"x",
                      ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=locked, Key="h")[
        "LegalHold"]["Status"] == "ON"
    assert s3.head_object(Bucket=locked,
                          Key="h")["ObjectLockLegalHoldStatus"] == "ON"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_object(Bucket=locked, Key="h", VersionId=v,
                         BypassGovernanceRetention=True)
    assert code_of(e) == "AccessDenied"
    r = s3.delete_objects(Bucket=locked, Delete={"Objects": [
        {"Key": "h", "VersionId": v}]})
    assert [e["Code"] for e in r["Errors"]] == ["AccessDenied"]
    s3.put_object_legal_hold(Bucket=locked, Key="h", VersionId=v,
                             LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="h")[
        "LegalHold"]["Status"] == "OFF"
    s3.delete_object(Bucket=locked, Key="h", VersionId=v)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=locked, Key="h", VersionId=v)
    assert code_of(e) == "NoSuchVersion"


def test_lock_through_multipart_and_copy(s3, locked):
    until = later(days=1)
    up = s3.create_multipart_upload(Bucket=locked, Key="mp",
                                    ObjectLockMode="COMPLIANCE",
                                    ObjectLockRetainUntilDate=until)
    p = s3.upload_part(Bucket=locked, Key="mp", UploadId=up["UploadId"],
                       PartNumber=1, Body=b"part")
    done = s3.complete_multipart_upload(
        Bucket=locked, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    ret = s3.get_object_retention(Bucket=locked, Key="mp",
                                  VersionId=done["VersionId"])["Retention"]
    assert ret == {"Mode": "COMPLIANCE", "RetainUntilDate": until}
    c = s3.copy_object(Bucket=locked, Key="copy", CopySource={
        "Bucket": locked, "Key": "mp"}, ObjectLockLegalHoldStatus="ON")
    assert s3.get_object_legal_hold(Bucket=locked, Key="copy",
                                    VersionId=c["VersionId"])[
        "LegalHold"]["Status"] == "ON"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object_retention(Bucket=locked, Key="copy")
    assert code_of(e) == "NoSuchObjectLockConfiguration"
