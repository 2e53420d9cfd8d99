"""``strongroom meetings transcribe | show`` as a user runs them, in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import srt

from .conftest import CLI, Meeting


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def test_transcribe_sealed_then_show(
    tmp_path: Path, short_meeting: Meeting, cli_env: dict[str, str], cli_keys: Path
) -> None:
    audio = tmp_path / "call.wav"
    shutil.copyfile(short_meeting.path, audio)
    out = tmp_path / "call"
    run = _run(
        ["meetings", "transcribe", str(audio), "--out", str(out), "--keys", str(cli_keys), "--speakers", "2",
         "--summary", "--delete-audio", "--speaker-name", "SPEAKER_00=Arthur", "--threads", "2", "--json"],
        cli_env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["speakers"] == ["SPEAKER_00", "SPEAKER_01"] and result["network_refused"] == []
    assert result["isolation"]["network_namespace"] is True and result["isolation"]["syscall_filter"] is True
    assert "STRONGROOM_PASSPHRASE" not in result["isolation"]["child_environment"]
    assert result["audio_deleted"]["path"] == str(audio) and not audio.exists()
    assert all(name.endswith(".sealed") for name in (p.name for p in out.iterdir()))

    shown = _run(["meetings", "show", str(out), "--keys", str(cli_keys), "--format", "srt"], cli_env)
    assert shown.returncode == 0, shown.stderr
    cues = list(srt.parse(shown.stdout))
    assert cues and cues[0].content.startswith("[Arthur]: ")
    renamed = _run(
        ["meetings", "show", str(out), "--keys", str(cli_keys), "--format", "json", "--speaker-name", "SPEAKER_01=Bea"],
        cli_env,
    )
    assert json.loads(renamed.stdout)["speakers"] == {"SPEAKER_00": "Arthur", "SPEAKER_01": "Bea"}
    summary = _run(["meetings", "show", str(out), "--keys", str(cli_keys), "--summary"], cli_env)
    assert summary.returncode == 0 and "## Action items" in summary.stdout

    env = dict(cli_env, STRONGROOM_PASSPHRASE="wrong passphrase")
    denied = _run(["meetings", "show", str(out), "--keys", str(cli_keys)], env)
    assert denied.returncode == 1 and denied.stderr.startswith("error: ")


def test_plaintext_only_when_asked(tmp_path: Path, short_meeting: Meeting, cli_env: dict[str, str]) -> None:
    out = tmp_path / "plain"
    run = _run(
        ["meetings", "transcribe", str(short_meeting.path), "--out", str(out), "--plaintext", "--diarizer", "none"],
        cli_env,
    )
    assert run.returncode == 0, run.stderr
    assert "PLAINTEXT" in run.stdout and "network guard: on" in run.stderr
    printed = " ".join(run.stdout.split())
    assert "isolation: speech process in its own process; network namespace on (loopback only); syscall filter on" in (
        printed
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["transcript.txt", "transcript.srt", "transcript.vtt", "transcript.json", "meeting.json"]
    )
    assert "failed early in the morning" in (out / "transcript.txt").read_text().lower()
    assert short_meeting.path.exists(), "the audio is kept unless --delete-audio is given"
    shown = _run(["meetings", "show", str(out), "--format", "vtt"], cli_env)
    assert shown.returncode == 0 and shown.stdout.startswith("WEBVTT")
    again = _run(["meetings", "transcribe", str(short_meeting.path), "--out", str(out), "--plaintext"], cli_env)
    assert again.returncode == 1 and "already exists" in again.stderr
