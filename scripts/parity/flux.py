"""Tiny random FLUX.1-schnell pipelines, saved by diffusers itself, and diffusers' images from them.

    .venv-parity/bin/python scripts/parity/flux.py OUT_DIR

Each case is a random architecture of FLUX's shape (double- and single-stream blocks, heads, head
dims, rope axes, joint width; a tiny T5 v1.1 encoder with relative position buckets and gated
GELU; a tiny CLIP text encoder; a 16-channel VAE with scaling and shift factors and no quant
convs; the flow-matching Euler scheduler with schnell's settings), saved with `save_pretrained`
in the layout black-forest-labs/FLUX.1-schnell ships. The T5 tokenizer is a SentencePiece
unigram model trained here on a fixed corpus and converted by transformers to the
`tokenizer.json` a real T5TokenizerFast reads (Precompiled normalizer, Metaspace, `</s>`).

OUT_DIR gets:
  folders/<case>/            one diffusers folder per case
  folders/<case>-transformer.safetensors
                             its transformer as the model repository ships it (Black Forest
                             Labs' names), checked: diffusers' own converter maps it back
                             tensor for tensor
  images/<case>/<i>.png      diffusers' FluxPipeline image for request i
  images/<case>/fp16-<i>.png and bf16-<i>.png
                             the same in half precision (two cases, two requests each), on the
                             CPU: what each part runs in under fp16 and bf16
  manifest.json              every case and request: prompt, seed, steps, size, both token id
                             lists, sigmas, timesteps, average hash

Everything is seeded; guidance_scale is 0 and max_sequence_length 256 as the model card runs it.
"""

import importlib.metadata as md
import json
import os
import random
import sys
import tempfile

import imagehash
import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(__file__))
from sd15 import write_tokenizer  # noqa: E402

CORPUS = [
    "a photo of a cat sitting on a red sofa in the afternoon light",
    "portrait of an old sailor with a grey beard, oil painting, dramatic lighting",
    "a futuristic city at night with neon signs and flying cars, cinematic",
    "a bowl of ramen with an egg and green onions, studio photography, top view",
    "mountain lake at sunrise, mist over the water, pine trees, reflections",
    "Ünïcode café — naïve résumé, crème brûlée and jalapeño; ½ price!",
    "日本語のテキスト、東京の夜景と桜の花 and emoji 🚀🔥✨",
    "watercolor illustration of a fox in a snowy forest, soft pastel colors",
    "a lighthouse on a rocky cliff during a storm, waves crashing, 35mm film",
    "the quick brown fox jumps over the lazy dog 0123456789 times",
]

PROMPTS = [
    "a photo of a cat",
    "portrait of an old sailor, oil painting",
    "Ünïcode  café\tprompt — ok? ½",
    "日本語のテキスト and emoji 🚀",
    "",
    " ".join(CORPUS) * 3,  # past both CLIP's 77 and T5's 256 tokens
    "a futuristic city at night, neon, flying cars, rain, reflections, cinematic, highly detailed",
    "  a  cat\t on a\nred   sofa  ",  # runs of spaces, tabs, newlines, leading and trailing
]


def train_t5_tokenizer(folder):
    """spiece.model trained on CORPUS, read as transformers' T5 tokenizer reads a SentencePiece
    model (pieces, scores and the Precompiled normalizer), saved as tokenizer.json."""
    work = tempfile.mkdtemp()
    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(CORPUS * 4) + "\n")
    prefix = os.path.join(work, "spiece")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=160, model_type="unigram", character_coverage=1.0,
        num_threads=1, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    with open(prefix + ".model", "rb") as f:
        proto.ParseFromString(f.read())
    tokenizer = T5TokenizerFast(vocab=[(p.piece, p.score) for p in proto.pieces], extra_ids=100,
                                _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap,
                                model_max_length=512)
    tokenizer.save_pretrained(folder)
    return tokenizer


def case_configs(rng):
    """Random FLUX-shaped architectures; rope axes sum to the head dim, each even."""
    cases = []
    for i in range(4):
        head_dim = rng.choice([16, 24, 32])
        axes = [8, (head_dim - 8) // 2 // 2 * 2]
        axes.append(head_dim - sum(axes))
        t5_d = rng.choice([32, 48])
        cases.append(dict(
            name=f"flux_{i}",
            transformer=dict(patch_size=1, in_channels=64, num_layers=rng.choice([1, 2]),
                             num_single_layers=rng.choice([1, 2, 3]), attention_head_dim=head_dim,
                             num_attention_heads=rng.choice([2, 3]), joint_attention_dim=t5_d,
                             pooled_projection_dim=32, guidance_embeds=False, axes_dims_rope=axes),
            t5=dict(d_model=t5_d, d_kv=rng.choice([8, 16]), d_ff=rng.choice([64, 96]), num_layers=rng.choice([1, 2]),
                    num_heads=rng.choice([2, 4]), relative_attention_num_buckets=rng.choice([8, 32]),
                    relative_attention_max_distance=rng.choice([16, 128]), feed_forward_proj="gated-gelu",
                    is_encoder_decoder=False, use_cache=False, dropout_rate=0.0, layer_norm_epsilon=1e-6),
            vae=dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[32, 32, 64, 64],
                     down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                     layers_per_block=1, norm_num_groups=32, sample_size=64,
                     scaling_factor=rng.choice([0.3611, 0.5]), shift_factor=rng.choice([0.1159, -0.05]),
                     use_quant_conv=False, use_post_quant_conv=False),
        ))
    return cases


