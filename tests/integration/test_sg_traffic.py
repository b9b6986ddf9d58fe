"""Security groups end to end (issue 10, "Shown by"): driven only through
the EC2 API, with boto3 and with Debian's aws-cli, and shown by real
traffic between busybox guests: their :8080 page (TCP), ICMP echo, and
UDP to the guests' udpecho on port 7 (tests/images/udpecho.c).

One cloud with two nodes boots four guests that every test reuses: A, B
and C of the cloud's own account (A and B on different nodes) and D of a
second account, bob.  Before each test every guest is put back into its
account's default group alone (ModifyInstanceAttribute), and the groups a
test made are emptied and deleted after it.  A probe namespace on the
cluster's LAN (PROBE, made here) stands for a host of the cluster that is
not an instance: it serves TCP for the egress test and times the revoke.
One more guest is launched into a group and terminated to show membership
following instances as they come and go.  After an API change a test
waits (settle()) until every CC acknowledged the CLC's policy version and
every node holds it, so that "denied" is never read from a table that is
merely behind.  Each test's docstring says what it shows and with which
client.  A second cloud of two zones (zones.ZonesCloud) boots three more guests for
the tunnel.

The harness opens tcp 8080 from the cluster routers in each account's
default group (Cloud.allow_test_access) so that Cloud.guest_run can drive
the guests; every group made here carries the same one rule (ctl()) so
that a guest moved out of the default group stays drivable.  That rule
admits only the router's address; every other source is what is shown.

Every process is started here (cloud.py) and stopped by its PID; what the
guests start runs inside them.
"""
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

from cloud import IMAGES, Cloud, GuestUnreachable
from conftest import KOALA_BIN, ROOT, Netns, sh, wait_until
from test_compute import wait_state
from zones import ZonesCloud

ROUTER = "10.111.0.1"
PROBE = "10.111.250.1"
PROBE_PORT = 8000
TABLE = "koala_nc_sg"


# ---- the cloud and its guests ----

