#!/usr/bin/python3
"""Downlink bench (issue 14): backend requests per second and their latency over the API
(POST /v1/devices/{identity}/requests) to many connected DTLS devices.

It starts coapgwd on free loopback ports (coaps, api, admin) with one PSK identity per device
(bench-0 .. bench-N-1, in a keys file), holds N DTLS sessions with
`coapgw-bench --mode hold --dtls --identity-per-device --serve` (each device answers the gateway's
GET with a piggybacked 2.05 "ok"), waits until the gateway shows N established DTLS sessions, then
probes every device once (a device the bench gave up on during set-up, on a loaded machine, still
has its gateway session but never answers: it is left out and reported), then runs C HTTP/1.1
keep-alive clients for S seconds, each sending GET /x to a random answering device and waiting
for its answer (closed loop). Prints one RESULT line. Loopback only, bounded in devices,
clients and time.

Usage: downlink_bench.py COAPGWD COAPGW_BENCH [--devices N] [--clients C] [--duration S]
                         [--threads T] [--check]
--check (the ctest bench.downlink_smoke): small and short, exits 1 unless every request was
answered 200 with the device's payload, the gateway counted each, and at least half the devices
answer (on a loaded machine some bench handshakes do not complete; those devices are left out).
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


def post_get(conn, device, timeout):
    """(ok, HTTP status) of one GET /x to bench-<device> through the API; 0 when the connection failed."""
    body = json.dumps({"method": "GET", "path": "/x", "timeout": timeout})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        conn.request("POST", f"/v1/devices/bench-{device}/requests", body, headers)
        r = conn.getresponse()
        data = r.read()
        return r.status == 200 and json.loads(data).get("payload") == "ok", r.status
    except (OSError, http.client.HTTPException, ValueError):
        conn.close()
        return False, 0


def probe(api, devices, live):
    """The devices of `devices` that answer (the bench may have given up on some during set-up, while
    the gateway still holds their sessions)."""
    host, port = api.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for device in devices:
        if post_get(conn, device, "500ms")[0]:
            live.append(device)
    conn.close()


def client(api, live, stop_at, out):
    host, port = api.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    rng = random.Random()
    while time.monotonic() < stop_at:
        device = live[rng.randrange(len(live))]
        start = time.monotonic()
        ok, status = post_get(conn, device, "5s")
        out.append((ok, time.monotonic() - start, status, device))


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
dtls: {{ psk: {{ hint: "coapgw", keys: [], keys_file: "{keys}" }}, max_handshakes_per_ip: 0, handshake_backoff: {{ after: 0 }} }}
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
                                "--open-rate", "300", "--concurrency", "50", "--timeout", "10",
                                # other load tools on this host often use the default 10000..
                                "--source-port-base", str(random.randrange(1024, 15000))],
                               stdout=open(bench_out, "wb"), stderr=subprocess.STDOUT)
        procs.append(dev)
        # HOLD_READY: every device handshook and had its first request answered (or gave up).
        ready = poll(lambda: next((l for l in open(bench_out).read().splitlines() if l.startswith("HOLD_READY")), None),
                     120 + a.devices / 100, "the devices' set-up")
        opened = int(ready.split("sessions=")[1])

        live = []
        probes = [threading.Thread(target=probe, args=(api, range(i, a.devices, a.clients), live))
                  for i in range(a.clients)]
        for t in probes:
            t.start()
        for t in probes:
            t.join()
        if not live:
            raise SystemExit("downlink bench: no device answers")
        base = metric(admin, "coapgw_downlink_requests_total", outcome="answered")
        results = []
        stop_at = time.monotonic() + a.duration
        threads = [threading.Thread(target=client, args=(api, live, stop_at, results)) for _ in range(a.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=a.duration + 30)
        elapsed = time.monotonic() - started
        answered = metric(admin, "coapgw_downlink_requests_total", outcome="answered") - base
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok = sorted(r[1] for r in results if r[0])
    statuses = {}
    for r in results:
        if not r[0]:
            statuses[r[2]] = statuses.get(r[2], 0) + 1
    failed = len(results) - len(ok)
    q = lambda f: f"{ok[min(len(ok) - 1, int(f * len(ok)))] * 1e3:.2f}" if ok else "-"
    print(f"RESULT mode=downlink devices={a.devices} opened={opened} answering={len(live)} clients={a.clients} gw_threads={a.threads} "
          f"requests={len(results)} ok={len(ok)} failed={failed} req_per_s={len(ok) / elapsed:.0f} "
          f"p50_ms={q(0.5)} p99_ms={q(0.99)} max_ms={q(1.0)} gateway_answered={answered:.0f} "
          f"failed_by_status={json.dumps(statuses, separators=(',', ':'))}")
    if a.check and (not ok or failed or answered < len(ok) or 2 * len(live) < a.devices):
        print(open(os.path.join(work, "gwd.log")).read()[-3000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
