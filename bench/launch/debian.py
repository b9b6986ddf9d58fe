"""bench/launch/debian.py: RunInstances -> ssh on the Debian 12 cloud guest
(tests/images/debian.sh, cloud-init), against bare QEMU booting the same
image to the same point on the same cluster network.

A whole Koala cloud (tests/integration/cloud.py, one NC) runs on this host
with the Debian guest registered as an EMI (kernel, ramdisk, root) and a key
pair.  One guest boots at a time (2 shared cores; TCG unless the NC's probe
finds KVM working).

  warm-up    one launch that downloads the image into the NC's cache (and
             is the NC's KVM probe where HYPERVISOR=auto leaves it to the
             first instance, hv.c); its QEMU command line is read from
             /proc, then it is stopped.  The CC keeps a
             stopped instance's address (src/cc/alloc.c frees it on
             terminate): its MAC and IP stay in dnsmasq's hosts and the
             metadata service still answers its IP (with its key).
  Koala      RunInstances (INSTANCE_TYPE, the key) -> "running" in
             DescribeInstances (polled every 0.1 s until then), -> the
             first line on the serial console (the NC's console.log, every
             50 ms), -> cloud-init's init-local and init stages starting
             (their lines on the console), -> `ssh -i key admin@IP true`
             succeeds (tried from the cluster's namespace every 0.5 s, one
             at a time, as soon as DescribeInstances gives the IP).  Then
             terminated.
  bare       the warm-up instance's QEMU command line (launch.bare_argv:
             minus -S, QMP, -daemonize/-pidfile; fresh qcow2 overlays on
             the same cached image made beforehand; its own console file)
             with its own NIC and MAC on a tap of our own on the node's
             bridge (kbr0, in the node's namespace), so the cloud's own
             DHCP and metadata service answer it as the stopped instance
             (checked after each run: cloud-init's instance id).  At the
             nice the NC gives guests (vm_nice, read off the instance's
             QEMU), in a session (autogroup) of its own as a daemonized
             QEMU is.  QEMU start -> the same console lines, -> ssh.

Both boot the same guest from the same disks, get their lease from the
same dnsmasq and their key from the same metadata service, and are reached
the same way; what bare leaves out is what the cloud adds: the API call,
the CLC, CC and NC deciding, the NC's disks, tap and anti-spoofing table,
QEMU's paused start and resume.  Koala and bare alternate (K B, B K, K B
...), ROUNDS each, so drift in the host's load falls on both.  Also shown
per boot: the 1-minute load average when it started, QEMU's RSS and CPU
time when ssh first succeeded (under TCG the guest keeps its vCPU busy:
when QEMU's CPU time grows with the wall-clock time, the slower boot was
not waiting for a core but needed more host CPU for the same guest work),
and the CPU time the cloud's daemons used meanwhile.

Environment: KOALA_BUILD_DIR (default build), KOALA_IMAGES (build/images;
the guest in its debian/), ROUNDS (3), INSTANCE_TYPE (m1.small: 1 vCPU,
256 MiB, 5 GiB root), HYPERVISOR (auto), KEEP=1 keeps the cloud's
directory (logs; the boots' consoles in its consoles/).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from launch import (ROOT, Cloud, bare_argv, drive_info, pct,  # noqa: E402
                    rss_kb)

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from cloud import IMAGES  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
INSTANCE_TYPE = os.environ.get("INSTANCE_TYPE", "m1.small")
HYPERVISOR = os.environ.get("HYPERVISOR", "auto")
DEBIAN = IMAGES / "debian"
TAP = "kbare0"
TICK = os.sysconf("SC_CLK_TCK")
TIMEOUT = 900


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


def nice_of(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
               .split()[16])


# Boot phases seen on the serial console: its first line (the kernel's
# boot stub: the guest runs), cloud-init's first stage starting (systemd
# up; Python's first start), its second (the network up: the metadata
# crawl, user and key, host keys).
MARKS = [("console", b"\n"), ("init-local", b"running 'init-local'"),
         ("init", b"running 'init'")]


def console_marks(path, t, t0):
    """Records in t the seconds since t0 for each of MARKS now in the
    console file (the file is small: ~40 KiB by ssh)."""
    if all(k in t for k, _ in MARKS):
        return
    try:
        data = path.read_bytes()
    except OSError:
        return
    now = time.monotonic() - t0
    for k, m in MARKS:
        if k not in t and m in data:
            t[k] = now


class SshPoll:
    """`ssh -i key admin@ip true` from the cluster's namespace, one attempt
    at a time, a new one every 0.5 s at most; step() is True once one
    succeeded."""

    def __init__(self, ns, key):
        self.ns, self.key = ns, key
        self.proc, self.next, self.attempts = None, 0.0, 0
        self.env = {k: v for k, v in os.environ.items()
                    if k != "SSH_AUTH_SOCK"}

    def step(self, ip):
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is None:
                return False
            self.proc = None
            if rc == 0:
                return True
        now = time.monotonic()
        if ip and now >= self.next:
            self.next = now + 0.5
            self.attempts += 1
            self.proc = subprocess.Popen(
                self.argv(ip, "true"), env=self.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return False

    def argv(self, ip, command):
        return ["ip", "netns", "exec", self.ns, "ssh", "-F", "/dev/null",
                "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o",
                "StrictHostKeyChecking=no", "-o",
                "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
                "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"admin@{ip}",
                command]

    def run(self, ip, command):
        return subprocess.run(self.argv(ip, command), env=self.env,
                              capture_output=True, text=True, timeout=60)

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Bench:
    def __init__(self, base):
        self.base = base
        self.cloud = Cloud(base, n_nodes=1, node_cores=4,
                           node_memory_mb=4096,
                           hypervisor=HYPERVISOR).start()
        self.ec2 = self.cloud.ec2()
        self.inst_dir = self.cloud.dir / "nc1" / "instances"
        self.node_ns = self.cloud.node_ns["nc1"]
        self.tap = False

    def register(self):
        s3 = self.cloud.s3()
        s3.create_bucket(Bucket="debian")
        for f in ("vmlinuz", "initrd.img", "root.img"):
            s3.upload_file(str(DEBIAN / f), "debian", f)
        aki = self.ec2.register_image(
            Name="debian-12-kernel",
            ImageLocation="debian/vmlinuz")["ImageId"]
        ari = self.ec2.register_image(
            Name="debian-12-ramdisk",
            ImageLocation="debian/initrd.img")["ImageId"]
        self.ami = self.ec2.register_image(
            Name="debian-12", KernelId=aki, RamdiskId=ari,
            ImageLocation="debian/root.img")["ImageId"]
        self.key = self.base / "key.pem"
        self.key.write_text(self.ec2.create_key_pair(
            KeyName="bench")["KeyMaterial"])
        self.key.chmod(0o600)

    def daemon_pids(self):
        return [d.proc.pid for d in self.cloud.daemons.values() if d.proc]

    def qemu_pid(self, iid):
        try:
            return int((self.inst_dir / iid / "qemu.pid").read_text())
        except (OSError, ValueError):
            return 0

    def describe(self, iid):
        return self.ec2.describe_instances(
            InstanceIds=[iid])["Reservations"][0]["Instances"][0]

    def koala(self):
        """One launch: {running, MARKS, ssh (s from the call), load,
        rss_kb, qemu_cpu, daemons_cpu, iid, ip, pid}."""
        t = {"load": os.getloadavg()[0]}
        poll = SshPoll(self.cloud.cluster_ns, self.key)
        d0 = cpu_s(self.daemon_pids())
        t0 = time.monotonic()
        r = self.ec2.run_instances(ImageId=self.ami, MinCount=1, MaxCount=1,
                                   InstanceType=INSTANCE_TYPE,
                                   KeyName="bench")
        iid = r["Instances"][0]["InstanceId"]
        ip, next_describe = None, 0.0
        console = self.inst_dir / iid / "console.log"
        try:
            while time.monotonic() - t0 < TIMEOUT:
                now = time.monotonic()
                if ("running" not in t or not ip) and now >= next_describe:
                    next_describe = now + 0.1
                    i = self.describe(iid)
                    st = i["State"]["Name"]
                    if st in ("terminated", "shutting-down", "stopped"):
                        raise RuntimeError(f"{iid} {st}: "
                                           f"{i.get('StateReason')}")
                    if st == "running" and "running" not in t:
                        t["running"] = time.monotonic() - t0
                    ip = i.get("PrivateIpAddress") or None
                console_marks(console, t, t0)
                if poll.step(ip):
                    t["ssh"] = time.monotonic() - t0
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"{iid}: no ssh in {TIMEOUT} s: {t}")
        finally:
            poll.close()
        pid = self.qemu_pid(iid)
        t.update(rss_kb=rss_kb(pid), qemu_cpu=cpu_s([pid]),
                 daemons_cpu=cpu_s(self.daemon_pids()) - d0, iid=iid, ip=ip,
                 pid=pid, attempts=poll.attempts)
        return t

    def keep_console(self, path, name):
        """With KEEP, a copy of a boot's console in the kept directory."""
        if os.environ.get("KEEP"):
            (self.base / "consoles").mkdir(exist_ok=True)
            shutil.copy(path, self.base / "consoles" / f"{name}.log")

    def terminate(self, iid):
        self.ec2.terminate_instances(InstanceIds=[iid])
        deadline = time.monotonic() + 180
        while (self.inst_dir / iid).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{iid} not terminated")
            time.sleep(0.2)

    def stop_instance(self, iid):
        self.ec2.stop_instances(InstanceIds=[iid])
        deadline = time.monotonic() + 300
        while self.describe(iid)["State"]["Name"] != "stopped" or \
                self.cloud.vms("nc1"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{iid} not stopped")
            time.sleep(0.5)

    def cc_holds(self, mac, ip):
        """Whether the CC's DHCP hosts file still gives ip to mac."""
        for f in (self.cloud.dir / "cc").rglob("dhcp-hosts"):
            if f"{mac},{ip}," in f.read_text().lower():
                return True
        return False

    # ---- the peer ----

    def add_tap(self):
        ns = ["ip", "-n", self.node_ns]
        subprocess.run(ns + ["tuntap", "add", "dev", TAP, "mode", "tap"],
                       check=True)
        self.tap = True
        subprocess.run(ns + ["link", "set", "dev", TAP, "master", "kbr0",
                             "up"], check=True)

    def del_tap(self):
        if self.tap:
            subprocess.run(["ip", "-n", self.node_ns, "link", "del", TAP],
                           check=False)
            self.tap = False

    def bare(self, cmdline, drives, n, ip, iid, nice):
        """One bare boot of the donor's command line: {MARKS, ssh (s from
        QEMU's start), load, rss_kb, qemu_cpu, daemons_cpu}."""
        tmp = Path(tempfile.mkdtemp(prefix="koala-bare-debian-"))
        proc, poll = None, SshPoll(self.cloud.cluster_ns, self.key)
        try:
            argv = bare_argv(cmdline, drives, tmp, n, tap=TAP)
            # Not the stopped instance's name: nothing may take this QEMU
            # for it.
            argv[argv.index("-name") + 1] = f"koala-bare-{n}"
            console = tmp / f"console-{n}.log"
            t = {"load": os.getloadavg()[0]}
            d0 = cpu_s(self.daemon_pids())
            t0 = time.monotonic()
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.node_ns, "nice", "-n",
                 str(nice), *argv], start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=open(tmp / "stderr", "wb"))
            try:
                Path(f"/proc/{proc.pid}/autogroup").write_text(f"{nice}\n")
            except OSError:
                pass  # no autogroup scheduling
            while time.monotonic() - t0 < TIMEOUT:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"bare QEMU exited {proc.returncode}: "
                        f"{(tmp / 'stderr').read_text(errors='replace')}")
                console_marks(console, t, t0)
                if poll.step(ip):
                    t["ssh"] = time.monotonic() - t0
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"bare: no ssh in {TIMEOUT} s: {t}")
            poll.close()
            t.update(rss_kb=rss_kb(proc.pid), qemu_cpu=cpu_s([proc.pid]),
                     daemons_cpu=cpu_s(self.daemon_pids()) - d0,
                     attempts=poll.attempts)
            # The guest took the cloud's answers for the stopped instance's.
            got = poll.run(ip, "cat /var/lib/cloud/data/instance-id")
            if got.stdout.strip() != iid:
                raise RuntimeError(f"bare guest's cloud-init instance id "
                                   f"{got.stdout!r} {got.stderr!r}, not {iid}")
            return t
        finally:
            poll.close()
            if proc is not None:
                proc.kill()
                proc.wait()
                self.keep_console(tmp / f"console-{n}.log", f"bare-{n}")
            shutil.rmtree(tmp, ignore_errors=True)

    def stop(self):
        self.del_tap()
        return self.cloud.stop()


