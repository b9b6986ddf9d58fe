"""Walrus under hostile requests (issue 13): a seeded, time-bounded fuzz
run of correctly signed requests (botocore's SigV4 signer) with hostile
bucket names, keys, parameters, headers, XML bodies, aws-chunked framing,
wrong lengths, plus unsigned and garbled-signature ones, slow and cut
connections; and the known hostile requests, each a test of its own.

Oracles (tests/integration/fuzzlib.py): Walrus stays up, no sanitizer
report in its log, every reply is S3's (<Error><Code>), no request costs
more than the CPU budget, and the objects bob wrote before the run read
back byte-identical after it (the fuzzing runs as alice, who may not touch
them).  KOALA_FUZZ_SEED, KOALA_FUZZ_SECONDS, KOALA_FUZZ_CASE: see fuzzlib.
"""
import hashlib
import os
import random
import time

import pytest

import fuzzlib
import s3raw
from conftest import Walrus, s3_client, WALRUS_BIN
from fuzzlib import (Case, FuzzRun, hostile_text, hostile_xml,
                     http_request, query_string, quote_bytes, sigv4_headers)

REGION = "us-east-1"
CANARY = "canary-bob"
FUZZ_BUCKETS = ["fz-a", "fz-b"]


def start_walrus(base):
    if not WALRUS_BIN.exists():
        pytest.fail(f"{WALRUS_BIN} is not built")
    w = Walrus(base / "data").start()
    return w


def stop_quietly(w, timeout=10):
    """Stops a Walrus that may be busy or broken; its exit code."""
    if w.proc is None:
        return None
    return w.stop(timeout=timeout)


@pytest.fixture(scope="module")
def fz_walrus(tmp_path_factory):
    """The Walrus of the fuzz run, with alice (the fuzzer) and bob (the
    owner of the canary data)."""
    w = start_walrus(tmp_path_factory.mktemp("fuzz-walrus"))
    w.alice = w.add_user("alice")
    w.bob = w.add_user("bob")
    yield w
    rc = stop_quietly(w, timeout=30)
    assert rc == 0, f"koala-walrus exited with {rc}:\n{w.log_text()[-4000:]}"
    rep = fuzzlib.sanitizer_lines(w.log_text())
    assert not rep, rep


@pytest.fixture
def fresh_walrus(tmp_path):
    """A Walrus of its own for one test whose request may leave it busy
    (it is killed if it does not stop)."""
    w = start_walrus(tmp_path)
    w.alice = w.add_user("alice")
    yield w
    stop_quietly(w, timeout=5)


# ---- canary data --------------------------------------------------------

def write_canaries(w):
    """Objects of every storage path (inline, file, multipart, odd key,
    metadata) in bob's bucket; returns what they must read back as."""
    s3 = s3_client(w.endpoint, w.bob)
    s3.create_bucket(Bucket=CANARY)
    r = random.Random(fuzzlib.SEED)
    objs = {
        "small": r.randbytes(1000),
        "inline-edge": r.randbytes(64 * 1024),
        "file": r.randbytes(300_000),
        "odd key ü %2F +?&=#": r.randbytes(10),
        "empty": b"",
    }
    for k, v in objs.items():
        s3.put_object(Bucket=CANARY, Key=k, Body=v, Metadata={"m": "v-" + k[:5]})
    part = r.randbytes(5 * 1024 * 1024)
    up = s3.create_multipart_upload(Bucket=CANARY, Key="multi")
    etags = [s3.upload_part(Bucket=CANARY, Key="multi", PartNumber=n,
                            UploadId=up["UploadId"],
                            Body=part if n == 1 else b"tail")["ETag"]
             for n in (1, 2)]
    s3.complete_multipart_upload(
        Bucket=CANARY, Key="multi", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in zip((1, 2), etags)]})
    objs["multi"] = part + b"tail"
    want = {}
    for k in objs:
        h = s3.head_object(Bucket=CANARY, Key=k)
        want[k] = (hashlib.sha256(objs[k]).hexdigest(), h["ETag"],
                   h["Metadata"], h["ContentLength"])
    return want


def read_canaries(w, want):
    s3 = s3_client(w.endpoint, w.bob)
    got = {}
    for k in want:
        o = s3.get_object(Bucket=CANARY, Key=k)
        body = o["Body"].read()
        got[k] = (hashlib.sha256(body).hexdigest(), o["ETag"],
                  o["Metadata"], o["ContentLength"])
    listed = sorted(o["Key"] for o in
                    s3.list_objects_v2(Bucket=CANARY).get("Contents", []))
    return got, listed


