"""TPM 2.0 wire structures the verifier reads, parsed strictly in pure Python (no TPM, no tss2 library).

Every parser here reads big-endian TPM marshalling (TPM 2.0 Library Part 2, "Structures", clause 4 and the
type definitions cited on each function), refuses truncated input, trailing bytes, sizes beyond the
structure's maximum and algorithms or tags it does not handle, and raises ``TpmFormatError`` for all of
them: nothing from a host reaches a comparison before it has been parsed completely.

Names (Part 1 "Architecture", clause 16, "Names"): an object's name is ``nameAlg || H_nameAlg(TPMT_PUBLIC)``
over the marshalled public area; ``TpmPublic.name`` computes it, so a verifier never trusts a name it is
told.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from strongroom.attest.errors import KeyAttributesError, QuoteSignatureError, TpmFormatError

# TPM_GENERATED (Part 2, 6.2): the magic at the start of every structure the TPM signs itself.
TPM_GENERATED_VALUE: Final = 0xFF544347

# TPM_ST (Part 2, 6.9): attestation structure tags.
TPM_ST_ATTEST_CERTIFY: Final = 0x8017
TPM_ST_ATTEST_QUOTE: Final = 0x8018
TPM_ST_ATTEST_CREATION: Final = 0x801A

# TPM_ALG_ID (Part 2, 6.3; TCG Algorithm Registry).
ALG_RSA: Final = 0x0001
ALG_SHA1: Final = 0x0004
ALG_HMAC: Final = 0x0005
ALG_AES: Final = 0x0006
ALG_KEYEDHASH: Final = 0x0008
ALG_XOR: Final = 0x000A
ALG_SHA256: Final = 0x000B
ALG_SHA384: Final = 0x000C
ALG_SHA512: Final = 0x000D
ALG_NULL: Final = 0x0010
ALG_RSASSA: Final = 0x0014
ALG_RSAES: Final = 0x0015
ALG_RSAPSS: Final = 0x0016
ALG_OAEP: Final = 0x0017
ALG_ECDSA: Final = 0x0018
ALG_ECDH: Final = 0x0019
ALG_ECDAA: Final = 0x001A
ALG_SM2: Final = 0x001B
ALG_ECSCHNORR: Final = 0x001C
ALG_KDF1_SP800_56A: Final = 0x0020
ALG_KDF2: Final = 0x0021
ALG_KDF1_SP800_108: Final = 0x0022
ALG_ECC: Final = 0x0023
ALG_SYMCIPHER: Final = 0x0025
ALG_CFB: Final = 0x0043

# TPM_ECC_CURVE (Part 2, 6.4).
ECC_NIST_P256: Final = 0x0003
ECC_NIST_P384: Final = 0x0004
ECC_NIST_P521: Final = 0x0005

# TPM_CC (Part 2, 6.5) of the policy commands whose digests are computed in software.
TPM_CC_POLICY_SECRET: Final = 0x00000151
TPM_CC_POLICY_PCR: Final = 0x0000017F

# TPMA_OBJECT bits (Part 2, 8.3).
FIXED_TPM: Final = 1 << 1
ST_CLEAR: Final = 1 << 2
FIXED_PARENT: Final = 1 << 4
SENSITIVE_DATA_ORIGIN: Final = 1 << 5
USER_WITH_AUTH: Final = 1 << 6
ADMIN_WITH_POLICY: Final = 1 << 7
NO_DA: Final = 1 << 10
ENCRYPTED_DUPLICATION: Final = 1 << 11
RESTRICTED: Final = 1 << 16
DECRYPT: Final = 1 << 17
SIGN_ENCRYPT: Final = 1 << 18

_HASHES: Final[dict[int, tuple[str, int]]] = {
    ALG_SHA1: ("sha1", 20),
    ALG_SHA256: ("sha256", 32),
    ALG_SHA384: ("sha384", 48),
    ALG_SHA512: ("sha512", 64),
}
_CURVES: Final[dict[int, tuple[ec.EllipticCurve, int]]] = {
    ECC_NIST_P256: (ec.SECP256R1(), 32),
    ECC_NIST_P384: (ec.SECP384R1(), 48),
    ECC_NIST_P521: (ec.SECP521R1(), 66),
}
_CRYPTO_HASHES: Final[dict[int, type[hashes.HashAlgorithm]]] = {
    ALG_SHA1: hashes.SHA1,
    ALG_SHA256: hashes.SHA256,
    ALG_SHA384: hashes.SHA384,
    ALG_SHA512: hashes.SHA512,
}

# Size limits (Part 2 and the reference implementation's defaults): sizeof(TPMU_HA) = 64 for SHA-512,
# TPM2B_NAME holds TPMU_NAME (a 4-byte handle or a TPMT_HA), TPM2B_DATA holds a TPMT_HA.
_MAX_DIGEST: Final = 64
_MAX_NAME: Final = 2 + 64
_MAX_DATA: Final = 2 + 64
_MAX_ECC_PARAMETER: Final = 66
_MAX_RSA_KEY_BYTES: Final = 512
_MAX_SELECT_BYTES: Final = 8  # PCR_SELECT_MAX: 3 on PC-client TPMs; a little headroom, never unbounded
_MAX_BANKS: Final = 16
# Our own cap on a public area or attestation: the largest real one (RSA-4096 public) is well under it.
MAX_STRUCTURE: Final = 4096


def hash_name(alg: int) -> str:
    """hashlib's name for a TPM hash algorithm id; ``TpmFormatError`` for anything else."""
    try:
        return _HASHES[alg][0]
    except KeyError:
        raise TpmFormatError(f"unsupported hash algorithm 0x{alg:04x}") from None


