"""Fixtures shared by the integration suites: real koala daemons started from
the build directory on 127.0.0.1, and the real clients (Debian's aws-cli,
python3-boto3, s3cmd) pointed at them; sh() for other commands, PKI for
certificates from `koala ca`, and Netns for the network namespaces the
compute suites create (and delete).

Daemons are started with their own data directory under pytest's tmp_path
and stopped by the PID this file started; nothing else is ever signalled.
"""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

from soapclient import client_context

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("KOALA_BUILD_DIR", ROOT / "build"))
WALRUS_BIN = BUILD / "src" / "walrus" / "koala-walrus"
KOALA_BIN = BUILD / "src" / "cli" / "koala"
AWS_BIN = "/usr/bin/aws"       # Debian's aws-cli, whatever else is on PATH
S3CMD_BIN = "/usr/bin/s3cmd"
DOMAIN = "s3.koala.test"       # virtual-host-style suffix (see resolve below)
REGION = "us-east-1"


def sh(*args, check=True, timeout=600, **kw):
    """Runs a command (arguments made strings); CompletedProcess (text)."""
    return subprocess.run([str(a) for a in args], check=check,
                          capture_output=True, text=True, timeout=timeout,
                          **kw)


def wait_until(fn, timeout=60.0, step=0.1, what="condition"):
    """fn's first truthy answer, asked every step seconds; fails after
    timeout with the last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


_ports_given = set()


def free_port():
    """A port free now and never handed out before in this process: the
    kernel may offer the same ephemeral port to two calls in a row (a
    cloud's CLC once got one port for both its listeners)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_port(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


class Process:
    """A daemon the test starts and stops, only by its PID.  A subclass sets
    port and log_path and says its command line in argv()."""
    proc = None
    start_timeout = 20.0  # seconds until it listens on port
    stop_timeout = 30     # seconds after the signal, then SIGKILL

    def argv(self):
        raise NotImplementedError

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(a) for a in self.argv()],
                                     stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, timeout=self.start_timeout)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Stops it (sig, then SIGKILL after timeout); its exit code."""
        timeout = self.stop_timeout if timeout is None else timeout
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        return rc

    def log_text(self):
        return Path(self.log_path).read_text(errors="replace")


class PKI:
    """A certificate authority of `koala ca` in a directory, and the
    certificates it issues there for 127.0.0.1 (name.pem, name.key)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.ca = self.dir / "ca.pem"

    @classmethod
    def create(cls, d):
        """A new CA in d (`koala ca create`)."""
        sh(KOALA_BIN, "ca", "create", d)
        return cls(d)

    def issue(self, name, server=True):
        """(cert, key) for name, issued once: a client certificate, and a
        server one too unless server is false."""
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        if not cert.exists():
            sh(KOALA_BIN, "ca", "issue", self.dir, name, "--cert", cert,
               "--key", key, "--san", "IP:127.0.0.1",
               *(["--server"] if server else []), "--client")
        return cert, key

    def ctx(self, name):
        """A client TLS context with name's certificate."""
        cert, key = self.issue(name)
        return client_context(self.ca, cert, key)


_ns_seq = [0]


class Netns:
    """A network namespace with lo up, named prefix, PID, tag and a counter
    so that the name is unique in this process; whoever makes one deletes
    it with delete()."""

    def __init__(self, tag="", prefix="kt"):
        _ns_seq[0] += 1
        self.name = f"{prefix}{os.getpid()}{tag}-{_ns_seq[0]}"
        sh("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args, check=True):
        """`ip -n NAME ...`."""
        return sh("ip", "-n", self.name, *args, check=check)

    def run(self, *args, check=True):
        """A command run inside the namespace."""
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)