def as_transformers_4_file(folder):
    """Rewrites tokenizer_2/tokenizer.json the way transformers 4 wrote T5's (the file
    FLUX.1-schnell ships): Precompiled then a space-run Replace, a plain Metaspace. transformers
    5 rebuilds its own pipeline around the vocabulary when it loads it; ids must follow that."""
    path = os.path.join(folder, "tokenizer_2", "tokenizer.json")
    with open(path) as f:
        t = json.load(f)
    t["normalizer"] = {"type": "Sequence", "normalizers": [
        t["normalizer"], {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    with open(path, "w") as f:
        json.dump(t, f, ensure_ascii=False)


def build(case, vocab_dir, folder, t5_tokenizer_dir):
    torch.manual_seed(int(case["name"].split("_")[1]))
    t5_tokenizer = T5TokenizerFast.from_pretrained(t5_tokenizer_dir)
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), **case["t5"])).eval()
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=32)).eval()
    clip_tokenizer = CLIPTokenizer(os.path.join(vocab_dir, "vocab.json"), os.path.join(vocab_dir, "merges.txt"),
                                   model_max_length=77)
    transformer = FluxTransformer2DModel(**case["transformer"]).eval()
    # Random init leaves the final projection and the modulations near zero; scale them up so
    # every block moves the image.
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 1.0 / p.shape[1] ** 0.5)
            else:
                p.normal_(0, 0.05)
                if "norm" in name:
                    p.add_(1.0)
    vae = AutoencoderKL(**case["vae"]).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tokenizer,
                        text_encoder_2=t5, tokenizer_2=t5_tokenizer, transformer=transformer)
    pipe.save_pretrained(folder, safe_serialization=True)
    if case["name"] in ("flux_1", "flux_3"):
        as_transformers_4_file(folder)
    return FluxPipeline.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)


