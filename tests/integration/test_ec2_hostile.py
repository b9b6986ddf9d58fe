"""The CLC against the hostile requests of issue 13, each one a regression
test of a bug that was found: EC2's error for the request, nothing changed,
the daemon still up; and the CLC's SOAP endpoint against a peer that sends
faults as requests and fault codes of its own."""
import base64
import os
import socket
import struct
import time

import pytest

from cloud import Cloud
from conftest import sh
from soapclient import SoapClient, fault_envelope, parse_reply, SoapFault


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = Cloud(tmp_path_factory.mktemp("ec2hostile"),
              with_cluster=False).start()
    yield c
    rcs = c.stop()
    assert all(rc == 0 for rc in rcs.values()), rcs


def code_of(body):
    assert "<Response>" in body and "<RequestID>" in body, body[:500]
    return body.split("<Code>")[1].split("</Code>")[0]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clc_pid(cloud):
    return cloud.daemons["clc"].proc.pid


def test_many_ids_refused_before_work(cloud):
    """(Under the 1 MiB body limit) 50 000 InstanceId.N took 5.9 s of CPU (each member looked up by a
    scan of every parameter); past EC2's 1000 members the call is refused,
    and 1000 ids are answered at once."""
    before = cpu_seconds(clc_pid(cloud))
    params = {"Action": "DescribeInstances", "Version": "2016-11-15"}
    params.update({f"InstanceId.{i}": "i-1" for i in range(1, 30001)})
    st, body = cloud.raw_ec2(params)
    assert st == 400 and code_of(body) == "InvalidParameterValue", body
    params = {"Action": "DescribeInstances", "Version": "2016-11-15"}
    params.update({f"InstanceId.{i}": f"i-{i:017x}" for i in range(1, 1001)})
    st, body = cloud.raw_ec2(params)
    assert st == 400 and code_of(body) == "InvalidInstanceID.NotFound", body
    spent = cpu_seconds(clc_pid(cloud)) - before
    print(f"CLC CPU for both calls: {spent:.3f} s")
    assert spent < 3.0  # (was 5.9 s in the release build for the first)


def test_filter_limits(cloud):
    """45 000 Filter.1.Value.N on DescribeTags took 4.8 s; EC2 takes 200
    values per filter and 50 filters (FilterLimitExceeded)."""
    params = {"Action": "DescribeTags", "Version": "2016-11-15",
              "Filter.1.Name": "key"}
    params.update({f"Filter.1.Value.{i}": "k" for i in range(1, 40001)})
    st, body = cloud.raw_ec2(params)
    assert st == 400 and code_of(body) == "FilterLimitExceeded", body
    params = {"Action": "DescribeTags", "Version": "2016-11-15"}
    for f in range(1, 52):
        params[f"Filter.{f}.Name"] = "key"
        params[f"Filter.{f}.Value.1"] = "k"
    st, body = cloud.raw_ec2(params)
    assert st == 400 and code_of(body) == "FilterLimitExceeded", body
    params = {"Action": "DescribeTags", "Version": "2016-11-15",
              "Filter.1.Name": "key"}
    params.update({f"Filter.1.Value.{i}": f"k{i}" for i in range(1, 201)})
    st, body = cloud.raw_ec2(params)
    assert st == 200 and "<tagSet/>" in body.replace("<tagSet></tagSet>",
                                                     "<tagSet/>"), body


@pytest.mark.parametrize("token", [
    "MTIzNDUvaS0xMjM0",            # "12345/i-1234": decoded, not terminated
    base64.b64encode(b"1/i-0123456789abcdef0\0x").decode(),
    base64.b64encode(b"-5/i-0123456789abcdef0").decode(),
    base64.b64encode(b"\xff\xfe/x").decode(),
    "not base64!",
])
def test_instance_next_token_is_untrusted(cloud, token):
    st, body = cloud.raw_ec2({"Action": "DescribeInstances",
                              "Version": "2016-11-15", "MaxResults": "5",
                              "NextToken": token})
    assert st == 400 and code_of(body) == "InvalidParameterValue", body


@pytest.mark.parametrize("token", [
    base64.b64encode(b"i-0123\0abc\tkey").decode(),
    base64.b64encode(b"no tab here").decode(),
    base64.b64encode(b"\tkey").decode(),
    base64.b64encode(b"x" * 70 + b"\tkey").decode(),
])
def test_tags_next_token_is_untrusted(cloud, token):
    st, body = cloud.raw_ec2({"Action": "DescribeTags",
                              "Version": "2016-11-15", "MaxResults": "5",
                              "NextToken": token})
    assert st == 400 and code_of(body) == "InvalidNextToken", body


def ssh_string(b):
    return struct.pack(">I", len(b)) + b


