"""The model id on the real model: one id for sealed and plain copies, committing to names and layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom.keys import LocalKeyring
from strongroom.manifest import build_manifest, manifest_of_plain, manifest_of_sealed
from strongroom.manifest.errors import MalformedHeaderError
from strongroom.manifest.model_id import merkle_root, model_id
from strongroom.manifest.records import Manifest
from strongroom.seal import SealedModel

from .conftest import copy_model, rewrite_header


def test_sealed_and_plain_copies_share_one_model_id(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    plain = build_manifest(model_dir)
    sealed = build_manifest(sealed_model, keyring)
    assert plain.model_id == sealed.model_id
    assert plain.model_id.startswith("blake3:") and len(plain.model_id) == 7 + 64
    assert len(plain.tensors) > 100
    assert plain.to_json() == sealed.to_json()
    with SealedModel.open(sealed_model, keyring) as model:
        assert manifest_of_sealed(model).model_id == manifest_of_plain(model_dir).model_id


def test_sha256_model_id_also_shared(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    plain = build_manifest(model_dir, algorithm="sha256", whole_files="sha256")
    sealed = build_manifest(sealed_model, keyring, algorithm="sha256", whole_files="sha256")
    assert plain.model_id.startswith("sha256:") and plain.model_id == sealed.model_id
    assert plain.whole_files == sealed.whole_files
    import hashlib

    assert (
        plain.whole_files["model.safetensors"]
        == hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    )


def test_manifest_json_round_trip_and_tamper(model_dir: Path) -> None:
    found = build_manifest(model_dir)
    raw = found.to_json()
    assert Manifest.from_json(raw).model_id == found.model_id
    raw["tensors"][0]["digest"] = "00" * 32
    with pytest.raises(Exception, match="not the root of its own records"):
        Manifest.from_json(raw)


def test_id_commits_to_names_and_header_bytes(model_dir: Path, tmp_path: Path) -> None:
    base = build_manifest(model_dir).model_id
    renamed = copy_model(model_dir, tmp_path / "renamed")
    (renamed / "vocab.txt").rename(renamed / "vocab2.txt")
    assert build_manifest(renamed).model_id != base
    reordered = copy_model(model_dir, tmp_path / "reordered")
    rewrite_header(reordered / "model.safetensors", lambda h: dict(reversed(list(h.items()))))
    after = build_manifest(reordered)
    assert after.model_id != base
    assert (
        after.files["model.safetensors"].canonical_header_digest
        == build_manifest(model_dir).files["model.safetensors"].canonical_header_digest
    )


def test_merkle_shape_and_empty_tree() -> None:
    import blake3

    assert merkle_root("blake3", []) == blake3.blake3(b"").digest()
    one = merkle_root("blake3", [b"a"])
    assert one == blake3.blake3(b"\x00a").digest()
    three = merkle_root("blake3", [b"a", b"b", b"c"])
    left = blake3.blake3(b"\x01" + blake3.blake3(b"\x00a").digest() + blake3.blake3(b"\x00b").digest()).digest()
    assert three == blake3.blake3(b"\x01" + left + blake3.blake3(b"\x00c").digest()).digest()
    assert model_id("blake3", [{"x": 1}, {"y": 2}]) == model_id("blake3", [{"y": 2}, {"x": 1}])


def test_duplicate_header_keys_are_refused(model_dir: Path, tmp_path: Path) -> None:
    bad = copy_model(model_dir, tmp_path / "dup")
    path = bad / "model.safetensors"
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = raw[8 : 8 + length].rstrip()
    assert header.endswith(b"}")
    dup = header[:-1] + b',"__metadata__":{"format":"pt"}}'
    dup = header[:1] + b'"__metadata__":{"format":"np"},' + dup[1:]
    dup += b" " * ((8 - len(dup) % 8) % 8)
    path.write_bytes(len(dup).to_bytes(8, "little") + dup + raw[8 + length :])
    with pytest.raises(MalformedHeaderError, match="duplicate key"):
        build_manifest(bad)
