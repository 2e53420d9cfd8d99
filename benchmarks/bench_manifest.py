"""Manifest hashing vs model-signing, and sealed load with vs without verification, in one run.

    python benchmarks/bench_manifest.py [--size-gib 2] [--dir /tmp/strongroom-bench-manifest] [--repeat 3]
        [--baseline-src /work/baseline/src]

Builds a synthetic checkpoint (two safetensors shards of F32, F16 and I8 tensors, 2 GiB by default) and
its sealed copy, warms the page cache, then reports best-of-N wall and CPU times, the variants of each part
interleaved round by round so they share the machine's noise:

* Strongroom manifest (model id: raw + canonical headers and every tensor, BLAKE3, parallel) vs
  ``model_signing``'s default hashing (SHA-256 per file, as its CLI signs) on the same directory. Target >= 3x.
* ``strongroom sign`` (manifest + whole-file SHA-256 resources in one read pass + signature) with its default
  and with BLAKE3 resources, of the plain and the sealed copy; with ``--baseline-src``, also ``sign`` run
  by another checkout's code (in its own process, timed there): its default and SHA-256 resources; with
  ``--cold``, sign and model-signing again with the plain files dropped from the page cache before each.
* ``load_verified`` (decrypt + hash every tensor in the same pass) vs ``SealedModel.load_tensors``
  (decrypt only). Target: verification adds <= 15%.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from strongroom.errors import StrongroomError
from strongroom.keys import LocalKeyring
from strongroom.manifest import build_manifest, load_verified, sign_model
from strongroom.manifest.walk import SIGNATURE_FILE
from strongroom.seal import SealedModel, seal_path
from strongroom.signing import Signer

BENCH_PASSPHRASE = "bench walnut harbour violet"

GIB = 1 << 30
MIB = 1 << 20


def build_checkpoint(path: Path, size: int) -> None:
    """Two shards of 16-64 MiB tensors with random bytes, a config and a tokenizer-sized file."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    block = np.frombuffer(rng.bytes(64 * MIB), dtype=np.uint8)
    per_shard = size // 2
    index = 0
    for shard in range(2):
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset, chunks = 0, []
        while offset < per_shard:
            nbytes = min(per_shard - offset, [64, 16, 32][index % 3] * MIB)
            dtype, item = [("F32", 4), ("F16", 2), ("I8", 1)][index % 3]
            header[f"layers.{index}.weight"] = {
                "dtype": dtype, "shape": [nbytes // item], "data_offsets": [offset, offset + nbytes],
            }  # fmt: skip
            chunks.append(np.roll(block, index)[:nbytes])
            offset += nbytes
            index += 1
        raw = json.dumps(header).encode()
        raw += b" " * ((8 - len(raw) % 8) % 8)
        with open(path / f"model-{shard + 1:05d}-of-00002.safetensors", "wb") as out:
            out.write(struct.pack("<Q", len(raw)) + raw)
            for chunk in chunks:
                out.write(chunk.tobytes())
    (path / "config.json").write_text(json.dumps({"hidden_size": 4096, "layers": index}))
    (path / "tokenizer.json").write_bytes(rng.bytes(2 * MIB))


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call (all its threads); a call that timed itself returns its own."""
    gc.collect()
    start, cpu = time.perf_counter(), sum(os.times()[:2])
    inner = fn()
    outer = (time.perf_counter() - start, sum(os.times()[:2]) - cpu)
    return inner if isinstance(inner, tuple) else outer


BASELINE = """
import os, sys, time
from pathlib import Path
from strongroom.keys import LocalKeyring
from strongroom.manifest import sign_model
from strongroom.signing import Signer
signer, path, resources, keys = Signer.generate("ecdsa-p256"), Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ring = LocalKeyring.open(Path(keys), passphrase="bench") if keys else None
kw = {"resource_algorithm": resources} if resources else {}
start, cpu = time.perf_counter(), sum(os.times()[:2])
sign_model(path, signer, ring, **kw)
print(time.perf_counter() - start, sum(os.times()[:2]) - cpu)
"""


def time_baseline(src: Path, path: Path, resources: str, keys: Path | None) -> tuple[float, float]:
    """Sign with another checkout's code, in its own process, timed there (start-up excluded); NaN if that
    code cannot (e.g. an older sealed format)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, "-c", BASELINE, str(path), resources, str(keys or "")]
    out = subprocess.run(args, env=env, check=False, capture_output=True, text=True)
    if out.returncode != 0:
        return math.nan, math.nan
    wall, cpu = (float(x) for x in out.stdout.split())
    return wall, cpu


