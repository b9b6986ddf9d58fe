"""The CC's, the NC's and the SC's SOAP endpoints under hostile requests
(issue 13), over mutual TLS with a certificate of the cloud's CA (the CLC's
for the CC and the SC, a CC's for the NC): a seeded, time-bounded fuzz run each (fuzzsoap:
unknown operations, a Fault as the Body, missing and repeated elements,
huge strings, many attributes, deep nesting, DOCTYPEs, broken framing,
slow and cut connections), TLS without a client certificate, and the known
hostile requests as tests of their own.

Oracles (fuzzlib): the daemon stays up, no sanitizer report, every reply a
SOAP Envelope (faults as soap:Fault with a Koala code, never InternalError
for a bad request), no request over the CPU budget, what was there before
reads back the same (the CC's DescribeService and resources, the NC's
resources, the SC's volumes, snapshots and resources), and nothing written
outside the daemon's data directory.
The CC runs without nodes and the NC without instances: nothing here
boots a guest.  KOALA_FUZZ_SEED / _SECONDS / _CASE: see fuzzlib.
"""
import http.client
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

import fuzzlib
import fuzzsoap
from conftest import KOALA_BIN, PKI, Netns, Process, free_port
from fuzzlib import FuzzRun
from soapclient import SoapClient, client_context, to_dict
from test_cc import CC, CC_BIN
from test_nc import NC_BIN, Node

CC_NS, NC_NS, SC_NS = "urn:koala:cc", "urn:koala:nc", "urn:koala:sc"
SC_BIN = KOALA_BIN.parent.parent / "sc" / "koala-sc"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="the CC's and NC's network namespaces need root and iproute2")

CC_OPS = {
    "DescribeService": [],
    "DescribeResources": ["instanceType"],
    "RunInstances": ["reservationId", "ownerId", "instanceType", "image",
                     "kernel", "ramdisk", "instance", "userData", "keyName"],
    "DescribeInstances": ["instanceId"],
    "TerminateInstances": ["instanceId"],
    "RebootInstances": ["instanceId"],
    "StopInstances": ["instanceId"],
    "StartInstances": ["instanceId"],
    "GetConsoleOutput": ["instanceId"],
    "NotifyInstanceState": ["node", "instance"],
    "ConfigureNodes": ["node"],
    "SetPublicAddresses": ["version", "address"],
    "DescribePublicAddresses": [],
    "AttachVolume": ["instanceId", "volumeId", "device", "export"],
    "DetachVolume": ["instanceId", "volumeId", "force"],
}
NC_OPS = {
    "ncDescribeResource": [],
    "ncDescribeInstances": ["instanceId"],
    "ncRunInstance": ["instanceId", "reservationId", "ownerId",
                      "launchIndex", "instanceType", "image", "kernel",
                      "ramdisk", "net", "userData", "keyName"],
    "ncTerminateInstance": ["instanceId"],
    "ncRebootInstance": ["instanceId"],
    "ncStopInstance": ["instanceId"],
    "ncStartInstance": ["instanceId"],
    "ncGetConsoleOutput": ["instanceId"],
    "ncAttachVolume": ["instanceId", "volumeId", "device", "export"],
    "ncDetachVolume": ["instanceId", "volumeId", "force"],
}


# Every value an SC operation takes is one it must refuse (a malformed or
# unknown id, a size that is no size, a node name that is no name), so a
# run changes nothing and the oracle can say so.
SC_OPS = {
    "CreateVolume": ["volumeId", "sizeBytes", "snapshotId"],
    "DeleteVolume": ["volumeId"],
    "ResizeVolume": ["volumeId", "sizeBytes"],
    "DescribeVolumes": ["volumeId"],
    "ExportVolume": ["volumeId", "node"],
    "UnexportVolume": ["volumeId", "node"],
    "CreateSnapshot": ["snapshotId", "volumeId"],
    "DeleteSnapshot": ["snapshotId"],
    "DescribeSnapshots": ["snapshotId"],
    "DescribeResources": [],
}


