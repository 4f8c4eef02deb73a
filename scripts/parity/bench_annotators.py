"""controlnet_aux's MiDaS and NormalBae detectors timed on one image, for
`cargo bench --bench annotators` (which passes the same random checkpoints and image).

    .venv-parity/bin/python scripts/parity/bench_annotators.py CKPT_DIR IMAGE RUNS THREADS

Prints one JSON line: median seconds per map for each detector (Canny included), after a warm-up.
"""

import json
import os
import sys

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from annotators import detectors  # noqa: E402
from timing import median_seconds  # noqa: E402


def main():
    ckpt_dir, image_path, runs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    image = Image.open(image_path).convert("RGB")
    side = min(image.size)
    midas, normalbae = detectors(ckpt_dir)
    from controlnet_aux.canny import CannyDetector
    result = {}
    for name, detector, n in [("midas", midas, runs), ("normalbae", normalbae, runs),
                              ("canny", CannyDetector(), 10)]:
        call = lambda: detector(image, detect_resolution=side, image_resolution=side, output_type="np")  # noqa: E731
        result[name] = median_seconds(call, n)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
