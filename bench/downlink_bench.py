#!/usr/bin/python3
"""Downlink bench (issue 14): backend requests per second and their latency over the API
(POST /v1/devices/{identity}/requests) to many connected DTLS devices.

It starts coapgwd on free loopback ports (coaps, api, admin) with one PSK identity per device
(bench-0 .. bench-N-1, in a keys file), holds N DTLS sessions with
`coapgw-bench --mode hold --dtls --identity-per-device --serve` (each device answers the gateway's
GET with a piggybacked 2.05 "ok"), waits until the gateway shows N established DTLS sessions, then
runs C HTTP/1.1 keep-alive clients for S seconds, each sending GET /x to a random device and
waiting for its answer (closed loop). Prints one RESULT line. Loopback only, bounded in devices,
clients and time.

Usage: downlink_bench.py COAPGWD COAPGW_BENCH [--devices N] [--clients C] [--duration S]
                         [--threads T] [--check]
--check (the ctest bench.downlink_smoke): small and short, exits 1 unless every request was
answered 200 with the device's payload and the devices counted the answers.
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request

TOKEN = "downlink-bench-token"


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def poll(predicate, deadline_s, what):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # poll interval
    raise SystemExit(f"downlink bench: {what} not reached within {deadline_s} s")


def metric(admin, name, **labels):
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def client(api, devices, stop_at, out):
    host, port = api.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps({"method": "GET", "path": "/x", "timeout": "5s"})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    rng = random.Random()
    while time.monotonic() < stop_at:
        device = rng.randrange(devices)
        start = time.monotonic()
        try:
            conn.request("POST", f"/v1/devices/bench-{device}/requests", body, headers)
            r = conn.getresponse()
            data = r.read()
            ok = r.status == 200 and json.loads(data).get("payload") == "ok"
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            ok = False
        out.append((ok, time.monotonic() - start))
    conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gwd")
    p.add_argument("bench")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check", action="store_true")
    a = p.parse_args()
    if a.check:
        a.devices, a.clients, a.duration = 20, 4, 1.0
    a.devices = max(1, min(a.devices, 20000))
    a.clients = max(1, min(a.clients, 256))
    a.duration = max(0.5, min(a.duration, 120.0))

    work = tempfile.mkdtemp(prefix="coapgw-downlink-bench-")
    coaps = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    api = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    admin = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
    keys = os.path.join(work, "keys.yaml")
    with open(keys, "w") as f:
        for i in range(a.devices):
            f.write(f'- {{ identity: "bench-{i}", key: "bench-secret" }}\n')
    os.chmod(keys, 0o600)
    with open(os.path.join(work, "gw.yaml"), "w") as f:
        f.write(f"""threads: {a.threads}
log: {{ level: warn }}
listen: {{ coap: [], coaps: ["{coaps}"], admin: "{admin}", api: "{api}" }}
dtls: {{ psk: {{ hint: "coapgw", keys: [], keys_file: "{keys}" }} }}
sessions: {{ max: {a.devices * 2 + 100} }}
api: {{ tokens: [ {{ name: bench, token: "{TOKEN}" }} ], max_connections: {a.clients + 8} }}
routes: []
""")
    procs = []
    try:
        gw = subprocess.Popen([a.gwd, "--config", os.path.join(work, "gw.yaml")],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "gwd.log"), "wb"))
        procs.append(gw)
        poll(lambda: metric(admin, "coapgw_build_info") > 0, 15, "coapgwd ready")
        hold = a.duration + 60  # the devices stay until the bench is done (then killed)
        bench_out = os.path.join(work, "bench.out")
        dev = subprocess.Popen([a.bench, "--mode", "hold", "--dtls", "--identity-per-device", "--serve",
                                "--server", coaps, "--devices", str(a.devices), "--duration", str(hold),
                                "--open-rate", "2000"], stdout=open(bench_out, "wb"), stderr=subprocess.STDOUT)
        procs.append(dev)
        poll(lambda: metric(admin, "coapgw_sessions", proto="dtls", state="established") >= a.devices,
             60 + a.devices / 500, f"{a.devices} DTLS sessions established")

        results = []
        stop_at = time.monotonic() + a.duration
        threads = [threading.Thread(target=client, args=(api, a.devices, stop_at, results)) for _ in range(a.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=a.duration + 30)
        elapsed = time.monotonic() - started
        answered = metric(admin, "coapgw_downlink_requests_total", outcome="answered")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok = sorted(d for good, d in results if good)
    failed = len(results) - len(ok)
    q = lambda f: f"{ok[min(len(ok) - 1, int(f * len(ok)))] * 1e3:.2f}" if ok else "-"
    print(f"RESULT mode=downlink devices={a.devices} clients={a.clients} gw_threads={a.threads} "
          f"requests={len(results)} ok={len(ok)} failed={failed} req_per_s={len(ok) / elapsed:.0f} "
          f"p50_ms={q(0.5)} p99_ms={q(0.99)} max_ms={q(1.0)} gateway_answered={answered:.0f}")
    if a.check and (not ok or failed or answered < len(ok)):
        print(open(os.path.join(work, "gwd.log")).read()[-3000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
