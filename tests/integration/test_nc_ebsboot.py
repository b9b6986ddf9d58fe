"""Instances that boot from an EBS volume, on the node controller and
through the cluster controller (docs/storage.md, "On the node").

The boot volume is the whole-disk bootable test image (tests/images'
disk.qcow2 converted to raw) served by a real qemu-storage-daemon, NBD
over TLS with the test CA's certificates (test_nc_volumes.Storage), to a
real koala-nc in a network namespace of its own.  ncRunInstance comes
without an image and with the boot volume without its export (as the CLC
sends it: the SC exports to a node only once the CC picked it): the
instance stays pending, and stays so across a koala-nc killed with
SIGKILL; ncAttachVolume brings the export and the instance boots from it
(SeaBIOS, bootindex=0: the busybox guest's READY line on the console, the
volume its first disk).  Detaching the root volume of a running instance
is refused (IncorrectState); stop/start boots it again from the volume;
detached while stopped, a start is refused (IncorrectInstanceState).  An
export already recorded when koala-nc starts launches at load.  Through
koala-cc: RunInstances without an image needs a boot volume per instance;
AttachVolume's export boots it; DescribeInstances shows it attached
(and the imageId the request named).

Every process is started here and stopped by its PID.
"""
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import wait_until
from soapclient import SoapFault, child, to_dict
from test_nc import TINY, fault, images, imgsrv, new_id, new_mac  # noqa: F401
from test_nc_volumes import (VOL_MB, Storage, VolNet, Vnode,  # noqa: F401
                             cc, disks, new_vol, pki, serial_of)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = VolNet(tmp_path_factory.mktemp("net"))
    yield n
    n.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory, pki, net, cc, images):
    n = Vnode(tmp_path_factory.mktemp("node"), pki, name="bnode1",
              netns=net.name, bridge="kbr0", cc_endpoint=cc.url,
              hypervisor="tcg").start()
    yield n
    rc = n.cleanup()
    assert rc == 0, f"koala-nc exited with {rc}:\n{n.log_text()[-4000:]}"


@pytest.fixture(scope="module")
def storage(tmp_path_factory, pki):
    s = Storage(tmp_path_factory.mktemp("sc"), pki)
    yield s
    s.close()


def boot_volume(storage, images):
    """A new volume holding the bootable whole-disk image."""
    vol = new_vol()
    f = storage.base / f"{vol}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw",
                    str(images / "disk.qcow2"), str(f)], check=True)
    assert f.stat().st_size == VOL_MB << 20
    return vol


def run_from_volume(node, vol, net=None, device="/dev/xvda", iid=None,
                    export=None):
    iid = iid or new_id()
    v = {"volumeId": vol, "device": device, "boot": "true"}
    if export:
        v["export"] = export
    body = {"instanceId": iid, "reservationId": "r-" + iid[2:],
            "ownerId": "000000000001", "launchIndex": 0,
            "instanceType": TINY,
            "net": net or {"macAddress": new_mac(), "network": "default",
                           "bridge": ""},
            "volume": v}
    node.started.add(iid)
    return to_dict(child(node.client.call("ncRunInstance", body),
                         "instance"))


def cmdline(node, iid):
    pid = node.qemu_pid(iid)
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def saved(node, iid):
    return json.loads((node.inst_dir(iid) / "instance.json").read_text())


def ready_ip(node, iid, count=1):
    out = node.wait_console(iid, "KOALA-GUEST-READY ip=10.77.0.",
                            count=count, timeout=240)
    return re.findall(r"KOALA-GUEST-READY ip=(10\.77\.0\.\d+)", out)[-1]


def test_bad_launches(node):
    """No image needs a boot volume; one boot volume at most; a boot volume
    replaces the image (and the kernel)."""
    c = node.client
    base = {"reservationId": "r-00000001", "ownerId": "000000000001",
            "launchIndex": 0, "instanceType": TINY,
            "net": {"macAddress": new_mac(), "network": "default"}}
    f = fault(c.call, "ncRunInstance", dict(base, instanceId=new_id()))
    assert f.code == "MissingParameter" and "boot" in f.message
    f = fault(c.call, "ncRunInstance", dict(base, instanceId=new_id(), volume=[
        {"volumeId": new_vol(), "device": "xvda", "boot": "true"},
        {"volumeId": new_vol(), "device": "xvdb", "boot": "true"}]))
    assert f.code == "InvalidParameterValue" and "at most one" in f.message
    f = fault(c.call, "ncRunInstance", dict(
        base, instanceId=new_id(),
        image={"id": "emi-1", "url": "http://127.0.0.1:1/x", "size": 1,
               "sha256": "0" * 64},
        volume={"volumeId": new_vol(), "device": "xvda", "boot": "true"}))
    assert f.code == "InvalidParameterValue"
    f = fault(c.call, "ncRunInstance", dict(
        base, instanceId=new_id(),
        volume={"volumeId": new_vol(), "device": "xvda", "boot": "maybe"}))
    assert f.code == "InvalidParameterValue"


