"""Forwarding with real parts (issue 5, item 7).

The real coapgwd in front of a real HTTP server that records what it receives
(http_recorder.py), libcoap's coap-server-notls as a CoAP upstream, and
libcoap's coap-client-openssl with PSK as the device; raw datagrams through the
harness codec where the message layer itself is under test (separate
responses, duplicates, NON).
"""

import json
import os
import re
import subprocess
import time
import unittest

import harness as h
import http_recorder

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
OPT_MAX_AGE = 14


class Recorder:
    """http_recorder.py as its own process on a free loopback port."""

    def __init__(self, workdir):
        self.log = os.path.join(workdir, "http-records.jsonl")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(HERE, "http_recorder.py"), "--log", self.log, "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.reader = h.BackgroundReader(self.proc.stdout)
        line = h.poll_until(lambda: re.search(r"PORT (\d+)", self.reader.text()), 10,
                            what="http_recorder listening")
        self.port = int(line.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def records(self, path=None):
        return [r for r in http_recorder.read_records(self.log) if path is None or r["path"] == path]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc.stdout.close()


class CoapServer:
    """libcoap's example server, the CoAP upstream; it serves / and /time among others."""

    def __init__(self):
        self.port = h.free_udp_port()
        self.proc = subprocess.Popen(["coap-server-notls", "-A", "127.0.0.1", "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        h.poll_until(lambda: h.coap_request(("127.0.0.1", self.port), h.get("time"), timeout=0.3),
                     10, what="coap-server-notls answering")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class ForwardingTestCase(h.GatewayTestCase):
    """One recorder and one gateway per test, routes:
    /api -> recorder; /slowapi -> recorder's /api with a 1 s timeout; /down -> a closed port;
    /telemetry -> file sink; /legacy -> coap-server-notls and /coapdown -> a closed UDP port when
    a test asks for a CoAP upstream."""

    coap_upstream = False
    api_timeout = "5s"

    def setUp(self):
        super().setUp()
        self.recorder = Recorder(self.tmp)
        self.addCleanup(self.recorder.stop)
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        routes = [
            {"prefix": "/api", "upstream": self.recorder.url, "timeout": self.api_timeout},
            {"prefix": "/slowapi", "upstream": self.recorder.url + "/api", "strip_prefix": True,
             "timeout": "1s"},
            {"prefix": "/down", "upstream": f"http://127.0.0.1:{h.free_tcp_port()}", "timeout": "5s"},
            {"prefix": "/telemetry", "upstream": "file:" + self.sink},
        ]
        if self.coap_upstream:
            self.coap_server = CoapServer()
            self.addCleanup(self.coap_server.stop)
            routes.append({"prefix": "/legacy", "upstream": f"coap://127.0.0.1:{self.coap_server.port}",
                           "strip_prefix": True, "timeout": "5s"})
            routes.append({"prefix": "/coapdown", "upstream": f"coap://127.0.0.1:{h.free_udp_port()}",
                           "timeout": "5s"})
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                            admin=f"127.0.0.1:{h.free_tcp_port()}", routes=routes)
        self.gw = self.start_gateway(cfg)

    def coaps_uri(self, path):
        host, port = self.gw.coaps_addr()
        return f"coaps://{host}:{port}{path}"

    def coap_uri(self, path):
        host, port = self.gw.coap_addr()
        return f"coap://{host}:{port}{path}"

    def device(self, args, wait_s=8):
        """coap-client-openssl with the demo PSK: (rc, stdout, stderr)."""
        return h.coap_client(["-u", h.DEMO_IDENTITY, "-k", h.DEMO_KEY] + list(args),
                             flavour="openssl", wait_s=wait_s)

    def assert_ok(self, result):
        rc, out, err = result
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), out + err)
        return out



