"""The isolated speech process: decode the audio, run the speech model and the diarizer, answer in JSON.

Started by ``isolation.run_speech`` as ``python -I -c BOOT CONFIG``; not an entry point of its own. Its
first act, while it is still single-threaded and has imported nothing but the standard library, is
``sandbox.isolate()`` (network namespace, no capabilities, seccomp); then the Python guard; only then does
it read its request and import PyAV, CTranslate2, faster-whisper and the diarizer. It never sees a key,
a passphrase or the parent's environment; it holds the audio (a descriptor the parent opened) and the
model. It writes JSON lines to the events descriptor: ``isolation``, ``stage``, ``progress``,
``refused``, then one ``result`` or ``error``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import threading
import time
from pathlib import Path
from typing import Any

from strongroom.meetings import sandbox

BOOT = (
    "import json, sys\n"
    "config = json.loads(sys.argv[1])\n"
    "sys.path[:0] = config['path']\n"
    "from strongroom.meetings.worker import main\n"
    "sys.exit(main(config))\n"
)


class _Events:
    """JSON lines to the parent, written whole with os.write (no buffering that a crash could lose).

    A lock keeps lines whole when two threads send (a refusal can happen on any thread).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        data = memoryview((json.dumps({"event": event, **fields}, allow_nan=False) + "\n").encode())
        with self.lock:
            while data:
                data = data[os.write(self.fd, data) :]


def _segment_json(segment: Any) -> dict[str, Any]:
    return {
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "speaker": segment.speaker,
        "words": [[w.start, w.end, w.text, w.probability, w.speaker] for w in segment.words],
    }


def _error_kinds(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def main(config: dict[str, Any]) -> int:
    """Run one request; the exit status is 0 on success, 1 on a reported error, 3 when isolation is refused."""
    os.dup2(2, 1)  # whatever a library prints goes to the stderr the parent keeps for diagnostics
    events = _Events(int(config["events_fd"]))
    report = sandbox.isolate(config["namespace"], bool(config["syscall_filter"]))
    use_guard = bool(config["python_guard"])
    events.send(
        "isolation",
        **report.to_dict(),
        python_guard=use_guard,
        pid=os.getpid(),
        environment=sorted(os.environ),
    )
    if config["namespace"] == "require" and not report.network_namespace:
        events.send(
            "error",
            kinds=["IsolationError"],
            message=f"a network namespace is required (--netns require) but none was made: {report.reason}",
        )
        return 3
    timings: dict[str, float] = {}  # the parent times the start (interpreter and sandbox) itself
    from strongroom.meetings.guard import network_guard

    guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if use_guard:
        guard = network_guard(
            lambda message: events.send("refused", what=guard_report.refused[-1], message=message), sockets=False
        )
    try:
        with guard as guard_report:
            return _run(config, events, timings)
    except BaseException as exc:  # the parent maps the kinds to its own exception classes
        events.send("error", kinds=_error_kinds(exc), message=str(exc) or type(exc).__name__)
        return 1


class _Background:
    """Decode the audio, then import what diarization needs, on a thread, while the main thread loads the
    model and transcribes (CTranslate2 releases the GIL while it computes).

    The model is loaded on the main thread on purpose: CTranslate2 built on another thread ran about
    four times slower here.
    """

    def __init__(self, fd: int, name: str, diarizer: Any) -> None:
        self.decoded = threading.Event()
        self.audio: Any = None
        self.error: BaseException | None = None
        self.decode_seconds = 0.0
        self.thread = threading.Thread(target=self._work, args=(fd, name, diarizer), name="decode", daemon=True)
        self.thread.start()

    def _work(self, fd: int, name: str, diarizer: Any) -> None:
        start = time.perf_counter()
        try:
            from strongroom.meetings.audio import decode_audio

            with os.fdopen(fd, "rb") as handle:
                self.audio = decode_audio(handle, Path(name))
        except BaseException as exc:  # re-raised on the main thread
            self.error = exc
            return
        finally:
            self.decode_seconds = time.perf_counter() - start
            self.decoded.set()
        from strongroom.meetings.diarize import FeatureDiarizer

        if isinstance(diarizer, FeatureDiarizer):
            import scipy.cluster.hierarchy  # noqa: F401  (its import alone takes a few tenths of a second)

    def wait_for_audio(self) -> Any:
        self.decoded.wait()
        if self.error is not None:
            raise self.error
        return self.audio


def _run(config: dict[str, Any], events: _Events, timings: dict[str, float]) -> int:
    t = time.perf_counter()
    request = pickle.load(sys.stdin.buffer)  # from the parent, which is trusted; never the other way round
    events.send("stage", name="loading speech model, decoding audio")
    diarizer = request["diarizer"]
    background = _Background(int(config["audio_fd"]), request["audio_name"], diarizer)

    def timed(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name], t = now - t, now

    from strongroom.meetings.transcribe import Transcriber

    timed("imports")
    try:
        model = Transcriber(request["transcribe"])
    except BaseException:
        background.wait_for_audio()  # a decoding error is the one to report, even if the model failed too
        raise
    timed("load_model")
    audio = background.wait_for_audio()
    timed("decode")  # what decoding took beyond the model load (it ran alongside; the whole is in the facts)
    events.send("stage", name="transcribing")
    total = audio.duration
    segments, facts = model.transcribe(audio, lambda done: events.send("progress", done=done, total=total))
    facts["decode_seconds"] = round(background.decode_seconds, 3)
    events.send("progress", done=total, total=total)
    timed("transcribe")
    background.thread.join()
    from strongroom.meetings.diarize import assign_speakers

    if diarizer is not None and segments:
        events.send("stage", name="telling speakers apart")
        turns = diarizer.diarize(audio, segments, request["num_speakers"])
        segments = assign_speakers(segments, turns)
        timed("diarize")
    events.send(
        "result",
        duration=audio.duration,
        container=audio.container,
        facts=facts,
        segments=[_segment_json(s) for s in segments],
        timings=timings,
    )
    return 0
