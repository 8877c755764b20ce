"""The device registry over coaps+tcp (dtls.psk.lookup for TLS streams).

A gateway with a coaps+tcp listener only (no DTLS listener) and the Python registry of
test_registry.py: `openssl s_client` with TLS 1.2 and TLS 1.3 PSK and coap-client-openssl as devices
whose keys live only in the registry; an unknown identity, a banned one and a registry that is down
are refused while the gateway lives on; a live TLS session is revoked when the registry bans it.
"""

import json
import unittest

import harness as h
from test_registry import RegistryTestCase
from test_stream import CSM, TlsClient, frame


class StreamRegistry(RegistryTestCase):
    def start_tls(self, lookup=None, keys=None):
        cfg = self.registry_config(lookup=lookup, keys=keys)
        cfg["listen"]["coaps"] = []  # the registry serves the TLS listener without any DTLS one
        self.tls_port = h.free_tcp_port()
        cfg["listen"]["coaps_tcp"] = [f"127.0.0.1:{self.tls_port}"]
        self.gw = self.start_gateway(cfg)

    def tls_uri(self, path):
        return f"coaps+tcp://127.0.0.1:{self.tls_port}{path}"

    def session(self, identity, version):
        """An s_client TLS session; (client, handshake ok)."""
        c = TlsClient(self.tls_port, identity, self.registry.devices.get(identity, {}).get("key", "nokey"), version)
        self.addCleanup(c.kill)
        return c, c.wait_handshake(10)

    def test_tls12_and_tls13_registry_identities_are_served(self):
        for name in ("reg-12", "reg-13", "reg-libcoap"):
            self.registry.devices[name] = {"key": name + "-secret", "tenant": "acme"}
        self.start_tls(keys=[])  # no local keys at all
        for identity, version in (("reg-12", "tls1_2"), ("reg-13", "tls1_3")):
            c, ok = self.session(identity, version)
            self.assertTrue(ok, c.out.text())
            # Our CSM, then a POST through the TLS channel: it reaches the sink as this device.
            payload = "over-" + version
            c.proc.stdin.write(bytes([0x00, CSM]) + frame(0x02, options=h.path_options("/telemetry/x"),
                                                          payload=payload.encode()))
            c.proc.stdin.flush()
            record = self.sink_line(payload)
            self.assertEqual((record["identity"], record["tenant"]), (identity, "acme"))
            status, body = h.http_get(self.gw.admin_url("/v1/sessions"))
            mine = [s for s in json.loads(body)["sessions"] if s.get("identity") == identity]
            self.assertEqual(len(mine), 1, body)
            self.assertEqual(mine[0].get("proto"), "tls")
            self.assertEqual(mine[0].get("tenant"), "acme")
            c.close()
            self.assertEqual(self.registry.count(identity), 1)
        self.assertEqual(self.lookups("miss"), 2)
        # libcoap's client over coaps+tcp: its request reaches the sink with identity and tenant.
        rc, out, err = h.coap_client(["-u", "reg-libcoap", "-k", "reg-libcoap-secret", "-m", "post", "-e",
                                      "tcp-registry", self.tls_uri("/telemetry/x")], flavour="openssl")
        self.assertIsNone(h.response_error(out, err), err)
        record = self.sink_line("tcp-registry")
        self.assertEqual(record["identity"], "reg-libcoap")
        self.assertEqual(record["tenant"], "acme")
        # Cached now: another handshake does not ask again.
        c, ok = self.session("reg-13", "tls1_3")
        self.assertTrue(ok, c.out.text())
        self.assertEqual(self.registry.count("reg-13"), 1)
        self.assertGreaterEqual(self.lookups("hit"), 1)

    def test_unknown_banned_and_registry_down_are_refused(self):
        self.registry.devices["stolen"] = {"key": "stolen-secret", "banned": True}
        self.start_tls()
        for identity, version in (("nobody", "tls1_3"), ("stolen", "tls1_2")):
            c, ok = self.session(identity, version)
            self.assertFalse(ok, f"{identity} was served: " + c.out.text())
            self.assertEqual(self.registry.count(identity), 1)
        self.assertEqual(self.lookups("unknown"), 1)
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="tls", reason="tls_failed") >= 2,
                     5, what="the refused handshakes counted")
        self.registry.stop()
        c, ok = self.session("late-device", "tls1_3")
        self.assertFalse(ok, c.out.text())
        h.poll_until(lambda: self.lookups("error") + self.lookups("timeout") >= 1, 5,
                     what="the failed lookup counted")
        self.assertTrue(self.gw.alive(), "the gateway died with its registry")
        # A device with a local key is served meanwhile.
        rc, out, err = h.coap_client(["-u", h.DEMO_IDENTITY, "-k", h.DEMO_KEY, "-m", "get",
                                      self.tls_uri("/.well-known/core")], flavour="openssl")
        self.assertIn("</telemetry>", out, err)

    def test_live_session_revoked_when_the_registry_bans_it(self):
        self.registry.devices["flip"] = {"key": "flip-secret", "tenant": "t1"}
        self.start_tls(lookup={"cache_ttl": "1s"})
        c, ok = self.session("flip", "tls1_3")
        self.assertTrue(ok, c.out.text())
        c.proc.stdin.write(bytes([0x00, CSM]))
        c.proc.stdin.flush()
        h.poll_until(lambda: self.counter("coapgw_sessions", proto="tls", state="established") == 1, 5,
                     what="the session established")
        with self.registry.lock:
            self.registry.devices["flip"] = {"key": "flip-secret", "banned": True}
        # The entry expires after cache_ttl and is asked again because a session uses it.
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="tls", reason="revoked") == 1, 10,
                     what="the session revoked by the ban")
        h.poll_until(lambda: c.proc.poll() is not None, 10, what="s_client sees its connection closed")
        self.assertGreaterEqual(self.registry.count("flip"), 2)


if __name__ == "__main__":
    unittest.main()
