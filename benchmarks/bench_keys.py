"""Wrap/unwrap latency per key provider, against local AES-256-GCM wrapping measured in the same run.

Runs on real components: a SoftHSM2 token and ``bao server -dev`` on 127.0.0.1, both created in a temp
directory. Prints median and p99 latency per operation and the ratio to the local keyring's. Every key is
wrapped for one ``KeyBinding`` (seal id, model id), authenticated by each provider as it would be in use.

    python3 benchmarks/bench_keys.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.keys.devservers import init_softhsm, start_openbao_dev
from strongroom.keys.hpke import open_as_host, seal_to_host
from strongroom.keys.local import LocalKeyring
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.keys.provider import KeyBinding
from strongroom.keys.shamir import CustodianPublicKey, ShamirProvider, custodian_reencrypt_share, host_combine


def measure(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and p99 of ``rounds`` calls, in microseconds (after a short warm-up)."""
    for _ in range(min(20, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500, help="calls per measurement (OpenBao uses a fifth)")
    args = parser.parse_args()
    rounds = args.rounds

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "kek").write_bytes(os.urandom(32))
        local = LocalKeyring.init(work / "ring", kek_file=work / "kek")
        (token,) = init_softhsm(work / "hsm", ["bench"], "bench-pin")
        os.environ["SOFTHSM2_CONF"] = str(token.conf)
        hsm = Pkcs11Provider(token.module, token.label, token.pin, "bench-kek", create_key=True)
        bao = start_openbao_dev(work / "bao")
        transit = OpenBaoTransit(bao.address, bao.root_token, bao.key_name)
        people = [X25519PrivateKey.generate() for _ in range(3)]
        shamir = ShamirProvider([CustodianPublicKey(f"c{i}", k.public_key()) for i, k in enumerate(people)], 2)
        try:
            results: list[tuple[str, float, float]] = []

            def add(name: str, fn: Callable[[], object], n: int) -> None:
                med, p99 = measure(fn, n)
                results.append((name, med, p99))

            model_id = "blake3:" + secrets.token_hex(32)
            binding = KeyBinding(secrets.token_hex(16), model_id)
            dek, local_w = local.generate_data_key(binding)
            add("local AES-GCM wrap (reference)", lambda: local.wrap(dek, binding), rounds * 4)
            add("local AES-GCM unwrap (reference)", lambda: local.unwrap(local_w), rounds * 4)
            _, hsm_w = hsm.generate_data_key(binding)
            add("pkcs11 SoftHSM2 wrap", lambda: hsm.wrap(dek, binding), rounds)
            add("pkcs11 SoftHSM2 unwrap", lambda: hsm.unwrap(hsm_w), rounds)
            add("pkcs11 SoftHSM2 generate_data_key", lambda: hsm.generate_data_key(binding), rounds)
            _, bao_w = transit.generate_data_key(binding)
            add("openbao transit wrap (encrypt)", lambda: transit.wrap(dek, binding), max(20, rounds // 5))
            add("openbao transit unwrap (decrypt)", lambda: transit.unwrap(bao_w), max(20, rounds // 5))
            add("openbao transit generate_data_key", lambda: transit.generate_data_key(binding), max(20, rounds // 5))
            _, sh_w = shamir.generate_data_key(binding)
            add("shamir 2-of-3 wrap (split + 3 HPKE seals)", lambda: shamir.wrap(dek, binding), rounds)
            host = X25519PrivateKey.generate()

            def custodian_step() -> object:
                return custodian_reencrypt_share(
                    sh_w, people[0], host.public_key(), b"bench-release", model_id=model_id
                )

            shares = [
                custodian_reencrypt_share(sh_w, k, host.public_key(), b"bench-rel", model_id=model_id)
                for k in people[:2]
            ]
            add("shamir custodian re-encrypt (one share)", custodian_step, rounds)
            add("shamir host combine (2 shares + KCV)", lambda: host_combine(sh_w, shares, host, b"bench-rel"), rounds)
            message = seal_to_host(host.public_key(), dek, b"release")
            add("HPKE seal_to_host", lambda: seal_to_host(host.public_key(), dek, b"release"), rounds)
            add("HPKE open_as_host", lambda: open_as_host(host, message, b"release"), rounds)
        finally:
            transit.close()
            bao.stop()
            hsm.close()
            local.close()

    wrap_ref = results[0][1]
    unwrap_ref = results[1][1]
    print(f"{'operation':46} {'median µs':>10} {'p99 µs':>10} {'x local':>9}")
    for name, med, p99 in results:
        ref = wrap_ref if ("wrap" in name and "unwrap" not in name) or "seal" in name else unwrap_ref
        print(f"{name:46} {med:10.1f} {p99:10.1f} {med / ref:9.1f}")
    print("ratios: median latency / local AES-GCM (wrap-like rows against wrap, the rest against unwrap)")


if __name__ == "__main__":
    main()
