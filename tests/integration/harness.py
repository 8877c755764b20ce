"""Integration-test harness: runs the real coapgwd on loopback and talks to it.

Owns: free loopback ports, one temp dir per test, the YAML config of
DESIGN.md's contract, starting coapgwd and waiting until it answers, stopping
it with a signal and checking the exit code, a small CoAP message codec for
raw-datagram tests, and helpers that run the real peers (libcoap's
coap-client-*, openssl). Every wait in here has a deadline, so a missing or
wedged daemon makes a test fail, never hang.

The daemon is taken from $COAPGWD (ctest sets it to build/daemon/coapgwd; in
build-asan/ and build-tsan/ to their sanitizer builds). A daemon whose stderr
carries a sanitizer report fails the test when it is stopped, whatever its
exit status.
Standard library only, plus prometheus_client in test_admin.py.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
COAPGWD = os.environ.get("COAPGWD", os.path.join(REPO, "build", "daemon", "coapgwd"))
# "asan" or "tsan" when COAPGWD is a sanitizer build (set by ctest in build-asan/, build-tsan/):
# its allocator keeps freed memory in quarantine and adds shadow memory, so RSS bounds do not apply.
SANITIZER = os.environ.get("COAPGW_SANITIZER", "")

START_DEADLINE_S = 20.0  # from exec to "answers /.well-known/core"
STOP_DEADLINE_S = 15.0   # SIGTERM -> exit, per the brief
PEER_TIMEOUT_S = 30.0    # hard cap on any external peer process

# ---------------------------------------------------------------------------
# Ports and addresses


def free_port(kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    """A port the kernel just handed out on host; closed again before return."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_port(host="127.0.0.1"):
    return free_port(socket.SOCK_DGRAM, host)


def free_tcp_port(host="127.0.0.1"):
    return free_port(socket.SOCK_STREAM, host)


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def split_hostport(text):
    """'127.0.0.1:5683' / '[::1]:5683' -> (host, port)."""
    if text.startswith("["):
        host, _, port = text[1:].rpartition("]:")
        return host, int(port)
    host, _, port = text.rpartition(":")
    return host, int(port)


