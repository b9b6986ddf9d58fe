"""The CLC's EC2 Query API with Debian's boto3 and aws-cli, for everything
that needs no running instance: signatures and errors, regions, zones and
instance types, key pairs (and that the keys it makes are real keys), tags,
images in Walrus, DryRun, and one set of credentials for EC2 and S3."""
import datetime
import gzip
import json

import botocore.exceptions
import pytest
import urllib.request

from cloud import REGION, Cloud
from conftest import KOALA_BIN, sh


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("ec2api"), with_cluster=False).start()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def code(e):
    return e.value.response["Error"]["Code"]


def status(e):
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"]


# ---- signatures and plumbing ----

def test_signature_errors(cloud):
    st, body = cloud.raw_ec2({"Action": "DescribeRegions",
                               "Version": "2016-11-15"})
    assert st == 200 and "<regionName>koala-1</regionName>" in body
    assert 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"' in body
    st, body = cloud.raw_ec2({"Action": "DescribeRegions"},
                       secret="x" * 40)
    assert st in (401, 403) and "<Code>" in body and "<RequestID>" in body
    st, body = cloud.raw_ec2({"Action": "DescribeRegions"},
                       key="AKIAUNKNOWN000000000")
    assert st == 401 and "<Code>AuthFailure</Code>" in body
    st, body = cloud.raw_ec2({"Action": "DescribeRegions"},
                       when=datetime.datetime.utcnow() -
                       datetime.timedelta(minutes=20))
    assert st == 400 and "<Code>RequestExpired</Code>" in body
    st, body = cloud.raw_ec2({"Action": "LaunchMissiles"})
    assert st == 400 and "<Code>InvalidAction</Code>" in body
    st, body = cloud.raw_ec2({"Version": "2016-11-15"})
    assert st == 400 and "<Code>MissingAction</Code>" in body
    # No credentials at all.
    r = urllib.request.Request(cloud.ec2_endpoint + "/",
                               data=b"Action=DescribeRegions", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r)
    assert e.value.code == 403
    assert b"MissingAuthenticationToken" in e.value.read()


def test_malformed_parameters(cloud):
    ec2 = cloud.ec2()
    st, body = cloud.raw_ec2({"Action": "DescribeInstanceTypes",
                               "MaxResults": "lots"})
    assert st == 400 and "InvalidParameterValue" in body
    st, body = cloud.raw_ec2({"Action": "DescribeInstances",
                               "Filter.1.Name": "no-such-filter",
                               "Filter.1.Value.1": "x"})
    assert st == 400 and "InvalidParameterValue" in body
    st, body = cloud.raw_ec2({"Action": "DescribeInstances",
                               "DryRun": "maybe"})
    assert st == 400 and "InvalidParameterValue" in body
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instances(InstanceIds=["i-0000000000000000f"])
    assert code(e) == "InvalidInstanceID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instances(NextToken="not-a-token")
    assert code(e) == "InvalidParameterValue"


# ---- regions, zones, types ----

