"""Sealed model directories: one data key per model version, one sealed file per source file, an index.

``SEALED.json`` (canonical JSON) lists every file with its plaintext length and digest, the seal id and
the wrapped data key, whose binding names that seal id and (for a model) the model id; ``index_mac``
(HMAC-SHA256 under a key derived from the data key) makes the list tamper-evident, so a dropped, added or
swapped file is caught by anyone holding the key. The binding itself is authenticated by the key provider.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.atomic import atomic_directory, write_atomic
from strongroom.canonical_json import canonical_json
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.provider import KeyBinding, KeyProvider, WrappedKey
from strongroom.memory import wipe
from strongroom.seal.errors import FileIdentityError, SealedDirectoryError, SealedFormatError, SealError
from strongroom.seal.header import check_binding_matches, plaintext_digest
from strongroom.seal.reader import SealedFile
from strongroom.seal.safetensors_header import SafetensorsHeader
from strongroom.seal.stream import DEFAULT_SEGMENT_SIZE, SegmentCipher
from strongroom.seal.tensors import Framework, SealedSafetensors
from strongroom.seal.writer import Progress, seal_file

INDEX_FILE = "SEALED.json"
INDEX_FORMAT = "strongroom-sealed-dir/v1"
SUFFIX = ".sealed"
INDEX_MAC_INFO = b"strongroom/seal/v1/index-mac"
SKIPPED_DIRS = {".git"}


@dataclass(frozen=True)
class SealedEntry:
    """One file of a sealed directory, as the index lists it."""

    name: str
    plaintext_length: int
    plaintext_digest: str
    content_type: str

    @property
    def sealed_name(self) -> str:
        return self.name + SUFFIX

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plaintext_length": self.plaintext_length,
            "plaintext_digest": self.plaintext_digest,
            "content_type": self.content_type,
        }


def write_index(
    directory: Path,
    seal_id: str,
    wrapped: WrappedKey,
    segment_size: int,
    entries: list[SealedEntry],
    data_key: bytes | bytearray,
) -> None:
    """Write a sealed directory's index (``SEALED.json``), authenticated by ``index_mac`` under the data key."""
    body: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "seal_id": seal_id,
        "key": wrapped.to_json(),
        "segment_size": segment_size,
        "files": [e.to_json() for e in entries],
    }
    body["index_mac"] = index_mac(data_key, body)
    write_atomic(directory / INDEX_FILE, canonical_json(body) + b"\n", mode=0o644)


def index_mac(data_key: bytes | bytearray, body: dict[str, Any]) -> str:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INDEX_MAC_INFO)
    return hmac.new(hkdf.derive(bytes(data_key)), canonical_json(body), sha256).hexdigest()


def list_model_files(src: Path) -> list[tuple[str, Path]]:
    """Every regular file below ``src`` as (posix relative name, path), sorted; symlinks to files followed."""
    if not src.is_dir():
        raise SealedDirectoryError(f"{src}: not a directory")
    found: list[tuple[str, Path]] = []

    def walk_error(exc: OSError) -> None:
        raise SealedDirectoryError(f"{exc.filename}: cannot read directory: {exc.strerror}")

    for root, dirs, files in os.walk(src, onerror=walk_error):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for file in sorted(files):
            path = Path(root) / file
            if not path.is_file():
                raise SealedDirectoryError(f"{path}: not a regular file (broken link or special file)")
            found.append((path.relative_to(src).as_posix(), path))
    if not found:
        raise SealedDirectoryError(f"{src}: no files to seal")
    return sorted(found)


