"""Build the manifest of a plain model directory or of a sealed directory opened with a key provider.

Both give the same records, hence the same model id, for the same model: a sealed directory is hashed
from its decrypted plaintext, which never touches disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from strongroom.keys.provider import KeyProvider
from strongroom.manifest.digest import Algorithm, MappedFile, check_algorithm, hash_range, hash_reader_multi, new_hasher
from strongroom.manifest.errors import ExtraFileError, Failure, ManifestError, ModelPathError
from strongroom.manifest.onepass import Span, hash_file_once, locked
from strongroom.manifest.records import FileRecord, Manifest, TensorRecord
from strongroom.manifest.safetensors_layout import HeaderDigests, read_header
from strongroom.manifest.sealed_hash import hash_sealed_tensors
from strongroom.manifest.walk import DEFAULT_IGNORED, is_ignored, list_files
from strongroom.seal import SealedModel
from strongroom.seal.directory import INDEX_FILE, SealedEntry

Progress = Callable[[int], None]
HEAD = ("head",)  # span key: a whole file, or a safetensors file's raw header


def default_threads() -> int:
    return max(1, min(16, os.cpu_count() or 1))


def is_sealed_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / INDEX_FILE).is_file()


def build_manifest(
    path: Path,
    provider: KeyProvider | None = None,
    *,
    algorithm: str = "blake3",
    whole_files: str | None = None,
    ignored: Iterable[str] = DEFAULT_IGNORED,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Digest every file and tensor of the model at ``path`` and return its manifest.

    ``whole_files``: also digest every file whole with this algorithm (needed for OMS resources).
    A sealed directory (one with SEALED.json) needs ``provider`` to decrypt it.
    """
    alg = check_algorithm(algorithm)
    path = Path(path)
    ignored = tuple(ignored)
    threads = threads or default_threads()
    if is_sealed_dir(path):
        if provider is None:
            raise ModelPathError(f"{path}: a sealed directory; give the key directory (--keys) to read it")
        list_files(path, ignored)  # refuses symbolic links before anything is opened
        with SealedModel.open(path, provider) as model:
            return build_sealed(model, alg, whole_files, ignored, threads, progress)
    return _build_plain(path, alg, whole_files, ignored, threads, progress)


def manifest_of_plain(root: Path, progress: Callable[[str], None] | None = None) -> Manifest:
    """The BLAKE3 manifest of a plain model directory."""
    return build_manifest(root)


def manifest_of_sealed(model: SealedModel, progress: Callable[[str], None] | None = None) -> Manifest:
    """The BLAKE3 manifest of an opened sealed directory (the same model id as its plaintext)."""
    return build_sealed(model, "blake3", None, DEFAULT_IGNORED, default_threads(), None)


def load_manifest_json(path: Path) -> Manifest:
    """A manifest saved with ``strongroom manifest --json`` (its model id is re-derived and checked)."""
    try:
        raw = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from None
    return Manifest.from_json(raw)


def _build_plain(
    root: Path, alg: Algorithm, whole: str | None, ignored: tuple[str, ...], threads: int, progress: Progress | None
) -> Manifest:
    names = list_files(root, ignored)
    if whole:
        return _build_plain_once(root, names, alg, whole, threads, progress)
    maps: dict[str, MappedFile] = {}
    files: dict[str, FileRecord] = {}
    tensors: dict[tuple[str, str], TensorRecord] = {}
    jobs: list[tuple[int, tuple[str, str, Any], Callable[[], str]]] = []
    try:
        for name in names:
            mapped = maps[name] = MappedFile(root / name, str(root / name))
            if name.endswith(".safetensors"):
                hd = read_header(mapped.read, mapped.size, name, alg)
                files[name] = _safetensors_record(name, mapped.size, alg, hd)
                for t in hd.tensors_in_order():
                    jobs.append((t.nbytes, ("tensor", name, t), _job(mapped, t.start, t.end, alg)))
            else:
                jobs.append((mapped.size, ("file", name, None), _job(mapped, 0, mapped.size, alg)))
        jobs.sort(key=lambda j: -j[0])
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(fn) for _, _, fn in jobs]
            for (size, (kind, name, t), _), future in zip(jobs, futures, strict=True):
                digest = future.result()
                if progress:
                    progress(size)
                if kind == "tensor":
                    tensors[(name, t.name)] = _tensor_record(name, t, files[name], alg, digest)
                else:
                    files[name] = FileRecord(name, maps[name].size, alg, digest)
    finally:
        for mapped in maps.values():
            mapped.close()
    return Manifest(alg, files, tensors)


