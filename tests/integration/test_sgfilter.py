"""Security groups enforced on the nodes (issue 10, docs/network.md "The
rule set on a node"), with the real daemons: one cloud with two nodes and
three busybox guests, A and C on one node, B on the other, and the CC's
SetNetworkPolicy called directly over SOAP with the CLC's certificate, as
the CLC calls it.  A probe namespace made here (on the cluster's LAN, at
10.111.250.1) stands for a host of the cluster that is not an instance.

Every policy here allows tcp/8080 from the router (10.111.0.1/32): that is
how the tests drive the guests (Cloud.guest_run); everything else is what
is being shown.

Shown: first the CLC's own document (the default group the harness opens
to the router) on every node; then default deny in (probe and other guests cannot reach :8080,
on one node or across nodes), stateful replies, a rule from a CIDR, a rule
from a group and membership changes (a member removed from the set is cut,
on the same node and across nodes), ICMP type rules, UDP in (the probe
sees the guest's port unreachable only when a rule lets it in) and out (a
TFTP exchange with a responder in the probe namespace; busybox's nc here is
TCP only), egress rules (removed: outbound attempts cut while DHCP, DNS and
metadata still work), a change taking effect on running instances (timed),
stale versions ignored, malformed documents refused with a fault and
nothing changed (on the CC and on an NC directly), koala-nc killed with
SIGKILL, its table deleted and rebuilt at start, koala-cc killed with
SIGKILL and re-pushing at start to a node that lost its document.

Every process is started here (cloud.py) and stopped by its PID; what the
guests start runs inside them.
"""
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from cloud import IMAGES, Cloud, GuestUnreachable
from conftest import ROOT, Netns, sh, wait_until
from soapclient import SoapClient, SoapFault, client_context, text
from test_compute import wait_state

CC_NS = "urn:koala:cc"
NC_NS = "urn:koala:nc"
TABLE = "koala_nc_sg"
ROUTER = "10.111.0.1"
PROBE = "10.111.250.1"
SG_A = "sg-0000000000000000a"  # A and C
SG_B = "sg-0000000000000000b"  # B
CTRL = {"proto": "tcp", "from": 8080, "to": 8080, "cidr": ROUTER + "/32"}
ALL_OUT = {"proto": "all", "cidr": "0.0.0.0/0"}
# Versions above anything a CLC would have sent this cloud.
BASE = int(time.time() * 1000)


def run(cloud, ip, script, timeout=30):
    r = cloud.guest_run(ip, script, timeout)
    assert r.returncode == 0, f"{ip}: exit {r.returncode}:\n{r.output}"
    return r.output


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    sh("bash", ROOT / "tests" / "images" / "build.sh", IMAGES)
    c = Cloud(tmp_path_factory.mktemp("sgfilter"), n_nodes=2,
              scheduler="ROUNDROBIN", node_cores=4,
              node_memory_mb=2048).start()
    probe = None
    try:
        probe = Netns("p")
        c.netns.append(probe)  # deleted by c.stop()
        probe.ip("link", "add", "eth0", "type", "veth", "peer", "name",
                 "to-probe", "netns", c.cluster_ns)
        c.netns_exec(c.cluster_ns, "ip", "link", "set", "to-probe",
                     "master", "klan0", "up")
        probe.ip("addr", "add", PROBE + "/16", "dev", "eth0")
        probe.ip("link", "set", "eth0", "up")
        c.probe_ns = probe.name
        c.ami, _, _ = c.upload_images()
        ec2 = c.ec2()
        ids = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=c.ami, MinCount=3, MaxCount=3,
            InstanceType="m1.small")["Instances"]]
        got = wait_state(ec2, ids, "running", timeout=300)
        where = {}
        for iid in ids:
            where[iid] = [n for n in c.nodes
                          if (c.dir / n / "instances" / iid).exists()][0]
        by_node = {}
        for iid in ids:
            by_node.setdefault(where[iid], []).append(iid)
        two = [n for n, v in by_node.items() if len(v) == 2]
        one = [n for n, v in by_node.items() if len(v) == 1]
        assert two and one, by_node
        a, cc_ = by_node[two[0]]
        b = by_node[one[0]][0]

        def answers(ip):
            try:
                return c.guest_run(ip, "cat /run/ip", 10).output.strip() == ip
            except GuestUnreachable:
                return False
        for iid in ids:
            ip = got[iid]["PrivateIpAddress"]
            wait_until(lambda: answers(ip), 300, 1, f"guest {ip} answering")
        c.g = {k: (iid, got[iid]["PrivateIpAddress"], where[iid])
               for k, iid in (("A", a), ("B", b), ("C", cc_))}
        c.ip = {k: v[1] for k, v in c.g.items()}
        c.node_of = {k: v[2] for k, v in c.g.items()}
        cert = c.dir / "certs" / "clc.pem"
        key = c.dir / "certs" / "clc.key"
        c.clc_ctx = client_context(c.ca, cert, key)
    except BaseException:
        c.stop()
        raise
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


