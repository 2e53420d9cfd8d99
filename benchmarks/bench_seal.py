"""Sealed loads the way hosts load: one load per fresh process, every page touched, beside encrypted peers.

    python benchmarks/bench_seal.py [--size-mib 1024] [--rounds 5] [--dir DIR] [--skip-seal]

Builds a synthetic checkpoint (mixed F32/F16/I8/I64 tensors of 1-64 MiB), seals it, writes the same
tensors with each peer that is installed (``pip install .[bench]``: CryptoTensors, tensorizer), warms the
page cache, then reports:

1. **Fresh-process loads** (the figure that matters): each loader runs in a new Python process that has
   already imported its libraries; the timer covers open + key unwrap + load + touching one byte of every
   4 KiB page of every returned tensor (so a lazy mmap pays its page faults too). Loaders run in
   interleaved rounds, the order rotating per round; medians and per-round ratios against plain
   ``safetensors.numpy.load_file`` (numpy) and ``safetensors.torch.load_file`` (torch).
2. **One tensor** (1 MiB and 8 MiB): open + read one tensor + close, median of repeated calls in one
   process, against ``safetensors.safe_open`` and CryptoTensors' ``safe_open``.
3. **In-process repeated loads** (labelled as such: a warm allocator, not what a host sees).
4. Seal throughput against a plain copy (skip with ``--skip-seal``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

GIB = 1 << 30
MIB = 1 << 20
PAGE = 4096

# What each loader protects, printed beside its figure.
PROTECTS: dict[str, str] = {
    "safetensors.numpy": "nothing (plaintext)",
    "safetensors.torch": "nothing (plaintext; lazy mmap, pages faulted by the touch)",
    "safetensors.torch.pread": "nothing (plaintext; backend='pread': copies into memory it owns)",
    "strongroom.numpy": "all bytes encrypted incl. names/shapes; header authenticated; key commitment; "
    "reorder/truncation detected",
    "strongroom.torch": "same as strongroom.numpy",
    "cryptotensors.numpy": "tensor data encrypted per tensor (names/shapes plaintext); header Ed25519-signed; "
    "no key commitment",
    "tensorizer.torch": "tensor data encrypted (XSalsa20-Poly1305 chunks); names/shapes plaintext; "
    "header not authenticated",
}
NUMPY_LOADERS = ["safetensors.numpy", "strongroom.numpy", "cryptotensors.numpy"]
TORCH_LOADERS = ["safetensors.torch", "safetensors.torch.pread", "strongroom.torch", "tensorizer.torch"]


# ---------------------------------------------------------------------------------------------------
# the checkpoint and its peer encodings


def build_tensors(size: int) -> dict[str, np.ndarray]:
    """Mixed-dtype tensors (F32, F16, I8, I64) of 1-64 MiB, plus 1 MiB and 8 MiB probes."""
    rng = np.random.default_rng(0)
    block = np.frombuffer(rng.bytes(64 * MIB), dtype=np.uint8)
    dtypes = [np.float32, np.float16, np.int8, np.int64]
    tensors: dict[str, np.ndarray] = {
        "probe.one_mib": block[:MIB].view(np.float32).reshape(512, 512).copy(),
        "probe.eight_mib": block[MIB : 9 * MIB].view(np.float32).reshape(2048, 1024).copy(),
    }
    total, i = 9 * MIB, 0
    while total < size:
        nbytes = min(int(rng.integers(1, 65)) * MIB, size - total)
        dtype = np.dtype(dtypes[i % len(dtypes)])
        count = (nbytes // dtype.itemsize) // 64 * 64
        if count == 0:
            break
        start = int(rng.integers(0, 1024)) * 64
        raw = block[start : start + count * dtype.itemsize] if start + count * dtype.itemsize <= block.size else block
        tensors[f"layers.{i}.weight"] = raw[: count * dtype.itemsize].view(dtype).reshape(-1, 64)
        total += count * dtype.itemsize
        i += 1
    return tensors


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_peers(tensors: dict[str, np.ndarray], work: Path) -> list[str]:
    """Write the CryptoTensors and tensorizer encodings that can be made here; return notes on the rest."""
    notes: list[str] = []
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptotensors.numpy import save_file as ct_save  # type: ignore[import-not-found,unused-ignore]

        signing = Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw
        enc = {"kty": "oct", "alg": "aes256gcm", "kid": "bench-enc", "k": _b64(os.urandom(32))}
        sign = {
            "kty": "okp",
            "alg": "ed25519",
            "kid": "bench-sign",
            "d": _b64(signing.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())),
            "x": _b64(signing.public_key().public_bytes(raw, serialization.PublicFormat.Raw)),
        }
        ct_save(tensors, str(work / "model.cryptotensors"), config={"enc_key": enc, "sign_key": sign})
        (work / "cryptotensors-keys.json").write_text(json.dumps([enc, sign]))
    except ImportError as exc:
        notes.append(f"cryptotensors not installed ({exc.name}): pip install .[bench]")
    try:
        import torch
        from tensorizer import TensorSerializer  # type: ignore[import-not-found,unused-ignore]
        from tensorizer.serialization import EncryptionParams  # type: ignore[import-not-found,unused-ignore]

        params = EncryptionParams.random()
        serializer = TensorSerializer(str(work / "model.tensors"), encryption=params)
        # tensorizer encrypts in place and restores: give it private copies (the tensors share one block)
        serializer.write_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
        serializer.close()
        (work / "tensorizer.key").write_bytes(params.key)
    except ImportError as exc:
        notes.append(f"tensorizer not installed ({exc.name}): pip install .[bench]")
    return notes


def available_loaders(work: Path) -> list[str]:
    found = [
        "safetensors.numpy",
        "strongroom.numpy",
        "safetensors.torch",
        "safetensors.torch.pread",
        "strongroom.torch",
    ]
    if (work / "model.cryptotensors").exists():
        found.append("cryptotensors.numpy")
    if (work / "model.tensors").exists():
        found.append("tensorizer.torch")
    return found


# ---------------------------------------------------------------------------------------------------
# the child: one load in a fresh process


def touch_numpy(arrays: dict[str, Any]) -> int:
    """Read one byte of every 4 KiB page of every array (and its last byte)."""
    acc = 0
    for value in arrays.values():
        flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        if flat.size:
            acc += int(flat[::PAGE].sum()) + int(flat[-1])
    return acc


def touch_torch(tensors: dict[str, Any]) -> int:
    import torch

    acc = 0
    for value in tensors.values():
        flat = value.reshape(-1).view(torch.uint8)
        if flat.numel():
            acc += int(flat[::PAGE].sum()) + int(flat[-1])
    return acc


def child(kind: str, work: Path) -> dict[str, float]:
    """Import, then time open + unwrap + load + touching every page; returns seconds."""
    if kind.startswith("strongroom"):
        from strongroom.keys import LocalKeyring
        from strongroom.seal import load_model_dir

        framework = "numpy" if kind.endswith("numpy") else "torch"
        if framework == "torch":
            import torch  # noqa: F401 - imported before the timer, as for the peers
        keyring = LocalKeyring.open(work / "keys", kek_file=work / "kek")
        cpu_start, start = _cpu(), time.perf_counter()
        loaded = load_model_dir(work / "sealed", keyring, framework)  # type: ignore[arg-type]
    elif kind == "safetensors.numpy":
        from safetensors.numpy import load_file

        cpu_start, start = _cpu(), time.perf_counter()
        loaded = load_file(work / "model" / "model.safetensors")
    elif kind.startswith("safetensors.torch"):
        from safetensors.torch import load_file as torch_load_file

        backend = "pread" if kind.endswith("pread") else "mmap"
        cpu_start, start = _cpu(), time.perf_counter()
        loaded = torch_load_file(work / "model" / "model.safetensors", backend=backend)
    elif kind == "cryptotensors.numpy":
        import cryptotensors  # type: ignore[import-not-found,unused-ignore]
        from cryptotensors.numpy import load_file as ct_load  # type: ignore[import-not-found,unused-ignore]

        cryptotensors.register_direct_key_provider(keys=json.loads((work / "cryptotensors-keys.json").read_text()))
        cpu_start, start = _cpu(), time.perf_counter()
        loaded = ct_load(str(work / "model.cryptotensors"))
    elif kind == "tensorizer.torch":
        from tensorizer import TensorDeserializer  # type: ignore[import-not-found,unused-ignore]
        from tensorizer.serialization import DecryptionParams  # type: ignore[import-not-found,unused-ignore]

        key = (work / "tensorizer.key").read_bytes()
        cpu_start, start = _cpu(), time.perf_counter()
        deserializer = TensorDeserializer(
            str(work / "model.tensors"), device="cpu", encryption=DecryptionParams.from_key(key)
        )
        loaded = dict(deserializer.items())
    else:
        raise SystemExit(f"unknown loader {kind}")
    loaded_at = time.perf_counter()
    (touch_torch if "torch" in kind else touch_numpy)(loaded)
    end = time.perf_counter()
    return {"load_s": loaded_at - start, "total_s": end - start, "cpu_s": _cpu() - cpu_start}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(kind: str, work: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--dir", str(work)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------------------
# the parent


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def fresh_process_rounds(
    work: Path, loaders: list[str], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall seconds and CPU seconds (all threads) per loader, one entry per round."""
    env = dict(os.environ)
    times: dict[str, list[float]] = {k: [] for k in loaders}
    cpu: dict[str, list[float]] = {k: [] for k in loaders}
    for r in range(rounds):
        order = loaders[r % len(loaders) :] + loaders[: r % len(loaders)]
        for kind in order:
            result = run_child(kind, work, env)
            times[kind].append(result["total_s"])
            cpu[kind].append(result["cpu_s"])
    return times, cpu