class Walrus(Process):
    """One koala-walrus process and its data directory."""

    def __init__(self, data_dir, port=None, extra_args=()):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = self.data_dir.parent / f"walrus-{self.port}.log"
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def argv(self):
        return [WALRUS_BIN, "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", self.data_dir, "--domain", DOMAIN,
                "--log-level", "info"] + self.extra_args

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return super().start()

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def add_user(self, name):
        out = subprocess.run(
            [str(KOALA_BIN), "walrus", "add-user", name,
             "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, text=True).stdout
        kv = dict(line.split("=", 1) for line in out.split())
        return Creds(kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"])


class Creds:
    def __init__(self, key, secret):
        self.key = key
        self.secret = secret


def s3_client(endpoint, creds, addressing="path", sigv="s3v4", **cfg):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=creds.key, aws_secret_access_key=creds.secret,
        config=botocore.config.Config(
            signature_version=sigv, s3={"addressing_style": addressing},
            retries={"max_attempts": 1}, **cfg))


@pytest.fixture(scope="session")
def walrus(tmp_path_factory):
    """A koala-walrus shared by the tests of a session, with two accounts."""
    if not WALRUS_BIN.exists():
        pytest.fail(f"{WALRUS_BIN} is not built (scripts/build.sh)")
    base = tmp_path_factory.mktemp("walrus")
    w = Walrus(base / "data").start()
    w.alice = w.add_user("alice")
    w.bob = w.add_user("bob")
    yield w
    rc = w.stop()
    # A clean shutdown is part of the contract (and ASan reports leaks here).
    assert rc == 0, f"koala-walrus exited with {rc}:\n{w.log_text()[-4000:]}"


@pytest.fixture
def s3(walrus):
    return s3_client(walrus.endpoint, walrus.alice)


@pytest.fixture
def s3_bob(walrus):
    return s3_client(walrus.endpoint, walrus.bob)


_bucket_seq = [0]


@pytest.fixture
def bucket(s3, request):
    """A fresh bucket owned by alice, emptied and removed afterwards."""
    _bucket_seq[0] += 1
    name = f"t{_bucket_seq[0]}-{request.node.name[:30].lower()}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    name = name.strip("-")[:63]
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


def empty_bucket(s3, name):
    # Settings a test may have left that would lock the owner out.
    for reset in (s3.delete_bucket_policy, s3.delete_public_access_block,
                  s3.delete_bucket_ownership_controls):
        try:
            reset(Bucket=name)
        except botocore.exceptions.ClientError:
            pass
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"],
                                  UploadId=up["UploadId"])
    token = None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=name, **kw)
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    # What versioning kept: noncurrent versions and delete markers.
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        gone = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get(
                    "DeleteMarkers", [])]
        if gone:
            s3.delete_objects(Bucket=name, Delete={"Objects": gone})


@pytest.fixture
def cli_env(walrus, tmp_path):
    """Environment for aws-cli and s3cmd as alice, with config files in a
    temporary home so nothing of the machine's own configuration leaks in."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "AWS_ACCESS_KEY_ID": walrus.alice.key,
        "AWS_SECRET_ACCESS_KEY": walrus.alice.secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_PAGER": "",
        "LANG": "C.UTF-8",
    }
    (home / "aws-config").write_text("[default]\n")
    (home / "aws-credentials").write_text("")
    s3cfg = home / ".s3cfg"
    s3cfg.write_text(
        "[default]\n"
        f"access_key = {walrus.alice.key}\n"
        f"secret_key = {walrus.alice.secret}\n"
        f"host_base = 127.0.0.1:{walrus.port}\n"
        f"host_bucket = 127.0.0.1:{walrus.port}\n"
        "use_https = False\n"
        f"bucket_location = {REGION}\n"
        "signature_v2 = False\n")
    env["S3CFG"] = str(s3cfg)
    return env


def run(cmd, env, check=True, input=None, timeout=600):
    """Runs a client command; returns CompletedProcess (text)."""
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} -> {p.returncode}\n"
            f"stdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
    return p


def qmp_command(sock_path, *commands):
    """Talks to a QEMU monitor directly (while koala-nc is down); returns
    the events seen."""
    d = os.open(sock_path.parent, os.O_PATH)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(90)
    events = []
    try:
        s.connect(f"/proc/self/fd/{d}/{sock_path.name}")
        f = s.makefile("rw")
        f.readline()
        for c in ("qmp_capabilities",) + commands:
            f.write(json.dumps({"execute": c}) + "\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if "event" in msg:
                    events.append(msg)
                else:
                    break
        return f, events
    finally:
        os.close(d)
