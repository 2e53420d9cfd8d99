"""Errors raised while sealing or opening sealed files; each names the file (and segment) at fault."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class SealError(StrongroomError):
    """Base class for sealed-format errors."""


class SealedFormatError(SealError):
    """The file is not a sealed file, or its outer header is malformed."""


class TruncatedError(SealError):
    """The sealed file is shorter than its authenticated header says."""


class TrailingDataError(SealError):
    """Bytes follow the last segment of a sealed file."""


class WrongKeyError(SealError):
    """The data key does not match the file's key commitment."""


class SegmentAuthError(SealError):
    """A segment failed authentication: tampered, truncated, reordered or spliced from another file."""

    def __init__(self, file: str, segment: int) -> None:
        super().__init__(
            f"{file}: segment {segment} failed authentication (tampered, reordered or spliced from another file)"
        )
        self.file = file
        self.segment = segment


class FileIdentityError(SealError):
    """A sealed file carries another file's name or another model version's seal id."""


class NotSafetensorsError(SealError):
    """The plaintext is not a well-formed safetensors file."""


class DigestMismatchError(SealError):
    """Decrypted bytes do not match the digest recorded for them."""


class SealedDirectoryError(SealError):
    """A sealed directory is missing, unreadable, incomplete or inconsistent."""
