"""Sealed-load and seal throughput against plain safetensors and raw AES-256-GCM, measured in one run.

    python benchmarks/bench_seal.py [--size-gib 2] [--dir /tmp/strongroom-bench]

Builds a synthetic checkpoint (many tensors, mixed dtypes), warms the page cache, then reports:
plain ``safetensors.numpy.load_file`` vs sealed ``load_model_dir`` (ratio; target <= 1.3x), seal
throughput vs single-stream AES-256-GCM (target >= 70% x threads used), and the time to load one
1 MiB tensor from the sealed file (target < 5 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from safetensors.numpy import load_file, save_file  # type: ignore[import-untyped]

from strongroom.keys import LocalKeyring
from strongroom.seal import load_model_dir, open_sealed, seal_path
from strongroom.seal.reader import default_threads

BENCH_PASSPHRASE = "bench walnut harbour violet"

GIB = 1 << 30
MIB = 1 << 20


def build_checkpoint(path: Path, size: int) -> str:
    """Mixed-dtype tensors (F32, F16, I8, I64) of 1-64 MiB until ``size`` bytes; returns a 1 MiB tensor's name."""
    rng = np.random.default_rng(0)
    block = np.frombuffer(rng.bytes(64 * MIB), dtype=np.uint8)
    dtypes = [np.float32, np.float16, np.int8, np.int64]
    tensors: dict[str, np.ndarray] = {"probe.one_mib": block[:MIB].view(np.float32).reshape(512, 512).copy()}
    total, i = MIB, 0
    while total < size:
        nbytes = min(int(rng.integers(1, 65)) * MIB, size - total)
        dtype = np.dtype(dtypes[i % len(dtypes)])
        count = nbytes // dtype.itemsize
        tensors[f"layers.{i}.weight"] = block[: count * dtype.itemsize].view(dtype).reshape(-1, 64)[: count // 64]
        total += (count // 64) * 64 * dtype.itemsize
        i += 1
    save_file(tensors, str(path))
    return "probe.one_mib"


def best_of(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def _seal_fresh(model: Path, out: Path, keyring: LocalKeyring) -> None:
    shutil.rmtree(out, ignore_errors=True)
    seal_path(model, out, keyring)


def _copy_fresh(src: Path, dst: Path) -> None:
    """The reference for sealing to disk: copying the plaintext file, fsync included."""
    dst.unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def raw_aes_gcm_gbps(total: int) -> float:
    """Single-stream AES-256-GCM encryption of 1 MiB chunks into a preallocated buffer, in GB/s."""
    aead = AESGCM(os.urandom(32))
    chunk = memoryview(bytearray(os.urandom(MIB)))
    out = memoryview(bytearray(MIB + 16))
    nonce = os.urandom(12)

    def run() -> None:
        for _ in range(total // MIB):
            aead.encrypt_into(nonce, chunk, None, out)

    return total / best_of(3, run) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--memory-dir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="tmpfs for the in-memory seal figure (default /dev/shm)",
    )
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="strongroom-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gib * GIB)
    threads = default_threads()
    try:
        model = work / "model"
        model.mkdir(exist_ok=True)
        probe = build_checkpoint(model / "model.safetensors", size)
        nbytes = (model / "model.safetensors").stat().st_size
        keyring = LocalKeyring.init(work / "keys", passphrase=BENCH_PASSPHRASE, scrypt_n=2**14)
        load_file(model / "model.safetensors")  # warm the page cache

        plain = best_of(args.runs, lambda: load_file(model / "model.safetensors"))
        raw = raw_aes_gcm_gbps(min(nbytes, 1 * GIB))

        memory_dir = Path(tempfile.mkdtemp(prefix="strongroom-bench-", dir=args.memory_dir))
        try:
            seal_s = best_of(args.runs, lambda: _seal_fresh(model, memory_dir / "sealed", keyring))
            shutil.rmtree(memory_dir / "sealed", ignore_errors=True)
            mem_copy_s = best_of(
                args.runs, lambda: _copy_fresh(model / "model.safetensors", memory_dir / "copy.safetensors")
            )
        finally:
            shutil.rmtree(memory_dir, ignore_errors=True)
        copy_s = best_of(args.runs, lambda: _copy_fresh(model / "model.safetensors", work / "copy.safetensors"))
        disk_s = best_of(args.runs, lambda: _seal_fresh(model, work / "sealed-disk", keyring))
        sealed = work / "sealed-0"
        seal_path(model, sealed, keyring)
        load_model_dir(sealed, keyring)  # warm
        sealed_load = best_of(args.runs, lambda: load_model_dir(sealed, keyring))

        with open_sealed(sealed / "model.safetensors.sealed", keyring) as st:
            st.get_tensor(probe)
            samples = []
            for _ in range(50):
                start = time.perf_counter()
                st.get_tensor(probe)
                samples.append(time.perf_counter() - start)
        one = statistics.median(samples)

        seal_gbps = nbytes / seal_s / 1e9
        disk_gbps = nbytes / disk_s / 1e9
        print(f"checkpoint: {nbytes / GIB:.2f} GiB, {threads} threads, best of {args.runs}, warm page cache")
        print(f"plain safetensors.numpy.load_file : {plain:7.3f} s  ({nbytes / plain / 1e9:5.2f} GB/s)")
        print(f"sealed load_model_dir             : {sealed_load:7.3f} s  ({nbytes / sealed_load / 1e9:5.2f} GB/s)")
        print(f"  ratio sealed/plain              : {sealed_load / plain:7.2f}x   (target <= 1.3x, aim 1.1x)")
        print(f"raw AES-256-GCM, one stream       : {raw:7.2f} GB/s")
        print(f"seal into memory (tmpfs)          : {seal_gbps:7.2f} GB/s  (hash pass + read + encrypt + write)")
        print(f"  ratio seal/raw                  : {seal_gbps / raw:7.2f}x   (target >= 0.70 x {threads} threads)")
        print(f"plain copy into tmpfs             : {mem_copy_s:7.3f} s  ({nbytes / mem_copy_s / 1e9:5.2f} GB/s)")
        print(f"  ratio seal/copy in tmpfs        : {seal_s / mem_copy_s:7.2f}x the time")
        print(f"plain copy to disk, with fsync    : {copy_s:7.3f} s  ({nbytes / copy_s / 1e9:5.2f} GB/s)")
        print(f"seal to disk, with fsync          : {disk_s:7.3f} s  ({disk_gbps:5.2f} GB/s)")
        print(f"  ratio seal/copy on disk         : {disk_s / copy_s:7.2f}x")
        print(f"one 1 MiB tensor, random access   : {one * 1e3:7.3f} ms  (target < 5 ms)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
