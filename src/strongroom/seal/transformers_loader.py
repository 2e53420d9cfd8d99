"""Build a ``transformers`` model and tokenizer from decrypted bytes, entirely in memory.

Config, tokenizer and weights are decrypted into Python objects; nothing is written to disk, so the
usual ``from_pretrained(path)`` (which reads files) is replaced by ``from_config`` + ``load_state_dict``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.seal.directory import SealedModel
from strongroom.seal.errors import SealError

NEEDED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


@dataclass
class LoadedTransformer:
    """A model in eval mode, its fast tokenizer, and the parsed config."""

    model: Any
    tokenizer: Any
    config: dict[str, Any]


def _json(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    try:
        value = json.loads(files[name])
    except KeyError:
        raise SealError(f"sealed model has no {name}") from None
    except (ValueError, UnicodeDecodeError):
        raise SealError(f"sealed {name} is not valid JSON") from None
    if not isinstance(value, dict):
        raise SealError(f"sealed {name} is not a JSON object")
    return value


def load_transformers(model: SealedModel, device: str = "cpu") -> LoadedTransformer:
    """Decrypt config, tokenizer and weights of a sealed model and build it."""
    files = {name: model.read_file(name) for name in NEEDED_FILES if name in model.entries}
    return build_transformers(files, model.load_tensors("torch", device), device)


def build_transformers(files: Mapping[str, bytes], state: dict[str, Any], device: str = "cpu") -> LoadedTransformer:
    """Instantiate the architecture named in ``config.json`` and load ``state`` (torch tensors) into it."""
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    config_dict = _json(files, "config.json")
    model_type = config_dict.get("model_type")
    if not isinstance(model_type, str):
        raise SealError("sealed config.json has no model_type")
    config = AutoConfig.for_model(**config_dict)
    network = AutoModel.from_config(config).to(device)  # type: ignore[no-untyped-call]
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise SealError(f"sealed weights lack tensor {result.missing_keys[0]!r} the model needs")
    network.eval()

    tokenizer_kwargs: dict[str, Any] = {}
    if "tokenizer_config.json" in files:
        tokenizer_kwargs = {
            k: v for k, v in _json(files, "tokenizer_config.json").items() if isinstance(v, str | int | bool)
        }
        tokenizer_kwargs.pop("tokenizer_class", None)
    if "tokenizer.json" not in files:
        raise SealError("sealed model has no tokenizer.json")
    backend = Tokenizer.from_str(files["tokenizer.json"].decode("utf-8"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **tokenizer_kwargs)  # type: ignore[no-untyped-call]
    return LoadedTransformer(network, tokenizer, config_dict)


def mean_pooled_embedding(loaded: LoadedTransformer, sentences: list[str]) -> Any:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: attention-masked mean, L2-normalised."""
    import torch

    batch = loaded.tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = loaded.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)
