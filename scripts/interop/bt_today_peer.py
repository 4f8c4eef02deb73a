"""Today's Python bittensor SDK (11.3.0, bittensor-wallet 4.1.1) as a peer for our interop tests.

bittensor 11 has no Axon or Dendrite: neurons sign plain HTTP with `bittensor.http_auth`
(btauth/1). Subcommands (each prints JSON lines on stdout):
  client    --url U --receiver SS58            attack and use an axon as a Python 11.3 validator
  server    --hotkey-uri URI                   a btauth/1 miner on a stdlib HTTP server (prints its
                                               port first, then one line per request; stops when
                                               stdin closes)
  keyfiles  --dir D --password PW              sr25519 and ed25519 hotkeys, plain and $NACL, written
                                               by bittensor-wallet 4.1.1
Keys are sp-core dev keys (//Alice, ...) through bittensor.sp_core, so both sides know them.
"""
import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bittensor as bt
from bittensor.sp_core import Keypair

SR25519, ED25519 = 1, 0


def emit(obj):
    print(json.dumps(obj), flush=True)


def key(uri, crypto=SR25519):
    return Keypair.create_from_uri(uri, crypto)


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("content-type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def sdk_verdict(headers, body, path, receiver):
    """What 11.3's own verifier says of the same request (a fresh replay store)."""
    try:
        bt.http_auth.verify(
            headers, body, method="POST", path=path, self_hotkey_ss58=receiver,
            nonce_store=bt.http_auth.InMemoryNonceStore(),
        )
        return None
    except bt.http_auth.AuthError as e:
        return {"error": type(e).__name__, "detail": str(e)}


def run_client(args):
    path = "/ImageGenerating"
    url = args.url.rstrip("/") + path
    synapse = {"prompt": "a red fox", "seed": 7, "model_name": "RealisticVision"}
    body = json.dumps(synapse).encode()
    alice_sr, alice_ed = key("//Alice"), key("//Alice", ED25519)

    def case(name, signer, *, sent_body=body, receiver=args.receiver, nonce=None, drop=(), again=False):
        headers = bt.http_auth.sign(signer, method="POST", path=path, body=body,
                                    receiver_ss58=receiver, nonce_ns=nonce)
        for h in drop:
            headers.pop(h)
        verdict = sdk_verdict(headers, sent_body, path, args.receiver)
        status, answer = post(url, sent_body, headers)
        out = {"case": name, "status": status, "answer": answer, "sdk": verdict,
               "hotkey": signer.ss58_address}
        if again:
            out["again"] = post(url, sent_body, headers)
        emit(out)

    case("ok_sr25519", alice_sr, again=True)
    case("ok_ed25519", alice_ed)
    case("tampered_body", alice_sr, sent_body=body.replace(b"fox", b"cat"))
    case("wrong_receiver", alice_sr, receiver=key("//Eve").ss58_address)
    case("no_receiver", alice_sr, receiver=None)
    case("stale", alice_sr, nonce=time.time_ns() - 11_000_000_000)
    case("ahead", alice_ed, nonce=time.time_ns() + 5_000_000_000)
    case("unsigned", alice_sr, drop=("X-Bittensor-Signature",))
    case("unknown_hotkey", key("//Dave"))
    case("low_stake", key("//Charlie"))


def run_server(args):
    me = key(args.hotkey_uri)
    store = bt.http_auth.InMemoryNonceStore()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            try:
                caller = bt.http_auth.verify(
                    dict(self.headers.items()), body, method="POST", path=self.path,
                    self_hotkey_ss58=me.ss58_address, nonce_store=store,
                )
            except bt.http_auth.AuthError as e:
                emit({"path": self.path, "status": 401, "error": type(e).__name__, "detail": str(e)})
                return self.answer(401, {"detail": str(e)})
            synapse = json.loads(body)
            synapse["image"] = "served-by-python-11"
            emit({"path": self.path, "status": 200, "hotkey": caller.hotkey_ss58,
                  "crypto_type": caller.crypto_type, "prompt": synapse.get("prompt")})
            self.answer(200, synapse)

        def answer(self, status, obj):
            raw = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    emit({"port": server.server_address[1], "hotkey": me.ss58_address})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


def run_keyfiles(args):
    from bittensor_wallet import Keypair as WalletKeypair, Wallet

    phrase = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
    out = {}
    for name, crypto in (("sr", SR25519), ("ed", ED25519)):
        kp = WalletKeypair.create_from_mnemonic(phrase, crypto_type=crypto)
        plain = Wallet(name="plain", hotkey=name, path=args.dir)
        plain.set_hotkey(kp, encrypt=False, overwrite=True)
        sealed = Wallet(name="sealed", hotkey=name, path=args.dir)
        sealed.set_hotkey(kp, encrypt=True, overwrite=True, hotkey_password=args.password)
        seeded = WalletKeypair.create_from_seed("11" * 32, crypto_type=crypto)
        Wallet(name="seeded", hotkey=name, path=args.dir).set_hotkey(seeded, encrypt=False, overwrite=True)
        out[name] = {
            "ss58": kp.ss58_address,
            "seeded_ss58": seeded.ss58_address,
            "signature": "0x" + kp.sign(b"nicheimage").hex(),
        }
    emit(out)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--receiver", required=True)
    s = sub.add_parser("server")
    s.add_argument("--hotkey-uri", default="//Bob")
    k = sub.add_parser("keyfiles")
    k.add_argument("--dir", required=True)
    k.add_argument("--password", required=True)
    args = parser.parse_args()
    {"client": run_client, "server": run_server, "keyfiles": run_keyfiles}[args.cmd](args)


if __name__ == "__main__":
    main()
