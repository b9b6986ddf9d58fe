"""bench/net: what Koala's instance networks cost (docs/network.md),
each figure beside its peer from the same run (README.md says exactly
what each measures and what it does not).

  1  rule-apply latency: AuthorizeSecurityGroupIngress's answer to the
     first packet through, in a real cloud holding 1000 rules and 200
     instances; and nft's rewrite of a node with all 200 local
  2  throughput between two instances through the node's filters, beside
     the bare bridge (ratio)
  3  per-packet cost: packet rates at saturation, as ns per packet
  4  elastic-IP NAT throughput beside routing without NAT (ratio)
  5  tunnel between two zones: plain VXLAN and the sealed relay beside
     direct routing on the WAN (ratios)

PARTS (default "apply,node,eip,tunnel") picks parts; DURATION (2 s per
measurement), ROUNDS (3, the median shown), APPLY_ROUNDS (5), KEEP=1
keeps the work directory (the daemons' logs)."""
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netlib as nl  # noqa: E402
import paths  # noqa: E402

PARTS = os.environ.get("PARTS", "apply,node,eip,tunnel").split(",")


def gbit(v):
    return f"{v:7.2f}"


def ratio(a, b):
    return f"{a / b:5.2f}" if b else "    -"


def part_cloud(base, out):
    """1 and 4 in one real cloud; the node tables it produced for 2/3."""
    import apply
    import cloudparts as cp
    ap = apply.Apply(base / "cloud1")
    try:
        ap.setup()
        out["launch_s"] = ap.launch_s
        out["doc_bytes"] = len(ap.held["policy"])
        out["doc_rules"] = sum(len(g["ingress"]) + len(g["egress"])
                               for g in ap.doc["groups"].values())
        out["doc_instances"] = len(ap.doc["instances"])
        if "apply" in PARTS:
            out["apply"] = ap.measure()
            out["table_rules"] = ap.table_rules
        work = base / "tables"
        work.mkdir()
        doc = work / "policy.json"
        doc.write_text(ap.held["policy"])
        rows = ap.instance_rows()
        out["rewrite"] = apply.rewrite_times(doc, rows, work)
        byid = {r[0]: r for r in rows}
        out["x"], out["y"] = byid[ap.x], byid[ap.y]
        script = out["rewrite"]["sg_path"].read_text()
        out["walk"] = {k: apply.rules_walked(script, ap.x, ap.y, m) for k, m
                       in (("udp", "udp dport 6000"),
                           ("tcp", "tcp dport 5201"))}
        if "eip" in PARTS:
            ec2 = ap.ec2
            cp.wait_for(lambda: cp.pool_known(ap.cloud), 30, "the pool")
            alloc = ec2.allocate_address(Domain="vpc")
            ec2.associate_address(AllocationId=alloc["AllocationId"],
                                  InstanceId=ap.x)
            pub = alloc["PublicIp"]
            cp.wait_for(lambda: pub in nl.nsexec(
                ap.cloud.cluster_ns, "nft", "list", "map", "ip",
                "koala_cc_default", "eip_in").stdout, 10, "the NAT map")
            x = byid[ap.x]
            out["eip"] = paths.eip(ap.cloud, (x[0], x[1], x[2]), pub)
            out["eip_pair"] = (pub, x[1])
    finally:
        ap.cloud.stop()


def part_node(out):
    node = paths.Node(out["x"], out["y"], out["rewrite"])
    try:
        out["node"] = node.measure()
    finally:
        node.close()


def part_tunnel(base, out):
    from zones import ZonesCloud
    out["tunnel"] = {}
    for sealed in (False, True):
        zc = ZonesCloud(base / f"zones-{int(sealed)}", nodes_per_zone=0,
                        encrypt=sealed).start()
        try:
            zc.wait_tunnels()
            pids = [d.proc.pid for n, d in zc.daemons.items()
                    if n.startswith("cc-")]
            r = paths.tunnel(zc, pids, direct=not sealed)
            out["tunnel"]["sealed" if sealed else "plain"] = r["tunnel"]
            if not sealed:
                out["tunnel"]["direct"] = r["direct"]
        finally:
            zc.stop()


