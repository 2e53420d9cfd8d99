"""Which files and tensors differ between two copies of a model (plain or sealed), and by how much."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import build_manifest, is_sealed_dir
from strongroom.manifest.digest import MappedFile
from strongroom.manifest.records import Manifest, TensorRecord
from strongroom.seal.directory import SealedModel

ELEMENTS_PER_CHUNK = 1 << 22
RawReader = Callable[[TensorRecord], np.ndarray[Any, Any]]


@dataclass(frozen=True)
class TensorChange:
    """A tensor present in both models under one name whose bytes, dtype or shape differ."""

    file: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    elements: int
    elements_changed: int | None
    relative_l2: float | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "tensor": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "elements": self.elements,
            "elements_changed": self.elements_changed,
            "relative_l2": self.relative_l2,
            "note": self.note,
        }


@contextlib.contextmanager
def raw_reader(path: Path, provider: KeyProvider | None) -> Iterator[RawReader]:
    """``read(record) -> uint8 array`` of a tensor's stored bytes, from a plain or sealed model."""
    if is_sealed_dir(path):
        assert provider is not None
        with SealedModel.open(path, provider) as model:

            def read_sealed(record: TensorRecord) -> np.ndarray[Any, Any]:
                with model.safetensors(record.file) as st:
                    info = st.header.tensors[record.name]
                    out = np.empty(info.nbytes, dtype=np.uint8)
                    st.sealed.read_into(info.start, info.end, memoryview(out.data).cast("B"), threads=st.threads)
                    return out

            yield read_sealed
        return
    maps: dict[str, MappedFile] = {}
    try:

        def read_plain(record: TensorRecord) -> np.ndarray[Any, Any]:
            if record.file not in maps:
                maps[record.file] = MappedFile(path / record.file, str(path / record.file))
            mapped = maps[record.file]
            size = int.from_bytes(mapped.view[:8], "little")
            base = 8 + size
            return np.frombuffer(mapped.view, dtype=np.uint8, count=record.nbytes, offset=base + record.begin)

        yield read_plain
    finally:
        for mapped in maps.values():
            with contextlib.suppress(BufferError):
                mapped.close()


def _as_float(raw: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any] | None:
    """Elements as float64 (None for 8-bit floats numpy cannot read)."""
    plain = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I8": "i1", "U8": "u1", "I16": "<i2", "U16": "<u2",
             "I32": "<i4", "U32": "<u4", "I64": "<i8", "U64": "<u8", "BOOL": "u1"}  # fmt: skip
    if dtype in plain:
        return raw.view(plain[dtype]).astype(np.float64)
    if dtype == "BF16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return None


def tensor_change_stats(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], dtype: str) -> tuple[int, float | None]:
    """(elements whose stored bits differ, ||b - a|| / ||a||), in bounded chunks."""
    itemsize = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}
    size = itemsize.get(dtype, 1)
    step = ELEMENTS_PER_CHUNK * size
    changed = 0
    diff_sq = 0.0
    base_sq = 0.0
    floats = True
    for start in range(0, len(a), step):
        ca, cb = a[start : start + step], b[start : start + step]
        unit = {8: "<u8", 4: "<u4", 2: "<u2", 1: "u1"}[size]
        changed += int(np.count_nonzero(ca.view(unit) != cb.view(unit)))
        fa, fb = _as_float(ca, dtype), _as_float(cb, dtype)
        if fa is None or fb is None:
            floats = False
            continue
        diff_sq += float(np.dot(fb - fa, fb - fa))
        base_sq += float(np.dot(fa, fa))
    if not floats or not math.isfinite(diff_sq) or not math.isfinite(base_sq) or base_sq == 0.0:
        return changed, None
    return changed, math.sqrt(diff_sq / base_sq)


def diff_models(
    a: Path, b: Path, provider_a: KeyProvider | None = None, provider_b: KeyProvider | None = None
) -> dict[str, Any]:
    """Added, removed, renamed and changed files and tensors; changed tensors sorted by relative L2, largest
    first (tensors are matched by name across files, so re-sharding alone shows as file changes only)."""
    left = build_manifest(Path(a), provider_a)
    right = build_manifest(Path(b), provider_b)
    with raw_reader(Path(a), provider_a) as read_a, raw_reader(Path(b), provider_b) as read_b:
        return diff_manifests(left, right, read_a, read_b)


def diff_manifests(
    left: Manifest, right: Manifest, read_a: RawReader | None = None, read_b: RawReader | None = None
) -> dict[str, Any]:
    """The diff report of two manifests; the readers give magnitudes for changed tensors."""
    ta, tb = left.tensors_by_name(), right.tensors_by_name()
    removed = {n: ta[n] for n in set(ta) - set(tb)}
    added = {n: tb[n] for n in set(tb) - set(ta)}
    renamed = []
    for name in sorted(removed):
        twin = next((n for n in sorted(added) if added[n].content_key == removed[name].content_key), None)
        if twin is not None:
            renamed.append({"from": name, "to": twin})
            del added[twin]
    for pair in renamed:
        del removed[pair["from"]]
    changes: list[TensorChange] = []
    for name in sorted(set(ta) & set(tb)):
        ra, rb = ta[name], tb[name]
        if ra.content_key == rb.content_key:
            continue
        elements = math.prod(rb.shape)
        if (ra.dtype, ra.shape) != (rb.dtype, rb.shape) or read_a is None or read_b is None:
            note = (
                f"{ra.dtype}{list(ra.shape)} -> {rb.dtype}{list(rb.shape)}"
                if ra.shape != rb.shape or (ra.dtype != rb.dtype)
                else ""
            )
            changes.append(TensorChange(rb.file, name, rb.dtype, rb.shape, elements, None, None, note))
            continue
        count, rel = tensor_change_stats(read_a(ra), read_b(rb), rb.dtype)
        note = "" if rel is not None else "no float magnitude for this dtype or a zero/non-finite norm"
        changes.append(TensorChange(rb.file, name, rb.dtype, rb.shape, elements, count, rel, note))
    changes.sort(key=lambda c: (-(c.relative_l2 if c.relative_l2 is not None else math.inf), c.file, c.name))
    changed_files = []
    for name in sorted(set(left.files) & set(right.files)):
        fa, fb = left.files[name], right.files[name]
        tensors_same = {k[1]: v.leaf() for k, v in left.tensors.items() if k[0] == name} == {
            k[1]: v.leaf() for k, v in right.tensors.items() if k[0] == name
        }
        if fa.leaf() == fb.leaf() and tensors_same:
            continue
        if fa.safetensors and fb.safetensors:
            if fa.canonical_header_digest == fb.canonical_header_digest and tensors_same:
                reason = "header bytes only (reordered or re-serialised; same tensors)"
            elif fa.canonical_header_digest == fb.canonical_header_digest:
                reason = "tensor bytes"
            else:
                reason = "header content" + ("" if tensors_same else " and tensors")
        else:
            reason = "content"
        changed_files.append({"name": name, "reason": reason})
    return {
        "model_id_a": left.model_id,
        "model_id_b": right.model_id,
        "identical": left.model_id == right.model_id,
        "files": {
            "added": sorted(set(right.files) - set(left.files)),
            "removed": sorted(set(left.files) - set(right.files)),
            "changed": changed_files,
        },
        "tensors": {
            "added": sorted(added),
            "removed": sorted(removed),
            "renamed": renamed,
            "changed": [c.to_json() for c in changes],
        },
    }
