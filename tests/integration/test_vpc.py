"""The default VPC every current client assumes (issue 10, the API slice):
each account's default VPC and default subnet per zone with DescribeVpcs,
DescribeSubnets and DescribeAccountAttributes as Ansible calls them, tags
on them, RunInstances with SubnetId and the instances' vpcId / subnetId,
and STS GetCallerIdentity on the CLC's endpoint.  With Debian's aws-cli and
boto3 against real daemons."""
import json
import signal

import boto3
import botocore.config
import botocore.exceptions
import pytest

from cloud import IMAGES, REGION, Cloud
from conftest import AWS_BIN, KOALA_BIN, run, sh, wait_until


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("vpc"), n_nodes=1, node_cores=4,
              node_memory_mb=4096).start()
    c.ami, _, _ = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def bob(cloud):
    return cloud.create_account("bob")


def code(e):
    return e.value.response["Error"]["Code"]


def default_vpc(ec2):
    vpcs = ec2.describe_vpcs(
        Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1, vpcs
    return vpcs[0]


# ---- the default VPC and subnet ----

def test_default_vpc_and_subnet(cloud):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    assert vpc["VpcId"].startswith("vpc-") and len(vpc["VpcId"]) == 21
    assert vpc["IsDefault"] is True and vpc["State"] == "available"
    assert vpc["CidrBlock"] == "10.96.0.0/12"
    assert vpc["InstanceTenancy"] == "default"
    assert vpc["DhcpOptionsId"].startswith("dopt-")
    assert vpc["OwnerId"] == ec2.describe_images(
        Owners=["self"])["Images"][0]["OwnerId"]
    assoc = vpc["CidrBlockAssociationSet"]
    assert [(a["CidrBlock"], a["CidrBlockState"]["State"]) for a in assoc] \
        == [("10.96.0.0/12", "associated")]
    assert assoc[0]["AssociationId"].startswith("vpc-cidr-assoc-")

    # Ansible's ec2_instance: default subnet of the VPC, of a zone
    subnets = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "default-for-az", "Values": ["true"]},
        {"Name": "availability-zone", "Values": [cloud.cluster]}])["Subnets"]
    assert len(subnets) == 1, subnets
    s = subnets[0]
    assert s["SubnetId"].startswith("subnet-") and len(s["SubnetId"]) == 24
    assert s["VpcId"] == vpc["VpcId"] and s["DefaultForAz"] is True
    assert s["AvailabilityZone"] == cloud.cluster
    assert s["AvailabilityZoneId"] == f"{REGION}-{cloud.cluster}"
    assert s["CidrBlock"] == "10.111.0.0/16"  # the cluster's, as ever
    assert s["State"] == "available" and s["OwnerId"] == vpc["OwnerId"]
    assert s["MapPublicIpOnLaunch"] is False
    assert 0 < s["AvailableIpAddressCount"] <= 65536 - 5
    assert s["SubnetArn"].endswith(":subnet/" + s["SubnetId"])

    # the other spellings and filters
    assert ec2.describe_vpcs(Filters=[
        {"Name": "is-default", "Values": ["true"]},
        {"Name": "cidr", "Values": ["10.96.0.0/12"]},
        {"Name": "cidr-block-association.cidr-block",
         "Values": ["10.96.*"]},
        {"Name": "state", "Values": ["available"]},
        {"Name": "owner-id", "Values": [vpc["OwnerId"]]},
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Vpcs"] == [vpc]
    assert ec2.describe_vpcs(Filters=[
        {"Name": "is-default", "Values": ["false"]}])["Vpcs"] == []
    assert ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"] == [vpc]
    for f in (("defaultForAz", "true"), ("subnet-id", s["SubnetId"]),
              ("cidr-block", "10.111.0.0/16"), ("state", "available"),
              ("owner-id", s["OwnerId"])):
        got = ec2.describe_subnets(
            Filters=[{"Name": f[0], "Values": [f[1]]}])["Subnets"]
        assert got == [s], f
    assert ec2.describe_subnets(Filters=[
        {"Name": "availability-zone", "Values": ["zone-nowhere"]}]) \
        ["Subnets"] == []
    assert ec2.describe_subnets(SubnetIds=[s["SubnetId"]])["Subnets"] == [s]

    # stable across calls
    assert default_vpc(ec2) == vpc
    assert ec2.describe_subnets()["Subnets"] == [s]


def test_describe_account_attributes(cloud, tmp_path):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    attrs = {a["AttributeName"]: [v["AttributeValue"]
                                  for v in a["AttributeValues"]]
             for a in ec2.describe_account_attributes()["AccountAttributes"]}
    assert attrs["supported-platforms"] == ["VPC"]
    assert attrs["default-vpc"] == [vpc["VpcId"]]
    assert attrs["vpc-max-security-groups-per-interface"] == ["5"]
    for k in ("max-instances", "max-elastic-ips", "vpc-max-elastic-ips"):
        assert int(attrs[k][0]) > 0
    one = ec2.describe_account_attributes(
        AttributeNames=["default-vpc"])["AccountAttributes"]
    assert one == [{"AttributeName": "default-vpc",
                    "AttributeValues": [{"AttributeValue": vpc["VpcId"]}]}]
    aws = cloud.aws_ec2(tmp_path)
    out = json.loads(aws("describe-account-attributes", "--attribute-names",
                         "supported-platforms").stdout)
    assert out["AccountAttributes"][0]["AttributeValues"] == \
        [{"AttributeValue": "VPC"}]


def test_unknown_ids_and_filters(cloud, tmp_path):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_vpcs(VpcIds=[vpc["VpcId"], "vpc-0123456789abcdef0"])
    assert code(e) == "InvalidVpcID.NotFound"
    assert "vpc-0123456789abcdef0" in str(e.value)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_subnets(SubnetIds=["subnet-0123456789abcdef0"])
    assert code(e) == "InvalidSubnetID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_vpcs(Filters=[{"Name": "no-such", "Values": ["x"]}])
    assert code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_vpcs(NextToken="garbage")
    assert code(e) == "InvalidNextToken"
    aws = cloud.aws_ec2(tmp_path)
    p = aws("describe-subnets", "--subnet-ids", "subnet-0123456789abcdef0",
            check=False)
    assert p.returncode != 0 and "InvalidSubnetID.NotFound" in p.stderr
    # aws-cli pages on its own (MaxResults/NextToken)
    out = json.loads(aws("describe-vpcs", "--page-size", "5").stdout)
    assert [v["VpcId"] for v in out["Vpcs"]] == [vpc["VpcId"]]


def test_tags_on_vpc_and_subnet(cloud, tmp_path):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    sn = ec2.describe_subnets()["Subnets"][0]
    ec2.create_tags(Resources=[vpc["VpcId"], sn["SubnetId"]],
                    Tags=[{"Key": "Name", "Value": "main"}])
    assert default_vpc(ec2)["Tags"] == [{"Key": "Name", "Value": "main"}]
    got = ec2.describe_subnets(Filters=[
        {"Name": "tag:Name", "Values": ["main"]}])["Subnets"]
    assert [s["SubnetId"] for s in got] == [sn["SubnetId"]]
    tags = ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [vpc["VpcId"], sn["SubnetId"]]}
    ])["Tags"]
    assert sorted((t["ResourceType"], t["ResourceId"]) for t in tags) == \
        sorted([("vpc", vpc["VpcId"]), ("subnet", sn["SubnetId"])])
    ec2.delete_tags(Resources=[vpc["VpcId"], sn["SubnetId"]],
                    Tags=[{"Key": "Name"}])
    assert "Tags" not in default_vpc(ec2) or default_vpc(ec2)["Tags"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=["vpc-0123456789abcdef0"],
                        Tags=[{"Key": "a", "Value": "b"}])
    assert code(e) == "InvalidVpcID.NotFound"


