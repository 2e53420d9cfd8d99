"""Attestation rules of custody (issue 12; docs/attestation.md): the decisions, not the TPM mechanics.

The live service and replay (the offline auditor) both call these functions, from ``CustodyState``:

- ``parse_tpm_enrolment``: the TPM part of a ``host.enrol`` change. What can be re-verified offline is
  re-verified every time: the EK certificate chains to a manufacturer CA on the ledger and certifies the EK,
  the AK is a restricted fixedTPM key whose birth certificate binds the host's identity key and names the
  storage key. Credential activation is interactive (the officers' tool keeps the secret): the change
  records the AK name activated and the challenge's digest, and the co-signing officers vouch for it.
- ``parse_golden`` / ``parse_manufacturer_ca``: the two-officer ``policy.golden`` and ``policy.tpm-ca``.
- ``attest_release``: a release of a model whose policy requires attestation needs the fetch's TPM quote
  over the loader and model PCRs, signed by the host's enrolled AK, with qualifying data binding the request
  id, the fetch nonce, the host's ephemeral HPKE key and a ledger head that is not older than the host's
  enrolment or its class's golden values, every golden PCR at a golden value.
- ``attest_load``: the load report of an attested release carries a quote over the model PCR showing this
  model's measurement extended once after the release's quoted value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from strongroom.attest.binding import pcr_policy_for
from strongroom.attest.enrol import EnrolledTpm, EnrolmentEvidence, verify_evidence
from strongroom.attest.errors import AttestError
from strongroom.attest.evidence import EvidenceVerifiers, Expectations, TpmQuoteVerifier
from strongroom.attest.golden import GoldenValues
from strongroom.attest.pcrs import PcrLayout
from strongroom.attest.quote import (
    QUOTE_KIND,
    Quote,
    Verdict,
    load_qualifying_data,
    release_qualifying_data,
)
from strongroom.canonical_json import canonical_json
from strongroom.custody.envelope import check_fields
from strongroom.custody.errors import MessageError, NotAuthorisedError

LAYOUT = PcrLayout()  # loader PCR 23, model PCR 16: resettable test PCRs (see strongroom.attest.pcrs)
MAX_HEAD_LAG = 256  # the live gate refuses a quote bound to a ledger head more entries behind than this
_CLASS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class AttestedHost:
    """A host enrolled with TPM evidence: the TPM record and its host class, from ledger entry ``index``."""

    enrolled: EnrolledTpm
    host_class: str
    index: int


@dataclass
class AttestPolicy:
    """Golden values by host class (with the ledger index of each class's last change) and the trusted
    TPM manufacturer CAs, as the ledger's ``attest.policy`` entries set them."""

    golden: GoldenValues = field(default_factory=GoldenValues)
    changed_at: dict[str, int] = field(default_factory=dict)
    manufacturer_cas: tuple[bytes, ...] = ()

    def verifiers(self) -> EvidenceVerifiers:
        """The evidence verifiers releases are judged by (``attest.evidence``): TPM quotes against these golden
        values. A GPU confidential-computing verifier would join here (docs/attestation.md)."""
        return EvidenceVerifiers([TpmQuoteVerifier(self.golden)])


def _obj(value: Any, what: str) -> bytes:
    if not isinstance(value, dict):
        raise MessageError(f"{what}: must be an object")
    return canonical_json(value)


def host_class_of(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _CLASS.fullmatch(value):
        raise MessageError(f"{what}: host_class must be [a-z0-9._-], 1-64 characters")
    return value


def parse_tpm_enrolment(tpm: Any, identity_pem: bytes, policy: AttestPolicy, at: Any) -> tuple[EnrolledTpm, str]:
    """The TPM part of a host enrolment, re-verified against the manufacturer CAs on the ledger at ``at``."""
    what = "host.enrol tpm"
    if not isinstance(tpm, dict):
        raise MessageError(f"{what}: must be an object")
    check_fields(tpm, {"host_class", "evidence", "activation"}, {"host_class", "evidence", "activation"}, what)
    host_class = host_class_of(tpm["host_class"], what)
    if not policy.manufacturer_cas:
        raise NotAuthorisedError(f"{what}: no TPM manufacturer CA is on the ledger (policy.tpm-ca)")
    try:
        evidence = EnrolmentEvidence.from_json(_obj(tpm["evidence"], what))
        enrolled, _ = verify_evidence(evidence, identity_pem, policy.manufacturer_cas, at=at)
    except AttestError as exc:
        raise NotAuthorisedError(f"{what}: {exc}") from None
    activation = tpm["activation"]
    if not isinstance(activation, dict):
        raise MessageError(f"{what}: activation must be an object")
    check_fields(activation, {"ak_name", "challenge"}, {"ak_name", "challenge"}, f"{what} activation")
    if not isinstance(activation["challenge"], str) or not _HEX64.fullmatch(activation["challenge"]):
        raise MessageError(f"{what}: activation.challenge must be a SHA-256 hex digest")
    if activation["ak_name"] != enrolled.ak_name.hex():
        raise NotAuthorisedError(f"{what}: the AK activated is not the AK in the evidence")
    return enrolled, host_class


def tpm_enrolment(
    host_class: str, evidence: EnrolmentEvidence, ak_name: bytes, challenge_json: bytes
) -> dict[str, Any]:
    """The ``tpm`` field of a host enrolment, after the officers' tool saw the AK activated."""
    return {
        "host_class": host_class,
        "evidence": json.loads(evidence.to_json()),
        "activation": {"ak_name": ak_name.hex(), "challenge": hashlib.sha256(challenge_json).hexdigest()},
    }


def parse_golden(change: dict[str, Any]) -> GoldenValues:
    """``policy.golden``: ``{"host_class", "pcrs": {"23": ["<64 hex>", ...], ...}}`` (replaces the class)."""
    what = "policy.golden"
    check_fields(change, {"host_class", "pcrs"}, {"host_class", "pcrs"}, what)
    host_class = host_class_of(change["host_class"], what)
    try:
        return GoldenValues.from_json(
            canonical_json({"version": 1, "bank": "sha256", "classes": {host_class: change["pcrs"]}})
        )
    except AttestError as exc:
        raise MessageError(f"{what}: {exc}") from None


def parse_manufacturer_ca(change: dict[str, Any]) -> bytes:
    """``policy.tpm-ca``: ``{"certificate": PEM}``, a CA certificate TPM EK certificates may chain to."""
    what = "policy.tpm-ca"
    check_fields(change, {"certificate"}, {"certificate"}, what)
    pem = change["certificate"]
    if not isinstance(pem, str) or len(pem) > 16_384:
        raise MessageError(f"{what}: certificate must be a PEM string")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise MessageError(f"{what}: not a CA certificate: {exc}") from None
    if not constraints.ca:
        raise MessageError(f"{what}: the certificate is not a CA (basicConstraints)")
    return pem.encode()


# -- evidence a fetch carries -------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchEvidence:
    """A fetch's attestation: the quote and the ledger head its qualifying data binds."""

    quote: Quote
    head_index: int
    head_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "quote": json.loads(self.quote.to_json()),
            "ledger_head": {"index": self.head_index, "leaf_hash": self.head_hash.hex()},
        }

    @classmethod
    def parse(cls, value: Any, what: str) -> FetchEvidence:
        if not isinstance(value, dict):
            raise MessageError(f"{what}: attestation must be an object")
        check_fields(value, {"quote", "ledger_head"}, {"quote", "ledger_head"}, f"{what} attestation")
        head = value["ledger_head"]
        if not isinstance(head, dict):
            raise MessageError(f"{what}: ledger_head must be an object")
        check_fields(head, {"index", "leaf_hash"}, {"index", "leaf_hash"}, f"{what} ledger_head")
        index, leaf = head["index"], head["leaf_hash"]
        if type(index) is not int or index < 0 or not isinstance(leaf, str) or not _HEX64.fullmatch(leaf):
            raise MessageError(f"{what}: ledger_head is an entry index and its 64-hex leaf hash")
        try:
            quote = Quote.from_json(_obj(value["quote"], what))
        except AttestError as exc:
            raise MessageError(f"{what}: {exc}") from None
        return cls(quote, index, bytes.fromhex(leaf))


@dataclass(frozen=True)
class AttestationOutcome:
    """The attestation part of a release decision: why it fails (empty when it passes) and, when it
    passes, the record ``key.released`` carries."""

    reasons: tuple[str, ...]
    record: dict[str, Any] | None = None
    evidence_digest: str | None = None


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    clock = verdict.clock
    return {
        "result": "trusted",
        "kind": verdict.kind,
        "host_class": verdict.host_class,
        "ak_name": verdict.signer.hex(),
        "pcrs": {str(pcr): value.hex() for pcr, value in sorted(verdict.pcrs.items())},
        "clock": None
        if clock is None
        else {"clock": clock.clock, "reset_count": clock.reset_count, "restart_count": clock.restart_count},
        "evidence_digest": verdict.evidence_digest.hex(),
    }


def attest_release(
    *,
    request_id: str,
    ephemeral: bytes,
    fetch_nonce: str,
    evidence: FetchEvidence | None,
    host_id: str,
    host: AttestedHost | None,
    policy: AttestPolicy,
    newest_index: int | None = None,
    leaf_hash_of: Callable[[int], bytes | None] | None = None,
) -> AttestationOutcome:
    """Decide the attestation of one release (the model requires it).

    ``newest_index`` (the live gate: the last custody entry) refuses a head more than MAX_HEAD_LAG entries
    old; ``leaf_hash_of`` (whoever holds the log) checks the head is this log's entry at that index."""
    if evidence is None:
        return AttestationOutcome(("attestation: the model requires a TPM quote and the fetch carries none",))
    digest = hashlib.sha256(evidence.quote.attest).hexdigest()
    if host is None:
        return AttestationOutcome((f"attestation: host {host_id} was enrolled without TPM evidence",), None, digest)
    floor = max(host.index, policy.changed_at.get(host.host_class, -1))
    if evidence.head_index < floor:
        return AttestationOutcome(
            (f"attestation: the quote binds ledger head {evidence.head_index}, older than the host's enrolment or "
             f"its golden values (entry {floor}): stale",), None, digest)  # fmt: skip
    if newest_index is not None and evidence.head_index < newest_index - MAX_HEAD_LAG:
        return AttestationOutcome(
            (f"attestation: the quote binds ledger head {evidence.head_index}, more than {MAX_HEAD_LAG} entries "
             "old: stale",), None, digest)  # fmt: skip
    if leaf_hash_of is not None:
        known = leaf_hash_of(evidence.head_index)
        if known is None or not hmac.compare_digest(known, evidence.head_hash):
            return AttestationOutcome(
                (f"attestation: ledger head {evidence.head_index} is not this log's entry",), None, digest
            )
    try:
        qualifying = release_qualifying_data(request_id, bytes.fromhex(fetch_nonce), ephemeral, evidence.head_hash)
        verdict = policy.verifiers().verify(
            evidence.quote,
            Expectations(qualifying, host.host_class, host.enrolled.ak_public, (LAYOUT.loader, LAYOUT.model)),
        )
    except (AttestError, ValueError) as exc:
        return AttestationOutcome((f"attestation: {exc}",), None, digest)
    record = {**evidence.to_json(), "fetch_nonce": fetch_nonce, "verdict": verdict_json(verdict)}
    return AttestationOutcome((), record, digest)


def quoted_pcrs(record: Mapping[str, Any]) -> dict[int, bytes]:
    """The PCR values a logged release verdict accepted."""
    return {int(pcr): bytes.fromhex(value) for pcr, value in record["verdict"]["pcrs"].items()}


def release_pcr_policy(record: Mapping[str, Any], model_id: str) -> dict[int, bytes]:
    """The PolicyPCR the data key of an attested release is sealed under: the quoted values, the model PCR
    extended once more with this model's measurement (``strongroom.attest.binding.pcr_policy_for``)."""
    return pcr_policy_for(quoted_pcrs(record), model_id, LAYOUT)


def attest_load(
    quote: Quote | None,
    *,
    release_nonce: str,
    model_id: str,
    release_pcrs: Mapping[int, bytes],
    host: AttestedHost,
    policy: AttestPolicy,
) -> dict[str, Any]:
    """The verdict ``model.loaded`` carries for an attested release; ``NotAuthorisedError`` if the quote is
    missing, not the host's AK, not bound to this release and model, off the golden values, or the model PCR
    does not show exactly this model extended after the release's quote."""
    if quote is None:
        raise NotAuthorisedError("model.loaded: the release was attested; the report must carry a TPM quote")
    try:
        qualifying = load_qualifying_data(bytes.fromhex(release_nonce), model_id)
        verdict = policy.verifiers().verify(
            quote, Expectations(qualifying, host.host_class, host.enrolled.ak_public, (LAYOUT.model,))
        )
    except (AttestError, ValueError) as exc:
        raise NotAuthorisedError(f"model.loaded: attestation: {exc}") from None
    expected = pcr_policy_for(release_pcrs, model_id, LAYOUT)[LAYOUT.model]
    if not hmac.compare_digest(verdict.pcrs[LAYOUT.model], expected):
        raise NotAuthorisedError("model.loaded: the model PCR does not show this model loaded after the release")
    return {"quote": json.loads(quote.to_json()), "verdict": verdict_json(verdict)}


__all__ = [
    "LAYOUT",
    "QUOTE_KIND",
    "AttestPolicy",
    "AttestationOutcome",
    "AttestedHost",
    "FetchEvidence",
    "attest_load",
    "attest_release",
    "parse_golden",
    "parse_manufacturer_ca",
    "parse_tpm_enrolment",
    "release_pcr_policy",
    "tpm_enrolment",
]
