"""Issue 11, points 1 and 8: nothing a stranger can send without the keys ends or degrades a
session, and addresses whose handshakes keep failing are backed off.

The attacks are real spoofed datagrams: a raw IPv4 socket (root, as CI runs) writes UDP packets
whose source is the live device's own address and port, exactly what an off-path attacker who
knows (or guesses) a device's address can do. The devices are real peers (openssl s_client).
"""

import json
import os
import re
import socket
import struct
import time

import harness as h
from test_ops import DtlsDevice


def spoof_udp(src, dst, payload):
    """Sends `payload` from src=(ip, port) to dst=(ip, port), IPv4, whatever socket owns src."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload  # checksum 0: none
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src[0]), socket.inet_aton(dst[0]))  # kernel fills id and checksum
        s.sendto(ip + udp, (dst[0], 0))
    finally:
        s.close()


def record(content_type, epoch, seq, body):
    return struct.pack("!BHH", content_type, 0xFEFD, epoch) + seq.to_bytes(6, "big") + \
        struct.pack("!H", len(body)) + body


class SpoofTestCase(h.GatewayTestCase):
    def sessions(self, proto):
        status, body = h.http_get(self.gw.admin_url("/v1/sessions?limit=1000"))
        self.assertEqual(status, 200, body)
        data = json.loads(body)
        sessions = data["sessions"] if isinstance(data, dict) else data
        return [s for s in sessions if s["proto"] == proto]

    def dtls_device(self):
        device = DtlsDevice(*self.gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY)
        self.addCleanup(device.close)
        self.assertTrue(device.wait_handshake(), device.text())
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        live = h.poll_until(lambda: [s for s in self.sessions("dtls") if s["state"] == "established"] or None,
                            5.0, what="the device's session")
        self.assertEqual(len(live), 1, live)
        host, port = h.split_hostport(live[0]["remote"])
        return device, live[0], (host, int(port))


class SpoofedDtls(SpoofTestCase):
    """Junk records, replays, plaintext alerts and handshake messages from the device's address."""

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                                                   admin=f"127.0.0.1:{h.free_tcp_port()}", threads=1))

    def test_junk_from_the_device_address_never_ends_its_session(self):
        device, session, device_addr = self.dtls_device()
        gw_addr = self.gw.coaps_addr()
        bad_before = self.counter("coapgw_bad_messages_total", reason="dtls_bad_record")
        # The review's datagram: eight junk epoch-1 application records, about 100 bytes.
        eight = b"".join(record(23, 1, 1000 + i, b"") for i in range(8))
        self.assertEqual(len(eight), 104)
        spoof_udp(device_addr, gw_addr, eight)
        # More of the same class: long runs of bad records, one per datagram and packed; epoch-1
        # alerts and handshake records that fail authentication; plaintext (epoch 0) fatal alerts
        # and handshake junk; records claiming the newest sequence numbers; a truncated record.
        for n in range(40):
            spoof_udp(device_addr, gw_addr, record(23, 1, 2000 + n, os.urandom(40)))
        spoof_udp(device_addr, gw_addr, b"".join(record(21, 1, 3000 + i, os.urandom(26)) for i in range(8)))
        spoof_udp(device_addr, gw_addr, b"".join(record(22, 1, 3100 + i, os.urandom(40)) for i in range(8)))
        for desc in (40, 20, 0, 10):  # handshake_failure, bad_record_mac, close_notify, unexpected_message
            spoof_udp(device_addr, gw_addr, record(21, 0, 5, bytes([2, desc])))
        spoof_udp(device_addr, gw_addr, record(22, 0, 7, bytes([20, 0, 0, 12, 0, 3, 0, 0, 0, 0, 0, 12]) + os.urandom(12)))
        spoof_udp(device_addr, gw_addr, record(23, 1, (1 << 48) - 1, os.urandom(32)))
        spoof_udp(device_addr, gw_addr, record(23, 1, 4000, os.urandom(40))[:-10])
        h.poll_until(lambda: self.counter("coapgw_bad_messages_total", reason="dtls_bad_record") >= bad_before + 8 + 40,
                     10.0, what="the spoofed records to be counted")
        # The session is unharmed: same session, answers its device, nothing closed.
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        after = self.sessions("dtls")
        self.assertEqual([s["id"] for s in after], [session["id"]])
        self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="dtls"), 0)
        self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="failed"), 0)


