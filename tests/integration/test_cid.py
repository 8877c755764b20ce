"""RFC 9146 DTLS Connection IDs (issue 13): a device whose address changes keeps its session.

The peer is tests/tools/coapgw-cid-client (our DTLS engine in the client role, which offers the
connection_id extension), driven line by line: PSK handshake with a CID, a request; a rebind to a
new source port answered with no new handshake and the session's address moved; a replayed and a
forged CID record from yet another port (no answer, no move); a peer that does not offer the
extension. Several workers, so that the rebound 4-tuple may land on another worker than the one
that owns the session (the record is then posted to its owner).
"""

import json
import os
import subprocess
import unittest

import harness as h

CID_CLIENT = os.environ.get("COAPGW_CID_CLIENT",
                            os.path.join(h.REPO, "build", "tests", "tools", "coapgw-cid-client"))


class CidClient:
    """One coapgw-cid-client process; each command answers one JSON line."""

    def __init__(self, host, port, identity=h.DEMO_IDENTITY, key=h.DEMO_KEY, cid=True, timeout_ms=5000):
        args = [CID_CLIENT, "--server", f"{host}:{port}", "--identity", identity, "--key", key,
                "--timeout-ms", str(timeout_ms)]
        if not cid:
            args.append("--no-cid")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()  # every command ends within its own deadline (<= 5 s)
        if not reply:
            raise AssertionError(f"cid client exited: {self.proc.stderr.read()}")
        return json.loads(reply)

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@unittest.skipUnless(os.access(CID_CLIENT, os.X_OK), f"{CID_CLIENT} not built")
class ConnectionId(h.GatewayTestCase):
    def setUp(self):
        super().setUp()
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}",
                            threads=4)
        cfg["dtls"]["connection_id"] = {"length": 6, "node_id": 7}
        self.gw = self.start_gateway(cfg)

    def client(self, **kw):
        c = CidClient(*self.gw.coaps_addr(), **kw)
        self.addCleanup(c.close)
        return c

    def dtls_sessions(self):
        status, body = h.http_get(self.gw.admin_url("/v1/sessions?limit=1000"))
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        return [s for s in doc["sessions"] if s["proto"] == "dtls"]

    def session_with_cid(self, cid):
        found = [s for s in self.dtls_sessions() if s.get("cid") == cid]
        self.assertEqual(len(found), 1, self.dtls_sessions())
        return found[0]

    def test_rebind_keeps_the_session_without_a_handshake(self):
        c = self.client()
        hello = c.command("connect")
        self.assertTrue(hello["ok"], hello)
        cid = hello["cid"]
        self.assertEqual(len(cid), 12, hello)  # 6 bytes
        self.assertTrue(cid.startswith("07"), hello)  # node_id
        answer = c.command("get /.well-known/core")
        self.assertEqual(answer.get("code"), "2.05", answer)
        first_port = answer["port"]
        self.assertEqual(self.session_with_cid(cid)["remote"], f"127.0.0.1:{first_port}")
        handshakes = self.counter("coapgw_dtls_handshakes_total", result="ok")
        self.assertEqual(handshakes, 1)
        moves = self.counter("coapgw_dtls_address_changes_total")

        # The NAT forgot the mapping: same session, new source port, several times (each new
        # 4-tuple may hash to any of the 4 workers).
        ports = {first_port}
        for i in range(4):
            rebound = c.command("rebind")
            self.assertTrue(rebound["ok"], rebound)
            self.assertNotIn(rebound["port"], ports)
            ports.add(rebound["port"])
            answer = c.command("get /.well-known/core")
            self.assertEqual(answer.get("code"), "2.05", answer)
            self.assertEqual(answer["port"], rebound["port"])
            self.assertEqual(self.session_with_cid(cid)["remote"], f"127.0.0.1:{rebound['port']}")
            self.assertEqual(self.counter("coapgw_dtls_address_changes_total"), moves + i + 1)
        self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), handshakes)
        self.assertEqual(len(self.dtls_sessions()), 1, self.dtls_sessions())

        # A replayed record and a forged one, each from another new port: no answer, no move.
        settled = self.session_with_cid(cid)["remote"]
        moves = self.counter("coapgw_dtls_address_changes_total")
        bad = self.counter("coapgw_bad_messages_total", reason="dtls_bad_record")
        for what in ("replay", "forge"):
            c.command("rebind")
            result = c.command(what)
            self.assertTrue(result["ok"], result)
            self.assertFalse(result["answered"], what)
            self.assertEqual(self.session_with_cid(cid)["remote"], settled, what)
        self.assertEqual(self.counter("coapgw_dtls_address_changes_total"), moves)
        h.poll_until(lambda: self.counter("coapgw_bad_messages_total", reason="dtls_bad_record") >= bad + 2, 5.0,
                     what="the replayed and the forged record counted as bad records")
        # The device itself goes on from where it is now.
        answer = c.command("get /.well-known/core")
        self.assertEqual(answer.get("code"), "2.05", answer)
        self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), handshakes)

    def test_a_peer_without_cid_is_unchanged(self):
        c = self.client(cid=False)
        hello = c.command("connect")
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(hello["cid"], "")
        answer = c.command("get /.well-known/core")
        self.assertEqual(answer.get("code"), "2.05", answer)
        sessions = self.dtls_sessions()
        self.assertEqual(len(sessions), 1, sessions)
        self.assertNotIn("cid", sessions[0])
        # Without a CID a new source port is a stranger: no answer, no session moved.
        c.command("rebind")
        lost = c.command("get /.well-known/core")
        self.assertFalse(lost["ok"], lost)
        self.assertEqual(self.counter("coapgw_dtls_address_changes_total"), 0)


@unittest.skipUnless(os.access(CID_CLIENT, os.X_OK), f"{CID_CLIENT} not built")
class RestartWithCid(h.GatewayTestCase):
    """sessions.persist keeps the CIDs: a device that rebinds while the gateway restarts finds its
    saved session by CID from its new address, with no handshake."""

    def test_rebind_across_a_restart(self):
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}",
                            threads=2)
        cfg["sessions"]["persist"] = {"file": os.path.join(self.tmp, "sessions.bin"), "max_age": "1h"}
        first = self.start_gateway(cfg, name="first")
        c = CidClient(*first.coaps_addr())
        self.addCleanup(c.close)
        hello = c.command("connect")
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(c.command("get /.well-known/core").get("code"), "2.05")
        first.stop()
        self.gw = self.start_gateway(cfg, name="second")
        self.assertIn("restored 1 DTLS sessions", self.gw.logs())
        moved = c.command("rebind")
        answer = c.command("get /.well-known/core")
        self.assertEqual(answer.get("code"), "2.05", answer)
        self.assertEqual(answer["port"], moved["port"])
        self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), 0)
        self.assertEqual(self.counter("coapgw_dtls_address_changes_total"), 1)
        status, body = h.http_get(self.gw.admin_url("/v1/sessions?limit=1000"))
        sessions = [s for s in json.loads(body)["sessions"] if s["proto"] == "dtls"]
        self.assertEqual([(s["remote"], s.get("cid")) for s in sessions],
                         [(f"127.0.0.1:{moved['port']}", hello["cid"])])


if __name__ == "__main__":
    unittest.main()
