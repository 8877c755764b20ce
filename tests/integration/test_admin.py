"""Observability: admin HTTP and Prometheus metrics (issue 4, item 4).

Scrapes /metrics with a real HTTP client, parses it with prometheus_client's
text parser, and checks the session gauges against real DTLS devices
(openssl s_client holds a session open as long as its stdin is open).
"""

import http.server
import json
import os
import signal
import subprocess
import threading
import unittest

from prometheus_client.parser import text_string_to_metric_families

import harness as h

# DESIGN.md "Metric names"; counters are listed without _total because the
# parser names counter families that way (it keeps _total on the samples).
FAMILIES = {
    "coapgw_sessions": "gauge",
    "coapgw_sessions_idle": "gauge",
    "coapgw_sessions_created": "counter",
    "coapgw_sessions_reused": "counter",
    "coapgw_sessions_closed": "counter",
    "coapgw_dtls_handshakes": "counter",
    "coapgw_dtls_hello_verify_requests": "counter",
    "coapgw_messages": "counter",
    "coapgw_requests": "counter",
    "coapgw_retransmissions": "counter",
    "coapgw_duplicates": "counter",
    "coapgw_bad_messages": "counter",
    "coapgw_upstream_requests": "counter",
    "coapgw_upstream_duration_seconds": "histogram",
    "coapgw_config_reloads": "counter",
    "coapgw_build_info": "gauge",
}

DEVICES = [(f"dev-{i}", f"secret-{i}") for i in range(1, 4)]

# (proto, type, state) a session can be in: exactly the series of coapgw_sessions (README "Metrics").
POSSIBLE_SESSION_STATES = {
    ("udp", "server", "established"), ("udp", "client", "established"),
    ("dtls", "server", "handshake"), ("dtls", "server", "established"),
    ("dtls", "client", "none"), ("dtls", "client", "handshake"), ("dtls", "client", "established"),
    ("dtls", "hello", "handshake"),
    # RFC 8323 streams (issue 15): connecting during a TLS handshake or WebSocket upgrade
    ("tcp", "server", "csm"), ("tcp", "server", "established"), ("tcp", "client", "established"),
} | {(p, "server", st) for p in ("tls", "ws", "wss") for st in ("connecting", "csm", "established")} | {
    (p, "client", "established") for p in ("tls", "ws", "wss")}
OUTCOMES = {"ok", "upstream_error", "connect_failed", "timeout", "overloaded", "bad_response",
            "not_implemented"}