# ---- the request generator ------------------------------------------------

class S3Gen:
    """Builds case i of the run from its own Random."""

    def __init__(self, w, uploads):
        self.w = w
        self.port = w.port
        self.alice = (w.alice.key, w.alice.secret)
        self.uploads = uploads      # [(bucket, key, upload id)] of alice

    # names
    def bucket(self, r):
        k = r.randrange(10)
        if k < 5:
            return r.choice(FUZZ_BUCKETS).encode()
        if k == 5:
            return CANARY.encode()   # bob's: every write must be refused
        if k == 6:
            return r.choice([b"a", b"ab", b"a" * 63, b"a" * 64, b"A-B",
                             b"-ab", b"192.168.1.1", b"a..b", b"xn--a",
                             b"a" * 300, b"fz-new"])
        return hostile_text(r, 100)

    def key(self, r):
        k = r.randrange(8)
        if k == 0:
            return b"k" * r.choice([1, 1023, 1024, 1025, 2048, 5000])
        if k == 1:
            return r.choice([b"a/b/c", b"a//b", b"/lead", b"trail/", b".",
                             b"..", b"./x", b"a/../b", b"%", b"%2F"])
        if k in (2, 3):
            return b"key-" + str(r.randrange(20)).encode()
        return hostile_text(r, 1100)

    def sub(self, r):
        """A sub-resource and its parameters."""
        k = r.randrange(14)
        n = lambda: r.choice(fuzzlib.NUMBERS).encode()
        if k == 0:
            return [(b"acl", b"")]
        if k == 1:
            return [(b"uploads", b"")]
        if k == 2:
            return [(b"delete", b"")]
        if k == 3:
            return [(b"partNumber", n()), (b"uploadId", hostile_text(r))]
        if k == 4:
            return [(b"list-type", r.choice([b"2", b"1", b"3", b""])),
                    (b"max-keys", n()), (b"prefix", hostile_text(r)),
                    (b"delimiter", hostile_text(r)),
                    (b"start-after", hostile_text(r)),
                    (b"continuation-token", hostile_text(r)),
                    (b"encoding-type", r.choice([b"url", b"", b"x"]))]
        if k == 5:
            return [(b"marker", hostile_text(r)), (b"max-keys", n())]
        if k == 6:
            return [(b"versions", b""), (b"key-marker", hostile_text(r)),
                    (b"version-id-marker", hostile_text(r)),
                    (b"max-keys", n())]
        if k == 7:
            return [(b"uploads", b""), (b"max-uploads", n()),
                    (b"key-marker", hostile_text(r)),
                    (b"upload-id-marker", hostile_text(r))]
        if k == 8:
            return [(b"uploadId", hostile_text(r)),
                    (b"max-parts", n()), (b"part-number-marker", n())]
        if k == 9:
            hdr = r.choice([b"response-content-type",
                            b"response-content-disposition",
                            b"response-cache-control",
                            b"response-expires"])
            return [(hdr, hostile_text(r))]
        if k == 10:   # thousands of parameters
            return [(b"p%d" % j, b"v") for j in range(r.choice(
                [10, 100, 500, 1000, 1300, 3000]))]
        if k == 11:
            return [(r.choice([b"location", b"versioning", b"policy",
                               b"tagging", b"torrent", b"website"]), b"")]
        if k == 12:
            return [(hostile_text(r), hostile_text(r))]
        return []

    def headers(self, r):
        out = []
        for _ in range(r.randrange(4)):
            k = r.randrange(14)
            if k == 0:
                out.append(("Range", r.choice([
                    "bytes=0-0", "bytes=-0", "bytes=5-3", "bytes=-1",
                    "bytes=0-", "bytes=99999999999999999999-",
                    "bytes=0-1,2-3", "bytes=" + ",".join(
                        f"{j}-{j}" for j in range(500)), "items=0-1",
                    "bytes=-9223372036854775808", "bytes=1-2-3",
                    "bytes=18446744073709551615-18446744073709551616"])))
            elif k == 1:
                out.append((r.choice(["If-Modified-Since",
                                      "If-Unmodified-Since", "If-Match",
                                      "If-None-Match"]),
                            r.choice(["*", '"x"', "Thu, 01 Jan 1970 00:00:00 "
                                      "GMT", "garbage", "Mon, 99 Foo 99999",
                                      '"' * 300, ""])))
            elif k == 2:
                out.append(("x-amz-meta-" + r.choice(["a", "B", "ü", "x" * 100]),
                            "v" * r.choice([1, 100, 2048, 3000])))
            elif k == 3:
                out.append(("Content-MD5", r.choice(["", "AAAA", "====",
                                                     "x" * 24, "1B2M2Y8AsgTpgAmY7PhCfg=="])))
            elif k == 4:
                out.append(("x-amz-checksum-" + r.choice(
                    ["crc32", "crc32c", "sha1", "sha256", "md5", "x"]),
                    r.choice(["", "AAAAAA==", "!!", "x" * 100])))
            elif k == 5:
                out.append(("x-amz-acl", r.choice([
                    "private", "public-read", "public-read-write",
                    "authenticated-read", "bucket-owner-full-control",
                    "bogus", ""])))
            elif k == 6:
                out.append((r.choice(["x-amz-grant-read", "x-amz-grant-write",
                                      "x-amz-grant-full-control"]),
                            r.choice(['id="x"', 'uri="http://acs.amazonaws'
                                      '.com/groups/global/AllUsers"',
                                      'emailAddress="a@b"', "=" * 50,
                                      ", ".join(['id="a"'] * 300)])))
            elif k == 7:
                src = r.choice(FUZZ_BUCKETS + [CANARY]).encode() + b"/" + \
                    self.key(r)
                if r.random() < 0.3:
                    src = hostile_text(r, 2000)
                out.append(("x-amz-copy-source",
                            quote_bytes(src, b"/-_.~") if r.random() < 0.7
                            else src.decode("latin-1")))
                if r.random() < 0.3:
                    out.append(("x-amz-copy-source-range", r.choice(
                        ["bytes=0-0", "bytes=5-1", "bytes=-1", "x"])))
                if r.random() < 0.3:
                    out.append(("x-amz-metadata-directive",
                                r.choice(["COPY", "REPLACE", "x"])))
            elif k == 8:
                out.append(("x-amz-storage-class",
                            r.choice(["STANDARD", "GLACIER", "x" * 100])))
            elif k == 9:
                out.append(("Content-Type", hostile_text(r).decode("latin-1")
                            .replace("\r", "").replace("\n", "")))
            elif k == 10:
                out.append(("x-amz-decoded-content-length",
                            r.choice(fuzzlib.NUMBERS)))
            elif k == 11:
                out.append(("Expect", "100-continue"))
            elif k == 12:
                out.append(("x-amz-tagging", "a=b&" * r.randrange(1, 200)))
            else:
                out.append(("x-amz-date", r.choice(["", "x", "20991231T000000Z"])))
        return [(k, v) for k, v in out
                if "\r" not in v and "\n" not in v and "\x00" not in v]

    def body(self, r, method, sub):
        names = [k for k, _ in sub]
        if method == "PUT" and b"acl" in names:
            grant = ('<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/'
                     'XMLSchema-instance" xsi:type="CanonicalUser"><ID>x</ID>'
                     '</Grantee><Permission>READ</Permission></Grant>')
            kids = ["<Owner><ID>x</ID></Owner>", "<AccessControlList>" +
                    grant * r.choice([1, 100, 101, 5000]) +
                    "</AccessControlList>"]
            return hostile_xml(r, "AccessControlPolicy", kids)
        if method == "POST" and b"delete" in names:
            n = r.choice([0, 1, 1000, 1001, 5000])
            objs = "".join(f"<Object><Key>k{j}</Key></Object>"
                           for j in range(n))
            if r.random() < 0.5:
                return hostile_xml(r, "Delete", [objs])
            key = hostile_text(r).decode("latin-1")
            return (f"<Delete><Quiet>{r.choice(['true', 'x', ''])}</Quiet>"
                    f"<Object><Key>{key}</Key><VersionId>"
                    f"{r.choice(fuzzlib.NUMBERS)}</VersionId></Object>"
                    f"{objs}</Delete>").encode("latin-1", "replace")
        if method == "POST" and b"uploadId" in names:
            n = r.choice([0, 1, 2, 10000, 10001, 20000])
            parts = "".join(
                f"<Part><PartNumber>{r.choice(['1', str(j), '-1', '0', '99999999999999999999', 'x'])}"
                f"</PartNumber><ETag>\"{'0' * 32}\"</ETag></Part>"
                for j in range(1, n + 1))
            return hostile_xml(r, "CompleteMultipartUpload", [parts])
        if method == "PUT" and not names and r.random() < 0.3:
            return hostile_xml(r, "CreateBucketConfiguration",
                               ["<LocationConstraint>" +
                                r.choice(["us-east-1", "eu", "x" * 1000]) +
                                "</LocationConstraint>"])
        if method in ("PUT", "POST"):
            return r.randbytes(r.choice([0, 1, 100, 65536, 65537, 300_000]))
        return b""

    # the whole case
    def case(self, r, i):
        kind = r.randrange(100)
        if kind < 4:
            return self.slow_or_cut(r)
        if kind < 10:
            return self.chunked(r)
        if kind < 14:
            return self.raw_garbage(r)
        method = r.choice(["GET", "GET", "PUT", "PUT", "POST", "DELETE",
                           "HEAD", "OPTIONS", "PATCH", "GET"])
        target = r.randrange(10)
        if target == 0:
            path = b"/"
        elif target < 3:
            path = b"/" + self.bucket(r)
        else:
            path = b"/" + self.bucket(r) + b"/" + self.key(r)
        if self.uploads and r.random() < 0.25 and method in ("PUT", "POST",
                                                             "GET", "DELETE"):
            b, k, uid = r.choice(self.uploads)
            path = f"/{b}/{k}".encode()
            sub = [(b"uploadId", uid.encode())]
            if method == "PUT":
                sub.append((b"partNumber", r.choice(
                    fuzzlib.NUMBERS + ["1", "2", "10000"]).encode()))
        else:
            sub = self.sub(r)
        body = self.body(r, method, sub)
        headers = self.headers(r)
        return self.finish(r, method, path, sub, headers, body)

    def finish(self, r, method, path, sub, headers, body, label=None):
        raw_path = quote_bytes(path, b"/-_.~")
        q = query_string(sub)
        target = raw_path + ("?" + q if q else "")
        host = f"127.0.0.1:{self.port}"
        url = f"http://{host}{target}"
        how = r.randrange(20)
        if how < 16:
            signed = sigv4_headers(self.alice, "s3", REGION, method, url,
                                   headers, body, s3=True)
            how_s = "signed"
        elif how == 16:
            signed = list(headers)
            how_s = "unsigned"
        elif how == 17:
            signed = sigv4_headers(self.alice, "s3", REGION, method, url,
                                   headers, body, s3=True)
            signed = [(k, v[:-8] + "00000000") if k == "Authorization"
                      else (k, v) for k, v in signed]
            how_s = "bad signature"
        elif how == 18:
            signed = list(headers) + [("Authorization", r.choice([
                "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=",
                "AWS4-HMAC-SHA256 Credential=" + "/" * 500,
                f"AWS4-HMAC-SHA256 Credential={self.alice[0]}/20991231/"
                "us-east-1/s3/aws4_request, SignedHeaders=" + ";" * 300 +
                ", Signature=" + "0" * 64,
                f"AWS {self.alice[0]}:" + "A" * 28, "AWS :", "AWS " + "x" * 5000,
                "Basic dXNlcjpwYXNz", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e,"
                " SignedHeaders=host, Signature=zz", "\x7f" * 10])),
                ("x-amz-date", s3raw.amz_now()),
                ("x-amz-content-sha256", r.choice(
                    ["UNSIGNED-PAYLOAD", "x", "0" * 64,
                     "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"]))]
            how_s = "garbled authorization"
        else:   # presigned-looking query
            pq = [(b"X-Amz-Algorithm", r.choice([b"AWS4-HMAC-SHA256", b"x"])),
                  (b"X-Amz-Credential", self.alice[0].encode() +
                   r.choice([b"/20240101/us-east-1/s3/aws4_request", b"/",
                             b"/" * 100, b""])),
                  (b"X-Amz-Date", r.choice([b"20240101T000000Z", b"x",
                                            b"99999999T999999Z"])),
                  (b"X-Amz-Expires", r.choice(fuzzlib.NUMBERS).encode()),
                  (b"X-Amz-SignedHeaders", r.choice([b"host", b"", b";;"])),
                  (b"X-Amz-Signature", r.choice([b"0" * 64, b"x", b""]))]
            if r.random() < 0.3:
                pq = [(b"AWSAccessKeyId", self.alice[0].encode()),
                      (b"Expires", r.choice(fuzzlib.NUMBERS).encode()),
                      (b"Signature", hostile_text(r))]
            q2 = query_string(sub + pq)
            target = raw_path + "?" + q2
            signed = list(headers)
            how_s = "presigned garbage"
        signed = [("Host", host)] + [(k, v) for k, v in signed
                                     if k.lower() != "host"]
        label = label or f"{how_s} {method} {target[:80]}"
        framing = r.randrange(12)
        reply_optional = False
        if framing == 0 and body:
            # Content-Length says more than is sent: the server waits for
            # the rest, the client gives up.
            signed.append(("Content-Length", str(len(body) + 10)))
            data = http_request(method, target, signed, body)
            return Case(label + " [long Content-Length]", data=data,
                        check=self.check(method), reply_optional=True,
                        timeout=0.3, head_request=method == "HEAD")
        if framing == 1 and body:
            signed.append(("Content-Length", str(max(0, len(body) - 5))))
            reply_optional = True   # the rest is a garbage next request
        elif framing == 2 and body:
            signed.append(("Content-Length", str(len(body))))
            data = http_request(method, target, signed, body)
            return Case(label + " [cut mid-body]",
                        data=data[:r.randrange(len(data) - len(body),
                                               len(data))], cut=True)
        elif framing == 3:
            signed.append(("Transfer-Encoding", "chunked"))
            body = s3raw.http_chunked(body, r.choice([1, 100, 7000])) \
                if r.random() < 0.8 else hostile_text(r)
            reply_optional = True
        elif framing == 4:
            signed.append(("Content-Length", r.choice(
                ["-1", "x", "99999999999999999999", "1 1", "+5", "0x10"])))
            reply_optional = True
        elif framing == 5:
            signed.append(("Content-Length", str(len(body))))
            signed.append(("Content-Length", str(len(body) + 1)))
            reply_optional = True
        else:
            signed.append(("Content-Length", str(len(body))))
        signed.append(("Connection", "close"))
        data = http_request(method, target, signed, body)
        return Case(label, data=data, check=self.check(method),
                    reply_optional=reply_optional,
                    head_request=method == "HEAD")

    def check(self, method):
        return lambda reply: fuzzlib.check_s3_reply(reply, method)

    def chunked(self, r):
        """aws-chunked bodies (chunk signatures, unsigned trailers) with
        hostile framing: bad sizes, bad signatures, bad trailers."""
        key = f"chunked-{r.randrange(10)}"
        data = r.randbytes(r.choice([0, 1, 1000, 70000]))
        seeded = r.random() < 0.6
        payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" if seeded else \
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        hdrs = {"Content-Encoding": "aws-chunked",
                "x-amz-decoded-content-length": str(len(data))}
        if not seeded:
            hdrs["x-amz-trailer"] = "x-amz-checksum-crc32"
        req = s3raw.Signed(_Creds(*self.alice),
                           "PUT", f"/fz-a/{key}", headers=hdrs,
                           payload_hash=payload,
                           host=f"127.0.0.1:{self.port}")
        if seeded:
            body = s3raw.chunked_signed(req, data, r.choice([1000, 8192, 65536]))
        else:
            body = s3raw.chunked_unsigned(data, 8192, {
                "x-amz-checksum-crc32": r.choice(["AAAAAA==", "x", ""])})
        k = r.randrange(9)
        if k == 0:   # hex overflow in the size
            body = b"ffffffffffffffffffff;chunk-signature=" + b"0" * 64 + \
                b"\r\n" + body
        elif k == 1:
            body = b"-1;chunk-signature=" + b"0" * 64 + b"\r\n" + body
        elif k == 2:  # a size larger than what follows
            body = b"10000;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n"
        elif k == 3:  # no CRLF at all
            body = body.replace(b"\r\n", b"")
        elif k == 4:  # a flipped byte anywhere
            if body:
                p = r.randrange(len(body))
                body = body[:p] + bytes([body[p] ^ 0x5a]) + body[p + 1:]
        elif k == 5:  # an extension that never ends
            body = b"1;" + b"x" * 100000 + b"\r\na\r\n"
        elif k == 6:  # truncated
            body = body[:r.randrange(len(body) + 1)]
        elif k == 7:  # trailers without end
            body = b"0\r\n" + b"x-amz-checksum-crc32:AAAA\r\n" * 1000
        headers = dict(req.headers)
        te = r.random() < 0.4
        if te:
            headers["Transfer-Encoding"] = "chunked"
            wire = s3raw.http_chunked(body, 5000)
        else:
            headers["Content-Length"] = str(len(body))
            wire = body
        headers["Connection"] = "close"
        data_ = http_request("PUT", req.target(), list(headers.items()), wire)
        return Case(f"aws-chunked {payload} mutation {k}", data=data_,
                    check=self.check("PUT"), reply_optional=k in (2, 6),
                    timeout=2.0 if k in (2, 6) else None)

    def raw_garbage(self, r):
        """Not quite HTTP: the server may close without a reply, but must
        not fall over."""
        k = r.randrange(8)
        host = f"127.0.0.1:{self.port}"
        if k == 0:
            data = hostile_text(r) + b"\r\n\r\n"
        elif k == 1:
            data = b"GET /" + b"a" * r.choice([8000, 70000, 300000]) + \
                b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
        elif k == 2:
            data = (b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" +
                    b"".join(b"X-H%d: v\r\n" % j for j in range(2000)) + b"\r\n")
        elif k == 3:
            data = (b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" +
                    b"X-Big: " + b"v" * 20000 + b"\r\n\r\n")
        elif k == 4:
            data = b"GET / HTTP/9.9\r\n\r\n"
        elif k == 5:
            data = b"GET / HTTP/1.1\r\nHost: " + host.encode() + \
                b"\r\nBad Header\r\n\r\n"
        elif k == 6:   # pipelined: a good request then garbage
            data = b"GET /fz-a HTTP/1.1\r\nHost: " + host.encode() + \
                b"\r\n\r\n" + hostile_text(r)
        else:
            data = b"GET / HTTP/1.0\r\nHost: \x00\xff\r\n\r\n"
        return Case(f"raw garbage {k}", data=data, reply_optional=True,
                    timeout=2.0,
                    check=lambda rep: None if rep.status in (400, 403, 404,
                                                             405, 413, 414,
                                                             431, 505)
                    or fuzzlib.check_s3_reply(rep, "GET") is None
                    else f"odd status {rep.status}")

    def slow_or_cut(self, r):
        body = r.randbytes(r.choice([10, 5000, 70000]))
        path = f"/fz-a/slow-{r.randrange(5)}"
        url = f"http://127.0.0.1:{self.port}{path}"
        h = sigv4_headers(self.alice, "s3", REGION, "PUT", url, [], body,
                          s3=True)
        h = [("Host", f"127.0.0.1:{self.port}")] + h + \
            [("Content-Length", str(len(body))), ("Connection", "close")]
        data = http_request("PUT", path, h, body)
        if r.random() < 0.5:
            return Case("slow PUT", pieces=fuzzlib.slow_pieces(
                r, data, r.uniform(0.1, 0.8)), check=self.check("PUT"))
        return Case("cut PUT", data=data[:r.randrange(1, len(data))],
                    cut=True)