def _ratios(series: list[float], ref: list[float]) -> str:
    ratios = [a / b for a, b in zip(series, ref, strict=True)]
    return f"median {statistics.median(ratios):4.2f}x, rounds {min(ratios):4.2f}-{max(ratios):4.2f}x"


def report_fresh(times: dict[str, list[float]], cpu: dict[str, list[float]], nbytes: int) -> None:
    print("\n1. fresh process, one load each, every page touched (open + unwrap + load + touch)")
    groups = (
        (NUMPY_LOADERS, ["safetensors.numpy"]),
        (TORCH_LOADERS, ["safetensors.torch", "safetensors.torch.pread"]),
    )
    for group, references in groups:
        for kind in group:
            if kind not in times:
                print(f"  {kind:24s}  not installed")
                continue
            series = times[kind]
            med = statistics.median(series)
            print(
                f"  {kind:24s} median {med:6.3f} s ({nbytes / med / 1e9:5.2f} GB/s);"
                f" CPU {statistics.median(cpu[kind]):6.3f} s (all threads)"
            )
            for reference in references:
                if kind not in references and reference in times:
                    print(f"  {'':24s} ratio to {reference}: {_ratios(series, times[reference])}")
            print(f"  {'':24s} rounds: {' '.join(f'{t:.3f}' for t in series)}")
            print(f"  {'':24s} protects: {PROTECTS[kind]}")


