"""Tunnels between clusters (docs/network.md, "Tunnels between clusters";
src/cc/tunnel.c, src/clc/tunnels.c): two availability zones, each a CC in
a namespace standing for its own host with one node, the routers joined
only by a "WAN" namespace (zones.py).  A busybox guest in each zone.

Shown: the CLC learns each router's tunnel address and gives every
router its peer (a static FDB entry, a permanent neighbour and a route
per peer on kvx0, VNI 1, no learning); the guests get MTU 1450 by DHCP;
guest A in zone-a reaches guest B in zone-b at its private address (its
page, ICMP, 256 KiB over TCP both ways) and the traffic crosses the WAN
inside VXLAN; a router killed with SIGKILL, its tunnel device deleted
and started again while the CLC is down puts the tunnel back from its
own database; ConfigureTunnels with a bad peer is refused with a SOAP
fault and changes nothing.

Every process is started here (cloud.py, zones.py) and stopped by its
PID; what the guests start runs inside them.
"""
import json
import re
import signal

import pytest

from cloud import IMAGES
from conftest import sh, wait_until
from soapclient import SoapClient, SoapFault
from test_compute import guest_page, wait_state
from zones import Capture, ZonesCloud

CC_NS = "urn:koala:cc"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    if not (IMAGES / "vmlinuz").exists():
        pytest.fail(f"no test image in {IMAGES}: run tests/images/build.sh")
    c = ZonesCloud(tmp_path_factory.mktemp("tunnels")).start()
    c.ami, c.aki, c.ari = c.upload_images()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def one_guest_per_zone(cloud):
    """{zone: (instance id, ip)}: one running guest per zone, its page up."""
    ec2 = cloud.ec2()
    ids = {}
    for zone in cloud.zones:
        r = ec2.run_instances(ImageId=cloud.ami, MinCount=1, MaxCount=1,
                              InstanceType="t1.micro",
                              Placement={"AvailabilityZone": zone})
        ids[zone] = r["Instances"][0]["InstanceId"]
    got = wait_state(ec2, list(ids.values()), "running")
    out = {}
    for zone, iid in ids.items():
        ip = got[iid]["PrivateIpAddress"]
        assert cloud.zone_of_ip(ip) == zone
        guest_page(cloud, ip, iid)
        out[zone] = (iid, ip)
    return out


@pytest.fixture(scope="module")
def guests(cloud):
    return one_guest_per_zone(cloud)


def cc_client(cloud, zone):
    certs = cloud.dir / "certs"
    return SoapClient(f"https://127.0.0.1:{cloud.zone_port[zone]}/", CC_NS,
                      ca=str(cloud.ca), cert=str(certs / "clc.pem"),
                      key=str(certs / "clc.key"))


def ns_ip(cloud, zone, *args):
    return sh("ip", "-n", cloud.zone_ns[zone], *args).stdout


def tunnel_state(cloud, zone):
    """What the kernel holds for the tunnels in zone's router namespace."""
    return (ns_ip(cloud, zone, "-d", "link", "show", "dev", "kvx0"),
            ns_ip(cloud, zone, "route", "show", "dev", "kvx0"),
            ns_ip(cloud, zone, "neigh", "show", "dev", "kvx0"),
            sh("ip", "netns", "exec", cloud.zone_ns[zone], "bridge", "fdb",
               "show", "dev", "kvx0").stdout)


def ns_nft(cloud, zone):
    return sh("ip", "netns", "exec", cloud.zone_ns[zone], "nft", "list",
              "ruleset").stdout


def wan_packets(cloud, zone):
    """VXLAN bytes the zone's router sent (kvx0's transmit counter)."""
    out = ns_ip(cloud, zone, "-s", "-j", "link", "show", "dev", "kvx0")
    return json.loads(out)[0]["stats64"]["tx"]["bytes"]


def test_routers_are_given_their_peers(cloud):
    cloud.wait_tunnels()
    for zone in cloud.zones:
        (peer,) = [z for z in cloud.zones if z != zone]
        link, routes, neigh, fdb = tunnel_state(cloud, zone)
        assert "vxlan id 1 " in link and "dstport 4789" in link
        assert "nolearning" in link
        assert f"local {cloud.tunnel_address(zone)}" in link
        assert "mtu 1450" in link
        # not sealed: no relay table
        assert "koala_cc_tunnel" not in ns_nft(cloud, zone)
        peer_router = cloud.subnet(peer).replace("0.0/16", "0.1")
        a, b, c, d = (int(x) for x in peer_router.split("."))
        mac = f"02:6b:{a:02x}:{b:02x}:{c:02x}:{d:02x}"
        assert f"{cloud.subnet(peer)} via {peer_router} onlink" in routes
        assert f"{peer_router} lladdr {mac} PERMANENT" in neigh
        assert f"{mac} dst {cloud.tunnel_address(peer)} self permanent" in fdb
        # nothing learned: only the peer's entry
        assert len([l for l in fdb.splitlines() if " dst " in l]) == 1


