"""Block-wise answers are whole and consistent (issue 11, point 5).

The real coapgwd in front of two CoAP upstreams: libcoap's coap-server-notls (a
dynamic resource PUT to it holds a 2,500-byte body, served with Block2 in
1,024-byte blocks and an ETag) and BlockUpstream below, a raw-CoAP server in a
thread that serves Block2 in a block size of its choosing, asks for smaller
Block1 blocks, records every request it gets and can change its representation
between two requests. Devices are libcoap's coap-client-notls (with and without
-b) and raw datagrams through the harness codec.
"""

import hashlib
import os
import socket
import subprocess
import threading
import unittest

import harness as h

OPT_ETAG, OPT_BLOCK2, OPT_BLOCK1, OPT_SIZE2, OPT_SIZE1 = 4, 23, 27, 28, 60
OPT_REQUEST_TAG = 292
BODY_LEN = 2500


def body_v(version, n=BODY_LEN):
    """n bytes of printable text that differ between versions at every block."""
    return bytes((i * 7 + 3 * version) % 26 + 97 for i in range(n))


def block_value(num, more, szx):
    v = (num << 4) | (8 if more else 0) | szx
    if v == 0:
        return b""
    n = 1 if v <= 0xFF else 2 if v <= 0xFFFF else 3
    return v.to_bytes(n, "big")


def parse_block(value):
    v = int.from_bytes(value, "big") if value else 0
    return v >> 4, bool(v & 8), v & 7


def uint_value(v):
    if v == 0:
        return b""
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


class BlockUpstream:
    """A CoAP server on a loopback UDP port. GET /big serves `body` with Block2 in blocks of
    16 << szx2 (or smaller when asked), ETag = first 4 bytes of sha256(body). PUT/POST /up takes
    Block1 and answers 2.31 asking for 16 << want_szx1 blocks, then 2.04 with the whole body kept
    in `uploads`. POST /report answers a 2,500-byte body in one datagram (no Block2)."""

    def __init__(self, szx2=6, want_szx1=4):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.szx2 = szx2
        self.want_szx1 = want_szx1
        self.body = body_v(1)
        self.szx2_later = None    # block size for every block after block 0 (a renegotiation)
        self.next_body = None     # becomes the body once block 0 has been served (changed mid-fetch)
        self.lock = threading.Lock()
        self.requests = []        # (code, path, options) of every request
        self.uploads = []         # whole Block1 bodies
        self.block1_sizes = []    # payload size of every Block1 block received
        self._partial = bytearray()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def set_body(self, body):
        with self.lock:
            self.body = body

    def etag(self):
        with self.lock:
            return hashlib.sha256(self.body).digest()[:4]

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(timeout=5)

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                msg = h.decode(data)
            except h.DecodeError:
                continue
            if msg.type not in (h.CON, h.NON) or msg.code == 0 or msg.code >= 32:
                continue
            with self.lock:
                self.requests.append((msg.code, msg.uri_path(), list(msg.options)))
                reply = self._answer(msg)
            reply.type = h.ACK if msg.type == h.CON else h.NON
            reply.mid = msg.mid if msg.type == h.CON else h.next_mid()
            reply.token = msg.token
            try:
                self.sock.sendto(h.encode(reply), peer)
            except OSError:
                return

    def _answer(self, msg):
        path = msg.uri_path()
        if path == "/big" and msg.code == h.code(0, h.GET):
            b2 = msg.option(OPT_BLOCK2)
            szx = self.szx2_later if b2 and self.szx2_later is not None else self.szx2
            num = 0
            if b2:
                num, _, asked = parse_block(b2[0])
                if asked < szx:
                    szx = asked  # a smaller size asked for: served in it
                else:
                    num <<= asked - szx  # the same offset in our smaller blocks
            size = 16 << szx
            off = num * size
            if off >= len(self.body):
                return h.Message(code=h.code(4, 2))
            chunk = self.body[off:off + size]
            more = off + size < len(self.body)
            opts = [(OPT_ETAG, hashlib.sha256(self.body).digest()[:4]),
                    (OPT_BLOCK2, block_value(num, more, szx)),
                    (OPT_SIZE2, uint_value(len(self.body)))]
            if num == 0 and self.next_body is not None:
                self.body, self.next_body = self.next_body, None
            return h.Message(code=h.code(2, 5), options=opts, payload=chunk)
        if path == "/plain" and msg.code == h.code(0, h.GET):
            return h.Message(code=h.code(2, 5), payload=self.body)  # whole, no ETag
        if path == "/up" and msg.code in (h.code(0, h.PUT), h.code(0, h.POST)):
            b1 = msg.option(OPT_BLOCK1)
            if not b1:
                self.uploads.append(msg.payload)
                return h.Message(code=h.code(2, 4))
            num, more, szx = parse_block(b1[0])
            if num == 0:
                self._partial = bytearray()
            self.block1_sizes.append(len(msg.payload))
            if num * (16 << szx) != len(self._partial):
                return h.Message(code=h.code(4, 8))
            self._partial += msg.payload
            if more:
                want = min(szx, self.want_szx1)
                return h.Message(code=h.code(2, 31), options=[(OPT_BLOCK1, block_value(num, True, want))])
            self.uploads.append(bytes(self._partial))
            return h.Message(code=h.code(2, 4), options=[(OPT_BLOCK1, block_value(num, False, szx))])
        if path == "/report":
            return h.Message(code=h.code(2, 4), payload=body_v(7))
        return h.Message(code=h.code(4, 4))


