"""koala-cc, the cluster controller, as the CLC and the NCs see it: SOAP over
mutual TLS with certificates from `koala ca`, its scheduling, address
allocation, node failure handling, notifications, persistence, and the
cluster network it builds in a network namespace this suite creates (and
deletes): bridge, router address, NAT, and dnsmasq handing out fixed leases
to a real DHCP client (busybox udhcpc).

The NCs: tests that check the CC's own logic (scheduling, allocation,
DHCP, failure handling) run against FakeNC, a test double of koala-nc
written here that keeps its instances in memory; it is no stand-in for the
real node controller.  test_real_nc_boots_guest_with_cc_lease uses the
real koala-nc and the guest image (tests/images/build.sh) when they are
built, for the end-to-end path.

Every process here is started by this file and stopped by its PID.
"""
import base64
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (BUILD, KOALA_BIN, PKI, ROOT, Netns, Process,
                      free_port, wait_port, wait_until)
from soapclient import (SoapClient, SoapFault, SoapServer, child, children,
                        client_context, envelope, text, to_dict)

CC_BIN = BUILD / "src" / "cc" / "koala-cc"
NC_BIN = BUILD / "src" / "nc" / "koala-nc"
IMAGES = Path(os.environ.get("KOALA_IMAGES", ROOT / "build" / "images"))
CC_NS, NC_NS, CLC_NS = "urn:koala:cc", "urn:koala:nc", "urn:koala:clc"

SMALL = ("m1.small", 1, 256, 5)
LARGE = ("m1.large", 2, 1024, 10)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2")


# ---- certificates ---------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not KOALA_BIN.exists() or not CC_BIN.exists():
        pytest.fail(f"{CC_BIN} or {KOALA_BIN} is not built")
    p = PKI.create(tmp_path_factory.mktemp("pki"))
    for n in ("koala-cc-zone-a", "koala-clc", "koala-nc-nc1",
              "koala-nc-nc2", "koala-nc-nc3"):
        p.issue(n)
    return p


# ---- the test double of an NC ----------------------------------------------

class FakeNC:
    """TEST DOUBLE of koala-nc for the CC's own logic: answers the NC
    operations from memory.  Instances start `pending` and report
    `running` start_s later; terminate answers `shutting-down` and ends
    `terminated` at the next describe."""

    def __init__(self, pki, name, cores, memory_mb, disk_gb):
        self.name = name
        self.max = (cores, memory_mb, disk_gb)
        self.instances = {}
        self.lock = threading.Lock()
        self.run_delay = 0.0
        self.run_fault = None
        self.start_s = 0.2
        cert, key = pki.issue(f"koala-nc-{name}")
        self.pki = pki
        self.server = SoapServer(free_port(), cert, key, pki.ca, NC_NS,
                                 self.handle)

    url = property(lambda self: self.server.url)

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    def _settle(self, inst):
        if inst["state"] == "pending" and \
                time.monotonic() - inst["t0"] >= self.start_s:
            inst["state"] = "running"

    def record(self, inst):
        items = [("instanceId", inst["id"]),
                 ("reservationId", inst["reservation"]),
                 ("ownerId", inst["owner"]),
                 ("launchIndex", inst["launchIndex"]),
                 ("state", inst["state"])]
        if inst.get("reason"):
            items += [("stateReasonCode", inst["reason"]),
                      ("stateReasonMessage", "from the fake NC")]
        items += [("instanceType", inst["type"]), ("imageId", inst["image"]),
                  ("macAddress", inst["mac"]), ("privateIp", inst["ip"]),
                  ("launchTime", "2026-11-25T08:41:16.000Z"),
                  ("node", self.name), ("hypervisor", "tcg")]
        return items

    def used(self):
        c = m = d = 0
        for i in self.instances.values():
            if i["state"] != "terminated":
                c, m, d = c + i["cores"], m + i["mem"], d + i["disk"]
        return c, m, d

    def handle(self, op, el, req):
        with self.lock:
            for inst in self.instances.values():
                self._settle(inst)
            if op == "ncDescribeResource":
                c, m, d = self.used()
                return [("node", self.name), ("hypervisor", "tcg"),
                        ("coresMax", self.max[0]),
                        ("coresAvailable", self.max[0] - c),
                        ("memoryMbMax", self.max[1]),
                        ("memoryMbAvailable", self.max[1] - m),
                        ("diskGbMax", self.max[2]),
                        ("diskGbAvailable", self.max[2] - d),
                        ("instanceCount", len(self.instances))]
            if op == "ncDescribeInstances":
                out = []
                for inst in self.instances.values():
                    out.append(("instance", self.record(inst)))
                    if inst["state"] == "shutting-down":
                        inst["state"] = "terminated"
                return out
            if op == "ncRunInstance":
                return self._run(el)
            iid = text(el, "instanceId")
            inst = self.instances.get(iid)
            if inst is None:
                raise SoapFault("InvalidInstanceID.NotFound", f"no {iid}")
            if op == "ncTerminateInstance":
                if inst["state"] != "terminated":
                    inst["state"] = "shutting-down"
            elif op == "ncStopInstance":
                inst["state"] = "stopped"
            elif op == "ncStartInstance":
                inst["state"] = "running"
            elif op == "ncRebootInstance":
                if inst["state"] != "running":
                    raise SoapFault("IncorrectInstanceState", "not running")
            elif op == "ncGetConsoleOutput":
                out = base64.b64encode(f"console of {iid}\n".encode())
                return [("instanceId", iid), ("output", out.decode()),
                        ("timestamp", "2026-11-25T08:41:16.000Z")]
            else:
                raise SoapFault("InvalidAction", op)
            return [("instance", self.record(inst))]

    def _run(self, el):
        if self.run_delay:
            self.lock.release()
            try:
                time.sleep(self.run_delay)
            finally:
                self.lock.acquire()
        if self.run_fault:
            raise SoapFault(self.run_fault, "the fake NC refuses")
        t, net, img = child(el, "instanceType"), child(el, "net"), \
            child(el, "image")
        iid = text(el, "instanceId")
        inst = {"id": iid, "reservation": text(el, "reservationId"),
                "owner": text(el, "ownerId"),
                "launchIndex": text(el, "launchIndex"),
                "type": text(t, "name"), "cores": int(text(t, "cores")),
                "mem": int(text(t, "memoryMb")),
                "disk": int(text(t, "diskGb")), "image": text(img, "id"),
                "mac": text(net, "macAddress"), "ip": text(net, "privateIp"),
                "network": text(net, "network"), "state": "pending",
                "t0": time.monotonic()}
        self.instances[iid] = inst
        return [("instance", self.record(inst))]

    def set_state(self, iid, state, reason=None):
        with self.lock:
            self.instances[iid]["state"] = state
            self.instances[iid]["reason"] = reason
            return self.record(self.instances[iid])

    def push(self, cc_url, iid, state):
        rec = self.set_state(iid, state)
        client = SoapClient(cc_url, CC_NS,
                            ctx=self.pki.ctx(f"koala-nc-{self.name}"))
        return client.call("NotifyInstanceState",
                           [("node", self.name), ("instance", rec)])


