"""Secrets handled as secrets (issue 11, point 7), seen from outside the daemon:

- a PSK identity chosen by the device (newlines, terminal escapes, bytes that are not UTF-8)
  ends up on one escaped text log line and cannot forge another;
- a keys file that other users can read is refused, naming its mode;
- the persist file is never written through a symlink planted at its temporary name.
"""
import os
import re
import signal
import stat
import unittest

import harness as h
from test_ops import DtlsDevice

FORGED = "INFO forged line"


class Secrets(h.GatewayTestCase):
    def coaps_config(self, keys=None):
        return h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], keys=keys,
                             routes=[{"prefix": "/telemetry",
                                      "upstream": f"file:{os.path.join(self.tmp, 't.jsonl')}"}])

    def stderr_text(self, gw):
        with open(gw.stderr_path, "rb") as f:
            return f.read().decode("utf-8", errors="strict")  # escaped output stays valid UTF-8

    def assert_not_forged(self, gw):
        text = self.stderr_text(gw)
        for line in text.splitlines():
            self.assertFalse(line.startswith(FORGED), f"a peer forged a log line: {line!r}")
            self.assertNotIn("\x1b", line)
        return text

    def handshake(self, gw, identity, key):
        device = DtlsDevice(*gw.coaps_addr(), identity, key)
        try:
            return device.wait_handshake()
        finally:
            device.proc.kill()
            device.proc.wait(timeout=5)
            device.proc.stdin.close()
            device.proc.stdout.close()

    def test_unknown_identity_with_a_newline_stays_on_one_line(self):
        gw = self.start_gateway(self.coaps_config())  # log level debug: unknown identities are logged
        evil = f"evil\n{FORGED}"
        self.handshake(gw, evil, "whatever")  # refused: the identity is unknown
        h.poll_until(lambda: "evil\\nINFO forged line" in self.stderr_text(gw), 10.0,
                     what="the escaped identity in the log")
        self.assert_not_forged(gw)

    def test_known_identity_with_control_characters_is_escaped(self):
        identity = f"dev\n{FORGED}\x1b[31m\r"
        gw = self.start_gateway(self.coaps_config(keys=[{"identity": identity, "key": "k-123"}]))
        self.assertTrue(self.handshake(gw, identity, "k-123"))
        h.poll_until(lambda: "identity=dev\\nINFO forged line\\x1b[31m\\r" in self.stderr_text(gw), 10.0,
                     what="the escaped identity on the 'dtls established' line")
        self.assert_not_forged(gw)

    def write_keys(self, mode):
        path = os.path.join(self.tmp, "psk-keys.yaml")
        with open(path, "w") as f:
            f.write(h.to_yaml([{"identity": "sensor", "key": "sensor-secret"}]) + "\n")
        os.chmod(path, mode)
        return path

    def test_keys_file_that_others_can_read_is_refused(self):
        cfg = self.coaps_config()
        cfg["dtls"]["psk"]["keys_file"] = self.write_keys(0o644)
        path = os.path.join(self.tmp, "gw.yaml")
        with open(path, "w") as f:
            f.write(h.to_yaml(cfg) + "\n")
        rc, out, err = h.run_coapgwd(["--config", path, "--check-config"])
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("dtls.psk.keys_file", err)
        self.assertIn("mode 0644", err)
        os.chmod(cfg["dtls"]["psk"]["keys_file"], 0o640)  # root:coapgw 0640, as installed
        rc, out, err = h.run_coapgwd(["--config", path, "--check-config"])
        self.assertEqual(rc, 0, out + err)

    def test_reload_refuses_a_keys_file_opened_up_to_others(self):
        from prometheus_client.parser import text_string_to_metric_families

        def reloads(result):
            status, body = h.http_get(gw.admin_url("/metrics"))
            self.assertEqual(status, 200, body[:300])
            for family in text_string_to_metric_families(body):
                for sample in family.samples:
                    if sample.name == "coapgw_config_reloads_total" and sample.labels.get("result") == result:
                        return sample.value
            return 0.0

        cfg = self.coaps_config()
        cfg["listen"]["admin"] = f"127.0.0.1:{h.free_tcp_port()}"
        keys = self.write_keys(0o600)
        cfg["dtls"]["psk"]["keys_file"] = keys
        gw = self.start_gateway(cfg)
        os.chmod(keys, 0o644)
        gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: reloads("failed") == 1, 10.0, what="the reload counted as failed")
        self.assertIn("mode 0644", gw.logs())
        self.assertEqual(reloads("ok"), 0)
        os.chmod(keys, 0o600)
        gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: reloads("ok") == 1, 10.0, what="the reload after chmod")

    def test_persist_write_does_not_follow_a_planted_symlink(self):
        cfg = self.coaps_config()
        state = os.path.join(self.tmp, "sessions.bin")
        cfg["sessions"]["persist"] = {"file": state, "max_age": "1h"}
        gw = self.start_gateway(cfg)
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("precious")
        # The old fixed temporary names, and the target itself, point at the victim.
        for name in (state + ".tmp", state + ".key.tmp", state):
            os.symlink(victim, name)
        gw.stop()
        with open(victim, "rb") as f:
            self.assertEqual(f.read(), b"precious", "the session file was written through a symlink")
        for name in (state, state + ".key"):
            st = os.lstat(name)
            self.assertTrue(stat.S_ISREG(st.st_mode), name)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, name)
        leftovers = [n for n in os.listdir(self.tmp) if re.match(r"sessions\.bin(\.key)?\.tmp-", n)]
        self.assertEqual(leftovers, [])
        self.assertIn("persisted 0 DTLS sessions", gw.logs())


if __name__ == "__main__":
    unittest.main()
