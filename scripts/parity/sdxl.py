"""Reference outputs of diffusers' StableDiffusionXLPipeline on the tiny SDXL checkpoint.

    .venv-parity/bin/python scripts/parity/sdxl.py CHECKPOINT.safetensors CONFIG_DIR OUT_DIR

CHECKPOINT and CONFIG_DIR come from `nicheimage-tui tiny-checkpoint --arch sdxl --name tiny-sdxl
--out DIR`; OUT_DIR gets cases.json (schedules, latents, embeddings, hashes) and one PNG per case.
crates/engine/tests/diffusers_parity.rs regenerates the checkpoint and compares against these files.
"""

import hashlib
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile

import imagehash
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from img2img import photo_like, resize_for_condition_image  # noqa: E402
from sd15 import NEGATIVE, SCHEDULERS, flat, run_keeping_latents, write_tokenizer  # noqa: E402

CASES = [
    # AnimeV3-like: Karras, guidance with the negative prompt.
    dict(name="karras_64", scheduler="dpm++2m_karras", prompt="anime girl under cherry blossoms",
         negative_prompt=NEGATIVE, seed=1234, steps=4, guidance_scale=7.0, width=64, height=64),
    # RealitiesEdgeXL-like: no negative prompt, so SDXL's zeroed negative conditioning.
    dict(name="dpm2m_zero_negative_64x48", scheduler="dpm++2m", prompt="a turbo car in the rain",
         negative_prompt=None, seed=42, steps=7, guidance_scale=5.5, width=64, height=48),
    dict(name="euler_a_nocfg_48x64", scheduler="euler_a", prompt="a castle on a hill", negative_prompt=None,
         seed=7, steps=5, guidance_scale=1.0, width=48, height=64),
    # An empty negative prompt is encoded, not zeroed.
    dict(name="euler_empty_negative", scheduler="euler", prompt="portrait, oil painting", negative_prompt="",
         seed=99, steps=6, guidance_scale=7.5, width=64, height=64),
]


# img2img on the same components; the input is img2img.py's photo_150x100, resized as NicheImage
# resizes (to 64 here instead of SDXL's 768, to stay tiny).
IMG2IMG_CASES = [
    dict(name="img2img_karras", scheduler="dpm++2m_karras", prompt="a watercolour landscape",
         negative_prompt=NEGATIVE, seed=31, steps=8, guidance_scale=7.0, strength=0.5, resolution=64),
    dict(name="img2img_euler_a_default_strength", scheduler="euler_a", prompt="a neon city",
         negative_prompt=None, seed=32, steps=10, guidance_scale=5.5, strength=None, resolution=64),
]


