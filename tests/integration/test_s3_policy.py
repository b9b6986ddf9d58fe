"""Walrus bucket policies evaluated with the ACLs (an explicit Deny wins,
then an Allow from the policy or the ACL), their principals, actions,
resources and conditions, MalformedPolicy, GetBucketPolicyStatus, and the
bucket settings that bound them: PublicAccessBlock and Object Ownership.
Driven by boto3 as alice (the owner), bob (another account) and anonymous
callers."""
import json
import sqlite3

import botocore
import botocore.config
import botocore.exceptions
import pytest

from conftest import REGION, s3_client


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def status_of(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def account(walrus, name):
    db = sqlite3.connect(f"file:{walrus.data_dir}/walrus.db?mode=ro",
                         uri=True)
    try:
        return db.execute("SELECT printf('%012d', id), canonical_id FROM"
                          " accounts WHERE name=?", (name,)).fetchone()
    finally:
        db.close()


@pytest.fixture
def anon(walrus):
    import boto3
    return boto3.client(
        "s3", endpoint_url=walrus.endpoint, region_name=REGION,
        config=botocore.config.Config(
            signature_version=botocore.UNSIGNED,
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def put_policy(s3, bucket, *statements):
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)}))


def denied(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert code_of(e) == "AccessDenied", e.value.response["Error"]
    return True


# ---- the policy document ----

def test_policy_roundtrip_and_status(s3, s3_bob, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code_of(e) == "NoSuchBucketPolicy" and status_of(e) == 404
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_policy_status(Bucket=bucket)
    assert code_of(e) == "NoSuchBucketPolicy"
    doc = {"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(doc))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == doc
    assert s3.get_bucket_policy_status(
        Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    # Tied to an address range, it is not public.
    doc["Statement"][0]["Condition"] = {
        "IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(doc))
    assert s3.get_bucket_policy_status(
        Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    for call in (lambda: s3_bob.get_bucket_policy(Bucket=bucket),
                 lambda: s3_bob.delete_bucket_policy(Bucket=bucket),
                 lambda: s3_bob.put_bucket_policy(Bucket=bucket,
                                                  Policy=json.dumps(doc))):
        assert denied(call)
    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert code_of(e) == "NoSuchBucketPolicy"


@pytest.mark.parametrize("doc", [
    "not json",
    "[]",
    {"Version": "2012-10-17"},
    {"Version": "1999-01-01", "Statement": []},
    {"Statement": [{"Effect": "Maybe", "Principal": "*",
                    "Action": "s3:GetObject", "Resource": "R"}]},
    {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                    "Resource": "R"}]},
    {"Statement": [{"Effect": "Allow", "Principal": "*",
                    "Action": "s3:Frobnicate", "Resource": "R"}]},
    {"Statement": [{"Effect": "Allow", "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::some-other-bucket/*"}]},
    {"Statement": [{"Effect": "Allow", "Principal": "*",
                    "Action": "s3:GetObject", "Resource": "R",
                    "Condition": {"StringSortOf": {"s3:prefix": "a"}}}]},
    {"Statement": [{"Effect": "Allow", "Principal": "*",
                    "Action": "s3:GetObject", "Resource": "R",
                    "Colour": "blue"}]},
    {"Statement": [{"Effect": "Allow", "Principal": {"Nobody": "x"},
                    "Action": "s3:GetObject", "Resource": "R"}]},
])
def test_malformed_policy(s3, bucket, doc):
    good = {"Statement": [{"Effect": "Allow", "Principal": "*",
                           "Action": "s3:GetObject",
                           "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(good))
    text = doc if isinstance(doc, str) else json.dumps(doc).replace(
        '"R"', json.dumps(f"arn:aws:s3:::{bucket}/*"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert code_of(e) == "MalformedPolicy" and status_of(e) == 400
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == good


# ---- principals, actions, resources ----

def test_public_read_by_policy(s3, anon, bucket):
    s3.put_object(Bucket=bucket, Key="pub/a.txt", Body=b"public")
    s3.put_object(Bucket=bucket, Key="priv/b.txt", Body=b"private")
    assert denied(lambda: anon.get_object(Bucket=bucket, Key="pub/a.txt"))
    put_policy(s3, bucket, {
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/pub/*"})
    assert anon.get_object(Bucket=bucket,
                           Key="pub/a.txt")["Body"].read() == b"public"
    assert denied(lambda: anon.get_object(Bucket=bucket, Key="priv/b.txt"))
    # The policy grants reading, not listing or writing.
    assert denied(lambda: anon.list_objects_v2(Bucket=bucket))
    assert denied(lambda: anon.put_object(Bucket=bucket, Key="pub/x",
                                          Body=b"x"))


@pytest.mark.parametrize("form", ["number", "arn", "canonical"])
def test_grant_to_another_account(walrus, s3, s3_bob, bucket, form):
    number, canonical = account(walrus, "bob")
    principal = {"number": {"AWS": number},
                 "arn": {"AWS": [f"arn:aws:iam::{number}:root"]},
                 "canonical": {"CanonicalUser": canonical}}[form]
    put_policy(s3, bucket, {
        "Effect": "Allow", "Principal": principal,
        "Action": ["s3:PutObject", "s3:Get*"],
        "Resource": [f"arn:aws:s3:::{bucket}/uploads/*"]})
    s3_bob.put_object(Bucket=bucket, Key="uploads/from-bob", Body=b"b")
    assert s3_bob.get_object(Bucket=bucket,
                             Key="uploads/from-bob")["Body"].read() == b"b"
    assert denied(lambda: s3_bob.put_object(Bucket=bucket, Key="other",
                                            Body=b"b"))
    assert denied(lambda: s3_bob.delete_object(Bucket=bucket,
                                               Key="uploads/from-bob"))


def test_explicit_deny_wins(s3, s3_bob, anon, bucket):
    s3.put_object(Bucket=bucket, Key="secret/x", Body=b"s",
                  ACL="public-read")
    s3.put_object(Bucket=bucket, Key="open/y", Body=b"o", ACL="public-read")
    assert anon.get_object(Bucket=bucket, Key="secret/x")["Body"].read()
    put_policy(s3, bucket, {
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/secret/*"})
    # The ACL allowed it; the Deny wins, over the owner too.
    assert denied(lambda: anon.get_object(Bucket=bucket, Key="secret/x"))
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="secret/x"))
    assert anon.get_object(Bucket=bucket, Key="open/y")["Body"].read() == b"o"
    # Even denied everything, the owner can still fix the policy.
    put_policy(s3, bucket, {"Effect": "Deny", "Principal": "*",
                            "Action": "s3:*", "Resource": [
                                f"arn:aws:s3:::{bucket}",
                                f"arn:aws:s3:::{bucket}/*"]})
    assert denied(lambda: s3.list_objects_v2(Bucket=bucket))
    s3.get_bucket_policy(Bucket=bucket)
    s3.delete_bucket_policy(Bucket=bucket)
    s3.list_objects_v2(Bucket=bucket)


def test_not_action_not_resource_not_principal(walrus, s3, s3_bob, bucket):
    number, _ = account(walrus, "alice")
    s3.put_object(Bucket=bucket, Key="keep/k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="temp/t", Body=b"x")
    put_policy(s3, bucket,
               {"Effect": "Allow", "Principal": {"AWS": "*"},
                "NotAction": ["s3:Delete*", "s3:Put*"],
                "Resource": f"arn:aws:s3:::{bucket}/*"},
               {"Effect": "Deny", "NotPrincipal": {"AWS": number},
                "Action": "s3:GetObject",
                "NotResource": f"arn:aws:s3:::{bucket}/temp/*"})
    # Bob may read temp/ (allowed, not denied) but not keep/ (denied to
    # all but alice), and may not delete anything.
    assert s3_bob.get_object(Bucket=bucket, Key="temp/t")["Body"].read()
    assert denied(lambda: s3_bob.get_object(Bucket=bucket, Key="keep/k"))
    assert s3.get_object(Bucket=bucket, Key="keep/k")["Body"].read()
    assert denied(lambda: s3_bob.delete_object(Bucket=bucket, Key="temp/t"))


def test_delete_objects_authorized_per_key(walrus, s3, s3_bob, bucket):
    number, _ = account(walrus, "bob")
    for k in ("scratch/1", "scratch/2", "kept"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    put_policy(s3, bucket, {
        "Effect": "Allow", "Principal": {"AWS": number},
        "Action": "s3:DeleteObject",
        "Resource": f"arn:aws:s3:::{bucket}/scratch/*"})
    r = s3_bob.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "scratch/1"}, {"Key": "scratch/2"}, {"Key": "kept"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["scratch/1",
                                                      "scratch/2"]
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [
        ("kept", "AccessDenied")]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["kept"]


def test_another_account_allowed_put_bucket_policy_gets_405(walrus, s3,
                                                            s3_bob, bucket):
    number, _ = account(walrus, "bob")
    put_policy(s3, bucket, {
        "Effect": "Allow", "Principal": {"AWS": number},
        "Action": "s3:PutBucketPolicy", "Resource": f"arn:aws:s3:::{bucket}"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_bob.put_bucket_policy(Bucket=bucket, Policy="{}")
    assert code_of(e) == "MethodNotAllowed" and status_of(e) == 405


def test_bucket_operations_by_policy(walrus, s3, s3_bob, bucket):
    number, _ = account(walrus, "bob")
    assert denied(lambda: s3_bob.get_bucket_versioning(Bucket=bucket))
    put_policy(s3, bucket, {
        "Effect": "Allow", "Principal": {"AWS": number},
        "Action": ["s3:GetBucketVersioning", "s3:ListBucket",
                   "s3:GetBucketLocation"],
        "Resource": f"arn:aws:s3:::{bucket}"})
    s3_bob.get_bucket_versioning(Bucket=bucket)
    s3_bob.list_objects_v2(Bucket=bucket)
    s3_bob.get_bucket_location(Bucket=bucket)
    assert denied(lambda: s3_bob.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}))


# ---- conditions ----

def cond_policy(s3, bucket, effect, action, resource, condition,
                principal="*"):
    put_policy(s3, bucket, {"Effect": effect, "Principal": principal,
                            "Action": action, "Resource": resource,
                            "Condition": condition})


def test_condition_source_ip(s3, anon, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    obj = f"arn:aws:s3:::{bucket}/*"
    cond_policy(s3, bucket, "Allow", "s3:GetObject", obj,
                {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}})
    assert denied(lambda: anon.get_object(Bucket=bucket, Key="k"))
    cond_policy(s3, bucket, "Allow", "s3:GetObject", obj,
                {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8",
                                                "127.0.0.0/8"]}})
    assert anon.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    cond_policy(s3, bucket, "Deny", "s3:*", obj,
                {"NotIpAddress": {"aws:SourceIp": "192.168.0.0/16"}})
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="k"))


def test_condition_secure_transport_and_time(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    obj = f"arn:aws:s3:::{bucket}/*"
    # Plain HTTP here: "deny unless TLS", the usual policy, bites.
    cond_policy(s3, bucket, "Deny", "s3:GetObject", obj,
                {"Bool": {"aws:SecureTransport": "false"}})
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="k"))
    cond_policy(s3, bucket, "Deny", "s3:GetObject", obj,
                {"DateGreaterThan": {"aws:CurrentTime":
                                     "2099-01-01T00:00:00Z"}})
    s3.get_object(Bucket=bucket, Key="k")
    cond_policy(s3, bucket, "Deny", "s3:GetObject", obj,
                {"DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"}})
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="k"))


def test_condition_list_keys(walrus, s3, s3_bob, bucket):
    number, _ = account(walrus, "bob")
    for k in ("home/bob/1", "home/eve/1"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    cond_policy(s3, bucket, "Allow", "s3:ListBucket",
                f"arn:aws:s3:::{bucket}",
                {"StringLike": {"s3:prefix": ["home/bob/*"]},
                 "NumericLessThanEquals": {"s3:max-keys": "100"}},
                principal={"AWS": number})
    r = s3_bob.list_objects_v2(Bucket=bucket, Prefix="home/bob/", MaxKeys=10)
    assert [o["Key"] for o in r["Contents"]] == ["home/bob/1"]
    assert denied(lambda: s3_bob.list_objects_v2(Bucket=bucket,
                                                 Prefix="home/eve/",
                                                 MaxKeys=10))
    assert denied(lambda: s3_bob.list_objects_v2(Bucket=bucket,
                                                 Prefix="home/bob/",
                                                 MaxKeys=500))
    # No prefix at all: the key is absent, StringLike fails.
    assert denied(lambda: s3_bob.list_objects_v2(Bucket=bucket, MaxKeys=10))


def test_condition_request_headers(s3, bucket):
    obj = f"arn:aws:s3:::{bucket}/*"
    # Deny uploads without server-side encryption (Null: header absent).
    cond_policy(s3, bucket, "Deny", "s3:PutObject", obj,
                {"Null": {"s3:x-amz-server-side-encryption": "true"}})
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x"))
    # Deny public canned ACLs (StringEquals over a list).
    cond_policy(s3, bucket, "Deny", "s3:PutObject", obj,
                {"StringEquals": {"s3:x-amz-acl": ["public-read",
                                                   "public-read-write"]}})
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                        ACL="public-read"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    s3.put_object(Bucket=bucket, Key="k2", Body=b"x")
    # ...IfExists: an absent key holds (IAM's rule), a present one is
    # compared: this Deny makes "x-amz-acl: private" required.
    cond_policy(s3, bucket, "Deny", "s3:PutObject", obj,
                {"StringNotEqualsIfExists": {"s3:x-amz-acl": "private"}})
    s3.put_object(Bucket=bucket, Key="k3", Body=b"x", ACL="private")
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="k4", Body=b"x"))
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="k5", Body=b"x",
                                        ACL="authenticated-read"))
    s3.delete_bucket_policy(Bucket=bucket)


def test_condition_tags(walrus, s3, s3_bob, bucket):
    number, _ = account(walrus, "bob")
    s3.put_object(Bucket=bucket, Key="shared", Body=b"s",
                  Tagging="share=yes")
    s3.put_object(Bucket=bucket, Key="mine", Body=b"m", Tagging="share=no")
    put_policy(s3, bucket,
               {"Effect": "Allow", "Principal": {"AWS": number},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {
                    "s3:ExistingObjectTag/share": "yes"}}},
               {"Effect": "Allow", "Principal": {"AWS": number},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {
                    "StringEquals": {"s3:RequestObjectTag/owner": "bob"},
                    "ForAllValues:StringEquals": {
                        "s3:RequestObjectTagKeys": ["owner", "team"]}}})
    assert s3_bob.get_object(Bucket=bucket, Key="shared")["Body"].read()
    assert denied(lambda: s3_bob.get_object(Bucket=bucket, Key="mine"))
    s3_bob.put_object(Bucket=bucket, Key="b1", Body=b"x", Tagging="owner=bob")
    assert denied(lambda: s3_bob.put_object(Bucket=bucket, Key="b2",
                                            Body=b"x", Tagging="owner=eve"))
    assert denied(lambda: s3_bob.put_object(Bucket=bucket, Key="b3",
                                            Body=b"x",
                                            Tagging="owner=bob&cost=1"))
    assert denied(lambda: s3_bob.put_object(Bucket=bucket, Key="b4",
                                            Body=b"x"))


def test_condition_auth_type_and_account(walrus, s3, s3_bob, bucket):
    import urllib.request
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    obj = f"arn:aws:s3:::{bucket}/*"
    alice, _ = account(walrus, "alice")
    # No presigned URLs for this bucket.
    cond_policy(s3, bucket, "Deny", "s3:GetObject", obj,
                {"StringEquals": {"s3:authType": "REST-QUERY-STRING"}})
    s3.get_object(Bucket=bucket, Key="k")
    url = s3.generate_presigned_url("get_object",
                                    Params={"Bucket": bucket, "Key": "k"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 403
    # Only SigV4, only alice's account.
    cond_policy(s3, bucket, "Deny", "s3:GetObject", obj,
                {"StringNotEquals": {"s3:signatureversion":
                                     "AWS4-HMAC-SHA256"}})
    s3.get_object(Bucket=bucket, Key="k")
    v2 = s3_client(walrus.endpoint, walrus.alice, sigv="s3")
    assert denied(lambda: v2.get_object(Bucket=bucket, Key="k"))
    cond_policy(s3, bucket, "Allow", "s3:GetObject", obj,
                {"StringEquals": {"aws:PrincipalAccount": alice}})
    assert denied(lambda: s3_bob.get_object(Bucket=bucket, Key="k"))


# ---- PublicAccessBlock ----

def pab(s3, bucket, **flags):
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        k: flags.get(k, False) for k in (
            "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
            "RestrictPublicBuckets")})


def test_public_access_block_config(s3, s3_bob, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_public_access_block(Bucket=bucket)
    assert code_of(e) == "NoSuchPublicAccessBlockConfiguration"
    pab(s3, bucket, BlockPublicAcls=True, RestrictPublicBuckets=True)
    got = s3.get_public_access_block(
        Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {"BlockPublicAcls": True, "IgnorePublicAcls": False,
                   "BlockPublicPolicy": False, "RestrictPublicBuckets": True}
    assert denied(lambda: s3_bob.get_public_access_block(Bucket=bucket))
    s3.delete_public_access_block(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_public_access_block(Bucket=bucket)
    assert code_of(e) == "NoSuchPublicAccessBlockConfiguration"


def test_block_and_ignore_public_acls(s3, anon, bucket):
    s3.put_object(Bucket=bucket, Key="was-public", Body=b"x",
                  ACL="public-read")
    pab(s3, bucket, BlockPublicAcls=True)
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                        ACL="public-read"))
    assert denied(lambda: s3.put_bucket_acl(Bucket=bucket,
                                            ACL="public-read"))
    assert denied(lambda: s3.put_object_acl(Bucket=bucket, Key="was-public",
                                            ACL="public-read-write"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    # Existing public grants still count until IgnorePublicAcls.
    assert anon.get_object(Bucket=bucket, Key="was-public")["Body"].read()
    pab(s3, bucket, IgnorePublicAcls=True)
    assert denied(lambda: anon.get_object(Bucket=bucket, Key="was-public"))
    s3.get_object(Bucket=bucket, Key="was-public")


def test_block_public_policy_and_restrict(walrus, s3, s3_bob, anon, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    public = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
              "Resource": f"arn:aws:s3:::{bucket}/*"}
    pab(s3, bucket, BlockPublicPolicy=True)
    assert denied(lambda: put_policy(s3, bucket, public))
    pab(s3, bucket, RestrictPublicBuckets=True)
    put_policy(s3, bucket, public)
    # Public, but restricted to the owner's account.
    assert denied(lambda: anon.get_object(Bucket=bucket, Key="k"))
    assert denied(lambda: s3_bob.get_object(Bucket=bucket, Key="k"))
    s3.get_object(Bucket=bucket, Key="k")
    s3.delete_public_access_block(Bucket=bucket)
    assert anon.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


# ---- Object Ownership ----

def ownership(s3, bucket, mode):
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": mode}]})


def test_ownership_controls_config(s3, s3_bob, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert code_of(e) == "OwnershipControlsNotFoundError"
    ownership(s3, bucket, "BucketOwnerPreferred")
    assert s3.get_bucket_ownership_controls(Bucket=bucket)[
        "OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerPreferred"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ownership(s3, bucket, "Whoever")
    assert code_of(e) == "MalformedXML"
    assert denied(lambda: ownership(s3_bob, bucket, "ObjectWriter"))
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert code_of(e) == "OwnershipControlsNotFoundError"
    # A bucket whose ACL grants others cannot turn ACLs off.
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ownership(s3, bucket, "BucketOwnerEnforced")
    assert code_of(e) == "InvalidBucketAclWithObjectOwnership"


def test_bucket_owner_enforced(walrus, s3, s3_bob, anon, bucket):
    number, _ = account(walrus, "bob")
    _, alice_canonical = account(walrus, "alice")
    put_policy(s3, bucket, {"Effect": "Allow", "Principal": {"AWS": number},
                            "Action": "s3:PutObject",
                            "Resource": f"arn:aws:s3:::{bucket}/*"})
    ownership(s3, bucket, "BucketOwnerEnforced")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert code_of(e) == "AccessControlListNotSupported"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert code_of(e) == "AccessControlListNotSupported"
    # Bob's upload belongs to the bucket owner; ACLs grant nothing.
    s3_bob.put_object(Bucket=bucket, Key="from-bob", Body=b"b",
                      ACL="bucket-owner-full-control")
    acl = s3.get_object_acl(Bucket=bucket, Key="from-bob")
    assert acl["Owner"]["ID"] == alice_canonical
    assert s3.get_object(Bucket=bucket, Key="from-bob")["Body"].read() == b"b"
    assert denied(lambda: s3_bob.get_object(Bucket=bucket, Key="from-bob"))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="from-bob", ACL="public-read")
    assert code_of(e) == "AccessControlListNotSupported"


def test_bucket_owner_preferred_and_object_writer(walrus, s3, s3_bob,
                                                  bucket):
    number, bob_canonical = account(walrus, "bob")
    _, alice_canonical = account(walrus, "alice")
    put_policy(s3, bucket, {"Effect": "Allow", "Principal": {"AWS": number},
                            "Action": "s3:PutObject",
                            "Resource": f"arn:aws:s3:::{bucket}/*"})
    ownership(s3, bucket, "BucketOwnerPreferred")
    s3_bob.put_object(Bucket=bucket, Key="bofc", Body=b"x",
                      ACL="bucket-owner-full-control")
    s3_bob.put_object(Bucket=bucket, Key="plain", Body=b"x")
    owner = lambda k: s3.get_object_acl(Bucket=bucket, Key=k)["Owner"]["ID"]
    assert owner("bofc") == alice_canonical
    ownership(s3, bucket, "ObjectWriter")
    s3_bob.put_object(Bucket=bucket, Key="writer", Body=b"x",
                      ACL="bucket-owner-full-control")
    acl = s3_bob.get_object_acl(Bucket=bucket, Key="writer")
    assert acl["Owner"]["ID"] == bob_canonical
    assert s3_bob.get_object_acl(Bucket=bucket,
                                 Key="plain")["Owner"]["ID"] == bob_canonical
