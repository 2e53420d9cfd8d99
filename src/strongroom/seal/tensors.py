"""safe_open-like access to a sealed safetensors file: list tensors, load one or all, numpy or torch."""

from __future__ import annotations

import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from strongroom.seal.buffers import Prefaulter, owned_buffer
from strongroom.seal.errors import NotSafetensorsError, SealError
from strongroom.seal.reader import SealedFile, default_threads
from strongroom.seal.safetensors_header import SafetensorsHeader, TensorInfo, parse_safetensors_header

Framework = Literal["numpy", "torch"]

PARALLEL_BYTES = 4 << 20  # below this one thread decrypts a single tensor (thread start-up costs more)
STAGE_BYTES = 8 << 20  # pinned staging chunk for device loads

NUMPY_DTYPES: dict[str, str] = {
    "BOOL": "bool", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
    "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8",
}  # fmt: skip


def _numpy_dtype(dtype: str, name: str, file: str) -> np.dtype[Any]:
    if dtype in NUMPY_DTYPES:
        return np.dtype(NUMPY_DTYPES[dtype])
    if importlib.util.find_spec("ml_dtypes") is not None:
        import ml_dtypes

        special = {
            "BF16": ml_dtypes.bfloat16,
            "F8_E4M3": ml_dtypes.float8_e4m3fn,
            "F8_E5M2": ml_dtypes.float8_e5m2,
        }
        found: np.dtype[Any] = np.dtype(special[dtype])
        return found
    raise SealError(f"{file}: tensor {name!r} is {dtype}, which numpy cannot hold; load it with framework='torch'")


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {
        "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "U16": torch.uint16, "I16": torch.int16,
        "F16": torch.float16, "BF16": torch.bfloat16, "U32": torch.uint32, "I32": torch.int32,
        "F32": torch.float32, "U64": torch.uint64, "I64": torch.int64, "F64": torch.float64,
        "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    }[dtype]  # fmt: skip


def view_tensor(
    buffer: np.ndarray[Any, Any], base: int, info: TensorInfo, framework: Framework, device: str, file: str
) -> Any:
    """A tensor viewing ``buffer`` (plaintext bytes starting at file offset ``base``), no copy on CPU."""
    offset = info.start - base
    if framework == "numpy":
        dtype = _numpy_dtype(info.dtype, info.name, file)
        count = info.nbytes // dtype.itemsize
        return np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(info.shape)
    if framework == "torch":
        import torch

        raw = torch.from_numpy(buffer[offset : offset + info.nbytes])
        tensor = (
            raw.view(_torch_dtype(info.dtype)).reshape(info.shape)
            if info.nbytes
            else torch.empty(info.shape, dtype=_torch_dtype(info.dtype))
        )
        return tensor if device == "cpu" else tensor.to(device)
    raise ValueError(f"unknown framework {framework!r} (numpy or torch)")


def device_view(buffer: Any, base: int, info: TensorInfo, file: str) -> Any:
    """A torch tensor viewing a uint8 torch ``buffer`` (any device) that holds plaintext from ``base``."""
    import torch

    dtype = _torch_dtype(info.dtype)
    if info.nbytes == 0:
        return torch.empty(info.shape, dtype=dtype, device=buffer.device)
    offset = info.start - base
    return buffer[offset : offset + info.nbytes].view(dtype).reshape(info.shape)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads for single-tensor reads, started on first need and kept,
    so that reading one tensor does not start threads (its workers only ever decrypt segments, so a
    caller never waits on the pool from inside it)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="strongroom-read")
        return pool


class SealedSafetensors:
    """A sealed safetensors file opened with its data key; reads decrypt only the segments they need."""

    def __init__(self, sealed: SealedFile, threads: int | None = None, header: SafetensorsHeader | None = None) -> None:
        """``header``: the parsed header of a file with the same keyed plaintext digest, if one is cached."""
        if sealed.header.content_type != "safetensors":
            raise NotSafetensorsError(f"{sealed.display}: sealed content is not a safetensors file")
        self.sealed = sealed
        self.threads = threads or default_threads()
        self.header: SafetensorsHeader = header or parse_safetensors_header(
            sealed.read, sealed.plaintext_length, sealed.display
        )

    def keys(self) -> list[str]:
        return list(self.header.tensors)

    def metadata(self) -> dict[str, str]:
        return dict(self.header.metadata)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.header.tensors[name]
        except KeyError:
            raise SealError(f"{self.sealed.display}: no tensor named {name!r}") from None

    def get_tensor(self, name: str, framework: Framework = "numpy", device: str = "cpu") -> Any:
        """Decrypt just the segments that hold one tensor, straight into the returned tensor's memory.

        The buffer spans whole segments (at most one segment more on each side than the tensor), so no
        segment is decrypted twice or through a scratch copy; the tensor is a view into it.
        """
        info = self.info(name)
        lo, hi = self.sealed.segment_span(info.start, info.end)
        buffer = _aligned_empty(hi - lo)
        if info.nbytes >= PARALLEL_BYTES and self.threads > 1:
            pool = shared_pool(self.threads)
            self.sealed.read_into(lo, hi, _bytes_view(buffer), threads=self.threads, executor=pool)
        else:
            self.sealed.read_into(lo, hi, _bytes_view(buffer))
        return view_tensor(buffer, lo, info, framework, device, self.sealed.display)

    def load_all(self, framework: Framework = "numpy", device: str = "cpu") -> dict[str, Any]:
        """Decrypt the whole data region in parallel into memory this loader owns; tensors are views on it.

        The buffer is a fresh anonymous mapping that the decrypting threads populate batch by batch just
        ahead of their writes (``strongroom.seal.buffers``): faulting in fresh pages, not AES, is most of a
        fresh process's load. With a torch ``device`` other than the CPU, see ``load_to_device``.
        """
        if framework == "torch" and device != "cpu":
            return self.load_to_device(device)
        start, end = self.header.data_start, self.sealed.plaintext_length
        buffer = owned_buffer(end - start)
        prefault = Prefaulter(buffer)
        self.sealed.read_into(start, end, _bytes_view(buffer), threads=self.threads, prefault=prefault.populate)
        return {
            name: view_tensor(buffer, start, info, framework, "cpu", self.sealed.display)
            for name, info in self.header.tensors.items()
        }

    def load_to_device(self, device: str, chunk_bytes: int = STAGE_BYTES) -> dict[str, Any]:
        """Torch tensors on ``device``: decrypt chunk by chunk into pinned staging buffers, copy each chunk
        to one device buffer on a side stream while the next chunk decrypts (``strongroom.seal.staging``)."""
        from strongroom.seal.staging import stage_to_device

        start, end = self.header.data_start, self.sealed.plaintext_length
        target = stage_to_device(self.sealed, start, end, device, chunk_bytes=chunk_bytes, threads=self.threads)
        return {
            name: device_view(target, start, info, self.sealed.display) for name, info in self.header.tensors.items()
        }

    def close(self) -> None:
        self.sealed.close()

    def __enter__(self) -> SealedSafetensors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _aligned_empty(size: int, alignment: int = 64) -> np.ndarray[Any, Any]:
    """An uninitialised uint8 array whose data pointer is ``alignment``-aligned."""
    raw = np.empty(size + alignment, dtype=np.uint8)
    shift = (-raw.ctypes.data) % alignment
    return raw[shift : shift + size]


def _bytes_view(array: np.ndarray[Any, Any]) -> memoryview:
    """A writable byte memoryview over a contiguous uint8 array."""
    return memoryview(array.data).cast("B")