class SpoofedHellos(SpoofTestCase):
    """Forged ClientHellos with a device's address earn HelloVerifyRequests sent to that address: a
    few per second at most, the rest dropped and counted. (The victim here has no session, so the
    gateway cannot tell it from a new device; for an address with a live session see
    SpoofedHelloAtLiveDevice.)"""

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                                                   admin=f"127.0.0.1:{h.free_tcp_port()}", threads=1))

    def test_forged_hellos_do_not_become_a_stream_at_the_device(self):
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.bind(("127.0.0.1", 0))
        self.addCleanup(victim.close)
        for i in range(60):
            spoof_udp(victim.getsockname(), self.gw.coaps_addr(), h.dtls_client_hello(seq=i, random=os.urandom(32)))
        h.poll_until(lambda: self.counter("coapgw_dtls_hello_verify_requests_total")
                     + self.counter("coapgw_bad_messages_total", reason="hello_rate_limited") >= 60, 10.0,
                     what="every forged hello to be answered or dropped")
        sent = self.counter("coapgw_dtls_hello_verify_requests_total")
        self.assertLessEqual(sent, 16, "at most 8 a second (the burst may straddle two seconds)")
        self.assertGreaterEqual(self.counter("coapgw_bad_messages_total", reason="hello_rate_limited"), 44)
        victim.settimeout(0.5)
        received = 0
        try:
            while True:
                if h.is_hello_verify_request(victim.recv(4096)):
                    received += 1
        except socket.timeout:
            pass
        self.assertEqual(received, sent)
        # Another address is answered at once.
        other = h.udp_socket(self.gw.coaps_addr())
        self.addCleanup(other.close)
        other.settimeout(3.0)
        other.send(h.dtls_client_hello(seq=0, random=os.urandom(32)))
        self.assertTrue(h.is_hello_verify_request(other.recv(4096)))


class SpoofedHelloAtLiveDevice(SpoofTestCase):
    """A forged ClientHello from the address of a device with an established session earns no
    HelloVerifyRequest while the device is alive (an OpenSSL client stops when it gets one): the
    gateway drops it, and once the session has been quiet for a while it asks the device with a
    CoAP ping through the session; a device that answers keeps its session, whatever is forged."""

    def setUp(self):
        super().setUp()
        self.gw = self.start_gateway(h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                                                   admin=f"127.0.0.1:{h.free_tcp_port()}", threads=1))

    def dropped(self):
        return self.counter("coapgw_bad_messages_total", reason="hello_for_live_session")

    def test_forged_hellos_never_reach_a_live_device(self):
        device, session, device_addr = self.dtls_device()
        gw_addr = self.gw.coaps_addr()
        hvr = self.counter("coapgw_dtls_hello_verify_requests_total")  # the device's own handshake
        # Right after the device's request: dropped, nothing sent to the device.
        spoof_udp(device_addr, gw_addr, h.dtls_client_hello(seq=0, random=os.urandom(32)))
        h.poll_until(lambda: self.dropped() >= 1, 5.0, what="the forged hello to be dropped")
        self.assertEqual(self.counter("coapgw_dtls_hello_verify_requests_total"), hvr)
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        # Keep forging until the session has been quiet long enough for the gateway to ask the
        # device: an empty CON (CoAP ping) arrives through the session.
        mark = len(device.output())
        ping = re.compile(rb"\x40\x00(..)", re.S)

        def probe_seen():
            m = ping.search(device.output()[mark:])
            if m is None:
                spoof_udp(device_addr, gw_addr, h.dtls_client_hello(seq=1, random=os.urandom(32)))
            return m
        m = h.poll_until(probe_seen, 15.0, interval_s=0.5, what="the gateway's ping through the session")
        # The device answers the ping with an RST (RFC 7252 4.3), an authenticated record.
        device.send(h.Message(h.RST, 0, struct.unpack("!H", m.group(1))[0], b"", [], b""))
        # From now on forged hellos keep being dropped, well past the time a rebooted device waits.
        start = self.dropped()
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            spoof_udp(device_addr, gw_addr, h.dtls_client_hello(seq=2, random=os.urandom(32)))
            time.sleep(0.5)  # the forger's pace, not synchronisation
        h.poll_until(lambda: self.dropped() >= start + 8, 5.0, what="the forged hellos to be dropped")
        self.assertEqual(self.counter("coapgw_dtls_hello_verify_requests_total"), hvr)
        # The device and its session are unharmed.
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        self.assertIsNone(device.proc.poll(), device.text())
        self.assertEqual([s["id"] for s in self.sessions("dtls")], [session["id"]])
        self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), 1)


