"""bench/hostile/hostile.py: the worst request it can build under each of
Koala's body and header limits, sent once each (a few times when cheap)
to the release daemons, with the server CPU each costs.  See run.sh.

Limits are read from the source (src/walrus/walrus.h, src/clc/clc.h,
src/common/soap.h, the daemons' max_header_bytes default), so the
requests follow them when they change.  Server CPU is the daemon's
threads' run time (/proc/PID/task/*/schedstat, nanoseconds) before and
after the exchange; wall is the client's.  A request that gets no reply
within HOSTILE_TIMEOUT seconds (default 30) is shown as ">" its CPU so far,
and its daemon is restarted (SIGKILL) before the next.
HOSTILE_ONLY=s3,ec2,clc,ccnc,nginx runs only those parts.
"""
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("KOALA_BUILD_DIR", str(ROOT / "build"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import fuzzlib  # noqa: E402
import fuzzsoap  # noqa: E402
from cloud import REGION, Cloud  # noqa: E402
from conftest import PKI, Netns  # noqa: E402
from fuzzlib import http_request, quote_bytes, sigv4_headers  # noqa: E402
from soapclient import client_context  # noqa: E402

TARGET_MS = 100.0
TIMEOUT = float(os.environ.get("HOSTILE_TIMEOUT", "30"))
REPEATS = int(os.environ.get("HOSTILE_REPEATS", "3"))


# ---- limits, from the source ----------------------------------------------------

def define(path, name):
    text = (ROOT / path).read_text()
    m = re.search(rf"#define\s+{name}\s+(.+?)(?:/\*.*)?$", text, re.M)
    expr = re.sub(r"(\d+)u?ll?|(\d+)u", lambda x: x.group(1) or x.group(2),
                  m.group(1).strip())
    return int(eval(expr, {}))


S3_XML = define("src/walrus/walrus.h", "WALRUS_MAX_XML_BODY")
S3_PARTS = define("src/walrus/walrus.h", "WALRUS_MAX_PARTS")
S3_KEY = define("src/walrus/walrus.h", "WALRUS_MAX_KEY")
S3_GRANTS = define("src/walrus/walrus.h", "ACL_MAX_GRANTS")
EC2_BODY = define("src/clc/clc.h", "EC2_MAX_BODY")
USER_DATA = define("src/clc/clc.h", "CLC_MAX_USER_DATA")
SOAP_MSG = define("src/common/soap.h", "SOAP_MAX_MESSAGE")
CC_MSG = define("src/cc/cc.h", "CC_MAX_BODY")
HEADERS = int(re.search(r'"max_header_bytes",\s*(\d+)',
                        (ROOT / "src/walrus/main.c").read_text()).group(1))


# ---- measuring ------------------------------------------------------------------

def cpu_ns(pid):
    """Run time of all the process' threads (ns)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                total += int(Path(f"/proc/{pid}/task/{t}/schedstat")
                             .read_text().split()[0])
            except (OSError, ValueError):
                pass
    except OSError:
        return None
    return total


class Row:
    def __init__(self, what, size, cpu_ms, wall_ms, status, note=""):
        self.what, self.size, self.cpu_ms = what, size, cpu_ms
        self.wall_ms, self.status, self.note = wall_ms, status, note


ROWS = []


def measure(what, daemon, port, data, tls=None, restart=None, pids=None,
            repeats=None):
    """Sends data (bytes, or a function giving fresh bytes) and records a
    row: median server CPU and wall of the repeats."""
    repeats = repeats or REPEATS
    cpus, walls, status, note = [], [], None, ""
    for k in range(repeats):
        body = data() if callable(data) else data
        ps = pids() if pids else [daemon.proc.pid]
        c0 = sum(cpu_ns(p) or 0 for p in ps)
        ex = fuzzlib.exchange(port, body, tls=tls, timeout=TIMEOUT)
        c1 = sum(cpu_ns(p) or 0 for p in ps)
        cpu = (c1 - c0) / 1e6
        cpus.append(cpu)
        walls.append(ex.wall * 1000)
        if ex.reply is None:
            status = "none"
            note = (ex.error or "")[:40]
            if daemon is not None and daemon.proc.poll() is not None:
                note = f"daemon DIED (exit {daemon.proc.returncode})"
            elif ex.wall >= TIMEOUT - 0.5:
                note = f"> {TIMEOUT:g} s, still running"
                cpus[-1] = -cpu  # a lower bound
            if restart:
                restart()
            break
        status = ex.reply.status
        m = re.search(rb"<(?:\w+:)?Code>([^<]{0,40})<", ex.reply.body)
        note = m.group(1).decode() if m else ""
        if daemon is not None and daemon.proc.poll() is not None:
            note = f"daemon DIED (exit {daemon.proc.returncode})"
            if restart:
                restart()
            break
        if cpu > 1000:
            break   # one is enough
    size = len(data() if callable(data) else data)
    cpus_sorted = sorted(abs(c) for c in cpus)
    med = cpus_sorted[len(cpus_sorted) // 2]
    if any(c < 0 for c in cpus):
        med = -max(abs(c) for c in cpus)
    ROWS.append(Row(what, size, med, sorted(walls)[len(walls) // 2],
                    status, note))
    r = ROWS[-1]
    print(f"  {what:<58} {fmt_size(size):>8} {fmt_cpu(r.cpu_ms):>10} "
          f"{r.wall_ms:9.1f} {str(status):>6}  {note}", flush=True)


def fmt_size(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def fmt_cpu(ms):
    return f"> {-ms:.0f}" if ms < 0 else f"{ms:.1f}"


# ---- request builders -----------------------------------------------------------

def attrs_doc(root, limit, inner=""):
    """root with as many attributes as fit under limit bytes."""
    out = [f"<{root}"]
    size = len(root) * 2 + 5 + len(inner)
    i = 0
    while True:
        a = f' a{i}="{i}"'
        if size + len(a) > limit:
            break
        out.append(a)
        size += len(a)
        i += 1
    return ("".join(out) + f">{inner}</{root}>").encode()


def deep_doc(root, limit):
    d = (limit - 2 * len(root) - 5) // 7
    return (f"<{root}>" + "<a>" * d + "</a>" * d + f"</{root}>").encode()


def text_doc(root, limit):
    return (f"<{root}>" + "x" * (limit - 2 * len(root) - 5) +
            f"</{root}>").encode()


def elems_doc(root, limit, el="<a/>"):
    n = (limit - 2 * len(root) - 5) // len(el)
    return (f"<{root}>" + el * n + f"</{root}>").encode()


class S3:
    def __init__(self, port, creds):
        self.port, self.creds = port, creds

    def req(self, method, target, body=b"", headers=()):
        host = f"127.0.0.1:{self.port}"
        h = sigv4_headers(self.creds, "s3", "us-east-1", method,
                          f"http://{host}{target}", list(headers), body,
                          s3=True)
        return http_request(method, target, [("Host", host)] + h + [
            ("Content-Length", str(len(body))), ("Connection", "close")],
            body)


def ec2_req(port, creds, params, limit=None):
    host = f"127.0.0.1:{port}"
    body = "&".join(f"{quote_bytes(k)}={quote_bytes(v)}"
                    for k, v in params).encode()
    h = sigv4_headers(creds, "ec2", REGION, "POST", f"http://{host}/",
                      [("Content-Type", "application/x-www-form-urlencoded; "
                        "charset=utf-8")], body)
    return http_request("POST", "/", [("Host", host)] + h + [
        ("Content-Length", str(len(body))), ("Connection", "close")], body)


def fill(head, key_fmt, value, limit):
    """head plus key_fmt.format(j)=value parameters up to limit bytes of
    form body."""
    out = list(head)
    size = sum(len(quote_bytes(k)) + len(quote_bytes(v)) + 2 for k, v in head)
    j = 1
    v = quote_bytes(value)
    while True:
        k = key_fmt.format(j)
        size += len(k) + len(v) + 2
        if size > limit:
            return out
        out.append((k, value))
        j += 1


# ---- the daemons ----------------------------------------------------------------

def restarter(d):
    def restart():
        d.stop(signal.SIGKILL)
        d.start()
        time.sleep(0.3)
    return restart


def bench_s3(cloud):
    w = cloud.daemons["walrus"]
    port = cloud.ports["walrus"]
    s3c = cloud.s3()
    s3c.create_bucket(Bucket="hbench")
    s3c.put_object(Bucket="hbench", Key="o", Body=b"x")
    s3 = S3(port, (cloud.key, cloud.secret))
    R = restarter(w)
    print(f"Walrus (S3): XML bodies up to {fmt_size(S3_XML)}, "
          f"{S3_PARTS} parts, keys of {S3_KEY} bytes, headers "
          f"{fmt_size(HEADERS)}")
    two = os.urandom(S3_XML)
    measure("baseline: PUT object, same size as the XML limit", w, port,
            s3.req("PUT", "/hbench/plain", two))
    measure("baseline: GET that object", w, port,
            s3.req("GET", "/hbench/plain"))
    measure("PUT ?acl, root with max attributes", w, port,
            s3.req("PUT", "/hbench/o?acl=", attrs_doc("AccessControlPolicy",
                                                   S3_XML)), restart=R)
    measure("PUT ?acl, deepest nesting", w, port,
            s3.req("PUT", "/hbench/o?acl=", deep_doc("AccessControlPolicy",
                                                  S3_XML)), restart=R)
    measure("PUT ?acl, one text node of max length", w, port,
            s3.req("PUT", "/hbench/o?acl=", text_doc("AccessControlPolicy",
                                                  S3_XML)), restart=R)
    measure("PUT ?acl, max empty elements", w, port,
            s3.req("PUT", "/hbench/o?acl=", elems_doc("AccessControlPolicy",
                                                   S3_XML)), restart=R)
    grant = ('<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
             'instance" xsi:type="CanonicalUser"><ID>{}</ID></Grantee>'
             '<Permission>READ</Permission></Grant>')
    acl = ("<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList>"
           + "".join(grant.format("i" * 64) for _ in range(S3_GRANTS)) +
           "</AccessControlList></AccessControlPolicy>").encode()
    measure(f"PUT ?acl, {S3_GRANTS} grants (the most allowed)", w, port,
            s3.req("PUT", "/hbench/o?acl=", acl), restart=R)
    uid = s3c.create_multipart_upload(Bucket="hbench", Key="m")["UploadId"]
    q = f"/hbench/m?uploadId={quote_bytes(uid)}"
    parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>\"{'0' * 32}"
                    "\"</ETag></Part>" for n in range(1, S3_PARTS + 1))
    measure(f"CompleteMultipartUpload, {S3_PARTS} parts", w, port,
            s3.req("POST", q, f"<CompleteMultipartUpload>{parts}"
                   "</CompleteMultipartUpload>".encode()), restart=R)
    measure("CompleteMultipartUpload, parts up to the limit", w, port,
            s3.req("POST", q, elems_doc(
                "CompleteMultipartUpload", S3_XML,
                "<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>")),
            restart=R)
    measure("CompleteMultipartUpload, max attributes", w, port,
            s3.req("POST", q, attrs_doc("CompleteMultipartUpload", S3_XML)),
            restart=R)

    def delete(doc):
        md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
        return s3.req("POST", "/hbench?delete=", doc, [("Content-MD5", md5)])
    keys = "".join(f"<Object><Key>{'k' * (S3_KEY - 5)}{n:05d}</Key></Object>"
                   for n in range(1000))
    measure("Delete, 1000 keys of max length", w, port,
            delete(f"<Delete><Quiet>true</Quiet>{keys}</Delete>".encode()),
            restart=R)
    measure("Delete, keys up to the limit", w, port, delete(elems_doc(
        "Delete", S3_XML, "<Object><Key>k</Key></Object>")), restart=R)
    measure("Delete, max attributes", w, port,
            delete(attrs_doc("Delete", S3_XML)), restart=R)
    host = f"127.0.0.1:{port}"
    n = (HEADERS - 200) // 12
    measure("headers: just under the limit, many small", w, port,
            http_request("GET", "/hbench/o", [("Host", host)] +
                         [(f"X-H{j:04d}", "v") for j in range(n)] +
                         [("Connection", "close")]), restart=R)
    measure("headers: just under the limit, one big", w, port,
            http_request("GET", "/hbench/o", [("Host", host),
                                          ("X-Big", "v" * (HEADERS - 100)),
                                          ("Connection", "close")]),
            restart=R)
    ranges = ",".join(f"{j}-{j}" for j in range((HEADERS - 2000) // 12))
    measure("GET with a Range of many ranges", w, port,
            s3.req("GET", "/hbench/plain", headers=[("Range", "bytes=" + ranges)]),
            restart=R)
    measure("long URL: max key + long query", w, port, s3.req(
        "GET", "/hbench/" + "k" * S3_KEY + "?list-type=2&prefix=" +
        "p" * (HEADERS // 2)), restart=R)
    measure("ListObjectsV2, max prefix/delimiter", w, port, s3.req(
        "GET", "/hbench?list-type=2&delimiter=" + "d" * 1024 + "&prefix=" +
        "p" * 1024 + "&max-keys=1000"), restart=R)
    measure("PUT with x-amz-copy-source key of max+1", w, port, http_request(
        "PUT", "/hbench/x", [("Host", host),
                         ("x-amz-copy-source", "hbench/" + "k" * (S3_KEY + 1)),
                         ("Content-Length", "0"), ("Connection", "close")]),
        restart=R, repeats=1)


def bench_ec2(cloud):
    d = cloud.daemons["clc"]
    port = cloud.ports["clc"]
    creds = (cloud.key, cloud.secret)
    R = restarter(d)
    lim = EC2_BODY - 64
    print(f"CLC (EC2 Query API): bodies up to {fmt_size(EC2_BODY)}")
    measure("baseline: DescribeRegions", d, port,
            lambda: ec2_req(port, creds, [("Action", "DescribeRegions")]))
    for what, head, fmt_, v in [
        ("DescribeInstances, max InstanceId.N",
         [("Action", "DescribeInstances")], "InstanceId.{}", "i-1"),
        ("DescribeInstances, max Filter.N (tag filters)",
         [("Action", "DescribeInstances")], "Filter.{}.Name", "tag:k"),
        ("DescribeTags, max Filter.1.Value.N",
         [("Action", "DescribeTags"), ("Filter.1.Name", "key")],
         "Filter.1.Value.{}", "v"),
        ("DescribeImages, max ImageId.N",
         [("Action", "DescribeImages")], "ImageId.{}", "ami-1"),
        ("DescribeKeyPairs, max KeyName.N",
         [("Action", "DescribeKeyPairs")], "KeyName.{}", "k"),
        ("DescribeRegions, max unknown parameters",
         [("Action", "DescribeRegions")], "X{}", "x"),
        ("CreateTags, max Tag.N",
         [("Action", "CreateTags"), ("ResourceId.1", "ami-1")],
         "Tag.{}.Key", "k"),
    ]:
        p = fill(head, fmt_, v, lim)
        measure(f"{what} ({len(p) - len(head)})", d, port,
                lambda p=p: ec2_req(port, creds, p), restart=R)
    measure("RunInstances, UserData near the body limit", d, port,
            lambda: ec2_req(port, creds, [
                ("Action", "RunInstances"), ("ImageId", "ami-1"),
                ("MinCount", "1"), ("MaxCount", "1"),
                ("UserData", base64.b64encode(os.urandom(lim // 2)).decode())]),
            restart=R)
    measure("ImportKeyPair, key material of the body limit", d, port,
            lambda: ec2_req(port, creds, [
                ("Action", "ImportKeyPair"), ("KeyName", "huge"),
                ("PublicKeyMaterial", base64.b64encode(
                    b"ssh-rsa " + base64.b64encode(os.urandom(lim // 2)))
                 .decode())]), restart=R)
    measure("DescribeInstances, NextToken of max length", d, port,
            lambda: ec2_req(port, creds, [
                ("Action", "DescribeInstances"),
                ("NextToken", "A" * (lim - 100))]), restart=R)


def bench_soap(name, d, port, ctx, ns, op, idel, restart, limit=SOAP_MSG):
    print(f"{name} (SOAP over mutual TLS): messages up to "
          f"{fmt_size(limit)}")
    lim = limit - 300

    def env(inner):
        return fuzzsoap.post(port, fuzzsoap.envelope(inner))
    measure(f"{name}: baseline {op}", d, port,
            env(f'<{op} xmlns="{ns}"/>'), tls=ctx)
    measure(f"{name}: {op}, max attributes", d, port, env(
        attrs_doc(f'{op} xmlns="{ns}"', lim).decode().replace(
            f'</{op} xmlns="{ns}">', f"</{op}>")), tls=ctx, restart=restart,
        repeats=1)
    measure(f"{name}: {op}, 100 000 attributes", d, port, env(
        attrs_doc(f'{op} xmlns="{ns}"', 1_300_000).decode().replace(
            f'</{op} xmlns="{ns}">', f"</{op}>")), tls=ctx, restart=restart,
        repeats=1)
    measure(f"{name}: {op}, max <{idel}> elements", d, port, env(
        f'<{op} xmlns="{ns}">' + f"<{idel}>i-1</{idel}>" *
        (lim // (len(idel) * 2 + 8)) + f"</{op}>"), tls=ctx, restart=restart)
    d_ = (lim - 200) // 7
    measure(f"{name}: {op}, deepest nesting", d, port, env(
        f'<{op} xmlns="{ns}">' + "<a>" * d_ + "</a>" * d_ + f"</{op}>"),
        tls=ctx, restart=restart)
    measure(f"{name}: {op}, one text of max length", d, port, env(
        f'<{op} xmlns="{ns}"><{idel}>' + "x" * (lim - 200) +
        f"</{idel}></{op}>"), tls=ctx, restart=restart)
    measure(f"{name}: a Fault as the Body", d, port,
            fuzzsoap.post(port, fuzzsoap.fault("X", "y")), tls=ctx,
            restart=restart)


def bench_nginx(work):
    """nginx (Debian's) serving a PUT (WebDAV) and a GET of the same size
    as the S3 XML limit: the cost of moving those bytes over HTTP."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        print("nginx: not installed, no peer figure")
        return
    port = fuzzlib_free_port()
    d = work / "nginx"
    (d / "www").mkdir(parents=True)
    (d / "tmp").mkdir()
    os.chmod(d / "www", 0o777)
    os.chmod(d / "tmp", 0o777)   # workers run as nobody when started as root
    conf = d / "nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{ access_log off; client_max_body_size 0;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;
  fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  server {{ listen 127.0.0.1:{port}; root {d}/www;
    location / {{ dav_methods PUT; create_full_put_path on; }} }} }}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(d)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)

        def pids():
            out = [proc.pid]
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        st = Path(f"/proc/{p}/stat").read_text()
                        if int(st.rsplit(")", 1)[1].split()[1]) == proc.pid:
                            out.append(int(p))
                    except (OSError, ValueError, IndexError):
                        pass
            return out
        body = os.urandom(S3_XML)
        host = f"127.0.0.1:{port}"
        print("nginx (peer): WebDAV PUT and static GET")
        measure("peer nginx: PUT of the same size", None, port,
                http_request("PUT", "/f", [("Host", host),
                                           ("Content-Length", str(len(body))),
                                           ("Connection", "close")], body),
                pids=pids)
        measure("peer nginx: GET of it", None, port,
                http_request("GET", "/f", [("Host", host),
                                           ("Connection", "close")]),
                pids=pids)
    finally:
        proc.terminate()
        proc.wait(10)


