"""One meeting, end to end: speech in an isolated process; summary, sealing and deletion here, under the guard.

The split: ``isolation.run_speech`` decodes the audio, runs the speech model and the diarizer in a child
process behind a network namespace, a syscall filter and the Python guard, with no key and no secret in
its memory or environment. This process keeps the key provider, writes the summary (a local model server
on the host's loopback is reachable from here, not from the child's namespace) and seals the outputs,
with the Python guard active for the whole run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.meetings.audio import check_source
from strongroom.meetings.diarize import Diarizer, FeatureDiarizer
from strongroom.meetings.formats import FORMATS, Transcript, render
from strongroom.meetings.guard import network_guard
from strongroom.meetings.isolation import Isolation, SpeechRequest, run_speech
from strongroom.meetings.shred import ShredReport, shred
from strongroom.meetings.store import check_out_dir, write_outputs
from strongroom.meetings.summary import Summary, summarize
from strongroom.meetings.transcribe import TranscribeOptions, check_model_dir, default_model_dir

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
    isolation: Isolation = field(default_factory=Isolation)


@dataclass
class MeetingResult:
    """What a run produced: the transcript, the files written, stage timings, isolation and guard refusals."""

    transcript: Transcript
    summary: Summary | None
    files: list[Path]
    timings: dict[str, float]
    refused: list[str]
    shredded: ShredReport | None = None
    isolation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "duration": round(self.transcript.duration, 3),
            "segments": len(self.transcript.segments),
            "speakers": self.transcript.speakers,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "isolation": self.isolation,
            "network_refused": self.refused,
            "summary": self.summary.method if self.summary else None,
            "audio_deleted": None
            if self.shredded is None
            else {"path": self.shredded.path, "filesystem": self.shredded.filesystem, "caveat": self.shredded.caveat},
        }


def isolation_facts(child: dict[str, Any]) -> dict[str, Any]:
    """The ``isolation`` record of meeting.json: which layer was active where, and why one was not."""
    keep = ("network_namespace", "namespace_method", "reason", "interfaces", "capabilities_dropped")
    facts: dict[str, Any] = {"separate_process": True, **{k: child.get(k) for k in keep}}
    facts["syscall_filter"] = child.get("syscall_filter")
    facts["syscall_filter_reason"] = child.get("syscall_filter_reason")
    facts["python_guard"] = child.get("python_guard")
    facts["parent_python_guard"] = True
    facts["child_environment"] = child.get("environment")
    return facts


def describe_isolation(facts: dict[str, Any]) -> str:
    """One line for a person: which layers held the speech process during the run."""
    if facts.get("network_namespace"):
        netns = "network namespace on (loopback only)"
    else:
        netns = f"network namespace OFF ({facts.get('reason')})"
    seccomp = "syscall filter on (no sockets)" if facts.get("syscall_filter") else "syscall filter OFF"
    caps = "capabilities dropped" if facts.get("capabilities_dropped") else "capabilities NOT dropped"
    guard = "Python guard on" if facts.get("python_guard") else "Python guard OFF in the speech process"
    return f"isolation: speech process in its own process; {netns}; {seccomp}; {caps}; {guard}; parent guarded"


def transcribe_meeting(
    audio_path: Path,
    out_dir: Path,
    provider: KeyProvider | None,
    options: MeetingOptions | None = None,
    *,
    stage: Stage | None = None,
    on_refusal: Callable[[str], None] | None = None,
    on_progress: Callable[[float, float], None] | None = None,
) -> MeetingResult:
    """Run the whole pipeline (speech isolated, the rest guarded); the audio is deleted only after outputs are safe.

    ``stage`` hears each step's name, ``on_refusal`` each refused attempt (in either process),
    ``on_progress`` (seconds done, seconds total) the speech model's progress.
    """
    opts = options or MeetingOptions()
    say: Stage = stage or (lambda name: None)
    check_source(audio_path)
    check_model_dir(opts.transcribe.model_dir or default_model_dir())
    check_out_dir(out_dir)

    with network_guard(on_refusal) as guard:
        say("starting the isolated speech process")
        speech = run_speech(
            audio_path,
            SpeechRequest(opts.transcribe, opts.diarizer, opts.num_speakers),
            opts.isolation,
            on_stage=say,
            on_progress=on_progress,
            on_refusal=on_refusal,
        )
        timings = dict(speech.timings)
        t = time.perf_counter()

        def timed(name: str, start: float) -> float:
            now = time.perf_counter()
            timings[name] = now - start
            return now

        transcript = Transcript(
            segments=speech.segments,
            duration=speech.duration,
            language=str(speech.facts.get("language")),
            model=str(speech.facts.get("model")),
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
        isolation = isolation_facts(speech.isolation)
        refused = speech.refused + guard.refused
        facts_doc = {
            "audio": {"name": audio_path.name, "container": speech.container, "duration": round(speech.duration, 3)},
            "speech": speech.facts,
            "diarizer": transcript.diarizer,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "isolation": isolation,
            "network_guard": {"active": True, "refused": list(refused)},
        }
        files["meeting.json"] = (json.dumps(facts_doc, indent=2) + "\n").encode()
        written = write_outputs(out_dir, files, provider, plaintext=opts.plaintext)
        t = timed("write", t)
        shredded = None
        if opts.delete_audio:
            say("deleting source audio")
            shredded = shred(audio_path)
            timed("delete_audio", t)
        return MeetingResult(transcript, summary, written, timings, speech.refused + guard.refused, shredded, isolation)