class _Creds:
    def __init__(self, key, secret):
        self.key, self.secret = key, secret


# ---- the fuzz run ---------------------------------------------------------------

def test_fuzz_walrus(fz_walrus, tmp_path):
    w = fz_walrus
    want = write_canaries(w)
    s3 = s3_client(w.endpoint, w.alice)
    for b in FUZZ_BUCKETS:
        s3.create_bucket(Bucket=b)
    uploads = []
    for j in range(3):
        k = f"up-{j}"
        uploads.append(("fz-a", k, s3.create_multipart_upload(
            Bucket="fz-a", Key=k)["UploadId"]))
    gen = S3Gen(w, uploads)

    def restart():
        w.stop(timeout=5)
        w.start()

    run = FuzzRun("walrus", w, w.port, tmp_path, restart=restart)
    try:
        run.run(gen.case, fuzzlib.SECONDS)
    finally:
        print(run.report())
    # still serving, and bob's data as it was
    got, listed = read_canaries(w, want)
    assert got == want
    assert listed == sorted(want)
    run.assert_clean()


# ---- the known hostile requests, each a test ----------------------------------

def one(w, data, method="PUT", timeout=20.0, tls=None, budget=None):
    """Sends one request; the oracles; returns the reply."""
    budget = budget or fuzzlib.CPU_BUDGET
    c0 = fuzzlib.cpu_seconds(w.proc.pid)
    ex = fuzzlib.exchange(w.port, data, timeout=timeout, tls=tls)
    c1 = fuzzlib.cpu_seconds(w.proc.pid)
    time.sleep(0.1)
    assert w.proc.poll() is None, \
        f"walrus died ({w.proc.returncode}):\n{w.log_text()[-3000:]}"
    rep = fuzzlib.sanitizer_lines(w.log_text())
    assert not rep, rep
    cpu = (c1 or 0) - (c0 or 0)
    print(f"CPU {cpu:.3f} s, wall {ex.wall:.3f} s, {ex.reply!r}")
    assert cpu <= budget, f"{cpu:.2f} s of CPU for one request " \
        f"(and counting: {ex.error})" if ex.reply is None else ""
    assert ex.reply is not None, f"no reply: {ex.error} after {ex.wall:.1f} s"
    bad = fuzzlib.check_s3_reply(ex.reply, method)
    assert bad is None, bad
    return ex.reply