class FakeCLC:
    """TEST DOUBLE of the CLC's NotifyInstanceState endpoint: records what
    the CC pushes."""

    def __init__(self, pki):
        cert, key = pki.issue("koala-clc")
        self.received = []
        self.server = SoapServer(free_port(), cert, key, pki.ca, CLC_NS,
                                 self.handle)

    def handle(self, op, el, req):
        if op != "NotifyInstanceState":
            raise SoapFault("InvalidAction", op)
        self.received.append(
            (text(el, "cluster"),
             [to_dict(i) for i in children(el, "instance")]))
        return []


# ---- koala-cc ---------------------------------------------------------------

class CC(Process):
    def __init__(self, pki, data_dir, cluster_ns, **conf):
        self.pki = pki
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.cluster_ns = cluster_ns
        self.conf = conf
        self.ctx = pki.ctx("koala-clc")
        self.url = f"https://127.0.0.1:{self.port}/"
        self.log_path = self.data_dir.parent / \
            f"{self.data_dir.name}-cc.log"

    def write_config(self):
        cert, key = self.pki.issue("koala-cc-zone-a")
        conf = {"listen": f"127.0.0.1:{self.port}",
                "data_dir": self.data_dir, "name": "zone-a",
                "tls_cert": cert, "tls_key": key, "ca": self.pki.ca,
                "netns": self.cluster_ns.name, "poll_interval": "0.3",
                "node_fail_threshold": "2", "nc_timeout": "2",
                "log_level": "info,cc=debug"}
        conf.update(self.conf)
        path = self.data_dir.parent / f"{self.data_dir.name}.conf"
        path.write_text("[cc]\n" + "".join(
            f"{k} = {v}\n" for k, v in conf.items() if v is not None))
        return path

    def argv(self):
        return [CC_BIN, "--config", self.write_config()]

    def client(self, ctx=None, timeout=30):
        """A SOAP client of this CC, as the CLC (or with ctx)."""
        return SoapClient(self.url, CC_NS, ctx=ctx or self.ctx,
                          timeout=timeout)

    def call(self, op, items=(), timeout=30):
        return self.client(timeout=timeout).call(op, items)

    # helpers speaking the CC's messages
    def resources(self, *types):
        body = self.call("DescribeResources",
                         [("instanceType", type_items(t)) for t in types])
        res = {text(r, "instanceType"): (int(text(r, "max")),
                                         int(text(r, "available")))
               for r in children(body, "resource")}
        nodes = {text(n, "name"): to_dict(n) for n in children(body, "node")}
        return res, nodes

    def run(self, n, itype=SMALL, reservation="r-00000001", first=0,
            prefix="0000000000000"):
        ids = [f"i-{prefix}{first + k:04x}" for k in range(n)]
        items = [("reservationId", reservation), ("ownerId", "000000000001"),
                 ("instanceType", type_items(itype)),
                 ("image", [("id", "emi-00000001"),
                            ("url", "http://127.0.0.1:1/emi?sig=x"),
                            ("size", "1024"), ("sha256", "0" * 64)])]
        items += [("instance", [("instanceId", i), ("launchIndex", k)])
                  for k, i in enumerate(ids)]
        return [to_dict(i) for i in
                children(self.call("RunInstances", items), "instance")]

    def describe(self, *ids):
        body = self.call("DescribeInstances",
                         [("instanceId", i) for i in ids])
        return {d["instanceId"]: d for d in
                (to_dict(i) for i in children(body, "instance"))}

    def action(self, op, *ids):
        body = self.call(op, [("instanceId", i) for i in ids])
        return {d["instanceId"]: d for d in
                (to_dict(i) for i in children(body, "instance"))}

    def dhcp_hosts(self):
        p = self.data_dir / "dhcp-hosts"
        return p.read_text() if p.exists() else ""

    def wait_nodes(self, want, timeout=15):
        def ok():
            _, nodes = self.resources()
            got = {n: d["state"] for n, d in nodes.items()}
            return got if got == want else None
        return wait_until(ok, timeout, 0.1, f"nodes {want}")


def type_items(t):
    return [("name", t[0]), ("cores", t[1]), ("memoryMb", t[2]),
            ("diskGb", t[3])]


