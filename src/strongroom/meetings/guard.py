"""The Python guard: while a run is active, this process may talk to loopback only and start nothing.

This is the in-process layer. The speech process also runs behind kernel layers (``sandbox.py``: a
network namespace with only loopback, no capabilities, a seccomp filter with no sockets at all); this
guard is what remains where the kernel refuses those, and it is the only layer in the parent process,
which must keep the host's loopback for a local summary model.

How it works: a ``sys.addaudithook`` hook. CPython raises audit events inside its C code, *before* the
system call, whichever Python path led there, so the guard sees the C-level ``_socket.socket`` as well as
``socket.socket`` (a subclass of it), unbound calls such as ``_socket.socket.connect(s, addr)``, and the
resolver functions. While a guard is active the hook refuses, with ``EgressBlockedError`` and before the
system call:

- ``connect``/``connect_ex``, ``sendto``, ``sendmsg`` and ``bind`` on an IPv4/IPv6 socket to any address
  outside 127.0.0.0/8 and ::1 (IPv4-mapped included); Unix and netlink sockets stay allowed;
- packet sockets (``AF_PACKET``) and raw IP sockets, which send without an address check; with
  ``sockets=False`` (the speech process, which needs none) the creation of any socket;
- name lookups that could send a DNS query: ``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex`` of
  anything but an IP literal or ``localhost``; ``gethostbyaddr`` and ``getnameinfo`` of anything but a
  loopback address (the ``getnameinfo`` audit event does not carry its flags, so even a numeric-only
  call on another address is refused);
- starting a process: ``subprocess.Popen`` (so ``run``, ``check_output``, ``os.popen``, asyncio),
  ``os.system``, ``os.posix_spawn``/``posix_spawnp``, ``os.fork``, ``os.forkpty``, ``os.exec*``,
  ``os.spawn*`` (fork + exec), and ``_posixsubprocess.fork_exec`` (multiprocessing's path, which raises
  no audit event: it is wrapped for the span of the guard);
- looking up native network, resolver or process functions through ``ctypes`` (``connect``, ``socket``,
  ``sendto``, ``getaddrinfo``, ``gethostbyname``, ``res_query``, ``system``, ``fork``, ``execve``,
  ``posix_spawn``, ``syscall``, ``dlsym`` ... see ``NATIVE_DENIED``): a tripwire, see the limits.

Each refusal is recorded in every active ``GuardReport`` and passed to each ``notify`` callback as it
happens, so it is reported even when a library swallows the exception. The Hugging Face libraries'
offline switches are set for the same span.

What cannot be covered in-process, stated plainly: native code runs below Python's audit events. A C
extension, FFmpeg's own protocols, code loaded with ``ctypes.CDLL("evil.so")``, a ``ctypes`` function
pointer resolved before the guard started (or computed from another symbol's address), or a raw
``syscall`` instruction can call ``connect()`` or ``fork()`` without the guard seeing it; so can a
socket opened before the guard started. An audit hook also cannot be removed, so after the first guard
this process keeps an (inactive, cheap) hook. The network namespace and the syscall filter in the speech
process cover exactly these gaps, because they act in the kernel on every system call of the process
and of anything it starts; this guard is the second layer, and the only one where the kernel refuses.
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
# Native functions a guarded process has no business looking up through ctypes.
NATIVE_DENIED = frozenset(
    {
        "socket", "__socket", "socketpair", "connect", "__connect", "bind", "sendto", "__sendto", "sendmsg",
        "__sendmsg", "sendmmsg", "getaddrinfo", "gethostbyname", "gethostbyname2", "gethostbyname_r",
        "gethostbyname2_r", "gethostbyaddr", "gethostbyaddr_r", "getnameinfo", "res_query", "res_search",
        "res_querydomain", "res_send", "res_nquery", "res_nsearch", "res_nsend", "__res_query", "__res_search",
        "__res_send", "__res_nquery", "__res_nsearch", "__res_nsend", "system", "popen", "fork", "vfork", "_Fork",
        "__fork", "clone", "clone3", "execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve",
        "execveat", "posix_spawn", "posix_spawnp", "syscall", "dlsym", "dlvsym", "io_uring_setup",
    }
)  # fmt: skip
_AF_PACKET = getattr(socket, "AF_PACKET", 17)
_INET = (socket.AF_INET, socket.AF_INET6)


@dataclass(eq=False)  # each run's report is its own, even when two are equal (nested guards)
class GuardReport:
    """What the guard refused during one run (empty when nothing tried to leave)."""

    refused: list[str] = field(default_factory=list)


_lock = threading.Lock()
_local = threading.local()
_depth = 0
_no_sockets = 0  # guards entered with sockets=False (the speech process needs no socket at all)
_hook_installed = False
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


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


def _refuse(what: str) -> EgressBlockedError:
    message = f"network guard refused {what}: only loopback connections, and no new process, during a meetings run"
    with _lock:
        for report in _reports:
            report.refused.append(what)
        listeners = list(_notify)
    for listener in listeners:
        listener(message)
    return EgressBlockedError(message)


def _check_address(sock: Any, address: Any, verb: str) -> None:
    if getattr(sock, "family", None) not in _INET:
        return  # AF_UNIX, AF_NETLINK...: local to this machine (AF_PACKET is refused at creation)
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        raise _refuse(f"{verb} to unparsable address {address!r}")
    host, port = address[0], address[1] if len(address) > 1 else "?"
    if not is_loopback_host(host):
        raise _refuse(f"{verb} to {host}:{port}")


def _lookup(name: Any, what: str) -> None:
    if name is None:
        return  # a passive or port-only lookup sends no query
    text = _text(name)
    if not _is_ip_literal(text) and text.lower() not in LOCAL_NAMES:
        raise _refuse(f"{what} of {text!r} (it could send a DNS query)")


def _reverse(address: Any, what: str) -> None:
    host = address[0] if isinstance(address, tuple) and address else address
    if not isinstance(host, str | bytes) or not is_loopback_host(_text(host)):
        raise _refuse(f"{what} of {_text(host)!r} (it could send a DNS query)")


def _new_socket(args: tuple[Any, ...]) -> None:
    family, kind = args[1], args[2]
    if _no_sockets:
        raise _refuse(f"creation of a socket (family {family}): this process needs none")
    if family == _AF_PACKET:
        raise _refuse("creation of a packet socket (AF_PACKET sends frames without an address check)")
    if family in _INET and isinstance(kind, int) and kind >= 0 and kind & 0xF == socket.SOCK_RAW:
        raise _refuse("creation of a raw IP socket")


def _spawn(what: str) -> None:
    if getattr(_local, "permit", False):
        _local.permit = False  # one process, the caller's own
        return
    raise _refuse(f"start of a child process ({what})")


def _command(value: Any) -> str:
    def short(item: Any) -> str:
        text = " ".join(_text(item).split())
        return text if len(text) <= 60 else text[:57] + "..."

    if isinstance(value, list | tuple):
        return " ".join(short(v) for v in value[:4]) + (" ..." if len(value) > 4 else "")
    return short(value)


def _native(name: Any) -> None:
    if isinstance(name, str) and name in NATIVE_DENIED:
        raise _refuse(f"native lookup of {name}() through ctypes")


_HANDLERS: dict[str, Callable[[tuple[Any, ...]], None]] = {
    "socket.__new__": _new_socket,
    "socket.connect": lambda a: _check_address(a[0], a[1], "connection"),
    "socket.sendto": lambda a: _check_address(a[0], a[1], "datagram"),
    "socket.sendmsg": lambda a: None if a[1] is None else _check_address(a[0], a[1], "datagram"),
    "socket.bind": lambda a: _check_address(a[0], a[1], "bind"),
    "socket.getaddrinfo": lambda a: _lookup(a[0], "name lookup"),
    "socket.gethostbyname": lambda a: _lookup(a[0], "name lookup"),
    "socket.gethostbyaddr": lambda a: _reverse(a[0], "reverse lookup"),
    "socket.getnameinfo": lambda a: _reverse(a[0], "reverse lookup"),
    "subprocess.Popen": lambda a: _spawn(_command(a[1] or a[0])),
    "os.system": lambda a: _spawn(_command(a[0])),
    "os.posix_spawn": lambda a: _spawn(_command(a[1] or a[0])),
    "os.fork": lambda a: _spawn("os.fork()"),
    "os.forkpty": lambda a: _spawn("os.forkpty()"),
    "os.exec": lambda a: _spawn(_command(a[1] or a[0])),
    "os.spawn": lambda a: _spawn(_command(a[2] or a[1])),
    "ctypes.dlsym": lambda a: _native(a[1]),
    "ctypes.dlsym/handle": lambda a: _native(a[1]),
}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _depth:
        return
    handler = _HANDLERS.get(event)
    if handler is None or getattr(_local, "busy", False):
        return
    _local.busy = True
    try:
        handler(args)
    finally:
        _local.busy = False


def _guarded_fork_exec(*args: Any, **kwargs: Any) -> Any:
    process_args = args[0] if args else None
    _spawn(_command(process_args if process_args else "_posixsubprocess.fork_exec"))
    return _ORIGINAL_FORK_EXEC(*args, **kwargs)


try:
    import _posixsubprocess

    _ORIGINAL_FORK_EXEC: Any = _posixsubprocess.fork_exec
except ImportError:  # not POSIX
    _posixsubprocess = None  # type: ignore[assignment]
    _ORIGINAL_FORK_EXEC = None


@contextlib.contextmanager
def permit_child_process() -> Iterator[None]:
    """Let the calling thread start exactly one process under an active guard (the speech process)."""
    _local.permit = True
    try:
        yield
    finally:
        _local.permit = False


def _install() -> None:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # permanent by design; inert while no guard is active
        _hook_installed = True
    if _posixsubprocess is not None:
        _posixsubprocess.fork_exec = _guarded_fork_exec
    for key, value in OFFLINE_ENV.items():
        _saved_env[key] = os.environ.get(key)
        os.environ[key] = value
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # it reads HF_HUB_OFFLINE once, at import
        _saved_env["__hub_offline__"] = "1" if getattr(hub, "HF_HUB_OFFLINE", False) else ""
        vars(hub)["HF_HUB_OFFLINE"] = True


def _uninstall() -> None:
    if _posixsubprocess is not None:
        _posixsubprocess.fork_exec = _ORIGINAL_FORK_EXEC
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
def network_guard(notify: Callable[[str], None] | None = None, *, sockets: bool = True) -> Iterator[GuardReport]:
    """Refuse every non-loopback connection, DNS lookup and process start in this process for the block.

    Nests (the outermost block turns the guard on and off). ``notify`` hears each refusal as it happens,
    so a caller can say so even if a library swallows the exception. ``sockets=False`` refuses the
    creation of any socket at all, loopback and Unix included (the speech process's setting).
    """
    global _depth, _no_sockets
    report = GuardReport()
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
        _no_sockets += not sockets
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
            _no_sockets -= not sockets
            if _depth == 0:
                _uninstall()