def digest_size(alg: int) -> int:
    """The digest size in bytes of a TPM hash algorithm id."""
    try:
        return _HASHES[alg][1]
    except KeyError:
        raise TpmFormatError(f"unsupported hash algorithm 0x{alg:04x}") from None


class Reader:
    """A cursor over marshalled TPM bytes (Part 2, 4: big-endian, TPM2B = UINT16 size || bytes)."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TpmFormatError("TPM structure must be bytes")
        if len(data) > MAX_STRUCTURE:
            raise TpmFormatError(f"TPM structure is {len(data)} bytes, more than {MAX_STRUCTURE}")
        self._data = bytes(data)
        self._offset = 0

    def take(self, n: int) -> bytes:
        end = self._offset + n
        if n < 0 or end > len(self._data):
            raise TpmFormatError(f"truncated TPM structure: {n} bytes wanted at offset {self._offset}")
        out = self._data[self._offset : end]
        self._offset = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack(">Q", self.take(8))[0]
        return value

    def tpm2b(self, maximum: int, what: str) -> bytes:
        size = self.u16()
        if size > maximum:
            raise TpmFormatError(f"{what} is {size} bytes, more than its maximum {maximum}")
        return self.take(size)

    def done(self, what: str) -> None:
        if self._offset != len(self._data):
            raise TpmFormatError(f"{len(self._data) - self._offset} trailing bytes after {what}")


def _u16(value: int) -> bytes:
    return struct.pack(">H", value)


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def tpm2b(data: bytes) -> bytes:
    """Marshal a TPM2B (UINT16 size || bytes)."""
    if len(data) > 0xFFFF:
        raise TpmFormatError("TPM2B buffer larger than 65535 bytes")
    return _u16(len(data)) + data


# --- PCR selections (Part 2, 10.6.2 TPMS_PCR_SELECTION, 10.9.7 TPML_PCR_SELECTION) -------------------


@dataclass(frozen=True)
class PcrSelection:
    """One bank of a TPML_PCR_SELECTION: a hash algorithm and the PCR indices selected in it (ascending)."""

    hash_alg: int
    pcrs: tuple[int, ...]
    size_of_select: int = 3

    def marshal(self) -> bytes:
        bitmap = bytearray(self.size_of_select)
        for pcr in self.pcrs:
            if not 0 <= pcr < 8 * self.size_of_select:
                raise TpmFormatError(f"PCR {pcr} outside a {self.size_of_select}-byte selection")
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        return _u16(self.hash_alg) + bytes([self.size_of_select]) + bytes(bitmap)


def marshal_pcr_selection(banks: tuple[PcrSelection, ...]) -> bytes:
    """TPML_PCR_SELECTION: UINT32 count, then each TPMS_PCR_SELECTION."""
    return _u32(len(banks)) + b"".join(bank.marshal() for bank in banks)


def sha256_selection(pcrs: tuple[int, ...] | list[int]) -> tuple[PcrSelection, ...]:
    """A one-bank SHA-256 selection of the given PCRs (sorted, distinct, 0-23)."""
    chosen = tuple(sorted(set(pcrs)))
    if not chosen or len(chosen) != len(pcrs) or chosen[0] < 0 or chosen[-1] > 23:
        raise TpmFormatError(f"PCR selection must name distinct PCRs 0-23, got {list(pcrs)}")
    return (PcrSelection(ALG_SHA256, chosen),)


def _read_pcr_selection(reader: Reader) -> tuple[PcrSelection, ...]:
    count = reader.u32()
    if count > _MAX_BANKS:
        raise TpmFormatError(f"PCR selection names {count} banks")
    banks = []
    for _ in range(count):
        alg = reader.u16()
        digest_size(alg)
        size = reader.u8()
        if not 1 <= size <= _MAX_SELECT_BYTES:
            raise TpmFormatError(f"sizeofSelect {size} outside 1-{_MAX_SELECT_BYTES}")
        bitmap = reader.take(size)
        pcrs = tuple(i for i in range(8 * size) if bitmap[i // 8] & (1 << (i % 8)))
        banks.append(PcrSelection(alg, pcrs, size))
    return tuple(banks)


def parse_pcr_selection(data: bytes) -> tuple[PcrSelection, ...]:
    """Parse a whole TPML_PCR_SELECTION."""
    reader = Reader(data)
    banks = _read_pcr_selection(reader)
    reader.done("TPML_PCR_SELECTION")
    return banks


def pcr_composite_digest(hash_alg: int, values: list[bytes]) -> bytes:
    """The pcrDigest of a quote or PolicyPCR (Part 3, 18.4 TPM2_Quote; 23.7 TPM2_PolicyPCR): the hash of the
    selected PCR values concatenated in selection order (banks in order, PCRs ascending)."""
    h = hashlib.new(hash_name(hash_alg))
    for value in values:
        h.update(value)
    return h.digest()


# --- TPMS_ATTEST (Part 2, 10.12.12) -----------------------------------------------------------------


@dataclass(frozen=True)
class ClockInfo:
    """TPMS_CLOCK_INFO (Part 2, 10.11.1): milliseconds the TPM has run since its last Clear, the number of TPM
    Resets (reboots) and TPM Restarts (resume from hibernation) since then, and whether the clock is safe
    (was saved to NV since it last advanced)."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True)
