"""Security groups on the CLC's EC2 API (issue 10, "Security groups"):
the default group of each default VPC, CreateSecurityGroup,
DeleteSecurityGroup, DescribeSecurityGroups (ids, names, filters, paging),
Authorize/Revoke Ingress/Egress with IpPermissions and the older flat
parameters, DescribeSecurityGroupRules, ModifySecurityGroupRules, tags on
groups and rules, EC2's errors (nothing changed after each), groups of
another account, RunInstances / ModifyInstanceAttribute / DescribeInstances
/ DescribeInstanceAttribute with groups, the names the metadata service is
sent, the network policy document pushed to the cluster (SetNetworkPolicy),
and kill -9 of the CLC.

Driven with Debian's aws-cli and python3-boto3 against the real koala-clc
and Walrus.  The cluster is a TEST DOUBLE of koala-cc (PolicyCC: the
FakeCC of test_metadata_options, which places instances at once with
addresses 10.99.0.k, plus SetNetworkPolicy, which it can also refuse as a
CC without the operation does), so no guest boots: enforcement is the
CC's and NC's, tested with them."""
import copy
import json
import signal
import threading

import boto3
import botocore.config
import botocore.exceptions
import pytest

from cloud import IMAGES, Cloud
from soapclient import SoapFault, text
from test_metadata_options import FakeCC, wait_applied, wait_for
from test_compute import wait_state


def code(e):
    return e.value.response["Error"]["Code"]


class PolicyCC(FakeCC):
    """TEST DOUBLE of koala-cc: FakeCC, and SetNetworkPolicy recorded (the
    documents, parsed) or, has_policy False, refused with InvalidAction."""

    def __init__(self, cloud, name):
        super().__init__(cloud, name)
        self.has_set = True
        self.has_policy = True
        self.policies = []
        self.policy_calls = 0

    def handle(self, op, el, req):
        if op != "SetNetworkPolicy":
            return super().handle(op, el, req)
        with self.lock:
            self.policy_calls += 1
            if not self.has_policy:
                raise SoapFault("InvalidAction", "SetNetworkPolicy is not an "
                                "operation of the cluster controller")
            version = int(text(el, "version"))
            doc = json.loads(text(el, "policy"))
            assert doc["version"] == version
            self.policies.append(doc)
        return [("version", version)]

    def last_policy(self):
        with self.lock:
            return copy.deepcopy(self.policies[-1]) if self.policies else None


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("sg"), with_cluster=False).start()
    c.ami, _, _ = c.upload_images()
    c.fake = PolicyCC(c, "zone-s")
    c.fake.server.start()
    try:
        ec2 = c.ec2()
        wait_for("the fake cluster available", lambda: any(
            z["ZoneName"] == "zone-s" and z["State"] == "available"
            for z in ec2.describe_availability_zones()["AvailabilityZones"]))
        yield c
    finally:
        rcs = c.stop()
        c.fake.server.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def bob(cloud):
    key, secret = cloud.create_account("bob")
    ec2 = cloud.ec2(key, secret)
    # an image of bob's own, so that his launches get as far as the groups
    s3 = boto3.client("s3", endpoint_url=cloud.s3_endpoint,
                      region_name="us-east-1",
                      aws_access_key_id=key, aws_secret_access_key=secret,
                      config=botocore.config.Config(
                          s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="bob-images")
    s3.put_object(Bucket="bob-images", Key="root.img", Body=b"\0" * 4096)
    ec2.ami = ec2.register_image(Name="bob-image",
                                 ImageLocation="bob-images/root.img")[
        "ImageId"]
    return ec2


def default_vpc(ec2):
    return ec2.describe_vpcs(Filters=[{"Name": "isDefault",
                                       "Values": ["true"]}])["Vpcs"][0]


def canon(x):
    return json.dumps(x, sort_keys=True)


def default_group_id(ec2):
    return ec2.describe_security_groups(GroupNames=["default"])[
        "SecurityGroups"][0]["GroupId"]


def group(ec2, gid):
    return ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]


def rules_of(ec2, gid):
    return sorted(ec2.describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"],
        key=lambda r: r["SecurityGroupRuleId"])


def snapshot(ec2):
    """Everything a bad call must leave as it was."""
    return (ec2.describe_security_groups()["SecurityGroups"],
            sorted(ec2.describe_security_group_rules()["SecurityGroupRules"],
                   key=lambda r: r["SecurityGroupRuleId"]),
            ec2.describe_tags()["Tags"])


def new_group(ec2, name, **kw):
    return ec2.create_security_group(GroupName=name, Description=name + " d",
                                     **kw)["GroupId"]


ALL_OUT = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
           "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": []}


# ---- the default group ----

