"""Data keys bound to a host's TPM and its measured state (TPM 2.0 Library Part 1, 23.3 "Duplication" and
19.7 "Policy"; Part 3, 13.3 TPM2_Import, 23.7 TPM2_PolicyPCR, 12.7 TPM2_Unseal).

``seal_to_tpm`` turns a secret (a model data key) into a sealed data object that only one TPM can open,
and only while chosen PCRs hold chosen values:

- the object is a KEYEDHASH data object (sign and decrypt clear, so only TPM2_Unseal reads it) carrying the
  secret as its sensitive data, with nameAlg SHA-256, ``noDA``, **userWithAuth clear** (otherwise a plain
  empty-password unseal would bypass the policy) and fixedTPM/fixedParent clear (Import refuses them);
- its authPolicy is the PolicyPCR digest, computed in software: ``H(0^32 || TPM_CC_PolicyPCR ||
  TPML_PCR_SELECTION || H(selected PCR values))`` (Part 3, 23.7.1; the tss2-policy library is not
  available here);
- it is wrapped with ``tpm2_pytss.utils.wrap`` to the host's storage key (outer wrapper, Part 1, 23.3.2.3:
  a seed encrypted to the parent, AES-128-CFB with a KDFa key, an HMAC over the object's name), so only
  that TPM can TPM2_Import it.

On the host (``HostTpm.unseal``): TPM2_Import under the storage key, TPM2_Load, a policy session with
TPM2_PolicyPCR over the same PCRs, TPM2_Unseal. Any PCR that moved (a loader changed after release)
makes the session's digest differ from authPolicy and the unseal fails with TPM_RC_POLICY_FAIL.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from strongroom.attest import _doc, _tss
from strongroom.attest.errors import SealError, TpmFormatError
from strongroom.attest.identity import check_storage_key
from strongroom.attest.pcrs import PCR_SIZE, PcrLayout, extend_value
from strongroom.attest.quote import Verdict
from strongroom.attest.tpm2 import (
    ALG_KEYEDHASH,
    ALG_NULL,
    ALG_SHA256,
    DECRYPT,
    NO_DA,
    SIGN_ENCRYPT,
    TPM_CC_POLICY_PCR,
    USER_WITH_AUTH,
    Reader,
    TpmPublic,
    marshal_pcr_selection,
    parse_public,
    pcr_composite_digest,
    sha256_selection,
)

MAX_SEALED_SECRET = 128  # MAX_SYM_DATA (Part 2, 10.4.9): the most a sealed data object may hold


def pcr_policy_digest(pcr_policy: Mapping[int, bytes]) -> bytes:
    """The SHA-256 policy digest of one TPM2_PolicyPCR over ``pcr_policy`` (PCR -> required SHA-256 value),
    starting from the empty policy (Part 3, 23.7.1)."""
    pcrs = tuple(sorted(pcr_policy))
    if not pcrs or any(len(pcr_policy[p]) != PCR_SIZE for p in pcrs):
        raise SealError("a PCR policy names one or more PCRs, each with a 32-byte SHA-256 value")
    try:
        selection = marshal_pcr_selection(sha256_selection(pcrs))
    except TpmFormatError as exc:
        raise SealError(str(exc)) from None
    values_digest = pcr_composite_digest(ALG_SHA256, [pcr_policy[p] for p in pcrs])
    return hashlib.sha256(bytes(32) + struct.pack(">I", TPM_CC_POLICY_PCR) + selection + values_digest).digest()


@dataclass(frozen=True)
class TpmSealedKey:
    """A secret wrapped for one TPM: the sealed object's TPMT_PUBLIC (``public``), the outer-wrapped
    TPM2B_PRIVATE (``duplicate``), the seed encrypted to the parent (TPM2B_ENCRYPTED_SECRET ``seed``), the
    parent's name, and the PCR values the policy requires (so the host can open the right session)."""

    public: bytes
    duplicate: bytes
    seed: bytes
    parent_name: bytes
    pcrs: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pcrs", MappingProxyType(dict(sorted(self.pcrs.items()))))

    def check(self) -> TpmPublic:
        """Parse and check the blob's own consistency: a policy-only sealed data object whose authPolicy is
        the PolicyPCR digest of ``pcrs``. Returns the parsed public area."""
        public = parse_public(self.public)
        if public.type != ALG_KEYEDHASH or public.scheme != ALG_NULL or public.attributes & (SIGN_ENCRYPT | DECRYPT):
            raise TpmFormatError("sealed key is not a keyedhash data object")
        if public.attributes & USER_WITH_AUTH or public.name_alg != ALG_SHA256:
            raise TpmFormatError("sealed key must be policy-only (userWithAuth clear) with a SHA-256 name")
        if public.auth_policy != pcr_policy_digest(self.pcrs):
            raise TpmFormatError("sealed key's authPolicy is not the PolicyPCR of its PCR values")
        for what, data in (("duplicate", self.duplicate), ("seed", self.seed)):
            reader = Reader(data)
            reader.tpm2b(2048, what)
            reader.done(what)
        return public

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "public": _doc.b64(self.public),
            "duplicate": _doc.b64(self.duplicate),
            "seed": _doc.b64(self.seed),
            "parent_name": _doc.b64(self.parent_name),
            "pcrs": {str(pcr): value.hex() for pcr, value in self.pcrs.items()},
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> TpmSealedKey:
        what = "TPM-sealed key"
        doc = _doc.document(raw, what, {"public", "duplicate", "seed", "parent_name", "pcrs"})
        if not isinstance(doc["pcrs"], dict) or not 0 < len(doc["pcrs"]) <= 24:
            raise TpmFormatError(f"{what}: pcrs is not an object of 1-24 PCRs")
        sealed = cls(
            public=_doc.unb64(doc["public"], what, "public"),
            duplicate=_doc.unb64(doc["duplicate"], what, "duplicate"),
            seed=_doc.unb64(doc["seed"], what, "seed"),
            parent_name=_doc.unb64(doc["parent_name"], what, "parent_name", maximum=66),
            pcrs={_doc.pcr_index(k, what): _doc.hex_digest(v, what) for k, v in doc["pcrs"].items()},
        )
        sealed.check()
        return sealed