def fuzzlib_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table():
    print()
    print(f"{'request':<58} {'size':>8} {'CPU ms':>10} {'wall ms':>9} "
          f"{'status':>6} {'x target':>9}  note")
    worst = None
    for r in ROWS:
        ratio = abs(r.cpu_ms) / TARGET_MS
        flag = "  OVER" if ratio > 1 else ""
        print(f"{r.what:<58} {fmt_size(r.size):>8} {fmt_cpu(r.cpu_ms):>10} "
              f"{r.wall_ms:9.1f} {str(r.status):>6} {ratio:9.2f}  "
              f"{r.note}{flag}")
        if not r.what.startswith("peer") and \
                (worst is None or abs(r.cpu_ms) > abs(worst.cpu_ms)):
            worst = r
    base = next((r for r in ROWS if r.what.startswith("baseline: PUT")), None)
    peer = next((r for r in ROWS if r.what.startswith("peer nginx: PUT")),
                None)
    if base and peer and peer.cpu_ms > 0:
        print(f"\nWalrus PUT / nginx PUT of {fmt_size(base.size)}: "
              f"{base.cpu_ms / peer.cpu_ms:.1f}x server CPU")
    over = [r for r in ROWS if abs(r.cpu_ms) > TARGET_MS and
            not r.what.startswith("peer")]
    if worst is not None:
        print(f"target: no request over {TARGET_MS:g} ms of server CPU; "
              f"worst {fmt_cpu(worst.cpu_ms)} ms ({worst.what}); "
              f"{len(over)} over")


