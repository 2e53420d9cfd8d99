"""The SenL registry: enrolment, rescreening by tier, agreements, signals that suspend, offboarding."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from typing import Any

import pytest

from strongroom.people import PeopleError, Registry, UnknownPersonError, agreement_message, rescreen_due
from strongroom.signing import Signer

AGREEMENT = "sha256:" + "ab" * 32
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def enrol(
    registry: Registry,
    person: str,
    tier: int,
    *,
    custodian: bool = False,
    vetted: str = "2026-06-01",
    sign: bool = True,
) -> Signer:
    key = Signer.generate("ed25519")
    registry.apply(
        {
            "change": "enrol",
            "person": person,
            "name": person.title(),
            "public_key": key.verifier.pem().decode(),
            "position": f"tier {tier}",
            "tier": tier,
            "custodian": custodian,
            "vetted_on": vetted,
        }
    )
    if sign:
        signature = base64.b64encode(key.sign(agreement_message(person, AGREEMENT))).decode()
        registry.apply({"change": "agreement", "person": person, "agreement": AGREEMENT, "signature": signature})
    return key


def test_rescreen_intervals_shrink_with_tier() -> None:
    vetted = date(2025, 1, 31)
    assert rescreen_due(vetted, 1) == date(2026, 7, 31)
    assert rescreen_due(vetted, 5) == date(2026, 2, 28)
    assert [rescreen_due(vetted, t) for t in range(1, 6)] == sorted(
        [rescreen_due(vetted, t) for t in range(1, 6)], reverse=True
    )


def test_active_person_and_custodian() -> None:
    registry = Registry(required_agreement=AGREEMENT)
    enrol(registry, "carol", 5, custodian=True)
    standing = registry.standing("carol", NOW)
    assert standing.active and standing.effective_tier == 5 and standing.custodian


def test_custodian_flag_needs_tier_five() -> None:
    registry = Registry()
    enrol(registry, "bob", 4, custodian=True)
    assert not registry.standing("bob", NOW).custodian


def test_overdue_rescreen_suspends() -> None:
    registry = Registry()
    enrol(registry, "dave", 5, custodian=True, vetted="2025-09-01")
    standing = registry.standing("dave", NOW)
    assert standing.effective_tier == 0 and "overdue: rescreen was due 2026-10-01" in standing.reasons
    registry.apply({"change": "vetted", "person": "dave", "vetted_on": "2026-11-20"})
    assert registry.standing("dave", NOW).active


def test_signal_suspends_until_cleared_by_someone_else() -> None:
    registry = Registry()
    enrol(registry, "erin", 4)
    enrol(registry, "frank", 5, custodian=True)
    registry.apply(
        {
            "change": "signal",
            "person": "erin",
            "signal_id": "s-1",
            "kind": "foreign_contact",
            "detail": "undisclosed contact",
            "observed_on": "2026-11-01",
        }
    )
    standing = registry.standing("erin", NOW)
    assert not standing.active and standing.reasons == ("suspended: open foreign_contact signal s-1",)
    with pytest.raises(PeopleError, match="cannot clear their own signal"):
        registry.apply({"change": "clear", "person": "erin", "signal_id": "s-1", "reviewer": "erin"})
    registry.apply({"change": "clear", "person": "erin", "signal_id": "s-1", "reviewer": "frank"})
    assert registry.standing("erin", NOW).active


def test_promotion_requires_rescreen() -> None:
    registry = Registry()
    enrol(registry, "gina", 3)
    registry.apply({"change": "position", "person": "gina", "position": "custodian", "tier": 5, "custodian": True})
    assert "rescreen required after a change of position" in registry.standing("gina", NOW).reasons
    registry.apply({"change": "vetted", "person": "gina", "vetted_on": "2026-11-22"})
    standing = registry.standing("gina", NOW)
    assert standing.effective_tier == 5 and standing.custodian


def test_unsigned_or_forged_agreement() -> None:
    registry = Registry(required_agreement=AGREEMENT)
    enrol(registry, "hank", 2, sign=False)
    assert "has not signed the current access agreement" in registry.standing("hank", NOW).reasons
    forged = base64.b64encode(Signer.generate("ed25519").sign(agreement_message("hank", AGREEMENT))).decode()
    with pytest.raises(PeopleError, match="signature does not verify"):
        registry.apply({"change": "agreement", "person": "hank", "agreement": AGREEMENT, "signature": forged})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "change": "enrol",
                "person": "x",
                "name": "X",
                "public_key": "nope",
                "position": "p",
                "tier": 1,
                "vetted_on": "2026-01-01",
            },
            "not a PEM public key",
        ),
        ({"change": "vetted", "person": "ivan", "vetted_on": "yesterday"}, "not an ISO date"),
        ({"change": "position", "person": "ivan", "position": "p", "tier": 6}, "SenL tier from 1 to 5"),
        (
            {"change": "signal", "person": "ivan", "signal_id": "s", "kind": "gossip", "observed_on": "2026-01-01"},
            "unknown signal kind",
        ),
        ({"change": "teleport", "person": "ivan"}, "unknown change"),
        ({"change": "vetted", "person": "nobody", "vetted_on": "2026-01-01"}, "no person 'nobody'"),
    ],
)
def test_malformed_changes_are_refused_and_change_nothing(change: dict[str, Any], message: str) -> None:
    registry = Registry()
    enrol(registry, "ivan", 3)
    before = repr(registry.people)
    with pytest.raises((PeopleError, UnknownPersonError), match=message):
        registry.apply(change)
    assert repr(registry.people) == before


def test_people_must_use_ed25519_and_distinct_keys() -> None:
    registry = Registry()
    ecdsa = Signer.generate("ecdsa-p256").verifier.pem().decode()
    with pytest.raises(PeopleError, match="Ed25519"):
        registry.apply(
            {
                "change": "enrol",
                "person": "j",
                "name": "J",
                "public_key": ecdsa,
                "position": "p",
                "tier": 1,
                "vetted_on": "2026-01-01",
            }
        )
    key = enrol(registry, "kim", 2)
    with pytest.raises(PeopleError, match="already belongs"):
        registry.apply(
            {
                "change": "enrol",
                "person": "lee",
                "name": "L",
                "public_key": key.verifier.pem().decode(),
                "position": "p",
                "tier": 1,
                "vetted_on": "2026-01-01",
            }
        )


def test_offboarded_person_loses_access() -> None:
    registry = Registry()
    enrol(registry, "mo", 5, custodian=True)
    registry.apply({"change": "offboard", "person": "mo", "reason": "left"})
    assert registry.standing("mo", NOW).reasons == ("offboarded",)
    with pytest.raises(PeopleError, match="offboarded"):
        registry.apply({"change": "vetted", "person": "mo", "vetted_on": "2026-11-01"})
