"""GeoState: per-host latest verdicts folded from verified ledger entries; and the HTTP append path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from strongroom.geo.protocol import epoch_now, epoch_start
from strongroom.geo.region import Outcome
from strongroom.geo.state import GeoState
from strongroom.geo.verify import assess, statement
from strongroom.ledger.client import LedgerClient
from strongroom.ledger.entries import build_entry, make_entry
from strongroom.ledger.errors import LedgerError
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer

from .helpers import US_LANDMARKS, World, honest_reports
from .netlab import PLACES

VERIFIER = Signer.generate("ed25519")


def body_for(world: World, place: str, epoch: int) -> dict:
    reports = honest_reports(world, "h1", PLACES[place], epoch=epoch)
    body, _ = statement(assess("h1", world.host_key.verifier, reports, world.landmarks(), now_epoch=epoch))
    return body


def test_latest_fresh_verdict_per_host() -> None:
    world = World(list(US_LANDMARKS))
    now_epoch = epoch_now()
    older = build_entry("geo.verdict", body_for(world, "wichita", now_epoch - 30), VERIFIER)
    newer = build_entry("geo.verdict", body_for(world, "mexico-city", now_epoch - 1), VERIFIER)
    state = GeoState(frozenset({VERIFIER.key_id}))
    state.fold([(0, newer), (1, older)])  # logged out of order: the higher epoch still wins
    now = epoch_start(now_epoch)
    location = state.verdict("h1", now, timedelta(minutes=10))
    assert location is not None and location.outcome is Outcome.INCONCLUSIVE and location.index == 0
    assert not location.satisfies({"US"})
    assert state.verdict("h1", now, timedelta(seconds=30)) is None  # too old
    assert state.verdict("h2", now, timedelta(days=1)) is None

    fresh = GeoState().fold([older])
    location = fresh.verdict("h1", now, timedelta(hours=1))
    assert location is not None and location.label() == "IN(US)" and location.satisfies({"US", "CA"})
    assert location.country == "US" and location.verdict is Outcome.IN


def test_untrusted_signers_malformed_bodies_and_alarms() -> None:
    world = World(list(US_LANDMARKS))
    body = body_for(world, "wichita", epoch_now())
    state = GeoState(frozenset({VERIFIER.key_id}))
    assert state.apply(build_entry("geo.verdict", body, Signer.generate("ed25519")), 5) is None
    assert state.problems[0][0] == 5 and "untrusted" in state.problems[0][1]
    assert state.apply(build_entry("geo.verdict", {**body, "country": "ZZ"}, VERIFIER), 6) is None
    assert "malformed" in state.problems[1][1]
    alarm = {**body, "verdict": "INCONSISTENT", "country": "ZZ"}
    assert state.apply(build_entry("geo.verdict", alarm, VERIFIER), 7) is not None
    assert state.alarms and state.alarms[0].index == 7
    evaluated = {"model_id": "m", "suite": "s", "results": {}, "evaluator": "e"}
    assert state.apply(build_entry("model.evaluated", evaluated, VERIFIER), 8) is None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "srv"
    services = open_services(data)
    with BackgroundServer(create_app(services, data)) as url:
        yield url, data
    services.close()


def test_verdicts_are_appended_over_http_by_an_allowed_appender(served: tuple[str, Path]) -> None:
    url, data = served
    (data / "appenders").mkdir(exist_ok=True)
    verifier = Signer.generate("ed25519")
    verifier.save(data.parent / "geo.key", data / "appenders" / "geo.pub")
    (data / "appenders" / "geo.types").write_text("geo.verdict\n")
    world = World(list(US_LANDMARKS))
    body = body_for(world, "wichita", epoch_now())
    client = LedgerClient(url)
    receipt = client.append(make_entry("geo.verdict", body, verifier))
    # an appender not allowed geo.verdict is refused
    other = Signer.generate("ed25519")
    other.save(data.parent / "evals.key", data / "appenders" / "evals.pub")
    with pytest.raises(LedgerError, match="403"):
        client.append(make_entry("geo.verdict", body, other))
    state = GeoState(frozenset({verifier.key_id})).fold(client.query(type="geo.verdict"))
    location = state.verdict("h1", epoch_start(epoch_now()), timedelta(minutes=5))
    assert location is not None and location.label() == "IN(US)" and location.index == receipt["index"]