def evict(directory: Path) -> None:
    """Drop this directory's files from the page cache (posix_fadvise DONTNEED: these files only)."""
    for f in directory.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/strongroom-bench-manifest"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the checkpoint for another run.")
    parser.add_argument(
        "--cold", action="store_true", help="Also time sign with the plain files dropped from the page cache."
    )
    parser.add_argument(
        "--baseline-src", type=Path, help="Also time `sign` with the code under this src/ (e.g. an older checkout)."
    )
    args = parser.parse_args()
    import model_signing

    size = int(args.size_gib * GIB)
    plain, sealed, keys = args.dir / "plain", args.dir / "sealed", args.dir / "keys"
    if not plain.exists():
        print(f"building a {size / GIB:.1f} GiB checkpoint in {plain} ...", flush=True)
        build_checkpoint(plain, size)
    if not keys.exists():
        LocalKeyring.init(keys, passphrase=BENCH_PASSPHRASE, scrypt_n=2**12)
    ring = LocalKeyring.open(keys, passphrase=BENCH_PASSPHRASE)
    if sealed.exists():
        try:
            SealedModel.open(sealed, ring).close()
        except StrongroomError as exc:  # a copy kept by an older version of the format: seal again
            print(f"re-sealing ({exc})", flush=True)
            shutil.rmtree(sealed)
    if not sealed.exists():
        print("sealing ...", flush=True)
        seal_path(plain, sealed, ring)
    total = sum(f.stat().st_size for f in plain.iterdir())
    for f in [*plain.iterdir(), *sealed.iterdir()]:  # warm the page cache
        with open(f, "rb") as handle:
            while handle.read(64 * MIB):
                pass
    cpus = os.cpu_count()
    print(f"checkpoint {total / GIB:.2f} GiB, {cpus} CPUs, best of {args.repeat}\n")

    model_id = build_manifest(plain).model_id
    signer = Signer.generate("ecdsa-p256")
    ms_config = model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE])  # as its CLI signs
    ms_blake3 = model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake3")
    ms_blake3.set_ignored_paths(paths=[SIGNATURE_FILE])
    variants: dict[str, Callable[[], object]] = {
        "manifest": lambda: build_manifest(plain),
        "sign": lambda: sign_model(plain, signer),
        "sign-b3": lambda: sign_model(plain, signer, resource_algorithm="blake3"),
        "sealed-sign": lambda: sign_model(sealed, signer, ring),
        "sealed-sign-b3": lambda: sign_model(sealed, signer, ring, resource_algorithm="blake3"),
        "ms": lambda: ms_config.hash(plain),
        "ms-b3": lambda: ms_blake3.hash(plain),
    }
    if args.baseline_src:
        for name, path, resources, keydir in (
            ("old-sign", plain, "", None),
            ("old-sign-sha256", plain, "sha256", None),
            ("old-sealed-sign", sealed, "", keys),
        ):
            variants[name] = functools.partial(time_baseline, args.baseline_src, path, resources, keydir)
    if args.cold:  # the plain files dropped from the page cache before each call: read from disk
        variants["cold-sign"] = lambda: (evict(plain), timed(lambda: sign_model(plain, signer)))[1]
        variants["cold-ms"] = lambda: (evict(plain), timed(lambda: ms_config.hash(plain)))[1]
        if args.baseline_src:
            base = functools.partial(time_baseline, args.baseline_src, plain, "sha256", None)
            variants["cold-old-sign-sha256"] = lambda: (evict(plain), base())[1]
    # Interleaved rounds share the machine's noise between the variants; best wall and CPU time of each.
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, fn in variants.items():
            times[name].append(timed(fn))
    wall = {name: min((t[0] for t in ts), key=lambda x: math.inf if math.isnan(x) else x) for name, ts in times.items()}
    cpu = {name: min((t[1] for t in ts), key=lambda x: math.inf if math.isnan(x) else x) for name, ts in times.items()}
    gib = total / GIB
    labels = {
        "manifest": "strongroom manifest (model id only)",
        "sign": "strongroom sign, default (SHA-256 resources)",
        "sign-b3": "strongroom sign --resource-algorithm blake3",
        "old-sign": "baseline sign, its default (BLAKE3 resources)",
        "old-sign-sha256": "baseline sign --resource-algorithm sha256",
        "ms": "model-signing default hashing (SHA-256 files)",
        "ms-b3": "model-signing BLAKE3 files",
        "sealed-sign": "strongroom sign of the sealed copy, default",
        "sealed-sign-b3": "strongroom sign of the sealed copy, blake3",
        "old-sealed-sign": "baseline sign of the sealed copy, its default",
        "cold-sign": "cold cache: strongroom sign, default",
        "cold-old-sign-sha256": "cold cache: baseline sign, SHA-256 resources",
        "cold-ms": "cold cache: model-signing default hashing",
    }
    print("hashing and signing (sign = hashing + statement + signature; wall and CPU seconds)")
    for name in labels:
        if name in wall:
            print(f"  {labels[name]:47s} {wall[name]:6.2f} s  {gib / wall[name]:6.2f} GiB/s  cpu {cpu[name]:6.2f} s")

    def ratio(label: str, a: str, b: str) -> None:
        print(f"  {label}: {wall[a] / wall[b]:5.2f}x wall, {cpu[a] / cpu[b]:5.2f}x CPU")

    ratio("model-signing default / strongroom manifest (target >= 3x)", "ms", "manifest")
    ratio("model-signing default / strongroom sign, default", "ms", "sign")
    ratio("model-signing default / strongroom sign, blake3 resources", "ms", "sign-b3")
    ratio("strongroom sign, default / blake3 resources", "sign", "sign-b3")
    ratio("strongroom sign of the sealed copy, default / blake3 resources", "sealed-sign", "sealed-sign-b3")
    if args.baseline_src:
        ratio("strongroom sign, default / baseline sign, its default", "sign", "old-sign")
        ratio("strongroom sign, default / baseline sign with SHA-256 resources", "sign", "old-sign-sha256")
        ratio("strongroom sign of the sealed copy, default / baseline's", "sealed-sign", "old-sealed-sign")
    if args.cold:
        ratio("cold cache: model-signing default / strongroom sign, default", "cold-ms", "cold-sign")
        if args.baseline_src:
            ratio("cold cache: strongroom sign, default / baseline sign, SHA-256", "cold-sign", "cold-old-sign-sha256")
    (plain / SIGNATURE_FILE).unlink(missing_ok=True)
    (sealed / SIGNATURE_FILE).unlink(missing_ok=True)
    print()

    def unverified() -> None:
        with SealedModel.open(sealed, ring) as model:
            model.load_tensors()

    def verified() -> None:
        load_verified(sealed, ring, expected_model_id=model_id)

    # Interleave to share the machine's noise between the two.
    t_plain_load, t_verified = [], []
    for _ in range(args.repeat):
        t_plain_load.append(best(unverified, 1))
        t_verified.append(best(verified, 1))
    t_u, t_v = min(t_plain_load), min(t_verified)
    print("sealed load")
    print(f"  without verification   {t_u:6.2f} s  {gib / t_u:6.2f} GiB/s")
    print(f"  with verification      {t_v:6.2f} s  {gib / t_v:6.2f} GiB/s")
    print(f"  verification overhead: {100 * (t_v / t_u - 1):+5.1f}% (target <= +15%)")
    ring.close()
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
