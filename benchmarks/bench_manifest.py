"""Manifest hashing vs model-signing, and sealed load with vs without verification, in one run.

    python benchmarks/bench_manifest.py [--size-gib 2] [--dir /tmp/strongroom-bench-manifest] [--repeat 3]

Builds a synthetic checkpoint (two safetensors shards of F32, F16 and I8 tensors, 2 GiB by default) and
its sealed copy, warms the page cache, then reports best-of-N times:

* Strongroom manifest (model id: raw + canonical headers and every tensor, BLAKE3, parallel) vs
  ``model_signing.hashing.hash`` (its default: SHA-256 per file) on the same directory. Target >= 3x.
  Also shown: the manifest plus whole-file digests (what ``strongroom sign`` computes).
* ``load_verified`` (decrypt + hash every tensor in the same pass) vs ``SealedModel.load_tensors``
  (decrypt only). Target: verification adds <= 15%.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from strongroom.errors import StrongroomError
from strongroom.keys import LocalKeyring
from strongroom.manifest import build_manifest, load_verified
from strongroom.seal import SealedModel, seal_path

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
    t_ours = best(lambda: build_manifest(plain), args.repeat)
    t_sign = best(lambda: build_manifest(plain, whole_files="blake3"), args.repeat)
    t_oms = best(lambda: model_signing.hashing.hash(plain), args.repeat)
    t_oms_b3 = best(
        lambda: model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake3").hash(plain),
        args.repeat,
    )
    gib = total / GIB
    print("hashing the plain directory")
    print(f"  strongroom manifest (model id)         {t_ours:6.2f} s  {gib / t_ours:6.2f} GiB/s")
    print(f"  strongroom manifest + whole-file (sign) {t_sign:5.2f} s  {gib / t_sign:6.2f} GiB/s")
    print(f"  model-signing default (SHA-256 files)  {t_oms:6.2f} s  {gib / t_oms:6.2f} GiB/s")
    print(f"  model-signing BLAKE3 files             {t_oms_b3:6.2f} s  {gib / t_oms_b3:6.2f} GiB/s")
    print(f"  ratio model-signing default / strongroom manifest: {t_oms / t_ours:5.2f}x (target >= 3x)")
    print(f"  ratio model-signing default / strongroom sign hashing: {t_oms / t_sign:5.2f}x\n")

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
