"""Fixtures for the meetings tests: espeak-ng meetings, the bundled speech model, a CLI keyring."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from strongroom.keys import LocalKeyring
from strongroom.meetings.pipeline import MeetingOptions, MeetingResult, transcribe_meeting
from strongroom.meetings.transcribe import TranscribeOptions

from .netlab import ProbeNet, probe_net
from .speech import SCRIPT, make_meeting

SRC = Path(__file__).resolve().parents[2] / "src"
TEST_PASSPHRASE = "correct horse battery staple"  # the same as the top-level keyring fixture's
TEST_SCRYPT_N = 2**12
# The speech model as the tests run it: CPU, two threads (the speech process loads it for each run).
SPEECH = TranscribeOptions(device="cpu", cpu_threads=2)


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
def one_turn(tmp_path_factory: pytest.TempPathFactory) -> Meeting:
    """One turn (~5 s): the cheapest real speech, for runs that test isolation rather than accuracy."""
    path = tmp_path_factory.mktemp("audio") / "one-turn.wav"
    return Meeting(path, make_meeting(path, SCRIPT[:1]))


@pytest.fixture
def probe() -> Iterator[ProbeNet]:
    """A test-owned network namespace for this thread: a 'remote' listener and a fake DNS server (netlab.py)."""
    with probe_net() as net:
        yield net


@pytest.fixture(scope="session")
def sealed_run(
    tmp_path_factory: pytest.TempPathFactory, meeting: Meeting, keyring: LocalKeyring
) -> tuple[MeetingResult, Path, Path]:
    """The whole pipeline once on a copy of the meeting: sealed, auto speaker count, summary, delete audio."""
    work = tmp_path_factory.mktemp("run")
    audio = work / "meeting-copy.wav"
    shutil.copyfile(meeting.path, audio)
    out = work / "out"
    options = MeetingOptions(
        transcribe=SPEECH, summary=True, delete_audio=True, speaker_names={"SPEAKER_01": "Beatrice"}
    )
    result = transcribe_meeting(audio, out, keyring, options)
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


class ChatServer(ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions shape."""

    requests: list[dict[str, Any]]
    redirect: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body})
        if self.server.redirect:
            self.send_response(302)
            self.send_header("Location", "http://192.0.2.1/v1/chat/completions")
            self.end_headers()
            return
        user = body["messages"][-1]["content"]
        answer = {"choices": [{"message": {"role": "assistant", "content": f"summary of {len(user)} chars"}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
