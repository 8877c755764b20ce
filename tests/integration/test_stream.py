"""CoAP over TCP and TLS (RFC 8323, issue 15): listen.coap_tcp and listen.coaps_tcp served by the workers.

libcoap's coap-client-notls with coap+tcp:// as the device (routes, file sink, HTTP forwarding,
Block2), coap-client-openssl and -gnutls with coaps+tcp:// (PSK and certificates), openssl s_client
for TLS 1.2 and 1.3 PSK handshakes and reload, a raw Python TCP peer speaking RFC 8323 frames where the connection itself is under test
(CSM, sessions listing, Release on drain), and abuse: garbage, half-open and slow-loris connections
and a connection flood up to stream.max_connections. Every ending is checked in the metrics.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest

import harness as h
import http_recorder
from test_forwarding import Recorder

CSM, PING, PONG, RELEASE, ABORT = 0xE1, 0xE2, 0xE3, 0xE4, 0xE5


def frame(code, token=b"", options=(), payload=b""):
    """One RFC 8323 §3.2 frame: Len/TKL, extended length, Code, Token, options and payload."""
    body = h.encode(h.Message(h.CON, code, 0, b"", options, payload))[4:]  # the RFC 7252 body
    n = len(body)
    if n < 13:
        head = bytes([(n << 4) | len(token)])
    elif n < 269:
        head = bytes([(13 << 4) | len(token), n - 13])
    elif n < 65805:
        head = bytes([(14 << 4) | len(token)]) + struct.pack("!H", n - 269)
    else:
        head = bytes([(15 << 4) | len(token)]) + struct.pack("!I", n - 65805)
    return head + bytes([code]) + bytes(token) + body


class StreamPeer:
    """A raw coap+tcp peer: frames out, frames in (parsed with the harness codec)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the gateway")
        self.buffer += chunk

    def recv(self, timeout=5.0):
        """The next frame as a harness Message (type and message id 0)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buffer:
                nib, tkl = self.buffer[0] >> 4, self.buffer[0] & 0x0F
                ext = {13: 1, 14: 2, 15: 4}.get(nib, 0)
                if len(self.buffer) >= 2 + ext:
                    n = nib if ext == 0 else int.from_bytes(self.buffer[1:1 + ext], "big") + {1: 13, 2: 269, 4: 65805}[ext]
                    total = 1 + ext + 1 + tkl + n
                    if len(self.buffer) >= total:
                        raw, self.buffer = self.buffer[:total], self.buffer[total:]
                        code, token, body = raw[1 + ext], raw[2 + ext:2 + ext + tkl], raw[2 + ext + tkl:]
                        return h.decode(bytes([0x40 | tkl, code, 0, 0]) + token + body)
            self._fill(deadline)

    def recv_until(self, code, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.05, deadline - time.monotonic()))
            if m.code == code:
                return m

    def wait_closed(self, timeout=5.0):
        """True once the gateway closed the connection (frames before that are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._fill(deadline)
                self.buffer = b""
            except EOFError:
                return True
            except ConnectionResetError:
                return True
            except socket.timeout:
                break
        return False

    def close(self):
        self.sock.close()


class StreamCase(h.GatewayTestCase):
    threads = 2
    stream = None

    def start_stream_gateway(self, routes=None, sessions_max=None, **stream):
        cfg = self.config(admin=f"127.0.0.1:{h.free_tcp_port()}")
        if sessions_max is not None:
            cfg["sessions"]["max"] = sessions_max
        if routes is not None:
            cfg["routes"] = routes
        cfg["threads"] = self.threads
        self.tcp_port = h.free_tcp_port()
        cfg["listen"]["coap_tcp"] = [f"127.0.0.1:{self.tcp_port}"]
        if stream:
            cfg["stream"] = stream
        self.gw = self.start_gateway(cfg)
        return self.gw

    def uri(self, path):
        return f"coap+tcp://127.0.0.1:{self.tcp_port}{path}"

    def established_peer(self):
        peer = StreamPeer(self.tcp_port)
        self.addCleanup(peer.close)
        peer.send(frame(CSM))
        csm = peer.recv()
        self.assertEqual(csm.code, CSM, csm)
        return peer


class CoapTcp(StreamCase):
    def setUp(self):
        super().setUp()
        self.recorder = Recorder(self.tmp)
        self.addCleanup(self.recorder.stop)
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        self.start_stream_gateway(routes=[
            {"prefix": "/telemetry", "upstream": "file:" + self.sink},
            {"prefix": "/api", "upstream": self.recorder.url, "timeout": "5s"},
        ])

    def test_libcoap_client_gets_well_known_core_over_tcp(self):
        rc, out, err = h.coap_client(["-m", "get", self.uri("/.well-known/core")])
        self.assertEqual(rc, 0, err)
        self.assertIn("</telemetry>", out)
        self.assertIn("</api>", out)
        h.poll_until(lambda: self.counter("coapgw_sessions_created_total", proto="tcp") >= 1, 5,
                     what="a tcp session counted")
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="tcp", reason="peer_closed") >= 1, 5,
                     what="the tcp session closed when the client left")
        self.assertGreaterEqual(self.counter("coapgw_requests_total", method="GET", code="2.05"), 1)

    def test_post_reaches_the_file_sink(self):
        rc, out, err = h.coap_client(["-m", "post", "-e", "over-tcp", self.uri("/telemetry/t1")])
        self.assertEqual(rc, 0, err)
        self.assertIsNone(h.response_error(out, err), err)
        def sink_lines():
            if not os.path.exists(self.sink):
                return []
            with open(self.sink) as f:
                return f.read().splitlines()
        lines = h.poll_until(sink_lines, 5, what="the sink line")
        self.assertIn('"payload":"over-tcp"', lines[-1])
        self.assertIn('"path":"/telemetry/t1"', lines[-1])

    def test_http_forwarding_and_block2_over_tcp(self):
        rc, out, err = h.coap_client(["-m", "put", "-e", "v=1", self.uri("/api/put-here")])
        self.assertEqual(rc, 0, err)
        recs = h.poll_until(lambda: self.recorder.records("/api/put-here"), 5, what="the forwarded PUT")
        self.assertEqual(recs[0]["method"], "PUT")
        self.assertEqual(recs[0]["body"], "v=1")
        # A 5000-byte answer comes back in Block2 windows over the same connection.
        out_path = os.path.join(self.tmp, "big.out")
        rc, out, err = h.coap_client(["-m", "get", "-o", out_path, self.uri("/api/big")], wait_s=10)
        self.assertEqual(rc, 0, err)
        with open(out_path, "rb") as f:
            self.assertEqual(f.read(), http_recorder.big_body())

    def test_raw_peer_session_listed_established_and_answered(self):
        peer = self.established_peer()

        def listed():
            status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
            return [s for s in json.loads(body)["sessions"] if s["proto"] == "tcp"] if status == 200 else []
        sessions = h.poll_until(lambda: [s for s in listed() if s["state"] == "established"], 5,
                                what="the tcp session established in /v1/sessions")
        self.assertEqual(sessions[0]["remote"], "127.0.0.1:%d" % peer.sock.getsockname()[1])
        self.assertEqual(self.counter("coapgw_sessions", proto="tcp", state="established"), 1)
        # Requests pipelined on one connection, answered by token; Ping answered with Pong.
        peer.send(frame(h.GET, b"\x01", h.path_options("/.well-known/core")) +
                  frame(h.GET, b"\x02\x02", h.path_options("/nothing-here")) + frame(PING, b"\x09"))
        answers = {}
        for _ in range(3):
            m = peer.recv()
            answers[m.token] = m
        self.assertEqual(answers[b"\x01"].code, h.code(2, 5))
        self.assertIn(b"</telemetry>", answers[b"\x01"].payload)
        self.assertEqual(answers[b"\x02\x02"].code, h.code(4, 4))
        self.assertEqual(answers[b"\x09"].code, PONG)
        peer.close()
        h.poll_until(lambda: not listed(), 5, what="the session gone with its connection")


