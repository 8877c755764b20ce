"""Downlink (DESIGN "Downlink", issue 14): a backend with a bearer token sends
CoAP requests to devices over the sessions the devices set up (Call-Home),
through the backend API listener listen.api.

The devices are real peers: a small plain-CoAP device in Python that calls in
and serves resources on the same socket, and openssl s_client holding a DTLS
session that answers the gateway's request written to its stdout.
"""
import json
import re
import signal
import socket
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import harness as h
from test_ops import DtlsDevice

TOKEN = "backend-secret-token"
OPT_BLOCK2, OPT_BLOCK1 = 23, 27


def decode_block(value):
    v = int.from_bytes(value, "big")
    return v >> 4, (v >> 3) & 1, v & 7


def encode_block(num, more, szx):
    v = (num << 4) | (int(more) << 3) | szx
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


class PlainDevice:
    """A plain CoAP device on one UDP socket: it calls in (a request to the
    gateway creates its session) and answers the gateway's requests on that
    same socket with piggybacked ACKs, from `resources` (path -> payload; a PUT
    stores its payload). With answering=False it stays silent."""

    def __init__(self, gateway_addr, answering=True):
        self.gateway = gateway_addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answering = answering
        self.resources = {"/temp": b"21.5"}
        self.requests = []   # (method code, path, payload) the gateway sent us
        self.responses = []  # answers to our own requests
        self._uploads = {}   # path -> Block1 blocks so far
        self.observe_requests = []  # (path, Observe value) of the gateway's GETs
        self.observer = None        # (token, path) of the registered observation
        self.seq = 1
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def ref(self):
        return f"coap:127.0.0.1:{self.port}"

    def call_in(self, path="/hello"):
        """One CON request to the gateway (answered 4.04: no route); waits for the answer."""
        before = len(self.responses)
        self.sock.sendto(h.encode(h.get(path)), self.gateway)
        h.poll_until(lambda: len(self.responses) > before, 5.0, 0.02, "the gateway's answer to our call-in")

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
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
            if m.code >> 5 != 0 or m.code == 0:  # a response (or empty ACK) to our call-in
                with self._lock:
                    self.responses.append(m)
                continue
            with self._lock:
                self.requests.append((m.code, m.uri_path(), m.payload))
            if not self.answering:
                continue
            self.sock.sendto(h.encode(self._answer(m)), peer)

    def _answer(self, m):
        path = m.uri_path()
        if m.code == h.code(0, h.PUT):
            block1 = m.option(OPT_BLOCK1)
            if not block1:
                self.resources[path] = m.payload
                return h.Message(h.ACK, h.code(2, 4), m.mid, m.token)
            num, more, _ = decode_block(block1[0])  # RFC 7959 2.5: in order, one by one
            self._uploads[path] = (self._uploads.get(path, b"") if num else b"") + m.payload
            if more:
                return h.Message(h.ACK, h.code(2, 31), m.mid, m.token, [(OPT_BLOCK1, block1[0])])
            self.resources[path] = self._uploads.pop(path)
            return h.Message(h.ACK, h.code(2, 4), m.mid, m.token, [(OPT_BLOCK1, block1[0])])
        if path not in self.resources:
            return h.Message(h.ACK, h.code(4, 4), m.mid, m.token)
        observe = m.option(h.OPT_OBSERVE)
        if observe:
            value = int.from_bytes(observe[0], "big")
            with self._lock:
                self.observe_requests.append((path, value))
            if value == 0:  # register (RFC 7641 3.1): the answer carries the first sequence number
                self.observer = (m.token, path)
                return h.Message(h.ACK, h.code(2, 5), m.mid, m.token,
                                 [(h.OPT_OBSERVE, bytes([self.seq])), (h.OPT_CONTENT_FORMAT, b"")],
                                 self.resources[path])
            self.observer = None  # deregister: answered without Observe
        body = self.resources[path]
        options = [(h.OPT_CONTENT_FORMAT, b"")]
        block2 = m.option(OPT_BLOCK2)
        if len(body) > 1024 or block2:
            num, _, szx = decode_block(block2[0]) if block2 else (0, 0, 6)
            szx = min(szx, 6)
            size = 16 << szx
            chunk = body[num * size:(num + 1) * size]
            options.append((OPT_BLOCK2, encode_block(num, (num + 1) * size < len(body), szx)))
            return h.Message(h.ACK, h.code(2, 5), m.mid, m.token, options, chunk)
        return h.Message(h.ACK, h.code(2, 5), m.mid, m.token, options, body)

    def notify(self, payload, seq):
        """One NON notification with Observe `seq` to the registered observer."""
        token, _ = self.observer
        msg = h.Message(h.NON, h.code(2, 5), h.next_mid(), token,
                        [(h.OPT_OBSERVE, seq.to_bytes(3, "big")), (h.OPT_CONTENT_FORMAT, b"")], payload)
        self.sock.sendto(h.encode(msg), self.gateway)

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


