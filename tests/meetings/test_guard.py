"""The Python guard (audit hook), in this process: every egress path refused and recorded before the syscall.

Each test that aims off the machine runs in a test-owned network namespace (``probe``, netlab.py): the
"remote" address and the resolver's address are the test's own listeners there, so a positive control
shows that the attempt *would* arrive, and the counts after a refusal show that nothing did.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from strongroom.meetings.audio import Audio
from strongroom.meetings.errors import EgressBlockedError
from strongroom.meetings.guard import (
    OFFLINE_ENV,
    guard_active,
    is_loopback_host,
    network_guard,
    permit_child_process,
)
from strongroom.meetings.pipeline import MeetingOptions, transcribe_meeting
from strongroom.meetings.transcribe import Segment

from .conftest import CLI, SPEECH, Meeting
from .netlab import CONNECT_SNIPPET, REMOTE, ProbeNet

TEST_NET = "192.0.2.1"  # RFC 5737 TEST-NET-1: only ever aimed at where the guard refuses before any syscall


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


def test_non_loopback_connect_is_refused_before_the_system_call(probe: ProbeNet, loopback_server: int) -> None:
    socket.create_connection((REMOTE, probe.remote_port), timeout=2).close()  # control: it would arrive
    assert probe.wait_for(1, 0) == (1, 0)
    heard: list[str] = []
    with network_guard(heard.append) as report:
        with pytest.raises(EgressBlockedError, match=rf"{REMOTE}:{probe.remote_port}.*only loopback"):
            socket.create_connection((REMOTE, probe.remote_port), timeout=2)
        with socket.create_connection(("127.0.0.1", loopback_server), timeout=5) as ok:
            ok.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            for _ in range(100):  # HTTP/1.0: the server closes after the body
                chunk = ok.recv(1024)
                if not chunk:
                    break
                reply += chunk
            assert b"hello" in reply
    assert probe.snapshot() == (1, 0), "a refused connection reached the listener"
    assert report.refused == [f"connection to {REMOTE}:{probe.remote_port}"]
    assert len(heard) == 1 and REMOTE in heard[0]


def test_every_network_path_is_refused(probe: ProbeNet) -> None:
    import _socket

    port = probe.remote_port
    with network_guard() as report:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, pytest.raises(EgressBlockedError):
            tcp.connect_ex((REMOTE, port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(EgressBlockedError):
                udp.sendto(b"x", (REMOTE, 53))
            with pytest.raises(EgressBlockedError):
                udp.sendto(b"x", 0, (REMOTE, 53))
            with pytest.raises(EgressBlockedError):
                udp.sendmsg([b"x"], [], 0, (REMOTE, 53))
            with pytest.raises(EgressBlockedError, match="bind to"):
                udp.bind((REMOTE, 0))
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as v6:
            with pytest.raises(EgressBlockedError):
                v6.connect(("2001:db8::1", 80, 0, 0))  # RFC 3849 documentation prefix
            with pytest.raises(EgressBlockedError):
                v6.connect((f"::ffff:{REMOTE}", port, 0, 0))
        # The C-level class, which socket.socket subclasses, and its unbound method on a Python socket.
        raw = _socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(EgressBlockedError):
            raw.connect((REMOTE, port))
        raw.close()
        with socket.socket() as sock, pytest.raises(EgressBlockedError):
            _socket.socket.connect(sock, (REMOTE, port))
        with socket.socket() as sock, pytest.raises(EgressBlockedError):
            socket.socket.__mro__[1].connect_ex(sock, (REMOTE, port))  # type: ignore[attr-defined]
        # Name lookups that could send a DNS query, and reverse lookups off the machine.
        with pytest.raises(EgressBlockedError, match=r"name lookup of 'example\.com'"):
            socket.getaddrinfo("example.com", 443)
        with pytest.raises(EgressBlockedError):
            socket.create_connection(("example.com", 80), timeout=0.5)
        with pytest.raises(EgressBlockedError):
            socket.gethostbyname("example.com")
        with pytest.raises(EgressBlockedError):
            socket.gethostbyname_ex("example.com")
        with pytest.raises(EgressBlockedError):
            _socket.gethostbyname("example.com")
        with pytest.raises(EgressBlockedError, match="reverse lookup"):
            socket.gethostbyaddr(REMOTE)
        with pytest.raises(EgressBlockedError, match="reverse lookup"):
            socket.getnameinfo((REMOTE, 80), 0)
        # Sockets that send without an address check.
        with pytest.raises(EgressBlockedError, match="packet socket"):
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with pytest.raises(EgressBlockedError, match="raw IP socket"):
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    assert len(report.refused) == 19, report.refused
    assert probe.wait_for(0, 0, timeout=0.3) == (0, 0), "something reached the listener or the DNS server"
    socket.gethostbyname_ex("localhost")  # control, after the guard: allowed again, answered from /etc/hosts
    with pytest.raises(socket.gaierror):
        socket.gethostbyname("example.com")  # control: without the guard a query goes out, to our fake DNS
    assert probe.wait_for(0, 1)[1] >= 1 and "example.com" in probe.queries


def test_process_starts_are_refused(tmp_path: Path) -> None:
    import _posixsubprocess
    import multiprocessing.util

    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    with network_guard() as report:
        with pytest.raises(EgressBlockedError, match="start of a child process"):
            subprocess.run(command, check=False, timeout=30)
        with pytest.raises(EgressBlockedError):
            subprocess.check_output(["true"])
        with pytest.raises(EgressBlockedError):
            os.system(f"touch {marker}")
        with pytest.raises(EgressBlockedError):
            os.popen(f"touch {marker}")
        with pytest.raises(EgressBlockedError):
            os.posix_spawn(sys.executable, command, dict(os.environ))
        with pytest.raises(EgressBlockedError):
            os.posix_spawnp("true", ["true"], dict(os.environ))
        with pytest.raises(EgressBlockedError, match=r"os\.fork"):
            os.fork()
        with pytest.raises(EgressBlockedError):
            os.execv(sys.executable, command)  # refused before exec: this test process survives
        with pytest.raises(EgressBlockedError):
            os.spawnv(os.P_WAIT, sys.executable, command)
        with pytest.raises(EgressBlockedError):
            multiprocessing.util.spawnv_passfds(sys.executable, command, [])
        assert _posixsubprocess.fork_exec is not subprocess._fork_exec  # type: ignore[attr-defined]
        with permit_child_process():  # exactly one start, for the speech process
            assert subprocess.run(["true"], check=False, timeout=30).returncode == 0
            with pytest.raises(EgressBlockedError):
                subprocess.run(["true"], check=False, timeout=30)
    assert len(report.refused) == 11, report.refused
    assert not marker.exists()
    assert _posixsubprocess.fork_exec is subprocess._fork_exec  # type: ignore[attr-defined]
    assert subprocess.run(["true"], check=False, timeout=30).returncode == 0


def _libc_address(libc: ctypes.CDLL, name: str) -> int:
    return int(ctypes.cast(getattr(libc, name), ctypes.c_void_p).value or 0)


def test_native_lookups_are_refused_but_a_pointer_resolved_earlier_is_not(probe: ProbeNet) -> None:
    """The ctypes tripwire, and the limit stated in guard.py: native code below Python is not covered.

    The speech process covers this gap in the kernel (tests in test_isolation.py); here, in the parent,
    only the Python guard exists, and the test shows exactly how far it reaches.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    early_socket = libc.socket  # resolved before the guard, as hostile code could arrange
    early_connect = libc.connect
    with network_guard() as report:
        with pytest.raises(EgressBlockedError, match=r"native lookup of connect\(\)"):
            _ = ctypes.CDLL(None).connect
        with pytest.raises(EgressBlockedError, match=r"native lookup of getaddrinfo\(\)"):
            _ = ctypes.CDLL(None)["getaddrinfo"]
        with pytest.raises(EgressBlockedError, match=r"native lookup of system\(\)"):
            _ = ctypes.CDLL("libc.so.6").system
        fd = early_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        assert fd >= 0
        addr = struct.pack("=H", socket.AF_INET) + struct.pack(">H", probe.remote_port) + socket.inet_aton(REMOTE)
        buf = ctypes.create_string_buffer(addr + bytes(8), 16)
        connected = early_connect(fd, buf, 16)
        os.close(fd)
    assert report.refused == [
        "native lookup of connect() through ctypes",
        "native lookup of getaddrinfo() through ctypes",
        "native lookup of system() through ctypes",
    ]
    assert connected == 0 and probe.wait_for(1, 0) == (1, 0), "the documented gap: in-process, this gets out"