def connect_host(host):
    """Where to send to reach a wildcard listener."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


# ---------------------------------------------------------------------------
# YAML: configs are plain dicts/lists/scalars; strings are emitted JSON-quoted,
# which is valid YAML double-quoted style, so no escaping question arises.


def _yaml_scalar(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def to_yaml(value, indent=0):
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1))
            elif isinstance(item, list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1))
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                # flow style keeps list-of-maps short and unambiguous
                inner = ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in item.items())
                lines.append(f"{pad}- {{ {inner} }}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(value))
    return "\n".join(lines)


DEMO_IDENTITY = "demo-device"
DEMO_KEY = "demo-secret"


def base_config(coap=None, coaps=None, admin=None, keys=None, routes=None, threads=2):
    """A config dict following DESIGN.md's contract.

    coap/coaps: lists of "addr:port" ([] disables); admin: "addr:port" or ""
    (disabled). Callers tweak the returned dict before handing it to Gateway.
    """
    if keys is None:
        keys = [{"identity": DEMO_IDENTITY, "key": DEMO_KEY}]
    return {
        "threads": threads,
        "log": {"level": "debug", "format": "text"},
        "listen": {
            "coap": list(coap) if coap is not None else [f"127.0.0.1:{free_udp_port()}"],
            "coaps": list(coaps) if coaps is not None else [],
            "admin": admin if admin is not None else "",
            # The backend API is off unless a test turns it on with a free port: many gateways run at once.
            "api": "",
        },
        "dtls": {
            "psk": {"hint": "coapgw", "keys": keys},
            "handshake_timeout": "10s",
            "max_handshakes": 1000,
        },
        "sessions": {"max": 100000, "idle_timeout": "300s"},
        "coap": {
            "ack_timeout": "2s",
            "ack_random_factor": 1.5,
            "max_retransmit": 4,
            "max_message_size": 1152,
        },
        "routes": list(routes) if routes else [],
    }


# ---------------------------------------------------------------------------
# The daemon


class GatewayError(AssertionError):
    pass


def daemon_missing_reason():
    if not os.path.exists(COAPGWD):
        return f"coapgwd not found at {COAPGWD} (set COAPGWD or build target coapgwd)"
    if not os.access(COAPGWD, os.X_OK):
        return f"coapgwd at {COAPGWD} is not executable"
    return None


def run_coapgwd(args, timeout=15.0, cwd=None):
    """Runs coapgwd with args to completion: (rc, stdout, stderr)."""
    reason = daemon_missing_reason()
    if reason:
        raise GatewayError(reason)
    try:
        r = subprocess.run([COAPGWD] + list(args), capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        return None, _text(e.stdout), _text(e.stderr)


def _text(data):
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


# ASan/LSan ("==123==ERROR: AddressSanitizer: ..."), UBSan ("file.cpp:1:2: runtime error: ..."),
# TSan ("WARNING: ThreadSanitizer: data race ...").
SANITIZER_REPORT = re.compile(r"^(==\d+==ERROR: \w+Sanitizer.*|WARNING: ThreadSanitizer.*|\S+: runtime error: .*)$",
                              re.MULTILINE)


class Gateway:
    """One coapgwd process with its config file, in the test's temp dir."""

    def __init__(self, workdir, config, extra_args=(), name="gw"):
        self.workdir = workdir
        self.config = config
        self.extra_args = list(extra_args)
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.proc = None
        self.returncode = None

    # -- addresses from the config
    def coap_addr(self, index=0):
        host, port = split_hostport(self.config["listen"]["coap"][index])
        return connect_host(host), port

    def coaps_addr(self, index=0):
        host, port = split_hostport(self.config["listen"]["coaps"][index])
        return connect_host(host), port

    def admin_url(self, path="/"):
        host, port = split_hostport(self.config["listen"]["admin"])
        host = connect_host(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{path}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config) + "\n")

    def start(self, wait=True):
        reason = daemon_missing_reason()
        if reason:
            raise GatewayError(reason)
        self.write_config()
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [COAPGWD, "--config", self.config_path] + self.extra_args,
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
            cwd=self.workdir)
        if wait:
            self.wait_ready()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, deadline_s=START_DEADLINE_S):
        """Polls until /.well-known/core is answered over UDP and, when the
        admin listener is configured, /healthz answers 200."""
        deadline = time.monotonic() + deadline_s
        coap_on = bool(self.config["listen"].get("coap"))
        admin_on = bool(self.config["listen"].get("admin"))
        coap_ok = not coap_on
        admin_ok = not admin_on
        last = "no attempt"
        while time.monotonic() < deadline:
            if not self.alive():
                raise GatewayError(
                    f"coapgwd exited with {self.proc.returncode} during start-up\n" + self.logs())
            if not coap_ok:
                try:
                    reply = coap_request(self.coap_addr(), get(".well-known/core"), timeout=0.3)
                    coap_ok = reply is not None
                    last = "coap: no answer" if not coap_ok else last
                except OSError as e:
                    last = f"coap: {e}"
            if coap_ok and not admin_ok:
                status, _ = http_get(self.admin_url("/healthz"), timeout=0.5)
                admin_ok = status == 200
                last = f"admin /healthz: {status}"
            if coap_ok and admin_ok:
                return
            time.sleep(0.05)  # poll interval, not synchronisation
        raise GatewayError(f"coapgwd not ready within {deadline_s}s ({last})\n" + self.logs())

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, deadline_s=STOP_DEADLINE_S):
        try:
            self.returncode = self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GatewayError(f"coapgwd did not exit within {deadline_s}s\n" + self.logs())
        return self.returncode

    def stop(self, sig=signal.SIGTERM, expect_rc=0):
        """Signals the daemon and asserts it exits with expect_rc in time, without a
        sanitizer report on its stderr."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        rc = self.wait_exit()
        self._close_files()
        if expect_rc is not None and rc != expect_rc:
            raise GatewayError(f"coapgwd exited with {rc}, expected {expect_rc}\n" + self.logs())
        self.check_sanitizers()
        return rc

    def sanitizer_report(self):
        """The first line of an ASan/LSan/UBSan/TSan report on stderr, or None."""
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        m = SANITIZER_REPORT.search(text)
        return m.group(0) if m else None

    def check_sanitizers(self):
        report = self.sanitizer_report()
        if report:
            raise GatewayError(f"coapgwd's stderr has a sanitizer report: {report}\n" + self.logs(tail=400))

    def kill(self):
        """Last resort, only our own PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise GatewayError("no VmRSS in /proc status")

    def logs(self, tail=200):
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                parts.append(f"--- coapgwd {label} (last {min(tail, len(lines))} lines, "
                             f"{path}) ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts) if parts else "--- coapgwd wrote nothing ---"


class GatewayTestCase(unittest.TestCase):
    """Base class: a temp dir per test, gateways started through it are stopped
    (and their logs dumped to stderr) when the test ends."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=f"coapgw-it-{self._testMethodName}-")
        self._gateways = []
        # a cleanup, not tearDown: it also runs when setUp fails half-way
        self.addCleanup(self._stop_gateways)

    def config(self, **kw):
        """base_config with one file-sink route in the temp dir, so that
        /.well-known/core has something to list."""
        kw.setdefault("routes", [{"prefix": "/telemetry",
                                  "upstream": "file:" + os.path.join(self.tmp, "telemetry.jsonl")}])
        return base_config(**kw)

    def start_gateway(self, config, extra_args=(), wait=True, name=None):
        gw = Gateway(self.tmp, config, extra_args, name or f"gw{len(self._gateways)}")
        self._gateways.append(gw)
        gw.start(wait=wait)
        return gw

    def counter(self, name, **labels):
        """The sum of the samples of metric `name` on self.gw's /metrics whose labels include
        `labels` (0 when none), parsed by prometheus_client."""
        from prometheus_client.parser import text_string_to_metric_families
        status, body = http_get(self.gw.admin_url("/metrics"))
        self.assertEqual(status, 200)
        total = 0.0
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        return outcome is None or not getattr(outcome, "success", False)

    def _stop_gateways(self):
        failed = self._failed()
        stop_errors = []
        for gw in self._gateways:
            if gw.alive():
                try:
                    gw.stop()
                except GatewayError as e:
                    failed = True
                    stop_errors.append(str(e).splitlines()[0])
            gw.kill()
            report = gw.sanitizer_report() if gw.proc is not None else None
            if report and not any(report in e for e in stop_errors):
                failed = True
                stop_errors.append(f"coapgwd's stderr has a sanitizer report: {report}")
            if failed and gw.proc is not None:
                sys.stderr.write(f"[harness] {self.id()}\n{gw.logs()}\n")
        ran = any(gw.proc is not None for gw in self._gateways)
        if failed and ran:
            sys.stderr.write(f"[harness] kept temp dir {self.tmp}\n")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if stop_errors:  # a daemon that does not stop cleanly fails the test
            raise GatewayError("; ".join(stop_errors))


# ---------------------------------------------------------------------------
# CoAP message codec (RFC 7252 section 3), enough for raw-datagram tests

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
OPT_OBSERVE, OPT_URI_PATH, OPT_CONTENT_FORMAT, OPT_URI_QUERY = 6, 11, 12, 15


def code(cls, detail):
    return (cls << 5) | detail


def code_str(c):
    return f"{c >> 5}.{c & 0x1f:02d}"


class Message:
    def __init__(self, mtype=CON, code=0, mid=0, token=b"", options=(), payload=b"", version=1):
        self.version = version
        self.type = mtype
        self.code = code
        self.mid = mid
        self.token = bytes(token)
        self.options = list(options)  # [(number, bytes)], kept in given order
        self.payload = bytes(payload)

    def option(self, number):
        return [v for n, v in self.options if n == number]

    def uri_path(self):
        return "/" + "/".join(v.decode(errors="replace") for v in self.option(OPT_URI_PATH))

    def __repr__(self):
        return (f"Message(type={self.type}, code={code_str(self.code)}, mid={self.mid}, "
                f"token={self.token.hex()}, options={self.options}, payload={self.payload[:64]!r})")


def _ext(value):
    """Option delta/length nibble and extension bytes (RFC 7252 3.1)."""
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    if value < 65805:
        return 14, struct.pack("!H", value - 269)
    raise ValueError("option delta/length too large")


def encode(msg):
    if len(msg.token) > 8:
        raise ValueError("token longer than 8 bytes: use raw bytes for malformed messages")
    out = bytearray()
    out.append(((msg.version & 3) << 6) | ((msg.type & 3) << 4) | len(msg.token))
    out.append(msg.code & 0xFF)
    out += struct.pack("!H", msg.mid & 0xFFFF)
    out += msg.token
    last = 0
    for number, value in sorted(msg.options, key=lambda o: o[0]):  # stable: repeats keep order
        value = bytes(value)
        d_nib, d_ext = _ext(number - last)
        l_nib, l_ext = _ext(len(value))
        out.append((d_nib << 4) | l_nib)
        out += d_ext + l_ext + value
        last = number
    if msg.payload:
        out.append(0xFF)
        out += msg.payload
    return bytes(out)


class DecodeError(ValueError):
    pass


def decode(data):
    data = bytes(data)
    if len(data) < 4:
        raise DecodeError("shorter than the 4-byte header")
    version, mtype, tkl = data[0] >> 6, (data[0] >> 4) & 3, data[0] & 0x0F
    if tkl > 8:
        raise DecodeError("token length 9..15")
    msg = Message(mtype, data[1], struct.unpack("!H", data[2:4])[0], version=version)
    pos = 4 + tkl
    if pos > len(data):
        raise DecodeError("truncated token")
    msg.token = data[4:pos]
    number = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        if byte == 0xFF:
            if pos == len(data):
                raise DecodeError("payload marker with empty payload")
            msg.payload = data[pos:]
            break
        fields = []
        for nibble in (byte >> 4, byte & 0x0F):
            if nibble == 15:
                raise DecodeError("reserved option nibble 15")
            if nibble == 13:
                if pos + 1 > len(data):
                    raise DecodeError("truncated option extension")
                nibble = data[pos] + 13
                pos += 1
            elif nibble == 14:
                if pos + 2 > len(data):
                    raise DecodeError("truncated option extension")
                nibble = struct.unpack("!H", data[pos:pos + 2])[0] + 269
                pos += 2
            fields.append(nibble)
        number += fields[0]
        if pos + fields[1] > len(data):
            raise DecodeError("truncated option value")
        msg.options.append((number, data[pos:pos + fields[1]]))
        pos += fields[1]
    return msg


_mid = random.randrange(0x10000)


def next_mid():
    global _mid
    _mid = (_mid + 1) & 0xFFFF
    return _mid


def new_token(length=4):
    return os.urandom(length)


def path_options(path):
    return [(OPT_URI_PATH, seg.encode()) for seg in path.strip("/").split("/") if seg]


def get(path, mtype=CON, extra_options=(), token=None, mid=None):
    return Message(mtype, code(0, GET), next_mid() if mid is None else mid,
                   new_token() if token is None else token,
                   path_options(path) + list(extra_options))


def udp_socket(addr, connect=True):
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    if connect:
        s.connect(addr)
    return s


def recv_message(sock, timeout):
    """Next datagram on sock decoded, or None after timeout."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65535)
    except (socket.timeout, ConnectionRefusedError):
        return None
    return decode(data)


def coap_request(addr, msg, timeout=2.0, sock=None, final=False):
    """Sends msg (Message or raw bytes) on a connected socket and returns the
    first answer matching its message id or token (None if nothing in time).
    final=True: an empty ACK (the gateway answering later, RFC 7252 5.2.2) is
    not the answer; the separate response with the token is (a CON one is
    ACKed), so the caller does not depend on how fast the upstream is."""
    own = sock is None
    s = udp_socket(addr) if own else sock
    try:
        raw = msg if isinstance(msg, (bytes, bytearray)) else encode(msg)
        s.send(raw)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            reply = recv_message(s, left)
            if reply is None:
                return None
            if isinstance(msg, Message) and reply.mid != msg.mid and reply.token != msg.token:
                continue  # a leftover answer to something else
            if final and reply.type == ACK and reply.code == 0:
                continue  # empty ACK: the response comes separately
            if final and reply.type == CON:
                s.send(encode(Message(ACK, 0, reply.mid, b"", [], b"")))
            return reply
    finally:
        if own:
            s.close()


# ---------------------------------------------------------------------------
# Peers


def run_peer(args, timeout=PEER_TIMEOUT_S, input_bytes=None, cwd=None):
    """Runs an external peer: (rc, stdout, stderr); rc 124 on timeout."""
    try:
        r = subprocess.run(list(args), capture_output=True, timeout=timeout,
                           input=input_bytes, cwd=cwd,
                           stdin=None if input_bytes is not None else subprocess.DEVNULL)
        return r.returncode, _text(r.stdout), _text(r.stderr)
    except subprocess.TimeoutExpired as e:
        return 124, _text(e.stdout), _text(e.stderr) + f"\n[harness] timed out after {timeout}s"
    except FileNotFoundError as e:
        return 127, "", f"[harness] {e}"


def coap_client(args, flavour="notls", timeout=PEER_TIMEOUT_S, wait_s=5):
    """libcoap's coap-client-<flavour> (notls|openssl|gnutls), -B bounds its
    own wait. Note: coap-client exits 0 even when it got no answer; a 4.xx or
    5.xx answer is printed as 'C.DD Text' on stderr (see response_error)."""
    argv = [f"coap-client-{flavour}", "-B", str(wait_s)] + list(args)
    return run_peer(argv, timeout=timeout)


_CODE_LINE = re.compile(r"^\s*([45]\.\d\d)\b", re.M)


def response_error(stdout, stderr):
    """The 4.xx/5.xx code coap-client reported, or None."""
    m = _CODE_LINE.search(stderr) or _CODE_LINE.search(stdout)
    return m.group(1) if m else None


def http_get(url, timeout=3.0):
    """(status, body) of a GET; status None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None, ""


def poll_until(predicate, deadline_s, interval_s=0.1, what="condition"):
    """Calls predicate until it returns a truthy value; returns it or raises."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {deadline_s}s (last: {last!r})")


