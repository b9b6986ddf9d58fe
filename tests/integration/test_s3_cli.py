"""Walrus driven by the command line tools people already use: Debian's
aws-cli (`aws s3`, `aws s3api`) and s3cmd, exactly as a new user would
type them (only the endpoint is ours)."""
import hashlib
import json
import os

import pytest

from conftest import AWS_BIN, S3CMD_BIN, run


def aws(walrus, env, *args, check=True):
    return run([AWS_BIN, "--endpoint-url", walrus.endpoint, *args], env,
               check=check)


def s3cmd(env, *args, check=True):
    return run([S3CMD_BIN, "-c", env["S3CFG"], *args], env, check=check)


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- aws s3 ----

def test_aws_s3_basic(walrus, cli_env, tmp_path):
    aws(walrus, cli_env, "s3", "mb", "s3://cli-basic")
    f = tmp_path / "hello.txt"
    f.write_text("hello from aws-cli\n")
    aws(walrus, cli_env, "s3", "cp", str(f), "s3://cli-basic/dir/hello.txt")
    out = aws(walrus, cli_env, "s3", "ls", "s3://cli-basic/dir/").stdout
    assert "hello.txt" in out and "19" in out
    back = tmp_path / "back.txt"
    aws(walrus, cli_env, "s3", "cp", "s3://cli-basic/dir/hello.txt",
        str(back))
    assert back.read_text() == "hello from aws-cli\n"
    # stdin / stdout streaming
    aws_in = run([AWS_BIN, "--endpoint-url", walrus.endpoint, "s3", "cp",
                  "-", "s3://cli-basic/stdin.txt"], cli_env,
                 input="streamed\n")
    assert aws_in.returncode == 0
    assert aws(walrus, cli_env, "s3", "cp", "s3://cli-basic/stdin.txt",
               "-").stdout == "streamed\n"
    out = aws(walrus, cli_env, "s3", "ls").stdout
    assert "cli-basic" in out
    aws(walrus, cli_env, "s3", "mv", "s3://cli-basic/stdin.txt",
        "s3://cli-basic/moved.txt")
    out = aws(walrus, cli_env, "s3", "ls", "--recursive",
              "s3://cli-basic").stdout
    assert "moved.txt" in out and "stdin.txt" not in out
    aws(walrus, cli_env, "s3", "rb", "--force", "s3://cli-basic")
    assert "cli-basic" not in aws(walrus, cli_env, "s3", "ls").stdout


def test_aws_s3_multipart_100mib(walrus, cli_env, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    aws(walrus, cli_env, "s3", "mb", "s3://cli-big")
    aws(walrus, cli_env, "s3", "cp", str(big), "s3://cli-big/big.bin")
    head = json.loads(aws(walrus, cli_env, "s3api", "head-object",
                          "--bucket", "cli-big", "--key", "big.bin").stdout)
    assert head["ContentLength"] == 100 << 20
    # aws-cli's default 8 MiB parts: a multipart ETag with 13 parts.
    assert head["ETag"].endswith('-13"')
    back = tmp_path / "back.bin"
    aws(walrus, cli_env, "s3", "cp", "s3://cli-big/big.bin", str(back))
    assert md5_file(back) == md5_file(big)
    big.unlink()
    back.unlink()
    aws(walrus, cli_env, "s3", "rb", "--force", "s3://cli-big")


def test_aws_s3_sync(walrus, cli_env, tmp_path):
    src = tmp_path / "tree"
    for rel, data in [("a.txt", "a"), ("sub/b.txt", "bb"),
                      ("sub/deeper/c with space.txt", "ccc"),
                      ("ünï/d.txt", "dddd")]:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)
    aws(walrus, cli_env, "s3", "mb", "s3://cli-sync")
    aws(walrus, cli_env, "s3", "sync", str(src), "s3://cli-sync/tree")
    out = aws(walrus, cli_env, "s3", "ls", "--recursive",
              "s3://cli-sync/tree/").stdout
    for name in ("a.txt", "sub/b.txt", "c with space.txt", "ünï/d.txt"):
        assert name in out
    # A second sync uploads nothing; a changed file is uploaded again.
    again = aws(walrus, cli_env, "s3", "sync", str(src),
                "s3://cli-sync/tree").stdout
    assert again.strip() == ""
    (src / "a.txt").write_text("changed!")
    (src / "sub" / "b.txt").unlink()
    out = aws(walrus, cli_env, "s3", "sync", "--delete", str(src),
              "s3://cli-sync/tree").stdout
    assert "upload: " in out and "a.txt" in out
    assert "delete: s3://cli-sync/tree/sub/b.txt" in out
    dst = tmp_path / "down"
    aws(walrus, cli_env, "s3", "sync", "s3://cli-sync/tree", str(dst))
    assert (dst / "a.txt").read_text() == "changed!"
    assert (dst / "sub/deeper/c with space.txt").read_text() == "ccc"
    assert not (dst / "sub/b.txt").exists()
    aws(walrus, cli_env, "s3", "rb", "--force", "s3://cli-sync")


