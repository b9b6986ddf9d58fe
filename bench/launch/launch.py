"""bench/launch: how fast `RunInstances` gives a booted guest, and what an
instance costs in memory, against bare QEMU booting the same guest.

A whole Koala cloud (Walrus, CLC, CC, one NC; the harness of the integration
tests, tests/integration/cloud.py) runs on this host with the test guest of
tests/images registered as an EMI (kernel + ramdisk + root disk).  Measured:

  single     LAUNCHES launches one after another (each terminated after):
             RunInstances -> "running" in DescribeInstances (polled every
             50 ms), -> the guest's first console line after mounting its
             disks (KOALA-GUEST-DISKS, before networking), -> the guest up
             on the cluster LAN with its DHCP lease (KOALA-GUEST-READY).
  burst      CONCURRENT instances in one RunInstances call: the same three
             times, per instance, from the call.
  memory     QEMU RSS per instance (the burst's guests, after booting), and
             the daemons' RSS.
  bare       the peer: the very QEMU command line the NC ran for an
             instance (taken from /proc), minus the things only a cloud
             needs (QMP socket, daemonizing, the tap), on fresh qcow2
             overlays made beforehand: QEMU start -> KOALA-GUEST-DISKS.
             Once after another LAUNCHES times, and CONCURRENT at once.

The console markers are read from the NC's console log files (what
GetConsoleOutput returns), polled every 20 ms (100 ms in a burst), so that
polling the API does not load the two cores the guests boot on;
DescribeInstances is polled every 50 ms (250 ms in a burst).  The figures are the wall-clock
time from the client's call; p50 and p95 over the runs.

The Debian 12 cloud-init guest (RunInstances -> ssh accepts, against bare
QEMU on the same cluster network) is bench/launch/debian.py.

Environment: KOALA_BUILD_DIR (default build), KOALA_IMAGES (build/images),
LAUNCHES (10), CONCURRENT (20), HYPERVISOR (auto: KVM when the NC's probe
boots a guest with it, else TCG), KEEP=1 keeps the cloud's directory (logs).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from cloud import Cloud  # noqa: E402

LAUNCHES = int(os.environ.get("LAUNCHES", "10"))
CONCURRENT = int(os.environ.get("CONCURRENT", "20"))
HYPERVISOR = os.environ.get("HYPERVISOR", "auto")
DISKS = "KOALA-GUEST-DISKS"
READY = "KOALA-GUEST-READY"


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def fmt(xs):
    return (f"p50 {pct(xs, 50):6.2f} s  p95 {pct(xs, 95):6.2f} s  "
            f"max {max(xs, default=float('nan')):6.2f} s  (n={len(xs)})")


def rss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Bench:
    def __init__(self, base):
        self.cloud = Cloud(base, n_nodes=1, node_cores=max(CONCURRENT, 4),
                           node_memory_mb=max(CONCURRENT, 4) * 256,
                           hypervisor=HYPERVISOR).start()
        self.ami, _, _ = self.cloud.upload_images()
        self.ec2 = self.cloud.ec2()
        self.inst_dir = self.cloud.dir / "nc1" / "instances"

    def console(self, iid):
        try:
            return (self.inst_dir / iid / "console.log").read_text(
                errors="replace")
        except OSError:
            return ""

    def qemu_pid(self, iid):
        try:
            return int((self.inst_dir / iid / "qemu.pid").read_text())
        except (OSError, ValueError):
            return 0

    def launch(self, count, timeout=600):
        """RunInstances for count t1.micro; returns ({iid: times}, ids)."""
        t0 = time.monotonic()
        r = self.ec2.run_instances(ImageId=self.ami, MinCount=count,
                                   MaxCount=count, InstanceType="t1.micro")
        ids = [i["InstanceId"] for i in r["Instances"]]
        times = {iid: {} for iid in ids}
        # The poller shares the host's cores with what it measures: a burst
        # is polled less often (boto3 calls cost ~30 ms of CPU each).
        describe_every = 0.05 if count == 1 else 0.25
        console_every = 0.02 if count == 1 else 0.1
        next_describe = 0.0
        while time.monotonic() - t0 < timeout:
            now = time.monotonic()
            if now >= next_describe:
                next_describe = now + describe_every
                out = self.ec2.describe_instances(InstanceIds=ids)
                for res in out["Reservations"]:
                    for i in res["Instances"]:
                        st = i["State"]["Name"]
                        t = times[i["InstanceId"]]
                        if st == "running" and "running" not in t:
                            t["running"] = time.monotonic() - t0
                        if st in ("terminated", "shutting-down"):
                            raise RuntimeError(
                                f"{i['InstanceId']} {st}: "
                                f"{i.get('StateReason')}")
            for iid in ids:
                t = times[iid]
                if "ready" in t:
                    continue
                text = self.console(iid)
                if DISKS in text and "disks" not in t:
                    t["disks"] = time.monotonic() - t0
                if READY in text:
                    t["ready"] = time.monotonic() - t0
            if all(len(t) == 3 for t in times.values()):
                return times, ids
            time.sleep(console_every)
        raise RuntimeError(f"timed out: {times}")

    def terminate(self, ids):
        self.ec2.terminate_instances(InstanceIds=ids)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = [iid for iid in ids if (self.inst_dir / iid).exists()]
            if not left:
                return
            time.sleep(0.2)
        raise RuntimeError(f"not terminated: {left}")

    def stop(self):
        return self.cloud.stop()


FLAGS = {"-nodefaults", "-no-user-config", "-no-shutdown", "-daemonize", "-S",
         "-enable-kvm"}


def drive_info(cmdline):
    """qemu-img info of each -drive file of a live instance: {path: info}
    (the files go with the instance; their backing files stay cached)."""
    out = {}
    for i, a in enumerate(cmdline[:-1]):
        if a == "-drive":
            kv = dict(x.split("=", 1) for x in cmdline[i + 1].split(",")
                      if "=" in x)
            out[kv["file"]] = json.loads(subprocess.run(
                ["qemu-img", "info", "-U", "--output=json", kv["file"]],
                capture_output=True, text=True, check=True).stdout)
    return out


def overlay(j, dst):
    """A fresh qcow2 like the NC's: on the same backing file, or empty, of
    the same size (the NC makes a root disk the type's size where the image
    is smaller)."""
    if j.get("full-backing-filename"):
        cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F",
               j.get("backing-filename-format", "raw"), "-b",
               j["full-backing-filename"], str(dst), str(j["virtual-size"])]
    else:
        cmd = ["qemu-img", "create", "-q", "-f", "qcow2", str(dst),
               str(j["virtual-size"])]
    subprocess.run(cmd, check=True)


def bare_argv(cmdline, drives, tmp, n, tap=None):
    """The NC's QEMU command line for one bare run: own overlays and console
    file, no QMP, in the foreground; no NIC, or with tap the NC's NIC (its
    MAC) on that tap."""
    opts = []  # (option, value or None)
    i = 1
    while i < len(cmdline):
        a = cmdline[i]
        if a in FLAGS:
            opts.append((a, None))
            i += 1
        else:
            opts.append((a, cmdline[i + 1]))
            i += 2
    out = [cmdline[0]]
    for a, v in opts:
        # -S: the NC starts QEMU paused and resumes it over QMP.
        if a in ("-daemonize", "-pidfile", "-qmp", "-S"):
            continue
        if a == "-netdev" or (a == "-device" and "netdev=" in v):
            if tap is None:
                continue
            if a == "-netdev":
                v = ",".join(f"ifname={tap}" if x.startswith("ifname=")
                             else x for x in v.split(","))
        if a in ("-chardev", "-drive"):
            head, *rest = v.split(",")
            kv = dict(x.split("=", 1) for x in rest if "=" in x)
            flags = [x for x in rest if "=" not in x]
            if head.startswith("file=") or a == "-drive":
                kv = dict(x.split("=", 1) for x in v.split(",") if "=" in x)
                head, flags = None, [x for x in v.split(",") if "=" not in x]
            if a == "-chardev":
                kv["path"] = str(tmp / f"console-{n}.log")
            else:
                dst = tmp / f"{Path(kv['file']).stem}-{n}.qcow2"
                overlay(drives[kv["file"]], dst)
                kv["file"] = str(dst)
            v = ",".join(([head] if head else []) + flags +
                         [f"{k}={x}" for k, x in kv.items()])
        out += [a] if v is None else [a, v]
    return out


def bare_runs(cmdline, drives, count, parallel):
    """Boots count bare QEMUs (all at once when parallel) -> seconds to the
    DISKS marker each."""
    tmp = Path(tempfile.mkdtemp(prefix="koala-bare-"))
    try:
        argvs = [bare_argv(cmdline, drives, tmp, n) for n in range(count)]
        times = []

        def run(group):
            procs, t0 = [], time.monotonic()
            for n, argv in group:
                procs.append((n, subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)))
            done = {}
            while len(done) < len(procs) and time.monotonic() - t0 < 600:
                for n, p in procs:
                    if n in done:
                        continue
                    f = tmp / f"console-{n}.log"
                    if f.exists() and DISKS in f.read_text(errors="replace"):
                        done[n] = time.monotonic() - t0
                time.sleep(0.02)
            for _, p in procs:
                p.kill()
                p.wait()
            return list(done.values())
        if parallel:
            times = run(list(enumerate(argvs)))
        else:
            for n, argv in enumerate(argvs):
                times += run([(n, argv)])
        return times
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    base = Path(tempfile.mkdtemp(prefix="koala-bench-launch-"))
    b = Bench(base)
    try:
        # Warm-up: the first launch downloads the images into the NC's cache.
        t, ids = b.launch(1)
        first = t[ids[0]]
        cmdline = Path(f"/proc/{b.qemu_pid(ids[0])}/cmdline").read_bytes() \
            .decode().split("\0")[:-1]
        drives = drive_info(cmdline)
        accel = next((cmdline[i + 1] for i, a in enumerate(cmdline)
                      if a == "-accel"), "?")
        b.terminate(ids)
        single = {"running": [], "disks": [], "ready": []}
        for _ in range(LAUNCHES):
            t, ids = b.launch(1)
            for k in single:
                single[k].append(t[ids[0]][k])
            b.terminate(ids)
        t, ids = b.launch(CONCURRENT)
        burst = {k: [t[i][k] for i in ids] for k in ("running", "disks",
                                                      "ready")}
        time.sleep(2)
        qemu_rss = [rss_kb(b.qemu_pid(i)) for i in ids]
        daemons = {name: rss_kb(d.proc.pid) for name, d in
                   b.cloud.daemons.items() if d.proc}
        b.terminate(ids)
    finally:
        rcs = b.stop()
    try:
        bare_single = bare_runs(cmdline, drives, LAUNCHES, parallel=False)
        bare_burst = bare_runs(cmdline, drives, CONCURRENT, parallel=True)
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(base, ignore_errors=True)

    print(f"bench/launch: t1.micro (1 vCPU, 128 MiB), accel {accel}, "
          f"{os.cpu_count()} host cores")
    print(f"  first launch (image download into the cache): running "
          f"{first['running']:.2f} s, disks {first['disks']:.2f} s, "
          f"ready {first['ready']:.2f} s")
    print(f"single launch, {LAUNCHES} in a row (cached image):")
    print(f"  RunInstances -> running      {fmt(single['running'])}")
    print(f"  RunInstances -> guest disks  {fmt(single['disks'])}")
    print(f"  RunInstances -> guest ready  {fmt(single['ready'])}  "
          "(DHCP lease on the cluster LAN)")
    print(f"  bare QEMU    -> guest disks  {fmt(bare_single)}")
    print(f"  ratio Koala/bare (disks, p50) "
          f"{pct(single['disks'], 50) / pct(bare_single, 50):.2f}")
    print(f"{CONCURRENT} at once (one RunInstances call):")
    print(f"  RunInstances -> running      {fmt(burst['running'])}")
    print(f"  RunInstances -> guest disks  {fmt(burst['disks'])}")
    print(f"  RunInstances -> guest ready  {fmt(burst['ready'])}")
    print(f"  bare QEMU    -> guest disks  {fmt(bare_burst)}")
    print(f"  ratio Koala/bare (disks, p50) "
          f"{pct(burst['disks'], 50) / pct(bare_burst, 50):.2f}")
    print(f"memory: QEMU RSS per instance p50 "
          f"{statistics.median(qemu_rss) / 1024:.0f} MiB, max "
          f"{max(qemu_rss) / 1024:.0f} MiB; daemons "
          + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in daemons.items()))
    if any(rc not in (0, None) for rc in rcs.values()):
        print(f"daemons exited with {rcs}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
