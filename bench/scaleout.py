#!/usr/bin/env python3
"""Figures for bench/RESULTS.md "Several gateways": a held population of CID devices behind nginx
(docker/nginx/nginx.conf, as tests/integration/test_scaleout.py runs it) in front of three
coapgwd, every device rebinding, and one gateway replaced half-way through the hold.

  bench/scaleout.py [--devices 600] [--hold 20] [--rebind 4] [--keepalive 2]

coapgw-bench --mode hold --cid holds the sessions; once it prints HOLD_READY the gateway holding
the most devices is stopped (SIGTERM, sessions.persist) and a new process with its node id and
persist file takes its place. Prints the bench's RESULT line, handshakes and address changes per
gateway (before and after the handover) and the sessions the replacement restored.
Needs build/ (coapgwd, coapgw-bench, coapgw-cid-client) and nginx with the stream and njs modules.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import harness as h  # noqa: E402
import test_scaleout as s  # noqa: E402


class Figures(s.ScaleOutCase):
    args = None

    def runTest(self):
        a = self.args
        nginx = self.start_nginx()
        cmd = [s.BENCH, "--mode", "hold", "--cid", "--server", f"127.0.0.1:{nginx.coaps_port}",
               "--devices", str(a.devices), "--duration", str(a.hold), "--keepalive", str(a.keepalive),
               "--rebind", str(a.rebind), "--rebind-hold", str(a.rebind_hold), "--open-rate", "300", "--timeout", "2",
               "--identity", s.BENCH_IDENTITY, "--key", s.BENCH_KEY]
        print("$ coapgw-bench " + " ".join(cmd[1:]), flush=True)
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = bench.stdout.readline()
        if not ready.startswith("HOLD_READY"):
            self.fail(ready + bench.communicate(timeout=60)[1])
        per_node = [s.metric(gw, "coapgw_dtls_handshakes_total", result="ok") for gw in self.gateways]
        victim = per_node.index(max(per_node))
        saved = restored = []
        if not a.no_handover:
            old = self.gateways[victim]
            old.stop()
            new = self.start_gateway(old.config, name=f"node{victim}-replacement")
            self.gateways[victim] = new
            saved = [line for line in old.logs().splitlines() if "DTLS sessions to" in line]
            restored = [line for line in new.logs().splitlines() if "restored" in line and "DTLS sessions" in line]
        out, err = bench.communicate(timeout=a.hold + 300)
        print(err.strip())
        print(out.strip().splitlines()[-1])
        print(f"handshakes per gateway at HOLD_READY: {per_node}; node {victim} replaced: {saved} {restored}")
        after = [s.metric(gw, "coapgw_dtls_handshakes_total", result="ok") for gw in self.gateways]
        moves = [s.metric(gw, "coapgw_dtls_address_changes_total") for gw in self.gateways]
        print(f"handshakes per gateway at the end (node {victim}: the replacement's): {after}; "
              f"address changes: {moves}")
        import collections
        for node, gw in enumerate(self.gateways):
            from prometheus_client.parser import text_string_to_metric_families
            _, body = h.http_get(gw.admin_url("/metrics"))
            bad = {smp.labels["reason"]: smp.value for fam in text_string_to_metric_families(body)
                   for smp in fam.samples if smp.name == "coapgw_bad_messages_total" and smp.value}
            print(f"node {node}: bad messages {bad}")
            print("\n".join(l for l in gw.logs(tail=100000).splitlines() if "DBG" in l)[-3000:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=600)
    p.add_argument("--hold", type=float, default=20)
    p.add_argument("--rebind", type=float, default=4)
    p.add_argument("--keepalive", type=float, default=2)
    p.add_argument("--rebind-hold", type=float, default=10,
                   help="seconds an old source port stays taken (> nginx proxy_timeout, here 2 s)")
    p.add_argument("--no-handover", action="store_true", help="no gateway replaced (the baseline)")
    Figures.args = p.parse_args()
    result = unittest.TextTestRunner(verbosity=0).run(Figures())
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