def test_aws_s3api(walrus, cli_env, tmp_path):
    aws(walrus, cli_env, "s3api", "create-bucket", "--bucket", "cli-api")
    f = tmp_path / "o"
    f.write_bytes(b"s3api object")
    put = json.loads(aws(walrus, cli_env, "s3api", "put-object", "--bucket",
                         "cli-api", "--key", "o", "--body", str(f),
                         "--metadata", "team=koala",
                         "--content-type", "text/plain").stdout)
    assert put["ETag"] == '"%s"' % hashlib.md5(b"s3api object").hexdigest()
    head = json.loads(aws(walrus, cli_env, "s3api", "head-object", "--bucket",
                          "cli-api", "--key", "o").stdout)
    assert head["Metadata"] == {"team": "koala"}
    assert head["ContentType"] == "text/plain"
    lst = json.loads(aws(walrus, cli_env, "s3api", "list-objects-v2",
                         "--bucket", "cli-api").stdout)
    assert [o["Key"] for o in lst["Contents"]] == ["o"]
    acl = json.loads(aws(walrus, cli_env, "s3api", "get-bucket-acl",
                         "--bucket", "cli-api").stdout)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    loc = json.loads(aws(walrus, cli_env, "s3api", "get-bucket-location",
                         "--bucket", "cli-api").stdout)
    assert loc["LocationConstraint"] is None
    vers = json.loads(aws(walrus, cli_env, "s3api", "list-object-versions",
                          "--bucket", "cli-api").stdout)
    assert vers["Versions"][0]["VersionId"] == "null"
    # errors come back the way aws-cli reports them
    r = aws(walrus, cli_env, "s3api", "get-object", "--bucket", "cli-api",
            "--key", "missing", str(tmp_path / "x"), check=False)
    assert r.returncode != 0 and "NoSuchKey" in r.stderr
    # us-east-1's legacy: re-creating a bucket you own succeeds.
    r = aws(walrus, cli_env, "s3api", "create-bucket", "--bucket", "cli-api",
            check=False)
    assert r.returncode == 0, r.stderr
    aws(walrus, cli_env, "s3api", "delete-object", "--bucket", "cli-api",
        "--key", "o")
    aws(walrus, cli_env, "s3api", "delete-bucket", "--bucket", "cli-api")


def test_aws_s3_presign(walrus, cli_env, tmp_path):
    import urllib.request
    aws(walrus, cli_env, "s3", "mb", "s3://cli-presign")
    f = tmp_path / "p"
    f.write_bytes(b"presigned by aws-cli")
    aws(walrus, cli_env, "s3", "cp", str(f), "s3://cli-presign/p")
    url = aws(walrus, cli_env, "s3", "presign", "s3://cli-presign/p",
              "--expires-in", "60").stdout.strip()
    with urllib.request.urlopen(url) as r:
        assert r.read() == b"presigned by aws-cli"
    aws(walrus, cli_env, "s3", "rb", "--force", "s3://cli-presign")


# ---- s3cmd ----

@pytest.mark.parametrize("sig", ["v4", "v2"])
def test_s3cmd(walrus, cli_env, tmp_path, sig):
    extra = ["--signature-v2"] if sig == "v2" else []
    b = f"s3://s3cmd-{sig}"
    s3cmd(cli_env, *extra, "mb", b)
    f = tmp_path / "file one.txt"
    f.write_text("from s3cmd " * 100)
    s3cmd(cli_env, *extra, "put", str(f), f"{b}/dir/file one.txt")
    out = s3cmd(cli_env, *extra, "ls", f"{b}/dir/").stdout
    assert "file one.txt" in out
    back = tmp_path / "back.txt"
    s3cmd(cli_env, *extra, "get", f"{b}/dir/file one.txt", str(back))
    assert back.read_text() == f.read_text()
    info = s3cmd(cli_env, *extra, "info", f"{b}/dir/file one.txt").stdout
    assert hashlib.md5(f.read_bytes()).hexdigest() in info
    s3cmd(cli_env, *extra, "setacl", "--acl-public", f"{b}/dir/file one.txt")
    import urllib.request
    import urllib.parse
    with urllib.request.urlopen(
            f"{walrus.endpoint}/s3cmd-{sig}/" +
            urllib.parse.quote("dir/file one.txt")) as r:
        assert r.read() == f.read_bytes()
    # multipart: s3cmd splits at 15 MiB by default; force small chunks
    big = tmp_path / "big"
    big.write_bytes(os.urandom(12 << 20))
    s3cmd(cli_env, *extra, "put", "--multipart-chunk-size-mb=5", str(big),
          f"{b}/big")
    bigback = tmp_path / "bigback"
    s3cmd(cli_env, *extra, "get", f"{b}/big", str(bigback))
    assert md5_file(bigback) == md5_file(big)
    tree = tmp_path / "tree"
    (tree / "x").mkdir(parents=True)
    (tree / "x" / "y.txt").write_text("y")
    (tree / "z.txt").write_text("z")
    s3cmd(cli_env, *extra, "sync", str(tree) + "/", f"{b}/tree/")
    out = s3cmd(cli_env, *extra, "ls", "-r", f"{b}/tree/").stdout
    assert "x/y.txt" in out and "z.txt" in out
    s3cmd(cli_env, *extra, "del", "--recursive", "--force", f"{b}/")
    s3cmd(cli_env, *extra, "rb", b)
    assert f"s3cmd-{sig}" not in s3cmd(cli_env, *extra, "ls").stdout


