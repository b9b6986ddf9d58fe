"""bench/ebs/guest.py: see guest.sh.  One koala-nc in a network namespace
of its own, one busybox guest (tests/images), and a qemu-storage-daemon
serving a volume over NBD with TLS on a unix socket (the stand-in for
koala-sc of tests/integration/test_nc_volumes.py); everything is driven
over SOAP as the CC drives the node, and measured from the host (attach)
or inside the guest (I/O, timed with /proc/uptime)."""
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conftest import PKI  # noqa: E402
from test_nc import IMAGES, ImageServer  # noqa: E402
from test_nc_volumes import (Storage, VolNet, Vnode, guest_ip,  # noqa: E402
                             new_vol, run_in)

ROUNDS = int(os.environ.get("ROUNDS", "5"))
VOL_MB = 256
TYPE = {"name": "m1.small", "cores": 1, "memoryMb": 256, "diskGb": 1}


def timed(net, ip, cmd, timeout=300):
    """Seconds the guest took for cmd (its clock, 10 ms resolution)."""
    rc, out = run_in(net, ip, f"""
        s=$(cut -d' ' -f1 /proc/uptime)
        {cmd}
        e=$(cut -d' ' -f1 /proc/uptime)
        echo "T $s $e" """, timeout)
    m = re.search(r"T (\S+) (\S+)", out)
    assert rc == 0 and m, out
    return float(m.group(2)) - float(m.group(1))


def qd8(dev, write, mb_each):
    """Eight dd processes at once, 1 MiB requests, O_DIRECT."""
    io = (f"if=/dev/zero of=/dev/{dev} oflag=direct seek" if write else
          f"if=/dev/{dev} of=/dev/null iflag=direct skip")
    return " ".join(f"dd {io}={k * mb_each} bs=1048576 count={mb_each} "
                    f"2>/dev/null &" for k in range(8)) + " wait"


def io_figures(net, ip, dev, n4k=2000, mb_each=8):
    f = {}
    # Writes first, so that the reads read written blocks.
    t = [timed(net, ip, qd8(dev, True, mb_each)) for _ in range(ROUNDS)]
    f["1 MiB QD8 write MB/s"] = 8 * mb_each * 1.048576 / statistics.median(t)
    t = [timed(net, ip, qd8(dev, False, mb_each)) for _ in range(ROUNDS)]
    f["1 MiB QD8 read MB/s"] = 8 * mb_each * 1.048576 / statistics.median(t)
    t = [timed(net, ip, f"dd if=/dev/zero of=/dev/{dev} bs=4096 "
               f"count={n4k} oflag=direct 2>/dev/null")
         for _ in range(ROUNDS)]
    f["4 KiB QD1 write us"] = statistics.median(t) / n4k * 1e6
    t = [timed(net, ip, f"dd if=/dev/{dev} of=/dev/null bs=4096 "
               f"count={n4k} iflag=direct 2>/dev/null")
         for _ in range(ROUNDS)]
    f["4 KiB QD1 read us"] = statistics.median(t) / n4k * 1e6
    return f


def console_count(node, iid, needle):
    p = node.inst_dir(iid) / "console.log"
    return p.read_bytes().count(needle.encode())


def wait_console(node, iid, needle, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if console_count(node, iid, needle) >= count:
            return time.monotonic()
        time.sleep(0.002)
    raise AssertionError(f"{needle} x{count} never came")


def main():
    tmp = Path(tempfile.mkdtemp(prefix="koala-bench-ebs-guest-"))
    pki = PKI.create(tmp)
    pki.issue("koala-cc-test")
    net = VolNet(tmp)
    img = ImageServer(IMAGES)
    node = Vnode(tmp / "node", pki, name="bench", netns=net.name,
                 bridge="kbr0", max_cores=2, max_memory_mb=1024).start()
    storage = Storage(tmp / "sc", pki)
    try:
        iid = node.run(img, itype=TYPE, net=net.host())["instanceId"]
        ip = guest_ip(node, iid)
        hv = node.describe(iid)["hypervisor"]
        vol = new_vol()
        storage.volume(vol, VOL_MB)
        ex = storage.serve(vol, "unix")

        # AttachVolume -> the disk in the guest, seen by a guest loop that
        # polls /sys/block every 5 ms and says so on the console (read
        # here from the console file directly).
        att, seen, gone = [], [], []
        for k in range(ROUNDS):
            run_in(net, ip, """
                (while [ ! -e /sys/block/sda ]; do usleep 5000; done
                 echo KOALA-BENCH-SEEN > /dev/console
                 while [ -e /sys/block/sda ]; do usleep 5000; done
                 echo KOALA-BENCH-GONE > /dev/console) >/dev/null 2>&1 &
                """, 10)
            t0 = time.monotonic()
            assert node.attach(iid, vol, "/dev/sdf", ex)["state"] == \
                "attached"
            att.append(time.monotonic() - t0)
            seen.append(wait_console(node, iid, "KOALA-BENCH-SEEN", k + 1) -
                        t0)
            if k < ROUNDS - 1:
                t0 = time.monotonic()
                assert node.detach(iid, vol)["state"] == "detached"
                gone.append(wait_console(node, iid, "KOALA-BENCH-GONE",
                                         k + 1) - t0)
        ms = lambda v: f"{statistics.median(v) * 1000:.0f} ms"  # noqa: E731
        print(f"\nguest: busybox, {hv}, 1 vCPU; volume {VOL_MB} MiB over NBD "
              f"with TLS on a unix socket (qemu-storage-daemon, page cache); "
              f"local: the instance's ephemeral qcow2 (virtio-blk, cache "
              f"writeback); medians of {ROUNDS}")
        print(f"ncAttachVolume reply               {ms(att)}")
        print(f"AttachVolume -> disk in the guest  {ms(seen)}")
        print(f"ncDetachVolume -> disk gone        {ms(gone)}")
        local = io_figures(net, ip, "vdb")
        ebs = io_figures(net, ip, "sda")
        print(f"{'':24} {'volume':>10} {'local':>10} {'ratio':>7}")
        for k in local:
            r = ebs[k] / local[k]
            print(f"{k:24} {ebs[k]:10.1f} {local[k]:10.1f} {r:7.2f}")
    finally:
        for iid in node.started:
            try:
                node.call("ncTerminateInstance", instanceId=iid)
            except Exception:  # noqa: BLE001
                pass
        node.cleanup()
        storage.close()
        net.close()
        img.close()


if __name__ == "__main__":
    main()