def test_default_group(cloud):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    gs = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
    assert len(gs) == 1
    g = gs[0]
    assert g["GroupId"].startswith("sg-") and len(g["GroupId"]) == 20
    assert g["VpcId"] == vpc["VpcId"] and g["OwnerId"] == vpc["OwnerId"]
    assert g["Description"] == "default VPC security group"
    # members reach each other; all egress
    assert g["IpPermissions"] == [{
        "IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [],
        "PrefixListIds": [], "UserIdGroupPairs": [
            {"UserId": vpc["OwnerId"], "GroupId": g["GroupId"]}]}]
    assert g["IpPermissionsEgress"] == [ALL_OUT]
    rules = rules_of(ec2, g["GroupId"])
    assert len(rules) == 2
    ing = next(r for r in rules if not r["IsEgress"])
    eg = next(r for r in rules if r["IsEgress"])
    assert ing["SecurityGroupRuleId"].startswith("sgr-")
    assert len(ing["SecurityGroupRuleId"]) == 21
    assert ing["ReferencedGroupInfo"] == {"GroupId": g["GroupId"],
                                          "UserId": vpc["OwnerId"]}
    assert (ing["IpProtocol"], ing["FromPort"], ing["ToPort"]) == ("-1", -1,
                                                                   -1)
    assert eg["CidrIpv4"] == "0.0.0.0/0" and eg["GroupOwnerId"] == \
        vpc["OwnerId"]
    before = snapshot(ec2)
    for kw, want in (({"GroupId": g["GroupId"]}, "CannotDelete"),
                     ({"GroupName": "default"}, "CannotDelete")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.delete_security_group(**kw)
        assert code(e) == want
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_security_group(GroupName="default", Description="x")
    assert code(e) == "InvalidGroup.Reserved"
    assert snapshot(ec2) == before


# ---- groups ----

def test_create_describe_delete(cloud):
    ec2 = cloud.ec2()
    vpc = default_vpc(ec2)
    out = ec2.create_security_group(
        GroupName="web", Description="web servers", VpcId=vpc["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group",
                            "Tags": [{"Key": "role", "Value": "web"}]}])
    gid = out["GroupId"]
    assert out["Tags"] == [{"Key": "role", "Value": "web"}]
    ec2.get_waiter("security_group_exists").wait(GroupIds=[gid])
    g = group(ec2, gid)
    assert (g["GroupName"], g["Description"], g["VpcId"]) == \
        ("web", "web servers", vpc["VpcId"])
    assert g["IpPermissions"] == [] and g["IpPermissionsEgress"] == [ALL_OUT]
    assert g["Tags"] == [{"Key": "role", "Value": "web"}]
    for f in (("group-name", "web"), ("group-id", gid), ("description", "web*"),
              ("owner-id", vpc["OwnerId"]), ("vpc-id", vpc["VpcId"]),
              ("tag:role", "web"), ("tag-key", "role")):
        got = ec2.describe_security_groups(
            Filters=[{"Name": f[0], "Values": [f[1]]},
                     {"Name": "group-name", "Values": ["web", "default"]}])[
            "SecurityGroups"]
        want = [gid] if f[0] not in ("owner-id", "vpc-id") else sorted(
            [gid, default_group_id(ec2)])
        assert sorted(x["GroupId"] for x in got) == want, f
    assert ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["nope"]}])["SecurityGroups"] == []
    assert ec2.describe_security_groups(GroupNames=["web"])[
        "SecurityGroups"] == [g]
    before = snapshot(ec2)
    bad = [
        (dict(GroupName="web", Description="again"), "InvalidGroup.Duplicate"),
        (dict(GroupName="sg-abc", Description="x"), "InvalidParameterValue"),
        (dict(GroupName="caf\u00e9", Description="x"),
         "InvalidParameterValue"),
        (dict(GroupName="x" * 256, Description="x"), "InvalidParameterValue"),
        (dict(GroupName="ok", Description="x", VpcId="vpc-0123456789abcdef0"),
         "InvalidVpcID.NotFound"),
        (dict(GroupName="ok", Description="x", TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "a",
                                                   "Value": "b"}]}]),
         "InvalidParameterValue"),
    ]
    for kw, want in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.create_security_group(**kw)
        assert code(e) == want, kw
    for kw, want in ((dict(GroupIds=["sg-nothex"]), "InvalidGroupId.Malformed"),
                     (dict(GroupIds=["sg-0123456789abcdef0"]),
                      "InvalidGroup.NotFound"),
                     (dict(GroupNames=["nope"]), "InvalidGroup.NotFound"),
                     (dict(NextToken="garbage"), "InvalidNextToken"),
                     (dict(Filters=[{"Name": "bogus", "Values": ["x"]}]),
                      "InvalidParameterValue")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.describe_security_groups(**kw)
        assert code(e) == want, kw
    status, body = cloud.raw_ec2({"Action": "DescribeSecurityGroups",
                                  "Version": "2016-11-15", "MaxResults": "2"})
    assert status == 400 and "<Code>InvalidParameterValue</Code>" in body
    status, body = cloud.raw_ec2({"Action": "CreateSecurityGroup",
                                  "Version": "2016-11-15", "GroupName": "z"})
    assert status == 400 and "<Code>MissingParameter</Code>" in body
    status, body = cloud.raw_ec2({"Action": "DeleteSecurityGroup",
                                  "Version": "2016-11-15"})
    assert status == 400 and "<Code>MissingParameter</Code>" in body
    assert snapshot(ec2) == before

    # delete by id, and by name
    ec2.delete_security_group(GroupId=gid)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        group(ec2, gid)
    assert code(e) == "InvalidGroup.NotFound"
    assert ec2.describe_tags(Filters=[{"Name": "resource-id",
                                       "Values": [gid]}])["Tags"] == []
    new_group(ec2, "byname")
    ec2.delete_security_group(GroupName="byname")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_security_group(GroupName="byname")
    assert code(e) == "InvalidGroup.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_security_group(GroupId=gid)
    assert code(e) == "InvalidGroup.NotFound"


# ---- rules ----

def test_authorize_and_revoke(cloud):
    ec2 = cloud.ec2()
    owner = default_vpc(ec2)["OwnerId"]
    a = new_group(ec2, "rules-a")
    b = new_group(ec2, "rules-b")
    out = ec2.authorize_security_group_ingress(GroupId=a, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8090,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "lan"},
                      {"CidrIp": "192.168.1.0/24"}],
         "UserIdGroupPairs": [{"GroupId": b, "Description": "from b"}]},
        {"IpProtocol": "6", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
         "IpRanges": [{"CidrIp": "10.1.0.0/16"}]},
        {"IpProtocol": "gre", "FromPort": 5, "ToPort": 9,
         "IpRanges": [{"CidrIp": "10.2.0.0/16"}]},
        {"IpProtocol": "17", "FromPort": 53, "ToPort": 53,
         "UserIdGroupPairs": [{"GroupId": a, "UserId": owner}]}])
    assert out["Return"] is True
    made = out["SecurityGroupRules"]
    assert len(made) == 7
    assert all(r["GroupId"] == a and r["IsEgress"] is False and
               r["SecurityGroupRuleId"].startswith("sgr-") for r in made)
    assert sorted((r["IpProtocol"], r["FromPort"], r["ToPort"])
                  for r in made) == sorted([
                      ("tcp", 8080, 8090)] * 3 + [("tcp", 22, 22),
                                                  ("icmp", -1, -1),
                                                  ("47", -1, -1),
                                                  ("udp", 53, 53)])
    g = group(ec2, a)
    perms = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p
             for p in g["IpPermissions"]}
    assert set(perms) == {("tcp", 8080, 8090), ("tcp", 22, 22),
                          ("icmp", -1, -1), ("47", None, None),
                          ("udp", 53, 53)}
    web = perms[("tcp", 8080, 8090)]
    assert sorted(web["IpRanges"], key=lambda x: x["CidrIp"]) == [
        {"CidrIp": "10.0.0.0/8", "Description": "lan"},
        {"CidrIp": "192.168.1.0/24"}]
    assert web["UserIdGroupPairs"] == [{"UserId": owner, "GroupId": b,
                                        "Description": "from b"}]
    # the rule filters of DescribeSecurityGroups
    for f in (("ip-permission.protocol", "udp"),
              ("ip-permission.from-port", "8080"),
              ("ip-permission.to-port", "8090"),
              ("ip-permission.cidr", "192.168.1.0/24"),
              ("ip-permission.group-id", b),
              ("ip-permission.group-name", "rules-b"),
              ("ip-permission.user-id", owner)):
        got = ec2.describe_security_groups(Filters=[
            {"Name": f[0], "Values": [f[1]]},
            {"Name": "group-name", "Values": ["rules-*"]}])["SecurityGroups"]
        assert [x["GroupId"] for x in got] == [a], f
    got = ec2.describe_security_groups(Filters=[
        {"Name": "egress.ip-permission.cidr", "Values": ["0.0.0.0/0"]},
        {"Name": "group-name", "Values": ["rules-*"]}])["SecurityGroups"]
    assert sorted(x["GroupId"] for x in got) == sorted([a, b])

    # a group another group's rule names cannot go
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_security_group(GroupId=b)
    assert code(e) == "DependencyViolation"

    # egress
    out = ec2.authorize_security_group_egress(GroupId=b, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.9.0.0/16"}]}])
    assert out["SecurityGroupRules"][0]["IsEgress"] is True
    ec2.revoke_security_group_egress(GroupId=b, IpPermissions=[ALL_OUT])
    assert [p["IpProtocol"] for p in group(ec2, b)["IpPermissionsEgress"]] \
        == ["tcp"]
    # revoke by permission (descriptions do not matter) and by rule id
    ec2.revoke_security_group_ingress(GroupId=a, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8090,
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
         "UserIdGroupPairs": [{"GroupId": b}]}])
    ssh = next(r["SecurityGroupRuleId"] for r in made if r["FromPort"] == 22)
    out = ec2.revoke_security_group_ingress(GroupId=a,
                                            SecurityGroupRuleIds=[ssh])
    assert out["Return"] is True
    left = {(p["IpProtocol"], p.get("FromPort")) for p in
            group(ec2, a)["IpPermissions"]}
    assert left == {("tcp", 8080), ("icmp", -1), ("47", None), ("udp", 53)}
    assert len(rules_of(ec2, a)) == 5  # 4 ingress + the egress

    # ModifySecurityGroupRules: one rule changed in place, same id
    rid = next(r["SecurityGroupRuleId"] for r in rules_of(ec2, a)
               if r.get("CidrIpv4") == "192.168.1.0/24")
    ec2.modify_security_group_rules(GroupId=a, SecurityGroupRules=[
        {"SecurityGroupRuleId": rid, "SecurityGroupRule": {
            "IpProtocol": "tcp", "FromPort": 9000, "ToPort": 9001,
            "CidrIpv4": "192.168.2.0/24", "Description": "moved"}}])
    r = next(r for r in rules_of(ec2, a) if r["SecurityGroupRuleId"] == rid)
    assert (r["FromPort"], r["ToPort"], r["CidrIpv4"], r["Description"]) == \
        (9000, 9001, "192.168.2.0/24", "moved")
    ec2.delete_security_group(GroupId=a)  # it named only itself
    ec2.delete_security_group(GroupId=b)


