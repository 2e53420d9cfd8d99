"""A small reference inference server for a weight host: what the gateway fronts in tests, benchmarks and
demos. It speaks the narrow interface (``strongroom.egress.schema``) over strict HTTP/1.1 with keep-alive.

Two kinds of model, both run with torch on the CPU (one thread, so timings are steady):

- an embedding model loaded with transformers from a local directory (the bundled all-MiniLM-L6-v2): mean
  pooling over the last hidden state, L2-normalised;
- a small GPT-2 built from a config with seeded weights (no download): greedy decoding; prompts in text
  become byte ids, token ids become printable characters (``chr(32 + id % 95)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from strongroom.egress.httpio import MAX_HEAD, HttpError, error_body, read_head, response, stop_on_signals

MAX_BODY = 1024 * 1024


class EmbeddingBackend:
    kind = "embedding"

    def __init__(self, path: Path, max_length: int = 128) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        self.dimension = int(self.model.config.hidden_size)
        self.max_length = max_length

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        batch = self.tokenizer(
            list(body["input"]), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return {"model": body["model"], "embeddings": vectors.tolist()}


class GenerationBackend:
    kind = "generation"

    def __init__(
        self, seed: int = 0, vocab_size: int = 1000, layers: int = 2, width: int = 64, positions: int = 256
    ) -> None:
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel

        self.torch = torch
        config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=positions,
            n_embd=width,
            n_layer=layers,
            n_head=2,
            bos_token_id=0,
            eos_token_id=1,
        )
        torch.manual_seed(seed)
        self.model = GPT2LMHeadModel(config).eval()  # type: ignore[no-untyped-call]
        self.vocab_size = vocab_size
        self.positions = positions

    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        max_tokens = int(body["max_tokens"])
        if "prompt_tokens" in body:
            ids = [int(t) for t in body["prompt_tokens"]]
        else:
            ids = [b % self.vocab_size for b in str(body["prompt"]).encode()] or [0]
        ids = ids[-max(1, self.positions - max_tokens) :]
        with torch.inference_mode():
            out = self.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        tokens = [int(t) for t in out[0, len(ids) :].tolist()][:max_tokens]
        return {"model": body["model"], "tokens": tokens, "text": "".join(chr(32 + t % 95) for t in tokens)}


class Backend(Protocol):
    """What the server calls: ``kind`` picks the path, ``run`` answers one checked request body."""

    kind: str

    def run(self, body: dict[str, Any]) -> dict[str, Any]: ...


PATHS = {"/v1/embeddings": "embedding", "/v1/generate": "generation"}


class InferenceServer:
    """Serves ``backends`` (name -> backend) on ``host:port`` until ``stop()``."""

    def __init__(self, backends: dict[str, Backend]) -> None:
        self.backends = backends
        self._server: asyncio.Server | None = None
        self._lock = asyncio.Lock()  # one model call at a time, as a single-threaded worker would

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._client, host, port, limit=MAX_HEAD, backlog=512)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    break
                kind = PATHS.get(head.path)
                if kind is None or head.method != "POST":
                    raise HttpError(404, "no such operation")
                raw = await reader.readexactly(head.content_length(MAX_BODY))
                try:
                    body = json.loads(raw)
                    backend = self.backends[body["model"]]
                except (ValueError, KeyError, TypeError):
                    raise HttpError(400, "bad request") from None
                if backend.kind != kind:
                    raise HttpError(400, "wrong operation for this model")
                async with self._lock:
                    result = await asyncio.get_running_loop().run_in_executor(None, backend.run, body)
                out = json.dumps(result, separators=(",", ":")).encode()
                writer.write(response(200, out))
                await writer.drain()
        except HttpError as exc:
            with contextlib.suppress(ConnectionError):
                writer.write(response(exc.status, error_body(str(exc), exc.kind), close=True))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def load_backends(embedding: dict[str, Path], generation: dict[str, int]) -> dict[str, Backend]:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    backends: dict[str, Backend] = {name: EmbeddingBackend(path) for name, path in embedding.items()}
    backends.update({name: GenerationBackend(seed) for name, seed in generation.items()})
    return backends


async def serve(backends: dict[str, Backend], host: str, port: int, ready: Callable[[int], None] | None = None) -> None:

    server = InferenceServer(backends)
    bound = await server.start(host, port)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        await stop.wait()
    finally:
        await server.stop()
