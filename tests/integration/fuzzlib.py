"""The machinery of the protocol fuzz suites (test_fuzz_s3.py,
test_fuzz_ec2.py, test_fuzz_soap.py): hostile requests sent at the byte
level to the real daemons (the ASan + UBSan build in CI), each checked by
the oracles of issue 13:

  * the daemon stays up (its process still runs after every request);
  * no sanitizer report (ASan, UBSan, LeakSanitizer, glibc's heap checks)
    appears in its log;
  * every reply is well-formed in the API's format (S3 <Error><Code>, EC2
    <Response><Errors><Error><Code>, a SOAP Envelope / soap:Fault), and no
    hostile request is answered with an internal error;
  * no request costs the daemon more than a CPU budget (utime + stime of
    the process from /proc/PID/stat, before and after the exchange);
  * data written before the run reads back byte-identical after it
    (checked by each suite).

Seeded and bounded in time:
  KOALA_FUZZ_SEED      the seed (printed; default below).  Case i of a
                       daemon's run draws from Random("SEED/daemon/i"), so
                       one case is reproduced alone with
  KOALA_FUZZ_CASE=i    (and the same seed): only that case is sent.
  KOALA_FUZZ_SECONDS   the time budget of each daemon's run (default 25).
  KOALA_FUZZ_CPU       the CPU budget of one request, seconds (default 2,
                       generous for the sanitized build).
A failing case is written to the test's tmp_path as
<daemon>-case<i>.bin (the exact bytes sent) and named in the failure.
"""
import datetime
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import botocore.auth
import botocore.awsrequest
import botocore.credentials

SEED = int(os.environ.get("KOALA_FUZZ_SEED", "1313"))
SECONDS = float(os.environ.get("KOALA_FUZZ_SECONDS", "25"))
CPU_BUDGET = float(os.environ.get("KOALA_FUZZ_CPU", "2.0"))
ONLY_CASE = os.environ.get("KOALA_FUZZ_CASE")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Lines a sanitizer or glibc's heap checks print when they catch something.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer", "AddressSanitizer:DEADLYSIGNAL",
    "ERROR: LeakSanitizer", "runtime error:",
    "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
    "double free", "free(): invalid", "malloc(): ", "corrupted size",
    "stack smashing detected",
)


def banner(name, seconds):
    print(f"\n[fuzz {name}] KOALA_FUZZ_SEED={SEED} seconds={seconds:g} "
          f"cpu budget={CPU_BUDGET:g}s")


# ---- measuring the daemon ------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process (all its threads, also ended ones)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sanitizer_lines(text):
    return [line for line in text.splitlines()
            if any(m in line for m in SANITIZER_MARKERS)]


# ---- raw HTTP -----------------------------------------------------------------

class Reply:
    def __init__(self, status, headers, body, head_bytes):
        self.status = status
        self.headers = headers          # [(lower-case name, value)]
        self.body = body
        self.head_bytes = head_bytes

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def __repr__(self):
        return f"<HTTP {self.status} {self.body[:300]!r}>"


class Exchange:
    """What happened to one request: reply (or None), error (why there is
    no reply), wall seconds."""

    def __init__(self):
        self.reply = None
        self.error = None
        self.wall = 0.0
        self.send_failed = False


def _read_reply(f, head_request):
    while True:
        reply = _read_one(f, head_request)
        if reply.status >= 200 or reply.status == 101:
            return reply
        # an interim reply (100 Continue): the final one follows


def _read_one(f, head_request):
    line = f.readline(65536)
    if not line:
        raise ConnectionError("closed without a reply")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP status line: {line[:200]!r}")
    status = int(parts[1])
    headers, head = [], line
    while True:
        h = f.readline(65536)
        head += h
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip().lower(), v.strip()))
    hd = dict(headers)
    body = b""
    if head_request or status in (100, 204, 304) or status < 200:
        return Reply(status, headers, body, head)
    if hd.get("transfer-encoding", "").lower() == "chunked":
        while True:
            n = int(f.readline(1024).split(b";")[0], 16)
            if n == 0:
                while f.readline(65536).strip():
                    pass
                break
            body += f.read(n)
            f.readline(16)
    elif "content-length" in hd:
        n = int(hd["content-length"])
        body = f.read(n)
        if len(body) != n:
            raise ValueError(f"body cut: {len(body)} of {n} bytes")
    else:
        body = f.read()
    return Reply(status, headers, body, head)