# ---- helpers ----

def cc_client(cloud):
    return SoapClient(f"https://127.0.0.1:{cloud.ports['cc']}/", CC_NS,
                      ctx=cloud.clc_ctx, timeout=60)


def set_policy(cloud, doc, version=None):
    """SetNetworkPolicy as the CLC sends it; the version held."""
    version = doc["version"] if version is None else version
    r = cc_client(cloud).call("SetNetworkPolicy", [
        ("version", version), ("policy", json.dumps(doc))])
    return int(text(r, "version"))


def policy(cloud, version, a_in=(), b_in=(), a_out=(ALL_OUT,),
           b_out=(ALL_OUT,), members=None):
    g = cloud.g
    if members is None:
        members = {SG_A: [cloud.ip["A"], cloud.ip["C"]],
                   SG_B: [cloud.ip["B"]]}
    return {"version": BASE + version,
            "groups": {SG_A: {"ingress": [CTRL, *a_in], "egress": list(a_out)},
                       SG_B: {"ingress": [CTRL, *b_in],
                              "egress": list(b_out)}},
            "members": members,
            "instances": {g["A"][0]: [SG_A], g["C"][0]: [SG_A],
                          g["B"][0]: [SG_B]}}


def nft(cloud, node, *args, check=True):
    return cloud.netns_exec(cloud.node_ns[node], "nft", *args, check=check)


def table(cloud, node):
    """The node's table without its counters, or None."""
    r = nft(cloud, node, "list", "table", "inet", TABLE, check=False)
    if r.returncode != 0:
        return None
    return re.sub(r"counter packets \d+ bytes \d+", "counter", r.stdout)


def node_version(cloud, node):
    ctx = client_context(cloud.ca, *cloud.certs("cluster", cloud.cluster))
    c = SoapClient(f"https://127.0.0.1:{cloud.nodes[node]}/", NC_NS, ctx=ctx)
    return int(text(c.call("ncDescribeResource"), "networkPolicyVersion"))


def probe_http(cloud, dst, timeout=2):
    r = subprocess.run(["ip", "netns", "exec", cloud.probe_ns, "curl", "-s",
                        "-m", str(timeout), f"http://{cloud.ip[dst]}:8080/"],
                       capture_output=True, text=True, timeout=timeout + 10)
    return r.returncode == 0 and "KOALA-GUEST" in r.stdout


def probe_udp(cloud, dst, port, timeout=2.0):
    """True when a UDP datagram from the probe reaches guest dst (its port
    unreachable comes back: nothing listens there), False when it is
    dropped on the way."""
    code = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout({timeout})
s.connect(("{cloud.ip[dst]}", {port}))
for _ in range(2):
    s.send(b"x")
    try:
        s.recv(100)
    except ConnectionRefusedError:
        print("reached"); sys.exit(0)
    except socket.timeout:
        pass
print("dropped")
"""
    r = subprocess.run(["ip", "netns", "exec", cloud.probe_ns,
                        sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=timeout * 3 + 10)
    return r.stdout.strip() == "reached"


def http_from(cloud, src, dst):
    """Guest src fetches guest dst's :8080 page."""
    out = run(cloud, cloud.ip[src],
              "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
              f"nc -w 3 {cloud.ip[dst]} 8080 2>/dev/null | "
              "grep -q KOALA-GUEST && echo yes || echo no")
    return out.strip() == "yes"


def ping_from(cloud, src, dst):
    out = run(cloud, cloud.ip[src],
              f"ping -c 1 -W 2 {cloud.ip[dst]} >/dev/null 2>&1 "
              "&& echo yes || echo no")
    return out.strip() == "yes"


def services_from(cloud, src):
    """DHCP (a lease offered), DNS (the router answers the instance's
    name) and the metadata service (names the instance), as seen from
    guest src."""
    iid, ip, _ = cloud.g[src]
    out = run(cloud, ip, f"""
udhcpc -i eth0 -n -q -t 3 -T 2 -s /bin/true >/dev/null 2>&1 \\
    && echo dhcp=yes || echo dhcp=no
nslookup {iid} {ROUTER} 2>/dev/null | grep -q '{ip}' \\
    && echo dns=yes || echo dns=no
r=$(printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n\\r\\n' |
    nc -w 3 169.254.169.254 80 2>/dev/null | tail -n 1)
echo meta=$r
""", timeout=40)
    return dict(line.split("=", 1) for line in out.split())