BAD_PERMISSIONS = [
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "IpRanges": [{"CidrIp": "10.0.0.0/33"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "IpRanges": [{"CidrIp": "10.0.0.1/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "IpRanges": [{"CidrIp": "300.0.0.0/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "IpRanges": [{"CidrIp": "10.0.0.0"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80,
      "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65536,
      "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "udp", "FromPort": -1, "ToPort": 10,
      "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
     "InvalidParameterValue"),
    ({"IpProtocol": "icmp", "FromPort": 256, "ToPort": 0,
      "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "icmp", "FromPort": -1, "ToPort": 3,
      "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "bogus", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
     "InvalidParameterValue"),
    ({"IpProtocol": "256", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
     "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2},
     "InvalidPermission.Malformed"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]},
     "InvalidGroup.NotFound"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "UserIdGroupPairs": [{"GroupId": "sg-zz"}]},
     "InvalidGroupId.Malformed"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "UserIdGroupPairs": [{"GroupName": "no-such-group"}]},
     "InvalidGroup.NotFound"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, "InvalidParameterValue"),
    ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
      "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "\u00e9"}]},
     "InvalidParameterValue"),
]


def test_bad_rules_change_nothing(cloud):
    ec2 = cloud.ec2()
    gid = new_group(ec2, "bad-rules")
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    before = snapshot(ec2)
    good = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
    for perm, want in BAD_PERMISSIONS:
        for fn in (ec2.authorize_security_group_ingress,
                   ec2.authorize_security_group_egress):
            # a good permission before the bad one is not kept either
            with pytest.raises(botocore.exceptions.ClientError) as e:
                fn(GroupId=gid, IpPermissions=[good, perm])
            assert code(e) == want, perm
    dup = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
           "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
    for perms in ([good, dup], [good, good]):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.authorize_security_group_ingress(GroupId=gid,
                                                 IpPermissions=perms)
        assert code(e) == "InvalidPermission.Duplicate"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.authorize_security_group_egress(GroupId=gid,
                                            IpPermissions=[ALL_OUT])
    assert code(e) == "InvalidPermission.Duplicate"
    # revoking a rule that is not there (with one that is) revokes nothing
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.revoke_security_group_ingress(GroupId=gid,
                                          IpPermissions=[dup, good])
    assert code(e) == "InvalidPermission.NotFound"
    for ids, want in ((["sgr-0123456789abcdef0"],
                       "InvalidSecurityGroupRuleId.NotFound"),
                      (["sgr-x"], "InvalidSecurityGroupRuleId.Malformed")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.revoke_security_group_ingress(GroupId=gid,
                                              SecurityGroupRuleIds=ids)
        assert code(e) == want
    # the egress rule's id is not an ingress rule
    eg = next(r["SecurityGroupRuleId"] for r in rules_of(ec2, gid)
              if r["IsEgress"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.revoke_security_group_ingress(GroupId=gid,
                                          SecurityGroupRuleIds=[eg])
    assert code(e) == "InvalidSecurityGroupRuleId.NotFound"
    for kw, want in ((dict(GroupId="sg-0123456789abcdef0",
                           IpPermissions=[good]), "InvalidGroup.NotFound"),
                     (dict(GroupName="nope", IpPermissions=[good]),
                      "InvalidGroup.NotFound"),
                     (dict(GroupId="sg-bad", IpPermissions=[good]),
                      "InvalidGroupId.Malformed"),
                     (dict(GroupId=gid), "MissingParameter"),
                     (dict(GroupId=gid, IpPermissions=[good],
                           IpProtocol="tcp", FromPort=1, ToPort=1,
                           CidrIp="10.0.0.0/8"),
                      "InvalidParameterCombination")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.authorize_security_group_ingress(**kw)
        assert code(e) == want, kw
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_security_group_rules(
            SecurityGroupRuleIds=["sgr-0123456789abcdef0"])
    assert code(e) == "InvalidSecurityGroupRuleId.NotFound"
    assert snapshot(ec2) == before
    ec2.delete_security_group(GroupId=gid)


def test_rules_limit(cloud):
    ec2 = cloud.ec2()
    gid = new_group(ec2, "limit")
    before = snapshot(ec2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
             "IpRanges": [{"CidrIp": f"10.0.{i}.0/24"} for i in range(61)]}])
    assert code(e) == "RulesPerSecurityGroupLimitExceeded"
    assert snapshot(ec2) == before
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
         "IpRanges": [{"CidrIp": f"10.0.{i}.0/24"} for i in range(60)]}])
    before = snapshot(ec2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.authorize_security_group_ingress(
            GroupId=gid, IpProtocol="udp", FromPort=1, ToPort=1,
            CidrIp="10.1.0.0/16")
    assert code(e) == "RulesPerSecurityGroupLimitExceeded"
    assert snapshot(ec2) == before
    # 59 more egress rules fit beside the allow-all one, the 61st not
    ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "udp", "FromPort": 1, "ToPort": 1,
         "IpRanges": [{"CidrIp": f"10.0.{i}.0/24"} for i in range(59)]}])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "udp", "FromPort": 2, "ToPort": 2,
             "IpRanges": [{"CidrIp": "10.0.0.0/24"}]}])
    assert code(e) == "RulesPerSecurityGroupLimitExceeded"
    ec2.delete_security_group(GroupId=gid)


