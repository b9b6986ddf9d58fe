"""A user of a real cloud, end to end, on the Debian 12 cloud guest
(tests/images/debian.sh): aws-cli creates a key pair, registers the
image, launches it with the key and user data (gzip-compressed MIME
multipart: a shell script and a #cloud-config, both run by cloud-init's
own handling); boto3 waits for instance-status-ok; ssh with the private
key from the cluster's namespace finds what the user data did, the
hostname, the metadata service (IMDSv1 and an IMDSv2 token round trip,
HttpTokens=required refusing a tokenless GET), and the identity document,
verified here with the cloud's CA.  One boot (TCG is slow)."""
import base64
import gzip
import json
import shlex
import subprocess
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from cloud import IMAGES, Cloud
from conftest import wait_until

DEBIAN = Path(IMAGES) / "debian"

SCRIPT = """#!/bin/sh
echo "script ran as $(id -un) on $(hostname)" > /var/tmp/koala-script
"""

CLOUD_CONFIG = """#cloud-config
write_files:
  - path: /etc/koala-cloud-config
    content: |
      written by cloud-config
runcmd:
  - [sh, -c, "echo runcmd > /var/tmp/koala-runcmd"]
"""


def user_data():
    mp = MIMEMultipart()
    mp.attach(MIMEText(SCRIPT, "x-shellscript"))
    mp.attach(MIMEText(CLOUD_CONFIG, "cloud-config"))
    return gzip.compress(mp.as_bytes())


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    for f in ("vmlinuz", "initrd.img", "root.img"):
        if not (DEBIAN / f).exists():
            pytest.fail(f"no Debian guest in {DEBIAN}: run "
                        "tests/images/debian.sh")
    c = Cloud(tmp_path_factory.mktemp("debian"), n_nodes=1, node_cores=4,
              node_memory_mb=4096).start()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("user")


