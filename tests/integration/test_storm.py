"""A handshake storm (issue 17): beyond dtls.max_handshakes a device that passed the cookie exchange
is answered with a fresh HelloVerifyRequest instead of silence, so it retries at once (and again a
second later) instead of backing off for tens of seconds; once a slot is free it gets its handshake."""
import os

import harness as h
from test_dtls import DtlsTestCase


def is_handshake(datagram, msg_type):
    # DTLS record header (13 bytes, content type 22 = handshake), then the handshake message type.
    return len(datagram) > 13 and datagram[0] == 22 and datagram[13] == msg_type


SERVER_HELLO, HELLO_VERIFY_REQUEST = 2, 3


class BusyHandshakes(DtlsTestCase):
    def hello_with_cookie(self, sock, random):
        sock.send(h.dtls_client_hello(seq=0, random=random))
        cookie = h.hello_verify_cookie(sock.recv(4096))
        self.assertIsNotNone(cookie)
        sock.send(h.dtls_client_hello(seq=1, cookie=cookie, random=random, message_seq=1))
        return cookie

    def test_device_beyond_the_bound_gets_a_hello_verify_request(self):
        cfg = self.dtls_config(threads=1, admin=f"127.0.0.1:{h.free_tcp_port()}")
        cfg["dtls"]["max_handshakes"] = 1
        cfg["dtls"]["handshake_timeout"] = "2s"
        self.gw = self.start_gateway(cfg)
        addr = self.gw.coaps_addr()
        stalled = h.udp_socket(addr)
        device = h.udp_socket(addr)
        try:
            stalled.settimeout(3.0)
            self.hello_with_cookie(stalled, os.urandom(32))
            self.assertTrue(is_handshake(stalled.recv(4096), SERVER_HELLO), "the first handshake got no slot")

            hvr_before = self.counter("coapgw_dtls_hello_verify_requests_total")
            device.settimeout(3.0)
            random = os.urandom(32)
            cookie = self.hello_with_cookie(device, random)
            answer = device.recv(4096)
            self.assertTrue(is_handshake(answer, HELLO_VERIFY_REQUEST), answer[:16].hex())
            self.assertEqual(h.hello_verify_cookie(answer), cookie, "the same device, the same cookie")
            self.assertEqual(self.counter("coapgw_dtls_handshakes_total", result="rejected"), 1)
            self.assertEqual(self.counter("coapgw_dtls_hello_verify_requests_total"), hvr_before + 2)

            # The stalled handshake times out and frees the slot: the device's next ClientHello
            # (as its retransmission timer sends it) starts its handshake.
            h.poll_until(lambda: self.counter("coapgw_dtls_handshakes_total", result="timeout") >= 1, 15.0,
                         what="the stalled handshake to time out")
            device.send(h.dtls_client_hello(seq=2, cookie=cookie, random=random, message_seq=1))
            answer = device.recv(4096)
            self.assertTrue(is_handshake(answer, SERVER_HELLO), answer[:16].hex())
        finally:
            stalled.close()
            device.close()


if __name__ == "__main__":
    import unittest
    unittest.main()
