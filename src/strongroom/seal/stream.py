"""Segmented AES-256-GCM in Tink's AES-GCM-HKDF streaming construction (byte-compatible with Tink).

Stream = header || segment_0 || segment_1 || ... where

* header = header_length (1 byte, = 40) || salt (32 bytes) || nonce_prefix (7 bytes);
* the segment key is HKDF-SHA256(ikm=data key, salt=salt, info=associated data, length=32);
* segment i is AES-256-GCM(segment key, nonce_prefix || uint32_be(i) || last_flag, no AAD);
* every ciphertext segment is ``segment_size`` bytes except the first, which is shorter by the header,
  and the last, which may be short. The plaintext of segment 0 is segment_size - 40 - 16 bytes, of the
  others segment_size - 16. An empty plaintext is one empty last segment.

Because the nonce binds the index and the last-segment flag, reordering, truncation and splicing fail
authentication, and any byte range can be decrypted on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
SALT_BYTES = KEY_BYTES
NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16
HEADER_BYTES = 1 + SALT_BYTES + NONCE_PREFIX_BYTES
MIN_SEGMENT_SIZE = HEADER_BYTES + TAG_BYTES + 1 + 64
MAX_SEGMENTS = 2**32
DEFAULT_SEGMENT_SIZE = 1 << 20


@dataclass(frozen=True)
class StreamLayout:
    """Where each segment's plaintext and ciphertext lie, for a given segment size and plaintext length."""

    segment_size: int
    plaintext_length: int

    def __post_init__(self) -> None:
        if self.segment_size < MIN_SEGMENT_SIZE or self.segment_size > 1 << 30:
            raise ValueError(f"segment size {self.segment_size} outside [{MIN_SEGMENT_SIZE}, 2^30]")
        if self.plaintext_length < 0:
            raise ValueError("plaintext length must not be negative")
        if self.segment_count > MAX_SEGMENTS:
            raise ValueError("plaintext too long for 2^32 segments")

    @property
    def first_plaintext(self) -> int:
        return self.segment_size - HEADER_BYTES - TAG_BYTES

    @property
    def plaintext_per_segment(self) -> int:
        return self.segment_size - TAG_BYTES

    @property
    def segment_count(self) -> int:
        rest = self.plaintext_length - self.first_plaintext
        if rest <= 0:
            return 1
        return 1 + -(-rest // self.plaintext_per_segment)

    @property
    def ciphertext_length(self) -> int:
        """Length of the whole stream, header included."""
        return HEADER_BYTES + self.plaintext_length + self.segment_count * TAG_BYTES

    def plaintext_start(self, index: int) -> int:
        if index == 0:
            return 0
        return self.first_plaintext + (index - 1) * self.plaintext_per_segment

    def plaintext_range(self, index: int) -> tuple[int, int]:
        start = self.plaintext_start(index)
        size = self.first_plaintext if index == 0 else self.plaintext_per_segment
        return start, min(start + size, self.plaintext_length)

    def ciphertext_start(self, index: int) -> int:
        """Offset of segment ``index`` from the start of the stream (its header included)."""
        return HEADER_BYTES if index == 0 else index * self.segment_size

    def segment_of(self, plaintext_offset: int) -> int:
        """Index of the segment holding plaintext byte ``plaintext_offset``."""
        if plaintext_offset < self.first_plaintext:
            return 0
        return 1 + (plaintext_offset - self.first_plaintext) // self.plaintext_per_segment


def new_stream_header() -> bytes:
    """A fresh header: length byte, random salt, random nonce prefix."""
    return bytes([HEADER_BYTES]) + os.urandom(SALT_BYTES + NONCE_PREFIX_BYTES)


def parse_stream_header(header: bytes) -> tuple[bytes, bytes]:
    """Split a stream header into (salt, nonce prefix); raises ValueError if malformed."""
    if len(header) != HEADER_BYTES or header[0] != HEADER_BYTES:
        raise ValueError("stream header has the wrong length byte")
    return header[1 : 1 + SALT_BYTES], header[1 + SALT_BYTES :]


class SegmentCipher:
    """Encrypts and decrypts the segments of one stream; thread-safe (AESGCM releases the GIL)."""

    def __init__(self, data_key: bytes | bytearray, stream_header: bytes, associated_data: bytes) -> None:
        salt, self._prefix = parse_stream_header(stream_header)
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=associated_data)
        self._aead = AESGCM(hkdf.derive(bytes(data_key)))

    def nonce(self, index: int, last: bool) -> bytes:
        return self._prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")

    def encrypt_into(self, index: int, last: bool, plaintext: memoryview | bytes, out: memoryview) -> None:
        self._aead.encrypt_into(self.nonce(index, last), plaintext, None, out)

    def decrypt_into(self, index: int, last: bool, ciphertext: memoryview | bytes, out: memoryview) -> bool:
        """Decrypt one segment into ``out``; False if it fails authentication."""
        try:
            self._aead.decrypt_into(self.nonce(index, last), ciphertext, None, out)
        except InvalidTag:
            return False
        return True
