"""Times diffusers' FluxPipeline on a tiny FLUX folder; prints one JSON line.

    .venv-parity/bin/python scripts/parity/bench_flux.py FOLDER WIDTH HEIGHT STEPS RUNS THREADS

Called by `cargo bench --bench flux_tiny`, which times our pipeline on the same work.
"""

import json
import sys
import time

import torch
from diffusers import FluxPipeline


def main():
    folder = sys.argv[1]
    width, height, steps, runs, threads = map(int, sys.argv[2:7])
    torch.set_num_threads(threads)
    pipe = FluxPipeline.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def once(seed):
        pipe(prompt="a photo of a cat", width=width, height=height, num_inference_steps=steps, guidance_scale=0.0,
             max_sequence_length=256, generator=torch.manual_seed(seed))

    once(0)  # warm-up
    times = []
    for i in range(runs):
        t = time.perf_counter()
        once(i + 1)
        times.append(time.perf_counter() - t)
    print(json.dumps({"seconds": times}))


if __name__ == "__main__":
    main()
