"""Run the speech step (decode, speech model, diarizer) in a separate, isolated process; keep keys out of it.

The parent process keeps the key provider, the summary (which may use a model server on the *host's*
loopback) and the sealing; the child (``worker.py``) gets only what it needs: the audio as an open
descriptor, the speech options and the diarizer (pickled: parent to child only), a minimal environment
(``child_environment``: no passphrase, token or key variable, whatever the parent holds), and a fresh
interpreter (``python -I``: no inherited memory, so no key material in its address space). It answers
in JSON lines that the parent validates field by field; nothing the child sends is unpickled or executed.

Layers in the child, each recorded in ``meeting.json`` under ``isolation``:

- ``network_namespace``: its own network namespace with only loopback, when the kernel allows it (root:
  ``unshare(CLONE_NEWNET)``; otherwise a user namespace as well). ``auto`` falls back to the other
  layers and records why; ``require`` fails the run instead; ``off`` skips it.
- ``capabilities_dropped`` and ``syscall_filter`` (seccomp, no sockets at all): see ``sandbox.py``.
- ``python_guard``: the audit-hook guard of ``guard.py``, also active in the parent for the whole run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.meetings import errors
from strongroom.meetings.audio import open_source
from strongroom.meetings.diarize import Diarizer
from strongroom.meetings.guard import OFFLINE_ENV, permit_child_process
from strongroom.meetings.sandbox import NamespaceMode
from strongroom.meetings.transcribe import Segment, TranscribeOptions, Word
from strongroom.meetings.worker import BOOT

# Variables the speech process may inherit: locale, paths, thread and GPU tuning. Nothing else.
ENV_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "LD_LIBRARY_PATH"})
ENV_PREFIXES = ("LC_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "CT2_", "CUDA_", "NVIDIA_", "ORT_")
SECRET_MARKERS = ("PASS", "SECRET", "TOKEN", "KEY", "CRED", "AUTH", "COOKIE", "SESSION", "PRIVATE")
MAX_EVENT_BYTES = 256 << 20  # a transcript of many hours is a few MB; a child that floods is cut off
STDERR_TAIL = 16 << 10
# The speech process's errors the parent re-raises as its own classes (by name, nearest first).
KNOWN_ERRORS: dict[str, type[errors.MeetingError]] = {
    cls.__name__: cls
    for cls in (
        errors.EmptyAudioError,
        errors.UnsupportedAudioError,
        errors.CorruptAudioError,
        errors.AudioInputError,
        errors.ModelNotFoundError,
        errors.TranscriptionError,
        errors.DiarizationError,
        errors.EgressBlockedError,
        errors.IsolationError,
    )
}


@dataclass(frozen=True)
class Isolation:
    """Which layers the speech process gets. The defaults are the strongest the platform allows.

    ``python_guard=False`` turns off only the child's in-process guard (the parent's stays on); it exists
    so tests can show that each kernel layer holds on its own.
    """

    network_namespace: NamespaceMode = "auto"
    syscall_filter: bool = True
    python_guard: bool = True


@dataclass
class SpeechRequest:
    """What the speech process is asked to do (sent pickled, parent to child)."""

    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    diarizer: Diarizer | None = None
    num_speakers: int | None = None


@dataclass
class SpeechResult:
    """The speech process's answer, validated: segments with speakers, facts, timings, layers, refusals."""

    segments: list[Segment]
    facts: dict[str, Any]
    duration: float
    container: str
    timings: dict[str, float]
    isolation: dict[str, Any]
    refused: list[str]


def child_environment(parent: dict[str, str] | None = None) -> dict[str, str]:
    """The speech process's environment: allow-listed names without secret markers, plus the offline switches."""
    source = dict(os.environ) if parent is None else parent
    env = {
        name: value
        for name, value in source.items()
        if (name in ENV_NAMES or name.startswith(ENV_PREFIXES))
        and not any(marker in name.upper() for marker in SECRET_MARKERS)
    }
    env.update(OFFLINE_ENV)
    return env


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise errors.IsolationError(f"speech process sent a bad {what}: {value!r}")
    return float(value)


