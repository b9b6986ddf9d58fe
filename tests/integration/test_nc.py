"""koala-nc, the node controller, driven the way its CC drives it: SOAP over
mutual TLS with certificates from `koala ca`, real QEMU (TCG here; KVM where
it works), the guest image of tests/images/build.sh served over plain HTTP
with presigned-looking URLs, taps in a bridge inside a network namespace
this suite creates, with a dnsmasq in it so the guest gets an address and
prints its KOALA-GUEST-READY marker.

Covered: resources; refusing peers without (or with a foreign) client
certificate; faults for bad input; the whole lifecycle (run, reboot, stop,
start, terminate: files, tap and resources freed); one download for
concurrent launches of an image; an image that is not what was promised;
capacity; a koala-nc restarted (and killed) under a running instance; a
QEMU killed with SIGKILL; a guest that powered off while koala-nc was
down; a guest left paused by a koala-nc killed mid-launch; the choice of KVM or TCG with a QEMU that pretends to have KVM;
NotifyInstanceState pushed to a CC.

Every process is started here and stopped by its PID; QEMUs that koala-nc
leaves running by design are ended through the pid files of the instances
this suite created; the namespace is deleted at the end.
"""
import base64
import hashlib
import http.server
import json
import os
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (BUILD, KOALA_BIN, PKI, ROOT, Netns, Process,
                      free_port, qmp_command, sh, wait_until)
from soapclient import (SoapClient, SoapFault, SoapServer, child, children,
                        parse_reply, text, to_dict)

NC_BIN = BUILD / "src" / "nc" / "koala-nc"
IMAGES = Path(os.environ.get("KOALA_IMAGES", ROOT / "build" / "images"))
NS = "urn:koala:nc"
TINY = {"name": "t1.micro", "cores": 1, "memoryMb": 256, "diskGb": 1}


def new_id():
    return "i-" + os.urandom(9).hex()[:17]


def new_mac():
    return "d0:0d:" + ":".join(f"{b:02x}" for b in os.urandom(4))


def pid_alive(pid, needle):
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
            errors="replace")
    except OSError:
        return False


def qemu_niceness(pid):
    """(niceness of every thread of pid, or a list when they differ; the
    autogroup's niceness, or that same value on a kernel without
    autogroups)."""
    tasks = Path(f"/proc/{pid}/task")
    nices = {int((t / "stat").read_text().rsplit(")", 1)[1].split()[16])
             for t in tasks.iterdir()}
    thread = nices.pop() if len(nices) == 1 else sorted(nices)
    try:
        group = int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except FileNotFoundError:
        group = thread
    return thread, group


# ---- fixtures: certificates, images, network --------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not NC_BIN.exists() or not KOALA_BIN.exists():
        pytest.fail(f"{NC_BIN} or {KOALA_BIN} is not built")
    p = PKI.create(tmp_path_factory.mktemp("pki"))
    p.issue("koala-cc-test", server=True)
    return p


@pytest.fixture(scope="module")
def images():
    """The guest image, built (idempotently) if it is not there."""
    sh("bash", ROOT / "tests" / "images" / "build.sh", IMAGES)
    for f in ("vmlinuz", "initrd.img", "root.img", "disk.qcow2"):
        assert (IMAGES / f).stat().st_size > 0
    return IMAGES


class ImageServer:
    """Serves files over HTTP on 127.0.0.1 like presigned Walrus GETs (the
    query is ignored); counts GETs per file; `delay` holds each reply so
    that concurrent downloads overlap."""

    def __init__(self, root):
        self.root = Path(root)
        self.gets = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.split("?", 1)[0].lstrip("/")
                with outer.lock:
                    outer.gets[name] = outer.gets.get(name, 0) + 1
                time.sleep(outer.delay)
                p = outer.root / name
                if "/" in name or not p.is_file():
                    self.send_error(404)
                    return
                data = p.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ref(self, name, image_id, sha=None, size=None):
        data = (self.root / name).read_bytes()
        return {"id": image_id,
                "url": f"http://127.0.0.1:{self.port}/{name}?X-Amz-Algorithm"
                       f"=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-"
                       f"Signature=deadbeefsecret{os.urandom(4).hex()}",
                "size": size if size is not None else len(data),
                "sha256": sha or hashlib.sha256(data).hexdigest()}

    def count(self, name):
        with self.lock:
            return self.gets.get(name, 0)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def imgsrv(images):
    s = ImageServer(images)
    yield s
    s.close()