def test_boot_from_volume(node, net, storage, images):
    vol = boot_volume(storage, images)
    inst = run_from_volume(node, vol, net=net.host())
    iid = inst["instanceId"]
    assert inst["state"] == "pending" and "imageId" not in inst
    v = node.volumes(iid)[vol]
    assert v["state"] == "attaching" and v.get("boot") == "true"

    # Without its export it waits: pending, no QEMU, no root disk made.
    time.sleep(2)
    assert node.state(iid) == "pending"
    assert node.qemu_pid(iid) is None
    assert not (node.inst_dir(iid) / "root.qcow2").exists()
    (sv,) = saved(node, iid)["volumes"]
    assert sv["boot"] is True and "export" not in sv
    assert "image" not in saved(node, iid)
    # The root volume of a pending instance cannot be detached.
    f = fault(node.detach, iid, vol)
    assert f.code == "IncorrectState"
    assert f.message == (f"Unable to detach root volume '{vol}' from "
                         f"instance '{iid}'")

    # koala-nc killed while it waits: the restarted node still waits.
    node.stop(signal.SIGKILL)
    node.start()
    assert node.state(iid) == "pending"
    assert node.volumes(iid)[vol]["state"] == "attaching"
    time.sleep(1)
    assert node.state(iid) == "pending" and node.qemu_pid(iid) is None

    # The export comes: it boots from the volume.
    ex = storage.serve(vol, "unix")
    t0 = time.monotonic()
    a = node.attach(iid, vol, "/dev/xvda", ex)
    assert a["state"] == "attached", a
    print(f"\nexport -> QEMU running with it: "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    node.wait_state(iid, "running")
    assert node.volumes(iid)[vol]["state"] == "attached"
    argv = cmdline(node, iid)
    assert b"pc" in argv and b"-kernel" not in argv
    dev = [a for a in argv if f"drive=raw-{vol}".encode() in a]
    assert len(dev) == 1 and dev[0].endswith(b",bootindex=0"), argv
    assert dev[0].startswith(b"virtio-blk-pci,")
    assert any(b"type=1,serial=ec2" in a for a in argv)  # SMBIOS for cloud-init
    assert not any(b"root.qcow2" in a for a in argv)
    assert (node.inst_dir(iid) / "ephemeral.qcow2").exists()
    assert not (node.inst_dir(iid) / "root.qcow2").exists()
    ip = ready_ip(node, iid)
    # Its first disk is the volume (the serial the volume id).
    d = disks(net, ip)
    assert d[serial_of(vol)][0] == "vda", d
    assert saved(node, iid)["volumes"][0]["boot"] is True

    # Not detached from a running instance.
    f = fault(node.detach, iid, vol)
    assert f.code == "IncorrectState" and "root volume" in f.message
    assert node.volumes(iid)[vol]["state"] == "attached"

    # Stop keeps it, start boots from it again (the same command line).
    node.call("ncStopInstance", instanceId=iid)
    node.wait_state(iid, "stopped")
    assert node.volumes(iid)[vol]["state"] == "attached"
    node.call("ncStartInstance", instanceId=iid)
    node.wait_state(iid, "running")
    assert cmdline(node, iid) == argv
    ready_ip(node, iid, count=2)

    # Detached while stopped: then there is nothing to start from.
    node.call("ncStopInstance", instanceId=iid)
    node.wait_state(iid, "stopped")
    assert node.detach(iid, vol)["state"] == "detached"
    f = fault(node.call, "ncStartInstance", instanceId=iid)
    assert f.code == "IncorrectInstanceState"
    node.call("ncTerminateInstance", instanceId=iid)
    node.wait_state(iid, "terminated")
    storage.kill(vol, signal.SIGTERM)


def test_export_recorded_before_a_restart_launches_at_load(node, storage,
                                                           images):
    """The export reached instance.json but koala-nc went away before the
    launch (as a kill between the two leaves it): the loaded instance
    launches.  Also: terminate of an instance waiting for its export is
    at once; an export that cannot be reached fails the launch."""
    vol = boot_volume(storage, images)
    iid = run_from_volume(node, vol)["instanceId"]
    ex = storage.serve(vol, "unix")
    node.stop(signal.SIGKILL)
    doc = saved(node, iid)
    doc["volumes"][0]["export"] = {k: v for k, v in ex.items()
                                   if k != "volumeId"}
    (node.inst_dir(iid) / "instance.json").write_text(json.dumps(doc))
    node.start()
    node.wait_state(iid, "running", timeout=60)
    wait_until(lambda: node.volumes(iid)[vol]["state"] == "attached",
               timeout=10, step=0.1, what="the boot volume attached")
    node.call("ncTerminateInstance", instanceId=iid)
    node.wait_state(iid, "terminated")
    assert node.volumes(iid)[vol]["state"] == "detached"
    storage.kill(vol, signal.SIGTERM)

    # Terminated while it waits: at once.
    iid = run_from_volume(node, new_vol())["instanceId"]
    t0 = time.monotonic()
    node.call("ncTerminateInstance", instanceId=iid)
    node.wait_state(iid, "terminated", timeout=10)
    assert time.monotonic() - t0 < 5

    # An export that cannot be reached: the attach is a fault with the
    # reason, the instance ends terminated (QEMU could not open its root).
    vol = new_vol()
    iid = run_from_volume(node, vol)["instanceId"]
    gone = {"transport": "unix", "path": str(storage.base / "none.sock"),
            "exportName": vol, "tlsHostname": "koala-sc-test"}
    f = fault(node.attach, iid, vol, "/dev/xvda", gone)
    assert "booting" in f.message, f.message
    st = node.wait_state(iid, "terminated", timeout=30)
    assert st["stateReasonCode"] == "Server.InternalError"
    assert node.volumes(iid)[vol]["state"] == "detached"


def test_through_the_cc(node, pki, storage, images, tmp_path):
    """RunInstances without an image: each instance needs a boot volume
    (a clear fault otherwise); the export comes through AttachVolume; the
    cluster's DescribeInstances shows the boot volume attached."""
    from types import SimpleNamespace
    from test_cc import CC, type_items
    for name in ("koala-cc-zone-a", "koala-clc"):
        pki.issue(name)
    cc = CC(pki, tmp_path / "cc", SimpleNamespace(name=None),
            netns=None, manage_network="false", nc_timeout="10",
            nodes=f"bnode1=https://127.0.0.1:{node.port}/")
    cc.start()
    iid = "i-00000000000000eb1"
    node.started.add(iid)
    try:
        cc.wait_nodes({"bnode1": "ENABLED"}, timeout=30)
        vol = boot_volume(storage, images)
        items = [("reservationId", "r-0000eb01"),
                 ("ownerId", "000000000001"),
                 ("instanceType", type_items(("t1.micro", 1, 256, 1)))]
        # Neither an image nor a boot volume: refused, nothing placed.
        with pytest.raises(SoapFault) as e:
            cc.call("RunInstances", items + [
                ("instance", [("instanceId", iid), ("launchIndex", 0)])])
        assert e.value.code == "MissingParameter"
        assert "boot volume" in e.value.message
        # Two boot volumes: refused.
        with pytest.raises(SoapFault) as e:
            cc.call("RunInstances", items + [
                ("instance", [("instanceId", iid), ("launchIndex", 0),
                              ("volume", [("volumeId", vol),
                                          ("device", "/dev/xvda"),
                                          ("boot", "true")]),
                              ("volume", [("volumeId", new_vol()),
                                          ("device", "/dev/xvdb"),
                                          ("boot", "true")])])])
        assert e.value.code == "InvalidParameterValue"
        # (imageId: the EBS-backed image's, only recorded)
        cc.call("RunInstances", items + [
            ("imageId", "emi-0000eb01"),
            ("instance", [("instanceId", iid), ("launchIndex", 0),
                          ("volume", [("volumeId", vol),
                                      ("device", "/dev/xvda"),
                                      ("boot", "true")])])])
        assert cc.describe(iid)[iid]["imageId"] == "emi-0000eb01"
        assert node.state(iid) == "pending"
        assert node.volumes(iid)[vol]["state"] == "attaching"
        assert cc.describe(iid)[iid]["state"] == "pending"
        ex = storage.serve(vol, "unix")
        r = cc.call("AttachVolume", [
            ("instanceId", iid), ("volumeId", vol), ("device", "/dev/xvda"),
            ("export", list(ex.items()))], timeout=90)
        assert to_dict(child(r, "volume"))["state"] == "attached"
        got = wait_until(lambda: (lambda d: d["state"] == "running" and d.get(
            "volume", {}).get("state") == "attached" and d)(
                cc.describe(iid)[iid]),
            timeout=60, step=0.3, what="running with its boot volume")
        assert got["volume"]["volumeId"] == vol
        cc.call("TerminateInstances", [("instanceId", iid)])
        node.wait_state(iid, "terminated")
    finally:
        rc = cc.stop()
        storage.close()
    assert rc == 0, cc.log_text()[-3000:]
