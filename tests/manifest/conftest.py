"""Fixtures for model identity tests: signing keys, and helpers to copy and tamper with the real model."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from strongroom.signing import Signer

LAYER = "encoder.layer.2.attention.output.dense.weight"
DATA = Path(__file__).parent / "data" / "model-transparency"


@pytest.fixture(scope="session")
def signer_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM key pairs on disk: 'ecdsa' and 'ed25519' (trusted), 'other' (an unknown ECDSA signer)."""
    root = tmp_path_factory.mktemp("signers")
    out: dict[str, Path] = {}
    for name, kind in (("ecdsa", "ecdsa-p256"), ("ed25519", "ed25519"), ("other", "ecdsa-p256")):
        Signer.generate(kind).save(root / f"{name}.key", root / f"{name}.pub")  # type: ignore[arg-type]
        out[name] = root / name
    return out


def copy_model(src: Path, target: Path) -> Path:
    shutil.copytree(src, target, symlinks=True)
    return target


def nudged_copy(model_dir: Path, target: Path, delta: float = 1e-3) -> Path:
    copy_model(model_dir, target)
    tensors = load_file(target / "model.safetensors")
    tensors[LAYER] = (tensors[LAYER] + np.float32(delta)).astype(np.float32)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def rewrite_header(path: Path, edit: object) -> None:
    """Rewrite a safetensors file's JSON header through ``edit(dict) -> dict``, keeping the data bytes."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    new = json.dumps(edit(header)).encode()  # type: ignore[operator]
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + length :])
