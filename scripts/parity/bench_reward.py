"""Times NicheImage's reward check on one image pair: decode two base64 PNGs with Pillow, then
imagehash.average_hash at size 8 (the match) and 6 (the black rule) for both, and the distance.
Usage: bench_reward.py REFERENCE.b64 MINER.b64 RUNS  -> {"seconds": [...], "distance": N}
"""
import base64
import io
import json
import sys
import time

import imagehash
from PIL import Image


def check(reference_b64, miner_b64):
    reference = Image.open(io.BytesIO(base64.b64decode(reference_b64)))
    miner = Image.open(io.BytesIO(base64.b64decode(miner_b64)))
    black = [imagehash.average_hash(i, hash_size=6) for i in (reference, miner)]
    distance = imagehash.average_hash(reference, hash_size=8) - imagehash.average_hash(miner, hash_size=8)
    return distance, black


reference_b64 = open(sys.argv[1]).read()
miner_b64 = open(sys.argv[2]).read()
runs = int(sys.argv[3])
seconds = []
for _ in range(runs + 1):
    started = time.perf_counter()
    distance, _ = check(reference_b64, miner_b64)
    seconds.append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds[1:], "distance": int(distance)}))
