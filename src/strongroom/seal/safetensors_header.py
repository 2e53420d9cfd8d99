"""Parsing and validating the JSON header of a safetensors file, whatever bytes it came from."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from strongroom.seal.errors import NotSafetensorsError

MAX_HEADER_BYTES = 100_000_000

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's dtype, shape and byte range, as offsets into the whole file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    """The tensors of one safetensors file in file order, and its free-form metadata."""

    header_length: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def data_start(self) -> int:
        return 8 + self.header_length


def parse_safetensors_header(read: Callable[[int, int], bytes], total_length: int, file: str) -> SafetensorsHeader:
    """Read and validate a safetensors header through ``read(start, end)`` over ``total_length`` bytes."""
    if total_length < 8:
        raise NotSafetensorsError(f"{file}: not a safetensors file (too short: {total_length} bytes)")
    (length,) = struct.unpack("<Q", read(0, 8))
    if length < 2 or length > MAX_HEADER_BYTES or 8 + length > total_length:
        raise NotSafetensorsError(
            f"{file}: not a safetensors file (its first 8 bytes give a header length of {length}, "
            f"{'beyond the file' if 8 + length > total_length else 'out of range'})"
        )
    raw = read(8, 8 + length)
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise NotSafetensorsError(f"{file}: safetensors header is not valid JSON") from None
    if not isinstance(value, dict):
        raise NotSafetensorsError(f"{file}: safetensors header is not a JSON object")
    data_start = 8 + length
    data_length = total_length - data_start
    metadata: dict[str, str] = {}
    entries: list[TensorInfo] = []
    for name, spec in value.items():
        if name == "__metadata__":
            if not isinstance(spec, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in spec.items()
            ):
                raise NotSafetensorsError(f"{file}: __metadata__ must map strings to strings")
            metadata = dict(spec)
            continue
        entries.append(_tensor(name, spec, data_start, data_length, file))
    entries.sort(key=lambda t: (t.start, t.end))
    position = data_start
    for tensor in entries:
        if tensor.start != position:
            raise NotSafetensorsError(
                f"{file}: tensor {tensor.name!r} starts at {tensor.start - data_start}, expected "
                f"{position - data_start} (gaps and overlaps are not allowed)"
            )
        position = tensor.end
    if position != total_length:
        raise NotSafetensorsError(f"{file}: {total_length - position} bytes after the last tensor")
    return SafetensorsHeader(length, {t.name: t for t in entries}, metadata)


def _tensor(name: str, spec: object, data_start: int, data_length: int, file: str) -> TensorInfo:
    if not isinstance(spec, dict):
        raise NotSafetensorsError(f"{file}: tensor {name!r} entry is not an object")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise NotSafetensorsError(f"{file}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise NotSafetensorsError(f"{file}: tensor {name!r} has a malformed shape")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_length
    ):
        raise NotSafetensorsError(f"{file}: tensor {name!r} has malformed or out-of-range data_offsets")
    assert isinstance(dtype, str)
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise NotSafetensorsError(
            f"{file}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes, but {dtype}{shape} needs {expected}"
        )
    return TensorInfo(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])