class TftpResponder:
    """A UDP responder in the probe namespace: answers any TFTP read
    request with one DATA block "hello-<requested name>", from the port it
    was asked on (so the guest's reply is the tracked flow's)."""

    def __init__(self, cloud, port=5000):
        code = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {port}))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    if data[:2] == b"\\x00\\x01":
        name = data[2:].split(b"\\x00")[0]
        s.sendto(b"\\x00\\x03\\x00\\x01hello-" + name, peer)
"""
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cloud.probe_ns, sys.executable, "-c",
             code], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def udp_out(cloud, src, port=5000):
    """Guest src's TFTP request to the probe is answered."""
    out = run(cloud, cloud.ip[src],
              f"rm -f /tmp/t; timeout 6 tftp -g -r x{src} -l /tmp/t "
              f"{PROBE} {port} >/dev/null 2>&1; cat /tmp/t 2>/dev/null; "
              "echo", timeout=20)
    return out.strip() == f"hello-x{src}"


# ---- the tests, in order (each builds on the policy of the last) ----

def test_the_clcs_policy_first(cloud):
    """Before the tests push their own documents the nodes hold the CLC's:
    the account's default group, which the harness opened to the router
    (Cloud.allow_test_access).  A node that never got one (version 0)
    filters nothing; tests/unit/test_nc_sgfilter.c shows that, as a cloud
    with a CLC never leaves its nodes without one."""
    for node in cloud.nodes:
        assert wait_until(lambda: table(cloud, node), timeout=30)
        assert 0 < node_version(cloud, node) < BASE
        sysctl = cloud.netns_exec(
            cloud.node_ns[node], "cat",
            "/proc/sys/net/bridge/bridge-nf-call-iptables").stdout.strip()
        assert sysctl == "1"
    # the default group: its members reach each other, no one else
    assert http_from(cloud, "A", "C") and http_from(cloud, "A", "B")
    assert not probe_http(cloud, "A") and not probe_http(cloud, "B")


def test_default_deny_in(cloud):
    held = set_policy(cloud, policy(cloud, 1))
    assert held == BASE + 1
    for node in cloud.nodes:
        assert node_version(cloud, node) == BASE + 1
        t = table(cloud, node)
        assert t is not None
        for k, (iid, ip, n) in cloud.g.items():
            assert (f"chain in_{iid[2:]}" in t) == (n == node), (k, t)
    # The control path (router -> :8080) is the only way in.
    assert run(cloud, cloud.ip["A"], "echo ok").strip() == "ok"
    assert not probe_http(cloud, "A")
    assert not probe_http(cloud, "B")
    assert not http_from(cloud, "A", "C")  # one node
    assert not http_from(cloud, "A", "B")  # two nodes
    assert not ping_from(cloud, "A", "B")
    assert not ping_from(cloud, "C", "A")
    assert not probe_udp(cloud, "A", 5000)
    # What every guest needs still works.
    s = services_from(cloud, "A")
    assert s == {"dhcp": "yes", "dns": "yes", "meta": cloud.g["A"][0]}, s


def test_rule_from_cidr(cloud):
    probe_only = {"proto": "tcp", "from": 8080, "to": 8080,
                  "cidr": "10.111.250.0/24"}
    set_policy(cloud, policy(cloud, 2, b_in=[probe_only]))
    assert probe_http(cloud, "B")
    assert not probe_http(cloud, "A")
    assert not http_from(cloud, "A", "B")  # A is not in that CIDR


def test_rule_from_group_and_membership(cloud):
    from_a = {"proto": "tcp", "from": 8080, "to": 8080, "group": SG_A}
    a_to_a = {"proto": "all", "group": SG_A}
    set_policy(cloud, policy(cloud, 3, a_in=[a_to_a], b_in=[from_a]))
    # Across nodes, to a group's member; the reply is let back in by
    # conntrack (A's own ingress allows nothing from B).
    assert http_from(cloud, "A", "B")
    assert http_from(cloud, "C", "B")
    assert not http_from(cloud, "B", "A")
    # One node, both ways, any protocol.
    assert http_from(cloud, "C", "A") and ping_from(cloud, "A", "C")
    assert not probe_http(cloud, "B")
    # A leaves SG_A's member set (the CLC would do this when A's groups
    # change): cut from B and from C, while C keeps both.
    members = {SG_A: [cloud.ip["C"]], SG_B: [cloud.ip["B"]]}
    set_policy(cloud, policy(cloud, 4, a_in=[a_to_a], b_in=[from_a],
                             members=members))
    assert not http_from(cloud, "A", "B")
    assert http_from(cloud, "C", "B")
    assert not http_from(cloud, "A", "C")
    assert http_from(cloud, "C", "A")


