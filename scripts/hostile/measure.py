#!/usr/bin/env python3
"""Attacks a generation endpoint the way tests/hostile.rs does, and measures what each costs.

    python3 scripts/hostile/measure.py BINARY WORKDIR [--limits] [--skip=lying,bombs,deadline]

BINARY is a nicheimage-tui build (any version: this is how the before/after figures in the
closing notes were taken); WORKDIR a scratch folder. `--limits` adds the `[limits]` section,
which older builds refuse. Loopback only; standard library only. Prints one JSON object per
attack: HTTP status (or "process died"), seconds, and the peak resident memory of the node and
its replicas together, in MiB.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(width, height, rows=None):
    """A PNG claiming width×height; with rows, its real zero pixels, deflated (a bomb)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    z = zlib.compressobj(9)
    data = b""
    if rows:
        row = b"\0" * (width * 3 + 1)
        data = b"".join(z.compress(row) for _ in range(rows)) + z.flush()
    else:
        data = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def tree_rss_mib(pid):
    """Resident memory of pid and its children, MiB."""
    total, pids = 0, [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(entry))
            except OSError:
                pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Peak:
    """Samples a process tree's RSS every 50 ms while in a `with` block."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, False

    def __enter__(self):
        self.base = tree_rss_mib(self.pid)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, tree_rss_mib(self.pid))
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()

    @property
    def growth(self):
        return round(max(0.0, self.peak - self.base), 1)


def post(port, path, body, timeout=120):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: application/json\r\n\r\n".encode() + body
    )
    raw = b""
    try:
        while chunk := s.recv(65536):
            raw += chunk
    except OSError:
        pass
    s.close()
    head = raw.split(b"\r\n", 1)[0].split()
    return int(head[1]) if len(head) > 1 else 0, raw.split(b"\r\n\r\n", 1)[-1][:200].decode("utf8", "replace")


def job(width=64, steps=4, image=None):
    body = {
        "prompt": "a lighthouse",
        "seed": 3,
        "pipeline_type": "img2img" if image else "txt2img",
        "pipeline_params": {"width": width, "height": width, "num_inference_steps": steps},
    }
    if image:
        body["conditional_image"] = base64.b64encode(image).decode()
    return json.dumps(body).encode()


class Node:
    def __init__(self, binary, work, limits):
        self.binary, self.work, self.port = binary, work, free_port()
        os.makedirs(work, exist_ok=True)
        subprocess.run([binary, "tiny-checkpoint", "--out", f"{work}/model", "--name", "tiny"], check=True, capture_output=True)
        config = (
            '[node]\ndevice = "cpu"\n[metrics]\nenabled = false\n'
            f'[models.Tiny]\narch = "sd15"\ncheckpoint = "{work}/model/tiny.safetensors"\n'
            'pipelines = ["txt2img", "img2img"]\n'
            f'[endpoint]\nmodel_name = "Tiny"\nhost = "127.0.0.1"\nport = {self.port}\nrequest_timeout_secs = 30\n'
        )
        if limits:
            config += "[limits]\nmax_connections = 256\nheader_timeout = 10.0\nbody_timeout = 30.0\n"
        with open(f"{work}/config.toml", "w") as f:
            f.write(config)
        self.proc = None

    def ensure(self):
        if self.proc and self.proc.poll() is None:
            return
        log = open(f"{self.work}/node.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--no-ui", "endpoint", "--config", f"{self.work}/config.toml", "--data-dir", f"{self.work}/data"],
            stdout=subprocess.DEVNULL, stderr=log,
            # A usual system's limits: soft 1024 open files, hard 4096.
            preexec_fn=lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (1024, 4096)),
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if post(self.port, "/generate", job(), timeout=10)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("the node did not serve within 120 s")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc and self.alive():
            self.proc.terminate()
            self.proc.wait(20)


def report(name, **fields):
    print(json.dumps({"attack": name, **fields}), flush=True)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    node = Node(binary, work, "--limits" in sys.argv)
    skip = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--skip=")), [])
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        node.ensure()
        if "lying" not in skip:
            with Peak(node.proc.pid) as peak:
                t = time.time()
                status, body = post(node.port, "/generate", job(image=png(200_000, 200_000)))
            report("lying PNG 200000x200000", status=status if node.alive() else "process died",
                   seconds=round(time.time() - t, 2), rss_growth_mib=peak.growth, reason=body)

        node.ensure()
        if "bombs" not in skip:
            bomb_path = f"{work}/bomb.png"
            if not os.path.exists(bomb_path):
                with open(bomb_path, "wb") as f:
                    f.write(png(20_000, 20_000, rows=20_000))
            bomb = open(bomb_path, "rb").read()
            answers = []
            with Peak(node.proc.pid) as peak:
                t = time.time()
                threads = [
                    threading.Thread(target=lambda: answers.append(post(node.port, "/generate", job(image=bomb), timeout=300)[0]))
                    for _ in range(4)
                ]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            report(f"4 bombs 20000x20000 ({len(bomb) / 1e6:.1f} MB each)", statuses=answers if node.alive() else "process died",
                   seconds=round(time.time() - t, 2), rss_growth_mib=peak.growth)

        node.ensure()
        if "deadline" not in skip:
            t = time.time()
            status, _ = post(node.port, "/generate", job(width=384, steps=50))
            late = round(time.time() - t, 2)
            t = time.time()
            after, _ = post(node.port, "/generate", job(), timeout=300)
            report("job past its deadline (384², 50 steps, 30 s timeout)", status=status, seconds=late,
                   next_honest_status=after, next_honest_seconds=round(time.time() - t, 2))

        node.ensure()
        held = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", node.port))
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        time.sleep(15)
        still = 0
        for s in held:
            s.setblocking(False)
            try:
                still += s.recv(1) != b""
            except BlockingIOError:
                still += 1
            except OSError:
                pass
            s.close()
        report("300 half-sent requests, 15 s later", still_open=still, alive=node.alive())

        node.ensure()
        idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(1100)]

        def honest(name):
            t = time.time()
            try:
                status, _ = post(node.port, "/generate", job(), timeout=10)
            except OSError as e:
                status = f"failed: {e}"
            report(name, status=status, seconds=round(time.time() - t, 2), alive=node.alive())

        time.sleep(1)
        honest("1100 idle connections, then an honest request")
        time.sleep(11)
        honest("the same, 11 s later (the idle ones still open on our side)")
        for s in idle:
            s.close()
    finally:
        node.stop()


if __name__ == "__main__":
    main()
