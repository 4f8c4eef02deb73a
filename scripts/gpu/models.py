"""Random-weight SD 1.5, SDXL and FLUX.1-schnell pipelines for the GPU proof kit, made and saved
by diffusers (FLUX as a bf16 folder only: it is served from its folder).

Each model is built from diffusers' and transformers' own classes (real architectures, or tiny
ones for the CPU smoke run), seeded, rounded to fp16 and written twice:

  <work>/<name>/               the diffusers folder (`save_pretrained`, fp16 safetensors)
  <work>/<name>.safetensors    a civitai-style single file (original LDM key names, fp16)

The single file is converted here from the diffusers weights (our own key map, the inverse of
the one diffusers' `from_single_file` applies), and `check_single_file` proves it against
diffusers: every tensor diffusers loads back from the file equals the original, bit for bit.
"""

import json
import os
import re
import time

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)

CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
OPEN_CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                   num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)

# runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0, as their
# config.json files give them (keys left at diffusers' defaults are omitted).
ARCHS = {
    "sd15": dict(
        unet=dict(block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8,
                  layers_per_block=2, sample_size=64,
                  down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                  up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3),
        vae=dict(block_out_channels=[128, 256, 512, 512], latent_channels=4, layers_per_block=2,
                 sample_size=512, scaling_factor=0.18215,
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4),
        text_encoder=CLIP_L,
    ),
    "sdxl": dict(
        unet=dict(block_out_channels=[320, 640, 1280], cross_attention_dim=2048, attention_head_dim=[5, 10, 20],
                  layers_per_block=2, sample_size=128, transformer_layers_per_block=[1, 2, 10],
                  use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                  projection_class_embeddings_input_dim=2816,
                  down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                  up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]),
        vae=dict(block_out_channels=[128, 256, 512, 512], latent_channels=4, layers_per_block=2,
                 sample_size=1024, scaling_factor=0.13025, force_upcast=True,
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4),
        text_encoder=CLIP_L,
        text_encoder_2=OPEN_CLIP_G,
    ),
}

# The same shapes of network, small enough for two CPU cores (the smoke run in .ci/run).
# diffusers recognises an SDXL single file by its OpenCLIP encoder's tenth layer, so ten layers,
# and tells the two encoders apart by width, so they differ as in SDXL (768 and 1280).
TINY_CLIP = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32)
TINY = {
    "sd15": dict(
        unet=dict(block_out_channels=[32, 64, 64, 64], cross_attention_dim=32, attention_head_dim=8,
                  layers_per_block=2, sample_size=8, norm_num_groups=32,
                  down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                  up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3),
        vae=dict(block_out_channels=[32, 32, 64, 64], latent_channels=4, layers_per_block=1, sample_size=64,
                 norm_num_groups=32, scaling_factor=0.18215,
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4),
        text_encoder=TINY_CLIP,
    ),
    "sdxl": dict(
        unet=dict(block_out_channels=[32, 64], cross_attention_dim=96, attention_head_dim=[2, 4],
                  layers_per_block=2, sample_size=8, transformer_layers_per_block=[1, 2], norm_num_groups=32,
                  use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                  projection_class_embeddings_input_dim=112,
                  down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                  up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"]),
        vae=dict(block_out_channels=[32, 32, 64, 64], latent_channels=4, layers_per_block=1, sample_size=64,
                 norm_num_groups=32, scaling_factor=0.13025, force_upcast=True,
                 down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4),
        text_encoder=TINY_CLIP,
        text_encoder_2=dict(TINY_CLIP, hidden_size=64, intermediate_size=128, projection_dim=64,
                            num_hidden_layers=10, hidden_act="gelu"),
    ),
}


# FLUX.1-schnell at its real widths (3 072-wide blocks, 24 heads of 128, rope axes 16/56/56,
# T5-XXL's 4 096-wide layers, CLIP-L, its 16-channel VAE) with fewer blocks: 2 double and 4
# single instead of 19 and 38, 2 T5 layers instead of 24 (the weights of the real depth would
# take the whole call to make and save; the work per block is the real one).
FLUX_VAE = dict(block_out_channels=[128, 256, 512, 512], latent_channels=16, layers_per_block=2, sample_size=1024,
                scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
ARCHS["flux"] = dict(
    transformer=dict(num_layers=2, num_single_layers=4, attention_head_dim=128, num_attention_heads=24,
                     joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=[16, 56, 56]),
    t5=dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64),
    vae=FLUX_VAE,
    text_encoder=CLIP_L,
)
TINY["flux"] = dict(
    transformer=dict(num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                     joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 6, 6]),
    t5=dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
    vae=dict(FLUX_VAE, block_out_channels=[32, 32, 64, 64], layers_per_block=1, norm_num_groups=32, sample_size=64),
    text_encoder=TINY_CLIP,
)


