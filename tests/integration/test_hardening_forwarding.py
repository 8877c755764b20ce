"""Forwarding hardening (issue 11, points 3 and 4).

Point 3: a Uri-Path segment that is "." or "..", or becomes one after percent-decoding or after
splitting at "/", is answered 4.00 and counted (bad_messages_total{reason="bad_path"}); nothing
reaches the upstream. Every segment and query part reaches the upstream percent-encoded, so "/",
"?", "&", "#" and "%" inside one option never become separators.

Point 4: the request options the gateway does not consume itself are honoured: If-Match,
If-None-Match and ETag reach an HTTP upstream as RFC 8075 headers and a CoAP upstream as the same
options; Proxy-Uri/Proxy-Scheme answer 5.05; Uri-Host/Uri-Port must name the gateway; an unknown
critical option is 4.02. HTTP answers come back with ETag, Max-Age (Cache-Control, Retry-After),
Location-Path/Location-Query, and 304 -> 2.03 Valid.

The HTTP upstream is a plain Python http.server in this process that records each request and
answers per path (see Backend); the CoAP upstream is a raw Python CoAP server (CoapRecorder) because
libcoap 4.3.1's coap-server ignores If-Match/If-None-Match (checked by hand: a PUT with
If-None-Match on an existing resource overwrites it).
"""

import hashlib
import socket
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness as h

OPT_IF_MATCH, OPT_URI_HOST, OPT_ETAG, OPT_IF_NONE_MATCH, OPT_URI_PORT = 1, 3, 4, 5, 7
OPT_LOCATION_PATH, OPT_MAX_AGE, OPT_LOCATION_QUERY = 8, 14, 20
OPT_PROXY_URI, OPT_PROXY_SCHEME = 35, 39
PUT = 3


def uint_value(values):
    """The integer of a uint option's first value, None when absent."""
    if not values:
        return None
    return int.from_bytes(values[0], "big")


class BackendHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, headers=(), body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        raw_path, _, raw_query = self.path.partition("?")
        with self.server.lock:
            self.server.records.append({"method": self.command, "path": raw_path, "query": raw_query,
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body})
        path = raw_path
        if path == "/api/etag":
            if self.headers.get("If-None-Match") == '"0a0b0c"':
                return self._answer(304, [("ETag", '"0a0b0c"'), ("Cache-Control", "max-age=30")])
            return self._answer(200, [("ETag", '"0a0b0c"'), ("Cache-Control", "public, max-age=30"),
                                      ("Content-Type", "text/plain")], b"tagged")
        if path == "/api/longetag":
            return self._answer(200, [("ETag", '"this-etag-is-longer-than-eight-bytes"')], b"long")
        if path == "/api/weaketag":
            return self._answer(200, [("ETag", 'W/"v1"'), ("Cache-Control", "no-store")], b"weak")
        if path == "/api/create":
            port = self.server.server_address[1]
            return self._answer(201, [("Location", f"http://127.0.0.1:{port}/api/items/7?x=1&y=%26")])
        if path == "/api/busy":
            return self._answer(503, [("Retry-After", "17")], b"busy")
        if path == "/api/cond":
            # One resource with entity-tag "0102": honours If-Match and If-None-Match like a real
            # origin server would.
            inm = self.headers.get("If-None-Match")
            im = self.headers.get("If-Match")
            if inm == "*" or (im is not None and im != "*" and '"0102"' not in im):
                return self._answer(412, [], b"precondition")
            return self._answer(204, [("ETag", '"0102"')])
        return self._answer(200, [("Content-Type", "text/plain")], b"ok")

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class Backend:
    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), BackendHandler)
        self.server.daemon_threads = True
        self.server.lock = threading.Lock()
        self.server.records = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def records(self, path=None):
        with self.server.lock:
            return [r for r in self.server.records if path is None or r["path"] == path]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class CoapRecorder:
    """A raw CoAP upstream: records every request's options, stores PUT bodies per path and honours
    If-None-Match (4.12 when the resource exists) and If-Match (4.12 unless an ETag matches)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []
        self.resources = {}
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                m = h.decode(data)
            except h.DecodeError:
                continue
            if m.type != h.CON or m.code == 0:
                continue
            with self.lock:
                self.requests.append(m)
                code, opts, payload = self._serve(m)
            reply = h.Message(h.ACK, code, m.mid, m.token, opts, payload)
            self.sock.sendto(h.encode(reply), peer)

    def _serve(self, m):
        path = m.uri_path()
        etag = b"\x01\x02"
        exists = path in self.resources
        if m.code == h.code(0, PUT):
            if m.option(OPT_IF_NONE_MATCH) and exists:
                return h.code(4, 12), [], b""
            if m.option(OPT_IF_MATCH) and not (exists and (etag in m.option(OPT_IF_MATCH) or
                                                           b"" in m.option(OPT_IF_MATCH))):
                return h.code(4, 12), [], b""
            self.resources[path] = m.payload
            return (h.code(2, 4) if exists else h.code(2, 1)), [], b""
        if not exists:
            return h.code(4, 4), [], b""
        if etag in m.option(OPT_ETAG):
            return h.code(2, 3), [(OPT_ETAG, etag)], b""
        return h.code(2, 5), [(OPT_ETAG, etag)], self.resources[path]

    def received(self):
        with self.lock:
            return list(self.requests)

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


class HardeningTestCase(h.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.backend = Backend()
        self.addCleanup(self.backend.stop)
        self.coap_up = CoapRecorder()
        self.addCleanup(self.coap_up.stop)
        self.sink = self.tmp + "/sink.jsonl"
        routes = [
            {"prefix": "/api", "upstream": self.backend.url, "timeout": "5s"},
            {"prefix": "/strip", "upstream": self.backend.url + "/api", "strip_prefix": True,
             "timeout": "5s"},
            {"prefix": "/up", "upstream": f"coap://127.0.0.1:{self.coap_up.port}", "strip_prefix": True,
             "timeout": "5s"},
            {"prefix": "/sink", "upstream": "file:" + self.sink},
        ]
        cfg = h.base_config(admin=f"127.0.0.1:{h.free_tcp_port()}", routes=routes)
        self.gw = self.start_gateway(cfg)

    def request(self, method, path_options, extra=(), payload=b""):
        msg = h.Message(h.CON, h.code(0, method), h.next_mid(), h.new_token(),
                        list(path_options) + list(extra), payload)
        reply = h.coap_request(self.gw.coap_addr(), msg, timeout=5)
        self.assertIsNotNone(reply, "no answer")
        return reply


    def assertCode(self, reply, cls, detail):
        self.assertEqual(reply.code, h.code(cls, detail), f"{h.code_str(reply.code)} {reply!r}")


def segs(*values):
    return [(h.OPT_URI_PATH, v if isinstance(v, bytes) else v.encode()) for v in values]


class PathSafety(HardeningTestCase):
    def test_dot_segments_are_refused_and_never_forwarded(self):
        attacks = [
            segs("api", "..", "secret"),
            segs("api", ".", "x"),
            segs("api", "%2e%2e", "secret"),
            segs("api", "%2E.", "secret"),
            segs("api", ".%252e", "secret"),     # decodes to ".%2e", then to ".."
            segs("api", "../secret"),            # "/" inside one option
            segs("api", "a/./b"),
            segs("strip", "..", "..", "admin"),
            segs("up", "..", "x"),
        ]
        for opts in attacks:
            with self.subTest(opts=opts):
                self.assertCode(self.request(h.GET, opts), 4, 0)
        self.assertEqual(self.backend.records(), [])
        self.assertEqual(self.coap_up.received(), [])
        self.assertGreaterEqual(self.counter("coapgw_bad_messages_total", reason="bad_path"), len(attacks))

    def test_segments_and_query_parts_are_percent_encoded(self):
        reply = self.request(h.GET, segs("api", "a/b", "c?d", "e%41", "sp ace"),
                             [(h.OPT_URI_QUERY, b"k=a&b"), (h.OPT_URI_QUERY, b"h=#1"),
                              (h.OPT_URI_QUERY, b"p=50%")])
        self.assertCode(reply, 2, 5)
        rec = self.backend.records()
        self.assertEqual(len(rec), 1, rec)
        self.assertEqual(rec[0]["path"], "/api/a%2Fb/c%3Fd/e%2541/sp%20ace")
        self.assertEqual(rec[0]["query"], "k=a%26b&h=%231&p=50%25")

    def test_coap_upstream_gets_the_segments_back_verbatim(self):
        self.request(PUT, segs("up", "a/b", "c%2e"), payload=b"v")
        got = h.poll_until(lambda: self.coap_up.received(), 5, what="upstream request")
        self.assertEqual(got[0].option(h.OPT_URI_PATH), [b"a/b", b"c%2e"])


class ProxyAndAuthority(HardeningTestCase):
    def test_proxy_uri_and_proxy_scheme_are_5_05(self):
        self.assertCode(self.request(h.GET, [(OPT_PROXY_URI, b"http://example.com/x")]), 5, 5)
        self.assertCode(self.request(h.GET, segs("api", "x") + [(OPT_PROXY_SCHEME, b"http")]), 5, 5)
        self.assertEqual(self.backend.records(), [])

    def test_uri_host_and_port_must_name_the_gateway(self):
        host, port = self.gw.coap_addr()
        ok = [
            [(OPT_URI_HOST, host.encode())],
            [(OPT_URI_HOST, b"gateway.example")],   # a name: we cannot know ours, accepted
            [(OPT_URI_PORT, port.to_bytes(2, "big"))],
        ]
        for extra in ok:
            with self.subTest(extra=extra):
                self.assertCode(self.request(h.GET, segs("api", "x"), extra), 2, 5)
        bad = [
            [(OPT_URI_HOST, b"10.9.8.7")],
            [(OPT_URI_HOST, b"::2")],
            [(OPT_URI_PORT, ((port + 1) & 0xFFFF).to_bytes(2, "big"))],
        ]
        for extra in bad:
            with self.subTest(extra=extra):
                self.assertCode(self.request(h.GET, segs("api", "x"), extra), 4, 4)
        self.assertEqual(len(self.backend.records()), len(ok))
        self.assertGreaterEqual(self.counter("coapgw_bad_messages_total", reason="wrong_authority"), len(bad))

    def test_unknown_critical_option_is_4_02(self):
        self.assertCode(self.request(h.GET, segs("api", "x"), [(65001, b"x")]), 4, 2)
        self.assertEqual(self.backend.records(), [])


class HttpConditionals(HardeningTestCase):
    def test_if_match_and_if_none_match_become_rfc8075_headers(self):
        self.assertCode(self.request(PUT, segs("api", "cond"), [(OPT_IF_MATCH, b"\x01\x02")], b"v"), 2, 4)
        self.assertCode(self.request(PUT, segs("api", "cond"), [(OPT_IF_MATCH, b"\xff")], b"v"), 4, 12)
        self.assertCode(self.request(PUT, segs("api", "cond"), [(OPT_IF_MATCH, b"")], b"v"), 2, 4)
        self.assertCode(self.request(PUT, segs("api", "cond"), [(OPT_IF_NONE_MATCH, b"")], b"v"), 4, 12)
        heads = [r["headers"] for r in self.backend.records("/api/cond")]
        self.assertEqual([x.get("if-match") for x in heads], ['"0102"', '"ff"', "*", None])
        self.assertEqual([x.get("if-none-match") for x in heads], [None, None, None, "*"])

    def test_etag_and_max_age_come_back(self):
        reply = self.request(h.GET, segs("api", "etag"))
        self.assertCode(reply, 2, 5)
        self.assertEqual(reply.option(OPT_ETAG), [b"\x0a\x0b\x0c"])
        self.assertEqual(uint_value(reply.option(OPT_MAX_AGE)), 30)
        self.assertEqual(reply.payload, b"tagged")

    def test_etag_get_is_conditional_and_304_is_2_03(self):
        reply = self.request(h.GET, segs("api", "etag"), [(OPT_ETAG, b"\x0a\x0b\x0c")])
        self.assertCode(reply, 2, 3)
        self.assertEqual(reply.option(OPT_ETAG), [b"\x0a\x0b\x0c"])
        self.assertEqual(reply.payload, b"")
        rec = self.backend.records("/api/etag")
        self.assertEqual(rec[-1]["headers"].get("if-none-match"), '"0a0b0c"')

    def test_long_and_weak_etags(self):
        reply = self.request(h.GET, segs("api", "longetag"))
        digest = hashlib.sha256(b"this-etag-is-longer-than-eight-bytes").digest()[:8]
        self.assertEqual(reply.option(OPT_ETAG), [digest])
        reply = self.request(h.GET, segs("api", "weaketag"))
        self.assertEqual(reply.option(OPT_ETAG), [b"v1"])
        self.assertEqual(uint_value(reply.option(OPT_MAX_AGE)), 0)  # no-store

    def test_201_location_becomes_location_path_and_query(self):
        reply = self.request(h.POST, segs("api", "create"), payload=b"{}")
        self.assertCode(reply, 2, 1)
        self.assertEqual(reply.option(OPT_LOCATION_PATH), [b"api", b"items", b"7"])
        self.assertEqual(reply.option(OPT_LOCATION_QUERY), [b"x=1", b"y=&"])
        # through a strip_prefix route the location is given back under the route's prefix
        reply = self.request(h.POST, segs("strip", "create"), payload=b"{}")
        self.assertCode(reply, 2, 1)
        self.assertEqual(reply.option(OPT_LOCATION_PATH), [b"strip", b"items", b"7"])

    def test_503_retry_after_becomes_max_age(self):
        reply = self.request(h.GET, segs("api", "busy"))
        self.assertCode(reply, 5, 3)
        self.assertEqual(uint_value(reply.option(OPT_MAX_AGE)), 17)


class CoapConditionals(HardeningTestCase):
    def test_create_only_put_does_not_overwrite(self):
        first = self.request(PUT, segs("up", "res"), [(OPT_IF_NONE_MATCH, b"")], b"first")
        self.assertCode(first, 2, 1)
        second = self.request(PUT, segs("up", "res"), [(OPT_IF_NONE_MATCH, b"")], b"second")
        self.assertCode(second, 4, 12)
        got = self.request(h.GET, segs("up", "res"))
        self.assertCode(got, 2, 5)
        self.assertEqual(got.payload, b"first")
        reqs = self.coap_up.received()
        self.assertEqual([r.option(OPT_IF_NONE_MATCH) for r in reqs[:2]], [[b""], [b""]])

    def test_if_match_and_etag_reach_the_coap_upstream(self):
        self.assertCode(self.request(PUT, segs("up", "r2"), payload=b"one"), 2, 1)
        self.assertCode(self.request(PUT, segs("up", "r2"), [(OPT_IF_MATCH, b"\x09")], b"two"), 4, 12)
        self.assertCode(self.request(PUT, segs("up", "r2"), [(OPT_IF_MATCH, b"\x01\x02")], b"three"), 2, 4)
        valid = self.request(h.GET, segs("up", "r2"), [(OPT_ETAG, b"\x01\x02")])
        self.assertCode(valid, 2, 3)
        self.assertEqual(valid.option(OPT_ETAG), [b"\x01\x02"])
        reqs = self.coap_up.received()
        self.assertEqual(reqs[1].option(OPT_IF_MATCH), [b"\x09"])
        self.assertEqual(reqs[-1].option(OPT_ETAG), [b"\x01\x02"])


class FileSinkConditionals(HardeningTestCase):
    def test_if_match_on_the_sink_is_4_12(self):
        # The sink holds no representation, so no entity-tag can match (RFC 7252 5.10.8.1).
        self.assertCode(self.request(h.POST, segs("sink"), [(OPT_IF_MATCH, b"\x01")], b"x"), 4, 12)
        self.assertCode(self.request(h.POST, segs("sink"), [(OPT_IF_NONE_MATCH, b"")], b"y"), 2, 1)


class GatewayResourceConditionals(HardeningTestCase):
    """/.well-known/core is served by the gateway itself: it exists and has no ETag, so an
    If-Match with a tag and any If-None-Match fail with 4.12 (RFC 7252 5.10.8); an empty
    If-Match holds. A Block2 number that would not fit the option after rescaling is refused."""

    def test_conditions_on_well_known_core(self):
        core = h.path_options("/.well-known/core")
        self.assertEqual(self.request(h.GET, core).code, h.code(2, 5))
        self.assertEqual(self.request(h.GET, core, [(1, b"\x01\x02")]).code, h.code(4, 12))
        self.assertEqual(self.request(h.GET, core, [(5, b"")]).code, h.code(4, 12))
        self.assertEqual(self.request(h.GET, core, [(1, b"")]).code, h.code(2, 5))

    def test_block2_number_beyond_20_bits_after_rescaling_is_refused(self):
        # With coap.max_message_size 600 the gateway's blocks are 512 bytes: NUM 2^20-1 asked at
        # SZX 6 (1024) is block 2^21-2 in ours, which a Block2 option cannot carry.
        cfg = h.base_config(threads=1)
        cfg["coap"]["max_message_size"] = 600
        small = self.start_gateway(cfg, name="small")
        value = ((((1 << 20) - 1) << 4) | 6).to_bytes(3, "big")
        msg = h.Message(h.CON, h.code(0, h.GET), h.next_mid(), h.new_token(),
                        h.path_options("/.well-known/core") + [(23, value)])
        reply = h.coap_request(small.coap_addr(), msg, timeout=5)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, h.code(4, 2), reply)
        self.assertEqual(reply.option(23), [], "no Block2 option on the refusal")

if __name__ == "__main__":
    unittest.main()
