"""diffusers' UNet2DConditionModel for SDXL (random weights) timed on the work
`cargo bench --bench sdxl_unet` times ours on; prints one JSON line.

    python scripts/parity/bench_sdxl_unet.py UNET_CONFIG_JSON SIDE STEPS RUNS DEVICE DTYPE

UNET_CONFIG_JSON is the config our bench writes for SDXL 1.0 base (the same architecture:
2,567,463,684 parameters). DEVICE is cpu or cuda:N, DTYPE float16 or float32.
"""

import json
import os
import sys

import torch
from diffusers import UNet2DConditionModel

sys.path.insert(0, os.path.dirname(__file__))
from timing import median_seconds  # noqa: E402


def main():
    config_path, side, steps, runs, device, dtype = sys.argv[1:7]
    side, steps, runs = int(side), int(steps), int(runs)
    dtype = getattr(torch, dtype)
    with open(config_path) as f:
        config = json.load(f)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).to(device=device, dtype=dtype).eval()
    latent = side // 8
    pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    context = torch.randn(2, 77, config["cross_attention_dim"], device=device, dtype=dtype)
    added = {"text_embeds": torch.randn(2, pooled, device=device, dtype=dtype),
             "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * 2, device=device, dtype=dtype)}

    def image():
        x = torch.randn(1, 4, latent, latent, device=device, dtype=dtype)
        for step in range(steps):
            t = 999.0 - step * (1000.0 / steps)
            eps = unet(torch.cat([x, x]), t, encoder_hidden_states=context, added_cond_kwargs=added).sample
            uncond, cond = eps.chunk(2)
            x = x - (uncond + (cond - uncond) * 7.5) * 0.01
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        seconds = median_seconds(image, runs)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
