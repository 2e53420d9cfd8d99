"""Private files: a data directory is 0700 and its keys and databases 0600, checked before a server starts.

A custody database, its -wal and -shm files, and the service, log and witness keys are what an insider on
the same machine would copy first; loose modes are refused at start unless the operator says otherwise.
"""

from __future__ import annotations

import stat
from pathlib import Path

SECRET_SUFFIXES = (".key", ".sqlite3", ".sqlite3-wal", ".sqlite3-shm")


def private_directory(path: Path) -> Path:
    """Create ``path`` (and parents) with the directory itself mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def loose_files(directory: Path) -> list[str]:
    """Why ``directory`` is not private: itself or any key or database in it open to group or others."""
    problems = []
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        problems.append(f"{directory} is mode {mode:o} (chmod 700 {directory})")
    for path in sorted(directory.iterdir()):
        if path.name.endswith(SECRET_SUFFIXES) and path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                problems.append(f"{path} is mode {mode:o} (chmod 600 {path})")
    return problems
