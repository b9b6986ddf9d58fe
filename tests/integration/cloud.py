"""A whole Koala cloud for the integration tests, started from the build
directory: `koala init`, then Walrus, the CLC, clusters (CCs) and nodes
(NCs) registered and started with their certificates.  Instance networks
live in network namespaces this module creates (and deletes): one per
cluster (its router: bridge klan0, DHCP, NAT) and one per node (bridge
kbr0), wired to the cluster's with a veth pair, as hosts on a LAN.  With
outside=True, a namespace standing for the world outside the cloud is
joined to the cluster's by a veth, the router's uplink (OUTSIDE_NET), and
the cluster gets the public pool PUBLIC_POOL on it.

Every process is started here and stopped by its PID; nothing else is
ever signalled.
"""
import collections
import datetime
import os
import signal
import subprocess
import time
from pathlib import Path

import unittest.mock
import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials

from conftest import (AWS_BIN, BUILD, KOALA_BIN, ROOT, Netns, Process,
                      free_port, run, sh)

CLC_BIN = BUILD / "src" / "clc" / "koala-clc"
CC_BIN = BUILD / "src" / "cc" / "koala-cc"
NC_BIN = BUILD / "src" / "nc" / "koala-nc"
WALRUS_BIN = BUILD / "src" / "walrus" / "koala-walrus"
SC_BIN = BUILD / "src" / "sc" / "koala-sc"
SC_NS = "urn:koala:sc"
IMAGES = Path(os.environ.get("KOALA_IMAGES", ROOT / "build" / "images"))
REGION = "koala-1"
# The "outside" network of Cloud(outside=True): the router's uplink holds
# OUTSIDE_ROUTER, the outside namespace OUTSIDE_HOST, and the cluster's
# public pool is PUBLIC_POOL, inside the same /24 (the router answers ARP
# for the pool's addresses on the uplink).
OUTSIDE_ROUTER = "100.64.112.1"
OUTSIDE_HOST = "100.64.112.2"
PUBLIC_POOL = "100.64.112.16/28"


class GuestUnreachable(Exception):
    """Cloud.guest_run got no answer from the guest."""


GuestRun = collections.namedtuple("GuestRun", "returncode output")


class Daemon(Process):
    def __init__(self, name, argv, log_path, port):
        self.name, self._argv, self.log_path, self.port = \
            name, argv, log_path, port

    def argv(self):
        return self._argv