@pytest.fixture
def cluster(pki, tmp_path):
    """A cluster netns, two fake NCs (nc1: 4 cores, 4 GiB, 100 GB; nc2: 2
    cores, 1 GiB, 20 GB), a fake CLC, and a factory for koala-cc."""
    ns = Netns("c")
    try:
        nc1 = FakeNC(pki, "nc1", 4, 4096, 100).start()
        nc2 = FakeNC(pki, "nc2", 2, 1024, 20).start()
        clc = FakeCLC(pki)
        clc.server.start()
    except BaseException:
        ns.delete()  # a setup that failed leaves no namespace behind
        raise
    ccs = []

    class Cluster:
        pass

    c = Cluster()
    c.ns, c.nc1, c.nc2, c.clc, c.pki, c.tmp = ns, nc1, nc2, clc, pki, tmp_path

    def make_cc(data="cc", start=True, **conf):
        conf.setdefault("nodes", f"nc1={nc1.url},nc2={nc2.url}")
        conf.setdefault("clc_endpoint", clc.server.url)
        cc = CC(pki, tmp_path / data, ns, **conf)
        ccs.append(cc)
        return cc.start() if start else cc

    c.make_cc = make_cc
    yield c
    try:
        for cc in ccs:
            if cc.proc is not None:
                rc = cc.stop()
                assert rc == 0, f"koala-cc exited {rc}:\n{cc.log_text()[-3000:]}"
    finally:
        nc1.stop()
        nc2.stop()
        clc.server.stop()
        ns.delete()


# ---- tests ------------------------------------------------------------------

def test_refused_without_client_certificate(cluster):
    cc = cluster.make_cc()
    body = envelope("DescribeService", CC_NS)
    try:
        status, _ = cc.client(client_context(cluster.pki.ca)).raw(body)
        assert status == 403
    except (OSError, ConnectionError):
        pass  # refused during the handshake: equally fine
    # A certificate from another CA is no better.
    other = cluster.tmp / "other-ca"
    other.mkdir()
    cert, key = PKI.create(other).issue("koala-clc", server=False)
    try:
        status, _ = cc.client(client_context(
            cluster.pki.ca, cert, key)).raw(body)
        assert status == 403
    except (OSError, ConnectionError):
        pass
    # With ours it answers.
    assert text(cc.call("DescribeService"), "name") == "zone-a"


