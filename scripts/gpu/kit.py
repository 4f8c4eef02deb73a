"""The GPU proof kit: our engine against diffusers 0.42.1 on one machine, same seeds.

    python3 kit.py --binary nicheimage-tui --out DIR [--device cuda|cpu] [--budget-secs S] [--check]

With `--device cuda` (the lent GPU, see scripts/gpu/README.md) it uses the real SD 1.5 and SDXL
architectures; with `--device cpu` tiny ones (the smoke run in .ci/run). Either way it:

  1. models   builds random-weight pipelines with diffusers, saves each as a diffusers folder
              and as a civitai-style fp16 single file, and checks that diffusers reads every
              tensor of the single file back unchanged;
  2. parity   renders every sampler, txt2img and img2img, with diffusers and with our engine
              (`generate --batch`), in the dtype we serve from the single file and in fp32 from
              the folder: max pixel difference and average-hash distance per case;
  3. speed    serves a full-size request stream through our endpoint (1 and 2 replicas on the
              device) and through diffusers pipelines run the same way (both load the folder): images/s, latency p50/p95,
              memory per replica, model load time, the ratio; the endpoint's images are compared
              with diffusers' too;
  4. reward   judges diffusers' images and ours with our reward service: verdicts, judges/s.

DIR gets report.json (everything) and report.md (the tables). The report is rewritten after
every stage, so a run cut short still says what it measured. `--check` exits 1 when parity or
the judge disagree (the CPU smoke run in CI; on a GPU the numbers are findings, not a gate).
"""

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "parity")]

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import imagehash  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline  # noqa: E402
from PIL import Image  # noqa: E402
import diffusers  # noqa: E402
import transformers  # noqa: E402
import warnings  # noqa: E402

# The report is the output; the libraries' progress bars and advice are noise around it.
diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore")

import models  # noqa: E402
from img2img import photo_like, resize_for_condition_image  # noqa: E402
from sd15 import NEGATIVE, SCHEDULERS  # noqa: E402

# What each device runs. GPU: parity at sizes that keep 32 cases inside a 5-minute call on an
# H100 (estimated: models 60 s, parity 100 s, speed 130 s, reward 25 s), speed at NicheImage's
# sizes (SD 1.5 512x768 / 30 steps, SDXL 1024² / 25 steps).
PROFILES = {
    "cuda": dict(
        tiny=False,
        layouts=[("fp16", "single_file"), ("fp32", "folder")],
        parity={"sd15": dict(width=512, height=512, steps=10, resolution=512),
                "sdxl": dict(width=512, height=768, steps=8, resolution=512),
                "flux": dict(width=512, height=384, steps=4, resolution=0)},
        speed={"sd15": dict(width=512, height=768, steps=30, requests=6),
               "sdxl": dict(width=1024, height=1024, steps=25, requests=4),
               "flux": dict(width=1024, height=1024, steps=4, requests=4)},
        replicas=[1, 2],
        judges=3,
    ),
    "cpu": dict(
        tiny=True,
        layouts=[("fp32", "single_file"), ("fp32", "folder")],
        parity={"sd15": dict(width=64, height=128, steps=4, resolution=64),
                "sdxl": dict(width=96, height=64, steps=4, resolution=64),
                "flux": dict(width=64, height=48, steps=4, resolution=0)},
        speed={"sd15": dict(width=64, height=128, steps=4, requests=4),
               "sdxl": dict(width=96, height=64, steps=4, requests=4),
               "flux": dict(width=64, height=64, steps=4, requests=4)},
        replicas=[1, 2],
        judges=2,
    ),
}

PROMPTS = ["a lighthouse on a cliff at dusk, oil painting", "portrait of an old sailor, 35mm photo",
           "Ünïcode café — naïve résumé at night", "a bowl of ramen, studio lighting, top view"]
HASH_LIMIT = 6  # validators accept an image within this average-hash distance


