"""Attestation's share of a release: quote generation on the host (a real swtpm), verification and
TPM-bound sealing in the service (pure software), unsealing on the host; then the release step itself, one at
a time over HTTP on loopback, for a model without and a model with attestation (interleaved, same server).

    python3 benchmarks/bench_attest.py [--rounds N] [--releases N]

Prints p50 and p99 in milliseconds per operation. swtpm runs on this machine's CPU: a hardware TPM is far
slower (tens to hundreds of ms per quote, vendor-dependent) and that cost lands on the host, not the service.
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
from strongroom.attest.pcrs import replay as replay_pcr
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
    parser.add_argument("--releases", type=int, default=40, help="releases of each model in the release-step part")
    args = parser.parse_args()
    rounds = args.rounds
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
    if args.releases:
        release_step(args.releases)


def release_step(count: int) -> None:
    """The release step one at a time over HTTP (client-timed and the server's own ``Server-Timing``), for a
    model without and a model with attestation, interleaved on one deployment; the host's quote (head
    fetch, TPM2_Quote, signing the fetch) is timed apart."""
    from datetime import date, timedelta

    from strongroom.custody import admin
    from strongroom.custody.attestation import LAYOUT
    from strongroom.custody.client import CustodyClient
    from strongroom.custody.envelope import SignedMessage
    from strongroom.custody.host import HostSession
    from strongroom.custody.policy import ModelPolicy
    from strongroom.custody.protocol import ReleaseRequest, new_approval
    from strongroom.keys import LocalKeyring
    from strongroom.keys.provider import KeyBinding
    from strongroom.server.app import create_app, open_services
    from strongroom.server.background import BackgroundServer
    from strongroom.signing import Signer

    agreement = "sha256:" + "42" * 32
    plain, attested = "blake3:" + "a1" * 32, "blake3:" + "a2" * 32
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = TestManufacturerCa.create(root / "ca")
        keyring = LocalKeyring.init(root / "keys", passphrase="bench walnut harbour violet", scrypt_n=2**10)
        data = root / "srv"
        data.mkdir(mode=0o700)
        (data / "officers").mkdir()
        officers = [Signer.generate("ed25519") for _ in range(2)]
        for n, officer in enumerate(officers):
            (data / "officers" / f"o{n}.pub").write_bytes(officer.verifier.pem())
        services = open_services(data, providers=[keyring], agreement=agreement)
        with (
            BackgroundServer(create_app(services, data)) as url,
            SoftwareTpm(ca) as swtpm,
            HostTpm(swtpm.tcti) as tpm,
        ):
            client = CustodyClient(url)

            def two(proposal: admin.Proposal) -> None:
                client.admin(admin.propose(proposal, officers))

            for n, model in enumerate((plain, attested)):
                _, wrapped = keyring.generate_data_key(KeyBinding(f"{n}e" * 16, model))
                two(admin.register_model(ModelPolicy(model, 3, 2, attestation=model == attested), wrapped))
            people = {p: Signer.generate("ed25519") for p in ("alice", "bob", "carol")}
            for person, tier in (("alice", 3), ("bob", 4), ("carol", 5)):
                key = people[person]
                vetted = date.today() - timedelta(days=9)
                public = key.verifier.pem().decode()
                two(admin.enrol_person(person, name=person, public_key=public, position="p", tier=tier,
                                       custodian=tier == 5, vetted_on=vetted))  # fmt: skip
                two(admin.record_agreement(person, agreement, key))
            two(admin.trust_manufacturer_ca(ca.cert_pem))
            digest = loader_digest()
            two(admin.golden_values("bench", {LAYOUT.loader: [replay_pcr([digest])]}))
            identity = Signer.generate("ed25519")
            pem = identity.verifier.pem()
            evidence = EnrolmentEvidence(tpm.ek_certificate(), tpm.ek_public(), tpm.create_ak(pem))
            two(admin.enrol_attested_host("h", name="h", site="b", owner="b", public_key=pem.decode(),
                                          host_class="bench", evidence=evidence, trusted_cas=[ca.cert_pem],
                                          activate=tpm.activate_credential))  # fmt: skip
            seen: dict[str, list[float]] = {plain: [], attested: []}
            inside: dict[str, list[float]] = {plain: [], attested: []}
            quotes: list[float] = []
            for _ in range(count):
                for model in (plain, attested):
                    tpm.reset(LOADER)
                    tpm.reset(MODEL)
                    tpm.extend(LOADER, digest)
                    host = HostSession("h", identity, tpm=tpm if model == attested else None)
                    signed = SignedMessage.sign(host.request_payload(model, "bench", "alice"), people["alice"])
                    request_id = client.submit_request(signed)
                    for approver in ("bob", "carol"):
                        approval = new_approval(
                            request=ReleaseRequest.parse(signed), approver=approver, decision="approve"
                        )
                        client.approve(request_id, SignedMessage.sign(approval, people[approver]))
                    start = time.perf_counter_ns()
                    fetch = host.fetch(request_id, client.head() if model == attested else None)
                    if model == attested:
                        quotes.append((time.perf_counter_ns() - start) / 1e6)
                    start = time.perf_counter_ns()
                    reply = client._http.post(f"/v1/custody/requests/{request_id}/release", json=fetch.to_json())
                    seen[model].append((time.perf_counter_ns() - start) / 1e6)
                    reply.raise_for_status()
                    inside[model].append(float(reply.headers["server-timing"].split("dur=")[1]))
            client.close()
        services.close()
        keyring.close()
    print()
    print(f"release step, one at a time over HTTP, {count} releases of each model, interleaved:")
    for name, model in (("without attestation", plain), ("with attestation", attested)):
        print(f"  {name:20} client-seen p50 {_p(seen[model], 50):6.2f} ms p99 {_p(seen[model], 99):6.2f} ms; "
              f"inside the server p50 {_p(inside[model], 50):6.2f} ms p99 {_p(inside[model], 99):6.2f} ms")  # fmt: skip
    added = _p(inside[attested], 50) - _p(inside[plain], 50)
    print(f"  with minus without: {added:+.2f} ms at p50 inside the server (verify + head check + TPM-bound seal + "
          f"attest entry); the host's fetch with a quote (head + TPM2_Quote) p50 {_p(quotes, 50):.2f} ms "
          f"p99 {_p(quotes, 99):.2f} ms")  # fmt: skip


def _p(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] if q != 50 else statistics.median(ordered)


if __name__ == "__main__":
    main()
