"""Diff on the real model: a layer nudged by 1e-3 is reported as exactly that layer, with magnitudes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from strongroom.keys import LocalKeyring
from strongroom.manifest import diff_models

from .conftest import LAYER, copy_model, nudged_copy, rewrite_header

SRC = str(Path(__file__).parents[2] / "src")


def test_diff_reports_exactly_the_nudged_layer(model_dir: Path, tmp_path: Path) -> None:
    nudged = nudged_copy(model_dir, tmp_path / "nudged")
    report = diff_models(model_dir, nudged)
    assert not report["identical"]
    changed = report["tensors"]["changed"]
    assert [c["tensor"] for c in changed] == [LAYER]
    weight = load_file(model_dir / "model.safetensors")[LAYER].astype(np.float64)
    assert changed[0]["elements"] == weight.size
    after = load_file(nudged / "model.safetensors")[LAYER].astype(np.float64)
    assert changed[0]["elements_changed"] == int(np.count_nonzero(after != weight))
    expected = float(np.linalg.norm(after - weight) / np.linalg.norm(weight))
    assert math.isclose(changed[0]["relative_l2"], expected, rel_tol=1e-9)
    assert report["tensors"]["added"] == report["tensors"]["removed"] == []
    assert [f["name"] for f in report["files"]["changed"]] == ["model.safetensors"]


def test_diff_sealed_against_plain_and_renames(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, tmp_path: Path
) -> None:
    assert diff_models(model_dir, sealed_model, None, keyring)["identical"]
    renamed = copy_model(model_dir, tmp_path / "renamed")
    rewrite_header(
        renamed / "model.safetensors", lambda h: {("x.weight" if k == LAYER else k): v for k, v in h.items()}
    )
    report = diff_models(sealed_model, renamed, keyring, None)
    assert report["tensors"]["renamed"] == [{"from": LAYER, "to": "x.weight"}]
    assert report["tensors"]["changed"] == []


def test_diff_cli_json_and_exit_codes(model_dir: Path, tmp_path: Path) -> None:
    nudged = nudged_copy(model_dir, tmp_path / "nudged")
    env = {**os.environ, "PYTHONPATH": SRC}
    run = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "diff", str(model_dir), str(nudged), "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert [c["tensor"] for c in report["tensors"]["changed"]] == [LAYER]
    same = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "diff", str(model_dir), str(model_dir)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert same.returncode == 0 and "identical" in same.stdout
