"""Several gateways behind a real nginx UDP balancer (issue 18), on loopback.

Three coapgwd processes (dtls.connection_id.node_id 0, 1, 2) behind nginx running
docker/nginx/nginx.conf itself (addresses, ports, js_path and log path replaced; its own prefix,
pid file and logs in the test's temp dir; stopped by PID). nginx's njs (docker/nginx/coapgw.js)
sends a tls12_cid record to the gateway its Connection ID names; anything else goes by the
4-tuple hash. Shown here:
- CID routing: devices (coapgw-cid-client) rebind, i.e. come from new source ports that the
  4-tuple hash spreads over the three gateways, and are answered with no new handshake; with the
  CID routing taken out of the same config (the control), rebound devices get lost;
- the bench's CID clients (coapgw-bench --cid --rebind) under load: one handshake per device
  in all, no gateway ever sees a record of a session it does not hold;
- handover: the gateway holding some devices stops gracefully with sessions.persist; its
  replacement (a new process with the same node id and the same persist file, as a StatefulSet
  pod with its volume) serves those devices with no handshake, and the others never notice.
Skipped with the reason where nginx or its stream/njs modules are missing.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import unittest

import harness as h
from test_cid import CID_CLIENT, CidClient

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_DIR = os.path.join(h.REPO, "docker", "nginx")
NGINX_CONF = os.path.join(NGINX_DIR, "nginx.conf")
MODULES = ("/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/lib/nginx/modules/ngx_stream_js_module.so")
BENCH = os.environ.get("COAPGW_BENCH", os.path.join(h.REPO, "build", "bench", "coapgw-bench"))
NODES = 3
PROXY_TIMEOUT_S = 2
BENCH_IDENTITY, BENCH_KEY = "bench", "bench-secret"


def nginx_missing_reason():
    if not os.access(NGINX, os.X_OK):
        return "nginx is not installed (Debian: nginx-light libnginx-mod-stream libnginx-mod-stream-js)"
    missing = [m for m in MODULES if not os.path.exists(m)]
    if missing:
        return f"nginx modules missing: {', '.join(missing)} (Debian: libnginx-mod-stream libnginx-mod-stream-js)"
    if not os.access(CID_CLIENT, os.X_OK):
        return f"{CID_CLIENT} not built"
    return None


def metric(gw, name, **labels):
    """Sum of the samples of `name` on gw's /metrics whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families
    status, body = h.http_get(gw.admin_url("/metrics"))
    if status != 200:
        raise AssertionError(f"{gw.config_path}: /metrics answered {status}")
    return sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


class Nginx:
    """nginx running docker/nginx/nginx.conf rewritten for loopback, in the foreground (its
    master's PID is ours to signal)."""

    def __init__(self, workdir, gateways, cid_routing=True):
        self.workdir = workdir
        self.coaps_port = h.free_udp_port()
        self.coap_port = h.free_udp_port()
        self.access_log = os.path.join(workdir, "nginx-access.log")
        self.error_log = os.path.join(workdir, "nginx-error.log")
        self.conf = os.path.join(workdir, "nginx.conf")
        with open(NGINX_CONF) as f:
            text = f.read()
        replacements = [
            ('js_path "/etc/nginx/njs/";', f'js_path "{NGINX_DIR}/";', 1),
            ("/var/log/nginx/coapgw.log", self.access_log, 2),
            ("listen 5684 udp", f"listen 127.0.0.1:{self.coaps_port} udp", 1),
            ("listen 5683 udp", f"listen 127.0.0.1:{self.coap_port} udp", 1),
            ("worker_processes auto;", "worker_processes 2;", 1),
            # nginx logs a 4-tuple's session when it ends: idle ones end (and are logged) sooner.
            ("proxy_timeout 120s;", f"proxy_timeout {PROXY_TIMEOUT_S}s;", 2),
        ]
        for node, gw in enumerate(gateways):
            replacements.append((f"server gw{node}:5684;", f"server 127.0.0.1:{gw.coaps_addr()[1]};", 2))
            replacements.append((f"server gw{node}:5683;", f"server 127.0.0.1:{gw.coap_addr()[1]};", 1))
        if not cid_routing:  # the control: the same balancer without the njs preread
            replacements.append(("js_preread coapgw.preread;", "", 1))
        for old, new, count in replacements:
            if text.count(old) != count:
                raise AssertionError(f"docker/nginx/nginx.conf: expected {count} x {old!r}, found {text.count(old)}")
            text = text.replace(old, new)
        with open(self.conf, "w") as f:
            f.write(text)
        self.args = [NGINX, "-p", workdir + "/", "-c", self.conf, "-e", self.error_log,
                     "-g", f"daemon off; pid {os.path.join(workdir, 'nginx.pid')};"]
        self.proc = None

    def check(self):
        """`nginx -t` on the rewritten config: (ok, output)."""
        r = subprocess.run(self.args + ["-t"], capture_output=True, text=True, timeout=30)
        return r.returncode == 0, r.stdout + r.stderr

    def start(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        # Ready when a plain CoAP GET through it is answered by one of the gateways.
        def answered():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}: {self.logs()}")
            try:
                return h.coap_request(("127.0.0.1", self.coap_port), h.get(".well-known/core"), timeout=0.3)
            except OSError:
                return None
        h.poll_until(answered, 20.0, what="nginx relays a CoAP request")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)  # fast shutdown, by our own child's PID
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def logs(self):
        try:
            return open(self.error_log).read()[-4000:]
        except OSError:
            return ""


