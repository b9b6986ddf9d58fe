"""Hand-made S3 requests for the protocol tests: a SigV4 signer (checked
against botocore's in test_s3_protocol.py), aws-chunked body framing with
chunk and trailer signatures, and a raw HTTP/1.1 exchange over a socket so
tests control every byte (Expect: 100-continue, chunked transfer encoding,
no Content-Length, a connection cut half way)."""
import datetime
import hashlib
import hmac
import socket
import urllib.parse

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def uri_encode(s, keep_slash):
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def amz_now(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y%m%dT%H%M%SZ")


def signing_key(secret, date, region, service):
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


class Signed:
    """A SigV4-signed S3 request: method, raw path, query, headers."""

    def __init__(self, creds, method, path, query="", headers=None,
                 payload_hash=EMPTY_SHA256, amz_date=None, region="us-east-1",
                 host="127.0.0.1"):
        self.method = method
        self.path = path            # already percent-encoded
        self.query = query          # already encoded, "a=b&c="
        self.amz_date = amz_date or amz_now()
        self.date = self.amz_date[:8]
        self.scope = f"{self.date}/{region}/s3/aws4_request"
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.headers.setdefault("host", host)
        self.headers["x-amz-date"] = self.amz_date
        self.headers["x-amz-content-sha256"] = payload_hash
        self.key = signing_key(creds.secret, self.date, region, "s3")
        signed = sorted(self.headers)
        canon_q = "&".join(sorted(
            "=".join(uri_encode(urllib.parse.unquote(x), False)
                     for x in (p.split("=", 1) + [""])[:2])
            for p in query.split("&") if p))
        canon = "\n".join([
            method, uri_encode(urllib.parse.unquote(path), True), canon_q,
            "".join(f"{h}:{' '.join(str(self.headers[h]).split())}\n"
                    for h in signed),
            ";".join(signed), payload_hash])
        sts = "\n".join(["AWS4-HMAC-SHA256", self.amz_date, self.scope,
                         hashlib.sha256(canon.encode()).hexdigest()])
        self.signature = hmac.new(self.key, sts.encode(),
                                  hashlib.sha256).hexdigest()
        self.headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.key}/{self.scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={self.signature}")

    def target(self):
        return self.path + ("?" + self.query if self.query else "")

    def chunk_signature(self, prev, data):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date,
                         self.scope, prev, EMPTY_SHA256,
                         hashlib.sha256(data).hexdigest()])
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()

    def trailer_signature(self, prev, trailer_bytes):
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date,
                         self.scope, prev,
                         hashlib.sha256(trailer_bytes).hexdigest()])
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()


def chunked_signed(req, data, chunk=65536, trailers=None, tamper=None):
    """aws-chunked body with chunk signatures (and a signed trailer when
    trailers is given).  tamper(i, bytes) may alter chunk i after signing."""
    out, prev = bytearray(), req.signature
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for i, p in enumerate(pieces):
        sig = req.chunk_signature(prev, p)
        prev = sig
        if tamper:
            p = tamper(i, p)
        out += b"%x;chunk-signature=%s\r\n" % (len(p), sig.encode())
        out += p + b"\r\n" if p or trailers is None else b""
    if trailers is not None:
        tb = b"".join(b"%s:%s\n" % (k.encode(), v.encode())
                      for k, v in trailers.items())
        sig = req.trailer_signature(prev, tb)
        for k, v in trailers.items():
            out += b"%s:%s\r\n" % (k.encode(), v.encode())
        out += b"x-amz-trailer-signature:%s\r\n\r\n" % sig.encode()
    return bytes(out)


def chunked_unsigned(data, chunk=65536, trailers=None):
    """aws-chunked body of STREAMING-UNSIGNED-PAYLOAD-TRAILER, as current
    SDKs send it."""
    out = bytearray()
    for i in range(0, len(data), chunk):
        p = data[i:i + chunk]
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n"
    for k, v in (trailers or {}).items():
        out += b"%s:%s\r\n" % (k.encode(), v.encode())
    out += b"\r\n"
    return bytes(out)


def http_chunked(body, piece=1000):
    """HTTP/1.1 Transfer-Encoding: chunked framing of body."""
    out = bytearray()
    for i in range(0, len(body), piece):
        p = body[i:i + piece]
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    return bytes(out + b"0\r\n\r\n")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def _read_response(f, head_request=False):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a reply")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline().rstrip(b"\r\n")
        if not h:
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if head_request or status in (100, 204, 304):
        return Response(status, headers, body)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            n = int(f.readline().split(b";")[0], 16)
            if n == 0:
                while f.readline().strip():
                    pass
                break
            body += f.read(n)
            f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    return Response(status, headers, body)


def exchange(port, method, target, headers, body=b"", expect_continue=False,
             send_body=True, timeout=30):
    """One request on a fresh connection.  With expect_continue, waits for
    the server's interim reply before sending the body; if the server
    answers with a final status instead, the body is not sent and that
    reply is returned."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        f = s.makefile("rb")
        head = f"{method} {target} HTTP/1.1\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        s.sendall(head.encode("utf-8") + b"\r\n")
        if expect_continue:
            r = _read_response(f)
            if r.status != 100:
                return r
        if send_body and body:
            s.sendall(body)
        return _read_response(f, method == "HEAD")
    finally:
        s.close()