class Admin(h.GatewayTestCase):
    def admin_config(self, idle_timeout="300s", routes=None):
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        keys = [{"identity": h.DEMO_IDENTITY, "key": h.DEMO_KEY}] + \
               [{"identity": i, "key": k} for i, k in DEVICES]
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                            admin=f"127.0.0.1:{h.free_tcp_port()}", keys=keys,
                            routes=routes or [{"prefix": "/telemetry", "upstream": f"file:{self.sink}"}])
        cfg["sessions"]["idle_timeout"] = idle_timeout
        return cfg

    def scrape(self, gw):
        status, body = h.http_get(gw.admin_url("/metrics"))
        self.assertEqual(status, 200, body[:500])
        return list(text_string_to_metric_families(body))

    def sample(self, gw, name, **labels):
        """Value of one sample, 0.0 when the labelled child does not exist."""
        for family in self.scrape(gw):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    def established(self, gw):
        return self.sample(gw, "coapgw_sessions", proto="dtls", type="server", state="established")

    def sessions_json(self, gw):
        status, body = h.http_get(gw.admin_url("/v1/sessions?limit=1000"))
        self.assertEqual(status, 200, body[:500])
        doc = json.loads(body)
        if isinstance(doc, dict):
            for key in ("sessions", "items", "data"):
                if isinstance(doc.get(key), list):
                    return doc[key]
            self.fail(f"/v1/sessions: no list of sessions in {sorted(doc)}")
        return doc

    def test_healthz_readyz_and_unknown_path(self):
        gw = self.start_gateway(self.admin_config())
        self.assertEqual(h.http_get(gw.admin_url("/healthz"))[0], 200)
        self.assertEqual(h.http_get(gw.admin_url("/readyz"))[0], 200)
        self.assertEqual(h.http_get(gw.admin_url("/no-such-page"))[0], 404)

    def test_metrics_has_every_family(self):
        gw = self.start_gateway(self.admin_config())
        # some traffic first, so that labelled families have children
        self.assertIsNotNone(h.coap_request(gw.coap_addr(), h.get(".well-known/core")))
        host, port = gw.coaps_addr()
        h.coap_client(["-u", h.DEMO_IDENTITY, "-k", h.DEMO_KEY, "-m", "post", "-e", "m",
                       f"coaps://{host}:{port}/telemetry/m"], flavour="openssl")
        families = {f.name: f.type for f in self.scrape(gw)}
        missing = sorted(n for n in FAMILIES if n not in families)
        self.assertEqual(missing, [], f"families missing from /metrics; present: {sorted(families)}")
        wrong = {n: families[n] for n, t in FAMILIES.items() if families[n] != t}
        self.assertEqual(wrong, {}, "families with the wrong type")
        self.assertGreaterEqual(self.sample(gw, "coapgw_dtls_handshakes_total", result="ok"), 1)
        self.assertGreaterEqual(self.sample(gw, "coapgw_requests_total", method="GET", code="2.05"), 1)

    def test_session_gauges_export_only_possible_states(self):
        gw = self.start_gateway(self.admin_config())
        # A plain CoAP device and a DTLS device hold one session each.
        self.assertIsNotNone(h.coap_request(gw.coap_addr(), h.get(".well-known/core")))
        host, port = gw.coaps_addr()
        client = h.SClient(host, port, *DEVICES[0])
        try:
            self.assertTrue(client.wait_handshake(), client.out.text())
            h.poll_until(lambda: self.established(gw) == 1, 10.0, what="one established DTLS session")
            series = {(s.labels["proto"], s.labels["type"], s.labels["state"])
                      for f in self.scrape(gw) if f.name == "coapgw_sessions" for s in f.samples}
            self.assertEqual(series, POSSIBLE_SESSION_STATES)
            # (the harness's readiness probe may hold a plain session too)
            self.assertGreaterEqual(self.sample(gw, "coapgw_sessions", proto="udp", type="server",
                                                state="established"), 1)
        finally:
            client.close()

    def test_reasons_and_route_outcomes_exist_from_the_first_scrape(self):
        gw = self.start_gateway(self.admin_config())
        families = {f.name: f for f in self.scrape(gw)}
        reasons = {s.labels["reason"] for s in families["coapgw_bad_messages"].samples}
        # The names tests and dashboards rely on, at 0 before any bad input arrived.
        self.assertTrue({"dtls_bad_record", "bad_path", "wrong_authority", "message_id_reused",
                         "reassemblies_session_full", "block_cache_session_full", "too_short",
                         "session_table_full"} <= reasons, sorted(reasons))
        self.assertEqual(self.sample(gw, "coapgw_bad_messages_total", reason="bad_path"), 0)
        outcomes = {s.labels["outcome"] for s in families["coapgw_upstream_requests"].samples
                    if s.labels.get("route") == "/telemetry"}
        self.assertEqual(outcomes, OUTCOMES)

    def test_session_gauge_follows_devices(self):
        gw = self.start_gateway(self.admin_config())
        host, port = gw.coaps_addr()
        self.assertEqual(self.established(gw), 0)
        clients = [h.SClient(host, port, i, k) for i, k in DEVICES]
        try:
            for c in clients:
                self.assertTrue(c.wait_handshake(), c.out.text())
            h.poll_until(lambda: self.established(gw) == len(DEVICES), 10.0,
                         what=f"coapgw_sessions{{dtls,server,established}} == {len(DEVICES)}")
            identities = {s.get("identity") for s in self.sessions_json(gw)}
            self.assertTrue({i for i, _ in DEVICES} <= identities, identities)
        finally:
            for c in clients:
                c.close()  # close_notify
        h.poll_until(lambda: self.established(gw) == 0, 15.0,
                     what="established DTLS sessions back to 0 after close_notify")
        self.assertEqual(self.sample(gw, "coapgw_sessions_idle", proto="dtls"), 0)
        self.assertGreaterEqual(self.sample(gw, "coapgw_sessions_created_total", proto="dtls"),
                                len(DEVICES))

    def test_vanished_device_expires_after_idle_timeout(self):
        gw = self.start_gateway(self.admin_config(idle_timeout="2s"))
        host, port = gw.coaps_addr()
        client = h.SClient(host, port, *DEVICES[0])
        try:
            self.assertTrue(client.wait_handshake(), client.out.text())
            h.poll_until(lambda: self.established(gw) == 1, 10.0, what="one established session")
        finally:
            client.kill()  # no close_notify: the session can only go by idle timeout
        h.poll_until(lambda: self.established(gw) == 0, 30.0,
                     what="the vanished device's session freed after idle_timeout")
        self.assertGreaterEqual(
            self.sample(gw, "coapgw_sessions_closed_total", proto="dtls", reason="idle_timeout"), 1)

    def test_readyz_503_while_draining(self):
        # A backend that holds its answer keeps a forward in flight during shutdown.
        received, release = threading.Event(), threading.Event()

        class Slow(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                received.set()
                release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        backend.daemon_threads = True
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        try:
            route = {"prefix": "/api", "upstream": f"http://127.0.0.1:{backend.server_address[1]}",
                     "timeout": "20s"}
            cfg = self.admin_config(routes=[route])
            cfg["shutdown"] = {"drain_timeout": "10s"}
            gw = self.start_gateway(cfg)
            host, port = gw.coap_addr()
            device = subprocess.Popen(
                ["coap-client-notls", "-B", "20", "-m", "post", "-e", "x",
                 f"coap://{host}:{port}/api/slow"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                self.assertTrue(received.wait(10), "the forward never reached the backend")
                self.assertEqual(h.http_get(gw.admin_url("/readyz"))[0], 200)
                gw.send_signal(signal.SIGTERM)
                h.poll_until(lambda: h.http_get(gw.admin_url("/readyz"), timeout=1.0)[0] == 503,
                             5.0, interval_s=0.02, what="/readyz 503 after SIGTERM")
                self.assertTrue(gw.alive(), "exited before the in-flight forward finished")
                release.set()
                self.assertEqual(gw.stop(), 0)
            finally:
                release.set()
                try:
                    device.wait(timeout=25)
                except subprocess.TimeoutExpired:
                    device.kill()
                    device.wait(timeout=5)
        finally:
            backend.shutdown()
            backend.server_close()


if __name__ == "__main__":
    unittest.main()