def test_aws_cli_flat_parameters(cloud, tmp_path):
    aws = cloud.aws_ec2(tmp_path)
    ec2 = cloud.ec2()
    gid = json.loads(aws("create-security-group", "--group-name", "cli",
                         "--description", "from the cli").stdout)["GroupId"]
    src = json.loads(aws("create-security-group", "--group-name", "cli-src",
                         "--description", "source").stdout)["GroupId"]
    aws("authorize-security-group-ingress", "--group-name", "cli",
        "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/8")
    aws("authorize-security-group-ingress", "--group-id", gid,
        "--protocol", "udp", "--port", "5000-5010", "--cidr", "10.3.0.0/16")
    aws("authorize-security-group-ingress", "--group-id", gid,
        "--protocol", "tcp", "--port", "80", "--source-group", "cli-src")
    # the older flat form: a source group by name, every protocol
    st, body = cloud.raw_ec2({"Action": "AuthorizeSecurityGroupIngress",
                              "Version": "2016-11-15", "GroupName": "cli",
                              "SourceSecurityGroupName": "cli-src"})
    assert st == 200, body
    r = aws("authorize-security-group-ingress", "--group-id", gid,
            "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/8",
            check=False)
    assert r.returncode != 0 and "InvalidPermission.Duplicate" in r.stderr
    r = aws("authorize-security-group-ingress", "--group-id", gid,
            "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/99",
            check=False)
    assert r.returncode != 0 and "InvalidParameterValue" in r.stderr
    out = json.loads(aws("describe-security-groups", "--group-ids",
                         gid).stdout)["SecurityGroups"][0]
    perms = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p
             for p in out["IpPermissions"]}
    assert perms[("tcp", 22, 22)]["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
    assert perms[("udp", 5000, 5010)]["IpRanges"] == [
        {"CidrIp": "10.3.0.0/16"}]
    assert perms[("tcp", 80, 80)]["UserIdGroupPairs"][0]["GroupId"] == src
    assert perms[("-1", None, None)]["UserIdGroupPairs"][0]["GroupId"] == src
    rules = json.loads(aws("describe-security-group-rules", "--filters",
                           f"Name=group-id,Values={gid}").stdout)[
        "SecurityGroupRules"]
    assert len(rules) == 5
    aws("revoke-security-group-ingress", "--group-id", gid, "--protocol",
        "tcp", "--port", "22", "--cidr", "10.0.0.0/8")
    r = aws("revoke-security-group-ingress", "--group-id", gid, "--protocol",
            "tcp", "--port", "22", "--cidr", "10.0.0.0/8", check=False)
    assert r.returncode != 0 and "InvalidPermission.NotFound" in r.stderr
    aws("revoke-security-group-egress", "--group-id", gid,
        "--ip-permissions", "IpProtocol=-1,IpRanges=[{CidrIp=0.0.0.0/0}]")
    assert group(ec2, gid)["IpPermissionsEgress"] == []
    r = aws("delete-security-group", "--group-id", src, check=False)
    assert r.returncode != 0 and "DependencyViolation" in r.stderr
    aws("delete-security-group", "--group-id", gid)
    aws("delete-security-group", "--group-name", "cli-src")


def test_paging_filters_and_tags(cloud):
    ec2 = cloud.ec2()
    made = [new_group(ec2, f"page-{i}") for i in range(7)]
    ec2.create_tags(Resources=made[:2], Tags=[{"Key": "tier",
                                               "Value": "db"}])
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5, "Filters": [{"Name": "group-name",
                                            "Values": ["page-*"]}]}
        if token:
            kw["NextToken"] = token
        out = ec2.describe_security_groups(**kw)
        assert len(out["SecurityGroups"]) <= 5
        seen += [g["GroupId"] for g in out["SecurityGroups"]]
        token = out.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(made)
    pages = ec2.get_paginator("describe_security_groups").paginate(
        PaginationConfig={"PageSize": 5})
    allg = [g["GroupId"] for p in pages for g in p["SecurityGroups"]]
    assert set(made) <= set(allg) and len(allg) == len(set(allg))
    assert sorted(g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:tier", "Values": ["db"]}])["SecurityGroups"]) \
        == sorted(made[:2])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-type",
                                       "Values": ["security-group"]}])["Tags"]
    assert sorted(t["ResourceId"] for t in tags) == sorted(made[:2])

    # rules: tags at authorize, CreateTags, paging, filters
    out = ec2.authorize_security_group_ingress(
        GroupId=made[0], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p,
             "IpRanges": [{"CidrIp": "10.0.0.0/8"}]} for p in range(1, 7)],
        TagSpecifications=[{"ResourceType": "security-group-rule",
                            "Tags": [{"Key": "k", "Value": "v"}]}])
    rids = [r["SecurityGroupRuleId"] for r in out["SecurityGroupRules"]]
    assert all(r["Tags"] == [{"Key": "k", "Value": "v"}]
               for r in out["SecurityGroupRules"])
    ec2.create_tags(Resources=[rids[0]], Tags=[{"Key": "only",
                                                "Value": "one"}])
    got = ec2.describe_security_group_rules(Filters=[
        {"Name": "tag:only", "Values": ["one"]}])["SecurityGroupRules"]
    assert [r["SecurityGroupRuleId"] for r in got] == [rids[0]]
    got = ec2.describe_security_group_rules(Filters=[
        {"Name": "security-group-rule-id", "Values": rids[:2]}])
    assert sorted(r["SecurityGroupRuleId"] for r in
                  got["SecurityGroupRules"]) == sorted(rids[:2])
    got = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rids[3]])
    assert got["SecurityGroupRules"][0]["FromPort"] == 4
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5, "Filters": [{"Name": "group-id",
                                            "Values": [made[0]]}]}
        if token:
            kw["NextToken"] = token
        out = ec2.describe_security_group_rules(**kw)
        seen += [r["SecurityGroupRuleId"] for r in out["SecurityGroupRules"]]
        token = out.get("NextToken")
        if not token:
            break
    assert len(seen) == 7 and set(rids) <= set(seen)  # + the egress rule
    tags = ec2.describe_tags(Filters=[{"Name": "resource-type",
                                       "Values": ["security-group-rule"]}])
    assert {t["ResourceId"] for t in tags["Tags"]} == set(rids)
    ec2.delete_tags(Resources=[rids[0]], Tags=[{"Key": "only"}])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=["sg-0123456789abcdef0"],
                        Tags=[{"Key": "a", "Value": "b"}])
    assert code(e) == "InvalidGroup.NotFound"
    # revoking takes the rule's tags; deleting the group its rules' tags
    ec2.revoke_security_group_ingress(GroupId=made[0],
                                      SecurityGroupRuleIds=[rids[1]])
    assert ec2.describe_tags(Filters=[{"Name": "resource-id",
                                       "Values": [rids[1]]}])["Tags"] == []
    for g in made:
        ec2.delete_security_group(GroupId=g)
    assert ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": [
        "security-group", "security-group-rule"]}])["Tags"] == []


