"""EBS volumes on the node controller: ncAttachVolume / ncDetachVolume and
the `volume` attachments of ncDescribeInstances and ncRunInstance, driven
over SOAP as the CC drives them, against busybox guests (tests/images) on
two koala-nc nodes, each in a network namespace of its own.

The export is served by a real qemu-storage-daemon that this suite starts
itself, NBD over TLS with certificates of the test's CA (what koala-sc runs;
docs/storage.md): over a unix socket, and over TCP inside the second node's
namespace.  Covered: attach to a running microvm guest (scsi-hd on the
virtio-scsi bus), the serial the guest sees, a known pattern written from
inside the guest (dd + sync) and checked on the host, detach, attach to a
guest on the other node and read back there; stop/start keeps the volume
(on QEMU's command line at the start); a koala-nc killed with SIGKILL finds
its attachments in the running QEMU; the export's server killed with
SIGKILL mid-write and restarted: the guest's writes wait and finish, no
I/O error, flushed data intact; a server that does not trust the node's CA
refuses it; terminate reports the volume detached; a pc (whole-disk boot)
guest hot-plugs virtio-blk-pci; bad input (EC2 error codes, nothing left
half-plugged).  ncResizeVolume after the test's server grew the export:
the running guest sees the new size by itself (scsi-hd on a microvm,
virtio-blk-pci on a pc), data intact, writes past the old end land; a
koala-nc killed halfway through it finishes at its restart.

Every process is started here and stopped by its PID; namespaces are
deleted at the end.
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import KOALA_BIN, PKI, sh, wait_until
from soapclient import SoapFault, child, to_dict
from test_nc import (FakeCC, Node, NodeNet, fault, images,  # noqa: F401
                     imgsrv, new_mac)

VOL_MB = 64


def new_vol():
    return "vol-" + os.urandom(9).hex()[:17]


def serial_of(vol):
    return "vol" + vol[4:]


def pattern(lines, tag):
    """The bytes the guest writes with `seq 1 N | sed 's/$/-TAG/'`."""
    return "".join(f"{i}-{tag}\n" for i in range(1, lines + 1)).encode()


# ---- fixtures -------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = PKI.create(tmp_path_factory.mktemp("pki"))
    p.issue("koala-cc-test", server=True)
    return p


@pytest.fixture(scope="module")
def cc(pki):
    c = FakeCC(pki)
    yield c
    c.close()


class VolNet(NodeNet):
    """A node namespace (test_nc.NodeNet) whose dnsmasq also hands out
    fixed addresses to a pool of MACs made up front: the node's
    anti-spoofing lets a guest's IP traffic through only from the address
    its ncRunInstance names, and the tests reach the guests over it."""

    def __init__(self, tmp):
        self.pool = [(new_mac(), f"10.77.0.{10 + k}") for k in range(8)]
        super().__init__(tmp)
        self.dnsmasq.terminate()
        self.dnsmasq.wait(10)
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "dnsmasq", "--keep-in-"
             "foreground", "--conf-file=/dev/null", "--port=0",
             "--interface=kbr0", "--bind-interfaces", "--no-ping",
             "--dhcp-range=10.77.0.2,10.77.0.250,255.255.255.0,1h",
             *(f"--dhcp-host={m},{ip}" for m, ip in self.pool),
             f"--dhcp-leasefile={tmp}/leases2", "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def host(self):
        """A MAC and the address DHCP gives it."""
        mac, ip = self.pool.pop(0)
        return {"macAddress": mac, "privateIp": ip, "network": "default",
                "bridge": ""}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the node controller's tests need root (netns, taps)")
    a = VolNet(tmp_path_factory.mktemp("net1"))
    b = VolNet(tmp_path_factory.mktemp("net2"))
    yield a, b
    a.close()
    b.close()


class Vnode(Node):
    def attach(self, iid, vol, device, export):
        r = self.client.call("ncAttachVolume", {
            "instanceId": iid, "volumeId": vol, "device": device,
            "export": export})
        return to_dict(child(r, "volume"))

    def detach(self, iid, vol, force=False):
        r = self.client.call("ncDetachVolume", {
            "instanceId": iid, "volumeId": vol,
            "force": "true" if force else "false"})
        return to_dict(child(r, "volume"))

    def resize(self, iid, vol, size):
        r = self.client.call("ncResizeVolume", {
            "instanceId": iid, "volumeId": vol, "sizeBytes": size})
        return dict(to_dict(child(r, "volume")),
                    sizeBytes=int(to_dict(r)["sizeBytes"]))

    def volumes(self, iid):
        v = self.describe(iid).get("volume", [])
        v = v if isinstance(v, list) else [v]
        return {x["volumeId"]: x for x in v}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, pki, nets, cc, images):
    ns = []
    for k, net in enumerate(nets, 1):
        ns.append(Vnode(tmp_path_factory.mktemp(f"node{k}"), pki,
                        name=f"vnode{k}", netns=net.name, bridge="kbr0",
                        cc_endpoint=cc.url, hypervisor="tcg").start())
    yield ns
    for n in ns:
        rc = n.cleanup()
        assert rc == 0, f"koala-nc exited with {rc}:\n{n.log_text()[-4000:]}"


class Storage:
    """A stand-in for koala-sc's data path: qemu-storage-daemon serving
    volume files over NBD with TLS (the server's certificate from the
    CA, with the SC's name koala-sc-test; client certificates checked
    against the same CA and, with authz, only the one with that
    distinguished name let in, as koala-sc does), over a unix socket or
    over TCP in a namespace."""

    def __init__(self, base, pki, authz=None):
        self.base = Path(base)
        self.creds = self.base / "creds"
        self.creds.mkdir(parents=True, exist_ok=True)
        cert, key = self.creds / "server-cert.pem", self.creds / "server-key.pem"
        if not cert.exists():
            sh(KOALA_BIN, "ca", "issue", pki.dir, "koala-sc-test", "--cert",
               cert, "--key", key, "--san", "DNS:koala-sc-test", "--san",
               "IP:127.0.0.1", "--server", "--client")
        (self.creds / "ca-cert.pem").write_bytes(Path(pki.ca).read_bytes())
        self.authz = authz
        self.procs = {}

    def volume(self, vol, mb=VOL_MB):
        f = self.base / f"{vol}.raw"
        if not f.exists():
            with open(f, "wb") as fh:
                fh.truncate(mb << 20)
        return f

    def serve(self, vol, transport="unix", netns=None, port=None):
        """Starts (or restarts) the export of vol; the export record."""
        f = self.volume(vol)
        sock = self.base / f"{vol}.sock"
        pidf = self.base / f"{vol}.pid"
        for p in (sock, pidf):
            if p.exists():
                p.unlink()
        if transport == "unix":
            addr = f"addr.type=unix,addr.path={sock}"
            ex = {"transport": "unix", "path": str(sock)}
        else:
            addr = f"addr.type=inet,addr.host=127.0.0.1,addr.port={port}"
            ex = {"transport": "tcp", "host": "127.0.0.1", "port": port}
        authz = []
        if self.authz:
            authz = ["--object", f"authz-simple,id=authz0,identity="
                     f"{self.authz.replace(',', ',,')}"]
            addr += ",tls-authz=authz0"
        argv = ["qemu-storage-daemon",
                "--object", "tls-creds-x509,id=tls0,endpoint=server,"
                f"dir={self.creds},verify-peer=on", *authz,
                "--blockdev", f"driver=file,node-name=f0,filename={f},"
                "cache.direct=off",
                "--nbd-server", f"{addr},tls-creds=tls0",
                "--export", f"type=nbd,id=e0,node-name=f0,name={vol},"
                "writable=on",
                "--chardev", f"socket,id=m0,path={self.base}/{vol}.qmp,"
                "server=on,wait=off", "--monitor", "chardev=m0",
                "--pidfile", str(pidf)]
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        log = open(self.base / f"{vol}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[vol] = p
        wait_until(lambda: pidf.exists() or p.poll() is not None,
                   timeout=20, what="qemu-storage-daemon's pid file")
        assert p.poll() is None, (self.base / f"{vol}.log").read_text()
        ex.update({"volumeId": vol, "exportName": vol,
                   "tlsHostname": "koala-sc-test",
                   "sizeBytes": VOL_MB << 20})
        return ex

    def grow(self, vol, mb):
        """Grows vol's file to mb MiB under its running export, as koala-sc's
        ResizeVolume does (src/sc/qsd.c): QEMU 7.2's export does not share
        the resize permission, so the export goes (cutting the client off:
        it rides that out in reconnect-delay), the node grows, the export
        comes back on the same server."""
        sock = self.base / f"{vol}.qmp"
        qmp(sock, ("block-export-del", {"id": "e0", "mode": "hard"}))
        # Deleted once its clients are gone (asynchronously).
        wait_until(lambda: qmp(sock, ("query-block-exports", {}))[0] == [],
                   timeout=10, step=0.05, what="the export gone")
        qmp(sock, ("block_resize", {"node-name": "f0", "size": mb << 20}),
            ("block-export-add", {"type": "nbd", "id": "e0",
                                  "node-name": "f0", "name": vol,
                                  "writable": True}))

    def kill(self, vol, sig=signal.SIGKILL):
        p = self.procs.pop(vol, None)
        if p and p.poll() is None:
            p.send_signal(sig)
            p.wait(20)

    def close(self):
        for vol in list(self.procs):
            self.kill(vol, signal.SIGTERM)


def qmp(sock, *commands):
    """Runs (command, arguments) pairs on a QEMU monitor; their answers.
    A failed command raises."""
    d = os.open(sock.parent, os.O_PATH)
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(30)
    try:
        c.connect(f"/proc/self/fd/{d}/{sock.name}")
        f = c.makefile("rw")
        f.readline()
        out = []
        for cmd, args in (("qmp_capabilities", {}),) + commands:
            f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if "event" not in msg:
                    break
            assert "return" in msg, (cmd, msg)
            out.append(msg["return"])
        return out[1:]
    finally:
        c.close()
        os.close(d)


@pytest.fixture(scope="module")
def storage(tmp_path_factory, pki):
    s = Storage(tmp_path_factory.mktemp("sc"), pki)
    yield s
    s.close()


def guest_ip(node, iid):
    out = node.wait_console(iid, "KOALA-GUEST-READY ip=10.77.0.",
                            timeout=240)
    return re.search(r"KOALA-GUEST-READY ip=(10\.77\.0\.\d+)", out).group(1)


def run_in(net, ip, script, timeout=60):
    """Runs script in the guest (its /cgi-bin/run) from net's namespace:
    (exit status, output)."""
    r = subprocess.run(
        ["ip", "netns", "exec", net.name, "curl", "-sS", "-i", "-m",
         str(timeout + 5), "-H", "Expect:", "--data-binary", "@-",
         f"http://{ip}:8080/cgi-bin/run?timeout={timeout}"],
        input=script.encode(), capture_output=True, timeout=timeout + 10)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    m = re.search(rb"X-Exit-Status: (\d+)", head)
    assert r.returncode == 0 and m, (r.returncode, r.stderr, head)
    return int(m.group(1)), body.decode(errors="replace")


def disks(net, ip):
    """{serial: (name, sectors)} as the guest sees its disks."""
    rc, out = run_in(net, ip, "koala-disks", 20)
    assert rc == 0, out
    d = {}
    for line in out.split("\n"):
        f = line.split()
        if len(f) == 3:
            d[f[2]] = (f[0], int(f[1]))
    return d


def wait_disk(net, ip, vol, present=True, timeout=30):
    s = serial_of(vol)
    return wait_until(
        lambda: (s in disks(net, ip)) == present and (disks(net, ip).get(s)
                                                      or True),
        timeout=timeout, step=0.2,
        what=f"{vol} {'in' if present else 'out of'} the guest at {ip}")


class Guests:
    """The guests the suite shares (TCG boots are slow): a on node 1, b on
    node 2, booted in parallel."""

    def __init__(self, nodes, nets, imgsrv):
        self.n1, self.n2 = nodes
        self.net1, self.net2 = nets
        self.a = self.n1.run(imgsrv, net=self.net1.host())["instanceId"]
        self.b = self.n2.run(imgsrv, net=self.net2.host())["instanceId"]
        ips = {}
        ts = [threading.Thread(target=lambda n, i: ips.__setitem__(
            i, guest_ip(n, i)), args=(n, i))
              for n, i in ((self.n1, self.a), (self.n2, self.b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.ip_a, self.ip_b = ips[self.a], ips[self.b]


@pytest.fixture(scope="module")
def guests(nodes, nets, imgsrv):
    return Guests(nodes, nets, imgsrv)


# ---- tests ----------------------------------------------------------------

def test_bad_requests(nodes, storage):
    n1 = nodes[0]
    vol = new_vol()
    ex = {"transport": "unix", "path": "/nonexistent.sock",
          "exportName": vol, "tlsHostname": "koala-sc-test"}
    bad = [
        ({"instanceId": "i-0000000000000dead"}, "InvalidInstanceID.NotFound"),
        ({"instanceId": "i-nope"}, "InvalidInstanceID.Malformed"),
        ({"volumeId": "vol-xyz"}, "InvalidVolumeID.Malformed"),
        ({"volumeId": None}, "MissingParameter"),
        ({"device": "/dev/../../etc"}, "InvalidParameterValue"),
        ({"device": None}, "MissingParameter"),
        ({"export": None}, "MissingParameter"),
        ({"export": dict(ex, transport="iscsi")}, "InvalidParameterValue"),
        ({"export": dict(ex, path="relative.sock")}, "InvalidParameterValue"),
        ({"export": dict(ex, transport="tcp", host="127.0.0.1",
                         port="99999")}, "InvalidParameterValue"),
        ({"export": dict(ex, exportName="a,b")}, "InvalidParameterValue"),
        ({"export": {k: v for k, v in ex.items() if k != "tlsHostname"}},
         "MissingParameter"),
    ]
    for extra, code in bad:
        body = {"instanceId": "i-0000000000000dead", "volumeId": vol,
                "device": "/dev/sdf", "export": ex}
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        f = fault(n1.client.call, "ncAttachVolume", body)
        assert f.code == code, (extra, f.code, f.message)
    f = fault(n1.client.call, "ncDetachVolume",
              {"instanceId": "i-0000000000000dead", "volumeId": vol})
    assert f.code == "InvalidInstanceID.NotFound"
    f = fault(n1.client.call, "ncDetachVolume",
              {"instanceId": "i-0000000000000dead", "volumeId": "vol-1"})
    assert f.code == "InvalidVolumeID.Malformed"


def test_attach_write_detach_and_read_on_another_node(guests, storage,
                                                      nodes, nets):
    g = guests
    n1, n2 = nodes
    vol = new_vol()
    ex = storage.serve(vol, "unix")

    # Attach: plugged and reported as asked, the serial the volume id.
    t0 = time.monotonic()
    a = n1.attach(g.a, vol, "/dev/sdf", ex)
    t_attach = time.monotonic() - t0
    assert a == {"volumeId": vol, "device": "/dev/sdf", "state": "attached",
                 "serial": serial_of(vol)}
    assert n1.volumes(g.a)[vol]["state"] == "attached"
    name, sectors = wait_disk(g.net1, g.ip_a, vol)
    t_seen = time.monotonic() - t0
    assert name.startswith("sd") and sectors == (VOL_MB << 20) // 512
    print(f"\nattach: reply {t_attach * 1000:.0f} ms, "
          f"in the guest {t_seen * 1000:.0f} ms")

    # The same request again: the same answer.  The same volume elsewhere
    # or as another device: in use.  Another volume as the same device:
    # refused.  All before anything is plugged.
    assert n1.attach(g.a, vol, "/dev/sdf", ex)["state"] == "attached"
    assert fault(n1.attach, g.a, vol, "/dev/sdg", ex).code == "VolumeInUse"
    other = new_vol()
    oex = dict(ex, volumeId=other, exportName=other)
    f = fault(n1.attach, g.a, other, "/dev/sdf", oex)
    assert f.code == "InvalidParameterValue" and "in use" in f.message

    # An export that cannot be reached: a clear error, nothing plugged.
    gone = dict(oex, path=str(storage.base / "no-such.sock"))
    f = fault(n1.attach, g.a, other, "/dev/sdg", gone)
    assert "connecting to the export" in f.message, f.message
    assert n1.volumes(g.a)[other]["state"] == "detached"
    assert serial_of(other) not in disks(g.net1, g.ip_a)

    # A known pattern from inside the guest, flushed.
    data = pattern(20000, "koala-ebs")
    rc, out = run_in(g.net1, g.ip_a, f"""
        seq 1 20000 | sed 's/$/-koala-ebs/' > /tmp/p
        dd if=/tmp/p of=/dev/{name} bs=4096 conv=fsync 2>&1 && sync
        sha256sum /tmp/p""")
    assert rc == 0, out
    assert hashlib.sha256(data).hexdigest() in out

    # Detach: gone from the guest at once (scsi), reported detached.
    d = n1.detach(g.a, vol)
    assert d["state"] == "detached"
    wait_disk(g.net1, g.ip_a, vol, present=False, timeout=10)
    assert n1.volumes(g.a)[vol]["state"] == "detached"
    assert fault(n1.detach, g.a, "vol-" + "0" * 17).code == \
        "InvalidAttachment.NotFound"
    # What the guest wrote is on the server's disk.
    with open(storage.volume(vol), "rb") as f:
        assert f.read(len(data)) == data

    # To the other node, over TCP inside its namespace, and read back.
    storage.kill(vol, signal.SIGTERM)
    port = 10809
    ex2 = storage.serve(vol, "tcp", netns=g.net2.name, port=port)
    b = n2.attach(g.b, vol, "xvdf", ex2)
    assert b["state"] == "attached" and b["device"] == "xvdf"
    name_b, _ = wait_disk(g.net2, g.ip_b, vol)
    rc, out = run_in(g.net2, g.ip_b,
                     f"head -c {len(data)} /dev/{name_b} | sha256sum")
    assert rc == 0 and hashlib.sha256(data).hexdigest() in out, out
    g.vol_b, g.data_b, g.port_b = vol, data, port


def test_storage_killed_mid_write(guests, storage, nodes):
    """The export's server dies (SIGKILL) while the guest writes and
    comes back: the writes wait, then finish; no I/O error; every flushed
    byte is there."""
    g, n2 = guests, nodes[1]
    vol = g.vol_b
    name = wait_disk(g.net2, g.ip_b, vol)[0]
    chunk = pattern(6000, "mid-write")[:65536]
    assert len(chunk) == 65536
    rc, out = run_in(g.net2, g.ip_b, f"""
        seq 1 6000 | sed 's/$/-mid-write/' | head -c 65536 > /tmp/chunk
        rm -f /tmp/w.done /tmp/w.err
        (for i in $(seq 0 399); do
            dd if=/tmp/chunk of=/dev/{name} bs=65536 seek=$((64 + i)) \\
                count=1 conv=fsync 2>/dev/null || echo "FAIL $i" >> /tmp/w.err
            echo $i > /tmp/w.at
         done; echo done > /tmp/w.done) > /dev/null 2>&1 &
        sleep 1; cat /tmp/w.at""", 30)
    assert rc == 0, out
    storage.kill(vol, signal.SIGKILL)
    t_kill = time.monotonic()
    # Stalled: no progress while the server is down.
    time.sleep(2)
    rc, at_down = run_in(g.net2, g.ip_b, "cat /tmp/w.at; ls /tmp/w.done", 10)
    assert rc != 0, "the writes finished while the server was down"
    time.sleep(2)
    assert run_in(g.net2, g.ip_b, "cat /tmp/w.at", 10)[1] == at_down.split(
        "\n")[0] + "\n"
    storage.serve(vol, "tcp", netns=g.net2.name, port=g.port_b)
    wait_until(lambda: run_in(g.net2, g.ip_b, "cat /tmp/w.done", 10)[0] == 0,
               timeout=90, step=0.5, what="the writes to finish")
    t_back = time.monotonic() - t_kill
    rc, out = run_in(g.net2, g.ip_b, "cat /tmp/w.err; dmesg | grep -i "
                     "'i/o error' ; true")
    assert "FAIL" not in out and "I/O error" not in out, out
    with open(storage.volume(vol), "rb") as f:
        assert f.read(len(g.data_b)) == g.data_b
        f.seek(64 * 65536)
        body = f.read(400 * 65536)
    assert body == chunk * 400
    print(f"\nwrites waited through the server's restart: stalled at "
          f"{at_down.split()[0]}, finished {t_back:.1f} s after the kill")
    assert n2.volumes(g.b)[vol]["state"] == "attached"


def test_nc_killed_keeps_attachments(guests, nodes):
    g, n2 = guests, nodes[1]
    vol = g.vol_b
    n2.stop(signal.SIGKILL)
    n2.start()
    v = n2.volumes(g.b)[vol]
    assert v["state"] == "attached" and v["device"] == "xvdf"
    assert n2.state(g.b) == "running"
    wait_disk(g.net2, g.ip_b, vol)

    # Killed halfway through a detach, then halfway through an attach (as
    # instance.json says when the kill comes between the record and the
    # QMP work): the restarted node finishes each from what QEMU has.
    state = n2.inst_dir(g.b) / "instance.json"
    for want, present in (("detaching", False), ("attaching", True)):
        n2.stop(signal.SIGKILL)
        doc = json.loads(state.read_text())
        if want == "attaching":
            doc["volumes"] = [dict(saved, state="attaching")]
        else:
            saved = dict(doc["volumes"][0])
            doc["volumes"][0]["state"] = want
        state.write_text(json.dumps(doc))
        n2.start()
        done = "attached" if present else "detached"
        wait_until(lambda: n2.volumes(g.b)[vol]["state"] == done,
                   timeout=30, step=0.1, what=f"{vol} {done}")
        wait_disk(g.net2, g.ip_b, vol, present=present)


def test_stop_start_keeps_the_volume(guests, nodes):
    g, n2 = guests, nodes[1]
    vol = g.vol_b
    n2.call("ncStopInstance", instanceId=g.b)
    n2.wait_state(g.b, "stopped")
    assert n2.volumes(g.b)[vol]["state"] == "attached"
    n2.call("ncStartInstance", instanceId=g.b)
    n2.wait_state(g.b, "running")
    # On QEMU's command line from its start.
    pid = n2.qemu_pid(g.b)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert f'"node-name":"nbd-{vol}"'.encode() in cmdline
    # The second boot's word (QEMU appends to the console log: the first
    # boot's is there already, and the guest may not be up yet).
    out = n2.wait_console(g.b, "KOALA-GUEST-READY ip=10.77.0.", count=2,
                          timeout=240)
    ip = re.findall(r"KOALA-GUEST-READY ip=(10\.77\.0\.\d+)", out)[-1]
    name, _ = wait_disk(g.net2, ip, vol)
    g.ip_b = ip
    rc, out = run_in(g.net2, ip,
                     f"head -c {len(g.data_b)} /dev/{name} | sha256sum")
    assert rc == 0 and hashlib.sha256(g.data_b).hexdigest() in out, out
    # Detached while stopped, attached again while stopped: records only.
    n2.call("ncStopInstance", instanceId=g.b)
    n2.wait_state(g.b, "stopped")
    # Grown while stopped: only recorded (the next start opens the export
    # afresh), answered at once.
    t0 = time.monotonic()
    assert n2.resize(g.b, vol, (VOL_MB + 8) << 20)["sizeBytes"] == \
        (VOL_MB + 8) << 20
    assert time.monotonic() - t0 < 5

    def saved():
        doc = json.loads((n2.inst_dir(g.b) / "instance.json").read_text())
        (v,) = [v for v in doc["volumes"] if v["volumeId"] == vol]
        return v
    # (the job saves it a moment after the answer; until then the request
    # itself had saved growTo, which a restart would take up)
    wait_until(lambda: saved()["export"]["sizeBytes"] ==
               (VOL_MB + 8) << 20, timeout=5, step=0.05,
               what="the new size in instance.json")
    assert "growTo" not in saved()
    assert n2.detach(g.b, vol)["state"] == "detached"
    assert n2.volumes(g.b)[vol]["state"] == "detached"


def test_refused_by_a_server_of_another_ca_or_for_another_node(
        guests, nodes, pki, tmp_path):
    """A server of another CA (the node does not trust it), and a server of
    the cloud's CA that lets in only another node (tls-authz, as koala-sc
    exports to one node): the handshake fails, the attach fails clearly and
    nothing is plugged."""
    g, n1 = guests, nodes[0]
    (tmp_path / "stranger").mkdir()
    stranger = PKI.create(tmp_path / "stranger")
    for k, st in enumerate((
            Storage(tmp_path / "sc2", stranger),
            Storage(tmp_path / "sc3", pki,
                    authz="CN=koala-nc-elsewhere,O=Koala"))):
        vol = new_vol()
        try:
            ex = st.serve(vol, "unix")
            f = fault(n1.attach, g.a, vol, f"/dev/sd{'hi'[k]}", ex)
            assert "connecting to the export" in f.message, f.message
            assert n1.volumes(g.a)[vol]["state"] == "detached"
            assert serial_of(vol) not in disks(g.net1, g.ip_a)
        finally:
            st.close()


def guest_sectors(net, ip, vol):
    return disks(net, ip).get(serial_of(vol), (None, 0))[1]


def test_grow_online(guests, storage, nodes):
    """ncResizeVolume (ModifyVolume's part on the node): the export grew
    (the test's qemu-storage-daemon, resized as koala-sc does) and the
    running microvm guest (scsi-hd on virtio-scsi) sees the new size by
    itself, no rescan; what it wrote stays; it writes past the old end.
    Asked before the export grew: refused clearly.  Again, or smaller: the
    same answer.  A koala-nc killed halfway through (second NBD client
    added, the disk moved onto it) finishes at its restart."""
    g, n1 = guests, nodes[0]
    vol = new_vol()
    ex = storage.serve(vol, "unix")
    assert n1.attach(g.a, vol, "/dev/sdk", ex)["state"] == "attached"
    name, sectors = wait_disk(g.net1, g.ip_a, vol)
    assert sectors == (VOL_MB << 20) // 512
    data = pattern(3000, "grow")
    rc, out = run_in(g.net1, g.ip_a, f"""
        seq 1 3000 | sed 's/$/-grow/' > /tmp/g
        dd if=/tmp/g of=/dev/{name} bs=4096 conv=fsync 2>&1 && sync""")
    assert rc == 0, out

    big = VOL_MB + 32
    f = fault(n1.resize, g.a, vol, big << 20)
    assert f.code == "IncorrectState" and "not yet" in f.message, f.message
    assert guest_sectors(g.net1, g.ip_a, vol) == (VOL_MB << 20) // 512

    storage.grow(vol, big)
    t0 = time.monotonic()
    r = n1.resize(g.a, vol, big << 20)
    t_reply = time.monotonic() - t0
    assert r["state"] == "attached" and r["sizeBytes"] == big << 20, r
    wait_until(lambda: guest_sectors(g.net1, g.ip_a, vol) ==
               (big << 20) // 512, timeout=10, step=0.1,
               what="the new size in the guest")
    t_seen = time.monotonic() - t0
    print(f"\ngrow: reply {t_reply * 1000:.0f} ms, in the guest "
          f"{t_seen * 1000:.0f} ms")
    rc, out = run_in(g.net1, g.ip_a, f"""
        head -c {len(data)} /dev/{name} | sha256sum
        echo past-the-old-end > /tmp/t
        dd if=/tmp/t of=/dev/{name} bs=1M seek={big - 1} conv=fsync 2>&1
        dmesg | grep -i capacity""")
    assert rc == 0 and hashlib.sha256(data).hexdigest() in out, out
    print(out.strip().split("\n")[-1])
    with open(storage.volume(vol), "rb") as fh:
        assert fh.read(len(data)) == data
        fh.seek((big - 1) << 20)
        assert fh.read(17) == b"past-the-old-end\n"

    # A retry, or a size the volume has passed: answered at once.
    for size in (big << 20, VOL_MB << 20):
        assert n1.resize(g.a, vol, size)["sizeBytes"] == big << 20
    assert fault(n1.resize, g.a, new_vol(), big << 20).code == \
        "InvalidAttachment.NotFound"

    # Killed halfway: the node's first two steps done by hand on QEMU's
    # monitor (free while koala-nc is down), the request on record.
    bigger = big + 32
    storage.grow(vol, bigger)
    n1.stop(signal.SIGKILL)
    sock = n1.inst_dir(g.a) / "qmp.sock"
    qmp(sock, ("blockdev-add", {
        "driver": "nbd", "node-name": f"grow-{vol}",
        "server": {"type": "unix", "path": ex["path"]}, "export": vol,
        "tls-creds": "nc-tls", "tls-hostname": "koala-sc-test",
        "reconnect-delay": 300, "discard": "unmap"}),
        ("blockdev-reopen", {"options": [{
            "driver": "raw", "node-name": f"raw-{vol}",
            "file": f"grow-{vol}", "discard": "unmap"}]}))
    state = n1.inst_dir(g.a) / "instance.json"
    doc = json.loads(state.read_text())
    for v in doc["volumes"]:
        if v["volumeId"] == vol:
            v["growTo"] = bigger << 20
    state.write_text(json.dumps(doc))
    n1.start()
    wait_until(lambda: guest_sectors(g.net1, g.ip_a, vol) ==
               (bigger << 20) // 512, timeout=20, step=0.2,
               what="the size after the restart")
    assert n1.resize(g.a, vol, bigger << 20)["sizeBytes"] == bigger << 20
    # Back on its one NBD client, under its usual name.
    n1.stop(signal.SIGKILL)
    nodes_now = {n["node-name"] for n in qmp(
        sock, ("query-named-block-nodes", {"flat": True}))[0]}
    n1.start()
    assert f"nbd-{vol}" in nodes_now and f"grow-{vol}" not in nodes_now
    rc, out = run_in(g.net1, g.ip_a,
                     f"head -c {len(data)} /dev/{name} | sha256sum")
    assert rc == 0 and hashlib.sha256(data).hexdigest() in out, out
    assert n1.detach(g.a, vol)["state"] == "detached"


def test_run_with_a_volume(nodes, nets, imgsrv, storage):
    """ncRunInstance's volume* (an instance booting with its volumes):
    on QEMU's command line, in the guest from its boot, attached."""
    n2, net2 = nodes[1], nets[1]
    vol = new_vol()
    ex = storage.serve(vol, "unix")
    iid = n2.run(imgsrv, net=net2.host(),
                 volume={"volumeId": vol, "device": "/dev/sdf",
                         "export": ex})["instanceId"]
    ip = guest_ip(n2, iid)
    assert n2.volumes(iid)[vol]["state"] == "attached"
    name, sectors = wait_disk(net2, ip, vol, timeout=10)
    assert sectors == (VOL_MB << 20) // 512
    # The same volume given twice is refused before anything starts.
    f = fault(n2.run, imgsrv, net=net2.host(), volume=[
        {"volumeId": vol, "device": "/dev/sdf", "export": ex},
        {"volumeId": vol, "device": "/dev/sdg", "export": ex}])
    assert f.code == "InvalidParameterValue"
    n2.call("ncTerminateInstance", instanceId=iid)
    n2.wait_state(iid, "terminated")
    assert n2.volumes(iid)[vol]["state"] == "detached"


def test_terminate_detaches(guests, nodes, storage):
    g, n1 = guests, nodes[0]
    vol = new_vol()
    ex = storage.serve(vol, "unix")
    assert n1.attach(g.a, vol, "/dev/sdg", ex)["state"] == "attached"
    n1.call("ncTerminateInstance", instanceId=g.a)
    n1.wait_state(g.a, "terminated")
    assert n1.volumes(g.a)[vol]["state"] == "detached"
    f = fault(n1.attach, g.a, new_vol(), "/dev/sdh", ex)
    assert f.code in ("IncorrectInstanceState", "VolumeInUse")


def test_pc_guest_hotplugs_virtio_blk(nodes, nets, imgsrv, storage):
    """A whole-disk boot (-M pc) takes volumes as virtio-blk-pci; the guest
    lets go of it on detach (ACPI hot-unplug)."""
    n1, net1 = nodes[0], nets[0]
    iid = n1.run(imgsrv, kernel=False, net=net1.host())["instanceId"]
    ip = guest_ip(n1, iid)
    vol = new_vol()
    ex = storage.serve(vol, "unix")
    assert n1.attach(iid, vol, "/dev/sdf", ex)["state"] == "attached"
    name, sectors = wait_disk(net1, ip, vol)
    assert name.startswith("vd") and sectors == (VOL_MB << 20) // 512
    # Grown online: virtio-blk's config change tells the guest.
    storage.grow(vol, VOL_MB + 16)
    assert n1.resize(iid, vol, (VOL_MB + 16) << 20)["sizeBytes"] == \
        (VOL_MB + 16) << 20
    wait_until(lambda: guest_sectors(net1, ip, vol) ==
               ((VOL_MB + 16) << 20) // 512, timeout=10, step=0.1,
               what="the new size in the pc guest")
    assert n1.detach(iid, vol)["state"] == "detached"
    wait_disk(net1, ip, vol, present=False, timeout=10)
    n1.call("ncTerminateInstance", instanceId=iid)
    n1.wait_state(iid, "terminated")


def test_cc_forwards_attach_and_detach(nodes, pki, imgsrv, storage,
                                       tmp_path):
    """AttachVolume, ResizeVolume and DetachVolume through koala-cc reach
    the node of the instance, and the cluster's DescribeInstances carries the attachment
    as the node reports it (no cluster network: manage_network false)."""
    from types import SimpleNamespace
    from test_cc import CC, type_items
    n1 = nodes[0]
    for name in ("koala-cc-zone-a", "koala-clc"):
        pki.issue(name)
    cc = CC(pki, tmp_path / "cc", SimpleNamespace(name=None),
            netns=None, manage_network="false", nc_timeout="10",
            nodes=f"vnode1=https://127.0.0.1:{n1.port}/")
    cc.start()
    iid = "i-00000000000000cc1"
    n1.started.add(iid)
    try:
        cc.wait_nodes({"vnode1": "ENABLED"}, timeout=30)
        refs = {k: imgsrv.ref(f, i) for k, f, i in (
            ("image", "root.img", "emi-00000001"),
            ("kernel", "vmlinuz", "eki-00000001"),
            ("ramdisk", "initrd.img", "eri-00000001"))}
        items = [("reservationId", "r-0000cc01"), ("ownerId", "000000000001"),
                 ("instanceType", type_items(("t1.micro", 1, 256, 1)))]
        items += [(k, list(v.items())) for k, v in refs.items()]
        items += [("instance", [("instanceId", iid), ("launchIndex", 0)])]
        cc.call("RunInstances", items)
        wait_until(lambda: cc.describe(iid)[iid]["state"] == "running",
                   timeout=120, step=0.5, what="running")
        vol = new_vol()
        ex = storage.serve(vol, "unix")
        r = cc.call("AttachVolume", [
            ("instanceId", iid), ("volumeId", vol), ("device", "/dev/sdf"),
            ("export", list(ex.items()))], timeout=90)
        v = to_dict(child(r, "volume"))
        assert v["state"] == "attached" and v["serial"] == serial_of(vol)
        assert n1.volumes(iid)[vol]["state"] == "attached"
        got = wait_until(lambda: (lambda d: d.get("volume", {}).get(
            "state") == "attached" and d)(cc.describe(iid)[iid]),
            timeout=30, step=0.3, what="the attachment in DescribeInstances")
        assert got["volume"]["device"] == "/dev/sdf"
        # ResizeVolume after the export grew: to the node, its answer back.
        storage.grow(vol, VOL_MB + 8)
        r = cc.call("ResizeVolume", [
            ("instanceId", iid), ("volumeId", vol),
            ("sizeBytes", (VOL_MB + 8) << 20)], timeout=90)
        assert to_dict(r)["sizeBytes"] == str((VOL_MB + 8) << 20)
        assert to_dict(child(r, "volume"))["state"] == "attached"
        # An unknown instance is the cluster's own fault, not the node's.
        with pytest.raises(SoapFault) as e:
            cc.call("AttachVolume", [
                ("instanceId", "i-00000000000000bad"), ("volumeId", vol),
                ("device", "/dev/sdg"), ("export", list(ex.items()))])
        assert e.value.code == "InvalidInstanceID.NotFound"
        r = cc.call("DetachVolume", [("instanceId", iid), ("volumeId", vol)],
                    timeout=90)
        assert to_dict(child(r, "volume"))["state"] == "detached"
        wait_until(lambda: cc.describe(iid)[iid].get("volume", {}).get(
            "state") == "detached", timeout=30, step=0.3,
            what="detached in DescribeInstances")
        # A launch with a volume: the CC passes it to ncRunInstance.
        iid2 = "i-00000000000000cc2"
        n1.started.add(iid2)
        items[-1] = ("instance", [("instanceId", iid2), ("launchIndex", 0),
                                  ("volume", [("volumeId", vol),
                                              ("device", "xvdf"),
                                              ("export", list(ex.items()))])])
        items[0] = ("reservationId", "r-0000cc02")
        cc.call("RunInstances", items)
        assert n1.volumes(iid2)[vol]["device"] == "xvdf"
        wait_until(lambda: cc.describe(iid2)[iid2].get("volume", {}).get(
            "state") == "attached", timeout=60, step=0.3,
            what="the launch's volume in DescribeInstances")
    finally:
        rc = cc.stop()
    assert rc == 0, cc.log_text()[-3000:]


def test_force_detach_from_a_guest_that_does_not_let_go(nodes, nets, imgsrv,
                                                         storage):
    """A pc whose guest never answers ACPI (no boot loader: SeaBIOS waits
    for ever): Force closes the NBD client after 2 s, the disk left to the
    guest reads zeros; the volume cannot come back to that instance while
    the guest holds the old disk."""
    n1, net1 = nodes[0], nets[0]
    iid = n1.run(imgsrv, kernel=False, net=net1.host(),
                 image=imgsrv.ref("root.img", "emi-0000b10c"))["instanceId"]
    n1.wait_state(iid, "running")
    vol = new_vol()
    ex = storage.serve(vol, "unix")
    assert n1.attach(iid, vol, "/dev/sdf", ex)["state"] == "attached"
    t0 = time.monotonic()
    d = n1.detach(iid, vol, force=True)
    assert d["state"] == "detached", d
    assert time.monotonic() - t0 < 15
    assert "forced off its export" in n1.log_text()
    f = fault(n1.attach, iid, vol, "/dev/sdf", ex)
    assert f.code == "VolumeInUse" and "still holds" in f.message, f.message
    n1.call("ncTerminateInstance", instanceId=iid)
    n1.wait_state(iid, "terminated")