def test_aws_s3api_versioning(walrus, cli_env, tmp_path):
    """Versioning as the aws-cli user turns it on and walks a history."""
    def api(*args, check=True):
        r = aws(walrus, cli_env, "s3api", *args, check=check)
        return json.loads(r.stdout) if check and r.stdout.strip() else r
    api("create-bucket", "--bucket", "cli-versions")
    api("put-bucket-versioning", "--bucket", "cli-versions",
        "--versioning-configuration", "Status=Enabled")
    assert api("get-bucket-versioning",
               "--bucket", "cli-versions")["Status"] == "Enabled"
    f = tmp_path / "v"
    vids = []
    for text in ("first", "second"):
        f.write_text(text)
        vids.append(api("put-object", "--bucket", "cli-versions", "--key",
                        "doc", "--body", str(f))["VersionId"])
    out = tmp_path / "out"
    got = api("get-object", "--bucket", "cli-versions", "--key", "doc",
              "--version-id", vids[0], str(out))
    assert got["VersionId"] == vids[0] and out.read_text() == "first"
    marker = api("delete-object", "--bucket", "cli-versions", "--key", "doc")
    assert marker["DeleteMarker"] is True
    hist = api("list-object-versions", "--bucket", "cli-versions")
    assert sorted(v["VersionId"] for v in hist["Versions"]) == sorted(vids)
    assert [m["VersionId"] for m in hist["DeleteMarkers"]] == [
        marker["VersionId"]]
    r = api("get-object", "--bucket", "cli-versions", "--key", "doc",
            str(out), check=False)
    assert r.returncode != 0 and "NoSuchKey" in r.stderr
    r = api("put-bucket-versioning", "--bucket", "cli-versions",
            "--versioning-configuration", "Status=Off", check=False)
    assert r.returncode != 0 and "MalformedXML" in r.stderr
    # Removing every version by id empties the bucket.
    for v in vids + [marker["VersionId"]]:
        api("delete-object", "--bucket", "cli-versions", "--key", "doc",
            "--version-id", v)
    r = aws(walrus, cli_env, "s3api", "list-object-versions", "--bucket",
            "cli-versions")
    assert "VersionId" not in r.stdout
    aws(walrus, cli_env, "s3", "rb", "s3://cli-versions")


def test_aws_s3api_tagging(walrus, cli_env, tmp_path):
    def api(*args, check=True):
        r = aws(walrus, cli_env, "s3api", *args, check=check)
        return json.loads(r.stdout) if check and r.stdout.strip() else r
    api("create-bucket", "--bucket", "cli-tags")
    f = tmp_path / "t"
    f.write_text("tagged")
    api("put-object", "--bucket", "cli-tags", "--key", "o", "--body", str(f),
        "--tagging", "team=koala")
    got = api("get-object-tagging", "--bucket", "cli-tags", "--key", "o")
    assert got["TagSet"] == [{"Key": "team", "Value": "koala"}]
    api("put-object-tagging", "--bucket", "cli-tags", "--key", "o",
        "--tagging", "TagSet=[{Key=a,Value=1},{Key=b,Value=2}]")
    got = api("get-object-tagging", "--bucket", "cli-tags", "--key", "o")
    assert {t["Key"] for t in got["TagSet"]} == {"a", "b"}
    r = api("put-bucket-tagging", "--bucket", "cli-tags", "--tagging",
            "TagSet=[{Key=aws:no,Value=1}]", check=False)
    assert r.returncode != 0 and "InvalidTag" in r.stderr
    api("put-bucket-tagging", "--bucket", "cli-tags", "--tagging",
        "TagSet=[{Key=cost,Value=lab}]")
    assert api("get-bucket-tagging", "--bucket", "cli-tags")["TagSet"] == [
        {"Key": "cost", "Value": "lab"}]
    api("delete-bucket-tagging", "--bucket", "cli-tags")
    r = api("get-bucket-tagging", "--bucket", "cli-tags", check=False)
    assert r.returncode != 0 and "NoSuchTagSet" in r.stderr
    aws(walrus, cli_env, "s3", "rb", "--force", "s3://cli-tags")
