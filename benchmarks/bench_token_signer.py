"""One signature with a file key against the same kind of key inside a PKCS#11 token (SoftHSM2), same run.

Creates a SoftHSM2 token in a temp directory, generates Ed25519 and ECDSA P-256 keys in it
(``generate_token_signer``) and in memory (``Signer.generate``), and times ``sign`` on a 300-byte message
(the size of a custody approval's canonical JSON), interleaving file and token rounds so drift hits both. A
token signature includes what ``Pkcs11Signer.sign`` adds around C_Sign: the digest (ECDSA), low-S DER
(ECDSA) and verifying the result; the raw C_Sign is timed too, and a whole ``SignedMessage.sign`` of a real
approval payload. Prints medians and p99 in microseconds and the token/file ratio.

    python3 benchmarks/bench_token_signer.py [--rounds 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pkcs11 import Mechanism

from strongroom.custody.envelope import SignedMessage
from strongroom.keys.devservers import init_softhsm
from strongroom.keys.pkcs11_signer import TokenAccess, generate_token_signer
from strongroom.signing import Signer, SigningKey

PAYLOAD = {
    "type": "strongroom.approval/v1",
    "request_id": "9f" * 32,
    "approver": "carol",
    "decision": "approve",
    "model_id": "blake3:" + "ab" * 32,
    "host_id": "gpu-07",
    "issued_at": "2026-12-01T10:00:00Z",
    "expires_at": "2026-12-01T11:00:00Z",
    "nonce": "00" * 16,
}


def samples(fn: Callable[[], object], rounds: int) -> list[float]:
    for _ in range(min(20, rounds)):
        fn()
    out = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500, help="signatures per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of every measurement")
    args = parser.parse_args()
    message = os.urandom(300)

    with tempfile.TemporaryDirectory() as tmp:
        (token,) = init_softhsm(Path(tmp), ["bench"], "bench-pin")
        os.environ["SOFTHSM2_CONF"] = str(token.conf)
        access = TokenAccess(token.module, token.label, token.pin)
        keys: dict[str, tuple[SigningKey, SigningKey]] = {}
        raw: dict[str, Callable[[], object]] = {}
        for kind in ("ed25519", "ecdsa-p256"):
            held = generate_token_signer(access, f"bench-{kind}", kind)  # type: ignore[arg-type]
            keys[kind] = (Signer.generate(kind), held)  # type: ignore[arg-type]
            private = held._private  # raw C_Sign, without what Pkcs11Signer.sign adds
            if kind == "ed25519":
                raw[kind] = lambda p=private: p.sign(message, mechanism=Mechanism.EDDSA)
            else:
                digest = hashlib.sha256(message).digest()
                raw[kind] = lambda p=private, d=digest: p.sign(d, mechanism=Mechanism.ECDSA)

        rows: dict[str, list[list[float]]] = {}
        for _ in range(args.repeats):
            for kind, (file_key, token_key) in keys.items():
                for name, fn in (
                    (f"{kind} file sign", lambda k=file_key: k.sign(message)),
                    (f"{kind} token sign (Pkcs11Signer.sign)", lambda k=token_key: k.sign(message)),
                    (f"{kind} token raw C_Sign", raw[kind]),
                    (f"{kind} file SignedMessage.sign", lambda k=file_key: SignedMessage.sign(PAYLOAD, k)),
                    (f"{kind} token SignedMessage.sign", lambda k=token_key: SignedMessage.sign(PAYLOAD, k)),
                ):
                    rows.setdefault(name, []).append(samples(fn, args.rounds))
        for _, held in keys.values():
            held.close()  # type: ignore[attr-defined]

    def summary(name: str) -> tuple[float, float, float]:
        medians = [statistics.median(run) for run in rows[name]]
        everything = sorted(x for run in rows[name] for x in run)
        return statistics.median(medians), min(medians), everything[int(len(everything) * 0.99)]

    print(f"{args.repeats} x {args.rounds} signatures each, 300-byte messages, interleaved")
    print(f"{'operation':42} {'median µs':>10} {'best run':>9} {'p99 µs':>8} {'x file':>7}")
    for kind in keys:
        base = summary(f"{kind} file sign")[0]
        msg_base = summary(f"{kind} file SignedMessage.sign")[0]
        for name in rows:
            if name.startswith(kind):
                med, best, p99 = summary(name)
                ref = msg_base if "SignedMessage" in name else base
                print(f"{name:42} {med:10.1f} {best:9.1f} {p99:8.1f} {med / ref:7.1f}")


if __name__ == "__main__":
    main()