class SpoofedPlain(SpoofTestCase):
    """Plain CoAP has no keys, so a spoofer is the device as far as one datagram goes; still, what
    it sends must not poison the device's later exchanges or evict sessions of other devices."""

    def setUp(self):
        super().setUp()
        self.cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                                 admin=f"127.0.0.1:{h.free_tcp_port()}", threads=1)

    def test_a_guessed_message_id_with_another_token_is_not_a_duplicate(self):
        self.gw = self.start_gateway(self.cfg)
        device = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(device.close)
        mid = 4242
        # The attacker's request from the device's address, with the message id the device will use next.
        spoof_udp(device.getsockname(), self.gw.coap_addr(),
                  h.encode(h.get("/nothing-here", mid=mid, token=b"EVIL")))
        device.settimeout(5.0)
        stolen = h.decode(device.recv(65536))  # the gateway answers the address, i.e. the device
        self.assertEqual((stolen.mid, stolen.token), (mid, b"EVIL"))
        # The device's own request with that message id and its own token gets its own answer.
        own = h.get("/.well-known/core", mid=mid, token=b"mine")
        answer = h.coap_request(self.gw.coap_addr(), own, sock=device)
        self.assertIsNotNone(answer, "the device's request went unanswered")
        self.assertEqual(answer.token, b"mine")
        self.assertEqual(answer.code, h.code(2, 5), answer)
        self.assertGreaterEqual(self.counter("coapgw_bad_messages_total", reason="message_id_reused"), 1)
        # A true retransmission (same id, same token) is still a duplicate, answered from the cache.
        dup_before = self.counter("coapgw_duplicates_total")
        again = h.coap_request(self.gw.coap_addr(), own, sock=device)
        self.assertEqual((again.token, again.code), (b"mine", h.code(2, 5)))
        h.poll_until(lambda: self.counter("coapgw_duplicates_total") == dup_before + 1, 5.0,
                     what="the retransmission to count as a duplicate")

    def test_a_spoofed_plain_flood_never_evicts_an_idle_dtls_session(self):
        self.cfg["sessions"]["max"] = 4
        self.gw = self.start_gateway(self.cfg)
        device, session, _ = self.dtls_device()  # established, then idle in the pool
        # Forty "devices" at forged addresses: each creates a plain session in a full table.
        for i in range(40):
            spoof_udp(("127.0.0.1", 20000 + i), self.gw.coap_addr(),
                      h.encode(h.get("/.well-known/core", mtype=h.NON, mid=i, token=b"f%d" % i)))
        h.poll_until(lambda: self.counter("coapgw_sessions_closed_total", proto="udp", reason="evicted") >= 30,
                     10.0, what="the flood to evict plain sessions")
        self.assertEqual(self.counter("coapgw_sessions_closed_total", proto="dtls"), 0)
        self.assertEqual(device.request(h.GET, "/.well-known/core"), h.code(2, 5))
        self.assertEqual([s["id"] for s in self.sessions("dtls")], [session["id"]])
        self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), 1)


class SpoofedPlainBlockwise(SpoofTestCase):
    """Block-wise state is bounded per worker; plain sources (addresses anyone can forge) and DTLS
    sessions have separate pools, so filling the plain one refuses no authenticated upload."""

    def test_plain_sources_filling_block1_slots_leave_dtls_uploads_alone(self):
        sink = os.path.join(self.tmp, "telemetry.jsonl")
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}",
                            threads=1, routes=[{"prefix": "/telemetry", "upstream": f"file:{sink}"}])
        cfg["coap"]["max_reassemblies"] = 4
        self.gw = self.start_gateway(cfg)
        block1_first = bytes([0x0A])  # NUM 0, M=1, SZX 2 (64 bytes)
        for i in range(12):  # uploads that start and never finish, from forged sources
            msg = h.Message(h.CON, h.code(0, h.PUT), 100 + i, b"b%d" % i,
                            h.path_options("/telemetry/x") + [(27, block1_first)], b"x" * 64)
            spoof_udp(("127.0.0.1", 21000 + i), self.gw.coap_addr(), h.encode(msg))
        h.poll_until(lambda: self.counter("coapgw_bad_messages_total", reason="reassemblies_full") >= 8, 10.0,
                     what="the plain uploads beyond the bound to be refused")
        body = "".join(chr(0x61 + i % 26) for i in range(1000))
        path = os.path.join(self.tmp, "body.txt")
        with open(path, "w") as f:
            f.write(body)
        host, port = self.gw.coaps_addr()
        rc, out, err = h.coap_client(["-u", h.DEMO_IDENTITY, "-k", h.DEMO_KEY, "-m", "put", "-b", "64", "-f", path,
                                      f"coaps://{host}:{port}/telemetry/dtls"], flavour="openssl")
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), out + err)

        def uploaded():
            try:
                with open(sink) as f:
                    return next((json.loads(l) for l in f if '"/telemetry/dtls"' in l), None)
            except FileNotFoundError:
                return None
        line = h.poll_until(uploaded, 5.0, what="the DTLS upload in the sink")
        self.assertEqual(line["payload"], body)