def test_regions_zones_types(cloud):
    ec2 = cloud.ec2()
    regions = ec2.describe_regions()["Regions"]
    assert [r["RegionName"] for r in regions] == [REGION]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_regions(RegionNames=["mars-1"])
    assert code(e) == "InvalidParameterValue"
    # No cluster registered: no zones.
    assert ec2.describe_availability_zones()["AvailabilityZones"] == []
    types = {t["InstanceType"]: t for t in
             ec2.describe_instance_types()["InstanceTypes"]}
    assert types["m1.small"]["VCpuInfo"]["DefaultVCpus"] == 1
    assert types["m1.small"]["MemoryInfo"]["SizeInMiB"] == 256
    assert types["c1.medium"]["VCpuInfo"]["DefaultVCpus"] == 2
    assert types["m1.large"]["InstanceStorageInfo"]["TotalSizeInGB"] == 20
    # the sizes clients default to (Ansible: t2.micro), as AWS has them,
    # without an instance store
    assert types["t2.micro"]["VCpuInfo"]["DefaultVCpus"] == 1
    assert types["t2.micro"]["MemoryInfo"]["SizeInMiB"] == 1024
    assert types["t2.micro"]["InstanceStorageSupported"] is False
    assert "InstanceStorageInfo" not in types["t2.micro"]
    assert types["t3.micro"]["VCpuInfo"]["DefaultVCpus"] == 2
    assert {"t2.nano", "t2.small", "t2.medium", "t3.nano", "t3.small",
            "t3.medium"} <= set(types)
    assert types["m1.large"]["InstanceStorageSupported"] is True
    one = ec2.describe_instance_types(InstanceTypes=["t1.micro"])
    assert [t["InstanceType"] for t in one["InstanceTypes"]] == ["t1.micro"]
    f = ec2.describe_instance_types(Filters=[
        {"Name": "vcpu-info.default-vcpus", "Values": ["4"]}])
    assert sorted(t["InstanceType"] for t in f["InstanceTypes"]) == \
        ["c1.xlarge", "m1.xlarge"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instance_types(InstanceTypes=["x9.huge"])
    assert code(e) == "InvalidInstanceType"


# ---- key pairs ----

def test_create_key_pairs_are_real_keys(cloud, tmp_path):
    ec2 = cloud.ec2()
    for kind in ("rsa", "ed25519"):
        k = ec2.create_key_pair(KeyName=f"made-{kind}", KeyType=kind)
        f = tmp_path / f"{kind}.key"
        f.write_text(k["KeyMaterial"])
        f.chmod(0o600)
        pub = sh("ssh-keygen", "-y", "-f", f).stdout.split()
        d = ec2.describe_key_pairs(KeyNames=[f"made-{kind}"],
                                   IncludePublicKey=True)["KeyPairs"][0]
        assert d["PublicKey"].split()[:2] == pub[:2]
        assert d["KeyType"] == kind
        assert d["KeyFingerprint"] == k["KeyFingerprint"]
        assert d["KeyPairId"] == k["KeyPairId"]
        if kind == "ed25519":
            # ssh-keygen -l prints "SHA256:<base64 without padding>"
            fp = sh("ssh-keygen", "-l", "-f", f).stdout.split()[1]
            assert fp == "SHA256:" + k["KeyFingerprint"].rstrip("=")
        ec2.delete_key_pair(KeyName=f"made-{kind}")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_key_pairs(KeyNames=["made-rsa"])
    assert code(e) == "InvalidKeyPair.NotFound"


def test_import_key_pair(cloud, tmp_path):
    ec2 = cloud.ec2()
    key = tmp_path / "id_rsa"
    sh("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", key)
    pub = (tmp_path / "id_rsa.pub").read_bytes()
    k = ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=pub)
    # AWS: MD5 of the public key blob (what ssh-keygen -E md5 shows).
    md5 = sh("ssh-keygen", "-l", "-E", "md5", "-f",
             tmp_path / "id_rsa.pub").stdout.split()[1]
    assert "MD5:" + k["KeyFingerprint"] == md5
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=pub)
    assert code(e) == "InvalidKeyPair.Duplicate"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.import_key_pair(KeyName="garbage", PublicKeyMaterial=b"not a key")
    assert code(e) == "InvalidKey.Format"
    f = ec2.describe_key_pairs(Filters=[{"Name": "key-name",
                                         "Values": ["imp*"]}])
    assert [x["KeyName"] for x in f["KeyPairs"]] == ["imported"]
    ec2.delete_key_pair(KeyName="imported")
    ec2.delete_key_pair(KeyName="imported")   # absent: still fine, as EC2
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_key_pair(KeyName="")
    assert code(e) == "MissingParameter"


# ---- tags ----

