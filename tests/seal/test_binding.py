"""Sealed files and directories carry the key binding; editing it in SEALED.json or a header is caught."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from strongroom.canonical_json import canonical_json
from strongroom.keys import KeyBinding, KeyBindingError, LocalKeyring, UnwrapError
from strongroom.manifest.build import manifest_of_plain
from strongroom.manifest.errors import ModelPathError
from strongroom.manifest.sealing import seal_model
from strongroom.seal import (
    FileIdentityError,
    SealedFile,
    SealedFormatError,
    SealedModel,
    SealError,
    open_blob,
    open_sealed,
    seal_blob,
    seal_path,
)
from strongroom.seal.directory import INDEX_FILE
from strongroom.seal.header import PREFIX
from tests.seal.conftest import SMALL_SEGMENT

SHARD = "model-00001-of-00002.safetensors"
OTHER_MODEL = "sha256:" + "b2" * 32


@pytest.fixture
def sealed_dir(tmp_path: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> Path:
    out = tmp_path / "sealed"
    seal_model(checkpoint_dir, out, keyring, segment_size=SMALL_SEGMENT)
    return out


def _edit_index(root: Path, change: Any) -> None:
    """Rewrite SEALED.json canonically after ``change(index)``: a careful forger, not a broken file."""
    index = json.loads((root / INDEX_FILE).read_bytes())
    change(index)
    (root / INDEX_FILE).write_bytes(canonical_json(index) + b"\n")


def _edit_header(path: Path, change: Any) -> None:
    """Rewrite a sealed file's JSON header canonically after ``change(header)``, fixing the length field."""
    data = path.read_bytes()
    magic, version, length = PREFIX.unpack(data[: PREFIX.size])
    header = json.loads(data[PREFIX.size : PREFIX.size + length])
    change(header)
    body = canonical_json(header)
    path.write_bytes(struct.pack(">6sHI", magic, version, len(body)) + body + data[PREFIX.size + length :])


def test_index_and_headers_carry_the_binding(sealed_dir: Path, checkpoint_dir: Path) -> None:
    model_id = manifest_of_plain(checkpoint_dir).model_id
    index = json.loads((sealed_dir / INDEX_FILE).read_bytes())
    assert index["key"]["binding"] == {"seal_id": index["seal_id"], "model_id": model_id}
    model = SealedModel.inspect(sealed_dir)
    assert model.model_id == model_id and model.binding == KeyBinding(index["seal_id"], model_id)
    for entry in model.members():
        with SealedFile(sealed_dir / entry.sealed_name) as member:
            assert member.header.key == model.key


