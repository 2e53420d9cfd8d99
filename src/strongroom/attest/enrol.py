"""Host enrolment with proof of TPM residency, as one verifier-side flow:

1. the host sends ``EnrolmentEvidence``: its EK certificate (DER), its EK's TPMT_PUBLIC, and its AK with the
   AK's birth certificate (``identity.AkPublic``), for the identity key it is being enrolled with;
2. ``begin_enrolment`` checks the EK certificate chains to a trusted manufacturer CA and certifies that EK
   (``ek.py``), the AK is a restricted fixedTPM signing key created for this identity key under a storage
   key of the same TPM (``identity.py``), and returns a credential-activation challenge for the AK's name
   encrypted to the EK, plus the secret to keep;
3. the host answers with ``HostTpm.activate_credential``; ``finish_enrolment`` checks the answer and returns
   the ``EnrolledTpm`` record to keep with the host (the AK to verify quotes with, the storage key to seal
   data keys to).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from strongroom.attest import _doc
from strongroom.attest.credential import Challenge, check_activation, make_challenge
from strongroom.attest.ek import EkInfo, check_ek_public, verify_ek_certificate
from strongroom.attest.errors import TpmFormatError
from strongroom.attest.identity import AkPublic, verify_ak_binding
from strongroom.attest.tpm2 import TpmPublic, parse_public


@dataclass(frozen=True)
class EnrolmentEvidence:
    """What a host presents to be enrolled."""

    ek_certificate: bytes
    ek_public: bytes
    ak: AkPublic

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "ek_certificate": _doc.b64(self.ek_certificate),
            "ek_public": _doc.b64(self.ek_public),
            "ak": _doc.loads_json(self.ak.to_json()),
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> EnrolmentEvidence:
        what = "enrolment evidence"
        doc = _doc.document(raw, what, {"ek_certificate", "ek_public", "ak"})
        return cls(
            _doc.unb64(doc["ek_certificate"], what, "ek_certificate"),
            _doc.unb64(doc["ek_public"], what, "ek_public"),
            AkPublic.from_json(_doc.dumps(_doc.fields_of(doc["ak"], what, {
                "public", "parent_public", "creation_data", "creation_attest", "creation_signature"}))),
        )  # fmt: skip


@dataclass(frozen=True)
class EnrolledTpm:
    """The TPM facts kept with an enrolled host: the EK certificate's fingerprint and TPM description, the
    AK (TPMT_PUBLIC and name) quotes must verify under, the storage key (TPMT_PUBLIC) data keys are sealed
    to, and the identity digest the AK was created for."""

    ek_fingerprint: bytes
    ek_manufacturer: str
    ek_model: str
    ak_public: bytes
    ak_name: bytes
    storage_public: bytes
    identity_digest: bytes

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "ek_fingerprint": self.ek_fingerprint.hex(),
            "ek_manufacturer": self.ek_manufacturer,
            "ek_model": self.ek_model,
            "ak_public": _doc.b64(self.ak_public),
            "ak_name": _doc.b64(self.ak_name),
            "storage_public": _doc.b64(self.storage_public),
            "identity_digest": self.identity_digest.hex(),
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> EnrolledTpm:
        what = "enrolled TPM"
        names = {"ek_fingerprint", "ek_manufacturer", "ek_model", "ak_public", "ak_name", "storage_public",
                 "identity_digest"}  # fmt: skip
        doc = _doc.document(raw, what, names)
        for field in ("ek_manufacturer", "ek_model"):
            if not isinstance(doc[field], str) or len(doc[field]) > 256:
                raise TpmFormatError(f"{what}: {field} is not a short string")
        enrolled = cls(
            ek_fingerprint=_doc.hex_digest(doc["ek_fingerprint"], what),
            ek_manufacturer=doc["ek_manufacturer"],
            ek_model=doc["ek_model"],
            ak_public=_doc.unb64(doc["ak_public"], what, "ak_public"),
            ak_name=_doc.unb64(doc["ak_name"], what, "ak_name", size=34),
            storage_public=_doc.unb64(doc["storage_public"], what, "storage_public"),
            identity_digest=_doc.hex_digest(doc["identity_digest"], what),
        )
        if parse_public(enrolled.ak_public).name != enrolled.ak_name:
            raise TpmFormatError(f"{what}: ak_name is not the name of ak_public")
        parse_public(enrolled.storage_public)
        return enrolled


def verify_evidence(
    evidence: EnrolmentEvidence,
    identity_public_pem: bytes,
    trusted_ca_pems: Iterable[bytes],
    *,
    intermediate_pems: Iterable[bytes] = (),
    at: datetime.datetime | None = None,
) -> tuple[EnrolledTpm, TpmPublic]:
    """Everything about the evidence that can be checked offline, at any later time (an auditor replaying an
    enrolment): the EK certificate chains to a trusted manufacturer CA and certifies that EK, and the AK is a
    restricted fixedTPM signing key created for this identity key under a storage key. Returns the record
    and the EK's public area (what a credential challenge is encrypted to). Pure software."""
    info: EkInfo = verify_ek_certificate(
        evidence.ek_certificate, trusted_ca_pems, intermediate_pems=intermediate_pems, at=at
    )
    ek_public = parse_public(evidence.ek_public)
    check_ek_public(info, ek_public)
    bound = verify_ak_binding(evidence.ak, identity_public_pem)
    enrolled = EnrolledTpm(
        ek_fingerprint=info.fingerprint,
        ek_manufacturer=info.manufacturer,
        ek_model=info.model,
        ak_public=bound.ak.raw,
        ak_name=bound.ak.name,
        storage_public=bound.storage_key.raw,
        identity_digest=bound.identity_digest,
    )
    return enrolled, ek_public


def begin_enrolment(
    evidence: EnrolmentEvidence,
    identity_public_pem: bytes,
    trusted_ca_pems: Iterable[bytes],
    *,
    intermediate_pems: Iterable[bytes] = (),
    at: datetime.datetime | None = None,
) -> tuple[EnrolledTpm, Challenge, bytes]:
    """Verify the evidence (EK chain, EK public, AK birth certificate) and make the activation challenge.
    Returns the record to keep once activation succeeds, the challenge for the host, and the secret."""
    enrolled, ek_public = verify_evidence(
        evidence, identity_public_pem, trusted_ca_pems, intermediate_pems=intermediate_pems, at=at
    )
    challenge, secret = make_challenge(ek_public, enrolled.ak_name)
    return enrolled, challenge, secret


def finish_enrolment(enrolled: EnrolledTpm, secret: bytes, answer: bytes) -> EnrolledTpm:
    """Accept the host's activation answer (``ActivationError`` otherwise) and return the record."""
    check_activation(secret, answer)
    return enrolled
