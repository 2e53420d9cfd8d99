"""The narrow interface: the only requests the gateway forwards and the only responses it lets out.

Two operations, each a JSON object with exactly these fields (anything else is refused):

- ``POST /v1/embeddings``: request ``{"model", "input": [text, ...]}`` (1 to ``max_inputs`` texts, each at
  most ``max_input_chars``); response ``{"model", "embeddings": [[float x dimension], ...]}`` with exactly
  one vector per input, each of the model's fixed dimension, every value finite.
- ``POST /v1/generate``: request ``{"model", "max_tokens", "prompt"}`` or ``{"model", "max_tokens",
  "prompt_tokens"}`` (text at most ``max_prompt_chars``, or at most ``max_prompt_tokens`` ids inside the
  vocabulary); response ``{"model", "tokens": [id, ...], "text"}`` with at most ``max_tokens`` ids inside
  the vocabulary and at most ``max_tokens * max_chars_per_token`` characters of text.

What goes on is rebuilt, never passed through: the gateway serialises the checked values itself (compact
JSON, each value re-formatted), so whitespace, field order, duplicate keys, padding, number spellings or
extra fields cannot carry anything. What a response *says* (which float, which token) is still a channel:
its size is what the budget meters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from strongroom.egress.errors import SchemaError

Kind = Literal["embedding", "generation"]
ROUTES: dict[str, Kind] = {"/v1/embeddings": "embedding", "/v1/generate": "generation"}


@dataclass(frozen=True)
class Limits:
    """Length caps of the narrow interface."""

    max_request_bytes: int = 64 * 1024
    max_response_bytes: int = 256 * 1024
    max_inputs: int = 32
    max_input_chars: int = 2048
    max_prompt_chars: int = 4096
    max_prompt_tokens: int = 1024
    max_new_tokens: int = 256
    max_chars_per_token: int = 32


@dataclass(frozen=True)
class ModelSpec:
    """A model the host serves behind the gateway: its name in requests, its model id, its shape."""

    name: str
    model_id: str
    kind: Kind
    dimension: int = 0  # embeddings
    vocab_size: int = 0  # generation

    def __post_init__(self) -> None:
        if self.kind == "embedding" and not 0 < self.dimension <= 65_536:
            raise SchemaError(f"model {self.name}: an embedding model needs a dimension")
        if self.kind == "generation" and not 0 < self.vocab_size <= 10_000_000:
            raise SchemaError(f"model {self.name}: a generation model needs a vocabulary size")

    @classmethod
    def from_json(cls, name: str, raw: Any) -> ModelSpec:
        if not isinstance(raw, dict) or raw.get("kind") not in ("embedding", "generation"):
            raise SchemaError(f"model {name}: give kind (embedding or generation) and model_id")
        return cls(
            name,
            str(raw.get("model_id") or name),
            raw["kind"],
            int(raw.get("dimension", 0)),
            int(raw.get("vocab_size", 0)),
        )


@dataclass(frozen=True)
class CheckedRequest:
    """A request that passed the schema, rebuilt: ``body`` is what goes to the host."""

    kind: Kind
    path: str
    model: ModelSpec
    body: bytes
    inputs: int = 0  # embeddings: how many vectors must come back
    max_tokens: int = 0  # generation: at most this many tokens


def _exact_fields(value: Any, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(f"{what} must be a JSON object")
    keys = set(value)
    missing = required - keys
    if missing:
        raise SchemaError(f"{what} is missing {', '.join(sorted(missing))}")
    extra = keys - required - optional
    if extra:
        raise SchemaError(f"{what} has fields the interface does not allow: {', '.join(sorted(extra))[:200]}")
    return value


def _text(value: Any, cap: int, what: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{what} must be a string")
    if len(value) > cap:
        raise SchemaError(f"{what} is {len(value)} characters; the cap is {cap}")
    return value


def _int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise SchemaError(f"{what} must be an integer from {low} to {high}")
    return value


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise SchemaError("duplicate keys")
    return value


def _constant(name: str) -> Any:
    raise SchemaError(f"{name} is not a JSON number")


def _integer(literal: str) -> int:
    if len(literal) > 16:
        raise SchemaError("integer out of range")
    return int(literal)


# Strict where it matters (no NaN/Infinity, no duplicate keys, bounded integers), with floats parsed by the C
# scanner: a 384-float embedding parses in a fraction of strict_json's time, and the schema checks every
# value's type and finiteness afterwards anyway.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_int=_integer, strict=True)


def _parse(raw: bytes, what: str) -> Any:
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise SchemaError("a byte order mark is not allowed")
        return _DECODER.decode(text)
    except SchemaError as exc:
        raise SchemaError(f"{what} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SchemaError(f"{what} is not valid JSON: {str(exc).splitlines()[0][:120]}") from None


def check_request(path: str, raw: bytes, models: dict[str, ModelSpec], limits: Limits) -> CheckedRequest:
    """Parse and check a request body for ``path``; raises SchemaError with a one-line reason."""
    kind = ROUTES.get(path)
    if kind is None:
        raise SchemaError(f"no such operation {path[:80]!r}")
    if len(raw) > limits.max_request_bytes:
        raise SchemaError(f"request is {len(raw)} bytes; the cap is {limits.max_request_bytes}")
    value = _parse(raw, "request")
    if kind == "embedding":
        body = _exact_fields(value, {"model", "input"}, set(), "an embeddings request")
    else:
        body = _exact_fields(value, {"model", "max_tokens"}, {"prompt", "prompt_tokens"}, "a generate request")
    name = body["model"]
    model = models.get(name) if isinstance(name, str) else None
    if model is None or model.kind != kind:
        raise SchemaError(f"no {kind} model {str(name)[:64]!r} behind this gateway")
    if kind == "embedding":
        inputs = body["input"]
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= limits.max_inputs:
            raise SchemaError(f"input must be a list of 1 to {limits.max_inputs} strings")
        texts = [_text(t, limits.max_input_chars, f"input[{i}]") for i, t in enumerate(inputs)]
        return CheckedRequest(kind, path, model, _dump({"model": name, "input": texts}), inputs=len(texts))
    max_tokens = _int(body["max_tokens"], 1, limits.max_new_tokens, "max_tokens")
    if ("prompt" in body) == ("prompt_tokens" in body):
        raise SchemaError("give exactly one of prompt (text) or prompt_tokens (token ids)")
    out: dict[str, Any] = {"model": name, "max_tokens": max_tokens}
    if "prompt" in body:
        out["prompt"] = _text(body["prompt"], limits.max_prompt_chars, "prompt")
    else:
        ids = body["prompt_tokens"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= limits.max_prompt_tokens:
            raise SchemaError(f"prompt_tokens must be a list of 1 to {limits.max_prompt_tokens} token ids")
        out["prompt_tokens"] = [_int(t, 0, model.vocab_size - 1, "a token id") for t in ids]
    return CheckedRequest(kind, path, model, _dump(out), max_tokens=max_tokens)


def check_response(request: CheckedRequest, raw: bytes, limits: Limits) -> bytes:
    """Check the host's response to ``request`` and rebuild it; raises SchemaError if it is not allowed."""
    if len(raw) > limits.max_response_bytes:
        raise SchemaError(f"response is {len(raw)} bytes; the cap is {limits.max_response_bytes}")
    value = _parse(raw, "response")
    model = request.model
    if request.kind == "embedding":
        body = _exact_fields(value, {"model", "embeddings"}, set(), "an embeddings response")
        if body["model"] != model.name:
            raise SchemaError("the response names another model")
        vectors = body["embeddings"]
        if not isinstance(vectors, list) or len(vectors) != request.inputs:
            raise SchemaError(f"the response must hold exactly {request.inputs} vectors")
        for vector in vectors:
            if not isinstance(vector, list) or len(vector) != model.dimension:
                raise SchemaError(f"every vector must hold exactly {model.dimension} numbers")
            for x in vector:
                if type(x) is not float and type(x) is not int:
                    raise SchemaError("vector values must be numbers")
        if not bool(np.isfinite(np.asarray(vectors, dtype=np.float64)).all()):
            raise SchemaError("vector values must be finite")
        return _dump({"model": model.name, "embeddings": vectors})
    body = _exact_fields(value, {"model", "tokens", "text"}, set(), "a generate response")
    if body["model"] != model.name:
        raise SchemaError("the response names another model")
    tokens = body["tokens"]
    if not isinstance(tokens, list) or len(tokens) > request.max_tokens:
        raise SchemaError(f"the response must hold at most {request.max_tokens} token ids")
    ids = [_int(t, 0, model.vocab_size - 1, "a token id") for t in tokens]
    text = _text(body["text"], request.max_tokens * limits.max_chars_per_token, "text")
    return _dump({"model": model.name, "tokens": ids, "text": text})


def response_cap(request: CheckedRequest, limits: Limits) -> int:
    """The most bytes a valid response to ``request`` can take (bounded by ``max_response_bytes``)."""
    if request.kind == "embedding":
        # a float64 repr is at most 24 characters plus a comma
        guess = 64 + request.inputs * (request.model.dimension * 26 + 2)
    else:
        digits = len(str(request.model.vocab_size)) + 1
        guess = 64 + request.max_tokens * (digits + 6 * limits.max_chars_per_token)
    return min(limits.max_response_bytes, max(guess, 1024))
