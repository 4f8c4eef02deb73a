"""Times diffusers' StableDiffusionPipeline (sd15) or StableDiffusionXLPipeline (sdxl) on a
tiny checkpoint; prints one JSON line.

    .venv-parity/bin/python scripts/parity/bench_pipeline.py ARCH CKPT CONFIG_DIR WIDTH HEIGHT STEPS RUNS THREADS

Called by `cargo bench --bench pipelines_tiny`, which times our pipeline on the same work.
"""

import json
import os
import sys
import time

import torch
from diffusers import DPMSolverMultistepScheduler

sys.path.insert(0, os.path.dirname(__file__))
from sd15 import NEGATIVE, load_pipeline  # noqa: E402
from sdxl import load_sdxl  # noqa: E402


def main():
    arch, ckpt, config_dir = sys.argv[1:4]
    width, height, steps, runs, threads = map(int, sys.argv[4:9])
    torch.set_num_threads(threads)
    pipe = load_sdxl(ckpt, config_dir) if arch == "sdxl" else load_pipeline(ckpt, config_dir)[0]
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)

    def once(seed):
        pipe(prompt="a photo of a cat", negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.5,
             width=width, height=height, generator=torch.manual_seed(seed))

    once(0)  # warm-up
    times = []
    for i in range(runs):
        t = time.perf_counter()
        once(i + 1)
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": times}))


if __name__ == "__main__":
    main()
