"""SOAP 1.1 over HTTPS with mutual TLS, as Koala's components speak it
(src/common/soap.h, docs/compute.md), for the integration suites: a client
that calls an operation and turns a Fault into SoapFault, and a small
threaded server for test doubles of a peer (an NC, the CLC).

    c = SoapClient("https://127.0.0.1:8775/", "urn:koala:nc",
                   ca="ca.pem", cert="cc.pem", key="cc.key")
    r = c.call("ncDescribeResource")            # the ...Response element
    r.findtext("{urn:koala:nc}coresMax") or text(r, "coresMax")
    c.call("ncRunInstance", {"instanceId": "i-...",
                             "instanceType": {"name": "t1", "cores": 1},
                             "tag": ["a", "b"]})  # lists repeat an element
    c.call("RunInstances", [("instance", [("instanceId", "i-1")]),
                            ("instance", [("instanceId", "i-2")])])

Messages are written from nested Python values: a body (and an element's
content) is a dict or a sequence of (name, value) pairs, kept in order;
a dict or a non-empty list of pairs as a value is an element with those
children, any other list repeats the element (none when it is empty),
None leaves the element out, and a scalar is its text.  Replies are read
with the local-name helpers text(), child(), children() and to_dict().
A SOAP Fault raises SoapFault with the Koala/EC2 code from
detail/Error/Code.  Only the standard library is used.
"""
import http.client
import http.server
import socketserver
import ssl
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class SoapFault(Exception):
    """A Fault: code and message from detail/Error, the HTTP status and the
    faultcode (soap:Client or soap:Server) when it came in a reply."""

    def __init__(self, code, message, status=500, faultcode=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.faultcode = faultcode


# ---- writing messages ---------------------------------------------------------

def _is_pairs(value):
    """A non-empty list of (name, value) pairs: one element's children."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
        for p in value)


def _write(body):
    """The elements of a dict or of a sequence of (name, value) pairs."""
    pairs = body.items() if isinstance(body, dict) else body
    return "".join(_elements(name, value) for name, value in pairs)


def _elements(name, value):
    if value is None:
        return ""
    if isinstance(value, dict) or _is_pairs(value):
        return f"<{name}>{_write(value)}</{name}>"
    if isinstance(value, (list, tuple)):
        return "".join(_elements(name, v) for v in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def envelope(op, ns, body=()):
    """The request (or response) op in namespace ns, with body (a dict or a
    sequence of (name, value) pairs)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<{op} xmlns="{ns}">{_write(body or ())}</{op}>'
            '</soap:Body></soap:Envelope>').encode()


def fault_envelope(code, message, server=False):
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
            f'<faultcode>soap:{"Server" if server else "Client"}</faultcode>'
            f'<faultstring>{escape(message)}</faultstring><detail>'
            '<koala:Error xmlns:koala="urn:koala">'
            f'<koala:Code>{escape(code)}</koala:Code>'
            f'<koala:Message>{escape(message)}</koala:Message>'
            '</koala:Error></detail></soap:Fault></soap:Body></soap:Envelope>'
            ).encode()


# ---- reading messages ---------------------------------------------------------

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
    """The stripped text of the first child called name, or default."""
    c = child(el, name)
    if c is None:
        return default
    return (c.text or "").strip()


def to_dict(el):
    """Element -> dict of its children (stripped text for leaves; a list
    when an element repeats)."""
    out = {}
    for c in el:
        v = to_dict(c) if len(c) else (c.text or "").strip()
        k = local(c.tag)
        if k in out:
            if not isinstance(out[k], list):
                out[k] = [out[k]]
            out[k].append(v)
        else:
            out[k] = v
    return out


def parse_reply(status, data):
    """The Body's element (of a reply, or of a request a double received),
    or SoapFault."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        raise SoapFault("HTTP", f"HTTP {status}: {data[:200]!r}", status)
    body = child(root, "Body") if local(root.tag) == "Envelope" else None
    if body is None or len(body) == 0:
        raise SoapFault("HTTP", f"HTTP {status}: not a SOAP envelope",
                        status)
    el = body[0]
    if local(el.tag) == "Fault":
        detail = child(el, "detail")
        err = child(detail, "Error") if detail is not None else None
        code = text(err, "Code") if err is not None else None
        msg = text(err, "Message") if err is not None else None
        raise SoapFault(code or "InternalError",
                        msg or text(el, "faultstring", ""),
                        status, text(el, "faultcode"))
    return el


# ---- the client -----------------------------------------------------------------

def client_context(ca, cert=None, key=None, check_hostname=False):
    """TLS context trusting ca, with a client certificate when given.  By
    default the host name is not checked (certificates name IP:127.0.0.1)."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    ctx.check_hostname = check_hostname
    if cert:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


class SoapClient:
    """Calls operations of one endpoint; ctx (a client_context) or ca, cert
    and key say how it speaks TLS."""

    def __init__(self, endpoint, ns, ca=None, cert=None, key=None,
                 timeout=30, ctx=None):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 443
        self.path = u.path or "/"
        self.ns = ns
        self.timeout = timeout
        self.https = u.scheme == "https"
        self.ctx = ctx
        if self.https and ctx is None:
            self.ctx = client_context(ca, cert, key, check_hostname=True)

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

    def call(self, op, body=()):
        """Calls op and returns the reply's body element (<opResponse>)."""
        status, data = self.raw(envelope(op, self.ns, body),
                                {"SOAPAction": f'"{op}"'})
        return parse_reply(status, data)


# ---- the server, for test doubles -------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        srv = self.server.soap
        if srv.paused:
            # Stands for a node that hangs: the caller's timeout decides.
            deadline = time.monotonic() + 10
            while srv.paused and time.monotonic() < deadline:
                time.sleep(0.05)
            self.close_connection = True
            return
        try:
            op = parse_reply(200, data)
            name = local(op.tag)
            srv.calls.append((name, op))
            items = srv.handler(name, op, self)
            out = envelope(name + "Response", srv.ns, items or [])
            status = 200
        except SoapFault as f:
            out = fault_envelope(f.code, f.message)
            status = 500
        except Exception as e:  # a bug in the double: report it as such
            out = fault_envelope("InternalError", repr(e), server=True)
            status = 500
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class _TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class SoapServer:
    """A SOAP endpoint over HTTPS that requires a client certificate from
    the CA.  handler(op_name, element, request) returns the response's
    body (a dict or (name, value) pairs) or raises SoapFault."""

    def __init__(self, port, cert, key, ca, ns, handler):
        self.port = port
        self.ns = ns
        self.handler = handler
        self.calls = []
        self.paused = False
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                              cafile=str(ca))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_cert_chain(str(cert), str(key))
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/"

    def start(self):
        self.httpd = _TLSServer(("127.0.0.1", self.port), _Handler)
        self.httpd.socket = self.ctx.wrap_socket(self.httpd.socket,
                                                 server_side=True)
        self.httpd.soap = self
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Closes the listening socket: connections are refused."""
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.httpd = None

    def ops(self, name):
        return [el for (n, el) in self.calls if n == name]
