"""Verify while loading: tensors come back only if every digest matches, checked in the decrypting pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from strongroom.keys import LocalKeyring
from strongroom.manifest import build_manifest, load_verified, sign_model
from strongroom.manifest.errors import ManifestError, ModelIdMismatchError, TensorDigestMismatchError
from strongroom.seal import seal_path
from strongroom.signing import Signer, Verifier

from .conftest import LAYER, copy_model, nudged_copy


def test_load_with_model_id_returns_exact_tensors(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    expected = build_manifest(model_dir).model_id
    loaded = load_verified(sealed_model, keyring, expected_model_id=expected)
    reference = load_file(model_dir / "model.safetensors")
    assert set(loaded.tensors) == set(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(loaded.tensors[name], value)
    assert loaded.manifest.model_id == expected
    assert "config.json" in loaded.files


def test_verified_load_prefaults_the_whole_owned_buffer(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verifying loader fills memory it owns and populates every byte of it just before decrypting."""
    from strongroom.seal import buffers

    covered: list[tuple[int, int]] = []
    real = buffers.Prefaulter.populate

    def spy(self: buffers.Prefaulter, start: int, end: int) -> None:
        covered.append((start, end))
        real(self, start, end)

    monkeypatch.setattr(buffers.Prefaulter, "populate", spy)
    loaded = load_verified(sealed_model, keyring, expected_model_id=build_manifest(model_dir).model_id)
    total = sum(int(np.asarray(v).nbytes) for v in loaded.tensors.values())
    merged = 0
    for lo, hi in sorted(covered):
        assert lo >= merged, "a range was populated twice"
        merged = hi
    assert merged == total and sum(hi - lo for lo, hi in covered) == total


def test_load_with_trusted_signer(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, signer_keys: dict[str, Path], tmp_path: Path
) -> None:
    sealed = copy_model(sealed_model, tmp_path / "sealed")
    sign_model(sealed, Signer.load(signer_keys["ed25519"].with_suffix(".key")), keyring)
    loaded = load_verified(sealed, keyring, signer=Verifier.load(signer_keys["ed25519"].with_suffix(".pub")))
    assert len(loaded.tensors) > 100


def test_tampered_model_is_refused_naming_the_tensor(
    model_dir: Path, keyring: LocalKeyring, signer_keys: dict[str, Path], tmp_path: Path
) -> None:
    original = copy_model(model_dir, tmp_path / "original")
    sign_model(original, Signer.load(signer_keys["ecdsa"].with_suffix(".key")))
    sealed = tmp_path / "sealed"
    seal_path(nudged_copy(model_dir, tmp_path / "nudged"), sealed, keyring)
    (sealed / "model.sig").write_bytes((original / "model.sig").read_bytes())
    with pytest.raises(TensorDigestMismatchError, match=f"model.safetensors:{LAYER}.*nothing was loaded|{LAYER}"):
        load_verified(sealed, keyring, signer=Verifier.load(signer_keys["ecdsa"].with_suffix(".pub")))
    with pytest.raises(ModelIdMismatchError, match="nothing was loaded"):
        load_verified(sealed, keyring, expected_model_id=build_manifest(model_dir).model_id)
    with pytest.raises(TensorDigestMismatchError, match=LAYER):
        load_verified(sealed, keyring, expected=build_manifest(model_dir))


def test_load_needs_something_to_verify_against(sealed_model: Path, keyring: LocalKeyring) -> None:
    with pytest.raises(ManifestError, match="needs an expected model id"):
        load_verified(sealed_model, keyring)
