"""Per-tap anti-spoofing on the node (issue 9, docs/metadata.md "Who is
asking"), with the real daemons: one cloud (CLC, Walrus, a CC, one NC),
two busybox guests A and B on the same node, driven through their
/cgi-bin/run (tests/images/README.md) from the cluster's namespace.

Shown: the node's bridge table koala_nc holds a chain per tap with the
instance's MAC and address; with its own address A reaches B, the router
and the metadata service (which names A); with a free address added, with
B's address, and with another MAC it reaches none of them (with B's
address the metadata service would answer as if A were B; the script in A
changes, probes and restores in the background and leaves its results in
a file, since A cannot be reached meanwhile), while B keeps reaching the
router and the router's neighbour table keeps B's MAC for B's address;
restored, A reaches all of them again; the drop counters of A's chain show where its frames died.  A DHCP server in A
is not heard by B (its offers are counted as dropped).  The table deleted
by hand lets the spoofing through (the control that the probe can see it
work); koala-nc killed with SIGKILL and started again puts the table back
before anything else and the spoofing is blocked again.  A table that
cannot be written fails a launch (terminated with the reason, no QEMU); a
terminated instance's chain is gone.

Every process is started here (cloud.py) and stopped by its PID; what the
guests start runs inside them.
"""
import json
import re
import signal
import threading
import time

import pytest

from cloud import IMAGES, Cloud, GuestUnreachable
from conftest import ROOT, sh, wait_until
from test_compute import wait_state

TABLE = "koala_nc"
SG_TABLE = "koala_nc_sg"  # the security groups' (sgfilter.c)
ROUTER = "10.111.0.1"
FREE = "10.111.250.250"  # in the cluster's /16, never handed out here
OTHER_MAC = "02:00:00:5a:5a:01"


def node_nft(cloud, *args, check=True):
    return cloud.netns_exec(cloud.node_ns["nc1"], "nft", *args, check=check)


def table_text(cloud):
    r = node_nft(cloud, "list", "table", "bridge", TABLE, check=False)
    return r.stdout if r.returncode == 0 else None


def counters(cloud, chain):
    """{rule: packets} of a tap chain's drop rules: mac, arp_mac, arp_ip,
    dhcp_server, ip, rest."""
    out = node_nft(cloud, "list", "chain", "bridge", TABLE, chain).stdout
    names = [("ether saddr", "mac"), ("arp saddr ether", "arp_mac"),
             ("arp saddr ip", "arp_ip"), ("udp sport 67", "dhcp_server"),
             ("ip saddr", "ip")]
    got = {}
    for line in out.splitlines():
        m = re.match(r"\s*(.*?)\s*counter packets (\d+) bytes \d+ drop$",
                     line)
        if m:
            name = next((n for p, n in names if m.group(1).startswith(p)),
                        "rest")
            got[name] = int(m.group(2))
    return got


def run(cloud, ip, script, timeout=30):
    r = cloud.guest_run(ip, script, timeout)
    assert r.returncode == 0, f"{ip}: exit {r.returncode}:\n{r.output}"
    return r.output