def test_guests_reach_each_other_across_the_tunnel(cloud, guests):
    (_, ipa), (ib, ipb) = guests["zone-a"], guests["zone-b"]
    for ip in (ipa, ipb):
        # by DHCP: below kvx0's, with room for the seal of encryption
        r = cloud.guest_run(ip, "cat /sys/class/net/eth0/mtu")
        assert r.output.strip() == "1400", r
    before = wan_packets(cloud, "zone-a")
    with Capture(cloud.wan_ns, "to-z0") as cap:
        r = cloud.guest_run(ipa, f"wget -q -O - http://{ipb}:8080/ && "
                                 f"ping -c 2 -W 2 {ipb}")
    assert r.returncode == 0, r.output
    assert ib in r.output and "2 packets received" in r.output
    # unencrypted: VXLAN on the WAN, the page readable there
    assert cap.udp_ports().get(4789, 0) >= 4
    assert any(ib.encode() in f for f in cap.frames)
    r = cloud.guest_run(ipb, f"ping -c 2 -W 2 {ipa}")
    assert r.returncode == 0 and "2 packets received" in r.output, r.output
    # 256 KiB each way over TCP, in full-sized segments: a file the one
    # guest's httpd serves, fetched by the other
    for src, dst in ((ipa, ipb), (ipb, ipa)):
        r = cloud.guest_run(dst, "dd if=/dev/urandom of=/www/big bs=1024 "
                                 "count=256 2>/dev/null; md5sum < /www/big")
        want = r.output.split()[0]
        r = cloud.guest_run(src, f"wget -q -O - http://{dst}:8080/big | "
                                 "md5sum")
        assert r.returncode == 0 and r.output.split()[0] == want, \
            (src, dst, r)
    assert wan_packets(cloud, "zone-a") - before > 256 * 1024


def test_bad_peers_are_refused_and_change_nothing(cloud):
    cloud.wait_tunnels()
    before = tunnel_state(cloud, "zone-a")
    cc = cc_client(cloud, "zone-a")
    good = {"zone": "zone-b", "address": "192.0.2.2",
            "subnet": "10.110.0.0/16", "router": "10.110.0.1"}
    bad = [
        dict(good, subnet="10.111.128.0/17"),    # overlaps zone-a's own
        dict(good, subnet="10.110.0.0/33"),
        dict(good, address="127.0.0.1"),
        dict(good, address="not-an-address"),
        dict(good, router="10.109.0.1"),         # outside its subnet
        dict(good, router="10.110.0.0"),
        {k: v for k, v in good.items() if k != "router"},
    ]
    for peer in bad:
        with pytest.raises(SoapFault) as e:
            cc.call("ConfigureTunnels", [("peer", peer)])
        assert e.value.code == "InvalidParameterValue", peer
    with pytest.raises(SoapFault) as e:
        cc.call("ConfigureTunnels", [("peer", good), ("peer", good)])
    assert e.value.code == "InvalidParameterValue"
    assert tunnel_state(cloud, "zone-a") == before


def test_router_restart_restores_the_tunnel_from_its_database(cloud, guests):
    (_, ipa), (_, ipb) = guests["zone-a"], guests["zone-b"]
    cloud.wait_tunnels()
    assert cloud.daemons["clc"].stop(signal.SIGKILL) == -signal.SIGKILL
    try:
        assert cloud.daemons["cc-zone-a"].stop(signal.SIGKILL) == \
            -signal.SIGKILL
        sh("ip", "-n", cloud.zone_ns["zone-a"], "link", "del", "kvx0")
        r = cloud.guest_run(ipa, f"ping -c 1 -W 2 {ipb}")
        assert r.returncode != 0   # the control: the tunnel is gone
        cloud.start_cc("zone-a")
        # no CLC to push the peers: they come from the CC's own database
        routes = ns_ip(cloud, "zone-a", "route", "show", "dev", "kvx0")
        assert "10.110.0.0/16 via 10.110.0.1 onlink" in routes
        r = cloud.guest_run(ipa, f"ping -c 2 -W 2 {ipb}")
        assert r.returncode == 0, r.output
    finally:
        cloud.daemons["clc"].start()
    cloud.wait_enabled()