def seal_path(
    src: Path,
    dst: Path,
    provider: KeyProvider,
    *,
    model_id: str | None = None,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    threads: int | None = None,
    progress: Progress | None = None,
    on_file: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Seal a model directory (or one file) with a fresh data key; returns a summary. Output is atomic.

    The seal id is drawn first and the data key is generated bound to it and to ``model_id`` (the plain
    model's id, ``strongroom.manifest.sealing.seal_model`` computes it), so the key unwraps for nothing else.
    """
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise SealError(f"{src}: no such file or directory")
    if dst.exists():
        raise SealError(f"{dst}: output already exists; choose a new path")
    seal_id = secrets.token_hex(16)
    binding = KeyBinding(seal_id, model_id)
    data_key, wrapped = provider.generate_data_key(binding)
    try:
        if wrapped.binding != binding:
            raise SealError(f"key provider {wrapped.provider}:{wrapped.key_id} returned a key for another binding")
        if src.is_file():
            if on_file:
                on_file(src.name, src.stat().st_size)
            dst.parent.mkdir(parents=True, exist_ok=True)
            header = seal_file(
                src,
                dst,
                name=src.name,
                seal_id=seal_id,
                data_key=data_key,
                wrapped=wrapped,
                segment_size=segment_size,
                threads=threads,
                progress=progress,
            )
            entries = [SealedEntry(header.name, header.plaintext_length, header.plaintext_digest, header.content_type)]
        else:
            files = list_model_files(src)
            entries = []
            with atomic_directory(dst) as staging:
                for name, path in files:
                    if on_file:
                        on_file(name, path.stat().st_size)
                    out = staging / (name + SUFFIX)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    header = seal_file(
                        path,
                        out,
                        name=name,
                        seal_id=seal_id,
                        data_key=data_key,
                        wrapped=wrapped,
                        segment_size=segment_size,
                        threads=threads,
                        progress=progress,
                    )
                    entries.append(
                        SealedEntry(name, header.plaintext_length, header.plaintext_digest, header.content_type)
                    )
                write_index(staging, seal_id, wrapped, segment_size, entries, data_key)
    finally:
        wipe(data_key)
    return {
        "source": str(src),
        "sealed": str(dst),
        "seal_id": seal_id,
        "key": {"provider": wrapped.provider, "key_id": wrapped.key_id, "binding": wrapped.binding.to_json()},
        "segment_size": segment_size,
        "files": [e.to_json() for e in entries],
        "plaintext_bytes": sum(e.plaintext_length for e in entries),
    }


class SealedModel:
    """A sealed model directory (or a single sealed file), opened with a key provider."""

    def __init__(
        self,
        root: Path,
        seal_id: str,
        key: WrappedKey,
        entries: list[SealedEntry],
        single: bool,
        raw_index: dict[str, Any] | None,
    ) -> None:
        self.root = root
        self.seal_id = seal_id
        self.key = key
        self.entries = {e.name: e for e in entries}
        self.single = single
        self._raw_index = raw_index
        self._data_key: bytearray | None = None
        self._headers: dict[tuple[str, str], SafetensorsHeader] = {}
        self._ciphers: dict[bytes, SegmentCipher] = {}  # members reopened skip the key derivations

    @property
    def binding(self) -> KeyBinding:
        """The seal id and model id the data key is bound to (authenticated when the key is unwrapped)."""
        return self.key.binding

    @property
    def model_id(self) -> str | None:
        """The model id this sealed model's key is bound to, or None for data that is not a model."""
        return self.key.binding.model_id

    # -- without a key ------------------------------------------------------------------------

    @classmethod
    def inspect(cls, path: Path) -> SealedModel:
        """Read what is visible without a key: the index or the single file's header."""
        path = Path(path)
        if not path.exists():
            raise SealedDirectoryError(f"{path}: no such file or directory")
        if path.is_file():
            with SealedFile(path) as sealed:
                h = sealed.header
                entry = SealedEntry(h.name, h.plaintext_length, h.plaintext_digest, h.content_type)
                return cls(path, h.seal_id, h.key, [entry], True, None)
        index_path = path / INDEX_FILE
        try:
            raw = json.loads(index_path.read_bytes())
        except FileNotFoundError:
            raise SealedDirectoryError(f"{path}: not a sealed directory (no {INDEX_FILE})") from None
        except PermissionError:
            raise SealedDirectoryError(f"{index_path}: permission denied") from None
        except (ValueError, UnicodeDecodeError):
            raise SealedDirectoryError(f"{index_path}: not valid JSON") from None
        return cls._from_index(path, raw, index_path)

    @classmethod
    def _from_index(cls, root: Path, raw: Any, index_path: Path) -> SealedModel:
        if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT:
            raise SealedDirectoryError(f"{index_path}: not a {INDEX_FORMAT} index")
        try:
            key = WrappedKey.from_json(raw.get("key"))
            seal_id = raw["seal_id"]
            entries = [
                SealedEntry(f["name"], f["plaintext_length"], f["plaintext_digest"], f["content_type"])
                for f in raw["files"]
            ]
            assert isinstance(seal_id, str) and isinstance(raw["index_mac"], str)
            for e in entries:
                assert isinstance(e.name, str) and isinstance(e.plaintext_length, int)
                _check_relative(e.name, index_path)
        except KeyProviderError as exc:
            raise SealedFormatError(f"{index_path}: malformed key reference: {exc}") from None
        except (KeyError, TypeError, AssertionError):
            raise SealedDirectoryError(f"{index_path}: malformed index") from None
        check_binding_matches(key, seal_id, str(index_path))
        return cls(root, seal_id, key, entries, False, raw)

    # -- with a key ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, provider: KeyProvider) -> SealedModel:
        """Open and unlock: unwrap the data key once, verify the index, check every file is present."""
        model = cls.inspect(path)
        model.unlock(provider)
        return model

    def unlock(self, provider: KeyProvider) -> None:
        data_key = provider.unwrap(self.key)
        try:
            if self._raw_index is not None:
                body = {k: v for k, v in self._raw_index.items() if k != "index_mac"}
                if not hmac.compare_digest(index_mac(data_key, body), self._raw_index["index_mac"]):
                    raise SealedDirectoryError(
                        f"{self.root / INDEX_FILE}: index authentication failed (edited index or wrong key)"
                    )
                self._check_members()
        except BaseException:
            wipe(data_key)
            raise
        self._data_key = data_key

    def _check_members(self) -> None:
        present = {
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*" + SUFFIX) if p.is_file() or p.is_symlink()
        }
        expected = {e.sealed_name for e in self.entries.values()}
        missing = sorted(expected - present)
        extra = sorted(present - expected)
        if missing:
            raise SealedDirectoryError(f"{self.root}: missing sealed file {missing[0]}")
        if extra:
            raise SealedDirectoryError(f"{self.root}: unexpected sealed file {extra[0]} (not in the index)")

    def _path(self, name: str) -> Path:
        if self.single:
            return self.root
        if name not in self.entries:
            raise SealedDirectoryError(f"{self.root}: no file named {name!r} in this sealed model")
        path = self.root / self.entries[name].sealed_name
        if path.is_symlink():
            raise SealedDirectoryError(f"{path}: sealed files must not be symbolic links")
        return path

    def open_file(self, name: str) -> SealedFile:
        """Open one member, checking that it is the file the index says and belongs to this seal."""
        if self._data_key is None:
            raise SealError(f"{self.root}: sealed model is not unlocked")
        path = self._path(name)
        display = str(path)
        sealed = SealedFile(path, display)
        try:
            h, entry = sealed.header, self.entries[name]
            if h.seal_id != self.seal_id:
                raise FileIdentityError(f"{display}: belongs to another sealed model (seal id {h.seal_id})")
            if h.key != self.key:
                raise FileIdentityError(f"{display}: carries another key reference or binding than the index")
            if not self.single and h.name != name:
                raise FileIdentityError(f"{display}: holds the sealed file {h.name!r}, not {name!r} (renamed?)")
            if (h.plaintext_length, h.plaintext_digest) != (entry.plaintext_length, entry.plaintext_digest):
                raise FileIdentityError(f"{display}: length or digest differs from the index")
            sealed.unlock(self._data_key, self._ciphers)
        except BaseException:
            sealed.close()
            raise
        return sealed

    def digest_matches(self, name: str, data: bytes) -> bool:
        """Whether ``data`` is the plaintext the index recorded for ``name`` (keyed digest, constant time)."""
        if self._data_key is None:
            raise SealError(f"{self.root}: sealed model is not unlocked")
        actual = plaintext_digest(self._data_key, self.seal_id, data)
        return hmac.compare_digest(actual, self.entries[name].plaintext_digest)

    def read_file(self, name: str) -> bytes:
        """Decrypt a whole member (config, tokenizer...) into memory."""
        with self.open_file(name) as sealed:
            return sealed.read(0, sealed.plaintext_length)

    def safetensors(self, name: str) -> SealedSafetensors:
        """Open one safetensors member; its parsed header is cached for this open model.

        The cache is keyed by the member's keyed plaintext digest, which ``open_file`` has checked against
        the authenticated index and which the file's stream authenticates (its header is the stream's
        associated data): a file with another plaintext under the same digest would need a holder of the
        data key to seal it, and such a holder can already seal anything.
        """
        sealed = self.open_file(name)
        key = (name, sealed.header.plaintext_digest)
        try:
            st = SealedSafetensors(sealed, header=self._headers.get(key))
        except BaseException:
            sealed.close()
            raise
        self._headers[key] = st.header
        return st

    def safetensors_names(self) -> list[str]:
        return [n for n, e in self.entries.items() if e.content_type == "safetensors"]

    def load_tensors(self, framework: Framework = "numpy", device: str = "cpu") -> dict[str, Any]:
        """Every tensor across all safetensors members; a name in two shards is an error."""
        out: dict[str, Any] = {}
        for name in self.safetensors_names():
            with self.safetensors(name) as st:
                for tensor, value in st.load_all(framework, device).items():
                    if tensor in out:
                        raise SealError(f"{self.root}: tensor {tensor!r} appears in more than one shard")
                    out[tensor] = value
        return out

    def close(self) -> None:
        self._headers.clear()
        self._ciphers.clear()
        if self._data_key is not None:
            wipe(self._data_key)
            self._data_key = None

    def __enter__(self) -> SealedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def members(self) -> Iterator[SealedEntry]:
        return iter(self.entries.values())


def _check_relative(name: str, where: Path) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not name or "\\" in name:
        raise SealedFormatError(f"{where}: file name {name!r} escapes the sealed directory")
