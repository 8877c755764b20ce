"""Operations (issue 6): systemd notify, SIGHUP reload, graceful shutdown.

The real coapgwd on loopback with real DTLS peers: `openssl s_client -dtls1_2
-psk` holds one session open through a pipe and carries raw CoAP datagrams
(each write on its stdin is one DTLS record, hence one CoAP message; its
stdout is read as bytes so the binary answers can be found in it). The
systemd readiness protocol is checked by handing coapgwd a NOTIFY_SOCKET that
the test itself bound.
"""

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families

import harness as h

SENSOR_IDENTITY, SENSOR_KEY = "sensor-0001", "sensor-0001-secret"
NEW_IDENTITY, NEW_KEY = "added-on-reload", "added-on-reload-secret"

CREATED, CHANGED = h.code(2, 1), h.code(2, 4)


# ---------------------------------------------------------------------------
# Helpers


class DtlsDevice:
    """A device holding one DTLS session: openssl s_client with stdin kept open.

    -nocommands keeps s_client from treating a payload that starts with 'Q',
    'R' or 'k' as a command; stdout is collected raw (not by line) because the
    CoAP answers in it are binary."""

    def __init__(self, host, port, identity, key):
        self.identity = identity
        argv = ["openssl", "s_client", "-dtls1_2", "-nocommands",
                "-psk", key.encode().hex(), "-psk_identity", identity,
                "-connect", f"{host}:{port}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._buf += chunk

    def output(self):
        with self._lock:
            return bytes(self._buf)

    def text(self):
        return self.output().decode(errors="replace")

    def wait_handshake(self, deadline_s=15.0):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            text = self.text()
            if "Cipher is" in text and "Cipher is (NONE)" not in text:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)  # poll interval
        return False

    def refused(self):
        """The server ended the handshake with an alert (s_client prints the
        summary block even then, so "Cipher is" alone proves nothing)."""
        return re.search(rb"alert", self.output(), re.I) is not None or self.proc.poll() is not None

    def send(self, message):
        self.proc.stdin.write(h.encode(message))
        self.proc.stdin.flush()

    def request(self, method, path, payload=b"", deadline_s=10.0):
        """Sends a CON request through the session; returns the response code
        (int) or None when no answer arrived in time."""
        msg = h.Message(h.CON, h.code(0, method), h.next_mid(), h.new_token(4),
                        h.path_options(path), payload)
        start = len(self.output())
        self.send(msg)
        # A piggybacked ACK (type 2) carrying our mid and token, or a separate
        # CON/NON response (types 0/1) carrying our token.
        tkl = len(msg.token)
        piggy = re.compile(re.escape(bytes([0x60 | tkl])) + b"(.)" + re.escape(
            struct.pack("!H", msg.mid) + msg.token), re.S)
        separate = re.compile(b"[" + re.escape(bytes([0x40 | tkl, 0x50 | tkl])) + b"]"
                              + b"(.)..", re.S)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            out = self.output()[start:]
            m = piggy.search(out)
            if m and m.group(1) != b"\x00":
                return m.group(1)[0]
            for m in separate.finditer(out):
                if out[m.end():m.end() + tkl] == msg.token and m.group(1) != b"\x00":
                    return m.group(1)[0]
            if self.proc.poll() is not None:
                return None
            time.sleep(0.02)  # poll interval
        return None

    def saw_close_notify(self):
        # s_client prints "closed" when SSL_read reports SSL_ERROR_ZERO_RETURN,
        # i.e. the peer sent close_notify (a plain EOF would be "read:errno=0").
        # It follows the last answer's bytes directly, so no line start is required.
        return re.search(rb"closed\r?\n", self.output()) is not None

    def close(self, deadline_s=5.0):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(timeout=2)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(timeout=2)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


