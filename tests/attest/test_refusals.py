"""Every refusal, each on a real swtpm where a TPM is involved: remove the check and the test fails."""

from __future__ import annotations

import dataclasses
import secrets
import struct
from pathlib import Path

import pytest

from strongroom.attest.binding import TpmSealedKey, seal_to_tpm
from strongroom.attest.credential import check_activation, make_challenge
from strongroom.attest.ek import check_ek_public, verify_ek_certificate
from strongroom.attest.enrol import EnrolledTpm, begin_enrolment, finish_enrolment
from strongroom.attest.errors import (
    ActivationError,
    ClockError,
    EkCertificateError,
    IdentityBindingError,
    KeyAttributesError,
    PcrMismatchError,
    PcrPolicyError,
    QualifyingDataError,
    QuoteSignatureError,
    TpmFormatError,
    UnsealError,
)
from strongroom.attest.golden import GoldenValues
from strongroom.attest.identity import verify_ak_binding
from strongroom.attest.loader import loader_digest
from strongroom.attest.pcrs import TEST_LAYOUT, ZERO_PCR, extend_value
from strongroom.attest.quote import Quote, verify_quote
from strongroom.attest.tpm2 import ClockInfo, parse_attest, parse_public
from tests.attest.conftest import HOST_CLASS, Host, evidence_of, identity_pem

LOADER, MODEL = TEST_LAYOUT.loader, TEST_LAYOUT.model


def nonce() -> bytes:
    return secrets.token_bytes(32)


# --- the measured loader ------------------------------------------------------------------------------


def test_modified_loader_refused(a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, package_copy: Path) -> None:
    (package_copy / "attest" / "quote.py").write_text(
        (package_copy / "attest" / "quote.py").read_text() + "\n# a backdoor\n"
    )
    modified = loader_digest(package_copy)
    a.tpm.extend(LOADER, modified)
    qd = nonce()
    quote = a.tpm.quote([LOADER, MODEL], qd)
    with pytest.raises(PcrMismatchError, match="not a golden value"):
        verify_quote(quote, enrolled_a.ak_public, qd, golden, HOST_CLASS)


def test_loader_not_measured_refused(a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues) -> None:
    qd = nonce()
    with pytest.raises(PcrMismatchError, match="not a golden value"):
        verify_quote(a.tpm.quote([LOADER, MODEL], qd), enrolled_a.ak_public, qd, golden, HOST_CLASS)


def test_quote_must_cover_golden_and_required_pcrs(
    a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes
) -> None:
    a.tpm.extend(LOADER, loader)
    qd = nonce()
    with pytest.raises(PcrMismatchError, match="not covered"):
        verify_quote(a.tpm.quote([MODEL], qd), enrolled_a.ak_public, qd, golden, HOST_CLASS)
    with pytest.raises(PcrMismatchError, match="does not cover PCR 16"):
        verify_quote(a.tpm.quote([LOADER], qd), enrolled_a.ak_public, qd, golden, HOST_CLASS, required_pcrs=[MODEL])


def test_reported_pcr_values_must_match_the_signed_digest(
    a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes
) -> None:
    # the host runs another loader but claims the golden value: the signed pcrDigest gives it away
    a.tpm.extend(LOADER, secrets.token_bytes(32))
    qd = nonce()
    quote = a.tpm.quote([LOADER, MODEL], qd)
    lying = Quote(quote.attest, quote.signature, {LOADER: extend_value(ZERO_PCR, loader), MODEL: ZERO_PCR})
    with pytest.raises(PcrMismatchError, match="do not hash to the quoted pcrDigest"):
        verify_quote(lying, enrolled_a.ak_public, qd, golden, HOST_CLASS)
    with pytest.raises(PcrMismatchError, match="not the quoted PCRs"):
        partial = Quote(quote.attest, quote.signature, {LOADER: ZERO_PCR})
        verify_quote(partial, enrolled_a.ak_public, qd, golden, HOST_CLASS)


# --- freshness and the signer -------------------------------------------------------------------------


