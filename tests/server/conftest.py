"""Server fixtures: a real ``strongroom serve`` process (for its memory), and an in-process one with an
appender (for counting what it verifies)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.server.app import Services, create_app, open_services
from strongroom.server.background import BackgroundServer, free_port, wait_until_serving
from strongroom.signing import Signer

SRC = str(Path(__file__).parents[2] / "src")


@dataclass
class Served:
    url: str
    pid: int
    data: Path

    def rss_mib(self) -> float:
        """The server process's resident memory now (VmRSS), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


class PeakMemory:
    """Samples a process's resident memory every few milliseconds while the block runs; ``.peak`` in MiB."""

    def __init__(self, served: Served, every: float = 0.005) -> None:
        self.served = served
        self.every = every
        self.before = 0.0
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.served.rss_mib())
            time.sleep(self.every)

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = self.served.rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)  # what the server still holds just after answering
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.served.rss_mib())

    @property
    def grew(self) -> float:
        return self.peak - self.before


@pytest.fixture(scope="module")
def serve_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``strongroom serve`` in its own process (as deployed), with one appender (``appender.key`` beside
    DATA); yields its URL and process id."""
    data = tmp_path_factory.mktemp("serve") / "srv"
    data.mkdir(mode=0o700)
    (data / "appenders").mkdir()
    Signer.generate("ed25519").save(data.parent / "appender.key", data / "appenders" / "test.pub")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "STRONGROOM_SERVER_PASSPHRASE": "server holds test passphrase",  # serve's key store, where it has one
    }
    command = [sys.executable, "-m", "strongroom.cli.main", "serve", "--data", str(data), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process)
        yield Served(url, process.pid, data)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class InProcess:
    url: str
    data: Path
    services: Services
    appender: Signer


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[InProcess]:
    """The app in a background thread of this process, with an Ed25519 appender allowed model.evaluated."""
    data = tmp_path / "srv"
    data.mkdir(mode=0o700)
    (data / "appenders").mkdir()
    appender = Signer.generate("ed25519")
    appender.save(tmp_path / "appender.key", data / "appenders" / "test.pub")
    services = open_services(data)
    with BackgroundServer(create_app(services, data)) as url:
        yield InProcess(url, data, services, appender)
    services.close()
