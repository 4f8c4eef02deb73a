"""Times diffusers' StableDiffusionPipeline on the tiny checkpoint; prints one JSON line.

    .venv-parity/bin/python scripts/parity/bench_sd15.py CKPT CONFIG_DIR WIDTH HEIGHT STEPS RUNS THREADS

Called by `cargo bench --bench sd15_tiny`, which times our pipeline on the same work.
"""

import json
import os
import shutil
import sys
import tempfile
import time

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

sys.path.insert(0, os.path.dirname(__file__))
from sd15 import NEGATIVE, write_tokenizer  # noqa: E402


def main():
    ckpt, config_dir = sys.argv[1:3]
    width, height, steps, runs, threads = map(int, sys.argv[3:8])
    torch.set_num_threads(threads)
    work = tempfile.mkdtemp()
    config = os.path.join(work, "config")
    shutil.copytree(config_dir, config)
    write_tokenizer(os.path.join(config, "tokenizer"))
    pipe = StableDiffusionPipeline.from_single_file(
        ckpt, config=config, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
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
