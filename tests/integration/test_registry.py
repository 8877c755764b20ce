"""Device registry, bans and rate limits (issue 16).

A real HTTP registry (Python, in this process) that can be slow, down, wrong, and change its mind,
and counts the lookups it gets; libcoap's coap-client and openssl s_client as devices whose keys
live only in the registry; coapgw-bench's handshake mode with per-device identities against a cold
cache; a device over devices.rate_limit beside one under it.
"""

import json
import os
import signal
import socket
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness as h

BENCH = os.path.join(os.path.dirname(os.path.dirname(h.COAPGWD)), "bench", "coapgw-bench")


class Registry:
    """GET /psk/<identity>: 200 {"key", "tenant", "banned"} for the devices in `devices`, 404 for the
    rest. `behaviour[identity]` = "slow" (answers after `slow_s`), "malformed" (200 with a body that is
    not JSON) or "error" (500). Identities "bench-<n>" are devices with key "bench-secret-<n>".
    Other paths (a forwarding route) are answered 200 and their headers kept in `forwarded`."""

    def __init__(self):
        self.devices = {}
        self.behaviour = {}
        self.slow_s = 3.0
        self.lookups = {}
        self.forwarded = []
        self.down = False
        self.lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's pooled client expects

            def log_message(self, fmt, *args):
                pass

            def _send(self, status, body=b"", ctype="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway gave up on a slow answer

            def do_GET(self):
                if registry.down:
                    # Connections the gateway keeps alive outlive the listener: they die unanswered.
                    self.close_connection = True
                    return
                path = urllib.parse.urlsplit(self.path).path
                if not path.startswith("/psk/"):
                    with registry.lock:
                        registry.forwarded.append({"path": path, "headers": dict(self.headers)})
                    self._send(200, b"ok", "text/plain")
                    return
                identity = urllib.parse.unquote(path[len("/psk/"):])
                with registry.lock:
                    registry.lookups[identity] = registry.lookups.get(identity, 0) + 1
                    device = registry.devices.get(identity)
                    behaviour = registry.behaviour.get(identity)
                if identity.startswith("bench-") and device is None:
                    device = {"key": "bench-secret-" + identity[len("bench-"):], "tenant": "bench"}
                if behaviour == "slow":
                    time.sleep(registry.slow_s)
                if behaviour == "malformed":
                    self._send(200, b"<html>not json</html>")
                elif behaviour == "error":
                    self._send(500, b"{}")
                elif device is None:
                    self._send(404)
                else:
                    self._send(200, json.dumps(device).encode())

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return f"http://127.0.0.1:{self.port}/psk/{{identity}}"

    def count(self, identity):
        with self.lock:
            return self.lookups.get(identity, 0)

    def total(self):
        with self.lock:
            return sum(self.lookups.values())

    def stop(self):
        """The registry goes down: connections to its port are refused from now on."""
        self.down = True
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class RegistryTestCase(h.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.registry = Registry()
        self.addCleanup(self.registry.stop)
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")

    def registry_config(self, lookup=None, keys=None, threads=1, **kw):
        cfg = h.base_config(
            coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}",
            keys=keys if keys is not None else [{"identity": h.DEMO_IDENTITY, "key": h.DEMO_KEY}],
            routes=[{"prefix": "/telemetry", "upstream": f"file:{self.sink}"},
                    {"prefix": "/api", "upstream": f"http://127.0.0.1:{self.registry.port}"}],
            threads=threads, **kw)
        psk_lookup = {"url": self.registry.url(), "timeout": "1s", "cache_ttl": "5m", "negative_ttl": "5m"}
        psk_lookup.update(lookup or {})
        cfg["dtls"]["psk"]["lookup"] = psk_lookup
        # These tests refuse devices on purpose; the address back-off would get in the way.
        cfg["dtls"]["handshake_backoff"] = {"after": 0}
        return cfg

    def uri(self, path):
        host, port = self.gw.coaps_addr()
        return f"coaps://{host}:{port}{path}"

    def get(self, identity, key, path="/.well-known/core", expect="</"):
        """(served, stdout+stderr): served when the answer's body holds `expect` (link-format for
        the default path; coap-client prints the body on stdout and DTLS alerts as log lines)."""
        rc, out, err = h.coap_client(["-u", identity, "-k", key, "-m", "get", self.uri(path)],
                                     flavour="openssl", wait_s=3)
        served = rc == 0 and h.response_error(out, err) is None and expect in out and "alert" not in out + err
        return served, out + err

    def post(self, identity, key, payload):
        rc, out, err = h.coap_client(["-u", identity, "-k", key, "-m", "post", "-e", payload,
                                      self.uri("/telemetry/x")], flavour="openssl", wait_s=3)
        return rc == 0 and h.response_error(out, err) is None and "alert" not in out + err, out + err

    def sink_line(self, payload):
        def find():
            try:
                with open(self.sink) as f:
                    for line in f:
                        record = json.loads(line)
                        if record.get("payload") == payload:
                            return record
            except FileNotFoundError:
                return None
            return None
        return h.poll_until(find, 5.0, what=f"sink line {payload!r}")

    def lookups(self, result):
        return self.counter("coapgw_psk_lookups_total", result=result)


class RegistryLookup(RegistryTestCase):
    def test_device_known_only_to_the_registry_is_served_with_its_tenant(self):
        self.registry.devices["reg-dev"] = {"key": "reg-secret", "tenant": "acme", "banned": False}
        self.gw = self.start_gateway(self.registry_config(keys=[]))  # no local keys at all
        ok, text = self.post("reg-dev", "reg-secret", "from the registry")
        self.assertTrue(ok, text)
        record = self.sink_line("from the registry")
        self.assertEqual(record["identity"], "reg-dev")
        self.assertEqual(record["tenant"], "acme")
        self.assertEqual(self.registry.count("reg-dev"), 1)
        self.assertEqual(self.lookups("miss"), 1)
        # Cached: the next handshakes do not ask the registry again.
        for _ in range(2):
            ok, text = self.get("reg-dev", "reg-secret")
            self.assertTrue(ok, text)
        self.assertEqual(self.registry.count("reg-dev"), 1)
        self.assertGreaterEqual(self.lookups("hit"), 2)
        # The forwarding header, over HTTP.
        ok, text = self.get("reg-dev", "reg-secret", "/api/reading", expect="ok")
        self.assertTrue(ok, text)
        forwarded = h.poll_until(lambda: [f for f in self.registry.forwarded if f["path"] == "/api/reading"],
                                 5.0, what="forwarded request")
        self.assertEqual(forwarded[0]["headers"].get("X-Device-Tenant"), "acme")
        self.assertEqual(forwarded[0]["headers"].get("X-Device-Identity"), "reg-dev")

    def test_wrong_key_unknown_and_malformed_are_refused(self):
        self.registry.devices["reg-dev"] = {"key": "reg-secret"}
        self.registry.behaviour["garbled"] = "malformed"
        self.registry.devices["garbled"] = {"key": "x"}
        self.gw = self.start_gateway(self.registry_config())
        ok, text = self.get("reg-dev", "not-the-key")
        self.assertFalse(ok, text)
        for _ in range(2):
            ok, text = self.get("nobody", "whatever")
            self.assertFalse(ok, text)
        self.assertEqual(self.registry.count("nobody"), 1, "the unknown answer was not cached")
        self.assertEqual(self.lookups("unknown"), 1)
        ok, text = self.get("garbled", "x")
        self.assertFalse(ok, "a not well-formed registry answer let the device in: " + text)
        self.assertGreaterEqual(self.lookups("error"), 1)
        self.assertTrue(self.gw.alive())
        ok, text = self.get(h.DEMO_IDENTITY, h.DEMO_KEY)
        self.assertTrue(ok, text)

    def test_slow_registry_costs_only_its_handshakes(self):
        self.registry.devices["slowpoke"] = {"key": "slow-secret"}
        self.registry.behaviour["slowpoke"] = "slow"
        self.registry.slow_s = 3.0
        self.gw = self.start_gateway(self.registry_config(lookup={"timeout": "500ms"}))
        results = {}
        slow = threading.Thread(target=lambda: results.update(slow=self.get("slowpoke", "slow-secret")))
        slow.start()
        try:
            h.poll_until(lambda: self.registry.count("slowpoke") >= 1, 5.0, what="lookup sent")
            # While that lookup hangs, a device with a local key is served.
            ok, text = self.get(h.DEMO_IDENTITY, h.DEMO_KEY)
            self.assertTrue(ok, text)
        finally:
            slow.join(timeout=30)
        self.assertFalse(results["slow"][0], results["slow"][1])
        h.poll_until(lambda: self.lookups("timeout") >= 1, 5.0, what="lookup timeout counted")

    def test_registry_down_keeps_serving_known_devices(self):
        self.registry.devices["cached-dev"] = {"key": "cached-secret"}
        self.registry.devices["new-dev"] = {"key": "new-secret"}
        self.gw = self.start_gateway(self.registry_config())
        ok, text = self.get("cached-dev", "cached-secret")
        self.assertTrue(ok, text)
        self.registry.stop()
        ok, text = self.get("cached-dev", "cached-secret")
        self.assertTrue(ok, "a cached device was refused while the registry is down: " + text)
        ok, text = self.get(h.DEMO_IDENTITY, h.DEMO_KEY)
        self.assertTrue(ok, text)
        ok, text = self.get("new-dev", "new-secret")
        self.assertFalse(ok, text)
        self.assertGreaterEqual(self.lookups("error"), 1)


class RestartWithRegistry(RegistryTestCase):
    """sessions.persist with keys from the registry: after a restart the local keys do not know the
    device, so its first record waits for the registry, whose answer decides; a registry that is down
    leaves the saved session standing (it stood when it was saved), as it would a live one."""

    def persist_config(self):
        cfg = self.registry_config()
        cfg["sessions"]["persist"] = {"file": os.path.join(self.tmp, "sessions.bin"), "max_age": "1h"}
        return cfg

    def device_before_restart(self, cfg):
        from test_ops import DtlsDevice
        self.registry.devices["reg-dev"] = {"key": "reg-secret", "tenant": "acme"}
        first = self.start_gateway(cfg, name="first")
        device = DtlsDevice(*first.coaps_addr(), "reg-dev", "reg-secret")
        self.addCleanup(lambda: (device.proc.kill(), device.proc.wait(timeout=5)))
        self.assertTrue(device.wait_handshake(), device.text())
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        first.stop()
        self.assertFalse(device.saw_close_notify())
        return device

    def test_registry_device_rides_through_a_restart(self):
        cfg = self.persist_config()
        device = self.device_before_restart(cfg)
        asked = self.registry.count("reg-dev")
        self.gw = self.start_gateway(cfg, name="second")
        self.assertIn("restored 1 DTLS sessions", self.gw.logs())
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        self.assertEqual(self.gw.logs(tail=100000).count("dtls established"), 0, "the device had to handshake again")
        self.assertIn("restored from the persist file", self.gw.logs())
        self.assertEqual(self.registry.count("reg-dev"), asked + 1, "the registry decides after the restart")

    def test_device_banned_while_the_gateway_was_down_is_not_restored(self):
        cfg = self.persist_config()
        device = self.device_before_restart(cfg)
        self.registry.devices["reg-dev"] = {"key": "reg-secret", "banned": True}
        self.gw = self.start_gateway(cfg, name="second")
        self.assertIsNone(device.request(h.GET, "/.well-known/core", deadline_s=3.0))
        self.assertTrue(h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", reason="revoked") >= 1, 5.0))

    def test_registry_down_at_restart_keeps_the_saved_session(self):
        cfg = self.persist_config()
        device = self.device_before_restart(cfg)
        self.registry.stop()
        self.gw = self.start_gateway(cfg, name="second")
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        self.assertEqual(self.gw.logs(tail=100000).count("dtls established"), 0)
        self.assertGreaterEqual(self.lookups("error") + self.lookups("timeout"), 1)


class Bans(RegistryTestCase):
    def test_banned_device_refused(self):
        self.registry.devices["stolen"] = {"key": "stolen-secret", "banned": True}
        self.gw = self.start_gateway(self.registry_config())
        ok, text = self.get("stolen", "stolen-secret")
        self.assertFalse(ok, "a banned device was served: " + text)
        self.assertEqual(self.registry.count("stolen"), 1)

    def test_registry_changes_its_mind_live_session_closed(self):
        self.registry.devices["flip"] = {"key": "flip-secret", "tenant": "t1"}
        self.gw = self.start_gateway(self.registry_config(lookup={"cache_ttl": "1s"}))
        host, port = self.gw.coaps_addr()
        client = h.SClient(host, port, "flip", "flip-secret")
        self.addCleanup(client.kill)
        self.assertTrue(client.wait_handshake(), client.out.text())
        status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
        self.assertEqual(status, 200)
        sessions = [s for s in json.loads(body)["sessions"] if s.get("identity") == "flip"]
        self.assertEqual(len(sessions), 1, body)
        self.assertEqual(sessions[0].get("tenant"), "t1")
        revoked_before = self.counter("coapgw_sessions_closed_total", proto="dtls", reason="revoked")
        with self.registry.lock:
            self.registry.devices["flip"] = {"key": "flip-secret", "banned": True}
        # The entry expires after cache_ttl and is asked again because a session uses it.
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="dtls", reason="revoked")
                     > revoked_before, 10.0, what="session revoked by the ban")
        self.assertGreaterEqual(self.registry.count("flip"), 2)
        ok, text = self.get("flip", "flip-secret")
        self.assertFalse(ok, text)