def exchange(port, data, tls=None, timeout=20.0, pieces=None, cut=False,
             head_request=False):
    """Sends bytes on a fresh connection to 127.0.0.1:port and reads one
    reply.  pieces: [(bytes, seconds to wait after)] instead of data (a
    slow client); cut: close after sending, read nothing."""
    ex = Exchange()
    t0 = time.monotonic()
    s = None
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # without it, Nagle holds the client's TLS records ~40 ms
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname="127.0.0.1")
        try:
            if pieces is not None:
                for p, wait in pieces:
                    s.sendall(p)
                    if wait:
                        time.sleep(wait)
            else:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
            # The server answered early (an oversized body) and closed;
            # its reply may still be readable.
            ex.send_failed = True
            ex.error = f"send: {e!r}"
        if cut:
            ex.error = "cut by the client"
            return ex
        f = s.makefile("rb")
        ex.reply = _read_reply(f, head_request)
        ex.error = None
    except socket.timeout:
        ex.error = f"no reply within {timeout:g} s"
    except (OSError, ValueError, ssl.SSLError) as e:
        ex.error = ex.error or repr(e)
        if not ex.send_failed:
            ex.error = repr(e)
    finally:
        ex.wall = time.monotonic() - t0
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
    return ex


def _hbytes(v):
    if isinstance(v, bytes):
        return v
    v = str(v)
    try:
        return v.encode("latin-1")
    except UnicodeEncodeError:
        return v.encode("utf-8", "surrogateescape")


def http_request(method, target, headers, body=b""):
    """The bytes of an HTTP/1.1 request; header values may be bytes."""
    out = bytearray(method.encode() + b" " + _hbytes(target) +
                    b" HTTP/1.1\r\n")
    for k, v in headers:
        out += _hbytes(k) + b": " + _hbytes(v) + b"\r\n"
    return bytes(out + b"\r\n" + body)


# ---- signing with botocore's own signer -----------------------------------

def quote_bytes(b, safe=b"-_.~"):
    """Percent-encoding of bytes as SigV4 canonicalises it (upper-case
    hex, every byte but the unreserved ones), so that what is sent is
    already canonical and botocore's signature matches the server's."""
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogateescape")
    return urllib.parse.quote_from_bytes(b, safe=safe)


