"""Deleting the source audio: overwritten before unlink, no renamed leftovers, refusals that protect data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom.meetings import shred as shred_module
from strongroom.meetings.errors import ShredError
from strongroom.meetings.shred import caveat_for, filesystem_of, shred


def test_overwrites_with_random_bytes_before_unlinking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = b"secret meeting audio " * 50_000  # ~1 MiB, more than one write chunk
    target = tmp_path / "meeting.wav"
    target.write_bytes(original)
    reader = os.open(target, os.O_RDONLY)  # keeps the inode readable to observe the overwrite
    seen: list[bytes] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        if not seen:
            seen.append(os.pread(reader, len(original), 0))
        real_fsync(fd)

    monkeypatch.setattr(shred_module.os, "fsync", spy)
    try:
        report = shred(target)
    finally:
        monkeypatch.undo()
        os.close(reader)
    assert len(seen[0]) == len(original)
    assert b"secret meeting audio" not in seen[0]
    assert seen[0].count(0) < len(original) // 64, "expected random bytes, not zeros"
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert report.bytes_overwritten == len(original)


def test_refuses_links_and_odd_files(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x" * 100)
    (tmp_path / "link.wav").symlink_to(audio)
    with pytest.raises(ShredError, match="symbolic link"):
        shred(tmp_path / "link.wav")
    os.link(audio, tmp_path / "hard.wav")
    with pytest.raises(ShredError, match="2 hard links"):
        shred(audio)
    assert audio.read_bytes() == b"x" * 100
    with pytest.raises(ShredError, match="not a regular file"):
        shred(tmp_path)
    with pytest.raises(ShredError, match="no such file"):
        shred(tmp_path / "gone.wav")


def test_caveats_are_honest(tmp_path: Path) -> None:
    assert filesystem_of(tmp_path) != "unknown"
    assert "copy-on-write" in (caveat_for("btrfs") or "")
    assert "SSD" in (caveat_for("ext4") or "")
    assert caveat_for("tmpfs") is None