def test_loopback_names_and_local_sockets_stay_allowed(tmp_path: Path) -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("127.5.6.7") and is_loopback_host("::1")
    assert is_loopback_host("[::1]") and is_loopback_host("localhost") and is_loopback_host("::ffff:127.0.0.1")
    for outside in (TEST_NET, "10.0.0.1", "0.0.0.0", "2001:db8::1", "example.com", "127.0.0.1.example.com"):
        assert not is_loopback_host(outside)
    with network_guard() as report:
        assert socket.getaddrinfo("localhost", 80)
        assert socket.getaddrinfo("127.0.0.1", 80)
        assert socket.gethostbyname("127.0.0.1") == "127.0.0.1"
        assert socket.gethostbyname("localhost")
        assert socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp_path / "s"))
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "s"))
        server.close()
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
    assert report.refused == []


def test_the_speech_process_setting_refuses_every_socket(tmp_path: Path) -> None:
    with network_guard(sockets=False) as report:
        with pytest.raises(EgressBlockedError, match="creation of a socket"):
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(EgressBlockedError, match="creation of a socket"):
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with network_guard(), pytest.raises(EgressBlockedError):  # a nested, ordinary guard does not loosen it
            socket.socket()
    assert len(report.refused) == 3
    with network_guard():
        socket.socket().close()  # the ordinary guard allows sockets (only their destinations are checked)