def test_icmp_and_udp(cloud):
    echo_from_a = {"proto": "icmp", "from": 8, "to": -1, "group": SG_A}
    udp_in = {"proto": "udp", "from": 5000, "to": 5000,
              "cidr": PROBE + "/32"}
    set_policy(cloud, policy(cloud, 5, b_in=[echo_from_a, udp_in]))
    assert ping_from(cloud, "A", "B") and ping_from(cloud, "C", "B")
    assert not ping_from(cloud, "B", "A")
    assert not http_from(cloud, "A", "B")  # only echo requests
    assert probe_udp(cloud, "B", 5000)
    assert not probe_udp(cloud, "B", 5001)
    assert not probe_udp(cloud, "A", 5000)


def test_egress(cloud):
    tftp = TftpResponder(cloud)
    try:
        assert udp_out(cloud, "A")  # egress all (and the probe unfiltered)
        web_to_b = {"proto": "tcp", "from": 8080, "to": 8080, "group": SG_B}
        from_a = {"proto": "tcp", "from": 8080, "to": 8080, "group": SG_A}
        set_policy(cloud, policy(cloud, 6, a_out=[web_to_b],
                                 b_in=[from_a]))
        assert http_from(cloud, "A", "B")
        assert not udp_out(cloud, "A")
        assert udp_out(cloud, "B")
        udp_5000 = {"proto": "udp", "from": 5000, "to": 5000,
                    "cidr": PROBE + "/32"}
        set_policy(cloud, policy(cloud, 7, a_out=[udp_5000],
                                 b_in=[from_a]))
        assert udp_out(cloud, "A")
        assert not http_from(cloud, "A", "B")
        # No egress rule at all: every outbound attempt is cut, but DHCP,
        # DNS and the metadata service are always there.
        set_policy(cloud, policy(cloud, 8, a_out=[], b_in=[from_a]))
        assert not udp_out(cloud, "A")
        assert not http_from(cloud, "A", "B")
        assert not ping_from(cloud, "A", "C")
        s = services_from(cloud, "A")
        assert s == {"dhcp": "yes", "dns": "yes",
                     "meta": cloud.g["A"][0]}, s
    finally:
        tftp.stop()


def test_change_takes_effect_at_once(cloud):
    set_policy(cloud, policy(cloud, 9))
    assert not probe_http(cloud, "B")
    probe_in = {"proto": "tcp", "from": 8080, "to": 8080,
                "cidr": PROBE + "/32"}
    t0 = time.monotonic()
    set_policy(cloud, policy(cloud, 10, b_in=[probe_in]))
    while not probe_http(cloud, "B", timeout=1):
        assert time.monotonic() - t0 < 5, "rule not in effect after 5 s"
    took = time.monotonic() - t0
    print(f"\nrule change to traffic passing: {took * 1000:.0f} ms")
    t0 = time.monotonic()
    set_policy(cloud, policy(cloud, 11))
    while probe_http(cloud, "B", timeout=1):
        assert time.monotonic() - t0 < 5, "rule still in effect after 5 s"
    print(f"revoke to traffic dropped: {(time.monotonic() - t0) * 1000:.0f}"
          " ms")


def test_stale_versions_ignored(cloud):
    tables = {n: table(cloud, n) for n in cloud.nodes}
    probe_in = {"proto": "tcp", "from": 8080, "to": 8080,
                "cidr": PROBE + "/32"}
    assert set_policy(cloud, policy(cloud, 3, b_in=[probe_in])) == BASE + 11
    assert set_policy(cloud, policy(cloud, 11, b_in=[probe_in])) == BASE + 11
    assert not probe_http(cloud, "B")
    assert {n: table(cloud, n) for n in cloud.nodes} == tables
    # Straight to a node: the same.
    ctx = client_context(cloud.ca, *cloud.certs("cluster", cloud.cluster))
    nc = SoapClient(f"https://127.0.0.1:{cloud.nodes['nc1']}/", NC_NS,
                    ctx=ctx)
    doc = policy(cloud, 5, b_in=[probe_in])
    r = nc.call("ncSetNetworkPolicy", [("version", doc["version"]),
                                       ("policy", json.dumps(doc))])
    assert int(text(r, "version")) == BASE + 11
    assert table(cloud, "nc1") == tables["nc1"]


