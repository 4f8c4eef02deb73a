"""The Python side of crates/bittensor/tests/timelock_interop.rs: bittensor-drand 1.3.0 (pinned through
bittensor 10.2.0 in requirements.txt) or 2.0.0 (requirements-today.txt, what bittensor 11.3
uses) on what our Rust code wrote, and the reverse.

Reads one JSON request on stdin, writes one JSON answer on stdout:
  {"decrypt": hex, "signature": hex}          -> {"plaintext": hex}  (a raw commit, as the chain stores it)
  {"encrypt": hex, "round": n}                -> {"ciphertext": hex} (raw tle bytes, UserData unwrapped)
  {"rounds": [[tempo, block, netuid, period, block_time], ...]}
                                              -> {"rounds": [[round, t_before, t_after], ...]}   (1.3.0)
  {"rounds_v2": [[last_epoch_block, pending_epoch_at, epoch_index, tempo,
                  blocks_since_last_step, block, period, block_time], ...]}
                                              -> {"rounds": [[round or null, t_before, t_after], ...]}  (2.0.0)
"""
import json
import sys
import time

import bittensor_drand as drand


def compact(n):
    # SCALE compact length, as parity-scale-codec writes it.
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raise ValueError("too long")


def uncompact(b):
    mode = b[0] & 3
    if mode == 0:
        return b[0] >> 2, 1
    if mode == 1:
        return int.from_bytes(b[:2], "little") >> 2, 2
    if mode == 2:
        return int.from_bytes(b[:4], "little") >> 2, 4
    raise ValueError("big compact")


def main():
    req = json.load(sys.stdin)
    if "decrypt" in req:
        raw = bytes.fromhex(req["decrypt"])
        # decrypt_with_signature takes SCALE UserData {encrypted_data: Vec<u8>, reveal_round: u64}.
        wrapped = compact(len(raw)) + raw + (0).to_bytes(8, "little")
        out = drand.decrypt_with_signature(wrapped, req["signature"])
        print(json.dumps({"plaintext": bytes(out).hex()}))
    elif "encrypt" in req:
        data, _ = drand.encrypt_at_round(bytes.fromhex(req["encrypt"]), req["round"])
        data = bytes(data)
        n, k = uncompact(data)
        print(json.dumps({"ciphertext": data[k:k + n].hex()}))
    elif "rounds_v2" in req:
        rounds = []
        for last, pending, index, tempo, since, block, period, block_time in req["rounds_v2"]:
            before = time.time()
            try:
                _, rnd = drand.get_encrypted_commit_v2(
                    [0, 1], [1, 65535], 10, last, pending, index, tempo, since, block,
                    period, block_time, bytes(32),
                )
            except ValueError:
                rnd = None
            after = time.time()
            rounds.append([rnd, before, after])
        print(json.dumps({"rounds": rounds}))
    else:
        rounds = []
        for tempo, block, netuid, period, block_time in req["rounds"]:
            before = time.time()
            _, rnd = drand.get_encrypted_commit(
                [0, 1], [1, 65535], 10, tempo, block, netuid, period, block_time, bytes(32)
            )
            after = time.time()
            rounds.append([rnd, before, after])
        print(json.dumps({"rounds": rounds}))


if __name__ == "__main__":
    main()