def sc_values(r, name):
    return {
        "volumeId": r.choice(["vol-0000000000000001", "vol-00000001",
                              "vol-" + "f" * 100, "vol-../../etc", "",
                              "vol-0000000000000001/../x", "snap-00000001"]),
        "snapshotId": r.choice(["snap-0000000000000001", "snap-00000001",
                                "snap-../x", "vol-00000001", ""]),
        "sizeBytes": r.choice(["0", "-1", "1073741825", "x", "",
                               "99999999999999999999", "17592186044416000",
                               "1073741824.5"]),
        "node": r.choice(["a/b", "x" * 500, "", "../n", "n1;rm"]),
    }.get(name)


def values(r, name):
    """Plausible values, so that requests get past the first checks."""
    return {
        "instanceId": r.choice(["i-0000000000000001", "i-00000001",
                                "i-" + "f" * 100, "i-../../etc",
                                "i-0000000000000001/../x"]),
        "reservationId": "r-0000000000000001",
        "ownerId": "000000000001",
        "launchIndex": r.choice(["0", "-1", "99999999999999999999"]),
        "name": r.choice(["m1.small", "nc1", "x" * 300]),
        "cores": r.choice(fuzzlib.NUMBERS),
        "memoryMb": r.choice(fuzzlib.NUMBERS),
        "diskGb": r.choice(fuzzlib.NUMBERS),
        "url": r.choice(["http://127.0.0.1:1/x?sig=y", "file:///etc/passwd",
                         "gopher://127.0.0.1:1/", "http://[::1", ""]),
        "node": r.choice(["nc1", "node1", "x" * 500]),
        "endpoint": r.choice(["https://127.0.0.1:1/", "x", ""]),
        "version": r.choice(["1", "0", "-1", "99999999999999999999", "x"]),
        "volumeId": r.choice(["vol-0000000000000001a", "vol-0000001a",
                              "vol-../../x", "vol-" + "f" * 300]),
        "device": r.choice(["/dev/sdf", "xvdf", "/dev/../sda", "sd,f"]),
        "force": r.choice(["true", "false", "1", "yes"]),
    }.get(name)


def tree(d, skip):
    """Every path under d but those under skip, and the log."""
    out = set()
    for root, dirs, files in os.walk(d):
        if os.path.abspath(root).startswith(os.path.abspath(skip)):
            continue
        for f in dirs + files:
            p = os.path.join(root, f)
            if not p.startswith(os.path.abspath(skip)) and \
                    not p.endswith(".log"):
                out.add(p)
    return out


@pytest.fixture(scope="module")
def fz_pki(tmp_path_factory):
    if not KOALA_BIN.exists() or not CC_BIN.exists() or not NC_BIN.exists():
        pytest.fail("koala, koala-cc or koala-nc is not built")
    p = PKI.create(tmp_path_factory.mktemp("fuzz-pki"))
    for n in ("koala-cc-zone-a", "koala-clc", "koala-nc-node1",
              "koala-cc-test"):
        p.issue(n)
    return p


@pytest.fixture
def fz_cc(fz_pki, tmp_path):
    ns = Netns("fz")
    cc = None
    try:
        cc = CC(fz_pki, tmp_path / "cc", ns, poll_interval="1",
                log_level="info")
        cc.start()
        yield cc
    finally:
        if cc is not None and cc.proc is not None:
            cc.rc = cc.stop(timeout=10)
        ns.delete()


@pytest.fixture
def fz_nc(fz_pki, tmp_path):
    ns = Netns("fzn")
    node = None
    try:
        ns.ip("link", "add", "kbr0", "type", "bridge")
        ns.ip("link", "set", "kbr0", "up")
        node = Node(tmp_path / "node", fz_pki, netns=ns.name, bridge="kbr0",
                    hypervisor="tcg", stop_timeout=10)
        node.start()
        yield node
    finally:
        if node is not None and node.proc is not None:
            node.stop(timeout=10)
        ns.delete()


