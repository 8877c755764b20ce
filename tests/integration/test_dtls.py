"""DTLS 1.2 termination against independent peers (issue 3, item 6).

libcoap's coap-client over OpenSSL and GnuTLS with PSK and certificates,
openssl s_client, a wrong key, and a flood of ClientHellos that never finish.
"""

import json
import os
import socket
import time
import unittest

import harness as h

OTHER_IDENTITY, OTHER_KEY = "other-device", "other-secret"


class DtlsTestCase(h.GatewayTestCase):
    def dtls_config(self, **kw):
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        cfg = h.base_config(
            coaps=[f"127.0.0.1:{h.free_udp_port()}"],
            keys=[{"identity": h.DEMO_IDENTITY, "key": h.DEMO_KEY},
                  {"identity": OTHER_IDENTITY, "key_hex": OTHER_KEY.encode().hex()}],
            routes=[{"prefix": "/telemetry", "upstream": f"file:{self.sink}"}], **kw)
        return cfg

    def coaps_uri(self, gw, path):
        host, port = gw.coaps_addr()
        return f"coaps://{host}:{port}{path}"

    def psk_args(self, identity=h.DEMO_IDENTITY, key=h.DEMO_KEY):
        return ["-u", identity, "-k", key]

    def assert_link_format(self, result):
        rc, out, err = result
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), out + err)
        self.assertRegex(out, r"<[^>]*>", f"no link-format body: stdout={out!r} stderr={err!r}")

    def counter(self, name, **labels):
        """One sample of the gateway's /metrics (self.gw), parsed by prometheus_client; 0 if absent."""
        from prometheus_client.parser import text_string_to_metric_families
        status, body = h.http_get(self.gw.admin_url("/metrics"))
        self.assertEqual(status, 200)
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    def sink_lines(self):
        try:
            with open(self.sink) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def assert_sink_has(self, identity, payload, path="/telemetry/x"):
        """The file sink line is written before the answer; poll briefly anyway."""
        def find():
            for line in self.sink_lines():
                if line.get("payload") == payload:
                    return line
            return None
        line = h.poll_until(find, 5.0, what=f"sink line with payload {payload!r}")
        self.assertEqual(line.get("identity"), identity, line)
        self.assertEqual(line.get("method"), "POST", line)
        self.assertEqual(line.get("path"), path, line)
        for key in ("ts", "session", "remote"):
            self.assertIn(key, line)


