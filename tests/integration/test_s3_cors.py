"""Walrus' CORS: Put/Get/DeleteBucketCors through boto3, then what a
browser sends: preflight OPTIONS requests (origin and method wildcards,
requested headers, max age) and the Access-Control-* headers on the real
requests and on their errors."""
import http.client

import botocore.exceptions
import pytest


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


RULES = {"CORSRules": [
    {"ID": "app", "AllowedOrigins": ["https://app.example.com"],
     "AllowedMethods": ["GET", "PUT"],
     "AllowedHeaders": ["content-type", "x-amz-*"],
     "ExposeHeaders": ["ETag", "x-amz-version-id"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET"]},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["HEAD"]},
]}


def request(walrus, method, path, headers):
    c = http.client.HTTPConnection("127.0.0.1", walrus.port, timeout=10)
    try:
        c.request(method, path, headers=headers)
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def preflight(walrus, path, origin, method, req_headers=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if req_headers:
        h["Access-Control-Request-Headers"] = req_headers
    return request(walrus, "OPTIONS", path, h)


def test_bucket_cors_config(s3, s3_bob, bucket):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code_of(e) == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["ID"] == "app" and got[0]["MaxAgeSeconds"] == 600
    assert got[0]["AllowedMethods"] == ["GET", "PUT"]
    assert got[1]["AllowedOrigins"] == ["https://*.example.org"]
    assert len(got) == 3
    for call in (lambda c: c.get_bucket_cors(Bucket=bucket),
                 lambda c: c.put_bucket_cors(Bucket=bucket,
                                             CORSConfiguration=RULES),
                 lambda c: c.delete_bucket_cors(Bucket=bucket)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(s3_bob)
        assert code_of(e) == "AccessDenied"
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code_of(e) == "NoSuchCORSConfiguration"


@pytest.mark.parametrize("rule,code", [
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
     "InvalidRequest"),
    ({"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]},
     "InvalidRequest"),
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET"],
      "AllowedHeaders": ["x-*-*"]}, "InvalidRequest"),
])
def test_bad_cors_rules(s3, bucket, rule, code):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket,
                           CORSConfiguration={"CORSRules": [rule]})
    assert code_of(e) == code
    # Unchanged.
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"]) == 3


def test_too_many_or_no_rules(s3, bucket):
    many = {"CORSRules": [{"AllowedOrigins": [f"https://{i}.example"],
                           "AllowedMethods": ["GET"]} for i in range(101)]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=many)
    assert code_of(e) == "MalformedXML"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": []})
    assert code_of(e) == "MalformedXML"


def test_preflight(walrus, s3, bucket):
    path = f"/{bucket}/photo.jpg"
    # No configuration: refused.
    st, h, body = preflight(walrus, path, "https://app.example.com", "GET")
    assert st == 403 and b"AccessForbidden" in body
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    st, h, _ = preflight(walrus, path, "https://app.example.com", "PUT",
                         "Content-Type, X-Amz-Date, x-amz-content-sha256")
    assert st == 200
    assert h["access-control-allow-origin"] == "https://app.example.com"
    assert h["access-control-allow-methods"] == "GET, PUT"
    assert h["access-control-allow-headers"] == \
        "Content-Type, X-Amz-Date, x-amz-content-sha256"
    assert h["access-control-expose-headers"] == "ETag, x-amz-version-id"
    assert h["access-control-max-age"] == "600"
    assert h["access-control-allow-credentials"] == "true"
    assert "Origin" in h["vary"]
    # A header no rule allows, a method no rule allows, another origin.
    for origin, method, hdrs in (
            ("https://app.example.com", "PUT", "authorization"),
            ("https://app.example.com", "DELETE", None),
            ("https://evil.example.com", "GET", None)):
        st, h, body = preflight(walrus, path, origin, method, hdrs)
        assert st == 403 and b"AccessForbidden" in body, (origin, method)
        assert "access-control-allow-origin" not in h
    # Origin wildcards; the first matching rule answers.
    st, h, _ = preflight(walrus, path, "https://cdn.example.org", "GET")
    assert st == 200
    assert h["access-control-allow-origin"] == "https://cdn.example.org"
    assert h["access-control-allow-methods"] == "GET"
    assert "access-control-max-age" not in h
    st, h, _ = preflight(walrus, path, "https://anyone.test", "HEAD")
    assert st == 200 and h["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in h
    # On the bucket itself too; malformed preflights.
    st, _, _ = preflight(walrus, f"/{bucket}", "https://cdn.example.org",
                         "GET")
    assert st == 200
    st, _, body = request(walrus, "OPTIONS", path, {})
    assert st == 400 and b"BadRequest" in body
    st, _, body = request(walrus, "OPTIONS", path,
                          {"Origin": "https://app.example.com"})
    assert st == 400 and b"BadRequest" in body
    st, _, body = preflight(walrus, "/no-such-bucket-cors/x",
                            "https://app.example.com", "GET")
    assert st == 404 and b"NoSuchBucket" in body


def test_cors_headers_on_requests(walrus, s3, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    s3.put_object(Bucket=bucket, Key="pub", Body=b"hello", ACL="public-read")
    path = f"/{bucket}/pub"
    st, h, body = request(walrus, "GET", path,
                          {"Origin": "https://app.example.com"})
    assert st == 200 and body == b"hello"
    assert h["access-control-allow-origin"] == "https://app.example.com"
    assert h["access-control-expose-headers"] == "ETag, x-amz-version-id"
    # No rule for this origin and method: no CORS headers, same answer.
    st, h, body = request(walrus, "GET", path,
                          {"Origin": "https://evil.example.com"})
    assert st == 200 and "access-control-allow-origin" not in h
    st, h, body = request(walrus, "GET", path, {})
    assert "access-control-allow-origin" not in h
    # An error carries them too, so that the page can read it.
    st, h, body = request(walrus, "GET", f"/{bucket}/private-missing",
                          {"Origin": "https://app.example.com"})
    assert st in (403, 404)
    assert h["access-control-allow-origin"] == "https://app.example.com"
    # Signed requests from the page (boto3 standing in for the SDK).
    def add_origin(request, **kw):
        request.headers["Origin"] = "https://app.example.com"
    s3.meta.events.register_first("before-sign.s3.PutObject", add_origin)
    r = s3.put_object(Bucket=bucket, Key="up", Body=b"x")
    hdrs = r["ResponseMetadata"]["HTTPHeaders"]
    assert hdrs["access-control-allow-origin"] == "https://app.example.com"
