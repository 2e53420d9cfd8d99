"""Kernel-level isolation for the speech process: a network namespace, no capabilities, a syscall filter.

Standard library only, and meant to run first thing in a fresh, single-threaded child process (see
``worker.py``), before any model or codec library is imported: a user namespace can only be entered by a
single-threaded process, and nothing should get a chance to open a socket before the walls are up.

The layers, in the order ``isolate()`` applies them:

1. **Network namespace.** As root (``CAP_SYS_ADMIN``): ``unshare(CLONE_NEWNET)``. Otherwise:
   ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` with the caller's own uid and gid mapped. The new namespace
   holds one interface, ``lo``, which is brought up (``SIOCSIFFLAGS``); there is no route anywhere else, so
   ``connect()`` to any other address fails with ``ENETUNREACH`` and no packet (DNS included) can leave,
   whoever makes the system call: Python, a C extension, ``ctypes``, or a child process (children inherit
   the namespace). Loopback inside is the namespace's own, not the host's: a server on the host's
   127.0.0.1 is *not* reachable from here.
2. **No capabilities.** The bounding, ambient, effective, permitted and inheritable sets are emptied and
   ``no_new_privs`` is set, so the process cannot ``setns()`` back into the host's namespace, cannot read
   another process's memory or ``/proc/PID/environ`` (the parent, which holds the keys, included), and
   cannot regain privileges through a setuid binary. A root process keeps uid 0 (plain file access), but
   no privilege over the host.
3. **Syscall filter** (seccomp, classic BPF, x86-64 and arm64): ``socket``, ``socketpair``,
   ``io_uring_setup``, ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``, ``unshare`` and
   ``setns`` fail with ``EPERM``; on x86-64 the x32 ABI and any foreign architecture are refused too. The
   speech process needs none of them. This layer needs no privilege, so it also holds where namespaces are
   refused: no socket of any family (Unix sockets included: a pathname socket could reach a host daemon
   such as a DNS cache or a container engine) can be created, so nothing can be sent at all.

Each layer reports whether it took and, if not, why; the caller records that in ``meeting.json``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import socket
import struct
import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal

NamespaceMode = Literal["auto", "require", "off"]
NAMESPACE_OK = "new network namespace: only loopback (lo, up); no route off this process's namespace"

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CAP_SYS_ADMIN = 21

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH14x"

_PR_SET_SECCOMP = 22
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_X32_SYSCALL_BIT = 0x40000000
# Classic BPF opcodes: load a 32-bit word at an absolute offset of seccomp_data, jump if equal / >=, return.
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_RET_K = 0x06
_DATA_NR, _DATA_ARCH = 0, 4

# Syscalls the speech process never needs and that could reach the network or another process.
DENIED_SYSCALLS = (
    "socket",
    "socketpair",
    "io_uring_setup",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "unshare",
    "setns",
)
# (AUDIT_ARCH value, syscall numbers, whether the x32 ABI shares the architecture value).
_ARCHES: dict[str, tuple[int, dict[str, int], bool]] = {
    "x86_64": (
        0xC000003E,
        {
            "socket": 41,
            "socketpair": 53,
            "ptrace": 101,
            "unshare": 272,
            "setns": 308,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "io_uring_setup": 425,
            "pidfd_getfd": 438,
        },
        True,
    ),
    "aarch64": (
        0xC00000B7,
        {
            "unshare": 97,
            "ptrace": 117,
            "socket": 198,
            "socketpair": 199,
            "setns": 268,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "io_uring_setup": 425,
            "pidfd_getfd": 438,
        },
        False,
    ),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@dataclass
class SandboxReport:
    """Which kernel layers took in this process, and why a layer did not."""

    network_namespace: bool = False
    namespace_method: str | None = None
    reason: str = ""
    interfaces: list[str] | None = None
    capabilities_dropped: bool = False
    syscall_filter: bool = False
    syscall_filter_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _failed(call: str) -> str:
    code = ctypes.get_errno()
    return f"{call} failed: {errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def _status_field(name: str) -> str:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def has_capability(cap: int) -> bool:
    """Whether this process has capability number ``cap`` in its effective set (Linux only)."""
    try:
        return bool(int(_status_field("CapEff") or "0", 16) >> cap & 1)
    except OSError:
        return False


def bring_loopback_up() -> None:
    """Set IFF_UP on ``lo`` in the current network namespace (needs CAP_NET_ADMIN over it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _write_map(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def enter_network_namespace() -> tuple[str | None, str]:
    """Move this (single-threaded) process into a new network namespace with only ``lo``, up.

    Returns ``(method, "")`` on success or ``(None, why)`` when the kernel refused.
    """
    if not sys.platform.startswith("linux"):
        return None, f"network namespaces are a Linux feature (platform {sys.platform})"
    libc = _libc()
    if has_capability(CAP_SYS_ADMIN):
        if libc.unshare(CLONE_NEWNET) != 0:
            return None, _failed("unshare(CLONE_NEWNET)")
        method = "unshare(CLONE_NEWNET)"
    else:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            return None, _failed("unshare(CLONE_NEWUSER|CLONE_NEWNET) (not root, so a user namespace is needed)")
        try:
            _write_map("/proc/self/setgroups", "deny")
            _write_map("/proc/self/uid_map", f"{uid} {uid} 1")
            _write_map("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as exc:
            # The process is already in a new, empty network namespace: still isolated, just unmapped.
            return "unshare(CLONE_NEWUSER|CLONE_NEWNET), ids unmapped", f"uid/gid map: {exc.strerror}"
        method = "unshare(CLONE_NEWUSER|CLONE_NEWNET)"
    try:
        bring_loopback_up()
    except OSError as exc:
        return method, f"in a new network namespace, but loopback stayed down: {exc.strerror}"
    return method, ""


def drop_capabilities() -> bool:
    """Empty every capability set and set no_new_privs; True when the effective set is empty afterwards."""
    libc = _libc()
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            last = int(handle.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM without CAP_SETPCAP: nothing to drop then
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    libc.capset(ctypes.byref(header), data)
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    try:
        return int(_status_field("CapEff") or "1", 16) == 0
    except OSError:
        return False


def syscall_filter_program(
    names: tuple[str, ...] = DENIED_SYSCALLS, machine: str | None = None
) -> list[tuple[int, int, int, int]]:
    """The classic-BPF seccomp program refusing ``names`` with EPERM (and foreign ABIs), as (code, jt, jf, k)."""
    arch_value, numbers, x32 = _ARCHES[machine or platform.machine()]
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    wanted = sorted({numbers[name] for name in names})
    program = [
        (_BPF_LD_W_ABS, 0, 0, _DATA_ARCH),
        (_BPF_JEQ_K, 1, 0, arch_value),
        (_BPF_RET_K, 0, 0, deny),  # a foreign ABI (i386 through int 0x80, ...): nothing is allowed
        (_BPF_LD_W_ABS, 0, 0, _DATA_NR),
    ]
    # Each jump lands on the final "deny" instruction; fall through to "allow".
    tail = len(wanted) + 1  # instructions after the x32 check: the comparisons, then allow
    if x32:
        program.append((_BPF_JGE_K, tail, 0, _X32_SYSCALL_BIT))
    for index, number in enumerate(wanted):
        program.append((_BPF_JEQ_K, len(wanted) - index, 0, number))
    program.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    program.append((_BPF_RET_K, 0, 0, deny))
    return program


def install_syscall_filter(names: tuple[str, ...] = DENIED_SYSCALLS) -> tuple[bool, str]:
    """Refuse ``names`` (EPERM) in this process and every process it starts, for good. Returns (took, why not)."""
    machine = platform.machine()
    if not sys.platform.startswith("linux") or machine not in _ARCHES:
        return False, f"no syscall filter for {sys.platform}/{machine} (x86_64 and aarch64 Linux only)"
    program = syscall_filter_program(names, machine)
    instructions = (_SockFilter * len(program))(*(_SockFilter(*op) for op in program))
    fprog = _SockFprog(len(program), instructions)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False, _failed("prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return False, _failed("prctl(PR_SET_SECCOMP)")
    return True, ""


def thread_count() -> int:
    """Threads in this process (1 when /proc cannot tell)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def isolate(namespace: NamespaceMode = "auto", syscall_filter: bool = True) -> SandboxReport:
    """Apply the kernel layers to this process (namespace unless ``off``, capabilities, syscall filter).

    Never raises for a layer the platform refuses: the report says what took. The caller decides whether
    a missing namespace is fatal (``require``). The process must be single-threaded: namespaces,
    capabilities and a prctl-installed filter apply to the calling thread (and threads it starts later),
    so with other threads running nothing is attempted and the report says why.
    """
    report = SandboxReport()
    threads = thread_count()
    if threads != 1:
        report.reason = f"not attempted: the process already has {threads} threads (it must be single-threaded)"
        report.syscall_filter_reason = report.reason
        return report
    if namespace == "off":
        report.reason = "turned off by the caller (--netns off)"
    else:
        method, why = enter_network_namespace()
        report.namespace_method = method
        if method is not None:
            try:
                report.interfaces = [name for _, name in socket.if_nameindex()]
            except OSError as exc:
                why = why or f"cannot list interfaces: {exc.strerror}"
            # Isolated as long as lo is the only interface, even if lo stayed down (then more so).
            report.network_namespace = report.interfaces == ["lo"]
            if not report.network_namespace:
                why = f"unexpected interfaces {report.interfaces}" + (f"; {why}" if why else "")
            report.reason = why or NAMESPACE_OK
        else:
            report.reason = why
    report.capabilities_dropped = drop_capabilities()
    if syscall_filter:
        report.syscall_filter, report.syscall_filter_reason = install_syscall_filter()
        if report.syscall_filter:
            report.syscall_filter_reason = "seccomp: " + ", ".join(DENIED_SYSCALLS) + " refused with EPERM"
    else:
        report.syscall_filter_reason = "turned off by the caller"
    return report