class Psk(DtlsTestCase):
    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(self.dtls_config())

    def _get_and_post(self, flavour, identity, key):
        self.assert_link_format(h.coap_client(
            self.psk_args(identity, key) + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")],
            flavour=flavour))
        payload = f"hello from {flavour} {identity}"
        rc, out, err = h.coap_client(
            self.psk_args(identity, key)
            + ["-m", "post", "-e", payload, self.coaps_uri(self.gw, "/telemetry/x")], flavour=flavour)
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), f"POST answered with an error: {out}{err}")
        self.assert_sink_has(identity, payload)

    def test_coap_client_openssl_psk(self):
        self._get_and_post("openssl", h.DEMO_IDENTITY, h.DEMO_KEY)

    def test_coap_client_gnutls_psk(self):
        self._get_and_post("gnutls", h.DEMO_IDENTITY, h.DEMO_KEY)

    def test_key_hex_identity(self):
        self._get_and_post("openssl", OTHER_IDENTITY, OTHER_KEY)

    def test_post_to_unrouted_path_is_4_04(self):
        rc, out, err = h.coap_client(
            self.psk_args() + ["-m", "post", "-e", "x", self.coaps_uri(self.gw, "/no-route")],
            flavour="openssl")
        self.assertEqual(h.response_error(out, err), "4.04", out + err)

    def test_openssl_s_client_handshake(self):
        host, port = self.gw.coaps_addr()
        client = h.SClient(host, port, h.DEMO_IDENTITY, h.DEMO_KEY)
        try:
            ok = client.wait_handshake()
        finally:
            text = client.close()
        self.assertTrue(ok, f"s_client did not complete the handshake:\n{text}")
        self.assertIn("Cipher is", text)
        self.assertRegex(text, r"Cipher is \S*PSK", "negotiated a non-PSK suite")

    def test_wrong_key_refused_other_devices_served(self):
        rc, out, err = h.coap_client(
            self.psk_args(h.DEMO_IDENTITY, "not-the-key")
            + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")], flavour="openssl")
        self.assertNotIn("</", out, "a wrong key got an answer")
        rc, out, err = h.coap_client(
            self.psk_args("nobody-knows-me", h.DEMO_KEY)
            + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")], flavour="openssl")
        self.assertNotIn("</", out, "an unknown identity got an answer")
        self.assertTrue(self.gw.alive())
        self.assert_link_format(h.coap_client(
            self.psk_args() + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")],
            flavour="openssl"))
        self.assert_link_format(h.coap_client(
            self.psk_args(OTHER_IDENTITY, OTHER_KEY)
            + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")], flavour="gnutls"))


class HelloFlood(DtlsTestCase):
    """Load-heavy: ctest runs it alone (RUN_SERIAL), which also keeps the RSS
    measurement free of other tests' noise."""

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(self.dtls_config())

    def test_client_hello_flood_leaves_memory_flat(self):
        host, port = self.gw.coaps_addr()
        # warm up: one real device, and one hand-made hello must get a HelloVerifyRequest
        self.assert_link_format(h.coap_client(
            self.psk_args() + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")],
            flavour="openssl"))
        with h.udp_socket((host, port)) as s:
            s.send(h.dtls_client_hello())
            s.settimeout(3.0)
            try:
                first = s.recv(4096)
            except socket.timeout:
                self.fail("no HelloVerifyRequest for a ClientHello without cookie")
        self.assertTrue(h.is_hello_verify_request(first), first[:16].hex())
        rss_before = self.gw.rss_kb()

        sockets_n, per_socket = 200, 50
        for batch in range(0, sockets_n, 50):  # bounded number of fds at once
            socks = [h.udp_socket((host, port)) for _ in range(50)]
            try:
                for seq in range(per_socket):
                    for s in socks:
                        try:
                            s.send(h.dtls_client_hello(seq=seq))
                        except (ConnectionRefusedError, BlockingIOError):
                            pass
            finally:
                for s in socks:
                    s.close()

        # after the flood, a fresh hello is still answered: the queue is drained
        def answered():
            with h.udp_socket((host, port)) as s:
                s.send(h.dtls_client_hello())
                s.settimeout(1.0)
                try:
                    return h.is_hello_verify_request(s.recv(4096))
                except socket.timeout:
                    return False
        h.poll_until(answered, 20.0, what="HelloVerifyRequest after the flood")
        self.assertTrue(self.gw.alive(), "coapgwd died during the flood")
        rss_after = self.gw.rss_kb()
        if not h.SANITIZER:  # ASan's quarantine holds freed blocks: RSS says nothing there
            self.assertLess(rss_after - rss_before, 5 * 1024,
                            f"RSS grew from {rss_before} kB to {rss_after} kB")
        self.assert_link_format(h.coap_client(
            self.psk_args() + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")],
            flavour="openssl"))


class Certificates(DtlsTestCase):
    def test_coap_client_openssl_with_certificates(self):
        pki = h.make_pki(self.tmp, client_cn="pki-device")
        cfg = self.dtls_config()
        cfg["dtls"]["pki"] = {"cert": pki["server.crt"], "private_key": pki["server.key"],
                              "ca": pki["ca.crt"]}
        gw = self.start_gateway(cfg)
        cert_args = ["-c", pki["client.crt"], "-j", pki["client.key"], "-C", pki["ca.crt"]]
        self.assert_link_format(h.coap_client(
            cert_args + ["-m", "get", self.coaps_uri(gw, "/.well-known/core")], flavour="openssl"))
        rc, out, err = h.coap_client(
            cert_args + ["-m", "post", "-e", "hello pki", self.coaps_uri(gw, "/telemetry/x")],
            flavour="openssl")
        self.assertIsNone(h.response_error(out, err), out + err)
        self.assert_sink_has("pki-device", "hello pki")
        # PSK stays on beside certificates
        self.assert_link_format(h.coap_client(
            self.psk_args() + ["-m", "get", self.coaps_uri(gw, "/.well-known/core")],
            flavour="openssl"))


if __name__ == "__main__":
    unittest.main()


class HandshakeBound(DtlsTestCase):
    """dtls.max_handshakes and dtls.handshake_timeout: a peer that passes the cookie exchange and
    then stalls holds the only handshake slot; a new device is refused (counted) while an
    established session keeps working; when the stalled handshake times out, the slot frees up."""

    def stall_a_handshake(self):
        host, port = self.gw.coaps_addr()
        s = h.udp_socket((host, port))
        random = os.urandom(32)
        s.send(h.dtls_client_hello(seq=0, random=random))
        s.settimeout(3.0)
        hvr = s.recv(4096)
        cookie = h.hello_verify_cookie(hvr)
        self.assertIsNotNone(cookie, hvr[:16].hex())
        s.send(h.dtls_client_hello(seq=1, cookie=cookie, random=random, message_seq=1))
        flight = s.recv(4096)
        # ServerHello (handshake type 2) in the first record: the gateway committed a handshake.
        self.assertEqual((flight[0], flight[13]), (22, 2), flight[:16].hex())
        return s

    def test_handshake_slots_are_bounded_and_freed_by_timeout(self):
        cfg = self.dtls_config(threads=1, admin=f"127.0.0.1:{h.free_tcp_port()}")
        cfg["dtls"]["max_handshakes"] = 1
        cfg["dtls"]["handshake_timeout"] = "3s"
        self.gw = self.start_gateway(cfg)
        # An established session from before the stall (held open by s_client).
        held = h.SClient(*self.gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY)
        try:
            self.assertTrue(held.wait_handshake(), held.out.text())
            stalled = self.stall_a_handshake()
            try:
                rc, out, err = h.coap_client(self.psk_args() + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")],
                                             flavour="openssl", wait_s=2)
                self.assertNotIn("</", out, "a handshake beyond dtls.max_handshakes was served")
                self.assertGreaterEqual(self.counter("coapgw_dtls_handshakes_total", result="rejected"), 1)
                self.assertIsNone(held.proc.poll(), "the established session was disturbed")
                h.poll_until(lambda: self.counter("coapgw_dtls_handshakes_total", result="timeout") >= 1, 15.0,
                             what="the stalled handshake to time out")
                self.assert_link_format(h.coap_client(
                    self.psk_args() + ["-m", "get", self.coaps_uri(self.gw, "/.well-known/core")], flavour="openssl"))
                self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="dtls", reason="handshake_timeout"), 1)
            finally:
                stalled.close()
        finally:
            held.kill()


class RebootedDevice(DtlsTestCase):
    """A device that reboots (no close_notify) and handshakes again from the same address and port:
    the new handshake runs beside the live session and replaces it only when it completes."""

    def sessions(self):
        status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
        self.assertEqual(status, 200, body)
        data = json.loads(body)
        sessions = data["sessions"] if isinstance(data, dict) else data
        return [s for s in sessions if s["proto"] == "dtls"]  # the harness's readiness probe is plain CoAP

    def test_new_handshake_from_same_port_replaces_session(self):
        self.gw = self.start_gateway(self.dtls_config(threads=1, admin=f"127.0.0.1:{h.free_tcp_port()}"))
        port = h.free_udp_port()
        bind = ["-bind", f"127.0.0.1:{port}"]
        first = h.SClient(*self.gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY, extra=bind)
        try:
            self.assertTrue(first.wait_handshake(), first.out.text())
            before = h.poll_until(lambda: [s for s in self.sessions() if s["state"] == "established"] or None, 5.0,
                                  what="the first session")
            self.assertEqual(len(before), 1, before)
        finally:
            first.kill()  # a reboot: no close_notify, the gateway still holds the session
        self.assertEqual([s["id"] for s in self.sessions()], [before[0]["id"]])
        second = h.SClient(*self.gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY, extra=bind)
        try:
            self.assertTrue(second.wait_handshake(), second.out.text())
            after = h.poll_until(
                lambda: [s for s in self.sessions() if s["id"] != before[0]["id"]] or None, 5.0,
                what="the replacing session")
            self.assertEqual(len(self.sessions()), 1, "the old session must be gone once the new one is up")
            self.assertEqual(after[0]["remote"], f"127.0.0.1:{port}")
            self.assertEqual(after[0]["state"], "established")
            self.assertEqual(after[0]["identity"], h.DEMO_IDENTITY)
        finally:
            second.kill()


class LeanRecords(DtlsTestCase):
    """Issue 8: after the handshake the gateway protects records itself (the SSL object is freed).
    Long block-wise transfers from both libcoap clients run many records through that layer; a
    replayed and a tampered record from a real peer are dropped and counted, and the session goes on."""

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(self.dtls_config(admin=f"127.0.0.1:{h.free_tcp_port()}"))

    def test_long_blockwise_transfers_from_both_clients(self):
        body = "".join(chr(0x41 + i % 26) for i in range(4096))
        path = os.path.join(self.tmp, "body.txt")
        with open(path, "w") as f:
            f.write(body)
        for flavour in ("openssl", "gnutls"):
            rc, out, err = h.coap_client(self.psk_args() + ["-m", "put", "-b", "64", "-f", path,
                                                             self.coaps_uri(self.gw, f"/telemetry/{flavour}")],
                                         flavour=flavour)
            self.assertEqual(rc, 0, out + err)
            self.assertIsNone(h.response_error(out, err), out + err)
            line = h.poll_until(lambda: next((l for l in self.sink_lines() if l.get("path") == f"/telemetry/{flavour}"), None),
                                5.0, what=f"{flavour} upload in the sink")
            self.assertEqual(line["payload"], body, f"{flavour}: the 4 KB body arrived changed")
            self.assertEqual(line["identity"], h.DEMO_IDENTITY)
        self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="dtls", reason="tls_failed"), 0)
        self.assertGreaterEqual(self.gw.logs(tail=100000).count("record protection moved to the lean layer"), 2,
                                "the transfers did not run on the lean record layer")

    def test_replayed_and_tampered_records_are_dropped_and_counted(self):
        import select
        import socket
        import threading
        gw_addr = self.gw.coaps_addr()
        front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        front.bind(("127.0.0.1", 0))
        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        back.connect(gw_addr)
        client_addr = [None]
        seen = []           # datagrams from the client, in order
        stop = threading.Event()

        def pump():  # bounded: stops when the test sets `stop`, or after 60 s
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                ready, _, _ = select.select([front, back], [], [], 0.05)
                for sock in ready:
                    if sock is front:
                        data, addr = front.recvfrom(65536)
                        client_addr[0] = addr
                        seen.append(data)
                        back.send(data)
                    else:
                        data = back.recv(65536)
                        if client_addr[0]:
                            front.sendto(data, client_addr[0])

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        from test_ops import DtlsDevice
        device = DtlsDevice("127.0.0.1", front.getsockname()[1], h.DEMO_IDENTITY, h.DEMO_KEY)
        try:
            self.assertTrue(device.wait_handshake(), device.text())
            self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
            self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
            self.assertIn("record protection moved to the lean layer", self.gw.logs(tail=100000))
            app = [d for d in seen if d[0] == 23]  # application_data records the device sent
            self.assertGreaterEqual(len(app), 2)
            before = self.counter("coapgw_bad_messages_total", reason="dtls_bad_record")
            back.send(app[-1])                      # replay
            tampered = bytearray(app[-1])
            tampered[-1] ^= 0x01                    # flip a bit of the authentication tag
            tampered[10] = (tampered[10] + 1) % 256  # and give it a fresh sequence number
            back.send(bytes(tampered))
            h.poll_until(lambda: self.counter("coapgw_bad_messages_total", reason="dtls_bad_record") >= before + 2,
                         5.0, what="the replayed and the tampered record to be counted")
            # The session is unharmed: the next genuine request is answered.
            self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
            self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="dtls", reason="tls_failed"), 0)
        finally:
            device.proc.kill()
            device.proc.wait(timeout=5)
            device.proc.stdin.close()
            device.proc.stdout.close()
            stop.set()
            thread.join(timeout=5)
            front.close()
            back.close()