class QuoteInfo:
    """TPMS_QUOTE_INFO (Part 2, 10.12.1): the PCRs quoted and the digest of their values."""

    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes


@dataclass(frozen=True)
class CertifyInfo:
    """TPMS_CERTIFY_INFO (Part 2, 10.12.3): the name and qualified name of a key loaded in the TPM."""

    name: bytes
    qualified_name: bytes


@dataclass(frozen=True)
class CreationInfo:
    """TPMS_CREATION_INFO (Part 2, 10.12.7): an object's name and the digest of its creation data."""

    object_name: bytes
    creation_hash: bytes


@dataclass(frozen=True)
class Attest:
    """A parsed TPMS_ATTEST: what the TPM signed with an attestation key."""

    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: ClockInfo
    firmware_version: int
    attested: QuoteInfo | CertifyInfo | CreationInfo


def _read_name(reader: Reader, what: str) -> bytes:
    name = reader.tpm2b(_MAX_NAME, what)
    if name and len(name) != 4:  # a handle, or nameAlg || digest
        if len(name) < 2:
            raise TpmFormatError(f"{what} of {len(name)} bytes")
        alg = struct.unpack(">H", name[:2])[0]
        if len(name) != 2 + digest_size(alg):
            raise TpmFormatError(f"{what} is not nameAlg || digest")
    return name


