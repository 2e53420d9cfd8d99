"""Shamir custodians: a data key split k-of-n, each share sealed to one custodian's X25519 key.

The quorum is cryptographic. Nobody, the custody server included, can recover the data key without k
custodians' private keys; the release flow never puts the key on the server:

1. ``ShamirProvider.wrap`` splits the 256-bit data key with pycryptodome's Shamir (GF(2^128), 16-byte
   secrets) as two 128-bit halves sharing the x-coordinates 1..n, so custodian i holds one 32-byte share
   ``half1(i) || half2(i)``. Each share is HPKE-sealed (``keys.hpke``) to custodian i's X25519 key with an
   info string that binds key id, custodian, index and the key binding (seal id, model id).
2. An approving custodian runs ``custodian_reencrypt_share``, naming the model id they approve: refuse if
   the key reference is bound to another model, open its share with its private key (the HPKE info holds
   the reference's binding, so an edited binding does not open), check it against the share's recorded
   digest, and HPKE-seal it again to the requesting host's ephemeral public key, bound to the key binding
   and a release context (the release id).
3. The host runs ``host_combine`` on k re-encrypted shares: open each with its ephemeral private key, the
   binding and the same context, check each share digest (naming the custodian of a bad one), interpolate,
   and verify the key-check value (which covers the binding too). A wrong or corrupted share, or an edited
   binding, is an error, never a wrong key.

The blob inside ``WrappedKey`` is canonical JSON::

    {"format": "strongroom-shamir/v1", "key_id": "shamir-<32 hex>", "threshold": k,
     "kcv": hex(HMAC-SHA256(data key, "strongroom/shamir/v1/kcv" || 0x00 || key_id || 0x00 || B)),
     "shares": [{"index": i, "custodian": name, "public_key": hex(raw X25519),
                 "check": hex(SHA-256("strongroom/shamir/v1/share-check" || 0x00 || key_id || 0x00
                                      || BE16(i) || BE32(len(B)) || B || share)),
                 "sealed": b64(HPKE(custodian i, share, info = share info over key_id, i, key, B))}, ...]}

where B = ``binding.aad()`` of the ``WrappedKey`` the blob travels in. The blob itself does not repeat the
binding: it is authenticated by the KCV, every share check and every HPKE info, so it cannot be changed.

The key id is derived from the threshold and the sorted custodian public keys, so a changed custodian set
is a different key id. pycryptodome returns shares and the combined secret as immutable ``bytes``, which
cannot be wiped; our own copies are bytearrays and are wiped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from strongroom.canonical_json import canonical_json
from strongroom.keys.errors import (
    HpkeError,
    InsufficientSharesError,
    KeyBindingError,
    KeyProviderError,
    ModelMismatchError,
    QuorumRequiredError,
    ShareError,
    UnwrapError,
)
from strongroom.keys.hpke import open_as_host, public_bytes, public_from_hex, seal_to_host
from strongroom.keys.provider import DATA_KEY_BYTES, KeyBinding, WrappedKey, check_binding, check_reference
from strongroom.memory import wipe

FORMAT = "strongroom-shamir/v1"
HALF = 16
SHARE_BYTES = 2 * HALF
MAX_CUSTODIANS = 255
KCV_LABEL = b"strongroom/shamir/v1/kcv"
CHECK_LABEL = b"strongroom/shamir/v1/share-check"
SHARE_INFO = b"strongroom/shamir/v1/share"
RELEASE_INFO = b"strongroom/shamir/v1/release"
KEY_ID_LABEL = "strongroom/shamir/v1/key-id"


@dataclass(frozen=True)
class CustodianPublicKey:
    """A custodian as the provider knows them: a display name and an X25519 public key."""

    name: str
    public_key: X25519PublicKey

    @property
    def public_hex(self) -> str:
        return public_bytes(self.public_key).hex()


@dataclass(frozen=True)
class ShareRecord:
    """One custodian's entry in a Shamir blob."""

    index: int
    custodian: str
    public_hex: str
    check: str
    sealed: bytes


