"""Model identity on the real model: shared by sealed and plain copies, verified while loading, diffed."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from strongroom.keys import LocalKeyring
from strongroom.manifest import ManifestError, VerificationError, load_verified, manifest_of_plain, manifest_of_sealed
from strongroom.manifest.verify_load import first_difference
from strongroom.seal import SealedModel, seal_path

SRC = str(Path(__file__).parents[2] / "src")
LAYER = "encoder.layer.2.attention.output.dense.weight"


def copy_model(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target)
    return target


def nudged_copy(model_dir: Path, target: Path) -> Path:
    copy_model(model_dir, target)
    tensors = load_file(target / "model.safetensors")
    tensors[LAYER] = (tensors[LAYER] + np.float32(1e-3)).astype(np.float32)
    save_file(tensors, str(target / "model.safetensors"))
    return target


def test_sealed_and_plain_share_one_model_id(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    plain = manifest_of_plain(model_dir)
    with SealedModel.open(sealed_model, keyring) as model:
        sealed = manifest_of_sealed(model)
    assert plain.model_id == sealed.model_id and plain.model_id.startswith("blake3:")
    assert len(plain.tensors) == 104 and "model.safetensors" in plain.files


def test_verified_load_accepts_the_right_model(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    expected = manifest_of_plain(model_dir)
    verified = load_verified(sealed_model, keyring, expected_model_id=expected.model_id)
    reference = load_file(model_dir / "model.safetensors")
    assert all(np.array_equal(verified.tensors[k], v) for k, v in reference.items())


def test_verified_load_refuses_a_tampered_model_and_names_the_tensor(
    model_dir: Path, keyring: LocalKeyring, tmp_path: Path
) -> None:
    expected = manifest_of_plain(model_dir)
    sealed = tmp_path / "sealed"
    seal_path(nudged_copy(model_dir, tmp_path / "nudged"), sealed, keyring)
    with pytest.raises(VerificationError, match=rf"tensor '{LAYER}' differs\); nothing was loaded"):
        load_verified(sealed, keyring, expected_model_id=expected.model_id, expected=expected)


def test_diff_reports_exactly_the_nudged_layer(model_dir: Path, tmp_path: Path) -> None:
    nudged = nudged_copy(model_dir, tmp_path / "nudged")
    result = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "diff", str(model_dir), str(nudged), "--json"],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    changed = report["tensors"]["changed"]
    assert [c["tensor"] for c in changed] == [LAYER]
    assert changed[0]["elements_changed"] == changed[0]["elements"] == 384 * 384
    assert 1e-3 < changed[0]["relative_l2"] < 1e-1
    assert report["tensors"]["added"] == report["tensors"]["removed"] == []
    assert report["files"]["changed"] == ["model.safetensors"]


def test_renamed_tensor_and_reordered_header(model_dir: Path, tmp_path: Path) -> None:
    original = manifest_of_plain(model_dir)
    renamed = copy_model(model_dir, tmp_path / "renamed")
    tensors = load_file(renamed / "model.safetensors")
    tensors["encoder.layer.2.renamed"] = tensors.pop(LAYER)
    save_file(tensors, str(renamed / "model.safetensors"))
    assert "tensor '" + LAYER + "' is missing (renamed or removed)" in first_difference(
        original, manifest_of_plain(renamed)
    )

    reordered = copy_model(model_dir, tmp_path / "reordered")
    raw = (reordered / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    text = json.dumps(dict(reversed(list(header.items()))), separators=(",", ":")).encode()
    text += b" " * (length - len(text))
    assert len(text) == length
    (reordered / "model.safetensors").write_bytes(raw[:8] + text + raw[8 + length :])
    changed = manifest_of_plain(reordered)
    assert changed.model_id != original.model_id
    assert first_difference(original, changed) == (
        "file model.safetensors: header bytes differ while every tensor matches"
    )


def test_missing_extra_files_and_escaping_symlink(model_dir: Path, tmp_path: Path) -> None:
    original = manifest_of_plain(model_dir)
    copy = copy_model(model_dir, tmp_path / "copy")
    (copy / "vocab.txt").unlink()
    assert first_difference(original, manifest_of_plain(copy)) == "file vocab.txt is missing"
    (copy / "vocab.txt").write_bytes((model_dir / "vocab.txt").read_bytes())
    (copy / "extra.bin").write_bytes(b"payload")
    assert first_difference(original, manifest_of_plain(copy)) == "file extra.bin is not in the expected manifest"
    (copy / "extra.bin").unlink()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (copy / "link.txt").symlink_to(outside)
    with pytest.raises(ManifestError, match="points outside the model directory"):
        manifest_of_plain(copy)