def test_other_accounts(cloud, bob):
    ec2 = cloud.ec2()
    mine = new_group(ec2, "mine")
    theirs = new_group(bob, "theirs")
    bob_owner = default_vpc(bob)["OwnerId"]
    before = snapshot(ec2)
    bob_before = snapshot(bob)
    for fn, kw in ((bob.describe_security_groups, dict(GroupIds=[mine])),
                   (bob.delete_security_group, dict(GroupId=mine)),
                   (bob.authorize_security_group_ingress,
                    dict(GroupId=mine, IpProtocol="tcp", FromPort=1,
                         ToPort=1, CidrIp="10.0.0.0/8")),
                   (bob.revoke_security_group_egress,
                    dict(GroupId=mine, IpPermissions=[ALL_OUT])),
                   (bob.create_tags, dict(Resources=[mine], Tags=[
                       {"Key": "a", "Value": "b"}])),
                   (ec2.authorize_security_group_ingress, dict(
                       GroupId=mine, IpPermissions=[{
                           "IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
                           "UserIdGroupPairs": [{"GroupId": theirs,
                                                 "UserId": "123456789012"}]
                       }]))):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            fn(**kw)
        assert code(e) == "InvalidGroup.NotFound", fn
    assert snapshot(ec2) == before and snapshot(bob) == bob_before
    # each account has its own default group, and names are per VPC
    assert group(bob, theirs)["VpcId"] != group(ec2, mine)["VpcId"]
    bob.create_security_group(GroupName="mine", Description="same name")
    # a rule may name another account's group (its id and owner)
    ec2.authorize_security_group_ingress(GroupId=mine, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
        "UserIdGroupPairs": [{"GroupId": theirs, "UserId": bob_owner}]}])
    pair = group(ec2, mine)["IpPermissions"][0]["UserIdGroupPairs"][0]
    assert pair == {"GroupId": theirs, "UserId": bob_owner}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.delete_security_group(GroupId=theirs)
    assert code(e) == "DependencyViolation"
    ec2.delete_security_group(GroupId=mine)
    bob.delete_security_group(GroupId=theirs)
    bob.delete_security_group(GroupName="mine")


