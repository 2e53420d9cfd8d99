"""Errors of model identity: each names the file, tensor or signature at fault."""

from __future__ import annotations

from dataclasses import dataclass

from strongroom.errors import StrongroomError


class ManifestError(StrongroomError):
    """Base class for manifest, signature and verification errors."""


class ModelPathError(ManifestError):
    """The model path is missing, not a directory, or holds something that is not a regular file."""


class SymlinkEscapeError(ModelPathError):
    """A symbolic link inside the model directory points outside it."""


class SymlinkNotAllowedError(ModelPathError):
    """A symbolic link inside the model directory (signed models hold regular files only)."""


class MalformedHeaderError(ManifestError):
    """A safetensors header is not well formed (duplicate keys, bad JSON, bad offsets)."""


class UnsupportedAlgorithmError(ManifestError):
    """A digest algorithm Strongroom does not compute."""


class UnsignedModelError(ManifestError):
    """No signature file beside the model."""


class MalformedSignatureError(ManifestError):
    """The signature file is not a Sigstore bundle holding a DSSE envelope with an in-toto statement."""


class UnknownSignerError(ManifestError):
    """The signature names or was made by a key other than the trusted one."""


class SignatureInvalidError(ManifestError):
    """The signature bytes do not verify for the trusted key (forged or altered statement)."""


@dataclass(frozen=True)
class Failure:
    """One reason a model does not match its signed manifest: kind, where (file or file:tensor), message."""

    kind: str
    where: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "where": self.where, "message": self.message}


class VerificationError(ManifestError):
    """The model's bytes do not match the signed (or expected) manifest; ``failures`` lists every mismatch."""

    def __init__(self, message: str, failures: list[Failure] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class WrongModelError(VerificationError):
    """The signature or expected id belongs to another model: almost nothing matches."""


class MissingFileError(VerificationError):
    """A signed file is absent."""


class ExtraFileError(VerificationError):
    """A file the signature does not cover."""


class FileDigestMismatchError(VerificationError):
    """A file's bytes differ from the signed digest."""


class HeaderLayoutError(VerificationError):
    """A safetensors header's bytes differ although its canonical form and every tensor match."""


class HeaderMismatchError(VerificationError):
    """A safetensors header differs in content (metadata, offsets, dtypes or shapes)."""


class TensorRenamedError(VerificationError):
    """A tensor carries another name than the signed one, with identical dtype, shape and bytes."""


class MissingTensorError(VerificationError):
    """A signed tensor is absent."""


class ExtraTensorError(VerificationError):
    """A tensor the signature does not cover."""


class TensorDigestMismatchError(VerificationError):
    """A tensor's bytes (or dtype or shape) differ from the signed ones."""


class ModelIdMismatchError(VerificationError):
    """The model id computed from the bytes differs from the expected one."""


FAILURE_CLASSES: dict[str, type[VerificationError]] = {
    "wrong-model": WrongModelError,
    "missing-file": MissingFileError,
    "extra-file": ExtraFileError,
    "file-digest": FileDigestMismatchError,
    "header-layout": HeaderLayoutError,
    "header": HeaderMismatchError,
    "tensor-renamed": TensorRenamedError,
    "missing-tensor": MissingTensorError,
    "extra-tensor": ExtraTensorError,
    "tensor-digest": TensorDigestMismatchError,
    "model-id": ModelIdMismatchError,
}


def raise_failures(root: str, failures: list[Failure]) -> None:
    """Raise the typed error of the first failure (the list is ordered most specific first), if any."""
    if not failures:
        return
    first = failures[0]
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    cls = FAILURE_CLASSES.get(first.kind, VerificationError)
    raise cls(f"{root}: {first.where}: {first.message}{more}", failures)