class ApiTestCase(h.GatewayTestCase):
    def start_api_gateway(self, **kw):
        cfg = self.config(**kw)
        cfg["listen"]["api"] = f"127.0.0.1:{h.free_tcp_port()}"
        cfg["listen"]["admin"] = f"127.0.0.1:{h.free_tcp_port()}"
        cfg["api"] = {"tokens": [{"name": "backend", "token": TOKEN}]}
        self.api_base = "http://" + cfg["listen"]["api"]
        self.gw = self.start_gateway(cfg)
        return self.gw

    def api(self, method, path, body=None, token=TOKEN, timeout=15.0):
        """(status, decoded JSON body or None)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_base + path, data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def device_path(self, ref, rest="/requests"):
        return "/v1/devices/" + urllib.parse.quote(ref, safe="") + rest


class PlainDownlink(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.start_api_gateway()
        self.device = PlainDevice(self.gw.coap_addr())
        self.addCleanup(self.device.close)

    def test_get_and_put_answered_by_the_device(self):
        self.device.call_in()
        status, body = self.api("POST", self.device_path(self.device.ref), {"method": "GET", "path": "/temp"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["code"], "2.05")
        self.assertEqual(body["payload"], "21.5")
        self.assertEqual(body["remote"], f"127.0.0.1:{self.device.port}")

        status, body = self.api("POST", self.device_path(self.device.ref),
                                {"method": "PUT", "path": "/led", "payload": "on"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["code"], "2.04")
        self.assertEqual(self.device.resources.get("/led"), b"on")
        self.assertIn((h.code(0, h.PUT), "/led", b"on"), self.device.requests)
        h.poll_until(lambda: self.counter("coapgw_downlink_requests_total", outcome="answered") >= 2, 5.0,
                     what="answered downlinks counted")

    def test_large_bodies_go_block_wise(self):
        self.device.call_in()
        upload = bytes(ord("a") + i % 26 for i in range(3000))
        status, body = self.api("POST", self.device_path(self.device.ref),
                                {"method": "PUT", "path": "/big", "payload": upload.decode()})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["code"], "2.04")
        self.assertEqual(self.device.resources.get("/big"), upload)
        self.assertGreaterEqual(len([r for r in self.device.requests if r[1] == "/big"]), 3, "not sent block-wise")
        before = len(self.device.requests)
        status, body = self.api("POST", self.device_path(self.device.ref), {"method": "GET", "path": "/big"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["payload"], upload.decode())
        self.assertGreaterEqual(len(self.device.requests) - before, 3, "not fetched block-wise")

    def test_session_is_a_server_session_again_after_the_downlink(self):
        self.device.call_in()
        status, _ = self.api("POST", self.device_path(self.device.ref), {"method": "GET", "path": "/temp"})
        self.assertEqual(status, 200)

        def server_again():
            status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
            sessions = json.loads(body)["sessions"]
            mine = [s for s in sessions if s["remote"] == f"127.0.0.1:{self.device.port}"]
            return len(mine) == 1 and mine[0]["type"] == "server" and mine[0]["refcount"] == 0
        h.poll_until(server_again, 5.0, what="the device's session back to a server session, unreferenced")
        # and it still serves the device
        self.device.call_in()

    def test_no_token_is_401_and_unknown_device_is_404(self):
        self.device.call_in()
        status, _ = self.api("POST", self.device_path(self.device.ref), {"method": "GET", "path": "/temp"},
                             token=None)
        self.assertEqual(status, 401)
        status, _ = self.api("POST", self.device_path(self.device.ref), {"method": "GET", "path": "/temp"},
                             token="wrong-token")
        self.assertEqual(status, 401)
        self.assertEqual(self.device.requests, [], "an unauthorized request reached the device")
        # A token in the config after SIGHUP.
        before = self.counter("coapgw_config_reloads_total", result="ok")
        self.gw.config["api"]["tokens"].append({"name": "second", "token": "another-token-value"})
        self.gw.write_config()
        self.gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: self.counter("coapgw_config_reloads_total", result="ok") == before + 1, 10.0,
                     what="the reload")
        status, body = self.api("POST", self.device_path(self.device.ref), {"method": "GET", "path": "/temp"},
                                token="another-token-value")
        self.assertEqual(status, 200, body)
        nobody = f"coap:127.0.0.1:{h.free_udp_port()}"
        status, body = self.api("POST", self.device_path(nobody), {"method": "GET", "path": "/temp"})
        self.assertEqual(status, 404, body)
        status, body = self.api("POST", self.device_path("no-such-identity"), {"method": "GET", "path": "/temp"})
        self.assertEqual(status, 404, body)

    def my_sessions(self):
        status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
        self.assertEqual(status, 200, body)
        return [s for s in json.loads(body)["sessions"] if s["remote"] == f"127.0.0.1:{self.device.port}"]

    def test_silent_device_is_504_and_its_session_is_a_client_session_meanwhile(self):
        self.device.answering = False
        self.device.call_in()
        result = {}
        backend = threading.Thread(target=lambda: result.update(answer=self.api(
            "POST", self.device_path(self.device.ref), {"method": "GET", "path": "/temp", "timeout": "3s"})))
        backend.start()
        h.poll_until(lambda: any(s["type"] == "client" and s["downlinks"] == 1 and s["refcount"] >= 1
                                 for s in self.my_sessions()), 3.0, 0.05,
                     "the session shown as a client session with one downlink pending")
        backend.join(timeout=20)
        status, body = result["answer"]
        self.assertEqual(status, 504, body)
        mine = self.my_sessions()
        self.assertEqual([(s["type"], s["downlinks"]) for s in mine], [("server", 0)])
        self.assertTrue(any(p == "/temp" for _, p, _ in self.device.requests), "the request never reached the device")
        h.poll_until(lambda: self.counter("coapgw_downlink_requests_total", outcome="timeout") >= 1, 5.0,
                     what="timeout counted")

    def test_queued_for_a_quiet_device_is_sent_when_it_calls_in(self):
        # The device has no session yet: it is asleep.
        status, body = self.api("POST", self.device_path(self.device.ref),
                                {"method": "GET", "path": "/temp", "queue_for": "1m"})
        self.assertEqual(status, 202, body)
        self.assertEqual(body["state"], "queued")
        rid = body["id"]
        status, body = self.api("GET", self.device_path(self.device.ref, f"/requests/{rid}"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["state"], "queued")
        self.assertEqual(self.device.requests, [])

        self.device.call_in()  # wakes up

        def answered():
            status, body = self.api("GET", self.device_path(self.device.ref, f"/requests/{rid}"))
            return status == 200 and body["state"] == "answered" and body
        body = h.poll_until(answered, 10.0, what="the queued request answered")
        self.assertEqual(body["answer"]["payload"], "21.5")
        self.assertIn((h.code(0, h.GET), "/temp", b""), self.device.requests)


class Observe(ApiTestCase):
    def test_notifications_are_posted_in_order_until_cancelled(self):
        from http_recorder import RecordingServer, read_records
        log = f"{self.tmp}/notify.jsonl"
        recorder = RecordingServer(("127.0.0.1", 0), log)
        threading.Thread(target=recorder.serve_forever, daemon=True).start()
        self.addCleanup(recorder.server_close)
        self.addCleanup(recorder.shutdown)
        self.start_api_gateway()
        device = PlainDevice(self.gw.coap_addr())
        self.addCleanup(device.close)
        device.call_in()

        notify = f"http://127.0.0.1:{recorder.server_address[1]}/notify"
        status, body = self.api("POST", self.device_path(device.ref, "/observations"),
                                {"path": "/temp", "notify": notify})
        self.assertEqual(status, 200, body)
        oid = body["id"]
        self.assertEqual(device.observe_requests, [("/temp", 0)])
        self.assertEqual(h.poll_until(lambda: self.counter("coapgw_observations"), 5.0, what="gauge"), 1)
        h.poll_until(lambda: any(s["type"] == "client" for s in json.loads(
            h.http_get(self.gw.admin_url("/v1/sessions"))[1])["sessions"]), 5.0, what="a client session")

        device.notify(b"22.0", 2)
        h.poll_until(lambda: len(read_records(log)) >= 1, 5.0, what="the first notification posted")
        device.notify(b"stale", 1)  # older than 2 (RFC 7641 3.4): dropped
        device.notify(b"23.0", 3)
        records = h.poll_until(lambda: len(read_records(log)) >= 2 and read_records(log), 5.0,
                               what="the second notification posted")
        self.assertEqual([(r["method"], r["path"], r["body"]) for r in records],
                         [("POST", "/notify", "22.0"), ("POST", "/notify", "23.0")])
        self.assertEqual([r["headers"].get("X-CoAP-Observe") for r in records], ["2", "3"])
        self.assertEqual(records[0]["headers"].get("X-Device-Identity"), device.ref)
        self.assertEqual(self.counter("coapgw_notifications_total"), 2)

        status, body = self.api("DELETE", self.device_path(device.ref, f"/observations/{oid}"))
        self.assertEqual(status, 200, body)
        h.poll_until(lambda: ("/temp", 1) in device.observe_requests, 5.0, what="the GET with Observe=1")
        self.assertEqual(h.poll_until(lambda: self.counter("coapgw_observations") == 0 and "zero", 5.0,
                                      what="gauge back to 0"), "zero")
        status, body = self.api("DELETE", self.device_path(device.ref, f"/observations/{oid}"))
        self.assertEqual(status, 404, body)


class DtlsDownlink(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.start_api_gateway(coaps=[f"127.0.0.1:{h.free_udp_port()}"])

    def connect(self):
        host, port = self.gw.coaps_addr()
        device = DtlsDevice(host, port, h.DEMO_IDENTITY, h.DEMO_KEY)
        self.addCleanup(device.kill)
        self.assertTrue(device.wait_handshake(), device.text())
        return device

    @staticmethod
    def answer_get_temp(device):
        """Waits for the gateway's CON GET /temp (8-byte token) as s_client prints it and answers
        it with a piggybacked 2.05 "21.5" written to s_client's stdin."""
        pattern = re.compile(rb"\x48\x01(..)(.{8})\xb4temp", re.S)
        found = h.poll_until(lambda: pattern.search(device.output()), 10.0,
                             what="the gateway's GET /temp on the DTLS session")
        mid = int.from_bytes(found.group(1), "big")
        device.send(h.Message(h.ACK, h.code(2, 5), mid, found.group(2), [(h.OPT_CONTENT_FORMAT, b"")], b"21.5"))

    def test_get_to_a_dtls_device_by_its_psk_identity(self):
        device = self.connect()
        self.assertEqual(device.request(h.GET, "/hello"), h.code(4, 4))  # the session carries traffic
        result = {}
        backend = threading.Thread(target=lambda: result.update(
            answer=self.api("POST", self.device_path(h.DEMO_IDENTITY), {"method": "GET", "path": "/temp"})))
        backend.start()
        self.answer_get_temp(device)
        backend.join(timeout=20)
        status, body = result["answer"]
        self.assertEqual(status, 200, body)
        self.assertEqual(body["code"], "2.05")
        self.assertEqual(body["payload"], "21.5")

    def test_queued_for_a_dtls_device_goes_out_after_its_next_message(self):
        status, body = self.api("POST", self.device_path(h.DEMO_IDENTITY),
                                {"method": "GET", "path": "/temp", "queue_for": "1m"})
        self.assertEqual(status, 202, body)
        rid = body["id"]
        device = self.connect()
        self.assertEqual(device.request(h.GET, "/hello"), h.code(4, 4))  # its first message wakes the queue
        self.answer_get_temp(device)

        def answered():
            status, body = self.api("GET", self.device_path(h.DEMO_IDENTITY, f"/requests/{rid}"))
            return status == 200 and body["state"] == "answered" and body
        body = h.poll_until(answered, 10.0, what="the queued request answered")
        self.assertEqual(body["answer"]["payload"], "21.5")


if __name__ == "__main__":
    unittest.main()