# ---- instances ----

def instance(ec2, iid):
    return ec2.describe_instances(InstanceIds=[iid])[
        "Reservations"][0]["Instances"][0]


def group_set(ec2, iid):
    return [(g["GroupId"], g["GroupName"]) for g in
            instance(ec2, iid)["SecurityGroups"]]


def md_groups(cloud, iid):
    md = cloud.fake.last_set(iid)
    g = md.get("securityGroup") if md else None
    return [g] if isinstance(g, str) else g


def test_instances_and_their_groups(cloud, bob, tmp_path):
    ec2 = cloud.ec2()
    a = new_group(ec2, "inst-a")
    b = new_group(ec2, "inst-b")
    c = new_group(ec2, "inst-c")
    default = ec2.describe_security_groups(GroupNames=["default"])[
        "SecurityGroups"][0]["GroupId"]
    before = ec2.describe_instances()["Reservations"]
    bad = ((dict(SecurityGroupIds=["sg-0123456789abcdef0"]),
            "InvalidGroup.NotFound"),
           (dict(SecurityGroupIds=["sg-zz"]), "InvalidGroupId.Malformed"),
           (dict(SecurityGroups=["nope"]), "InvalidGroup.NotFound"),
           (dict(SecurityGroupIds=[a, b, c, default] + [
               new_group(ec2, f"inst-x{i}") for i in range(2)]),
            "SecurityGroupsPerInterfaceLimitExceeded"))
    for kw, want in bad:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                              InstanceType="t1.micro", **kw)
        assert code(e) == want, kw
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.run_instances(ImageId=bob.ami, MinCount=1, MaxCount=1,
                          InstanceType="t1.micro", SecurityGroupIds=[a])
    assert code(e) == "InvalidGroup.NotFound"
    assert bob.describe_instances()["Reservations"] == []
    assert ec2.describe_instances()["Reservations"] == before

    r = ec2.run_instances(ImageId=cloud.ami, MinCount=2, MaxCount=2,
                          InstanceType="t1.micro", SecurityGroupIds=[b, a])
    i1, i2 = [i["InstanceId"] for i in r["Instances"]]
    assert [(g["GroupId"], g["GroupName"]) for g in
            r["Instances"][0]["SecurityGroups"]] == [(b, "inst-b"),
                                                     (a, "inst-a")]
    i3 = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                           InstanceType="t1.micro",
                           SecurityGroups=["inst-c"])["Instances"][0][
        "InstanceId"]
    i4 = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                           InstanceType="t1.micro")["Instances"][0][
        "InstanceId"]
    wait_state(ec2, [i1, i2, i3, i4], "running")
    assert group_set(ec2, i1) == [(b, "inst-b"), (a, "inst-a")]
    assert group_set(ec2, i3) == [(c, "inst-c")]
    assert group_set(ec2, i4) == [(default, "default")]
    # the CC was sent the names with the launch (cc.wsdl instanceMetadata)
    run = next(x for x in cloud.fake.runs
               if x["reservationId"] == r["ReservationId"])
    assert run["metadata"]["securityGroup"] == ["inst-b", "inst-a"]

    def ids(*filters):
        out = ec2.describe_instances(Filters=[
            {"Name": n, "Values": [v]} for n, v in filters])
        return sorted(i["InstanceId"] for x in out["Reservations"]
                      for i in x["Instances"])
    assert ids(("instance.group-id", a)) == sorted([i1, i2])
    assert ids(("group-id", c)) == [i3]
    assert ids(("instance.group-name", "inst-*")) == sorted([i1, i2, i3])
    assert ids(("group-name", "default")) == [i4]
    aws = cloud.aws_ec2(tmp_path)
    out = json.loads(aws("describe-instance-attribute", "--instance-id", i1,
                         "--attribute", "groupSet").stdout)
    assert [g["GroupId"] for g in out["Groups"]] == [b, a]

    # in use: not deletable
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_security_group(GroupId=a)
    assert code(e) == "DependencyViolation"

    # ModifyInstanceAttribute: the groups of a running instance
    bobs = new_group(bob, "bobs")
    for kw, want in ((dict(Groups=["sg-0123456789abcdef0"]),
                      "InvalidGroup.NotFound"),
                     (dict(Groups=[bobs]), "InvalidGroup.NotFound"),
                     (dict(Groups=["sg-zz"]), "InvalidGroupId.Malformed"),
                     (dict(Groups=[a, b, c, default] + [
                         g["GroupId"] for g in ec2.describe_security_groups(
                             Filters=[{"Name": "group-name", "Values": [
                                 "inst-x*"]}])["SecurityGroups"]]),
                      "SecurityGroupsPerInterfaceLimitExceeded")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.modify_instance_attribute(InstanceId=i1, **kw)
        assert code(e) == want
    assert group_set(ec2, i1) == [(b, "inst-b"), (a, "inst-a")]
    aws("modify-instance-attribute", "--instance-id", i1, "--groups", c, b)
    assert group_set(ec2, i1) == [(c, "inst-c"), (b, "inst-b")]
    # the metadata service's security-groups follow
    wait_applied(ec2, i1)
    assert md_groups(cloud, i1) == ["inst-c", "inst-b"]
    ec2.modify_instance_attribute(InstanceId=i2, Groups=[c])
    wait_applied(ec2, i2)
    assert md_groups(cloud, i2) == ["inst-c"]
    ec2.delete_security_group(GroupId=a)  # no longer used
    bob.delete_security_group(GroupId=bobs)
    # stopped instances too
    ec2.stop_instances(InstanceIds=[i3])
    wait_state(ec2, [i3], "stopped")
    ec2.modify_instance_attribute(InstanceId=i3, Groups=[default, b])
    assert group_set(ec2, i3) == [(default, "default"), (b, "inst-b")]
    ec2.terminate_instances(InstanceIds=[i1, i2, i3, i4])
    wait_state(ec2, [i1, i2, i3, i4], "terminated")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_instance_attribute(InstanceId=i1, Groups=[b])
    assert code(e) == "IncorrectInstanceState"
    # terminated instances hold no group
    for g in [b, c] + [g["GroupId"] for g in ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["inst-x*"]}])[
            "SecurityGroups"]]:
        ec2.delete_security_group(GroupId=g)