def _build_plain_once(
    root: Path, names: list[str], alg: Algorithm, whole: str, threads: int, progress: Progress | None
) -> Manifest:
    """The manifest plus whole-file digests in ``whole``, every file read once (see ``onepass``)."""
    files: dict[str, FileRecord] = {}
    tensors: dict[tuple[str, str], TensorRecord] = {}
    whole_digests: dict[str, str] = {}
    plans: list[tuple[str, int, HeaderDigests | None]] = []
    for name in names:
        with MappedFile(root / name, str(root / name)) as mapped:
            hd = read_header(mapped.read, mapped.size, name, alg) if name.endswith(".safetensors") else None
            plans.append((name, mapped.size, hd))
    report = locked(progress)

    def one(plan: tuple[str, int, HeaderDigests | None], helper: Executor) -> None:
        name, size, hd = plan
        display = str(root / name)
        # The first span is the whole file, or the raw safetensors header (then one span per tensor).
        spans = [Span(HEAD, 0, size if hd is None else hd.data_start)]
        spans += [Span(("tensor", t.name), t.start, t.end) for t in hd.tensors_in_order()] if hd else []
        same = hd is None and whole == alg  # the file's own digest is already the whole-file digest
        digests, whole_digest = hash_file_once(
            root / name, display, size, spans, alg, None if same else whole, helper, progress=report
        )
        whole_digests[name] = digests[HEAD] if whole_digest is None else whole_digest
        if hd is None:
            files[name] = FileRecord(name, size, alg, digests[HEAD])
            return
        if digests[HEAD] != hd.header_digest:
            raise ModelPathError(f"{display}: changed while it was being hashed (safetensors header)")
        files[name] = record = _safetensors_record(name, size, alg, hd)
        for t in hd.tensors_in_order():
            tensors[(name, t.name)] = _tensor_record(name, t, record, alg, digests[("tensor", t.name)])

    plans.sort(key=lambda p: -p[1])  # longest first: each whole-file hash is one sequential chain
    with ThreadPoolExecutor(threads) as pool, ThreadPoolExecutor(threads) as helper:
        for future in [pool.submit(one, plan, helper) for plan in plans]:
            future.result()
    return Manifest(alg, dict(sorted(files.items())), tensors, whole_digests, whole)


def _safetensors_record(name: str, size: int, alg: str, hd: HeaderDigests) -> FileRecord:
    return FileRecord(
        name, size, alg, None, True, hd.header.header_length, hd.header_digest, hd.canonical_header_digest
    )


def _job(mapped: MappedFile, start: int, end: int, alg: str) -> Callable[[], str]:
    return lambda: hash_range(mapped, start, end, alg)


def _tensor_record(file: str, t: Any, record: FileRecord, alg: str, digest: str) -> TensorRecord:
    base = 8 + record.header_size
    return TensorRecord(file, t.name, t.dtype, tuple(t.shape), t.start - base, t.end - base, alg, digest)


def sealed_extra_files(root: Path, model: SealedModel, ignored: tuple[str, ...]) -> list[str]:
    """Files in a sealed directory that are neither its index nor one of its sealed members."""
    allowed = {INDEX_FILE} | {e.sealed_name for e in model.members()}
    return [n for n in list_files(root, ignored) if n not in allowed]


def build_sealed(
    model: SealedModel,
    alg: Algorithm,
    whole: str | None,
    ignored: tuple[str, ...],
    threads: int,
    progress: Progress | None,
) -> Manifest:
    """Manifest of an opened sealed directory, decrypting each member once in bounded windows."""
    root = model.root
    files: dict[str, FileRecord] = {}
    tensors: dict[tuple[str, str], TensorRecord] = {}
    whole_digests: dict[str, str] = {}
    extra = sealed_extra_files(root, model, ignored)
    if extra:
        msg = f"not part of the sealed model (not in {INDEX_FILE})"
        raise ExtraFileError(f"{root}: {extra[0]}: {msg}", [Failure("extra-file", n, msg) for n in extra])
    report = locked(progress)

    def member(entry: SealedEntry) -> None:
        name = entry.name
        with model.open_file(name) as sealed:
            size = sealed.plaintext_length
            display = f"{root}:{name}"
            if entry.content_type == "safetensors" or name.endswith(".safetensors"):
                hd = read_header(sealed.read, size, display, alg)
                files[name] = record = _safetensors_record(name, size, alg, hd)
                whole_hasher = None
                if whole:
                    whole_hasher = new_hasher(whole, size)
                    whole_hasher.update(sealed.read(0, hd.data_start))
                digests = hash_sealed_tensors(sealed, hd.tensors_in_order(), alg, threads=threads, whole=whole_hasher)
                for t in hd.tensors_in_order():
                    tensors[(name, t.name)] = _tensor_record(name, t, record, alg, digests[t.name])
                if whole_hasher is not None:
                    whole_digests[name] = whole_hasher.digest().hex()
            else:

                def read_into(a: int, b: int, view: memoryview, s: Any = sealed) -> None:
                    s.read_into(a, b, view, threads=threads)

                second = (whole,) if whole and whole != alg else ()
                digest, *also = hash_reader_multi(read_into, 0, size, (alg, *second))
                files[name] = FileRecord(name, size, alg, digest)
                if whole:
                    whole_digests[name] = also[0] if also else digest
            if report:
                report(size)

    entries = sorted((e for e in model.members() if not is_ignored(e.name, ignored)), key=lambda e: -e.plaintext_length)
    # Without a whole-file digest each file already uses every core; with one, each file's whole-file hash
    # is a sequential chain, so files are hashed side by side.
    with ThreadPoolExecutor(threads if whole else 1) as pool:
        for future in [pool.submit(member, entry) for entry in entries]:
            future.result()
    return Manifest(alg, files, tensors, whole_digests, whole)