class SlowBackend:
    """An HTTP upstream that holds every request until released (or 60 s)."""

    def __init__(self):
        self.received = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.set()
                outer.release.wait(60)
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def environment(**values):
    """Sets (str) or removes (None) environment variables for a Popen that
    happens inside the block; the harness starts coapgwd with os.environ."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class OpsTestCase(h.GatewayTestCase):
    def ops_config(self, keys_file_entries=None, routes=None, **kw):
        """coaps + admin + file sink; inline demo key and a keys_file."""
        self.sink = os.path.join(self.tmp, "telemetry.jsonl")
        self.keys_file = os.path.join(self.tmp, "psk-keys.yaml")
        if keys_file_entries is None:
            keys_file_entries = [{"identity": SENSOR_IDENTITY, "key": SENSOR_KEY}]
        self.write_keys(keys_file_entries)
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"],
                            admin=f"127.0.0.1:{h.free_tcp_port()}",
                            routes=routes or [{"prefix": "/telemetry", "upstream": f"file:{self.sink}"}],
                            **kw)
        cfg["dtls"]["psk"]["keys_file"] = self.keys_file
        return cfg

    def write_keys(self, entries):
        text = h.to_yaml(entries) + "\n" if entries else "[]\n"
        tmp = self.keys_file + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # keys files others can read are refused
        os.replace(tmp, self.keys_file)  # an editor's atomic save

    # -- metrics and admin
    def sample(self, gw, name, **labels):
        status, body = h.http_get(gw.admin_url("/metrics"))
        self.assertEqual(status, 200, body[:300])
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    def reloads(self, gw, result):
        return self.sample(gw, "coapgw_config_reloads_total", result=result)

    def sessions(self, gw):
        status, body = h.http_get(gw.admin_url("/v1/sessions?limit=1000"))
        self.assertEqual(status, 200, body[:300])
        doc = json.loads(body)
        return doc["sessions"] if isinstance(doc, dict) else doc

    def dtls_sessions_of(self, gw, identity):
        return [s for s in self.sessions(gw) if s.get("proto") == "dtls" and s.get("identity") == identity]

    def reload(self, gw, config=None, result="ok"):
        """Rewrites the config (when given), sends SIGHUP and waits until the
        reload counter with `result` went up by one."""
        before_ok, before_failed = self.reloads(gw, "ok"), self.reloads(gw, "failed")
        if config is not None:
            gw.config = config
            gw.write_config()
        gw.send_signal(signal.SIGHUP)
        want = {"ok": (before_ok + 1, before_failed), "failed": (before_ok, before_failed + 1)}[result]
        h.poll_until(lambda: (self.reloads(gw, "ok"), self.reloads(gw, "failed")) == want, 10.0,
                     what=f"coapgw_config_reloads_total (ok, failed) == {want}")
        self.assertTrue(gw.alive(), "coapgwd exited during reload\n" + gw.logs())

    # -- devices
    def device(self, gw, identity=h.DEMO_IDENTITY, key=h.DEMO_KEY, expect_handshake=True):
        host, port = gw.coaps_addr()
        d = DtlsDevice(host, port, identity, key)
        self.addCleanup(d.kill)
        if expect_handshake:
            self.assertTrue(d.wait_handshake() and not d.refused(),
                            f"{identity}: no DTLS handshake\n{d.text()}")
        return d

    def sink_lines(self, path=None):
        try:
            with open(path or self.sink) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def post(self, device, payload, path="/telemetry/ops"):
        """POST through the device's session; asserts 2.01 and returns the
        sink line (which names the session that carried it)."""
        code = device.request(h.POST, path, payload.encode())
        self.assertEqual(code, CREATED, f"{device.identity}: POST {path} answered "
                         f"{h.code_str(code) if code is not None else 'nothing'}\n{device.text()[-2000:]}")
        lines = [l for l in self.sink_lines() if l.get("payload") == payload]
        self.assertEqual(len(lines), 1, f"sink lines with payload {payload!r}: {lines}")
        self.assertEqual(lines[0].get("identity"), device.identity, lines[0])
        return lines[0]


# ---------------------------------------------------------------------------
# systemd notify protocol


class SystemdNotify(OpsTestCase):
    def notify_socket(self):
        # sun_path is at most 107 bytes: a short directory of our own.
        d = tempfile.mkdtemp(prefix="cgw-n-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "n")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        self.addCleanup(s.close)
        self.messages = []
        return s, path

    def next_state(self, sock, wanted, deadline_s=10.0):
        """Reads datagrams until one carries the assignment `wanted`; returns
        its fields as a dict. Every datagram is kept in self.messages."""
        deadline = time.monotonic() + deadline_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no {wanted!r} from coapgwd within {deadline_s}s; got {self.messages[-20:]}")
            sock.settimeout(left)
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
            key, value = wanted.split("=", 1)
            if fields.get(key) == value:
                return fields

    def test_ready_reloading_stopping(self):
        sock, path = self.notify_socket()
        cfg = self.ops_config()
        with environment(NOTIFY_SOCKET=path, WATCHDOG_USEC=None, WATCHDOG_PID=None):
            gw = self.start_gateway(cfg, wait=False)
        self.next_state(sock, "READY=1", h.START_DEADLINE_S)
        # READY=1 means every listener is bound: they answer without any further wait.
        self.assertIsNotNone(h.coap_request(gw.coap_addr(), h.get(".well-known/core"), timeout=5.0),
                             "CoAP listener silent after READY=1")
        self.assertEqual(h.http_get(gw.admin_url("/readyz"))[0], 200, "/readyz not 200 after READY=1")
        dev = self.device(gw)
        self.post(dev, "after-ready")

        for result, config in (("ok", cfg), ("failed", dict(cfg, bogus_key=1))):
            before = time.clock_gettime(time.CLOCK_MONOTONIC)
            self.reload(gw, config, result=result)
            reloading = self.next_state(sock, "RELOADING=1")
            self.assertIn("MONOTONIC_USEC", reloading, reloading)
            usec = int(reloading["MONOTONIC_USEC"])
            self.assertGreaterEqual(usec, int(before * 1e6) - 1_000_000,
                                    "MONOTONIC_USEC is not CLOCK_MONOTONIC")
            self.assertLessEqual(usec, int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6) + 1_000_000)
            self.next_state(sock, "READY=1")

        gw.send_signal(signal.SIGTERM)
        self.next_state(sock, "STOPPING=1", h.STOP_DEADLINE_S)
        self.assertEqual(gw.stop(), 0)
        self.assertFalse(any("WATCHDOG" in m for m in self.messages),
                         f"WATCHDOG=1 without WATCHDOG_USEC: {self.messages}")

    def test_watchdog_pings(self):
        sock, path = self.notify_socket()
        with environment(NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000", WATCHDOG_PID=None):
            gw = self.start_gateway(self.ops_config(), wait=False)
        self.next_state(sock, "READY=1", h.START_DEADLINE_S)
        for _ in range(3):
            self.next_state(sock, "WATCHDOG=1", 5.0)
        gw.wait_ready()
        self.assertEqual(gw.stop(), 0)

    def test_watchdog_for_another_pid_is_ignored(self):
        # WATCHDOG_PID names the process systemd meant; a child that inherited
        # the variables must not ping in its name.
        sock, path = self.notify_socket()
        with environment(NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000", WATCHDOG_PID="1"):
            gw = self.start_gateway(self.ops_config(), wait=False)
        self.next_state(sock, "READY=1", h.START_DEADLINE_S)
        gw.wait_ready()
        # A reload round trip takes well over one watchdog half-period (500 ms
        # polls), so pings would have shown up among these datagrams.
        self.reload(gw)
        self.next_state(sock, "READY=1")
        self.reload(gw)
        self.next_state(sock, "READY=1")
        self.assertEqual(gw.stop(), 0)
        self.assertFalse(any("WATCHDOG" in m for m in self.messages), self.messages)


# ---------------------------------------------------------------------------
# SIGHUP reload


class Reload(OpsTestCase):
    def test_session_survives_two_reloads_and_new_identity_works(self):
        cfg = self.ops_config()
        gw = self.start_gateway(cfg)
        dev = self.device(gw)
        first = self.post(dev, "before-reload")
        session_id = first["session"]
        listed = {s["id"]: s for s in self.dtls_sessions_of(gw, h.DEMO_IDENTITY)}
        self.assertIn(session_id, listed, f"sink session {session_id} not in /v1/sessions")
        created = listed[session_id].get("created_unix_ms")
        handshakes = self.sample(gw, "coapgw_dtls_handshakes_total", result="ok")

        # Reload 1: a new identity in keys_file, a second route.
        self.write_keys([{"identity": SENSOR_IDENTITY, "key": SENSOR_KEY},
                         {"identity": NEW_IDENTITY, "key": NEW_KEY}])
        self.reload(gw)
        self.assertEqual(self.post(dev, "after-reload-1")["session"], session_id,
                         "the request after reload 1 came on another session")
        # Workers apply the new store when they run the posted reload: retry the
        # handshake within a deadline instead of assuming it already happened.
        attempts = iter(range(1000))

        def new_device_works():
            d = self.device(gw, NEW_IDENTITY, NEW_KEY, expect_handshake=False)
            if d.wait_handshake(5.0) and \
                    d.request(h.POST, "/telemetry/ops", f"probe-{next(attempts)}".encode(), 5.0) == CREATED:
                return d
            d.kill()
            return None
        newdev = h.poll_until(new_device_works, 15.0, interval_s=0.2,
                              what=f"handshake of {NEW_IDENTITY} added on reload")
        self.post(newdev, "from-new-identity")

        # Reload 2: inline keys, routes and log level change too.
        cfg2 = json.loads(json.dumps(cfg))
        cfg2["dtls"]["psk"]["keys"].append({"identity": "inline-added", "key": "inline-secret"})
        cfg2["routes"].insert(0, {"prefix": "/other", "upstream": "file:" + os.path.join(self.tmp, "other.jsonl")})
        cfg2["log"]["level"] = "info"
        self.reload(gw, cfg2)
        self.assertEqual(self.post(dev, "after-reload-2")["session"], session_id,
                         "the request after reload 2 came on another session")
        listed = {s["id"]: s for s in self.dtls_sessions_of(gw, h.DEMO_IDENTITY)}
        self.assertIn(session_id, listed, f"session {session_id} gone from /v1/sessions after two reloads")
        # The listing derives wall time from the steady clock on each call: allow a few ms of jitter.
        self.assertAlmostEqual(listed[session_id].get("created_unix_ms"), created, delta=20,
                               msg="the session was re-created")
        self.assertEqual(listed[session_id].get("state"), "established")
        # Only the new identity handshook: the old device never had to.
        self.assertEqual(self.sample(gw, "coapgw_dtls_handshakes_total", result="ok"), handshakes + 1)
        self.assertFalse(dev.saw_close_notify(), "the device was sent close_notify on reload")
        # The new route is live.
        code = dev.request(h.POST, "/other/x", b"routed")
        self.assertEqual(code, CREATED, h.code_str(code) if code is not None else "no answer")
        h.poll_until(lambda: any(l.get("payload") == "routed"
                                 for l in self.sink_lines(os.path.join(self.tmp, "other.jsonl"))),
                     5.0, what="the request in the route added on reload")

    def test_invalid_reload_is_refused_counted_and_old_keys_work(self):
        cfg = self.ops_config()
        gw = self.start_gateway(cfg)
        dev = self.device(gw)
        session_id = self.post(dev, "before")["session"]

        # 1. An unknown key in the main file.
        bad = json.loads(json.dumps(cfg))
        bad["dtls"]["psk"]["keys"] = []      # would drop the demo key if it were applied
        bad["no_such_key"] = True
        self.reload(gw, bad, result="failed")
        h.poll_until(lambda: "no_such_key" in gw.logs(), 5.0, what="the refused key named in the log")
        self.assertRegex(gw.logs(), r"reload refused")
        self.assertEqual(self.post(dev, "after-bad-1")["session"], session_id)

        # 2. A keys_file that does not validate (an entry without a key).
        gw.config = cfg
        gw.write_config()
        self.write_keys([{"identity": SENSOR_IDENTITY}])
        self.reload(gw, result="failed")

        # 3. keys_file missing (moved away mid-edit), 4. the main file is not YAML.
        os.rename(self.keys_file, self.keys_file + ".moved")
        self.reload(gw, result="failed")
        os.rename(self.keys_file + ".moved", self.keys_file)
        with open(gw.config_path, "w") as f:
            f.write("threads: [\n  unbalanced: {\n")
        gw.send_signal(signal.SIGHUP)
        h.poll_until(lambda: self.reloads(gw, "failed") == 4, 10.0, what="4 failed reloads")
        self.assertTrue(gw.alive(), gw.logs())
        self.assertEqual(self.reloads(gw, "ok"), 0)

        # The old keys, inline and from the file, keep working, old session and new.
        self.assertEqual(self.post(dev, "after-bad-2")["session"], session_id)
        self.post(self.device(gw, SENSOR_IDENTITY, SENSOR_KEY), "sensor-with-old-key")
        self.post(self.device(gw), "demo-new-session")
        self.assertEqual(h.http_get(gw.admin_url("/readyz"))[0], 200)

    def test_removed_key_closes_its_sessions(self):
        gw = self.start_gateway(self.ops_config())
        demo = self.device(gw)
        sensor = self.device(gw, SENSOR_IDENTITY, SENSOR_KEY)
        demo_session = self.post(demo, "demo")["session"]
        self.post(sensor, "sensor")
        self.assertEqual(len(self.dtls_sessions_of(gw, SENSOR_IDENTITY)), 1)

        self.write_keys([])
        self.reload(gw)
        h.poll_until(lambda: not self.dtls_sessions_of(gw, SENSOR_IDENTITY), 10.0,
                     what=f"{SENSOR_IDENTITY}'s session closed after its key was removed")
        h.poll_until(sensor.saw_close_notify, 10.0, what="close_notify seen by the revoked device")
        self.assertGreaterEqual(self.sample(gw, "coapgw_sessions_closed_total",
                                            proto="dtls", reason="revoked"), 1)
        # The other device is untouched and the removed key no longer handshakes.
        self.assertEqual(self.post(demo, "demo-after")["session"], demo_session)
        again = self.device(gw, SENSOR_IDENTITY, SENSOR_KEY, expect_handshake=False)
        h.poll_until(again.refused, 10.0, what=f"handshake of the removed {SENSOR_IDENTITY} refused")
        self.assertIn("unknown psk identity", again.text(), again.text()[-1500:])

    def test_log_level_changes_on_reload(self):
        cfg = self.ops_config()
        cfg["log"]["level"] = "info"
        gw = self.start_gateway(cfg)
        self.post(self.device(gw), "quiet")
        debug_line = re.compile(r"^\S+ debug ", re.M)
        self.assertIsNone(debug_line.search(gw.logs()), "debug lines at level info")

        cfg2 = json.loads(json.dumps(cfg))
        cfg2["log"]["level"] = "debug"
        self.reload(gw, cfg2)
        # A new session logs "dtls established" at debug level.
        self.post(self.device(gw, SENSOR_IDENTITY, SENSOR_KEY), "verbose")
        h.poll_until(lambda: debug_line.search(gw.logs()), 5.0, what="debug lines after reload to debug")

    def test_file_sink_reopens_after_reload(self):
        gw = self.start_gateway(self.ops_config())
        dev = self.device(gw)
        self.post(dev, "line-1")
        rotated = self.sink + ".1"
        os.rename(self.sink, rotated)  # logrotate without copytruncate
        # Until the reload the sink keeps writing to the file it has open.
        code = dev.request(h.POST, "/telemetry/ops", b"line-2")
        self.assertEqual(code, CREATED)
        self.assertFalse(os.path.exists(self.sink), "sink re-created before the reload")
        self.assertEqual([l["payload"] for l in self.sink_lines(rotated)], ["line-1", "line-2"])

        self.reload(gw)
        counter = iter(range(3, 1000))

        def new_file_written():
            n = next(counter)
            self.assertEqual(dev.request(h.POST, "/telemetry/ops", f"line-{n}".encode()), CREATED)
            return self.sink_lines()
        lines = h.poll_until(new_file_written, 10.0, interval_s=0.2, what="a new sink file after reload")
        self.assertTrue(all(l["payload"] not in ("line-1", "line-2") for l in lines), lines)
        self.assertEqual(len(self.sink_lines(rotated)) + len(lines), next(counter) - 1,
                         "a line was lost across the reopen")


# ---------------------------------------------------------------------------
# SIGTERM


class Shutdown(OpsTestCase):
    def slow_config(self, drain_timeout):
        self.backend = SlowBackend()
        self.addCleanup(self.backend.close)
        cfg = self.ops_config(routes=[
            {"prefix": "/telemetry", "upstream": "file:" + os.path.join(self.tmp, "telemetry.jsonl")},
            {"prefix": "/api", "upstream": self.backend.url, "timeout": "60s"}])
        cfg["shutdown"] = {"drain_timeout": drain_timeout}
        return cfg

    def hold_forward(self, gw):
        """A plain-CoAP request to the slow backend: a forward in flight.
        Returns (socket, token) to collect its answer with."""
        s = h.udp_socket(gw.coap_addr())
        self.addCleanup(s.close)
        token = h.new_token()
        s.send(h.encode(h.Message(h.CON, h.code(0, h.POST), h.next_mid(), token,
                                  h.path_options("/api/slow"), b"slow")))
        self.assertTrue(self.backend.received.wait(10), "the forward never reached the backend")
        return s, token

    def answer(self, sock, token, deadline_s=10.0):
        """The response code for token (piggybacked or separate), None if none came."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            msg = h.recv_message(sock, max(0.05, deadline - time.monotonic()))
            if msg is None:
                return None
            if msg.type == h.CON:  # a separate response wants its ACK
                sock.send(h.encode(h.Message(h.ACK, 0, msg.mid)))
            if msg.token == token and msg.code != 0:
                return msg.code
        return None

    def test_sigterm_close_notify_readyz_503_exit_0(self):
        gw = self.start_gateway(self.slow_config("20s"))
        dev = self.device(gw)
        self.post(dev, "before-shutdown")
        sock, token = self.hold_forward(gw)
        self.assertEqual(h.http_get(gw.admin_url("/readyz"))[0], 200)

        gw.send_signal(signal.SIGTERM)
        h.poll_until(lambda: h.http_get(gw.admin_url("/readyz"), timeout=1.0)[0] == 503,
                     5.0, interval_s=0.02, what="/readyz 503 during the drain")
        h.poll_until(dev.saw_close_notify, 10.0, what="close_notify seen by the device (s_client 'closed')")
        # No new sessions while draining.
        late = self.device(gw, SENSOR_IDENTITY, SENSOR_KEY, expect_handshake=False)
        self.assertFalse(late.wait_handshake(3.0), "a new DTLS session was accepted while draining")
        self.assertTrue(gw.alive(), "exited before the in-flight forward finished\n" + gw.logs())
        self.backend.release.set()
        # The in-flight forward finishes within drain_timeout and its answer reaches the device.
        self.assertEqual(self.answer(sock, token), CHANGED, "in-flight plain CoAP request not answered")
        self.assertEqual(gw.stop(), 0)

    def test_second_sigterm_exits_at_once(self):
        gw = self.start_gateway(self.slow_config("120s"))
        self.hold_forward(gw)
        gw.send_signal(signal.SIGTERM)
        h.poll_until(lambda: h.http_get(gw.admin_url("/readyz"), timeout=1.0)[0] == 503,
                     5.0, interval_s=0.02, what="/readyz 503 during the drain")
        self.assertTrue(gw.alive(), "the first SIGTERM did not wait for the in-flight forward")
        gw.send_signal(signal.SIGTERM)
        # The drain would last 60 s (the route timeout); the second signal cuts it short.
        rc = gw.wait_exit(deadline_s=10.0)
        self.assertEqual(rc, 0, gw.logs())
        self.assertIn("second signal", gw.logs())