def parse_attest(data: bytes) -> Attest:
    """Parse a TPMS_ATTEST (Part 2, 10.12.12) of type QUOTE, CERTIFY or CREATION; the magic must be
    TPM_GENERATED_VALUE (so the TPM itself made it: a restricted key never signs data starting so)."""
    reader = Reader(data)
    magic = reader.u32()
    if magic != TPM_GENERATED_VALUE:
        raise TpmFormatError(f"attestation magic 0x{magic:08x} is not TPM_GENERATED_VALUE")
    kind = reader.u16()
    signer = _read_name(reader, "qualifiedSigner")
    extra = reader.tpm2b(_MAX_DATA, "extraData")
    clock = ClockInfo(reader.u64(), reader.u32(), reader.u32(), _read_yes_no(reader))
    firmware = reader.u64()
    attested: QuoteInfo | CertifyInfo | CreationInfo
    if kind == TPM_ST_ATTEST_QUOTE:
        selection = _read_pcr_selection(reader)
        attested = QuoteInfo(selection, reader.tpm2b(_MAX_DIGEST, "pcrDigest"))
    elif kind == TPM_ST_ATTEST_CERTIFY:
        attested = CertifyInfo(_read_name(reader, "name"), _read_name(reader, "qualifiedName"))
    elif kind == TPM_ST_ATTEST_CREATION:
        attested = CreationInfo(_read_name(reader, "objectName"), reader.tpm2b(_MAX_DIGEST, "creationHash"))
    else:
        raise TpmFormatError(f"attestation type 0x{kind:04x} is not quote, certify or creation")
    reader.done("TPMS_ATTEST")
    return Attest(kind, signer, extra, clock, firmware, attested)


def _read_yes_no(reader: Reader) -> bool:
    value = reader.u8()
    if value > 1:
        raise TpmFormatError(f"TPMI_YES_NO of {value}")
    return value == 1


# --- TPMT_SIGNATURE (Part 2, 11.3.4) -----------------------------------------------------------------


@dataclass(frozen=True)
class EcdsaSignature:
    """TPMS_SIGNATURE_ECDSA (Part 2, 11.3.1): the hash the TPM signed with and the integers r, s."""

    hash_alg: int
    r: bytes
    s: bytes

    def der(self) -> bytes:
        return encode_dss_signature(int.from_bytes(self.r, "big"), int.from_bytes(self.s, "big"))


def parse_signature(data: bytes) -> EcdsaSignature:
    """Parse a TPMT_SIGNATURE; only ECDSA is accepted (the AK template is ``ecc256:ecdsa-sha256``)."""
    reader = Reader(data)
    alg = reader.u16()
    if alg != ALG_ECDSA:
        raise TpmFormatError(f"signature algorithm 0x{alg:04x} is not ECDSA")
    hash_alg = reader.u16()
    digest_size(hash_alg)
    r = reader.tpm2b(_MAX_ECC_PARAMETER, "signatureR")
    s = reader.tpm2b(_MAX_ECC_PARAMETER, "signatureS")
    reader.done("TPMT_SIGNATURE")
    if not r or not s:
        raise TpmFormatError("empty ECDSA signature component")
    return EcdsaSignature(hash_alg, r, s)


# --- TPMT_PUBLIC (Part 2, 12.2.4) ---------------------------------------------------------------------


@dataclass(frozen=True)
class SymDef:
    """TPMT_SYM_DEF_OBJECT (Part 2, 11.1.7): the symmetric algorithm of a storage or EK key (NULL if none)."""

    algorithm: int
    key_bits: int = 0
    mode: int = 0


@dataclass(frozen=True)
class TpmPublic:
    """A parsed TPMT_PUBLIC with its exact marshalled bytes (``raw``), from which its name is computed.

    ``scheme``/``scheme_hash`` are the signing or encryption scheme (ALG_NULL if none); for ECC keys
    ``curve``, ``x``, ``y``; for RSA keys ``key_bits``, ``exponent`` and ``modulus``; for keyedhash objects
    ``unique`` is the digest.
    """

    raw: bytes
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    symmetric: SymDef
    scheme: int
    scheme_hash: int
    curve: int = 0
    kdf: int = ALG_NULL
    x: bytes = b""
    y: bytes = b""
    key_bits: int = 0
    exponent: int = 0
    modulus: bytes = b""
    unique: bytes = b""

    @property
    def name(self) -> bytes:
        """Part 1, 16: nameAlg || H_nameAlg(TPMT_PUBLIC)."""
        return _u16(self.name_alg) + hashlib.new(hash_name(self.name_alg), self.raw).digest()

    def has(self, attributes: int) -> bool:
        return self.attributes & attributes == attributes

    def public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        """The key as a ``cryptography`` public key (ECC or RSA only)."""
        try:
            if self.type == ALG_ECC:
                curve, size = _CURVES[self.curve]
                if len(self.x) != size or len(self.y) != size:
                    raise TpmFormatError("ECC point coordinates have the wrong size for the curve")
                return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + self.x + self.y)
            if self.type == ALG_RSA:
                exponent = self.exponent or 65537
                return rsa.RSAPublicNumbers(exponent, int.from_bytes(self.modulus, "big")).public_key()
        except ValueError as exc:
            raise TpmFormatError(f"TPM public key is not a valid key: {exc}") from None
        raise TpmFormatError(f"TPM object type 0x{self.type:04x} has no public key")


