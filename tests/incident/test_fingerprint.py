"""Per-release fingerprints on the real all-MiniLM-L6-v2: the mark costs almost nothing in embedding quality,
names the right recipient among 50, and an unmarked copy is named by nobody."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from strongroom.incident.errors import FingerprintError
from strongroom.incident.fingerprint import (
    Candidate,
    FingerprintKey,
    FingerprintPolicy,
    apply_fingerprint,
    attribute,
    load_plain_tensors,
    release_commitment,
)
from strongroom.keys import LocalKeyring
from strongroom.seal import SealedModel

SENTENCES = [
    "The custody ledger records every release of the model weights.",
    "A leaked copy of the weights was found on a file-sharing site.",
    "Officers declared an incident and froze all releases.",
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings of similar sentences should be close together.",
    "Rotate the data key and re-seal the model.",
]
RECIPIENTS = [f"release-{i:02d}" for i in range(50)]


@pytest.fixture(scope="module")
def original(sealed_model: Path, keyring: LocalKeyring) -> tuple[dict[str, Any], str]:
    with SealedModel.open(sealed_model, keyring) as model:
        assert model.model_id is not None
        return model.load_tensors("numpy"), model.model_id


def marked_copy(
    original: dict[str, Any], key: FingerprintKey, release: str, policy: FingerprintPolicy
) -> dict[str, Any]:
    copy = {name: np.array(value) for name, value in original.items()}
    apply_fingerprint(copy, key.release_key(release), policy)
    return copy


def test_the_right_recipient_among_50_and_no_other(original: tuple[dict[str, Any], str]) -> None:
    tensors, model_id = original
    policy, key = FingerprintPolicy(model_id), FingerprintKey.generate()
    leaked = marked_copy(tensors, key, "release-37", policy)
    result = attribute(leaked, tensors, RECIPIENTS, key=key, policy=policy)
    assert result.verdict == "attributed" and result.release_id == "release-37"
    assert result.matches[0].z > 50  # about sqrt(4096) = 64
    assert all(s.z < 7 for s in result.scores if s.release_id != "release-37")
    assert result.changed_elements <= policy.elements
    assert result.false_hit_bound < 2e-9  # 50 candidates x exp(-7^2/2)


def test_an_unmarked_copy_is_named_by_nobody(original: tuple[dict[str, Any], str]) -> None:
    tensors, model_id = original
    policy, key = FingerprintPolicy(model_id), FingerprintKey.generate()
    result = attribute({n: np.array(v) for n, v in tensors.items()}, tensors, RECIPIENTS, key=key, policy=policy)
    assert result.verdict == "unmarked" and result.release_id is None and not result.matches
    other_key = FingerprintKey.generate()  # a copy marked under another key (another lab's, or a forgery)
    foreign = marked_copy(tensors, other_key, "release-05", policy)
    result = attribute(foreign, tensors, RECIPIENTS, key=key, policy=policy)
    assert result.verdict == "no-match" and not result.matches


def test_a_copy_with_noise_added_is_still_named(original: tuple[dict[str, Any], str]) -> None:
    """A leaker who adds Gaussian noise of the mark's own size to every weight does not erase it."""
    tensors, model_id = original
    policy, key = FingerprintPolicy(model_id), FingerprintKey.generate()
    leaked = marked_copy(tensors, key, "release-12", policy)
    rng = np.random.default_rng(7)
    for name, value in leaked.items():
        if value.dtype.kind == "f" and value.ndim == 2:
            leaked[name] = value + rng.normal(0, policy.epsilon * float(value.std()), value.shape).astype(value.dtype)
    result = attribute(leaked, tensors, RECIPIENTS, key=key, policy=policy)
    assert result.release_id == "release-12"


def test_a_recorded_commitment_must_match_the_key_and_policy(original: tuple[dict[str, Any], str]) -> None:
    tensors, model_id = original
    policy, key = FingerprintPolicy(model_id), FingerprintKey.generate()
    leaked = marked_copy(tensors, key, "release-01", policy)
    good = Candidate("release-01", release_commitment("release-01", key.commitment, policy))
    assert attribute(leaked, tensors, [good], key=key, policy=policy).release_id == "release-01"
    stronger = FingerprintPolicy(model_id, epsilon_ppm=40_000)
    wrong = Candidate("release-01", release_commitment("release-01", key.commitment, stronger))
    with pytest.raises(FingerprintError, match="commitment"):
        attribute(leaked, tensors, [wrong], key=key, policy=policy)
    with pytest.raises(FingerprintError, match="disabled"):
        apply_fingerprint(dict(tensors), key.release_key("x"), FingerprintPolicy(model_id, enabled=False))


def test_the_quality_cost_on_minilm(original: tuple[dict[str, Any], str], model_dir: Path) -> None:
    """Embedding cosine to the unmarked model stays above 0.9999 at the default policy (measured, printed)."""
    import torch

    from strongroom.seal.transformers_loader import build_transformers, mean_pooled_embedding

    tensors, model_id = original
    files = {n: (model_dir / n).read_bytes() for n in ("config.json", "tokenizer.json", "tokenizer_config.json")}
    policy, key = FingerprintPolicy(model_id), FingerprintKey.generate()

    def embed(state: dict[str, Any]) -> Any:
        loaded = build_transformers(files, {n: torch.from_numpy(np.array(v)) for n, v in state.items()})
        return mean_pooled_embedding(loaded, SENTENCES)

    base = embed(tensors)
    marked = embed(marked_copy(tensors, key, "release-00", policy))
    cosine = (base * marked).sum(dim=1)
    strong = embed(marked_copy(tensors, key, "release-00", FingerprintPolicy(model_id, epsilon_ppm=200_000)))
    strong_cosine = (base * strong).sum(dim=1)
    print(json.dumps({"default_min_cosine": float(cosine.min()), "epsilon_0.2_min_cosine": float(strong_cosine.min())}))
    assert float(cosine.min()) > 0.9999
    assert float(strong_cosine.min()) < float(cosine.min())  # the cost grows with the amplitude: it is measured


def test_a_leaked_copy_is_read_from_plain_safetensors(original: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    tensors, model_id = original
    policy, key = FingerprintPolicy(model_id), FingerprintKey.generate()
    save_file(marked_copy(tensors, key, "release-44", policy), str(tmp_path / "model.safetensors"))
    leaked = load_plain_tensors(tmp_path)
    assert attribute(leaked, tensors, RECIPIENTS, key=key, policy=policy).release_id == "release-44"
