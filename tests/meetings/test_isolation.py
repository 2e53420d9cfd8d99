"""The speech process's isolation, proved with hostile code running inside it (``hostile.py``).

Every run starts from a test-owned network namespace (``probe``): a "remote" listener and a fake DNS
server at the resolver's address are reachable from there, so an attempt that got out would be seen.
No test aims anywhere but loopback and those namespaces.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from strongroom.keys import LocalKeyring
from strongroom.meetings import sandbox
from strongroom.meetings.errors import (
    CorruptAudioError,
    EgressBlockedError,
    IsolationError,
    MeetingError,
    UnsupportedAudioError,
)
from strongroom.meetings.isolation import Isolation, _segments, child_environment
from strongroom.meetings.pipeline import MeetingOptions, MeetingResult, transcribe_meeting
from strongroom.seal import open_blob

from .conftest import CLI, SPEECH, ChatServer, Meeting
from .hostile import HostileDiarizer
from .netlab import REMOTE, ProbeNet

SECRET = "not-for-the-speech-process"


def _hostile_run(
    tmp_path: Path, audio: Meeting, probe: ProbeNet, isolation: Isolation, provider: Any = None, **extra: Any
) -> tuple[MeetingResult, dict[str, Any]]:
    report = tmp_path / "attempts.json"
    options = MeetingOptions(
        transcribe=SPEECH,
        diarizer=HostileDiarizer(report, REMOTE, probe.remote_port),
        isolation=isolation,
        plaintext=provider is None,
        **extra,
    )
    result = transcribe_meeting(audio.path, tmp_path / "out", provider, options)
    return result, json.loads(report.read_text())


@pytest.mark.parametrize(
    "isolation",
    [Isolation(), Isolation(network_namespace="off")],
    ids=["namespace-on", "namespace-forced-off"],
)
def test_hostile_code_in_the_speech_process_cannot_leave(
    tmp_path: Path,
    one_turn: Meeting,
    probe: ProbeNet,
    keyring: LocalKeyring,
    chat_server: ChatServer,
    monkeypatch: pytest.MonkeyPatch,
    isolation: Isolation,
) -> None:
    """All layers as shipped: native connect, _socket connect, DNS and a child process all fail, recorded.

    The summary still reaches a model server on the host's loopback: it is asked from the parent.
    """
    monkeypatch.setenv("STRONGROOM_PASSPHRASE", SECRET)
    monkeypatch.setenv("OMP_API_TOKEN", SECRET)  # an allowed prefix, but a secret-looking name
    llm = f"http://127.0.0.1:{chat_server.server_address[1]}/v1"
    result, tried = _hostile_run(tmp_path, one_turn, probe, isolation, keyring, summary=True, llm_url=llm)

    assert probe.wait_for(0, 0, timeout=0.3) == (0, 0), "a connection or DNS query got out"
    assert (
        tried["native_connect"].startswith("EgressBlockedError")
        and "native lookup of socket()" in tried["native_connect"]
    )
    assert tried["c_socket_connect"].startswith("EgressBlockedError")
    assert tried["gethostbyname"].startswith("EgressBlockedError") and "example.com" in tried["gethostbyname"]
    assert tried["gethostbyname_ex"].startswith("EgressBlockedError")
    assert (
        tried["child_process"].startswith("EgressBlockedError") and "start of a child process" in tried["child_process"]
    )
    assert tried["os_system"].startswith("EgressBlockedError")
    assert "errno=13" in tried["parent_environ"], "the speech process read the parent's environment"
    assert "STRONGROOM_PASSPHRASE" not in tried["environment"] and "OMP_API_TOKEN" not in tried["environment"]
    assert result.refused == [
        "native lookup of socket() through ctypes",
        "creation of a socket (family 2): this process needs none",
        "name lookup of 'example.com' (it could send a DNS query)",
        "name lookup of 'example.com' (it could send a DNS query)",
        result.refused[4],
        "start of a child process (true)",
        "creation of a socket (family 2): this process needs none",
    ]
    assert result.refused[4].startswith(f"start of a child process ({sys.executable} -c")

    facts = json.loads(open_blob(tmp_path / "out" / "meeting.json.sealed", keyring))
    layers = facts["isolation"]
    assert layers == result.isolation
    assert layers["separate_process"] and layers["python_guard"] and layers["parent_python_guard"]
    assert layers["syscall_filter"] is True and layers["capabilities_dropped"] is True
    if isolation.network_namespace == "auto":
        assert layers["network_namespace"] is True and layers["interfaces"] == ["lo"]
        assert layers["namespace_method"] == "unshare(CLONE_NEWNET)"  # tests run as root
    else:
        assert layers["network_namespace"] is False and "turned off" in layers["reason"]
    assert facts["network_guard"]["refused"] == result.refused
    assert "STRONGROOM_PASSPHRASE" not in layers["child_environment"]

    summary = json.loads(open_blob(tmp_path / "out" / "summary.json.sealed", keyring))
    assert summary["method"] == "llm:local" and chat_server.requests, "the loopback summary did not run"


def test_the_namespace_alone_holds(tmp_path: Path, one_turn: Meeting, probe: ProbeNet) -> None:
    """Guard and syscall filter off in the speech process: the namespace alone stops every attempt."""
    result, tried = _hostile_run(
        tmp_path, one_turn, probe, Isolation(network_namespace="require", syscall_filter=False, python_guard=False)
    )
    assert probe.wait_for(0, 0, timeout=0.3) == (0, 0)
    unreachable = f"errno={errno.ENETUNREACH}"
    assert tried["native_connect"] == f"connect {unreachable}"
    assert unreachable in tried["c_socket_connect"]
    assert tried["gethostbyname"].startswith("gaierror")  # no route to the resolver: no query left
    assert tried["child_process"].startswith("exit 7: FAILED OSError " + unreachable)  # children inherit it
    assert tried["loopback"] == "LOOPBACK OK", "loopback inside the namespace must be up"
    assert "errno=13" in tried["parent_environ"]
    assert result.refused == []  # nothing in Python was watching: the kernel refused, silently
    assert result.isolation["network_namespace"] is True and result.isolation["python_guard"] is False
    assert result.isolation["syscall_filter"] is False


def test_the_syscall_filter_alone_holds(tmp_path: Path, one_turn: Meeting, probe: ProbeNet) -> None:
    """No namespace, no guard in the speech process: the seccomp filter alone stops every attempt."""
    result, tried = _hostile_run(tmp_path, one_turn, probe, Isolation(network_namespace="off", python_guard=False))
    assert probe.wait_for(0, 0, timeout=0.3) == (0, 0)
    denied = f"errno={errno.EPERM}"
    assert tried["native_connect"] == f"socket {denied}"
    assert tried["c_socket_connect"].startswith(f"PermissionError {denied}")
    assert tried["gethostbyname"].startswith("gaierror")  # the resolver cannot open its socket
    assert tried["child_process"].startswith(f"exit 7: FAILED PermissionError {denied}")  # inherited filter
    assert tried["loopback"].startswith(f"PermissionError {denied}")
    assert result.refused == []
    assert result.isolation["network_namespace"] is False and result.isolation["syscall_filter"] is True


def test_the_python_guard_alone_refuses_and_records(tmp_path: Path, one_turn: Meeting, probe: ProbeNet) -> None:
    """No namespace, no filter: the guard refuses every Python-reachable path and records each."""
    result, tried = _hostile_run(tmp_path, one_turn, probe, Isolation(network_namespace="off", syscall_filter=False))
    assert probe.wait_for(0, 0, timeout=0.3) == (0, 0)
    for attempt in ("native_connect", "c_socket_connect", "gethostbyname", "child_process", "os_system", "loopback"):
        assert tried[attempt].startswith("EgressBlockedError"), (attempt, tried[attempt])
    assert len(result.refused) == 7
    assert result.isolation["python_guard"] is True and result.isolation["syscall_filter"] is False


def _without_namespaces() -> list[str]:
    """A launcher that forbids unshare(2) (as a container's default seccomp profile does), then runs the CLI."""
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(sandbox.__file__).parents[2])!r})\n"
        "from strongroom.meetings.sandbox import install_syscall_filter\n"
        "took, why = install_syscall_filter(('unshare',))\n"
        "assert took, why\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    )
    return [sys.executable, "-c", code, *CLI[1:]]


