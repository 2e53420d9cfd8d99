"""Which tensors and files differ between two copies of a model, and by how much."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from strongroom.manifest.build import Manifest


@dataclass(frozen=True)
class TensorChange:
    file: str
    name: str
    elements_changed: int | None
    elements: int
    relative_l2: float | None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "tensor": self.name,
            "elements_changed": self.elements_changed,
            "elements": self.elements,
            "relative_l2": self.relative_l2,
            "note": self.note,
        }


def diff_manifests(a: Manifest, b: Manifest, tensor_a: Any = None, tensor_b: Any = None) -> dict[str, Any]:
    """Added, removed and changed files and tensors; ``tensor_a/b(file, name) -> ndarray`` give magnitudes."""
    added_files = sorted(set(b.files) - set(a.files))
    removed_files = sorted(set(a.files) - set(b.files))
    changed_files = sorted(n for n in set(a.files) & set(b.files) if a.files[n] != b.files[n])
    added = sorted(f"{f}:{t}" for f, t in set(b.tensors) - set(a.tensors))
    removed = sorted(f"{f}:{t}" for f, t in set(a.tensors) - set(b.tensors))
    changes: list[TensorChange] = []
    for key in sorted(set(a.tensors) & set(b.tensors)):
        ra, rb = a.tensors[key], b.tensors[key]
        if ra["digest"] == rb["digest"] and ra["dtype"] == rb["dtype"] and ra["shape"] == rb["shape"]:
            continue
        elements = int(np.prod(rb["shape"])) if rb["shape"] else 1
        if ra["dtype"] != rb["dtype"] or ra["shape"] != rb["shape"] or tensor_a is None or tensor_b is None:
            note = "dtype or shape changed" if ra["shape"] != rb["shape"] or ra["dtype"] != rb["dtype"] else ""
            changes.append(TensorChange(key[0], key[1], None, elements, None, note))
            continue
        x = np.asarray(tensor_a(*key), dtype=np.float64)
        y = np.asarray(tensor_b(*key), dtype=np.float64)
        changed = int(np.count_nonzero(x != y))
        norm = float(np.linalg.norm(x))
        relative = float(np.linalg.norm(y - x) / norm) if norm else float(np.linalg.norm(y - x))
        changes.append(TensorChange(key[0], key[1], changed, elements, relative))
    changes.sort(key=lambda c: (-(c.relative_l2 or 0.0), c.file, c.name))
    return {
        "model_id_a": a.model_id,
        "model_id_b": b.model_id,
        "identical": a.model_id == b.model_id,
        "files": {"added": added_files, "removed": removed_files, "changed": changed_files},
        "tensors": {"added": added, "removed": removed, "changed": [c.to_json() for c in changes]},
    }
