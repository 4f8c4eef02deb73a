"""The Python side of `benches/common::median_seconds`: one untimed warm-up call, then the
median (the upper middle value, as the Rust side takes it) of `runs` timed calls."""

import time


def median_seconds(call, runs):
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]
