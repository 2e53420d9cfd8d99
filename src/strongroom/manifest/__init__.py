"""Model identity: per-file and per-tensor digests, the model id, signing, verification, verify-while-loading, diff."""

from strongroom.manifest.build import build_manifest, is_sealed_dir, manifest_of_plain, manifest_of_sealed
from strongroom.manifest.diff import diff_models
from strongroom.manifest.errors import ManifestError, VerificationError
from strongroom.manifest.records import Manifest
from strongroom.manifest.sealing import seal_model
from strongroom.manifest.sign import sign_model
from strongroom.manifest.verify import verify_model
from strongroom.manifest.verify_load import VerifiedModel, load_verified

__all__ = [
    "Manifest",
    "ManifestError",
    "VerificationError",
    "VerifiedModel",
    "build_manifest",
    "diff_models",
    "is_sealed_dir",
    "load_verified",
    "manifest_of_plain",
    "manifest_of_sealed",
    "seal_model",
    "sign_model",
    "verify_model",
]