def upload_images_as(cloud, key, secret, bucket):
    """The test guest registered by the account of key (as
    Cloud.upload_images does for the cloud's own)."""
    s3 = boto3.client("s3", endpoint_url=cloud.s3_endpoint,
                      region_name="us-east-1", aws_access_key_id=key,
                      aws_secret_access_key=secret,
                      config=botocore.config.Config(
                          s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket=bucket)
    for f in ("vmlinuz", "initrd.img", "root.img"):
        s3.upload_file(str(IMAGES / f), bucket, f)
    ec2 = cloud.ec2(key, secret)
    aki = ec2.register_image(Name="bob-kernel", ImageLocation=f"{bucket}/vmlinuz")
    ari = ec2.register_image(Name="bob-ramdisk", ImageLocation=f"{bucket}/initrd.img")
    return ec2.register_image(Name="bob-test", KernelId=aki["ImageId"],
                              RamdiskId=ari["ImageId"],
                              ImageLocation=f"{bucket}/root.img")["ImageId"]


def guest_answers(cloud, ip):
    try:
        return cloud.guest_run(ip, "cat /run/ip", 10).output.strip() == ip
    except GuestUnreachable:
        return False


def node_of(cloud, iid):
    return [n for n in cloud.nodes
            if (cloud.dir / n / "instances" / iid).exists()][0]


def default_group(ec2):
    return ec2.describe_security_groups(GroupNames=["default"])[
        "SecurityGroups"][0]


@pytest.fixture(scope="module")
def images():
    sh("bash", ROOT / "tests" / "images" / "build.sh", IMAGES)


@pytest.fixture(scope="class")
def cloud(tmp_path_factory, images):
    c = Cloud(tmp_path_factory.mktemp("sgtraffic"), n_nodes=2,
              scheduler="ROUNDROBIN", node_cores=4,
              node_memory_mb=2048).start()
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
        out = sh(KOALA_BIN, "account", "create", "bob",
                 "--data-dir", c.dir).stdout
        kv = dict(line.split("=", 1) for line in out.split())
        c.bob_keys = kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"]
        bob = c.ec2(*c.bob_keys)
        c.allow_test_access(bob)
        bob_ami = upload_images_as(c, *c.bob_keys, "bob-images")
        ec2 = c.ec2()
        ids = [i["InstanceId"] for i in ec2.run_instances(
            ImageId=c.ami, MinCount=3, MaxCount=3,
            InstanceType="m1.small")["Instances"]]
        ids.append(bob.run_instances(
            ImageId=bob_ami, MinCount=1, MaxCount=1,
            InstanceType="m1.small")["Instances"][0]["InstanceId"])
        got = wait_state(ec2, ids[:3], "running", timeout=300)
        got.update(wait_state(bob, ids[3:], "running", timeout=300))
        where = {iid: node_of(c, iid) for iid in ids}
        # A and B on different nodes; C beside A when the scheduler put
        # two of the three together (ROUNDROBIN does).
        a, b, cc_ = ids[:3]
        if where[a] == where[b]:
            b, cc_ = cc_, b
        assert where[a] != where[b], where
        c.g = {k: (iid, got[iid]["PrivateIpAddress"], where[iid])
               for k, iid in (("A", a), ("B", b), ("C", cc_),
                              ("D", ids[3]))}
        c.ip = {k: v[1] for k, v in c.g.items()}
        c.iid = {k: v[0] for k, v in c.g.items()}
        for ip in c.ip.values():
            wait_until(lambda: guest_answers(c, ip), 300, 1,
                       f"guest {ip} answering")
        c.alice, c.bob = ec2, bob
        c.sg_default = default_group(ec2)["GroupId"]
        c.bob_default = default_group(bob)
        print(f"\nguests: { {k: (v[1], v[2]) for k, v in c.g.items()} }")
    except BaseException:
        c.stop()
        raise
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


# ---- helpers ----

def policy_settled(cloud):
    """True when every CC acknowledged the network policy version the CLC
    is at (its clc.db, read only; a CC answers once its nodes applied it)
    and every node holds it: what the API last changed is enforced."""
    db = cloud.dir / "clc" / "clc.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        want = con.execute("SELECT version FROM netpolicy").fetchone()[0]
        acked = [r[0] for r in con.execute(
            "SELECT applied FROM netpolicy_clusters")]
    finally:
        con.close()
    if not acked or any(a != want for a in acked):
        return False
    for n in cloud.nodes:
        try:
            doc = json.loads((cloud.dir / n / "netpolicy.json").read_text())
        except (OSError, ValueError):
            return False
        if doc.get("version") != want:
            return False
    return True


def settle(cloud, timeout=10):
    wait_until(lambda: policy_settled(cloud), timeout, 0.05,
               "every node holding the CLC's policy")


def reach(cloud, src, dst, port=8080):
    """What guest src gets from guest dst (or an address): its page over
    TCP, an ICMP echo reply, a UDP echo from port 7, tried at once."""
    ip = cloud.ip.get(dst, dst)
    out = cloud.guest_run(cloud.ip[src], f"""
( printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port} 2>/dev/null |
  grep -q -e KOALA-GUEST -e 'HTTP/1.0 200' && echo tcp=1 || echo tcp=0 ) &
( ping -c 2 -w 3 {ip} >/dev/null 2>&1 && echo icmp=1 || echo icmp=0 ) &
( udpecho {ip} 7 m-{src} 2>/dev/null | grep -q m-{src} \\
  && echo udp=1 || echo udp=0 ) &
wait
""", 30)
    assert out.returncode == 0, out
    got = dict(line.split("=") for line in out.output.split())
    return {k: got[k] == "1" for k in ("tcp", "icmp", "udp")}


ALL = {"tcp": True, "icmp": True, "udp": True}
NONE = {"tcp": False, "icmp": False, "udp": False}
TCP_ONLY = {"tcp": True, "icmp": False, "udp": False}


def tcp_from(cloud, src, dst, port=8080):
    return reach(cloud, src, dst, port)["tcp"]


def probe_http(cloud, dst, timeout=2):
    r = subprocess.run(["ip", "netns", "exec", cloud.probe_ns, "curl", "-s",
                        "-m", str(timeout), f"http://{cloud.ip[dst]}:8080/"],
                       capture_output=True, text=True, timeout=timeout + 10)
    return r.returncode == 0 and "KOALA-GUEST" in r.stdout


def ctl(cloud):
    """The one rule every group here has: the tests' control path."""
    return {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
            "IpRanges": [{"CidrIp": r + "/32"} for r in cloud.routers()]}


def tcp8080(**src):
    perm = {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080}
    perm.update(src)
    return perm


class Groups:
    """The groups a test makes (boto3 or aws-cli), emptied of rules and
    deleted after it."""

    def __init__(self, cloud):
        self.cloud = cloud
        self.made = []  # (ec2 client, group id)

    def new(self, name, ec2=None):
        ec2 = ec2 or self.cloud.alice
        gid = ec2.create_security_group(GroupName=name,
                                        Description=f"sgtraffic {name}")[
            "GroupId"]
        self.made.append((ec2, gid))
        ec2.authorize_security_group_ingress(GroupId=gid,
                                             IpPermissions=[ctl(self.cloud)])
        return gid

    def adopt(self, gid, ec2=None):
        self.made.append((ec2 or self.cloud.alice, gid))
        return gid

    def cleanup(self):
        for ec2, gid in self.made:
            try:
                g = ec2.describe_security_groups(GroupIds=[gid])[
                    "SecurityGroups"][0]
            except botocore.exceptions.ClientError:
                continue
            if g["IpPermissions"]:
                ec2.revoke_security_group_ingress(
                    GroupId=gid, IpPermissions=g["IpPermissions"])
            if g["IpPermissionsEgress"]:
                ec2.revoke_security_group_egress(
                    GroupId=gid, IpPermissions=g["IpPermissionsEgress"])
        for ec2, gid in self.made:
            try:
                ec2.delete_security_group(GroupId=gid)
            except botocore.exceptions.ClientError as e:
                assert e.response["Error"]["Code"] == \
                    "InvalidGroup.NotFound", e


def set_groups(cloud, guest, *gids):
    ec2 = cloud.bob if guest == "D" else cloud.alice
    ec2.modify_instance_attribute(InstanceId=cloud.iid[guest],
                                  Groups=list(gids))


def instance_groups(cloud, guest):
    ec2 = cloud.bob if guest == "D" else cloud.alice
    r = ec2.describe_instances(InstanceIds=[cloud.iid[guest]])
    inst = r["Reservations"][0]["Instances"][0]
    return sorted(g["GroupId"] for g in inst["SecurityGroups"])


@pytest.fixture
def groups(cloud):
    """Every guest back in its account's default group alone, and the
    groups the test makes deleted after it."""
    for k in "ABC":
        set_groups(cloud, k, cloud.sg_default)
    set_groups(cloud, "D", cloud.bob_default["GroupId"])
    settle(cloud)
    g = Groups(cloud)
    yield g
    for k in "ABC":
        set_groups(cloud, k, cloud.sg_default)
    set_groups(cloud, "D", cloud.bob_default["GroupId"])
    g.cleanup()
    settle(cloud)


@pytest.fixture
def aws(cloud, tmp_path):
    """Debian's aws-cli as the cloud's own account; json answers."""
    home = tmp_path / "home"
    home.mkdir()
    raw = cloud.aws_ec2(home)

    def aws(*args, check=True):
        p = raw(*args, "--output", "json", check=check)
        if not check:
            return p
        return json.loads(p.stdout) if p.stdout.strip() else {}
    return aws


class Prober:
    """New TCP connections from the probe namespace to one or more
    addresses' :8080, one every `every` seconds each, each given
    `timeout` seconds, written to a file (a pipe nobody reads would fill
    and stall it): stop() -> samples (monotonic start time, address,
    ok).  Use it in a with block so that it ends whatever happens."""

    CODE = """
import socket, sys, time
dsts = sys.argv[1].split(","); every = float(sys.argv[2])
timeout = float(sys.argv[3]); out = open(sys.argv[4], "w", buffering=1)
print("ready", flush=True)
while True:
    for d in dsts:
        t = time.monotonic()
        try:
            socket.create_connection((d, 8080), timeout=timeout).close()
            ok = 1
        except OSError:
            ok = 0
        out.write(f"{t:.4f} {d} {ok}\\n")
    time.sleep(every)
"""

    def __init__(self, cloud, dsts, path, every=0.05, timeout=0.25):
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cloud.probe_ns, sys.executable, "-c",
             self.CODE, ",".join(dsts), str(every), str(timeout), path],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self.proc is None:
            return self.samples
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)
        self.proc = None
        samples = self.samples = []
        for line in open(self.path).read().splitlines():
            t, d, ok = line.split()
            samples.append((float(t), d, ok == "1"))
        return samples