@dataclass(frozen=True)
class ShamirBlob:
    """The parsed content of a Shamir ``WrappedKey`` blob."""

    key_id: str
    threshold: int
    kcv: str
    shares: tuple[ShareRecord, ...]

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "format": FORMAT,
                "key_id": self.key_id,
                "threshold": self.threshold,
                "kcv": self.kcv,
                "shares": [
                    {
                        "index": s.index,
                        "custodian": s.custodian,
                        "public_key": s.public_hex,
                        "check": s.check,
                        "sealed": base64.b64encode(s.sealed).decode("ascii"),
                    }
                    for s in self.shares
                ],
            }
        )

    @classmethod
    def parse(cls, wrapped: WrappedKey | bytes) -> ShamirBlob:
        """Parse and validate a blob; the key id must match the custodian set and threshold it lists."""
        raw = wrapped.blob if isinstance(wrapped, WrappedKey) else wrapped
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise UnwrapError("Shamir blob is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UnwrapError(f"Shamir blob is not a {FORMAT} document")
        try:
            key_id, threshold, kcv, entries = doc["key_id"], doc["threshold"], doc["kcv"], doc["shares"]
            if not (isinstance(key_id, str) and isinstance(kcv, str) and isinstance(entries, list)):
                raise TypeError
            if not isinstance(threshold, int) or isinstance(threshold, bool):
                raise TypeError
            shares = tuple(_parse_share(e) for e in entries)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise UnwrapError("Shamir blob: missing or malformed field (key_id, threshold, kcv, shares)") from None
        if not 1 <= threshold <= len(shares) <= MAX_CUSTODIANS:
            raise UnwrapError(f"Shamir blob: threshold {threshold} impossible for {len(shares)} shares")
        if [s.index for s in shares] != list(range(1, len(shares) + 1)):
            raise UnwrapError("Shamir blob: share indices must be 1..n in order")
        if len({s.public_hex for s in shares}) != len(shares):
            raise UnwrapError("Shamir blob: a custodian key appears twice")
        expected = derive_key_id(threshold, [s.public_hex for s in shares])
        if not hmac.compare_digest(expected, key_id):
            raise UnwrapError(f"Shamir blob: key id {key_id} does not match its custodian set and threshold")
        if isinstance(wrapped, WrappedKey) and wrapped.key_id != key_id:
            raise UnwrapError(f"Shamir blob holds key id {key_id}, but the key reference says {wrapped.key_id}")
        return cls(key_id=key_id, threshold=threshold, kcv=kcv, shares=shares)

    def share_for(self, public_key: X25519PublicKey) -> ShareRecord:
        wanted = public_bytes(public_key).hex()
        for share in self.shares:
            if hmac.compare_digest(share.public_hex, wanted):
                return share
        raise ShareError(f"custodian key {wanted[:16]}... holds no share of {self.key_id}")


def _parse_share(entry: Any) -> ShareRecord:
    if not isinstance(entry, dict):
        raise TypeError
    index, name, pub, check, sealed = (
        entry["index"],
        entry["custodian"],
        entry["public_key"],
        entry["check"],
        entry["sealed"],
    )
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError
    if not all(isinstance(v, str) for v in (name, pub, check, sealed)):
        raise TypeError
    public_from_hex(pub)
    return ShareRecord(index, name, pub, check, base64.b64decode(sealed, validate=True))


@dataclass(frozen=True)
class ReencryptedShare:
    """A custodian's share, re-sealed to one host's ephemeral key for one release context."""

    key_id: str
    index: int
    custodian_public_hex: str
    sealed: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "index": self.index,
            "custodian_public_key": self.custodian_public_hex,
            "sealed": base64.b64encode(self.sealed).decode("ascii"),
        }

    @classmethod
    def from_json(cls, value: Any) -> ReencryptedShare:
        try:
            if not isinstance(value, dict):
                raise TypeError
            key_id, index, pub, sealed = value["key_id"], value["index"], value["custodian_public_key"], value["sealed"]
            if not (isinstance(key_id, str) and isinstance(pub, str) and isinstance(sealed, str)):
                raise TypeError
            if not isinstance(index, int) or isinstance(index, bool):
                raise TypeError
            return cls(key_id, index, pub, base64.b64decode(sealed, validate=True))
        except (KeyError, TypeError, binascii.Error):
            raise ShareError(
                "re-encrypted share: fields key_id, index, custodian_public_key, sealed missing or malformed"
            ) from None