def _string(value: Any, what: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise errors.IsolationError(f"speech process sent a bad {what}: {value!r}")
    return value


def _segments(raw: Any) -> list[Segment]:
    if not isinstance(raw, list):
        raise errors.IsolationError("speech process sent segments that are not a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("words"), list):
            raise errors.IsolationError("speech process sent a malformed segment")
        words = []
        for word in item["words"]:
            if not isinstance(word, list) or len(word) != 5:
                raise errors.IsolationError("speech process sent a malformed word")
            words.append(
                Word(
                    start=_number(word[0], "word start"),
                    end=_number(word[1], "word end"),
                    text=str(_string(word[2], "word")),
                    probability=_number(word[3], "word probability"),
                    speaker=_string(word[4], "speaker label", optional=True),
                )
            )
        out.append(
            Segment(
                start=_number(item.get("start"), "segment start"),
                end=_number(item.get("end"), "segment end"),
                text=str(_string(item.get("text"), "segment text")),
                words=words,
                speaker=_string(item.get("speaker"), "speaker label", optional=True),
            )
        )
    return out


def _raise_error(event: dict[str, Any]) -> None:
    kinds = event.get("kinds")
    message = str(event.get("message", "speech process failed"))
    for kind in kinds if isinstance(kinds, list) else []:
        if isinstance(kind, str) and kind in KNOWN_ERRORS:
            raise KNOWN_ERRORS[kind](message)
    name = kinds[0] if isinstance(kinds, list) and kinds else "error"
    raise errors.MeetingError(f"speech process failed: {name}: {message}")


class _Child:
    """The running speech process and its three pipes (request in, events and stderr out)."""

    def __init__(self, process: subprocess.Popen[bytes], events_fd: int, request: bytes) -> None:
        self.process = process
        self.events_fd = events_fd
        self.pending = memoryview(request)
        self.buffer = bytearray()
        self.received = 0
        self.stderr = bytearray()

    def lines(self, handle: Callable[[dict[str, Any]], None]) -> None:
        """Pump the pipes until the child closes its outputs, calling ``handle`` for each event."""
        assert self.process.stdin is not None and self.process.stderr is not None
        stdin, stderr = self.process.stdin, self.process.stderr
        os.set_blocking(stdin.fileno(), False)
        with selectors.DefaultSelector() as selector:
            selector.register(self.events_fd, selectors.EVENT_READ, "events")
            selector.register(stderr.fileno(), selectors.EVENT_READ, "stderr")
            selector.register(stdin.fileno(), selectors.EVENT_WRITE, "stdin")
            open_outputs = 2
            while open_outputs:
                for key, _ in selector.select():
                    if key.data == "stdin":
                        try:
                            self.pending = self.pending[os.write(key.fd, self.pending) :]
                        except BrokenPipeError:
                            self.pending = self.pending[:0]
                        if not self.pending:
                            selector.unregister(key.fd)
                            stdin.close()
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fd)
                        open_outputs -= 1
                    elif key.data == "stderr":
                        self.stderr += chunk
                        del self.stderr[:-STDERR_TAIL]
                    else:
                        self._feed(chunk, handle)

    def _feed(self, chunk: bytes, handle: Callable[[dict[str, Any]], None]) -> None:
        self.received += len(chunk)
        if self.received > MAX_EVENT_BYTES:
            raise errors.IsolationError(f"speech process sent more than {MAX_EVENT_BYTES} bytes; stopped")
        self.buffer += chunk
        while (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 1 :]
            try:
                event = json.loads(line)
            except ValueError:
                raise errors.IsolationError("speech process sent something that is not JSON") from None
            if not isinstance(event, dict):
                raise errors.IsolationError("speech process sent an event that is not an object")
            handle(event)


def run_speech(
    audio_path: Path,
    request: SpeechRequest,
    isolation: Isolation | None = None,
    *,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[float, float], None] | None = None,
    on_refusal: Callable[[str], None] | None = None,
) -> SpeechResult:
    """Decode, transcribe and diarize ``audio_path`` in an isolated child process; raise its errors here."""
    layers = isolation or Isolation()
    payload = pickle.dumps(
        {
            "audio_name": str(audio_path),
            "transcribe": request.transcribe,
            "diarizer": request.diarizer,
            "num_speakers": request.num_speakers,
        }
    )
    handle = open_source(audio_path)
    read_fd, write_fd = os.pipe()
    config = {
        "path": [p for p in sys.path if p],
        "events_fd": write_fd,
        "audio_fd": handle.fileno(),
        "namespace": layers.network_namespace,
        "syscall_filter": layers.syscall_filter,
        "python_guard": layers.python_guard,
    }
    started = time.perf_counter()
    try:
        with permit_child_process():
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd, handle.fileno()),
                env=child_environment(),
                close_fds=True,
            )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        handle.close()
    child = _Child(process, read_fd, payload)
    state: dict[str, Any] = {"refused": [], "isolation": {}, "result": None, "error": None}
    timings: dict[str, float] = {}

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "isolation":
            state["isolation"] = {k: v for k, v in event.items() if k != "event"}
            timings["start_process"] = time.perf_counter() - started
        elif kind == "stage" and on_stage is not None:
            on_stage(str(event.get("name")))
        elif kind == "progress" and on_progress is not None:
            on_progress(_number(event.get("done"), "progress"), _number(event.get("total"), "progress"))
        elif kind == "refused":
            state["refused"].append(str(event.get("what")))
            if on_refusal is not None:
                on_refusal(str(event.get("message")))
        elif kind == "result":
            state["result"] = event
        elif kind == "error":
            state["error"] = event

    try:
        child.lines(on_event)
        status = process.wait()
    finally:
        os.close(read_fd)
        if process.poll() is None:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        if process.stderr is not None:
            process.stderr.close()
    if state["error"] is not None:
        _raise_error(state["error"])
    result = state["result"]
    if status != 0 or result is None:
        tail = child.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise errors.IsolationError(
            f"the speech process ended without an answer (exit status {status})"
            + (": " + " | ".join(tail) if tail else "")
        )
    child_timings = result.get("timings")
    if isinstance(child_timings, dict):
        timings.update({str(k): _number(v, "timing") for k, v in child_timings.items()})
    facts = result.get("facts")
    return SpeechResult(
        segments=_segments(result.get("segments")),
        facts=facts if isinstance(facts, dict) else {},
        duration=_number(result.get("duration"), "duration"),
        container=str(_string(result.get("container"), "container")),
        timings=timings,
        isolation=state["isolation"],
        refused=state["refused"],
    )
