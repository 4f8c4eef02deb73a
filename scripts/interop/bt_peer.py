"""The real Python bittensor SDK (10.2.0) as a peer for our interop tests and benchmark.

Subcommands (each prints JSON lines on stdout):
  axon      --port P --seed HEX [--echo]     serve ImageGenerating with a real bt.Axon (a JSON line first)
  dendrite  --ip IP --port P --axon-hotkey SS58 --seed HEX --case ok|tamper|stale ...
  vectors   --seed HEX --message M [--rust-ss58 A --rust-signature S]
  keyfiles  --dir D --seed HEX --password PW  write a plain and a $NACL hotkey with bittensor_wallet
  neurons   --hex HEX                        decode Vec<NeuronInfoLite> with the SDK's decoder (bt_decode)
  bench     --ip IP --port P --axon-hotkey SS58 --seed HEX --count N --payload BYTES --concurrency C
"""
import argparse
import asyncio
import json
import sys
import time

import bittensor.utils.networking as networking

# The Dendrite constructor looks up the external IP on the internet; tests are offline.
networking.get_external_ip = lambda: "127.0.0.1"

import bittensor as bt  # noqa: E402
from bittensor_wallet import Keypair, Wallet  # noqa: E402


class ImageGenerating(bt.Synapse):
    prompt: str = ""
    seed: int = 0
    model_name: str = ""
    conditional_image: str = ""
    pipeline_type: str = "txt2img"
    pipeline_params: dict = {}
    request_dict: dict = {}
    response_dict: dict = {}
    image: str = ""


def emit(obj):
    print(json.dumps(obj), flush=True)


def keypair(seed):
    return Keypair.create_from_seed(seed)


def wallet_for(seed, path):
    wallet = Wallet(name="peer", hotkey="peer", path=path)
    kp = keypair(seed)
    wallet.set_hotkey(kp, encrypt=False, overwrite=True)
    wallet.set_coldkeypub(kp, overwrite=True)
    return wallet


def run_axon(args):
    import tempfile

    wallet = wallet_for(args.seed, tempfile.mkdtemp())

    def forward(synapse: ImageGenerating) -> ImageGenerating:
        if not args.echo:
            synapse.image = "py:" + synapse.prompt
        return synapse

    axon = bt.Axon(wallet=wallet, port=args.port, ip="127.0.0.1", external_ip="127.0.0.1")
    axon.attach(forward_fn=forward)
    axon.start()
    emit({"ready": True, "hotkey": wallet.hotkey.ss58_address})
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        axon.stop()


class CaseDendrite(bt.Dendrite):
    """A real dendrite that can spoil its own request the way an attacker would."""

    case = "ok"

    def preprocess_synapse_for_request(self, target_axon_info, synapse, timeout=12.0):
        synapse = super().preprocess_synapse_for_request(target_axon_info, synapse, timeout)
        if self.case == "tamper":
            sig = bytearray.fromhex(synapse.dendrite.signature[2:])
            sig[5] ^= 0xFF
            synapse.dendrite.signature = "0x" + sig.hex()
        elif self.case == "stale":
            synapse.dendrite.nonce = time.time_ns() - 30_000_000_000
            message = f"{synapse.dendrite.nonce}.{synapse.dendrite.hotkey}.{synapse.axon.hotkey}.{synapse.dendrite.uuid}.{synapse.body_hash}"
            synapse.dendrite.signature = f"0x{self.keypair.sign(message).hex()}"
        return synapse


def target(args):
    return bt.AxonInfo(version=10002000, ip=args.ip, port=args.port, ip_type=4,
                       hotkey=args.axon_hotkey, coldkey=args.axon_hotkey)


async def run_dendrite(args):
    for case in args.case:
        dendrite = CaseDendrite(wallet=keypair(args.seed))
        dendrite.case = case
        synapse = ImageGenerating(prompt=f"a cat ({case})", seed=7, pipeline_params={"num_inference_steps": 20})
        response = await dendrite.call(target(args), synapse, timeout=args.timeout, deserialize=False)
        emit({
            "case": case,
            "status_code": int(response.dendrite.status_code or 0),
            "status_message": response.dendrite.status_message,
            "image": response.image,
            "process_time": float(response.dendrite.process_time or 0),
            "axon_hotkey": response.axon.hotkey,
        })
        await dendrite.aclose_session()