def main():
    work = Path(tempfile.mkdtemp(prefix="koala-hostile-"))
    os.chmod(work, 0o755)   # nginx's workers (nobody) reach their files
    print(f"build: {os.environ['KOALA_BUILD_DIR']}; repeats {REPEATS}, "
          f"timeout {TIMEOUT:g} s; server CPU in ms (median)")
    only = set(filter(None, os.environ.get("HOSTILE_ONLY", "").split(",")))
    want = (lambda k: not only or k in only)
    cloud = Cloud(work / "cloud", with_cluster=False).start() \
        if want("s3") or want("ec2") or want("clc") else None
    try:
        if want("s3"):
            bench_s3(cloud)
        if want("ec2"):
            bench_ec2(cloud)
        if want("clc"):
            clc = cloud.daemons["clc"]
            bench_soap("CLC", clc, cloud.ports["clc_soap"],
                       client_context(cloud.ca, *cloud.certs("walrus", "w1")),
                       "urn:koala:clc", "DescribeService", "x",
                       restarter(clc))
    finally:
        if cloud:
            cloud.stop()
    if want("ccnc"):
        if os.geteuid() == 0 and shutil.which("ip"):
            bench_cc_nc(work)
        else:
            print("CC, NC: skipped (their network namespaces need root)")
    if want("nginx"):
        bench_nginx(work)
    table()
    shutil.rmtree(work, ignore_errors=True)


def bench_cc_nc(work):
    from test_cc import CC
    from test_nc import Node
    (work / "pki").mkdir()
    pki = PKI.create(work / "pki")
    for n in ("koala-cc-zone-a", "koala-clc", "koala-nc-node1",
              "koala-cc-test"):
        pki.issue(n)
    ns = Netns("hb")
    try:
        cc = CC(pki, work / "cc", ns, poll_interval="5", log_level="warn")
        cc.start()
        try:
            bench_soap("CC", cc, cc.port, pki.ctx("koala-clc"),
                       "urn:koala:cc", "DescribeInstances", "instanceId",
                       restarter(cc), limit=CC_MSG)
        finally:
            cc.stop(signal.SIGKILL)
        ns.ip("link", "add", "kbr0", "type", "bridge")
        node = Node(work / "node", pki, netns=ns.name, bridge="kbr0",
                    hypervisor="tcg", log_level="warn")
        node.start()
        try:
            bench_soap("NC", node, node.port, pki.ctx("koala-cc-test"),
                       "urn:koala:nc", "ncDescribeInstances", "instanceId",
                       restarter(node))
        finally:
            node.stop(signal.SIGKILL)
    finally:
        ns.delete()


if __name__ == "__main__":
    main()