def test_another_accounts_vpc_is_invisible(cloud, bob):
    ec2 = cloud.ec2()
    mine = default_vpc(ec2)
    my_subnet = ec2.describe_subnets()["Subnets"][0]
    theirs = cloud.ec2(*bob)
    their_vpc = default_vpc(theirs)
    their_subnets = theirs.describe_subnets()["Subnets"]
    assert their_vpc["VpcId"] != mine["VpcId"]
    # the same network for every account, as AWS's 172.31.0.0/16
    assert their_vpc["CidrBlock"] == mine["CidrBlock"]
    assert [s["CidrBlock"] for s in their_subnets] == ["10.111.0.0/16"]
    assert their_subnets[0]["SubnetId"] != my_subnet["SubnetId"]
    for call, ids, err in (
            (theirs.describe_vpcs, {"VpcIds": [mine["VpcId"]]},
             "InvalidVpcID.NotFound"),
            (theirs.describe_subnets, {"SubnetIds": [my_subnet["SubnetId"]]},
             "InvalidSubnetID.NotFound")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(**ids)
        assert code(e) == err
    assert mine["VpcId"] not in [v["VpcId"] for v in theirs.describe_vpcs(
        Filters=[{"Name": "vpc-id", "Values": [mine["VpcId"]]}])["Vpcs"]]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        theirs.create_tags(Resources=[mine["VpcId"]],
                           Tags=[{"Key": "a", "Value": "b"}])
    assert code(e) == "InvalidVpcID.NotFound"


def test_default_vpc_survives_clc_kill9(cloud):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    subnets = ec2.describe_subnets()["Subnets"]
    d = cloud.daemons["clc"]
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    d.start()
    ec2 = cloud.ec2()
    assert default_vpc(ec2) == vpc
    assert ec2.describe_subnets()["Subnets"] == subnets


def test_concurrent_first_calls_make_one_vpc(cloud):
    """A new account's first calls race to make its default VPC: one
    wins, every call sees it."""
    import concurrent.futures
    out = sh(KOALA_BIN, "account", "create", "carol",
             "--data-dir", cloud.dir).stdout
    kv = dict(line.split("=", 1) for line in out.split())
    clients = [cloud.ec2(kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"])
               for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda c: c.describe_vpcs()["Vpcs"], clients))
    ids = {v["VpcId"] for vs in got for v in vs}
    assert len(ids) == 1 and all(len(vs) == 1 for vs in got), got
    assert len(clients[0].describe_subnets()["Subnets"]) == 1


# ---- STS on the CLC's endpoint ----

def test_get_caller_identity_boto3(cloud, bob):
    owner = default_vpc(cloud.ec2())["OwnerId"]
    sts = boto3.client("sts", endpoint_url=cloud.ec2_endpoint,
                       region_name=REGION, aws_access_key_id=cloud.key,
                       aws_secret_access_key=cloud.secret)
    me = sts.get_caller_identity()
    assert me["Account"] == owner
    assert me["Arn"] == f"arn:aws:iam::{owner}:root"
    assert me["UserId"] == owner
    assert len(me["ResponseMetadata"]["RequestId"]) == 36
    bob_sts = boto3.client("sts", endpoint_url=cloud.ec2_endpoint,
                           region_name=REGION, aws_access_key_id=bob[0],
                           aws_secret_access_key=bob[1])
    them = bob_sts.get_caller_identity()
    assert them["Account"] != owner and len(them["Account"]) == 12
    assert them["Arn"] == f"arn:aws:iam::{them['Account']}:root"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.get_session_token()
    assert code(e) == "InvalidAction"
    assert e.value.response["Error"]["Type"] == "Sender"
    bad = boto3.client("sts", endpoint_url=cloud.ec2_endpoint,
                       region_name=REGION, aws_access_key_id=cloud.key,
                       aws_secret_access_key="x" * 40,
                       config=botocore.config.Config(
                           retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.get_caller_identity()
    assert code(e) == "SignatureDoesNotMatch"
    unknown = boto3.client("sts", endpoint_url=cloud.ec2_endpoint,
                           region_name=REGION,
                           aws_access_key_id="AKIAUNKNOWN000000000",
                           aws_secret_access_key="x" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.get_caller_identity()
    assert code(e) == "InvalidClientTokenId"
    # EC2 itself is unchanged
    assert default_vpc(cloud.ec2())["OwnerId"] == owner


def test_get_caller_identity_aws_cli(cloud, tmp_path):
    owner = default_vpc(cloud.ec2())["OwnerId"]
    env = dict(cloud.env(), HOME=str(tmp_path), PATH="/usr/bin:/bin",
               AWS_CONFIG_FILE=str(tmp_path / "cfg"), AWS_PAGER="")
    (tmp_path / "cfg").write_text("[default]\n")
    out = json.loads(run([AWS_BIN, "sts", "get-caller-identity",
                          "--endpoint-url", cloud.ec2_endpoint], env).stdout)
    assert out == {"UserId": owner, "Account": owner,
                   "Arn": f"arn:aws:iam::{owner}:root"}


# ---- instances in subnets ----

def all_instance_ids(ec2):
    return sorted(i["InstanceId"]
                  for r in ec2.describe_instances()["Reservations"]
                  for i in r["Instances"])


def described(ec2, iid, **kw):
    return [i["InstanceId"]
            for r in ec2.describe_instances(**kw)["Reservations"]
            for i in r["Instances"] if i["InstanceId"] == iid]


def test_run_instances_in_subnet(cloud, bob, tmp_path):
    import ipaddress
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    sn = ec2.describe_subnets()["Subnets"][0]
    their_sn = cloud.ec2(*bob).describe_subnets()["Subnets"][0]
    before = all_instance_ids(ec2)
    for kw, err in (
            ({"SubnetId": "subnet-0123456789abcdef0"},
             "InvalidSubnetID.NotFound"),
            ({"SubnetId": "nonsense"}, "InvalidSubnetID.NotFound"),
            ({"SubnetId": their_sn["SubnetId"]}, "InvalidSubnetID.NotFound"),
            ({"SubnetId": sn["SubnetId"],
              "Placement": {"AvailabilityZone": "zone-elsewhere"}},
             "InvalidParameterCombination")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                              InstanceType="t1.micro", **kw)
        assert code(e) == err, kw
    aws = cloud.aws_ec2(tmp_path)
    p = aws("run-instances", "--image-id", cloud.ami, "--instance-type",
            "t1.micro", "--subnet-id", "subnet-0123456789abcdef0",
            check=False)
    assert p.returncode != 0 and "InvalidSubnetID.NotFound" in p.stderr
    assert all_instance_ids(ec2) == before  # nothing launched

    out = json.loads(aws("run-instances", "--image-id", cloud.ami,
                         "--instance-type", "t1.micro", "--subnet-id",
                         sn["SubnetId"]).stdout)
    a = out["Instances"][0]
    assert (a["SubnetId"], a["VpcId"]) == (sn["SubnetId"], vpc["VpcId"])
    assert a["Placement"]["AvailabilityZone"] == sn["AvailabilityZone"]
    b = ec2.run_instances(
        ImageId=cloud.ami, MinCount=1, MaxCount=1, InstanceType="t1.micro",
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": sn["SubnetId"]}]
    )["Instances"][0]
    assert b["SubnetId"] == sn["SubnetId"]
    c = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                          InstanceType="t1.micro")["Instances"][0]
    assert (c["SubnetId"], c["VpcId"]) == (sn["SubnetId"], vpc["VpcId"])
    ids = [a["InstanceId"], b["InstanceId"], c["InstanceId"]]

    for f in ("vpc-id", "network-interface.vpc-id"):
        for iid in ids:
            assert described(ec2, iid, Filters=[
                {"Name": f, "Values": [vpc["VpcId"]]}]) == [iid]
            assert described(ec2, iid, Filters=[
                {"Name": f, "Values": ["vpc-0123456789abcdef0"]}]) == []
    for f in ("subnet-id", "network-interface.subnet-id"):
        assert described(ec2, ids[0], Filters=[
            {"Name": f, "Values": [sn["SubnetId"]]}]) == [ids[0]]
        assert described(ec2, ids[0], Filters=[
            {"Name": f, "Values": [their_sn["SubnetId"]]}]) == []

    # running, with an address of the subnet and its interface in it
    net = ipaddress.ip_network(sn["CidrBlock"])

    def running():
        got = {i["InstanceId"]: i
               for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
               for i in r["Instances"]}
        bad = [i for i in got.values() if i["State"]["Name"] == "terminated"]
        assert not bad, bad[0].get("StateReason")
        ok = all(i["State"]["Name"] == "running" and
                 i.get("PrivateIpAddress") for i in got.values())
        return got if ok else None
    got = wait_until(running, 240, 1, "instances running")
    for i in got.values():
        assert ipaddress.ip_address(i["PrivateIpAddress"]) in net
        assert (i["SubnetId"], i["VpcId"]) == (sn["SubnetId"], vpc["VpcId"])
        nics = i["NetworkInterfaces"]
        assert [(n["SubnetId"], n["VpcId"]) for n in nics] == \
            [(sn["SubnetId"], vpc["VpcId"])]
    left = ec2.describe_subnets()["Subnets"][0]["AvailableIpAddressCount"]
    assert left == sn["AvailableIpAddressCount"] - 3
    ec2.terminate_instances(InstanceIds=ids)
