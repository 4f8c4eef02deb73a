"""Tiny random diffusers folders, saved by diffusers itself, and diffusers' images from them.

    .venv-parity/bin/python scripts/parity/folders.py OUT_DIR [--only SUBSTRING] [--no-images]

Builds random tiny SD 1.5 and SDXL architectures (widths, depths, head counts, transformer
layers per block, projection types that tests/fixtures does not use), saves each with
`save_pretrained` in the layouts real repositories ship, under several base schedulers, and
records what diffusers 0.42.1 renders from each folder for random requests with NicheImage's
scheduler swap (`X.from_config(pipe.scheduler.config, **extra)`) for each of our four samplers.

OUT_DIR gets:
  folders/<name>/            one diffusers folder per case (weights hard-linked between cases
                             that differ only in scheduler_config.json)
  images/<name>/<i>.png      diffusers' image for request i of folder <name>
  manifest.json              every folder (arch, layout, base scheduler, how diffusers loaded
                             it, files) and request (sampler, prompt, seed, steps, guidance,
                             size, timesteps, sigmas, init_noise_sigma, the sampler's config
                             after from_config, average hash)
  schedules.json             every base's scheduler_config.json, and for every base x sampler
                             x step count: the config from_config builds, timesteps, sigmas
                             and init_noise_sigma

manifest.json and schedules.json are strict JSON: Python's non-finite floats (which
diffusers' own config files contain, e.g. "lambda_min_clipped": -Infinity) are written as the
strings "Infinity", "-Infinity" and "NaN" there. The folders keep diffusers' own files as
diffusers wrote them.

Everything is seeded: the same pinned venv writes the same bytes.
"""

import argparse
import hashlib
import importlib.metadata as md
import inspect
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time

import imagehash
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(__file__))
from sd15 import NEGATIVE, write_tokenizer  # noqa: E402

# NicheImage's miner (`set_scheduler` in its utils): the class and extra kwargs of each name.
SAMPLERS = {
    "dpm++2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "dpm++2m": (DPMSolverMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
}

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)

