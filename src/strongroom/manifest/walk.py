"""Listing a model directory without ever leaving it: no symbolic links, ignored paths as model-signing has."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from strongroom.manifest.errors import ModelPathError, SymlinkEscapeError, SymlinkNotAllowedError

SIGNATURE_FILE = "model.sig"
# What model-signing always leaves out at the model root, plus the signature itself.
DEFAULT_IGNORED: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore", SIGNATURE_FILE)


def is_ignored(name: str, ignored: Iterable[str]) -> bool:
    """True if ``name`` (posix, relative) is an ignored path or lies under one."""
    parts = PurePosixPath(name).parts
    for entry in ignored:
        ip = PurePosixPath(entry.strip("/")).parts
        if ip and parts[: len(ip)] == ip:
            return True
    return False


def check_link(path: Path, root: Path) -> None:
    """Refuse a symbolic link, saying whether it escapes the model directory."""
    target = Path(os.path.realpath(path))
    real_root = Path(os.path.realpath(root))
    if target != real_root and real_root not in target.parents:
        raise SymlinkEscapeError(f"{path}: symbolic link points outside the model directory (to {target})")
    raise SymlinkNotAllowedError(f"{path}: symbolic links are not allowed in a signed model")


def list_files(root: Path, ignored: Iterable[str] = DEFAULT_IGNORED) -> list[str]:
    """Every regular file below ``root`` as a posix relative name, sorted; ignored paths left out.

    Any symbolic link (file or directory) that is not ignored is an error: verification never follows a
    path out of the model directory, and inside it a link would let one file be counted twice.
    """
    root = Path(root)
    if root.is_symlink():
        check_link(root, root.parent)
    if not root.is_dir():
        raise ModelPathError(f"{root}: not a directory")
    ignored = tuple(ignored)
    found: list[str] = []

    def walk_error(exc: OSError) -> None:
        raise ModelPathError(f"{exc.filename}: cannot read directory: {exc.strerror}")

    for current, dirs, files in os.walk(root, onerror=walk_error, followlinks=False):
        base = Path(current)
        kept = []
        for d in sorted(dirs):
            rel = (base / d).relative_to(root).as_posix()
            if is_ignored(rel, ignored):
                continue
            if (base / d).is_symlink():
                check_link(base / d, root)
            kept.append(d)
        dirs[:] = kept
        for f in sorted(files):
            path = base / f
            rel = path.relative_to(root).as_posix()
            if is_ignored(rel, ignored):
                continue
            if path.is_symlink():
                check_link(path, root)
            if not path.is_file():
                raise ModelPathError(f"{path}: not a regular file")
            found.append(rel)
    return sorted(found)