class NodeNet(Netns):
    """A node network namespace: bridge kbr0 (10.77.0.1/24) and a dnsmasq
    handing out addresses on it, so guests print their READY marker."""

    def __init__(self, tmp):
        super().__init__(prefix="knc")
        self.ip("link", "add", "kbr0", "type", "bridge")
        self.ip("addr", "add", "10.77.0.1/24", "dev", "kbr0")
        self.ip("link", "set", "kbr0", "up")
        # `ip netns exec` execs dnsmasq itself: this pid is dnsmasq's.
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "dnsmasq", "--keep-in-"
             "foreground", "--conf-file=/dev/null", "--port=0",
             "--interface=kbr0", "--bind-interfaces", "--no-ping",
             "--dhcp-range=10.77.0.50,10.77.0.250,255.255.255.0,1h",
             f"--dhcp-leasefile={tmp}/leases", f"--pid-file={tmp}/dns.pid",
             "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def bridged(self):
        """Names of the interfaces in kbr0."""
        out = self.ip("-o", "link", "show", "master", "kbr0").stdout
        return {line.split(":")[1].strip().split("@")[0]
                for line in out.splitlines() if ":" in line}

    def exists(self, dev):
        return self.ip("link", "show", "dev", dev, check=False).returncode == 0

    def close(self):
        if self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait(10)
        self.delete()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the node controller's tests need root (netns, taps)")
    n = NodeNet(tmp_path_factory.mktemp("net"))
    yield n
    n.close()


# ---- a fake CC that records NotifyInstanceState -----------------------------

class FakeCC:
    """Stands for the CC the NC pushes NotifyInstanceState to (mutual TLS):
    records each instance's reported states."""

    def __init__(self, pki):
        cert, key = pki.issue("koala-cc-test")
        self.notes = []
        self.lock = threading.Lock()
        self.server = SoapServer(free_port(), cert, key, pki.ca, "urn:koala:cc",
                                 self._notify).start()
        self.url = self.server.url

    def _notify(self, name, op, request):
        node = text(op, "node")
        with self.lock:
            for i in children(op, "instance"):
                d = to_dict(i)
                self.notes.append((node, d["instanceId"], d["state"],
                                   d.get("stateReasonCode")))
        return ()

    def states(self, iid):
        with self.lock:
            return [(s, r) for (_, i, s, r) in self.notes if i == iid]

    def close(self):
        self.server.stop()


@pytest.fixture(scope="module")
def cc(pki):
    c = FakeCC(pki)
    yield c
    c.close()


# ---- koala-nc ---------------------------------------------------------------

class Node(Process):
    """One koala-nc with its own data directory and configuration file."""
    start_timeout = 60
    stop_timeout = 60

    def __init__(self, base, pki, name="node1", **cfg):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "data"
        self.name = name
        self.port = free_port()
        self.pki = pki
        self.cert, self.key = pki.issue(f"koala-nc-{name}")
        self.conf = self.base / "nc.conf"
        settings = {"data_dir": self.data, "name": name,
                    "tls_cert": self.cert, "tls_key": self.key,
                    "ca": pki.ca, "max_cores": 4, "max_memory_mb": 2048,
                    "max_disk_gb": 20, "stop_timeout": 60,
                    "log_level": "info"}
        settings.update(cfg)
        self.conf.write_text("[nc]\n" + "".join(
            f"{k} = {v}\n" for k, v in settings.items() if v is not None))
        self.log_path = self.base / "nc.log"
        self.started = set()  # instance ids this test launched here
        self.client = SoapClient(f"https://127.0.0.1:{self.port}/", NS,
                                 ca=pki.ca, cert=pki.dir / "koala-cc-test.pem",
                                 key=pki.dir / "koala-cc-test.key",
                                 timeout=60)

    def argv(self):
        return [NC_BIN, "--config", self.conf, "--listen",
                f"127.0.0.1:{self.port}"]

    def call(self, op, **body):
        return self.client.call(op, body)

    def resource(self):
        r = to_dict(self.call("ncDescribeResource"))
        return {k: (v if k in ("node", "hypervisor") else int(v))
                for k, v in r.items()}

    def describe(self, iid):
        return to_dict(child(self.call("ncDescribeInstances",
                                       instanceId=iid), "instance"))

    def state(self, iid):
        return self.describe(iid)["state"]

    def wait_state(self, iid, state, timeout=120):
        return wait_until(lambda: self.state(iid) == state and
                          self.describe(iid), timeout=timeout, step=0.05,
                          what=f"{iid} {state} (log: {self.log_tail()})")

    def console(self, iid):
        r = self.call("ncGetConsoleOutput", instanceId=iid)
        return base64.b64decode(text(r, "output") or "").decode(
            errors="replace")

    def wait_console(self, iid, needle, count=1, timeout=180):
        def seen():
            out = self.console(iid)
            return out if out.count(needle) >= count else None
        return wait_until(seen, timeout=timeout, step=0.1,
                          what=f"{needle!r} x{count} on {iid}'s console")

    def run(self, imgsrv, iid=None, itype=TINY, kernel=True, image=None,
            **extra):
        iid = iid or new_id()
        body = {"instanceId": iid, "reservationId": "r-" + iid[2:],
                "ownerId": "000000000001", "launchIndex": 0,
                "instanceType": itype,
                "image": image or imgsrv.ref("root.img" if kernel else
                                             "disk.qcow2", "emi-00000001")}
        if kernel:
            body["kernel"] = imgsrv.ref("vmlinuz", "eki-00000001")
            body["ramdisk"] = imgsrv.ref("initrd.img", "eri-00000001")
        body["net"] = {"macAddress": new_mac(), "network": "default",
                       "bridge": ""}
        body.update(extra)
        self.started.add(iid)
        return to_dict(child(self.client.call("ncRunInstance", body),
                             "instance"))

    def inst_dir(self, iid):
        return self.data / "instances" / iid

    def qemu_pid(self, iid):
        try:
            return int((self.inst_dir(iid) / "qemu.pid").read_text())
        except (OSError, ValueError):
            return None

    def tap(self, iid):
        return json.loads((self.inst_dir(iid) / "instance.json")
                          .read_text())["tap"]

    def log_tail(self):
        return self.log_text()[-1500:]

    def cleanup(self):
        """Ends the QEMUs of instances this test launched (koala-nc leaves
        them running when it stops, by design), then stops koala-nc."""
        if self.proc is not None and self.proc.poll() is None:
            for iid in self.started:
                try:
                    self.call("ncTerminateInstance", instanceId=iid)
                except (SoapFault, OSError):
                    pass
            for iid in self.started:
                try:
                    wait_until(lambda: self.state(iid) == "terminated",
                               timeout=30, what="terminated")
                except (AssertionError, SoapFault, OSError):
                    pass
        rc = self.stop()
        for iid in self.started:
            pid = self.qemu_pid(iid)
            if pid and pid_alive(pid, iid):
                os.kill(pid, signal.SIGKILL)
        return rc


