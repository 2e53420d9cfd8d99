"""Manifests of plain or sealed model directories: per-file and per-tensor BLAKE3 digests and the model id.

Plain files are hashed through mmap in chunks (a 100 GB model never needs 100 GB of RAM) with BLAKE3's
multithreaded hasher; sealed files are decrypted into memory and hashed there, giving the same records,
so a sealed copy and its plaintext share one model id.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from strongroom.manifest.errors import ManifestError
from strongroom.manifest.model_id import model_id
from strongroom.seal.directory import INDEX_FILE, SealedModel
from strongroom.seal.errors import SealError
from strongroom.seal.safetensors_header import parse_safetensors_header

CHUNK = 64 << 20
SKIPPED_DIRS = {".git"}
SIGNATURE_FILES = {"model.sig", "strongroom.sig.json"}


@dataclass
class Manifest:
    """Every record of one model, and the id they hash to."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    tensors: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        return [*self.files.values(), *self.tensors.values()]

    @property
    def model_id(self) -> str:
        return model_id(self.records())

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "files": sorted(self.files.values(), key=lambda r: r["name"]),
            "tensors": sorted(self.tensors.values(), key=lambda r: (r["file"], r["name"])),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Manifest:
        try:
            manifest = cls(
                {r["name"]: r for r in value["files"]},
                {(r["file"], r["name"]): r for r in value["tensors"]},
            )
        except (KeyError, TypeError):
            raise ManifestError("manifest JSON lacks files or tensors records") from None
        if value.get("model_id") != manifest.model_id:
            raise ManifestError("manifest JSON's model_id does not match its records")
        return manifest


def _hash(view: memoryview | bytes) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    data = memoryview(view)
    for start in range(0, data.nbytes, CHUNK):
        hasher.update(data[start : start + CHUNK])
    return hasher.hexdigest()


def add_file(
    manifest: Manifest,
    name: str,
    data: memoryview | bytes | bytearray,
    tensor_hasher: Callable[[memoryview], str] = _hash,
) -> None:
    """Records for one file whose plaintext bytes are ``data`` (an mmap or a decrypted buffer).

    A safetensors file's record digests only its header bytes (``covers: "safetensors-header"``); its
    data is covered tensor by tensor, each record naming dtype, shape and byte offsets. Together they fix
    every byte of the file while hashing each byte once. Other files are digested whole.
    """
    view = memoryview(data).cast("B")
    if not name.endswith(".safetensors"):
        manifest.files[name] = {
            "kind": "file",
            "name": name,
            "size": view.nbytes,
            "covers": "content",
            "algorithm": "blake3",
            "digest": _hash(view),
        }
        return
    try:
        header = parse_safetensors_header(lambda a, b: bytes(view[a:b]), view.nbytes, name)
    except SealError as exc:
        raise ManifestError(str(exc)) from None
    manifest.files[name] = {
        "kind": "file",
        "name": name,
        "size": view.nbytes,
        "covers": "safetensors-header",
        "algorithm": "blake3",
        "digest": _hash(view[: header.data_start]),
    }
    for tensor in header.tensors.values():
        manifest.tensors[(name, tensor.name)] = {
            "kind": "tensor",
            "file": name,
            "name": tensor.name,
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "offsets": [tensor.start - header.data_start, tensor.end - header.data_start],
            "algorithm": "blake3",
            "digest": tensor_hasher(view[tensor.start : tensor.end]),
        }


def list_plain_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root``; a symlink that resolves outside the directory is an error."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a directory")
    real_root = root.resolve()
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for file in sorted(files):
            path = Path(dirpath) / file
            rel = path.relative_to(root).as_posix()
            if rel in SIGNATURE_FILES:
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                raise ManifestError(f"{path}: symbolic link points outside the model directory")
            if not path.is_file():
                raise ManifestError(f"{path}: not a regular file")
            found.append((rel, path))
    return found


def manifest_of_plain(root: Path, progress: Callable[[str], None] | None = None) -> Manifest:
    manifest = Manifest()
    for name, path in list_plain_files(root):
        if progress:
            progress(name)
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                add_file(manifest, name, b"")
                continue
            with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    add_file(manifest, name, view)
                finally:
                    view.release()
    return manifest


def manifest_of_sealed(model: SealedModel, progress: Callable[[str], None] | None = None) -> Manifest:
    """Decrypt each member into memory (one at a time) and describe it exactly as the plaintext would be."""
    manifest = Manifest()
    for entry in model.members():
        if entry.name in SIGNATURE_FILES:
            continue
        if progress:
            progress(entry.name)
        with model.open_file(entry.name) as sealed:
            buffer = bytearray(sealed.plaintext_length)
            sealed.read_into(0, sealed.plaintext_length, memoryview(buffer), threads=os.cpu_count() or 1)
        add_file(manifest, entry.name, buffer)
    return manifest


def is_sealed_dir(path: Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


def load_manifest_json(path: Path) -> Manifest:
    try:
        return Manifest.from_json(json.loads(Path(path).read_bytes()))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from None