def run_vectors(args):
    kp = keypair(args.seed)
    out = {
        "ss58": kp.ss58_address,
        "public": kp.public_key.hex(),
        "signature": "0x" + kp.sign(args.message).hex(),
        "body_hash": ImageGenerating(prompt="x").body_hash,
    }
    if args.rust_ss58:
        rust = Keypair(ss58_address=args.rust_ss58)
        out["rust_signature_verifies"] = bool(rust.verify(args.message, bytes.fromhex(args.rust_signature[2:])))
        out["rust_signature_on_other_message"] = bool(rust.verify(args.message + "!", bytes.fromhex(args.rust_signature[2:])))
    emit(out)


def run_keyfiles(args):
    kp = keypair(args.seed)
    plain = Wallet(name="plain", hotkey="hk", path=args.dir)
    plain.set_hotkey(kp, encrypt=False, overwrite=True)
    sealed = Wallet(name="sealed", hotkey="hk", path=args.dir)
    sealed.set_hotkey(kp, encrypt=True, overwrite=True, hotkey_password=args.password)
    emit({"ss58": kp.ss58_address})


def run_neurons(args):
    import bt_decode
    from bittensor.core.chain_data.utils import decode_account_id

    for n in bt_decode.NeuronInfoLite.decode_vec(bytes.fromhex(args.hex)):
        emit({
            "hotkey": decode_account_id(n.hotkey),
            "coldkey": decode_account_id(n.coldkey),
            "uid": n.uid, "netuid": n.netuid, "active": n.active,
            "axon": {"ip": n.axon_info.ip, "port": n.axon_info.port, "ip_type": n.axon_info.ip_type,
                     "version": n.axon_info.version, "block": n.axon_info.block},
            "stake": [[decode_account_id(c), s] for c, s in n.stake],
            "emission": n.emission, "incentive": n.incentive, "consensus": n.consensus,
            "trust": n.trust, "validator_trust": n.validator_trust, "dividends": n.dividends,
            "last_update": n.last_update, "validator_permit": n.validator_permit,
            "pruning_score": n.pruning_score,
        })


async def run_bench(args):
    dendrite = bt.Dendrite(wallet=keypair(args.seed))
    payload = "x" * args.payload
    latencies = []

    async def one():
        synapse = ImageGenerating(prompt="bench", image=payload)
        started = time.perf_counter()
        response = await dendrite.call(target(args), synapse, timeout=30.0, deserialize=False)
        latencies.append(time.perf_counter() - started)
        if int(response.dendrite.status_code or 0) != 200:
            raise SystemExit(f"bench call failed: {response.dendrite.status_code} {response.dendrite.status_message}")

    started = time.perf_counter()
    for start in range(0, args.count, args.concurrency):
        await asyncio.gather(*(one() for _ in range(min(args.concurrency, args.count - start))))
    wall = time.perf_counter() - started
    latencies.sort()
    emit({"count": args.count, "wall": wall, "p50": latencies[len(latencies) // 2],
          "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]})
    await dendrite.aclose_session()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("axon")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--seed", required=True)
    a.add_argument("--echo", action="store_true", help="answer the synapse unchanged (benchmark)")
    for name in ("dendrite", "bench"):
        d = sub.add_parser(name)
        d.add_argument("--ip", default="127.0.0.1")
        d.add_argument("--port", type=int, required=True)
        d.add_argument("--axon-hotkey", required=True)
        d.add_argument("--seed", required=True)
        d.add_argument("--timeout", type=float, default=12.0)
        d.add_argument("--case", nargs="+", default=["ok"])
        d.add_argument("--count", type=int, default=200)
        d.add_argument("--payload", type=int, default=1 << 20)
        d.add_argument("--concurrency", type=int, default=8)
    v = sub.add_parser("vectors")
    v.add_argument("--seed", required=True)
    v.add_argument("--message", required=True)
    v.add_argument("--rust-ss58")
    v.add_argument("--rust-signature")
    n = sub.add_parser("neurons")
    n.add_argument("--hex", required=True)
    k = sub.add_parser("keyfiles")
    k.add_argument("--dir", required=True)
    k.add_argument("--seed", required=True)
    k.add_argument("--password", required=True)
    args = parser.parse_args()
    if args.cmd == "axon":
        run_axon(args)
    elif args.cmd == "dendrite":
        asyncio.run(run_dendrite(args))
    elif args.cmd == "vectors":
        run_vectors(args)
    elif args.cmd == "neurons":
        run_neurons(args)
    elif args.cmd == "keyfiles":
        run_keyfiles(args)
    elif args.cmd == "bench":
        asyncio.run(run_bench(args))


if __name__ == "__main__":
    sys.exit(main())
