"""The sealed file format: segmented AES-256-GCM (Tink AES-GCM-HKDF), random access, loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.seal.directory import SealedModel, seal_path
from strongroom.seal.errors import (
    DigestMismatchError,
    FileIdentityError,
    NotSafetensorsError,
    SealedDirectoryError,
    SealedFormatError,
    SealError,
    SegmentAuthError,
    TrailingDataError,
    TruncatedError,
    WrongKeyError,
)
from strongroom.seal.reader import SealedFile
from strongroom.seal.tensors import Framework, SealedSafetensors


def open_sealed(path: str | Path, provider: KeyProvider) -> SealedSafetensors:
    """Open one sealed safetensors file (standalone, or a member of a sealed directory)."""
    sealed = SealedFile(Path(path))
    try:
        data_key = provider.unwrap(sealed.header.key)
        try:
            sealed.unlock(data_key)
        finally:
            from strongroom.memory import wipe

            wipe(data_key)
        return SealedSafetensors(sealed)
    except BaseException:
        sealed.close()
        raise


def seal_blob(data: bytes | bytearray | memoryview, dst: str | Path, provider: KeyProvider, *, name: str) -> str:
    """Seal in-memory bytes into one standalone sealed file under a fresh data key; returns the seal id.

    For small secrets produced in memory (transcripts, summaries, manifests): no plaintext touches disk.
    The seal id is drawn first and the key is bound to it, with no model id (this is not a model).
    """
    import secrets

    from strongroom.keys.provider import KeyBinding
    from strongroom.memory import wipe
    from strongroom.seal.writer import seal_bytes

    seal_id = secrets.token_hex(16)
    data_key, wrapped = provider.generate_data_key(KeyBinding(seal_id, None))
    try:
        seal_bytes(data, Path(dst), name=name, seal_id=seal_id, data_key=data_key, wrapped=wrapped)
        return seal_id
    finally:
        wipe(data_key)


def open_blob(path: str | Path, provider: KeyProvider) -> bytes:
    """Decrypt a whole standalone sealed file into memory (the counterpart of ``seal_blob``)."""
    from strongroom.memory import wipe

    with SealedFile(Path(path)) as sealed:
        data_key = provider.unwrap(sealed.header.key)
        try:
            sealed.unlock(data_key)
        finally:
            wipe(data_key)
        return sealed.read(0, sealed.plaintext_length)


def load_model_dir(
    path: str | Path, provider: KeyProvider, framework: Framework = "numpy", device: str = "cpu"
) -> dict[str, Any]:
    """Every tensor of a sealed model directory as ``{name: array}``, decrypted only into memory."""
    with SealedModel.open(Path(path), provider) as model:
        return model.load_tensors(framework, device)


__all__ = [
    "DigestMismatchError",
    "FileIdentityError",
    "Framework",
    "NotSafetensorsError",
    "SealError",
    "SealedDirectoryError",
    "SealedFile",
    "SealedFormatError",
    "SealedModel",
    "SealedSafetensors",
    "SegmentAuthError",
    "TrailingDataError",
    "TruncatedError",
    "WrongKeyError",
    "load_model_dir",
    "open_blob",
    "open_sealed",
    "seal_blob",
    "seal_path",
]