class Report:
    def __init__(self, out):
        self.out, self.started, self.data = out, time.time(), dict(stages={})

    def stage(self, name, value):
        self.data["stages"][name] = value
        self.write()

    def write(self):
        self.data["seconds"] = round(time.time() - self.started, 1)
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "report.json"), "w") as f:
            json.dump(self.data, f, indent=1)
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write(render(self.data))


def log(*args):
    print("kit:", *args, file=sys.stderr, flush=True)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


# --- 1. models -----------------------------------------------------------------------------------

def make_models(args, profile, vocab):
    made = {}
    for arch in profile["parity"]:
        started = time.time()
        pipe = models.build(arch, profile["tiny"], vocab, args.device)
        info = models.save(pipe, args.work, arch)
        info["single_file_mismatches"] = []
        if info["single_file"]:
            loaded = models.load(arch, info["single_file"], info["folder"], torch.float16, args.device)
            info["single_file_mismatches"] = models.check_single_file(pipe, loaded)[:20]
            del loaded
        info["build_secs"] = round(time.time() - started, 1)
        del pipe
        free(args.device)
        made[arch] = info
        log(arch, "saved:", info["params"], "mismatches:", len(info["single_file_mismatches"]))
    return made


def free(device):
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# --- 2. parity -----------------------------------------------------------------------------------

def parity_cases(arch, size, work):
    """Every sampler, txt2img and img2img; seeds, prompts and guidance vary between cases.
    FLUX.1-schnell: txt2img with its own sampler, no guidance, 1 to 4 steps."""
    if arch == "flux":
        return [dict(name=f"flux-txt2img-{steps}", arch=arch, sampler="dpm++2m_karras", mode="txt2img",
                     prompt=PROMPTS[i], negative_prompt=None, seed=2000 + 31 * i, steps=steps, guidance_scale=0.0,
                     width=size["width"] + 16 * i, height=size["height"]) for i, steps in enumerate([1, 2, 4])]
    cases = []
    for i, sampler in enumerate(SCHEDULERS):
        for mode in ("txt2img", "img2img"):
            n = len(cases)
            case = dict(name=f"{arch}-{sampler}-{mode}", arch=arch, sampler=sampler, mode=mode,
                        prompt=PROMPTS[n % len(PROMPTS)], negative_prompt=NEGATIVE if n % 3 == 0 else None,
                        seed=1000 + 97 * n, steps=size["steps"], guidance_scale=[7.5, 5.0, 7.0][n % 3],
                        width=size["width"], height=size["height"])
            if mode == "img2img":
                path = os.path.join(work, f"input-{arch}-{n}.png")
                side = size["resolution"]
                photo_like(side * 3 // 2 + 7 * i, side + 5 * i, seed=n).save(path)
                case.update(image=path, strength=[0.6, 0.75][i % 2], resolution=side)
            cases.append(case)
    return cases


def diffusers_image(pipe, case):
    if case["arch"] == "flux":
        return pipe(prompt=case["prompt"], width=case["width"], height=case["height"],
                    num_inference_steps=case["steps"], guidance_scale=0.0, max_sequence_length=256,
                    generator=torch.manual_seed(case["seed"])).images[0]
    base = pipe.scheduler_base
    cls, extra = SCHEDULERS[case["sampler"]]
    pipe.scheduler = cls.from_config(base, **extra)
    kwargs = dict(prompt=case["prompt"], negative_prompt=case["negative_prompt"],
                  num_inference_steps=case["steps"], guidance_scale=case["guidance_scale"],
                  generator=torch.manual_seed(case["seed"]))
    if case["mode"] == "img2img":
        img2img = StableDiffusionXLImg2ImgPipeline if case["arch"] == "sdxl" else StableDiffusionImg2ImgPipeline
        runner = img2img(**pipe.components)
        runner.set_progress_bar_config(disable=True)
        image = resize_for_condition_image(Image.open(case["image"]), case["resolution"])
        return runner(image=image, strength=case["strength"], **kwargs).images[0]
    return pipe(width=case["width"], height=case["height"], **kwargs).images[0]


def ours_batch(args, checkpoint, config_dir, dtype, cases, out_dir):
    """Our engine on every case from one load: (load seconds, {name: (image, seconds)})."""
    os.makedirs(out_dir, exist_ok=True)
    batch = os.path.join(out_dir, "batch.jsonl")
    with open(batch, "w") as f:
        for c in cases:
            line = dict(out=os.path.join(out_dir, c["name"] + ".png"), prompt=c["prompt"],
                        negative_prompt=c["negative_prompt"], seed=c["seed"], steps=c["steps"],
                        guidance_scale=c["guidance_scale"], width=c["width"], height=c["height"],
                        scheduler=c["sampler"])
            if c["mode"] == "img2img":
                line.update(image=c["image"], strength=c["strength"], condition_resolution=c["resolution"])
            f.write(json.dumps(line) + "\n")
    cmd = [args.binary, "generate", "--checkpoint", checkpoint, "--batch", batch,
           "--device", args.device, "--dtype", dtype]
    if config_dir:
        cmd += ["--config-dir", config_dir]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.remaining(), env=args.env)
    if done.returncode != 0:
        raise RuntimeError(f"generate --batch failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    head, results = lines[0], lines[1:]
    images = {}
    for c, r in zip(cases, results):
        images[c["name"]] = (Image.open(r["out"]).convert("RGB"), r["seconds"])
    return head, images


def compare(a, b):
    x, y = np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.int16)
    if x.shape != y.shape:
        return dict(max_diff=None, mean_diff=None, hash_distance=None, shape=[list(x.shape), list(y.shape)])
    d = np.abs(x - y)
    return dict(max_diff=int(d.max()), mean_diff=round(float(d.mean()), 3),
                hash_distance=int(imagehash.average_hash(a) - imagehash.average_hash(b)),
                pixel_std=round(float(x.std()), 1))


