"""Meeting outputs at rest: each file sealed under its own data key, or plaintext only when asked.

The output directory appears whole or not at all (``strongroom.atomic.atomic_directory``): a full disk or
any other failure leaves nothing behind, and the source audio is then kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from strongroom.atomic import atomic_directory, write_atomic
from strongroom.keys.provider import KeyProvider
from strongroom.meetings.errors import OutputError
from strongroom.meetings.formats import Transcript, from_json
from strongroom.seal import open_blob, seal_blob
from strongroom.seal.errors import SealError

SEALED_SUFFIX = ".sealed"
TRANSCRIPT = "transcript.json"


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output directory that exists and is not empty (checked before any work is done)."""
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())):
        raise OutputError(f"{out_dir}: output already exists and is not empty; choose a new directory")


def prepare_out_dir(out_dir: Path) -> None:
    """Accept a missing or empty directory (removed, to be recreated atomically); refuse anything else."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    elif out_dir.exists():
        raise OutputError(f"{out_dir}: output already exists and is not empty; choose a new directory")


def write_outputs(
    out_dir: Path, files: dict[str, bytes], provider: KeyProvider | None, plaintext: bool = False
) -> list[Path]:
    """Write ``files`` into a new ``out_dir``: sealed (``NAME.sealed``) unless ``plaintext`` is set."""
    if not plaintext and provider is None:
        raise OutputError(f"{out_dir}: sealed output needs a key provider (--keys), or pass --plaintext")
    prepare_out_dir(out_dir)
    written: list[Path] = []
    current = out_dir
    try:
        with atomic_directory(out_dir) as staging:
            for name, data in files.items():
                current = out_dir / name
                if plaintext:
                    write_atomic(staging / name, data)
                    written.append(out_dir / name)
                else:
                    assert provider is not None
                    seal_blob(data, staging / (name + SEALED_SUFFIX), provider, name=name)
                    written.append(out_dir / (name + SEALED_SUFFIX))
    except OSError as exc:
        raise OutputError(f"{current}: cannot write output: {_describe(exc)}; nothing was kept") from None
    except SealError as exc:
        raise OutputError(f"{current}: cannot seal output: {exc}; nothing was kept") from None
    return written


def is_sealed_dir(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds sealed outputs (as opposed to --plaintext ones)."""
    return (out_dir / (TRANSCRIPT + SEALED_SUFFIX)).is_file()


def read_output(out_dir: Path, name: str, provider: KeyProvider | None) -> bytes:
    """One output by its plain name, decrypted in memory if sealed."""
    sealed = out_dir / (name + SEALED_SUFFIX)
    if sealed.is_file():
        if provider is None:
            raise OutputError(f"{sealed}: sealed; pass --keys to read it")
        return open_blob(sealed, provider)
    plain = out_dir / name
    if plain.is_file():
        return plain.read_bytes()
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir}: no such meeting output directory")
    raise OutputError(f"{out_dir}: no {name} (sealed or plain) in this meeting output")


def list_outputs(out_dir: Path) -> list[str]:
    """Plain names of the outputs present."""
    names = sorted(os.listdir(out_dir))
    return [n[: -len(SEALED_SUFFIX)] if n.endswith(SEALED_SUFFIX) else n for n in names]


def load_transcript(out_dir: Path, provider: KeyProvider | None) -> Transcript:
    """The transcript of a meeting output directory (sealed or plain)."""
    return from_json(read_output(out_dir, TRANSCRIPT, provider), str(out_dir / TRANSCRIPT))
