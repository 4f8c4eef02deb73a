"""Reference outputs of diffusers' StableDiffusionImg2ImgPipeline on the tiny SD 1.5 checkpoint,
and of NicheImage's conditional-image resize (Pillow LANCZOS).

    .venv-parity/bin/python scripts/parity/img2img.py CHECKPOINT.safetensors CONFIG_DIR OUT_DIR

OUT_DIR gets the input images (made here from a seeded numpy RNG), the resized images, one PNG
per img2img case and cases.json. crates/engine/tests/diffusers_parity.rs compares against them.
"""

import json
import os
import sys

import imagehash
import numpy as np
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from sd15 import NEGATIVE, SCHEDULERS, flat, load_pipeline, run_keeping_latents  # noqa: E402


def photo_like(width, height, seed):
    """Smooth gradients, a few soft discs and grain: enough structure for Lanczos ringing."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    for c in range(3):
        img[..., c] = 255 * (0.5 + 0.5 * np.sin(x / width * rng.uniform(2, 6) + y / height * rng.uniform(1, 4) + c))
    for _ in range(5):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, min(width, height) / 2)
        mask = np.clip(1.2 - np.hypot(x - cx, y - cy) / r, 0, 1)[..., None]
        img = img * (1 - mask) + rng.uniform(0, 255, 3) * mask
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def resize_for_condition_image(image, resolution):
    """NicheImage's resize, verbatim in behaviour: short side to `resolution`, sides to 64s."""
    image = image.convert("RGB")
    w, h = image.size
    k = float(resolution) / min(h, w)
    h *= k
    w *= k
    h = int(round(h / 64.0)) * 64
    w = int(round(w / 64.0)) * 64
    return image.resize((w, h), resample=Image.LANCZOS)


INPUTS = {"photo_150x100": (150, 100, 11), "photo_75x60": (75, 60, 12), "photo_301x517": (301, 517, 13)}
RESIZES = [("photo_150x100", 64), ("photo_150x100", 512), ("photo_301x517", 128), ("photo_75x60", 768)]

CASES = [
    dict(name="karras_half", scheduler="dpm++2m_karras", input="photo_150x100", resolution=64, strength=0.5,
         prompt="a photo of a cat", negative_prompt=NEGATIVE, seed=1234, steps=8, guidance_scale=7.5),
    dict(name="euler_a_three_quarters", scheduler="euler_a", input="photo_75x60", resolution=None, strength=0.75,
         prompt="an oil painting of a harbour", negative_prompt=None, seed=77, steps=6, guidance_scale=7.0),
    dict(name="euler_light_touch", scheduler="euler", input="photo_150x100", resolution=64, strength=0.3,
         prompt="a red car", negative_prompt=NEGATIVE, seed=5, steps=10, guidance_scale=1.0),
]


def main():
    ckpt, config_dir, out_dir = sys.argv[1:4]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.set_grad_enabled(False)
    os.makedirs(out_dir, exist_ok=True)
    txt, _ = load_pipeline(ckpt, config_dir)
    pipe = StableDiffusionImg2ImgPipeline(**txt.components)
    pipe.set_progress_bar_config(disable=True)
    base = pipe.scheduler.config

    images = {}
    for name, (w, h, seed) in INPUTS.items():
        images[name] = photo_like(w, h, seed)
        images[name].save(os.path.join(out_dir, name + ".png"))
    out = {"resizes": [], "cases": []}
    for name, resolution in RESIZES:
        resized = resize_for_condition_image(images[name], resolution)
        file = f"{name}_to_{resolution}.png"
        resized.save(os.path.join(out_dir, file))
        out["resizes"].append({"input": name, "resolution": resolution, "output": file, "size": list(resized.size)})

    for case in CASES:
        cls, extra = SCHEDULERS[case["scheduler"]]
        pipe.scheduler = cls.from_config(base, **extra)
        image = images[case["input"]]
        if case["resolution"]:
            image = resize_for_condition_image(image, case["resolution"])
        initial = {}
        prepare = pipe.prepare_latents

        def keep_initial(*args, **kwargs):
            initial["latents"] = prepare(*args, **kwargs)
            return initial["latents"]

        pipe.prepare_latents = keep_initial
        result, steps = run_keeping_latents(
            pipe, prompt=case["prompt"], negative_prompt=case["negative_prompt"], image=image, strength=case["strength"],
            num_inference_steps=case["steps"], guidance_scale=case["guidance_scale"],
            generator=torch.manual_seed(case["seed"]),
        )
        pipe.prepare_latents = prepare
        result.save(os.path.join(out_dir, case["name"] + ".png"))
        out["cases"].append({
            **case,
            "size": list(result.size),
            "timesteps": [float(t) for t in pipe.scheduler.timesteps.tolist()],
            "initial_latents": flat(initial["latents"]),
            "latents": [flat(s) for s in steps],
            "average_hash": str(imagehash.average_hash(result)),
        })
    # fp16, as CUDA replicas run (on the CPU here): half-precision draws and add_noise in fp16.
    half = StableDiffusionImg2ImgPipeline(**txt.components).to(torch.float16)
    half.set_progress_bar_config(disable=True)
    cls, extra = SCHEDULERS["dpm++2m_karras"]
    half.scheduler = cls.from_config(base, **extra)
    fp16 = dict(name="fp16_karras", input="photo_150x100", resolution=64, strength=0.6,
                prompt="a photo of a cat", negative_prompt=NEGATIVE, seed=21, steps=6, guidance_scale=7.5)
    image = half(prompt=fp16["prompt"], negative_prompt=fp16["negative_prompt"],
                 image=resize_for_condition_image(images[fp16["input"]], fp16["resolution"]),
                 strength=fp16["strength"], num_inference_steps=fp16["steps"],
                 guidance_scale=fp16["guidance_scale"], generator=torch.manual_seed(fp16["seed"])).images[0]
    image.save(os.path.join(out_dir, fp16["name"] + ".png"))
    out["fp16"] = {**fp16, "average_hash": str(imagehash.average_hash(image))}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(CASES)} img2img cases and {len(RESIZES)} resizes to {out_dir}")


if __name__ == "__main__":
    main()