def parity(args, profile, made):
    rows = []
    dtypes = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}
    for arch, size in profile["parity"].items():
        cases = parity_cases(arch, size, args.work)
        for dtype, layout in layouts(profile, arch):
            if args.remaining() < 30:
                rows.append(dict(arch=arch, dtype=dtype, layout=layout, skipped="time budget"))
                continue
            info = made[arch]
            path = info[layout]
            pipe = models.load(arch, path, info["folder"], dtypes[dtype], args.device)
            pipe.scheduler_base = dict(pipe.scheduler.config)
            theirs = {}
            for c in cases:
                started = time.time()
                theirs[c["name"]] = (diffusers_image(pipe, c), time.time() - started)
            del pipe
            free(args.device)
            config_dir = info["folder"] if layout == "single_file" else None
            head, ours = ours_batch(args, path, config_dir, dtype, cases,
                                    os.path.join(args.work, f"ours-{arch}-{dtype}-{layout}"))
            for c in cases:
                image, secs = ours[c["name"]]
                row = dict(case=c["name"], arch=arch, dtype=dtype, layout=layout, sampler=c["sampler"],
                           mode=c["mode"], size=f"{image.width}x{image.height}", steps=c["steps"],
                           ours_secs=round(secs, 3), diffusers_secs=round(theirs[c["name"]][1], 3),
                           ours_load_secs=round(head["load_secs"], 2))
                row.update(compare(image, theirs[c["name"]][0]))
                rows.append(row)
                if args.keep_images:
                    image.save(os.path.join(args.out, f"{c['name']}-{dtype}-ours.png"))
                    theirs[c["name"]][0].save(os.path.join(args.out, f"{c['name']}-{dtype}-diffusers.png"))
            log(arch, dtype, layout, "max diff", max((r.get("max_diff") or 0) for r in rows[-len(cases):]))
    return dict(cases=rows, summary=parity_summary(rows))