class Cloud:
    def __init__(self, base, n_nodes=1, scheduler="GREEDY", node_cores=4,
                 node_memory_mb=2048, cluster="zone-a", hypervisor="tcg",
                 with_cluster=True, outside=False, clc_args=(), sc=False,
                 sc_capacity_gb=100, sc_transport="unix"):
        self.base = Path(base)
        self.dir = self.base / "cloud"
        self.cluster = cluster
        self.scheduler = scheduler
        self.n_nodes = n_nodes if with_cluster else 0
        self.with_cluster = with_cluster
        self.node_cores = node_cores
        self.node_memory_mb = node_memory_mb
        self.hypervisor = hypervisor
        self.outside = outside
        self.outside_ns = None  # its name, with outside=True
        self.clc_args = list(clc_args)
        self.daemons = {}
        self.netns = []  # the Netns made here, deleted by stop()
        self.ports = {k: free_port() for k in ("walrus", "clc", "clc_soap",
                                               "cc", "sc")}
        # the zone's storage controller (koala-sc), started after the
        # rest with sc=True
        self.sc = sc
        self.sc_capacity_gb = sc_capacity_gb
        self.sc_transport = sc_transport
        self.nodes = {}

    # ---- lifecycle ----

    def start(self):
        """Starts the whole cloud; if any part fails, what was started is
        stopped and the namespaces made are deleted before the error."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        out = sh(KOALA_BIN, "init", "--data-dir", self.dir).stdout
        kv = dict(line.split("=", 1) for line in out.split())
        self.key, self.secret = kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"]
        self.ca = self.dir / "ca" / "ca.pem"
        if self.with_cluster:
            self._networks()
        self._register("walrus", "w1", f"http://127.0.0.1:{self.ports['walrus']}")
        if self.with_cluster:
            self._register("cluster", self.cluster,
                           f"https://127.0.0.1:{self.ports['cc']}/")
        for i in range(1, self.n_nodes + 1):
            port = free_port()
            name = f"nc{i}"
            self.nodes[name] = port
            self._register("node", name, f"https://127.0.0.1:{port}/",
                           "--cluster", self.cluster)
        self._start_clc()
        self._start_walrus()
        if self.with_cluster:
            self._start_cc()
        for name in self.nodes:
            self.start_nc(name)
        self.wait_enabled()
        if self.with_cluster:
            self.allow_test_access()
        if self.sc:
            self._start_scs({self.cluster: ("sc1", self.ports["sc"])})
        return self

    def _start_scs(self, scs):
        """Registers and starts one koala-sc per zone: scs is {zone:
        (name, port)}."""
        self.scs = scs
        for zone, (name, port) in scs.items():
            self._register("sc", name, f"https://127.0.0.1:{port}/",
                           "--cluster", zone)
            self.start_sc(zone)

    def routers(self):
        """The cluster routers' addresses: where the tests reach guests
        from (guest_run, the pages, ssh)."""
        return ["10.111.0.1"]

    def allow_test_access(self, ec2=None):
        """Opens, in the account's default security group, what the tests
        use to drive guests from their cluster's namespace: tcp 8080 (the
        busybox guest's page and /cgi-bin/run), tcp 22 and ICMP from the
        routers, as a user opens a group to their own workstation.  Other
        ingress stays as EC2's default group has it (its members only)."""
        ec2 = ec2 or self.ec2()
        ranges = [{"CidrIp": f"{r}/32", "Description": "koala tests"}
                  for r in self.routers()]
        ec2.authorize_security_group_ingress(GroupName="default", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
             "IpRanges": ranges},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": ranges},
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1,
             "IpRanges": ranges}])

    def stop(self):
        rcs = {}
        for name in reversed(list(self.daemons)):
            rcs[name] = self.daemons[name].stop()
        self.kill_vms()
        for ns in reversed(self.netns):
            ns.delete()
        return rcs

    def vms(self, node):
        """{instance id: pid} of the QEMU processes running on a node: the
        PIDs the NC recorded, checked against their command lines (-name
        koala-i-...)."""
        out = {}
        for pidfile in (self.dir / node / "instances").glob("*/qemu.pid"):
            iid = pidfile.parent.name
            try:
                pid = int(pidfile.read_text())
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if f"koala-{iid}".encode() in cmd:
                out[iid] = pid
        return out

    def kill_vms(self):
        """The QEMU processes of the nodes' instances (they outlive koala-nc
        by design)."""
        procs = []
        for node in self.nodes:
            for pid in self.vms(node).values():
                os.kill(pid, signal.SIGKILL)
                procs.append(pid)
        def alive(pid):
            try:
                return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
            except OSError:
                return False
        deadline = time.monotonic() + 10
        while procs and time.monotonic() < deadline:
            procs = [p for p in procs if alive(p)]
            time.sleep(0.05)

    def certs(self, kind, name):
        d = self.dir / "certs"
        return d / f"{kind}-{name}.pem", d / f"{kind}-{name}.key"

    def _register(self, kind, name, endpoint, *extra):
        sh(KOALA_BIN, "register", kind, name, "--endpoint", endpoint,
           "--data-dir", self.dir, *extra)

    def _networks(self):
        cns = Netns("c")
        self.netns.append(cns)
        cns.ip("link", "add", "klan0", "type", "bridge")
        cns.ip("link", "set", "klan0", "up")
        self.cluster_ns = cns.name
        self.node_ns = {}
        for i in range(1, self.n_nodes + 1):
            ns = Netns(f"n{i}")
            self.netns.append(ns)
            ns.ip("link", "add", "kbr0", "type", "bridge")
            ns.ip("link", "set", "kbr0", "up")
            # the node's "cable" to the cluster's LAN
            ns.ip("link", "add", "uplink", "type", "veth",
                  "peer", "name", f"to-n{i}", "netns", cns.name)
            ns.ip("link", "set", "uplink", "master", "kbr0", "up")
            cns.ip("link", "set", f"to-n{i}", "master", "klan0", "up")
            self.node_ns[f"nc{i}"] = ns.name
        if self.outside:
            ons = Netns("o")
            self.netns.append(ons)
            ons.ip("link", "add", "eth0", "type", "veth",
                   "peer", "name", "uplink0", "netns", cns.name)
            ons.ip("addr", "add", f"{OUTSIDE_HOST}/24", "dev", "eth0")
            ons.ip("link", "set", "eth0", "up")
            cns.ip("addr", "add", f"{OUTSIDE_ROUTER}/24", "dev", "uplink0")
            cns.ip("link", "set", "uplink0", "up")
            self.outside_ns = ons.name

    def _daemon(self, name, argv, port):
        d = Daemon(name, argv, self.base / f"{name}.log", port)
        self.daemons[name] = d  # so that stop() ends it even if start fails
        return d.start()

    def _start_clc(self):
        cert, key = self.dir / "certs" / "clc.pem", self.dir / "certs" / "clc.key"
        self._daemon("clc", [
            CLC_BIN, "--data-dir", self.dir / "clc",
            "--listen", f"127.0.0.1:{self.ports['clc']}",
            "--soap-listen", f"127.0.0.1:{self.ports['clc_soap']}",
            "--tls-cert", cert, "--tls-key", key, "--ca", self.ca,
            "--region", REGION, "--log-level", "info", *self.clc_args],
            self.ports["clc"])
        self.ec2_endpoint = f"http://127.0.0.1:{self.ports['clc']}"

    def _start_walrus(self):
        cert, key = self.certs("walrus", "w1")
        self._daemon("walrus", [
            WALRUS_BIN, "--listen", f"127.0.0.1:{self.ports['walrus']}",
            "--data-dir", self.dir / "walrus",
            "--clc-endpoint", f"https://127.0.0.1:{self.ports['clc_soap']}/",
            "--ca", self.ca, "--clc-cert", cert, "--clc-key", key],
            self.ports["walrus"])
        self.s3_endpoint = f"http://127.0.0.1:{self.ports['walrus']}"

    def _start_cc(self):
        cert, key = self.certs("cluster", self.cluster)
        icert, ikey = self.certs("identity", self.cluster)
        conf = self.base / "cc.conf"
        conf.write_text(
            "[cc]\n"
            f"listen = 127.0.0.1:{self.ports['cc']}\n"
            f"data_dir = {self.dir / 'cc'}\n"
            f"name = {self.cluster}\n"
            f"tls_cert = {cert}\ntls_key = {key}\nca = {self.ca}\n"
            f"identity_cert = {icert}\nidentity_key = {ikey}\n"
            f"region = {REGION}\n"
            f"clc_endpoint = https://127.0.0.1:{self.ports['clc_soap']}/\n"
            f"scheduler = {self.scheduler}\n"
            f"netns = {self.cluster_ns}\nbridge = klan0\n"
            "subnet = 10.111.0.0/16\n"
            "poll_interval = 1\n" +
            (f"uplink = uplink0\npublic_ips = {PUBLIC_POOL}\n"
             if self.outside else ""))
        self._daemon("cc", [CC_BIN, "--config", conf], self.ports["cc"])

    def start_nc(self, name):
        cert, key = self.certs("node", name)
        port = self.nodes[name]
        conf = self.base / f"{name}.conf"
        conf.write_text(
            "[nc]\n"
            f"listen = 127.0.0.1:{port}\n"
            f"data_dir = {self.dir / name}\n"
            f"name = {name}\n"
            f"tls_cert = {cert}\ntls_key = {key}\nca = {self.ca}\n"
            f"cc_endpoint = https://127.0.0.1:{self.ports['cc']}/\n"
            f"netns = {self.node_ns[name]}\nbridge = kbr0\n"
            f"max_cores = {self.node_cores}\n"
            f"max_memory_mb = {self.node_memory_mb}\n"
            "max_disk_gb = 100\n"
            f"hypervisor = {self.hypervisor}\n")
        return self._daemon(name, [NC_BIN, "--config", conf], port)

    def sc_daemon(self, zone=None):
        """The name of a zone's koala-sc in self.daemons ("sc" for the
        first zone's)."""
        zone = zone or self.cluster
        return "sc" if zone == self.cluster else f"sc-{zone}"

    def start_sc(self, zone=None):
        """Starts koala-sc for a zone (the cluster's by default), again
        after a kill: the same configuration and data."""
        zone = zone or self.cluster
        name, port = self.scs[zone]
        daemon = self.sc_daemon(zone)
        cert, key = self.certs("sc", name)
        conf = self.base / f"{daemon}.conf"
        conf.write_text(
            "[sc]\n"
            f"listen = 127.0.0.1:{port}\n"
            f"data_dir = {self.dir / daemon}\n"
            f"name = {name}\nzone = {zone}\n"
            f"tls_cert = {cert}\ntls_key = {key}\nca = {self.ca}\n"
            f"capacity_gb = {self.sc_capacity_gb}\n"
            f"export_transport = {self.sc_transport}\n"
            f"walrus_endpoint = http://127.0.0.1:{self.ports['walrus']}\n"
            "walrus_credentials = "
            f"{self.dir / 'certs' / 'koala-storage.credentials'}\n"
            f"region = {REGION}\n")
        return self._daemon(daemon, [SC_BIN, "--config", conf], port)

    def sc_soap(self, zone=None, cert=None, key=None):
        """A SOAP client of a zone's SC, as the CLC (its certificate) by
        default."""
        from soapclient import SoapClient
        if cert is None:
            cert, key = self.dir / "certs" / "clc.pem", \
                self.dir / "certs" / "clc.key"
        _, port = self.scs[zone or self.cluster]
        return SoapClient(f"https://127.0.0.1:{port}/", SC_NS,
                          ca=self.ca, cert=cert, key=key, timeout=60)

    def wait_enabled(self, timeout=60):
        ec2 = self.ec2()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            zones = ec2.describe_availability_zones()["AvailabilityZones"]
            if (zones or not self.with_cluster) and \
                    all(z["State"] == "available" for z in zones):
                out = sh(KOALA_BIN, "services", "--data-dir", self.dir).stdout
                if "BROKEN" not in out and "NOTREADY" not in out:
                    return
            time.sleep(0.3)
        raise AssertionError("components never all ENABLED:\n" +
                             sh(KOALA_BIN, "services", "--data-dir",
                                self.dir).stdout)

    # ---- clients ----

    def env(self):
        return {"AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_DEFAULT_REGION": REGION}

    def create_account(self, name):
        """A new account (`koala account create`): its (key, secret)."""
        out = sh(KOALA_BIN, "account", "create", name,
                 "--data-dir", self.dir).stdout
        kv = dict(line.split("=", 1) for line in out.split())
        return kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"]

    def account_ec2(self, name):
        """An EC2 client of a new account, its number as .account."""
        ec2 = self.ec2(*self.create_account(name))
        ec2.account = ec2.describe_security_groups(
            GroupNames=["default"])["SecurityGroups"][0]["OwnerId"]
        return ec2

    def ec2(self, key=None, secret=None):
        return boto3.client(
            "ec2", endpoint_url=self.ec2_endpoint, region_name=REGION,
            aws_access_key_id=key or self.key,
            aws_secret_access_key=secret or self.secret,
            config=botocore.config.Config(retries={"max_attempts": 1}))

    def aws_ec2(self, home):
        """Debian's aws-cli against the CLC, with a clean HOME: aws("run-
        instances", ...) -> CompletedProcess."""
        env = dict(self.env(), HOME=str(home), PATH="/usr/bin:/bin",
                   AWS_CONFIG_FILE=str(home / "cfg"), AWS_PAGER="")
        (home / "cfg").write_text("[default]\n")

        def aws(*args, check=True):
            return run([AWS_BIN, "--endpoint-url", self.ec2_endpoint, "ec2",
                        *args], env, check=check)
        return aws

    def s3(self):
        return boto3.client(
            "s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
            config=botocore.config.Config(s3={"addressing_style": "path"}))

    def upload_images(self, bucket="images"):
        """The test guest (tests/images/build.sh) into Walrus, registered as
        a kernel, a ramdisk and a machine image booted with them."""
        s3 = self.s3()
        s3.create_bucket(Bucket=bucket)
        for f in ("vmlinuz", "initrd.img", "root.img"):
            s3.upload_file(str(IMAGES / f), bucket, f)
        ec2 = self.ec2()
        aki = ec2.register_image(Name="koala-test-kernel",
                                 ImageLocation=f"{bucket}/vmlinuz")["ImageId"]
        ari = ec2.register_image(Name="koala-test-ramdisk",
                                 ImageLocation=f"{bucket}/initrd.img")["ImageId"]
        ami = ec2.register_image(Name="koala-test", KernelId=aki,
                                 RamdiskId=ari,
                                 ImageLocation=f"{bucket}/root.img")["ImageId"]
        return ami, aki, ari

    def raw_ec2(self, params, secret=None, when=None, key=None):
        """A SigV4-signed EC2 POST made with botocore's own signer; returns
        (status, body)."""
        creds = botocore.credentials.Credentials(key or self.key,
                                                 secret or self.secret)
        req = botocore.awsrequest.AWSRequest(
            method="POST", url=self.ec2_endpoint + "/", data=params,
            headers={"Content-Type":
                     "application/x-www-form-urlencoded; charset=utf-8"})
        auth = botocore.auth.SigV4Auth(creds, "ec2", REGION)
        when = when or datetime.datetime.utcnow()
        with unittest.mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = when
            auth.add_auth(req)
        prepared = req.prepare()
        body = prepared.body
        if isinstance(body, str):
            body = body.encode()
        r = urllib.request.Request(prepared.url, data=body,
                                   headers=dict(prepared.headers), method="POST")
        try:
            with urllib.request.urlopen(r) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def netns_exec(self, ns, *cmd, check=True, timeout=30):
        return subprocess.run(["ip", "netns", "exec", ns, *map(str, cmd)],
                              check=check, capture_output=True, text=True,
                              timeout=timeout)

    def guest_run(self, ip, script, timeout=30):
        """Runs a shell script in the test guest at ip (its /cgi-bin/run,
        tests/images/README.md), from the cluster's namespace:
        GuestRun(returncode, output) with its stdout and stderr.  The guest
        ends it after timeout seconds (returncode 124).  GuestUnreachable
        when no answer comes."""
        cmd = ["ip", "netns", "exec", self.cluster_ns, "curl", "-sS", "-i",
               "-m", str(int(timeout) + 5), "-H", "Expect:",
               "--data-binary", "@-",
               f"http://{ip}:8080/cgi-bin/run?timeout={int(timeout)}"]
        try:
            r = subprocess.run(cmd, input=script.encode(),
                               capture_output=True, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            raise GuestUnreachable(f"{ip}: no answer in {timeout + 10} s")
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        if r.returncode != 0 or not lines[0].startswith("HTTP/1.1 200"):
            raise GuestUnreachable(f"{ip}: {lines[0]!r} "
                                   f"{r.stderr.decode(errors='replace')}")
        status = [l.split(":", 1)[1].strip() for l in lines[1:]
                  if l.lower().startswith("x-exit-status:")]
        return GuestRun(int(status[0]), body.decode(errors="replace"))
