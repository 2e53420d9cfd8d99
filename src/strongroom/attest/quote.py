"""Quotes and their verification (TPM 2.0 Library Part 3, 18.4 TPM2_Quote; Part 2, 10.12.12 TPMS_ATTEST).

A ``Quote`` is what a host sends: the TPMS_ATTEST bytes its TPM signed, the TPMT_SIGNATURE, and the SHA-256
PCR values it read (a quote carries only their digest). ``verify_quote`` is pure software:

1. the attestation key (AK) is a restricted, fixedTPM ECDSA signing key (``tpm2.check_ak``);
2. the ECDSA signature over the attest bytes verifies under it (Part 1, 36.2 "Attestation");
3. the attest parses completely, its magic is TPM_GENERATED_VALUE and its type TPM_ST_ATTEST_QUOTE;
4. extraData equals the qualifying data the verifier expects (freshness: it binds a single-use nonce);
5. the clock is safe, and not behind the last accepted clock of this TPM (if given);
6. the quote selects one SHA-256 bank with exactly the PCRs reported, and the SHA-256 of the reported values
   in selection order equals pcrDigest (Part 3, 18.4.1: pcrDigest is H(PCR values));
7. the quote covers the golden PCRs of the host class (and any other required PCRs), each with an allowed
   value.

It returns a ``Verdict`` on success and raises a subclass of ``AttestError`` on the first failure.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from strongroom.attest import _doc
from strongroom.attest.errors import (
    ClockError,
    PcrMismatchError,
    QualifyingDataError,
    TpmFormatError,
)
from strongroom.attest.golden import GoldenValues
from strongroom.attest.pcrs import PCR_SIZE
from strongroom.attest.tpm2 import (
    ALG_SHA256,
    Attest,
    ClockInfo,
    QuoteInfo,
    TpmPublic,
    check_ak,
    parse_attest,
    parse_public,
    pcr_composite_digest,
    verify_attest_signature,
)

QUOTE_KIND = "tpm-quote"
RELEASE_CONTEXT = "strongroom.attest.release.v1"
LOAD_CONTEXT = "strongroom.attest.load.v1"


@dataclass(frozen=True)
class Quote:
    """A TPM quote as the host sends it: ``attest`` (TPMS_ATTEST), ``signature`` (TPMT_SIGNATURE) and the
    SHA-256 ``pcr_values`` the host read for the quoted PCRs (checked against the signed pcrDigest)."""

    attest: bytes
    signature: bytes
    pcr_values: Mapping[int, bytes] = field(default_factory=dict)

    kind = QUOTE_KIND

    def __post_init__(self) -> None:
        object.__setattr__(self, "pcr_values", MappingProxyType(dict(sorted(self.pcr_values.items()))))

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "attest": _doc.b64(self.attest),
            "signature": _doc.b64(self.signature),
            "pcrs": {str(pcr): value.hex() for pcr, value in self.pcr_values.items()},
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> Quote:
        what = "quote"
        doc = _doc.document(raw, what, {"attest", "signature", "pcrs"})
        if not isinstance(doc["pcrs"], dict) or len(doc["pcrs"]) > 24:
            raise TpmFormatError(f"{what}: pcrs is not an object of at most 24 PCRs")
        pcrs = {_doc.pcr_index(k, what): _doc.hex_digest(v, what) for k, v in doc["pcrs"].items()}
        return cls(_doc.unb64(doc["attest"], what, "attest"), _doc.unb64(doc["signature"], what, "signature"), pcrs)


@dataclass(frozen=True)
class Verdict:
    """What verified evidence established. Raised errors are the refusals; a Verdict is always a pass.

    ``signer`` is the name of the AK (TPM) or the fingerprint of the signing certificate (other kinds);
    ``measurements`` the verified measurements (``pcr:N`` -> value for TPM quotes); ``pcrs``, ``clock`` and
    ``firmware_version`` are filled for TPM evidence. ``clock.reset_count`` / ``restart_count`` change when
    the host reboots or resumes (obfuscated per AK: compare, never order them); ``rebooted`` says whether
    they differ from the previous clock given to the verifier (None when none was given).
    """

    kind: str
    host_class: str
    signer: bytes
    qualifying_data: bytes
    evidence_digest: bytes
    measurements: Mapping[str, bytes]
    pcrs: Mapping[int, bytes] = field(default_factory=dict)
    clock: ClockInfo | None = None
    firmware_version: int = 0
    rebooted: bool | None = None

    @property
    def reset_count(self) -> int | None:
        return None if self.clock is None else self.clock.reset_count

    @property
    def restart_count(self) -> int | None:
        return None if self.clock is None else self.clock.restart_count


def _binding_digest(context: str, fields: Mapping[str, str]) -> bytes:
    return hashlib.sha256(_doc.dumps({"context": context, **fields})).digest()


def release_qualifying_data(request_id: str, fetch_nonce: bytes, hpke_public: bytes, ledger_head: bytes) -> bytes:
    """The 32 bytes a release quote's extraData must carry: SHA-256 over the RFC 8785 JSON of
    ``{"context": "strongroom.attest.release.v1", "request_id", "fetch_nonce", "hpke_public", "ledger_head"}``
    (bytes as lowercase hex). It binds the quote to one request, one single-use fetch nonce, the ephemeral
    HPKE key the data key will be sealed to, and the ledger head the service decided on."""
    for name, value in (("fetch_nonce", fetch_nonce), ("hpke_public", hpke_public), ("ledger_head", ledger_head)):
        if not isinstance(value, bytes) or not 16 <= len(value) <= 256:
            raise QualifyingDataError(f"{name} must be 16-256 bytes")
    return _binding_digest(RELEASE_CONTEXT, {
        "request_id": _doc.text(request_id, "release binding", "request_id"),
        "fetch_nonce": fetch_nonce.hex(),
        "hpke_public": hpke_public.hex(),
        "ledger_head": ledger_head.hex(),
    })  # fmt: skip


def load_qualifying_data(release_nonce: bytes, model_id: str) -> bytes:
    """The extraData of the quote a ``model.loaded`` report carries: SHA-256 over the RFC 8785 JSON of
    ``{"context": "strongroom.attest.load.v1", "release_nonce", "model_id"}``."""
    if not isinstance(release_nonce, bytes) or not 16 <= len(release_nonce) <= 256:
        raise QualifyingDataError("release_nonce must be 16-256 bytes")
    return _binding_digest(LOAD_CONTEXT, {
        "release_nonce": release_nonce.hex(),
        "model_id": _doc.text(model_id, "load binding", "model_id"),
    })  # fmt: skip


def new_nonce() -> bytes:
    """A fresh 32-byte nonce (for callers that have none)."""
    return secrets.token_bytes(32)


def _ak(ak_public: TpmPublic | bytes) -> TpmPublic:
    public = ak_public if isinstance(ak_public, TpmPublic) else parse_public(ak_public)
    check_ak(public)
    return public


def check_clock(clock: ClockInfo, previous: ClockInfo | None) -> None:
    """Refuse an unsafe clock, and a clock behind ``previous`` (the last one accepted from this TPM).

    TPMS_CLOCK_INFO.clock counts milliseconds since the last TPM2_Clear and survives reboots; ``safe`` is NO
    when it may have been rolled back by an unorderly shutdown (Part 1, 36.3 "Clock"). resetCount and
    restartCount cannot be ordered here: for a signing key outside the endorsement hierarchy (the AK lives
    in the storage hierarchy) the TPM obfuscates them with a per-key value (Part 3, 18.1), so the verdict only
    reports whether they changed.
    """
    if not clock.safe:
        raise ClockError("TPM clock is not safe (it may have been rolled back)")
    if previous is not None and clock.clock < previous.clock:
        raise ClockError("TPM clock went backwards")


def verify_quote(
    quote: Quote,
    ak_public: TpmPublic | bytes,
    expected_qualifying_data: bytes,
    golden: GoldenValues,
    host_class: str,
    *,
    required_pcrs: Iterable[int] = (),
    previous_clock: ClockInfo | None = None,
) -> Verdict:
    """Verify a quote as described in the module docstring; return the verdict or raise ``AttestError``.

    ``ak_public`` is the enrolled AK's TPMT_PUBLIC; ``required_pcrs`` are PCRs the quote must cover beyond
    the golden ones (the model PCR); ``previous_clock`` is the clock of the last quote accepted from this
    TPM, to refuse a clock that went backwards.
    """
    ak = _ak(ak_public)
    verify_attest_signature(ak, quote.attest, quote.signature)
    attest = parse_attest(quote.attest)
    info = _quote_info(attest)
    if not hmac.compare_digest(attest.extra_data, expected_qualifying_data):
        raise QualifyingDataError("quote's qualifying data is not this request's: stale, replayed or foreign")
    check_clock(attest.clock, previous_clock)
    values = _check_pcrs(info, quote.pcr_values)
    golden.check(host_class, values)
    for pcr in required_pcrs:
        if pcr not in values:
            raise PcrMismatchError(f"quote does not cover PCR {pcr}")
    return Verdict(
        kind=QUOTE_KIND,
        host_class=host_class,
        signer=ak.name,
        qualifying_data=attest.extra_data,
        evidence_digest=hashlib.sha256(quote.attest).digest(),
        measurements=MappingProxyType({f"pcr:{pcr}": value for pcr, value in values.items()}),
        pcrs=MappingProxyType(dict(values)),
        clock=attest.clock,
        firmware_version=attest.firmware_version,
        rebooted=None
        if previous_clock is None
        else (attest.clock.reset_count, attest.clock.restart_count)
        != (previous_clock.reset_count, previous_clock.restart_count),
    )


def _quote_info(attest: Attest) -> QuoteInfo:
    # parse_attest chose attested from the type tag: a QuoteInfo is exactly a TPM_ST_ATTEST_QUOTE
    if not isinstance(attest.attested, QuoteInfo):
        raise TpmFormatError("attestation is not a quote")
    return attest.attested


def _check_pcrs(info: QuoteInfo, reported: Mapping[int, bytes]) -> dict[int, bytes]:
    if len(info.pcr_select) != 1 or info.pcr_select[0].hash_alg != ALG_SHA256:
        raise PcrMismatchError("quote must select exactly one bank, SHA-256")
    selected = info.pcr_select[0].pcrs
    if not selected:
        raise PcrMismatchError("quote selects no PCRs")
    if tuple(sorted(reported)) != selected:
        raise PcrMismatchError(f"reported PCRs {sorted(reported)} are not the quoted PCRs {list(selected)}")
    if any(len(reported[pcr]) != PCR_SIZE for pcr in selected):
        raise PcrMismatchError("reported SHA-256 PCR values must be 32 bytes")
    digest = pcr_composite_digest(ALG_SHA256, [reported[pcr] for pcr in selected])
    if not hmac.compare_digest(digest, info.pcr_digest):
        raise PcrMismatchError("reported PCR values do not hash to the quoted pcrDigest")
    return {pcr: reported[pcr] for pcr in selected}
