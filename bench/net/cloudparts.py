"""bench/net's real cloud: a CLC, Walrus, a CC with an uplink and a public
pool (tests/integration/cloud.py, outside=True), a real koala-nc (nc1)
with two busybox guests under TCG, and a second node (nc2) that is the CC
suite's FakeNC (tests/integration/test_cc.py): it answers the node
protocol from memory, so the 198 other instances are real to the CLC and
the CC (launched, placed, given addresses, listed in the policy
documents) but run nowhere.  It also holds the policy documents the CC
pushes, so that the CC places instances on it."""
import json
import re
import time

from netlib import ROOT  # noqa: F401  (puts tests/integration on the path)

from cloud import Cloud
from conftest import KOALA_BIN, sh
from test_cc import FakeNC

READY = "KOALA-GUEST-READY"


class _Pki:
    """What FakeNC asks of a PKI, answered with the cloud's own node
    certificate for the fake (from `koala register node`)."""

    def __init__(self, cloud, name):
        self.cert, self.key = cloud.certs("node", name)
        self.ca = cloud.ca

    def issue(self, name, server=True):
        return self.cert, self.key


class PolicyNC(FakeNC):
    """FakeNC that also holds network policy documents."""

    def __init__(self, pki, name, cores, memory_mb, disk_gb):
        super().__init__(pki, name, cores, memory_mb, disk_gb)
        self.policy_version = 0
        self.start_s = 0.0

    def handle(self, op, el, req):
        from soapclient import text
        if op == "ncSetNetworkPolicy":
            with self.lock:
                v = int(text(el, "version"))
                self.policy_version = max(self.policy_version, v)
                return [("version", self.policy_version)]
        out = super().handle(op, el, req)
        if op == "ncDescribeResource":
            out = out + [("networkPolicyVersion", self.policy_version)]
        return out


class BenchCloud(Cloud):
    """nc1 is a real koala-nc; nc2 is PolicyNC, closed (no capacity) until
    open_fake()."""

    def __init__(self, base):
        super().__init__(base, n_nodes=2, node_cores=2,
                         node_memory_mb=2048, outside=True,
                         hypervisor="auto")
        self.fake = None

    def start_nc(self, name):
        if name != "nc2":
            return super().start_nc(name)
        self.fake = PolicyNC(_Pki(self, name), name, 0, 0, 0)
        self.fake.server.port = self.nodes[name]
        self.fake.start()
        return self.fake

    def open_fake(self):
        with self.fake.lock:
            self.fake.max = (1000, 1024 * 1024, 100000)

    def stop(self):
        rcs = super().stop()
        if self.fake:
            self.fake.stop()
        return rcs


def wait_for(fn, timeout, what, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


def instances(ec2, ids=None):
    kw = {"InstanceIds": ids} if ids else {}
    out = []
    for page in ec2.get_paginator("describe_instances").paginate(**kw):
        for r in page["Reservations"]:
            out += r["Instances"]
    return out


def mac_of(i):
    nics = i.get("NetworkInterfaces") or [{}]
    return nics[0].get("MacAddress")


def nc_log_pushes(cloud, version):
    """ms of the CC's push of that version to nc1 (ncSetNetworkPolicy,
    which answers once the NC's nft has run), from the CC's log."""
    text = (cloud.base / "cc.log").read_text(errors="replace")
    m = re.findall(r"node nc1: network policy version (\d+) held \(pushed "
                   r"(\d+) in (\d+) ms\)", text)
    for held, pushed, ms in reversed(m):
        if int(pushed) == version:
            return int(ms)
    return None


def held_policy(cloud, node="nc1"):
    p = cloud.dir / node / "netpolicy.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def pool_known(cloud):
    return "100.64.112.16" in sh(KOALA_BIN, "addresses", "--data-dir",
                                 cloud.dir).stdout
