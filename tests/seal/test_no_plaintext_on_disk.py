"""Loading a sealed model never creates or writes a file: proved with a CPython audit hook and a disk scan."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from strongroom.keys import LocalKeyring
from strongroom.seal import SealedModel, load_model_dir, open_sealed

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_recording: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recording:
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & _WRITE_FLAGS:
            _recording[-1].append(f"open {path!r} mode={mode!r} flags={flags}")
    elif event in {
        "os.rename",
        "os.link",
        "os.symlink",
        "os.mkdir",
        "os.truncate",
        "tempfile.mkstemp",
        "tempfile.mkdtemp",
        "os.memfd_create?",
    }:
        _recording[-1].append(f"{event} {args!r}")


sys.addaudithook(_audit)


@contextmanager
def forbid_writes() -> Iterator[list[str]]:
    """Collect every file creation or write-mode open made by this process inside the block."""
    events: list[str] = []
    _recording.append(events)
    try:
        yield events
    finally:
        _recording.pop()


def _snapshot(*roots: Path) -> dict[str, float]:
    seen: dict[str, float] = {}
    for root in roots:
        for path in root.rglob("*"):
            try:
                seen[str(path)] = path.stat().st_mtime
            except OSError:
                continue
    return seen


def test_audit_hook_sees_writes(tmp_path: Path) -> None:
    with forbid_writes() as events:
        (tmp_path / "x").write_bytes(b"1")
        tempfile.mkstemp(dir=tmp_path)
    assert any("open" in e for e in events) and any("mkstemp" in e for e in events)


def test_loading_creates_no_file(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    watched = [Path(tempfile.gettempdir()), sealed_model, Path.cwd()]
    before = _snapshot(*watched)
    with forbid_writes() as events:
        tensors = load_model_dir(sealed_model, keyring)
        with open_sealed(sealed_model / "model.safetensors.sealed", keyring) as st:
            one = st.get_tensor("pooler.dense.weight") if "pooler.dense.weight" in st.header.tensors else None
        with SealedModel.open(sealed_model, keyring) as model:
            config = model.read_file("config.json")
    assert events == []
    assert _snapshot(*watched) == before
    assert tensors and config.startswith(b"{")
    assert one is None or isinstance(one, np.ndarray)


def test_transformers_load_creates_no_file(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    from transformers import AutoModel, AutoTokenizer

    from strongroom.seal.transformers_loader import LoadedTransformer, load_transformers, mean_pooled_embedding

    # Warm torch up on the plaintext model first: its one-time cache directories are not our load's doing.
    warm = LoadedTransformer(AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir), {})
    mean_pooled_embedding(warm, ["warm up"])

    before = _snapshot(Path(tempfile.gettempdir()), sealed_model)
    with forbid_writes() as events, SealedModel.open(sealed_model, keyring) as model:
        loaded = load_transformers(model)
        embedding = mean_pooled_embedding(loaded, ["no plaintext on disk"])
    assert events == [], events
    assert _snapshot(Path(tempfile.gettempdir()), sealed_model) == before
    assert tuple(embedding.shape) == (1, 384)