class HttpUpstream(ForwardingTestCase):
    def test_post_with_body_and_query_arrives_with_identity_headers(self):
        out = self.assert_ok(self.device(["-m", "post", "-t", "50", "-e", '{"t":21.5}',
                                          self.coaps_uri("/api/created?dev=7&unit=C")]))
        # 201 -> 2.01; coap-client prints the payload of a 2.xx answer
        self.assertIn('{"created":true}', out)
        recs = self.recorder.records("/api/created")
        self.assertEqual(len(recs), 1, recs)
        r = recs[0]
        self.assertEqual(r["method"], "POST")
        self.assertEqual(r["query"], "dev=7&unit=C")
        self.assertEqual(r["body"], '{"t":21.5}')
        headers = {k.lower(): v for k, v in r["headers"].items()}
        self.assertEqual(headers.get("x-device-identity"), h.DEMO_IDENTITY)
        self.assertEqual(headers.get("x-forwarded-for"), "127.0.0.1")
        self.assertRegex(headers.get("x-coap-session", ""), r"^\S+$")
        self.assertTrue(headers.get("content-type", "").startswith("application/json"), headers)

    def test_created_maps_to_2_01(self):
        reply = h.coap_request(self.gw.coap_addr(),
                               h.Message(h.CON, h.code(0, h.POST), h.next_mid(), h.new_token(),
                                         h.path_options("/api/created"), b"x"), timeout=5)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, h.code(2, 1), h.code_str(reply.code))

    def test_upstream_down_is_5_02_and_slow_is_5_04(self):
        rc, out, err = self.device(["-m", "get", self.coaps_uri("/down/x")])
        self.assertEqual(h.response_error(out, err), "5.02", out + err)
        rc, out, err = self.device(["-m", "get", self.coaps_uri("/slowapi/slow")])
        self.assertEqual(h.response_error(out, err), "5.04", out + err)
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total",
                                             route="/down", outcome="connect_failed"), 1)
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total",
                                             route="/slowapi", outcome="timeout"), 1)

    def test_ok_outcome_is_counted(self):
        self.assert_ok(self.device(["-m", "get", self.coaps_uri("/api/hello")]))
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total", route="/api", outcome="ok"), 1)

    def test_non_request_gets_non_answer(self):
        msg = h.get("/api/plain", mtype=h.NON)
        reply = h.coap_request(self.gw.coap_addr(), msg, timeout=5)
        self.assertIsNotNone(reply, "no answer to a NON request")
        self.assertEqual(reply.type, h.NON)
        self.assertEqual(reply.token, msg.token)
        self.assertEqual(reply.code, h.code(2, 5), h.code_str(reply.code))
        self.assertEqual(reply.payload, b"ok")