class BanOnReload(RegistryTestCase):
    def test_local_key_removed_by_reload_closes_its_session_registry_sessions_stand(self):
        keys_file = os.path.join(self.tmp, "keys.yaml")

        def write_keys(entries):
            with open(keys_file, "w") as f:
                f.write(h.to_yaml(entries) + "\n")
            os.chmod(keys_file, 0o600)

        write_keys([{"identity": "local-dev", "key": "local-secret"}])
        self.registry.devices["reg-dev"] = {"key": "reg-secret", "tenant": "acme"}
        cfg = self.registry_config(keys=[])
        cfg["dtls"]["psk"]["keys_file"] = keys_file
        self.gw = self.start_gateway(cfg)
        host, port = self.gw.coaps_addr()
        clients = {}
        for identity, key in (("local-dev", "local-secret"), ("reg-dev", "reg-secret")):
            clients[identity] = h.SClient(host, port, identity, key)
            self.addCleanup(clients[identity].kill)
            self.assertTrue(clients[identity].wait_handshake(), clients[identity].out.text())

        def identities():
            status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
            if status != 200:
                return None
            return sorted(s["identity"] for s in json.loads(body)["sessions"] if s.get("identity"))

        h.poll_until(lambda: identities() == ["local-dev", "reg-dev"], 5.0, what="both sessions listed")
        write_keys([])  # the local device is banned by removing its key
        self.gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: identities() == ["reg-dev"], 10.0, what="the local device's session closed")
        self.assertGreaterEqual(self.counter("coapgw_sessions_closed_total", proto="dtls", reason="revoked"), 1)
        ok, text = self.get("local-dev", "local-secret")  # now asked of the registry, which does not know it
        self.assertFalse(ok, text)
        self.assertEqual(self.registry.count("local-dev"), 1)


