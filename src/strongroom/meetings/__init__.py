"""Offline transcription of sensitive meetings, sealed at rest (``strongroom meetings ...``).

Speech to text with faster-whisper and a model shipped in a wheel, speakers told apart offline, a summary
from a loopback-only model or an extractive one, a socket guard that refuses non-loopback traffic during a
run, outputs sealed with the project's key providers, and optional deletion of the source audio.
"""

from __future__ import annotations

from strongroom.meetings.errors import (
    AudioInputError,
    CorruptAudioError,
    DiarizationError,
    EgressBlockedError,
    EmptyAudioError,
    MeetingError,
    ModelNotFoundError,
    OutputError,
    ShredError,
    SummaryEndpointError,
    TranscriptionError,
    UnsupportedAudioError,
)
from strongroom.meetings.pipeline import MeetingOptions, MeetingResult, transcribe_meeting

__all__ = [
    "AudioInputError",
    "CorruptAudioError",
    "DiarizationError",
    "EgressBlockedError",
    "EmptyAudioError",
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
