"""Attestation: release data keys only to hosts whose TPM proves what they run (issue 12; docs/attestation.md).

A pure layer (no custody, server or CLI imports). Verifier side, pure software: ``tpm2`` (strict parsers of
TPM structures), ``ek`` (EK certificate chains), ``identity`` (AK birth certificate: identity key and storage
key), ``credential`` (credential activation), ``enrol`` (the enrolment flow), ``quote`` (quote verification,
qualifying data), ``golden`` (golden values), ``binding`` (data keys sealed to a TPM and PCR state),
``loader`` (what is measured), ``pcrs`` (PCR numbering), ``evidence`` (the pluggable verifier interface).
Host side, through tpm2-pytss: ``host.HostTpm``. Test and demo tools: ``swtpm.SoftwareTpm`` and
``ca.TestManufacturerCa``.

``credential.make_challenge`` and ``binding.seal_to_tpm`` use tpm2-pytss's software helpers
(``make_credential``, ``wrap``) and ``host`` talks to a TPM through it: they need the ``attest`` extra. Quote,
EK and AK verification never import it.
"""

from __future__ import annotations

from strongroom.attest.errors import (
    ActivationError,
    AttestError,
    AttestUnavailableError,
    ClockError,
    EkCertificateError,
    EvidenceKindError,
    GoldenValuesError,
    IdentityBindingError,
    KeyAttributesError,
    PcrMismatchError,
    PcrPolicyError,
    QualifyingDataError,
    QuoteSignatureError,
    SealError,
    SoftwareTpmError,
    TpmError,
    TpmFormatError,
    UnsealError,
)

__all__ = [
    "ActivationError",
    "AttestError",
    "AttestUnavailableError",
    "ClockError",
    "EkCertificateError",
    "EvidenceKindError",
    "GoldenValuesError",
    "IdentityBindingError",
    "KeyAttributesError",
    "PcrMismatchError",
    "PcrPolicyError",
    "QualifyingDataError",
    "QuoteSignatureError",
    "SealError",
    "SoftwareTpmError",
    "TpmError",
    "TpmFormatError",
    "UnsealError",
]