class Guest:
    def __init__(self, cloud, iid, ip):
        self.id, self.ip = iid, ip
        self.mac = run(cloud, ip, "cat /sys/class/net/eth0/address").strip()
        self.prefix = re.search(
            r"inet [\d.]+/(\d+)",
            run(cloud, ip, "ip -o -4 addr show dev eth0")).group(1)
        inst = json.loads((cloud.dir / "nc1" / "instances" / iid /
                           "instance.json").read_text())
        self.tap = inst["tap"]
        self.chain = "tap_" + iid[2:]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # The guest with /cgi-bin/run: built (idempotently) if it is not there.
    sh("bash", ROOT / "tests" / "images" / "build.sh", IMAGES)
    c = Cloud(tmp_path_factory.mktemp("antispoof"), n_nodes=1,
              node_cores=4, node_memory_mb=2048).start()
    c.ami, _, _ = c.upload_images()
    ec2 = c.ec2()
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=c.ami, MinCount=2, MaxCount=2,
        InstanceType="m1.small")["Instances"]]
    got = wait_state(ec2, ids, "running", timeout=240)
    ips = [got[i]["PrivateIpAddress"] for i in ids]

    def answers(ip):
        try:
            return c.guest_run(ip, "cat /run/ip", 10).output.strip() == ip
        except GuestUnreachable:
            return False
    for ip in ips:
        wait_until(lambda: answers(ip), 240, 1, f"guest {ip} answering")
    c.a, c.b = Guest(c, ids[0], ips[0]), Guest(c, ids[1], ips[1])
    c.router_mac = re.search(r"link/ether ([0-9a-f:]{17})", c.netns_exec(
        c.cluster_ns, "ip", "link", "show", "klan0").stdout).group(1)
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def spoof_script(cloud, phases):
    """A shell script for A: in the background, probes with its own
    address, then each phase (free: a free address added; other: B's
    address instead of its own; mac: another MAC), restores, probes again,
    and writes 'PHASE router=yes|no other=yes|no meta=ID|no' lines ('-':
    not probed) and 'done' to /tmp/spoof.log.  The neighbours are pinned while spoofing, so that IP
    frames leave A (not only ARP)."""
    a, b = cloud.a, cloud.b
    body = f"""
R={ROUTER}; RMAC={cloud.router_mac}; B={b.ip}; BMAC={b.mac}
OWN={a.ip}; MAC={a.mac}; P={a.prefix}; FREE={FREE}; NEWMAC={OTHER_MAC}
log() {{ echo "$*" >> /tmp/spoof.log; }}
reach() {{ ping -c 2 -W 2 $2 $1 >/dev/null 2>&1 && echo yes || echo no; }}
meta() {{  # (busybox wget crashes in this guest: HTTP through nc)
    r=$(printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n%s\\r\\n\\r\\n' \\
        'Host: 169.254.169.254' | nc -w 3 169.254.169.254 80 2>/dev/null |
        tail -n 1)
    case "$r" in i-*) echo "$r" ;; *) echo no ;; esac
}}
pin() {{
    ip neigh replace $R lladdr $RMAC dev eth0 nud permanent
    ip neigh replace $B lladdr $BMAC dev eth0 nud permanent
}}
addr() {{
    ip addr flush dev eth0
    ip addr add $1/$P dev eth0
    ip route replace default via $R dev eth0
}}
setmac() {{
    ip link set eth0 down
    ip link set eth0 address $1
    ip link set eth0 up
    addr $OWN
}}
sleep 2
log "own router=$(reach $R) other=$(reach $B) meta=$(meta)"
"""
    if "free" in phases:
        body += """pin
ip addr add $FREE/$P dev eth0
log "free router=$(reach $R "-I $FREE") other=$(reach $B "-I $FREE") meta=-"
ip addr del $FREE/$P dev eth0
"""
    if "other" in phases:
        body += """addr $B
pin
arping -U -c 2 -w 3 -I eth0 $B >/dev/null 2>&1
log "other router=$(reach $R) other=- meta=$(meta)"
addr $OWN
"""
    if "mac" in phases:
        body += """setmac $NEWMAC
pin
log "mac router=$(reach $R) other=$(reach $B) meta=$(meta)"
"""
    body += """setmac $MAC
ip neigh del $R dev eth0 2>/dev/null
ip neigh del $B dev eth0 2>/dev/null
log "restored router=$(reach $R) other=$(reach $B) meta=$(meta)"
log done
"""
    return ("rm -f /tmp/spoof.log\n"
            "cat > /tmp/spoof.sh <<'EOS'\n" + body + "EOS\n"
            "sh /tmp/spoof.sh > /tmp/spoof.out 2>&1 &\n"
            "echo started\n")


def spoof(cloud, phases):
    """Runs spoof_script in A and waits for its results:
    {phase: (router, other, meta)}."""
    assert run(cloud, cloud.a.ip, spoof_script(cloud, phases)).strip() == \
        "started"
    deadline = time.monotonic() + 180
    log = ""
    while time.monotonic() < deadline:
        try:
            log = cloud.guest_run(cloud.a.ip, "cat /tmp/spoof.log", 3).output
        except GuestUnreachable:
            log = ""  # cut off while it spoofs
        if "done" in log.split():
            break
        time.sleep(1)
    assert "done" in log.split(), f"A never finished: {log!r}"
    out = {}
    for line in log.splitlines():
        m = re.match(r"(\w+) router=(\w+) other=(\S+) meta=(\S+)$", line)
        if m:
            out[m.group(1)] = m.group(2, 3, 4)
    return out


# ---- tests -----------------------------------------------------------------

