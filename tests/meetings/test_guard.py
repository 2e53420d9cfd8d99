"""The network guard: non-loopback connections, datagrams and DNS lookups are refused before any packet."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from strongroom.meetings import guard as guard_module
from strongroom.meetings.audio import Audio
from strongroom.meetings.errors import EgressBlockedError
from strongroom.meetings.guard import OFFLINE_ENV, guard_active, is_loopback_host, network_guard
from strongroom.meetings.pipeline import MeetingOptions, transcribe_meeting
from strongroom.meetings.transcribe import Segment, Transcriber

from .conftest import CLI, Meeting

TEST_NET = "192.0.2.1"  # RFC 5737 TEST-NET-1: documentation only, never routed


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def connect_spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records every address that reaches the real connect(2); refused ones must never appear."""
    reached: list[Any] = []
    real = guard_module._real_connect

    def spy(sock: socket.socket, address: Any) -> None:
        reached.append(address)
        return real(sock, address)

    monkeypatch.setattr(guard_module, "_real_connect", spy)
    return reached


def test_non_loopback_connect_is_refused_before_the_system_call(connect_spy: list[Any], loopback_server: int) -> None:
    heard: list[str] = []
    with network_guard(heard.append) as report:
        with pytest.raises(EgressBlockedError, match=r"192\.0\.2\.1:80.*only loopback"):
            socket.create_connection((TEST_NET, 80), timeout=0.5)
        with socket.create_connection(("127.0.0.1", loopback_server), timeout=5) as ok:
            ok.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := ok.recv(1024):  # HTTP/1.0: the server closes after the body
                reply += chunk
            assert b"hello" in reply
    assert connect_spy == [("127.0.0.1", loopback_server)]
    assert report.refused == [f"connection to {TEST_NET}:80"]
    assert len(heard) == 1 and TEST_NET in heard[0]


def test_every_egress_path_is_refused(connect_spy: list[Any]) -> None:
    with network_guard() as report:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, pytest.raises(EgressBlockedError):
            tcp.connect_ex((TEST_NET, 443))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(EgressBlockedError):
                udp.sendto(b"x", (TEST_NET, 53))
            with pytest.raises(EgressBlockedError):
                udp.sendto(b"x", 0, (TEST_NET, 53))
            with pytest.raises(EgressBlockedError):
                udp.sendmsg([b"x"], [], 0, (TEST_NET, 53))
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as v6:
            with pytest.raises(EgressBlockedError):
                v6.connect(("2001:db8::1", 80, 0, 0))  # RFC 3849 documentation prefix
            with pytest.raises(EgressBlockedError):
                v6.connect((f"::ffff:{TEST_NET}", 80, 0, 0))
        with pytest.raises(EgressBlockedError, match=r"name lookup of 'example\.com'"):
            socket.getaddrinfo("example.com", 443)
        with pytest.raises(EgressBlockedError):
            socket.create_connection(("example.com", 80), timeout=0.5)
    assert connect_spy == []
    assert len(report.refused) == 8


def test_loopback_names_and_local_sockets_stay_allowed(tmp_path: Path) -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.5.6.7") and is_loopback_host("::1")
    assert is_loopback_host("[::1]") and is_loopback_host("localhost") and is_loopback_host("::ffff:127.0.0.1")
    for outside in (TEST_NET, "10.0.0.1", "0.0.0.0", "2001:db8::1", "example.com", "127.0.0.1.example.com"):
        assert not is_loopback_host(outside)
    with network_guard() as report:
        assert socket.getaddrinfo("localhost", 80)
        assert socket.getaddrinfo("127.0.0.1", 80)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp_path / "s"))
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "s"))
        server.close()
    assert report.refused == []


def test_guard_sets_offline_switches_and_restores_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    import huggingface_hub.constants as hub

    before = (socket.socket.connect, socket.getaddrinfo, hub.HF_HUB_OFFLINE)
    with network_guard():
        with network_guard():  # nesting keeps the outer guard in force
            pass
        assert guard_active()
        assert all(os.environ[k] == v for k, v in OFFLINE_ENV.items())
        assert hub.HF_HUB_OFFLINE is True
        assert socket.socket.connect is not before[0]
    assert not guard_active()
    assert (socket.socket.connect, socket.getaddrinfo, hub.HF_HUB_OFFLINE) == before
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"


class PhoneHomeDiarizer:
    """A diarization backend that tries to reach a server off the machine (as a careless plugin might)."""

    name = "phone-home"

    def __init__(self, swallow: bool) -> None:
        self.swallow = swallow

    def diarize(self, audio: Audio, segments: list[Segment], num_speakers: int | None) -> list[Any]:
        try:
            socket.create_connection((TEST_NET, 443), timeout=0.5)
        except EgressBlockedError:
            if not self.swallow:
                raise
        return []


def test_a_run_that_tries_to_phone_home_fails_and_keeps_the_audio(
    tmp_path: Path, short_meeting: Meeting, keyring: Any, transcriber: Transcriber, connect_spy: list[Any]
) -> None:
    audio = tmp_path / "a.wav"
    shutil.copyfile(short_meeting.path, audio)
    heard: list[str] = []
    options = MeetingOptions(diarizer=PhoneHomeDiarizer(swallow=False), delete_audio=True)
    with pytest.raises(EgressBlockedError, match=r"192\.0\.2\.1:443"):
        transcribe_meeting(audio, tmp_path / "out", keyring, options, transcriber=transcriber, on_refusal=heard.append)
    assert heard and TEST_NET in heard[0]
    assert audio.exists() and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
    assert connect_spy == []
    assert not guard_active()


def test_a_swallowed_attempt_is_still_reported(
    tmp_path: Path, short_meeting: Meeting, keyring: Any, transcriber: Transcriber
) -> None:
    options = MeetingOptions(diarizer=PhoneHomeDiarizer(swallow=True))
    result = transcribe_meeting(short_meeting.path, tmp_path / "out", keyring, options, transcriber=transcriber)
    assert result.refused == [f"connection to {TEST_NET}:443"]
    from strongroom.seal import open_blob

    facts = open_blob(tmp_path / "out" / "meeting.json.sealed", keyring)
    assert TEST_NET.encode() in facts


def test_cli_refuses_a_summary_endpoint_off_the_machine(
    tmp_path: Path, short_meeting: Meeting, cli_env: dict[str, str], cli_keys: Path
) -> None:
    run = subprocess.run(
        [*CLI, "meetings", "transcribe", str(short_meeting.path), "--out", str(tmp_path / "o"), "--keys", str(cli_keys),
         "--llm-url", f"http://{TEST_NET}:8080/v1"],
        env=cli_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "not loopback" in run.stderr
    assert not (tmp_path / "o").exists()


def test_pyannote_backend_is_local_only(tmp_path: Path) -> None:
    from strongroom.meetings.diarize import PyannoteDiarizer
    from strongroom.meetings.errors import DiarizationError, ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not a local pyannote pipeline"):
        PyannoteDiarizer(tmp_path / "no-such-pipeline")
    (tmp_path / "config.yaml").write_text("pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n")
    with pytest.raises((DiarizationError, ModelNotFoundError)):
        PyannoteDiarizer(tmp_path)  # without pyannote installed, or with this incomplete pipeline
