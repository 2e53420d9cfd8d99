"""Delete the source audio after a successful run: overwrite, fsync, rename, unlink, fsync the directory.

Honest limits: on SSDs (wear levelling, over-provisioning), on copy-on-write or log-structured filesystems
(btrfs, ZFS, F2FS, overlay upper layers), in snapshots and backups, the old blocks may survive an
overwrite. Full-disk encryption plus key destruction is the dependable control; this is defence in depth.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from strongroom.atomic import fsync_dir
from strongroom.meetings.errors import ShredError

CHUNK = 1 << 20
COW_FILESYSTEMS = frozenset({"btrfs", "zfs", "f2fs", "overlay", "nilfs2", "bcachefs", "apfs"})


@dataclass(frozen=True)
class ShredReport:
    """What was done to the file, and whether the overwrite can be trusted to reach the old blocks."""

    path: str
    bytes_overwritten: int
    filesystem: str
    caveat: str | None


def filesystem_of(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/self/mounts; 'unknown' elsewhere)."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def caveat_for(filesystem: str) -> str | None:
    """A plain statement of what the overwrite cannot promise on ``filesystem``."""
    if filesystem in COW_FILESYSTEMS:
        return f"{filesystem} is copy-on-write: the overwrite goes to new blocks and the old audio may survive"
    if filesystem in ("tmpfs", "ramfs"):
        return None
    return "on SSDs and thin-provisioned disks the old blocks may survive the overwrite (wear levelling)"


def shred(path: str | Path, passes: int = 1) -> ShredReport:
    """Overwrite ``path`` with random bytes (``passes`` times), fsync, rename to a random name, unlink.

    Refuses symlinks, non-regular files and files with other hard links (overwriting them would destroy
    data reachable under another name, and unlinking one name would not delete the audio).
    """
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ShredError(f"{path}: no such file to delete") from None
    if stat.S_ISLNK(info.st_mode):
        raise ShredError(f"{path}: is a symbolic link; give the audio file itself")
    if not stat.S_ISREG(info.st_mode):
        raise ShredError(f"{path}: not a regular file")
    if info.st_nlink > 1:
        raise ShredError(f"{path}: has {info.st_nlink} hard links; the audio stays reachable under another name")
    kind = filesystem_of(path)
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(fd).st_size
            for _ in range(max(1, passes)):
                os.lseek(fd, 0, os.SEEK_SET)
                remaining = size
                while remaining:
                    block = secrets.token_bytes(min(CHUNK, remaining))
                    remaining -= os.write(fd, block)
                os.fsync(fd)
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        hidden = path.with_name("." + secrets.token_hex(12))
        os.rename(path, hidden)
        fsync_dir(path.parent)
        os.unlink(hidden)
        fsync_dir(path.parent)
    except OSError as exc:
        raise ShredError(f"{path}: cannot delete: {exc.strerror or exc}") from None
    return ShredReport(str(path), size, kind, caveat_for(kind))