def one_tensor(work: Path, runs: int) -> None:
    from safetensors import safe_open

    from strongroom.keys import LocalKeyring
    from strongroom.seal import SealedModel

    print(f"\n2. one tensor: open + read + touch + close, in one process (warm), median of {runs}")
    plain = work / "model" / "model.safetensors"
    keyring = LocalKeyring.open(work / "keys", kek_file=work / "kek")
    ct = None
    if (work / "model.cryptotensors").exists():
        import cryptotensors  # type: ignore[import-not-found,unused-ignore]

        cryptotensors.register_direct_key_provider(keys=json.loads((work / "cryptotensors-keys.json").read_text()))
        ct = cryptotensors.safe_open
    with SealedModel.open(work / "sealed", keyring) as model:
        for name, label in (("probe.one_mib", "1 MiB"), ("probe.eight_mib", "8 MiB")):

            def plain_read(name: str = name) -> object:
                with safe_open(str(plain), framework="np") as f:
                    return touch_numpy({name: f.get_tensor(name)})

            def sealed_read(name: str = name) -> object:
                with model.safetensors("model.safetensors") as st:
                    return touch_numpy({name: st.get_tensor(name)})

            plain_read(), sealed_read()
            p = median_ms(plain_read, runs)
            s = median_ms(sealed_read, runs)
            line = f"  {label}: safetensors {p:6.3f} ms, strongroom {s:6.3f} ms ({s / p:4.2f}x)"
            if ct is not None:

                def ct_read(name: str = name, ct_open: Any = ct) -> object:
                    with ct_open(str(work / "model.cryptotensors"), framework="np") as f:
                        return touch_numpy({name: f.get_tensor(name)})

                ct_read()
                c = median_ms(ct_read, runs)
                line += f", cryptotensors {c:6.3f} ms ({c / p:4.2f}x)"
            print(line)


