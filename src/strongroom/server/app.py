"""Builds the ``strongroom serve`` application from a data directory (or a PostgreSQL URL).

The data directory holds the log's key, the custody service's entry-signing key (``service.key``: not an
officer, not an HTTP appender), the genesis officers' public keys (``officers/NAME.pub``, read once, when
the ledger has no authority yet), and the appenders (``appenders/NAME.pub``, each with an optional
``NAME.types`` allow-list of entry types, by default ``model.evaluated``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from strongroom.custody.authority import DEFAULT_APPENDER_TYPES, DEFAULT_THRESHOLD, Appenders
from strongroom.custody.protocol import Authority, Officer
from strongroom.custody.service import CustodyService
from strongroom.custody.store import CustodyStore
from strongroom.errors import StrongroomError
from strongroom.filemodes import loose_files, private_directory
from strongroom.keys.provider import KeyProvider
from strongroom.ledger.log import Ledger
from strongroom.ledger.witnessing import Witnessing
from strongroom.server import errors
from strongroom.server.bodies import BodyLimit
from strongroom.server.custody_routes import custody_router
from strongroom.server.lean_add import LeanAdd
from strongroom.server.ledger_routes import Appends, ledger_router
from strongroom.signing import Signer, Verifier

SERVICE_KEY = "service.key"
SERVICE_PUB = "service.pub"


class ServerSettingsError(StrongroomError):
    """The data directory's officers or appenders are misconfigured."""


@dataclass
class Services:
    ledger: Ledger
    custody: CustodyService
    service_key: Signer

    def close(self) -> None:
        """Stop the ledger's sequencer and the databases' checkpointers."""
        self.ledger.close()
        self.custody.store.close()


def service_signer(data_dir: Path, passphrase: bytes | None = None) -> Signer:
    """The custody service's entry-signing key, created on first start (0600, encrypted under
    ``passphrase`` when one is given)."""
    path = data_dir / SERVICE_KEY
    if path.exists():
        return Signer.load(path, passphrase)
    signer = Signer.generate("ed25519")
    signer.save(path, data_dir / SERVICE_PUB, passphrase)
    return signer


def genesis_authority(data_dir: Path, threshold: int, agreement: str | None) -> Authority | None:
    """The officers in ``DATA/officers/*.pub`` (names from the file names), if any are there."""
    folder = data_dir / "officers"
    paths = sorted(folder.glob("*.pub")) if folder.is_dir() else []
    if not paths:
        return None
    officers = tuple(Officer(path.stem, Verifier.load(path)) for path in paths)
    try:
        return Authority(officers, threshold, agreement)
    except StrongroomError as exc:
        raise ServerSettingsError(f"{folder}: {exc}") from None


_read: dict[Path, tuple[tuple[tuple[str, int, int], ...], Appenders]] = {}


def appenders_in(data_dir: Path) -> Appenders:
    """``DATA/appenders/NAME.pub`` and their allow-lists ``NAME.types`` (default: model.evaluated), read again
    whenever a file there is added, removed or changed (a stat of the folder per call, not a parse)."""
    folder = data_dir / "appenders"
    try:
        stamp = tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(folder)))
    except OSError:
        stamp = ()
    cached = _read.get(folder)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    appenders = _appenders_in(folder)
    _read[folder] = (stamp, appenders)
    return appenders


def _appenders_in(folder: Path) -> Appenders:
    found: dict[str, frozenset[str]] = {}
    for path in sorted(folder.glob("*.pub")) if folder.is_dir() else []:
        allow_list = path.with_suffix(".types")
        types = frozenset(allow_list.read_text().split()) if allow_list.exists() else DEFAULT_APPENDER_TYPES
        found[Verifier.load(path).key_id] = types
    try:
        return Appenders(found)
    except StrongroomError as exc:
        raise ServerSettingsError(f"{folder}: {exc}") from None


if TYPE_CHECKING:
    from strongroom.incident.fingerprint import FingerprintKey


def fingerprint_keys(data_dir: Path, providers: list[KeyProvider]) -> list[FingerprintKey]:
    """The fingerprint keys in ``DATA/fingerprints/*.key`` (sealed files), opened with whichever provider
    wrapped each (``strongroom incident fingerprint-key`` writes them)."""
    from strongroom.incident.fingerprint import FingerprintKey
    from strongroom.seal import SealedModel

    keys: list[FingerprintKey] = []
    for path in sorted((data_dir / "fingerprints").glob("*.key")):
        wrapped = SealedModel.inspect(path).key
        provider = next((p for p in providers if (p.provider, p.key_id) == (wrapped.provider, wrapped.key_id)), None)
        if provider is None:
            raise ServerSettingsError(f"{path}: no configured key provider is {wrapped.provider}:{wrapped.key_id}")
        keys.append(FingerprintKey.load(path, provider))
    return keys


def open_services(
    data_dir: Path,
    database: str | None = None,
    providers: list[KeyProvider] | None = None,
    origin: str | None = None,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    agreement: str | None = None,
    key_passphrase: bytes | None = None,
    allow_loose_permissions: bool = False,
) -> Services:
    """Open the ledger and the custody service; on a ledger without an authority, the officers in
    ``DATA/officers`` (with ``threshold`` and the required ``agreement`` digest) become its genesis. The
    data directory must be private (0700, keys and databases 0600) unless ``allow_loose_permissions``; the
    log and service keys are encrypted at rest under ``key_passphrase`` when one is given."""
    data_dir = private_directory(Path(data_dir))
    loose = loose_files(data_dir)
    if loose and not allow_loose_permissions:
        raise ServerSettingsError("data directory is not private: " + "; ".join(loose))
    ledger = Ledger.open(data_dir, database, origin, key_passphrase)
    try:
        service_key = service_signer(data_dir, key_passphrase)
    except BaseException:
        ledger.close()
        raise
    store = CustodyStore(database) if database else CustodyStore.for_data_dir(data_dir)
    try:
        genesis = genesis_authority(data_dir, threshold, agreement)
        custody = CustodyService(store, ledger, service_key, providers or [], genesis=genesis)
        for key in fingerprint_keys(data_dir, providers or []):
            custody.hold_fingerprint_key(key)
    except BaseException:
        store.close()
        ledger.close()
        raise
    return Services(ledger, custody, service_key)


def create_app(services: Services, data_dir: Path) -> FastAPI:
    app = FastAPI(title="Strongroom", version="0.1.0")
    errors.install(app)  # library errors by class; malformed input 4xx, never 500; one {"error", "kind"} shape
    app.add_middleware(BodyLimit)  # no body over 8 MiB reaches any route (each route has a tighter cap)

    appenders_in(data_dir)  # a misconfigured allow-list stops the server from starting

    def appenders() -> Appenders:
        return appenders_in(data_dir)  # read per request: adding or removing an appender needs no restart

    witnesses_file = data_dir / "witnesses"
    urls = witnesses_file.read_text().split() if witnesses_file.exists() else []
    appends = Appends(services.ledger, appenders)
    app.include_router(ledger_router(services.ledger, appenders, Witnessing(services.ledger, urls), appends))
    if os.environ.get("STRONGROOM_FRAMEWORK_ADD") != "1":  # the FastAPI route instead, for same-run comparisons
        app.add_middleware(LeanAdd, appends=appends)  # POST /add without the framework (lean_add.py)
    app.include_router(custody_router(services.custody, services.custody.clock))
    return app
