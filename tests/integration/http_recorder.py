"""A recording HTTP upstream for the forwarding tests.

Appends one JSON object per request to the log file (method, path, query,
headers, body as text or base64) *before* answering, so a test that has its
answer can read the record. Answers per path:
  /api/created -> 201 with a JSON body
  /api/slow    -> sleeps 3 s, then 200
  /api/sleep2  -> sleeps 2 s, then 200
  /api/big     -> 200 with a 5000-byte body (big_body())
  anything else -> 200 with a small text body

Run: /usr/bin/python3 http_recorder.py --log FILE [--port 0]; it prints
"PORT <n>" on stdout once listening and serves until SIGTERM.
Standard library only.
"""

import argparse
import base64
import json
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1024 * 1024


def big_body():
    """5000 bytes with a position-dependent pattern, so a lost or reordered block shows."""
    return "".join(f"{i:04d}|" for i in range(1000)).encode()


class RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's pool expects
    server_version = "http-recorder/1"

    def log_message(self, fmt, *args):  # quiet: the JSON lines are the record
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        record = {
            "ts": time.time(),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k: v for k, v in self.headers.items()},
            "body_len": len(body),
        }
        try:
            record["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_b64"] = base64.b64encode(body).decode()
        self.server.record(record)

        status, ctype, payload = 200, "text/plain", b"ok"
        if url.path == "/api/created":
            status, ctype, payload = 201, "application/json", b'{"created":true}'
        elif url.path == "/api/slow":
            time.sleep(3)
        elif url.path == "/api/sleep2":
            time.sleep(2)
            payload = b"slept"
        elif url.path == "/api/big":
            payload = big_body()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_FETCH = do_HEAD = _handle


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, log_path):
        super().__init__(addr, RecordingHandler)
        self.log_path = log_path
        self.lock = threading.Lock()

    def record(self, obj):
        line = json.dumps(obj) + "\n"
        with self.lock, open(self.log_path, "a") as f:
            f.write(line)


def read_records(log_path):
    """Every record written so far (the recorder appends whole lines)."""
    try:
        with open(log_path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    server = RecordingServer((args.host, args.port), args.log)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
