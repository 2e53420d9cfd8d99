"""Decode and validate the source audio: local files only, a known container, mono 16 kHz float32 out.

The container is picked from the file's magic bytes and passed to FFmpeg explicitly, so probing can never
select a demuxer that opens other files or URLs (HLS playlists, concat lists). FFmpeg's network code runs
outside Python, where the Python guard cannot see it; decoding happens in the isolated speech process
(``worker.py``), whose network namespace and syscall filter do cover native code. The parent checks and
opens the file (``open_source``) and hands the speech process only the open descriptor.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from strongroom.meetings.errors import (
    AudioInputError,
    CorruptAudioError,
    EmptyAudioError,
    UnsupportedAudioError,
)

SAMPLE_RATE = 16_000
MIN_DURATION_S = 0.1
SUPPORTED = "WAV, FLAC, Ogg (Vorbis/Opus), MP3, AAC (ADTS), M4A/MP4, WebM/Matroska, AIFF"


@dataclass(frozen=True)
class Audio:
    """Decoded speech: mono float32 samples in [-1, 1] at ``SAMPLE_RATE``."""

    samples: npt.NDArray[np.float32]
    sample_rate: int
    source: Path
    container: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def sniff_container(head: bytes) -> str | None:
    """The FFmpeg demuxer name for a file starting with ``head``, or None if it is not a known audio file."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
            return "aac"
        if head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
            return "mp3"
    return None


def check_source(path: Path) -> os.stat_result:
    """The stat of ``path`` if it is an existing regular file (symlinks resolved), else a clear error."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise AudioInputError(f"{path}: no such audio file") from None
    except OSError as exc:
        raise AudioInputError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AudioInputError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise EmptyAudioError(f"{path}: the audio file is empty (0 bytes)")
    return info


def load_audio(path: str | Path) -> Audio:
    """Decode ``path`` to mono 16 kHz float32, with a typed error for empty, corrupt or unsupported input."""
    path = Path(path)
    check_source(path)
    with open(path, "rb") as handle:
        return decode_audio(handle, path)


def open_source(path: Path) -> BinaryIO:
    """``path`` opened for reading after ``check_source``; the descriptor is what the speech process gets."""
    check_source(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller owns it
    except OSError as exc:
        raise AudioInputError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # replaced between the check and the open
        handle.close()
        raise AudioInputError(f"{path}: not a regular file")
    return handle


def decode_audio(handle: BinaryIO, path: Path) -> Audio:
    """Decode an open audio file (``path`` names it in errors); see ``load_audio``."""
    import av

    container_name = sniff_container(handle.read(16))
    if container_name is None:
        raise UnsupportedAudioError(f"{path}: not a supported audio file (supported: {SUPPORTED})")
    handle.seek(0)
    try:
        container = av.open(handle, mode="r", format=container_name, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise CorruptAudioError(f"{path}: looks like {container_name} but cannot be opened: {exc}") from None
    with container:
        if not container.streams.audio:
            raise UnsupportedAudioError(f"{path}: the {container_name} file has no audio stream")
        samples = _decode_stream(container, path, container_name)
    if samples.size == 0:
        raise CorruptAudioError(f"{path}: the {container_name} file decodes to no audio samples")
    audio = Audio(samples=samples, sample_rate=SAMPLE_RATE, source=path, container=container_name)
    if audio.duration < MIN_DURATION_S:
        raise EmptyAudioError(f"{path}: only {audio.duration:.3f} s of audio; nothing to transcribe")
    return audio


def _decode_stream(container: object, path: Path, container_name: str) -> npt.NDArray[np.float32]:
    """Resample every frame of the first audio stream to mono s16 at 16 kHz; errors become CorruptAudioError."""
    import av
    from av.audio.resampler import AudioResampler

    resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[npt.NDArray[Any]] = []
    decoded_s = 0.0
    try:
        for frame in container.decode(audio=0):  # type: ignore[attr-defined]
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                decoded_s += len(chunk) / SAMPLE_RATE
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError) as exc:
        raise CorruptAudioError(f"{path}: {container_name} audio is corrupt after {decoded_s:.2f} s: {exc}") from None
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    pcm = np.concatenate(chunks)
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)
