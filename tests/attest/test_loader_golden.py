"""The loader measurement (exactly what it covers) and golden values."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from strongroom.attest.errors import AttestError, GoldenValuesError, PcrMismatchError, TpmFormatError
from strongroom.attest.golden import GoldenValues
from strongroom.attest.loader import loader_digest, loader_manifest, model_measurement
from strongroom.attest.pcrs import PcrLayout, extend_value


def test_manifest_covers_interpreter_and_package(package_copy: Path) -> None:
    files = loader_manifest(package_copy)
    labels = [f.label for f in files]
    assert labels == sorted(labels, key=str.encode)
    assert labels[0] == "interpreter"
    assert "strongroom/attest/loader.py" in labels and "strongroom/__init__.py" in labels
    assert not any("__pycache__" in label or label.endswith(".pyc") for label in labels)
    interpreter = next(f for f in files if f.label == "interpreter")
    assert interpreter.size == os.path.getsize(os.path.realpath(sys.executable))


def test_digest_changes_with_any_file_and_not_with_bytecode(package_copy: Path) -> None:
    before = loader_digest(package_copy)
    assert loader_digest(package_copy) == before
    cache = package_copy / "attest" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "x.cpython-311.pyc").write_bytes(b"bytecode")
    assert loader_digest(package_copy) == before
    (package_copy / "attest" / "extra_module.py").write_text("x = 1\n")
    try:
        assert loader_digest(package_copy) != before
    finally:
        (package_copy / "attest" / "extra_module.py").unlink()
    assert loader_digest(package_copy) == before


def test_model_measurement() -> None:
    one = model_measurement("blake3:" + "ab" * 32)
    assert len(one) == 32 and one != model_measurement("blake3:" + "ac" * 32)
    for bad in ("", "blake3:", "blake3:XYZ", "BLAKE3:" + "ab" * 32, "blake3:" + "ab" * 32 + "\n"):
        with pytest.raises(AttestError):
            model_measurement(bad)


def test_golden_values_json_and_checks() -> None:
    one, two = b"\x01" * 32, b"\x02" * 32
    golden = GoldenValues.for_loader("gpu-a", [one, two]).merged(GoldenValues({"cpu": {0: {one}, 23: {two}}}))
    assert GoldenValues.from_json(golden.to_json()) == golden
    golden.check("gpu-a", {23: extend_value(bytes(32), two), 16: bytes(32)})
    with pytest.raises(PcrMismatchError):
        golden.check("gpu-a", {23: two})
    with pytest.raises(PcrMismatchError, match="not covered"):
        golden.check("cpu", {23: two})
    with pytest.raises(GoldenValuesError, match="no golden values"):
        golden.check("other", {23: two})
    for bad in (
        b'{"version":1,"bank":"sha1","classes":{}}',
        b'{"version":1,"bank":"sha256","classes":{"Bad Class":{"23":["' + b"00" * 32 + b'"]}}}',
        b'{"version":1,"bank":"sha256","classes":{"c":{"23":[]}}}',
        b'{"version":1,"bank":"sha256","classes":{"c":{"24":["' + b"00" * 32 + b'"]}}}',
        b'{"version":1,"bank":"sha256","classes":{"c":{}}}',
        b"[]",
    ):
        with pytest.raises(GoldenValuesError):
            GoldenValues.from_json(bad)


def test_layout() -> None:
    assert PcrLayout().loader == 23 and PcrLayout().model == 16
    with pytest.raises(TpmFormatError):
        PcrLayout(loader=16, model=16)