def load_sdxl(ckpt, config_dir):
    """The single file with our config folder plus both tokenizers, as diffusers loads it."""
    config = os.path.join(tempfile.mkdtemp(), "config")
    shutil.copytree(config_dir, config)
    write_tokenizer(os.path.join(config, "tokenizer"))
    write_tokenizer(os.path.join(config, "tokenizer_2"), pad="!")
    pipe = StableDiffusionXLPipeline.from_single_file(
        ckpt, config=config, torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_every_tensor_loaded(pipe, ckpt):
    """diffusers initialises what it cannot map; make sure nothing was left random."""
    file = load_file(ckpt)
    for prefix, model in [("model.diffusion_model.", pipe.unet), ("first_stage_model.", pipe.vae),
                          ("conditioner.embedders.0.transformer.", pipe.text_encoder),
                          ("conditioner.embedders.1.model.", pipe.text_encoder_2)]:
        ours = sum(t.double().abs().sum().item() for k, t in file.items()
                   if k.startswith(prefix) and not k.endswith("position_ids"))
        theirs = sum(p.double().abs().sum().item() for p in model.state_dict().values() if p.is_floating_point())
        assert abs(ours - theirs) <= 1e-6 * ours, f"{prefix}: file {ours} vs loaded {theirs}"


def main():
    ckpt, config_dir, out_dir = sys.argv[1:4]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.set_grad_enabled(False)
    os.makedirs(out_dir, exist_ok=True)
    pipe = load_sdxl(ckpt, config_dir)
    check_every_tensor_loaded(pipe, ckpt)
    base = pipe.scheduler.config
    out = {
        "versions": {p: md.version(p) for p in ["torch", "diffusers", "transformers", "Pillow", "ImageHash"]},
        "checkpoint_sha256": hashlib.sha256(open(ckpt, "rb").read()).hexdigest(),
        "tokenizer_2": [
            {"text": t, "ids": pipe.tokenizer_2(t, padding="max_length", max_length=77, truncation=True).input_ids}
            for t in ["a photo of a cat", "", "word " * 100]
        ],
        "cases": [],
    }
    for case in CASES:
        cls, extra = SCHEDULERS[case["scheduler"]]
        pipe.scheduler = cls.from_config(base, **extra)
        cfg = case["guidance_scale"] > 1.0
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(
            prompt=case["prompt"], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=cfg,
            negative_prompt=case["negative_prompt"])
        embeddings = torch.cat([neg, pos]) if cfg else pos
        pooled_all = torch.cat([neg_pooled, pooled]) if cfg else pooled
        torch.manual_seed(case["seed"])
        initial = torch.randn((1, 4, case["height"] // 8, case["width"] // 8))
        image, steps = run_keeping_latents(
            pipe, prompt=case["prompt"], negative_prompt=case["negative_prompt"], num_inference_steps=case["steps"],
            guidance_scale=case["guidance_scale"], width=case["width"], height=case["height"],
            generator=torch.manual_seed(case["seed"]),
        )
        image.save(os.path.join(out_dir, case["name"] + ".png"))
        out["cases"].append({
            **case,
            "timesteps": [float(t) for t in pipe.scheduler.timesteps.tolist()],
            "sigmas": flat(pipe.scheduler.sigmas),
            "initial_latents": flat(initial),
            "embeddings_shape": list(embeddings.shape),
            "embeddings_head": flat(embeddings.flatten()[:64]),
            "embeddings_tail": flat(embeddings.flatten()[-64:]),
            "embeddings_sum": float(embeddings.double().sum()),
            "pooled": flat(pooled_all),
            "latents": [flat(s) for s in steps],
            "average_hash": str(imagehash.average_hash(image)),
        })
    img2img = StableDiffusionXLImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    out["img2img"] = []
    for case in IMG2IMG_CASES:
        cls, extra = SCHEDULERS[case["scheduler"]]
        img2img.scheduler = cls.from_config(base, **extra)
        image = resize_for_condition_image(photo_like(150, 100, 11), case["resolution"])
        kwargs = {} if case["strength"] is None else {"strength": case["strength"]}
        result, steps = run_keeping_latents(
            img2img, prompt=case["prompt"], negative_prompt=case["negative_prompt"], image=image,
            num_inference_steps=case["steps"], guidance_scale=case["guidance_scale"],
            generator=torch.manual_seed(case["seed"]), **kwargs,
        )
        result.save(os.path.join(out_dir, case["name"] + ".png"))
        out["img2img"].append({
            **case,
            "default_strength": 0.3,
            "timesteps": [float(t) for t in img2img.scheduler.timesteps.tolist()],
            "latents": [flat(s) for s in steps],
            "average_hash": str(imagehash.average_hash(result)),
        })
    # fp16, as CUDA replicas run (on the CPU here): half-precision draws, the VAE upcast to f32.
    half = load_sdxl(ckpt, config_dir).to(torch.float16)
    half.scheduler = SCHEDULERS["dpm++2m_karras"][0].from_config(base, use_karras_sigmas=True)
    fp16 = dict(name="fp16_karras", scheduler="dpm++2m_karras", prompt="a lighthouse", negative_prompt=None,
                seed=11, steps=4, guidance_scale=6.0, width=64, height=64)
    image = half(prompt=fp16["prompt"], num_inference_steps=fp16["steps"], guidance_scale=fp16["guidance_scale"],
                 width=fp16["width"], height=fp16["height"], generator=torch.manual_seed(fp16["seed"])).images[0]
    image.save(os.path.join(out_dir, fp16["name"] + ".png"))
    out["fp16"] = {**fp16, "average_hash": str(imagehash.average_hash(image))}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(CASES)} cases to {out_dir}")


if __name__ == "__main__":
    main()