class HandshakeBackoff(SpoofTestCase):
    """Point 8: an address whose handshakes keep failing is refused for a while; others (another
    port of the same host included: a NAT neighbour) are not. One host cannot hold every slot."""

    def config(self):
        return h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}",
                             threads=1)

    def test_failing_address_is_backed_off_others_are_served(self):
        cfg = self.config()
        cfg["dtls"]["handshake_backoff"] = {"after": 2, "initial": "60s", "max": "120s"}
        self.gw = self.start_gateway(cfg)
        host, port = self.gw.coaps_addr()
        failing = ["-bind", f"127.0.0.3:{h.free_udp_port('127.0.0.3')}"]
        for attempt in range(2):  # two wrong keys from one address: each handshake fails
            bad = h.SClient(host, port, h.DEMO_IDENTITY, "not-the-key", extra=failing)
            try:
                h.poll_until(lambda: self.counter("coapgw_dtls_handshakes_total", result="failed") >= attempt + 1,
                             15.0, what=f"failed handshake {attempt + 1}")
            finally:
                bad.kill()
        # The third try from that address is refused before any handshake work, and counted.
        third = h.SClient(host, port, h.DEMO_IDENTITY, h.DEMO_KEY, extra=failing)
        try:
            h.poll_until(lambda: self.counter("coapgw_dtls_handshakes_total", result="backoff") >= 1, 15.0,
                         what="the third handshake to be backed off")
            self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), 0)
            # Meanwhile another port of the same host, and another host, are served at once.
            for bind in ("127.0.0.3:0", "127.0.0.2:0"):
                good = h.SClient(host, port, h.DEMO_IDENTITY, h.DEMO_KEY, extra=["-bind", bind])
                try:
                    self.assertTrue(good.wait_handshake(), good.out.text())
                finally:
                    good.kill()
            self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), 2)
            self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="failed"), 2)
        finally:
            third.kill()

    def stall_a_handshake(self, source_ip):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source_ip, 0))
        s.connect(self.gw.coaps_addr())
        random = os.urandom(32)
        s.send(h.dtls_client_hello(seq=0, random=random))
        s.settimeout(3.0)
        cookie = h.hello_verify_cookie(s.recv(4096))
        self.assertIsNotNone(cookie)
        s.send(h.dtls_client_hello(seq=1, cookie=cookie, random=random, message_seq=1))
        return s

    def test_one_host_cannot_hold_every_handshake_slot(self):
        cfg = self.config()
        cfg["dtls"]["max_handshakes"] = 10
        cfg["dtls"]["max_handshakes_per_ip"] = 3
        self.gw = self.start_gateway(cfg)
        stalled = []
        try:
            for _ in range(8):  # half-open handshakes from one host: only 3 get a slot
                stalled.append(self.stall_a_handshake("127.0.0.5"))
            h.poll_until(lambda: self.counter("coapgw_bad_messages_total", reason="handshakes_per_ip") >= 5, 10.0,
                         what="the host's handshakes beyond its bound to be refused")
            good = h.SClient(*self.gw.coaps_addr(), h.DEMO_IDENTITY, h.DEMO_KEY, extra=["-bind", "127.0.0.6:0"])
            try:
                self.assertTrue(good.wait_handshake(), good.out.text())
            finally:
                good.kill()
            self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="ok"), 1)
        finally:
            for s in stalled:
                s.close()


if __name__ == "__main__":
    import unittest
    unittest.main()