class Abuse(StreamCase):
    threads = 1

    def test_garbage_aborts_that_connection_only(self):
        self.start_stream_gateway()
        bad = StreamPeer(self.tcp_port)
        self.addCleanup(bad.close)
        bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        abort = bad.recv_until(ABORT)
        self.assertTrue(abort.payload, "Abort carries a diagnostic")
        self.assertTrue(bad.wait_closed(), "the gateway closed the garbage connection")
        h.poll_until(lambda: self.counter("coapgw_stream_closed_total", proto="tcp") >= 1, 5,
                     what="the aborted connection counted")
        self.assertGreaterEqual(self.counter("coapgw_sessions_closed_total", proto="tcp", reason="disconnected"), 1)
        # A malformed frame after a good CSM costs that connection too, never the worker.
        peer = self.established_peer()
        peer.send(bytes([0x0F, 0x01]))  # TKL 15
        self.assertEqual(peer.recv_until(ABORT).code, ABORT)
        self.assertTrue(self.gw.alive())
        rc, out, err = h.coap_client(["-m", "get", self.uri("/.well-known/core")])
        self.assertIn("</telemetry>", out, err)

    def test_half_open_and_slow_loris_connections_are_cut(self):
        self.start_stream_gateway(csm_timeout="500ms", frame_timeout="500ms")
        silent = StreamPeer(self.tcp_port)  # never sends its CSM
        self.addCleanup(silent.close)
        self.assertTrue(silent.wait_closed(10), "a peer without CSM is cut")
        loris = self.established_peer()
        loris.send(frame(h.POST, b"\x01", h.path_options("/telemetry/x"), b"x" * 100)[:20])  # never finished
        self.assertTrue(loris.wait_closed(10), "a frame never finished is cut")
        h.poll_until(lambda: self.counter("coapgw_stream_closed_total", reason="csm_timeout") == 1 and
                     self.counter("coapgw_stream_closed_total", reason="frame_timeout") == 1, 5,
                     what="both timeouts counted")
        self.assertEqual(self.counter("coapgw_sessions", proto="tcp"), 0)

    def test_connection_flood_stops_at_the_cap(self):
        self.start_stream_gateway(max_connections=4)
        held = []
        for _ in range(4):
            held.append(self.established_peer())
        extra = []
        for _ in range(12):
            p = StreamPeer(self.tcp_port)
            self.addCleanup(p.close)
            extra.append(p)
        for p in extra:
            self.assertTrue(p.wait_closed(5), "over the cap: closed at once")
        h.poll_until(lambda: self.counter("coapgw_stream_connections_total", event="refused_over_cap") == 12, 5,
                     what="refusals counted")
        h.poll_until(lambda: self.counter("coapgw_sessions", proto="tcp", state="established") == 4, 5,
                     what="the held connections established (their CSMs processed)")
        # The held ones still work.
        held[0].send(frame(h.GET, b"\x05", h.path_options("/.well-known/core")))
        self.assertEqual(held[0].recv().code, h.code(2, 5))

    def test_sessions_max_covers_tcp(self):
        self.start_stream_gateway(sessions_max=2)  # the UDP readiness probe holds one at first
        a = self.established_peer()
        b = self.established_peer()
        # Both sessions are idle (no request in flight): the third connection reclaims the oldest,
        # whose connection is told with Release.
        c = self.established_peer()
        self.assertEqual(a.recv_until(RELEASE).code, RELEASE)
        self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="tcp", reason="evicted"), 1)
        for p in (b, c):
            p.send(frame(h.GET, b"\x07", h.path_options("/.well-known/core")))
            self.assertEqual(p.recv().code, h.code(2, 5))

    def test_full_table_of_dtls_devices_refuses_a_tcp_connection_and_keeps_them(self):
        # Two authenticated DTLS devices fill sessions.max: an unauthenticated TCP newcomer must not
        # displace them, and its refused connection costs that connection only (it was once freed
        # while a read was still being started on it).
        cfg = self.config(admin=f"127.0.0.1:{h.free_tcp_port()}")
        cfg["threads"] = 1
        cfg["sessions"]["max"] = 2
        dtls_port = h.free_udp_port()
        cfg["listen"]["coaps"] = [f"127.0.0.1:{dtls_port}"]
        self.tcp_port = h.free_tcp_port()
        cfg["listen"]["coap_tcp"] = [f"127.0.0.1:{self.tcp_port}"]
        self.gw = self.start_gateway(cfg)
        devices = []
        for _ in range(2):
            d = h.SClient("127.0.0.1", dtls_port, h.DEMO_IDENTITY, h.DEMO_KEY)
            self.addCleanup(d.close)
            self.assertTrue(d.wait_handshake(), d.out.text())
            devices.append(d)
        h.poll_until(lambda: self.counter("coapgw_sessions", proto="dtls", state="established") == 2, 10,
                     what="two established DTLS sessions")
        for _ in range(3):
            peer = StreamPeer(self.tcp_port)
            self.addCleanup(peer.close)
            self.assertTrue(peer.wait_closed(), "a TCP connection beyond sessions.max was not closed")
        self.assertTrue(self.gw.alive(), "the gateway died refusing a connection")
        self.assertEqual(self.counter("coapgw_sessions", proto="dtls", state="established"), 2,
                         "an unauthenticated TCP newcomer displaced a DTLS device")
        self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="dtls", reason="evicted"), 0)