def t5_tokenizer():
    """A T5-style Unigram vocabulary (specials, the word boundary, letters, digits, some words),
    as transformers' T5 tokenizer builds one from pieces and scores."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for c in "abcdefghijklmnopqrstuvwxyz0123456789":
        pieces += [(c, -5.0), ("▁" + c, -4.5)]
    for w in "the of and in photo cat portrait sailor city night lighthouse bowl ramen light".split():
        pieces.append(("▁" + w, -3.0))
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def build_flux(tiny, vocab_dir, device, seed=0):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    spec = (TINY if tiny else ARCHS)["flux"]
    torch.manual_seed(seed)
    t5_tok = t5_tokenizer()
    bf16 = lambda m: rounded(m, torch.bfloat16)  # noqa: E731 - FLUX's files are bf16
    with torch.device(device):
        transformer = bf16(FluxTransformer2DModel(**spec["transformer"]))
        t5 = bf16(T5EncoderModel(T5Config(vocab_size=len(t5_tok), feed_forward_proj="gated-gelu",
                                          is_encoder_decoder=False, use_cache=False, **spec["t5"])))
        clip = bf16(CLIPTextModel(CLIPTextConfig(**spec["text_encoder"])))
        vae = bf16(AutoencoderKL(**spec["vae"]))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tokenizer(vocab_dir, "<|endoftext|>"),
                        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)


def scheduler_for(arch):
    """The base scheduler each repository ships (NicheImage swaps it per request)."""
    if arch == "sdxl":
        return EulerDiscreteScheduler(**BETAS, timestep_spacing="leading", steps_offset=1)
    return PNDMScheduler(**BETAS, steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False)


def tokenizer(vocab_dir, pad):
    return CLIPTokenizer(os.path.join(vocab_dir, "vocab.json"), os.path.join(vocab_dir, "merges.txt"),
                         pad_token=pad, model_max_length=77)


def rounded(module, dtype=torch.float16):
    """The weights as `dtype` files hold them, kept in fp32 (so every layout holds the same)."""
    return module.to(dtype).float()


def build(arch, tiny, vocab_dir, device, seed=0):
    """A random pipeline of `arch` (fp32 values that fp16 represents exactly), on `device`."""
    if arch == "flux":
        return build_flux(tiny, vocab_dir, device, seed)
    spec = (TINY if tiny else ARCHS)[arch]
    torch.manual_seed(seed)
    with torch.device(device):
        unet = rounded(UNet2DConditionModel(**spec["unet"]))
        vae = rounded(AutoencoderKL(**spec["vae"]))
        text_encoder = rounded(CLIPTextModel(CLIPTextConfig(**spec["text_encoder"])))
        parts = dict(unet=unet, vae=vae, text_encoder=text_encoder, scheduler=scheduler_for(arch),
                     tokenizer=tokenizer(vocab_dir, "<|endoftext|>"))
        if arch == "sdxl":
            parts["text_encoder_2"] = rounded(
                CLIPTextModelWithProjection(CLIPTextConfig(**spec["text_encoder_2"])))
            parts["tokenizer_2"] = tokenizer(vocab_dir, "!")
            return StableDiffusionXLPipeline(**parts)
    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


# --- diffusers -> original (LDM) key names -----------------------------------------------------

RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
          ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]
VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                 ("to_out.0.", "proj_out.")]


def rename(rest, pairs):
    for old, new in pairs:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def unet_key(key, config):
    per = config.layers_per_block + 1  # LDM counts the resnets and the down/upsampler per level
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    for old, new in fixed.items():
        if key.startswith(old):
            return new + key[len(old):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per + j
        return (f"input_blocks.{index}.0." + rename(rest, RESNET) if kind == "resnets"
                else f"input_blocks.{index}.1.{rest}")
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        kind, j, rest = m[1], int(m[2]), m[3]
        return (f"middle_block.{2 * j}." + rename(rest, RESNET) if kind == "resnets"
                else f"middle_block.1.{rest}")
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per + j
        return (f"output_blocks.{index}.0." + rename(rest, RESNET) if kind == "resnets"
                else f"output_blocks.{index}.1.{rest}")
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        has_attention = "CrossAttn" in config.up_block_types[block]
        return f"output_blocks.{block * per + per - 1}.{2 if has_attention else 1}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def vae_key(key, levels):
    for side in ("encoder", "decoder"):
        if not key.startswith(side + "."):
            continue
        rest = key[len(side) + 1:]
        if rest.startswith("conv_norm_out."):
            return f"{side}.norm_out.{rest[len('conv_norm_out.'):]}"
        if m := re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
            level = int(m[2]) if m[1] == "down" else levels - 1 - int(m[2])
            return f"{side}.{m[1]}.{level}.block.{m[3]}." + rename(m[4], [("conv_shortcut.", "nin_shortcut.")])
        if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.(.*)", rest):
            return f"{side}.down.{m[1]}.downsample.{m[2]}"
        if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest):
            return f"{side}.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"
        if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest):
            return f"{side}.mid.block_{int(m[1]) + 1}." + rename(m[2], [("conv_shortcut.", "nin_shortcut.")])
        if m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
            return f"{side}.mid.attn_1." + rename(m[1], VAE_ATTENTION)
        return key
    return key  # quant_conv, post_quant_conv


def text_model_keys(state):
    """transformers 5 names CLIP's weights with or without `text_model.`; files always have it."""
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
            for k, v in state.items() if v.is_floating_point()}


