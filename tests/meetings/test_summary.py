"""Summaries: only a loopback OpenAI-compatible server may see a transcript; long ones are chunked."""

from __future__ import annotations

import pytest

from strongroom.meetings.errors import SummaryEndpointError
from strongroom.meetings.formats import Transcript
from strongroom.meetings.summary import check_endpoint, chunk_lines, extractive_summary, summarize
from strongroom.meetings.transcribe import Segment

from .conftest import ChatServer


def _transcript(lines: list[tuple[str, str]]) -> Transcript:
    segments = [Segment(float(i), float(i) + 0.9, text, [], speaker) for i, (speaker, text) in enumerate(lines)]
    return Transcript(segments, float(len(lines)), "en", "test", "features", {"SPEAKER_00": "Ada"})


MEETING = _transcript(
    [
        ("SPEAKER_00", "Good morning. The storage cluster lost a disk during the nightly backup window."),
        ("SPEAKER_01", "The replication lag grew for several hours before anyone noticed the storage alerts."),
        ("SPEAKER_00", "We decided to replace the failed disk and keep the cluster in read only mode."),
        ("SPEAKER_01", "Dana will rewrite the storage alert rules by Friday."),
        ("SPEAKER_00", "Okay, thanks everyone."),
    ]
)


def test_extractive_summary_finds_decisions_and_actions() -> None:
    summary = extractive_summary(MEETING)
    assert summary.method == "extractive"
    assert [d.text for d in summary.decisions] == [
        "We decided to replace the failed disk and keep the cluster in read only mode."
    ]
    assert [a.text for a in summary.action_items] == ["Dana will rewrite the storage alert rules by Friday."]
    assert summary.decisions[0].speaker == "Ada" and summary.action_items[0].speaker == "SPEAKER_01"
    assert "Okay, thanks everyone." not in [k.text for k in summary.key_points]
    assert "## Key points" in summary.markdown and "[00:00:02.000] Ada: We decided" in summary.markdown


@pytest.mark.parametrize(
    "url",
    [
        "http://192.0.2.1:8080/v1",
        "https://api.example.com/v1",
        "http://10.0.0.5:11434/v1",
        "http://127.0.0.1@192.0.2.1/v1",
        "http://user:pw@127.0.0.1/v1",
        "file:///etc/passwd",
        "http://[2001:db8::1]/v1",
        "http://127.0.0.1.nip.io/v1",
    ],
)
def test_non_loopback_endpoints_are_refused(url: str) -> None:
    with pytest.raises(SummaryEndpointError):
        check_endpoint(url)
    with pytest.raises(SummaryEndpointError):
        summarize(MEETING, url)


def test_loopback_endpoints_are_accepted() -> None:
    assert check_endpoint("http://127.0.0.1:11434/v1/") == "http://127.0.0.1:11434/v1"
    assert check_endpoint("http://localhost:1234/v1") == "http://localhost:1234/v1"
    assert check_endpoint("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_long_transcripts_are_chunked_then_merged(chat_server: ChatServer) -> None:
    long = _transcript(
        [("SPEAKER_00", f"Item {i}: the team reviewed finding number {i} in detail.") for i in range(200)]
    )
    url = f"http://127.0.0.1:{chat_server.server_address[1]}/v1"
    summary = summarize(long, url, model="tiny", chunk_chars=2000)
    assert summary.method == "llm:tiny"
    paths = {r["path"] for r in chat_server.requests}
    assert paths == {"/v1/chat/completions"}
    users = [r["body"]["messages"][-1]["content"] for r in chat_server.requests]
    assert all(len(u) <= 2000 for u in users)
    total = sum(len(f"[00:00:00.000] Ada: {s.text}") + 1 for s in long.segments)
    assert len(users) >= total // 2000 + 1 + 1, "expected several chunks and a merge step"
    assert all(r["body"]["model"] == "tiny" for r in chat_server.requests)
    assert summary.markdown.startswith("summary of ")


def test_unreachable_or_redirecting_endpoint_falls_back(chat_server: ChatServer) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    fallback = summarize(MEETING, f"http://127.0.0.1:{closed_port}/v1")
    assert fallback.method == "extractive" and fallback.note and "unreachable" in fallback.note
    chat_server.redirect = True
    redirected = summarize(MEETING, f"http://127.0.0.1:{chat_server.server_address[1]}/v1")
    assert redirected.method == "extractive" and redirected.note and "redirect" in redirected.note


def test_chunk_lines_respects_the_limit() -> None:
    chunks = chunk_lines(["a" * 5, "b" * 5, "c" * 12, "d"], 10)
    assert chunks == ["a" * 5, "b" * 5, "c" * 10, "cc\nd"]
    assert all(len(c) <= 10 for c in chunks)