def signed_put(w, target, headers, body=b"", method="PUT", creds=None):
    creds = creds or (w.alice.key, w.alice.secret)
    host = f"127.0.0.1:{w.port}"
    h = sigv4_headers(creds, "s3", REGION, method,
                      f"http://{host}{target}", headers, body, s3=True)
    return http_request(method, target,
                        [("Host", host)] + h +
                        [("Content-Length", str(len(body))),
                         ("Connection", "close")], body)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("op", ["copy", "part-copy"])
def test_copy_source_key_over_1024(fresh_walrus, signed, op):
    """x-amz-copy-source with a 1025-byte key (a double free in
    s3_copy_source, before any authentication)."""
    w = fresh_walrus
    s3_client(w.endpoint, w.alice).create_bucket(Bucket="bkt")
    src = "bkt/" + "k" * 1025
    target = "/bkt/x" if op == "copy" else "/bkt/x?partNumber=1&uploadId=abc"
    if signed:
        data = signed_put(w, target, [("x-amz-copy-source", src)])
    else:
        data = http_request("PUT", target, [
            ("Host", f"127.0.0.1:{w.port}"), ("x-amz-copy-source", src),
            ("Content-Length", "0"), ("Connection", "close")])
    r = one(w, data)
    assert 400 <= r.status < 500


