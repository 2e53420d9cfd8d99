"""Errors of the attestation layer: one root, ``AttestError``, and one subclass per way evidence can fail.

Verifiers raise these (they never return a failing verdict), so a caller maps each class to one refusal.
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class AttestError(StrongroomError):
    """Attestation evidence was refused, or a TPM operation failed: nothing may be released on it."""


class TpmFormatError(AttestError):
    """A TPM structure (TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC, TPMS_CREATION_DATA, a PCR selection) or an
    evidence document is malformed: truncated, trailing bytes, unknown algorithm or tag, wrong sizes."""


class EkCertificateError(AttestError):
    """The endorsement key certificate does not chain to a trusted manufacturer CA, is expired or malformed,
    or does not certify the endorsement key presented with it."""


class KeyAttributesError(AttestError):
    """A TPM key's public area has the wrong type or attributes for its role (an AK must be a restricted,
    fixedTPM signing key; an EK or storage key a restricted, fixedTPM decryption key)."""


class ActivationError(AttestError):
    """Credential activation failed: the answer is not the challenge's secret (the AK does not live in the
    TPM that holds the certified EK), or the TPM refused to activate."""


class QuoteSignatureError(AttestError):
    """The attestation's signature does not verify under the enrolled attestation key."""


class QualifyingDataError(AttestError):
    """The attestation's qualifying data (extraData) is not what this request expects: a replayed, stale or
    foreign quote."""


class PcrMismatchError(AttestError):
    """The reported PCR values do not hash to the quoted pcrDigest, the quote does not cover the PCRs the
    policy needs, or a PCR value is not among the golden values for the host class."""


class ClockError(AttestError):
    """The TPM clock in the attestation is not safe, or goes backwards against the last accepted one."""


class IdentityBindingError(AttestError):
    """The host identity key is not the one the attestation key was created for."""


class GoldenValuesError(AttestError):
    """Golden values are malformed, or have no entry for the host class asked about."""


class SealError(AttestError):
    """A key could not be sealed to a TPM (bad parent public area, bad PCR policy)."""


class UnsealError(AttestError):
    """The TPM refused to import or unseal a sealed key: another TPM, a tampered blob, or PCRs that are no
    longer in the state the key was sealed to."""


class PcrPolicyError(UnsealError):
    """The TPM's PCRs are not in the state the sealed key's PolicyPCR names (TPM_RC_VALUE / POLICY_FAIL on
    the unseal): the loader or model PCR changed after release."""


class TpmError(AttestError):
    """A TPM command failed for another reason (TPM unreachable, out of handles, unexpected response code)."""


class SoftwareTpmError(AttestError):
    """swtpm or swtpm_setup could not be started, provisioned or stopped."""


class AttestUnavailableError(AttestError):
    """The optional TPM stack (``tpm2-pytss`` and the tss2 libraries) is not installed: install the
    ``attest`` extra and Debian ``libtss2-dev``."""


class EvidenceKindError(AttestError):
    """No verifier is registered for this kind of evidence, or the evidence is not of the verifier's kind."""