class ColdCache(RegistryTestCase):
    # The issue's 10,000; under a sanitizer (a several times slower daemon and bench) 2,000.
    DEVICES = 2000 if h.SANITIZER else 10000
    THREADS = 2
    RUN_S = 30   # one bench run; at most MAX_RUNS of them (the registry answers from Python)
    MAX_RUNS = 4

    def distinct(self):
        with self.registry.lock:
            return len([i for i in self.registry.lookups if i.startswith("bench-")])

    @unittest.skipUnless(os.access(BENCH, os.X_OK), "coapgw-bench not built")
    def test_many_identities_against_a_cold_cache(self):
        cfg = self.registry_config(keys=[], threads=self.THREADS, lookup={"timeout": "2s"})
        cfg["dtls"]["max_handshakes"] = 2000
        self.gw = self.start_gateway(cfg)
        host, port = self.gw.coaps_addr()
        # Each handshake takes the next identity, so the first DEVICES handshakes are all cold; a
        # run that ends early is followed by another, whose first identities are then warm.
        lines = []
        for _ in range(self.MAX_RUNS):
            rc, out, err = h.run_peer([BENCH, "--mode", "handshake", "--dtls", "--server", f"{host}:{port}",
                                       "--devices", "64", "--identities", str(self.DEVICES),
                                       "--duration", str(self.RUN_S), "--handshake-timeout", "10"],
                                      timeout=self.RUN_S + 60)
            self.assertEqual(rc, 0, out + err)
            lines.append(out.strip().splitlines()[-1] if out.strip() else "")
            if self.distinct() >= self.DEVICES:
                break
        distinct = self.distinct()
        failed = self.lookups("timeout") + self.lookups("error")
        print("\n" + "\n".join("[cold cache] " + line for line in lines) +
              f"\n[cold cache] registry asked for {distinct} distinct identities, {self.registry.total()} "
              f"lookups; misses {self.lookups('miss')}, hits {self.lookups('hit')}, failed {failed}")
        self.assertGreaterEqual(distinct, self.DEVICES, "not every identity was looked up")
        # Deduplicated and cached per worker: a device is asked for again only by another worker (its
        # next handshake came from a source port hashed to it) or after a failed lookup.
        self.assertLessEqual(self.registry.total(), distinct * self.THREADS + failed)
        self.assertGreaterEqual(self.lookups("miss"), self.DEVICES * 0.95)
        self.assertGreater(self.lookups("hit"), 0, "no handshake found its identity cached")
        self.assertGreaterEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), self.DEVICES * 0.95)


