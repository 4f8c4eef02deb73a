"""PNG-encodes raw RGB pixels with Pillow, as NicheImage's endpoint does; prints one JSON line.

    python scripts/parity/bench_png.py RAW_RGB_FILE WIDTH HEIGHT RUNS
"""

import io
import json
import sys
import time

from PIL import Image


def main():
    path, width, height, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    image = Image.frombytes("RGB", (width, height), open(path, "rb").read())
    times, size = [], 0
    for _ in range(runs + 1):
        buffer = io.BytesIO()
        t = time.perf_counter()
        image.save(buffer, format="PNG")
        times.append(time.perf_counter() - t)
        size = buffer.tell()
    print(json.dumps({"seconds": times[1:], "bytes": size}))


if __name__ == "__main__":
    main()