class LibcoapServer:
    """coap-server-notls with dynamic resources; `put` stores a body at a path on it."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = h.free_udp_port()
        self.proc = subprocess.Popen(["coap-server-notls", "-A", "127.0.0.1", "-p", str(self.port),
                                      "-d", "20", "-v", "0"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        h.poll_until(lambda: h.coap_request(("127.0.0.1", self.port), h.get("time"), timeout=0.3),
                     10, what="coap-server-notls answering")

    def uri(self, path):
        return f"coap://127.0.0.1:{self.port}{path}"

    def put(self, path, data):
        f = os.path.join(self.workdir, "put-" + path.strip("/").replace("/", "_"))
        with open(f, "wb") as out:
            out.write(data)
        return h.coap_client(["-m", "put", "-f", f, self.uri(path)], wait_s=10)

    def get(self, path):
        f = os.path.join(self.workdir, "get-" + path.strip("/").replace("/", "_"))
        if os.path.exists(f):
            os.unlink(f)
        rc, out, err = h.coap_client(["-m", "get", "-o", f, self.uri(path)], wait_s=10)
        if not os.path.exists(f):
            return None
        with open(f, "rb") as got:
            return got.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class BlockwiseCase(h.GatewayTestCase):
    threads = 2
    coap_extra = {}

    def setUp(self):
        super().setUp()
        self.libcoap = LibcoapServer(self.tmp)
        self.addCleanup(self.libcoap.stop)
        self.py = BlockUpstream()
        self.addCleanup(self.py.stop)
        routes = [
            {"prefix": "/legacy", "upstream": f"coap://127.0.0.1:{self.libcoap.port}",
             "strip_prefix": True, "timeout": "10s"},
            {"prefix": "/py", "upstream": f"coap://127.0.0.1:{self.py.port}",
             "strip_prefix": True, "timeout": "10s"},
        ]
        cfg = h.base_config(admin=f"127.0.0.1:{h.free_tcp_port()}", routes=routes, threads=self.threads)
        cfg["coap"].update(self.coap_extra)
        self.gw = self.start_gateway(cfg)

    def uri(self, path):
        host, port = self.gw.coap_addr()
        return f"coap://{host}:{port}{path}"

    def fetch(self, path, extra=()):
        """coap-client-notls GET through the gateway: the bytes written to -o (None if none)."""
        out_path = os.path.join(self.tmp, "out-" + os.urandom(4).hex())
        rc, out, err = h.coap_client(["-m", "get"] + list(extra) + ["-o", out_path, self.uri(path)],
                                     wait_s=15)
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), out + err)
        if not os.path.exists(out_path):
            return None
        with open(out_path, "rb") as f:
            return f.read()

    def put(self, path, data, extra=()):
        f = os.path.join(self.tmp, "up-" + os.urandom(4).hex())
        with open(f, "wb") as out:
            out.write(data)
        return h.coap_client(["-m", "put"] + list(extra) + ["-f", f, self.uri(path)], wait_s=15)


    def raw_block(self, sock, path, num, szx, code=h.GET, payload=b"", query=None):
        opts = h.path_options(path) + [(OPT_BLOCK2, block_value(num, False, szx))]
        if query:
            opts.append((h.OPT_URI_QUERY, query.encode()))
        msg = h.Message(h.CON, h.code(0, code), h.next_mid(), h.new_token(), opts, payload)
        reply = h.coap_request(self.gw.coap_addr(), msg, timeout=10, sock=sock)
        self.assertIsNotNone(reply, f"no answer to block {num} of {path}")
        return reply


class LibcoapBlock2(BlockwiseCase):
    """A 2,500-byte resource of libcoap's coap-server behind a coap:// route."""

    def setUp(self):
        super().setUp()
        self.data = body_v(1)
        rc, out, err = self.libcoap.put("/big", self.data)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.libcoap.get("/big"), self.data, "direct fetch from coap-server differs")

    def test_default_block_size_gets_all_2500_bytes(self):
        got = self.fetch("/legacy/big")
        self.assertIsNotNone(got)
        self.assertEqual(len(got), BODY_LEN)
        self.assertEqual(got, self.data)

    def test_64_byte_blocks_get_all_2500_bytes(self):
        self.assertEqual(self.fetch("/legacy/big", ["-b", "64"]), self.data)

    def test_512_byte_blocks_get_all_2500_bytes(self):
        self.assertEqual(self.fetch("/legacy/big", ["-b", "512"]), self.data)

    def test_every_block_relays_the_upstreams_etag(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        first = self.raw_block(s, "/legacy/big", 0, 4)
        self.assertEqual(first.code, h.code(2, 5), h.code_str(first.code))
        etags = first.option(OPT_ETAG)
        self.assertEqual(len(etags), 1, f"no single ETag on block 0: {first.options}")
        got = first.payload
        num = 1
        while True:
            r = self.raw_block(s, "/legacy/big", num, 4)
            self.assertEqual(r.code, h.code(2, 5), h.code_str(r.code))
            self.assertEqual(r.option(OPT_ETAG), etags, f"block {num}")
            got += r.payload
            if not parse_block(r.option(OPT_BLOCK2)[0])[1]:
                break
            num += 1
        self.assertEqual(got, self.data)

    def test_block1_upload_reaches_coap_server_whole(self):
        data = body_v(3)
        for extra in (["-b", "64"], []):
            with self.subTest(extra=extra):
                rc, out, err = self.put("/legacy/upload", data, extra)
                self.assertEqual(rc, 0, out + err)
                self.assertIsNone(h.response_error(out, err), out + err)
                self.assertEqual(self.libcoap.get("/upload"), data)
                data = body_v(4)


class PythonUpstreamBlockwise(BlockwiseCase):
    def test_smaller_upstream_block2_is_reassembled(self):
        self.py.szx2 = 4  # 256-byte blocks upstream, 1,024 towards the device
        self.assertEqual(self.fetch("/py/big"), self.py.body)
        self.assertEqual(self.fetch("/py/big", ["-b", "64"]), self.py.body)

    def test_upstream_renegotiating_a_smaller_block2_is_followed(self):
        self.py.szx2_later = 3  # block 0 in 1,024 bytes, the rest in 128
        self.assertEqual(self.fetch("/py/big"), self.py.body)
        sizes = [parse_block(dict(o).get(OPT_BLOCK2, b""))[2] for c, p, o in self.py.requests if p == "/big"]
        self.assertIn(3, sizes[1:], "the gateway did not ask in the upstream's smaller size")

    def test_representation_changing_during_the_upstream_fetch_is_fetched_again(self):
        v2 = body_v(2)
        self.py.next_body = v2  # after block 0 of v1 the upstream serves v2
        self.assertEqual(self.fetch("/py/big"), v2)

    def test_answer_without_upstream_etag_gets_one_per_representation(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        first = self.raw_block(s, "/py/plain", 0, 6)
        etag = first.option(OPT_ETAG)
        self.assertEqual(len(etag), 1, first.options)
        self.assertEqual(self.raw_block(s, "/py/plain", 1, 6).option(OPT_ETAG), etag)
        self.py.set_body(body_v(2))
        again = self.raw_block(s, "/py/plain", 0, 6)
        self.assertEqual(again.payload, body_v(2)[:1024])
        self.assertEqual(len(again.option(OPT_ETAG)), 1)
        self.assertNotEqual(again.option(OPT_ETAG), etag)

    def test_block1_upload_honours_the_upstreams_smaller_block_size(self):
        data = body_v(5)
        rc, out, err = self.put("/py/up", data, ["-b", "1024"])
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), out + err)
        self.assertEqual(self.py.uploads, [data])
        # the first block in our size, the rest in the 256 bytes the upstream asked for
        self.assertTrue(all(n <= 256 for n in self.py.block1_sizes[1:]), self.py.block1_sizes)
        self.assertEqual(sum(self.py.block1_sizes), BODY_LEN)

    def test_changed_representation_is_never_mixed(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        v1, v2 = body_v(1), body_v(2)
        self.assertEqual(len(v1), len(v2))
        first = self.raw_block(s, "/py/big", 0, 6)
        self.assertEqual(first.payload, v1[:1024])
        self.assertEqual(first.option(OPT_ETAG), [self.py.etag()])
        # The resource changes; the device starts a new transfer.
        self.py.set_body(v2)
        again = self.raw_block(s, "/py/big", 0, 6)
        self.assertEqual(again.payload, v2[:1024])
        self.assertEqual(again.option(OPT_ETAG), [self.py.etag()])
        second = self.raw_block(s, "/py/big", 1, 6)
        self.assertEqual(second.option(OPT_ETAG), [self.py.etag()])
        self.assertEqual(second.payload, v2[1024:2048], "block 1 came from the old representation")

    def test_answer_above_max_body_size_is_5_02_and_counted(self):
        self.py.set_body(body_v(1, 70000))  # above the default coap.max_body_size of 65536
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        r = self.raw_block(s, "/py/big", 0, 6)
        self.assertEqual(r.code, h.code(5, 2), h.code_str(r.code))
        self.assertGreaterEqual(self.counter("coapgw_upstream_requests_total", route="/py",
                                             outcome="bad_response"), 1)

    def test_post_answer_is_served_whole_from_the_cache(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        got = b""
        num = 0
        while True:
            r = self.raw_block(s, "/py/report", num, 6, code=h.POST, payload=b"q" if num == 0 else b"")
            self.assertEqual(r.code, h.code(2, 4), h.code_str(r.code))
            got += r.payload
            if not parse_block(r.option(OPT_BLOCK2)[0])[1]:
                break
            num += 1
        self.assertEqual(got, body_v(7))
        posts = [r for r in self.py.requests if r[1] == "/report"]
        self.assertEqual(len(posts), 1, "the POST was repeated upstream")


class PerSessionBounds(BlockwiseCase):
    """One worker, so every source shares its block-wise tables; small bounds."""

    threads = 1
    coap_extra = {"max_reassemblies": 8, "max_reassemblies_per_session": 2,
                  "max_block_cache_bytes": 16384, "max_block_answers_per_session": 2}

    def test_one_source_cannot_take_every_reassembly(self):
        hog = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(hog.close)
        refused = 0
        for i in range(12):
            opts = h.path_options("/py/up") + [(OPT_BLOCK1, block_value(0, True, 2)),
                                               (OPT_REQUEST_TAG, bytes([i]))]
            msg = h.Message(h.CON, h.code(0, h.PUT), h.next_mid(), h.new_token(), opts, b"x" * 64)
            r = h.coap_request(self.gw.coap_addr(), msg, timeout=5, sock=hog)
            self.assertIsNotNone(r)
            if r.code == h.code(5, 3):
                refused += 1
            else:
                self.assertEqual(r.code, h.code(2, 31), h.code_str(r.code))
        self.assertEqual(refused, 10, "the per-session bound did not hold at 2")
        self.assertGreaterEqual(self.counter("coapgw_bad_messages_total",
                                             reason="reassemblies_session_full"), 10)
        # Another device still completes a block-wise upload.
        data = body_v(6)
        rc, out, err = self.put("/py/up", data, ["-b", "64"])
        self.assertEqual(rc, 0, out + err)
        self.assertIsNone(h.response_error(out, err), out + err)
        self.assertIn(data, self.py.uploads)

    def test_follow_up_after_the_kept_answer_is_gone_carries_the_new_etag(self):
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        first = self.raw_block(s, "/py/big", 0, 6)
        self.assertEqual(first.option(OPT_ETAG), [self.py.etag()])
        for i in range(2):  # the session's share (2) pushes the first answer out
            self.raw_block(s, "/py/big", 0, 6, query=f"other={i}")
        self.py.set_body(body_v(2))
        second = self.raw_block(s, "/py/big", 1, 6)
        # Fetched again: the block comes from the new representation and says so (RFC 7959 §2.4),
        # so the client restarts instead of mixing.
        self.assertEqual(second.payload, body_v(2)[1024:2048])
        self.assertEqual(second.option(OPT_ETAG), [self.py.etag()])
        self.assertNotEqual(second.option(OPT_ETAG), first.option(OPT_ETAG))

    def test_one_source_cannot_take_the_whole_answer_cache(self):
        hog = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(hog.close)
        for i in range(10):
            r = self.raw_block(hog, "/py/report", 0, 6, code=h.POST, payload=b"q", query=f"i={i}")
            self.assertEqual(r.code, h.code(2, 4), h.code_str(r.code))
        self.assertGreaterEqual(self.counter("coapgw_bad_messages_total",
                                             reason="block_cache_session_full"), 8)
        # Another source's POST answer (which cannot be fetched again) still comes back whole.
        s = h.udp_socket(self.gw.coap_addr())
        self.addCleanup(s.close)
        got = b""
        num = 0
        while True:
            r = self.raw_block(s, "/py/report", num, 6, code=h.POST, payload=b"q" if num == 0 else b"")
            self.assertEqual(r.code, h.code(2, 4), h.code_str(r.code))
            got += r.payload
            if not parse_block(r.option(OPT_BLOCK2)[0])[1]:
                break
            num += 1
        self.assertEqual(got, body_v(7))


if __name__ == "__main__":
    unittest.main()
