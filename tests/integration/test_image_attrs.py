"""Image attributes and launch permissions (docs/compute.md "Image
attributes and launch permissions") with boto3 against a cloud with no
nodes: DescribeImageAttribute for each attribute EC2 names,
ModifyImageAttribute in its structured form (LaunchPermission Add/Remove,
Description.Value), its legacy one (OperationType with UserId.N /
UserGroup.N, Attribute=description with Value) and the forms Ansible's
ec2_ami sends, ResetImageAttribute; a second account seeing, describing
and launching (DryRun) an image as it is shared with it, made public and
taken back; only the owner reading or changing launch permissions; the bad
input EC2 refuses, each with its code and nothing changed; and the ids of
deregistered images answering an empty list."""
import gzip

import botocore.exceptions
import pytest

from cloud import Cloud

FAST = {"Delay": 1, "MaxAttempts": 120}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("imgattr"), n_nodes=0, sc=True,
              clc_args=["--poll-interval-ms", "500"]).start()
    try:
        c.aki, c.ari = upload_boot_images(c)
        c.account = c.ec2().describe_security_groups(
            GroupNames=["default"])["SecurityGroups"][0]["OwnerId"]
    except BaseException:
        c.stop()
        raise
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def bob(cloud):
    return cloud.account_ec2("bob")


def code(e):
    return e.value.response["Error"]["Code"]


def upload_boot_images(cloud):
    """A tiny "kernel" (HdrS at 0x202), "ramdisk" (gzip) and disk in
    Walrus; the kernel and ramdisk registered."""
    s3 = cloud.s3()
    s3.create_bucket(Bucket="imgs")
    kernel = bytearray(4096)
    kernel[0x202:0x206] = b"HdrS"
    s3.put_object(Bucket="imgs", Key="vmlinuz", Body=bytes(kernel))
    s3.put_object(Bucket="imgs", Key="initrd", Body=gzip.compress(b"init"))
    s3.put_object(Bucket="imgs", Key="disk.img", Body=b"\1" * 8192)
    ec2 = cloud.ec2()
    aki = ec2.register_image(Name="attr-kernel",
                             ImageLocation="imgs/vmlinuz")["ImageId"]
    ari = ec2.register_image(Name="attr-ramdisk",
                             ImageLocation="imgs/initrd")["ImageId"]
    return aki, ari


_n = [0]


def new_image(cloud, **kw):
    _n[0] += 1
    return cloud.ec2().register_image(
        Name=f"attr-{_n[0]}", ImageLocation="imgs/disk.img",
        KernelId=cloud.aki, RamdiskId=cloud.ari, **kw)["ImageId"]


def attr(ec2, image, name):
    r = ec2.describe_image_attribute(ImageId=image, Attribute=name)
    assert r["ImageId"] == image
    return r


def perms(ec2, image):
    return attr(ec2, image, "launchPermission")["LaunchPermissions"]


def ids(images):
    return sorted(i["ImageId"] for i in images)


def sees(ec2, image, **kw):
    """Whether ec2 finds image: by id, and in a listing with kw."""
    listed = image in ids(ec2.describe_images(**kw)["Images"])
    try:
        by_id = ec2.describe_images(ImageIds=[image])["Images"]
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidAMIID.NotFound"
        by_id = []
    assert listed == bool(by_id), (listed, by_id)
    return listed