@pytest.fixture(scope="module")
def node(tmp_path_factory, pki, net, cc, images):
    """The shared koala-nc of the suite: node netns, notifications to the
    fake CC."""
    n = Node(tmp_path_factory.mktemp("node"), pki, netns=net.name,
             bridge="kbr0", cc_endpoint=cc.url).start()
    yield n
    rc = n.cleanup()
    # A clean shutdown is part of the contract (and ASan reports leaks).
    assert rc == 0, f"koala-nc exited with {rc}:\n{n.log_text()[-4000:]}"
    assert "deadbeefsecret" not in n.log_text()


# ---- tests ------------------------------------------------------------------

def test_describe_resource(node):
    r = node.resource()
    assert r["node"] == "node1"
    assert r["coresMax"] == 4 and r["memoryMbMax"] == 2048
    assert r["diskGbMax"] == 20
    assert r["hypervisor"] in ("kvm", "tcg")
    if not os.path.exists("/dev/kvm"):
        assert r["hypervisor"] == "tcg"


def test_peers_without_our_certificate_are_refused(node, pki, tmp_path):
    # No client certificate: HTTP 403, nothing happens.
    anon = SoapClient(f"https://127.0.0.1:{node.port}/", NS, ca=pki.ca)
    with pytest.raises(SoapFault) as e:
        anon.call("ncDescribeResource")
    assert e.value.status == 403
    # A certificate from another CA: refused too (403 or no TLS at all).
    other = tmp_path / "other"
    other.mkdir()
    stranger = PKI.create(other)
    cert, key = stranger.issue("koala-cc-stranger")
    c = SoapClient(f"https://127.0.0.1:{node.port}/", NS, ca=pki.ca,
                   cert=cert, key=key)
    try:
        c.call("ncDescribeResource")
        raise AssertionError("a foreign certificate was accepted")
    except SoapFault as f:
        assert f.status == 403
    except (ssl.SSLError, ConnectionError):
        pass


def fault(fn, *a, **kw):
    with pytest.raises(SoapFault) as e:
        fn(*a, **kw)
    return e.value