def query_string(params):
    """[(name, value)] (str or bytes) -> canonical, sorted query string."""
    pairs = sorted((quote_bytes(k), quote_bytes(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in pairs)


def sigv4_headers(creds, service, region, method, url, headers, body,
                  s3=False):
    """Signs with botocore (S3SigV4Auth / SigV4Auth over an AWSRequest);
    the signed headers as [(name, value)].  url's path and query must be
    canonical already (quote_bytes, query_string)."""
    c = botocore.credentials.Credentials(creds[0], creds[1])
    req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body,
                                         headers=dict(headers))
    auth = (botocore.auth.S3SigV4Auth if s3 else botocore.auth.SigV4Auth)(
        c, service, region)
    auth.add_auth(req)
    return list(req.headers.items())


# ---- the API's formats ----------------------------------------------------

def parse_xml(body):
    """An Element, or raises ValueError.  DOCTYPEs are refused: no reply of
    ours has one (and the standard parser would expand entities)."""
    if b"<!DOCTYPE" in body[:4096]:
        raise ValueError("reply carries a DOCTYPE")
    try:
        return ET.fromstring(body)
    except ET.ParseError as e:
        raise ValueError(f"not XML ({e}): {body[:200]!r}")


def local(tag):
    return tag.rsplit("}", 1)[-1]


def find_local(el, *names):
    for name in names:
        if el is None:
            return None
        el = next((c for c in el if local(c.tag) == name), None)
    return el


def check_s3_reply(reply, method):
    """None when the reply is S3's, else what is wrong."""
    st = reply.status
    if st < 100 or st > 599:
        return f"status {st}"
    if st >= 300 and method != "HEAD" and st != 304:
        if not reply.body:
            return f"HTTP {st} without an error body"
        try:
            root = parse_xml(reply.body)
        except ValueError as e:
            return str(e)
        if local(root.tag) != "Error":
            return f"HTTP {st} body's root is <{local(root.tag)}>"
        code = find_local(root, "Code")
        if code is None or not (code.text or "").strip():
            return f"HTTP {st} error without a Code"
        if st >= 500 and code.text.strip() == "InternalError":
            return "InternalError for a client's request"
    elif reply.body and method != "HEAD" and \
            "xml" in (reply.header("content-type") or ""):
        try:
            parse_xml(reply.body)
        except ValueError as e:
            return str(e)
    return None


def check_ec2_reply(reply):
    st = reply.status
    try:
        root = parse_xml(reply.body)
    except ValueError as e:
        return f"HTTP {st}: {e}"
    if st == 200:
        if not local(root.tag).endswith("Response"):
            return f"HTTP 200 body's root is <{local(root.tag)}>"
        return None
    if local(root.tag) != "Response":
        return f"HTTP {st} body's root is <{local(root.tag)}>"
    code = find_local(root, "Errors", "Error", "Code")
    if code is None or not (code.text or "").strip():
        return f"HTTP {st} without Errors/Error/Code"
    if find_local(root, "RequestID") is None:
        return f"HTTP {st} without RequestID"
    if st >= 500 and code.text.strip() == "InternalError":
        return "InternalError for a client's request"
    return None


SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def check_soap_reply(reply):
    """A SOAP 1.1 Envelope with one element in its Body; a Fault (with
    faultcode, faultstring and a Koala code) exactly when the status is
    not 200."""
    st = reply.status
    try:
        root = parse_xml(reply.body)
    except ValueError as e:
        return f"HTTP {st}: {e}"
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        return f"HTTP {st}: root is {root.tag}, not a SOAP Envelope"
    body = next((c for c in root if c.tag == f"{{{SOAP_ENV}}}Body"), None)
    if body is None or len(body) != 1:
        return f"HTTP {st}: Envelope without one element in its Body"
    el = body[0]
    if el.tag == f"{{{SOAP_ENV}}}Fault":
        if st == 200:
            return "a Fault with HTTP 200"
        if find_local(el, "faultcode") is None or \
                find_local(el, "faultstring") is None:
            return f"HTTP {st}: Fault without faultcode/faultstring"
        code = find_local(el, "detail", "Error", "Code")
        if code is None or not (code.text or "").strip():
            return f"HTTP {st}: Fault without detail/Error/Code"
        if code.text.strip() == "InternalError":
            return f"HTTP {st}: InternalError for a client's request"
        return None
    if st != 200:
        return f"HTTP {st} without a Fault"
    if not local(el.tag).endswith("Response"):
        return f"HTTP 200: <{local(el.tag)}> is no ...Response"
    return None


# ---- hostile values ---------------------------------------------------------

NUMBERS = ["0", "-1", "1", "-0", "+1", "00000000001", "1e3", "0x10", " 1",
           "1 ", "2147483647", "2147483648", "-2147483649",
           "4294967296", "9223372036854775807", "9223372036854775808",
           "-9223372036854775809", "18446744073709551616",
           "99999999999999999999999999999999", "NaN", "inf", "1.5", "",
           "\x00", "1\x002", "١٢٣"]


def hostile_text(r, max_len=300):
    """A string that tries to hurt a parser: odd encodings, NUL bytes,
    percent-signs, markup, very long runs, format directives.  Returned
    as bytes (may be invalid UTF-8)."""
    k = r.randrange(16)
    if k == 0:
        return bytes(r.randrange(256) for _ in range(r.randrange(1, 40)))
    if k == 1:
        return b"\xff\xfe" + b"\xc3" * r.randrange(1, 10) + b"\xed\xa0\x80"
    if k == 2:
        return b"a\x00b"
    if k == 3:
        return (b"%" + r.choice([b"", b"0", b"zz", b"%", b"00", b"c0%af"])
                ) * r.randrange(1, 20)
    if k == 4:
        return b"%s%n%x%p" * r.randrange(1, 8)
    if k == 5:
        return r.choice([b"<", b">", b"&", b"]]>", b"&amp;", b"<![CDATA[",
                         b"&#0;", b"&#x110000;", b"&lol;"]) * \
            r.randrange(1, 50)
    if k == 6:
        return b"x" * r.choice([0, 1, 255, 256, 1023, 1024, 1025, 4096,
                                max_len, max_len * 10])
    if k == 7:
        return r.choice(NUMBERS).encode()
    if k == 8:
        return "\u202e\u0000\uffff\U0001F600ü".encode() * r.randrange(1, 5)
    if k == 9:
        return b"../" * r.randrange(1, 20) + b"etc/passwd"
    if k == 10:
        return b"\r\nX-Injected: 1\r\n"
    if k == 11:
        return b" " * r.randrange(1, 10) + b"\t"
    if k == 12:
        return b"/" * r.randrange(1, 30)
    if k == 13:
        return b"\xc0\x80" * r.randrange(1, 10)  # overlong NUL
    if k == 14:
        return r.choice([b"*", b"?", b"\\", b"'", b'"', b";", b"--", b"%_"]) \
            * r.randrange(1, 30)
    return ("".join(chr(r.randrange(32, 0x2FFF))
                    for _ in range(r.randrange(1, 30)))).encode()


def hostile_xml(r, root, kids=(), max_bytes=200_000):
    """An XML body that tries to hurt the reader: many attributes, deep
    nesting, huge text, DOCTYPE and entities, broken encodings, truncation,
    a root other than the expected one.  root: the element the API wants;
    kids: well-formed children to build on."""
    inner = "".join(kids)
    k = r.randrange(14)
    if k == 0:      # many attributes on the root (bounded: the big ones
        n = r.randrange(1, 3000)  # are a test of their own)
        attrs = " ".join(f'a{i}="{i}"' for i in range(n))
        return f"<{root} {attrs}>{inner}</{root}>".encode()
    if k == 1:      # deep nesting
        d = r.choice([10, 100, 255, 256, 1000, 5000])
        return (f"<{root}>" + "<x>" * d + "</x>" * d + f"</{root}>").encode()
    if k == 2:      # huge text
        n = r.choice([1000, 65536, 1 << 20])
        n = min(n, max_bytes)
        return f"<{root}>{'A' * n}{inner}</{root}>".encode()
    if k == 3:      # billion laughs
        ents = '<!ENTITY a0 "lol">' + "".join(
            f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10))
        return (f'<?xml version="1.0"?><!DOCTYPE {root} [{ents}]>'
                f"<{root}>&a9;{inner}</{root}>").encode()
    if k == 4:      # external entity
        return (f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY x SYSTEM '
                f'"file:///etc/passwd">]><{root}>&x;{inner}</{root}>').encode()
    if k == 5:      # truncated well-formed body
        whole = f"<{root}>{inner}</{root}>".encode()
        return whole[:r.randrange(len(whole))]
    if k == 6:      # wrong root
        return f"<Nope>{inner}</Nope>".encode()
    if k == 7:      # declared encodings that lie
        enc = r.choice(["UTF-16", "EBCDIC", "ISO-2022-JP", "x-bogus", "UTF-8"])
        return (f'<?xml version="1.0" encoding="{enc}"?><{root}>'.encode() +
                b"\xff\xfe\x00<" + inner.encode() + f"</{root}>".encode())
    if k == 8:      # many children
        n = r.choice([100, 1000, 10000, 50000])
        return (f"<{root}>" + "<x/>" * n + inner + f"</{root}>").encode()
    if k == 9:      # namespaces, many
        n = r.randrange(1, 2000)
        ns = " ".join(f'xmlns:p{i}="urn:{i}"' for i in range(n))
        return f"<{root} {ns}>{inner}</{root}>".encode()
    if k == 10:     # processing instructions, comments, CDATA
        return (f"<?pi x?><!--c--><{root}><![CDATA[<x>]]>{inner}"
                f"<!--{'-' * 3}--></{root}>").encode()
    if k == 11:     # not XML
        return hostile_text(r)
    if k == 12:     # NUL inside
        return f"<{root}>".encode() + b"\x00" + inner.encode() + \
            f"</{root}>".encode()
    # well-formed, with hostile text in the children's place
    return f"<{root}>".encode() + hostile_text(r) + inner.encode() + \
        f"</{root}>".encode()