def test_replayed_quote_refused(a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes) -> None:
    a.tpm.extend(LOADER, loader)
    old = nonce()
    quote = a.tpm.quote([LOADER, MODEL], old)
    verify_quote(quote, enrolled_a.ak_public, old, golden, HOST_CLASS)  # fine for the request it answered
    with pytest.raises(QualifyingDataError):
        verify_quote(quote, enrolled_a.ak_public, nonce(), golden, HOST_CLASS)  # replayed for another one


def test_quote_from_another_tpm_refused(
    a: Host, b: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes
) -> None:
    b.tpm.extend(LOADER, loader)
    qd = nonce()
    with pytest.raises(QuoteSignatureError):
        verify_quote(b.tpm.quote([LOADER, MODEL], qd), enrolled_a.ak_public, qd, golden, HOST_CLASS)


def test_tampered_attest_refused(a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes) -> None:
    a.tpm.extend(LOADER, loader)
    qd = nonce()
    quote = a.tpm.quote([LOADER, MODEL], qd)
    attest = bytearray(quote.attest)
    attest[-1] ^= 1  # the last byte of pcrDigest
    with pytest.raises(QuoteSignatureError):
        tampered = Quote(bytes(attest), quote.signature, quote.pcr_values)
        verify_quote(tampered, enrolled_a.ak_public, qd, golden, HOST_CLASS)


def test_clock_checks(a: Host, enrolled_a: EnrolledTpm, golden: GoldenValues, loader: bytes) -> None:
    a.tpm.extend(LOADER, loader)
    qd = nonce()
    quote = a.tpm.quote([LOADER, MODEL], qd)
    clock = parse_attest(quote.attest).clock
    later = dataclasses.replace(clock, clock=clock.clock + 10_000)
    with pytest.raises(ClockError, match="backwards"):
        verify_quote(quote, enrolled_a.ak_public, qd, golden, HOST_CLASS, previous_clock=later)
    rebooted = ClockInfo(clock.clock, clock.reset_count ^ 1, clock.restart_count, True)
    assert verify_quote(quote, enrolled_a.ak_public, qd, golden, HOST_CLASS, previous_clock=rebooted).rebooted


def test_unsafe_clock_refused() -> None:
    from strongroom.attest.quote import check_clock

    check_clock(ClockInfo(5, 1, 1, True), ClockInfo(5, 1, 1, True))
    with pytest.raises(ClockError, match="not safe"):
        check_clock(ClockInfo(5, 1, 1, False), None)


def test_ak_that_is_not_an_ak_refused(enrolled_a: EnrolledTpm) -> None:
    public = bytearray(enrolled_a.ak_public)
    (attributes,) = struct.unpack(">I", public[4:8])
    public[4:8] = struct.pack(">I", attributes & ~(1 << 16))  # restricted cleared: could sign anything
    with pytest.raises(KeyAttributesError):
        verify_quote(Quote(b"", b""), bytes(public), b"", GoldenValues(), HOST_CLASS)


# --- enrolment ----------------------------------------------------------------------------------------


def test_untrusted_ca_refused(a: Host, other_ca) -> None:
    with pytest.raises(EkCertificateError, match="does not chain"):
        verify_ek_certificate(a.tpm.ek_certificate(), [other_ca.cert_pem])
    with pytest.raises(EkCertificateError, match="does not chain"):
        begin_enrolment(evidence_of(a), a.identity, [other_ca.cert_pem])