class SeparateResponse(ForwardingTestCase):
    """coap.separate_response_after (1 s by default) < the upstream's 2 s < the route's 5 s."""

    def test_slow_upstream_gets_empty_ack_then_con_and_duplicates_do_not_reforward(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        nonce = os.urandom(4).hex()
        msg = h.Message(h.CON, h.code(0, h.GET), h.next_mid(), h.new_token(),
                        h.path_options("/api/sleep2") + [(h.OPT_URI_QUERY, f"n={nonce}".encode())])
        s.send(h.encode(msg))
        first = h.recv_message(s, 5)
        self.assertIsNotNone(first, "nothing within 5 s")
        self.assertEqual(first.type, h.ACK, first)
        self.assertEqual(first.code, 0, "expected an empty ACK first, got " + h.code_str(first.code))
        self.assertEqual(first.mid, msg.mid)
        # The device did not see the ACK and retransmits while the upstream is still busy.
        s.send(h.encode(msg))
        answer = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = h.recv_message(s, deadline - time.monotonic())
            if m is None:
                break
            if m.type == h.ACK and m.code == 0 and m.mid == msg.mid:
                continue  # the empty ACK repeated for the duplicate: fine
            answer = m
            break
        self.assertIsNotNone(answer, "no separate response")
        self.assertEqual(answer.type, h.CON, answer)
        self.assertEqual(answer.token, msg.token)
        self.assertEqual(answer.code, h.code(2, 5), h.code_str(answer.code))
        self.assertEqual(answer.payload, b"slept")
        s.send(h.encode(h.Message(h.ACK, 0, answer.mid)))
        recs = [r for r in self.recorder.records("/api/sleep2") if r["query"] == f"n={nonce}"]
        self.assertEqual(len(recs), 1, f"the duplicate CON started another upstream request: {recs}")
        # Acknowledged: the gateway stops retransmitting the answer (ack_timeout is 2 s).
        self.assertIsNone(self.next_non_ack(s, 3.5), "separate response retransmitted after its ACK")

    def test_unacknowledged_separate_response_is_retransmitted_and_counted(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        msg = h.Message(h.CON, h.code(0, h.GET), h.next_mid(), h.new_token(), h.path_options("/api/sleep2"))
        retransmissions = self.counter("coapgw_retransmissions_total")
        unexpected = self.counter("coapgw_bad_messages_total", reason="unexpected_ack")
        s.send(h.encode(msg))
        answer = self.next_non_ack(s, 10)
        self.assertIsNotNone(answer, "no separate response")
        self.assertEqual(answer.type, h.CON, answer)
        # Not acknowledged: the same CON again (same message id and token) within
        # ACK_TIMEOUT * ACK_RANDOM_FACTOR (3 s), counted as a retransmission.
        again = self.next_non_ack(s, 6)
        self.assertIsNotNone(again, "separate response not retransmitted")
        self.assertEqual((again.type, again.mid, again.token, again.payload),
                         (h.CON, answer.mid, answer.token, answer.payload))
        h.poll_until(lambda: self.counter("coapgw_retransmissions_total") >= retransmissions + 1, 5.0,
                     what="coapgw_retransmissions_total")
        # A piggybacked-style ACK is no acknowledgement of our CON: counted, the CON stays.
        s.send(h.encode(h.Message(h.ACK, h.code(2, 5), answer.mid, answer.token)))
        h.poll_until(lambda: self.counter("coapgw_bad_messages_total", reason="unexpected_ack") == unexpected + 1,
                     5.0, what="unexpected_ack")
        s.send(h.encode(h.Message(h.ACK, 0, answer.mid)))

    def next_non_ack(self, s, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = h.recv_message(s, deadline - time.monotonic())
            if m is None:
                return None
            if m.type != h.ACK:
                return m
        return None


class Blockwise(ForwardingTestCase):
    def test_4k_put_in_64_byte_blocks_arrives_whole(self):
        data = bytes((i * 7 + 3) % 26 + 97 for i in range(4096))
        path = os.path.join(self.tmp, "upload.txt")
        with open(path, "wb") as f:
            f.write(data)
        self.assert_ok(self.device(["-m", "put", "-b", "64", "-t", "0", "-f", path,
                                    self.coaps_uri("/api/upload")], wait_s=20))
        recs = self.recorder.records("/api/upload")
        self.assertEqual(len(recs), 1, f"expected one reassembled request, got {len(recs)}")
        self.assertEqual(recs[0]["method"], "PUT")
        self.assertEqual(recs[0]["body_len"], 4096)
        self.assertEqual(recs[0]["body"].encode(), data)

    def test_big_answer_comes_back_whole_through_block2(self):
        out_path = os.path.join(self.tmp, "big.out")
        self.assert_ok(self.device(["-m", "get", "-o", out_path, self.coaps_uri("/api/big")], wait_s=20))
        with open(out_path, "rb") as f:
            got = f.read()
        self.assertEqual(got, http_recorder.big_body())


class FileSinkRoute(ForwardingTestCase):
    def test_file_sink_gets_identity_and_payload(self):
        self.assert_ok(self.device(["-m", "post", "-t", "50", "-e", '{"temp":19}',
                                    self.coaps_uri("/telemetry/room1")]))
        # the sink answers only after the line is written, so it is there now
        with open(self.sink) as f:
            lines = f.read().splitlines()
        self.assertTrue(lines, "file sink is empty")
        obj = json.loads(lines[-1])
        self.assertEqual(obj["identity"], h.DEMO_IDENTITY)
        self.assertEqual(obj["payload"], '{"temp":19}')
        self.assertEqual(obj["path"], "/telemetry/room1")
        self.assertEqual(obj["method"], "POST")


class CoapUpstream(ForwardingTestCase):
    coap_upstream = True

    def test_coap_server_answer_is_relayed(self):
        out = self.assert_ok(self.device(["-m", "get", self.coaps_uri("/legacy/time")]))
        # libcoap's /time answers 2.05 with e.g. "Nov 24 16:10:03"
        self.assertRegex(out, r"[A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d")
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total", route="/legacy", outcome="ok"), 1)

    def test_coap_upstream_down_is_5_02_connect_failed(self):
        reply = h.coap_request(self.gw.coap_addr(), h.get("/coapdown/x"), timeout=6)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, h.code(5, 2), h.code_str(reply.code))
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total",
                                             route="/coapdown", outcome="connect_failed"), 1)

    def test_raw_get_relays_code_max_age_and_payload(self):
        direct = h.coap_request(("127.0.0.1", self.coap_server.port), h.get("/"), timeout=5)
        self.assertIsNotNone(direct)
        reply = h.coap_request(self.gw.coap_addr(), h.get("/legacy"), timeout=5)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, direct.code, h.code_str(reply.code))
        self.assertEqual(reply.payload, direct.payload)
        self.assertIn(b"libcoap", reply.payload)
        # libcoap's index answers with a Max-Age (and no Content-Format): relayed as is
        self.assertEqual(reply.option(OPT_MAX_AGE), direct.option(OPT_MAX_AGE))
        self.assertEqual(reply.option(h.OPT_CONTENT_FORMAT), direct.option(h.OPT_CONTENT_FORMAT))


