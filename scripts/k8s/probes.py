"""Checks rendered manifests against the node they run: every probe's path is one the metrics
listener serves (/healthz, /readyz, /metrics: tests/headless.rs asserts each), on the port the
pod's own config has it listen on, reachable from the kubelet (0.0.0.0); every named service
port is the port that config gives the role; every config file loads in the real binary."""
import argparse
import subprocess
import sys
import tempfile
import tomllib

import yaml

SERVED = {"/healthz", "/readyz", "/metrics"}
# The container port name -> the config key of the listener behind it.
LISTENERS = {
    "generate": ("endpoint", "host", "port"),
    "reward": ("reward", "host", "port"),
    "axon": ("axon", "host", "port"),
}


def fail(message):
    print(f"probes.py: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("rendered")
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(open(args.rendered)) if d]
    configs = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            configs.update(d.get("data", {}))
    checked = 0
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            where = f"{d['kind']}/{d['metadata']['name']}/{c['name']}"
            argv = c.get("args", [])
            if "--config" not in argv:
                fail(f"{where}: no --config")
            path = argv[argv.index("--config") + 1]
            name = path.rsplit("/", 1)[-1]
            if name not in configs:
                fail(f"{where}: {name} is not in the ConfigMap")
            text = configs[name]
            config = tomllib.loads(text)
            # The real binary loads it: exit 2 is a configuration error, 1 the probe's refusal.
            with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
                f.write(text)
                f.flush()
                run = subprocess.run(
                    [args.bin, "--config", f.name, "healthcheck", "--address", "127.0.0.1:9", "--timeout", "1"],
                    capture_output=True, text=True,
                )
                if run.returncode == 2:
                    fail(f"{where}: {name} does not load: {run.stderr.strip()}")
            role = argv[-1]
            if role not in ("endpoint", "miner", "validator", "reward"):
                fail(f"{where}: unknown role {role!r}")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            host, _, port = config.get("metrics", {}).get("listen", "127.0.0.1:9646").rpartition(":")
            if host != "0.0.0.0":
                fail(f"{where}: metrics.listen {host}:{port} is not reachable by the kubelet")
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                get = probe.get("httpGet") or fail(f"{where}: {kind} is not an httpGet")
                if get["path"] not in SERVED:
                    fail(f"{where}: {kind} path {get['path']} is not served")
                target = ports.get(get["port"], get["port"])
                if str(target) != port:
                    fail(f"{where}: {kind} port {target} is not metrics.listen's {port}")
                checked += 1
            for port_name, (section, host_key, port_key) in LISTENERS.items():
                if port_name not in ports:
                    continue
                block = config.get(section, {})
                if block.get(host_key, "0.0.0.0") != "0.0.0.0":
                    fail(f"{where}: [{section}] {host_key} is not 0.0.0.0")
                if block.get(port_key) != ports[port_name]:
                    fail(f"{where}: port {port_name} {ports[port_name]} is not [{section}] {port_key}")
    if checked == 0:
        fail("no probes found")
    print(f"probes.py: {checked} probes in {args.rendered} match what the node serves")


if __name__ == "__main__":
    main()
