"""Hostile SOAP requests for the fuzz suites (test_fuzz_soap.py for the CC
and the NC, test_fuzz_ec2.py for the CLC's component endpoint): envelopes
with unknown operations, a Fault as the Body, missing and repeated
elements, huge strings, many attributes and elements, deep nesting,
DOCTYPEs, broken encodings, and broken HTTP framing, sent over mutual TLS
with a certificate of the cloud's CA (see fuzzlib for the oracles)."""
from xml.sax.saxutils import escape

import fuzzlib
from fuzzlib import hostile_text, hostile_xml, http_request

ENV = fuzzlib.SOAP_ENV


def envelope(inner, header=""):
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{ENV}">{header}<soap:Body>'
            f'{inner}</soap:Body></soap:Envelope>').encode()


def fault(code, message="m"):
    return envelope(
        '<soap:Fault><faultcode>soap:Server</faultcode>'
        f'<faultstring>{escape(message)}</faultstring><detail>'
        '<koala:Error xmlns:koala="urn:koala">'
        f'<koala:Code>{escape(code)}</koala:Code>'
        f'<koala:Message>{escape(message)}</koala:Message>'
        '</koala:Error></detail></soap:Fault>')


def text_of(r):
    return escape(hostile_text(r).decode("utf-8", "replace")
                  .replace("\x00", ""))


class SoapGen:
    """ops: {operation: [child element names it reads]}; ns: the
    component's namespace; port; values(r, name) may give a plausible
    value for a child."""

    def __init__(self, ops, ns, port, values=None):
        self.ops = ops
        self.ns = ns
        self.port = port
        self.values = values or (lambda r, name: None)

    def value(self, r, name):
        v = self.values(r, name)
        if v is not None and r.random() < 0.6:
            return escape(v)
        return text_of(r)

    def children(self, r, names, depth=0):
        """Children for names: some missing, some repeated (only at the
        top: the sizes stay bounded), some nested."""
        out = []
        for name in names:
            k = r.randrange(10)
            if k == 0:
                continue                    # missing
            n = 1 if k > 2 or depth else r.choice([2, 50, 1000])
            if n > 1 or depth >= 2 or r.random() >= 0.2:
                inner = self.value(r, name)
            else:
                inner = "".join(self.children(r, names[:4], depth + 1))
            out.append(f"<{name}>{inner}</{name}>" * n)
        return out

    def body(self, r):
        k = r.randrange(20)
        op = r.choice(list(self.ops))
        kids = self.children(r, self.ops[op])
        if k == 0:      # unknown operations
            op = r.choice(["Nope", "ncNope", op + "Response", "Fault",
                           "x" * 5000, "a:b", "Envelope"])
            return envelope(f'<{op} xmlns="{self.ns}"/>')
        if k == 1:      # the Body is a Fault
            code = r.choice(["InternalError", "InvalidAction", "x" * 3000,
                             "C%d" % r.randrange(10 ** 6), ""])
            return fault(code, text_of(r))
        if k == 2:      # hostile XML in the operation's place
            return envelope(hostile_xml(r, op, kids).decode(
                "utf-8", "replace").replace(op, f'{op} xmlns="{self.ns}"', 1))
        if k == 3:      # hostile XML for the whole envelope
            return hostile_xml(r, "soap:Envelope", [
                f'<soap:Body xmlns:soap="{ENV}"><{op} xmlns="{self.ns}"/>'
                "</soap:Body>"])
        if k == 4:      # envelope variants
            return r.choice([
                f'<soap:Envelope xmlns:soap="{ENV}"/>'.encode(),
                envelope(""),
                envelope(f'<{op} xmlns="{self.ns}"/><{op} xmlns="{self.ns}"/>'),
                envelope(f'<{op} xmlns="{self.ns}"/>', header=
                         '<soap:Header><x soap:mustUnderstand="1"/></soap:Header>'),
                ('<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope">'
                 f'<Body><{op} xmlns="{self.ns}"/></Body></Envelope>').encode(),
                f'<soap:Envelope xmlns:soap="{ENV}"><soap:Body>'
                f'<soap:Body><{op}/></soap:Body></soap:Body></soap:Envelope>'
                .encode(),
                envelope(f"<{op}/>"),   # no namespace
                envelope(f'<{op} xmlns="urn:other"/>'),
                b"", b"<<<", b"\xef\xbb\xbf" + envelope(f'<{op}/>'),
            ])
        if k == 5:      # huge strings
            n = r.choice([10_000, 100_000, 1 << 20])
            name = r.choice(self.ops[op] or ["x"])
            return envelope(f'<{op} xmlns="{self.ns}"><{name}>{"A" * n}'
                            f'</{name}></{op}>')
        if k == 6:      # many attributes (bounded: the worst is a test)
            n = r.randrange(1, 3000)
            attrs = " ".join(f'a{i}="{i}"' for i in range(n))
            return envelope(f'<{op} xmlns="{self.ns}" {attrs}>'
                            + "".join(kids) + f"</{op}>")
        if k == 7:      # many repeated children
            name = r.choice(self.ops[op] or ["instanceId"])
            n = r.choice([100, 1000, 10_000])
            return envelope(f'<{op} xmlns="{self.ns}">' +
                            f"<{name}>i-00000001</{name}>" * n + f"</{op}>")
        return envelope(f'<{op} xmlns="{self.ns}">' + "".join(kids) +
                        f"</{op}>")

    def case(self, r, i):
        body = self.body(r)
        headers = [("Host", f"127.0.0.1:{self.port}"),
                   ("Content-Type", r.choice(["text/xml; charset=utf-8"] * 4 +
                                             ["application/soap+xml", "x",
                                              "text/xml; charset=EBCDIC"]))]
        if r.random() < 0.8:
            headers.append(("SOAPAction", '"x"'))
        method = "POST" if r.random() < 0.95 else r.choice(
            ["GET", "PUT", "DELETE", "OPTIONS", "HEAD"])
        target = r.choice(["/"] * 9 + ["/x" * 3000])
        return fuzzlib.framed_case(
            r, method, target, headers, body, f"soap {method} {body[:160]!r}",
            self.check(method), too_big=17 << 20,
            chunk_sizes=[1, 1000, 65536], head_request=method == "HEAD")

    def check(self, method):
        def check(reply):
            if method == "HEAD" or reply.status == 405:
                return None   # no SOAP for other methods: any status
            return fuzzlib.check_soap_reply(reply)
        return check


def attributes_envelope(op, ns, n, limit=None):
    """op with n attributes (as many as fit under limit bytes)."""
    attrs = " ".join(f'a{i}="{i}"' for i in range(n))
    head = f'<{op} xmlns="{ns}" '
    doc = envelope(head + attrs + f"></{op}>")
    if limit and len(doc) > limit:
        over = len(doc) - limit + 16
        attrs = attrs[:len(attrs) - over].rsplit(" ", 1)[0]
        doc = envelope(head + attrs + f"></{op}>")
    return doc


def post(port, body, extra=()):
    return http_request("POST", "/", [
        ("Host", f"127.0.0.1:{port}"),
        ("Content-Type", "text/xml; charset=utf-8"),
        ("SOAPAction", '"x"'), ("Content-Length", str(len(body))),
        ("Connection", "close"), *extra], body)
