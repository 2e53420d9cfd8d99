"""Typed errors of the meetings pipeline; each message names the file, option or address at fault."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class MeetingError(StrongroomError):
    """Base class for every error of ``strongroom.meetings``."""


class AudioInputError(MeetingError):
    """The source audio cannot be used (missing, not a regular file, or not decodable)."""


class EmptyAudioError(AudioInputError):
    """The source audio holds no samples (a zero-byte file, or a stream that decodes to nothing)."""


class UnsupportedAudioError(AudioInputError):
    """The source is not an audio container Strongroom accepts, or it has no audio stream."""


class CorruptAudioError(AudioInputError):
    """The container was recognised but its audio data cannot be decoded."""


class ModelNotFoundError(MeetingError):
    """The speech or diarization model directory is missing or incomplete."""


class TranscriptionError(MeetingError):
    """The speech model failed, or an option does not fit the model (e.g. a language for an .en model)."""


class DiarizationError(MeetingError):
    """Speaker attribution failed or its backend is unavailable."""


class EgressBlockedError(MeetingError, PermissionError):
    """The network guard refused a connection or name lookup that would leave this machine."""


class IsolationError(MeetingError):
    """The isolated speech process could not be set up as required, or it ended without an answer."""


class SummaryEndpointError(MeetingError):
    """The summary endpoint is not loopback, or it answered with something unusable."""


class OutputError(MeetingError):
    """The outputs could not be written (for example: no space left on the device) or read back."""


class ShredError(MeetingError):
    """The source audio could not be deleted as asked."""
