"""RFC 5077 session tickets (issue 13, item 6): a device whose session is gone resumes with an
abbreviated handshake, counted as coapgw_dtls_handshakes_total{result="resumed"}.

The peer is `openssl s_client -dtls1_2 -psk`: `-sess_out` keeps the session with the gateway's
ticket, a later `-sess_in` offers it ("Reused" in its output). Two gateways sharing
dtls.tickets.key_file resume each other's tickets; a gateway with its own in-memory secret does
not (a full handshake, "New"); a ticket whose PSK identity a reload removed does not resume and the
fallback full handshake fails. libcoap's coap-client cannot take part: it keeps no session between
runs and has no option to save or offer one (coap-client(1) of libcoap 4.3.1; its -G repeats requests
within one session), so each of its runs is a
full handshake (covered by test_dtls).
"""

import os
import unittest

import harness as h
from test_cid import CID_CLIENT, CidClient
from test_ops import SENSOR_IDENTITY, SENSOR_KEY, OpsTestCase

SECRET_A = "a1" * 32
SECRET_B = "b2" * 32


class Tickets(OpsTestCase):
    def tickets_config(self, key_file=None, enabled=True):
        cfg = self.ops_config(threads=2)
        cfg["dtls"]["tickets"] = {"enabled": enabled, "rotation": "1h"}
        if key_file:
            cfg["dtls"]["tickets"]["key_file"] = key_file
        return cfg

    def write_secret_file(self, name, *secrets):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("# ticket secrets, newest first\n" + "".join(s + "\n" for s in secrets))
        os.chmod(path, 0o600)
        return path

    def s_client(self, gw, session_file, resume, identity=SENSOR_IDENTITY, key=SENSOR_KEY):
        """One s_client run to its handshake and a close_notify: its output."""
        host, port = gw.coaps_addr()
        option = "-sess_in" if resume else "-sess_out"
        client = h.SClient(host, port, identity, key, extra=[option, session_file])
        try:
            established = client.wait_handshake()
        finally:
            text = client.close()
        return established, text

    def handshakes(self, gw, result):
        return self.sample(gw, "coapgw_dtls_handshakes_total", result=result)

    def test_s_client_resumes_with_its_ticket(self):
        gw = self.start_gateway(self.tickets_config())
        session = os.path.join(self.tmp, "s_client.session")
        established, text = self.s_client(gw, session, resume=False)
        self.assertTrue(established, text)
        self.assertIn("New, ", text)
        self.assertIn("TLS session ticket", text, "the gateway issued no ticket")
        h.poll_until(lambda: self.handshakes(gw, "ok") >= 1, 10.0, what="a full handshake counted ok")
        # The device's session is gone (close_notify); it comes back with its ticket.
        established, text = self.s_client(gw, session, resume=True)
        self.assertTrue(established, text)
        self.assertIn("Reused, ", text)
        h.poll_until(lambda: self.handshakes(gw, "resumed") == 1, 10.0, what="result=resumed counted")
        self.assertEqual(self.handshakes(gw, "ok"), 1)

    def test_disabled_gives_no_ticket(self):
        gw = self.start_gateway(self.tickets_config(enabled=False))
        session = os.path.join(self.tmp, "s_client.session")
        established, text = self.s_client(gw, session, resume=False)
        self.assertTrue(established, text)
        self.assertNotIn("TLS session ticket", text)
        # Nothing to resume with: s_client keeps no session that has neither a ticket nor an id.
        self.assertFalse(os.path.exists(session))
        h.poll_until(lambda: self.handshakes(gw, "ok") >= 1, 10.0, what="a full handshake")
        self.assertEqual(self.handshakes(gw, "resumed"), 0)

    def test_gateways_sharing_a_key_file_resume_each_others_tickets(self):
        shared = self.write_secret_file("shared.key", SECRET_A)
        first = self.start_gateway(self.tickets_config(key_file=shared), name="first")
        second = self.start_gateway(self.tickets_config(key_file=shared), name="second")
        own = self.start_gateway(self.tickets_config(), name="own-secret")
        session = os.path.join(self.tmp, "s_client.session")
        established, text = self.s_client(first, session, resume=False)
        self.assertTrue(established, text)
        established, text = self.s_client(second, session, resume=True)
        self.assertTrue(established, text)
        self.assertIn("Reused, ", text)
        h.poll_until(lambda: self.handshakes(second, "resumed") == 1, 10.0, what="resumed on the second gateway")
        # A gateway with another secret cannot open the ticket: a full handshake.
        established, text = self.s_client(own, session, resume=True)
        self.assertTrue(established, text)
        self.assertIn("New, ", text)
        self.assertEqual(self.handshakes(own, "resumed"), 0)

    def test_an_older_secret_in_the_file_still_resumes(self):
        # Rotating the shared secret by hand: the new one first, the old one kept for a while.
        old = self.write_secret_file("old.key", SECRET_A)
        rotated = self.write_secret_file("rotated.key", SECRET_B, SECRET_A)
        before = self.start_gateway(self.tickets_config(key_file=old), name="before")
        after = self.start_gateway(self.tickets_config(key_file=rotated), name="after")
        session = os.path.join(self.tmp, "s_client.session")
        self.assertTrue(self.s_client(before, session, resume=False)[0])
        established, text = self.s_client(after, session, resume=True)
        self.assertTrue(established, text)
        self.assertIn("Reused, ", text)

    def test_a_ticket_for_a_removed_identity_does_not_resume(self):
        gw = self.start_gateway(self.tickets_config())
        session = os.path.join(self.tmp, "s_client.session")
        self.assertTrue(self.s_client(gw, session, resume=False)[0])
        self.write_keys([{"identity": "someone-else", "key": "x"}])  # the sensor's key is revoked
        self.reload(gw)
        failed_before = self.handshakes(gw, "failed")
        _, text = self.s_client(gw, session, resume=True)
        self.assertNotIn("Reused, ", text)
        self.assertIn("unknown psk identity", text)  # the full handshake it fell back to
        h.poll_until(lambda: self.handshakes(gw, "failed") > failed_before, 10.0,
                     what="the fallback full handshake failed")
        self.assertEqual(self.handshakes(gw, "resumed"), 0)

    def test_a_key_file_others_can_read_is_refused(self):
        path = self.write_secret_file("wide.key", SECRET_A)
        os.chmod(path, 0o604)
        cfg = self.tickets_config(key_file=path)
        gw = h.Gateway(self.tmp, cfg, name="check")
        gw.write_config()
        rc, out, err = h.run_coapgwd(["--check-config", "--config", gw.config_path])
        self.assertNotEqual(rc, 0)
        self.assertIn("dtls.tickets.key_file", out + err)


    @unittest.skipUnless(os.access(CID_CLIENT, os.X_OK), f"{CID_CLIENT} not built")
    def test_resumed_handshake_gets_a_new_connection_id_that_follows_a_rebind(self):
        cfg = self.tickets_config()
        cfg["dtls"]["connection_id"] = {"length": 6, "node_id": 9}
        gw = self.start_gateway(cfg)
        host, port = gw.coaps_addr()
        device = CidClient(host, port, SENSOR_IDENTITY, SENSOR_KEY)
        try:
            first = device.command("connect")
            self.assertTrue(first["ok"], first)
            self.assertFalse(first["resumed"])
            self.assertTrue(device.command("get /telemetry/one")["ok"])
            # From a new socket, as a device whose session is gone: the abbreviated handshake, in
            # which the gateway's Finished comes first and already carries the new CID format.
            again = device.command("resume")
            self.assertTrue(again["ok"], again)
            self.assertTrue(again["resumed"], again)
            self.assertEqual(len(again["cid"]), 12)
            self.assertTrue(again["cid"].startswith("09"))
            self.assertNotEqual(again["cid"], first["cid"])
            answer = device.command("get /telemetry/two")
            self.assertTrue(answer["ok"], answer)
            moved = device.command("rebind")
            answer = device.command("get /telemetry/three")
            self.assertTrue(answer["ok"], answer)
            self.assertEqual(answer["port"], moved["port"])
        finally:
            device.close()
        h.poll_until(lambda: self.handshakes(gw, "resumed") == 1, 10.0, what="result=resumed counted")
        self.assertEqual(self.handshakes(gw, "ok"), 1)
        self.assertGreaterEqual(self.sample(gw, "coapgw_dtls_address_changes_total"), 1)


if __name__ == "__main__":
    unittest.main()