def _read_symdef(reader: Reader) -> SymDef:
    alg = reader.u16()
    if alg == ALG_NULL:
        return SymDef(ALG_NULL)
    if alg == ALG_AES:
        bits, mode = reader.u16(), reader.u16()
        if bits not in (128, 192, 256):
            raise TpmFormatError(f"AES key size {bits}")
        return SymDef(alg, bits, mode)
    if alg == ALG_XOR:
        return SymDef(alg, reader.u16())
    raise TpmFormatError(f"symmetric algorithm 0x{alg:04x} not supported")


def _read_scheme(reader: Reader) -> tuple[int, int]:
    scheme = reader.u16()
    if scheme == ALG_NULL:
        return scheme, ALG_NULL
    if scheme in (ALG_RSASSA, ALG_RSAPSS, ALG_OAEP, ALG_ECDSA, ALG_ECDH, ALG_SM2, ALG_ECSCHNORR, ALG_HMAC):
        hash_alg = reader.u16()
        digest_size(hash_alg)
        return scheme, hash_alg
    if scheme == ALG_ECDAA:
        hash_alg = reader.u16()
        digest_size(hash_alg)
        reader.u16()  # count
        return scheme, hash_alg
    if scheme == ALG_RSAES:
        return scheme, ALG_NULL
    raise TpmFormatError(f"scheme 0x{scheme:04x} not supported")


def parse_public(data: bytes) -> TpmPublic:
    """Parse a TPMT_PUBLIC (Part 2, 12.2.4) of type ECC, RSA or KEYEDHASH; ``TpmFormatError`` otherwise."""
    reader = Reader(data)
    kind = reader.u16()
    name_alg = reader.u16()
    digest_size(name_alg)
    attributes = reader.u32()
    policy = reader.tpm2b(_MAX_DIGEST, "authPolicy")
    if policy and len(policy) != digest_size(name_alg):
        raise TpmFormatError("authPolicy is not a nameAlg digest")
    if kind == ALG_ECC:
        sym = _read_symdef(reader)
        scheme, scheme_hash = _read_scheme(reader)
        curve = reader.u16()
        if curve not in _CURVES:
            raise TpmFormatError(f"ECC curve 0x{curve:04x} not supported")
        kdf = reader.u16()
        if kdf != ALG_NULL:
            if kdf not in (ALG_KDF1_SP800_56A, ALG_KDF2, ALG_KDF1_SP800_108):
                raise TpmFormatError(f"KDF 0x{kdf:04x} not supported")
            digest_size(reader.u16())
        x = reader.tpm2b(_MAX_ECC_PARAMETER, "ecc x")
        y = reader.tpm2b(_MAX_ECC_PARAMETER, "ecc y")
        reader.done("TPMT_PUBLIC")
        return TpmPublic(bytes(data), kind, name_alg, attributes, policy, sym, scheme, scheme_hash, curve, kdf, x, y)
    if kind == ALG_RSA:
        sym = _read_symdef(reader)
        scheme, scheme_hash = _read_scheme(reader)
        bits = reader.u16()
        exponent = reader.u32()
        if bits not in (1024, 2048, 3072, 4096):
            raise TpmFormatError(f"RSA key size {bits}")
        modulus = reader.tpm2b(_MAX_RSA_KEY_BYTES, "rsa modulus")
        if modulus and len(modulus) != bits // 8:
            raise TpmFormatError("RSA modulus size does not match keyBits")
        reader.done("TPMT_PUBLIC")
        return TpmPublic(
            bytes(data), kind, name_alg, attributes, policy, sym, scheme, scheme_hash,
            key_bits=bits, exponent=exponent, modulus=modulus,
        )  # fmt: skip
    if kind == ALG_KEYEDHASH:
        scheme = reader.u16()
        scheme_hash = ALG_NULL
        if scheme == ALG_HMAC:
            scheme_hash = reader.u16()
            digest_size(scheme_hash)
        elif scheme == ALG_XOR:
            scheme_hash = reader.u16()
            digest_size(scheme_hash)
            reader.u16()
        elif scheme != ALG_NULL:
            raise TpmFormatError(f"keyedhash scheme 0x{scheme:04x}")
        unique = reader.tpm2b(_MAX_DIGEST, "keyedhash unique")
        reader.done("TPMT_PUBLIC")
        return TpmPublic(bytes(data), kind, name_alg, attributes, policy, SymDef(ALG_NULL), scheme, scheme_hash,
                         unique=unique)  # fmt: skip
    raise TpmFormatError(f"TPM object type 0x{kind:04x} not supported")


