"""kill -9 of the control plane in the middle of the compute path: what the
CLC acknowledged (a launch, a terminate, a key pair, a tag) survives a
SIGKILL of the CLC or of the cluster controller at any moment, is carried
out once the daemon is back, and nothing is done twice (no second VM for
one instance, no address handed out twice)."""
import signal
import time

import pytest

from cloud import IMAGES, Cloud
from conftest import qmp_command
from test_compute import guest_page, node_files, wait_for, wait_state

# After the acknowledgement: at once, while the order is on its way to
# the cluster, and once the node is at work.
DELAYS = (0, 0.05, 0.3)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = Cloud(tmp_path_factory.mktemp("crash"), n_nodes=1, node_cores=8,
              node_memory_mb=4096, cluster="zone-x").start()
    c.ami, _, _ = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def kill9_and_restart(cloud, name):
    d = cloud.daemons[name]
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    d.start()


def qemu_instances(cloud, node="nc1"):
    """Instance ids of the QEMU processes running on the node."""
    return sorted(cloud.vms(node))


def settle(cloud, ec2, ids, state):
    got = wait_state(ec2, ids, state)
    if state == "running":
        wait_for("one QEMU per instance", lambda: sorted(ids) == sorted(
            i for i in qemu_instances(cloud) if i in ids), 60)
    else:
        wait_for("node freed", lambda: not set(ids) & set(
            node_files(cloud, "nc1")), 60)
    return got


@pytest.mark.parametrize("victim", ["clc", "cc"])
def test_launch_and_terminate_survive_kill9(cloud, victim):
    ec2 = cloud.ec2()
    for delay in DELAYS:
        r = ec2.run_instances(ImageId=cloud.ami, MinCount=2, MaxCount=2,
                              InstanceType="t1.micro")
        ids = [i["InstanceId"] for i in r["Instances"]]
        time.sleep(delay)
        kill9_and_restart(cloud, victim)
        got = settle(cloud, ec2, ids, "running")
        # exactly these VMs, each once, each with its own address
        assert qemu_instances(cloud) == sorted(ids), (delay, victim)
        ips = [got[i]["PrivateIpAddress"] for i in ids]
        assert len(set(ips)) == 2 and all(ips), ips

        ec2.terminate_instances(InstanceIds=ids)
        time.sleep(delay)
        kill9_and_restart(cloud, victim)
        settle(cloud, ec2, ids, "terminated")
        assert qemu_instances(cloud) == []


def test_guest_gets_its_lease_after_cc_kill9(cloud):
    """The CC's DHCP server is rebuilt from its database: a guest launched
    right before the CC died still gets its address on the cluster LAN."""
    ec2 = cloud.ec2()
    r = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                          InstanceType="t1.micro")
    iid = r["Instances"][0]["InstanceId"]
    kill9_and_restart(cloud, "cc")
    got = settle(cloud, ec2, [iid], "running")
    guest_page(cloud, got[iid]["PrivateIpAddress"], iid)
    ec2.terminate_instances(InstanceIds=[iid])
    settle(cloud, ec2, [iid], "terminated")


def test_terminate_while_cluster_is_down(cloud):
    """A terminate the CLC acknowledged while the CC was down is carried
    out when the CC comes back."""
    ec2 = cloud.ec2()
    r = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                          InstanceType="t1.micro")
    iid = r["Instances"][0]["InstanceId"]
    settle(cloud, ec2, [iid], "running")
    cc = cloud.daemons["cc"]
    assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        out = ec2.terminate_instances(InstanceIds=[iid])
        assert out["TerminatingInstances"][0]["CurrentState"]["Name"] in \
            ("shutting-down", "terminated")
        time.sleep(1)
        assert qemu_instances(cloud) == [iid]  # nobody told the node yet
    finally:
        cc.start()
    settle(cloud, ec2, [iid], "terminated")


