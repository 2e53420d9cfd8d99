"""A real software TPM (swtpm, libtpms) for tests, the demo and the benchmarks.

``SoftwareTpm`` provisions a TPM 2.0 state with ``swtpm_setup`` (an RSA-2048 EK, and an ECC EK, each with
an EK certificate signed by a ``TestManufacturerCa`` through ``swtpm_localca``, per the TCG EK Credential
Profile's NV indices 0x01C00002 / 0x01C0000A...) and runs ``swtpm socket`` on two free loopback ports: the
TPM command port and the control port the swtpm TCTI needs. Lessons applied (docs/attestation.md):
the state directory is absolute, the TPM starts with ``--flags not-need-init,startup-clear`` so no
TPM2_Startup is needed, it has no resource manager (``HostTpm`` flushes leftover handles on connect), and
swtpm takes a second or two to exit after SIGTERM, so ``stop`` waits for the process.

Everything is private to the instance: its state, the ``swtpm_setup`` and ``swtpm_localca`` configuration
(without ``--config`` swtpm_setup would use a shared system directory), and the certificate serial file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from strongroom.attest.ca import TestManufacturerCa, write_file
from strongroom.attest.errors import SoftwareTpmError
from strongroom.memory import libc

_LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SoftwareTpmError(f"{name} is not installed (Debian packages swtpm and swtpm-tools)")
    return path


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel to SIGTERM swtpm when the process that started it dies
    (prctl PR_SET_PDEATHSIG), so a crashed test run leaves no TPM behind."""
    c = libc()
    if c is not None:
        c.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _free_port_pair() -> int:
    """A port P such that P and P+1 are both free on loopback right now (swtpm needs both)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((_LOCALHOST, 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind((_LOCALHOST, port))
                b.bind((_LOCALHOST, port + 1))
            except OSError:
                continue
        return port
    raise SoftwareTpmError("no two adjacent free loopback ports for swtpm")


class SoftwareTpm:
    """One swtpm process with its own provisioned state; use as a context manager or call start/stop.

    ``SoftwareTpm(ca)`` provisions into a fresh temporary directory removed on ``stop``; pass ``state_dir``
    to keep the state (it is provisioned only if it holds no TPM state yet).
    """

    def __init__(
        self,
        ca: TestManufacturerCa | None,
        state_dir: Path | None = None,
        *,
        vmid: str = "strongroom-test",
        start_timeout: float = 10.0,
    ) -> None:
        self._ca = ca
        self._owned_dir: Path | None = None
        if state_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="strongroom-swtpm-"))
            state_dir = self._owned_dir
        self.state_dir = Path(state_dir).absolute()
        self._vmid = vmid
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def tpm_state(self) -> Path:
        return self.state_dir / "tpm"

    @property
    def tcti(self) -> str:
        """The TCTI configuration string for tpm2-pytss / tpm2-tools (``swtpm:host=...,port=...``)."""
        if self._process is None:
            raise SoftwareTpmError("swtpm is not running")
        return f"swtpm:host={_LOCALHOST},port={self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def provision(self) -> None:
        """Run ``swtpm_setup`` once: a TPM 2.0 with SHA-256 PCRs, EKs and (with a CA) EK certificates."""
        if (self.tpm_state / "tpm2-00.permall").exists():
            return
        self.tpm_state.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = self.state_dir / "setup"
        private.mkdir(mode=0o700, exist_ok=True)
        lines = ["active_pcr_banks = sha256"]
        args = [_tool("swtpm_setup"), "--tpm2", "--tpmstate", str(self.tpm_state), "--createek", "--overwrite"]
        if self._ca is not None:
            localca = self._ca.localca_config(private / "localca")
            options = private / "swtpm-localca.options"
            write_file(options, b"--platform-manufacturer Strongroom\n--platform-version 1.0\n--platform-model test\n")
            lines += [
                f"create_certs_tool = {_tool('swtpm_localca')}",
                f"create_certs_tool_config = {localca}",
                f"create_certs_tool_options = {options}",
            ]
            args += ["--create-ek-cert", "--create-platform-cert", "--vmid", self._vmid]
        conf = private / "swtpm_setup.conf"
        write_file(conf, ("\n".join(lines) + "\n").encode())
        args += ["--config", str(conf), "--logfile", str(private / "swtpm_setup.log")]
        env = dict(os.environ, XDG_CONFIG_HOME=str(private))
        result = subprocess.run(args, capture_output=True, env=env, timeout=60, check=False)
        if result.returncode != 0:
            log = (private / "swtpm_setup.log").read_text(errors="replace")[-2000:]
            raise SoftwareTpmError(f"swtpm_setup failed ({result.returncode}): {result.stderr.decode()[-500:]} {log}")

    def start(self) -> SoftwareTpm:
        """Provision if needed, then start swtpm and wait until its command port answers."""
        if self._process is not None:
            return self
        self.provision()
        log_path = self.state_dir / "swtpm.log"
        for _attempt in range(5):
            port = _free_port_pair()
            log = log_path.open("wb")
            process = subprocess.Popen(
                [
                    _tool("swtpm"), "socket", "--tpm2",
                    "--tpmstate", f"dir={self.tpm_state}",
                    "--server", f"type=tcp,port={port},bindaddr={_LOCALHOST}",
                    "--ctrl", f"type=tcp,port={port + 1},bindaddr={_LOCALHOST}",
                    "--flags", "not-need-init,startup-clear",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent,
            )  # fmt: skip
            log.close()
            if self._wait_listening(process, port):
                self._process, self.port = process, port
                return self
            # lost a race for the port, or swtpm failed: try again on other ports
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=5)
            output = log_path.read_text(errors="replace")
            if "Address already in use" not in output and process.returncode != -9:
                raise SoftwareTpmError(f"swtpm exited with {process.returncode}: {output[-500:]}")
        raise SoftwareTpmError("swtpm did not start listening")

    def _wait_listening(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex((_LOCALHOST, port + 1)) == 0:
                    return True
            time.sleep(0.01)
        return False

    def stop(self, *, remove_state: bool = True) -> None:
        """Stop swtpm (SIGTERM, waiting for the process so its ports are free again) and remove a temporary
        state directory this instance made."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if remove_state and self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def __enter__(self) -> SoftwareTpm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