def test_bad_requests_are_faults(node, imgsrv):
    c = node.client
    f = fault(c.call, "ncNoSuchThing")
    assert f.code == "InvalidAction"
    assert f.faultcode.endswith("Client")
    status, data = c.raw(b"<soap:Envelope><unclosed")
    f = fault(parse_reply, status, data)
    assert status == 500 and f.code == "MalformedXML"
    status, data = c.raw(b"<?xml version='1.0'?><notsoap/>")
    assert fault(parse_reply, status, data).code == "InvalidRequest"
    status, _ = c.raw(b"", method="GET")
    assert status == 405
    # Unknown and malformed instance ids, for every operation.
    for op in ("ncTerminateInstance", "ncRebootInstance", "ncStopInstance",
               "ncStartInstance", "ncGetConsoleOutput",
               "ncDescribeInstances"):
        assert fault(node.call, op, instanceId="i-0000000000000dead").code \
            == "InvalidInstanceID.NotFound", op
        assert fault(node.call, op, instanceId="i-nope/../x").code == \
            "InvalidInstanceID.Malformed", op
    assert fault(node.call, "ncTerminateInstance").code == "MissingParameter"
    # ncRunInstance: missing and malformed parameters.
    bad = [({"image": None}, "MissingParameter"),
           ({"net": {"macAddress": "zz:zz"}}, "InvalidParameterValue"),
           ({"net": {"macAddress": "d1:0d:00:00:00:01"}},
            "InvalidParameterValue"),
           ({"net": {"macAddress": new_mac(), "bridge": "br0; rm -rf"}},
            "InvalidParameterValue"),
           ({"instanceType": {"name": "x", "cores": 0, "memoryMb": 256,
                              "diskGb": 1}}, "InvalidParameterValue"),
           ({"instanceType": {"name": "x", "cores": 1, "memoryMb": 256}},
            "MissingParameter"),
           ({"image": dict(imgsrv.ref("root.img", "emi-1"), sha256="12")},
            "InvalidParameterValue"),
           ({"image": dict(imgsrv.ref("root.img", "emi-1"),
                           url="file:///etc/passwd")},
            "InvalidParameterValue"),
           ({"userData": "%%% not base64"}, "InvalidParameterValue"),
           ({"instanceId": "instance-1"}, "InvalidInstanceID.Malformed")]
    before = node.resource()
    for extra, code in bad:
        iid = new_id()
        body = {"instanceId": iid, "reservationId": "r-1",
                "ownerId": "000000000001", "instanceType": TINY,
                "image": imgsrv.ref("root.img", "emi-00000001"),
                "net": {"macAddress": new_mac()}}
        body.update(extra)
        f = fault(node.client.call, "ncRunInstance", body)
        assert f.code == code, (extra, f.code, f.message)
        assert fault(node.call, "ncDescribeInstances",
                     instanceId=iid).code == "InvalidInstanceID.NotFound"
    # More than the node has.
    big = {"name": "x9.huge", "cores": 64, "memoryMb": 256, "diskGb": 1}
    f = fault(node.run, imgsrv, itype=big)
    assert f.code == "InsufficientInstanceCapacity"
    assert "64 cores" in f.message
    assert node.resource() == before


