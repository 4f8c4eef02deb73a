"""Reference depth and normal maps from controlnet_aux 0.0.7's MidasDetector (DPT-Hybrid) and
NormalBaeDetector, as NicheImage runs them on its (already resized) conditional image.

    nicheimage-tui tiny-checkpoint --annotator midas --name midas-random --out CKPT_DIR
    nicheimage-tui tiny-checkpoint --annotator normalbae --name normalbae-random --out CKPT_DIR
    .venv-parity/bin/python scripts/parity/annotators.py CKPT_DIR OUT_DIR

The real checkpoints (470 MB and 290 MB) cannot live in the repo, so both networks are built at
full size by controlnet_aux's own classes and given the random weights our writer drew (fp16
values, computed in fp32 as the detectors do). Loading them with controlnet_aux's modules checks
our parameter names and shapes; running the detectors gives the expected maps. OUT_DIR gets the
inputs, <name>_depth.png / <name>_normal.png, the raw network outputs as little-endian f32
(<name>_depth.f32: h*w; <name>_normal.f32: 3*h*w) and cases.json with the checkpoints' sha256.
"""

import glob
import hashlib
import json
import os
import sys
import types

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def controlnet_aux():
    """controlnet_aux's package __init__ imports every detector; load only what we need."""
    src = glob.glob(os.path.join(sys.prefix, "controlnet_aux-0.0.7", "src", "controlnet_aux"))[0]
    package = types.ModuleType("controlnet_aux")
    package.__path__ = [src]
    sys.modules["controlnet_aux"] = package


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(model, path, allowed_missing):
    state = {k: v.float() for k, v in load_file(path).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not unexpected, unexpected
    assert set(missing) <= set(allowed_missing), missing
    return model.eval()


def detectors(ckpt_dir):
    """controlnet_aux's MidasDetector and NormalBaeDetector (f32, CPU) with our random weights."""
    controlnet_aux()
    from controlnet_aux.midas import MidasDetector
    from controlnet_aux.midas.api import MiDaSInference
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel
    from controlnet_aux.normalbae import NormalBaeDetector
    from controlnet_aux.normalbae.nets.NNET import NNET

    dpt = DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True)
    # The classifier head of timm's ViT is not part of MiDaS' forward pass.
    dpt = load(dpt, os.path.join(ckpt_dir, "midas-random.safetensors"),
               ["pretrained.model.head.weight", "pretrained.model.head.bias"])
    inference = MiDaSInference.__new__(MiDaSInference)
    torch.nn.Module.__init__(inference)
    inference.model = dpt
    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet",
                                 sampling_ratio=0.4, importance_ratio=0.7)
    nnet = load(NNET(args), os.path.join(ckpt_dir, "normalbae-random.safetensors"), [])
    return MidasDetector(inference), NormalBaeDetector(nnet)


def write_pickle_fixture(out_dir):
    """A small checkpoint shaped like scannet.pt (the state dict under `model`, names prefixed
    `module.`, beside things a state dict does not need), with the storage sharing, offsets,
    strides and dtypes the torch-file reader must get right."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8 - 1
    state = {
        "module.conv.weight": base,
        "module.view.weight": base[1:3, ::2],  # shares base's storage at an offset, strided
        "module.transposed": base.t(),
        "module.half": torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16),
        "module.bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "module.empty": torch.zeros(0, 3),
    }
    import argparse
    torch.save({"model": state, "epoch": 3, "lr": 1e-4, "args": argparse.Namespace(a=1),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}},
               os.path.join(out_dir, "state.pt"))
    expected = {k: {"shape": list(v.shape), "values": v.flatten().double().tolist()}
                for k, v in state.items()}
    with open(os.path.join(out_dir, "state.json"), "w") as f:
        json.dump(expected, f, indent=1)


def main():
    ckpt_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(2)
    write_pickle_fixture(out_dir)
    midas, normalbae = detectors(ckpt_dir)
    dpt, nnet = midas.model.model, normalbae.model
    midas_path = os.path.join(ckpt_dir, "midas-random.safetensors")
    normal_path = os.path.join(ckpt_dir, "normalbae-random.safetensors")

    # Two photo-like inputs, already at NicheImage's sizes (multiples of 64), in both orientations.
    photos = sorted(p for p in glob.glob(os.path.join(ROOT, "tests/fixtures/sd15_img2img/photo_*.png"))
                    if "_to_" not in p)
    inputs = {
        "photo_192x128": Image.open(photos[0]).convert("RGB").resize((192, 128), Image.LANCZOS),
        "photo_128x192": Image.open(photos[-1]).convert("RGB").resize((128, 192), Image.LANCZOS),
    }
    cases = {"midas_sha256": sha256(midas_path), "normalbae_sha256": sha256(normal_path), "images": {}}
    for name, image in inputs.items():
        image.save(os.path.join(out_dir, name + ".png"))
        side = min(image.size)
        array = np.array(image, dtype=np.uint8)
        with torch.no_grad():
            x = torch.from_numpy(array).float() / 127.5 - 1.0
            raw_depth = dpt(x.permute(2, 0, 1).unsqueeze(0))[0]
            x = (torch.from_numpy(array).float() / 255.0).permute(2, 0, 1).unsqueeze(0)
            x = normalbae.norm(x)
            raw_normal = nnet(x)[0][-1][0, :3]
        raw_depth.numpy().astype("<f4").tofile(os.path.join(out_dir, name + "_depth.f32"))
        raw_normal.numpy().astype("<f4").tofile(os.path.join(out_dir, name + "_normal.f32"))
        depth = midas(image, detect_resolution=side, image_resolution=side, output_type="np")
        normal = normalbae(image, detect_resolution=side, image_resolution=side, output_type="np")
        Image.fromarray(depth).save(os.path.join(out_dir, name + "_depth.png"))
        Image.fromarray(normal).save(os.path.join(out_dir, name + "_normal.png"))
        cases["images"][name] = {
            "depth_min": float(raw_depth.min()),
            "depth_max": float(raw_depth.max()),
        }
        print(name, "depth", float(raw_depth.min()), float(raw_depth.max()),
              "normal mean", float(raw_normal.mean()))
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
