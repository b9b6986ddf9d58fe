"""bench/imds: the CC's instance metadata service (src/cc/imds*.c) under
CONCURRENCY clients (50), against nginx serving the same bytes as static
files, from the same place with the same load generator.

A whole Koala cloud (the integration tests' harness, tests/integration/
cloud.py) runs on this host.  One busybox test guest is launched with a
key pair and USERDATA_BYTES of user data, runs (its DHCP lease on the
cluster LAN), and is stopped: the CC keeps a stopped instance's address
(src/cc/alloc.c frees it only when the instance is terminated, and the
metadata service's lookup, store_instance_by_ip, skips only terminated
ones), so its private IP and MAC are still its own on the LAN.  The load
cannot come from inside the guest (TCG would measure the emulator), so the
benchmark makes a network namespace of its own, joined to the cluster's
LAN bridge (klan0) by a veth pair whose end holds the instance's IP and
MAC: to the CC it is the instance asking.  Before measuring, the answers
are checked to be that instance's (instance-id, mac, local-ipv4, the
identity document, the user data sent).

Measured, each over keep-alive connections and with a new connection per
request (HTTP/1.1 Connection: close), by bench/imds/imdsload (C, epoll):

  meta-data/instance-id       a leaf
  meta-data/                  the listing
  user-data                   USERDATA_BYTES bytes
  dynamic/instance-identity/document   JSON (the CC signs it, PKCS#7 and
                              a signature, at each request for dynamic/)
  token + instance-id         IMDSv2: PUT /latest/api/token then GET
                              instance-id with the token, on one connection
                              (one operation = two HTTP requests)

The peer: nginx in the cluster's namespace on 169.254.169.254:NGINX_PORT,
the same bytes (fetched from the metadata service itself) as static files,
and a fixed token from `return 200` for the PUT.  It does not look the
asker up, check or mint tokens, or sign: it is the ceiling of answering
these bytes over HTTP on this host.  Also shown: the server's CPU time per
operation (koala-cc's process; nginx's workers), less sensitive than the
rates to others' load on the host.

Each cell is measured ROUNDS times, Koala and nginx alternating; the
round with the median rate is shown.  Environment: KOALA_BUILD_DIR
(default build), KOALA_IMAGES (build/images), CONCURRENCY (50), DURATION
seconds per measurement (4), WARMUP (1), ROUNDS (3), USERDATA_BYTES
(4096), NGINX (/usr/sbin/nginx), NGINX_PORT (18080), HYPERVISOR (auto),
KEEP=1 keeps the cloud's directory (logs).
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cloud import Cloud  # noqa: E402
from conftest import BUILD, Netns  # noqa: E402

CONCURRENCY = int(os.environ.get("CONCURRENCY", "50"))
DURATION = float(os.environ.get("DURATION", "4"))
WARMUP = float(os.environ.get("WARMUP", "1"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
USERDATA_BYTES = int(os.environ.get("USERDATA_BYTES", "4096"))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
NGINX_PORT = int(os.environ.get("NGINX_PORT", "18080"))
HYPERVISOR = os.environ.get("HYPERVISOR", "auto")
LOAD = BUILD / "bench" / "imds" / "imdsload"
IMDS = "169.254.169.254"
ROUTER = "10.111.0.1"  # the test cloud's subnet is 10.111.0.0/16
READY = "KOALA-GUEST-READY"
TICK = os.sysconf("SC_CLK_TCK")

# (name, path, token pair?)
CASES = [
    ("instance-id", "/latest/meta-data/instance-id", False),
    ("meta-data/ listing", "/latest/meta-data/", False),
    (f"user-data {USERDATA_BYTES // 1024} KiB", "/latest/user-data", False),
    ("identity document", "/latest/dynamic/instance-identity/document",
     False),
    ("token PUT + GET id", "/latest/meta-data/instance-id", True),
]


def user_data():
    """USERDATA_BYTES of a shell script, the same each run."""
    line = b"echo 'koala bench user data: 0123456789abcdefghijklmnop'\n"
    body = b"#!/bin/sh\n" + line * (USERDATA_BYTES // len(line) + 1)
    return body[:USERDATA_BYTES - 1] + b"\n"


def cpu_s(pids):
    """utime + stime of these processes, in seconds."""
    t = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return t / TICK


def children(pid):
    out = []
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = st.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[1]) == pid:
            out.append(int(st.parent.name))
    return out


def wait_for(fn, timeout, what, step=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


class Bench:
    def __init__(self, base):
        self.base = base
        self.cloud = Cloud(base, n_nodes=1, hypervisor=HYPERVISOR).start()
        # nginx's workers (nobody) read here; the cloud's directory stays
        # private.
        self.work = Path(tempfile.mkdtemp(prefix="koala-bench-imds-www-"))
        os.chmod(self.work, 0o755)
        self.ec2 = self.cloud.ec2()
        self.ns = None
        self.nginx = None

    # ---- the instance ----

    def launch_and_stop(self):
        ami, _, _ = self.cloud.upload_images()
        self.ec2.create_key_pair(KeyName="imds-bench")
        self.user_data = user_data()
        r = self.ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                                   InstanceType="t1.micro",
                                   KeyName="imds-bench",
                                   UserData=self.user_data)
        iid = r["Instances"][0]["InstanceId"]

        def ready():
            i = self.describe(iid)
            if i["State"]["Name"] in ("terminated", "shutting-down"):
                raise RuntimeError(f"{iid}: {i.get('StateReason')}")
            out = self.ec2.get_console_output(InstanceId=iid).get(
                "Output", "")
            return i if i["State"]["Name"] == "running" and READY in out \
                else None
        i = wait_for(ready, 600, f"{iid} booted")
        self.iid, self.ip = iid, i["PrivateIpAddress"]
        nics = i.get("NetworkInterfaces") or [{}]
        self.mac = nics[0].get("MacAddress") or self.cc_address()[1]
        self.ec2.stop_instances(InstanceIds=[iid])
        wait_for(lambda: self.describe(iid)["State"]["Name"] == "stopped",
                 300, f"{iid} stopped")
        wait_for(lambda: not self.cloud.vms("nc1"), 60, "its QEMU gone", 0.2)
        # The CC still holds its address (alloc.c: freed on terminate).
        ip, mac = self.cc_address()
        if (ip, mac) != (self.ip, self.mac):
            raise RuntimeError(f"the CC holds {(ip, mac)} for the stopped "
                               f"{iid}, not {(self.ip, self.mac)}")

    def describe(self, iid):
        return self.ec2.describe_instances(
            InstanceIds=[iid])["Reservations"][0]["Instances"][0]

    def cc_address(self):
        db = sqlite3.connect(
            f"file:{self.cloud.dir / 'cc' / 'cc.db'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT ip_text, mac FROM addresses WHERE "
                             "instance_id = ?", (self.iid,)).fetchone()
        finally:
            db.close()
        return tuple(row) if row else (None, None)

    # ---- the benchmark's namespace, as the instance on the LAN ----

    def join_lan(self):
        self.ns = Netns("imds")
        cns = self.cloud.cluster_ns
        self.ns.ip("link", "add", "eth0", "type", "veth", "peer", "name",
                   "to-bench", "netns", cns)
        subprocess.run(["ip", "-n", cns, "link", "set", "to-bench", "master",
                        "klan0", "up"], check=True)
        self.ns.ip("link", "set", "eth0", "address", self.mac)
        self.ns.ip("addr", "add", f"{self.ip}/16", "dev", "eth0")
        self.ns.ip("link", "set", "eth0", "up")
        # As the DHCP answer's classless route tells guests.
        self.ns.ip("route", "add", f"{IMDS}/32", "via", ROUTER)
        # A new connection per request: this namespace's own port range.
        self.ns.run("sysctl", "-qw",
                    "net.ipv4.ip_local_port_range=1024 65000",
                    "net.ipv4.tcp_tw_reuse=1")

    def curl(self, path, *args, port=80):
        r = self.ns.run("curl", "-sS", "-f", "-m", "10", *args,
                        f"http://{IMDS}:{port}{path}")
        return r.stdout

    def fetch_and_verify(self):
        """The bodies of every measured path, from the metadata service,
        into work/www (nginx's root) and checked to be the instance's."""
        got = wait_for(lambda: self.curl_ok("/latest/meta-data/instance-id"),
                       30, "the metadata service to answer", 0.5)
        if got != self.iid:
            raise RuntimeError(f"metadata says {got!r}, not {self.iid}")
        if self.curl("/latest/meta-data/mac") != self.mac or \
                self.curl("/latest/meta-data/local-ipv4") != self.ip:
            raise RuntimeError("mac or local-ipv4 is not the instance's")
        www = self.work / "www"
        self.expect = {}
        for _, path, _ in CASES:
            f = www / path.lstrip("/")
            if path.endswith("/"):
                f = f / "index.txt"
            f.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["ip", "netns", "exec", self.ns.name, "curl", "-sS", "-f",
                 "-m", "10", "-o", str(f), f"http://{IMDS}{path}"],
                check=True)
            self.expect[path] = f
        if (www / "latest/user-data").read_bytes() != self.user_data:
            raise RuntimeError("user-data is not the bytes sent")
        doc = json.loads((www / "latest/dynamic/instance-identity/document")
                         .read_text())
        if (doc["instanceId"], doc["privateIp"]) != (self.iid, self.ip):
            raise RuntimeError(f"identity document of another: {doc}")
        tok = self.curl("/latest/api/token", "-X", "PUT", "-H",
                        "X-aws-ec2-metadata-token-ttl-seconds: 60")
        if self.curl("/latest/meta-data/instance-id", "-H",
                     f"X-aws-ec2-metadata-token: {tok}") != self.iid:
            raise RuntimeError("a GET with a token is not answered")
        self.token = tok
        for d in [www, *www.rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)  # nginx's workers

    def curl_ok(self, path):
        try:
            return self.curl(path)
        except subprocess.CalledProcessError:
            return None

    # ---- the peer ----

    def start_nginx(self):
        d = self.work / "nginx"
        d.mkdir()
        www = self.work / "www"
        conf = d / "nginx.conf"
        conf.write_text(f"""
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  types {{ }}
  default_type text/plain;
  keepalive_requests 100000;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen {IMDS}:{NGINX_PORT};
    root {www};
    location = /latest/meta-data/ {{
      try_files /latest/meta-data/index.txt =404;
    }}
    location = /latest/api/token {{ return 200 "{self.token}"; }}
  }}
}}
""")
        self.nginx = subprocess.Popen(
            ["ip", "netns", "exec", self.cloud.cluster_ns, NGINX, "-c",
             str(conf), "-p", str(d), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(d / "stderr", "wb"))
        wait_for(lambda: self.curl_ok_port("/latest/meta-data/instance-id")
                 == self.iid, 20, "nginx", 0.2)
        self.nginx_workers = children(self.nginx.pid)

    def curl_ok_port(self, path):
        try:
            return self.curl(path, port=NGINX_PORT)
        except subprocess.CalledProcessError:
            return None

    def stop_nginx(self):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()

    # ---- measuring ----

    def measure(self, server, path, token, new_conn):
        port = 80 if server == "koala" else NGINX_PORT
        pids = [self.cloud.daemons["cc"].proc.pid] if server == "koala" \
            else [self.nginx.pid, *self.nginx_workers]
        argv = ["ip", "netns", "exec", self.ns.name, str(LOAD), "--host",
                IMDS, "--port", str(port), "--path", path, "--clients",
                str(CONCURRENCY), "--duration", str(DURATION), "--warmup",
                str(WARMUP), "--expect-file", str(self.expect[path]),
                "--label", server, "--json"]
        if token:
            argv += ["--token-ttl", "21600"]
        if new_conn:
            argv.append("--new-conn")
        c0 = cpu_s(pids)
        r = subprocess.run(argv, capture_output=True, text=True)
        c1 = cpu_s(pids)
        if not r.stdout.strip():
            raise RuntimeError(f"imdsload: {r.stderr}")
        out = json.loads(r.stdout)
        out["stderr"] = r.stderr.strip()
        # CPU over warm-up + measurement, per operation of both.
        total_ops = out["ops"] * (WARMUP + DURATION) / DURATION
        out["cpu_us"] = (c1 - c0) * 1e6 / total_ops if out["ops"] else 0
        return out

    def run(self):
        results = {}
        for name, path, token in CASES:
            for new_conn in (False, True):
                runs = {"koala": [], "nginx": []}
                for _ in range(ROUNDS):
                    for server in ("koala", "nginx"):
                        runs[server].append(
                            self.measure(server, path, token, new_conn))
                results[(name, new_conn)] = {
                    s: sorted(rs, key=lambda x: x["ops_per_s"])[len(rs) // 2]
                    | {"errors_all": sum(x["errors"] for x in rs),
                       "stderr_all": [x["stderr"] for x in rs
                                      if x["stderr"]]}
                    for s, rs in runs.items()}
        return results

    def stop(self):
        self.stop_nginx()
        if self.ns:
            self.ns.delete()
            self.ns = None
        shutil.rmtree(self.work, ignore_errors=True)
        return self.cloud.stop()


def report(b, results, load0, load1):
    print()
    print(f"bench/imds: {CONCURRENCY} clients, {DURATION:g} s per "
          f"measurement after {WARMUP:g} s warm-up, median of {ROUNDS} "
          f"rounds; {os.cpu_count()} host cores, load average "
          f"{load0:.2f} before, {load1:.2f} after (others' work on the host "
          "makes these figures noisy)")
    print(f"instance {b.iid} (stopped) at {b.ip} {b.mac}, asked from the "
          "benchmark's namespace on the cluster LAN")
    hdr = (f"{'path':<22} {'conn':<10} | {'Koala op/s':>10} {'p50 ms':>7} "
           f"{'p99 ms':>7} {'err':>4} {'cpu us':>6} | {'nginx op/s':>10} "
           f"{'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'cpu us':>6} | "
           f"{'op/s K/n':>8} {'p50 K/n':>7}")
    print(hdr)
    print("-" * len(hdr))
    for (name, new_conn), r in results.items():
        k, n = r["koala"], r["nginx"]
        ratio = k["ops_per_s"] / n["ops_per_s"] if n["ops_per_s"] else 0
        p50 = k["p50_ms"] / n["p50_ms"] if n["p50_ms"] else 0
        print(f"{name:<22} {'new' if new_conn else 'keep-alive':<10} | "
              f"{k['ops_per_s']:>10.0f} {k['p50_ms']:>7.2f} "
              f"{k['p99_ms']:>7.2f} {k['errors_all']:>4} "
              f"{k['cpu_us']:>6.0f} | {n['ops_per_s']:>10.0f} "
              f"{n['p50_ms']:>7.2f} {n['p99_ms']:>7.2f} "
              f"{n['errors_all']:>4} {n['cpu_us']:>6.0f} | "
              f"{ratio:>8.2f} {p50:>7.2f}")
    print()
    print("op: one GET; for the token row, PUT /latest/api/token + GET "
          "with the token (two requests).")
    print("err: failed operations over all rounds (status, bytes, "
          "connection); cpu us: the server's CPU time per operation.")
    print("nginx serves the same bytes as static files: no lookup of the "
          "asker by source address, no")
    print("instance record or metadata options read, no token minted or "
          "checked (a fixed string), no")
    print("signing (Koala signs at each request of dynamic/instance-identity/"
          "pkcs7 and signature;")
    print("the document row here is the JSON document, not signed).")
    for (name, new_conn), r in results.items():
        for s in ("koala", "nginx"):
            for e in r[s]["stderr_all"]:
                print(f"  {s} {name} {'new' if new_conn else 'keep'}: "
                      + e.replace("\n", "\n    "))


def main():
    if not LOAD.exists():
        sys.exit(f"{LOAD} is not built")
    base = Path(tempfile.mkdtemp(prefix="koala-bench-imds-"))
    b = None
    rcs = None
    try:
        b = Bench(base)
        b.launch_and_stop()
        b.join_lan()
        b.fetch_and_verify()
        b.start_nginx()
        load0 = os.getloadavg()[0]
        results = b.run()
        load1 = os.getloadavg()[0]
        cc_log = b.cloud.daemons["cc"].log_text()
        rcs = b.stop()
        report(b, results, load0, load1)
        warn = [l for l in cc_log.splitlines() if "imds" in l and
                (" warn" in l.lower() or " error" in l.lower())]
        print(f"koala-cc log: {len(warn)} metadata warnings/errors"
              + (":\n  " + "\n  ".join(warn[:5]) if warn else ""))
    finally:
        if b is not None and rcs is None:
            rcs = b.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")
    if any(rc not in (0, None) for rc in (rcs or {}).values()):
        print(f"daemons exited with {rcs}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