# -- derivations --------------------------------------------------------------------------------


def derive_key_id(threshold: int, public_hexes: Iterable[str]) -> str:
    """The key id of a custodian set: ``shamir-`` + 32 hex of SHA-256 over threshold and sorted keys."""
    body = canonical_json({"label": KEY_ID_LABEL, "threshold": threshold, "custodians": sorted(public_hexes)})
    return "shamir-" + hashlib.sha256(body).hexdigest()[:32]


def _kcv(data_key: bytes | bytearray, key_id: str, binding: KeyBinding) -> str:
    """Key-check value: HMAC under the data key over the key id and the binding (one key, one binding)."""
    message = KCV_LABEL + b"\x00" + key_id.encode() + b"\x00" + binding.aad()
    return hmac.new(bytes(data_key), message, hashlib.sha256).hexdigest()


def _share_check(key_id: str, index: int, binding: KeyBinding, share: bytes | bytearray) -> str:
    """Digest of one share, its index, its key id and the binding (length-prefixed, so unambiguous)."""
    bound = binding.aad()
    h = hashlib.sha256(CHECK_LABEL + b"\x00" + key_id.encode() + b"\x00" + index.to_bytes(2, "big"))
    h.update(len(bound).to_bytes(4, "big") + bound)
    h.update(bytes(share))
    return h.hexdigest()


def _info(label: bytes, **fields: str | int) -> bytes:
    """HPKE info: a label plus the SHA-256 of the bound fields (keeps info at 59 bytes or less)."""
    return label + b"\x00" + hashlib.sha256(canonical_json(fields)).digest()


def _share_info(key_id: str, index: int, public_hex: str, binding: KeyBinding) -> bytes:
    return _info(SHARE_INFO, key_id=key_id, index=index, custodian=public_hex, binding=binding.aad().decode())


def _release_info(key_id: str, index: int, public_hex: str, binding: KeyBinding, context: bytes) -> bytes:
    return _info(
        RELEASE_INFO,
        key_id=key_id,
        index=index,
        custodian=public_hex,
        binding=binding.aad().decode(),
        context=context.hex(),
    )


def _require_reference(wrapped: Any) -> WrappedKey:
    """Quorum steps take the whole key reference: its binding is part of what every check authenticates."""
    if not isinstance(wrapped, WrappedKey):
        raise KeyBindingError(
            "a Shamir share is opened only with its key reference (WrappedKey), which carries the seal id and "
            f"model id it is bound to; got {type(wrapped).__name__}"
        )
    return wrapped


# -- the provider -----------------------------------------------------------------------------