# ---- sealed tunnels ----

@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A second two-zone cloud, its CLC with --tunnel-encryption, one
    guest per zone."""
    c = ZonesCloud(tmp_path_factory.mktemp("sealed"), encrypt=True).start()
    try:
        c.ami, c.aki, c.ari = c.upload_images()
        c.guests = one_guest_per_zone(c)
        yield c
    finally:
        rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def test_sealed_tunnel_carries_only_ciphertext(sealed):
    c = sealed
    (_, ipa), (ib, ipb) = c.guests["zone-a"], c.guests["zone-b"]
    c.wait_tunnels()
    for zone in c.zones:
        (peer,) = [z for z in c.zones if z != zone]
        link, routes, neigh, fdb = tunnel_state(c, zone)
        assert "mtu 1406" in link
        # the relay's table: kvx0's packets to the peer go to the relay
        rules = ns_nft(c, zone)
        assert re.search(rf"elements = {{ {c.tunnel_address(peer)} : \d+ }}",
                         rules), rules
        assert f"dnat to {c.tunnel_address(zone)}:ip daddr map @relay" \
            in rules
    key = (c.dir / "clc" / "tunnel.key")
    assert key.stat().st_mode & 0o777 == 0o600
    r = c.guest_run(ipa, "cat /sys/class/net/eth0/mtu")
    assert r.output.strip() == "1400"
    with Capture(c.wan_ns, "to-z0") as cap:
        r = c.guest_run(ipa, f"wget -q -O - http://{ipb}:8080/ && "
                             f"ping -c 2 -W 2 {ipb}")
    assert r.returncode == 0, r.output
    assert ib in r.output and "2 packets received" in r.output
    ports = cap.udp_ports()
    assert ports.get(4790, 0) >= 4 and 4789 not in ports, ports
    # the page (with B's id and address) crossed the WAN, but not readable
    assert not any(ib.encode() in f or ipb.encode() in f for f in cap.frames)
    # nothing reaches a sealed router's VXLAN from the WAN in the clear:
    # a VXLAN packet for VNI 1 sent to zone-b's router is counted, dropped
    def dropped():
        m = re.search(r'iifname != "lo" udp dport 4789 counter packets (\d+)',
                      ns_nft(c, "zone-b"))
        return int(m.group(1))
    # (sent by a WAN host of the test's: 192.0.2.250 on the WAN's bridge)
    before = dropped()
    sh("ip", "-n", c.wan_ns, "addr", "add", "192.0.2.250/24", "dev", "wan0")
    try:
        sh("ip", "netns", "exec", c.wan_ns, "/usr/bin/python3", "-c",
           "import socket; s = socket.socket(socket.AF_INET, "
           "socket.SOCK_DGRAM); s.sendto(bytes.fromhex('0800000000000100')"
           f" + bytes(60), ('{c.tunnel_address('zone-b')}', 4789))")
        assert wait_until(lambda: dropped() > before, timeout=5)
    finally:
        sh("ip", "-n", c.wan_ns, "addr", "del", "192.0.2.250/24", "dev",
           "wan0")


def test_sealed_tunnel_bulk_and_restart(sealed):
    c = sealed
    (_, ipa), (_, ipb) = c.guests["zone-a"], c.guests["zone-b"]
    r = c.guest_run(ipb, "dd if=/dev/urandom of=/www/big bs=1024 "
                         "count=512 2>/dev/null; md5sum < /www/big")
    want = r.output.split()[0]
    r = c.guest_run(ipa, f"wget -q -O - http://{ipb}:8080/big | md5sum")
    assert r.returncode == 0 and r.output.split()[0] == want, r
    # the relay is koala-cc's: killed, the tunnel stalls; restarted, it
    # comes back from the CC's database (new session, same secret)
    assert c.daemons["cc-zone-a"].stop(signal.SIGKILL) == -signal.SIGKILL
    r = c.guest_run(ipa, f"ping -c 1 -W 2 {ipb}")
    assert r.returncode != 0
    c.start_cc("zone-a")
    r = c.guest_run(ipa, f"wget -q -O - http://{ipb}:8080/big | md5sum")
    assert r.returncode == 0 and r.output.split()[0] == want, r
