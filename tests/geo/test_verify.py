"""Checking reports, statements that reveal only the country, commitments and the auditor's recompute."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from strongroom.canonical_json import canonical_json
from strongroom.geo.errors import (
    AuditMismatchError,
    CommitmentError,
    ForeignKeyError,
    GeoDataError,
    ProtocolError,
    ReplayError,
)
from strongroom.geo.protocol import epoch_now
from strongroom.geo.region import Outcome, Parameters
from strongroom.geo.verify import UNKNOWN_COUNTRY, Opening, assess, recompute, statement
from strongroom.ledger.entries import make_entry, parse_entry
from strongroom.ledger.errors import EntryError
from strongroom.signing import Signer

from .helpers import US_LANDMARKS, World, honest_reports, report
from .netlab import PLACES


@pytest.fixture
def world() -> World:
    return World(list(US_LANDMARKS))


def test_statement_reveals_only_the_country_and_recomputes(world: World) -> None:
    reports = honest_reports(world, "h1", PLACES["wichita"])
    landmarks = world.landmarks()
    assessment = assess("h1", world.host_key.verifier, reports, landmarks)
    body, opening = statement(assessment)
    assert body["verdict"] == "IN" and body["country"] == "US"
    assert set(body) == {"host", "verdict", "country", "epoch", "landmark_set", "commitment", "method"}
    text = json.dumps(body)
    for name in US_LANDMARKS:  # nothing of the measurements, the landmarks used or the region
        assert name not in text
    assert "rtt" not in text and "salina" not in text
    # the entry is accepted by the ledger's schema and signature checks
    entry = parse_entry(make_entry("geo.verdict", body, Signer.generate("ed25519")))
    assert entry.body == body
    # the auditor's recompute from the opening (as it would travel: JSON)
    again = recompute(body, json.loads(json.dumps(opening.to_json())), landmarks, host_key=world.host_key.verifier)
    assert again.label() == "IN(US)" and again.area_km2 and again.area_km2 > 0


def test_inconclusive_statement_names_no_country(world: World) -> None:
    reports = honest_reports(world, "h1", PLACES["mexico-city"])
    body, opening = statement(assess("h1", world.host_key.verifier, reports, world.landmarks()))
    assert body["verdict"] == "INCONCLUSIVE" and body["country"] == UNKNOWN_COUNTRY
    assert recompute(body, opening, world.landmarks()).outcome is Outcome.INCONCLUSIVE


def test_tampering_is_caught_by_the_auditor(world: World) -> None:
    landmarks = world.landmarks()
    body, opening = statement(
        assess("h1", world.host_key.verifier, honest_reports(world, "h1", PLACES["wichita"]), landmarks)
    )
    # a lowered RTT in the opening: the commitment no longer matches
    record = json.loads(canonical_json(opening.record))
    record["reports"][0]["report"]["samples"][0]["rtt_ns"] = 1
    with pytest.raises(CommitmentError):
        recompute(body, Opening(opening.salt, record), landmarks)
    with pytest.raises(CommitmentError):
        recompute(body, Opening(bytes(32), opening.record), landmarks)
    # a statement claiming another country, or another verdict, than its record gives
    with pytest.raises(AuditMismatchError, match="record gives IN"):
        recompute({**body, "country": "CA"}, opening, landmarks)
    with pytest.raises(AuditMismatchError):
        recompute({**body, "verdict": "INCONCLUSIVE", "country": UNKNOWN_COUNTRY}, opening, landmarks)
    # another landmark set, or another host key than the enrolled one
    other = World(list(US_LANDMARKS))
    with pytest.raises(AuditMismatchError, match="landmark set"):
        recompute(body, opening, other.landmarks())
    with pytest.raises(AuditMismatchError, match="enrolled key"):
        recompute(body, opening, landmarks, host_key=Signer.generate("ed25519").verifier)


def test_a_verifier_cannot_commit_to_a_record_that_gives_another_verdict(world: World) -> None:
    """A dishonest verifier signs IN(US) over measurements of Mexico City: the auditor recomputes and refuses."""
    landmarks = world.landmarks()
    assessment = assess("h1", world.host_key.verifier, honest_reports(world, "h1", PLACES["mexico-city"]), landmarks)
    forged = replace(assessment, verdict=replace(assessment.verdict, outcome=Outcome.IN, country="US"))
    body, opening = statement(forged)
    with pytest.raises(AuditMismatchError, match="INCONCLUSIVE"):
        recompute(body, opening, landmarks)


def test_foreign_keys_are_refused(world: World) -> None:
    landmarks = world.landmarks()
    stranger = Signer.generate("ed25519")
    # answers signed by a key that is not the host's enrolled key
    reports = honest_reports(world, "h1", PLACES["wichita"])
    reports[US_LANDMARKS.index("salina")] = report(
        "salina", world.signers["salina"], "h1", world.host_key, [2.0] * 10, answer_key=stranger
    )
    with pytest.raises(ForeignKeyError, match="answer to salina"):
        assess("h1", world.host_key.verifier, reports, landmarks)
    # reports about a whole other key (the host's key is elsewhere, someone else answered)
    with pytest.raises(ForeignKeyError, match="not h1's"):
        assess("h1", stranger.verifier, honest_reports(world, "h1", PLACES["wichita"]), landmarks)
    # a report claiming to come from a landmark but signed by another key
    forged = report("salina", stranger, "h1", world.host_key, [0.1] * 10)
    with pytest.raises(ForeignKeyError):
        assess("h1", world.host_key.verifier, [forged], landmarks)


def test_replays_are_refused(world: World) -> None:
    landmarks = world.landmarks()
    reports = honest_reports(world, "h1", PLACES["wichita"])
    with pytest.raises(ProtocolError, match="two reports"):
        assess("h1", world.host_key.verifier, [*reports, reports[0]], landmarks)
    nonces = ["ab" * 32] * 10
    with pytest.raises(ReplayError, match="twice"):
        bad = report("salina", world.signers["salina"], "h1", world.host_key, [2.0] * 10, nonces=nonces)
        assess("h1", world.host_key.verifier, [bad], landmarks)
    shared = [f"{i:064x}" for i in range(10)]
    a = report("salina", world.signers["salina"], "h1", world.host_key, [2.0] * 10, nonces=shared)
    b = report("tulsa", world.signers["tulsa"], "h1", world.host_key, [2.0] * 10, nonces=shared)
    with pytest.raises(ReplayError, match="two landmarks"):
        assess("h1", world.host_key.verifier, [a, b], landmarks)
    old = honest_reports(world, "h1", PLACES["wichita"], epoch=epoch_now() - 10)
    with pytest.raises(ProtocolError, match="not fresh"):
        assess("h1", world.host_key.verifier, old, landmarks)
    with pytest.raises(ProtocolError, match="one epoch"):
        assess("h1", world.host_key.verifier, [old[0], *reports[1:]], landmarks)


def test_landmarks_with_too_few_samples_or_flags_are_left_out(world: World) -> None:
    landmarks = world.landmarks()
    reports = honest_reports(world, "h1", PLACES["wichita"])
    reports[US_LANDMARKS.index("dallas")] = report("dallas", world.signers["dallas"], "h1", world.host_key, [6.0, 6.1])
    found = assess("h1", world.host_key.verifier, reports, landmarks, flagged={"salina": "test"})
    assert found.left_out == {"dallas": "2 valid samples, fewer than 5", "salina": "flagged: test"}
    assert "dallas" not in found.verdict.landmarks and "salina" not in found.verdict.landmarks


def test_allowed_countries_must_exist_in_the_data(world: World) -> None:
    reports = honest_reports(world, "h1", PLACES["wichita"])
    with pytest.raises(GeoDataError, match="HU"):  # countryinfo 1.0.1 has no outline for Hungary
        assess("h1", world.host_key.verifier, reports, world.landmarks(), allowed=["HU"])
    found = assess("h1", world.host_key.verifier, reports, world.landmarks(), allowed=["CA", "US"])
    assert found.verdict.label() == "IN(US)" and found.record["allowed"] == ["CA", "US"]


def test_parameters_are_committed(world: World) -> None:
    landmarks = world.landmarks()
    reports = honest_reports(world, "h1", PLACES["wichita"])
    body, opening = statement(
        assess("h1", world.host_key.verifier, reports, landmarks, params=Parameters(margin_km=40))
    )
    assert opening.record["parameters"]["margin_km"] == 40
    record = json.loads(canonical_json(opening.record))
    record["parameters"]["margin_km"] = 0
    with pytest.raises(CommitmentError):
        recompute(body, Opening(opening.salt, record), landmarks)


def test_ledger_schemas() -> None:
    signer = Signer.generate("ed25519")
    with pytest.raises(EntryError, match="country"):
        make_entry("geo.verdict", {"host": "h", "verdict": "IN", "epoch": 1}, signer)
    body = {"landmark": "salina", "change": "flag", "reason": "x", "authorisation": {}}
    assert parse_entry(make_entry("geo.landmark", body, signer)).body == body
