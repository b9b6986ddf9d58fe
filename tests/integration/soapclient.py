"""A small SOAP 1.1 client for the integration suites: Koala's components
talk document/literal SOAP over HTTPS with mutual TLS (docs/compute.md).

    c = SoapClient("https://127.0.0.1:8775/", "urn:koala:nc",
                   ca="ca.pem", cert="cc.pem", key="cc.key")
    r = c.call("ncDescribeResource")            # the ...Response element
    r.findtext("{urn:koala:nc}coresMax") or text(r, "coresMax")
    c.call("ncRunInstance", {"instanceId": "i-...",
                             "instanceType": {"name": "t1", "cores": 1},
                             "tag": ["a", "b"]})  # lists repeat an element

Request bodies are built from dicts (element order kept), lists (repeated
elements), and scalars (text).  A SOAP Fault raises SoapFault with the
Koala/EC2 code from detail/Error/Code.  Only the standard library is used.
"""
import http.client
import ssl
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class SoapFault(Exception):
    def __init__(self, code, message, faultcode, status):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.faultcode = faultcode
        self.status = status


def _elements(name, value):
    if isinstance(value, (list, tuple)):
        return "".join(_elements(name, v) for v in value)
    if value is None:
        return ""
    if isinstance(value, dict):
        inner = "".join(_elements(k, v) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def envelope(op, ns, body=None):
    inner = "".join(_elements(k, v) for k, v in (body or {}).items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<{op} xmlns="{ns}">{inner}</{op}>'
            f'</soap:Body></soap:Envelope>').encode()


def local(tag):
    return tag.rsplit("}", 1)[-1]


def child(el, name):
    """First child element with that local name (namespaces ignored)."""
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def children(el, name):
    return [c for c in el if local(c.tag) == name]


def text(el, name, default=None):
    c = child(el, name)
    return default if c is None else (c.text or "")


def to_dict(el):
    """Element -> dict of its children (text for leaves; a list when an
    element repeats)."""
    out = {}
    for c in el:
        v = to_dict(c) if len(c) else (c.text or "")
        k = local(c.tag)
        if k in out:
            if not isinstance(out[k], list):
                out[k] = [out[k]]
            out[k].append(v)
        else:
            out[k] = v
    return out


class SoapClient:
    def __init__(self, endpoint, ns, ca=None, cert=None, key=None,
                 timeout=30):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 443
        self.path = u.path or "/"
        self.ns = ns
        self.timeout = timeout
        self.https = u.scheme == "https"
        self.ctx = None
        if self.https:
            self.ctx = ssl.create_default_context(
                cafile=str(ca) if ca else None)
            if cert:
                self.ctx.load_cert_chain(str(cert), str(key) if key else None)

    def raw(self, data, headers=None, method="POST"):
        """Sends bytes as they are; returns (status, body bytes)."""
        if self.https:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.ctx, timeout=self.timeout)
        else:
            conn = http.client.HTTPConnection(self.host, self.port,
                                              timeout=self.timeout)
        try:
            h = {"Content-Type": "text/xml; charset=utf-8"}
            h.update(headers or {})
            conn.request(method, self.path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def call(self, op, body=None):
        status, data = self.raw(envelope(op, self.ns, body),
                                {"SOAPAction": f'"{op}"'})
        return parse_reply(status, data)


def parse_reply(status, data):
    """The Body's element, or SoapFault."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        raise SoapFault("HTTP", f"HTTP {status}: {data[:200]!r}", None,
                        status)
    body = child(root, "Body") if local(root.tag) == "Envelope" else None
    if body is None or len(body) == 0:
        raise SoapFault("HTTP", f"HTTP {status}: not a SOAP envelope", None,
                        status)
    el = body[0]
    if local(el.tag) == "Fault":
        detail = child(el, "detail")
        err = child(detail, "Error") if detail is not None else None
        code = text(err, "Code") if err is not None else None
        msg = text(err, "Message") if err is not None else None
        raise SoapFault(code or "InternalError",
                        msg or text(el, "faultstring", ""),
                        text(el, "faultcode"), status)
    return el
