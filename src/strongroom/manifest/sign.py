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
from strongroom.manifest.digest import check_algorithm
from strongroom.manifest.dsse import make_bundle
from strongroom.manifest.errors import ModelPathError
from strongroom.manifest.statement import build_statement
from strongroom.manifest.walk import DEFAULT_IGNORED, SIGNATURE_FILE
from strongroom.signing import Signer

# What model-signing's CLI hashes resources with, whatever the statement says: the default interoperates.
DEFAULT_RESOURCE_ALGORITHM = "sha256"


@dataclass(frozen=True)
class SignResult:
    model_id: str
    signature: Path
    key_id: str
    files: int
    tensors: int
    resource_algorithm: str = DEFAULT_RESOURCE_ALGORITHM
    key_type: str = "ecdsa-p256"

    @property
    def reference_cli_verifiable(self) -> bool:
        """Whether ``model_signing verify key`` (default options) can check this signature: it hashes
        resources with SHA-256 only and knows elliptic-curve keys only."""
        return self.resource_algorithm == "sha256" and self.key_type.startswith("ecdsa-")

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "signature": str(self.signature),
            "key_id": self.key_id,
            "files": self.files,
            "tensors": self.tensors,
            "resource_algorithm": self.resource_algorithm,
            "reference_cli_verifiable": self.reference_cli_verifiable,
        }


def sign_model(
    path: Path,
    signer: Signer,
    provider: KeyProvider | None = None,
    *,
    algorithm: str = "blake3",
    resource_algorithm: str = DEFAULT_RESOURCE_ALGORITHM,
    progress: Progress | None = None,
) -> SignResult:
    """Write ``path/model.sig``: a Sigstore bundle whose DSSE envelope holds the signed statement.

    ``algorithm`` digests the records of Strongroom's manifest (the model id); ``resource_algorithm`` digests
    whole files for the OMS resources. SHA-256, the default, is what model-signing's CLI always computes, so
    ``model_signing verify key`` accepts the signature as it is; ``blake3`` signs faster but only verifiers
    that read the hash type from the statement (model-signing's library, Strongroom) accept it.
    """
    resource_algorithm = check_algorithm(resource_algorithm)
    path = Path(path)
    if not path.is_dir():
        raise ModelPathError(f"{path}: not a model directory")
    target = path / SIGNATURE_FILE
    if target.is_symlink():
        raise ModelPathError(f"{target}: is a symbolic link; refusing to write through it")
    manifest = build_manifest(path, provider, algorithm=algorithm, whole_files=resource_algorithm, progress=progress)
    name = path.resolve().name
    statement = build_statement(manifest, name, list(DEFAULT_IGNORED))
    bundle = make_bundle(canonical_json(statement), signer)
    write_atomic(target, json.dumps(bundle, indent=2).encode() + b"\n", mode=0o644)
    return SignResult(
        manifest.model_id, target, signer.key_id, len(manifest.files), len(manifest.tensors),
        resource_algorithm, signer.key_type,
    )  # fmt: skip
