"""Sealing a model under its own identity: the data key is bound to the plain directory's model id.

``strongroom.seal`` cannot import the manifest package (the manifest reads sealed models), so the step that
needs both lives here: compute the model id of the plaintext, then seal with the key bound to it. A key
registered for custody under any other model id then fails to unwrap (``docs/keys.md``, key binding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import manifest_of_plain
from strongroom.manifest.errors import ModelPathError
from strongroom.seal.directory import seal_path
from strongroom.seal.errors import SealError


def seal_model(src: Path, dst: Path, provider: KeyProvider, **seal_kwargs: Any) -> dict[str, Any]:
    """Seal the model directory ``src`` into ``dst`` with its data key bound to the model's id.

    ``seal_kwargs`` go to ``seal_path`` (segment size, threads, progress...). Returns ``seal_path``'s
    summary with ``"model_id"`` added. The model id is that of ``strongroom manifest SRC`` (BLAKE3); the
    source must not change while it is hashed and sealed (a later ``strongroom manifest --keys`` of the
    sealed directory shows the same id when it did not).
    """
    if "model_id" in seal_kwargs:
        raise TypeError("seal_model computes the model id itself; call seal_path to choose one")
    src = Path(src)
    if not src.is_dir():
        raise ModelPathError(f"{src}: not a model directory (seal a single file with seal_path)")
    if Path(dst).exists():  # before hashing the whole model, not after
        raise SealError(f"{dst}: output already exists; choose a new path")
    model_id = manifest_of_plain(src).model_id
    summary = seal_path(src, dst, provider, model_id=model_id, **seal_kwargs)
    summary["model_id"] = model_id
    return summary
