#!/usr/bin/env python3
"""Resident memory and load time of a large dtls.psk.keys_file (issue 17, item 4).

Usage: bench/keys_memory.py [--coapgwd build/daemon/coapgwd] [--reloads 3] COUNT [COUNT...]

For each COUNT: writes a keys file of COUNT devices (identity "device-NNNNNNN", a 16-byte key_hex),
starts coapgwd (threads 2, plain CoAP on a free port, admin on a free port) and takes
- the time from spawn until it answers CoAP (start-up including the key load),
- VmRSS once ready, minus VmRSS of the same gateway with an empty keys file: bytes per key,
- for each of --reloads SIGHUPs (the file rewritten with new keys each time, so every reload really
  reads a million entries): the time until coapgw_config_reloads_total{result="ok"} moves, VmRSS
  after it, and the slowest answer to a CoAP ping (an empty CON, answered RST by a worker) sent every
  10 ms while the reload ran: the workers must not stall,
- VmHWM (peak) at the end.
Prints one RESULT line per COUNT. Loopback only; the gateway is stopped afterwards.
"""
import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402


def write_keys(path, count, generation):
    with open(path + ".tmp", "w") as f:
        os.fchmod(f.fileno(), 0o600)
        for i in range(count):
            f.write('- { identity: "device-%07d", key_hex: "%016x%016x" }\n' % (i, generation, i))
    os.replace(path + ".tmp", path)


def proc_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def reloads_ok(gw):
    status, body = harness.http_get(gw.admin_url("/metrics"))
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith("coapgw_config_reloads_total{") and 'result="ok"' in line:
            return float(line.split()[-1])
    return 0.0


class Pinger(threading.Thread):
    """CoAP pings (empty CON -> RST) every 10 ms; the slowest answer and how many went unanswered."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr = addr
        self.stop_flag = threading.Event()
        self.slowest = 0.0
        self.sent = 0
        self.lost = 0

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(self.addr)
        mid = 1
        while not self.stop_flag.is_set():
            mid = (mid + 1) & 0xFFFF
            t0 = time.monotonic()
            sock.send(harness.encode(harness.Message(mtype=harness.CON, code=0, mid=mid)))
            self.sent += 1
            sock.settimeout(2.0)
            try:
                while True:
                    reply = harness.decode(sock.recv(2048))
                    if reply.mid == mid:
                        break
                self.slowest = max(self.slowest, time.monotonic() - t0)
            except socket.timeout:
                self.lost += 1
            self.stop_flag.wait(0.01)
        sock.close()


def start(workdir, keys_path, name):
    config = harness.base_config(keys=[], threads=2, admin=f"127.0.0.1:{harness.free_tcp_port()}")
    config["log"]["level"] = "warn"
    config["dtls"]["psk"]["keys_file"] = keys_path
    gw = harness.Gateway(workdir, config, name=name)
    t0 = time.monotonic()
    gw.start(wait=False)
    gw.wait_ready(deadline_s=300)
    return gw, time.monotonic() - t0


def measure(coapgwd, count, reloads, workdir):
    harness.COAPGWD = coapgwd
    empty = os.path.join(workdir, "no-keys.keys")
    write_keys(empty, 0, 0)
    gw, _ = start(workdir, empty, "empty")
    base_kb = proc_kb(gw.pid, "VmRSS")
    gw.stop()

    keys = os.path.join(workdir, f"devices-{count}.keys")
    write_keys(keys, count, 1)
    size = os.path.getsize(keys)
    gw, ready_s = start(workdir, keys, f"keys{count}")
    rss = [proc_kb(gw.pid, "VmRSS")]
    reload_s, slowest, lost, sent = [], 0.0, 0, 0
    try:
        for r in range(reloads):
            write_keys(keys, count, 2 + r)
            before = reloads_ok(gw)
            pinger = Pinger(gw.coap_addr())
            pinger.start()
            t0 = time.monotonic()
            gw.send_signal(signal.SIGHUP)
            deadline = t0 + 300
            while reloads_ok(gw) == before and time.monotonic() < deadline:
                time.sleep(0.02)  # poll interval
            reload_s.append(time.monotonic() - t0)
            pinger.stop_flag.set()
            pinger.join()
            slowest, lost, sent = max(slowest, pinger.slowest), lost + pinger.lost, sent + pinger.sent
            rss.append(proc_kb(gw.pid, "VmRSS"))
        hwm = proc_kb(gw.pid, "VmHWM")
    finally:
        gw.stop()
    per_key = [(kb - base_kb) * 1024 / count for kb in rss]
    print(f"RESULT keys={count} file_bytes={size} ready_s={ready_s:.2f} base_rss_kb={base_kb} "
          f"rss_kb={rss[0]} bytes_per_key={per_key[0]:.0f} "
          f"after_reloads_bytes_per_key={','.join(f'{b:.0f}' for b in per_key[1:])} "
          f"reload_s={','.join(f'{s:.2f}' for s in reload_s)} peak_rss_kb={hwm} "
          f"pings={sent} pings_lost={lost} slowest_ping_ms={slowest * 1000:.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coapgwd", default=os.path.join(HERE, "..", "build", "daemon", "coapgwd"))
    ap.add_argument("--reloads", type=int, default=3)
    ap.add_argument("counts", type=int, nargs="+")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="coapgw-keys-") as workdir:
        for count in args.counts:
            measure(os.path.abspath(args.coapgwd), count, args.reloads, workdir)


if __name__ == "__main__":
    main()
