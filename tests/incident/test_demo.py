"""``strongroom demo-incident``: the leak story end to end on a fresh directory, every step evidenced."""

from __future__ import annotations

from pathlib import Path

from strongroom.incident.demo import run_incident_demo


def test_the_leak_story_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
    story = run_incident_demo(tmp_path / "demo", lines.append)
    assert "frozen by incident" in story["freeze_refusal"]
    assert story["timeline_culprit"] == story["leaked_release"] == story["attributed"]
    assert story["audit"]["ok"] and len(story["audit"]["releases"]) == 3
    assert all(r["verified"] for r in story["audit"]["releases"])
    assert [c["step"] for c in story["contained"]] == ["retire-hosts", "suspend-people", "egress-alarm"]
    steps = [s["step"] for s in story["steps"]]
    assert steps == [
        "brief-executive",
        "retire-hosts",
        "suspend-people",
        "egress-alarm",
        "timeline",
        "attribute",
        "rotate",
    ]
    assert Path(story["timeline_html"]).read_text().count(story["leaked_release"]) >= 1
    assert any("lifted the freeze" in line for line in lines)
