"""Reference logits of transformers' ViTForImageClassification, the architecture of NicheImage's
NSFW filter (Falconsai/nsfw_image_detection), on a tiny randomly initialised ViT.

    .venv-parity/bin/python scripts/parity/nsfw_vit.py OUT_DIR

OUT_DIR/model gets the tiny classifier as transformers saves it (config.json, model.safetensors,
preprocessor_config.json with Falconsai's settings: 224x224 BILINEAR, mean = std = 0.5), and
OUT_DIR/cases.json the processed pixels and logits for the PNGs of tests/fixtures/sd15_img2img
and tests/fixtures/sd15. NicheImage's transformers 4.38 processor resized with PIL; transformers 5's
PIL backend does the same, so that is the one used here.
"""

import glob
import json
import os
import sys

import torch
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def main():
    out_dir = sys.argv[1]
    model_dir = os.path.join(out_dir, "model")
    torch.manual_seed(2024)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=224, patch_size=16, num_labels=2, id2label={0: "normal", 1: "nsfw"},
                       label2id={"normal": 0, "nsfw": 1})
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessorPil(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                                     size={"height": 224, "width": 224}, resample=2)
    files = sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/sd15_img2img/photo_*.png")))
    files += sorted(glob.glob(os.path.join(ROOT, "tests/fixtures/sd15/*.png")))
    # A random classifier sits near 50/50 on everything: spread its logits and centre them on
    # these images so that both verdicts occur.
    with torch.no_grad():
        model.classifier.weight.mul_(300.0)
        diffs = []
        for path in files:
            pixels = processor(images=Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
            logits = model(pixel_values=pixels).logits[0]
            diffs.append(float(logits[1] - logits[0]))
        model.classifier.bias[1] -= sorted(diffs)[len(diffs) // 2] - 0.01
    model.save_pretrained(model_dir, safe_serialization=True)
    processor.save_pretrained(model_dir)
    cases = []
    for path in files:
        image = Image.open(path).convert("RGB")
        pixels = processor(images=image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            logits = model(pixel_values=pixels).logits
        probs = logits.softmax(-1)[0]
        cases.append({
            "image": os.path.relpath(path, os.path.join(ROOT, "tests/fixtures")),
            "pixels_head": [float(x) for x in pixels.flatten()[:64]],
            "pixels_sum": float(pixels.double().sum()),
            "pixels_abs_sum": float(pixels.double().abs().sum()),
            "logits": [float(x) for x in logits[0]],
            "nsfw": float(probs[1]),
        })
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    print(f"wrote {len(cases)} cases; nsfw verdicts: {[c['nsfw'] > 0.5 for c in cases]}")


if __name__ == "__main__":
    main()