class RateLimit(RegistryTestCase):
    def limit_config(self):
        cfg = self.registry_config(threads=1)
        cfg["listen"]["coap"] = [f"127.0.0.1:{h.free_udp_port()}"]
        cfg["devices"] = {"rate_limit": {"requests_per_second": 0.2, "burst": 3}}
        return cfg

    def test_plain_device_over_the_limit_beside_one_under_it(self):
        self.gw = self.start_gateway(self.limit_config())
        addr = self.gw.coap_addr()
        noisy = h.udp_socket(addr)
        quiet = h.udp_socket(addr)
        self.addCleanup(noisy.close)
        self.addCleanup(quiet.close)
        codes = []
        max_age = None
        for _ in range(6):
            r = h.coap_request(addr, h.get("/.well-known/core"), sock=noisy)
            self.assertIsNotNone(r, "no answer")
            codes.append(r.code)
            if r.code == h.code(4, 29):
                max_age = r.option(14)
        self.assertEqual(codes[:3], [h.code(2, 5)] * 3, codes)
        self.assertEqual(codes[3:], [h.code(4, 29)] * 3, codes)
        self.assertTrue(max_age, "4.29 without Max-Age")
        self.assertGreaterEqual(int.from_bytes(max_age[0], "big"), 1)
        r = h.coap_request(addr, h.get("/.well-known/core"), sock=quiet)
        self.assertEqual(r.code, h.code(2, 5), "the quiet device paid for the noisy one")
        self.assertEqual(self.counter("coapgw_rate_limited_total", proto="udp"), 3)

    def test_dtls_device_limited_by_identity(self):
        self.registry.devices["noisy"] = {"key": "noisy-secret"}
        self.gw = self.start_gateway(self.limit_config())
        answers = []
        for _ in range(5):  # a new session each time: the bucket is the identity's
            rc, out, err = h.coap_client(["-u", "noisy", "-k", "noisy-secret", "-m", "get",
                                          self.uri("/.well-known/core")], flavour="openssl", wait_s=3)
            answers.append(h.response_error(out, err))
        self.assertEqual(answers[:3], [None] * 3, answers)
        self.assertIn("4.29", answers[3:], answers)
        ok, text = self.get(h.DEMO_IDENTITY, h.DEMO_KEY)
        self.assertTrue(ok, "the quiet device paid for the noisy one: " + text)
        self.assertGreaterEqual(self.counter("coapgw_rate_limited_total", proto="dtls"), 1)


if __name__ == "__main__":
    unittest.main()