class TlsClient(h.SClient):
    """`openssl s_client` over TLS (not DTLS) with a PSK, kept open; what its stdin gets is sent."""

    def __init__(self, port, identity, key, version):
        argv = ["openssl", "s_client", f"-{version}", "-psk", key.encode().hex(), "-psk_identity", identity,
                "-connect", f"127.0.0.1:{port}", "-brief"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = h.BackgroundReader(self.proc.stdout)

    def wait_handshake(self, deadline_s=15.0):
        return h.poll_until(lambda: "Protocol version" in self.out.text() or self.proc.poll() is not None,
                            deadline_s, what="the TLS handshake") and "Protocol version" in self.out.text()


class CoapsTcp(StreamCase):
    """coaps+tcp: TLS 1.2/1.3 with dtls.psk and dtls.pki, identity as for DTLS, reload revokes."""

    def start_tls_gateway(self, pki=None):
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        cfg = self.config(admin=f"127.0.0.1:{h.free_tcp_port()}")
        cfg["threads"] = 2
        self.tls_port = h.free_tcp_port()
        cfg["listen"]["coaps_tcp"] = [f"127.0.0.1:{self.tls_port}"]
        if pki:
            cfg["dtls"]["pki"] = {"cert": pki["server.crt"], "private_key": pki["server.key"], "ca": pki["ca.crt"]}
        self.gw = self.start_gateway(cfg)

    def tls_uri(self, path):
        return f"coaps+tcp://127.0.0.1:{self.tls_port}{path}"

    def psk(self):
        return ["-u", h.DEMO_IDENTITY, "-k", h.DEMO_KEY]

    def sink_lines(self):
        if not os.path.exists(self.sink):
            return []
        with open(self.sink) as f:
            return f.read().splitlines()

    def test_psk_with_libcoap_openssl_and_gnutls(self):
        self.start_tls_gateway()
        for flavour in ("openssl", "gnutls"):
            rc, out, err = h.coap_client(self.psk() + ["-m", "get", self.tls_uri("/.well-known/core")], flavour=flavour)
            self.assertIn("</telemetry>", out, flavour + ": " + err)
            rc, out, err = h.coap_client(self.psk() + ["-m", "post", "-e", "tls-" + flavour,
                                                       self.tls_uri("/telemetry/t")], flavour=flavour)
            self.assertIsNone(h.response_error(out, err), err)
            lines = h.poll_until(lambda: [l for l in (self.sink_lines() or []) if "tls-" + flavour in l], 5,
                                 what="the sink line of " + flavour)
            self.assertIn('"identity":"%s"' % h.DEMO_IDENTITY, lines[0])
        # A wrong key fails the handshake: counted, nothing served.
        rc, out, err = h.coap_client(["-u", h.DEMO_IDENTITY, "-k", "wrong", "-m", "get",
                                      self.tls_uri("/.well-known/core")], flavour="openssl", wait_s=3)
        self.assertNotIn("</telemetry>", out)
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="tls", reason="tls_failed") >= 1, 5,
                     what="the failed handshake counted")

    def test_tls12_and_tls13_psk_handshakes(self):
        self.start_tls_gateway()
        for version, name in (("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")):
            c = TlsClient(self.tls_port, h.DEMO_IDENTITY, h.DEMO_KEY, version)
            self.addCleanup(c.kill)
            self.assertTrue(c.wait_handshake(), c.out.text())
            self.assertIn("Protocol version: " + name, c.out.text())
            c.proc.stdin.write(bytes([0x00, CSM]))  # our CSM through the TLS channel: established
            c.proc.stdin.flush()
            h.poll_until(lambda: self.counter("coapgw_sessions", proto="tls", state="established") == 1, 5,
                         what="the %s session established" % name)
            c.close()
            h.poll_until(lambda: self.counter("coapgw_sessions", proto="tls") == 0, 5, what="the session closed")

    def test_certificates(self):
        pki = h.make_pki(self.tmp, client_cn="tls-device")
        self.start_tls_gateway(pki)
        cert_args = ["-c", pki["client.crt"], "-j", pki["client.key"], "-C", pki["ca.crt"]]
        rc, out, err = h.coap_client(cert_args + ["-m", "post", "-e", "hello cert", self.tls_uri("/telemetry/c")],
                                     flavour="openssl")
        self.assertIsNone(h.response_error(out, err), err)
        lines = h.poll_until(lambda: [l for l in (self.sink_lines() or []) if "hello cert" in l], 5,
                             what="the sink line")
        self.assertIn('"identity":"tls-device"', lines[0])
        # PSK stays on beside certificates.
        rc, out, err = h.coap_client(self.psk() + ["-m", "get", self.tls_uri("/.well-known/core")], flavour="openssl")
        self.assertIn("</telemetry>", out, err)

    def test_reload_with_another_key_closes_the_session(self):
        self.start_tls_gateway()
        c = TlsClient(self.tls_port, h.DEMO_IDENTITY, h.DEMO_KEY, "tls1_3")
        self.addCleanup(c.kill)
        self.assertTrue(c.wait_handshake(), c.out.text())
        c.proc.stdin.write(bytes([0x00, CSM]))
        c.proc.stdin.flush()
        h.poll_until(lambda: self.counter("coapgw_sessions", proto="tls", state="established") == 1, 5,
                     what="the session established")
        self.gw.config["dtls"]["psk"]["keys"] = [{"identity": h.DEMO_IDENTITY, "key": "changed-on-reload"}]
        self.gw.write_config()
        self.gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="tls", reason="revoked") == 1, 10,
                     what="the session revoked at reload")
        h.poll_until(lambda: c.proc.poll() is not None, 10, what="s_client sees its connection closed")


