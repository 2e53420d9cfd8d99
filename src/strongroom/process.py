"""Process hygiene for anything that holds keys: no core dumps, no ptrace or /proc/PID/mem reads by other
processes of the same user, and secrets taken out of the environment that child processes inherit.

``harden()`` sets RLIMIT_CORE to 0 and PR_SET_DUMPABLE to 0 (prctl(2); the latter also makes the process's
/proc files root-owned and stops same-user ptrace). ``take_secrets()`` moves every ``STRONGROOM_*``
passphrase, PIN and token out of ``os.environ`` into this module, so ``secret(name)`` still finds them but no
child process inherits them. Limits: root can still read this process's memory; what OpenSSL copies of a
key it keeps is beyond our reach (see ``strongroom.memory``).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
from collections import ChainMap
from collections.abc import Mapping

from strongroom.memory import libc

SECRET_NAME = re.compile(r"^STRONGROOM_\w*(PASSPHRASE|PIN|TOKEN)$")
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
_taken: dict[str, str] = {}


def harden() -> dict[str, bool]:
    """No core dumps, not dumpable; returns which of the two took effect."""
    done = {"core_dumps_off": False, "not_dumpable": False}
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        done["core_dumps_off"] = True
    c = libc()
    if c is not None and c.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
        done["not_dumpable"] = c.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    return done


def take_secrets() -> list[str]:
    """Move secret-bearing ``STRONGROOM_*`` variables out of the environment children inherit; returns
    their names."""
    names = sorted(name for name in os.environ if SECRET_NAME.match(name))
    for name in names:
        _taken[name] = os.environ.pop(name)
    return names


def secret(name: str) -> str | None:
    """A secret from the environment, or one ``take_secrets`` already moved out of it."""
    return os.environ.get(name, _taken.get(name))


def environment() -> Mapping[str, str]:
    """The environment as settings see it: the real one, plus the secrets taken out of it."""
    return ChainMap(dict(os.environ), _taken)
