"""Foundation: plain CoAP against the real coapgwd (issue 2, item 8).

Message layer answers per RFC 7252, duplicate detection, bad input, replies
from the address the request came to, the command line and the exit codes.
"""

import os
import random
import re
import signal
import socket
import struct
import unittest

import harness as h


class PlainCoap(h.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(self.config())
        self.addr = self.gw.coap_addr()

    def assert_piggybacked(self, req, reply, expected_code):
        self.assertIsNotNone(reply, "no answer")
        self.assertEqual(reply.type, h.ACK, reply)
        self.assertEqual(reply.mid, req.mid, reply)
        self.assertEqual(reply.token, req.token, reply)
        self.assertEqual(h.code_str(reply.code), expected_code, reply)

    def test_coap_client_gets_well_known_core(self):
        host, port = self.addr
        rc, out, err = h.coap_client(["-m", "get", f"coap://{host}:{port}/.well-known/core"])
        self.assertEqual(rc, 0, err)
        self.assertIsNone(h.response_error(out, err), out + err)
        # RFC 6690 link-format: at least one <target> link
        self.assertRegex(out, r"<[^>]*>", f"stdout={out!r} stderr={err!r}")

    def test_well_known_core_is_link_format(self):
        req = h.get(".well-known/core")
        reply = h.coap_request(self.addr, req)
        self.assert_piggybacked(req, reply, "2.05")
        # Content-Format 40 = application/link-format
        self.assertEqual([int.from_bytes(v, "big") for v in reply.option(h.OPT_CONTENT_FORMAT)],
                         [40], reply)
        self.assertTrue(reply.payload.startswith(b"<"), reply)

    def test_unknown_path_is_4_04(self):
        req = h.get("nothing-here")
        reply = h.coap_request(self.addr, req)
        self.assert_piggybacked(req, reply, "4.04")
        self.assertEqual(reply.code, 0x84)

    def test_duplicate_con_gets_identical_answer(self):
        raw = h.encode(h.get(".well-known/core"))
        with h.udp_socket(self.addr) as s:
            s.send(raw)
            first = self._recv_raw(s)
            s.send(raw)
            second = self._recv_raw(s)
        self.assertIsNotNone(first, "no answer to the first copy")
        self.assertIsNotNone(second, "no answer to the duplicate")
        self.assertEqual(first, second)

    def _recv_raw(self, s, timeout=2.0):
        s.settimeout(timeout)
        try:
            return s.recv(65535)
        except socket.timeout:
            return None

    def test_unknown_critical_option_is_4_02(self):
        req = h.get(".well-known/core", extra_options=[(65001, b"x")])
        reply = h.coap_request(self.addr, req)
        self.assert_piggybacked(req, reply, "4.02")

    def test_unknown_elective_option_is_ignored(self):
        req = h.get(".well-known/core", extra_options=[(65000, b"x")])
        reply = h.coap_request(self.addr, req)
        self.assert_piggybacked(req, reply, "2.05")

    def test_non_request_gets_non_response(self):
        req = h.get(".well-known/core", mtype=h.NON)
        reply = h.coap_request(self.addr, req)
        self.assertIsNotNone(reply, "no answer to a NON request")
        self.assertEqual(reply.type, h.NON, reply)
        self.assertEqual(reply.token, req.token, reply)
        self.assertEqual(h.code_str(reply.code), "2.05", reply)

    def test_malformed_con_gets_rst(self):
        mid = h.next_mid()
        raw = bytes([0x49, 0x01]) + struct.pack("!H", mid) + b"123456789"  # TKL 9
        reply = h.coap_request(self.addr, raw)
        self.assertIsNotNone(reply, "no RST for a malformed CON")
        self.assertEqual(reply.type, h.RST, reply)
        self.assertEqual(reply.mid, mid, reply)
        self.assertEqual(reply.code, 0, reply)

    def _first_answer_after(self, raw_first):
        """Sends raw_first then a valid probe on one socket: the first datagram
        back must answer the probe (same socket, so same worker and order)."""
        probe = h.get(".well-known/core")
        with h.udp_socket(self.addr) as s:
            s.send(raw_first)
            s.send(h.encode(probe))
            reply = h.recv_message(s, 3.0)
        self.assertIsNotNone(reply, "no answer to the probe")
        return probe, reply

    def test_malformed_non_gets_no_answer(self):
        raw = bytes([0x59, 0x01]) + struct.pack("!H", h.next_mid()) + b"123456789"
        probe, reply = self._first_answer_after(raw)
        self.assertEqual((reply.mid, reply.token), (probe.mid, probe.token),
                         f"malformed NON was answered: {reply}")

    def test_rst_from_client_is_accepted_silently(self):
        raw = h.encode(h.Message(h.RST, 0, h.next_mid()))
        probe, reply = self._first_answer_after(raw)
        self.assertEqual((reply.mid, reply.token), (probe.mid, probe.token),
                         f"RST was answered: {reply}")


class MalformedFlood(h.GatewayTestCase):
    """Load-heavy: ctest runs it alone (RUN_SERIAL)."""

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(self.config())
        self.addr = self.gw.coap_addr()

    def test_flood_of_malformed_datagrams(self):
        rng = random.Random(7252)

        def malformed():
            shape = rng.randrange(8)
            mid = struct.pack("!H", rng.randrange(0x10000))
            t = rng.randrange(4) << 4
            if shape == 0:
                return bytes(rng.randrange(256) for _ in range(rng.randrange(4)))  # < header
            if shape == 1:
                return bytes([0x40 | t | rng.randrange(9, 16), 1]) + mid + os.urandom(rng.randrange(16))
            if shape == 2:  # version 0, 2 or 3
                return bytes([(rng.choice([0, 2, 3]) << 6) | t, 1]) + mid
            if shape == 3:  # reserved nibble 15 in delta or length
                return bytes([0x40 | t, 1]) + mid + bytes([rng.choice([0xF1, 0x1F, 0xFD])]) + b"ab"
            if shape == 4:  # payload marker, no payload
                return bytes([0x40 | t, 1]) + mid + b"\xff"
            if shape == 5:  # truncated extended delta/length or value
                return bytes([0x40 | t, 1]) + mid + rng.choice([b"\xd0", b"\xe0\x01", b"\x0d", b"\x1e\x00", b"\xb5ab"])
            if shape == 6:  # empty message with a token or code (RFC 7252 4.1)
                return bytes([0x42 | t, 0]) + mid + b"ab"
            return os.urandom(rng.randrange(1, 300))

        socks = [h.udp_socket(self.addr) for _ in range(20)]
        try:
            for i in range(20000):
                try:
                    socks[i % len(socks)].send(malformed())
                except (ConnectionRefusedError, BlockingIOError):
                    pass
        finally:
            for s in socks:
                s.close()
        self.assertTrue(self.gw.alive(), "coapgwd died during the flood\n" + self.gw.logs())
        # The gateway may still be chewing through its queue: retry with a deadline.
        reply = h.poll_until(lambda: h.coap_request(self.addr, h.get(".well-known/core"), timeout=1.0),
                             20.0, what="an answer after the flood")
        self.assertEqual(h.code_str(reply.code), "2.05", reply)
        self.assertTrue(self.gw.alive())


class AnswersFromTheRightAddress(h.GatewayTestCase):
    def _check_source(self, listen, targets):
        host, _ = h.split_hostport(listen)
        gw = self.start_gateway(self.config(coap=[listen]))
        port = gw.coap_addr()[1]
        for target in targets:
            family = socket.AF_INET6 if ":" in target else socket.AF_INET
            # unconnected: see where the answer really comes from
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                req = h.get(".well-known/core")
                s.sendto(h.encode(req), (target, port))
                s.settimeout(3.0)
                try:
                    data, source = s.recvfrom(65535)
                except socket.timeout:
                    self.fail(f"no answer to a request sent to {target}:{port}")
                self.assertEqual((source[0], source[1]), (target, port),
                                 f"request to {target} answered from {source}")
                self.assertEqual(h.decode(data).token, req.token)
            # connected: the kernel only delivers answers from exactly (target, port)
            req = h.get(".well-known/core")
            reply = h.coap_request((target, port), req, timeout=3.0)
            self.assertIsNotNone(reply, f"connected socket to {target} got no answer")
            self.assertEqual(reply.token, req.token)

    def test_ipv4_wildcard_answers_from_each_loopback_address(self):
        port = h.free_udp_port("0.0.0.0")
        self._check_source(f"0.0.0.0:{port}", ["127.0.0.1", "127.0.0.2"])

    def test_ipv6_wildcard_answers_from_loopback(self):
        if not h.has_ipv6_loopback():
            self.skipTest("no IPv6 loopback")
        port = h.free_udp_port("::1")
        self._check_source(f"[::]:{port}", ["::1"])


class CommandLine(h.GatewayTestCase):
    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_config_good(self):
        path = self.write("good.yaml", h.to_yaml(self.config()) + "\n")
        rc, out, err = h.run_coapgwd(["--config", path, "--check-config"])
        self.assertEqual(rc, 0, out + err)

    def test_check_config_unknown_key(self):
        cfg = self.config()
        cfg["coap"]["no_such_key"] = 1
        path = self.write("bad.yaml", h.to_yaml(cfg) + "\n")
        rc, out, err = h.run_coapgwd(["--config", path, "--check-config"])
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(out + err, r"coap.{0,3}no_such_key", "error does not name the key path")

    def test_version(self):
        rc, out, err = h.run_coapgwd(["--version"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out + err, r"\d+\.\d+\.\d+")

    def test_port_in_use_exits_2(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
            blocker.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: nobody can share it
            port = blocker.getsockname()[1]
            path = self.write("busy.yaml", h.to_yaml(self.config(coap=[f"127.0.0.1:{port}"])) + "\n")
            rc, out, err = h.run_coapgwd(["--config", path], timeout=15.0)
        self.assertEqual(rc, 2, out + err)
        lines = [line for line in (out + err).splitlines() if line.strip()]
        self.assertTrue(lines, "no reason printed")
        self.assertTrue(any(str(port) in line or re.search(r"in use", line, re.I) for line in lines),
                        f"reason does not name the port or 'in use': {lines[-3:]}")

    def test_sigterm_exits_0(self):
        gw = self.start_gateway(self.config())
        self.assertEqual(gw.stop(signal.SIGTERM), 0)

    def test_sigint_exits_0(self):
        gw = self.start_gateway(self.config())
        self.assertEqual(gw.stop(signal.SIGINT), 0)


if __name__ == "__main__":
    unittest.main()
