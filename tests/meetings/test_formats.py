"""Renderings: clock formats, speaker-name mapping, escaping, and strict JSON parsing."""

from __future__ import annotations

import html
import io
import json

import pytest
import srt
import webvtt

from strongroom.meetings.errors import OutputError
from strongroom.meetings.formats import Transcript, clock, from_json, parse_speaker_names, render, to_json
from strongroom.meetings.transcribe import Segment, Word


def _transcript() -> Transcript:
    words = [Word(3661.5, 3661.9, " Ship", 0.9, "SPEAKER_00"), Word(3662.0, 3662.4, " <it>", 0.8, "SPEAKER_00")]
    segments = [
        Segment(3661.5, 3662.4, "Ship <it> --> now & then", words, "SPEAKER_00"),
        Segment(3663.0, 3663.0, "Zero length.", [], "SPEAKER_01"),
    ]
    return Transcript(segments, 3700.0, "en", "tiny.en", "features", {"SPEAKER_01": "Dr. Who"})


def test_clock() -> None:
    assert clock(3661.5) == "01:01:01.500"
    assert clock(3661.5, ",") == "01:01:01,500"
    assert clock(-1) == "00:00:00.000"


def test_renderings_parse_and_escape() -> None:
    t = _transcript()
    cues = list(srt.parse(render(t, "srt")))
    assert [c.content for c in cues] == ["[SPEAKER_00]: Ship <it> --> now & then", "[Dr. Who]: Zero length."]
    assert cues[1].end > cues[1].start
    captions = webvtt.from_buffer(io.StringIO(render(t, "vtt")))
    assert [c.voice for c in captions] == ["SPEAKER_00", "Dr. Who"]
    assert html.unescape(captions[0].text) == "Ship <it> --> now & then"
    assert "<it>" not in captions[0].text, "cue text must be escaped"
    assert render(t, "txt").splitlines()[1] == "[01:01:03.000 - 01:01:03.000] Dr. Who: Zero length."
    with pytest.raises(OutputError, match="format 'pdf'"):
        render(t, "pdf")  # type: ignore[arg-type]


def test_json_round_trip_and_names() -> None:
    t = _transcript()
    again = from_json(to_json(t))
    assert to_json(again) == to_json(t)
    renamed = again.with_names(parse_speaker_names(["SPEAKER_00=Ada Lovelace"]))
    assert json.loads(to_json(renamed))["speakers"] == {"SPEAKER_00": "Ada Lovelace", "SPEAKER_01": "Dr. Who"}


@pytest.mark.parametrize(
    "doc",
    [
        "not json",
        "[]",
        '{"format": "something-else", "version": 1}',
        '{"format": "strongroom.meeting-transcript", "version": 2}',
        '{"format": "strongroom.meeting-transcript", "version": 1, "segments": [{"start": "x"}]}',
    ],
)
def test_malformed_json_is_refused(doc: str) -> None:
    with pytest.raises(OutputError, match=r"transcript\.json"):
        from_json(doc)


@pytest.mark.parametrize("pair", ["SPEAKER_00", "=Alice", "SPEAKER_00="])
def test_bad_speaker_names(pair: str) -> None:
    with pytest.raises(OutputError, match="LABEL=NAME"):
        parse_speaker_names([pair])
