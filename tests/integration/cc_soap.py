"""SOAP 1.1 over HTTPS with mutual TLS, as Koala's components speak it
(src/common/soap.h), for the integration suites: a client that calls an
operation and turns a Fault into SoapFault(code, message), and a small
threaded server for test doubles of a peer (an NC, the CLC).

Messages are written from nested Python values:
    [("instanceId", "i-1"), ("net", [("macAddress", "d0:0d:..")])]
and read back with the local-name helpers text(), child(), children().
"""
import http.client
import http.server
import socketserver
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"


class SoapFault(Exception):
    def __init__(self, code, message, status=500):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _write(items):
    out = []
    for name, value in items:
        if isinstance(value, (list, tuple)):
            out.append(f"<{name}>{_write(value)}</{name}>")
        elif value is None:
            out.append(f"<{name}/>")
        else:
            out.append(f"<{name}>{escape(str(value))}</{name}>")
    return "".join(out)


def envelope(op, ns, items=()):
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
            f'<{op} xmlns="{ns}">{_write(items)}</{op}>'
            '</soap:Body></soap:Envelope>').encode()


def fault_envelope(code, message, server=False):
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body><soap:Fault>'
            f'<faultcode>soap:{"Server" if server else "Client"}</faultcode>'
            f'<faultstring>{escape(message)}</faultstring><detail>'
            '<koala:Error xmlns:koala="urn:koala">'
            f'<koala:Code>{escape(code)}</koala:Code>'
            f'<koala:Message>{escape(message)}</koala:Message>'
            '</koala:Error></detail></soap:Fault></soap:Body></soap:Envelope>'
            ).encode()


def local(tag):
    return tag.rsplit("}", 1)[-1]


def child(el, name):
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def children(el, name):
    return [c for c in el if local(c.tag) == name]


def text(el, name, default=None):
    c = child(el, name)
    if c is None:
        return default
    return (c.text or "").strip()


def to_dict(el):
    """An element of simple children as {name: text} (repeated names: the
    last wins)."""
    return {local(c.tag): (c.text or "").strip() for c in el}


def parse(data):
    """The Body's element of an envelope; a Fault raises SoapFault."""
    root = ET.fromstring(data)
    body = child(root, "Body")
    if body is None or len(body) == 0:
        raise ValueError("not a SOAP envelope")
    op = body[0]
    if local(op.tag) == "Fault":
        detail = child(op, "detail")
        err = child(detail, "Error") if detail is not None else None
        code = text(err, "Code") if err is not None else None
        msg = text(err, "Message") if err is not None else None
        raise SoapFault(code or "InternalError",
                        msg or text(op, "faultstring", ""))
    return op


def client_context(ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # certificates name IP:127.0.0.1
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def post(url, body, ctx, timeout=30, content_type="text/xml; charset=utf-8",
         method="POST", action=""):
    """Raw exchange: (status, body bytes)."""
    assert url.startswith("https://")
    hostport = url[len("https://"):].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx,
                                       timeout=timeout)
    try:
        conn.request(method, "/", body=body,
                     headers={"Content-Type": content_type,
                              "SOAPAction": f'"{action}"'})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def call(url, op, ns, items=(), ctx=None, timeout=30):
    """Calls op and returns the reply's body element (<opResponse>)."""
    status, data = post(url, envelope(op, ns, items), ctx, timeout,
                        action=op)
    try:
        return parse(data)
    except SoapFault as f:
        f.status = status
        raise
    except ET.ParseError:
        raise SoapFault("HTTP", f"HTTP {status}: {data[:200]!r}", status)


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
            op = parse(data)
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
    items or raises SoapFault."""

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
