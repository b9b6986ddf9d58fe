"""bench/net part 1: rule-apply latency under 1000 rules and 200 instances
in a real cloud (cloudparts.BenchCloud), and what the policy and the node
tables look like there (see README.md)."""
import statistics
import subprocess
import sys
import time
from pathlib import Path

import botocore.exceptions

import cloudparts as cp
import netlib as nl

GROUPS = 10
INGRESS = 59          # + the measured rule = 60, EC2's quota per group
EGRESS = 40           # + the allow-all egress = 41
APPLY_ROUNDS = int(nl.os.environ.get("APPLY_ROUNDS", "5"))
ROUTER = "10.111.0.1"
PROBER = Path(__file__).resolve().parent / "prober.py"


def ingress_rules(k, groups):
    rules = []
    for i in range(INGRESS):
        if k == GROUPS - 1 and i >= INGRESS - 2:
            # The data path's flows (X in groups 0-4 -> Y in 5-9): the last
            # rules of Y's last group, so that a new flow walks them all.
            proto = "tcp" if i == INGRESS - 2 else "udp"
            lo, hi = (5201, 5201) if proto == "tcp" else (6000, 6000)
            rules.append({"IpProtocol": proto, "FromPort": lo, "ToPort": hi,
                          "UserIdGroupPairs": [{"GroupId": groups[0]}]})
        elif i % 10 == 9:
            rules.append({"IpProtocol": "tcp", "FromPort": 30000 + k * 100 + i,
                          "ToPort": 30000 + k * 100 + i, "UserIdGroupPairs":
                          [{"GroupId": groups[(k + 1) % GROUPS]}]})
        elif i % 2 == 0:
            rules.append({"IpProtocol": "tcp", "FromPort": 20000 + k * 100 + i,
                          "ToPort": 20000 + k * 100 + i, "IpRanges":
                          [{"CidrIp": f"172.16.{k}.{i}/32"}]})
        else:
            rules.append({"IpProtocol": "udp", "FromPort": 20000 + k * 100 + i,
                          "ToPort": 20005 + k * 100 + i, "IpRanges":
                          [{"CidrIp": f"172.17.{i}.0/24"}]})
    return rules


def egress_rules(k):
    return [{"IpProtocol": "tcp" if i % 2 else "udp",
             "FromPort": 40000 + k * 100 + i, "ToPort": 40000 + k * 100 + i,
             "IpRanges": [{"CidrIp": f"192.168.{k}.{i}/32"}]}
            for i in range(EGRESS)]


ALL_OUT = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}


def make_groups(ec2):
    ids = [ec2.create_security_group(GroupName=f"bench-net-{k}",
                                     Description="bench/net")["GroupId"]
           for k in range(GROUPS)]
    for k, g in enumerate(ids):
        # The allow-all egress last, after the specific ones.
        ec2.revoke_security_group_egress(GroupId=g, IpPermissions=[ALL_OUT])
        ec2.authorize_security_group_egress(GroupId=g,
                                            IpPermissions=egress_rules(k))
        ec2.authorize_security_group_egress(GroupId=g,
                                            IpPermissions=[ALL_OUT])
        ec2.authorize_security_group_ingress(
            GroupId=g, IpPermissions=ingress_rules(k, ids))
    return ids


def run_n(ec2, ami, n, groups):
    """n instances in these groups (RunInstances caps each request)."""
    out = []
    deadline = time.monotonic() + 60
    while len(out) < n:
        try:
            r = ec2.run_instances(ImageId=ami, MinCount=1,
                                  MaxCount=n - len(out),
                                  InstanceType="t1.micro",
                                  SecurityGroupIds=groups)
        except botocore.exceptions.ClientError as e:
            # The CLC learns a node's new capacity at its next poll.
            if e.response["Error"]["Code"] != "InsufficientInstanceCapacity" \
                    or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        out += [i["InstanceId"] for i in r["Instances"]]
    return out


