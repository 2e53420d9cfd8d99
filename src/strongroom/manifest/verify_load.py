"""Verify while loading: decrypt each sealed file once into memory, hash every tensor from that memory in
the same pass (window by window, while it is in cache), and return tensors only if every digest matches
the expected manifest (from a trusted signature) or model id. Nothing is read from disk twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import default_threads, sealed_extra_files
from strongroom.manifest.compare import compare_manifests
from strongroom.manifest.digest import check_algorithm, hash_view
from strongroom.manifest.errors import (
    ExtraFileError,
    Failure,
    ManifestError,
    ModelIdMismatchError,
    VerificationError,
    raise_failures,
)
from strongroom.manifest.records import FileRecord, Manifest, TensorRecord
from strongroom.manifest.safetensors_layout import read_header
from strongroom.manifest.sealed_hash import hash_sealed_tensors
from strongroom.manifest.walk import DEFAULT_IGNORED, is_ignored, list_files
from strongroom.seal.buffers import Prefaulter, owned_buffer
from strongroom.seal.directory import SealedModel
from strongroom.seal.safetensors_header import TensorInfo
from strongroom.seal.tensors import Framework, view_tensor
from strongroom.signing import Verifier


@dataclass
class VerifiedModel:
    """What a verified load produced: tensors, the manifest they match, the other files' bytes."""

    tensors: dict[str, Any]
    manifest: Manifest
    files: dict[str, bytes]


def first_difference(expected: Manifest, actual: Manifest) -> str:
    """One line naming the first file or tensor that differs (``records are identical`` if none)."""
    failures = compare_manifests(expected, actual)
    return f"{failures[0].where}: {failures[0].message}" if failures else "records are identical"


def _expected(
    sealed_dir: Path, expected_model_id: str | None, expected: Manifest | None, signer: Verifier | None
) -> tuple[str, Manifest | None]:
    if signer is not None:
        from strongroom.manifest.verify import verified_statement

        statement = verified_statement(sealed_dir, signer)
        if statement.extension is None:
            raise ManifestError(f"{sealed_dir}: the signature has no per-tensor manifest to verify a load against")
        expected = statement.extension
    if expected is not None:
        if expected_model_id is not None and expected_model_id != expected.model_id:
            raise ManifestError(f"expected model id {expected_model_id} is not the id of the expected manifest")
        return expected.algorithm, expected
    if expected_model_id is None:
        raise ManifestError("load_verified needs an expected model id, an expected manifest or a trusted signer")
    return check_algorithm(expected_model_id.partition(":")[0]), None


def load_verified(
    sealed_dir: Path,
    provider: KeyProvider,
    *,
    expected_model_id: str | None = None,
    expected: Manifest | None = None,
    signer: Verifier | None = None,
    framework: Framework = "numpy",
    device: str = "cpu",
    threads: int | None = None,
) -> VerifiedModel:
    """Every tensor of a sealed model, verified in the decrypting pass; raises before returning anything
    if a digest differs (naming the tensor when a manifest or signature gives per-tensor digests)."""
    sealed_dir = Path(sealed_dir)
    algorithm, expected = _expected(sealed_dir, expected_model_id, expected, signer)
    threads = threads or default_threads()
    list_files(sealed_dir)
    files: dict[str, FileRecord] = {}
    records: dict[tuple[str, str], TensorRecord] = {}
    buffers: dict[str, tuple[Any, int, TensorInfo]] = {}
    contents: dict[str, bytes] = {}
    with SealedModel.open(sealed_dir, provider) as model:
        extra = sealed_extra_files(sealed_dir, model, DEFAULT_IGNORED)
        if extra:
            raise ExtraFileError(
                f"{sealed_dir}: {extra[0]}: not part of the sealed model", [Failure("extra-file", n, "") for n in extra]
            )
        for entry in model.members():
            if is_ignored(entry.name, DEFAULT_IGNORED):
                continue
            with model.open_file(entry.name) as sealed:
                size = sealed.plaintext_length
                if entry.content_type != "safetensors":
                    data = sealed.read(0, size)
                    files[entry.name] = FileRecord(entry.name, size, algorithm, hash_view(algorithm, data))
                    contents[entry.name] = data
                    continue
                hd = read_header(sealed.read, size, f"{sealed_dir}:{entry.name}", algorithm)
                files[entry.name] = record = FileRecord(
                    entry.name, size, algorithm, None, True, hd.header.header_length,
                    hd.header_digest, hd.canonical_header_digest,
                )  # fmt: skip
                buffer = owned_buffer(size - hd.data_start)
                view = memoryview(buffer.data).cast("B")
                ordered = hd.tensors_in_order()
                digests = hash_sealed_tensors(
                    sealed,
                    ordered,
                    algorithm,
                    threads=threads,
                    out=view,
                    out_base=hd.data_start,
                    prefault=Prefaulter(buffer).populate,
                )
                for t in ordered:
                    if t.name in buffers:
                        raise VerificationError(f"{sealed_dir}: tensor {t.name!r} appears in two shards")
                    buffers[t.name] = (buffer, hd.data_start, t)
                    base = 8 + record.header_size
                    records[(entry.name, t.name)] = TensorRecord(
                        entry.name, t.name, t.dtype, tuple(t.shape), t.start - base, t.end - base,
                        algorithm, digests[t.name],
                    )  # fmt: skip
    actual = Manifest(check_algorithm(algorithm), files, records)
    if expected is not None:
        raise_failures(f"{sealed_dir} (nothing was loaded)", compare_manifests(expected, actual))
    if expected_model_id is not None and actual.model_id != expected_model_id:
        raise ModelIdMismatchError(
            f"{sealed_dir}: model id is {actual.model_id}, expected {expected_model_id}; nothing was loaded",
            [Failure("model-id", "model", f"model id is {actual.model_id}, expected {expected_model_id}")],
        )
    tensors = {
        name: view_tensor(buffer, base, info, framework, device, str(sealed_dir))
        for name, (buffer, base, info) in buffers.items()
    }
    return VerifiedModel(tensors, actual, contents)