def test_tags(cloud):
    ec2 = cloud.ec2()
    k = ec2.create_key_pair(KeyName="tagged", TagSpecifications=[
        {"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "a"}]}])
    kid = k["KeyPairId"]
    ec2.create_tags(Resources=[kid], Tags=[{"Key": "env", "Value": "prod"},
                                           {"Key": "team", "Value": "b"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id",
                                       "Values": [kid]}])["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == \
        [("env", "prod"), ("team", "b")]
    assert all(t["ResourceType"] == "key-pair" for t in tags)
    # A value that does not match deletes nothing.
    ec2.delete_tags(Resources=[kid], Tags=[{"Key": "env", "Value": "dev"}])
    ec2.delete_tags(Resources=[kid], Tags=[{"Key": "team"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id",
                                       "Values": [kid]}])["Tags"]
    assert [(t["Key"], t["Value"]) for t in tags] == [("env", "prod")]
    got = ec2.describe_key_pairs(Filters=[{"Name": "tag:env",
                                           "Values": ["prod"]}])
    assert [x["KeyName"] for x in got["KeyPairs"]] == ["tagged"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=[kid], Tags=[
            {"Key": f"k{i}", "Value": "v"} for i in range(60)])
    assert code(e) == "TagLimitExceeded"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=["key-00000000000000000"],
                        Tags=[{"Key": "a", "Value": "b"}])
    assert code(e) == "InvalidKeyPair.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=[kid], Tags=[{"Key": "aws:x", "Value": "1"}])
    assert code(e) == "InvalidParameterValue"
    # Paging through DescribeTags.
    ec2.create_tags(Resources=[kid], Tags=[
        {"Key": f"p{i:02d}", "Value": str(i)} for i in range(12)])
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = ec2.describe_tags(MaxResults=5, **kw)
        seen += [t["Key"] for t in page["Tags"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(["env"] + [f"p{i:02d}" for i in range(12)])
    ec2.delete_key_pair(KeyName="tagged")
    assert ec2.describe_tags(Filters=[{"Name": "resource-id",
                                       "Values": [kid]}])["Tags"] == []


# ---- images ----

def fake_kernel():
    """Enough of a bzImage to be recognised: "HdrS" at 0x202."""
    b = bytearray(8192)
    b[0x202:0x206] = b"HdrS"
    return bytes(b)


def test_images(cloud):
    s3, ec2 = cloud.s3(), cloud.ec2()
    s3.create_bucket(Bucket="img-test")
    s3.put_object(Bucket="img-test", Key="k/vmlinuz", Body=fake_kernel())
    s3.put_object(Bucket="img-test", Key="k/initrd", Body=gzip.compress(b"x"))
    s3.put_object(Bucket="img-test", Key="disk.raw", Body=b"\0" * 100000)
    aki = ec2.register_image(Name="t-kernel",
                             ImageLocation="img-test/k/vmlinuz")["ImageId"]
    ari = ec2.register_image(Name="t-ramdisk",
                             ImageLocation="img-test/k/initrd")["ImageId"]
    assert aki.startswith("aki-") and ari.startswith("ari-")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.register_image(Name="t-bad", ImageLocation="img-test/disk.raw",
                           KernelId=ari)
    assert code(e) == "InvalidParameterValue"
    ami = ec2.register_image(Name="t-machine", KernelId=aki, RamdiskId=ari,
                             ImageLocation="img-test/disk.raw",
                             Description="test machine")["ImageId"]
    assert ami.startswith("ami-")
    imgs = {i["ImageId"]: i for i in
            ec2.describe_images(Owners=["self"])["Images"]}
    assert imgs[ami]["ImageType"] == "machine"
    assert imgs[ami]["KernelId"] == aki and imgs[ami]["RamdiskId"] == ari
    assert imgs[ami]["State"] == "available"
    assert imgs[ami]["ImageLocation"] == "img-test/disk.raw"
    assert imgs[aki]["ImageType"] == "kernel"
    f = ec2.describe_images(Filters=[{"Name": "image-type",
                                      "Values": ["ramdisk"]}])["Images"]
    assert [i["ImageId"] for i in f] == [ari]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.register_image(Name="t-machine", ImageLocation="img-test/disk.raw")
    assert code(e) == "InvalidAMIName.Duplicate"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.register_image(Name="t-missing", ImageLocation="img-test/nothere")
    assert code(e) == "InvalidManifest"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.register_image(Name="t-dry", ImageLocation="img-test/disk.raw",
                           DryRun=True)
    assert code(e) == "DryRunOperation"
    assert "t-dry" not in [i["Name"] for i in
                           ec2.describe_images(Owners=["self"])["Images"]]
    ec2.deregister_image(ImageId=ami)
    # EC2: "recently deregistered images ... return empty results"
    assert ec2.describe_images(ImageIds=[ami])["Images"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_images(ImageIds=["ami-0123456789abcdef0"])
    assert code(e) == "InvalidAMIID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    assert code(e) == "InvalidAMIID.NotFound"


def test_one_credential_for_ec2_and_s3(cloud):
    """Keys live in the CLC; Walrus asks it.  Another account is another
    world in both."""
    out = sh(KOALA_BIN, "account", "create", "bob",
             "--data-dir", cloud.dir).stdout
    kv = dict(line.split("=", 1) for line in out.split())
    bob_ec2 = cloud.ec2(kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"])
    import boto3
    bob_s3 = boto3.client("s3", endpoint_url=cloud.s3_endpoint,
                          region_name="us-east-1",
                          aws_access_key_id=kv["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=kv["AWS_SECRET_ACCESS_KEY"])
    bob_s3.create_bucket(Bucket="bobs-bucket")
    bob_s3.put_object(Bucket="bobs-bucket", Key="x", Body=b"bob")
    admin_s3 = cloud.s3()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        admin_s3.get_object(Bucket="bobs-bucket", Key="x")
    assert code(e) == "AccessDenied"
    assert "bobs-bucket" not in [b["Name"] for b in
                                 admin_s3.list_buckets()["Buckets"]]
    bob_ec2.create_key_pair(KeyName="bobs-key")
    assert "bobs-key" not in [k["KeyName"] for k in
                              cloud.ec2().describe_key_pairs()["KeyPairs"]]
    # Bob cannot launch or see the admin's private images.
    assert bob_ec2.describe_images(Owners=["self"])["Images"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob_ec2.deregister_image(ImageId="ami-00000000000000000")
    assert code(e) == "InvalidAMIID.NotFound"
    # A key the CLC does not know is refused by Walrus too.
    bad = boto3.client("s3", endpoint_url=cloud.s3_endpoint,
                       region_name="us-east-1",
                       aws_access_key_id="AKIANOSUCHKEY0000000",
                       aws_secret_access_key="x" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.list_buckets()
    assert code(e) == "InvalidAccessKeyId"


def test_dry_run_everywhere(cloud):
    ec2 = cloud.ec2()
    calls = [
        lambda: ec2.describe_regions(DryRun=True),
        lambda: ec2.describe_availability_zones(DryRun=True),
        lambda: ec2.describe_instance_types(DryRun=True),
        lambda: ec2.describe_instances(DryRun=True),
        lambda: ec2.describe_instance_status(DryRun=True),
        lambda: ec2.describe_images(DryRun=True),
        lambda: ec2.describe_key_pairs(DryRun=True),
        lambda: ec2.create_key_pair(KeyName="dry", DryRun=True),
        lambda: ec2.delete_key_pair(KeyName="dry", DryRun=True),
        lambda: ec2.describe_tags(DryRun=True),
    ]
    for call in calls:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code(e) == "DryRunOperation"
        assert status(e) == 412
    assert "dry" not in [k["KeyName"] for k in
                         ec2.describe_key_pairs()["KeyPairs"]]


def test_aws_cli(cloud, tmp_path):
    aws = cloud.aws_ec2(tmp_path)
    out = json.loads(aws("describe-regions").stdout)
    assert out["Regions"][0]["RegionName"] == REGION
    key = aws("create-key-pair", "--key-name", "cli-key", "--query",
              "KeyMaterial", "--output", "text").stdout
    assert key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    out = json.loads(aws("describe-key-pairs", "--key-names",
                         "cli-key").stdout)
    assert out["KeyPairs"][0]["KeyName"] == "cli-key"
    r = aws("describe-key-pairs", "--key-names", "nope", check=False)
    assert r.returncode != 0 and "InvalidKeyPair.NotFound" in r.stderr
    aws("delete-key-pair", "--key-name", "cli-key")