def parse_public_2b(data: bytes) -> TpmPublic:
    """Parse a TPM2B_PUBLIC (a UINT16 size, then the TPMT_PUBLIC)."""
    reader = Reader(data)
    inner = reader.tpm2b(MAX_STRUCTURE, "TPM2B_PUBLIC")
    reader.done("TPM2B_PUBLIC")
    return parse_public(inner)


# --- TPMS_CREATION_DATA (Part 2, 15.1) ---------------------------------------------------------------


@dataclass(frozen=True)
class CreationData:
    """TPMS_CREATION_DATA: the context an object was created in, hashed into the creation ticket and
    certified by TPM2_CertifyCreation; ``outside_info`` is whatever the creator bound to the object."""

    raw: bytes
    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes
    locality: int
    parent_name_alg: int
    parent_name: bytes
    parent_qualified_name: bytes
    outside_info: bytes


def parse_creation_data(data: bytes) -> CreationData:
    """Parse a TPMS_CREATION_DATA (Part 2, 15.1)."""
    reader = Reader(data)
    selection = _read_pcr_selection(reader)
    pcr_digest = reader.tpm2b(_MAX_DIGEST, "pcrDigest")
    locality = reader.u8()
    parent_alg = reader.u16()
    parent_name = _read_name(reader, "parentName")
    parent_qn = _read_name(reader, "parentQualifiedName")
    outside = reader.tpm2b(_MAX_DATA, "outsideInfo")
    reader.done("TPMS_CREATION_DATA")
    return CreationData(bytes(data), selection, pcr_digest, locality, parent_alg, parent_name, parent_qn, outside)


# --- signatures by attestation keys -------------------------------------------------------------------

# An AK (Part 1, 11.4.2 / TCG "TPM 2.0 Keys for Device Identity and Attestation" 5.x): a restricted signing
# key that never leaves its TPM (fixedTPM, fixedParent) and whose private part the TPM generated.
AK_REQUIRED: Final = RESTRICTED | SIGN_ENCRYPT | FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN


def check_ak(public: TpmPublic) -> None:
    """Refuse a public area that is not an attestation key: ECC P-256 (or larger NIST curve), restricted
    signing, fixedTPM, fixedParent, sensitiveDataOrigin, decrypt clear, scheme ECDSA with a fixed hash."""
    if public.type != ALG_ECC:
        raise KeyAttributesError("attestation key is not an ECC key")
    if not public.has(AK_REQUIRED) or public.attributes & DECRYPT:
        raise KeyAttributesError(
            f"attestation key attributes 0x{public.attributes:08x} are not restricted|sign|fixedTPM|fixedParent|"
            "sensitiveDataOrigin without decrypt"
        )
    if public.scheme != ALG_ECDSA or public.scheme_hash not in (ALG_SHA256, ALG_SHA384, ALG_SHA512):
        raise KeyAttributesError("attestation key scheme is not ECDSA with SHA-2")


def verify_attest_signature(ak: TpmPublic, attest: bytes, signature: bytes) -> EcdsaSignature:
    """Check ``signature`` (TPMT_SIGNATURE) over ``attest`` with the AK: ECDSA with the AK's scheme hash
    (Part 1, 36.2: the TPM signs H_scheme(TPMS_ATTEST)). Raises ``QuoteSignatureError`` if it does not verify."""
    sig = parse_signature(signature)
    if sig.hash_alg != ak.scheme_hash:
        raise QuoteSignatureError("signature hash is not the attestation key's scheme hash")
    key = ak.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyAttributesError("attestation key is not an ECC key")
    try:
        key.verify(sig.der(), attest, ec.ECDSA(_CRYPTO_HASHES[sig.hash_alg]()))
    except InvalidSignature:
        raise QuoteSignatureError("attestation signature does not verify under the attestation key") from None
    return sig