class ScaleOutCase(h.GatewayTestCase):
    def setUp(self):
        reason = nginx_missing_reason()
        if reason:
            self.skipTest(reason)
        super().setUp()
        self.gateways = [self.start_gateway(self.node_config(node), name=f"node{node}") for node in range(NODES)]

    def node_config(self, node):
        cfg = h.base_config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}",
                            threads=1, keys=[{"identity": h.DEMO_IDENTITY, "key": h.DEMO_KEY},
                                             {"identity": BENCH_IDENTITY, "key": BENCH_KEY}])
        cfg["log"]["level"] = "info"
        cfg["dtls"]["connection_id"] = {"length": 6, "node_id": node}
        # As in docker/nginx/gateway.yaml: every device comes from nginx's address.
        cfg["dtls"]["max_handshakes_per_ip"] = 0
        cfg["dtls"]["handshake_backoff"] = {"after": 0}
        cfg["sessions"]["persist"] = {"file": os.path.join(self.tmp, f"node{node}.sessions"), "max_age": "1h"}
        return cfg

    def start_nginx(self, cid_routing=True):
        nginx = Nginx(self.tmp, self.gateways, cid_routing)
        ok, output = nginx.check()
        if not ok:
            self.skipTest(f"nginx cannot run docker/nginx/nginx.conf here: {output.strip()[-500:]}")
        nginx.start()
        self.addCleanup(nginx.stop)
        self.nginx = nginx
        return nginx

    def device(self, timeout_ms=5000):
        c = CidClient("127.0.0.1", self.nginx.coaps_port, timeout_ms=timeout_ms)
        self.addCleanup(c.close)
        return c

    def connect(self, c):
        hello = c.command("connect")
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(len(hello["cid"]), 12, hello)
        node = int(hello["cid"][:2], 16)
        self.assertIn(node, range(NODES), hello)
        return node

    def answered_devices(self, count):
        """`count` CID devices through nginx, each answered once: (clients, node id of each)."""
        devices = [self.device() for _ in range(count)]
        owners = [self.connect(c) for c in devices]
        for c in devices:
            self.assertEqual(c.command("get /.well-known/core").get("code"), "2.05")
        return devices, owners

    def total(self, name, gateways=None, **labels):
        return sum(metric(gw, name, **labels) for gw in (gateways or self.gateways))