def open_clip(state):
    """CLIPTextModelWithProjection -> OpenCLIP's names (fused q/k/v, transposed projection)."""
    out = {}
    state = text_model_keys(state)
    for key, value in state.items():
        if key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
            continue
        rest = key[len("text_model."):]
        if rest == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif rest == "embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif rest.startswith("final_layer_norm."):
            out["ln_final." + rest[len("final_layer_norm."):]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)", rest):
            layer, name = m[1], m[2]
            base = f"transformer.resblocks.{layer}."
            if m2 := re.match(r"self_attn\.q_proj\.(weight|bias)", name):
                kind = m2[1]
                fused = [state[f"text_model.encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[base + f"attn.in_proj_{kind}"] = torch.cat(fused)
            elif re.match(r"self_attn\.[kv]_proj\.", name):
                continue
            else:
                out[base + rename(name, [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."),
                                         ("self_attn.out_proj.", "attn.out_proj."), ("mlp.fc1.", "mlp.c_fc."),
                                         ("mlp.fc2.", "mlp.c_proj.")])] = value
        else:
            raise KeyError(f"no OpenCLIP name for {key}")
    return out


def single_file_state(pipe):
    """The pipeline's weights under a civitai single file's names, in fp16."""
    out = {}
    for key, value in pipe.unet.state_dict().items():
        out["model.diffusion_model." + unet_key(key, pipe.unet.config)] = value
    levels = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        name = vae_key(key, levels)
        if ".mid.attn_1." in name and value.dim() == 2:
            value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out["first_stage_model." + name] = value
    xl = getattr(pipe, "text_encoder_2", None) is not None
    first = "conditioner.embedders.0.transformer." if xl else "cond_stage_model.transformer."
    for key, value in text_model_keys(pipe.text_encoder.state_dict()).items():
        out[first + key] = value
    if xl:
        for key, value in open_clip(pipe.text_encoder_2.state_dict()).items():
            out["conditioner.embedders.1.model." + key] = value
    return {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in out.items()}


def save(pipe, work, name):
    """Writes the folder and the single file; answers their paths and what it took."""
    started = time.time()
    folder, single = os.path.join(work, name), os.path.join(work, name + ".safetensors")
    if name == "flux":  # FLUX is served from its folder, in bf16
        pipe.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
        single = None
    else:
        pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
        save_file(single_file_state(pipe), single)
    pipe.to(torch.float32)
    parts = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")
    params = {part: sum(p.numel() for p in getattr(pipe, part).parameters())
              for part in parts if getattr(pipe, part, None) is not None}
    size = os.path.getsize(single) if single else sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    return dict(folder=folder, single_file=single, params=params, file_bytes=size,
                save_secs=round(time.time() - started, 2))


def load(arch, path, folder, dtype, device):
    """diffusers' pipeline from the single file (with the folder as its config) or the folder."""
    if arch == "flux":
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)
    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    extra = {} if arch == "sdxl" else dict(safety_checker=None, requires_safety_checker=False)
    if path.endswith(".safetensors"):
        pipe = cls.from_single_file(path, config=folder, torch_dtype=dtype, local_files_only=True, **extra)
    else:
        pipe = cls.from_pretrained(path, torch_dtype=dtype, local_files_only=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_single_file(original, loaded):
    """Every weight diffusers read back from our single file equals the original's: names
    (nothing missing, nothing extra) and values (bit for bit in fp16)."""
    parts = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if getattr(original, "text_encoder_2", None) else [])
    mismatched = []
    for part in parts:
        ours = {k: v for k, v in getattr(original, part).state_dict().items() if v.is_floating_point()}
        theirs = {k: v for k, v in getattr(loaded, part).state_dict().items() if v.is_floating_point()}
        if set(ours) != set(theirs):
            mismatched.append(f"{part}: names differ ({sorted(set(ours) ^ set(theirs))[:4]})")
            continue
        for key, value in ours.items():
            other = theirs[key]
            if value.shape != other.shape or not torch.equal(value.to(other.device, torch.float16), other.half()):
                mismatched.append(f"{part}.{key}")
    return mismatched