def test_rules_installed(cloud):
    a, b = cloud.a, cloud.b
    t = table_text(cloud)
    assert t is not None
    assert "hook prerouting priority filter; policy accept;" in t
    assert "iifname vmap @tap_chain" in t
    for g in (a, b):
        assert f'"{g.tap}" : jump {g.chain}' in t
        chain = node_nft(cloud, "list", "chain", "bridge", TABLE,
                         g.chain).stdout
        assert f"ether saddr != {g.mac} counter" in chain
        assert f"arp saddr ether != {g.mac} counter" in chain
        assert f"ip saddr != {g.ip} counter" in chain
        assert "udp sport 67 counter" in chain
        assert "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept" in chain
    # The rule set loaded last, as the node wrote it.
    assert (cloud.dir / "nc1" / f"{TABLE}.nft").read_text().startswith(
        f"add table bridge {TABLE}\ndelete table bridge {TABLE}\n")


def test_own_address_reaches_everyone(cloud):
    a, b = cloud.a, cloud.b
    for me, peer in ((a, b), (b, a)):
        out = run(cloud, me.ip, f"ping -c 2 -W 2 {peer.ip} && "
                                f"ping -c 2 -W 2 {ROUTER}")
        assert out.count(" 0% packet loss") == 2, out


def test_spoofed_address_or_mac_reaches_nobody(cloud):
    a, b = cloud.a, cloud.b
    before_a, before_b = counters(cloud, a.chain), counters(cloud, b.chain)
    # B pings the router all along, once a second.
    b_pings, stop = [], threading.Event()

    def b_keeps_working():
        while not stop.is_set():
            try:
                r = cloud.guest_run(b.ip, f"ping -c 1 -W 2 {ROUTER}", 10)
                b_pings.append(r.returncode)
            except GuestUnreachable as e:
                b_pings.append(str(e))
            stop.wait(1)

    t = threading.Thread(target=b_keeps_working)
    t.start()
    try:
        got = spoof(cloud, ("free", "other", "mac"))
    finally:
        stop.set()
        t.join()
    assert got == {"own": ("yes", "yes", a.id),
                   "free": ("no", "no", "-"),
                   "other": ("no", "-", "no"),
                   "mac": ("no", "no", "no"),
                   "restored": ("yes", "yes", a.id)}, got
    # B was never cut off, and the router still has B's MAC for B's
    # address (A's gratuitous ARP for it never got out).
    assert len(b_pings) >= 5 and set(b_pings) == {0}, b_pings
    neigh = cloud.netns_exec(cloud.cluster_ns, "ip", "neigh", "show",
                             b.ip).stdout
    assert a.mac not in neigh and OTHER_MAC not in neigh, neigh
    # Where A's frames died: another MAC, ARP for an address not its own,
    # IP from an address not its own.  B's chain dropped nothing of B's.
    after_a, after_b = counters(cloud, a.chain), counters(cloud, b.chain)
    for rule in ("mac", "arp_ip", "ip"):
        assert after_a[rule] > before_a[rule], (rule, before_a, after_a)
    for rule in ("mac", "arp_mac", "arp_ip", "ip", "dhcp_server"):
        assert after_b[rule] == before_b[rule], (rule, before_b, after_b)
    # A works as before.
    run(cloud, a.ip, f"ping -c 1 -W 2 {b.ip} && ping -c 1 -W 2 {ROUTER}")


def test_dhcp_server_in_a_guest_is_not_heard(cloud):
    a, b = cloud.a, cloud.b
    before = counters(cloud, a.chain)["dhcp_server"]
    run(cloud, a.ip, f"""
cat > /tmp/udhcpd.conf <<EOF
start 10.111.250.10
end 10.111.250.20
interface eth0
lease_file /tmp/udhcpd.leases
option subnet 255.255.0.0
option router {a.ip}
EOF
: > /tmp/udhcpd.leases
udhcpd -f /tmp/udhcpd.conf > /tmp/udhcpd.log 2>&1 &
echo $! > /tmp/udhcpd.pid
""")
    try:
        # B asks three times; a script that only records what it got.
        out = run(cloud, b.ip, """
cat > /tmp/dhcp-note.sh <<'EOF'
#!/bin/sh
[ "$1" = bound ] && echo "lease ip=$ip server=$serverid"
exit 0
EOF
chmod +x /tmp/dhcp-note.sh
for i in 1 2 3; do
    udhcpc -i eth0 -f -q -n -t 3 -T 2 -s /tmp/dhcp-note.sh 2>/dev/null
    sleep 1
done
""", 60)
        leases = re.findall(r"lease ip=(\S+) server=(\S+)", out)
        assert leases == [(b.ip, ROUTER)] * 3, out
        # A's server did answer: its offers died at its tap.
        wait_until(lambda: counters(cloud, a.chain)["dhcp_server"] > before,
                   10, 0.5, "A's DHCP offers counted")
    finally:
        run(cloud, a.ip, "kill $(cat /tmp/udhcpd.pid)")