def in_process(work: Path, runs: int, nbytes: int) -> None:
    from safetensors.numpy import load_file

    from strongroom.keys import LocalKeyring
    from strongroom.seal import load_model_dir

    keyring = LocalKeyring.open(work / "keys", kek_file=work / "kek")
    plain = work / "model" / "model.safetensors"
    p = median_ms(lambda: touch_numpy(load_file(plain)), runs) / 1e3
    s = median_ms(lambda: touch_numpy(load_model_dir(work / "sealed", keyring)), runs) / 1e3
    print(f"\n3. IN-PROCESS repeated loads (warm allocator; not what a host sees), median of {runs}")
    print(f"  safetensors.numpy {p:6.3f} s, strongroom.numpy {s:6.3f} s ({s / p:4.2f}x), {nbytes / s / 1e9:.2f} GB/s")


def seal_throughput(work: Path, runs: int, nbytes: int) -> None:
    from strongroom.keys import LocalKeyring
    from strongroom.seal import seal_path

    keyring = LocalKeyring.open(work / "keys", kek_file=work / "kek")
    memory = Path(tempfile.mkdtemp(prefix="strongroom-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:

        def seal_once() -> None:
            shutil.rmtree(memory / "sealed", ignore_errors=True)
            seal_path(work / "model", memory / "sealed", keyring)

        def copy_once() -> None:
            (memory / "copy").unlink(missing_ok=True)
            shutil.copyfile(work / "model" / "model.safetensors", memory / "copy")

        seal_s = median_ms(seal_once, runs) / 1e3
        copy_s = median_ms(copy_once, runs) / 1e3
    finally:
        shutil.rmtree(memory, ignore_errors=True)
    print(f"\n4. seal into tmpfs {seal_s:6.3f} s vs plain copy {copy_s:6.3f} s ({seal_s / copy_s:4.2f}x the time)")


def prepare_plain_and_sealed(work: Path, size: int) -> int:
    """The checkpoint as plain safetensors (``work/model``) and sealed (``work/sealed``, KEK file keyring)."""
    from safetensors.numpy import save_file

    from strongroom.keys import LocalKeyring
    from strongroom.seal import seal_path

    tensors = build_tensors(size)
    (work / "model").mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(work / "model" / "model.safetensors"))
    (work / "kek").write_bytes(os.urandom(32))
    os.chmod(work / "kek", 0o600)
    keyring = LocalKeyring.init(work / "keys", kek_file=work / "kek")
    seal_path(work / "model", work / "sealed", keyring)
    return (work / "model" / "model.safetensors").stat().st_size


def prepare(work: Path, size: int) -> tuple[int, list[str]]:
    nbytes = prepare_plain_and_sealed(work, size)
    notes = write_peers(build_tensors(size), work)
    for path in [work / "model" / "model.safetensors", *work.glob("sealed/*"), *work.glob("model.*")]:
        with open(path, "rb") as f:  # warm the page cache
            while f.read(64 * MIB):
                pass
    return nbytes, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--loaders", default=None, help="comma-separated subset of the fresh-process loaders")
    parser.add_argument("--skip-seal", action="store_true")
    parser.add_argument("--only-fresh", action="store_true", help="only the fresh-process loads")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dir)))
        return
    work = Path(args.dir or tempfile.mkdtemp(prefix="strongroom-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        nbytes, notes = prepare(work, args.size_mib * MIB)
        loaders = available_loaders(work)
        if args.loaders:
            loaders = [k for k in args.loaders.split(",") if k in loaders]
        load1 = os.getloadavg()[0]
        print(
            f"checkpoint {nbytes / MIB:.0f} MiB, {len(loaders)} loaders, {args.rounds} interleaved rounds, "
            f"{os.cpu_count()} CPUs, warm page cache, loadavg at start {load1:.2f}"
        )
        for note in notes:
            print("  note:", note)
        times, cpu = fresh_process_rounds(work, loaders, args.rounds)
        report_fresh(times, cpu, nbytes)
        if args.only_fresh:
            print(f"\nloadavg at end {os.getloadavg()[0]:.2f}")
            return
        one_tensor(work, 50)
        in_process(work, 3, nbytes)
        if not args.skip_seal:
            seal_throughput(work, 3, nbytes)
        print(f"\nloadavg at end {os.getloadavg()[0]:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