# ---- a run ----------------------------------------------------------------------

def mhd_own(reply):
    """A reply libmicrohttpd makes itself (an HTML page) for a request
    whose HTTP framing it could not parse: the daemon never saw it."""
    return reply.status >= 400 and (reply.body.startswith(b"<html>") or
                                    reply.body.startswith(b"HTTP/1."))


class Case:
    """One request to send.  data: the bytes (or pieces for a slow client);
    check(reply) -> None or what is wrong with the reply; reply_optional:
    the request's HTTP framing is broken (or the client cuts it), so the
    server may close without replying."""

    def __init__(self, label, data=None, pieces=None, cut=False,
                 check=None, reply_optional=False, head_request=False,
                 timeout=None):
        self.label = label
        self.data = data
        self.pieces = pieces
        self.cut = cut
        self.check = check
        self.reply_optional = reply_optional or cut
        self.head_request = head_request
        self.timeout = timeout

    def bytes(self):
        if self.pieces is not None:
            return b"".join(p for p, _ in self.pieces)
        return self.data or b""


def framed_case(r, method, target, headers, body, label, check, too_big,
                chunk_sizes, head_request=False):
    """A Case sending body under a framing drawn from r: a Content-Length
    10 bytes past the body (the server rightly waits: no reply owed), cut
    mid-request, chunked in pieces of one of chunk_sizes, a Content-Length
    that is no number or past too_big, a slow client, or plain."""
    import s3raw
    framing = r.randrange(14)
    headers = list(headers)
    optional = False
    if framing == 0 and body:
        headers.append(("Content-Length", str(len(body) + 10)))
        optional = True
    elif framing == 1 and body:
        headers.append(("Content-Length", str(len(body))))
        data = http_request(method, target, headers, body)
        return Case(label + " [cut]", data=data[:r.randrange(1, len(data))],
                    cut=True)
    elif framing == 2:
        headers.append(("Transfer-Encoding", "chunked"))
        body = s3raw.http_chunked(body, r.choice(chunk_sizes))
    elif framing == 3:
        headers.append(("Content-Length", r.choice(
            ["-1", "x", "99999999999999999999", str(too_big)])))
        optional = True
    else:
        headers.append(("Content-Length", str(len(body))))
    headers.append(("Connection", "close"))
    data = http_request(method, target, headers, body)
    if framing == 4 and 50 < len(data) < 200_000:
        return Case(label + " [slow]", pieces=slow_pieces(
            r, data, r.uniform(0.1, 0.5)), check=check)
    return Case(label, data=data, check=check, reply_optional=optional,
                head_request=head_request)