PHASES = ["running", "console", "init-local", "init", "ssh"]
LABELS = {"running": "running", "console": "first console line",
          "init-local": "cloud-init init-local", "init": "cloud-init init",
          "ssh": "ssh accepts"}


def fmt(xs):
    return (f"p50 {pct(xs, 50):6.2f} s   each " +
            " ".join(f"{x:6.2f}" for x in xs))


def main():
    for f in ("vmlinuz", "initrd.img", "root.img"):
        if not (DEBIAN / f).exists():
            print(f"no Debian guest in {DEBIAN}: run tests/images/debian.sh",
                  file=sys.stderr)
            return 2
    load0 = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="koala-bench-launch-debian-"))
    b = Bench(base)
    koala, bare = [], []
    try:
        b.register()
        # Warm-up: the image into the NC's cache; the donor of the peer's
        # command line, MAC and address.
        first = b.koala()
        donor, ip = first["iid"], first["ip"]
        cmdline = Path(f"/proc/{first['pid']}/cmdline").read_bytes() \
            .decode().split("\0")[:-1]
        drives = drive_info(cmdline)
        nice = nice_of(first["pid"])
        accel = next((cmdline[i + 1] for i, a in enumerate(cmdline)
                      if a == "-accel"), "?")
        mac = next(x.split("=", 1)[1] for a in cmdline if "netdev=" in a
                   for x in a.split(",") if x.startswith("mac=")).lower()
        b.stop_instance(donor)
        if not b.cc_holds(mac, ip):
            raise RuntimeError(f"the CC's DHCP hosts no longer give {ip} to "
                               f"{mac} (stopped {donor})")
        b.add_tap()
        for n in range(ROUNDS):
            # K B, B K, K B ...: neither always goes first.
            for who in ("koala", "bare")[::1 if n % 2 == 0 else -1]:
                if who == "koala":
                    t = b.koala()
                    b.keep_console(b.inst_dir / t["iid"] / "console.log",
                                   f"koala-{n}")
                    b.terminate(t["iid"])
                    koala.append(t)
                else:
                    bare.append(b.bare(cmdline, drives, n, ip, donor, nice))
    finally:
        rcs = b.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(base, ignore_errors=True)
    load1 = os.getloadavg()

    def col(rs, k):
        return [r.get(k, float("nan")) for r in rs]

    def row(label, text):
        print(f"  {label:<36} {text}")

    def each(rs, k, f):
        return " ".join(f.format(r[k]) for r in rs)

    print(f"bench/launch (Debian 12, cloud-init): {INSTANCE_TYPE}, accel "
          f"{accel}, guests at nice {nice}; {os.cpu_count()} host cores "
          f"shared with others' work, load average {load0[0]:.2f} "
          f"{load0[1]:.2f} {load0[2]:.2f} before, {load1[0]:.2f} "
          f"{load1[1]:.2f} {load1[2]:.2f} after: figures taken under "
          "others' load are noisy")
    print("  first launch (image download into the NC's cache): " +
          ", ".join(f"{k} {first[k]:.2f} s" for k in PHASES if k in first))
    print(f"{ROUNDS} launches each, alternating (cached image), seconds "
          "from RunInstances (Koala) or QEMU's start (bare):")
    for k in PHASES:
        for name, rs in (("Koala", koala), ("bare ", bare)):
            if k in rs[0]:
                row(f"{name} -> {LABELS[k]}", fmt(col(rs, k)))
    row("ratio Koala/bare (ssh, p50)",
        f"{pct(col(koala, 'ssh'), 50) / pct(col(bare, 'ssh'), 50):.2f}"
        "   each round " + " ".join(f"{k['ssh'] / p['ssh']:.2f}"
                                    for k, p in zip(koala, bare)))
    row("Koala - bare (p50)", ", ".join(
        f"{LABELS[k]} {pct(col(koala, k), 50) - pct(col(bare, k), 50):+.2f} s"
        for k in PHASES[1:]))
    row("load average (1 min) at each start",
        f"Koala {each(koala, 'load', '{:.2f}')}   "
        f"bare {each(bare, 'load', '{:.2f}')}")
    row("QEMU CPU s until ssh", f"Koala {each(koala, 'qemu_cpu', '{:.1f}')}"
        f"   bare {each(bare, 'qemu_cpu', '{:.1f}')}")
    row("daemons' CPU s meanwhile",
        f"Koala {each(koala, 'daemons_cpu', '{:.2f}')}   "
        f"bare {each(bare, 'daemons_cpu', '{:.2f}')}  (clc, walrus, cc, nc1)")
    row("ssh attempts until one succeeded",
        f"Koala {each(koala, 'attempts', '{}')}   "
        f"bare {each(bare, 'attempts', '{}')}")
    print("memory: QEMU RSS when ssh first succeeded: Koala p50 "
          f"{pct(col(koala, 'rss_kb'), 50) / 1024:.0f} MiB (" +
          " ".join(f"{x / 1024:.0f}" for x in col(koala, 'rss_kb')) +
          f"), bare p50 {pct(col(bare, 'rss_kb'), 50) / 1024:.0f} MiB (" +
          " ".join(f"{x / 1024:.0f}" for x in col(bare, 'rss_kb')) + ")")
    print(f"bare: the stopped {donor}'s QEMU command line, MAC {mac} and "
          f"address {ip} on a tap on the node's bridge; the cloud's DHCP "
          "and metadata answered it")
    if os.environ.get("KEEP"):
        print(f"kept {base}")
    if any(rc not in (0, None) for rc in rcs.values()):
        print(f"daemons exited with {rcs}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
