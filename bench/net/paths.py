"""bench/net parts 2-5: the data paths, in namespaces standing for
instances (see README.md): the node's bridge with and without its
filters, the CC router's elastic-IP NAT, and the tunnel between zones."""
import time

import netlib as nl

CONFIGS = [
    ("bridge", "bridge only: br_netfilter off, no table"),
    ("antispoof", "+ anti-spoofing (bridge koala_nc), br_netfilter off"),
    ("node", "+ br_netfilter, conntrack, inet koala_nc_sg (the node as "
             "koala-nc sets it)"),
]


class Node:
    """A node namespace with its bridge, and X and Y (two instances of the
    policy, by their ids, addresses, MACs and tap names) on it."""

    def __init__(self, x, y, tables):
        self.tables = tables  # nftgen output: sg_path, as_path
        self.ns = nl.Netns("node", prefix="kbn")
        n = self.ns.name
        self.ns.ip("link", "add", "kbr0", "type", "bridge")
        self.ns.ip("link", "set", "kbr0", "up")
        self.x_ip, self.y_ip, self.y_tap = x[1], y[1], y[3]
        self.x = nl.attach("x", n, "kbr0", x[3], x[1], 16, mac=x[2])
        self.y = nl.attach("y", n, "kbr0", y[3], y[1], 16, mac=y[2])

    def set(self, config):
        n = self.ns.name
        nl.nsexec(n, "nft", "flush", "ruleset")
        nl.sysctl(n, "net.bridge.bridge-nf-call-iptables",
                  1 if config == "node" else 0)
        if config in ("antispoof", "node"):
            nl.nft(n, self.tables["as_path"])
        if config == "node":
            nl.nft(n, self.tables["sg_path"])

    def measure(self):
        res = {c: {"tcp": [], "new": [], "est": []} for c, _ in CONFIGS}
        srv = nl.Iperf(self.y.name)
        try:
            for _ in range(nl.ROUNDS):
                for c, _ in CONFIGS:
                    self.set(c)
                    r = res[c]
                    r["tcp"].append(srv.tcp(self.x.name, self.y_ip))
                    for kind in ("new", "est"):
                        r[kind].append(nl.udp_rate(
                            self.x.name, self.y.name, self.y_ip, self.ns.name,
                            self.y_tap, established=kind == "est"))
        finally:
            srv.stop()
        return {c: {"tcp": nl.statistics.median(r["tcp"]),
                    "new": mid(r["new"]), "est": mid(r["est"])}
                for c, r in res.items()}

    def close(self):
        for ns in (self.x, self.y, self.ns):
            ns.delete()


def mid(vals):
    return sorted(vals, key=lambda v: v["pps"])[len(vals) // 2]


def eip(cloud, inst, public):
    """The router's 1:1 NAT: outside -> public address -> the instance
    (a namespace on the cluster LAN with the instance's address and MAC),
    against outside -> private address routed by the same router."""
    cns, ons = cloud.cluster_ns, cloud.outside_ns
    iid, ip, mac = inst
    port = "bn-eip"
    ns = nl.attach("eip", cns, "klan0", port, ip, 16, mac=mac,
                   gateway="10.111.0.1")
    nl.sh("ip", "-n", ons, "route", "add", "10.111.0.0/16", "via",
          "100.64.112.1")
    srv = nl.Iperf(ns.name)
    res = {k: {"in": [], "out": [], "est": []} for k in ("nat", "routed")}
    try:
        for _ in range(nl.ROUNDS):
            for k, dst in (("nat", public), ("routed", ip)):
                r = res[k]
                r["in"].append(srv.tcp(ons, dst))
                r["out"].append(srv.tcp(ons, dst, reverse=True))
                r["est"].append(nl.udp_rate(ons, ns.name, dst, cns, port,
                                            established=True))
    finally:
        srv.stop()
        nl.sh("ip", "-n", ons, "route", "del", "10.111.0.0/16", check=False)
        ns.delete()
    return {k: {"in": nl.statistics.median(r["in"]),
                "out": nl.statistics.median(r["out"]),
                "est": mid(r["est"])} for k, r in res.items()}


def tunnel(zc, cc_pids, direct=True):
    """iperf3 and packet rate between a namespace on zone a's LAN and one
    on zone b's, through kvx0 (and the relay when sealed), and, with
    direct, routed on the WAN by /32 routes that win over the tunnel's
    /16 (the same routers, no encapsulation)."""
    za, zb = zc.zones
    na, nb = zc.zone_ns[za], zc.zone_ns[zb]
    a_ip, b_ip = "10.111.0.250", "10.110.0.250"
    a = nl.attach("ta", na, "klan0", "bn-ta", a_ip, 16,
                  gateway="10.111.0.1", mtu=1400)
    b = nl.attach("tb", nb, "klan0", "bn-tb", b_ip, 16,
                  gateway="10.110.0.1", mtu=1400)
    srv = nl.Iperf(b.name)
    paths = ["tunnel"] + (["direct"] if direct else [])
    res = {p: {"tcp": [], "est": [], "retr": []} for p in paths}

    def route(op):
        nl.sh("ip", "-n", na, "route", op, f"{b_ip}/32", "via",
              zc.tunnel_address(zb), check=op == "add")
        nl.sh("ip", "-n", nb, "route", op, f"{a_ip}/32", "via",
              zc.tunnel_address(za), check=op == "add")
    try:
        for _ in range(nl.ROUNDS):
            for p in paths:
                if p == "direct":
                    route("add")
                try:
                    r = res[p]
                    r["tcp"].append(srv.tcp(a.name, b_ip))
                    r["retr"].append(srv.retransmits)
                    c0 = sum(nl.cpu_s(pid) for pid in cc_pids)
                    t0 = time.monotonic()
                    u = nl.udp_rate(a.name, b.name, b_ip, nb, "bn-tb",
                                    established=True)
                    # koala-cc's share of a core over the whole run (its
                    # relay, when sealed).
                    u["cc_cpu"] = (sum(nl.cpu_s(pid) for pid in cc_pids)
                                   - c0) / (time.monotonic() - t0)
                    r["est"].append(u)
                finally:
                    if p == "direct":
                        route("del")
    finally:
        srv.stop()
        a.delete()
        b.delete()
    return {p: {"tcp": nl.statistics.median(r["tcp"]), "est": mid(r["est"]),
                "retr": nl.statistics.median(r["retr"])}
            for p, r in res.items()}
