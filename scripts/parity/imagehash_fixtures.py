"""Writes tests/fixtures/imagehash/: varied small PNGs (sizes, odd aspect ratios, modes L, RGB,
RGBA, P, near-threshold pairs, flat and black images) and imagehash.average_hash of each at hash
sizes 6, 8 and 16, as computed by the pinned Pillow + ImageHash (scripts/parity/requirements.txt).
Deterministic: run it again and nothing changes.
"""
import json
import pathlib
import random

import imagehash
from PIL import Image

out = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "imagehash"
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(23)


def photo(w, h, shift=0):
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            n = rng.randint(-6, 6)
            r = int(40 + 180 * x / w + n) + shift
            g = int(60 + 120 * y / h + n) + shift
            b = int(90 + 100 * (1 - x / w) * y / h + n) + shift
            px[x, y] = tuple(max(0, min(255, v)) for v in (r, g, b))
    return img


cases = {
    "photo_64x64": photo(64, 64),
    "photo_37x53": photo(37, 53),
    "photo_200x120": photo(200, 120),
    "photo_512x768": photo(96, 144).resize((512, 768), Image.BILINEAR),
    "gray_l_77x31": photo(77, 31).convert("L"),
    "rgba_40x40": photo(40, 40).convert("RGBA"),
    "palette_50x70": photo(50, 70).convert("P", palette=Image.ADAPTIVE, colors=32),
    "black_64x64": Image.new("RGB", (64, 64)),
    "flat_grey_33x33": Image.new("RGB", (33, 33), (128, 128, 128)),
}
# A near-threshold pair: the same picture, slightly brighter.
base = photo(128, 128)
cases["near_a_128"] = base
cases["near_b_128"] = Image.eval(base, lambda v: min(255, v + 4))

manifest = {}
for name, img in cases.items():
    img.save(out / f"{name}.png")
    reloaded = Image.open(out / f"{name}.png")
    manifest[name] = {str(s): str(imagehash.average_hash(reloaded, hash_size=s)) for s in (6, 8, 16)}
(out / "hashes.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
print(f"{len(manifest)} images in {out}")
