"""Pluggable evidence: one interface for every kind of attestation a release may require.

An ``EvidenceVerifier`` has a ``kind`` (the evidence it reads) and ``verify(evidence, expectations)``,
which returns a ``Verdict`` or raises a subclass of ``AttestError``. ``EvidenceVerifiers`` dispatches on the
evidence's kind. ``TpmQuoteVerifier`` is the TPM 2.0 implementation over ``quote.verify_quote``.

GPU confidential-computing evidence (an NVIDIA attestation report) would be a second kind behind the same
interface; docs/attestation.md records why it is not implemented yet (no package verifies it offline against
pinned certificates and reference values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from strongroom.attest.errors import EvidenceKindError
from strongroom.attest.golden import GoldenValues
from strongroom.attest.quote import QUOTE_KIND, Quote, Verdict, verify_quote
from strongroom.attest.tpm2 import ClockInfo


@runtime_checkable
class Evidence(Protocol):
    """Anything a host sends as evidence: it names its kind and serialises itself."""

    @property
    def kind(self) -> str: ...

    def to_json(self) -> bytes: ...


@dataclass(frozen=True)
class Expectations:
    """What the verifier expects of one piece of evidence.

    ``qualifying_data``: the nonce the evidence must bind (a quote's extraData, a GPU report's nonce);
    ``host_class``: whose golden values apply; ``enrolled_key``: the key enrolled for this host and evidence
    kind (the AK's TPMT_PUBLIC for TPM quotes); ``required_pcrs``: PCRs to cover beyond the golden ones;
    ``previous_clock``: the last accepted TPM clock of this host, if any.
    """

    qualifying_data: bytes
    host_class: str
    enrolled_key: bytes
    required_pcrs: tuple[int, ...] = ()
    previous_clock: ClockInfo | None = None


class EvidenceVerifier(Protocol):
    """Verifies one kind of evidence."""

    @property
    def kind(self) -> str: ...

    def verify(self, evidence: Evidence, expectations: Expectations) -> Verdict: ...


class TpmQuoteVerifier:
    """TPM 2.0 quotes against golden values (``quote.verify_quote``)."""

    kind = QUOTE_KIND

    def __init__(self, golden: GoldenValues) -> None:
        self.golden = golden

    def verify(self, evidence: Evidence, expectations: Expectations) -> Verdict:
        if not isinstance(evidence, Quote):
            raise EvidenceKindError(f"{self.kind} verifier was given {evidence.kind!r} evidence")
        return verify_quote(
            evidence,
            expectations.enrolled_key,
            expectations.qualifying_data,
            self.golden,
            expectations.host_class,
            required_pcrs=expectations.required_pcrs,
            previous_clock=expectations.previous_clock,
        )


class EvidenceVerifiers:
    """The verifiers a service trusts, by kind."""

    def __init__(self, verifiers: Iterable[EvidenceVerifier]) -> None:
        self._by_kind: dict[str, EvidenceVerifier] = {}
        for verifier in verifiers:
            if verifier.kind in self._by_kind:
                raise EvidenceKindError(f"two verifiers for evidence kind {verifier.kind!r}")
            self._by_kind[verifier.kind] = verifier

    @property
    def kinds(self) -> Mapping[str, EvidenceVerifier]:
        return dict(self._by_kind)

    def verify(self, evidence: Evidence, expectations: Expectations) -> Verdict:
        try:
            verifier = self._by_kind[evidence.kind]
        except KeyError:
            raise EvidenceKindError(f"no verifier for evidence kind {evidence.kind!r}") from None
        return verifier.verify(evidence, expectations)
