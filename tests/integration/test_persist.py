"""sessions.persist (issue 8): established DTLS sessions survive a restart without a new
handshake; the file is 0600; a corrupt file is refused with a clear log line and never trusted;
without persist, shutdown sends close_notify (covered in test_ops)."""
import os
import stat
import unittest

import harness as h
from test_ops import DtlsDevice


class Persist(h.GatewayTestCase):
    def persist_config(self):
        self.state = os.path.join(self.tmp, "sessions.bin")
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}", threads=2,
                            routes=[{"prefix": "/telemetry", "upstream": f"file:{os.path.join(self.tmp, 't.jsonl')}"}])
        cfg["sessions"]["persist"] = {"file": self.state, "max_age": "1h"}
        return cfg

    def handshakes_in_log(self, gw):
        return gw.logs(tail=100000).count("dtls established")

    def test_device_rides_through_a_restart_without_handshake(self):
        cfg = self.persist_config()
        gw = self.start_gateway(cfg, name="first")
        device = DtlsDevice(*gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY)
        try:
            self.assertTrue(device.wait_handshake(), device.text())
            self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
            gw.stop()  # SIGTERM, exit 0
            self.assertFalse(device.saw_close_notify(), "with persist the session must not be closed")
            st = os.stat(self.state)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
            second = self.start_gateway(cfg, name="second")
            self.assertIn("restored 1 DTLS sessions", second.logs())
            # Same s_client, same keys: the request goes through on the restored session.
            self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
            self.assertEqual(self.handshakes_in_log(second), 0, "the device had to handshake again")
            self.assertIn("restored from the persist file", second.logs())
            self.assertFalse(os.path.exists(self.state), "the file is read once, then removed")
        finally:
            device.proc.kill()
            device.proc.wait(timeout=5)
            device.proc.stdin.close()
            device.proc.stdout.close()

    def test_corrupt_file_is_refused_and_ignored(self):
        cfg = self.persist_config()
        gw = self.start_gateway(cfg, name="first")
        device = DtlsDevice(*gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY)
        try:
            self.assertTrue(device.wait_handshake(), device.text())
            self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
            gw.stop()
            data = bytearray(open(self.state, "rb").read())
            data[40] ^= 0xFF
            with open(self.state, "wb") as f:
                f.write(data)
            os.chmod(self.state, 0o600)
            second = self.start_gateway(cfg, name="second")
            self.assertIn("not restoring sessions", second.logs())
            self.assertIn("integrity check failed", second.logs())
            # The device's old session is not trusted: its records go nowhere.
            self.assertIsNone(device.request(h.GET, "/.well-known/core", deadline_s=2.0))
        finally:
            device.proc.kill()
            device.proc.wait(timeout=5)
            device.proc.stdin.close()
            device.proc.stdout.close()


if __name__ == "__main__":
    unittest.main()
