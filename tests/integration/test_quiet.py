"""Quiet and bursty plain traffic (issue 17, item 6): the worker drains its socket in batches,
stops at a short batch and waits for the next datagram, and bounds one wake-up to a few batches.
Whatever the shape of the traffic, every request is answered once: bursts larger than one
wake-up's bound, bursts of exactly one batch, single datagrams between bursts.
"""

import select
import time
import unittest

import harness as h

DEVICES = 10


class Bursts(h.GatewayTestCase):
    def setUp(self):
        super().setUp()
        cfg = self.config(threads=1)  # one worker: every datagram goes through the same socket
        cfg["log"] = {"level": "warn", "format": "text"}
        self.gw = self.start_gateway(cfg)
        self.addr = self.gw.coap_addr()
        self.socks = [h.udp_socket(self.addr) for _ in range(DEVICES)]
        for s in self.socks:
            self.addCleanup(s.close)
            s.setblocking(False)

    def send_burst(self, count):
        """count CON GETs of unknown paths spread over the devices, sent back to back; returns
        {(device, mid): token}."""
        sent = {}
        for i in range(count):
            device = i % DEVICES
            req = h.get("quiet-%d" % i)
            sent[(device, req.mid)] = req.token
            self.socks[device].send(h.encode(req))
        return sent

    def collect(self, sent, deadline_s=10.0):
        """Reads answers until every request in `sent` has its one 4.04 (polling with a deadline)."""
        waiting = dict(sent)
        by_fd = {s.fileno(): i for i, s in enumerate(self.socks)}
        end = time.monotonic() + deadline_s
        while waiting and time.monotonic() < end:
            ready, _, _ = select.select(self.socks, [], [], 0.2)
            for s in ready:
                device = by_fd[s.fileno()]
                while True:
                    try:
                        data = s.recv(2048)
                    except BlockingIOError:
                        break
                    reply = h.decode(data)
                    key = (device, reply.mid)
                    self.assertIn(key, waiting, f"answer to nothing outstanding, or twice: {reply}")
                    self.assertEqual(reply.type, h.ACK, reply)
                    self.assertEqual(reply.token, waiting.pop(key), reply)
                    self.assertEqual(h.code_str(reply.code), "4.04", reply)
        return waiting

    def test_every_request_of_every_burst_is_answered(self):
        # 300 is more than one wake-up drains (8 batches of 32): the rest must be read after the
        # loop comes back, without a new datagram to wake it. 32 and 33 are one full batch and one
        # more; 1 and 2 are quiet traffic after a burst.
        for count in (300, 1, 32, 33, 2, 300, 1, 64, 5):
            missing = self.collect(self.send_burst(count))
            self.assertEqual(missing, {}, f"burst of {count}: {len(missing)} requests not answered")

    def test_a_lone_request_after_a_burst_is_answered_at_once(self):
        self.assertEqual(self.collect(self.send_burst(200)), {})
        for _ in range(20):
            self.assertEqual(self.collect(self.send_burst(1), deadline_s=2.0), {})


if __name__ == "__main__":
    unittest.main()