def report(o, load0, load1, took):
    p = print
    p()
    p(f"bench/net: {nl.DURATION:g} s per measurement, median of "
      f"{nl.ROUNDS} rounds; {os.cpu_count()} cores, load average "
      f"{load0:.2f} before, {load1:.2f} after; {took:.0f} s in all")
    p("(the host is shared: others' work makes rates noisy; ratios from one "
      "run are the figures to compare)")
    if "apply" in o:
        a = o["apply"]
        p()
        p(f"1. rule-apply latency: a real cloud (CLC, CC, koala-nc nc1 with 2 "
          f"busybox guests; 198 more instances on a fake node nc2)")
        p(f"   policy document: {o['doc_rules']} rules in 10 groups, "
          f"{o['doc_instances']} instances, {o['doc_bytes']} bytes; nc1's "
          f"table: {o['table_rules']} rules in its group chains")
        h1, h2 = "answer->first packet ms", "call->first packet ms"
        p(f"   {'round':>5} | {'API answer ms':>13} | {h1:>24} | "
          f"{h2:>21} | {'CC->nc1 push ms':>15}")
        for i, r in enumerate(a):
            p(f"   {i + 1:>5} | {r['answer_ms']:>13.1f} | "
              f"{r['pass_ms']:>24.1f} | {r['from_call_ms']:>21.1f} | "
              f"{r['push_ms'] if r['push_ms'] is not None else '-':>15}")
        med = statistics.median(x["pass_ms"] for x in a)
        p(f"   median answer->first packet {med:.1f} ms, max "
          f"{max(x['pass_ms'] for x in a):.1f} ms (probe every 2 ms)")
    if "rewrite" in o:
        w = o["rewrite"]
        p(f"   nc1 with all 200 instances local (koala-nc's compiler, nft -f "
          f"in a namespace; median of 5):")
        p(f"     security groups: compile {w['compile_ms']:.1f} ms, "
          f"nft -f {w['sg_ms']:.0f} ms, {w['sg_bytes'] // 1024} KiB; "
          f"anti-spoofing: nft -f {w['as_ms']:.0f} ms, "
          f"{w['as_bytes'] // 1024} KiB")
    if "node" in o:
        n = o["node"]
        b = n["bridge"]
        p()
        p("2/3. instance to instance on one node (namespaces on a bridge, "
          "the node's real tables for 200 instances)")
        p(f"   {'path':<10} | {'TCP Gbit/s':>10} {'ratio':>5} | "
          f"{'UDP est. kpps':>13} {'ratio':>5} {'ns/pkt':>6} {'+ns':>5} | "
          f"{'UDP new kpps':>12} {'ratio':>5} {'ns/pkt':>6} {'+ns':>5}")
        for c, desc in paths.CONFIGS:
            r = n[c]
            cells = []
            for k in ("est", "new"):
                pps = r[k]["pps"]
                ns = 1e9 / pps if pps else 0
                base = 1e9 / b[k]["pps"] if b[k]["pps"] else 0
                cells.append(f"{pps / 1e3:>{13 if k == 'est' else 12}.0f} "
                             f"{ratio(pps, b[k]['pps'])} {ns:>6.0f} "
                             f"{ns - base:>5.0f}")
            p(f"   {c:<10} | {gbit(r['tcp']):>10} {ratio(r['tcp'], b['tcp'])}"
              f" | {cells[0]} | {cells[1]}")
        for c, desc in paths.CONFIGS:
            p(f"   {c}: {desc}")
        p("   est.: a UDP flow the receiver answered once (conntrack's "
          "established fast path);")
        p("   new: a one-way UDP flow, every packet `ct state new`, so each "
          "walks the rules")
        w = o.get("walk") or {}
        p(f"   (rules evaluated by each such packet, X's egress then Y's "
          f"ingress in 5 groups: {w.get('udp')};")
        p(f"   by the first packet of the TCP connection: {w.get('tcp')})")
        p("   ns/pkt: 1e9 / rate, one sender core saturated, the whole path "
          "in its softirq; +ns: over the bare bridge.")
    if "eip" in o:
        e = o["eip"]
        pub, priv = o["eip_pair"]
        p()
        p(f"4. elastic-IP NAT on the CC router (real CC table; outside "
          f"namespace -> {pub} -> {priv})")
        p(f"   {'path':<8} | {'TCP in Gbit/s':>13} {'ratio':>5} | "
          f"{'TCP out Gbit/s':>14} {'ratio':>5} | {'UDP est. kpps':>13} "
          f"{'ratio':>5}")
        for k in ("routed", "nat"):
            r, b = e[k], e["routed"]
            p(f"   {k:<8} | {gbit(r['in']):>13} {ratio(r['in'], b['in'])} | "
              f"{gbit(r['out']):>14} {ratio(r['out'], b['out'])} | "
              f"{r['est']['pps'] / 1e3:>13.0f} "
              f"{ratio(r['est']['pps'], b['est']['pps'])}")
        p("   routed: the outside reaches the private address through the "
          "same router (conntrack on, no translation);")
        p("   nat: the public address, DNAT in / SNAT back by the eip maps. "
          "out = iperf3 -R (the instance sends).")
    if "tunnel" in o:
        t = o["tunnel"]
        d = t["direct"]
        p()
        p("5. between two zones (namespaces on each zone's LAN, MTU 1400, "
          "real CC routers on a veth WAN)")
        p(f"   {'path':<8} | {'TCP Gbit/s':>10} {'ratio':>5} | "
          f"{'UDP est. kpps':>13} {'ratio':>5} | {'koala-cc cpu':>12} | "
          f"{'TCP retransmits':>15}")
        for k in ("direct", "plain", "sealed"):
            r = t[k]
            p(f"   {k:<8} | {gbit(r['tcp']):>10} {ratio(r['tcp'], d['tcp'])} "
              f"| {r['est']['pps'] / 1e3:>13.0f} "
              f"{ratio(r['est']['pps'], d['est']['pps'])} | "
              f"{r['est']['cc_cpu'] * 100:>11.0f}% | {r['retr']:>15.0f}")
        if t["plain"]["tcp"]:
            tr = ratio(t["sealed"]["tcp"], t["plain"]["tcp"])
            pr = ratio(t["sealed"]["est"]["pps"], t["plain"]["est"]["pps"])
            p(f"   sealed / plain: TCP {tr}, packets {pr}")
        p("   direct: /32 routes on the WAN, no tunnel; plain: kvx0 (VXLAN "
          "in the kernel); sealed: kvx0 through")
        p("   koala-cc's relay (AES-256-GCM in user space); koala-cc cpu: "
          "both CCs' share of one core during the UDP run.")


def main():
    keep = os.environ.get("KEEP") == "1"
    base = Path(tempfile.mkdtemp(prefix="koala-bench-net-"))
    out = {}
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    try:
        if {"apply", "node", "eip"} & set(PARTS):
            part_cloud(base, out)
        if "node" in PARTS:
            part_node(out)
        if "tunnel" in PARTS:
            part_tunnel(base, out)
    finally:
        if keep:
            print(f"work directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    report(out, load0, os.getloadavg()[0], time.monotonic() - t0)


if __name__ == "__main__":
    main()