class SC(Process):
    """koala-sc with a certificate of the test PKI, no Walrus."""

    def __init__(self, pki, data_dir):
        self.pki = pki
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.log_path = self.data_dir.parent / "sc.log"

    def argv(self):
        cert, key = self.pki.issue("koala-sc-fz")
        conf = self.data_dir.parent / "sc.conf"
        conf.write_text(
            f"[sc]\nlisten = 127.0.0.1:{self.port}\n"
            f"data_dir = {self.data_dir}\nname = fz\n"
            f"tls_cert = {cert}\ntls_key = {key}\nca = {self.pki.ca}\n"
            "capacity_gb = 10\n")
        return [SC_BIN, "--config", conf]


@pytest.fixture
def fz_sc(fz_pki, tmp_path):
    sc = SC(fz_pki, tmp_path / "sc")
    try:
        sc.start()
        yield sc
    finally:
        if sc.proc is not None:
            sc.stop(timeout=10)


def _run(name, daemon, port, ctx, gen, tmp_path, seconds, snapshot):
    before = snapshot()
    run = FuzzRun(name, daemon, port, tmp_path, tls=ctx)
    try:
        run.run(gen.case, seconds)
    finally:
        print(run.report())
    assert snapshot() == before
    run.assert_clean()
    rc = daemon.stop(timeout=15)
    log = daemon.log_text()
    assert rc == 0, f"{name} exited with {rc}:\n{log[-3000:]}"
    assert not fuzzlib.sanitizer_lines(log)


def test_fuzz_cc(fz_cc, fz_pki, tmp_path):
    cc = fz_cc
    base = cc.data_dir.parent

    def snapshot():
        svc = to_dict(cc.call("DescribeService"))
        svc.pop("time", None)
        return (svc, to_dict(cc.call("DescribeResources")),
                tree(base, cc.data_dir))
    gen = fuzzsoap.SoapGen(CC_OPS, CC_NS, cc.port, values)
    _run("cc", cc, cc.port, fz_pki.ctx("koala-clc"), gen, tmp_path,
         fuzzlib.SECONDS, snapshot)


def test_fuzz_nc(fz_nc, fz_pki, tmp_path):
    node = fz_nc

    def snapshot():
        return (node.resource(), tree(node.base, node.data))
    gen = fuzzsoap.SoapGen(NC_OPS, NC_NS, node.port, values)
    _run("nc", node, node.port, fz_pki.ctx("koala-cc-test"), gen, tmp_path,
         fuzzlib.SECONDS, snapshot)


def test_fuzz_sc(fz_sc, fz_pki, tmp_path):
    sc = fz_sc
    client = SoapClient(f"https://127.0.0.1:{sc.port}/", SC_NS,
                        ctx=fz_pki.ctx("koala-clc"))

    def snapshot():
        return tuple(to_dict(client.call(op)) for op in
                     ("DescribeVolumes", "DescribeSnapshots",
                      "DescribeResources")) + (tree(sc.data_dir.parent,
                                                    sc.data_dir),)
    gen = fuzzsoap.SoapGen(SC_OPS, SC_NS, sc.port, sc_values)
    _run("sc", sc, sc.port, fz_pki.ctx("koala-clc"), gen, tmp_path,
         fuzzlib.SECONDS, snapshot)


# ---- the known hostile requests -------------------------------------------------

def one(daemon, ctx, data, timeout=20.0, budget=None):
    budget = budget or fuzzlib.CPU_BUDGET
    c0 = fuzzlib.cpu_seconds(daemon.proc.pid)
    ex = fuzzlib.exchange(daemon.port, data, tls=ctx, timeout=timeout)
    c1 = fuzzlib.cpu_seconds(daemon.proc.pid)
    time.sleep(0.1)
    assert daemon.proc.poll() is None, daemon.log_text()[-3000:]
    assert not fuzzlib.sanitizer_lines(daemon.log_text())
    cpu = (c1 or 0) - (c0 or 0)
    print(f"CPU {cpu:.3f} s, wall {ex.wall:.3f} s, {ex.reply!r}")
    assert cpu <= budget, f"{cpu:.2f} s of CPU for one request"
    assert ex.reply is not None, f"no reply: {ex.error}"
    bad = fuzzlib.check_soap_reply(ex.reply)
    assert bad is None, bad
    return ex.reply


