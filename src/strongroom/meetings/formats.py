"""The transcript as data and its renderings: txt, srt, vtt and json, with speaker labels mapped to names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from strongroom.meetings.errors import OutputError
from strongroom.meetings.transcribe import Segment, Word

Format = Literal["txt", "srt", "vtt", "json"]
FORMATS: tuple[Format, ...] = ("txt", "srt", "vtt", "json")
JSON_FORMAT = "strongroom.meeting-transcript"
JSON_VERSION = 1


@dataclass
class Transcript:
    """Everything a run learned: segments with words, times and speakers, plus facts about the run."""

    segments: list[Segment]
    duration: float
    language: str
    model: str
    diarizer: str
    speaker_names: dict[str, str] = field(default_factory=dict)

    @property
    def speakers(self) -> list[str]:
        """Speaker labels in order of first appearance."""
        seen: dict[str, None] = {}
        for segment in self.segments:
            if segment.speaker is not None:
                seen.setdefault(segment.speaker, None)
        return list(seen)

    def display(self, label: str | None) -> str | None:
        """The name mapped to ``label``, else the label itself."""
        return None if label is None else self.speaker_names.get(label, label)

    def with_names(self, names: dict[str, str]) -> Transcript:
        """A copy whose speaker-name map also holds ``names`` (later mappings win)."""
        return Transcript(
            self.segments, self.duration, self.language, self.model, self.diarizer, {**self.speaker_names, **names}
        )


def parse_speaker_names(pairs: list[str]) -> dict[str, str]:
    """``["SPEAKER_00=Alice", ...]`` as a dict; a malformed pair is an error naming it."""
    names = {}
    for pair in pairs:
        label, sep, name = pair.partition("=")
        if not sep or not label.strip() or not name.strip():
            raise OutputError(f"speaker name {pair!r}: write LABEL=NAME, e.g. SPEAKER_00=Alice")
        names[label.strip()] = name.strip()
    return names


def clock(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (or with a comma, as SRT wants)."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def to_txt(t: Transcript) -> str:
    """One line per segment: ``[start - end] SPEAKER: text``."""
    lines = []
    for s in t.segments:
        who = f"{t.display(s.speaker)}: " if s.speaker else ""
        lines.append(f"[{clock(s.start)} - {clock(s.end)}] {who}{s.text}")
    return "\n".join(lines) + "\n"


def to_srt(t: Transcript) -> str:
    """SubRip: numbered cues, comma milliseconds, ``[SPEAKER]: text``."""
    cues = []
    for index, s in enumerate(t.segments, 1):
        who = f"[{t.display(s.speaker)}]: " if s.speaker else ""
        cues.append(f"{index}\n{clock(s.start, ',')} --> {clock(_end(s), ',')}\n{who}{s.text}\n")
    return "\n".join(cues)


def to_vtt(t: Transcript) -> str:
    """WebVTT with voice spans (``<v Speaker>``) naming who speaks."""
    cues = ["WEBVTT\n"]
    for s in t.segments:
        text = _vtt_escape(s.text)
        body = f"<v {_vtt_escape(t.display(s.speaker) or '')}>{text}" if s.speaker else text
        cues.append(f"{clock(s.start)} --> {clock(_end(s))}\n{body}\n")
    return "\n".join(cues)


def to_dict(t: Transcript) -> dict[str, Any]:
    """The JSON document: run facts, the speaker map, and segments with their words."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "language": t.language,
        "duration": round(t.duration, 3),
        "model": t.model,
        "diarizer": t.diarizer,
        "speakers": {label: t.display(label) for label in t.speakers},
        "segments": [
            {
                "id": index,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "speaker": s.speaker,
                "speaker_name": t.display(s.speaker),
                "text": s.text,
                "words": [
                    {
                        "start": round(w.start, 3),
                        "end": round(w.end, 3),
                        "word": w.text.strip(),
                        "probability": round(w.probability, 4),
                        "speaker": w.speaker,
                    }
                    for w in s.words
                ],
            }
            for index, s in enumerate(t.segments)
        ],
    }


def to_json(t: Transcript) -> str:
    """``to_dict`` as indented JSON text."""
    return json.dumps(to_dict(t), indent=2, ensure_ascii=False) + "\n"


def from_json(text: str | bytes, source: str = "transcript.json") -> Transcript:
    """Parse a transcript written by ``to_json``; a malformed document is an error naming the field."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise OutputError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise OutputError(f"{source}: not a Strongroom meeting transcript (field 'format')")
    if doc.get("version") != JSON_VERSION:
        raise OutputError(f"{source}: unsupported transcript version {doc.get('version')!r}")
    try:
        segments = [
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]),
                speaker=s.get("speaker"),
                words=[
                    Word(
                        float(w["start"]),
                        float(w["end"]),
                        " " + str(w["word"]),
                        float(w["probability"]),
                        w.get("speaker"),
                    )
                    for w in s.get("words", [])
                ],
            )
            for s in doc["segments"]
        ]
        names = {k: str(v) for k, v in doc.get("speakers", {}).items() if v is not None and v != k}
        return Transcript(
            segments, float(doc["duration"]), str(doc["language"]), str(doc["model"]), str(doc["diarizer"]), names
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputError(f"{source}: malformed transcript field: {exc}") from None


def _word(w: dict[str, Any]) -> Word:
    return Word(float(w["start"]), float(w["end"]), " " + str(w["word"]), float(w["probability"]), w.get("speaker"))


def render(t: Transcript, fmt: Format) -> str:
    """The transcript in one of FORMATS."""
    renderers = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}
    if fmt not in renderers:
        raise OutputError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](t)


def _end(s: Segment) -> float:
    """A cue end strictly after its start (subtitle parsers reject empty cues)."""
    return max(s.end, s.start + 0.001)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "--&gt;")
