"""One meeting, end to end, inside the network guard: decode, transcribe, diarize, summarise, seal, shred."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.meetings.audio import load_audio
from strongroom.meetings.diarize import Diarizer, FeatureDiarizer, assign_speakers
from strongroom.meetings.formats import FORMATS, Transcript, render
from strongroom.meetings.guard import network_guard
from strongroom.meetings.shred import ShredReport, shred
from strongroom.meetings.store import write_outputs
from strongroom.meetings.summary import Summary, summarize
from strongroom.meetings.transcribe import TranscribeOptions, Transcriber

Stage = Callable[[str], None]


@dataclass
class MeetingOptions:
    """Everything a run can be asked to do beyond the speech model's own options."""

    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    diarizer: Diarizer | None = field(default_factory=FeatureDiarizer)
    num_speakers: int | None = None
    speaker_names: dict[str, str] = field(default_factory=dict)
    summary: bool = False
    llm_url: str | None = None
    llm_model: str = "local"
    delete_audio: bool = False
    plaintext: bool = False


@dataclass
class MeetingResult:
    """What a run produced: the transcript, the files written, stage timings and guard refusals."""

    transcript: Transcript
    summary: Summary | None
    files: list[Path]
    timings: dict[str, float]
    refused: list[str]
    shredded: ShredReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "duration": round(self.transcript.duration, 3),
            "segments": len(self.transcript.segments),
            "speakers": self.transcript.speakers,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "network_refused": self.refused,
            "summary": self.summary.method if self.summary else None,
            "audio_deleted": None
            if self.shredded is None
            else {"path": self.shredded.path, "filesystem": self.shredded.filesystem, "caveat": self.shredded.caveat},
        }


def transcribe_meeting(
    audio_path: Path,
    out_dir: Path,
    provider: KeyProvider | None,
    options: MeetingOptions | None = None,
    *,
    transcriber: Transcriber | None = None,
    stage: Stage | None = None,
    on_refusal: Callable[[str], None] | None = None,
    on_progress: Callable[[float, float], None] | None = None,
) -> MeetingResult:
    """Run the whole pipeline with the network guard up; the audio is deleted only after outputs are safe.

    ``stage`` hears each step's name, ``on_refusal`` each refused connection, ``on_progress`` (seconds
    done, seconds total) the speech model's progress.
    """
    opts = options or MeetingOptions()
    say: Stage = stage or (lambda name: None)
    timings: dict[str, float] = {}

    def timed(name: str, start: float) -> float:
        now = time.perf_counter()
        timings[name] = now - start
        return now

    with network_guard(on_refusal) as guard:
        t = time.perf_counter()
        say("decoding audio")
        audio = load_audio(audio_path)
        t = timed("decode", t)
        say("loading speech model")
        model = transcriber or Transcriber(opts.transcribe)
        t = timed("load_model", t)
        say("transcribing")
        segments, facts = model.transcribe(
            audio, None if on_progress is None else (lambda done: on_progress(done, audio.duration))
        )
        if on_progress is not None:
            on_progress(audio.duration, audio.duration)
        t = timed("transcribe", t)
        if opts.diarizer is not None and segments:
            say("telling speakers apart")
            turns = opts.diarizer.diarize(audio, segments, opts.num_speakers)
            segments = assign_speakers(segments, turns)
            t = timed("diarize", t)
        transcript = Transcript(
            segments=segments,
            duration=audio.duration,
            language=str(facts["language"]),
            model=str(facts["model"]),
            diarizer=opts.diarizer.name if opts.diarizer is not None else "none",
            speaker_names=dict(opts.speaker_names),
        )
        summary = None
        if opts.summary:
            say("summarising")
            summary = summarize(transcript, opts.llm_url, opts.llm_model)
            t = timed("summary", t)
        say("sealing outputs" if not opts.plaintext else "writing plaintext outputs")
        files = {f"transcript.{fmt}": render(transcript, fmt).encode() for fmt in FORMATS}
        if summary is not None:
            files["summary.md"] = summary.markdown.encode()
            files["summary.json"] = (json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n").encode()
        facts_doc = {
            "audio": {"name": audio_path.name, "container": audio.container, "duration": round(audio.duration, 3)},
            "speech": facts,
            "diarizer": transcript.diarizer,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "network_guard": {"active": True, "refused": list(guard.refused)},
        }
        files["meeting.json"] = (json.dumps(facts_doc, indent=2) + "\n").encode()
        written = write_outputs(out_dir, files, provider, plaintext=opts.plaintext)
        t = timed("write", t)
        shredded = None
        if opts.delete_audio:
            say("deleting source audio")
            shredded = shred(audio_path)
            timed("delete_audio", t)
        return MeetingResult(transcript, summary, written, timings, list(guard.refused), shredded)
