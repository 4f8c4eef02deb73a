"""Reference outputs of diffusers' StableDiffusionPipeline on the tiny SD 1.5 checkpoint.

    .venv-parity/bin/python scripts/parity/sd15.py CHECKPOINT.safetensors CONFIG_DIR OUT_DIR

CHECKPOINT and CONFIG_DIR come from `nicheimage-tui tiny-checkpoint --out DIR`; OUT_DIR gets
cases.json (schedules, latents, embeddings, hashes) and one PNG per case. The Rust parity tests
(crates/engine/tests/diffusers_parity.rs) regenerate the checkpoint and compare against these files.
"""

import gzip
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile

import imagehash
import importlib.util
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
)
from transformers import CLIPTokenizer

NEGATIVE = (
    "out of frame, nude, duplicate, watermark, signature, mutated, text, blurry, worst quality, "
    "low quality, artificial, texture artifacts, jpeg artifacts"
)

SCHEDULERS = {
    "dpm++2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "dpm++2m": (DPMSolverMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
}

CASES = [
    dict(name="karras_64", scheduler="dpm++2m_karras", prompt="a photo of a cat", negative_prompt=NEGATIVE,
         seed=1234, steps=4, guidance_scale=7.5, width=64, height=64),
    dict(name="dpm2m_64x48", scheduler="dpm++2m", prompt="portrait of an old sailor, oil painting",
         negative_prompt=None, seed=42, steps=5, guidance_scale=5.0, width=64, height=48),
    dict(name="euler_48x64", scheduler="euler", prompt="a red car on a mountain road at sunset",
         negative_prompt=NEGATIVE, seed=7, steps=6, guidance_scale=7.0, width=48, height=64),
    dict(name="euler_a_64", scheduler="euler_a", prompt="a bowl of ramen, studio lighting",
         negative_prompt=None, seed=999_999_937, steps=5, guidance_scale=7.5, width=64, height=64),
    dict(name="karras_odd_72x56_nocfg", scheduler="dpm++2m_karras", prompt="Ünïcode  café\tprompt — ok?",
         negative_prompt=None, seed=2024, steps=3, guidance_scale=1.0, width=72, height=56),
    dict(name="dpm2m_30_steps", scheduler="dpm++2m", prompt="a lighthouse in a storm", negative_prompt=NEGATIVE,
         seed=5, steps=30, guidance_scale=7.0, width=64, height=64),
]

TOKENIZER_TEXTS = [
    "a photo of a cat",
    "A PHOTO   of\ta Cat!!",
    "don't stop, it's 2024's best: 3.14159",
    "Ünïcode café — naïve résumé",
    "日本語のテキスト and emoji 🚀🔥",
    "cat<|endoftext|>dog",
    "word " * 100,
    "",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_tokenizer(folder, pad="<|endoftext|>"):
    """vocab.json and merges.txt for HF's CLIPTokenizer, from OpenAI's BPE file. SDXL's second
    tokenizer pads with "!"."""
    # open_clip is installed for this data file only (importing it would need torchvision).
    package = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    path = os.path.join(package, "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                   "pad_token": pad, "unk_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}, f)


def check_every_tensor_loaded(pipe, ckpt):
    """diffusers initialises what it cannot map; make sure nothing was left random."""
    from safetensors.torch import load_file

    file = load_file(ckpt)
    for prefix, model in [("model.diffusion_model.", pipe.unet), ("first_stage_model.", pipe.vae),
                          ("cond_stage_model.transformer.", pipe.text_encoder)]:
        ours = sum(t.double().abs().sum().item() for k, t in file.items()
                   if k.startswith(prefix) and not k.endswith("position_ids"))
        theirs = sum(p.double().abs().sum().item() for p in model.state_dict().values() if p.is_floating_point())
        count = sum(1 for k in file if k.startswith(prefix) and not k.endswith("position_ids"))
        assert abs(ours - theirs) <= 1e-6 * ours, f"{prefix}: file {ours} vs loaded {theirs}"
        assert count == sum(1 for v in model.state_dict().values() if v.is_floating_point()), prefix


def run_keeping_latents(pipe, **kwargs):
    """Runs a diffusers pipeline; returns its image and the latents after every step."""
    steps = []

    def keep(_pipe, _i, _t, callback_kwargs):
        steps.append(callback_kwargs["latents"].detach().clone())
        return callback_kwargs

    image = pipe(**kwargs, callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"]).images[0]
    return image, steps


def flat(t):
    return [float(x) for x in t.detach().float().flatten().tolist()]


def load_pipeline(ckpt, config_dir):
    """The single file with our config folder plus tokenizer files, as diffusers loads it."""
    config = os.path.join(tempfile.mkdtemp(), "config")
    shutil.copytree(config_dir, config)
    write_tokenizer(os.path.join(config, "tokenizer"))
    pipe = StableDiffusionPipeline.from_single_file(
        ckpt, config=config, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, config


def main():
    ckpt, config_dir, out_dir = sys.argv[1:4]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(out_dir, exist_ok=True)
    pipe, config = load_pipeline(ckpt, config_dir)
    check_every_tensor_loaded(pipe, ckpt)
    base = pipe.scheduler.config
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(config, "tokenizer"))

    out = {
        "versions": {p: md.version(p) for p in ["torch", "diffusers", "transformers", "tokenizers", "Pillow", "ImageHash"]},
        "checkpoint_sha256": hashlib.sha256(open(ckpt, "rb").read()).hexdigest(),
        "tokenizer": [
            {"text": t, "ids": tokenizer(t, padding="max_length", max_length=77, truncation=True).input_ids}
            for t in TOKENIZER_TEXTS
        ],
        "cases": [],
    }
    torch.set_grad_enabled(False)
    out["schedules"] = []
    for name, (cls, extra) in SCHEDULERS.items():
        for spacing in ["linspace", "leading", "trailing"]:
            for steps in [1, 4, 7, 25, 30, 50]:
                sched = cls.from_config(base, timestep_spacing=spacing, **extra)
                sched.set_timesteps(steps)
                out["schedules"].append({
                    "scheduler": name, "timestep_spacing": spacing, "steps": steps,
                    "timesteps": [float(t) for t in sched.timesteps.tolist()],
                    "sigmas": flat(sched.sigmas), "init_noise_sigma": float(sched.init_noise_sigma),
                })
    for case in CASES:
        cls, extra = SCHEDULERS[case["scheduler"]]
        pipe.scheduler = cls.from_config(base, **extra)
        cfg = case["guidance_scale"] > 1.0
        pos, neg = pipe.encode_prompt(case["prompt"], "cpu", 1, cfg, case["negative_prompt"])
        embeddings = torch.cat([neg, pos]) if cfg else pos
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
            "init_noise_sigma": float(pipe.scheduler.init_noise_sigma),
            "initial_latents": flat(initial),
            "embeddings_shape": list(embeddings.shape),
            "embeddings_head": flat(embeddings.flatten()[:64]),
            "embeddings_sum": float(embeddings.double().sum()),
            "embeddings_abs_sum": float(embeddings.double().abs().sum()),
            "latents": [flat(s) for s in steps[:3]] + ([flat(steps[-1])] if len(steps) > 3 else []),
            "latent_steps": list(range(min(3, len(steps)))) + ([len(steps) - 1] if len(steps) > 3 else []),
            "average_hash": str(imagehash.average_hash(image)),
        })
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(CASES)} cases to {out_dir}")


if __name__ == "__main__":
    main()
