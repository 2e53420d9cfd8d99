"""What the measured loader measures: the Strongroom code and the interpreter that runs it, and the model
it is about to load.

``loader_manifest`` lists, exactly:

1. ``interpreter``: the interpreter executable, ``os.path.realpath(sys.executable)``;
2. ``libpython``: the shared libpython the interpreter runs from, when it is built with
   ``--enable-shared`` (``sysconfig``'s LIBDIR/INSTSONAME; on this machine the 17 KB ``python3.11`` is a
   stub and ``libpython3.11.so.1.0`` holds the interpreter);
3. ``strongroom/<path>``: every regular file under the installed ``strongroom`` package directory
   (``strongroom.__file__``'s folder), recursively, except ``__pycache__`` directories and ``*.pyc`` /
   ``*.pyo`` files (they are regenerated per interpreter and per import; see the limits below).

Each entry is (label, SHA-256 of the file's bytes, size); entries are sorted by label (bytewise UTF-8).
``loader_digest`` is SHA-256 over the RFC 8785 JSON
``{"context": "strongroom.attest.loader.v1", "files": [[label, hex sha256, size], ...]}``. File paths outside
the package are not part of the labels, so two hosts with the same build in different prefixes agree.

Not measured, said plainly: the Python standard library and every third-party package (cryptography,
numpy, torch...), the C libraries they load, the kernel, and ``.pyc`` files. A host that swaps any of
these runs other code under the same loader digest. A production host closes that gap below this layer:
measured boot plus IMA (which measures every executable and mmapped library into PCR 10) or an immutable,
dm-verity root file system whose root hash is in the golden PCRs, with the loader run as
``python -I -B --check-hash-based-pycs always`` from a read-only install.

``model_measurement(model_id)`` is SHA-256("strongroom.attest.model.v1" || 0x00 || model id in UTF-8): the
digest the host extends into the model PCR before it unseals the data key for that model.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from strongroom.attest.errors import AttestError
from strongroom.canonical_json import canonical_json

LOADER_CONTEXT = "strongroom.attest.loader.v1"
MODEL_CONTEXT = b"strongroom.attest.model.v1\x00"
_MODEL_ID = re.compile(r"^[a-z0-9]{1,16}:[0-9a-f]{32,128}$")
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class LoaderFile:
    """One measured file: its label, SHA-256 and size."""

    label: str
    sha256: bytes
    size: int


def _hash_file(path: Path) -> tuple[bytes, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def default_package_dir() -> Path:
    import strongroom

    return Path(strongroom.__file__).resolve().parent


def interpreter_files() -> list[tuple[str, Path]]:
    """The running interpreter's executable and, for a shared build, its libpython."""
    files = [("interpreter", Path(os.path.realpath(sys.executable)))]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
        if libdir and soname and (Path(libdir) / soname).is_file():
            files.append(("libpython", Path(os.path.realpath(Path(libdir) / soname))))
    return files


def loader_manifest(package_dir: Path | None = None) -> list[LoaderFile]:
    """The measured files, sorted by label (see the module docstring for exactly which); ``package_dir``
    defaults to the installed ``strongroom`` package."""
    root = (package_dir or default_package_dir()).resolve()
    if not root.is_dir():
        raise AttestError(f"loader package directory {root} does not exist")
    entries: list[tuple[str, Path]] = interpreter_files()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in filenames:
            path = Path(dirpath) / filename
            if filename.endswith(_SKIPPED_SUFFIXES) or not path.is_file() or path.is_symlink():
                continue
            entries.append((f"{root.name}/{path.relative_to(root).as_posix()}", path))
    measured = []
    for label, path in sorted(entries, key=lambda item: item[0].encode()):
        digest, size = _hash_file(path)
        measured.append(LoaderFile(label, digest, size))
    return measured


def manifest_digest(files: list[LoaderFile]) -> bytes:
    """SHA-256 over the canonical JSON of a loader manifest."""
    body = {"context": LOADER_CONTEXT, "files": [[f.label, f.sha256.hex(), f.size] for f in files]}
    return hashlib.sha256(canonical_json(body)).digest()


def loader_digest(package_dir: Path | None = None) -> bytes:
    """The loader measurement the host extends into the loader PCR at start."""
    return manifest_digest(loader_manifest(package_dir))


def model_measurement(model_id: str) -> bytes:
    """The digest extended into the model PCR before loading ``model_id`` (``<algorithm>:<hex>``)."""
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        raise AttestError(f"model id {model_id!r} is not <algorithm>:<hex>")
    return hashlib.sha256(MODEL_CONTEXT + model_id.encode("utf-8")).digest()
