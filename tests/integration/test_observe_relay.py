"""Observe relayed through a coap:// route (RFC 7641, issue 14): a raw Python device observes
/legacy/time, which libcoap's coap-server-notls serves as an observable resource; the gateway
registers upstream and relays each notification over the device's session with the device's
token, until the device answers one with RST or deregisters (GET with Observe=1)."""
import socket
import threading
import unittest

import harness as h
from test_forwarding import CoapServer


class ObservingDevice:
    """One UDP socket; records every message from the gateway by token."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.messages = []  # decoded messages, in arrival order
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(4096)
                m = h.decode(data)
            except socket.timeout:
                continue
            except (OSError, h.DecodeError):
                return
            with self._lock:
                self.messages.append(m)

    def send(self, msg):
        self.sock.sendto(h.encode(msg), self.gateway)

    def of(self, token):
        with self._lock:
            return [m for m in self.messages if m.token == token]

    def notifications(self, token):
        return [m for m in self.of(token) if m.type in (h.NON, h.CON) and m.option(h.OPT_OBSERVE)]

    def observe(self, path, value=0, token=None):
        token = token or h.new_token(4)
        self.send(h.get(path, extra_options=[(h.OPT_OBSERVE, b"" if value == 0 else bytes([value]))], token=token))
        return token

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


def seq(m):
    return int.from_bytes(m.option(h.OPT_OBSERVE)[0], "big")


class ObserveRelay(h.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.upstream = CoapServer()
        self.addCleanup(self.upstream.stop)
        routes = [{"prefix": "/legacy", "upstream": f"coap://127.0.0.1:{self.upstream.port}", "strip_prefix": True,
                   "timeout": "5s"}]
        self.gw = self.start_gateway(self.config(admin=f"127.0.0.1:{h.free_tcp_port()}", routes=routes))
        self.device = ObservingDevice(self.gw.coap_addr())
        self.addCleanup(self.device.close)

    def first_answer(self, token):
        return h.poll_until(lambda: next((m for m in self.device.of(token) if m.type == h.ACK and m.code), None),
                            10.0, 0.02, "the answer to the registration")

    def test_notifications_are_relayed_until_the_device_answers_rst(self):
        token = self.device.observe("legacy/time")
        first = self.first_answer(token)
        self.assertEqual(first.code, h.code(2, 5))
        self.assertTrue(first.option(h.OPT_OBSERVE), "the answer says the observation is registered")
        self.assertEqual(h.poll_until(lambda: self.counter("coapgw_observe_relays"), 5.0, what="gauge"), 1)
        notes = h.poll_until(lambda: len(self.device.notifications(token)) >= 3 and self.device.notifications(token),
                             10.0, 0.05, "three relayed notifications")
        self.assertTrue(all(m.type == h.NON and m.code == h.code(2, 5) and m.payload for m in notes), notes)
        numbers = [seq(m) for m in notes]
        self.assertEqual(numbers, sorted(set(numbers)), "in order, no duplicates")
        self.assertGreater(numbers[0], seq(first))
        self.assertGreaterEqual(self.counter("coapgw_relayed_notifications_total", result="relayed"), 3)

        # Not interested any more (RFC 7641 3.6): RST to the latest notification.
        self.device.send(h.Message(h.RST, 0, notes[-1].mid, b""))
        h.poll_until(lambda: self.counter("coapgw_observe_relays") == 0 and "zero", 5.0, what="the relay ended")
        cut = len(self.device.of(token))
        # Another observation runs meanwhile: once it has two notifications, the first one is quiet.
        other = self.device.observe("legacy/time")
        self.first_answer(other)
        h.poll_until(lambda: len(self.device.notifications(other)) >= 2, 10.0, 0.05, "the second observation")
        self.assertLessEqual(len(self.device.of(token)), cut + 1, "notifications kept coming after the RST")

    def test_deregistration_with_observe_1_ends_the_relay(self):
        token = self.device.observe("legacy/time")
        self.first_answer(token)
        h.poll_until(lambda: self.device.notifications(token), 10.0, 0.05, "a relayed notification")
        before = len(self.device.of(token))
        self.device.observe("legacy/time", value=1, token=token)
        h.poll_until(lambda: self.counter("coapgw_observe_relays") == 0 and "zero", 5.0, what="the relay ended")
        answer = h.poll_until(
            lambda: next((m for m in self.device.of(token)[before:] if m.type == h.ACK and not m.option(h.OPT_OBSERVE)),
                         None), 5.0, 0.02, "a plain answer to the deregistration")
        self.assertEqual(answer.code, h.code(2, 5))

    def test_an_unobservable_resource_answers_once_without_observe(self):
        token = self.device.observe("legacy/")  # coap-server's / is not observable
        first = self.first_answer(token)
        self.assertEqual(first.code, h.code(2, 5))
        self.assertFalse(first.option(h.OPT_OBSERVE))
        h.poll_until(lambda: self.counter("coapgw_observe_relays") == 0 and "zero", 5.0, what="no relay kept")


if __name__ == "__main__":
    unittest.main()