class DrainDtlsInFlight(Shutdown):
    """Known daemon gap, kept failing on purpose until lib/server is fixed:
    Worker::begin_drain (lib/server/worker.cpp) sends close_notify to every
    DTLS session at once, so the answer to a request already forwarded over
    DTLS is dropped although the forward itself finishes within drain_timeout.
    The device then retries against the next instance (a duplicate POST)."""

    test_sigterm_close_notify_readyz_503_exit_0 = None
    test_second_sigterm_exits_at_once = None

    def test_in_flight_dtls_request_is_answered_before_close_notify(self):
        gw = self.start_gateway(self.slow_config("20s"))
        dev = self.device(gw)
        result = {}
        asker = threading.Thread(
            target=lambda: result.setdefault("code", dev.request(h.POST, "/api/slow", b"in-flight", 20.0)))
        asker.start()
        self.assertTrue(self.backend.received.wait(10), "the forward never reached the backend")
        gw.send_signal(signal.SIGTERM)
        h.poll_until(lambda: h.http_get(gw.admin_url("/readyz"), timeout=1.0)[0] == 503,
                     5.0, interval_s=0.02, what="/readyz 503 during the drain")
        self.backend.release.set()
        asker.join(timeout=25)
        self.assertEqual(gw.stop(), 0)
        self.assertEqual(
            result.get("code"), CHANGED,
            "DAEMON BUG (lib/server/worker.cpp Worker::begin_drain): the DTLS session got close_notify "
            "before its in-flight forward was answered, so the device never received the answer. "
            "Fix: close_notify a DTLS session once it has no exchange in flight (or at the drain "
            f"deadline). close_notify seen first: {dev.saw_close_notify()}")


if __name__ == "__main__":
    unittest.main()
