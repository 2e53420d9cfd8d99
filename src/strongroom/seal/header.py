"""The outer header of a sealed file: what is visible without a key, authenticated as the stream's AD.

Layout::

    magic    6 bytes  b"SRSEAL"
    version  2 bytes  big-endian, 1
    length   4 bytes  big-endian length of the JSON header
    header   RFC 8785 canonical JSON (fields below)
    stream   Tink AES-GCM-HKDF stream (strongroom.seal.stream) whose associated data is every byte above

The key commitment is HKDF-SHA256(ikm=data key, salt=seal id, info=COMMITMENT_INFO), so a file opens
under exactly one data key and a wrong key is reported before any segment is touched. The key reference's
binding must name the header's own seal id (its model id is authenticated by the key provider).
"""

from __future__ import annotations

import hmac
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

import blake3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.canonical_json import canonical_json
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.provider import WrappedKey
from strongroom.seal.errors import SealedFormatError, WrongKeyError
from strongroom.seal.stream import StreamLayout

MAGIC = b"SRSEAL"
VERSION = 1
PREFIX = struct.Struct(">6sHI")
MAX_HEADER_BYTES = 1 << 20
FORMAT = "strongroom-sealed-file/v1"
SCHEME = "AES256_GCM_HKDF_SHA256"
COMMITMENT_INFO = b"strongroom/seal/v1/key-commitment"
DIGEST_INFO = b"strongroom/seal/v1/plaintext-digest"
CONTENT_TYPES = ("safetensors", "file")
_HEX = re.compile(r"^[0-9a-f]+$")
_DIGEST = re.compile(r"^blake3-keyed:[0-9a-f]{64}$")


def key_commitment(data_key: bytes | bytearray, seal_id: str) -> str:
    """The commitment to a data key for one seal id, as hex."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes.fromhex(seal_id), info=COMMITMENT_INFO)
    return hkdf.derive(bytes(data_key)).hex()


def plaintext_digest(data_key: bytes | bytearray, seal_id: str, data: memoryview | bytes) -> str:
    """BLAKE3 keyed by a key derived from the data key: only key holders can compute or check it.

    A plain digest in a header anyone can read would let an outsider confirm a guessed plaintext (a
    config file, a short transcript); keying it keeps the header free of that oracle.
    """
    hasher = plaintext_hasher(data_key, seal_id)
    hasher.update(data)
    return finish_digest(hasher)


def plaintext_hasher(data_key: bytes | bytearray, seal_id: str) -> blake3.blake3:
    """The keyed hasher of ``plaintext_digest``, for plaintext that arrives in pieces (a re-seal)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes.fromhex(seal_id), info=DIGEST_INFO)
    return blake3.blake3(key=hkdf.derive(bytes(data_key)), max_threads=blake3.blake3.AUTO)


def finish_digest(hasher: blake3.blake3) -> str:
    return "blake3-keyed:" + hasher.hexdigest()


@dataclass(frozen=True)
class SealedHeader:
    """Decoded outer header of one sealed file."""

    name: str
    seal_id: str
    key: WrappedKey
    segment_size: int
    plaintext_length: int
    plaintext_digest: str
    key_commitment: str
    content_type: str

    @property
    def layout(self) -> StreamLayout:
        return StreamLayout(self.segment_size, self.plaintext_length)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "seal_id": self.seal_id,
            "key": self.key.to_json(),
            "stream": {"scheme": SCHEME, "segment_size": self.segment_size},
            "plaintext_length": self.plaintext_length,
            "plaintext_digest": self.plaintext_digest,
            "key_commitment": self.key_commitment,
            "content_type": self.content_type,
        }

    def encode(self) -> bytes:
        """The exact prefix bytes written before the stream (and used as its associated data)."""
        body = canonical_json(self.to_json())
        return PREFIX.pack(MAGIC, VERSION, len(body)) + body

    def check_key(self, data_key: bytes | bytearray, file: str) -> None:
        """Raise WrongKeyError unless ``data_key`` is the one this header commits to."""
        if not hmac.compare_digest(key_commitment(data_key, self.seal_id), self.key_commitment):
            raise WrongKeyError(f"{file}: the data key does not match the file's key commitment")

    @classmethod
    def decode(cls, body: bytes, file: str) -> SealedHeader:
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SealedFormatError(f"{file}: sealed header is not valid JSON") from None
        if not isinstance(value, dict):
            raise SealedFormatError(f"{file}: sealed header is not a JSON object")

        def field(name: str, kind: type) -> Any:
            item = value.get(name)
            if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
                raise SealedFormatError(f"{file}: sealed header field {name!r} missing or of the wrong type")
            return item

        if field("format", str) != FORMAT:
            raise SealedFormatError(f"{file}: unsupported sealed format {value.get('format')!r}")
        stream = field("stream", dict)
        if stream.get("scheme") != SCHEME or not isinstance(stream.get("segment_size"), int):
            raise SealedFormatError(f"{file}: unsupported stream parameters {stream!r}")
        try:
            key = WrappedKey.from_json(value.get("key"))
        except KeyProviderError as exc:
            raise SealedFormatError(f"{file}: malformed key reference: {exc}") from None
        header = cls(
            name=field("name", str),
            seal_id=field("seal_id", str),
            key=key,
            segment_size=stream["segment_size"],
            plaintext_length=field("plaintext_length", int),
            plaintext_digest=field("plaintext_digest", str),
            key_commitment=field("key_commitment", str),
            content_type=field("content_type", str),
        )
        if not _HEX.match(header.seal_id) or len(header.seal_id) != 32:
            raise SealedFormatError(f"{file}: seal_id must be 32 hex digits")
        check_binding_matches(key, header.seal_id, file)
        if not _HEX.match(header.key_commitment) or len(header.key_commitment) != 64:
            raise SealedFormatError(f"{file}: key_commitment must be 64 hex digits")
        if not _DIGEST.match(header.plaintext_digest):
            raise SealedFormatError(f"{file}: plaintext_digest must be blake3-keyed:<64 hex>")
        if header.content_type not in CONTENT_TYPES:
            raise SealedFormatError(f"{file}: unknown content_type {header.content_type!r}")
        try:
            header.layout  # noqa: B018 - validates segment size and length
        except ValueError as exc:
            raise SealedFormatError(f"{file}: {exc}") from None
        if canonical_json(header.to_json()) != body:
            raise SealedFormatError(f"{file}: sealed header is not in canonical form or has unknown fields")
        return header


def check_binding_matches(key: WrappedKey, seal_id: str, file: str) -> None:
    """Refuse a key reference bound to another seal id than the file or index that carries it."""
    if key.binding.seal_id != seal_id:
        raise SealedFormatError(
            f"{file}: the data key is bound to seal id {key.binding.seal_id}, but this is seal {seal_id}"
        )


def split_prefix(prefix: bytes, file: str) -> int:
    """Check magic and version in the first 12 bytes; return the JSON header's length."""
    if len(prefix) < PREFIX.size:
        raise SealedFormatError(f"{file}: too short to be a sealed file")
    magic, version, length = PREFIX.unpack(prefix[: PREFIX.size])
    if magic != MAGIC:
        raise SealedFormatError(f"{file}: not a Strongroom sealed file (bad magic)")
    if version != VERSION:
        raise SealedFormatError(f"{file}: unsupported sealed format version {version}")
    if length == 0 or length > MAX_HEADER_BYTES:
        raise SealedFormatError(f"{file}: sealed header length {length} out of range")
    return int(length)
