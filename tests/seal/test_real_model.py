"""Sealing the real MiniLM model and loading it back is lossless."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from strongroom.keys import LocalKeyring
from strongroom.seal import SealedModel, load_model_dir, open_sealed


def test_sealed_tensors_are_bit_identical(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    reference = load_file(model_dir / "model.safetensors")
    loaded = load_model_dir(sealed_model, keyring)
    assert set(loaded) == set(reference)
    for name, array in reference.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert np.array_equal(loaded[name], array), name


def test_one_tensor_at_a_time(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    reference = load_file(model_dir / "model.safetensors")
    with open_sealed(sealed_model / "model.safetensors.sealed", keyring) as st:
        assert sorted(st.keys()) == sorted(reference)
        name = "encoder.layer.3.attention.self.query.weight"
        assert np.array_equal(st.get_tensor(name), reference[name])


def test_every_file_round_trips(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    with SealedModel.open(sealed_model, keyring) as model:
        names = sorted(e.name for e in model.members())
        expected = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
        assert names == expected
        for name in names:
            assert model.read_file(name) == (model_dir / name).read_bytes(), name