def launchable(ec2, image):
    """RunInstances' answer to a DryRun: the image (and its kernel and
    ramdisk) usable by the caller, or not found."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                          InstanceType="m1.small", DryRun=True)
    assert code(e) in ("DryRunOperation", "InvalidAMIID.NotFound"), \
        e.value.response
    return code(e) == "DryRunOperation"


def test_attributes_of_a_fresh_image(cloud):
    ec2 = cloud.ec2()
    ami = new_image(cloud, Description="first light")
    assert attr(ec2, ami, "description")["Description"] == \
        {"Value": "first light"}
    assert attr(ec2, ami, "kernel")["KernelId"] == {"Value": cloud.aki}
    assert attr(ec2, ami, "ramdisk")["RamdiskId"] == {"Value": cloud.ari}
    assert perms(ec2, ami) == []
    assert attr(ec2, ami, "productCodes")["ProductCodes"] == []
    assert attr(ec2, ami, "blockDeviceMapping")["BlockDeviceMappings"] == []
    for name, key in [("sriovNetSupport", "SriovNetSupport"),
                      ("bootMode", "BootMode"), ("tpmSupport", "TpmSupport"),
                      ("uefiData", "UefiData"),
                      ("imdsSupport", "ImdsSupport"),
                      ("lastLaunchedTime", "LastLaunchedTime")]:
        assert attr(ec2, ami, name).get(key, {}) == {}, name
    # the kernel's own attributes: none of its own
    assert attr(ec2, cloud.aki, "kernel").get("KernelId", {}) == {}
    assert attr(ec2, cloud.aki, "description").get("Description", {}) == {}


def test_description_in_each_form(cloud):
    ec2 = cloud.ec2()
    ami = new_image(cloud)

    def desc():
        (im,) = ec2.describe_images(ImageIds=[ami])["Images"]
        got = attr(ec2, ami, "description").get("Description", {})
        assert got.get("Value", "") == im.get("Description", "")
        return im.get("Description", "")
    assert desc() == ""
    ec2.modify_image_attribute(ImageId=ami, Description={"Value": "one"})
    assert desc() == "one"
    # the legacy form
    ec2.modify_image_attribute(ImageId=ami, Attribute="description",
                               Value="two")
    assert desc() == "two"
    # as ec2_ami sends it (its attribute name ends in a space); a "#" first
    # stays text
    ec2.modify_image_attribute(ImageId=ami, Attribute="Description ",
                               Description={"Value": "#3 ünïcode"})
    assert desc() == "#3 ünïcode"


def test_shared_with_an_account(cloud, bob):
    ec2 = cloud.ec2()
    ami = new_image(cloud)
    assert not sees(bob, ami) and not launchable(bob, ami)
    assert launchable(ec2, ami)
    # the structured form, as ec2_ami sends it
    ec2.modify_image_attribute(
        ImageId=ami, Attribute="LaunchPermission",
        LaunchPermission={"Add": [{"UserId": bob.account}]})
    assert perms(ec2, ami) == [{"UserId": bob.account}]
    assert sees(bob, ami) and launchable(bob, ami)
    (im,) = bob.describe_images(ImageIds=[ami])["Images"]
    assert im["OwnerId"] == cloud.account and im["Public"] is False
    # the owner's tags stay its own (EC2 shares none)
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "team", "Value": "a"}])
    (im,) = bob.describe_images(ImageIds=[ami])["Images"]
    assert im.get("Tags", []) == []
    assert bob.describe_images(Filters=[
        {"Name": "tag:team", "Values": ["a"]}])["Images"] == []
    assert ids(ec2.describe_images(Filters=[
        {"Name": "tag:team", "Values": ["a"]}])["Images"]) == [ami]
    for kw in (dict(ExecutableUsers=["self"]),
               dict(ExecutableUsers=[bob.account]),
               dict(Owners=[cloud.account])):
        assert ami in ids(bob.describe_images(**kw)["Images"]), kw
    for kw in (dict(Owners=["self"]), dict(ExecutableUsers=["all"])):
        assert ami not in ids(bob.describe_images(**kw)["Images"]), kw
    # the owner finds what it shares with bob, and still owns it
    assert ami in ids(ec2.describe_images(
        ExecutableUsers=[bob.account])["Images"])
    assert ami in ids(ec2.describe_images(Owners=["self"])["Images"])
    assert ami in ids(ec2.describe_images(ExecutableUsers=["self"])["Images"])
    # bob sees its attributes but not who else may launch it, nor changes
    # them
    assert attr(bob, ami, "kernel")["KernelId"] == {"Value": cloud.aki}
    for call, kw in [
            (bob.describe_image_attribute, dict(Attribute="launchPermission")),
            (bob.modify_image_attribute,
             dict(LaunchPermission={"Add": [{"Group": "all"}]})),
            (bob.modify_image_attribute,
             dict(LaunchPermission={"Remove": [{"UserId": bob.account}]})),
            (bob.modify_image_attribute, dict(Description={"Value": "x"})),
            (bob.reset_image_attribute, dict(Attribute="launchPermission"))]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(ImageId=ami, **kw)
        assert code(e) == "AuthFailure", (call, kw)
    assert perms(ec2, ami) == [{"UserId": bob.account}]
    assert attr(ec2, ami, "description").get("Description", {}) == {}
    # taken back
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Remove": [{"UserId": bob.account}]})
    assert perms(ec2, ami) == []
    assert not sees(bob, ami) and not launchable(bob, ami)
    # the legacy form; an account that does not exist (yet) may be named
    other = "000000000001"
    ec2.modify_image_attribute(ImageId=ami, Attribute="launchPermission",
                               OperationType="add",
                               UserIds=[bob.account, other])
    assert perms(ec2, ami) == sorted([{"UserId": bob.account},
                                      {"UserId": other}],
                                     key=lambda p: p["UserId"])
    assert sees(bob, ami)
    assert ami in ids(ec2.describe_images(ExecutableUsers=[other])["Images"])
    ec2.modify_image_attribute(ImageId=ami, Attribute="launchPermission",
                               OperationType="remove", UserIds=[bob.account])
    assert perms(ec2, ami) == [{"UserId": other}]
    assert not sees(bob, ami)
    # reset takes every one back
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"UserId": bob.account}]})
    assert sees(bob, ami)
    ec2.reset_image_attribute(ImageId=ami, Attribute="launchPermission")
    assert perms(ec2, ami) == [] and not sees(bob, ami)
    assert not launchable(bob, ami)


def test_public_through_group_all(cloud, bob):
    ec2 = cloud.ec2()
    ami = new_image(cloud)
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    assert perms(ec2, ami) == [{"Group": "all"}]
    (im,) = bob.describe_images(ImageIds=[ami])["Images"]
    assert im["Public"] is True
    assert ami in ids(bob.describe_images(ExecutableUsers=["all"])["Images"])
    assert ami in ids(bob.describe_images(Filters=[
        {"Name": "is-public", "Values": ["true"]}])["Images"])
    assert ami not in ids(bob.describe_images(
        ExecutableUsers=["self"])["Images"])
    assert launchable(bob, ami)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.describe_image_attribute(ImageId=ami, Attribute="launchPermission")
    assert code(e) == "AuthFailure"
    # both at once, then all removed: shared with bob alone
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"UserId": bob.account}],
                                       "Remove": [{"Group": "all"}]})
    assert perms(ec2, ami) == [{"UserId": bob.account}]
    (im,) = bob.describe_images(ImageIds=[ami])["Images"]
    assert im["Public"] is False
    # the legacy group form, and reset
    ec2.modify_image_attribute(ImageId=ami, Attribute="launchPermission",
                               OperationType="add", UserGroups=["all"])
    assert perms(ec2, ami) == [{"Group": "all"}, {"UserId": bob.account}]
    ec2.reset_image_attribute(ImageId=ami, Attribute="launchPermission")
    assert perms(ec2, ami) == []
    (im,) = ec2.describe_images(ImageIds=[ami])["Images"]
    assert im["Public"] is False and not sees(bob, ami)


def test_bad_input_changes_nothing(cloud, bob):
    ec2 = cloud.ec2()
    ami = new_image(cloud, Description="kept")
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"UserId": "000000000002"}]})

    def state():
        (im,) = ec2.describe_images(ImageIds=[ami])["Images"]
        return (perms(ec2, ami), im["Public"], im["Description"],
                attr(ec2, ami, "description")["Description"])
    before = state()
    mod = ec2.modify_image_attribute
    cases = [
        (ec2.describe_image_attribute, dict(ImageId=ami, Attribute="colour"),
         "InvalidParameterValue"),
        (ec2.describe_image_attribute,
         dict(ImageId="ami-0123456789abcdef0", Attribute="description"),
         "InvalidAMIID.NotFound"),
        (ec2.describe_image_attribute,
         dict(ImageId="nonsense", Attribute="description"),
         "InvalidAMIID.Malformed"),
        (mod, dict(ImageId="ami-0123456789abcdef0",
                   Description={"Value": "x"}), "InvalidAMIID.NotFound"),
        # a bad user id among good ones: none is added
        (mod, dict(ImageId=ami, LaunchPermission={"Add": [
            {"UserId": bob.account}, {"UserId": "12345"}]}),
         "InvalidAMIAttributeItemValue"),
        (mod, dict(ImageId=ami, LaunchPermission={"Add": [
            {"UserId": "abcdefghijkl"}]}), "InvalidAMIAttributeItemValue"),
        (mod, dict(ImageId=ami, LaunchPermission={"Remove": [
            {"UserId": "000000000002"}, {"Group": "everyone"}]}),
         "InvalidAMIAttributeItemValue"),
        (mod, dict(ImageId=ami, Attribute="launchPermission",
                   OperationType="add", UserIds=[bob.account, "x"]),
         "InvalidAMIAttributeItemValue"),
        (mod, dict(ImageId=ami, Attribute="launchPermission",
                   UserIds=[bob.account]), "MissingParameter"),
        (mod, dict(ImageId=ami, Attribute="launchPermission",
                   OperationType="replace", UserIds=[bob.account]),
         "InvalidParameterValue"),
        (mod, dict(ImageId=ami), "MissingParameter"),
        (mod, dict(ImageId=ami, Attribute="colour", Value="x"),
         "InvalidParameterValue"),
        (mod, dict(ImageId=ami, Attribute="kernel", Value=cloud.aki),
         "InvalidParameterValue"),
        (mod, dict(ImageId=ami, Description={"Value": "x"},
                   LaunchPermission={"Add": [{"UserId": bob.account}]}),
         "InvalidParameterCombination"),
        (mod, dict(ImageId=ami, Attribute="description",
                   LaunchPermission={"Add": [{"UserId": bob.account}]}),
         "InvalidParameterCombination"),
        (mod, dict(ImageId=ami, Description={"Value": "x" * 256}),
         "InvalidParameterValue"),
        (mod, dict(ImageId=ami, ProductCodes=["abc"]),
         "UnsupportedOperation"),
        (mod, dict(ImageId=ami, LaunchPermission={"Add": [
            {"OrganizationArn": "arn:aws:organizations::1:organization/o"}]}),
         "UnsupportedOperation"),
        (mod, dict(ImageId=ami, DryRun=True,
                   LaunchPermission={"Add": [{"Group": "all"}]}),
         "DryRunOperation"),
        (ec2.reset_image_attribute, dict(ImageId=ami, Attribute="kernel"),
         "InvalidParameterValue"),
        (ec2.reset_image_attribute,
         dict(ImageId=ami, Attribute="launchPermission", DryRun=True),
         "DryRunOperation"),
    ]
    for call, kw, want in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(**kw)
        assert code(e) == want, (kw, e.value.response["Error"])
        assert state() == before, kw
    assert not sees(bob, ami)


def test_deregistered_ids_answer_empty(cloud, bob):
    ec2 = cloud.ec2()
    live, gone, mine = new_image(cloud), new_image(cloud), new_image(cloud)
    ec2.modify_image_attribute(
        ImageId=gone, LaunchPermission={"Add": [{"UserId": bob.account}]})
    for i in (gone, mine):
        ec2.deregister_image(ImageId=i)
    assert ec2.describe_images(ImageIds=[gone])["Images"] == []
    assert ids(ec2.describe_images(ImageIds=[gone, live, mine])["Images"]) \
        == [live]
    assert gone not in ids(ec2.describe_images()["Images"])
    # what it was shared with answers empty too; bob never saw `mine`
    assert bob.describe_images(ImageIds=[gone])["Images"] == []
    for who, image, want in [
            (bob, mine, "InvalidAMIID.NotFound"),
            (ec2, "ami-0123456789abcdef0", "InvalidAMIID.NotFound")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            who.describe_images(ImageIds=[image])
        assert code(e) == want
    # nothing else of it is there
    for call, kw in [
            (ec2.describe_image_attribute, dict(Attribute="description")),
            (ec2.modify_image_attribute, dict(Description={"Value": "x"})),
            (ec2.reset_image_attribute, dict(Attribute="launchPermission")),
            (ec2.deregister_image, {})]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(ImageId=gone, **kw)
        assert code(e) == "InvalidAMIID.NotFound", call
    assert not launchable(bob, gone) and not launchable(ec2, gone)


def test_ebs_image_shared(cloud, bob):
    """An EBS-backed image's mapping as an attribute; shared, it is
    launchable by the other account with the owner's snapshot."""
    ec2 = cloud.ec2()
    vid = ec2.create_volume(AvailabilityZone=cloud.cluster,
                            Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid],
                                            WaiterConfig=FAST)
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid],
                                              WaiterConfig=FAST)
    ami = ec2.register_image(
        Name="attr-ebs", RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                              "Ebs": {"SnapshotId": sid}}])["ImageId"]
    ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    (m,) = attr(ec2, ami, "blockDeviceMapping")["BlockDeviceMappings"]
    assert m["DeviceName"] == "/dev/xvda"
    assert m["Ebs"]["SnapshotId"] == sid and m["Ebs"]["VolumeSize"] == 1
    assert not launchable(bob, ami)
    ec2.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"UserId": bob.account}]})
    assert launchable(bob, ami)
    (im,) = bob.describe_images(ImageIds=[ami])["Images"]
    assert im["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == sid
    # the snapshot itself stays the owner's
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.describe_snapshots(SnapshotIds=[sid])
    assert code(e) == "InvalidSnapshot.NotFound"
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=sid)
    ec2.delete_volume(VolumeId=vid)


def test_text_that_looks_like_a_number_stays_text(cloud):
    """User text beginning with '#' is text: the CLC's integer arguments
    carry a mark no UTF-8 text holds (it once stored "#7 nightly" as 7)."""
    ec2 = cloud.ec2()
    iid = new_image(cloud, Description="#7 nightly")
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "#k", "Value": "#abc"}])
    im = ec2.describe_images(ImageIds=[iid])["Images"][0]
    assert im["Description"] == "#7 nightly"
    assert im["Tags"] == [{"Key": "#k", "Value": "#abc"}]
    ec2.modify_image_attribute(ImageId=iid, Description={"Value": "#8"})
    assert ec2.describe_image_attribute(
        ImageId=iid, Attribute="description")["Description"] == {
            "Value": "#8"}
    vid = ec2.create_volume(
        AvailabilityZone=cloud.cluster, Size=1, TagSpecifications=[{
            "ResourceType": "volume", "Tags": [{"Key": "Name",
                                                "Value": "#1"}]}])["VolumeId"]
    assert ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Tags"] == [
        {"Key": "Name", "Value": "#1"}]
    ec2.delete_volume(VolumeId=vid)