class Apply:
    def __init__(self, base):
        self.cloud = cp.BenchCloud(base).start()
        self.ec2 = self.cloud.ec2()

    def setup(self, n_instances=200):
        c, ec2 = self.cloud, self.ec2
        ami, _, _ = c.upload_images()
        self.groups = g = make_groups(ec2)
        self.a = run_n(ec2, ami, 1, g[:5])[0]
        self.b = run_n(ec2, ami, 1, g[5:])[0]
        # Both placed (on nc1: the fake has no capacity yet) before nc2
        # opens.
        cp.wait_for(lambda: all(i.get("PrivateIpAddress") for i in
                                cp.instances(ec2, [self.a, self.b])),
                    120, "the guests placed")
        c.open_fake()
        t0 = time.monotonic()
        self.x = run_n(ec2, ami, 1, g[:5])[0]
        self.y = run_n(ec2, ami, 1, g[5:])[0]
        rest = n_instances - 4
        for j in range(GROUPS):
            k = rest // GROUPS + (1 if j < rest % GROUPS else 0)
            run_n(ec2, ami, k, [g[j], g[(j + 5) % GROUPS]])
        self.launch_s = time.monotonic() - t0

        def all_running():
            ins = cp.instances(ec2)
            live = [i for i in ins if i["State"]["Name"] == "running"]
            bad = [i for i in ins if i["State"]["Name"] in
                   ("terminated", "shutting-down")]
            if bad:
                raise RuntimeError(f"{bad[0]['InstanceId']}: "
                                   f"{bad[0].get('StateReason')}")
            return ins if len(live) == n_instances else None
        self.all = {i["InstanceId"]: i for i in
                    cp.wait_for(all_running, 300, "200 instances running", 1)}
        self.b_ip = self.all[self.b]["PrivateIpAddress"]
        # Guest B up (its console's marker), and nc1 holding a document
        # that lists all 200.
        cp.wait_for(lambda: cp.READY in ec2.get_console_output(
            InstanceId=self.b).get("Output", ""), 300, "guest B booted", 1)

        def doc_complete():
            h = cp.held_policy(c)
            if h is None:
                return None
            doc = cp.json.loads(h["policy"])
            return h if len(doc["instances"]) == n_instances else None
        self.held = cp.wait_for(doc_complete, 60, "nc1 holds all 200")
        self.doc = cp.json.loads(self.held["policy"])

    def node_rules(self):
        """Rules in nc1's group chains (gin_/gout_), from the kernel."""
        out = nl.nsexec(self.cloud.node_ns["nc1"], "nft", "list", "table",
                        "inet", "koala_nc_sg").stdout
        n, inside = 0, False
        for line in out.splitlines():
            s = line.strip()
            if s.startswith("chain "):
                inside = s.startswith(("chain gin_", "chain gout_"))
            elif s == "}":
                inside = False
            elif inside and s:
                n += 1
        return n

    def round(self, port):
        ns = self.cloud.cluster_ns
        pr = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable,
                               str(PROBER), self.b_ip, str(port), "15"],
                              stdout=subprocess.PIPE, text=True)
        try:
            if pr.stdout.readline().strip() != "probing":
                raise RuntimeError("prober did not start")
            time.sleep(0.5)
            if pr.poll() is not None:
                raise RuntimeError(f"port {port} open before the rule: "
                                   f"{pr.stdout.read()}")
            perm = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                     "IpRanges": [{"CidrIp": f"{ROUTER}/32"}]}]
            t_call = time.monotonic()
            self.ec2.authorize_security_group_ingress(
                GroupId=self.groups[-1], IpPermissions=perm)
            t_ans = time.monotonic()
            line = pr.stdout.readline().split()
        finally:
            nl.stop(pr)
        if not line or line[0] != "pass":
            raise RuntimeError(f"no packet passed to {self.b_ip}:{port}")
        t_pass = float(line[1])
        version = cp.wait_for(lambda: (cp.held_policy(self.cloud) or {})
                              .get("version"), 5, "version")
        # The CC logs the push once nc1 has answered: a moment after the
        # packet may have passed.
        deadline = time.monotonic() + 3
        push = cp.nc_log_pushes(self.cloud, version)
        while push is None and time.monotonic() < deadline:
            time.sleep(0.1)
            push = cp.nc_log_pushes(self.cloud, version)
        self.ec2.revoke_security_group_ingress(GroupId=self.groups[-1],
                                               IpPermissions=perm)
        time.sleep(1.0)
        return {"answer_ms": (t_ans - t_call) * 1e3,
                "pass_ms": (t_pass - t_ans) * 1e3,
                "from_call_ms": (t_pass - t_call) * 1e3, "push_ms": push}

    def measure(self):
        self.table_rules = self.node_rules()
        rounds = [self.round(7100 + r) for r in range(APPLY_ROUNDS)]
        return rounds

    def instance_rows(self):
        """id ip mac tap of the 200, for nftgen."""
        return [(iid, i["PrivateIpAddress"], cp.mac_of(i), nl.tap_name(iid))
                for iid, i in self.all.items()]


def rewrite_times(doc_path, rows, work, rounds=5):
    """koala-nc's compiler and nft -f for all 200 instances local on one
    node (a namespace of the bench's): median seconds, script bytes."""
    lst = work / "instances.txt"
    lst.write_text("".join(" ".join(r) + "\n" for r in rows))
    r = nl.sh(nl.NFTGEN, "sg", doc_path, ROUTER, lst)
    sg = work / "sg200.nft"
    sg.write_text(r.stdout)
    compile_us = int(r.stderr.split("compile_us")[1].split()[0])
    asp = work / "as200.nft"
    asp.write_text(nl.sh(nl.NFTGEN, "antispoof", lst).stdout)
    ns = nl.Netns("rw", prefix="kbn")
    try:
        sg_s = statistics.median(nl.nft(ns.name, sg) for _ in range(rounds))
        as_s = statistics.median(nl.nft(ns.name, asp) for _ in range(rounds))
    finally:
        ns.delete()
    return {"compile_ms": compile_us / 1e3, "sg_ms": sg_s * 1e3,
            "sg_bytes": sg.stat().st_size, "as_ms": as_s * 1e3,
            "as_bytes": asp.stat().st_size, "sg_path": sg, "as_path": asp,
            "list_path": lst}


def _chains(script):
    """{chain name: [statement lines]} of an nft script."""
    chains, cur = {}, None
    for line in script.splitlines():
        s = line.strip()
        if s.startswith("chain ") and s.endswith("{"):
            cur = chains.setdefault(s.split()[1], [])
        elif s == "}":
            cur = None
        elif cur is not None and s and not s.startswith("type "):
            cur.append(s)
    return chains


def rules_walked(script, x_id, y_id, match):
    """How many rules a new packet from X to Y evaluates in koala-nc's
    table before the rule containing `match` (in Y's ingress) accepts it:
    X's out chain and its groups' egress until the first allowing rule,
    then Y's in chain and its groups' ingress."""
    ch = _chains(script)

    def walk(chain, stop):
        n = 0
        for s in ch[chain]:
            if s.startswith("jump "):
                k, done = walk(s.split()[1], stop)
                n += k
                if done:
                    return n, True
                continue
            n += 1
            if stop(s):
                return n, True
        return n, False
    eg, _ = walk("out_" + x_id[2:],
                 lambda s: s == "goto egress_ok" or
                 ("@grp_" not in s and "0.0.0.0/0" in s))
    ing, ok = walk("in_" + y_id[2:], lambda s: match in s)
    return eg + ing if ok else None
