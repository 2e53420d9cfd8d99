"""One read pass, two digests: every span and the whole file digested from the same bytes, read once."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3
import pytest

from strongroom.keys import LocalKeyring
from strongroom.manifest import build_manifest
from strongroom.manifest.errors import ModelPathError
from strongroom.manifest.onepass import Span, hash_file_once

from .conftest import copy_model


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("window", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("with_helper", [False, True])
def test_spans_and_whole_file_match_direct_digests(tmp_path: Path, window: int, with_helper: bool) -> None:
    data = os.urandom(300_001)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    cuts = [(0, 8), (8, 8), (8, 1000), (1000, 150_000), (150_000, 150_000), (150_007, 300_001)]  # gap, empties
    spans = [Span(i, a, b) for i, (a, b) in enumerate(cuts)]
    with ThreadPoolExecutor(1) as helper:
        digests, whole = hash_file_once(
            path, "f.bin", len(data), spans, "blake3", "sha256", helper if with_helper else None, window=window
        )
    assert whole == hashlib.sha256(data).hexdigest()
    assert digests == {i: _b3(data[a:b]) for i, (a, b) in enumerate(cuts)}


def test_no_whole_file_digest_and_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    digests, whole = hash_file_once(tmp_path / "empty", "empty", 0, [Span("all", 0, 0)], "sha256", "blake3", None)
    assert digests == {"all": hashlib.sha256(b"").hexdigest()} and whole == _b3(b"")
    (tmp_path / "x").write_bytes(b"abc")
    digests, whole = hash_file_once(tmp_path / "x", "x", 3, [Span("all", 0, 3)], "blake3", None, None)
    assert digests == {"all": _b3(b"abc")} and whole is None


def test_a_file_that_changed_size_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    with pytest.raises(ModelPathError, match="changed while it was being hashed"):
        hash_file_once(path, "f.bin", 99, [Span("all", 0, 99)], "blake3", "sha256", None)
    with pytest.raises(ModelPathError, match="changed while it was being hashed"):
        hash_file_once(path, "f.bin", 101, [Span("all", 0, 101)], "blake3", "sha256", None)


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ModelPathError, match="cannot open"):
        hash_file_once(tmp_path / "link", "link", 3, [Span("all", 0, 3)], "blake3", "sha256", None)


def test_overlapping_spans_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abcdef")
    with pytest.raises(ValueError, match="overlapping"):
        hash_file_once(tmp_path / "f", "f", 6, [Span(1, 0, 4), Span(2, 3, 6)], "blake3", None, None)


@pytest.mark.parametrize("whole", ["sha256", "blake3"])
def test_manifest_with_whole_files_is_the_same_manifest(model_dir: Path, whole: str) -> None:
    """The one-pass build (sign, verify) and the manifest-only build agree on every record."""
    alone = build_manifest(model_dir)
    both = build_manifest(model_dir, whole_files=whole)
    assert both.model_id == alone.model_id
    assert both.to_json() == alone.to_json()
    assert both.whole_files_algorithm == whole and set(both.whole_files) == set(alone.files)
    for name, digest in both.whole_files.items():
        data = (model_dir / name).read_bytes()
        assert digest == (hashlib.sha256(data).hexdigest() if whole == "sha256" else _b3(data))


def test_sealed_and_plain_give_the_same_sha256_resources(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, tmp_path: Path
) -> None:
    """A sealed directory's resources are its plaintext's: one signature fits both copies."""
    plain = build_manifest(copy_model(model_dir, tmp_path / "plain"), whole_files="sha256")
    sealed = build_manifest(sealed_model, keyring, whole_files="sha256")
    assert sealed.model_id == plain.model_id and sealed.whole_files == plain.whole_files
