"""Verify while loading: decrypt each sealed file once into memory, hash its tensors from that memory,
and return tensors only if the whole model matches the expected id (and, given a manifest, name the
first file or tensor that differs). No second read of the data from disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import Manifest, add_file
from strongroom.manifest.errors import VerificationError
from strongroom.seal.directory import SealedModel
from strongroom.seal.safetensors_header import parse_safetensors_header
from strongroom.seal.tensors import Framework, _aligned_empty, view_tensor


def _reader(view: memoryview) -> Callable[[int, int], bytes]:
    return lambda a, b: bytes(view[a:b])


def first_difference(expected: Manifest, actual: Manifest) -> str:
    """A one-line description of the first record that differs between two manifests."""
    for name in sorted(set(expected.files) | set(actual.files)):
        if name not in actual.files:
            return f"file {name} is missing"
        if name not in expected.files:
            return f"file {name} is not in the expected manifest"
    for key in sorted(set(expected.tensors) | set(actual.tensors)):
        file, tensor = key
        if key not in actual.tensors:
            return f"{file}: tensor {tensor!r} is missing (renamed or removed)"
        if key not in expected.tensors:
            return f"{file}: tensor {tensor!r} is not in the expected manifest"
        if expected.tensors[key] != actual.tensors[key]:
            return f"{file}: tensor {tensor!r} differs"
    for name in sorted(expected.files):
        if expected.files[name] != actual.files[name]:
            what = (
                "header bytes differ while every tensor matches"
                if actual.files[name]["covers"] == ("safetensors-header")
                else "content differs"
            )
            return f"file {name}: {what}"
    return "records are identical"


@dataclass
class VerifiedModel:
    """Everything a verified load produced: tensors, the manifest they match, the other files' bytes."""

    tensors: dict[str, Any]
    manifest: Manifest
    files: dict[str, bytes]


def load_verified(
    sealed_dir: Path,
    provider: KeyProvider,
    *,
    expected_model_id: str,
    expected: Manifest | None = None,
    framework: Framework = "numpy",
    device: str = "cpu",
) -> VerifiedModel:
    """Every tensor (and other file) of a sealed model, verified against ``expected_model_id`` in one pass."""
    manifest = Manifest()
    tensors: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    threads = os.cpu_count() or 1
    with SealedModel.open(Path(sealed_dir), provider) as model:
        for entry in model.members():
            with model.open_file(entry.name) as sealed:
                buffer = _aligned_empty(sealed.plaintext_length)
                view = memoryview(buffer.data).cast("B")
                sealed.read_into(0, sealed.plaintext_length, view, threads=threads)
            add_file(manifest, entry.name, view)
            if entry.content_type != "safetensors":
                files[entry.name] = bytes(view)
            else:
                header = parse_safetensors_header(_reader(view), view.nbytes, entry.name)
                for info in header.tensors.values():
                    if info.name in tensors:
                        raise VerificationError(f"{sealed_dir}: tensor {info.name!r} appears in two shards")
                    tensors[info.name] = (buffer, info)
    actual = manifest.model_id
    if actual != expected_model_id:
        detail = first_difference(expected, manifest) if expected is not None else "no manifest to compare"
        raise VerificationError(
            f"{sealed_dir}: model id is {actual}, expected {expected_model_id} ({detail}); nothing was loaded"
        )
    views = {
        name: view_tensor(buffer, 0, info, framework, device, str(sealed_dir))
        for name, (buffer, info) in tensors.items()
    }
    return VerifiedModel(views, manifest, files)
