"""Sealed load onto an accelerator against ``safetensors.torch.load_file(device=...)``, fresh processes.

    python benchmarks/bench_device.py [--size-mib 1024] [--rounds 5] [--device cuda]

For a machine with a GPU (one script, one call, prints ratios): builds and seals a synthetic checkpoint,
then alternates fresh-process loads of plain safetensors straight to the device and Strongroom's staged
path (decrypt into pinned host buffers, copy per chunk on a side CUDA stream: ``strongroom.seal.staging``),
synchronising the device before the timer stops. Also checks that both loads give identical tensors.
It has not yet run on a GPU; on a machine without one it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


def child(kind: str, work: Path, device: str) -> dict[str, float]:
    import torch

    if kind == "safetensors":
        from safetensors.torch import load_file

        torch.cuda.synchronize()
        start = time.perf_counter()
        loaded = load_file(work / "model" / "model.safetensors", device=device)
    else:
        from strongroom.keys import LocalKeyring
        from strongroom.seal import load_model_dir

        keyring = LocalKeyring.open(work / "keys", kek_file=work / "kek")
        torch.cuda.synchronize()
        start = time.perf_counter()
        loaded = load_model_dir(work / "sealed", keyring, "torch", device)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    digest = float(sum(float(t.view(torch.uint8).sum()) for t in loaded.values() if t.numel()))
    return {"seconds": elapsed, "checksum": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.device)))
        return
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (the staged path is tested on CPU in tests/seal)")
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_seal import prepare_plain_and_sealed

    work = Path(tempfile.mkdtemp(prefix="strongroom-device-"))
    try:
        nbytes = prepare_plain_and_sealed(work, args.size_mib * MIB)
        times: dict[str, list[float]] = {"safetensors": [], "strongroom": []}
        sums: dict[str, set[float]] = {"safetensors": set(), "strongroom": set()}
        for r in range(args.rounds):
            for kind in ("safetensors", "strongroom") if r % 2 == 0 else ("strongroom", "safetensors"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, "--dir", str(work), "--device", args.device],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=dict(os.environ),
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                times[kind].append(result["seconds"])
                sums[kind].add(result["checksum"])
        ratios = [s / p for s, p in zip(times["strongroom"], times["safetensors"], strict=True)]
        print(f"{nbytes / MIB:.0f} MiB to {args.device} ({torch.cuda.get_device_name()}), {args.rounds} rounds")
        for kind, series in times.items():
            print(
                f"  {kind:11s} median {statistics.median(series):.3f} s  rounds {' '.join(f'{t:.3f}' for t in series)}"
            )
        print(f"  sealed/plain: median {statistics.median(ratios):.2f}x, rounds {min(ratios):.2f}-{max(ratios):.2f}x")
        print(f"  same tensors: {sums['safetensors'] == sums['strongroom'] and len(sums['strongroom']) == 1}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