def xml_with_attributes(root, n, limit=None):
    attrs = " ".join(f'a{i}="{i}"' for i in range(n))
    doc = f"<{root} {attrs}></{root}>".encode()
    if limit and len(doc) > limit:
        # as many as fit under the limit
        attrs = attrs[:limit - len(root) * 2 - 10].rsplit(" ", 1)[0]
        doc = f"<{root} {attrs}></{root}>".encode()
    return doc


@pytest.mark.parametrize("what", [
    "acl-100k-attributes", "acl-2MiB-attributes", "complete-attributes",
    "delete-attributes", "acl-deep", "acl-long-text", "acl-many-elements"])
def test_xml_body_cost(fresh_walrus, what):
    """Each XML body Walrus reads, at its worst under the 2 MiB limit,
    stays within the CPU budget and gets S3's error."""
    w = fresh_walrus
    s3 = s3_client(w.endpoint, w.alice)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="o", Body=b"x")
    limit = 2 * 1024 * 1024
    if what == "acl-100k-attributes":
        target, body = "/bkt?acl=", xml_with_attributes(
            "AccessControlPolicy", 100_000)
    elif what == "acl-2MiB-attributes":
        target, body = "/bkt/o?acl=", xml_with_attributes(
            "AccessControlPolicy", 400_000, limit)
    elif what == "complete-attributes":
        uid = s3.create_multipart_upload(Bucket="bkt", Key="m")["UploadId"]
        target, body = f"/bkt/m?uploadId={quote_bytes(uid)}", \
            xml_with_attributes("CompleteMultipartUpload", 400_000, limit)
    elif what == "delete-attributes":
        target, body = "/bkt?delete=", xml_with_attributes(
            "Delete", 400_000, limit)
    elif what == "acl-deep":
        d = (limit - 60) // 7
        body = ("<AccessControlPolicy>" + "<a>" * d + "</a>" * d +
                "</AccessControlPolicy>").encode()[:limit]
        target = "/bkt?acl="
    elif what == "acl-long-text":
        body = ("<AccessControlPolicy>" + "x" * (limit - 60) +
                "</AccessControlPolicy>").encode()
        target = "/bkt?acl="
    else:
        body = ("<AccessControlPolicy>" + "<a/>" * ((limit - 60) // 4) +
                "</AccessControlPolicy>").encode()
        target = "/bkt?acl="
    assert len(body) <= limit
    method = "POST" if what in ("complete-attributes",
                                "delete-attributes") else "PUT"
    headers = []
    if method == "POST" and "delete" in target:
        import base64
        headers = [("Content-MD5", base64.b64encode(
            hashlib.md5(body).digest()).decode())]
    r = one(w, signed_put(w, target, headers, body, method=method),
            method=method, timeout=8)
    assert 400 <= r.status < 500, r


def test_oversized_headers_and_urls(fresh_walrus):
    """Header sections over the limit, long URLs, many headers: S3's
    error, not a bare close."""
    w = fresh_walrus
    host = f"127.0.0.1:{w.port}"
    big = http_request("GET", "/", [("Host", host), ("X-Big", "v" * 20000),
                                    ("Connection", "close")])
    r = one(w, big, method="GET")
    assert r.status in (400, 431) and r.body, r
    many = http_request("GET", "/", [("Host", host)] +
                        [(f"X-H{j}", "v") for j in range(3000)] +
                        [("Connection", "close")])
    r = one(w, many, method="GET")
    assert r.status >= 400
    url = http_request("GET", "/b/" + "k" * 12000, [("Host", host),
                                                    ("Connection", "close")])
    r = one(w, url, method="GET")
    assert r.status >= 400


@pytest.mark.parametrize("n", [1000, 1400, 3000])
def test_many_query_parameters(fresh_walrus, n):
    """A GET with n query parameters (10 KB at 1400) gets S3's answer at
    once (it got none at all: the connection hung until the idle
    timeout)."""
    w = fresh_walrus
    q = "&".join(f"p{i}=v" for i in range(n))
    r = one(w, http_request("GET", f"/b?{q}", [
        ("Host", f"127.0.0.1:{w.port}"), ("Connection", "close")]),
        method="GET", timeout=3)
    assert 400 <= r.status < 500


def test_slow_clients_do_not_stall_others(fresh_walrus):
    """Forty connections dripping their headers a byte every half second
    do not keep a well-behaved client waiting."""
    w = fresh_walrus
    s3 = s3_client(w.endpoint, w.alice)
    s3.create_bucket(Bucket="bkt")
    head = http_request("PUT", "/bkt/slow", [
        ("Host", f"127.0.0.1:{w.port}"), ("Content-Length", "100")])
    loris = fuzzlib.Slowloris(w.port, head, n=40)
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        s3.put_object(Bucket="bkt", Key="k", Body=b"v")
        assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"v"
        took = time.monotonic() - t0
        assert took < 5, f"a normal request took {took:.1f} s"
    finally:
        loris.close()
    assert w.proc.poll() is None


@pytest.mark.parametrize("what", ["stalled-body", "busy-request",
                                  "unanswered-request"])
def test_sigterm_during_request_exits_cleanly(fresh_walrus, what):
    """SIGTERM while a request is under way (its body stalled half-way,
    or a long one being worked on) ends Walrus with exit code 0."""
    w = fresh_walrus
    s3_client(w.endpoint, w.alice).create_bucket(Bucket="bkt")
    if what == "stalled-body":
        body = os.urandom(4 << 20)
        full = signed_put(w, "/bkt/big", [], body)
        data = full[:len(full) - len(body) // 2]
    elif what == "busy-request":
        body = xml_with_attributes("AccessControlPolicy", 60_000)
        data = signed_put(w, "/bkt?acl=", [], body)
    else:   # one that gets no reply (test_many_query_parameters)
        q = "&".join(f"p{i}=v" for i in range(1400))
        data = http_request("GET", f"/bkt?{q}",
                            [("Host", f"127.0.0.1:{w.port}")])
    rc = fuzzlib.sigterm_during(w.proc, w.port, data)
    log = w.log_text()
    w.proc = None
    w.log.close()
    assert rc == 0, f"exit {rc}:\n{log[-3000:]}"
    assert not fuzzlib.sanitizer_lines(log)
