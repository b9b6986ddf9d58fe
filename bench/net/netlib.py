"""bench/net's measuring tools: namespaces standing for instances, wired
as koala-nc wires a guest (a veth whose node end is named as the NC names
the instance's tap, on the node bridge), iperf3 runs, udpflood packet
rates, and interface counters.  Every process is started here and ended
by its PID; every namespace made here is deleted by whoever made it."""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import BUILD, Netns  # noqa: E402

NFTGEN = BUILD / "bench" / "net" / "nftgen"
UDPFLOOD = BUILD / "bench" / "net" / "udpflood"
IPERF3 = os.environ.get("IPERF3", "iperf3")
DURATION = float(os.environ.get("DURATION", "2"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
PKT = int(os.environ.get("PKT_BYTES", "18"))  # 18 B payload: 64 B frames
TICK = os.sysconf("SC_CLK_TCK")


def sh(*args, check=True, **kw):
    return subprocess.run([str(a) for a in args], check=check,
                          capture_output=True, text=True, **kw)


def nsexec(ns, *args, check=True, **kw):
    return sh("ip", "netns", "exec", ns, *args, check=check, **kw)


def tap_name(iid):
    """The NC's name for an instance's tap (src/nc/ops.c)."""
    return "tap" + iid[-12:]


def attach(tag, bridge_ns, bridge, port_name, ip, prefix, mac=None,
           gateway=None, mtu=None):
    """A namespace standing for an instance: eth0 with ip/prefix (and
    mac), its peer port_name plugged into bridge in bridge_ns."""
    ns = Netns(tag, prefix="kbn")
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", port_name,
          "netns", bridge_ns)
    sh("ip", "-n", bridge_ns, "link", "set", port_name, "master", bridge,
       "up")
    if mac:
        ns.ip("link", "set", "eth0", "address", mac)
    if mtu:
        ns.ip("link", "set", "eth0", "mtu", str(mtu))
        sh("ip", "-n", bridge_ns, "link", "set", port_name, "mtu", str(mtu))
    ns.ip("addr", "add", f"{ip}/{prefix}", "dev", "eth0")
    ns.ip("link", "set", "eth0", "up")
    if gateway:
        ns.ip("route", "add", "default", "via", gateway)
    return ns


def link_stats(ns, ifname):
    """(rx_packets, tx_packets) of ifname in namespace ns."""
    out = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show",
                        ifname).stdout)[0]["stats64"]
    return out["rx"]["packets"], out["tx"]["packets"]


def cpu_s(pid):
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def stop(proc):
    """Ends a process started here, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Iperf:
    """iperf3 server in a namespace, on a port of its own."""

    def __init__(self, ns, port=5201):
        self.ns, self.port = ns, port
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, IPERF3, "-s", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def tcp(self, client_ns, dst, reverse=False, mss=None):
        """Gbit/s of one TCP stream from client_ns to dst (reverse: from
        dst to the client) over DURATION s after 0.5 s not counted."""
        argv = ["ip", "netns", "exec", client_ns, IPERF3, "-c", dst, "-p",
                str(self.port), "-t", str(DURATION), "-O", "0.5", "-J"]
        if reverse:
            argv.append("-R")
        if mss:
            argv += ["-M", str(mss)]
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=DURATION + 30)
        try:
            out = json.loads(r.stdout)
            self.retransmits = out["end"]["sum_sent"].get("retransmits", 0)
            return out["end"]["sum_received"]["bits_per_second"] / 1e9
        except (ValueError, KeyError):
            raise RuntimeError(f"iperf3 to {dst}: {r.stdout[-400:]} "
                               f"{r.stderr[-400:]}")

    def stop(self):
        stop(self.proc)


# A source port of its own for every flow: conntrack keeps a flow's entry
# (30 s unreplied, 120 s once answered), and a "new" flow on the 5-tuple of
# an earlier answered one would be established from its first packet.
_sports = iter(range(41000, 60000))


def udp_rate(src_ns, dst_ns, dst_ip, count_ns, count_if, established,
             port=6000, sport=None):
    """Packets per second of a udpflood flow from src_ns to dst_ip that
    got as far as count_if in count_ns (its tx counter: what the path
    forwarded), and the sender's CPU seconds per packet sent.  established:
    the sink answers the first datagram, so conntrack has seen both ways;
    otherwise every datagram is `ct state new`."""
    sport = sport or next(_sports)
    sink = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, str(UDPFLOOD), "sink", str(port),
         str(DURATION + 8), "reply" if established else "quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if sink.stdout.readline().strip() != "ready":
            raise RuntimeError("udpflood sink did not start")
        warm = 0.5
        argv = ["ip", "netns", "exec", src_ns, str(UDPFLOOD), "send",
                str(sport), dst_ip, str(port), str(warm + DURATION + 0.3),
                str(PKT)] + (["wait-reply"] if established else [])
        snd = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(warm + (0.3 if established else 0))
        c0, t0, p0 = link_stats(count_ns, count_if)[1], time.monotonic(), \
            cpu_s(snd.pid)
        time.sleep(DURATION)
        c1, t1, p1 = link_stats(count_ns, count_if)[1], time.monotonic(), \
            cpu_s(snd.pid)
        out, err = snd.communicate(timeout=DURATION + 30)
        res = json.loads(out)
        if established and not res["replied"]:
            raise RuntimeError(f"no reply from the sink at {dst_ip}")
        pps = (c1 - c0) / (t1 - t0)
        return {"pps": pps, "sent_pps": res["sent"] / res["seconds"],
                "cpu_s": p1 - p0}
    finally:
        stop(sink)


def median_of(fn, rounds=None):
    """fn() ROUNDS times; the median (of numbers, or of dicts by 'pps')."""
    vals = [fn() for _ in range(rounds or ROUNDS)]
    if isinstance(vals[0], dict):
        return sorted(vals, key=lambda v: v["pps"])[len(vals) // 2]
    return statistics.median(vals)


def nft(ns, script_path):
    """Loads an nft script in ns; seconds it took."""
    t0 = time.monotonic()
    nsexec(ns, "nft", "-f", script_path)
    return time.monotonic() - t0


def sysctl(ns, key, value):
    nsexec(ns, "sysctl", "-qw", f"{key}={value}")