def parity_summary(rows):
    out = {}
    for r in rows:
        if "skipped" in r:
            continue
        key = f"{r['arch']} {r['dtype']} {r['layout']}"
        s = out.setdefault(key, dict(cases=0, max_diff=0, hash_distances={}, within_validator_limit=0))
        s["cases"] += 1
        s["max_diff"] = max(s["max_diff"], r["max_diff"] if r["max_diff"] is not None else 255)
        d = r["hash_distance"]
        s["hash_distances"][str(d)] = s["hash_distances"].get(str(d), 0) + 1
        s["within_validator_limit"] += int(d is not None and d <= HASH_LIMIT)
    return out


# --- 3. speed ------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def layouts(profile, arch):
    """FLUX is served from its folder, in bf16 on a GPU."""
    if arch != "flux":
        return profile["layouts"]
    return [("bf16", "folder"), ("fp32", "folder")] if not profile["tiny"] else [("fp32", "folder")]


def guidance(arch):
    return 0.0 if arch == "flux" else 7.5


def model_toml(name, arch, checkpoint, size):
    return (f'[models.{name}]\narch = "{arch}"\ncheckpoint = "{checkpoint}"\nscheduler = "dpm++2m_karras"\n'
            f'nsfw_filter = false\ntimeout_secs = 600.0\nmax_side = {max(size["width"], size["height"])}\n'
            f'[models.{name}.defaults]\nnum_inference_steps = {size["steps"]}\nwidth = {size["width"]}\n'
            f'height = {size["height"]}\nguidance_scale = {guidance(arch)}\n')