class CoapsServer:
    """libcoap's example server with DTLS: plain CoAP on PORT, DTLS (PSK key `key`, any identity) on
    PORT+1."""

    KEY = "upstream-secret"

    def __init__(self):
        self.port = self._free_pair()
        self.dtls_port = self.port + 1
        self.proc = subprocess.Popen(["coap-server-openssl", "-A", "127.0.0.1", "-p", str(self.port),
                                      "-k", self.KEY, "-h", "upstream"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        # Its endpoints are bound before its loop runs: an answer on the plain port means both are up.
        h.poll_until(lambda: h.coap_request(("127.0.0.1", self.port), h.get("time"), timeout=0.3),
                     10, what="coap-server-openssl answering")

    @staticmethod
    def _free_pair():
        import socket
        for _ in range(50):
            port = h.free_udp_port()
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
        raise AssertionError("no free loopback UDP port pair")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class JsonConfigGateway(h.Gateway):
    """harness.to_yaml writes list items as flat flow maps, but routes[].psk is a nested map: JSON is
    YAML too, so this gateway writes its config as JSON."""

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=1)
            f.write("\n")


class CoapsUpstream(ForwardingTestCase):
    """/secure -> coap-server-openssl over DTLS with the right PSK, /badkey -> the same server with a
    wrong key. Needs lib/server's build_routes to copy routes[].psk into the RouteSpec."""

    def setUp(self):
        h.GatewayTestCase.setUp(self)
        self.upstream = CoapsServer()
        self.addCleanup(self.upstream.stop)
        url = f"coaps://127.0.0.1:{self.upstream.dtls_port}"
        routes = [
            {"prefix": "/secure", "upstream": url, "strip_prefix": True, "timeout": "5s",
             "psk": {"identity": "coapgw", "key": CoapsServer.KEY}},
            {"prefix": "/badkey", "upstream": url, "strip_prefix": True, "timeout": "2s",
             "psk": {"identity": "coapgw", "key_hex": "00112233445566778899aabbccddeeff"}},
        ]
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                            admin=f"127.0.0.1:{h.free_tcp_port()}", routes=routes)
        gw = JsonConfigGateway(self.tmp, cfg, (), "gw0")
        self._gateways.append(gw)
        gw.start()
        self.gw = gw

    def test_plain_device_reaches_dtls_upstream(self):
        reply = h.coap_request(self.gw.coap_addr(), h.get("/secure/time"), timeout=6)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, h.code(2, 5), h.code_str(reply.code))
        self.assertRegex(reply.payload.decode(), r"[A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d")
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total", route="/secure", outcome="ok"), 1)

    def test_psk_device_reaches_dtls_upstream(self):
        out = self.assert_ok(self.device(["-m", "get", self.coaps_uri("/secure/time")]))
        self.assertRegex(out, r"[A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d")
        # the upstream's own index, relayed through both DTLS legs
        out = self.assert_ok(self.device(["-m", "get", self.coaps_uri("/secure")]))
        self.assertIn("libcoap", out)

    def test_wrong_upstream_key_is_5_02_connect_failed(self):
        # final=True: on a loaded machine the failed handshake can take longer than
        # coap.separate_response_after, and the 5.02 then comes as a separate response.
        reply = h.coap_request(self.gw.coap_addr(), h.get("/badkey/time"), timeout=6, final=True)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, h.code(5, 2), h.code_str(reply.code))
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total",
                                             route="/badkey", outcome="connect_failed"), 1)
        # the right key on the same upstream is unaffected
        reply = h.coap_request(self.gw.coap_addr(), h.get("/secure/time"), timeout=6)
        self.assertIsNotNone(reply)
        self.assertEqual(reply.code, h.code(2, 5), h.code_str(reply.code))

if __name__ == "__main__":
    unittest.main()
