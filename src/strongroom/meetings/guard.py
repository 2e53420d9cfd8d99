"""Offline by construction: while a run is active, the process may talk to loopback addresses only.

``network_guard()`` wraps ``socket.socket.connect``/``connect_ex``/``sendto``/``sendmsg`` and
``socket.getaddrinfo``: a connection or datagram to any address outside 127.0.0.0/8 and ::1, or a name
lookup other than ``localhost`` (which could send a DNS query), raises ``EgressBlockedError`` *before*
the system call is made, so no packet leaves. Every refusal is recorded and reported. The Hugging Face
libraries' offline switches are turned on for the same span. Unix sockets stay allowed (they are local).

Limits, stated plainly: code that opens sockets outside Python's ``socket`` module (C extensions, FFmpeg's
own network protocols, child processes) is not covered; Strongroom's own pipeline avoids those paths
(see ``audio.py``). An OS-level control (network namespace, firewall) remains the stronger layer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from strongroom.meetings.errors import EgressBlockedError

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

# The originals, restored when the guard is lifted.
_ORIGINAL_CONNECT = socket.socket.connect
_ORIGINAL_CONNECT_EX = socket.socket.connect_ex
_ORIGINAL_SENDTO = socket.socket.sendto
_ORIGINAL_SENDMSG = socket.socket.sendmsg
_ORIGINAL_GETADDRINFO = socket.getaddrinfo
# What the hooks call once an address passes, looked up at call time (tests spy on them).
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto
_real_sendmsg = socket.socket.sendmsg
_real_getaddrinfo = socket.getaddrinfo


@dataclass
class GuardReport:
    """What the guard refused during one run (empty when nothing tried to leave)."""

    refused: list[str] = field(default_factory=list)


_lock = threading.Lock()
_depth = 0
_reports: list[GuardReport] = []
_saved_env: dict[str, str | None] = {}
_notify: list[Callable[[str], None]] = []


def is_loopback_host(host: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped too), or a local name such as ``localhost``."""
    name = host.strip("[]").split("%", 1)[0]
    if name.lower() in LOCAL_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _refuse(what: str) -> EgressBlockedError:
    message = f"network guard refused {what}: only loopback connections are allowed during a meetings run"
    with _lock:
        for report in _reports:
            report.refused.append(what)
        listeners = list(_notify)
    for listener in listeners:
        listener(message)
    return EgressBlockedError(message)


def _check_address(sock: socket.socket, address: Any, verb: str) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX, AF_NETLINK...: local to this machine
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        raise _refuse(f"{verb} to unparsable address {address!r}")
    host, port = address[0], address[1] if len(address) > 1 else "?"
    if not is_loopback_host(host):
        raise _refuse(f"{verb} to {host}:{port}")


def _connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address, "connection")
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address, "connection")
    return _real_connect_ex(self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check_address(self, args[-1], "datagram")
    return _real_sendto(self, data, *args)


def _sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
    if len(args) >= 3 and args[2] is not None:
        _check_address(self, args[2], "datagram")
    return _real_sendmsg(self, buffers, *args)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not _is_ip_literal(name) and name.lower() not in LOCAL_NAMES:
            raise _refuse(f"name lookup of {name!r} (it could send a DNS query)")
    return _real_getaddrinfo(host, *args, **kwargs)


def _install() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
    socket.socket.sendto = _sendto  # type: ignore[method-assign,assignment]
    socket.socket.sendmsg = _sendmsg  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = _getaddrinfo
    for key, value in OFFLINE_ENV.items():
        _saved_env[key] = os.environ.get(key)
        os.environ[key] = value
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # it reads HF_HUB_OFFLINE once, at import
        _saved_env["__hub_offline__"] = "1" if getattr(hub, "HF_HUB_OFFLINE", False) else ""
        vars(hub)["HF_HUB_OFFLINE"] = True


def _uninstall() -> None:
    socket.socket.connect = _ORIGINAL_CONNECT  # type: ignore[method-assign]
    socket.socket.connect_ex = _ORIGINAL_CONNECT_EX  # type: ignore[method-assign]
    socket.socket.sendto = _ORIGINAL_SENDTO  # type: ignore[method-assign]
    socket.socket.sendmsg = _ORIGINAL_SENDMSG  # type: ignore[method-assign]
    socket.getaddrinfo = _ORIGINAL_GETADDRINFO
    hub_saved = _saved_env.pop("__hub_offline__", None)
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and hub_saved is not None:
        vars(hub)["HF_HUB_OFFLINE"] = bool(hub_saved)
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _saved_env.clear()


def guard_active() -> bool:
    """Whether a network guard is in force in this process now."""
    return _depth > 0


@contextlib.contextmanager
def network_guard(notify: Callable[[str], None] | None = None) -> Iterator[GuardReport]:
    """Refuse every non-loopback connection, datagram and DNS lookup in this process for the block's span.

    Nests (the outermost block installs and removes the hooks). ``notify`` hears each refusal as it
    happens, so a caller can say so even if a library swallows the exception.
    """
    global _depth
    report = GuardReport()
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
        _reports.append(report)
        if notify is not None:
            _notify.append(notify)
    try:
        yield report
    finally:
        with _lock:
            _reports.remove(report)
            if notify is not None:
                _notify.remove(notify)
            _depth -= 1
            if _depth == 0:
                _uninstall()
