"""Helpers for sealed-format tests: small synthetic checkpoints and byte surgery on sealed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

SMALL_SEGMENT = 4096


def write_checkpoint(path: Path, seed: int = 0, tensors: int = 6, prefix: str = "layer") -> dict[str, np.ndarray]:
    """A safetensors file of mixed dtypes and sizes spanning many small segments."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    dtypes = [np.float32, np.float16, np.int64, np.int8, np.float64, np.uint8]
    for i in range(tensors):
        shape = (int(rng.integers(1, 40)), int(rng.integers(1, 70)))
        arrays[f"{prefix}.{i}.weight"] = (rng.standard_normal(shape) * 10).astype(dtypes[i % len(dtypes)])
    arrays[f"{prefix}.scalar"] = np.array(3.5, dtype=np.float32)
    arrays[f"{prefix}.empty"] = np.zeros((0, 4), dtype=np.float32)
    save_file(arrays, str(path))
    return arrays


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    """A small model directory: one safetensors shard pair, an index, a config."""
    src = tmp_path / "model"
    src.mkdir()
    write_checkpoint(src / "model-00001-of-00002.safetensors", seed=1)
    write_checkpoint(src / "model-00002-of-00002.safetensors", seed=2, tensors=5, prefix="head")
    (src / "config.json").write_text('{"model_type": "toy", "hidden_size": 8}')
    (src / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    return src