def test_policy_document_pushed(cloud):
    ec2 = cloud.ec2()
    fake = cloud.fake
    web = new_group(ec2, "pol-web")
    cli = new_group(ec2, "pol-cli")
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
         "UserIdGroupPairs": [{"GroupId": cli}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
         "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}])
    w1 = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                           InstanceType="t1.micro", SecurityGroupIds=[web])[
        "Instances"][0]["InstanceId"]
    c1 = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                           InstanceType="t1.micro", SecurityGroupIds=[cli])[
        "Instances"][0]["InstanceId"]
    got = wait_state(ec2, [w1, c1], "running")
    ip = {i: got[i]["PrivateIpAddress"] for i in (w1, c1)}

    def settled(check):
        def fn():
            d = fake.last_policy()
            return d if d and check(d) else None
        return wait_for("the policy pushed", fn, 30)
    doc = settled(lambda d: d["members"].get(web) == [ip[w1]] and
                  d["members"].get(cli) == [ip[c1]])
    assert doc["instances"][w1] == [web] and doc["instances"][c1] == [cli]
    rules = doc["groups"][web]
    assert sorted(rules["ingress"], key=canon) == sorted([
        {"proto": "icmp", "from": 8, "to": -1, "cidr": "10.1.0.0/16"},
        {"proto": "tcp", "from": 8080, "to": 8080, "cidr": "10.0.0.0/8"},
        {"proto": "tcp", "from": 8080, "to": 8080, "group": cli}],
        key=canon)
    assert rules["egress"] == [{"proto": "all", "cidr": "0.0.0.0/0"}]
    # the group a rule names has its members listed, not its rules
    assert cli in doc["groups"]
    v = doc["version"]
    # revoke: a newer document without the rule
    ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
         "UserIdGroupPairs": [{"GroupId": cli}]}])
    doc = settled(lambda d: d["version"] > v and
                  len(d["groups"][web]["ingress"]) == 2)
    assert all("group" not in r for r in doc["groups"][web]["ingress"])
    # a CC without the operation: the CLC keeps the change and retries
    with fake.lock:
        fake.has_policy = False
        calls = fake.policy_calls
    ec2.modify_instance_attribute(InstanceId=c1, Groups=[web])
    wait_for("retried", lambda: fake.policy_calls >= calls + 3, 30)
    assert fake.last_policy()["instances"][c1] == [cli]  # none taken
    with fake.lock:
        fake.has_policy = True
    doc = settled(lambda d: d["instances"].get(c1) == [web])
    assert sorted(doc["members"][web]) == sorted([ip[w1], ip[c1]])
    # terminated instances leave the document and the members
    ec2.terminate_instances(InstanceIds=[w1, c1])
    wait_state(ec2, [w1, c1], "terminated")
    doc = settled(lambda d: w1 not in d["instances"] and
                  c1 not in d["instances"])
    assert web not in doc["members"]
    ec2.delete_security_group(GroupId=web)
    ec2.delete_security_group(GroupId=cli)