@pytest.fixture(scope="module")
def guest(cloud, home):
    """The instance, launched the way a user does, once it accepts ssh."""
    aws = cloud.aws_ec2(home)
    s3 = cloud.s3()
    s3.create_bucket(Bucket="debian")
    for f in ("vmlinuz", "initrd.img", "root.img"):
        s3.upload_file(str(DEBIAN / f), "debian", f)
    aki = json.loads(aws("register-image", "--name", "debian-12-kernel",
                         "--image-location", "debian/vmlinuz").stdout)["ImageId"]
    ari = json.loads(aws("register-image", "--name", "debian-12-ramdisk",
                         "--image-location",
                         "debian/initrd.img").stdout)["ImageId"]
    ami = json.loads(aws("register-image", "--name", "debian-12",
                         "--image-location", "debian/root.img",
                         "--kernel-id", aki, "--ramdisk-id", ari
                         ).stdout)["ImageId"]
    key = home / "key.pem"
    key.write_text(aws("create-key-pair", "--key-name", "me", "--query",
                       "KeyMaterial", "--output", "text").stdout)
    key.chmod(0o600)
    (home / "ud.gz").write_bytes(user_data())
    t0 = time.monotonic()
    out = json.loads(aws("run-instances", "--image-id", ami,
                         "--instance-type", "t2.micro", "--key-name", "me",
                         "--user-data", f"fileb://{home / 'ud.gz'}").stdout)
    iid = out["Instances"][0]["InstanceId"]
    ec2 = cloud.ec2()
    ec2.get_waiter("instance_status_ok").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    inst = ec2.describe_instances(
        InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    g = {"id": iid, "ip": inst["PrivateIpAddress"], "key": key, "ami": ami,
         "instance": inst, "cloud": cloud}
    wait_until(lambda: ssh(g, "true", check=False).returncode == 0, 300, 2,
               f"{iid} accepting ssh")
    g["ssh_after"] = time.monotonic() - t0
    # cloud-init's own end of boot
    r = ssh(g, "cloud-init status --wait --long", check=False, timeout=300)
    g["status"] = r
    return g


def ssh(g, command, check=True, timeout=60):
    cloud = g["cloud"]
    r = subprocess.run(
        ["ip", "netns", "exec", cloud.cluster_ns, "ssh", "-i", str(g["key"]),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o",
         "LogLevel=ERROR", f"admin@{g['ip']}", command],
        capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (command, r.stdout, r.stderr)
    return r


IMDS_GET = """
import sys, urllib.request, urllib.error
req = urllib.request.Request("http://169.254.169.254" + sys.argv[1],
                             method=sys.argv[2] if len(sys.argv) > 2 else "GET")
for h in sys.argv[3:]:
    k, v = h.split(":", 1)
    req.add_header(k, v.strip())
try:
    r = urllib.request.urlopen(req, timeout=5)
    print(r.status)
    sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
"""


def imds(g, path, method="GET", *headers):
    cmd = "python3 -c " + shlex.quote(IMDS_GET) + " " + " ".join(
        shlex.quote(a) for a in (path, method, *headers))
    out = ssh(g, cmd).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def test_cloud_init_finished_without_errors(guest):
    r = guest["status"]
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "status: done" in r.stdout
    assert "errors: []" in r.stdout or "errors" not in r.stdout
    # no warning banner (ds-identify, datasource not found ...)
    warn = ssh(guest, "ls /var/lib/cloud/instance/warnings/ 2>/dev/null; "
               "sudo grep WARN /run/cloud-init/ds-identify.log | "
               "grep -v 'No dmidecode program'; "
               "sudo grep -i -B3 -A6 'warning' /var/log/cloud-init.log; true")
    assert warn.stdout == "", warn.stdout
    ds = ssh(guest, "cloud-init query platform; cloud-init query "
             "instance_id").stdout.split()
    assert ds == ["ec2", guest["id"]], ds


def test_user_data_script_and_cloud_config_ran(guest):
    out = ssh(guest, "cat /var/tmp/koala-script /etc/koala-cloud-config "
              "/var/tmp/koala-runcmd").stdout
    hostname = ssh(guest, "hostname").stdout.strip()
    assert out == (f"script ran as root on {hostname}\n"
                   "written by cloud-config\nruncmd\n")


def test_hostname_and_name_resolution(guest):
    inst = guest["instance"]
    short = inst["PrivateDnsName"].split(".")[0]
    assert ssh(guest, "hostname").stdout.strip() == short
    # the resolver and domain from DHCP; the cluster's DNS answers the
    # instance's names (/etc/hosts has its own name on 127.0.1.1, as
    # Debian does)
    conf = ssh(guest, "cat /etc/resolv.conf").stdout
    assert "nameserver 10.111.0.1" in conf, conf
    assert "koala-1.compute.internal" in conf, conf
    domain = inst["PrivateDnsName"].split(".", 1)[1]
    got = ssh(guest, f"getent hosts {guest['id']}.{domain} instance-data")
    assert got.stdout.split()[::2] == [guest["ip"], "169.254.169.254"], \
        got.stdout
    assert ssh(guest, "sudo -n true").returncode == 0


def test_metadata_from_the_guest(guest):
    got = ssh(guest, "curl -s http://169.254.169.254/latest/meta-data/"
              "instance-id").stdout
    assert got == guest["id"]
    status, body = imds(guest, "/latest/meta-data/instance-id")
    assert (status, body) == (200, guest["id"])
    status, tok = imds(guest, "/latest/api/token", "PUT",
                       "X-aws-ec2-metadata-token-ttl-seconds: 60")
    assert status == 200 and tok
    status, body = imds(guest, "/latest/meta-data/local-ipv4", "GET",
                        f"X-aws-ec2-metadata-token: {tok}")
    assert (status, body) == (200, guest["ip"])
    status, keys = imds(guest, "/latest/meta-data/public-keys/")
    assert (status, keys) == (200, "0=me")
    # the key cloud-init installed is the one of the metadata
    status, key = imds(guest, "/latest/meta-data/public-keys/0/openssh-key")
    auth = ssh(guest, "cat ~/.ssh/authorized_keys").stdout
    assert key.strip() in auth


def test_tokens_required(guest):
    ec2 = guest["cloud"].ec2()
    ec2.modify_instance_metadata_options(InstanceId=guest["id"],
                                         HttpTokens="required")
    wait_until(lambda: ec2.describe_instances(InstanceIds=[guest["id"]])
               ["Reservations"][0]["Instances"][0]["MetadataOptions"]
               ["State"] == "applied", 30, 0.5, "options applied")
    assert imds(guest, "/latest/meta-data/instance-id")[0] == 401
    status, tok = imds(guest, "/latest/api/token", "PUT",
                       "X-aws-ec2-metadata-token-ttl-seconds: 60")
    assert imds(guest, "/latest/meta-data/instance-id", "GET",
                f"X-aws-ec2-metadata-token: {tok}") == (200, guest["id"])
    ec2.modify_instance_metadata_options(InstanceId=guest["id"],
                                         HttpTokens="optional")


def test_identity_document_signature(guest, tmp_path):
    status, doc = imds(guest, "/latest/dynamic/instance-identity/document")
    assert status == 200
    d = json.loads(doc)
    assert d["instanceId"] == guest["id"] and d["imageId"] == guest["ami"]
    assert d["privateIp"] == guest["ip"] and d["instanceType"] == "t2.micro"
    status, p7 = imds(guest, "/latest/dynamic/instance-identity/pkcs7")
    (tmp_path / "document").write_text(doc)
    (tmp_path / "pkcs7").write_text(
        "-----BEGIN PKCS7-----\n" + p7 + "\n-----END PKCS7-----\n")
    r = subprocess.run(
        ["openssl", "smime", "-verify", "-in", tmp_path / "pkcs7", "-inform",
         "PEM", "-content", tmp_path / "document", "-binary", "-CAfile",
         guest["cloud"].ca, "-out", "/dev/null"], capture_output=True,
        text=True)
    assert r.returncode == 0, r.stderr


def test_console_output_shows_the_boot(guest):
    out = guest["cloud"].ec2().get_console_output(
        InstanceId=guest["id"]).get("Output", "")
    assert "Cloud-init" in out or "cloud-init" in out
    print(f"RunInstances -> ssh accepted: {guest['ssh_after']:.1f} s")