def test_expired_or_garbage_ek_certificate_refused(a: Host, ca) -> None:
    import datetime

    der = a.tpm.ek_certificate()
    with pytest.raises(EkCertificateError):
        verify_ek_certificate(der, [ca.cert_pem], at=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
    with pytest.raises(EkCertificateError):
        verify_ek_certificate(der[:-10], [ca.cert_pem])


def test_ek_public_must_be_the_certified_key(a: Host, b: Host, ca) -> None:
    info = verify_ek_certificate(a.tpm.ek_certificate(), [ca.cert_pem])
    check_ek_public(info, parse_public(a.tpm.ek_public()))
    with pytest.raises(EkCertificateError, match="not the key"):
        check_ek_public(info, parse_public(b.tpm.ek_public()))


def test_ak_activated_in_another_tpm_refused(a: Host, b: Host, ca) -> None:
    """B shows A's EK certificate and EK with its own (genuine) AK: the credential is encrypted to A's EK,
    which B does not hold, and A does not hold B's AK."""
    evidence = dataclasses.replace(evidence_of(b), ek_certificate=a.tpm.ek_certificate(), ek_public=a.tpm.ek_public())
    pending, challenge, secret = begin_enrolment(evidence, b.identity, [ca.cert_pem])
    with pytest.raises(ActivationError):
        b.tpm.activate_credential(challenge)
    with pytest.raises(ActivationError):
        a.tpm.activate_credential(challenge)
    with pytest.raises(ActivationError):
        finish_enrolment(pending, secret, secrets.token_bytes(32))
    # and an answer B can produce for its own EK is not the secret of a challenge made to A's EK
    own, own_secret = make_challenge(parse_public(b.tpm.ek_public()), b.ak.name)
    answer = b.tpm.activate_credential(own)
    assert answer == own_secret
    with pytest.raises(ActivationError):
        check_activation(secret, answer)


def test_ak_created_for_another_identity_refused(a: Host, ca) -> None:
    with pytest.raises(IdentityBindingError, match="another host identity key"):
        verify_ak_binding(a.ak, identity_pem())
    with pytest.raises(IdentityBindingError):
        begin_enrolment(evidence_of(a), identity_pem(), [ca.cert_pem])


def test_birth_certificate_of_another_object_refused(a: Host) -> None:
    """Someone with access to A's TPM creates another key for A's identity and has A's AK certify its
    creation: that certificate says nothing about the AK itself."""
    from strongroom.attest import _tss
    from strongroom.attest.identity import identity_digest

    tss = _tss.tss()
    esys, srk = a.tpm.esys, a.tpm._srk
    digest = identity_digest(a.identity)
    attrs = (
        tss.TPMA_OBJECT.RESTRICTED | tss.TPMA_OBJECT.SIGN_ENCRYPT | tss.TPMA_OBJECT.FIXEDTPM
        | tss.TPMA_OBJECT.FIXEDPARENT | tss.TPMA_OBJECT.SENSITIVEDATAORIGIN | tss.TPMA_OBJECT.USERWITHAUTH
    )  # fmt: skip
    template = tss.TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attrs)
    private, public, creation, creation_hash, ticket = esys.create(srk, None, template, outside_info=digest)
    other = esys.load(srk, private, public)
    ak = esys.tr_from_tpmpublic(0x81000002)
    try:
        attest, signature = esys.certify_creation(
            ak, other, digest, creation_hash, tss.TPMT_SIG_SCHEME(scheme=tss.TPM2_ALG.NULL), ticket
        )
    finally:
        esys.flush_context(other)
    forged = dataclasses.replace(
        a.ak,
        creation_data=bytes(creation.creationData.marshal()),
        creation_attest=bytes(attest),
        creation_signature=bytes(signature.marshal()),
    )
    with pytest.raises(IdentityBindingError, match="another object"):
        verify_ak_binding(forged, a.identity)


def test_ak_birth_certificate_tampering_refused(a: Host, b: Host) -> None:
    # creation data from another AK: not what the TPM certified for this one
    with pytest.raises(IdentityBindingError, match="not the one the TPM certified"):
        verify_ak_binding(dataclasses.replace(a.ak, creation_data=b.ak.creation_data), a.identity)
    # another storage key than the AK's parent (B's SRK): sealing to it would not reach A's TPM
    with pytest.raises(IdentityBindingError, match="not created under the storage key"):
        verify_ak_binding(dataclasses.replace(a.ak, parent_public=b.ak.parent_public), a.identity)
    # a certification signed by another AK
    with pytest.raises(QuoteSignatureError):
        verify_ak_binding(
            dataclasses.replace(a.ak, creation_attest=b.ak.creation_attest, creation_signature=b.ak.creation_signature),
            a.identity,
        )


