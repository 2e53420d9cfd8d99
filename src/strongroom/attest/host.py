"""The host's side of attestation: its TPM, through tpm2-pytss (ESAPI) over any TCTI (``swtpm:...`` for
swtpm, ``device:/dev/tpmrm0`` for a real TPM behind the kernel's resource manager).

``HostTpm`` keeps two persistent keys in the owner (storage) hierarchy:

- the storage root key (SRK) at 0x81000001: an ECC P-256 restricted decryption key, AES-128-CFB, the
  parent of the AK and of every sealed data key imported (TCG TPM v2.0 Provisioning Guidance, 7.5);
- the attestation key (AK) at 0x81000002: ECC P-256, restricted, ECDSA-SHA256, fixedTPM, fixedParent,
  sensitiveDataOrigin, userWithAuth (``ecc256:ecdsa-sha256:null``), created under the SRK with the host
  identity key's digest as outsideInfo (``identity.py`` explains the binding).

The EK (TCG EK Credential Profile, B.3.3 template "EK-RSA2048", certificate at NV 0x01C00002) is recreated
from its template when needed and flushed after use. With no resource manager in front of swtpm, the
constructor flushes any transient objects and sessions a crashed client left behind.

TPM failures are raised as ``TpmError``; an unseal refused by the PCR policy as ``PcrPolicyError``; an
import or load of a blob meant for another TPM as ``UnsealError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from strongroom.attest import _tss
from strongroom.attest.binding import TpmSealedKey
from strongroom.attest.credential import Challenge
from strongroom.attest.errors import (
    ActivationError,
    PcrPolicyError,
    TpmError,
    TpmFormatError,
    UnsealError,
)
from strongroom.attest.identity import AkPublic, identity_digest
from strongroom.attest.pcrs import PCR_SIZE
from strongroom.attest.quote import Quote
from strongroom.attest.tpm2 import (
    ALG_SHA256,
    QuoteInfo,
    parse_attest,
    parse_public,
    pcr_composite_digest,
    sha256_selection,
)
from strongroom.memory import wipe

SRK_HANDLE = 0x81000001
AK_HANDLE = 0x81000002
EK_CERT_NV_RSA2048 = 0x01C00002

# Response codes (Part 2, 6.6.3): format-one codes carry the parameter, handle or session number in bits
# 6 and 8-11; compare the format bit and the low six bits. TPM_RC_POLICY_FAIL on the unseal's session
# (0x99d) is the PCR policy refusing.
_RC_FMT1 = 0x080
_RC_POLICY_FAIL = _RC_FMT1 + 0x01D


def _rc(exc: Exception) -> int:
    rc = int(getattr(exc, "rc", 0))
    return (rc & 0xBF) if rc & _RC_FMT1 else rc


def _selection_string(pcrs: Iterable[int]) -> str:
    selection = sha256_selection(list(pcrs))
    return "sha256:" + ",".join(str(p) for p in selection[0].pcrs)


def _der_length(data: bytes) -> int:
    """Length of the DER SEQUENCE at the start of ``data`` (EK certificates in NV may be padded)."""
    if len(data) < 2 or data[0] != 0x30:
        raise TpmFormatError("EK certificate in NV is not a DER SEQUENCE")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 3 or len(data) < 2 + count:
        raise TpmFormatError("EK certificate in NV has a bad DER length")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


class HostTpm:
    """A connection to the host's TPM. Use as a context manager, or call ``close``."""

    def __init__(self, tcti: str, *, srk_handle: int = SRK_HANDLE, ak_handle: int = AK_HANDLE) -> None:
        self._tss = _tss.tss()
        self._utils = _tss.utils()
        self._srk_handle = srk_handle
        self._ak_handle = ak_handle
        self._ak_tr: Any = None
        try:
            self._esys: Any = self._tss.ESAPI(tcti)
        except Exception as exc:
            raise TpmError(f"cannot open the TPM at {tcti!r}: {exc}") from None
        try:
            self._flush_leftovers()
            self._srk: Any = self._ensure_srk()
            self._srk_name = parse_public(self.srk_public()).name
        except BaseException:
            self.close()
            raise

    # --- plumbing ----------------------------------------------------------------------------------------

    def close(self) -> None:
        esys, self._esys = getattr(self, "_esys", None), None
        if esys is not None:
            esys.close()

    def __enter__(self) -> HostTpm:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def esys(self) -> Any:
        if self._esys is None:
            raise TpmError("the TPM connection is closed")
        return self._esys

    @contextlib.contextmanager
    def _tpm(self, what: str) -> Iterator[Any]:
        try:
            yield self.esys
        except self._tss.TSS2_Exception as exc:
            raise TpmError(f"{what} failed: {exc}") from None

    def _handles(self, first: int) -> list[int]:
        tss = self._tss
        handles: list[int] = []
        more = True
        while more:
            more, data = self.esys.get_capability(tss.TPM2_CAP.HANDLES, first + len(handles), 64)
            batch = [int(h) for h in data.data.handles]
            if not batch:
                break
            handles += [h for h in batch if h >> 24 == first >> 24]
            first = batch[-1] + 1 - len(handles)
        return handles

    def _flush_leftovers(self) -> None:
        tss = self._tss
        for first in (tss.TPM2_HC.TRANSIENT_FIRST, tss.TPM2_HC.LOADED_SESSION_FIRST, tss.TPM2_HC.POLICY_SESSION_FIRST):
            for handle in self._handles(int(first)):
                with contextlib.suppress(tss.TSS2_Exception):
                    self.esys.flush_context(self.esys.tr_from_tpmpublic(handle))

    def _persistent(self, handle: int) -> Any | None:
        if handle not in self._handles(int(self._tss.TPM2_HC.PERSISTENT_FIRST)):
            return None
        with self._tpm("reading a persistent handle") as esys:
            return esys.tr_from_tpmpublic(handle)

    def _ensure_srk(self) -> Any:
        existing = self._persistent(self._srk_handle)
        if existing is not None:
            return existing
        tss = self._tss
        attrs = (
            tss.TPMA_OBJECT.RESTRICTED | tss.TPMA_OBJECT.DECRYPT | tss.TPMA_OBJECT.FIXEDTPM
            | tss.TPMA_OBJECT.FIXEDPARENT | tss.TPMA_OBJECT.SENSITIVEDATAORIGIN | tss.TPMA_OBJECT.USERWITHAUTH
            | tss.TPMA_OBJECT.NODA
        )  # fmt: skip
        template = tss.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs)
        template.publicArea.unique.ecc.x = bytes(32)  # the Provisioning Guidance's zero-filled unique field
        template.publicArea.unique.ecc.y = bytes(32)
        with self._tpm("creating the storage root key") as esys:
            handle = esys.create_primary(None, template, tss.ESYS_TR.OWNER)[0]
            try:
                return esys.evict_control(tss.ESYS_TR.OWNER, handle, self._srk_handle)
            finally:
                esys.flush_context(handle)

    def _public_bytes(self, handle: Any) -> bytes:
        with self._tpm("reading a public area") as esys:
            public, _, _ = esys.read_public(handle)
        return bytes(public.publicArea.marshal())

    @contextlib.contextmanager
    def _ek(self) -> Iterator[Any]:
        tss = self._tss
        with self._tpm("creating the EK") as esys:
            _, template = self._utils.create_ek_template("EK-RSA2048", self._utils.NVReadEK(esys))
            handle = esys.create_primary(None, template, tss.ESYS_TR.ENDORSEMENT)[0]
        try:
            yield handle
        finally:
            with contextlib.suppress(tss.TSS2_Exception):
                self.esys.flush_context(handle)

    @contextlib.contextmanager
    def _policy_session(self) -> Iterator[Any]:
        tss = self._tss
        with self._tpm("starting a policy session") as esys:
            session = esys.start_auth_session(
                tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, tss.TPM2_SE.POLICY,
                tss.TPMT_SYM_DEF(algorithm=tss.TPM2_ALG.NULL), tss.TPM2_ALG.SHA256,
            )  # fmt: skip
        try:
            yield session
        finally:
            with contextlib.suppress(tss.TSS2_Exception):
                self.esys.flush_context(session)

    def _ak(self) -> Any:
        if self._ak_tr is None:
            self._ak_tr = self._persistent(self._ak_handle)
            if self._ak_tr is None:
                raise TpmError("this TPM has no attestation key yet (create_ak)")
        return self._ak_tr

    # --- the API ----------------------------------------------------------------------------------------

    def ek_certificate(self) -> bytes:
        """The RSA-2048 EK certificate (DER) from NV index 0x01C00002 (EK Credential Profile 2.2.1.4)."""
        with self._tpm("reading the EK certificate") as esys:
            try:
                data = self._utils.NVReadEK(esys)(EK_CERT_NV_RSA2048)
            except self._utils.NoSuchIndex:
                raise TpmError("this TPM has no RSA-2048 EK certificate in NV") from None
        data = bytes(data)
        return data[: _der_length(data)]

    def ek_public(self) -> bytes:
        """The RSA-2048 EK's TPMT_PUBLIC, recreated from its template (credentials are encrypted to it)."""
        with self._ek() as ek:
            return self._public_bytes(ek)

    def srk_public(self) -> bytes:
        """The storage root key's TPMT_PUBLIC (sealed data keys are wrapped to it)."""
        return self._public_bytes(self._srk)

    def create_ak(self, identity_public_pem: bytes) -> AkPublic:
        """Create the AK under the SRK for this host identity key, certify its creation with itself, and make
        it persistent (replacing any earlier AK). Returns the AK with its birth certificate."""
        tss = self._tss
        digest = identity_digest(identity_public_pem)
        attrs = (
            tss.TPMA_OBJECT.RESTRICTED | tss.TPMA_OBJECT.SIGN_ENCRYPT | tss.TPMA_OBJECT.FIXEDTPM
            | tss.TPMA_OBJECT.FIXEDPARENT | tss.TPMA_OBJECT.SENSITIVEDATAORIGIN | tss.TPMA_OBJECT.USERWITHAUTH
        )  # fmt: skip
        template = tss.TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attrs)
        with self._tpm("creating the attestation key") as esys:
            private, public, creation, creation_hash, ticket = esys.create(
                self._srk, None, template, outside_info=tss.TPM2B_DATA(digest), creation_pcr=tss.TPML_PCR_SELECTION()
            )
            handle = esys.load(self._srk, private, public)
            try:
                attest, signature = esys.certify_creation(
                    handle, handle, digest, creation_hash, tss.TPMT_SIG_SCHEME(scheme=tss.TPM2_ALG.NULL), ticket
                )
                old = self._persistent(self._ak_handle)
                if old is not None:
                    esys.evict_control(tss.ESYS_TR.OWNER, old, self._ak_handle)
                self._ak_tr = None
                esys.evict_control(tss.ESYS_TR.OWNER, handle, self._ak_handle)
            finally:
                esys.flush_context(handle)
        return AkPublic(
            public=bytes(public.publicArea.marshal()),
            parent_public=self.srk_public(),
            creation_data=bytes(creation.creationData.marshal()),
            creation_attest=bytes(attest),
            creation_signature=bytes(signature.marshal()),
        )

    def ak_public(self) -> bytes:
        """The persistent AK's TPMT_PUBLIC."""
        return self._public_bytes(self._ak())

    def activate_credential(self, challenge: Challenge) -> bytes:
        """TPM2_ActivateCredential with the AK and the EK (its PolicySecret(ENDORSEMENT) policy satisfied in
        a policy session): the challenge's secret, if the challenge was made for this AK and this EK."""
        tss = self._tss
        blob, _ = tss.TPM2B_ID_OBJECT.unmarshal(challenge.credential_blob)
        secret, _ = tss.TPM2B_ENCRYPTED_SECRET.unmarshal(challenge.encrypted_secret)
        ak = self._ak()
        with self._ek() as ek, self._policy_session() as session:
            try:
                self.esys.policy_secret(tss.ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
                answer = self.esys.activate_credential(ak, ek, blob, secret, session2=session)
            except tss.TSS2_Exception as exc:
                raise ActivationError(f"the TPM refused to activate the credential: {exc}") from None
        return bytes(answer)

    def extend(self, pcr: int, digest: bytes) -> None:
        """TPM2_PCR_Extend of the SHA-256 bank of ``pcr`` with ``digest`` (Part 3, 22.2)."""
        tss = self._tss
        if len(digest) != PCR_SIZE:
            raise TpmFormatError("a SHA-256 PCR is extended with a 32-byte digest")
        sha = tss.TPMT_HA(hashAlg=tss.TPM2_ALG.SHA256, digest=tss.TPMU_HA(sha256=digest))
        with self._tpm(f"extending PCR {pcr}") as esys:
            esys.pcr_extend(self._pcr_handle(pcr), tss.TPML_DIGEST_VALUES([sha]))

    def reset(self, pcr: int) -> None:
        """TPM2_PCR_Reset (Part 3, 22.3): only the resettable PCRs (16, 23 at locality 0); for tests."""
        with self._tpm(f"resetting PCR {pcr}") as esys:
            esys.pcr_reset(self._pcr_handle(pcr))

    def _pcr_handle(self, pcr: int) -> Any:
        if type(pcr) is not int or not 0 <= pcr <= 23:
            raise TpmFormatError(f"PCR {pcr!r} is not 0-23")
        return getattr(self._tss.ESYS_TR, f"PCR{pcr}")

    def pcr_values(self, pcrs: Iterable[int]) -> dict[int, bytes]:
        """The SHA-256 values of ``pcrs`` (TPM2_PCR_Read, Part 3, 22.4; at most 8 digests per read)."""
        wanted = sha256_selection(list(pcrs))[0].pcrs
        values: dict[int, bytes] = {}
        for start in range(0, len(wanted), 8):
            chunk = wanted[start : start + 8]
            with self._tpm("reading PCRs") as esys:
                _, selection, digests = esys.pcr_read(_selection_string(chunk))
            read = [i for i in range(24) if bytes(selection.pcrSelections[0].pcrSelect)[i // 8] & (1 << (i % 8))]
            if read != list(chunk):
                raise TpmError(f"the TPM returned PCRs {read}, not {list(chunk)}")
            values.update(zip(chunk, (bytes(d) for d in digests), strict=True))
        return values

    def quote(self, pcrs: Iterable[int], qualifying_data: bytes) -> Quote:
        """TPM2_Quote (Part 3, 18.4) of the SHA-256 ``pcrs`` with the AK and ``qualifying_data`` as
        extraData, with the PCR values read alongside (read again if a PCR moved in between)."""
        tss = self._tss
        chosen = list(pcrs)
        selection = _selection_string(chosen)
        ak = self._ak()
        for _ in range(3):
            values = self.pcr_values(chosen)
            with self._tpm("quoting") as esys:
                attest, signature = esys.quote(
                    ak, selection, qualifying_data, tss.TPMT_SIG_SCHEME(scheme=tss.TPM2_ALG.NULL)
                )
            attest_bytes = bytes(attest)
            info = parse_attest(attest_bytes).attested
            if isinstance(info, QuoteInfo) and info.pcr_digest == pcr_composite_digest(
                ALG_SHA256, [values[p] for p in sorted(values)]
            ):
                return Quote(attest_bytes, bytes(signature.marshal()), values)
        raise TpmError("PCRs kept changing while quoting")

    def unseal(self, blob: TpmSealedKey) -> bytearray:
        """Import ``blob`` under the SRK, load it, satisfy its PolicyPCR and unseal it (Part 3, 13.3, 12.2,
        23.7, 12.7). The caller wipes the returned secret when done."""
        tss = self._tss
        blob.check()
        if blob.parent_name != self._srk_name:
            raise UnsealError("this key was sealed to another TPM's storage key")
        public = tss.TPM2B_PUBLIC(publicArea=tss.TPMT_PUBLIC.unmarshal(blob.public)[0])
        duplicate, _ = tss.TPM2B_PRIVATE.unmarshal(blob.duplicate)
        seed, _ = tss.TPM2B_ENCRYPTED_SECRET.unmarshal(blob.seed)
        esys = self.esys
        try:
            private = esys.import_(
                self._srk, b"", public, duplicate, seed, tss.TPMT_SYM_DEF_OBJECT(algorithm=tss.TPM2_ALG.NULL)
            )
            handle = esys.load(self._srk, private, public)
        except tss.TSS2_Exception as exc:
            raise UnsealError(f"the TPM refused to import the sealed key: {exc}") from None
        try:
            with self._policy_session() as session:
                try:
                    esys.policy_pcr(session, b"", _selection_string(blob.pcrs))
                    data = esys.unseal(handle, session1=session)
                except tss.TSS2_Exception as exc:
                    if _rc(exc) == _RC_POLICY_FAIL:
                        raise PcrPolicyError(
                            "the TPM's PCRs are not in the state this key was sealed to (loader or model changed)"
                        ) from None
                    raise UnsealError(f"the TPM refused to unseal: {exc}") from None
        finally:
            with contextlib.suppress(tss.TSS2_Exception):
                esys.flush_context(handle)
        raw = bytearray(bytes(data))
        secret = bytearray(raw)
        wipe(raw)
        return secret

    def pcr_state(self, pcrs: Mapping[int, bytes]) -> bool:
        """True when every PCR in ``pcrs`` currently holds the given value."""
        return self.pcr_values(pcrs) == dict(pcrs)