def test_lifecycle(node, imgsrv, net, cc):
    """run -> running (READY on the console, tap in the bridge, overlay on
    the cached image) -> reboot -> stop -> start -> terminate, with the
    node's resources and files following."""
    before = node.resource()
    t0 = time.monotonic()
    inst = node.run(imgsrv)
    iid = inst["instanceId"]
    assert inst["state"] == "pending"
    assert inst["node"] == "node1" and inst["hypervisor"] in ("kvm", "tcg")
    node.wait_state(iid, "running")
    t_running = time.monotonic() - t0
    out = node.wait_console(iid, "KOALA-GUEST-READY ip=10.77.0.")
    t_ready = time.monotonic() - t0
    assert "KOALA-GUEST-DISKS vda vdb emi=koala-test-emi" in out
    r = node.resource()
    assert r["coresAvailable"] == before["coresAvailable"] - 1
    assert r["memoryMbAvailable"] == before["memoryMbAvailable"] - 256
    assert r["diskGbAvailable"] == before["diskGbAvailable"] - 1
    assert r["instanceCount"] == before["instanceCount"] + 1
    tap = node.tap(iid)
    assert tap in net.bridged()
    d = node.inst_dir(iid)
    for f in ("instance.json", "root.qcow2", "ephemeral.qcow2",
              "console.log", "qemu.pid"):
        assert (d / f).exists(), f
    info = json.loads(sh("qemu-img", "info", "-U", "--output=json",
                         d / "root.qcow2").stdout)
    assert info["backing-filename"].startswith(str(node.data / "cache"))
    assert info["backing-filename-format"] == "raw"
    eph = json.loads(sh("qemu-img", "info", "-U", "--output=json",
                        d / "ephemeral.qcow2").stdout)
    assert eph["virtual-size"] == 1 << 30 and eph["actual-size"] < 1 << 20
    pid = node.qemu_pid(iid)
    assert qemu_niceness(pid) == (10, 10)  # vm_nice's default
    rss = int([l for l in Path(f"/proc/{pid}/status").read_text()
               .splitlines() if l.startswith("VmRSS:")][0].split()[1])
    print(f"\nfirst launch: running {t_running:.1f}s, READY {t_ready:.1f}s, "
          f"QEMU RSS {rss // 1024} MiB")

    # Reboot: a hardware reset; the guest boots again.
    assert to_dict(child(node.call("ncRebootInstance", instanceId=iid),
                         "instance"))["state"] == "running"
    node.wait_console(iid, "KOALA-GUEST-READY", count=2)
    assert node.qemu_pid(iid) == pid

    # Stop: the guest powers off, QEMU and the tap go, the disks stay.
    r = to_dict(child(node.call("ncStopInstance", instanceId=iid),
                      "instance"))
    assert r["state"] == "stopping"
    st = node.wait_state(iid, "stopped", timeout=90)
    assert st["stateReasonCode"] == "Client.UserInitiatedShutdown"
    assert "KOALA-GUEST-SHUTDOWN" in node.console(iid)
    assert not pid_alive(pid, iid)
    assert not net.exists(tap)
    assert (d / "root.qcow2").exists() and (d / "ephemeral.qcow2").exists()
    assert fault(node.call, "ncRebootInstance", instanceId=iid).code == \
        "IncorrectInstanceState"
    # Stopping a stopped instance changes nothing.
    assert node.state(iid) == "stopped"
    node.call("ncStopInstance", instanceId=iid)
    assert node.state(iid) == "stopped"

    # Start: boots again from the same disks.
    t0 = time.monotonic()
    r = to_dict(child(node.call("ncStartInstance", instanceId=iid),
                      "instance"))
    assert r["state"] == "pending"
    node.wait_state(iid, "running")
    node.wait_console(iid, "KOALA-GUEST-READY", count=3)
    print(f"start after stop: READY in {time.monotonic() - t0:.1f}s")
    assert tap in net.bridged()
    assert node.qemu_pid(iid) != pid

    # Launch with the image cached: the time the CC waits.
    t0 = time.monotonic()
    other = node.run(imgsrv)["instanceId"]
    node.wait_state(other, "running")
    t_running = time.monotonic() - t0
    node.wait_console(other, "KOALA-GUEST-READY")
    print(f"cached launch: running {t_running:.1f}s, READY "
          f"{time.monotonic() - t0:.1f}s")
    node.call("ncTerminateInstance", instanceId=other)

    # Terminate: everything goes; the console output stays readable.
    pid = node.qemu_pid(iid)
    r = to_dict(child(node.call("ncTerminateInstance", instanceId=iid),
                      "instance"))
    assert r["state"] in ("shutting-down", "terminated")
    st = node.wait_state(iid, "terminated")
    assert st["stateReasonCode"] == "Client.UserInitiatedShutdown"
    node.wait_state(other, "terminated")
    assert not d.exists()
    assert not pid_alive(pid, iid)
    assert not net.exists(tap)
    assert node.resource() == before
    assert "KOALA-GUEST-READY" in node.console(iid)
    # Terminating again answers the same.
    assert to_dict(child(node.call("ncTerminateInstance", instanceId=iid),
                         "instance"))["state"] == "terminated"
    assert fault(node.call, "ncStartInstance", instanceId=iid).code == \
        "IncorrectInstanceState"
    # The CC was told of every lasting state, in order.  (Notifications
    # carry the state as it is when sent: a short-lived one, such as
    # shutting-down of a guest that is gone at once, may be passed over.)
    wait_until(lambda: [s for s, _ in cc.states(iid)][-1:] == ["terminated"],
               timeout=20, what="the last notification")
    states = [s for s, _ in cc.states(iid)]
    order = ["pending", "running", "stopped", "pending", "running",
             "terminated"]
    lasting = [s for s in states if s in order]
    it = iter(lasting)
    assert all(s in it for s in order), (order, states)


def test_whole_disk_boot(node, imgsrv):
    """An image without kernel: a bootable qcow2 disk, booted by firmware."""
    inst = node.run(imgsrv, kernel=False)
    iid = inst["instanceId"]
    assert "kernelId" not in inst
    node.wait_state(iid, "running")
    node.wait_console(iid, "KOALA-GUEST-READY", timeout=240)
    info = json.loads(sh("qemu-img", "info", "-U", "--output=json",
                         node.inst_dir(iid) / "root.qcow2").stdout)
    assert info["backing-filename-format"] == "qcow2"
    node.call("ncTerminateInstance", instanceId=iid)
    node.wait_state(iid, "terminated")