def seal_to_tpm(
    secret: bytes | bytearray, parent_public: TpmPublic | bytes, pcr_policy: Mapping[int, bytes]
) -> TpmSealedKey:
    """Seal ``secret`` (1-128 bytes) so that only the TPM holding ``parent_public`` (a verified storage key,
    see ``identity.verify_ak_binding``) can unseal it, and only while every PCR in ``pcr_policy`` has the
    given SHA-256 value."""
    if not isinstance(secret, bytes | bytearray) or not 0 < len(secret) <= MAX_SEALED_SECRET:
        raise SealError(f"a sealed secret is 1-{MAX_SEALED_SECRET} bytes")
    parent = parent_public if isinstance(parent_public, TpmPublic) else parse_public(parent_public)
    check_storage_key(parent)
    policy = pcr_policy_digest(pcr_policy)
    tss = _tss.tss()
    utils = _tss.utils()
    # noDA only: userWithAuth clear (policy is the only way in), fixedTPM/fixedParent clear (Import refuses
    # them), sign/decrypt clear (a sealed data object)
    attributes = NO_DA
    sensitive, public = tss.TPM2B_SENSITIVE.keyedhash_from_secret(
        bytes(secret), nameAlg=tss.TPM2_ALG.SHA256, objectAttributes=attributes
    )
    public.publicArea.authPolicy = tss.TPM2B_DIGEST(policy)
    tss_parent, _ = tss.TPMT_PUBLIC.unmarshal(parent.raw)
    try:
        _, duplicate, seed = utils.wrap(tss_parent, public, sensitive)
    except (ValueError, TypeError) as exc:
        raise SealError(f"cannot wrap to this storage key: {exc}") from None
    sealed = TpmSealedKey(
        public=bytes(public.publicArea.marshal()),
        duplicate=bytes(duplicate.marshal()),
        seed=bytes(seed.marshal()),
        parent_name=parent.name,
        pcrs=dict(pcr_policy),
    )
    sealed.check()
    return sealed


def release_pcr_policy(verdict: Verdict, model_id: str, layout: PcrLayout = PcrLayout()) -> dict[int, bytes]:
    """The PCR policy for a data key released on ``verdict`` (a verified release quote): every PCR the
    quote covered keeps its quoted value, except the model PCR, which must have been extended with
    ``model_measurement(model_id)`` once more: the host can unseal only after declaring, in its TPM, that it
    is loading this model, and only while its loader PCR still holds the golden value it was quoted with."""
    return pcr_policy_for(verdict.pcrs, model_id, layout)


def pcr_policy_for(quoted: Mapping[int, bytes], model_id: str, layout: PcrLayout = PcrLayout()) -> dict[int, bytes]:
    """``release_pcr_policy`` from the quoted PCR values alone (as a ledger entry records them)."""
    from strongroom.attest.loader import model_measurement

    if layout.model not in quoted or layout.loader not in quoted:
        raise SealError("the release quote must cover the loader and model PCRs")
    policy = dict(quoted)
    policy[layout.model] = extend_value(quoted[layout.model], model_measurement(model_id))
    return policy