def test_describe_service_and_resources(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    svc = cc.call("DescribeService")
    assert text(svc, "state") == "ENABLED"
    assert "2 of 2" in text(svc, "message")
    res, nodes = cc.resources(SMALL, LARGE)
    # small: nc1 min(4, 16, 20) + nc2 min(2, 4, 4); large: 2 + 1
    assert res == {"m1.small": (6, 6), "m1.large": (3, 3)}
    assert nodes["nc1"]["coresMax"] == "4"
    assert nodes["nc2"]["memoryMbAvailable"] == "1024"
    assert nodes["nc1"]["endpoint"] == cluster.nc1.url
    assert nodes["nc1"]["hypervisor"] == "tcg"


def test_foreign_use_is_counted(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    # Something this CC did not place uses 2 of nc1's cores.
    with cluster.nc1.lock:
        cluster.nc1.instances["i-0000000000000f00f"] = {
            "id": "i-0000000000000f00f", "reservation": "r-x", "owner": "x",
            "launchIndex": "0", "type": "m1.large", "cores": 2, "mem": 1024,
            "disk": 10, "image": "emi-x", "mac": "", "ip": "",
            "state": "running", "t0": 0}
    wait_until(lambda: cc.resources(SMALL)[0]["m1.small"] == (6, 4),
               what="foreign use counted")
    assert [i["node"] for i in cc.run(3)] == ["nc1", "nc1", "nc2"]
    with cluster.nc1.lock:
        cluster.nc1.instances["i-0000000000000f00f"]["state"] = "terminated"
    wait_until(lambda: cc.resources(SMALL)[0]["m1.small"] == (6, 3),
               what="foreign use gone")


def test_greedy_fills_first_node(cluster):
    cc = cluster.make_cc(scheduler="GREEDY")
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    out = cc.run(3)
    assert [i["node"] for i in out] == ["nc1"] * 3
    assert [i["privateIp"] for i in out] == \
        ["10.111.0.2", "10.111.0.3", "10.111.0.4"]
    macs = [i["macAddress"] for i in out]
    assert len(set(macs)) == 3 and all(m.startswith("d0:0d:") for m in macs)
    assert macs[0] == "d0:0d:00:00:00:00"  # the id's last 8 digits
    assert all(i["state"] == "pending" for i in out)
    # What the NC was told.
    sent = {text(e, "instanceId"): e for e in cluster.nc1.server.ops(
        "ncRunInstance")}
    assert len(sent) == 3 and not cluster.nc2.server.ops("ncRunInstance")
    net = child(sent[out[0]["instanceId"]], "net")
    assert text(net, "macAddress") == macs[0]
    assert text(net, "privateIp") == "10.111.0.2"
    assert text(net, "network") == "default"
    # Capacity counts them at once, before any poll, and stays right
    # whatever the polls see meanwhile.
    for _ in range(10):
        assert cc.resources(SMALL)[0]["m1.small"] == (6, 3)
        time.sleep(0.1)
    # One more: nc1 still has room for one.
    assert cc.run(1, first=3)[0]["node"] == "nc1"
    assert cc.run(1, first=4)[0]["node"] == "nc2"
    # The DHCP server knows each instance's fixed lease.
    hosts = cc.dhcp_hosts()
    for i in out:
        assert f"{i['macAddress']},{i['privateIp']},{i['instanceId']}" in hosts
    wait_until(lambda: all(d["state"] == "running"
                           for d in cc.describe().values()), what="running")


def test_roundrobin_spreads(cluster):
    cc = cluster.make_cc(scheduler="ROUNDROBIN")
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    out = cc.run(3)
    assert [i["node"] for i in out] == ["nc1", "nc2", "nc1"]
    # the next request continues after the node used last
    assert cc.run(1, first=3, reservation="r-2")[0]["node"] == "nc2"
    # nc2 is full (2 cores): the rotation passes over it
    assert [i["node"] for i in cc.run(2, first=4, reservation="r-3")] == \
        ["nc1", "nc1"]


def test_insufficient_capacity_starts_nothing(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    with pytest.raises(SoapFault) as e:
        cc.run(7)  # room for 6
    assert e.value.code == "InsufficientInstanceCapacity"
    with pytest.raises(SoapFault) as e:
        cc.run(1, itype=("m1.huge", 8, 1024, 10))  # fits no node
    assert e.value.code == "InsufficientInstanceCapacity"
    assert not cluster.nc1.server.ops("ncRunInstance")
    assert not cluster.nc2.server.ops("ncRunInstance")
    assert cc.describe() == {}
    assert cc.dhcp_hosts() == ""
    # exactly the capacity is fine
    assert len(cc.run(6)) == 6
    with pytest.raises(SoapFault) as e:
        cc.run(1, first=6, reservation="r-2")
    assert e.value.code == "InsufficientInstanceCapacity"


def test_parallel_launch(cluster):
    cc = cluster.make_cc(scheduler="ROUNDROBIN")
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    cluster.nc1.run_delay = cluster.nc2.run_delay = 1.0
    t0 = time.monotonic()
    out = cc.run(4)
    took = time.monotonic() - t0
    assert len(out) == 4 and all(i["state"] == "pending" for i in out)
    assert took < 2.5, f"4 launches of 1 s each took {took:.1f} s"


def test_run_refused_by_node(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    cluster.nc1.run_fault = "InsufficientInstanceCapacity"
    out = cc.run(1)
    assert out[0]["state"] == "terminated"
    assert out[0]["stateReasonCode"] == "Server.InsufficientInstanceCapacity"
    assert cc.dhcp_hosts() == ""  # its address went back
    cluster.nc1.run_fault = None
    again = cc.run(1, first=1, reservation="r-2")
    assert again[0]["privateIp"] == "10.111.0.2"
    # A retry of the same reservation reports, it does not launch again.
    n = len(cluster.nc1.server.ops("ncRunInstance"))
    assert cc.run(1, first=1, reservation="r-2")[0]["instanceId"] == \
        again[0]["instanceId"]
    assert len(cluster.nc1.server.ops("ncRunInstance")) == n


def test_node_failure_skipped_and_recovers(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    first = cc.run(1)[0]
    assert first["node"] == "nc1"
    wait_until(lambda: cc.describe()[first["instanceId"]]["state"] ==
               "running", what="running")
    cluster.nc1.stop()
    cc.wait_nodes({"nc1": "BROKEN", "nc2": "ENABLED"})
    assert "nc1" in cc.log_text() and "BROKEN" in cc.log_text()
    # its instance keeps its last known state
    assert cc.describe()[first["instanceId"]]["state"] == "running"
    res, _ = cc.resources(SMALL)
    assert res["m1.small"] == (2, 2)  # nc2 only
    # the scheduler passes over it
    assert cc.run(1, first=1, reservation="r-2")[0]["node"] == "nc2"
    # a node that hangs (accepts, never answers) fails the same way
    cluster.nc1.server.start()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    cluster.nc1.server.paused = True
    cc.wait_nodes({"nc1": "BROKEN", "nc2": "ENABLED"}, timeout=20)
    cluster.nc1.server.paused = False
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    assert cc.run(1, first=2, reservation="r-3")[0]["node"] == "nc1"


def test_notify_updates_at_once_and_is_forwarded(cluster):
    # A long poll interval: what changes here comes from the push.
    cc = cluster.make_cc(poll_interval="60")
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    iid = cc.run(1)[0]["instanceId"]
    assert cc.describe(iid)[iid]["state"] == "pending"
    cluster.nc1.push(cc.url, iid, "running")
    assert cc.describe(iid)[iid]["state"] == "running"

    def forwarded():
        for cluster_name, batch in cluster.clc.received:
            for i in batch:
                if i["instanceId"] == iid and i["state"] == "running":
                    return cluster_name, i
    name, rec = wait_until(forwarded, what="NotifyInstanceState at the CLC")
    assert name == "zone-a"
    assert rec["node"] == "nc1" and rec["privateIp"] == "10.111.0.2"
    assert rec["macAddress"].startswith("d0:0d:")
    # An unknown node, a node speaking for another: refused.
    with pytest.raises(SoapFault) as e:
        cc.call("NotifyInstanceState", [("node", "nope"), ("instance", {})])
    assert e.value.code == "InvalidParameterValue"
    rec2 = cluster.nc1.record(cluster.nc1.instances[iid])
    with pytest.raises(SoapFault) as e:
        cc.client(cluster.pki.ctx("koala-nc-nc2")).call(
            "NotifyInstanceState", [("node", "nc1"), ("instance", rec2)])
    assert e.value.code == "UnauthorizedOperation"
    # A push about an instance of another node changes nothing.
    rec2 = [(k, "stopped" if k == "state" else v) for k, v in rec2]
    cc.client(cluster.pki.ctx("koala-nc-nc2")).call(
        "NotifyInstanceState", [("node", "nc2"), ("instance", rec2)])
    assert cc.describe(iid)[iid]["state"] == "running"


def test_terminate_frees_address(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    a, b = cc.run(2)
    out = cc.action("TerminateInstances", a["instanceId"])
    assert out[a["instanceId"]]["state"] == "shutting-down"
    # the address stays until the NC says terminated
    assert a["macAddress"] in cc.dhcp_hosts()
    wait_until(lambda: cc.describe(a["instanceId"])[a["instanceId"]]["state"]
               == "terminated", what="terminated")
    wait_until(lambda: a["macAddress"] not in cc.dhcp_hosts(),
               what="DHCP entry gone")
    assert b["macAddress"] in cc.dhcp_hosts()
    # terminating again is harmless; the freed IP is handed out again
    assert cc.action("TerminateInstances", a["instanceId"])[
        a["instanceId"]]["state"] == "terminated"
    c = cc.run(1, first=2, reservation="r-2")[0]
    assert c["privateIp"] == a["privateIp"]


def test_instance_gone_from_node(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    a, b = cc.run(2)
    wait_until(lambda: all(d["state"] == "running"
                           for d in cc.describe().values()), what="running")
    # The node lost one it had listed: the CC ends it.
    with cluster.nc1.lock:
        del cluster.nc1.instances[a["instanceId"]]
    wait_until(lambda: cc.describe(a["instanceId"])[a["instanceId"]]["state"]
               == "terminated", what="vanished -> terminated")
    d = cc.describe(a["instanceId"])[a["instanceId"]]
    assert d["stateReasonCode"] == "Server.InternalError"
    assert a["macAddress"] not in cc.dhcp_hosts()
    # Terminating one the node does not know ends it at once.
    with cluster.nc1.lock:
        del cluster.nc1.instances[b["instanceId"]]
    out = cc.action("TerminateInstances", b["instanceId"])
    assert out[b["instanceId"]]["state"] == "terminated"
    assert b["macAddress"] not in cc.dhcp_hosts()


def test_terminate_while_node_down_is_retried(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    a = cc.run(1)[0]
    iid = a["instanceId"]
    wait_until(lambda: cc.describe(iid)[iid]["state"] == "running",
               what="running")
    cluster.nc1.stop()
    assert cc.action("TerminateInstances", iid)[iid]["state"] == \
        "shutting-down"
    time.sleep(1)
    assert cc.describe(iid)[iid]["state"] == "shutting-down"
    cluster.nc1.server.start()
    wait_until(lambda: cc.describe(iid)[iid]["state"] == "terminated",
               what="terminated after the node came back")
    assert cluster.nc1.server.ops("ncTerminateInstance")


def test_instance_actions_and_console(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    iid = cc.run(1)[0]["instanceId"]
    wait_until(lambda: cc.describe(iid)[iid]["state"] == "running",
               what="running")
    assert cc.action("RebootInstances", iid)[iid]["state"] == "running"
    assert cc.action("StopInstances", iid)[iid]["state"] == "stopped"
    with pytest.raises(SoapFault) as e:
        cc.action("RebootInstances", iid)  # the NC's fault, passed on
    assert e.value.code == "IncorrectInstanceState"
    assert cc.action("StartInstances", iid)[iid]["state"] == "running"
    out = cc.call("GetConsoleOutput", [("instanceId", iid)])
    assert text(out, "instanceId") == iid
    assert base64.b64decode(text(out, "output")) == \
        f"console of {iid}\n".encode()
    assert text(out, "timestamp").startswith("2026-")
    with pytest.raises(SoapFault) as e:
        cc.action("StopInstances", iid, "i-00000000000000bad")
    assert e.value.code == "InvalidInstanceID.NotFound"


def test_configure_nodes(cluster):
    nc3 = FakeNC(cluster.pki, "nc3", 1, 512, 10).start()
    try:
        cc = cluster.make_cc(nodes=f"nc1={cluster.nc1.url}")
        cc.wait_nodes({"nc1": "ENABLED"})
        body = cc.call("ConfigureNodes", [
            ("node", [("name", "nc2"), ("endpoint", cluster.nc2.url)]),
            ("node", [("name", "nc3"), ("endpoint", nc3.url)])])
        assert [text(n, "name") for n in children(body, "node")] == \
            ["nc1", "nc2", "nc3"]
        cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED", "nc3": "ENABLED"})
        # persisted: a restart keeps them
        assert cc.stop() == 0
        cc.start()
        cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED", "nc3": "ENABLED"})
        # replace: exactly these
        body = cc.call("ConfigureNodes", [
            ("replace", "true"),
            ("node", [("name", "nc1"), ("endpoint", cluster.nc1.url)]),
            ("node", [("name", "nc3"), ("endpoint", nc3.url)])])
        assert [text(n, "name") for n in children(body, "node")] == \
            ["nc1", "nc3"]
        for bad in ([("name", "bad name"), ("endpoint", nc3.url)],
                    [("name", "nc4"), ("endpoint", "ftp://x/")],
                    [("name", "nc4")]):
            with pytest.raises(SoapFault) as e:
                cc.call("ConfigureNodes", [("node", bad)])
            assert e.value.code in ("InvalidParameterValue",
                                    "MissingParameter")
        _, nodes = cc.resources()
        assert sorted(nodes) == ["nc1", "nc3"]
    finally:
        nc3.stop()


def test_restart_keeps_state(cluster):
    cc = cluster.make_cc()
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    before = {i["instanceId"]: i for i in cc.run(3)}
    wait_until(lambda: all(d["state"] == "running"
                           for d in cc.describe().values()), what="running")
    hosts = cc.dhcp_hosts()
    assert cc.stop() == 0
    cc.start()
    after = cc.describe()
    assert set(after) == set(before)
    for iid, b in before.items():
        for k in ("node", "macAddress", "privateIp", "reservationId"):
            assert after[iid][k] == b[k]
        assert after[iid]["state"] == "running"
    assert cc.dhcp_hosts() == hosts
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    # kill -9: nothing committed is lost, and its dnsmasq went with it
    pid_file = cc.data_dir / "dnsmasq.pid"
    dns_pid = int(wait_until(lambda: pid_file.exists() and
                             pid_file.read_text().strip(), what="pid file"))
    assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_until(lambda: not Path(f"/proc/{dns_pid}").exists() or
               "dnsmasq" not in Path(f"/proc/{dns_pid}/cmdline").read_text(
                   errors="replace"), what="dnsmasq gone with its CC")
    cc.start()
    assert set(cc.describe()) == set(before)
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    new = cc.run(1, first=3, reservation="r-2")[0]
    assert new["privateIp"] not in {b["privateIp"] for b in before.values()}
    assert new["privateIp"] == "10.111.0.5"


def test_network_router_and_nat(cluster):
    cluster.ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
    cluster.ns.ip("link", "set", "up0", "up")
    cc = cluster.make_cc(subnet="10.112.0.0/24", uplink="up0",
                         dns="192.0.2.53")
    addr = cluster.ns.ip("-o", "addr", "show", "dev", "klan0").stdout
    assert "10.112.0.1/24" in addr
    assert "UP" in cluster.ns.ip("link", "show", "klan0").stdout
    assert cluster.ns.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout \
        .strip() == "1"
    rules = cluster.ns.run("nft", "list", "ruleset").stdout
    assert "masquerade" in rules and "10.112.0.0/24" in rules
    assert '"up0"' in rules
    # idempotent: a restart replaces the table, not adds one
    assert cc.stop() == 0
    cc.start()
    rules = cluster.ns.run("nft", "list", "ruleset").stdout
    assert rules.count("masquerade") == 1


def _udhcpc(client_ns, tmp, iface="eth0"):
    script = tmp / "udhcpc.sh"
    out = tmp / "udhcpc.out"
    script.write_text(f'#!/bin/sh\necho "$1 ip=$ip router=$router '
                      f'dns=$dns" >> {out}\n')
    script.chmod(0o755)
    p = client_ns.run("busybox", "udhcpc", "-i", iface, "-n", "-q", "-f",
                      "-t", "4", "-T", "1", "-s", script, check=False)
    return p, out.read_text() if out.exists() else ""


@pytest.mark.skipif(shutil.which("busybox") is None,
                    reason="busybox (udhcpc) is not installed")
def test_dnsmasq_hands_out_the_fixed_lease(cluster):
    cc = cluster.make_cc(dns="192.0.2.53")
    cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"})
    inst = cc.run(2)[1]
    # A "guest": its own netns, a veth into the cluster's LAN bridge, the
    # instance's MAC.
    guest = Netns("g")
    try:
        cluster.ns.ip("link", "add", "kg0", "type", "veth", "peer", "name",
                      "eth0", "netns", guest.name)
        cluster.ns.ip("link", "set", "kg0", "master", "klan0", "up")
        guest.ip("link", "set", "eth0", "address", inst["macAddress"], "up")
        p, out = _udhcpc(guest, cluster.tmp)
        assert p.returncode == 0, p.stdout + p.stderr + cc.log_text()
        assert f"bound ip={inst['privateIp']} router=10.111.0.1" in out
        assert "dns=192.0.2.53" in out
        leases = (cc.data_dir / "dnsmasq.leases").read_text()
        assert inst["macAddress"] in leases and inst["privateIp"] in leases
        # An unknown MAC gets nothing (static leases only).
        guest.ip("link", "set", "eth0", "down")
        guest.ip("link", "set", "eth0", "address", "d0:0d:de:ad:be:ef", "up")
        (cluster.tmp / "udhcpc.out").unlink()
        p, out = _udhcpc(guest, cluster.tmp)
        assert p.returncode != 0 and "bound" not in out
        # A new instance's lease works at once (hosts file reloaded).
        new = cc.run(1, first=2, reservation="r-2")[0]
        guest.ip("link", "set", "eth0", "down")
        guest.ip("link", "set", "eth0", "address", new["macAddress"], "up")
        p, out = _udhcpc(guest, cluster.tmp)
        assert f"bound ip={new['privateIp']}" in out, out + cc.log_text()
    finally:
        guest.delete()


def test_dnsmasq_restarted_when_it_dies(cluster):
    cc = cluster.make_cc()
    pid_file = cc.data_dir / "dnsmasq.pid"
    pid = int(wait_until(lambda: pid_file.exists() and
                         pid_file.read_text().strip(), what="pid file"))
    # dnsmasq is the CC's child (started by it): signalled by its pid.
    assert open(f"/proc/{pid}/stat").read().split()[3] == str(cc.proc.pid)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pid_file.exists() and
               pid_file.read_text().strip() not in ("", str(pid)),
               timeout=10, what="dnsmasq started again")
    assert "dnsmasq" in cc.log_text() and "exited" in cc.log_text()
    svc = cc.call("DescribeService")
    assert text(svc, "state") in ("ENABLED", "NOTREADY")


def test_bad_input_faults(cluster):
    cc = cluster.make_cc()
    cases = [
        ("Nope", [], "InvalidAction"),
        ("RunInstances", [("reservationId", "r-1")], "MissingParameter"),
        ("RunInstances", [("reservationId", "r-1"), ("ownerId", "1"),
                          ("instanceType", type_items(SMALL))],
         "MissingParameter"),
        ("RunInstances", [("reservationId", "r-1"), ("ownerId", "1"),
                          ("instanceType", type_items(("t", 0, 1, 1))),
                          ("image", [("id", "emi-1"), ("url", "http://x/")]),
                          ("instance", [("instanceId", "i-00000001")])],
         "InvalidParameterValue"),
        ("RunInstances", [("reservationId", "r-1"), ("ownerId", "1"),
                          ("instanceType", type_items(SMALL)),
                          ("image", [("id", "emi-1"), ("url", "http://x/")]),
                          ("instance", [("instanceId", "bogus")])],
         "InvalidInstanceID.Malformed"),
        ("RunInstances", [("reservationId", "r-1"), ("ownerId", "1"),
                          ("instanceType", type_items(SMALL)),
                          ("image", [("id", "emi-1"), ("url", "http://x/")]),
                          ("instance", [("instanceId", "i-00000001")]),
                          ("instance", [("instanceId", "i-00000001")])],
         "InvalidParameterValue"),
        ("TerminateInstances", [], "MissingParameter"),
        ("TerminateInstances", [("instanceId", "i-0000000000000dead")],
         "InvalidInstanceID.NotFound"),
        ("DescribeInstances", [("instanceId", "x-1")],
         "InvalidInstanceID.Malformed"),
        ("GetConsoleOutput", [], "MissingParameter"),
        ("GetConsoleOutput", [("instanceId", "i-0000000000000dead")],
         "InvalidInstanceID.NotFound"),
        ("DescribeResources", [("instanceType", [("cores", "x")])],
         "MissingParameter"),
        ("DescribeResources", [("instanceType", [("name", "a"),
                                                 ("cores", "x")])],
         "InvalidParameterValue"),
        ("NotifyInstanceState", [], "MissingParameter"),
    ]
    for op, items, code in cases:
        with pytest.raises(SoapFault) as e:
            cc.call(op, items)
        assert e.value.code == code, (op, items, e.value)
        assert e.value.status == 500
    # Not XML, not SOAP, not POST.
    for body, code in ((b"<<<", "MalformedXML"),
                       (b"<a/>", "InvalidRequest")):
        status, data = cc.client().raw(body)
        assert status == 500 and code.encode() in data
    status, data = cc.client().raw(None, method="GET")
    assert status == 405
    # Still serving.
    assert text(cc.call("DescribeService"), "name") == "zone-a"


def test_bad_config_is_refused(cluster):
    for conf, words in (({"subnet": "10.111.0.1/16"}, "host bits"),
                        ({"scheduler": "POWERSAVE"}, "scheduler"),
                        ({"netns": "kcc-no-such-ns"}, "kcc-no-such-ns"),
                        ({"nodes": "nc1"}, "nodes")):
        cc = cluster.make_cc(data=f"bad{len(words)}", start=False, **conf)
        cfg = cc.write_config()
        p = subprocess.run([str(CC_BIN), "--config", str(cfg)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0
        assert words in p.stderr, p.stderr


# ---- with the real koala-nc --------------------------------------------------

class RealNC(Process):
    """A koala-nc process (no instances launched by the tests using it
    this way), with its resources set by configuration."""

    def __init__(self, pki, name, tmp, cores, memory_mb, disk_gb, **conf):
        self.name = name
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/"
        cert, key = pki.issue(f"koala-nc-{name}")
        self.dir = Path(tmp) / f"nc-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        c = {"listen": f"127.0.0.1:{self.port}", "data_dir": self.dir / "data",
             "name": name, "tls_cert": cert, "tls_key": key, "ca": pki.ca,
             "max_cores": cores, "max_memory_mb": memory_mb,
             "max_disk_gb": disk_gb, "hypervisor": "tcg"}
        c.update(conf)
        self.conf = self.dir / "nc.conf"
        self.conf.write_text("[nc]\n" + "".join(f"{k} = {v}\n"
                                                 for k, v in c.items()))
        self.log_path = self.dir / "nc.log"

    def argv(self):
        return [NC_BIN, "--config", self.conf]


@pytest.mark.skipif(not NC_BIN.exists(), reason="koala-nc is not built")
def test_real_nc_capacity_and_failure(pki, tmp_path):
    """The CC against two real koala-nc processes (nothing launched):
    polling, capacity numbers, InsufficientInstanceCapacity before any
    node is asked, a node that stops is BROKEN and skipped, and comes back
    when it runs again."""
    ns = Netns("r")
    nc1 = nc2 = cc = None
    try:
        nc1 = RealNC(pki, "nc1", tmp_path, 4, 4096, 100).start()
        nc2 = RealNC(pki, "nc2", tmp_path, 2, 1024, 20).start()
        cc = CC(pki, tmp_path / "cc", ns,
                nodes=f"nc1={nc1.url},nc2={nc2.url}")
        cc.start()
        cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"}, timeout=30)
        res, nodes = cc.resources(SMALL, LARGE)
        assert res == {"m1.small": (6, 6), "m1.large": (3, 3)}
        assert nodes["nc1"]["coresAvailable"] == "4"
        assert nodes["nc2"]["hypervisor"] == "tcg"
        with pytest.raises(SoapFault) as e:
            cc.run(7)
        assert e.value.code == "InsufficientInstanceCapacity"
        assert cc.describe() == {} and cc.dhcp_hosts() == ""
        assert nc2.stop() == 0
        cc.wait_nodes({"nc1": "ENABLED", "nc2": "BROKEN"}, timeout=30)
        assert cc.resources(SMALL)[0]["m1.small"] == (4, 4)
        with pytest.raises(SoapFault) as e:
            cc.run(5)
        assert e.value.code == "InsufficientInstanceCapacity"
        nc2.start()
        cc.wait_nodes({"nc1": "ENABLED", "nc2": "ENABLED"}, timeout=30)
        assert cc.resources(SMALL)[0]["m1.small"] == (6, 6)
        assert text(cc.call("DescribeService"), "state") == "ENABLED"
    finally:
        rc = cc.stop() if cc else None
        for nc in (nc1, nc2):
            if nc:
                nc.stop()
        ns.delete()
    assert rc == 0


# ---- end to end with the real koala-nc --------------------------------------

def _real_nc_ready():
    return NC_BIN.exists() and all(
        (IMAGES / f).exists() for f in ("vmlinuz", "initrd.img", "root.img"))


@pytest.mark.skipif(not _real_nc_ready(),
                    reason="needs build/src/nc/koala-nc and the guest image "
                           "(tests/images/build.sh)")
def test_real_nc_boots_guest_with_cc_lease(cluster, tmp_path):
    """The real path: koala-cc schedules onto a real koala-nc in its own node
    netns (bridge kbr0, joined to the cluster's klan0 by a veth); the guest
    gets its address from the CC's dnsmasq, prints KOALA-GUEST-READY with
    it, and answers HTTP on 8080 from the cluster's router."""
    import http.server
    import hashlib
    import socketserver
    node = Netns("n")
    nc_proc = None
    httpd = None
    try:
        node.ip("link", "add", "kbr0", "type", "bridge")
        node.ip("link", "set", "kbr0", "up")
        cluster.ns.ip("link", "add", "kln0", "type", "veth", "peer", "name",
                      "kup0", "netns", node.name)
        # images over plain HTTP on 127.0.0.1, as presigned URLs would be
        port = free_port()
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(
            *a, directory=str(IMAGES), **kw)
        httpd = socketserver.ThreadingTCPServer(("127.0.0.1", port), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

        def ref(name, rid):
            data = (IMAGES / name).read_bytes()
            return [("id", rid), ("url", f"http://127.0.0.1:{port}/{name}"),
                    ("size", len(data)),
                    ("sha256", hashlib.sha256(data).hexdigest())]

        cert, key = cluster.pki.issue("koala-nc-nc1")
        nc_port = free_port()
        cc = cluster.make_cc(start=False, nodes=f"nc1=https://127.0.0.1:"
                             f"{nc_port}/")
        cc.start()
        cluster.ns.ip("link", "set", "kln0", "master", "klan0", "up")
        node.ip("link", "set", "kup0", "master", "kbr0", "up")
        ncconf = tmp_path / "nc.conf"
        ncconf.write_text(
            "[nc]\n"
            f"listen = 127.0.0.1:{nc_port}\n"
            f"data_dir = {tmp_path / 'nc'}\n"
            "name = nc1\n"
            f"tls_cert = {cert}\ntls_key = {key}\nca = {cluster.pki.ca}\n"
            f"cc_endpoint = {cc.url}\n"
            f"netns = {node.name}\nbridge = kbr0\n"
            "max_cores = 2\nmax_memory_mb = 1024\nmax_disk_gb = 10\n")
        nc_log = open(tmp_path / "nc.log", "ab")
        nc_proc = subprocess.Popen([str(NC_BIN), "--config", str(ncconf)],
                                   stdout=nc_log, stderr=subprocess.STDOUT)
        wait_port(nc_port, nc_proc)
        cc.wait_nodes({"nc1": "ENABLED"}, timeout=60)
        def console(iid):
            out = cc.call("GetConsoleOutput", [("instanceId", iid)])
            return base64.b64decode(text(out, "output") or "").decode(
                errors="replace")

        # Under TCG the guest kernel sometimes never gets past its clock
        # calibration on microvm (a known issue of the guest image, not of
        # the CC): such a launch is ended and tried again, three times.
        hung = []
        for attempt in range(3):
            iid = f"i-0000000000000e2e{attempt}"
            items = [("reservationId", f"r-e2e{attempt}"),
                     ("ownerId", "000000000001"),
                     ("instanceType", type_items(("t1.micro", 1, 256, 1))),
                     ("image", ref("root.img", "emi-00000001")),
                     ("kernel", ref("vmlinuz", "eki-00000001")),
                     ("ramdisk", ref("initrd.img", "eri-00000001")),
                     ("instance", [("instanceId", iid), ("launchIndex", 0)])]
            inst = to_dict(child(cc.call("RunInstances", items), "instance"))
            ip = inst["privateIp"]
            wait_until(lambda: cc.describe(iid)[iid]["state"] == "running",
                       timeout=120, step=1, what="running")
            try:
                wait_until(lambda: "Run /init" in console(iid), timeout=90,
                           step=2, what="the guest kernel starting init")
                break
            except AssertionError:
                hung.append(console(iid)[-300:])
                cc.action("TerminateInstances", iid)
                wait_until(lambda: cc.describe(iid)[iid]["state"] ==
                           "terminated", timeout=120, step=1,
                           what="terminated")
        else:
            pytest.fail("the guest kernel hung in 3 launches:\n" +
                        "\n---\n".join(hung))
        wait_until(lambda: f"KOALA-GUEST-READY ip={ip}" in console(iid),
                   timeout=120, step=2, what="the guest's DHCP address")
        # from the cluster's router, over the LAN the CC serves
        page = wait_until(lambda: (lambda p: p.returncode == 0 and p)(
            cluster.ns.run("curl", "-sf", "--max-time", "5",
                           f"http://{ip}:8080/", check=False)),
            timeout=60, step=1, what="the guest's HTTP page")
        assert page.stdout
        cc.action("TerminateInstances", iid)
        wait_until(lambda: cc.describe(iid)[iid]["state"] == "terminated",
                   timeout=120, step=1, what="terminated")
        wait_until(lambda: inst["macAddress"] not in cc.dhcp_hosts(),
                   what="lease removed")
    finally:
        # koala-nc leaves its QEMUs running when it stops (by design): end
        # the guest this test started, by the pid its NC recorded.
        for pidfile in (tmp_path / "nc" / "instances").glob("*/qemu.pid"):
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        if nc_proc is not None:
            nc_proc.send_signal(signal.SIGTERM)
            try:
                nc_proc.wait(60)
            except subprocess.TimeoutExpired:
                nc_proc.kill()
                nc_proc.wait()
        if httpd is not None:
            httpd.shutdown()
        node.delete()