def test_seal_model_summary(tmp_path: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> None:
    summary = seal_model(checkpoint_dir, tmp_path / "out", keyring)
    assert summary["model_id"] == manifest_of_plain(checkpoint_dir).model_id
    assert summary["key"]["binding"] == {"seal_id": summary["seal_id"], "model_id": summary["model_id"]}
    with pytest.raises(ModelPathError, match="not a model directory"):
        seal_model(checkpoint_dir / SHARD, tmp_path / "one", keyring)
    with pytest.raises(SealError, match="already exists"):
        seal_model(checkpoint_dir, tmp_path / "out", keyring)


def test_model_id_edited_in_index_does_not_unwrap(sealed_dir: Path, keyring: LocalKeyring) -> None:
    """The insider's move: claim the sealed weights are another model. The key no longer unwraps."""
    _edit_index(sealed_dir, lambda i: i["key"]["binding"].update(model_id=OTHER_MODEL))
    assert SealedModel.inspect(sealed_dir).model_id == OTHER_MODEL  # what the file claims, unauthenticated
    with pytest.raises(UnwrapError):
        SealedModel.open(sealed_dir, keyring)


def test_model_id_removed_from_index_does_not_unwrap(sealed_dir: Path, keyring: LocalKeyring) -> None:
    _edit_index(sealed_dir, lambda i: i["key"]["binding"].pop("model_id"))
    with pytest.raises(UnwrapError):
        SealedModel.open(sealed_dir, keyring)


def test_binding_seal_id_must_match_the_index(sealed_dir: Path, keyring: LocalKeyring) -> None:
    _edit_index(sealed_dir, lambda i: i["key"]["binding"].update(seal_id="f" * 32))
    with pytest.raises(SealedFormatError, match="bound to seal id f{32}, but this is seal"):
        SealedModel.inspect(sealed_dir)


def test_seal_id_edited_consistently_does_not_unwrap(sealed_dir: Path, keyring: LocalKeyring) -> None:
    def both(index: dict[str, Any]) -> None:
        index["seal_id"] = "f" * 32
        index["key"]["binding"]["seal_id"] = "f" * 32

    _edit_index(sealed_dir, both)
    with pytest.raises(UnwrapError):
        SealedModel.open(sealed_dir, keyring)


@pytest.mark.parametrize("binding", [None, {}, {"seal_id": "x"}, {"seal_id": "0" * 32, "model_id": "md5:00"}])
def test_malformed_binding_in_index_is_a_format_error(sealed_dir: Path, binding: Any) -> None:
    _edit_index(sealed_dir, lambda i: i["key"].update(binding=binding))
    with pytest.raises(SealedFormatError, match="key binding"):
        SealedModel.inspect(sealed_dir)


def test_missing_binding_in_index_is_a_format_error(sealed_dir: Path) -> None:
    _edit_index(sealed_dir, lambda i: i["key"].pop("binding"))
    with pytest.raises(SealedFormatError, match="lacks field 'binding'"):
        SealedModel.inspect(sealed_dir)


def test_member_header_with_another_binding_refused(sealed_dir: Path, keyring: LocalKeyring) -> None:
    _edit_header(sealed_dir / (SHARD + ".sealed"), lambda h: h["key"]["binding"].update(model_id=OTHER_MODEL))
    with SealedModel.open(sealed_dir, keyring) as model:
        with pytest.raises(FileIdentityError, match="another key reference or binding"):
            model.open_file(SHARD)
        model.read_file("config.json")  # untouched members still open


def test_single_file_header_binding_edits(tmp_path: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> None:
    out = tmp_path / "one.sealed"
    summary = seal_path(checkpoint_dir / SHARD, out, keyring, model_id=OTHER_MODEL, segment_size=SMALL_SEGMENT)
    assert SealedFile(out).header.key.binding == KeyBinding(summary["seal_id"], OTHER_MODEL)
    open_sealed(out, keyring).close()

    model_edit = tmp_path / "model-edit.sealed"
    model_edit.write_bytes(out.read_bytes())
    _edit_header(model_edit, lambda h: h["key"]["binding"].update(model_id="blake3:" + "0" * 64))
    with pytest.raises(UnwrapError):
        open_sealed(model_edit, keyring)

    seal_edit = tmp_path / "seal-edit.sealed"
    seal_edit.write_bytes(out.read_bytes())
    _edit_header(seal_edit, lambda h: h["key"]["binding"].update(seal_id="0" * 32))
    with pytest.raises(SealedFormatError, match="bound to seal id 0{32}"):
        open_sealed(seal_edit, keyring)


def test_seal_blob_binds_its_seal_id_and_no_model(tmp_path: Path, keyring: LocalKeyring) -> None:
    seal_id = seal_blob(b"a transcript", tmp_path / "t.sealed", keyring, name="t.txt")
    with SealedFile(tmp_path / "t.sealed") as sealed:
        assert sealed.header.key.binding == KeyBinding(seal_id, None)
    assert open_blob(tmp_path / "t.sealed", keyring) == b"a transcript"


def test_bad_model_id_writes_nothing(tmp_path: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> None:
    with pytest.raises(KeyBindingError, match="model_id"):
        seal_path(checkpoint_dir, tmp_path / "out", keyring, model_id="not-a-model-id")
    assert not (tmp_path / "out").exists()