def test_table_rebuilt_after_nc_kill9(cloud):
    a, b = cloud.a, cloud.b
    vms = cloud.vms("nc1")
    assert set(vms) == {a.id, b.id}
    # B's security groups (the default group: its members' addresses only)
    # would refuse the free address too; let ICMP from it in, so that the
    # anti-spoofing table alone decides below.
    ec2 = cloud.ec2()
    icmp_free = [{"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
                  "IpRanges": [{"CidrIp": FREE + "/32"}]}]
    ec2.authorize_security_group_ingress(GroupName="default",
                                         IpPermissions=icmp_free)
    try:
        _table_rebuilt_after_nc_kill9(cloud, a, b, vms)
    finally:
        ec2.revoke_security_group_ingress(GroupName="default",
                                          IpPermissions=icmp_free)


def _table_rebuilt_after_nc_kill9(cloud, a, b, vms):
    node_nft(cloud, "delete", "table", "bridge", TABLE)
    assert table_text(cloud) is None
    # (and the security groups' table, which would stop the free address
    # at B's ingress: it is in no group; rebuilt with the other)
    node_nft(cloud, "delete", "table", "inet", SG_TABLE)
    # The control: without the table A's added address does reach both
    # (so the probes above would have seen spoofing work).
    got = spoof(cloud, ("free",))
    assert got == {"own": ("yes", "yes", a.id), "free": ("yes", "yes", "-"),
                   "restored": ("yes", "yes", a.id)}, got
    nc = cloud.daemons["nc1"]
    assert nc.stop(signal.SIGKILL) == -signal.SIGKILL
    nc.start()
    # Listening means started: the table was written before that, and
    # the QEMUs were re-adopted, not restarted.
    t = table_text(cloud)
    assert t is not None, nc.log_text()[-3000:]
    assert node_nft(cloud, "list", "table", "inet", SG_TABLE,
                    check=False).returncode == 0
    for g in (a, b):
        assert f'"{g.tap}" : jump {g.chain}' in t
        assert f"ether saddr != {g.mac}" in t and f"ip saddr != {g.ip}" in t
    assert cloud.vms("nc1") == vms
    got = spoof(cloud, ("free", "mac"))
    assert got == {"own": ("yes", "yes", a.id), "free": ("no", "no", "-"),
                   "mac": ("no", "no", "no"),
                   "restored": ("yes", "yes", a.id)}, got


def test_rules_that_cannot_be_written_fail_the_launch(cloud):
    """The rule set goes through data_dir/koala_nc.nft: a directory there
    makes every rewrite fail, and the launch with it."""
    blocker = cloud.dir / "nc1" / f"{TABLE}.nft"
    blocker.unlink()
    blocker.mkdir()
    ec2 = cloud.ec2()
    try:
        iid = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                                InstanceType="m1.small")["Instances"][0][
                                    "InstanceId"]
        got = wait_state(ec2, [iid], "terminated", timeout=240)[iid]
    finally:
        blocker.rmdir()
    assert "anti-spoofing" in got["StateReason"]["Message"], got
    assert iid not in cloud.vms("nc1")
    # The others' rules are as they were.
    t = table_text(cloud)
    assert f'"{cloud.a.tap}"' in t and f'"{cloud.b.tap}"' in t


def test_terminated_instance_chain_is_gone(cloud):
    a, b = cloud.a, cloud.b
    ec2 = cloud.ec2()
    ec2.terminate_instances(InstanceIds=[b.id])
    wait_state(ec2, [b.id], "terminated", timeout=240)
    t = wait_until(lambda: (lambda t: t if t and b.chain not in t else None)(
        table_text(cloud)), 30, 0.5, f"{b.chain} gone")
    assert b.tap not in t
    assert f'"{a.tap}" : jump {a.chain}' in t
    run(cloud, a.ip, f"ping -c 1 -W 2 {ROUTER}")
