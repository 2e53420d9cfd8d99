"""Every way a sealed file or directory can be damaged gets a specific error naming the file or segment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from strongroom.errors import StrongroomError
from strongroom.keys import LocalKeyring, UnwrapError
from strongroom.seal import (
    FileIdentityError,
    NotSafetensorsError,
    SealedDirectoryError,
    SealedFile,
    SealedFormatError,
    SealedModel,
    SegmentAuthError,
    TrailingDataError,
    TruncatedError,
    WrongKeyError,
    load_model_dir,
    open_sealed,
    seal_path,
)
from strongroom.seal.stream import StreamLayout
from tests.conftest import TEST_SCRYPT_N
from tests.seal.conftest import SMALL_SEGMENT, write_checkpoint

SHARD = "model-00001-of-00002.safetensors"


@pytest.fixture
def sealed_dir(tmp_path: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> Path:
    out = tmp_path / "sealed"
    seal_path(checkpoint_dir, out, keyring, segment_size=SMALL_SEGMENT)
    return out


def _load_all(path: Path, keyring: LocalKeyring) -> None:
    with open_sealed(path, keyring) as st:
        st.load_all()


def _segment_bounds(sealed: Path, index: int) -> tuple[int, int]:
    with SealedFile(sealed) as f:
        layout: StreamLayout = f.layout
        lo, hi = layout.plaintext_range(index)
        start = f.stream_offset + layout.ciphertext_start(index)
        return start, start + (hi - lo) + 16


def test_wrong_keyring_is_refused_before_decryption(sealed_dir: Path, tmp_path: Path) -> None:
    other = LocalKeyring.init(tmp_path / "other", passphrase="granite orchid lantern thimble", scrypt_n=2**10)
    with pytest.raises(UnwrapError, match="wrapped by local:"):
        load_model_dir(sealed_dir, other)


def test_wrong_data_key_fails_the_key_commitment(sealed_dir: Path) -> None:
    with SealedFile(sealed_dir / (SHARD + ".sealed")) as f, pytest.raises(WrongKeyError, match=SHARD):
        f.unlock(bytearray(32))


def test_flipped_payload_bit_names_the_segment(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    start, _ = _segment_bounds(path, 2)
    data = bytearray(path.read_bytes())
    data[start + 100] ^= 0x10
    path.write_bytes(data)
    with pytest.raises(SegmentAuthError, match=rf"{SHARD}.sealed: segment 2 failed") as info:
        _load_all(path, keyring)
    assert info.value.segment == 2


def test_flipped_header_bit_is_caught(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    data = bytearray(path.read_bytes())
    position = data.index(b'"plaintext_digest":"blake3-keyed:') + 36
    data[position] = ord("0") if data[position] != ord("0") else ord("1")
    path.write_bytes(data)
    with pytest.raises(SegmentAuthError, match="segment 0"):
        _load_all(path, keyring)


def test_truncation_at_a_segment_boundary(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    _, end = _segment_bounds(path, 1)
    with open(path, "r+b") as handle:
        handle.truncate(end)
    with pytest.raises(TruncatedError, match="truncated"):
        _load_all(path, keyring)


def test_appended_bytes(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    with open(path, "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(TrailingDataError, match="1 unexpected bytes"):
        _load_all(path, keyring)


def test_swapped_segments(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    a0, a1 = _segment_bounds(path, 1)
    b0, b1 = _segment_bounds(path, 2)
    data = bytearray(path.read_bytes())
    data[a0:a1], data[b0:b1] = data[b0:b1], data[a0:a1]
    path.write_bytes(data)
    with pytest.raises(SegmentAuthError, match="segment 1"):
        _load_all(path, keyring)


def test_segment_spliced_from_another_file(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    donor = sealed_dir / "model-00002-of-00002.safetensors.sealed"
    a0, a1 = _segment_bounds(path, 1)
    d0, d1 = _segment_bounds(donor, 1)
    assert a1 - a0 == d1 - d0
    data = bytearray(path.read_bytes())
    data[a0:a1] = donor.read_bytes()[d0:d1]
    path.write_bytes(data)
    with pytest.raises(SegmentAuthError, match="segment 1"):
        _load_all(path, keyring)


def test_file_renamed_to_another_files_name(sealed_dir: Path, keyring: LocalKeyring) -> None:
    shutil.copyfile(sealed_dir / "model.safetensors.index.json.sealed", sealed_dir / "config.json.sealed")
    with SealedModel.open(sealed_dir, keyring) as model, pytest.raises(FileIdentityError, match="renamed"):
        model.read_file("config.json")


def test_file_from_another_model_version(
    sealed_dir: Path, checkpoint_dir: Path, keyring: LocalKeyring, tmp_path: Path
) -> None:
    second = tmp_path / "second"
    seal_path(checkpoint_dir, second, keyring, segment_size=SMALL_SEGMENT)
    shutil.copyfile(second / "config.json.sealed", sealed_dir / "config.json.sealed")
    with SealedModel.open(sealed_dir, keyring) as model, pytest.raises(FileIdentityError, match="another sealed"):
        model.read_file("config.json")


def test_edited_index_fails_authentication(sealed_dir: Path, keyring: LocalKeyring) -> None:
    index = json.loads((sealed_dir / "SEALED.json").read_text())
    index["files"] = [f for f in index["files"] if f["name"] != "config.json"]
    (sealed_dir / "SEALED.json").write_text(json.dumps(index))
    with pytest.raises(SealedDirectoryError, match="index authentication failed"):
        SealedModel.open(sealed_dir, keyring)


def test_missing_and_extra_members(sealed_dir: Path, keyring: LocalKeyring) -> None:
    (sealed_dir / "config.json.sealed").rename(sealed_dir / "stray.sealed")
    with pytest.raises(SealedDirectoryError, match=r"missing sealed file config\.json\.sealed"):
        SealedModel.open(sealed_dir, keyring)
    (sealed_dir / "stray.sealed").rename(sealed_dir / "config.json.sealed")
    shutil.copyfile(sealed_dir / "config.json.sealed", sealed_dir / "extra.sealed")
    with pytest.raises(SealedDirectoryError, match=r"unexpected sealed file extra\.sealed"):
        SealedModel.open(sealed_dir, keyring)


def test_not_a_sealed_file(tmp_path: Path, keyring: LocalKeyring) -> None:
    junk = tmp_path / "junk.sealed"
    junk.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(SealedFormatError, match="bad magic"):
        open_sealed(junk, keyring)


def test_non_safetensors_content(tmp_path: Path, sealed_dir: Path, keyring: LocalKeyring) -> None:
    fake = tmp_path / "src"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(NotSafetensorsError, match="model.safetensors: safetensors header is not valid JSON"):
        seal_path(fake, tmp_path / "out", keyring)
    assert not (tmp_path / "out").exists()
    with pytest.raises(NotSafetensorsError, match="not a safetensors file"):
        open_sealed(sealed_dir / "config.json.sealed", keyring)


def test_unknown_header_field_is_rejected(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / "config.json.sealed"
    data = path.read_bytes()
    length = int.from_bytes(data[8:12], "big")
    header = json.loads(data[12 : 12 + length])
    header["zzz"] = 1
    body = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    path.write_bytes(data[:8] + len(body).to_bytes(4, "big") + body + data[12 + length :])
    with pytest.raises(SealedFormatError, match="unknown fields"):
        SealedFile(path)


def test_any_single_bit_flip_is_an_error(tmp_path: Path, keyring: LocalKeyring) -> None:
    src = tmp_path / "w.safetensors"
    write_checkpoint(src, seed=5, tensors=2)
    sealed = tmp_path / "w.sealed"
    seal_path(src, sealed, keyring, segment_size=1024)
    original = sealed.read_bytes()
    rng = np.random.default_rng(0)
    positions = sorted({int(p) for p in rng.integers(0, len(original), 150)} | {0, 7, 11, 12, len(original) - 1})
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= 1 << int(rng.integers(0, 8))
        sealed.write_bytes(damaged)
        with pytest.raises(StrongroomError):
            _load_all(sealed, keyring)


def test_unreadable_directory_is_reported(tmp_path: Path, keyring: LocalKeyring) -> None:
    src = tmp_path / "model"
    (src / "private").mkdir(parents=True)
    (src / "private" / "x.json").write_text("{}")
    (src / "config.json").write_text("{}")
    os.chmod(src / "private", 0)
    keydir = tmp_path / "cli-keys"
    LocalKeyring.init(keydir, passphrase="granite orchid lantern thimble", scrypt_n=TEST_SCRYPT_N).close()
    # Root ignores permission bits: drop every capability so the unreadable directory is real.
    prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    env = {
        **os.environ,
        "STRONGROOM_PASSPHRASE": "granite orchid lantern thimble",
        "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
    }
    command = [sys.executable, "-m", "strongroom.cli.main", "seal", str(src), str(tmp_path / "out"), "--keys"]
    try:
        result = subprocess.run([*prefix, *command, str(keydir)], env=env, capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(src / "private", 0o755)
    assert result.returncode == 1, result.stderr
    assert "private: cannot read directory: Permission denied" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_header_is_no_oracle_for_guessing_the_plaintext(tmp_path: Path, keyring: LocalKeyring) -> None:
    import blake3

    secret = b"meeting notes: acquisition target is ACME\n"
    (tmp_path / "notes.txt").write_bytes(secret)
    seal_path(tmp_path / "notes.txt", tmp_path / "a.sealed", keyring)
    seal_path(tmp_path / "notes.txt", tmp_path / "b.sealed", keyring)
    with SealedFile(tmp_path / "a.sealed") as a, SealedFile(tmp_path / "b.sealed") as b:
        visible = {a.header.plaintext_digest, b.header.plaintext_digest}
        assert len(visible) == 2
        assert blake3.blake3(secret).hexdigest() not in "".join(visible)
        assert secret not in (tmp_path / "a.sealed").read_bytes()
