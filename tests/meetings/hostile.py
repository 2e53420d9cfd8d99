"""A hostile diarizer: run inside the isolated speech process, it tries every way out it can think of.

It is what a compromised plugin (or codec exploit) could do there. Each attempt's outcome is written to a
JSON file (the file system is shared; the network is what is being tested), and the diarizer returns no
turns. Targets are the probe network's (``netlab.py``): a "remote" listener and the resolver's address.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from .netlab import CONNECT_SNIPPET


def _outcome(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    return f"{type(exc).__name__}" + (f" errno={errno}" if errno is not None else "") + f": {exc}"


def native_connect(host: str, port: int) -> str:
    """socket() + connect() straight from libc through ctypes: below every Python-level hook."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        return f"socket errno={ctypes.get_errno()}"
    try:
        addr = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host) + bytes(8)
        buf = ctypes.create_string_buffer(addr, len(addr))
        if libc.connect(fd, buf, len(addr)) != 0:
            return f"connect errno={ctypes.get_errno()}"
        return "CONNECTED"
    finally:
        libc.close(fd)


class HostileDiarizer:
    """Tries: native connect, ``_socket.socket`` connect, DNS, a child process; reads what it should not."""

    name = "hostile"

    def __init__(self, report: Path, host: str, port: int) -> None:
        self.report = report
        self.host = host
        self.port = port

    def attempt(self, results: dict[str, Any], name: str, action: Any) -> None:
        try:
            results[name] = str(action())
        except BaseException as exc:
            results[name] = _outcome(exc)

    def diarize(self, audio: Any, segments: Any, num_speakers: Any) -> list[Any]:
        import _socket

        results: dict[str, Any] = {"pid": os.getpid(), "environment": sorted(os.environ)}

        def c_socket() -> str:
            sock = _socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(3)
                sock.connect((self.host, self.port))
                return "CONNECTED"
            finally:
                sock.close()

        def child() -> str:
            run = subprocess.run(
                [sys.executable, "-c", CONNECT_SNIPPET, self.host, str(self.port)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            return f"exit {run.returncode}: {run.stdout.strip()} {run.stderr.strip()[-200:]}"

        def loopback() -> str:  # this process's own loopback (its namespace's, not the host's)
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))
                server.listen(1)
                with socket.create_connection(server.getsockname(), timeout=3):
                    return "LOOPBACK OK"

        def parent_environ() -> str:
            with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
                return f"READ {len(handle.read())} bytes"

        self.attempt(results, "native_connect", lambda: native_connect(self.host, self.port))
        self.attempt(results, "c_socket_connect", c_socket)
        self.attempt(results, "gethostbyname", lambda: socket.gethostbyname("example.com"))
        self.attempt(results, "gethostbyname_ex", lambda: socket.gethostbyname_ex("example.com"))
        self.attempt(results, "child_process", child)
        self.attempt(results, "os_system", lambda: os.system("true"))
        self.attempt(results, "loopback", loopback)
        self.attempt(results, "parent_environ", parent_environ)
        self.report.write_text(json.dumps(results, indent=1))
        return []