class ShamirProvider:
    """Wraps data keys as k-of-n Shamir shares sealed to custodians; unwrapping needs k custodians.

    ``unwrap`` raises ``QuorumRequiredError`` unless the provider was built with custodian private keys
    (``local_custodian_keys``): then it runs the very same quorum path in-process (re-encrypt to an
    ephemeral host key, combine, verify). That mode is for tests and for an offline recovery ceremony
    where k custodians are present at one machine; production releases go through the custody service.
    """

    def __init__(
        self,
        custodians: Sequence[CustodianPublicKey],
        threshold: int,
        *,
        local_custodian_keys: Sequence[X25519PrivateKey] = (),
    ) -> None:
        if not 1 <= len(custodians) <= MAX_CUSTODIANS:
            raise KeyProviderError(f"a Shamir provider needs 1..{MAX_CUSTODIANS} custodians, got {len(custodians)}")
        if isinstance(threshold, bool) or not 1 <= threshold <= len(custodians):
            raise KeyProviderError(f"threshold must be between 1 and {len(custodians)} custodians, got {threshold}")
        hexes = [c.public_hex for c in custodians]
        if len(set(hexes)) != len(hexes):
            raise KeyProviderError("the same custodian public key is listed twice")
        self._custodians = tuple(custodians)
        self._threshold = threshold
        self._key_id = derive_key_id(threshold, hexes)
        known = set(hexes)
        for key in local_custodian_keys:
            if public_bytes(key.public_key()).hex() not in known:
                raise KeyProviderError("a local custodian private key does not belong to any listed custodian")
        self._local_keys = tuple(local_custodian_keys)

    @property
    def provider(self) -> str:
        return "shamir"

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def threshold(self) -> int:
        return self._threshold

    @property
    def custodians(self) -> tuple[CustodianPublicKey, ...]:
        return self._custodians

    def generate_data_key(self, binding: KeyBinding) -> tuple[bytearray, WrappedKey]:
        dek = bytearray(os.urandom(DATA_KEY_BYTES))
        try:
            return dek, self.wrap(dek, binding)
        except BaseException:
            wipe(dek)
            raise

    def wrap(self, data_key: bytes | bytearray, binding: KeyBinding) -> WrappedKey:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyProviderError(f"data keys are {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        check_binding(binding)
        n, k = len(self._custodians), self._threshold
        view = bytes(data_key)
        first = Shamir.split(k, n, view[:HALF])
        second = Shamir.split(k, n, view[HALF:])
        records: list[ShareRecord] = []
        for custodian, (x1, y1), (x2, y2) in zip(self._custodians, first, second, strict=True):
            if x1 != x2:  # pycryptodome numbers shares 1..n; both halves must share x
                raise KeyProviderError("Shamir split returned mismatched share indices")
            share = bytearray(y1 + y2)
            try:
                info = _share_info(self._key_id, x1, custodian.public_hex, binding)
                sealed = seal_to_host(custodian.public_key, share, info)
                check = _share_check(self._key_id, x1, binding, share)
            finally:
                wipe(share)
            records.append(ShareRecord(x1, custodian.name, custodian.public_hex, check, sealed))
        blob = ShamirBlob(self._key_id, k, _kcv(data_key, self._key_id, binding), tuple(records))
        return WrappedKey(self.provider, self._key_id, blob.to_bytes(), binding)

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        check_reference(self, wrapped)
        blob = ShamirBlob.parse(wrapped)
        if len(self._local_keys) < blob.threshold:
            raise QuorumRequiredError(
                f"data key under {self._key_id} is split {blob.threshold}-of-{len(blob.shares)} among custodians; "
                "it is released only through a custodian quorum (custodian_reencrypt_share + host_combine), "
                f"and this provider holds {len(self._local_keys)} custodian key(s)"
            )
        host = X25519PrivateKey.generate()
        context = b"strongroom/local-quorum/" + secrets.token_bytes(16)
        shares = [
            custodian_reencrypt_share(wrapped, key, host.public_key(), context, model_id=wrapped.binding.model_id)
            for key in self._local_keys[: blob.threshold]
        ]
        return host_combine(wrapped, shares, host, context)


# -- the quorum -------------------------------------------------------------------------------


def custodian_reencrypt_share(
    wrapped: WrappedKey,
    custodian_private_key: X25519PrivateKey,
    host_public_key: X25519PublicKey,
    context: bytes,
    *,
    model_id: str | None,
) -> ReencryptedShare:
    """As a custodian approving ``model_id``: open my share of ``wrapped`` and re-seal it to the host's key
    for one release. Refuses a reference bound to another model (``ModelMismatchError``) and one whose
    binding was edited (the share's HPKE info covers the binding, so it does not open: ``ShareError``)."""
    if not context:
        raise KeyProviderError("a release context (the release id) is required")
    binding = _require_reference(wrapped).binding
    if model_id != binding.model_id:
        raise ModelMismatchError(
            f"the custodian approves model {model_id}, but this key reference is bound to model "
            f"{binding.model_id} (seal {binding.seal_id}): refused"
        )
    blob = ShamirBlob.parse(wrapped)
    record = blob.share_for(custodian_private_key.public_key())
    try:
        share = open_as_host(
            custodian_private_key, record.sealed, _share_info(blob.key_id, record.index, record.public_hex, binding)
        )
    except HpkeError:
        raise ShareError(
            f"share {record.index} of {blob.key_id} ({record.custodian}) does not open with this custodian key "
            "and binding: tampered, or the reference's seal id or model id was changed"
        ) from None
    try:
        if len(share) != SHARE_BYTES or not hmac.compare_digest(
            _share_check(blob.key_id, record.index, binding, share), record.check
        ):
            raise ShareError(f"share {record.index} of {blob.key_id} ({record.custodian}) fails its check")
        sealed = seal_to_host(
            host_public_key, share, _release_info(blob.key_id, record.index, record.public_hex, binding, context)
        )
    finally:
        wipe(share)
    return ReencryptedShare(blob.key_id, record.index, record.public_hex, sealed)


def host_combine(
    wrapped: WrappedKey,
    shares: Sequence[ReencryptedShare],
    host_private_key: X25519PrivateKey,
    context: bytes,
) -> bytearray:
    """As the host: open k re-encrypted shares, check each, interpolate, verify the key-check value.

    Raises ``InsufficientSharesError`` for fewer than k distinct shares, ``ShareError`` naming the custodian
    for a duplicated, foreign, unopenable or corrupted share, and ``ShareError`` if the result fails the
    key-check value. Shares, share checks and KCV all cover ``wrapped.binding``, so a reference whose seal
    id or model id was edited fails too. Uses the first k shares by index; extra ones are checked too.
    """
    binding = _require_reference(wrapped).binding
    blob = ShamirBlob.parse(wrapped)
    by_index: dict[int, ReencryptedShare] = {}
    for share in shares:
        if share.key_id != blob.key_id:
            raise ShareError(f"share {share.index} is for key {share.key_id}, not {blob.key_id}")
        if not 1 <= share.index <= len(blob.shares):
            raise ShareError(f"share index {share.index} is not a share of {blob.key_id}")
        record = blob.shares[share.index - 1]
        if not hmac.compare_digest(record.public_hex, share.custodian_public_hex):
            raise ShareError(f"share {share.index} of {blob.key_id} claims the wrong custodian key")
        if share.index in by_index:
            raise ShareError(f"share {share.index} of {blob.key_id} ({record.custodian}) was presented twice")
        by_index[share.index] = share
    if len(by_index) < blob.threshold:
        raise InsufficientSharesError(
            f"{blob.key_id} needs {blob.threshold} distinct custodian shares, got {len(by_index)}"
        )
    opened: list[tuple[int, bytearray]] = []
    try:
        for index in sorted(by_index):
            record = blob.shares[index - 1]
            info = _release_info(blob.key_id, index, record.public_hex, binding, context)
            try:
                value = open_as_host(host_private_key, by_index[index].sealed, info)
            except HpkeError:
                raise ShareError(
                    f"share {index} of {blob.key_id} ({record.custodian}) does not open with this host key, "
                    "release context and binding"
                ) from None
            opened.append((index, value))
            if len(value) != SHARE_BYTES or not hmac.compare_digest(
                _share_check(blob.key_id, index, binding, value), record.check
            ):
                raise ShareError(f"share {index} of {blob.key_id} ({record.custodian}) is corrupted")
        chosen = opened[: blob.threshold]
        first = Shamir.combine([(i, bytes(v[:HALF])) for i, v in chosen])
        second = Shamir.combine([(i, bytes(v[HALF:])) for i, v in chosen])
        data_key = bytearray(first + second)
    finally:
        for _, value in opened:
            wipe(value)
    if not hmac.compare_digest(_kcv(data_key, blob.key_id, binding), blob.kcv):
        wipe(data_key)
        raise ShareError(f"the key rebuilt from shares of {blob.key_id} fails the key-check value")
    return data_key