def test_kill9_keeps_what_was_acknowledged(cloud):
    ec2 = cloud.ec2()
    clc = cloud.daemons["clc"]
    made = []
    for i, delay in enumerate((0, 0.01, 0.05)):
        gid = new_group(ec2, f"crash-{i}")
        out = ec2.authorize_security_group_ingress(
            GroupId=gid, IpProtocol="tcp", FromPort=i, ToPort=i,
            CidrIp="10.0.0.0/8")
        rid = out["SecurityGroupRules"][0]["SecurityGroupRuleId"]
        ec2.revoke_security_group_egress(GroupId=gid,
                                         IpPermissions=[ALL_OUT])
        # a call in flight while the CLC dies may or may not have happened
        t = threading.Thread(target=lambda: _quietly(
            ec2.create_tags, Resources=[gid], Tags=[{"Key": "k",
                                                    "Value": "v"}]))
        t.start()
        threading.Event().wait(delay)
        assert clc.stop(signal.SIGKILL) == -signal.SIGKILL
        t.join()
        clc.start()
        made.append((gid, rid))
    for gid, rid in made:
        g = group(ec2, gid)
        assert g["IpPermissionsEgress"] == []
        assert [r["SecurityGroupRuleId"] for r in rules_of(ec2, gid)] == \
            [rid]
        ec2.delete_security_group(GroupId=gid)


def _quietly(fn, **kw):
    try:
        fn(**kw)
    except Exception:  # the CLC died under it: either outcome is fine
        pass


def test_group_limit(cloud, bob):
    """2500 groups per VPC (AWS's default quota); the next is refused and
    makes nothing.  In bob's VPC, so that the other tests' counts stay."""
    have = len(bob.describe_security_groups()["SecurityGroups"])
    made = [new_group(bob, f"many-{i}") for i in range(2500 - have)]
    before = snapshot(bob)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        new_group(bob, "one-too-many")
    assert code(e) == "SecurityGroupLimitExceeded"
    assert snapshot(bob) == before
    bob.delete_security_group(GroupId=made[-1])
    new_group(bob, "fits-again")
