"""Bad input gives one clear, typed error: empty, corrupt or unsupported audio, missing model, full disk."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from strongroom.keys import LocalKeyring
from strongroom.meetings.audio import load_audio
from strongroom.meetings.errors import (
    AudioInputError,
    CorruptAudioError,
    EmptyAudioError,
    ModelNotFoundError,
    OutputError,
    TranscriptionError,
    UnsupportedAudioError,
)
from strongroom.meetings.pipeline import MeetingOptions, transcribe_meeting
from strongroom.meetings.transcribe import TranscribeOptions, Transcriber, default_model_dir

from .conftest import CLI, SPEECH, Meeting


def _flac(src: Path, dst: Path) -> Path:
    subprocess.run(["sox", str(src), str(dst)], check=True, capture_output=True)
    return dst


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(EmptyAudioError, match=r"empty.wav: the audio file is empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.wav")


def test_wav_with_no_samples(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "silent.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\x00\x00" * 100)  # 6 ms
    with pytest.raises(EmptyAudioError, match="nothing to transcribe"):
        load_audio(tmp_path / "silent.wav")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioInputError, match="not a regular file"):
        load_audio(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"This is a meeting agenda, not audio.\n" * 20, b"%PDF-1.7\n" + bytes(2000), bytes(range(256)) * 40],
    ids=["text", "pdf", "binary"],
)
def test_unsupported_files(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "notes.wav").write_bytes(content)
    with pytest.raises(UnsupportedAudioError, match="not a supported audio file"):
        load_audio(tmp_path / "notes.wav")


def test_container_without_audio(tmp_path: Path) -> None:
    # A real Matroska file holding only a video track: a known container, no audio stream.
    import av

    path = tmp_path / "video-only.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=5)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(UnsupportedAudioError, match="matroska file has no audio stream"):
        load_audio(path)


def test_corrupt_flac(tmp_path: Path, short_meeting: Meeting) -> None:
    good = _flac(short_meeting.path, tmp_path / "good.flac").read_bytes()
    zeroed = tmp_path / "zeroed.flac"
    zeroed.write_bytes(good[:200] + bytes(len(good) - 200))  # header intact, frames destroyed
    with pytest.raises(CorruptAudioError, match=r"zeroed\.flac"):
        load_audio(zeroed)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(good[:60])  # cut inside the STREAMINFO block
    with pytest.raises(CorruptAudioError, match=r"truncated\.flac"):
        load_audio(truncated)


def test_corrupt_ogg(tmp_path: Path, short_meeting: Meeting) -> None:
    good = (subprocess.run(["sox", str(short_meeting.path), "-t", "ogg", "-"], check=True, capture_output=True)).stdout
    rng = np.random.default_rng(7)
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(good[:100] + rng.integers(0, 256, len(good) - 100, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptAudioError, match=r"bad\.ogg"):
        load_audio(bad)


def test_good_formats_decode_alike(tmp_path: Path, short_meeting: Meeting) -> None:
    wav = load_audio(short_meeting.path)
    flac = load_audio(_flac(short_meeting.path, tmp_path / "m.flac"))
    assert wav.container == "wav" and flac.container == "flac"
    assert wav.samples.shape == flac.samples.shape and np.array_equal(wav.samples, flac.samples)


def test_missing_or_incomplete_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model directory not found"):
        Transcriber(TranscribeOptions(model_dir=tmp_path / "nowhere"))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copyfile(default_model_dir() / "config.json", partial / "config.json")
    with pytest.raises(ModelNotFoundError, match=r"missing model.bin, tokenizer.json"):
        Transcriber(TranscribeOptions(model_dir=partial))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(default_model_dir() / name, broken / name)
    (broken / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelNotFoundError, match="cannot load the speech model"):
        Transcriber(TranscribeOptions(model_dir=broken))


def test_language_an_english_model_cannot_speak() -> None:
    with pytest.raises(TranscriptionError, match="English-only"):
        Transcriber(TranscribeOptions(language="de", cpu_threads=1))


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (tests run as root, as CI does)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    assert mounted.returncode == 0, f"cannot mount a tmpfs (tests need root): {mounted.stderr.decode()}"
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_full_disk_leaves_nothing_and_keeps_the_audio(
    tmp_path: Path, short_meeting: Meeting, keyring: LocalKeyring
) -> None:
    with tiny_filesystem(tmp_path / "disk", "64k") as disk:
        audio = disk / "meeting.wav"
        # The audio itself must fit: trim to 1.5 s of the short meeting (48 KiB).
        with wave.open(str(short_meeting.path), "rb") as src, wave.open(str(audio), "wb") as dst:
            dst.setparams(src.getparams())
            dst.writeframes(src.readframes(24000))
        filler = disk / "filler"
        with open(filler, "wb") as handle, contextlib.suppress(OSError):
            handle.write(bytes(14 * 1024))
        out = disk / "out"
        options = MeetingOptions(transcribe=SPEECH, delete_audio=True, summary=True)
        with pytest.raises(OutputError, match=r"No space left on device; nothing was kept"):
            transcribe_meeting(audio, out, keyring, options)
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "meeting.wav"]
        assert audio.stat().st_size > 40_000


def test_cli_errors_are_one_line(tmp_path: Path, cli_env: dict[str, str], cli_keys: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.mp3").write_text("minutes of the meeting")
    cases = {
        "empty.wav": "the audio file is empty",
        "notes.mp3": "not a supported audio file",
        "missing.wav": "no such audio file",
    }
    for name, message in cases.items():
        run = subprocess.run(
            [*CLI, "meetings", "transcribe", str(tmp_path / name), "--out", str(tmp_path / "o"),
             "--keys", str(cli_keys)],
            env=cli_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        error_lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
        assert len(error_lines) == 1 and message in error_lines[0], run.stderr
        assert "Traceback" not in run.stderr
    run = subprocess.run(
        [*CLI, "meetings", "transcribe", str(tmp_path / "empty.wav"), "--out", str(tmp_path / "o")],
        env=cli_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1 and "needs --keys" in run.stderr
    run = subprocess.run(
        [*CLI, "meetings", "show", str(tmp_path / "nothing"), "--keys", str(cli_keys), "--json"],
        env=cli_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert not json.dumps(run.stdout).count("segments")
