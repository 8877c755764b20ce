"""A stand-in device registry for bench/registry.sh (issue 16): GET /psk/bench-<n> answers
200 {"key": "bench-secret-<n>", "tenant": "bench"}, anything else 404. HTTP/1.1 keep-alive, one
thread per connection. Prints "PORT <n>" once listening. Standard library only."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        identity = self.path.rsplit("/", 1)[-1]
        if identity.startswith("bench-"):
            body = json.dumps({"key": "bench-secret-" + identity[len("bench-"):], "tenant": "bench"}).encode()
            self.send_response(200)
        else:
            body = b""
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
