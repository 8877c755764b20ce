#!/usr/bin/python3
"""CoAP over TCP / TLS load and memory (RFC 8323; issue 15), for coapgw beside libcoap's coap-server.

  rps:    stream_bench.py rps --port P [--tls] --pid SERVER_PID [--conns 4] [--depth 16] [--seconds 5]
          Each connection sends its CSM, then keeps `depth` GET /.well-known/core pipelined for
          `seconds`; prints requests/s and the server's CPU (utime+stime from /proc) per request.
  memory: stream_memory.py memory --port P [--tls] --pid SERVER_PID --conns 10000
          Opens `conns` idle connections (CSM sent, one request answered each), then prints the
          server's RSS growth per connection. TLS uses certificates (Python's ssl has no PSK).

One client process (threads for rps, one thread for memory), loopback only, bounded in count and time.
"""
import argparse
import os
import socket
import ssl
import threading
import time

GET, CSM = 0x01, 0xE1


def frame(code, token=b"", options=b""):
    n = len(options)
    assert n < 13
    return bytes([(n << 4) | len(token), code]) + token + options




def request(token):
    body = bytes([0xBB]) + b".well-known" + bytes([0x04]) + b"core"
    return bytes([(13 << 4) | len(token), len(body) - 13, GET]) + token + body


def frames(buf):
    """Whole frames in buf: (count, rest)."""
    count, at = 0, 0
    while len(buf) - at >= 2:
        nib, tkl = buf[at] >> 4, buf[at] & 0x0F
        ext = {13: 1, 14: 2, 15: 4}.get(nib, 0)
        if len(buf) - at < 1 + ext:
            break
        n = nib if ext == 0 else int.from_bytes(buf[at + 1:at + 1 + ext], "big") + {1: 13, 2: 269, 4: 65805}[ext]
        total = 1 + ext + 1 + tkl + n
        if len(buf) - at < total:
            break
        if (buf[at + 1 + ext] >> 5) != 7:  # not a signal
            count += 1
        at += total
    return count, buf[at:]


def connect(port, use_tls):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if use_tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    s.sendall(frame(CSM))
    return s


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rps(args):
    deadline = time.monotonic() + args.seconds
    done = [0] * args.conns
    req = request(b"\x01")

    def run(i):
        s = connect(args.port, args.tls)
        s.sendall(req * args.depth)
        buf = b""
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            n, buf = frames(buf + data)
            done[i] += n
            if n:
                s.sendall(req * n)
        s.close()

    t0, c0 = time.monotonic(), cpu_ticks(args.pid)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, ticks = time.monotonic() - t0, cpu_ticks(args.pid) - c0
    total = sum(done)
    hz = os.sysconf("SC_CLK_TCK")
    print(f"RESULT kind=rps tls={int(args.tls)} conns={args.conns} depth={args.depth} requests={total} "
          f"rps={total / elapsed:.0f} server_cpu_us_per_request={ticks / hz * 1e6 / max(total, 1):.2f}")


def memory(args):
    before = rss_kb(args.pid)
    socks = []
    req = request(b"\x02")
    for i in range(args.conns):
        s = connect(args.port, args.tls)
        s.sendall(req)
        buf = b""
        while True:
            n, buf = frames(buf + s.recv(4096))
            if n:
                break
        socks.append(s)
    time.sleep(6)  # the server gives freed handshake memory back every 5 s: a measurement pause, not a sync
    after = rss_kb(args.pid)
    print(f"RESULT kind=memory tls={int(args.tls)} conns={len(socks)} rss_before_kb={before} rss_after_kb={after} "
          f"bytes_per_connection={(after - before) * 1024 / len(socks):.0f}")
    for s in socks:
        s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("rps", "memory"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5)
    a = p.parse_args()
    rps(a) if a.mode == "rps" else memory(a)


if __name__ == "__main__":
    main()
