"""Reference outputs of diffusers' StableDiffusionControlNetPipeline with a MultiControlNetModel
on the tiny SD 1.5 checkpoint and two tiny random ControlNets, fed precomputed control images.

    .venv-parity/bin/python scripts/parity/controlnet.py CHECKPOINT CONFIG_DIR CONTROLNET_A CONTROLNET_B OUT_DIR

CONTROLNET_A/B come from `nicheimage-tui tiny-checkpoint --controlnet SEED --name NAME --out DIR`.
The control images are tests/fixtures/sd15_img2img's PNGs; OUT_DIR gets one PNG per case and
cases.json. crates/engine/tests/diffusers_parity.rs compares against them.
"""

import json
import os
import sys

import imagehash
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from sd15 import NEGATIVE, SCHEDULERS, flat, load_pipeline, run_keeping_latents  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CASES = [
    dict(name="multi_karras", scheduler="dpm++2m_karras", nets=[0, 1], scales=[1.0, 0.6],
         images=["photo_150x100_to_64.png", "photo_75x60.png"], prompt="a house by a lake",
         negative_prompt=NEGATIVE, seed=2, steps=5, guidance_scale=7.5, width=64, height=64),
    dict(name="single_euler_a_nocfg", scheduler="euler_a", nets=[1], scales=[0.8],
         images=["photo_301x517_to_128.png"], prompt="a tall tower", negative_prompt=None,
         seed=3, steps=4, guidance_scale=1.0, width=48, height=64),
]


def main():
    ckpt, config_dir, net_a, net_b, out_dir = sys.argv[1:6]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.set_grad_enabled(False)
    os.makedirs(out_dir, exist_ok=True)
    txt, _ = load_pipeline(ckpt, config_dir)
    nets = [ControlNetModel.from_pretrained(p, torch_dtype=torch.float32) for p in (net_a, net_b)]
    base = txt.scheduler.config
    out = {"cases": []}
    for case in CASES:
        pipe = StableDiffusionControlNetPipeline(
            vae=txt.vae, text_encoder=txt.text_encoder, tokenizer=txt.tokenizer, unet=txt.unet,
            scheduler=txt.scheduler, safety_checker=None, feature_extractor=None,
            controlnet=[nets[i] for i in case["nets"]], requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        cls, extra = SCHEDULERS[case["scheduler"]]
        pipe.scheduler = cls.from_config(base, **extra)
        images = [Image.open(os.path.join(ROOT, "tests/fixtures/sd15_img2img", f)).convert("RGB")
                  for f in case["images"]]
        image, steps = run_keeping_latents(
            pipe, prompt=case["prompt"], negative_prompt=case["negative_prompt"], image=images,
            controlnet_conditioning_scale=case["scales"], num_inference_steps=case["steps"],
            guidance_scale=case["guidance_scale"], width=case["width"], height=case["height"],
            generator=torch.manual_seed(case["seed"]),
        )
        image.save(os.path.join(out_dir, case["name"] + ".png"))
        out["cases"].append({**case, "latents": [flat(s) for s in steps],
                             "average_hash": str(imagehash.average_hash(image))})
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(CASES)} cases to {out_dir}")


if __name__ == "__main__":
    main()
