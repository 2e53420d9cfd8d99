"""Offline transcription of sensitive meetings, sealed at rest (``strongroom meetings ...``).

Speech to text with faster-whisper and a model shipped in a wheel, speakers told apart offline, in a
separate process behind a network namespace, a syscall filter and a Python guard; a summary from a
loopback-only model or an extractive one; outputs sealed with the project's key providers; optional
deletion of the source audio.

The names below are loaded on first use, so that the isolated speech process (``worker.py``) can import
this package and enter its sandbox before numpy, PyAV or the speech model are loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strongroom.meetings.errors import (
        AudioInputError,
        CorruptAudioError,
        DiarizationError,
        EgressBlockedError,
        EmptyAudioError,
        IsolationError,
        MeetingError,
        ModelNotFoundError,
        OutputError,
        ShredError,
        SummaryEndpointError,
        TranscriptionError,
        UnsupportedAudioError,
    )
    from strongroom.meetings.isolation import Isolation
    from strongroom.meetings.pipeline import MeetingOptions, MeetingResult, transcribe_meeting

_WHERE = {
    "Isolation": "strongroom.meetings.isolation",
    "MeetingOptions": "strongroom.meetings.pipeline",
    "MeetingResult": "strongroom.meetings.pipeline",
    "transcribe_meeting": "strongroom.meetings.pipeline",
}

__all__ = [
    "AudioInputError",
    "CorruptAudioError",
    "DiarizationError",
    "EgressBlockedError",
    "EmptyAudioError",
    "Isolation",
    "IsolationError",
    "MeetingError",
    "MeetingOptions",
    "MeetingResult",
    "ModelNotFoundError",
    "OutputError",
    "ShredError",
    "SummaryEndpointError",
    "TranscriptionError",
    "UnsupportedAudioError",
    "transcribe_meeting",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_WHERE.get(name, "strongroom.meetings.errors"))
    value = getattr(module, name)
    globals()[name] = value
    return value