def test_cli_where_the_kernel_refuses_namespaces(
    tmp_path: Path, one_turn: Meeting, cli_env: dict[str, str], probe: ProbeNet
) -> None:
    audio = tmp_path / "call.wav"
    shutil.copyfile(one_turn.path, audio)
    args = ["meetings", "transcribe", str(audio), "--plaintext", "--diarizer", "none"]
    run = subprocess.run(
        [*_without_namespaces(), *args, "--out", str(tmp_path / "auto"), "--json"],
        env=cli_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    layers = json.loads(run.stdout)["isolation"]
    assert layers["network_namespace"] is False
    assert layers["reason"] == "unshare(CLONE_NEWNET) failed: EPERM (Operation not permitted)"
    assert layers["syscall_filter"] is True and layers["python_guard"] is True
    assert json.loads((tmp_path / "auto" / "meeting.json").read_text())["isolation"] == layers

    human = subprocess.run(
        [*_without_namespaces(), *args, "--out", str(tmp_path / "human")],
        env=cli_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert human.returncode == 0, human.stderr
    assert "isolation: " in human.stdout and "network namespace OFF (unshare(CLONE_NEWNET) failed: EPERM" in (
        " ".join(human.stdout.split())
    )

    required = subprocess.run(
        [*_without_namespaces(), *args, "--out", str(tmp_path / "req"), "--netns", "require", "--delete-audio"],
        env=cli_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert required.returncode == 1
    errors = [line for line in required.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: a network namespace is required (--netns require)")
    assert audio.exists() and not (tmp_path / "req").exists()
    assert probe.snapshot() == (0, 0)


UNPRIVILEGED_CHECK = """
import json, socket, sys, types
source = sys.stdin.read()
sandbox = sys.modules["sandbox"] = types.ModuleType("sandbox")
exec(compile(source, "sandbox.py", "exec"), sandbox.__dict__)
report = sandbox.isolate("auto", syscall_filter=False)
with socket.socket() as sock:
    sock.settimeout(3)
    code = sock.connect_ex((sys.argv[1], int(sys.argv[2])))
print(json.dumps({"report": report.to_dict(), "connect": code, "uid": __import__("os").getuid()}))
"""


def test_an_unprivileged_user_gets_a_user_namespace(probe: ProbeNet) -> None:
    """Not root: the sandbox takes a user namespace with its network namespace (run as nobody)."""
    python = "/usr/bin/python3"  # the Debian interpreter: readable by nobody, unlike a root-owned pyenv
    assert os.access(python, os.X_OK), "tests need Debian's python3 (python3-minimal) for the unprivileged check"
    run = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I", "-c", UNPRIVILEGED_CHECK,
         REMOTE, str(probe.remote_port)],
        input=Path(sandbox.__file__).read_text(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["uid"] == 65534
    assert answer["report"]["network_namespace"] is True
    assert answer["report"]["namespace_method"] == "unshare(CLONE_NEWUSER|CLONE_NEWNET)"
    assert answer["report"]["interfaces"] == ["lo"]
    assert answer["connect"] == errno.ENETUNREACH
    assert probe.wait_for(0, 0, timeout=0.3) == (0, 0)


FOREIGN_ABI_CHECK = """
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
from strongroom.meetings.sandbox import install_syscall_filter
libc = ctypes.CDLL(None, use_errno=True)
def attempt(number, *args):
    result = libc.syscall(number, *args)
    return 0 if result >= 0 else ctypes.get_errno()
before = attempt(0x40000000 | 39)  # x32 getpid: allowed or unsupported (ENOSYS) before the filter
took, why = install_syscall_filter()
print(json.dumps({"took": took, "before": before, "x32_getpid": attempt(0x40000000 | 39),
                  "socket": attempt(41, 2, 1, 0), "getpid": attempt(39)}))
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 is an x86-64 ABI")
def test_the_syscall_filter_refuses_the_x32_back_door() -> None:
    run = subprocess.run(
        [sys.executable, "-c", FOREIGN_ABI_CHECK, str(Path(sandbox.__file__).parents[2])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    answer = json.loads(run.stdout)
    assert answer["took"] is True
    assert answer["x32_getpid"] == errno.EPERM and answer["socket"] == errno.EPERM and answer["getpid"] == 0


def test_the_speech_process_environment_is_allow_listed() -> None:
    env = child_environment(
        {
            "PATH": "/usr/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C",
            "OMP_NUM_THREADS": "2",
            "STRONGROOM_PASSPHRASE": SECRET,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "OMP_AUTH_TOKEN": SECRET,
            "HF_TOKEN": SECRET,
            "SSH_AUTH_SOCK": "/tmp/agent",
            "LD_PRELOAD": "/tmp/evil.so",
            "PYTHONPATH": "/elsewhere",
        }
    )
    assert SECRET not in env.values()
    assert {"PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "HF_HUB_OFFLINE"} <= set(env)
    assert not {"SSH_AUTH_SOCK", "LD_PRELOAD", "PYTHONPATH"} & set(env)


@pytest.mark.parametrize(
    "segments",
    [
        "not a list",
        [{"start": 0, "end": 1, "text": "x"}],
        [{"start": "0", "end": 1, "text": "x", "words": []}],
        [{"start": 0, "end": float("inf"), "text": "x", "words": []}],
        [{"start": 0, "end": 1, "text": 3, "words": []}],
        [{"start": 0, "end": 1, "text": "x", "words": [[0, 1, "w", 0.5]]}],
        [{"start": 0, "end": 1, "text": "x", "words": [[0, 1, "w", True, None]]}],
        [{"start": 0, "end": 1, "text": "x", "speaker": ["S"], "words": []}],
    ],
)
def test_answers_from_the_speech_process_are_validated(segments: Any) -> None:
    with pytest.raises(IsolationError):
        _segments(segments)


class CrashingDiarizer:
    name = "crash"

    def __init__(self, how: str) -> None:
        self.how = how

    def diarize(self, audio: Any, segments: Any, num_speakers: Any) -> list[Any]:
        if self.how == "exit":
            os._exit(9)
        if self.how == "egress":
            raise EgressBlockedError("network guard refused something")
        raise ValueError("diarizer bug")


def test_failures_in_the_speech_process_come_back_typed(tmp_path: Path, one_turn: Meeting) -> None:
    def run(how: str, out: str) -> None:
        options = MeetingOptions(transcribe=SPEECH, diarizer=CrashingDiarizer(how), plaintext=True)
        transcribe_meeting(one_turn.path, tmp_path / out, None, options)

    with pytest.raises(IsolationError, match=r"ended without an answer \(exit status 9\)"):
        run("exit", "a")
    with pytest.raises(EgressBlockedError, match="refused something"):
        run("egress", "b")
    with pytest.raises(MeetingError, match="speech process failed: ValueError: diarizer bug"):
        run("value", "c")
    notes = tmp_path / "notes.wav"
    notes.write_text("minutes of the meeting, not audio")
    with pytest.raises(UnsupportedAudioError, match="not a supported audio file"):
        transcribe_meeting(notes, tmp_path / "d", None, MeetingOptions(transcribe=SPEECH, plaintext=True))
    fake = tmp_path / "fake.flac"
    fake.write_bytes(b"fLaC" + bytes(300))
    with pytest.raises(CorruptAudioError, match=r"fake\.flac"):
        transcribe_meeting(fake, tmp_path / "e", None, MeetingOptions(transcribe=SPEECH, plaintext=True))
    assert not any((tmp_path / name).exists() for name in "abcde")


THREADED_CHECK = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from strongroom.meetings.sandbox import isolate
stop = threading.Event()
worker = threading.Thread(target=stop.wait, args=(30,))
worker.start()
report = isolate("auto")
stop.set()
worker.join()
print(json.dumps(report.to_dict()))
"""


def test_a_process_with_threads_is_not_half_isolated() -> None:
    """Namespaces and a prctl filter bind the calling thread only: with other threads, nothing is tried."""
    run = subprocess.run(
        [sys.executable, "-c", THREADED_CHECK, str(Path(sandbox.__file__).parents[2])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(run.stdout)
    assert report["network_namespace"] is False and report["syscall_filter"] is False
    assert report["reason"] == "not attempted: the process already has 2 threads (it must be single-threaded)"