def test_guard_sets_offline_switches_and_restores_everything(monkeypatch: pytest.MonkeyPatch, probe: ProbeNet) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    import huggingface_hub.constants as hub

    before = hub.HF_HUB_OFFLINE
    with network_guard():
        with network_guard():  # nesting keeps the outer guard in force
            pass
        assert guard_active()
        assert all(os.environ[k] == v for k, v in OFFLINE_ENV.items())
        assert hub.HF_HUB_OFFLINE is True
        with pytest.raises(EgressBlockedError):
            socket.create_connection((REMOTE, probe.remote_port), timeout=2)
    assert not guard_active()
    assert before is hub.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    socket.create_connection((REMOTE, probe.remote_port), timeout=2).close()  # the hook is inert again
    assert probe.wait_for(1, 0) == (1, 0)


class PhoneHomeDiarizer:
    """A diarization backend that tries to reach a server off the machine (as a careless plugin might)."""

    name = "phone-home"

    def __init__(self, swallow: bool, port: int) -> None:
        self.swallow = swallow
        self.port = port

    def diarize(self, audio: Audio, segments: list[Segment], num_speakers: int | None) -> list[Any]:
        try:
            socket.create_connection((REMOTE, self.port), timeout=0.5)
        except EgressBlockedError:
            if not self.swallow:
                raise
        return []


def test_a_run_that_tries_to_phone_home_fails_and_keeps_the_audio(
    tmp_path: Path, one_turn: Meeting, keyring: Any, probe: ProbeNet
) -> None:
    audio = tmp_path / "a.wav"
    shutil.copyfile(one_turn.path, audio)
    heard: list[str] = []
    options = MeetingOptions(
        transcribe=SPEECH, diarizer=PhoneHomeDiarizer(swallow=False, port=probe.remote_port), delete_audio=True
    )
    with pytest.raises(EgressBlockedError, match=r"creation of a socket"):
        transcribe_meeting(audio, tmp_path / "out", keyring, options, on_refusal=heard.append)
    assert heard and "creation of a socket" in heard[0]
    assert audio.exists() and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
    assert probe.snapshot() == (0, 0)
    assert not guard_active()


def test_a_swallowed_attempt_is_still_reported(
    tmp_path: Path, one_turn: Meeting, keyring: Any, probe: ProbeNet
) -> None:
    options = MeetingOptions(transcribe=SPEECH, diarizer=PhoneHomeDiarizer(swallow=True, port=probe.remote_port))
    result = transcribe_meeting(one_turn.path, tmp_path / "out", keyring, options)
    assert result.refused == ["creation of a socket (family 2): this process needs none"]
    from strongroom.seal import open_blob

    facts = open_blob(tmp_path / "out" / "meeting.json.sealed", keyring)
    assert b"creation of a socket" in facts
    assert probe.snapshot() == (0, 0)


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


def test_connect_snippet_is_a_real_positive_control(probe: ProbeNet) -> None:
    """The child-process attack used in test_isolation.py does reach the listener when nothing stops it."""
    run = subprocess.run(
        [sys.executable, "-c", CONNECT_SNIPPET, REMOTE, str(probe.remote_port)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert run.stdout.strip() == "CONNECTED" and probe.wait_for(1, 0) == (1, 0)