# ---- the tests (one cluster) ----

class TestOneCluster:

    def test_default_group_members_only(self, cloud, groups):
        """boto3.  Members of the default group reach each other (page,
        ICMP, UDP), across nodes and on one; a guest in another group does
        not, either way; nor does a host that is no instance."""
        for src, dst in (("A", "B"), ("B", "A"), ("A", "C"), ("C", "B")):
            assert reach(cloud, src, dst) == ALL, (src, dst)
        assert not probe_http(cloud, "A")
        other = groups.new("other")
        set_groups(cloud, "C", other)
        assert instance_groups(cloud, "C") == [other]
        settle(cloud)
        for src, dst in (("A", "C"), ("C", "A"), ("C", "B"), ("B", "C")):
            assert reach(cloud, src, dst) == NONE, (src, dst)
        assert reach(cloud, "A", "B") == ALL
        # back in: reached again, as it joins
        set_groups(cloud, "C", cloud.sg_default)
        settle(cloud)
        assert reach(cloud, "C", "A") == ALL

    def test_rule_from_cidr(self, cloud, groups, aws):
        """aws-cli.  A group allowing tcp/8080 from a CIDR: the probe in it
        gets the page, A (outside it) does not, nor ICMP or UDP."""
        web = aws("create-security-group", "--group-name", "web",
                  "--description", "web from the probe")["GroupId"]
        groups.adopt(web)
        aws("authorize-security-group-ingress", "--group-id", web,
            "--ip-permissions", json.dumps([ctl(cloud)]))
        aws("authorize-security-group-ingress", "--group-id", web,
            "--protocol", "tcp", "--port", "8080",
            "--cidr", "10.111.250.0/24")
        aws("modify-instance-attribute", "--instance-id", cloud.iid["B"],
            "--groups", web)
        settle(cloud)
        assert probe_http(cloud, "B")
        assert reach(cloud, "A", "B") == NONE
        assert reach(cloud, "C", "B") == NONE
        # widened to A's own address: tcp/8080 only
        aws("authorize-security-group-ingress", "--group-id", web,
            "--ip-permissions", json.dumps([tcp8080(
                IpRanges=[{"CidrIp": cloud.ip["A"] + "/32",
                           "Description": "A only"}])]))
        settle(cloud)
        assert reach(cloud, "A", "B") == TCP_ONLY
        assert reach(cloud, "C", "B") == NONE
        # B in two groups: the union of their rules
        aws("modify-instance-attribute", "--instance-id", cloud.iid["B"],
            "--groups", web, cloud.sg_default)
        settle(cloud)
        assert reach(cloud, "C", "B") == ALL
        assert probe_http(cloud, "B")

    def test_rule_from_group_follows_membership(self, cloud, groups, aws):
        """boto3 and aws-cli.  tcp/8080 from another group
        (UserIdGroupPairs): who may connect follows the group's members as
        ModifyInstanceAttribute changes a running instance's groups, and as
        an instance is launched into the group and terminated."""
        client = groups.new("client")
        web = groups.new("web")
        cloud.alice.authorize_security_group_ingress(
            GroupId=web, IpPermissions=[tcp8080(
                UserIdGroupPairs=[{"GroupId": client}])])
        set_groups(cloud, "B", web)
        settle(cloud)
        assert reach(cloud, "A", "B") == NONE  # client has no members
        set_groups(cloud, "A", cloud.sg_default, client)
        assert instance_groups(cloud, "A") == sorted([cloud.sg_default,
                                                      client])
        settle(cloud)
        assert reach(cloud, "A", "B") == TCP_ONLY
        assert reach(cloud, "C", "B") == NONE
        set_groups(cloud, "C", client)  # C too; A leaves
        set_groups(cloud, "A", cloud.sg_default)
        settle(cloud)
        assert tcp_from(cloud, "C", "B")
        assert not tcp_from(cloud, "A", "B")
        set_groups(cloud, "C", cloud.sg_default)
        # A fifth guest launched into the group (aws-cli) is let in as it
        # comes, and its address leaves B's node's set as it goes.
        r = aws("run-instances", "--image-id", cloud.ami, "--count", "1",
                "--instance-type", "t1.micro", "--security-group-ids",
                client)
        e_iid = r["Instances"][0]["InstanceId"]
        try:
            got = wait_state(cloud.alice, [e_iid], "running", timeout=300)
            e_ip = got[e_iid]["PrivateIpAddress"]
            cloud.ip["E"] = e_ip
            wait_until(lambda: guest_answers(cloud, e_ip), 300, 1,
                       "guest E answering")
            settle(cloud)
            assert reach(cloud, "E", "B") == TCP_ONLY
            assert reach(cloud, "E", "A") == NONE  # not in the default
            node = cloud.g["B"][2]
            members = lambda: cloud.netns_exec(  # noqa: E731
                cloud.node_ns[node], "nft", "list", "set", "inet", TABLE,
                "grp_" + client[3:]).stdout
            assert e_ip in members()
        finally:
            aws("terminate-instances", "--instance-ids", e_iid)
            cloud.ip.pop("E", None)
        wait_state(cloud.alice, [e_iid], "terminated", timeout=120)
        settle(cloud)
        assert e_ip not in members()

    def test_stateful(self, cloud, groups):
        """boto3.  Replies to allowed traffic pass (TCP and UDP), the reverse
        direction is not opened, and replies pass even with no egress rule
        at all (as on EC2)."""
        web = groups.new("web")
        cloud.alice.authorize_security_group_ingress(
            GroupId=web, IpPermissions=[
                tcp8080(IpRanges=[{"CidrIp": cloud.ip["A"] + "/32"}]),
                {"IpProtocol": "udp", "FromPort": 7, "ToPort": 7,
                 "IpRanges": [{"CidrIp": cloud.ip["A"] + "/32"}]}])
        set_groups(cloud, "B", web)
        settle(cloud)
        assert reach(cloud, "A", "B") == {"tcp": True, "icmp": False,
                                          "udp": True}
        assert reach(cloud, "B", "A") == NONE
        cloud.alice.revoke_security_group_egress(
            GroupId=web, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [
                {"CidrIp": "0.0.0.0/0"}]}])
        settle(cloud)
        assert reach(cloud, "A", "B") == {"tcp": True, "icmp": False,
                                          "udp": True}
        assert reach(cloud, "B", "A") == NONE
        assert reach(cloud, "B", "C") == NONE

    def test_revoke_closes_at_once(self, cloud, groups, tmp_path):
        """boto3.  From RevokeSecurityGroupIngress's answer until a new
        connection fails (and every later one), measured by connections
        from the probe every 50 ms; and Authorize's the same way."""
        web = groups.new("web")
        set_groups(cloud, "B", web)
        settle(cloud)
        assert not probe_http(cloud, "B")
        perm = tcp8080(IpRanges=[{"CidrIp": PROBE + "/32"}])
        ip = cloud.ip["B"]

        with Prober(cloud, [ip], tmp_path / "probe") as prober:
            time.sleep(0.5)
            cloud.alice.authorize_security_group_ingress(
                GroupId=web, IpPermissions=[perm])
            t_auth = time.monotonic()
            time.sleep(3)
            cloud.alice.revoke_security_group_ingress(
                GroupId=web, IpPermissions=[perm])
            t_rev = time.monotonic()
            time.sleep(3)
            samples = prober.stop()

        before = [s for s in samples if s[0] < t_auth - 0.3]
        assert before and not any(ok for _, _, ok in before)
        opened = [t for t, _, ok in samples if ok]
        assert opened, "the rule never let a connection through"
        open_after = opened[0] - t_auth
        last_ok = opened[-1]
        assert last_ok < t_rev + 5
        closed = [t for t, _, ok in samples if t > last_ok]
        assert closed and closed[-1] > t_rev + 2
        assert not any(ok for t, _, ok in samples if t > last_ok)
        closed_after = closed[0] - t_rev
        print(f"\nauthorize answer -> first new connection through: "
              f"{open_after * 1000:.0f} ms")
        print(f"revoke answer -> first new connection refused: "
              f"{closed_after * 1000:.0f} ms (last one through "
              f"{(last_ok - t_rev) * 1000:.0f} ms after the answer)")
        assert open_after < 5
        assert closed_after < 5

    def test_egress(self, cloud, groups, aws, tmp_path):
        """aws-cli.  Without its allow-all egress a guest opens nothing
        (to other guests, to a host of the LAN) while DHCP, DNS to the
        router and the metadata service keep working; a narrower egress
        rule lets only that through."""
        srv_dir = tmp_path / "www"
        srv_dir.mkdir()
        (srv_dir / "index.html").write_text("probe\n")
        srv = subprocess.Popen(
            ["ip", "netns", "exec", cloud.probe_ns, sys.executable, "-m",
             "http.server", str(PROBE_PORT), "--bind", PROBE],
            cwd=srv_dir, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: subprocess.run(
                ["ip", "netns", "exec", cloud.probe_ns, "curl", "-s", "-m",
                 "1", f"http://{PROBE}:{PROBE_PORT}/"],
                capture_output=True).returncode == 0, 10, 0.1, "the probe")
            self._egress(cloud, groups, aws)
        finally:
            srv.kill()
            srv.wait()

    def _egress(self, cloud, groups, aws):
        open_ = groups.new("open")
        aws("authorize-security-group-ingress", "--group-id", open_,
            "--ip-permissions", json.dumps([
                {"IpProtocol": "-1", "IpRanges": [
                    {"CidrIp": "10.111.0.0/16"}]}]))
        locked = aws("create-security-group", "--group-name", "locked",
                     "--description", "no way out")["GroupId"]
        groups.adopt(locked)
        aws("authorize-security-group-ingress", "--group-id", locked,
            "--ip-permissions", json.dumps([ctl(cloud)]))
        g = aws("describe-security-groups", "--group-ids", locked)[
            "SecurityGroups"][0]
        assert g["IpPermissionsEgress"] == [
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
             "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": []}]
        for k in "BC":
            aws("modify-instance-attribute", "--instance-id", cloud.iid[k],
                "--groups", cloud.sg_default, open_)
        aws("modify-instance-attribute", "--instance-id", cloud.iid["A"],
            "--groups", locked)
        settle(cloud)
        assert reach(cloud, "A", "B") == ALL
        assert tcp_from(cloud, "A", PROBE, PROBE_PORT)

        aws("revoke-security-group-egress", "--group-id", locked,
            "--ip-permissions", json.dumps([
                {"IpProtocol": "-1",
                 "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]))
        settle(cloud)
        assert reach(cloud, "A", "B") == NONE
        assert reach(cloud, "A", "C") == NONE
        assert not tcp_from(cloud, "A", PROBE, PROBE_PORT)
        assert services_from(cloud, "A") == {
            "dhcp": "yes", "dns": "yes", "meta": cloud.iid["A"]}

        aws("authorize-security-group-egress", "--group-id", locked,
            "--ip-permissions", json.dumps([tcp8080(
                IpRanges=[{"CidrIp": cloud.ip["B"] + "/32"}])]))
        settle(cloud)
        assert reach(cloud, "A", "B") == TCP_ONLY
        assert reach(cloud, "A", "C") == NONE
        assert not tcp_from(cloud, "A", PROBE, PROBE_PORT)
        # and to a group: udp/7 to the members of `open`
        aws("authorize-security-group-egress", "--group-id", locked,
            "--ip-permissions", json.dumps([
                {"IpProtocol": "udp", "FromPort": 7, "ToPort": 7,
                 "UserIdGroupPairs": [{"GroupId": open_}]}]))
        settle(cloud)
        assert reach(cloud, "A", "C") == {"tcp": False, "icmp": False,
                                          "udp": True}
        assert not tcp_from(cloud, "A", PROBE, PROBE_PORT)

    def test_accounts_isolated(self, cloud, groups):
        """boto3.  Instances of two accounts with only their default groups
        never reach each other; a rule naming the other account's group
        admits its members (that rule only); a rule from 0.0.0.0/0 admits
        every address, other accounts' instances included
        (docs/network.md)."""
        assert reach(cloud, "A", "D") == NONE
        assert reach(cloud, "D", "A") == NONE
        assert reach(cloud, "D", "B") == NONE
        assert reach(cloud, "B", "D") == NONE
        assert reach(cloud, "A", "B") == ALL  # the control
        bob_sg = cloud.bob_default
        partners = groups.new("partners")
        cloud.alice.authorize_security_group_ingress(
            GroupId=partners, IpPermissions=[tcp8080(UserIdGroupPairs=[
                {"GroupId": bob_sg["GroupId"],
                 "UserId": bob_sg["OwnerId"]}])])
        set_groups(cloud, "B", cloud.sg_default, partners)
        settle(cloud)
        assert reach(cloud, "D", "B") == TCP_ONLY
        assert reach(cloud, "D", "A") == NONE
        assert reach(cloud, "B", "D") == NONE  # bob's group unchanged
        # bob's own group cannot name alice's to get into it
        with pytest.raises(botocore.exceptions.ClientError):
            cloud.bob.modify_instance_attribute(
                InstanceId=cloud.iid["D"], Groups=[partners])
        world = groups.new("world")
        cloud.alice.authorize_security_group_ingress(
            GroupId=world, IpPermissions=[
                {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
                 "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        set_groups(cloud, "B", cloud.sg_default, world)
        settle(cloud)
        assert reach(cloud, "D", "B") == {"tcp": False, "icmp": True,
                                          "udp": False}

    def test_delete_in_use_refused(self, cloud, groups, aws):
        """aws-cli.  DeleteSecurityGroup of a group an instance is in is
        DependencyViolation (by id and by name) and changes nothing; once
        the instance left it, it goes."""
        gid = aws("create-security-group", "--group-name", "doomed",
                  "--description", "in use")["GroupId"]
        groups.adopt(gid)
        aws("authorize-security-group-ingress", "--group-id", gid,
            "--ip-permissions", json.dumps([ctl(cloud), tcp8080(
                IpRanges=[{"CidrIp": PROBE + "/32"}])]))
        aws("modify-instance-attribute", "--instance-id", cloud.iid["B"],
            "--groups", gid)
        settle(cloud)
        assert probe_http(cloud, "B")
        for how in (("--group-id", gid), ("--group-name", "doomed")):
            p = aws("delete-security-group", *how, check=False)
            assert p.returncode != 0
            assert "DependencyViolation" in p.stderr, p.stderr
        settle(cloud)
        assert probe_http(cloud, "B")
        assert aws("describe-security-groups", "--group-ids", gid)[
            "SecurityGroups"][0]["GroupName"] == "doomed"
        aws("modify-instance-attribute", "--instance-id", cloud.iid["B"],
            "--groups", cloud.sg_default)
        aws("delete-security-group", "--group-id", gid)
        p = aws("describe-security-groups", "--group-ids", gid, check=False)
        assert p.returncode != 0 and "InvalidGroup.NotFound" in p.stderr
        settle(cloud)
        assert not probe_http(cloud, "B")
        assert reach(cloud, "A", "B") == ALL

    def _crash_setup(self, cloud, groups):
        """B in `web`: tcp/8080 from the probe and from A only.  Allowed:
        probe -> B, A -> B (tcp).  Denied: probe -> A, C -> B, D -> A."""
        web = groups.new("web")
        cloud.alice.authorize_security_group_ingress(
            GroupId=web, IpPermissions=[tcp8080(IpRanges=[
                {"CidrIp": PROBE + "/32"},
                {"CidrIp": cloud.ip["A"] + "/32"}])])
        set_groups(cloud, "B", web)
        settle(cloud)
        return web

    def _check_crash_matrix(self, cloud, c_to_b=NONE):
        assert reach(cloud, "A", "B") == TCP_ONLY
        assert reach(cloud, "C", "B") == c_to_b
        assert reach(cloud, "D", "A") == NONE
        assert reach(cloud, "A", "C") == ALL

    def _prober_verdicts(self, cloud, samples):
        b = [ok for _, d, ok in samples if d == cloud.ip["B"]]
        a = [ok for _, d, ok in samples if d == cloud.ip["A"]]
        assert len(b) > 20 and len(a) > 20, (len(a), len(b))
        assert all(b), f"{b.count(False)} of {len(b)} allowed refused"
        assert not any(a), f"{a.count(True)} of {len(a)} denied let in"

    def test_cc_kill9_keeps_rules(self, cloud, groups, tmp_path):
        """koala-cc killed with SIGKILL and started again: what was allowed
        stays allowed and what was denied stays denied, during and after
        (connections from the probe all along), and the restarted CC
        carries the next API change."""
        web = self._crash_setup(cloud, groups)
        cc = cloud.daemons["cc"]
        with Prober(cloud, [cloud.ip["B"], cloud.ip["A"]],
                    tmp_path / "probe", every=0.1, timeout=0.5) as prober:
            try:
                assert cc.stop(signal.SIGKILL) == -signal.SIGKILL
                self._check_crash_matrix(cloud)
                # a change made while the CC is down waits for it
                cloud.alice.authorize_security_group_ingress(
                    GroupId=web, IpPermissions=[{
                        "IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
                        "IpRanges": [{"CidrIp": cloud.ip["C"] + "/32"}]}])
                time.sleep(2)
                assert reach(cloud, "C", "B") == NONE
            finally:
                cc.start()
            settle(cloud, 30)
            self._check_crash_matrix(cloud, c_to_b={
                "tcp": False, "icmp": True, "udp": False})
            self._prober_verdicts(cloud, prober.stop())

    def test_nc_kill9_keeps_rules(self, cloud, groups, tmp_path):
        """koala-nc of B's node killed with SIGKILL and started again: the
        same, and its table is what it was."""
        self._crash_setup(cloud, groups)
        node = cloud.g["B"][2]

        def table():
            return nft_blocks(cloud.netns_exec(
                cloud.node_ns[node], "nft", "list", "table", "inet",
                TABLE).stdout)
        before = table()
        d = cloud.daemons[node]
        with Prober(cloud, [cloud.ip["B"], cloud.ip["A"]],
                    tmp_path / "probe", every=0.1, timeout=0.5) as prober:
            try:
                assert d.stop(signal.SIGKILL) == -signal.SIGKILL
                self._check_crash_matrix(cloud)
            finally:
                d.start()
            assert table() == before  # rebuilt from its state at start
            self._check_crash_matrix(cloud)
            self._prober_verdicts(cloud, prober.stop())
        # and the restarted NC takes the next change
        cloud.wait_enabled()
        cloud.alice.revoke_security_group_ingress(
            GroupId=groups.made[-1][1], IpPermissions=[tcp8080(
                IpRanges=[{"CidrIp": cloud.ip["A"] + "/32"}])])
        settle(cloud, 30)
        assert reach(cloud, "A", "B") == NONE
        assert probe_http(cloud, "B")


def nft_blocks(text):
    """A listed nft table as {chain/set/map header: its content}, without
    counters: a chain's rules in order (order matters there), a set's or
    map's elements sorted.  What the table does, not the order nft lists
    its chains and elements in (the NC writes them in its instances' id
    order since a restart changed the order it listed them in)."""
    blocks, name, body = {}, None, []
    for line in text.splitlines():
        line = re.sub(r"counter packets \d+ bytes \d+", "counter",
                      line.strip())
        m = re.match(r"(chain|set|map) (\S+) \{$", line)
        if m:
            name, body = line, []
        elif name and line == "}":
            if name.startswith("chain"):
                blocks[name] = body
            else:
                blocks[name] = sorted(t for t in re.split(
                    r"[\s,{}]+", " ".join(body)) if t)
            name = None
        elif name:
            body.append(line)
    return blocks


def services_from(cloud, src):
    """DHCP (a lease offered), DNS (the router answers the instance's
    name) and the metadata service (names the instance), from guest src."""
    iid, ip = cloud.iid[src], cloud.ip[src]
    out = cloud.guest_run(ip, f"""
udhcpc -i eth0 -n -q -t 3 -T 2 -s /bin/true >/dev/null 2>&1 \\
    && echo dhcp=yes || echo dhcp=no
nslookup {iid} {ROUTER} 2>/dev/null | grep -q '{ip}' \\
    && echo dns=yes || echo dns=no
r=$(printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n\\r\\n' |
    nc -w 3 169.254.169.254 80 2>/dev/null | tail -n 1)
echo meta=$r
""", timeout=40)
    assert out.returncode == 0, out
    return dict(line.split("=", 1) for line in out.output.split())


# ---- two zones ----

@pytest.fixture(scope="class")
def zones(tmp_path_factory, images):
    c = ZonesCloud(tmp_path_factory.mktemp("sgzones")).start()
    try:
        c.ami, _, _ = c.upload_images()
        c.wait_tunnels()
        yield c
    finally:
        rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


class TestTwoZones:

    def test_one_group_across_the_tunnel(self, zones, tmp_path):
        """aws-cli launches, boto3 rules.  Members of `blue` in zone a and
        zone b reach each other across the tunnel (page, ICMP, UDP); a
        member of `red` does not, either way, until it joins `blue`."""
        ec2 = zones.ec2()
        home = tmp_path / "home"
        home.mkdir()
        aws = zones.aws_ec2(home)
        gids = {}
        for name in ("blue", "red"):
            gid = ec2.create_security_group(GroupName=name,
                                            Description=name)["GroupId"]
            ec2.authorize_security_group_ingress(
                GroupId=gid, IpPermissions=[
                    ctl(zones), {"IpProtocol": "-1", "UserIdGroupPairs": [
                        {"GroupId": gid}]}])
            gids[name] = gid
        ids = {}
        for key, zone, grp in (("A", "zone-a", "blue"),
                               ("B", "zone-b", "blue"),
                               ("R", "zone-b", "red")):
            r = json.loads(aws(
                "run-instances", "--image-id", zones.ami, "--count", "1",
                "--instance-type", "t1.micro", "--placement",
                f"AvailabilityZone={zone}", "--security-group-ids",
                gids[grp], "--output", "json").stdout)
            ids[key] = r["Instances"][0]["InstanceId"]
        got = wait_state(ec2, list(ids.values()), "running", timeout=300)
        zones.ip = {k: got[iid]["PrivateIpAddress"] for k, iid in ids.items()}
        zones.iid = ids
        for k, zone in (("A", "zone-a"), ("B", "zone-b"), ("R", "zone-b")):
            assert zones.zone_of_ip(zones.ip[k]) == zone
        for ip in zones.ip.values():
            wait_until(lambda: guest_answers(zones, ip), 300, 1,
                       f"guest {ip} answering")
        settle(zones, 20)
        print(f"\nzone guests: {zones.ip}")
        assert reach(zones, "A", "B") == ALL
        assert reach(zones, "B", "A") == ALL
        assert reach(zones, "R", "A") == NONE
        assert reach(zones, "A", "R") == NONE
        assert reach(zones, "R", "B") == NONE  # one zone: filtered too
        # R joins blue (ModifyInstanceAttribute, aws-cli): zone a's node
        # learns its zone-b address as a member
        aws("modify-instance-attribute", "--instance-id", ids["R"],
            "--groups", gids["red"], gids["blue"])
        settle(zones, 20)
        assert reach(zones, "R", "A") == ALL
        assert reach(zones, "A", "R") == ALL
