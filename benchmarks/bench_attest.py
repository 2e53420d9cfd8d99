"""Attestation's share of a release: quote generation on the host (a real swtpm), verification and
TPM-bound sealing in the service (pure software), unsealing on the host, against the ~5 ms one-at-a-time
release step the README reports.

    python3 benchmarks/bench_attest.py [--rounds N]

Prints p50 and p99 in milliseconds per operation, and the service's added cost as a share of a 5 ms
release step. swtpm runs on this machine's CPU: a hardware TPM is far slower (tens to hundreds of ms per
quote, vendor-dependent) and that cost lands on the host, not the service.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from strongroom.attest.binding import release_pcr_policy, seal_to_tpm
from strongroom.attest.ca import TestManufacturerCa
from strongroom.attest.enrol import EnrolmentEvidence, begin_enrolment, finish_enrolment
from strongroom.attest.golden import GoldenValues
from strongroom.attest.host import HostTpm
from strongroom.attest.loader import loader_digest, model_measurement
from strongroom.attest.pcrs import TEST_LAYOUT
from strongroom.attest.quote import Quote, release_qualifying_data, verify_quote
from strongroom.attest.swtpm import SoftwareTpm

RELEASE_STEP_MS = 5.0  # README: one release at a time, 3.8-5.5 ms (SQLite)
MODEL_ID = "blake3:" + "5e" * 32
LOADER, MODEL = TEST_LAYOUT.loader, TEST_LAYOUT.model


def measure(fn: Callable[[], object], rounds: int, warmup: int = 10) -> tuple[float, float]:
    """p50 and p99 of ``rounds`` calls, in milliseconds (after a short warm-up)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def once(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds
    rows: list[tuple[str, str, float, float]] = []

    with tempfile.TemporaryDirectory() as tmp:
        ca = TestManufacturerCa.create(Path(tmp) / "ca")
        with SoftwareTpm(ca) as swtpm, HostTpm(swtpm.tcti) as tpm:
            identity = (
                ed25519.Ed25519PrivateKey.generate()
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
            # enrolment, once per host
            ak = tpm.create_ak(identity)
            evidence = EnrolmentEvidence(tpm.ek_certificate(), tpm.ek_public(), ak)
            t_begin = once(lambda: begin_enrolment(evidence, identity, [ca.cert_pem]))
            pending, challenge, secret = begin_enrolment(evidence, identity, [ca.cert_pem])
            t_activate = once(lambda: tpm.activate_credential(challenge))
            enrolled = finish_enrolment(pending, secret, tpm.activate_credential(challenge))
            t_loader = once(loader_digest)
            digest = loader_digest()
            golden = GoldenValues.for_loader("bench", [digest], TEST_LAYOUT)
            tpm.reset(LOADER)
            tpm.reset(MODEL)
            tpm.extend(LOADER, digest)

            request = ("req-1", secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32))
            qd = release_qualifying_data(*request)

            # host: the quote it sends with its fetch (PCR read + TPM2_Quote + a local digest check)
            p50, p99 = measure(lambda: tpm.quote([LOADER, MODEL], qd), rounds)
            rows.append(("host", "quote (PCR read + TPM2_Quote, swtpm)", p50, p99))
            quote = Quote.from_json(tpm.quote([LOADER, MODEL], qd).to_json())

            # service: everything attestation adds to one release decision and delivery
            def verify() -> object:
                return verify_quote(
                    quote, enrolled.ak_public, release_qualifying_data(*request), golden, "bench",
                    required_pcrs=[MODEL],
                )  # fmt: skip

            p50_v, p99_v = measure(verify, rounds)
            rows.append(("service", "qualifying data + verify_quote", p50_v, p99_v))
            verdict = verify_quote(quote, enrolled.ak_public, qd, golden, "bench", required_pcrs=[MODEL])
            data_key = secrets.token_bytes(32)

            def seal() -> object:
                return seal_to_tpm(data_key, enrolled.storage_public, release_pcr_policy(verdict, MODEL_ID))

            p50_s, p99_s = measure(seal, rounds)
            rows.append(("service", "seal_to_tpm (PolicyPCR + utils.wrap, ECDH P-256)", p50_s, p99_s))

            def service_total() -> object:
                v = verify()
                return seal_to_tpm(data_key, enrolled.storage_public, release_pcr_policy(v, MODEL_ID))  # type: ignore[arg-type]

            p50_t, p99_t = measure(service_total, rounds)
            rows.append(("service", "total: verify + policy + seal", p50_t, p99_t))

            # host: import + load + PolicyPCR + unseal
            sealed = seal_to_tpm(data_key, enrolled.storage_public, release_pcr_policy(verdict, MODEL_ID))
            tpm.extend(MODEL, model_measurement(MODEL_ID))
            p50_u, p99_u = measure(lambda: tpm.unseal(sealed), max(50, rounds // 3))
            rows.append(("host", "unseal (import + load + PolicyPCR + unseal, swtpm)", p50_u, p99_u))

    print(f"{'side':8} {'operation':55} {'p50 ms':>8} {'p99 ms':>8}")
    for side, name, p50, p99 in rows:
        print(f"{side:8} {name:55} {p50:8.3f} {p99:8.3f}")
    print()
    print(f"service: verification adds {p50_v:.3f} ms at p50 ({100 * p50_v / RELEASE_STEP_MS:.1f}% of a "
          f"{RELEASE_STEP_MS:.0f} ms release step; target < 5 ms); verify + seal {p50_t:.3f} ms p50 / "
          f"{p99_t:.3f} ms p99 ({100 * p50_t / RELEASE_STEP_MS:.1f}% at p50)")  # fmt: skip
    print(f"once per host: loader digest {t_loader:.1f} ms, begin_enrolment {t_begin:.1f} ms "
          f"(EK chain, AK birth certificate, make_credential), activate_credential {t_activate:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
