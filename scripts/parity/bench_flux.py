"""Times diffusers' FluxPipeline on a tiny FLUX folder; prints one JSON line.

    .venv-parity/bin/python scripts/parity/bench_flux.py FOLDER WIDTH HEIGHT STEPS RUNS THREADS

Called by `cargo bench --bench flux_tiny`, which times our pipeline on the same work.
"""

import json
import os
import sys

import torch
from diffusers import FluxPipeline

sys.path.insert(0, os.path.dirname(__file__))
from timing import median_seconds  # noqa: E402


def main():
    folder = sys.argv[1]
    width, height, steps, runs, threads = map(int, sys.argv[2:7])
    torch.set_num_threads(threads)
    pipe = FluxPipeline.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def once(seed):
        pipe(prompt="a photo of a cat", width=width, height=height, num_inference_steps=steps, guidance_scale=0.0,
             max_sequence_length=256, generator=torch.manual_seed(seed))

    seeds = iter(range(runs + 1))
    print(json.dumps({"seconds": [median_seconds(lambda: once(next(seeds)), runs)]}))


if __name__ == "__main__":
    main()
