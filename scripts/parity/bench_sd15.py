"""Times diffusers' StableDiffusionPipeline on the tiny checkpoint; prints one JSON line.

    .venv-parity/bin/python scripts/parity/bench_sd15.py CKPT CONFIG_DIR WIDTH HEIGHT STEPS RUNS THREADS

Called by `cargo bench --bench sd15_tiny`, which times our pipeline on the same work.
"""

import json
import os
import sys
import time

import torch
from diffusers import DPMSolverMultistepScheduler

sys.path.insert(0, os.path.dirname(__file__))
from sd15 import NEGATIVE, load_pipeline  # noqa: E402


def main():
    ckpt, config_dir = sys.argv[1:3]
    width, height, steps, runs, threads = map(int, sys.argv[3:8])
    torch.set_num_threads(threads)
    pipe, _ = load_pipeline(ckpt, config_dir)
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
