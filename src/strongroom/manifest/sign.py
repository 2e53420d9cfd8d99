"""Sign a model directory (plain or sealed): build its manifest, wrap it in an OMS statement, write model.sig."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.atomic import write_atomic
from strongroom.canonical_json import canonical_json
from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import Progress, build_manifest
from strongroom.manifest.dsse import make_bundle
from strongroom.manifest.errors import ModelPathError
from strongroom.manifest.statement import build_statement
from strongroom.manifest.walk import DEFAULT_IGNORED, SIGNATURE_FILE
from strongroom.signing import Signer


@dataclass(frozen=True)
class SignResult:
    model_id: str
    signature: Path
    key_id: str
    files: int
    tensors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "signature": str(self.signature),
            "key_id": self.key_id,
            "files": self.files,
            "tensors": self.tensors,
        }


def sign_model(
    path: Path,
    signer: Signer,
    provider: KeyProvider | None = None,
    *,
    algorithm: str = "blake3",
    resource_algorithm: str | None = None,
    progress: Progress | None = None,
) -> SignResult:
    """Write ``path/model.sig``: a Sigstore bundle whose DSSE envelope holds the signed statement.

    ``resource_algorithm`` (default: ``algorithm``) digests whole files for the OMS resources; use
    ``sha256`` for OMS verifiers that know nothing else.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelPathError(f"{path}: not a model directory")
    target = path / SIGNATURE_FILE
    if target.is_symlink():
        raise ModelPathError(f"{target}: is a symbolic link; refusing to write through it")
    manifest = build_manifest(
        path, provider, algorithm=algorithm, whole_files=resource_algorithm or algorithm, progress=progress
    )
    name = path.resolve().name
    statement = build_statement(manifest, name, list(DEFAULT_IGNORED))
    bundle = make_bundle(canonical_json(statement), signer)
    write_atomic(target, json.dumps(bundle, indent=2).encode() + b"\n", mode=0o644)
    return SignResult(manifest.model_id, target, signer.key_id, len(manifest.files), len(manifest.tensors))
