"""Run the Strongroom app on a loopback port in a background thread (demo, tests, benchmarks)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from strongroom.errors import StrongroomError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """``with BackgroundServer(app) as url:`` serves ``app`` on 127.0.0.1 until the block ends."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="strongroom-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StrongroomError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_until_serving(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Poll ``url``/checkpoint until the server answers; raise if it exits or the time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StrongroomError(f"the server for {url} exited with status {process.returncode}")
        try:
            if httpx.get(url + "/checkpoint", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise StrongroomError(f"{url} did not start serving within {timeout:.0f}s")


@contextlib.contextmanager
def serve_process(data: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``strongroom serve`` in its own process on a free loopback port; yields its URL, stops it after."""
    import tempfile

    port = free_port()
    command = [sys.executable, "-m", "strongroom.cli.main", "serve", "--data", str(data), "--port", str(port), *extra]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_serving(url, process)
            except StrongroomError as exc:
                errors.seek(0)
                said = errors.read().decode(errors="replace").strip().splitlines()[-3:]
                raise StrongroomError(f"{exc}: {' / '.join(said)}") from None
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