class BackgroundReader:
    """Collects a pipe's output in a thread so we can poll it with a deadline."""

    def __init__(self, stream):
        self.chunks = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for line in iter(stream.readline, b""):
            with self.lock:
                self.chunks.append(line.decode(errors="replace"))

    def text(self):
        with self.lock:
            return "".join(self.chunks)


class SClient:
    """`openssl s_client -dtls1_2 -psk` kept open: its DTLS session lives as
    long as its stdin is open; close() sends close_notify."""

    def __init__(self, host, port, identity, key, extra=()):
        argv = ["openssl", "s_client", "-dtls1_2", "-psk", key.encode().hex(),
                "-psk_identity", identity, "-connect", f"{host}:{port}"] + list(extra)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.out = BackgroundReader(self.proc.stdout)

    def wait_handshake(self, deadline_s=15.0):
        """True once s_client printed the negotiated cipher / verify result."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            text = self.out.text()
            if "Cipher is" in text and "Cipher is (NONE)" not in text:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def close(self, deadline_s=5.0):
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.out.thread.join(timeout=2)
        self.proc.stdout.close()
        return self.out.text()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.out.thread.join(timeout=2)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe and not pipe.closed:
                try:
                    pipe.close()
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# Certificates and DTLS records


def make_pki(directory, client_cn="pki-device"):
    """CA, server cert (127.0.0.1/localhost) and client cert with client_cn,
    P-256 keys, made with the openssl CLI. Returns a dict of PEM paths."""
    p = {name: os.path.join(directory, name) for name in
         ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        rc, out, err = run_peer(["openssl"] + list(args), timeout=30)
        if rc != 0:
            raise GatewayError(f"openssl {' '.join(args)} failed: {err}")

    openssl("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.crt"], "-days", "2",
            "-subj", "/CN=coapgw-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for who, cn, ext in (("server", "127.0.0.1",
                          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                         ("client", client_cn, "extendedKeyUsage=clientAuth\n")):
        csr = os.path.join(directory, f"{who}.csr")
        extfile = os.path.join(directory, f"{who}.ext")
        with open(extfile, "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + ext)
        openssl("req", "-new", *ec, "-keyout", p[f"{who}.key"], "-out", csr, "-subj", f"/CN={cn}")
        openssl("x509", "-req", "-in", csr, "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
                "-set_serial", str(random.randrange(1, 2**62)), "-days", "2",
                "-extfile", extfile, "-out", p[f"{who}.crt"])
    return p


# RFC 7925 / RFC 6655 PSK suites plus common ECDHE ones, as a device would offer
CLIENT_HELLO_SUITES = (0xC0A8, 0xC0A4, 0x00A8, 0xC037, 0xC02B, 0xC0AE, 0x00FF)


def dtls_client_hello(seq=0, cookie=b"", suites=CLIENT_HELLO_SUITES, random=None, message_seq=0):
    """A DTLS 1.2 ClientHello in one record (RFC 6347 4.2.1), epoch 0. The second
    ClientHello of a cookie exchange repeats the first one's random with the cookie."""
    body = bytearray(b"\xfe\xfd")               # client_version DTLS 1.2
    body += random if random is not None else os.urandom(32)  # random
    body += b"\x00"                             # session_id: empty
    body += bytes([len(cookie)]) + cookie       # cookie
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00"                         # compression: null
    groups = b"\x00\x0a" + struct.pack("!H", 4) + struct.pack("!H", 2) + b"\x00\x17"  # secp256r1
    points = b"\x00\x0b\x00\x02\x01\x00"
    ems = b"\x00\x17\x00\x00"                   # extended_master_secret
    ext = groups + points + ems
    body += struct.pack("!H", len(ext)) + ext
    n = len(body)
    hs = bytes([1]) + n.to_bytes(3, "big") + struct.pack("!H", message_seq) + (0).to_bytes(3, "big") \
        + n.to_bytes(3, "big") + bytes(body)
    return bytes([22]) + b"\xfe\xfd" + b"\x00\x00" + seq.to_bytes(6, "big") \
        + struct.pack("!H", len(hs)) + hs


def hello_verify_cookie(data):
    """The cookie of a HelloVerifyRequest record: record header 13, handshake header 12,
    server_version 2, then cookie<0..255>."""
    if not is_hello_verify_request(data) or len(data) < 28:
        return None
    n = data[27]
    return bytes(data[28:28 + n])


def is_hello_verify_request(data):
    """Handshake record whose first message is HelloVerifyRequest (type 3)."""
    return len(data) >= 14 and data[0] == 22 and data[13] == 3
