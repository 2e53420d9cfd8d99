"""Embeddings computed from the sealed real model equal those from the original files."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from strongroom.keys import LocalKeyring
from strongroom.seal import SealedModel, load_model_dir
from strongroom.seal.transformers_loader import LoadedTransformer, load_transformers, mean_pooled_embedding

SENTENCES = ["Sealed weights load straight into memory.", "A quorum of custodians released the key."]


def test_embeddings_match_the_original(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    with SealedModel.open(sealed_model, keyring) as model:
        sealed = load_transformers(model)
    original = LoadedTransformer(
        AutoModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir), {}
    )
    a = mean_pooled_embedding(sealed, SENTENCES)
    b = mean_pooled_embedding(original, SENTENCES)
    assert torch.equal(a, b)
    assert float((a[0] @ a[1]).item()) < 0.99


def test_torch_tensors_are_bit_identical(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    from safetensors.torch import load_file

    reference = load_file(model_dir / "model.safetensors")
    loaded = load_model_dir(sealed_model, keyring, framework="torch")
    assert set(loaded) == set(reference)
    for name, tensor in reference.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_bf16_and_fp8_round_trip_in_torch(tmp_path: Path, keyring: LocalKeyring) -> None:
    from safetensors.torch import save_file

    from strongroom.seal import open_sealed, seal_path

    tensors = {
        "bf16": torch.randn(33, 17).to(torch.bfloat16),
        "fp8": torch.randn(64).to(torch.float8_e4m3fn),
        "i32": torch.arange(12, dtype=torch.int32).reshape(3, 4),
    }
    save_file(tensors, str(tmp_path / "w.safetensors"))
    seal_path(tmp_path / "w.safetensors", tmp_path / "w.sealed", keyring, segment_size=1024)
    with open_sealed(tmp_path / "w.sealed", keyring) as st:
        for name, tensor in tensors.items():
            got = st.get_tensor(name, framework="torch")
            assert got.dtype == tensor.dtype
            assert torch.equal(got.view(torch.uint8), tensor.view(torch.uint8))