# Base schedulers. "saved": constructed and written by diffusers 0.42.1's save_pretrained (every
# key explicit). "file": a scheduler_config.json as older diffusers wrote it for the Hub, with
# only some keys, so the loaded scheduler's `_use_default_values` matters.
BASES = {
    # runwayml/stable-diffusion-v1-5 and most SD 1.5 repos.
    "pndm_hub": ("file", {
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
        "clip_sample": False}),
    # stabilityai/stable-diffusion-xl-base-1.0.
    "euler_leading_hub": ("file", {
        "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
        "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
        "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False}),
    "pndm": ("saved", (PNDMScheduler, dict(SD_BETAS, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False))),
    "ddim": ("saved", (DDIMScheduler, dict(SD_BETAS, steps_offset=1, clip_sample=False, set_alpha_to_one=False))),
    "euler_leading": ("saved", (EulerDiscreteScheduler, dict(SD_BETAS, timestep_spacing="leading", steps_offset=1))),
    # steps_offset 0 written out: StableDiffusionPipeline (not the XL one) rewrites it to 1.
    "euler_leading_offset0": ("saved", (EulerDiscreteScheduler, dict(SD_BETAS, timestep_spacing="leading"))),
    "euler_linspace": ("saved", (EulerDiscreteScheduler, dict(SD_BETAS))),
    "euler_trailing": ("saved", (EulerDiscreteScheduler, dict(SD_BETAS, timestep_spacing="trailing"))),
    "euler_a_trailing": ("saved", (EulerAncestralDiscreteScheduler, dict(SD_BETAS, timestep_spacing="trailing"))),
    "dpm": ("saved", (DPMSolverMultistepScheduler, dict(SD_BETAS))),
    # A "DPM++ 2M Karras" repo: from_config hands use_karras_sigmas to dpm++2m and euler too.
    "dpm_karras": ("saved", (DPMSolverMultistepScheduler, dict(SD_BETAS, use_karras_sigmas=True))),
    "dpm_karras_leading": ("saved", (DPMSolverMultistepScheduler, dict(
        SD_BETAS, use_karras_sigmas=True, timestep_spacing="leading", steps_offset=1))),
    # final_sigmas_type / lower_order_final carried over (Euler takes final_sigmas_type too).
    "dpm_sigma_min": ("saved", (DPMSolverMultistepScheduler, dict(
        SD_BETAS, final_sigmas_type="sigma_min", lower_order_final=False))),
    "unipc": ("saved", (UniPCMultistepScheduler, dict(SD_BETAS))),
    "lms": ("saved", (LMSDiscreteScheduler, dict(SD_BETAS))),
}

PROMPTS = [
    "a photo of a cat",
    "portrait of an old sailor, oil painting, dramatic light",
    "Ünïcode café — naïve résumé, crème brûlée",
    "日本語のテキスト and emoji 🚀🔥 under cherry blossoms",
    "A  PHOTO\tof a   Red CAR!!  at 3.14159 o'clock, it's 2024's best",
    ", ".join(["a very long prompt that goes on"] * 12),  # far over 77 tokens
    "",
]
SIZES = [(64, 64), (64, 48), (48, 72), (72, 56), (40, 64)]


def non_finite_as_strings(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: non_finite_as_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [non_finite_as_strings(v) for v in value]
    return value


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(non_finite_as_strings(obj), f, indent=1, ensure_ascii=False, allow_nan=False)
        f.write("\n")


# ---------------------------------------------------------------- architectures

def clip_config(rng, hidden, act, projection=None):
    heads = rng.choice([h for h in (2, 4, 8) if hidden % h == 0])
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * rng.choice([2, 3, 4]),
        num_hidden_layers=rng.choice([2, 3]), num_attention_heads=heads, max_position_embeddings=77,
        hidden_act=act, layer_norm_eps=1e-5, projection_dim=projection or hidden,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
    )


def unet_config(rng, sdxl, cross_attention_dim, pooled_dim=None):
    groups = rng.choice([4, 8])
    n = rng.choice([2, 3]) if sdxl else rng.choice([2, 3, 4])
    base = groups * rng.choice([2, 3, 4])
    mults = sorted(rng.choice([1, 2, 3]) for _ in range(n))
    mults[0] = 1
    channels = [base * m for m in mults]
    if sdxl:  # SDXL: no attention in the first block
        down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (n - 1)
    else:  # SD 1.5: no attention in the last block, or attention everywhere
        down = ["CrossAttnDownBlock2D"] * (n - 1) + [rng.choice(["DownBlock2D", "CrossAttnDownBlock2D"])]
    up = ["UpBlock2D" if d == "DownBlock2D" else "CrossAttnUpBlock2D" for d in reversed(down)]

    def heads_for(c):
        return rng.choice([h for h in (1, 2, 3, 4, 6, 8) if c % h == 0 and c // h >= 2])

    # One head count per block, or one for all (it must divide every width then).
    common = [h for h in (1, 2, 4) if all(c % h == 0 and c // h >= 2 for c in channels)]
    if rng.random() < 0.3 and common:
        attention_head_dim = rng.choice(common)
    else:
        attention_head_dim = [heads_for(c) for c in channels]
    layers = [rng.choice([1, 2]) for _ in range(n)] if rng.random() < 0.6 else rng.choice([1, 2])
    config = dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=channels,
        down_block_types=down, up_block_types=up, layers_per_block=rng.choice([1, 2]),
        cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
        transformer_layers_per_block=layers, norm_num_groups=groups,
        use_linear_projection=rng.random() < 0.5, upcast_attention=rng.random() < 0.3,
        flip_sin_to_cos=True, freq_shift=0,
    )
    if sdxl:
        time_dim = rng.choice([4, 8, 16])
        config.update(addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                      projection_class_embeddings_input_dim=pooled_dim + 6 * time_dim)
    return config


def vae_config(rng, sdxl):
    groups = rng.choice([4, 8])
    widths = sorted(groups * rng.choice([1, 2, 3, 4]) for _ in range(4))  # 4 blocks: latents are 1/8
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=widths,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=rng.choice([1, 2]), norm_num_groups=groups, sample_size=64,
        scaling_factor=0.13025 if sdxl else rng.choice([0.18215, 0.5]), force_upcast=sdxl,
    )


def tokenizer(folder, pad):
    write_tokenizer(folder, pad=pad)
    return CLIPTokenizer.from_pretrained(folder)


def build_pipeline(arch, seed, scheduler):
    """A random tiny pipeline of `arch`, its weights drawn from `seed`."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    tmp = tempfile.mkdtemp()
    if arch == "sd15":
        te = clip_config(rng, rng.choice([24, 32, 40]), "quick_gelu")
        unet = UNet2DConditionModel(**unet_config(rng, False, te.hidden_size))
        parts = dict(
            vae=AutoencoderKL(**vae_config(rng, False)), text_encoder=CLIPTextModel(te),
            tokenizer=tokenizer(os.path.join(tmp, "tok"), "<|endoftext|>"), unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe = StableDiffusionPipeline(**parts)
    else:
        h1 = rng.choice([24, 32])
        h2 = rng.choice([40, 48])
        te1 = clip_config(rng, h1, "quick_gelu")
        te2 = clip_config(rng, h2, "gelu", projection=rng.choice([16, 32, h2]))
        unet = UNet2DConditionModel(**unet_config(rng, True, h1 + h2, te2.projection_dim))
        pipe = StableDiffusionXLPipeline(
            vae=AutoencoderKL(**vae_config(rng, True)), text_encoder=CLIPTextModel(te1),
            text_encoder_2=CLIPTextModelWithProjection(te2),
            tokenizer=tokenizer(os.path.join(tmp, "tok"), "<|endoftext|>"),
            tokenizer_2=tokenizer(os.path.join(tmp, "tok2"), "!"), unet=unet, scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
        )
    # Random init leaves GroupNorm/LayerNorm at 1/0 and many biases at 0; jitter every
    # parameter so no weight is trivially recoverable by a loader that skips it.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for model in [pipe.unet, pipe.vae, pipe.text_encoder] + ([pipe.text_encoder_2] if arch == "sdxl" else []):
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    shutil.rmtree(tmp)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def base_scheduler(name):
    """The base scheduler as a pipeline loads it from the folder: written to
    scheduler_config.json, then read back (so `_use_default_values` is what a real load gives)."""
    d = tempfile.mkdtemp()
    write_scheduler_file(d, name)
    cls = getattr(__import__("diffusers"), json.load(open(os.path.join(d, "scheduler_config.json")))["_class_name"])
    sched = cls.from_pretrained(d)
    shutil.rmtree(d)
    return sched


def write_scheduler_file(sub, name):
    kind, spec = BASES[name]
    if kind == "saved":
        cls, kwargs = spec
        cls(**kwargs).save_pretrained(sub)
    else:
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "scheduler_config.json"), "w") as f:
            json.dump(spec, f, indent=2)


def scheduler_file(name):
    """scheduler_config.json of base `name` as the folders hold it."""
    d = tempfile.mkdtemp()
    write_scheduler_file(d, name)
    with open(os.path.join(d, "scheduler_config.json")) as f:
        text = json.load(f)
    shutil.rmtree(d)
    return text


def write_base_scheduler(folder, name):
    """scheduler/scheduler_config.json: diffusers' own save, or the Hub-style file as is."""
    kind, spec = BASES[name]
    sub = os.path.join(folder, "scheduler")
    shutil.rmtree(sub, ignore_errors=True)
    write_scheduler_file(sub, name)
    with open(os.path.join(folder, "model_index.json")) as f:
        index = json.load(f)
    index["scheduler"] = ["diffusers", BASES[name][1][0].__name__ if kind == "saved" else spec["_class_name"]]
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------- layouts

def state(pipe):
    """Every component's tensors, to check that diffusers loaded what was written."""
    models = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    if getattr(pipe, "text_encoder_2", None) is not None:
        models["text_encoder_2"] = pipe.text_encoder_2
    return {n: {k: v.detach().clone().float() for k, v in m.state_dict().items()} for n, m in models.items()}


def check_loaded(pipe, expected, name):
    got = state(pipe)
    for part, tensors in expected.items():
        assert set(got[part]) == set(tensors), f"{name}/{part}: other keys"
        for k, v in tensors.items():
            assert torch.equal(got[part][k], v), f"{name}/{part}: {k} is not what was saved"


def transformers4_text_encoders(folder, binary):
    """Text encoders as transformers 4 wrote them (what real repos ship): CLIPTextModel's keys
    under `text_model.`; with `binary`, `pytorch_model.bin` (a pickled state dict) instead of
    `model.safetensors`."""
    for sub in ["text_encoder", "text_encoder_2"]:
        path = os.path.join(folder, sub, "model.safetensors")
        if not os.path.exists(path):
            continue
        tensors = load_file(path)
        tensors = {k if k.startswith("text_model.") or k.startswith("text_projection.") else "text_model." + k: v
                   for k, v in tensors.items()}
        if binary:
            os.remove(path)
            torch.save(tensors, os.path.join(folder, sub, "pytorch_model.bin"))
        else:
            save_file(tensors, path, metadata={"format": "pt"})


def transformers4_tokenizers(folder):
    """Tokenizer files as the Hub's SD repos ship them: vocab.json, merges.txt,
    tokenizer_config.json and special_tokens_map.json, no tokenizer.json."""
    for sub, pad in [("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")]:
        d = os.path.join(folder, sub)
        if not os.path.isdir(d):
            continue
        shutil.rmtree(d)
        write_tokenizer(d, pad=pad)
        with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
            json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": pad,
                       "unk_token": "<|endoftext|>"}, f, indent=2)


def add_token(pipe):
    """A tokenizer with an added token (a textual-inversion-style folder) and its embedding row."""
    tok = pipe.tokenizer
    tok.add_tokens(["<niche-cat>"])
    pipe.text_encoder.resize_token_embeddings(len(tok), mean_resizing=False)
    torch.manual_seed(77)
    with torch.no_grad():
        emb = pipe.text_encoder.get_input_embeddings().weight
        emb[-1] = torch.randn(emb.shape[1]) * 0.02


def save(pipe, folder, layout):
    """Writes `pipe` as `layout`; returns the kwargs diffusers' from_pretrained gets for it and
    the tensors it must then load."""
    if layout in ("plain", "added_token"):
        pipe.save_pretrained(folder)
        return {}, state(pipe)
    if layout == "transformers4":
        pipe.save_pretrained(folder)
        transformers4_text_encoders(folder, binary=False)
        transformers4_tokenizers(folder)
        return {}, state(pipe)
    if layout == "sharded":
        pipe.save_pretrained(folder, max_shard_size="200KB")
        return {}, state(pipe)
    if layout == "bin":
        pipe.save_pretrained(folder, safe_serialization=False)
        transformers4_text_encoders(folder, binary=True)
        return {}, state(pipe)
    if layout == "fp32_and_fp16":  # both, as runwayml ships; without a variant diffusers loads fp32
        expected = state(pipe)
        pipe.save_pretrained(folder)
        pipe.to(torch.float16).save_pretrained(folder, variant="fp16")
        pipe.to(torch.float32)
        return {}, expected
    if layout in ("fp16_only", "fp16_sharded"):  # only `*.fp16*` files (fp16 tensors)
        shard = {"max_shard_size": "200KB"} if layout == "fp16_sharded" else {}
        pipe.to(torch.float16).save_pretrained(folder, variant="fp16", **shard)
        pipe.to(torch.float32)
        return {"variant": "fp16"}, state(pipe)
    raise ValueError(layout)


# Folder cases: (arch, layout, base scheduler, architecture seed).
def cases():
    out = []
    for arch, seed in [("sd15", 101), ("sdxl", 202)]:
        for base in BASES:
            out.append((arch, "plain", base, seed))
    for i, layout in enumerate(["fp16_only", "fp32_and_fp16", "fp16_sharded", "sharded", "bin",
                                "transformers4", "added_token"]):
        for j, arch in enumerate(["sd15", "sdxl"]):
            if layout == "added_token" and arch == "sdxl":
                continue
            base = ["pndm_hub", "euler_leading", "dpm", "euler_leading_hub", "unipc", "ddim", "lms"][(i + j) % 7]
            out.append((arch, layout, base, 1000 + 10 * i + j))
    return out


def requests(rng, layout):
    """Random requests, each of the four samplers at least once."""
    reqs = []
    samplers = list(SAMPLERS)
    rng.shuffle(samplers)
    for i, sampler in enumerate(samplers * 2):
        w, h = rng.choice(SIZES)
        guided = i % 3 != 0
        prompt = rng.choice(PROMPTS)
        if layout == "added_token" and i % 2 == 0:
            prompt = "a photo of <niche-cat> on a sofa"
        reqs.append(dict(
            sampler=sampler, prompt=prompt,
            negative_prompt=rng.choice([None, NEGATIVE, ""]) if guided else None,
            seed=rng.randrange(0, 2**32), steps=rng.choice([3, 4, 5, 6, 8]) if i < 7 else rng.choice([20, 25]),
            guidance_scale=rng.choice([5.0, 7.0, 7.5]) if guided else 1.0, width=w, height=h,
        ))
    return reqs


def sampler_config(sched):
    """The parameters `sched` was built with (its __init__'s), and the rest of its config: keys
    from_config carried along from the base without using them (`hidden`)."""
    init = set(inspect.signature(type(sched).__init__).parameters) - {"self", "kwargs"}
    config = dict(sched.config)
    return ({k: v for k, v in config.items() if k in init},
            {k: v for k, v in config.items() if k not in init and k != "_diffusers_version"})


def files_of(folder):
    out = []
    for root, _, names in os.walk(folder):
        for n in sorted(names):
            p = os.path.join(root, n)
            out.append({"path": os.path.relpath(p, folder), "bytes": os.path.getsize(p)})
    return sorted(out, key=lambda f: f["path"])


def link_tree(src, dst):
    """dst as src with every file hard-linked but model_index.json and scheduler/ (rewritten)."""
    for root, _, names in os.walk(src):
        rel = os.path.relpath(root, src)
        if rel == "scheduler":
            continue
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for n in names:
            s, d = os.path.join(root, n), os.path.join(dst, rel, n)
            if rel == "." and n == "model_index.json":
                shutil.copy2(s, d)
                continue
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)


def pipeline_config(arch, sched):
    """The scheduler config a pipeline of `arch` holds for `sched`: StableDiffusionPipeline's
    __init__ rewrites steps_offset != 1 to 1 (keeping `_use_default_values`); the XL one does not."""
    if arch == "sd15":
        pipe = StableDiffusionPipeline(vae=None, text_encoder=None, tokenizer=None, unet=None, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(vae=None, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                         tokenizer_2=None, unet=None, scheduler=sched)
    return pipe.scheduler


def schedules():
    """Every pipeline x base x sampler x steps: the from_config result and its set_timesteps output."""
    out = []
    for arch in ["sd15", "sdxl"]:
        for base_name in BASES:
            held = pipeline_config(arch, base_scheduler(base_name))
            base = held.config
            for name, (cls, extra) in SAMPLERS.items():
                for steps in [1, 2, 4, 7, 15, 20, 25, 30]:
                    sched = cls.from_config(base, **extra)
                    sched.set_timesteps(steps)
                    out.append({
                        "pipeline": arch, "base": base_name, "base_class": type(held).__name__,
                        "base_use_default_values": sorted(base.get("_use_default_values", [])),
                        "sampler": name, "steps": steps, "class": type(sched).__name__,
                        "config": sampler_config(sched)[0],
                        "timesteps": [float(t) for t in sched.timesteps.tolist()],
                        "sigmas": [float(s) for s in sched.sigmas.tolist()],
                        "init_noise_sigma": float(sched.init_noise_sigma),
                    })
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", help="only folders whose name contains this")
    ap.add_argument("--no-images", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.set_grad_enabled(False)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    # One schedule per line: small, and diffable.
    with open(os.path.join(args.out, "schedules.json"), "w", encoding="utf-8") as f:
        head = {"versions": {p: md.version(p) for p in ["torch", "diffusers", "transformers"]},
                "samplers": {k: [c.__name__, e] for k, (c, e) in SAMPLERS.items()},
                "bases": non_finite_as_strings({name: scheduler_file(name) for name in BASES})}
        f.write(json.dumps(head, allow_nan=False)[:-1] + ', "schedules": [\n')
        rows = [json.dumps(non_finite_as_strings(r), allow_nan=False, ensure_ascii=False) for r in schedules()]
        f.write(",\n".join(rows) + "\n]}\n")
    manifest = {
        "versions": {p: md.version(p) for p in ["torch", "diffusers", "transformers", "tokenizers", "safetensors",
                                                  "Pillow", "ImageHash"]},
        "samplers": {k: [c.__name__, e] for k, (c, e) in SAMPLERS.items()},
        "folders": [],
    }
    built = {}  # (arch, seed, layout) -> folder already written, to hard-link from
    for arch, layout, base, seed in cases():
        name = f"{arch}-{layout}-{base}"
        if args.only and args.only not in name:
            continue
        t0 = time.time()
        folder = os.path.join(args.out, "folders", name)
        shutil.rmtree(folder, ignore_errors=True)
        key = (arch, seed, layout)
        if key in built:
            link_tree(built[key], folder)
            load_kwargs = built[key + ("kwargs",)]
        else:
            pipe = build_pipeline(arch, seed, base_scheduler(base))
            if layout == "added_token":
                add_token(pipe)
            load_kwargs, expected = save(pipe, folder, layout)
            built[key] = folder
            built[key + ("kwargs",)] = load_kwargs
            built[key + ("state",)] = expected
            del pipe
        write_base_scheduler(folder, base)
        cls = StableDiffusionPipeline if arch == "sd15" else StableDiffusionXLPipeline
        pipe = cls.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True, **load_kwargs)
        pipe.set_progress_bar_config(disable=True)
        check_loaded(pipe, built[key + ("state",)], name)
        base_config = dict(pipe.scheduler.config)
        entry = {
            "name": name, "arch": arch, "layout": layout, "base": base, "base_kind": BASES[base][0],
            "base_class": type(pipe.scheduler).__name__, "architecture_seed": seed,
            "diffusers_load": {"class": cls.__name__, "torch_dtype": "float32", **load_kwargs},
            "base_config": {k: v for k, v in base_config.items() if k != "_diffusers_version"},
            "base_config_file": json.load(open(os.path.join(folder, "scheduler", "scheduler_config.json"))),
            "files": files_of(folder),
            "unet": dict(pipe.unet.config), "vae": dict(pipe.vae.config),
            "text_encoder": pipe.text_encoder.config.to_diff_dict(),
            "requests": [],
        }
        if arch == "sdxl":
            entry["text_encoder_2"] = pipe.text_encoder_2.config.to_diff_dict()
        rng = random.Random(hashlib.sha256(name.encode()).digest())
        img_dir = os.path.join(args.out, "images", name)
        os.makedirs(img_dir, exist_ok=True)
        for i, req in enumerate(requests(rng, layout)):
            sampler_cls, extra = SAMPLERS[req["sampler"]]
            pipe.scheduler = sampler_cls.from_config(base_config, **extra)
            init, hidden = sampler_config(pipe.scheduler)
            record = dict(req, sampler_class=type(pipe.scheduler).__name__, sampler_config=init,
                          sampler_hidden_config=hidden)
            for tok_name in ["tokenizer", "tokenizer_2"]:
                tok = getattr(pipe, tok_name, None)
                if tok is not None:
                    ids = lambda text: tok(text, padding="max_length", max_length=tok.model_max_length,
                                           truncation=True).input_ids
                    record[tok_name + "_ids"] = {"prompt": ids(req["prompt"]),
                                                 "negative_prompt": ids(req["negative_prompt"] or "")}
            if not args.no_images:
                image = pipe(
                    prompt=req["prompt"], negative_prompt=req["negative_prompt"],
                    num_inference_steps=req["steps"], guidance_scale=req["guidance_scale"],
                    width=req["width"], height=req["height"], generator=torch.manual_seed(req["seed"]),
                ).images[0]
                png = os.path.join("images", name, f"{i}.png")
                image.save(os.path.join(args.out, png))
                record.update(png=png, average_hash=str(imagehash.average_hash(image)))
            record.update(
                timesteps=[float(t) for t in pipe.scheduler.timesteps.tolist()],
                sigmas=[float(s) for s in pipe.scheduler.sigmas.tolist()],
                init_noise_sigma=float(pipe.scheduler.init_noise_sigma),
            )
            entry["requests"].append(record)
        entry["seconds"] = round(time.time() - t0, 2)
        manifest["folders"].append(entry)
        print(f"{name}: {len(entry['requests'])} requests, {entry['seconds']} s", flush=True)
        del pipe
    manifest["seconds"] = round(time.time() - started, 1)
    dump(os.path.join(args.out, "manifest.json"), manifest)
    print(f"wrote {len(manifest['folders'])} folders to {args.out} in {manifest['seconds']} s")


if __name__ == "__main__":
    main()