WS_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_client.js")


class WebSocket(StreamCase):
    """coap+ws and coaps+ws (RFC 8323 §4) with a WebSocket client that is not ours: Debian's node-ws."""

    def setUp(self):
        super().setUp()
        if not os.path.exists("/usr/share/nodejs/ws/index.js"):
            self.skipTest("node-ws is not installed (scripts/install-deps.sh installs nodejs and node-ws)")
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        cfg = self.config(admin=f"127.0.0.1:{h.free_tcp_port()}")
        self.ws_port, self.wss_port = h.free_tcp_port(), h.free_tcp_port()
        cfg["listen"]["coap_ws"] = [f"127.0.0.1:{self.ws_port}"]
        cfg["listen"]["coaps_ws"] = [f"127.0.0.1:{self.wss_port}"]
        self.gw = self.start_gateway(cfg)

    def node(self, *args):
        rc, out, err = h.run_peer(["node", WS_CLIENT] + list(args), timeout=20)
        return rc, [json.loads(l) for l in out.splitlines() if l.startswith("{")], err

    def test_requests_over_coap_ws(self):
        rc, answers, err = self.node(f"ws://127.0.0.1:{self.ws_port}/.well-known/coap", "/.well-known/core", "/nope")
        self.assertEqual(rc, 0, err)
        by_path = {a["path"]: a for a in answers}
        self.assertEqual(by_path["/.well-known/core"]["code"], "2.05")
        self.assertIn("</telemetry>", by_path["/.well-known/core"]["payload"])
        self.assertEqual(by_path["/nope"]["code"], "4.04")
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="ws", reason="peer_closed") == 1, 5,
                     what="the ws session closed by the client")

    def test_psk_identity_over_coaps_ws(self):
        rc, answers, err = self.node(f"wss://127.0.0.1:{self.wss_port}/.well-known/coap", "--psk", h.DEMO_IDENTITY,
                                     h.DEMO_KEY, "--post", "over-wss", "/telemetry/w")
        self.assertEqual(rc, 0, err)
        self.assertEqual(answers[0]["code"], "2.01")
        with open(self.sink) as f:
            line = f.read().splitlines()[-1]
        self.assertIn('"identity":"%s"' % h.DEMO_IDENTITY, line)
        self.assertIn('"payload":"over-wss"', line)

    def test_wrong_path_and_text_messages_cost_that_connection(self):
        rc, answers, err = self.node(f"ws://127.0.0.1:{self.ws_port}/elsewhere", "/x")
        self.assertNotEqual(rc, 0)
        self.assertIn("http 404", err)
        h.poll_until(lambda: self.counter("coapgw_stream_closed_total", proto="ws", reason="upgrade_failed") == 1, 5,
                     what="the refused upgrade counted")
        # A raw upgrade then a (masked) text frame: RFC 8323 §4 is binary only, so the gateway closes.
        peer = StreamPeer(self.ws_port)
        self.addCleanup(peer.close)
        peer.send(b"GET /.well-known/coap HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Protocol: coap\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += peer.sock.recv(4096)
        self.assertIn(b"101 Switching Protocols", head)
        self.assertIn(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)  # RFC 6455's own example key and answer
        peer.send(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))
        self.assertTrue(peer.wait_closed(), "a text message ends the connection")
        h.poll_until(lambda: self.counter("coapgw_stream_closed_total", proto="ws", reason="malformed_frame") == 1, 5,
                     what="the text message counted")
        self.assertTrue(self.gw.alive())