def test_acknowledged_metadata_survives_clc_kill9(cloud):
    ec2 = cloud.ec2()
    kp = ec2.create_key_pair(KeyName="crash-key")
    img = ec2.describe_images(ImageIds=[cloud.ami])["Images"][0]
    ami2 = ec2.register_image(
        Name="crash-image", KernelId=img["KernelId"],
        RamdiskId=img["RamdiskId"],
        ImageLocation="images/root.img")["ImageId"]
    ec2.create_tags(Resources=[ami2], Tags=[{"Key": "k", "Value": "v"}])
    kill9_and_restart(cloud, "clc")
    keys = ec2.describe_key_pairs(KeyNames=["crash-key"])["KeyPairs"]
    assert keys[0]["KeyFingerprint"] == kp["KeyFingerprint"]
    im = ec2.describe_images(ImageIds=[ami2])["Images"][0]
    assert im["Name"] == "crash-image"
    assert im["Tags"] == [{"Key": "k", "Value": "v"}]
    # and what is deleted stays deleted
    ec2.delete_key_pair(KeyName="crash-key")
    ec2.deregister_image(ImageId=ami2)
    kill9_and_restart(cloud, "clc")
    assert ec2.describe_key_pairs(
        Filters=[{"Name": "key-name", "Values": ["crash-key"]}])[
        "KeyPairs"] == []
    assert ec2.describe_images(
        Filters=[{"Name": "image-id", "Values": [ami2]}])["Images"] == []


def test_system_status_follows_the_node(cloud):
    """A node that stops answering makes its instances' system status
    impaired (EC2's host check), since its last good answer; back when it
    answers again.  Its VMs live on (they outlive koala-nc)."""
    ec2 = cloud.ec2()
    iid = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                            InstanceType="t1.micro")["Instances"][0][
        "InstanceId"]
    settle(cloud, ec2, [iid], "running")

    def system():
        st = ec2.describe_instance_status(InstanceIds=[iid])
        return st["InstanceStatuses"][0]["SystemStatus"]
    assert system() == {"Status": "ok", "Details": [
        {"Name": "reachability", "Status": "passed"}]}
    nc = cloud.daemons["nc1"]
    assert nc.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        down = wait_for("system impaired",
                        lambda: system()["Status"] == "impaired" and system(),
                        60)
        detail = down["Details"][0]
        assert detail["Name"] == "reachability"
        assert detail["Status"] == "failed"
        assert detail["ImpairedSince"].timestamp() <= time.time()
        st = ec2.describe_instance_status(Filters=[
            {"Name": "system-status.status", "Values": ["impaired"]}])
        assert [s["InstanceId"] for s in st["InstanceStatuses"]] == [iid]
        assert qemu_instances(cloud) == [iid]
    finally:
        nc.start()
    wait_for("system ok", lambda: system()["Status"] == "ok", 60)
    ec2.terminate_instances(InstanceIds=[iid])
    settle(cloud, ec2, [iid], "terminated")


def test_instance_initiated_shutdown_behavior(cloud):
    """A guest that powers itself off: stopped by default, terminated when
    its instance says InstanceInitiatedShutdownBehavior=terminate.  (The
    guests are told to power off through their monitors while koala-nc
    is down, which is when the monitors are free: to the cloud it is the
    guest's own doing.)"""
    ec2 = cloud.ec2()
    runs = {}
    for behavior in ("terminate", "stop"):
        runs[behavior] = ec2.run_instances(
            ImageId=cloud.ami, MinCount=1, MaxCount=1, InstanceType="t1.micro",
            InstanceInitiatedShutdownBehavior=behavior)["Instances"][0][
            "InstanceId"]
    ids = list(runs.values())
    settle(cloud, ec2, ids, "running")
    for iid in ids:  # booted: its ACPI daemon handles the power button
        wait_for(f"{iid} booted", lambda iid=iid: "KOALA-GUEST-READY" in
                 ec2.get_console_output(InstanceId=iid).get("Output", ""),
                 180, 1)
    nc = cloud.daemons["nc1"]
    assert nc.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        for iid in ids:
            sock = cloud.dir / "nc1" / "instances" / iid / "qmp.sock"
            f, _ = qmp_command(sock, "system_powerdown")
            wait_for(f"{iid} powers off",
                     lambda f=f: '"guest": true' in f.readline(), 90, 0)
            f.close()
    finally:
        nc.start()
    got = settle(cloud, ec2, [runs["terminate"]], "terminated")
    reason = got[runs["terminate"]]["StateReason"]
    assert reason["Code"] == "Client.InstanceInitiatedShutdown", reason
    got = wait_state(ec2, [runs["stop"]], "stopped")
    assert got[runs["stop"]]["StateReason"]["Code"] == \
        "Client.InstanceInitiatedShutdown"
    assert qemu_instances(cloud) == []
    assert runs["stop"] in node_files(cloud, "nc1")  # its disks are kept
    ec2.terminate_instances(InstanceIds=[runs["stop"]])
    settle(cloud, ec2, [runs["stop"]], "terminated")