def test_capacity_and_terminate_while_pending(node, imgsrv):
    before = node.resource()
    half = {"name": "c1.half", "cores": 2, "memoryMb": 512, "diskGb": 2}
    # Ids that end alike still get taps of their own.
    tail = os.urandom(6).hex()
    a = node.run(imgsrv, iid="i-00000" + tail, itype=half)["instanceId"]
    b = node.run(imgsrv, iid="i-11111" + tail, itype=half)["instanceId"]
    assert node.tap(a) != node.tap(b)
    assert all(len(node.tap(i)) <= 15 for i in (a, b))
    r = node.resource()
    assert r["coresAvailable"] == 0
    f = fault(node.run, imgsrv, itype=TINY)
    assert f.code == "InsufficientInstanceCapacity"
    # Terminated while still pending: the launch stops there.
    for iid in (a, b):
        assert to_dict(child(node.call("ncTerminateInstance", instanceId=iid),
                             "instance"))["state"] == "shutting-down"
    for iid in (a, b):
        st = node.wait_state(iid, "terminated")
        assert st["stateReasonCode"] == "Client.UserInitiatedShutdown"
        assert not node.inst_dir(iid).exists()
    assert node.resource() == before
    c = node.run(imgsrv, itype=TINY)["instanceId"]
    node.call("ncTerminateInstance", instanceId=c)
    node.wait_state(c, "terminated")


def test_image_not_as_promised(node, imgsrv):
    before = node.resource()
    bad = imgsrv.ref("initrd.img", "emi-0000bad1", sha="0" * 64)
    iid = node.run(imgsrv, image=bad)["instanceId"]
    st = node.wait_state(iid, "terminated")
    assert st["stateReasonCode"] == "Client.InvalidImage"
    assert "SHA-256" in st["stateReasonMessage"]
    short = imgsrv.ref("initrd.img", "emi-0000bad2",
                       size=(IMAGES / "initrd.img").stat().st_size + 1)
    iid = node.run(imgsrv, image=short)["instanceId"]
    st = node.wait_state(iid, "terminated")
    assert st["stateReasonCode"] == "Client.InvalidImage"
    missing = dict(imgsrv.ref("initrd.img", "emi-0000bad3"), sha256="1" * 64,
                   url=f"http://127.0.0.1:{imgsrv.port}/no-such-image")
    iid = node.run(imgsrv, image=missing)["instanceId"]
    st = node.wait_state(iid, "terminated")
    assert st["stateReasonCode"] == "Client.InvalidImage"
    assert "404" in st["stateReasonMessage"]
    assert node.resource() == before
    assert not list((node.data / "cache").glob(".part-*"))


def test_missing_bridge_fails_the_launch(node, imgsrv):
    before = node.resource()
    iid = node.run(imgsrv, net={"macAddress": new_mac(),
                                "bridge": "nosuchbr0"})["instanceId"]
    st = node.wait_state(iid, "terminated")
    assert st["stateReasonCode"] == "Server.InternalError"
    assert "nosuchbr0" in st["stateReasonMessage"]
    assert not node.inst_dir(iid).exists()
    assert node.resource() == before


def test_qemu_killed_is_terminated(node, imgsrv, net):
    before = node.resource()
    iid = node.run(imgsrv)["instanceId"]
    node.wait_state(iid, "running")
    node.wait_console(iid, "KOALA-GUEST-DISKS")
    pid, tap = node.qemu_pid(iid), node.tap(iid)
    os.kill(pid, signal.SIGKILL)
    st = node.wait_state(iid, "terminated", timeout=30)
    assert st["stateReasonCode"] == "Server.InternalError"
    assert "unexpectedly" in st["stateReasonMessage"]
    assert not node.inst_dir(iid).exists()
    assert not net.exists(tap)
    assert node.resource() == before
    assert "KOALA-GUEST-DISKS" in node.console(iid)