@pytest.fixture(params=["cc", "nc"])
def endpoint(request, fz_pki):
    """(daemon, client context, namespace, an operation) of the CC or NC."""
    if request.param == "cc":
        d = request.getfixturevalue("fz_cc")
        return d, fz_pki.ctx("koala-clc"), CC_NS, "DescribeInstances"
    d = request.getfixturevalue("fz_nc")
    return d, fz_pki.ctx("koala-cc-test"), NC_NS, "ncDescribeInstances"


def test_body_is_a_fault(endpoint):
    """A request whose Body is a Fault is the client's mistake (it got
    HTTP 500 InternalError), also past 512 distinct codes (a peer's codes
    filled a process-wide table), and real codes still come back."""
    d, ctx, ns, op = endpoint
    conn = None
    for i in range(600):
        # one connection, kept alive (600 TLS handshakes cost seconds)
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", d.port,
                                               context=ctx, timeout=20)
        try:
            conn.request("POST", "/", body=fuzzsoap.fault(
                f"PeerCode{i}", "from a peer"), headers={
                    "Content-Type": "text/xml; charset=utf-8",
                    "SOAPAction": '"x"'})
            resp = conn.getresponse()
            reply = fuzzlib.Reply(resp.status, [(k.lower(), v) for k, v in
                                                resp.getheaders()],
                                  resp.read(), b"")
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            conn = None
            raise AssertionError(f"fault {i}: {e!r}")
        if i in (0, 599):
            bad = fuzzlib.check_soap_reply(reply)
            assert bad is None, (i, bad)
    if conn is not None:
        conn.close()
    r = one(d, ctx, fuzzsoap.post(d.port, fuzzsoap.envelope(
        f'<{op} xmlns="{ns}"><instanceId>bogus</instanceId></{op}>')))
    assert b"InvalidInstanceID.Malformed" in r.body, r


@pytest.mark.parametrize("n", [100_000])
def test_many_attributes(endpoint, n):
    """The operation's element with 100 000 attributes (~30 s of CPU in
    libxml2 before a bound)."""
    d, ctx, ns, op = endpoint
    r = one(d, ctx, fuzzsoap.post(
        d.port, fuzzsoap.attributes_envelope(op, ns, n)), timeout=10)
    assert r.status == 500


def test_no_client_certificate(endpoint, fz_pki):
    """TLS without a client certificate: refused (403 as a SOAP fault, or
    at the handshake), and the daemon serves its peers afterwards."""
    d, ctx, ns, op = endpoint
    anon = client_context(fz_pki.ca)
    for data in (fuzzsoap.post(d.port, fuzzsoap.envelope(
            f'<{op} xmlns="{ns}"/>')), b"GET / HTTP/1.1\r\n\r\n",
            fuzzsoap.post(d.port, fuzzsoap.attributes_envelope(op, ns, 2000))):
        ex = fuzzlib.exchange(d.port, data, tls=anon, timeout=10)
        if ex.reply is not None:
            assert ex.reply.status == 403, ex.reply
        assert d.proc.poll() is None
    # a TLS handshake cut half way, and plain HTTP on the TLS port
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    s.close()
    ex = fuzzlib.exchange(d.port, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                          timeout=5)
    time.sleep(0.2)
    assert d.proc.poll() is None
    r = one(d, ctx, fuzzsoap.post(d.port, fuzzsoap.envelope(
        f'<{op} xmlns="{ns}"/>')))
    assert r.status == 200
