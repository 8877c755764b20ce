"""Queued downlink requests (queue_for) survive a reload and, with sessions.persist, a graceful
restart (issue 14): their ids and states stay readable, and a request queued before the restart
reaches the device when it calls in afterwards."""
import os
import signal
import stat
import unittest

import harness as h
from test_downlink import ApiTestCase, PlainDevice


class QueueAcrossRestart(ApiTestCase):
    def queue(self, ref, path, queue_for="5m"):
        status, body = self.api("POST", self.device_path(ref), {"method": "GET", "path": path, "queue_for": queue_for})
        self.assertEqual(status, 202, body)
        return body["id"]

    def state(self, ref, rid):
        status, body = self.api("GET", self.device_path(ref, f"/requests/{rid}"))
        self.assertEqual(status, 200, body)
        return body

    def wait_answered(self, ref, rid):
        return h.poll_until(lambda: (lambda b: b["state"] == "answered" and b)(self.state(ref, rid)), 10.0,
                            what=f"request {rid} answered")

    def test_queued_request_survives_a_reload(self):
        self.start_api_gateway()
        device = PlainDevice(self.gw.coap_addr())
        self.addCleanup(device.close)
        rid = self.queue(device.ref, "/temp")
        before = self.counter("coapgw_config_reloads_total", result="ok")
        self.gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: self.counter("coapgw_config_reloads_total", result="ok") == before + 1, 10.0,
                     what="the reload")
        self.assertEqual(self.state(device.ref, rid)["state"], "queued")
        self.assertEqual(self.counter("coapgw_downlink_queued"), 1)
        device.call_in()
        self.assertEqual(self.wait_answered(device.ref, rid)["answer"]["payload"], "21.5")

    def test_queued_request_survives_a_graceful_restart_with_persist(self):
        state_file = os.path.join(self.tmp, "sessions.bin")
        first = self.start_api_gateway()
        first.config["sessions"]["persist"] = {"file": state_file, "max_age": "1h"}
        first.stop()
        first = self.gw = self.start_gateway(first.config, name="first")
        device = PlainDevice(first.coap_addr())
        self.addCleanup(device.close)
        rid = self.queue(device.ref, "/temp")
        cancelled = self.queue(device.ref, "/other")
        status, body = self.api("DELETE", self.device_path(device.ref, f"/requests/{cancelled}"))
        self.assertEqual((status, body["state"]), (200, "cancelled"), body)
        self.assertEqual(device.requests, [])

        first.stop()  # SIGTERM: graceful
        queue_file = state_file + ".downlink"
        self.assertEqual(stat.S_IMODE(os.stat(queue_file).st_mode), 0o600)
        second = self.gw = self.start_gateway(first.config, name="second")
        self.assertIn("restored the downlink queue", second.logs())
        self.assertFalse(os.path.exists(queue_file), "the queue file is read once, then removed")
        self.assertEqual(self.state(device.ref, rid)["state"], "queued")
        self.assertEqual(self.state(device.ref, cancelled)["state"], "cancelled")
        self.assertEqual(self.counter("coapgw_downlink_queued"), 1)
        # A new request gets an id of its own, not one from before the restart.
        fresh = self.queue(device.ref, "/temp")
        self.assertNotIn(fresh, (rid, cancelled))

        device.call_in()  # the device wakes up after the restart
        body = self.wait_answered(device.ref, rid)
        self.assertEqual(body["answer"]["code"], "2.05")
        self.assertEqual(body["answer"]["payload"], "21.5")
        self.wait_answered(device.ref, fresh)
        self.assertNotIn((h.code(0, h.GET), "/other", b""), device.requests, "a cancelled request was sent")

    def test_a_tampered_queue_file_is_refused(self):
        state_file = os.path.join(self.tmp, "sessions.bin")
        first = self.start_api_gateway()
        first.config["sessions"]["persist"] = {"file": state_file, "max_age": "1h"}
        first.stop()
        first = self.gw = self.start_gateway(first.config, name="first")
        rid = self.queue(f"coap:127.0.0.1:{h.free_udp_port()}", "/temp")
        first.stop()
        queue_file = state_file + ".downlink"
        with open(queue_file, "rb") as f:
            data = bytearray(f.read())
        data[20] ^= 0xFF
        with open(queue_file, "wb") as f:
            f.write(data)
        second = self.gw = self.start_gateway(first.config, name="second")
        self.assertIn("integrity check failed", second.logs())
        self.assertEqual(self.counter("coapgw_downlink_queued"), 0)
        self.assertFalse(os.path.exists(queue_file))
        self.assertIsNotNone(rid)


if __name__ == "__main__":
    unittest.main()
