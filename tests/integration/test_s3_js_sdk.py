"""Walrus against the AWS SDK for JavaScript v3 (from npm, pinned in
tests/integration/js/package-lock.json): a current SDK with its defaults.
Over HTTPS it streams uploads as aws-chunked bodies with a CRC32 trailer
(STREAMING-UNSIGNED-PAYLOAD-TRAILER); Debian's python3-boto3 and aws-cli
predate that behaviour, so this is the suite's real client for it.  The
Walrus here serves HTTPS with a certificate from a CA made by `koala ca`."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import KOALA_BIN, Walrus

JS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def node():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed (scripts/deps.sh installs them)")
    if not (JS / "node_modules" / "@aws-sdk" / "client-s3").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS,
                       check=True, capture_output=True, timeout=600)
    return node


@pytest.fixture
def https_walrus(tmp_path):
    ca = tmp_path / "ca"
    ca.mkdir()
    subprocess.run([str(KOALA_BIN), "ca", "create", str(ca)], check=True)
    subprocess.run([str(KOALA_BIN), "ca", "issue", str(ca), "walrus",
                    "--cert", str(ca / "walrus.pem"),
                    "--key", str(ca / "walrus.key"),
                    "--san", "IP:127.0.0.1", "--server"], check=True)
    w = Walrus(tmp_path / "data", extra_args=[
        "--tls-cert", str(ca / "walrus.pem"), "--tls-key",
        str(ca / "walrus.key"), "--log-level", "info,walrus=debug"]).start()
    w.endpoint = f"https://127.0.0.1:{w.port}"
    w.ca_file = ca / "ca.pem"
    w.user = w.add_user("js")
    yield w
    assert w.stop() == 0


def test_js_sdk_v3_https(https_walrus, node):
    w = https_walrus
    env = dict(os.environ,
               AWS_ACCESS_KEY_ID=w.user.key,
               AWS_SECRET_ACCESS_KEY=w.user.secret,
               AWS_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               NODE_EXTRA_CA_CERTS=str(w.ca_file))
    p = subprocess.run([node, "s3_sdk_v3.mjs", w.endpoint, "js-sdk-v3"],
                       cwd=JS, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    assert "ok cleanup" in p.stdout
    # The SDK really streamed with a trailer (the path this test exists for).
    assert "payload STREAMING-UNSIGNED-PAYLOAD-TRAILER" in w.log_text()


def test_js_sdk_v3_cors(https_walrus, node):
    """What a page using the SDK makes a browser do: preflight, then the
    signed request, CORS headers checked as the browser would."""
    w = https_walrus
    env = dict(os.environ,
               AWS_ACCESS_KEY_ID=w.user.key,
               AWS_SECRET_ACCESS_KEY=w.user.secret,
               AWS_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               NODE_EXTRA_CA_CERTS=str(w.ca_file))
    p = subprocess.run([node, "s3_cors_v3.mjs", w.endpoint, "js-cors"],
                       cwd=JS, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    assert "ok cleanup" in p.stdout


def test_js_browser_form_upload(https_walrus, node):
    """A browser's POST upload (signed policy, preflight, FormData), read
    back with the SDK."""
    w = https_walrus
    env = dict(os.environ,
               AWS_ACCESS_KEY_ID=w.user.key,
               AWS_SECRET_ACCESS_KEY=w.user.secret,
               AWS_REGION="us-east-1",
               AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               NODE_EXTRA_CA_CERTS=str(w.ca_file))
    p = subprocess.run([node, "s3_post_v3.mjs", w.endpoint, "js-post"],
                       cwd=JS, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    assert "ok cleanup" in p.stdout
