"""Reference Canny maps from controlnet_aux 0.0.7's CannyDetector (OpenCV), as NicheImage computes
them for its ControlNet: the conditional image resized by NicheImage (short side 512, sides to 64s,
Pillow LANCZOS), then the detector with its defaults (thresholds 100 and 200).

    .venv-parity/bin/python scripts/parity/canny.py OUT_DIR

The inputs are tests/fixtures/sd15_img2img's photos plus two drawn here; OUT_DIR gets
<name>_canny.png for each. controlnet_aux's package __init__ imports every detector (and their
heavy dependencies), so only its canny module and util are loaded, from the sdist that
scripts/parity/setup.sh unpacks into the venv.
"""

import glob
import os
import sys
import types

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.dirname(__file__))
from img2img import resize_for_condition_image  # noqa: E402


def controlnet_aux_canny():
    src = glob.glob(os.path.join(sys.prefix, "controlnet_aux-0.0.7", "src", "controlnet_aux"))[0]
    package = types.ModuleType("controlnet_aux")
    package.__path__ = [src]
    sys.modules["controlnet_aux"] = package
    from controlnet_aux.canny import CannyDetector

    return CannyDetector()


def drawn(width, height, seed):
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(5, width // 2), y0 + rng.integers(5, height // 2)
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))
    return image


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    detector = controlnet_aux_canny()
    inputs = {os.path.basename(p)[:-4]: Image.open(p).convert("RGB")
              for p in sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/sd15_img2img/photo_*.png")))
              if "_to_" not in p}
    for name, (w, h, seed) in {"drawn_200x130": (200, 130, 1), "drawn_96x300": (96, 300, 2)}.items():
        inputs[name] = drawn(w, h, seed)
        inputs[name].save(os.path.join(out_dir, name + ".png"))
    for name, image in inputs.items():
        edges = detector(resize_for_condition_image(image, 512))
        edges.save(os.path.join(out_dir, name + "_canny.png"))
        print(name, edges.size, int((np.asarray(edges) > 0).sum() / 3), "edge pixels")


if __name__ == "__main__":
    main()
