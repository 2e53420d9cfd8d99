"""Builds the ``strongroom serve`` application from a data directory (or a PostgreSQL URL)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from strongroom.custody.service import CustodyService
from strongroom.custody.store import CustodyStore
from strongroom.keys.provider import KeyProvider
from strongroom.ledger.log import Ledger
from strongroom.ledger.witnessing import Witnessing
from strongroom.server.custody_routes import custody_router
from strongroom.server.ledger_routes import ledger_router
from strongroom.signing import Signer, Verifier

OPERATOR_KEY = "operator.key"
OPERATOR_PUB = "operator.pub"


@dataclass
class Services:
    ledger: Ledger
    custody: CustodyService
    operator: Signer

    def close(self) -> None:
        """Stop the ledger's sequencer and the databases' checkpointers."""
        self.ledger.close()
        self.custody.store.close()


def operator_signer(data_dir: Path) -> Signer:
    """The operator key, created on first start; it may append and is a security officer."""
    path = data_dir / OPERATOR_KEY
    if path.exists():
        return Signer.load(path)
    signer = Signer.generate("ed25519")
    signer.save(path, data_dir / OPERATOR_PUB)
    return signer


def _keys_in(folder: Path) -> dict[str, Verifier]:
    found: dict[str, Verifier] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.pub")):
            verifier = Verifier.load(path)
            found[verifier.key_id] = verifier
    return found


def open_services(
    data_dir: Path, database: str | None = None, providers: list[KeyProvider] | None = None, origin: str | None = None
) -> Services:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(data_dir, database, origin)
    operator = operator_signer(data_dir)
    store = CustodyStore(database) if database else CustodyStore.for_data_dir(data_dir)
    custody = CustodyService(store, ledger, operator, providers or [])
    return Services(ledger, custody, operator)


def create_app(services: Services, data_dir: Path) -> FastAPI:
    app = FastAPI(title="Strongroom", version="0.1.0")

    def appenders() -> set[str]:
        return {services.operator.key_id, *_keys_in(data_dir / "appenders")}

    def officers() -> dict[str, Verifier]:
        return {services.operator.key_id: services.operator.verifier, **_keys_in(data_dir / "officers")}

    witnesses_file = data_dir / "witnesses"
    urls = witnesses_file.read_text().split() if witnesses_file.exists() else []
    app.include_router(ledger_router(services.ledger, appenders, Witnessing(services.ledger, urls)))
    app.include_router(custody_router(services.custody, officers, services.custody.clock))
    return app
