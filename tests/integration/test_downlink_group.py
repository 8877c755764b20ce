"""Group requests (POST /v1/groups/requests, RFC 7252 §8, issue 14): a NON request to a multicast
group and every unicast answer heard within `wait`. Only on loopback: the responders join
224.0.1.187 on 127.0.0.1, the gateway sends from 127.0.0.1 (api.groups.interface) with hop limit 0
and multicast loopback, so nothing leaves the host. Skipped when the kernel refuses the group."""
import socket
import threading
import unittest

import harness as h
from test_downlink import ApiTestCase

GROUP = "224.0.1.187"


class Responder:
    """A plain CoAP server in the group: it hears the multicast request on a socket joined to the
    group and answers from a unicast socket of its own (its own port, so responders differ).
    `confirmable`: the answer is a CON (separate response), which the gateway must ACK."""

    def __init__(self, port, payload, confirmable=False):
        self.payload = payload
        self.confirmable = confirmable
        self.heard = []   # (type, code, path) of the requests heard on the group
        self.acked = []   # message ids of our CON answers that were ACKed
        self.group = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.group.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.group.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.group.bind((GROUP, port))
        self.group.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                              socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
        self.unicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.unicast.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.unicast.getsockname()[1]}"
        self._stop = False
        self._threads = [threading.Thread(target=self._serve, daemon=True),
                         threading.Thread(target=self._acks, daemon=True)]
        for t in self._threads:
            t.start()

    def _serve(self):
        self.group.settimeout(0.1)
        while not self._stop:
            try:
                data, peer = self.group.recvfrom(2048)
                m = h.decode(data)
            except socket.timeout:
                continue
            except (OSError, h.DecodeError):
                return
            self.heard.append((m.type, m.code, m.uri_path()))
            mtype = h.CON if self.confirmable else h.NON
            answer = h.Message(mtype, h.code(2, 5), h.next_mid(), m.token, [(h.OPT_CONTENT_FORMAT, b"")],
                               self.payload)
            self.unicast.sendto(h.encode(answer), peer)

    def _acks(self):
        self.unicast.settimeout(0.1)
        while not self._stop:
            try:
                data, _ = self.unicast.recvfrom(2048)
                m = h.decode(data)
            except socket.timeout:
                continue
            except (OSError, h.DecodeError):
                return
            if m.type == h.ACK and m.code == 0:
                self.acked.append(m.mid)

    def close(self):
        self._stop = True
        for t in self._threads:
            t.join(timeout=2)
        self.group.close()
        self.unicast.close()


class GroupRequests(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.port = h.free_udp_port()
        self.responders = []
        try:
            self.add_responder(b"one")
        except OSError as e:
            self.skipTest(f"the kernel refuses multicast on loopback ({e})")

    def add_responder(self, payload, confirmable=False):
        r = Responder(self.port, payload, confirmable)
        self.addCleanup(r.close)
        self.responders.append(r)
        return r

    def start(self, **groups):
        gw = self.start_api_gateway()
        gw.stop()
        gw.config["api"]["groups"] = {"interface": "127.0.0.1", "hops": 0, **groups}
        self.gw = self.start_gateway(gw.config, name="groups")

    def ask(self, wait="1s", **extra):
        body = {"group": f"{GROUP}:{self.port}", "method": "GET", "path": "/temp", "wait": wait, **extra}
        return self.api("POST", "/v1/groups/requests", body)

    def test_every_responder_is_listed_and_a_con_answer_is_acked(self):
        second = self.add_responder(b"two", confirmable=True)
        self.start()
        status, body = self.ask()
        self.assertEqual(status, 200, body)
        got = sorted((r["remote"], r["code"], r["payload"]) for r in body["responses"])
        self.assertEqual(got, sorted((r.address, "2.05", r.payload.decode()) for r in self.responders))
        for r in self.responders:
            self.assertEqual(r.heard, [(h.NON, h.code(0, h.GET), "/temp")], "the group request is one NON")
        h.poll_until(lambda: second.acked, 5.0, what="the gateway's ACK for the CON answer")
        self.assertEqual(self.counter("coapgw_group_requests_total", outcome="sent"), 1)
        self.assertEqual(self.counter("coapgw_group_responses_total", result="collected"), 2)

    def test_responses_over_the_bound_are_dropped_and_counted(self):
        self.add_responder(b"two")
        self.add_responder(b"three")
        self.start(max_responses=2)
        status, body = self.ask()
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["responses"]), 2, body)
        self.assertEqual(self.counter("coapgw_group_responses_total", result="dropped"), 1)

    def test_a_silent_group_answers_an_empty_list_and_bad_bodies_are_400(self):
        self.start()
        other = h.free_udp_port()
        status, body = self.api("POST", "/v1/groups/requests",
                                {"group": f"{GROUP}:{other}", "method": "GET", "path": "/x", "wait": "300ms"})
        self.assertEqual((status, body), (200, {"responses": []}))
        status, body = self.ask(wait="2m")
        self.assertEqual(status, 400, body)
        status, body = self.ask(confirmable=True)
        self.assertEqual(status, 400, body)
        status, body = self.api("POST", "/v1/groups/requests", {"group": "127.0.0.1:5683", "method": "GET"})
        self.assertEqual(status, 400, body)
        status, body = self.ask(payload="x" * 2000)
        self.assertEqual(status, 503, body)
        self.assertIn("one message", body["error"])
        self.assertEqual(self.counter("coapgw_group_requests_total", outcome="rejected"), 1)

    def test_in_flight_bound(self):
        self.start(max_in_flight=1)
        results = []
        first = threading.Thread(target=lambda: results.append(self.ask(wait="3s")))
        first.start()
        h.poll_until(lambda: self.responders[0].heard, 5.0, what="the first group request out")
        status, body = self.ask(wait="100ms")
        self.assertEqual(status, 503, body)
        self.assertIn("max_in_flight", body["error"])
        first.join(timeout=10)
        self.assertEqual(results[0][0], 200, results)


if __name__ == "__main__":
    unittest.main()
