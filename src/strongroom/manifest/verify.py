"""Verify a signed model directory (plain or sealed): the signature, then every file and tensor digest."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import Progress, build_manifest
from strongroom.manifest.compare import ORDER, compare_manifests, compare_resources
from strongroom.manifest.dsse import parse_bundle, verify_bundle
from strongroom.manifest.errors import (
    Failure,
    MalformedSignatureError,
    ModelPathError,
    UnsignedModelError,
    raise_failures,
)
from strongroom.manifest.statement import Statement, parse_statement
from strongroom.manifest.walk import DEFAULT_IGNORED, SIGNATURE_FILE, check_link
from strongroom.signing import Verifier

MAX_SIGNATURE_BYTES = 256 << 20


@dataclass(frozen=True)
class VerifyResult:
    """What a successful verification established."""

    model_id: str | None
    key_id: str
    files: int
    tensors: int
    format: str  # "strongroom" (OMS + per-tensor extension) or "oms" (model-signing, files only)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "model_id": self.model_id,
            "key_id": self.key_id,
            "files": self.files,
            "tensors": self.tensors,
            "format": self.format,
        }


def read_signature(path: Path, signature: Path | None = None) -> tuple[bytes, str]:
    """The signature file's bytes (never through a symbolic link), or UnsignedModelError."""
    target = Path(signature) if signature is not None else Path(path) / SIGNATURE_FILE
    where = str(target)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        raise UnsignedModelError(f"{path}: unsigned model (no {target.name} beside it)") from None
    if stat.S_ISLNK(info.st_mode):
        check_link(target, Path(path))
    if not stat.S_ISREG(info.st_mode):
        raise MalformedSignatureError(f"{where}: not a regular file")
    if info.st_size > MAX_SIGNATURE_BYTES:
        raise MalformedSignatureError(f"{where}: {info.st_size} bytes is too large for a signature")
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), where


def verified_statement(path: Path, verifier: Verifier, signature: Path | None = None) -> Statement:
    """Read, authenticate and parse the statement signed beside ``path``."""
    data, where = read_signature(path, signature)
    payload = verify_bundle(parse_bundle(data, where), verifier, where)
    return parse_statement(payload, where)


def verify_model(
    path: Path,
    verifier: Verifier,
    provider: KeyProvider | None = None,
    *,
    signature: Path | None = None,
    ignore_paths: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> VerifyResult:
    """Check the signature beside ``path`` and every digest it lists; raise the typed error of the first
    failure (its ``failures`` lists them all)."""
    path = Path(path)
    if path.is_symlink():
        check_link(path, path.parent)
    if not path.is_dir():
        raise ModelPathError(f"{path}: not a model directory")
    statement = verified_statement(path, verifier, signature)
    for extra in ignore_paths:
        pure = PurePosixPath(extra)
        if pure.is_absolute() or ".." in pure.parts:
            raise ModelPathError(f"{extra}: ignored paths must be relative to the model directory")
    ignored = tuple(dict.fromkeys([*DEFAULT_IGNORED, *statement.ignore_paths, *ignore_paths]))
    algorithm = statement.extension.algorithm if statement.extension else "blake3"
    actual = build_manifest(
        path, provider, algorithm=algorithm, whole_files=statement.hash_type, ignored=ignored, progress=progress
    )
    failures: list[Failure] = []
    if statement.extension is not None:
        failures.extend(compare_manifests(statement.extension, actual))
    failures.extend(compare_resources(statement.resources, actual.whole_files, statement.hash_type))
    unique = list({(f.kind, f.where): f for f in failures}.values())
    if any(f.kind == "wrong-model" for f in unique):
        unique = [f for f in unique if f.kind == "wrong-model"][:1]
    unique.sort(key=lambda f: ORDER.index(f.kind) if f.kind in ORDER else len(ORDER))
    raise_failures(str(path), unique)
    return VerifyResult(
        actual.model_id if statement.extension else None,
        verifier.key_id,
        len(actual.files),
        len(actual.tensors) if statement.extension else 0,
        "strongroom" if statement.extension else "oms",
    )