BAD_RULES = [
    {"proto": "sctp", "cidr": "0.0.0.0/0"},
    {"proto": "tcp", "from": 0, "to": 70000, "cidr": "0.0.0.0/0"},
    {"proto": "tcp", "from": 90, "to": 80, "cidr": "0.0.0.0/0"},
    {"proto": "all"},
    {"proto": "all", "cidr": "0.0.0.0/0", "group": SG_A},
    {"proto": "all", "cidr": "10.0.0.0/33"},
    {"proto": "all", "cidr": "10.0.0/8"},
    {"proto": "all", "group": "default"},
]


def test_malformed_refused_nothing_changed(cloud):
    tables = {n: table(cloud, n) for n in cloud.nodes}
    states = {n: (cloud.dir / n / "netpolicy.json").read_text()
              for n in cloud.nodes}
    docs = []
    for rule in BAD_RULES:
        docs.append(policy(cloud, 50, b_in=[rule]))
    bad_id = policy(cloud, 50)
    bad_id["instances"]["i-nothex"] = [SG_A]
    docs.append(bad_id)
    bad_member = policy(cloud, 50)
    bad_member["members"][SG_A] = ["10.111.0.300"]
    docs.append(bad_member)
    extra = policy(cloud, 50)
    extra["rules"] = []
    docs.append(extra)
    client = cc_client(cloud)
    for doc in docs:
        with pytest.raises(SoapFault) as e:
            client.call("SetNetworkPolicy", [("version", doc["version"]),
                                             ("policy", json.dumps(doc))])
        assert e.value.code == "InvalidParameterValue", doc
    for body in ([("version", BASE + 50), ("policy", "{not json")],
                 [("version", BASE + 50),
                  ("policy", json.dumps(policy(cloud, 51)))],  # mismatch
                 [("version", "x"), ("policy", "{}")],
                 [("version", BASE + 50)]):
        with pytest.raises(SoapFault) as e:
            client.call("SetNetworkPolicy", body)
        assert e.value.code in ("InvalidParameterValue",
                                "MissingParameter"), body
    # Nothing changed: the CC still holds the last version, the nodes their
    # documents and tables.
    assert set_policy(cloud, policy(cloud, 11)) == BASE + 11
    assert {n: table(cloud, n) for n in cloud.nodes} == tables
    assert {n: (cloud.dir / n / "netpolicy.json").read_text()
            for n in cloud.nodes} == states
    # And an NC refuses one itself.
    ctx = client_context(cloud.ca, *cloud.certs("cluster", cloud.cluster))
    nc = SoapClient(f"https://127.0.0.1:{cloud.nodes['nc1']}/", NC_NS,
                    ctx=ctx)
    with pytest.raises(SoapFault) as e:
        nc.call("ncSetNetworkPolicy", [("version", docs[0]["version"]),
                                       ("policy", json.dumps(docs[0]))])
    assert e.value.code == "InvalidParameterValue"
    assert table(cloud, "nc1") == tables["nc1"]


def test_nc_kill9_rebuilds_its_table(cloud):
    node = cloud.node_of["A"]
    before = table(cloud, node)
    assert before is not None
    d = cloud.daemons[node]
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        assert table(cloud, node) == before  # the kernel keeps it
        assert not probe_http(cloud, "A")
        nft(cloud, node, "delete", "table", "inet", TABLE)
        assert probe_http(cloud, "A")  # the control: now it is open
    finally:
        d.start()
    assert table(cloud, node) == before  # rebuilt before it answered
    assert not probe_http(cloud, "A")
    assert not http_from(cloud, "C", "A")
    assert run(cloud, cloud.ip["A"], "echo ok").strip() == "ok"


def test_cc_kill9_repushes(cloud):
    node = cloud.node_of["B"]
    cc = cloud.daemons["cc"]
    assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        # B's node loses its document while the CC is down.
        d = cloud.daemons[node]
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        (cloud.dir / node / "netpolicy.json").unlink()
        nft(cloud, node, "delete", "table", "inet", TABLE)
        d.start()
        assert node_version(cloud, node) == 0
        assert table(cloud, node) is None
        assert probe_http(cloud, "B")
    finally:
        cc.start()
    wait_until(lambda: node_version(cloud, node) == BASE + 11, 30, 0.2,
               "the restarted CC pushing its policy")
    assert table(cloud, node) is not None
    assert not probe_http(cloud, "B")
    assert http_from(cloud, "A", "B") is False