def rsa_blob(bits):
    """An ssh-rsa public key blob with a modulus of exactly bits bits (the
    CLC checks the format and size, not primality)."""
    n = int.from_bytes(os.urandom(bits // 8), "big") | (1 << (bits - 1)) | 1
    nb = n.to_bytes(bits // 8, "big")
    return (ssh_string(b"ssh-rsa") + ssh_string(b"\x01\x00\x01") +
            ssh_string(b"\x00" + nb))


def import_key(ec2, name, line):
    return ec2.import_key_pair(KeyName=name, PublicKeyMaterial=line)


def test_import_key_pair_never_truncates(cloud, tmp_path):
    """A 4096-bit key with a 255-character name comes back whole from
    DescribeKeyPairs; keys EC2 does not take (16384 bits, trailing bytes in
    the blob, a NUL in the text) are InvalidKey.Format, not cut."""
    ec2 = cloud.ec2()
    key = tmp_path / "k"
    sh("ssh-keygen", "-q", "-t", "rsa", "-b", "4096", "-N", "", "-f", key)
    line = (tmp_path / "k.pub").read_text().split()
    name = "n" * 255
    import_key(ec2, name, f"{line[0]} {line[1]} comment".encode())
    got = ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)
    assert got["KeyPairs"][0]["PublicKey"] == f"{line[0]} {line[1]} {name}"
    ec2.delete_key_pair(KeyName=name)

    b64 = base64.b64encode(rsa_blob(2048)).decode()
    import_key(ec2, "rsa2048", f"ssh-rsa {b64}".encode())
    ec2.delete_key_pair(KeyName="rsa2048")
    bad = [
        b"ssh-rsa " + base64.b64encode(rsa_blob(16384)),
        b"ssh-rsa " + base64.b64encode(rsa_blob(512)),
        b"ssh-rsa " + base64.b64encode(rsa_blob(2048) + b"x"),
        b"ssh-ed25519 " + base64.b64encode(ssh_string(b"ssh-ed25519") +
                                           ssh_string(b"k" * 31)),
        b"ssh-rsa " + b64.encode() + b"\0 tail",
    ]
    for i, material in enumerate(bad):
        with pytest.raises(Exception) as e:
            import_key(ec2, f"bad{i}", material)
        assert e.value.response["Error"]["Code"] == "InvalidKey.Format"
    names = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
    assert not any(n.startswith("bad") for n in names)


def clc_soap(cloud):
    cert, key = cloud.certs("walrus", "w1")
    return SoapClient(f"https://127.0.0.1:{cloud.ports['clc_soap']}/",
                      "urn:koala:clc", ca=cloud.ca, cert=cert, key=key)


def test_soap_request_that_is_a_fault(cloud):
    """A request whose Body is a Fault was answered InternalError; it is the
    peer's mistake: soap:Client InvalidRequest.  Thousands of distinct fault
    codes leave nothing behind (they filled a table of 512)."""
    c = clc_soap(cloud)
    for i in range(600):
        status, data = c.raw(fault_envelope(f"Peer{i}.Code", "m"),
                             {"SOAPAction": '"DescribeService"'})
        with pytest.raises(SoapFault) as e:
            parse_reply(status, data)
        assert e.value.code == "InvalidRequest"
        assert e.value.faultcode.endswith("Client"), e.value.faultcode
    status, data = c.raw(b"<a " + b" ".join(
        b'x%d="1"' % i for i in range(100_000)) + b"/>")
    with pytest.raises(SoapFault) as e:
        parse_reply(status, data)
    assert e.value.code == "MalformedXML"
    # the real interface still answers
    st, body = cloud.raw_ec2({"Action": "DescribeRegions",
                              "Version": "2016-11-15"})
    assert st == 200


def test_sigterm_during_slow_bodies(tmp_path):
    """SIGTERM while bodies trickle in ends the CLC and Walrus with 0 (the
    case of a job outlasting the grace period, which aborted, is
    test_http_server's test_stop_cuts_requests)."""
    c = Cloud(tmp_path, with_cluster=False).start()
    try:
        s3 = c.s3()
        s3.create_bucket(Bucket="big")
        s3.put_object(Bucket="big", Key="src", Body=os.urandom(1 << 20))
        socks = []
        for port in (c.ports["walrus"], c.ports["clc"]):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"PUT /big/slow HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000)
            socks.append(s)
        time.sleep(0.3)
        t0 = time.monotonic()
        rcs = c.stop()
        took = time.monotonic() - t0
        for s in socks:
            s.close()
        assert all(rc == 0 for rc in rcs.values()), rcs
        assert took < 40, took
    finally:
        c.stop()


def test_text_limits_count_characters(cloud):
    """Tag keys (128), tag values (256) and image descriptions (255) are
    counted in characters as EC2 counts them, and what is accepted comes
    back whole (multi-byte text used to be refused early, or cut to the
    bytes of a fixed buffer)."""
    ec2 = cloud.ec2()
    s3 = cloud.s3()
    s3.create_bucket(Bucket="img-hostile")
    s3.put_object(Bucket="img-hostile", Key="disk.raw", Body=b"\0" * 4096)
    desc = "\u00e9" * 255
    ami = ec2.register_image(Name="t-desc", Description=desc,
                             ImageLocation="img-hostile/disk.raw")["ImageId"]
    img = ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert img["Description"] == desc
    with pytest.raises(Exception) as e:
        ec2.register_image(Name="t-desc2", Description=desc + "x",
                           ImageLocation="img-hostile/disk.raw")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    key, value = "\u00e9" * 128, "\u4e2d" * 256
    ec2.create_tags(Resources=[ami], Tags=[{"Key": key, "Value": value}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id",
                                       "Values": [ami]}])["Tags"]
    assert [(t["Key"], t["Value"]) for t in tags] == [(key, value)]
    for k, v in ((key + "x", "v"), ("k", value + "x")):
        with pytest.raises(Exception) as e:
            ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v}])
        assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    # paging through a multi-byte key: the token carries it whole
    more = [c + key[1:] for c in "abcdefghijk"]
    ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": ""}
                                           for k in more])
    page = ec2.describe_tags(MaxResults=5)
    seen = [t["Key"] for t in page["Tags"]]
    pages = 1
    while page.get("NextToken"):
        page = ec2.describe_tags(MaxResults=5, NextToken=page["NextToken"])
        seen += [t["Key"] for t in page["Tags"]]
        pages += 1
    assert pages >= 3
    assert sorted(seen) == sorted(more + [key])
    ec2.deregister_image(ImageId=ami)