@unittest.skipIf(nginx_missing_reason(), nginx_missing_reason() or "")
class ScaleOut(ScaleOutCase):
    REBINDS = 8

    def test_rebinding_devices_stay_on_the_gateway_holding_their_session(self):
        self.start_nginx()
        devices, owners = self.answered_devices(4)
        for node, gw in enumerate(self.gateways):
            self.assertEqual(metric(gw, "coapgw_dtls_handshakes_total", result="ok"), owners.count(node), node)
        rebound = []
        for round_ in range(self.REBINDS):
            for c in devices:
                moved = c.command("rebind")
                rebound.append(moved["port"])
                answer = c.command("get /.well-known/core")
                self.assertEqual(answer.get("code"), "2.05", (round_, answer))
                self.assertEqual(answer["port"], moved["port"])
        # No new handshake anywhere; every rebind moved its session on its owner, and no gateway
        # saw a record of a session it does not hold.
        for node, gw in enumerate(self.gateways):
            self.assertEqual(metric(gw, "coapgw_dtls_handshakes_total", result="ok"), owners.count(node), node)
            # (more when nginx, idle PROXY_TIMEOUT_S, gave a device's 4-tuple a new upstream port)
            self.assertGreaterEqual(metric(gw, "coapgw_dtls_address_changes_total"), owners.count(node) * self.REBINDS,
                                    node)
            self.assertEqual(metric(gw, "coapgw_bad_messages_total", reason="dtls_no_session"), 0, node)
        # nginx logs each 4-tuple's session when it ends (PROXY_TIMEOUT_S idle): the first datagram
        # of every rebound 4-tuple went by its CID to the owner.
        def routes():
            with open(self.nginx.access_log) as f:
                lines = [line.split() for line in f]
            return {int(fields[1].rsplit(":", 1)[1]): fields[2] for fields in lines
                    if fields and fields[0] == str(self.nginx.coaps_port)}
        h.poll_until(lambda: set(rebound) <= set(routes()), 10 * PROXY_TIMEOUT_S, what="nginx logged every session")
        self.assertEqual({routes()[port] for port in rebound}, {"cid"}, routes())
        self.assertIn("hash", routes().values(), "the handshakes went by the 4-tuple hash")

    def test_control_without_cid_routing_rebound_devices_get_lost(self):
        # The same nginx.conf without js_preread: a rebound device's new 4-tuple hashes to any of
        # the three gateways; (1/3)^12 is the chance that all 12 land on the owner.
        self.start_nginx(cid_routing=False)
        c = self.device(timeout_ms=1500)
        owner = self.connect(c)
        self.assertEqual(c.command("get /.well-known/core").get("code"), "2.05")
        answered = lost = 0
        for _ in range(12):
            c.command("rebind")
            if c.command("get /.well-known/core").get("code") == "2.05":
                answered += 1
            else:
                lost += 1
        self.assertGreater(lost, 0, "every rebound 4-tuple hashed to the owner: the control shows nothing")
        others = [gw for node, gw in enumerate(self.gateways) if node != owner]
        h.poll_until(lambda: self.total("coapgw_bad_messages_total", others, reason="dtls_no_session") >= lost, 5.0,
                     what="the other gateways counted the records they could not place")
        self.assertEqual(self.total("coapgw_dtls_handshakes_total", result="ok"), 1)

    @unittest.skipUnless(os.access(BENCH, os.X_OK), f"{BENCH} not built")
    def test_bench_cid_clients_rebind_under_load(self):
        self.start_nginx()
        devices = 30
        args = [BENCH, "--mode", "requests", "--cid", "--server", f"127.0.0.1:{self.nginx.coaps_port}",
                "--devices", str(devices), "--duration", "4", "--rebind", "1", "--rebind-hold", str(3 * PROXY_TIMEOUT_S), "--path", ".well-known/core",
                "--timeout", "5", "--rate", "3000", "--open-rate", "200", "--identity", BENCH_IDENTITY, "--key", BENCH_KEY]
        run = subprocess.run(args, capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        result = dict(kv.split("=", 1) for kv in re.search(r"^RESULT (.*)$", run.stdout, re.M).group(1).split())
        note = (f"scaleout bench: {' '.join(args[1:])}\n  {result}\n  handshakes per gateway "
                    f"{[metric(gw, 'coapgw_dtls_handshakes_total', result='ok') for gw in self.gateways]}, "
                    f"address changes {[metric(gw, 'coapgw_dtls_address_changes_total') for gw in self.gateways]}\n")
        os.write(2, note.encode())  # the figures for bench/RESULTS.md
        self.assertEqual(int(result["handshakes"]), devices, result)
        self.assertEqual(int(result["handshake_failures"]), 0, result)
        self.assertEqual(int(result["errors"]), 0, result)
        self.assertGreaterEqual(int(result["rebinds"]), devices, result)
        self.assertGreater(int(result["r2xx"]), int(result["rebinds"]), result)
        self.assertEqual(self.total("coapgw_dtls_handshakes_total", result="ok"), devices)
        self.assertEqual(self.total("coapgw_bad_messages_total", reason="dtls_no_session"), 0)
        # Each rebind moved its session, on the gateway holding it (the last requests may still be
        # on their way when the bench exits).
        h.poll_until(lambda: self.total("coapgw_dtls_address_changes_total") >= int(result["rebinds"]), 5.0,
                     what="an address change per rebind")


@unittest.skipIf(nginx_missing_reason(), nginx_missing_reason() or "")
class Handover(ScaleOutCase):
    def test_replacement_gateway_serves_the_devices_without_handshakes(self):
        self.start_nginx()
        devices, owners = self.answered_devices(6)
        victim = owners[0]
        moving = [c for c, node in zip(devices, owners) if node == victim]
        staying = [c for c, node in zip(devices, owners) if node != victim]

        old = self.gateways[victim]
        old.stop()  # SIGTERM: with sessions.persist the sessions are saved, not closed
        persist = old.config["sessions"]["persist"]["file"]
        self.assertTrue(os.path.exists(persist), "no persist file after a graceful stop")
        # The replacement: a new process with the same node id and persist file (the shared volume),
        # in the same place in the balancer (a StatefulSet pod coming back under its name).
        new = self.start_gateway(old.config, name=f"node{victim}-replacement")
        self.gateways[victim] = new
        self.assertIn(f"restored {len(moving)} DTLS sessions", new.logs())

        for c in moving + staying:  # NATs rebind meanwhile, too
            moved = c.command("rebind")
            answer = c.command("get /.well-known/core")
            self.assertEqual(answer.get("code"), "2.05", answer)
            self.assertEqual(answer["port"], moved["port"])
        self.assertEqual(metric(new, "coapgw_dtls_handshakes_total", result="ok"), 0)
        self.assertEqual(self.total("coapgw_dtls_handshakes_total", result="ok"), len(staying))
        self.assertGreaterEqual(metric(new, "coapgw_dtls_address_changes_total"), len(moving))
        self.assertEqual(self.total("coapgw_bad_messages_total", reason="dtls_no_session"), 0)


DOCKER = os.path.join(h.REPO, "docker")
K8S = os.path.join(DOCKER, "kubernetes")
ALERTS = os.path.join(DOCKER, "prometheus", "alerts.yml")
DASHBOARD = os.path.join(DOCKER, "grafana", "coapgw.json")
PROMTOOL = shutil.which("promtool")
KUBECTL = shutil.which("kubectl")


def load_yaml_documents(path):
    import yaml
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kubernetes_objects():
    return [(name, doc) for name in sorted(os.listdir(K8S)) if name.endswith(".yaml")
            for doc in load_yaml_documents(os.path.join(K8S, name))]


class DeploymentFiles(h.GatewayTestCase):
    """docker/kubernetes, docker/nginx, docker/prometheus and docker/grafana: checked statically,
    and every metric name they use exported by a running gateway."""

    def objects(self, kind):
        return [doc for _, doc in kubernetes_objects() if doc.get("kind") == kind]

    def check_gateway_config(self, text, node):
        """coapgwd --check-config on a deployment's gateway.yaml, its absolute paths moved here."""
        state, secrets = os.path.join(self.tmp, "state"), os.path.join(self.tmp, "secrets")
        os.makedirs(state, exist_ok=True)
        os.makedirs(secrets, exist_ok=True)
        shutil.copy(os.path.join(h.REPO, "config", "psk-keys.yaml"), os.path.join(secrets, "psk-keys.yaml"))
        with open(os.path.join(secrets, "ticket-keys"), "w") as f:
            f.write("00" * 32 + "\n")
        for name in ("psk-keys.yaml", "ticket-keys"):
            os.chmod(os.path.join(secrets, name), 0o600)
        text = (text.replace("@NODE_ID@", str(node)).replace("/var/lib/coapgw", state)
                .replace("/etc/coapgw/secrets", secrets))
        path = os.path.join(self.tmp, f"check-{node}.yaml")
        with open(path, "w") as f:
            f.write(text)
        rc, out, err = h.run_coapgwd(["--config", path, "--check-config"])
        self.assertEqual(rc, 0, out + err)
        self.assertIn(f"node_id: {node}", text)

    def test_kubernetes_manifests(self):
        objects = kubernetes_objects()
        for name, doc in objects:
            for key in ("apiVersion", "kind", "metadata", "spec" if doc.get("kind") != "ConfigMap" else "data"):
                self.assertIn(key, doc, f"{name}: {doc.get('kind')} without {key}")
            self.assertTrue(doc["metadata"].get("name"), name)
        (sts,) = self.objects("StatefulSet")
        spec, pod = sts["spec"], sts["spec"]["template"]
        self.assertEqual(spec["selector"]["matchLabels"], {k: pod["metadata"]["labels"][k] for k in spec["selector"]["matchLabels"]})
        services = {s["metadata"]["name"]: s for s in self.objects("Service")}
        self.assertEqual(services[spec["serviceName"]]["spec"].get("clusterIP"), "None")
        annotations = pod["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        (container,) = pod["spec"]["containers"]
        ports = {p["name"]: p for p in container["ports"]}
        self.assertEqual(annotations["prometheus.io/port"], str(ports["admin"]["containerPort"]))
        self.assertEqual(ports["coaps"]["protocol"], "UDP")
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertIn("memory", container["resources"]["requests"])
        claims = [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]]
        state_mount = [m for m in container["volumeMounts"] if m["name"] in claims]
        self.assertEqual([m["mountPath"] for m in state_mount], ["/var/lib/coapgw"])
        volumes = {v["name"] for v in pod["spec"]["volumes"]} | set(claims)
        self.assertLessEqual({m["name"] for m in container["volumeMounts"]}, volumes)
        grace = pod["spec"]["terminationGracePeriodSeconds"]
        # Every PodDisruptionBudget selects pods of some workload.
        for pdb in self.objects("PodDisruptionBudget"):
            selector = pdb["spec"]["selector"]["matchLabels"]
            self.assertTrue(any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
                                for w in self.objects("StatefulSet") + self.objects("Deployment")), pdb)
        # One per-pod Service gw<N> per replica, as nginx.conf names them; UDP everywhere but admin.
        for node in range(spec["replicas"]):
            selector = services[f"gw{node}"]["spec"]["selector"]
            self.assertEqual(selector, {"statefulset.kubernetes.io/pod-name": f"{sts['metadata']['name']}-{node}"})
        self.assertEqual({p["protocol"] for p in services["coapgw-udp"]["spec"]["ports"]}, {"UDP"})
        # The gateway config of the ConfigMap passes --check-config for every ordinal, drains
        # within the grace period and persists to the pod's volume.
        (config_map,) = self.objects("ConfigMap")
        text = config_map["data"]["gateway.yaml"]
        self.assertIn('persist: { file: "/var/lib/coapgw/', text)
        self.assertLess(int(re.search(r"drain_timeout: (\d+)s", text).group(1)), grace)
        for node in range(spec["replicas"]):
            self.check_gateway_config(text, node)
        # The paths the command and the config name are the mounts the pod has.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        by_name = {v["name"]: v for v in pod["spec"]["volumes"]}
        script = " ".join(container["args"])
        template_dir = re.search(r"(/\S+)/gateway\.yaml >", script).group(1)
        self.assertEqual(by_name[mounts[template_dir]]["configMap"]["name"], config_map["metadata"]["name"])
        run_dir = re.search(r"--config (/\S+)/gateway\.yaml", script).group(1)
        self.assertIn("emptyDir", by_name[mounts[run_dir]])
        for path in re.findall(r'"(/etc/coapgw/[^"]+)"', text):
            self.assertIn("secret", by_name[mounts[os.path.dirname(path)]], path)
        if KUBECTL:
            r = subprocess.run([KUBECTL, "apply", "--dry-run=client", "-f", K8S], capture_output=True, text=True,
                               timeout=120)
            offline = re.search(r"connection refused|failed to download openapi|no such host|unable to recognize",
                                r.stderr)
            if r.returncode != 0 and offline:
                os.write(2, b"kubectl apply --dry-run=client needs an API server here: the checks above stand in\n")
            else:
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_nginx_compose_and_nodes_agree(self):
        with open(os.path.join(DOCKER, "nginx", "coapgw.js")) as f:
            js_nodes = {int(n): u for n, u in re.findall(r"(\d+): '(coapgw_node\d+)'", f.read())}
        with open(NGINX_CONF) as f:
            conf = f.read()
        conf_nodes = {int(n): f"coapgw_node{n}" for n in re.findall(r"upstream coapgw_node(\d+) \{ server gw\1:5684; \}", conf)}
        self.assertEqual(js_nodes, conf_nodes)
        (sts,) = self.objects("StatefulSet")
        self.assertEqual(set(js_nodes), set(range(sts["spec"]["replicas"])))
        (compose,) = load_yaml_documents(os.path.join(DOCKER, "nginx", "compose.yaml"))
        gateways = {name: svc for name, svc in compose["services"].items() if re.fullmatch(r"gw\d+", name)}
        self.assertEqual({int(svc["environment"]["NODE_ID"]) for svc in gateways.values()}, set(js_nodes))
        self.assertEqual({name: int(svc["environment"]["NODE_ID"]) for name, svc in gateways.items()},
                         {f"gw{n}": n for n in js_nodes})
        with open(os.path.join(DOCKER, "nginx", "gateway.yaml")) as f:
            template = f.read()
        for node in js_nodes:
            self.check_gateway_config(template, node)
        # Every file the compose file mounts or builds from exists.
        here = os.path.join(DOCKER, "nginx")
        for name, svc in compose["services"].items():
            for volume in svc.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    self.assertTrue(os.path.exists(os.path.join(here, source)), f"{name}: {volume}")
            if "build" in svc:
                context = os.path.join(here, svc["build"]["context"])
                self.assertTrue(os.path.isfile(os.path.join(context, svc["build"]["dockerfile"])), name)
        # Prometheus scrapes each gateway's admin listener; the drain ends before the kill.
        import yaml
        admin_port = int(re.search(r'admin: "0\.0\.0\.0:(\d+)"', template).group(1))
        with open(os.path.join(DOCKER, "prometheus", "cluster.yml")) as f:
            prom = yaml.safe_load(f)
        targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
        self.assertEqual(sorted(targets), sorted(f"{name}:{admin_port}" for name in gateways))
        self.assertEqual({job["job_name"] for job in prom["scrape_configs"]}, {"coapgw"})  # alerts.yml's up{job=}
        drain = int(re.search(r"drain_timeout: (\d+)s", template).group(1))
        for svc in gateways.values():
            self.assertGreater(int(svc["stop_grace_period"].rstrip("s")), drain)
        # Grafana's provisioned data source is the one the dashboard defaults to.
        (datasource,) = load_yaml_documents(os.path.join(DOCKER, "grafana", "provisioning", "datasources",
                                                         "prometheus.yml"))[0]["datasources"]
        with open(DASHBOARD) as f:
            variables = {v["name"]: v for v in json.load(f)["templating"]["list"]}
        self.assertEqual(variables["datasource"]["current"]["value"], datasource["uid"])

    @unittest.skipUnless(PROMTOOL, "promtool is not installed (Debian: prometheus)")
    def test_alert_rules_and_prometheus_configs_pass_promtool(self):
        for args in (["check", "rules", ALERTS],
                     ["check", "config", os.path.join(DOCKER, "prometheus", "cluster.yml")],
                     ["check", "config", os.path.join(DOCKER, "prometheus.yml")]):
            r = subprocess.run([PROMTOOL] + args, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("SUCCESS", r.stdout + r.stderr)

    def test_every_metric_in_dashboard_and_alerts_is_exported(self):
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
        rules = load_yaml_documents(ALERTS)[0]["groups"][0]["rules"]
        exprs += [r["expr"] for r in rules]
        used = set(re.findall(r"\bcoapgw_[a-z_]+", " ".join(exprs)))
        self.assertGreater(len(used), 10, used)
        self.assertEqual({p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}, {"${datasource}"})
        # A gateway with a route and a CID, after one request, exports every family.
        cfg = self.config(coaps=[f"127.0.0.1:{h.free_udp_port()}"], admin=f"127.0.0.1:{h.free_tcp_port()}")
        cfg["dtls"]["connection_id"] = {"length": 6, "node_id": 0}
        self.gw = self.start_gateway(cfg)
        reply = h.coap_request(self.gw.coap_addr(), h.get("telemetry/x"))
        self.assertIsNotNone(reply)
        status, body = h.http_get(self.gw.admin_url("/metrics"))
        self.assertEqual(status, 200)
        exported = {m.group(1) for m in re.finditer(r"^([a-z_:]+)[{ ]", body, re.M)}
        self.assertEqual(sorted(n for n in used if n not in exported), [])


if __name__ == "__main__":
    unittest.main()
