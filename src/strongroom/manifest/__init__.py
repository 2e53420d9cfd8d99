"""Model identity: per-file and per-tensor digests, the model id, verify-while-loading, diff."""

from strongroom.manifest.build import Manifest, manifest_of_plain, manifest_of_sealed
from strongroom.manifest.errors import ManifestError, VerificationError
from strongroom.manifest.verify_load import load_verified

__all__ = ["Manifest", "ManifestError", "VerificationError", "load_verified", "manifest_of_plain", "manifest_of_sealed"]
