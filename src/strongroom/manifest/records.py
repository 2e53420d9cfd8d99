"""What a manifest holds: one record per file, per safetensors header and per tensor, and the model id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strongroom.manifest.digest import Algorithm, check_algorithm
from strongroom.manifest.errors import MalformedSignatureError
from strongroom.manifest.model_id import model_id

MANIFEST_SCHEMA = "strongroom-manifest/v1"


@dataclass(frozen=True)
class FileRecord:
    """One file. For a safetensors file the identity is its header (raw and canonical) plus its tensors;
    ``digest`` (whole-file) is then optional, computed only where a peer format (OMS) needs it."""

    name: str
    size: int
    algorithm: str
    digest: str | None = None
    safetensors: bool = False
    header_size: int = 0
    header_digest: str = ""
    canonical_header_digest: str = ""

    def leaf(self) -> dict[str, Any]:
        if self.safetensors:
            return {
                "kind": "safetensors",
                "name": self.name,
                "size": self.size,
                "algorithm": self.algorithm,
                "header_size": self.header_size,
                "header_digest": self.header_digest,
                "canonical_header_digest": self.canonical_header_digest,
            }
        return {
            "kind": "file",
            "name": self.name,
            "size": self.size,
            "algorithm": self.algorithm,
            "digest": self.digest,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.leaf()
        if self.safetensors and self.digest is not None:
            out["digest"] = self.digest
        return out

    @classmethod
    def from_json(cls, raw: Any) -> FileRecord:
        try:
            kind = raw["kind"]
            if kind == "file":
                return cls(_s(raw["name"]), _i(raw["size"]), _s(raw["algorithm"]), _s(raw["digest"]))
            if kind == "safetensors":
                digest = raw.get("digest")
                return cls(
                    _s(raw["name"]),
                    _i(raw["size"]),
                    _s(raw["algorithm"]),
                    _s(digest) if digest is not None else None,
                    True,
                    _i(raw["header_size"]),
                    _s(raw["header_digest"]),
                    _s(raw["canonical_header_digest"]),
                )
        except (KeyError, TypeError, ValueError):
            pass
        raise MalformedSignatureError(f"malformed file record {str(raw)[:80]!r}")


@dataclass(frozen=True)
class TensorRecord:
    """One tensor: its file, name, dtype, shape, byte range (relative to the data section) and digest."""

    file: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int
    algorithm: str
    digest: str

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    def leaf(self) -> dict[str, Any]:
        return {
            "kind": "tensor",
            "file": self.file,
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "algorithm": self.algorithm,
            "digest": self.digest,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.leaf()
        out["data_offsets"] = [self.begin, self.end]
        return out

    @property
    def content_key(self) -> tuple[str, tuple[int, ...], str]:
        """What the tensor is, regardless of its name: dtype, shape, digest."""
        return (self.dtype, self.shape, self.digest)

    @classmethod
    def from_json(cls, raw: Any) -> TensorRecord:
        try:
            assert raw["kind"] == "tensor"
            shape = tuple(_i(d) for d in raw["shape"])
            begin, end = (_i(o) for o in raw["data_offsets"])
            return cls(
                _s(raw["file"]), _s(raw["name"]), _s(raw["dtype"]), shape, begin, end,
                _s(raw["algorithm"]), _s(raw["digest"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AssertionError):
            raise MalformedSignatureError(f"malformed tensor record {str(raw)[:80]!r}") from None


@dataclass
class Manifest:
    """Every file and tensor of one model with its digest, and the model id over them."""

    algorithm: Algorithm
    files: dict[str, FileRecord]
    tensors: dict[tuple[str, str], TensorRecord]
    # Whole-file digests in another algorithm (for OMS resources), name -> hex; empty unless asked for.
    whole_files: dict[str, str] = field(default_factory=dict)
    whole_files_algorithm: str | None = None

    def leaves(self) -> list[dict[str, Any]]:
        return [f.leaf() for f in self.files.values()] + [t.leaf() for t in self.tensors.values()]

    @property
    def model_id(self) -> str:
        return model_id(self.algorithm, self.leaves())

    def tensors_by_name(self) -> dict[str, TensorRecord]:
        return {t.name: t for t in self.tensors.values()}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "model_id": self.model_id,
            "algorithm": self.algorithm,
            "files": [f.to_json() for f in sorted(self.files.values(), key=lambda f: f.name)],
            "tensors": [self.tensors[k].to_json() for k in sorted(self.tensors)],
        }

    @classmethod
    def from_json(cls, raw: Any) -> Manifest:
        """Parse a manifest (e.g. the Strongroom extension of a signed statement); checks its model id."""
        if not isinstance(raw, dict) or raw.get("schema") != MANIFEST_SCHEMA:
            raise MalformedSignatureError(f"not a {MANIFEST_SCHEMA} manifest")
        try:
            algorithm = check_algorithm(raw["algorithm"])
            files = [FileRecord.from_json(f) for f in raw["files"]]
            tensors = [TensorRecord.from_json(t) for t in raw["tensors"]]
        except (KeyError, TypeError):
            raise MalformedSignatureError("manifest lacks algorithm, files or tensors") from None
        manifest = cls(algorithm, {f.name: f for f in files}, {(t.file, t.name): t for t in tensors})
        if len(manifest.files) != len(files) or len(manifest.tensors) != len(tensors):
            raise MalformedSignatureError("manifest lists a file or tensor twice")
        if any(r.algorithm != algorithm for r in files) or any(t.algorithm != algorithm for t in tensors):
            raise MalformedSignatureError("manifest mixes digest algorithms")
        if raw.get("model_id") != manifest.model_id:
            raise MalformedSignatureError(
                f"manifest model id {raw.get('model_id')!r} is not the root of its own records ({manifest.model_id})"
            )
        return manifest


def _s(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _i(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value