def to_bfl(state):
    """diffusers' transformer names -> the model repository's single file (Black Forest Labs'
    names): our own inverse of diffusers' convert_flux_transformer_checkpoint_to_diffusers."""
    out, cat = {}, lambda *ts: torch.cat(ts, dim=0)
    fixed = {"time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
             "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
             "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
             "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
             "context_embedder": "txt_in", "x_embedder": "img_in", "proj_out": "final_layer.linear"}
    for leaf in ("weight", "bias"):
        for d, b in fixed.items():
            out[f"{b}.{leaf}"] = state[f"{d}.{leaf}"]
        scale, shift = state[f"norm_out.linear.{leaf}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{leaf}"] = cat(shift, scale)
    doubles = {k.split(".")[1] for k in state if k.startswith("transformer_blocks.")}
    for i in doubles:
        d, b = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for leaf in ("weight", "bias"):
            g = lambda n: state[f"{d}.{n}.{leaf}"]  # noqa: E731
            out[f"{b}.img_attn.qkv.{leaf}"] = cat(g("attn.to_q"), g("attn.to_k"), g("attn.to_v"))
            out[f"{b}.txt_attn.qkv.{leaf}"] = cat(g("attn.add_q_proj"), g("attn.add_k_proj"), g("attn.add_v_proj"))
            for dn, bn in [("norm1.linear", "img_mod.lin"), ("norm1_context.linear", "txt_mod.lin"),
                           ("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj"),
                           ("ff.net.0.proj", "img_mlp.0"), ("ff.net.2", "img_mlp.2"),
                           ("ff_context.net.0.proj", "txt_mlp.0"), ("ff_context.net.2", "txt_mlp.2")]:
                out[f"{b}.{bn}.{leaf}"] = g(dn)
        for dn, bn in [("norm_q", "img_attn.norm.query_norm"), ("norm_k", "img_attn.norm.key_norm"),
                       ("norm_added_q", "txt_attn.norm.query_norm"), ("norm_added_k", "txt_attn.norm.key_norm")]:
            out[f"{b}.{bn}.scale"] = state[f"{d}.attn.{dn}.weight"]
    singles = {k.split(".")[1] for k in state if k.startswith("single_transformer_blocks.")}
    for i in singles:
        d, b = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for leaf in ("weight", "bias"):
            g = lambda n: state[f"{d}.{n}.{leaf}"]  # noqa: E731
            out[f"{b}.linear1.{leaf}"] = cat(g("attn.to_q"), g("attn.to_k"), g("attn.to_v"), g("proj_mlp"))
            out[f"{b}.linear2.{leaf}"] = g("proj_out")
            out[f"{b}.modulation.lin.{leaf}"] = g("norm.linear")
        out[f"{b}.norm.query_norm.scale"] = state[f"{d}.attn.norm_q.weight"]
        out[f"{b}.norm.key_norm.scale"] = state[f"{d}.attn.norm_k.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def diffusers_converter(inner_dim):
    """diffusers' own convert_flux_transformer_checkpoint_to_diffusers, whose only tie to the
    real model's size is a hard-coded `inner_dim = 3072`, made for `inner_dim` (in memory)."""
    import inspect
    from diffusers.loaders import single_file_utils as suf

    source = inspect.getsource(suf.convert_flux_transformer_checkpoint_to_diffusers)
    assert source.count("inner_dim = 3072") == 1
    namespace = dict(vars(suf))
    exec(source.replace("inner_dim = 3072", f"inner_dim = {inner_dim}"), namespace)  # noqa: S102
    return namespace["convert_flux_transformer_checkpoint_to_diffusers"]


def write_single_file(pipe, path):
    """The transformer as the model repository ships it; diffusers' converter must map it back
    to every original tensor."""
    state = pipe.transformer.state_dict()
    bfl = to_bfl(state)
    save_file(bfl, path)
    c = pipe.transformer.config
    back = diffusers_converter(c.num_attention_heads * c.attention_head_dim)(dict(bfl))
    assert set(back) == set(state), sorted(set(back) ^ set(state))[:5]
    for k, v in state.items():
        assert torch.equal(v, back[k]), k


def requests(rng, n):
    out = []
    for i in range(n):
        out.append(dict(prompt=PROMPTS[rng.randrange(len(PROMPTS))], seed=rng.randrange(2**32),
                        steps=rng.choice([1, 2, 3, 4, 6, 8]), width=16 * rng.randrange(2, 7),
                        height=16 * rng.randrange(2, 7)))
    return out


def main():
    out = sys.argv[1]
    rng = random.Random(2026)
    os.makedirs(os.path.join(out, "folders"), exist_ok=True)
    vocab = os.path.join(out, "clip-vocab")
    write_tokenizer(vocab)
    t5_dir = os.path.join(out, "t5-tokenizer")
    train_t5_tokenizer(t5_dir)
    manifest = dict(versions={p: md.version(p) for p in ("torch", "diffusers", "transformers", "tokenizers",
                                                          "sentencepiece")}, cases=[])
    for case in case_configs(rng):
        folder = os.path.join(out, "folders", case["name"])
        pipe = build(case, vocab, folder, t5_dir)
        pipe.set_progress_bar_config(disable=True)
        images = os.path.join(out, "images", case["name"])
        os.makedirs(images, exist_ok=True)
        reqs = requests(rng, 4)
        for i, r in enumerate(reqs):
            image = pipe(prompt=r["prompt"], height=r["height"], width=r["width"], num_inference_steps=r["steps"],
                         guidance_scale=0.0, max_sequence_length=256,
                         generator=torch.manual_seed(r["seed"])).images[0]
            image.save(os.path.join(images, f"{i}.png"))
            r["clip_ids"] = pipe.tokenizer(r["prompt"], padding="max_length", max_length=77, truncation=True).input_ids
            r["t5_ids"] = pipe.tokenizer_2(r["prompt"], padding="max_length", max_length=256,
                                           truncation=True).input_ids
            s = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
            s.set_timesteps(sigmas=np.linspace(1.0, 1 / r["steps"], r["steps"]))
            r["sigmas"] = [float(x) for x in s.sigmas]
            r["timesteps"] = [float(x) for x in s.timesteps]
            r["average_hash"] = str(imagehash.average_hash(image))
            r["pixel_std"] = float(np.asarray(image, dtype=np.float64).std())
        # Half precision on the CPU (the same libtorch kernels as ours): how diffusers and
        # transformers hold each part in fp16 and bf16 (T5's `wo` stays f32 under fp16).
        if case["name"] in ("flux_0", "flux_2"):
            for dtype, torch_dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                half = FluxPipeline.from_pretrained(folder, torch_dtype=torch_dtype, local_files_only=True)
                half.set_progress_bar_config(disable=True)
                for i, r in enumerate(reqs[:2]):
                    image = half(prompt=r["prompt"], height=r["height"], width=r["width"],
                                 num_inference_steps=r["steps"], guidance_scale=0.0, max_sequence_length=256,
                                 generator=torch.manual_seed(r["seed"])).images[0]
                    image.save(os.path.join(images, f"{dtype}-{i}.png"))
                    r.setdefault("half", []).append(dtype)
        single = os.path.join(out, "folders", case["name"] + "-transformer.safetensors")
        write_single_file(pipe, single)
        tokens = [dict(prompt=p, clip=pipe.tokenizer(p, padding="max_length", max_length=77, truncation=True).input_ids,
                       t5=pipe.tokenizer_2(p, padding="max_length", max_length=256, truncation=True).input_ids)
                  for p in PROMPTS]
        manifest["cases"].append(dict(name=case["name"], config=case, requests=reqs, tokens=tokens,
                                      transformer_single_file=os.path.basename(single)))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