# --- keys bound to the TPM state ------------------------------------------------------------------------


def test_loader_pcr_extended_after_sealing_unwrap_fails(a: Host, enrolled_a: EnrolledTpm, loader: bytes) -> None:
    a.tpm.extend(LOADER, loader)
    policy = a.tpm.pcr_values([LOADER, MODEL])
    sealed = seal_to_tpm(b"k" * 32, enrolled_a.storage_public, policy)
    assert a.tpm.unseal(sealed) == b"k" * 32
    a.tpm.extend(LOADER, secrets.token_bytes(32))  # another loader measured after release
    with pytest.raises(PcrPolicyError):
        a.tpm.unseal(sealed)


def test_sealed_to_another_tpm_refused(a: Host, b: Host, enrolled_a: EnrolledTpm) -> None:
    sealed = seal_to_tpm(b"k" * 32, enrolled_a.storage_public, b.tpm.pcr_values([LOADER, MODEL]))
    with pytest.raises(UnsealError, match="another TPM"):
        b.tpm.unseal(sealed)
    # relabelled with B's storage key name: B's TPM itself refuses the import (outer HMAC over A's seed)
    relabelled = dataclasses.replace(sealed, parent_name=parse_public(b.tpm.srk_public()).name)
    with pytest.raises(UnsealError, match="refused to import"):
        b.tpm.unseal(relabelled)


def test_sealed_key_opens_only_through_the_policy(a: Host, enrolled_a: EnrolledTpm) -> None:
    """userWithAuth is clear: an empty-password unseal (no policy session) is refused by the TPM."""
    from strongroom.attest import _tss

    tss = _tss.tss()
    sealed = seal_to_tpm(b"k" * 32, enrolled_a.storage_public, a.tpm.pcr_values([LOADER]))
    esys, srk = a.tpm.esys, a.tpm._srk
    public = tss.TPM2B_PUBLIC(publicArea=tss.TPMT_PUBLIC.unmarshal(sealed.public)[0])
    private = esys.import_(
        srk, b"", public, tss.TPM2B_PRIVATE.unmarshal(sealed.duplicate)[0],
        tss.TPM2B_ENCRYPTED_SECRET.unmarshal(sealed.seed)[0], tss.TPMT_SYM_DEF_OBJECT(algorithm=tss.TPM2_ALG.NULL),
    )  # fmt: skip
    handle = esys.load(srk, private, public)
    try:
        with pytest.raises(tss.TSS2_Exception):
            esys.unseal(handle)
    finally:
        esys.flush_context(handle)


def test_seal_only_to_a_storage_key(enrolled_a: EnrolledTpm) -> None:
    with pytest.raises(KeyAttributesError, match="storage key"):
        seal_to_tpm(b"k" * 32, enrolled_a.ak_public, {LOADER: ZERO_PCR})


def test_ek_with_another_template_refused(a: Host, ca) -> None:
    info = verify_ek_certificate(a.tpm.ek_certificate(), [ca.cert_pem])
    public = bytearray(a.tpm.ek_public())
    (attributes,) = struct.unpack(">I", public[4:8])
    public[4:8] = struct.pack(">I", attributes & ~(1 << 16))  # not restricted: it would decrypt anything
    with pytest.raises(KeyAttributesError):
        check_ek_public(info, parse_public(bytes(public)))


def test_sealed_blob_must_be_consistent(enrolled_a: EnrolledTpm) -> None:
    sealed = seal_to_tpm(b"k" * 32, enrolled_a.storage_public, {LOADER: ZERO_PCR})
    with pytest.raises(TpmFormatError, match="authPolicy"):
        TpmSealedKey.from_json(dataclasses.replace(sealed, pcrs={LOADER: b"\x01" * 32}).to_json())