class Node:
    """One `nicheimage-tui --no-ui <role>` on loopback, with its own data dir."""

    def __init__(self, args, role, config, name):
        self.dir = os.path.join(args.work, name)
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "config.toml")
        with open(path, "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.dir, "stderr.log"), "w")
        self.proc = subprocess.Popen([args.binary, "--no-ui", *role, "--config", path, "--data-dir",
                                      os.path.join(self.dir, "data")], stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=args.env, start_new_session=True)
        self.started = time.time()

    def wait_ready(self, metrics_port, deadline):
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited ({self.proc.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        return time.time() - self.started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError("node not ready before the time budget")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def device_free_mib(device):
    """Free memory on the card, whoever holds the rest (our replicas are other processes; a
    container often hides their pids from nvidia-smi)."""
    return torch.cuda.mem_get_info()[0] / 2**20 if device == "cuda" else None


def per_replica(before, after, replicas):
    return None if before is None else round((before - after) / replicas)


def requests_for(arch, size, count):
    negative = None if arch == "flux" else NEGATIVE
    return [dict(prompt=PROMPTS[i % len(PROMPTS)], seed=5000 + i, pipeline_type="txt2img",
                 pipeline_params=dict(num_inference_steps=size["steps"], width=size["width"], height=size["height"],
                                      guidance_scale=guidance(arch), negative_prompt=negative))
            for i in range(count)]


def drive(workers, work, jobs):
    """Runs `work(worker, job)` for every job over `workers` threads; latencies and wall time."""
    latencies, results, lock, queue = [], {}, threading.Lock(), list(enumerate(jobs))

    def run(worker):
        while True:
            with lock:
                if not queue:
                    return
                i, job = queue.pop(0)
            started = time.time()
            result = work(worker, job)
            with lock:
                latencies.append(time.time() - started)
                results[i] = result

    started = time.time()
    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.time() - started, [results[i] for i in range(len(jobs))]


def timing(latencies, wall, n):
    q = sorted(latencies)
    pct = lambda p: round(q[min(len(q) - 1, int(p * len(q)))], 3)  # noqa: E731
    return dict(images=n, images_per_sec=round(n / wall, 3), p50_secs=pct(0.5), p95_secs=pct(0.95))


def decode(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def speed_ours(args, arch, info, size, replicas, jobs):
    name = f"Kit{arch.upper()}"
    port, metrics = free_port(), free_port()
    config = (f'[node]\ndevice = "{args.device}"\nstatus_interval_secs = 5\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
              f'{model_toml(name, arch, info["folder"], size)}[endpoint]\nmodel_name = "{name}"\n'
              f'host = "127.0.0.1"\nport = {port}\nnum_replicas = {replicas}\nnum_gpus = {1.0 / replicas}\n'
              f'queue_capacity = 64\nrequest_timeout_secs = 600\nload_timeout_secs = 600\n')
    free_before = device_free_mib(args.device)
    node = Node(args, ["endpoint"], config, f"endpoint-{arch}-{replicas}")
    try:
        load = node.wait_ready(metrics, time.time() + args.remaining())
        url = f"http://127.0.0.1:{port}/generate"
        # Warm-up: every replica draws once (the first draw of a process builds its kernels).
        drive(replicas, lambda _w, j: post(url, j, args.remaining()), jobs[:replicas])
        lat, wall, answers = drive(replicas, lambda _w, j: post(url, j, args.remaining()), jobs)
        result = dict(side="ours", replicas=replicas, load_secs=round(load, 2), **timing(lat, wall, len(jobs)),
                      gpu_mib_per_replica=per_replica(free_before, device_free_mib(args.device), replicas))
        return result, [decode(a["image"]) for a in answers]
    finally:
        node.stop()


def speed_diffusers(args, arch, info, size, replicas, jobs):
    free_before = device_free_mib(args.device)
    started = time.time()
    pipes = []
    for _ in range(replicas):
        pipe = models.load(arch, info["folder"], info["folder"], dtype_served(args, arch), args.device)
        if arch != "flux":
            cls, extra = SCHEDULERS["dpm++2m_karras"]
            pipe.scheduler = cls.from_config(pipe.scheduler.config, **extra)
        pipes.append(pipe)
    sync(args.device)
    load = (time.time() - started) / replicas

    def one(worker, job):
        p = job["pipeline_params"]
        # A generator per request (equal to NicheImage's torch.manual_seed draw): threads share
        # the global one.
        generator = torch.Generator().manual_seed(job["seed"])
        if arch == "flux":
            return pipes[worker](prompt=job["prompt"], num_inference_steps=p["num_inference_steps"], guidance_scale=0.0,
                                 width=p["width"], height=p["height"], max_sequence_length=256,
                                 generator=generator).images[0]
        return pipes[worker](prompt=job["prompt"], negative_prompt=p["negative_prompt"],
                             num_inference_steps=p["num_inference_steps"], guidance_scale=p["guidance_scale"],
                             width=p["width"], height=p["height"], generator=generator).images[0]

    drive(replicas, one, jobs[:replicas])
    lat, wall, images = drive(replicas, one, jobs)
    result = dict(side="diffusers", replicas=replicas, load_secs=round(load, 2), **timing(lat, wall, len(jobs)),
                  gpu_mib_per_replica=per_replica(free_before, device_free_mib(args.device), replicas))
    del pipes
    free(args.device)
    return result, images


def dtype_served(args, arch):
    if args.device != "cuda":
        return torch.float32
    return torch.bfloat16 if arch == "flux" else torch.float16


def speed(args, profile, made):
    rows, endpoint_parity, kept = [], [], {}
    for arch, size in profile["speed"].items():
        jobs = requests_for(arch, size, size["requests"])
        for replicas in profile["replicas"]:
            if args.remaining() < 60:
                rows.append(dict(arch=arch, replicas=replicas, skipped="time budget"))
                continue
            ours, our_images = speed_ours(args, arch, made[arch], size, replicas, jobs)
            theirs, their_images = speed_diffusers(args, arch, made[arch], size, replicas, jobs)
            for r in (ours, theirs):
                r.update(arch=arch, size=f"{size['width']}x{size['height']}", steps=size["steps"])
            ours["ratio"] = round(theirs["images_per_sec"] / ours["images_per_sec"], 3)
            rows += [ours, theirs]
            if replicas == 1:
                for job, a, b in zip(jobs, our_images, their_images):
                    endpoint_parity.append(dict(arch=arch, seed=job["seed"], **compare(a, b)))
                kept[arch] = (jobs, our_images, their_images)
            log(arch, replicas, "replicas: ours", ours["images_per_sec"], "img/s, diffusers", theirs["images_per_sec"])
    return dict(runs=rows, endpoint_parity=endpoint_parity), kept


# --- 4. reward -----------------------------------------------------------------------------------

def reward(args, profile, made, kept):
    arch = "sdxl" if "sdxl" in kept else next(iter(kept), None)
    if arch is None or args.remaining() < 30:
        return dict(skipped="no speed images" if arch is None else "time budget")
    jobs, ours, theirs = kept[arch]
    size = profile["speed"][arch]
    name = f"Kit{arch.upper()}"
    port, metrics = free_port(), free_port()
    config = (f'[node]\ndevice = "{args.device}"\nstatus_interval_secs = 5\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
              f'{model_toml(name, arch, made[arch]["folder"], size)}[reward]\nmodel_name = "{name}"\n'
              f'host = "127.0.0.1"\nport = {port}\nrate_limit_per_minute = 100000\nnum_replicas = 1\n')
    node = Node(args, ["reward", "--disable_secure"], config, f"reward-{arch}")
    black = Image.new("RGB", (size["width"], size["height"]))
    b64 = lambda im: base64.b64encode(png(im)).decode()  # noqa: E731
    verdicts, latencies = [], []
    try:
        load = node.wait_ready(metrics, time.time() + args.remaining())
        for i in range(min(profile["judges"], len(jobs))):
            base = dict(jobs[i], image="")
            miners = [dict(jobs[i], image=b64(im)) for im in (theirs[i], ours[i], black)]
            started = time.time()
            answer = post(f"http://127.0.0.1:{port}/", dict(base_data=base, miner_data=miners), args.remaining())
            latencies.append(time.time() - started)
            verdicts.append(dict(seed=jobs[i]["seed"], diffusers_image=answer["rewards"][0],
                                 our_image=answer["rewards"][1], black=answer["rewards"][2],
                                 reasons=answer.get("reasons")))
    finally:
        node.stop()
    return dict(arch=arch, size=f"{size['width']}x{size['height']}", steps=size["steps"], load_secs=round(load, 2),
                judges=len(latencies), judges_per_sec=round(len(latencies) / sum(latencies), 3) if latencies else None,
                verdicts=verdicts)


def png(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# --- report --------------------------------------------------------------------------------------

def table(rows, cols):
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render(data):
    st, env = data["stages"], data.get("env", {})
    where = env.get("gpu") or f"cpu ({env.get('cpu_threads')} threads)"
    out = [f"# GPU proof kit: {where}\n",
           f"torch {env.get('torch')}, diffusers {env.get('diffusers')}, {data.get('seconds')} s, "
           f"verdict: {data.get('verdict', 'running')}\n"]
    if "models" in st:
        out.append("\n## Models (random weights, made by diffusers)\n\n")
        out.append(table([dict(arch=a, params=sum(m["params"].values()), file_mb=round(m["file_bytes"] / 2**20),
                               single_file_mismatches=len(m["single_file_mismatches"]), build_secs=m["build_secs"])
                          for a, m in st["models"].items()],
                         ["arch", "params", "file_mb", "single_file_mismatches", "build_secs"]))
    if "parity" in st:
        out.append("\n## Parity (ours vs diffusers, same seeds)\n\n")
        out.append(table([dict(group=k, **v) for k, v in st["parity"]["summary"].items()],
                         ["group", "cases", "max_diff", "hash_distances", "within_validator_limit"]))
        out.append("\n")
        out.append(table(st["parity"]["cases"], ["case", "dtype", "layout", "size", "steps", "max_diff", "mean_diff",
                                                 "hash_distance", "pixel_std", "ours_secs", "diffusers_secs"]))
    if "speed" in st:
        out.append(f"\n## Speed ({env.get('served_dtype')}, the dtype served on this device; ratio = our time per "
                   "image / diffusers', below 1 = we are faster)\n\n")
        out.append(table(st["speed"]["runs"], ["arch", "size", "steps", "side", "replicas", "images_per_sec",
                                               "ratio", "p50_secs", "p95_secs", "load_secs",
                                               "gpu_mib_per_replica", "skipped"]))
        out.append("\nEndpoint images vs diffusers (same requests):\n\n")
        out.append(table(st["speed"]["endpoint_parity"], ["arch", "seed", "max_diff", "mean_diff", "hash_distance"]))
    if "reward" in st:
        r = st["reward"]
        out.append("\n## Reward service (regenerate + hash)\n\n")
        out.append(f"{r.get('arch')} {r.get('size')} / {r.get('steps')} steps: {r.get('judges_per_sec')} judges/s, "
                   f"load {r.get('load_secs')} s {r.get('skipped', '')}\n\n")
        out.append(table(r.get("verdicts", []), ["seed", "diffusers_image", "our_image", "black"]))
    if "errors" in data:
        out.append("\n## Errors\n\n" + "\n".join(f"- {e}" for e in data["errors"]) + "\n")
    return "".join(out)


def verdict(data):
    """What --check gates on: parity where both sides compute in fp32, and the judge."""
    problems = list(data.get("errors", []))
    st = data["stages"]
    for arch, m in st.get("models", {}).items():
        if m["single_file_mismatches"]:
            problems.append(f"{arch}: diffusers read {len(m['single_file_mismatches'])} tensors differently")
    for r in st.get("parity", {}).get("cases", []):
        if r.get("dtype") == "fp32" and "skipped" not in r and not (r["hash_distance"] == 0 and r["max_diff"] <= 2):
            problems.append(f"{r['case']} {r['layout']}: max diff {r['max_diff']}, hash distance {r['hash_distance']}")
    for v in st.get("reward", {}).get("verdicts", []):
        if v["black"] != 0 or (data["env"]["device"] == "cpu" and (v["diffusers_image"], v["our_image"]) != (1, 1)):
            problems.append(f"reward seed {v['seed']}: {v}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--work", help="scratch space for the models (default: a temporary directory)")
    ap.add_argument("--vocab", default=os.path.join(HERE, "vocab"), help="CLIP's vocab.json and merges.txt")
    ap.add_argument("--budget-secs", type=float, default=330.0)
    ap.add_argument("--only", choices=["sd15", "sdxl", "flux"], help="one architecture")
    ap.add_argument("--keep-images", action="store_true")
    ap.add_argument("--check", action="store_true", help="exit 1 when parity or the judge disagree")
    args = ap.parse_args()
    deadline = time.time() + args.budget_secs
    args.remaining = lambda: max(1.0, deadline - time.time())
    args.binary = os.path.abspath(args.binary)
    scratch = None
    if not args.work:
        scratch = args.work = tempfile.mkdtemp(prefix="gpu-kit-")
    args.env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    profile = json.loads(json.dumps(PROFILES[args.device]))
    if args.only:
        for key in ("parity", "speed"):
            profile[key] = {args.only: profile[key][args.only]}

    report = Report(args.out)
    report.data["env"] = dict(device=args.device, torch=torch.__version__, diffusers=diffusers.__version__,
                              binary=subprocess.run([args.binary, "--version"], capture_output=True,
                                                    text=True).stdout.strip(),
                              gpu=torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                              cpu_threads=torch.get_num_threads(),
                              served_dtype="fp16, FLUX bf16" if args.device == "cuda" else "fp32")
    torch.set_grad_enabled(False)
    kept = {}
    try:
        made = make_models(args, profile, args.vocab)
        report.stage("models", made)
        report.stage("parity", parity(args, profile, made))
        speeds, kept = speed(args, profile, made)
        report.stage("speed", speeds)
        report.stage("reward", reward(args, profile, made, kept))
    except Exception as e:  # noqa: BLE001 - the report says what broke; what was measured stays
        import traceback

        report.data.setdefault("errors", []).append(f"{type(e).__name__}: {e}")
        log(traceback.format_exc())
    problems = verdict(report.data)
    report.data["verdict"] = "ok" if not problems else f"{len(problems)} problems"
    report.data["problems"] = problems
    report.write()
    print(render(report.data))
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