class FuzzRun:
    """Runs cases against one daemon and checks the oracles after each.

    daemon: a conftest.Process (proc, log_path); restart(): starts it again
    after it died (so a run goes on finding things while a known crash is
    unfixed); tls: an SSLContext for HTTPS daemons."""

    def __init__(self, name, daemon, port, tmp_path, tls=None,
                 restart=None, timeout=5.0, cpu_budget=CPU_BUDGET):
        self.name = name
        self.daemon = daemon
        self.port = port
        self.tls = tls
        self.tmp = Path(tmp_path)
        self.restart = restart
        self.timeout = timeout
        self.cpu_budget = cpu_budget
        self.failures = []
        self.worst = (0.0, None)
        self.count = 0
        self.no_reply = 0
        self.statuses = {}
        self.log_offset = self._log_size()
        self.restarts = 0
        self.walls = []

    def _log_size(self):
        try:
            return os.path.getsize(self.daemon.log_path)
        except OSError:
            return 0

    def _new_log(self):
        try:
            with open(self.daemon.log_path, "rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        self.log_offset += len(text.encode(errors="replace"))
        return text

    def fail(self, i, case, what):
        path = self.tmp / f"{self.name}-case{i}.bin"
        path.write_bytes(case.bytes())
        self.failures.append((i, case.label, what, case.bytes()[:400],
                              str(path)))

    def send(self, i, case):
        """Sends one case and applies the oracles; returns the Exchange."""
        pid = self.daemon.proc.pid
        c0 = cpu_seconds(pid)
        ex = exchange(self.port, case.data, tls=self.tls,
                      timeout=case.timeout or (0.5 if case.reply_optional
                                               else self.timeout),
                      pieces=case.pieces, cut=case.cut,
                      head_request=case.head_request)
        if case.cut:
            time.sleep(0.02)
        c1 = cpu_seconds(pid)
        self.count += 1
        self.walls.append((ex.wall, i, case.label[:60]))
        cpu = (c1 - c0) if (c0 is not None and c1 is not None) else 0.0
        if cpu > self.worst[0]:
            self.worst = (cpu, f"case {i} {case.label}")
        if cpu > self.cpu_budget:
            self.fail(i, case, f"CPU budget: {cpu:.2f} s of CPU "
                      f"({ex.wall:.2f} s wall) for one request")
        if ex.reply is None:
            self.no_reply += 1
            if not case.reply_optional and not ex.send_failed:
                self.fail(i, case, f"no reply: {ex.error}")
        else:
            st = ex.reply.status
            self.statuses[st] = self.statuses.get(st, 0) + 1
            bad = case.check(ex.reply) if case.check else None
            if bad and case.reply_optional and mhd_own(ex.reply):
                bad = None  # the HTTP library's answer to broken framing
            if bad:
                self.fail(i, case, f"malformed reply: {bad}; "
                          f"got {ex.reply!r}")
        self.after(i, case)
        return ex

    def after(self, i, case):
        """The daemon still runs and its log shows no sanitizer report;
        a daemon that died is restarted (if it can be) after the failure
        is recorded."""
        proc = self.daemon.proc
        dead = proc.poll() is not None
        if dead:
            time.sleep(0.2)
        rep = sanitizer_lines(self._new_log())
        if rep:
            self.fail(i, case, "sanitizer report: " + " | ".join(rep[:6]))
        if dead:
            self.fail(i, case, f"daemon died (exit {proc.returncode})")
            if self.restart is None or self.restarts >= 5:
                raise DaemonDied(self.report())
            self.restarts += 1
            self.restart()
            self.log_offset = self._log_size()

    def run(self, make_case, seconds):
        """Cases 0, 1, ... from make_case(r, i) until seconds have passed
        (or only KOALA_FUZZ_CASE)."""
        banner(self.name, seconds)
        if ONLY_CASE is not None:
            ids = [int(ONLY_CASE)]
        else:
            ids = range(10 ** 9)
        deadline = time.monotonic() + seconds
        for i in ids:
            if ONLY_CASE is None and time.monotonic() >= deadline:
                break
            r = random.Random(f"{SEED}/{self.name}/{i}")
            case = make_case(r, i)
            if case is None:
                continue
            self.send(i, case)

    def report(self):
        lines = [f"[fuzz {self.name}] {self.count} requests, seed {SEED}, "
                 f"statuses {dict(sorted(self.statuses.items()))}, "
                 f"{self.no_reply} without a reply, worst CPU "
                 f"{self.worst[0]:.3f} s ({self.worst[1]})"]
        slow = sorted(self.walls, reverse=True)[:3]
        lines.append("  slowest (wall s, case, label): " + "; ".join(
            f"{w:.2f} {i} {lab}" for w, i, lab in slow))
        for i, label, what, data, path in self.failures[:25]:
            lines.append(f"  case {i} [{label}]: {what}\n"
                         f"    KOALA_FUZZ_SEED={SEED} KOALA_FUZZ_CASE={i}; "
                         f"bytes in {path}; starts {data[:300]!r}")
        if len(self.failures) > 25:
            lines.append(f"  ... and {len(self.failures) - 25} more")
        return "\n".join(lines)

    def assert_clean(self):
        print(self.report())
        assert not self.failures, self.report()


class DaemonDied(AssertionError):
    pass


# ---- slow clients ---------------------------------------------------------

def sigterm_during(proc, port, data, settle=1.0):
    """Sends data (a request, whole or in part) on a new connection, waits
    settle seconds, sends SIGTERM to proc; the exit code (SIGKILL after
    30 s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(data)
        time.sleep(settle)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        s.close()


def slow_pieces(r, data, seconds):
    """data cut into pieces sent with pauses, over about `seconds`."""
    n = max(1, min(len(data), r.randrange(5, 60)))
    cuts = sorted(r.sample(range(1, len(data)), min(n - 1, len(data) - 1))) \
        if len(data) > 1 else []
    out, prev = [], 0
    for c in cuts + [len(data)]:
        out.append((data[prev:c], seconds / n))
        prev = c
    return out


class Slowloris:
    """n connections that send a request's headers a few bytes at a time
    and never finish, held open in a thread until close()."""

    def __init__(self, port, head, n=40, tls=None, gap=0.5):
        self.socks = []
        self.stop = threading.Event()
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if tls is not None:
                    s = tls.wrap_socket(s, server_hostname="127.0.0.1")
                self.socks.append(s)
            except OSError:
                break
        self.head = head
        self.gap = gap
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self):
        pos = 0
        while not self.stop.is_set() and pos < len(self.head) - 4:
            for s in list(self.socks):
                try:
                    s.sendall(self.head[pos:pos + 1])
                except OSError:
                    self.socks.remove(s)
            pos += 1
            self.stop.wait(self.gap)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)