class StreamDownlink(StreamCase):
    """The backend API sends a request to a device over its coap+tcp connection (DESIGN "Downlink")."""
    threads = 2

    def test_request_over_the_devices_connection(self):
        from test_downlink import TOKEN, ApiTestCase
        cfg_api = f"127.0.0.1:{h.free_tcp_port()}"
        self.start_stream_gateway()
        self.gw.config["listen"]["api"] = cfg_api
        self.gw.config["api"] = {"tokens": [{"name": "backend", "token": TOKEN}]}
        self.gw.stop()
        self.gw.start()
        self.api_base = "http://" + cfg_api
        device = self.established_peer()
        device.send(frame(h.GET, b"\x31", h.path_options("/hello")))  # calls in: 4.04, no route
        self.assertEqual(device.recv().code, h.code(4, 4))
        ref = "coap:127.0.0.1:%d" % device.sock.getsockname()[1]
        result = {}
        caller = threading.Thread(target=lambda: result.update(
            answer=ApiTestCase.api(self, "POST", ApiTestCase.device_path(self, ref), {"method": "GET", "path": "/temp"})))
        caller.start()
        request = device.recv(timeout=10)
        self.assertEqual(request.code, h.GET)
        self.assertEqual(request.uri_path(), "/temp")
        device.send(frame(h.code(2, 5), request.token, [(h.OPT_CONTENT_FORMAT, b"")], b"21.5"))
        caller.join(15)
        status, body = result["answer"]
        self.assertEqual(status, 200, body)
        self.assertEqual(body["code"], "2.05")
        self.assertEqual(body["payload"], "21.5")
        self.assertGreaterEqual(self.counter("coapgw_downlink_requests_total", outcome="answered"), 1)


class Drain(StreamCase):
    threads = 1

    def test_sigterm_sends_release_then_closes(self):
        self.start_stream_gateway()
        peer = self.established_peer()
        self.gw.send_signal(signal.SIGTERM)
        self.assertEqual(peer.recv_until(RELEASE).code, RELEASE)
        peer.close()
        self.assertEqual(self.gw.wait_exit(), 0)


if __name__ == "__main__":
    unittest.main()
