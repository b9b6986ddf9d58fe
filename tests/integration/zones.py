"""A cloud of several availability zones for the integration tests: one
CLC and Walrus, and per zone a CC in a namespace standing for its own
host, with its nodes behind it.  The zones' routers are joined only by a
"WAN": a namespace with a bridge, each router reaching it through a veth
(its tunnel address 192.0.2.N/24, TEST-NET-1, inside the namespaces
only).  Zone i hands out 10.(111-i).0.0/16, the slice of the default VPC
the CLC gives the i-th zone it sees (zones are named so that the order is
theirs).

Everything else is cloud.Cloud's: the same daemons, started and stopped
by PID, the namespaces deleted by stop().
"""
import subprocess
import sys
import time

from cloud import CC_BIN, REGION, Cloud
from conftest import Netns, free_port, sh, KOALA_BIN


class ZonesCloud(Cloud):
    def __init__(self, base, zones=("zone-a", "zone-b"), nodes_per_zone=1,
                 tunnels=True, encrypt=False, **kw):
        super().__init__(base, n_nodes=0, cluster=zones[0], **kw)
        self.encrypt = encrypt
        self.zones = list(zones)
        self.nodes_per_zone = nodes_per_zone
        self.tunnels = tunnels
        self.zone_ns = {}       # zone -> its router's namespace
        self.zone_port = {z: free_port() for z in zones}
        self.node_zone = {}     # node -> zone
        self.wan_ns = None

    def subnet(self, zone):
        return f"10.{111 - self.zones.index(zone)}.0.0/16"

    def tunnel_address(self, zone):
        return f"192.0.2.{self.zones.index(zone) + 1}"

    def _networks(self):
        wan = Netns("w")
        self.netns.append(wan)
        self.wan_ns = wan.name
        wan.ip("link", "add", "wan0", "type", "bridge")
        wan.ip("link", "set", "wan0", "up")
        for zi, zone in enumerate(self.zones):
            cns = Netns(f"c{zi}")
            self.netns.append(cns)
            self.zone_ns[zone] = cns.name
            cns.ip("link", "add", "klan0", "type", "bridge")
            cns.ip("link", "set", "klan0", "up")
            cns.ip("link", "add", "wan", "type", "veth", "peer", "name",
                   f"to-z{zi}", "netns", wan.name)
            cns.ip("addr", "add", f"{self.tunnel_address(zone)}/24", "dev",
                   "wan")
            cns.ip("link", "set", "wan", "up")
            wan.ip("link", "set", f"to-z{zi}", "master", "wan0", "up")
            for i in range(1, self.nodes_per_zone + 1):
                name = f"nc{zi}{i}"
                ns = Netns(f"n{zi}{i}")
                self.netns.append(ns)
                ns.ip("link", "add", "kbr0", "type", "bridge")
                ns.ip("link", "set", "kbr0", "up")
                ns.ip("link", "add", "uplink", "type", "veth",
                      "peer", "name", f"to-n{i}", "netns", cns.name)
                ns.ip("link", "set", "uplink", "master", "kbr0", "up")
                cns.ip("link", "set", f"to-n{i}", "master", "klan0", "up")
                self.node_ns[name] = ns.name
                self.node_zone[name] = zone
        self.cluster_ns = self.zone_ns[self.zones[0]]

    def _start(self):
        self.node_ns = {}
        out = sh(KOALA_BIN, "init", "--data-dir", self.dir).stdout
        kv = dict(line.split("=", 1) for line in out.split())
        self.key, self.secret = kv["AWS_ACCESS_KEY_ID"], \
            kv["AWS_SECRET_ACCESS_KEY"]
        self.ca = self.dir / "ca" / "ca.pem"
        self._networks()
        self._register("walrus", "w1",
                       f"http://127.0.0.1:{self.ports['walrus']}")
        for zone in self.zones:
            self._register("cluster", zone,
                           f"https://127.0.0.1:{self.zone_port[zone]}/")
        for name, zone in self.node_zone.items():
            port = free_port()
            self.nodes[name] = port
            self._register("node", name, f"https://127.0.0.1:{port}/",
                           "--cluster", zone)
        self._start_clc()
        self._start_walrus()
        for zone in self.zones:
            self.start_cc(zone)
        for name in self.nodes:
            self.start_nc(name)
        self.wait_enabled()
        self.allow_test_access()
        if self.sc:
            # one storage controller per zone: sc-ZONE
            self._start_scs({z: (f"sc-{z}", free_port())
                             for z in self.zones})
        return self

    def routers(self):
        return [self.subnet(z).replace("0.0/16", "0.1") for z in self.zones]

    def _daemon(self, name, argv, port):
        if name == "clc" and self.encrypt:
            argv = argv + ["--tunnel-encryption", "true"]
        return super()._daemon(name, argv, port)

    def start_cc(self, zone):
        cert, key = self.certs("cluster", zone)
        icert, ikey = self.certs("identity", zone)
        port = self.zone_port[zone]
        conf = self.base / f"cc-{zone}.conf"
        tunnel = (f"tunnel_address = {self.tunnel_address(zone)}\n"
                  if self.tunnels else "")
        conf.write_text(
            "[cc]\n"
            f"listen = 127.0.0.1:{port}\n"
            f"data_dir = {self.dir / ('cc-' + zone)}\n"
            f"name = {zone}\n"
            f"tls_cert = {cert}\ntls_key = {key}\nca = {self.ca}\n"
            f"identity_cert = {icert}\nidentity_key = {ikey}\n"
            f"region = {REGION}\n"
            f"clc_endpoint = https://127.0.0.1:{self.ports['clc_soap']}/\n"
            f"scheduler = {self.scheduler}\n"
            f"netns = {self.zone_ns[zone]}\nbridge = klan0\n"
            f"subnet = {self.subnet(zone)}\n"
            f"{tunnel}"
            "poll_interval = 1\n")
        return self._daemon(f"cc-{zone}", [CC_BIN, "--config", conf], port)

    def start_nc(self, name):
        # Cloud.start_nc points every node at self.ports["cc"]: its zone's.
        self.ports["cc"] = self.zone_port[self.node_zone[name]]
        return super().start_nc(name)

    def zone_of_ip(self, ip):
        for zone in self.zones:
            if ip.startswith(self.subnet(zone).rsplit(".", 2)[0] + "."):
                return zone
        raise ValueError(f"{ip} is in no zone's subnet")

    def guest_run(self, ip, script, timeout=30):
        """Cloud.guest_run from the namespace of the guest's own zone."""
        saved = self.cluster_ns
        self.cluster_ns = self.zone_ns[self.zone_of_ip(ip)]
        try:
            return super().guest_run(ip, script, timeout)
        finally:
            self.cluster_ns = saved

    def wait_tunnels(self, timeout=30):
        """Until every router has a route to every other zone's subnet."""
        deadline = time.monotonic() + timeout
        while True:
            missing = []
            for zone in self.zones:
                routes = sh("ip", "-n", self.zone_ns[zone], "route", "show",
                            "dev", "kvx0", check=False).stdout
                missing += [(zone, z) for z in self.zones
                            if z != zone and self.subnet(z) not in routes]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no tunnel routes for {missing}")
            time.sleep(0.2)


SNIFFER = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
out = sys.stdout.buffer
while time.monotonic() < end:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    out.write(len(frame).to_bytes(4, "big") + frame)
    out.flush()
"""


class Capture:
    """Every frame seen on ifname in namespace ns for up to seconds (an
    AF_PACKET socket in a python3 started there): `with Capture(...) as c:
    ...` then c.frames."""

    def __init__(self, ns, ifname, seconds=20):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SNIFFER,
             ifname, str(seconds)], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"
        self.frames = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        data, _ = self.proc.communicate(timeout=30)
        while len(data) >= 4:
            n = int.from_bytes(data[:4], "big")
            self.frames.append(data[4:4 + n])
            data = data[4 + n:]
        return False

    def udp_ports(self):
        """{destination UDP port: frames} of the IPv4 frames seen."""
        ports = {}
        for f in self.frames:
            if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
                continue
            ihl = (f[14] & 15) * 4
            port = int.from_bytes(f[14 + ihl + 2:14 + ihl + 4], "big")
            ports[port] = ports.get(port, 0) + 1
        return ports