def test_concurrent_launches_share_one_download(tmp_path, pki, net, imgsrv):
    n = Node(tmp_path / "n2", pki, name="node2", netns=net.name,
             terminated_ttl=2).start()
    try:
        # A fresh cache; each GET is held, so the launches overlap.
        imgsrv.delay = 1.0
        counts = {f: imgsrv.count(f) for f in ("root.img", "vmlinuz",
                                               "initrd.img")}
        results = []
        ts = [threading.Thread(target=lambda: results.append(n.run(imgsrv)))
              for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert [r["state"] for r in results] == ["pending", "pending"]
        for r in results:
            n.wait_state(r["instanceId"], "running")
        for f, c in counts.items():
            assert imgsrv.count(f) == c + 1, f
        assert len(list((n.data / "cache").glob("[0-9a-f]" * 64))) == 3
        for r in results:
            n.wait_console(r["instanceId"], "KOALA-GUEST-READY")
            n.call("ncTerminateInstance", instanceId=r["instanceId"])
        for r in results:
            n.wait_state(r["instanceId"], "terminated")
        # The images stay cached for the next launch.
        assert len(list((n.data / "cache").glob("[0-9a-f]" * 64))) == 3
        # Terminated instances are forgotten after terminated_ttl.
        iid = results[0]["instanceId"]
        def forgotten():
            try:
                n.call("ncDescribeInstances", instanceId=iid)
                return False
            except SoapFault as f:
                return f.code == "InvalidInstanceID.NotFound"
        wait_until(forgotten, timeout=20, what="the terminated instance "
                   "forgotten")
        assert to_dict(n.call("ncDescribeInstances")) == {}
    finally:
        imgsrv.delay = 0.0
        assert n.cleanup() == 0


def test_restart_readopts_running_instances(tmp_path, pki, net, imgsrv):
    n = Node(tmp_path / "n3", pki, name="node3", netns=net.name).start()
    try:
        a = n.run(imgsrv)["instanceId"]
        b = n.run(imgsrv)["instanceId"]
        for iid in (a, b):
            n.wait_state(iid, "running")
            n.wait_console(iid, "KOALA-GUEST-READY")
        pids = {iid: n.qemu_pid(iid) for iid in (a, b)}

        # A clean stop of koala-nc leaves the guests running...
        assert n.stop() == 0
        assert all(pid_alive(p, i) for i, p in pids.items())
        n.start()
        # ...and the new koala-nc takes them over: same QEMU, QMP works.
        for iid in (a, b):
            assert n.state(iid) == "running"
            assert n.qemu_pid(iid) == pids[iid]
        assert n.resource()["instanceCount"] == 2
        n.call("ncRebootInstance", instanceId=a)
        n.wait_console(a, "KOALA-GUEST-READY", count=2)

        # kill -9 of koala-nc loses nothing either.
        n.stop(signal.SIGKILL)
        assert all(pid_alive(p, i) for i, p in pids.items())
        # While it is down, b's guest powers off (its monitor is free now).
        sock = n.inst_dir(b) / "qmp.sock"
        f, _ = qmp_command(sock, "system_powerdown")
        wait_until(lambda: '"guest": true' in f.readline(), timeout=90,
                   step=0, what="the guest's SHUTDOWN event")
        f.close()
        n.start()
        assert n.state(a) == "running" and n.qemu_pid(a) == pids[a]
        # b powered off while koala-nc was away: stopped, as EC2's
        # instance-initiated shutdown behaviour "stop".
        st = n.wait_state(b, "stopped", timeout=30)
        assert st["stateReasonCode"] == "Client.InstanceInitiatedShutdown"
        assert not pid_alive(pids[b], b)
        assert (n.inst_dir(b) / "root.qcow2").exists()
        n.call("ncStartInstance", instanceId=b)
        n.wait_state(b, "running")

        # a's QEMU dies while koala-nc is down: terminated when it is back.
        assert n.stop() == 0
        os.kill(pids[a], signal.SIGKILL)
        wait_until(lambda: not pid_alive(pids[a], a), what="QEMU gone")
        n.start()
        st = n.wait_state(a, "terminated", timeout=30)
        assert st["stateReasonCode"] == "Server.InternalError"
        assert not n.inst_dir(a).exists()
        assert n.resource()["instanceCount"] == 1
    finally:
        assert n.cleanup() == 0


SLOW_START = """#!/bin/bash
# QEMU as it is, except that with `slow` in $0.mode the starter of a VM
# lingers after QEMU daemonized: koala-nc then waits with the guest still
# paused.  (Other calls, such as koala-nc's look at QEMU's version, pass.)
case " $* " in *" -daemonize "*) ;; *) exec qemu-system-x86_64 "$@" ;; esac
echo $$ > "$0.starter"
qemu-system-x86_64 "$@" || exit
grep -q slow "$0.mode" 2>/dev/null && exec sleep 600
exit 0
"""


def test_guest_left_paused_by_a_killed_nc_is_resumed(tmp_path, pki, net,
                                                     imgsrv):
    """QEMU starts paused and koala-nc lets the guest go once it has
    reniced it (vm.c); a koala-nc killed in between leaves a paused guest,
    which the next one resumes, niced, and reports running."""
    fake = tmp_path / "slow-qemu"
    fake.write_text(SLOW_START)
    fake.chmod(0o755)
    mode = Path(str(fake) + ".mode")
    mode.write_text("slow\n")
    n = Node(tmp_path / "n7", pki, name="node7", netns=net.name, qemu=fake,
             hypervisor="tcg", vm_nice=7).start()
    starter = None
    try:
        iid = n.run(imgsrv)["instanceId"]
        sock = n.inst_dir(iid) / "qmp.sock"
        wait_until(lambda: n.qemu_pid(iid) and sock.exists(), timeout=60,
                   what="QEMU started")
        starter = int(Path(str(fake) + ".starter").read_text())
        pid = n.qemu_pid(iid)
        f, _ = qmp_command(sock)
        f.write(json.dumps({"execute": "query-status"}) + "\n")
        f.flush()
        assert json.loads(f.readline())["return"]["status"] == "prelaunch"
        f.close()
        assert n.state(iid) == "pending"
        # It starts at the NC's priority, in a session (autogroup) of its own.
        assert qemu_niceness(pid) == (os.nice(0), 0)
        n.stop(signal.SIGKILL)
        os.kill(starter, signal.SIGKILL)
        starter = None
        mode.write_text("\n")
        n.start()
        st = n.wait_state(iid, "running", timeout=30)
        assert n.qemu_pid(iid) == pid
        assert "prelaunch" in n.log_text()
        assert qemu_niceness(pid) == (7, 7)
        n.wait_console(iid, "KOALA-GUEST-READY")
        assert st["hypervisor"] == "tcg"
    finally:
        if starter:
            os.kill(starter, signal.SIGKILL)
        assert n.cleanup() == 0


FAKE_KVM = """#!/bin/bash
# A QEMU that "has KVM" for the tests: -accel kvm runs TCG instead; with
# the word `hang` in $0.mode the guest's console goes nowhere, so it never
# writes to it, like nested KVM guests that hang in early boot.
hang=0; grep -q hang "$0.mode" 2>/dev/null && hang=1
kvm=0; for a in "$@"; do [ "$a" = kvm ] && kvm=1; done
args=()
for a in "$@"; do
  case "$a" in
    kvm) args+=(tcg) ;;
    host) args+=(max) ;;
    chardev:console) if [ "$kvm$hang" = 11 ]; then args+=(null);
                     else args+=("$a"); fi ;;
    *) args+=("$a") ;;
  esac
done
exec qemu-system-x86_64 "${args[@]}"
"""


def test_kvm_probe_and_fallback(tmp_path, pki, net, imgsrv, images):
    fake = tmp_path / "fake-qemu"
    fake.write_text(FAKE_KVM)
    fake.chmod(0o755)
    mode = Path(str(fake) + ".mode")

    # KVM that hangs: the first instance is the probe, falls back to TCG,
    # and the node remembers.
    mode.write_text("hang\n")
    n = Node(tmp_path / "n4", pki, name="node4", netns=net.name,
             qemu=fake, kvm_probe_timeout=3).start()
    try:
        assert n.resource()["hypervisor"] == "kvm"  # to be confirmed
        t0 = time.monotonic()
        iid = n.run(imgsrv)["instanceId"]
        st = n.wait_state(iid, "running", timeout=60)
        assert time.monotonic() - t0 >= 3
        assert st["hypervisor"] == "tcg"
        assert n.resource()["hypervisor"] == "tcg"
        n.wait_console(iid, "KOALA-GUEST-READY")
        assert "falling back to TCG" in n.log_text()
        remembered = json.loads((n.data / "hypervisor.json").read_text())
        assert remembered["hypervisor"] == "tcg"
        n.call("ncTerminateInstance", instanceId=iid)
        n.wait_state(iid, "terminated")
        # Restarted: remembered, no probing again.
        assert n.stop() == 0
        n.start()
        assert n.resource()["hypervisor"] == "tcg"
        assert "remembered" in n.log_text()
    finally:
        assert n.cleanup() == 0

    # A probe kernel configured: decided at startup, both ways.
    for how, want in (("hang", "tcg"), ("works", "kvm")):
        mode.write_text(how + "\n")
        n = Node(tmp_path / f"n5{how}", pki, name="node5", netns=net.name,
                 qemu=fake, kvm_probe_timeout=5,
                 kvm_probe_kernel=images / "vmlinuz",
                 kvm_probe_initrd=images / "initrd.img").start()
        try:
            assert n.resource()["hypervisor"] == want
            remembered = json.loads((n.data / "hypervisor.json").read_text())
            assert remembered["hypervisor"] == want
            assert "probe kernel" in remembered["reason"]
        finally:
            assert n.cleanup() == 0

    # Forced by the configuration: no probe at all.
    n = Node(tmp_path / "n6", pki, name="node6", netns=net.name,
             hypervisor="tcg").start()
    try:
        assert n.resource()["hypervisor"] == "tcg"
        assert not (n.data / "hypervisor.json").exists()
    finally:
        assert n.cleanup() == 0
