"""The golden path on a real swtpm: enrol, measure, quote for a release, seal, unseal, report the load."""

from __future__ import annotations

import secrets

import pytest

from strongroom.attest.binding import TpmSealedKey, release_pcr_policy, seal_to_tpm
from strongroom.attest.enrol import EnrolledTpm, EnrolmentEvidence, begin_enrolment, finish_enrolment
from strongroom.attest.errors import PcrPolicyError
from strongroom.attest.evidence import EvidenceVerifiers, Expectations, TpmQuoteVerifier
from strongroom.attest.golden import GoldenValues
from strongroom.attest.loader import model_measurement
from strongroom.attest.pcrs import TEST_LAYOUT, ZERO_PCR, extend_value
from strongroom.attest.quote import Quote, load_qualifying_data, release_qualifying_data, verify_quote
from tests.attest.conftest import HOST_CLASS, Host, evidence_of

MODEL_ID = "blake3:" + "5e" * 32
LOADER, MODEL = TEST_LAYOUT.loader, TEST_LAYOUT.model


def release_binding() -> bytes:
    fetch_nonce, hpke_public, ledger_head = (secrets.token_bytes(32) for _ in range(3))
    return release_qualifying_data("req-0001", fetch_nonce, hpke_public, ledger_head)


def test_golden_path(a: Host, ca, golden: GoldenValues, loader: bytes) -> None:
    # enrolment: EK certificate chain, AK birth certificate, credential activation; the record round-trips
    evidence = EnrolmentEvidence.from_json(evidence_of(a).to_json())
    pending, challenge, secret = begin_enrolment(evidence, a.identity, [ca.cert_pem])
    enrolled = EnrolledTpm.from_json(finish_enrolment(pending, secret, a.tpm.activate_credential(challenge)).to_json())
    assert enrolled.ak_public == a.tpm.ak_public()
    assert enrolled.storage_public == a.tpm.srk_public()
    assert enrolled.ek_model == "swtpm"

    # the host measures its loader at start
    a.tpm.extend(LOADER, loader)

    # release: a fresh quote binding the request, verified against the golden values
    bound = release_binding()
    quote = Quote.from_json(a.tpm.quote([LOADER, MODEL], bound).to_json())
    verdict = verify_quote(quote, enrolled.ak_public, bound, golden, HOST_CLASS, required_pcrs=[MODEL])
    assert verdict.pcrs == {LOADER: extend_value(ZERO_PCR, loader), MODEL: ZERO_PCR}
    assert verdict.signer == enrolled.ak_name and verdict.qualifying_data == bound
    assert verdict.clock is not None and verdict.clock.safe

    # the data key is sealed to A's storage key under the loader PCR and the model PCR after this model
    data_key = secrets.token_bytes(32)
    policy = release_pcr_policy(verdict, MODEL_ID, TEST_LAYOUT)
    sealed = TpmSealedKey.from_json(seal_to_tpm(data_key, enrolled.storage_public, policy).to_json())

    # the host declares the model it loads, then unseals (not before)
    with pytest.raises(PcrPolicyError):
        a.tpm.unseal(sealed)
    a.tpm.extend(MODEL, model_measurement(MODEL_ID))
    assert a.tpm.unseal(sealed) == data_key

    # model.loaded: a quote covering the model PCR, bound to the release nonce and the model id
    release_nonce = secrets.token_bytes(32)
    loaded = a.tpm.quote([LOADER, MODEL], load_qualifying_data(release_nonce, MODEL_ID))
    verdict2 = verify_quote(
        loaded, enrolled.ak_public, load_qualifying_data(release_nonce, MODEL_ID), golden, HOST_CLASS,
        required_pcrs=[MODEL], previous_clock=verdict.clock,
    )  # fmt: skip
    assert verdict2.pcrs[MODEL] == extend_value(ZERO_PCR, model_measurement(MODEL_ID))
    assert verdict2.rebooted is False


def test_verifier_interface(a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes) -> None:
    a.tpm.extend(LOADER, loader)
    bound = release_binding()
    verifiers = EvidenceVerifiers([TpmQuoteVerifier(golden)])
    verdict = verifiers.verify(
        a.tpm.quote([LOADER, MODEL], bound), Expectations(bound, HOST_CLASS, enrolled_a.ak_public, (MODEL,))
    )
    assert verdict.kind == "tpm-quote" and verdict.measurements[f"pcr:{LOADER}"] == extend_value(ZERO_PCR, loader)


def test_release_binding_commits_to_every_field() -> None:
    base = ("req", b"n" * 32, b"h" * 32, b"l" * 32)
    digest = release_qualifying_data(*base)
    assert len(digest) == 32 and digest == release_qualifying_data(*base)
    for i, other in enumerate(("req2", b"N" * 32, b"H" * 32, b"L" * 32)):
        changed = list(base)
        changed[i] = other
        assert release_qualifying_data(*changed) != digest  # type: ignore[arg-type]
    assert load_qualifying_data(b"n" * 32, MODEL_ID) != load_qualifying_data(b"n" * 32, "blake3:" + "00" * 32)
