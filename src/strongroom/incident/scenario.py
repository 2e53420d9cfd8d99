"""A scripted weight leak on a generated ledger: weeks of ordinary custody traffic with decoys, and one
planted culprit release. Used by the tests, the benchmark and ``strongroom demo-incident``.

Ordinary traffic: releases in working hours to eight hosts for twenty people, two approvals each, a load
on the released host soon after, hourly egress checkpoints well under budget, a few signals raised and
cleared. Decoys: an on-call release at night (no signal, no egress after it), a release approved by someone
whose signal was cleared the week before, a release on the culprit's host two days before the leak, an
egress alarm on a host nobody released to. The culprit: on a Saturday night, a release to ``gpu-06``
requested by ``p07`` and approved by ``p13`` while ``p13`` has an open signal; egress from ``gpu-06`` climbs
to 96% of budget and the gateway raises an alarm.

Entries carry the shapes the custody service writes (signed requests and approvals as ``{payload, signer,
signature}``) but are signed by one generated key: this exercises the timeline, not custody replay.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.ledger.entries import Entry, build_entry
from strongroom.signing import Signer, SigningKey

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
MODELS = ("blake3:" + "7a" * 32, "blake3:" + "3c" * 32)
HOSTS = tuple(f"gpu-{i:02d}" for i in range(1, 9))
PEOPLE = tuple(f"p{i:02d}" for i in range(20))
BUDGET = 50 * 2**20


@dataclass(frozen=True)
class Planted:
    culprit: str  # the culprit release's request id
    culprit_host: str
    culprit_approver: str
    decoys: tuple[str, ...]


def _t(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(payload: dict[str, Any]) -> dict[str, Any]:
    return {"payload": payload, "signer": "00" * 32, "signature": "AA=="}


class _Script:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.items: list[tuple[datetime, str, dict[str, Any]]] = []

    def add(self, when: datetime, entry_type: str, body: dict[str, Any]) -> None:
        self.items.append((when, entry_type, body))

    def person(self, when: datetime, person: str, change: str, **fields: Any) -> None:
        payload = {"action": f"person.{change}", "change": {"change": change, "person": person, **fields}}
        self.add(when, "person.changed", {"person": person, "change": change, "authorisation": _signed(payload)})

    def release(self, when: datetime, requester: str, approvers: tuple[str, str], host: str, model: str) -> str:
        request_id = self.rng.getrandbits(256).to_bytes(32, "big").hex()
        request = {"type": "strongroom.release-request/v2", "model_id": model, "requester": requester,
                   "purpose": "evaluation", "issued_at": _t(when - timedelta(minutes=30))}  # fmt: skip
        approvals = [
            _signed(
                {
                    "approver": a,
                    "decision": "approve",
                    "request_id": request_id,
                    "issued_at": _t(when - timedelta(minutes=20 - 5 * i)),
                }
            )
            for i, a in enumerate(approvers)
        ]
        body = {
            "model_id": model,
            "request_id": request_id,
            "request": _signed(request),
            "approvals": approvals,
            "approvers": list(approvers),
            "custodians": [],
            "host": {"host_id": host, "key_id": "11" * 32},
            "release_nonce": secrets.token_hex(16),
        }
        self.add(when, "key.released", body)
        self.add(when + timedelta(minutes=3), "model.loaded",
                 {"model_id": model, "request_id": request_id, "host": host, "statement": _signed({})})  # fmt: skip
        return request_id

    def checkpoint(self, when: datetime, host: str, used: int) -> None:
        self.add(when, "egress.checkpoint", {"host": host, "period_start": _t(when.replace(hour=0, minute=0)),
                 "bytes_used": used, "quota_bytes": BUDGET, "budget_bytes": BUDGET, "rules_digest": "none",
                 "meters": {}})  # fmt: skip


def script(
    seed: int = 16, days: int = 14, releases_per_day: int = 20
) -> tuple[list[tuple[datetime, str, dict[str, Any]]], Planted]:
    """The events, in time order, and what was planted."""
    s = _Script(seed)
    rng = s.rng
    approvers = PEOPLE[10:]
    decoys: list[str] = []
    s.add(
        START - timedelta(hours=1), "host.changed", {"host": "gpu-01", "change": "enrol", "authorisation": _signed({})}
    )
    s.person(START + timedelta(days=1, hours=2), "p15", "signal", signal_id="sig-p15", kind="travel")
    s.person(START + timedelta(days=3, hours=4), "p15", "clear", signal_id="sig-p15")
    for day in range(days):
        date = START + timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for _ in range(releases_per_day):
            when = date + timedelta(minutes=rng.randrange(0, 10 * 60))
            pair = tuple(rng.sample(approvers, 2))
            s.release(when, rng.choice(PEOPLE[:10]), (pair[0], pair[1]), rng.choice(HOSTS), rng.choice(MODELS))
    for hour in range(days * 24):
        when = START + timedelta(hours=hour, minutes=30)
        for host in HOSTS:
            if rng.random() < 0.25:
                s.checkpoint(when, host, rng.randrange(BUDGET // 20, BUDGET // 2))
    # decoys
    decoys.append(s.release(START + timedelta(days=2, hours=15), "p03", ("p11", "p12"), "gpu-02", MODELS[0]))  # 23:00
    decoys.append(
        s.release(START + timedelta(days=7, hours=3), "p04", ("p15", "p16"), "gpu-03", MODELS[1])
    )  # signal cleared
    decoys.append(
        s.release(START + timedelta(days=10, hours=14), "p05", ("p10", "p18"), "gpu-06", MODELS[0])
    )  # 22:00 Thu
    s.add(START + timedelta(days=4, hours=6), "egress.alarm", {"host": "gpu-08", "model_id": MODELS[1],
          "alarm_id": "ab" * 16, "kind": "meter-gap", "detail": {}})  # fmt: skip
    # the culprit
    s.person(START + timedelta(days=11, hours=1), "p13", "signal", signal_id="sig-p13", kind="financial")
    leak = START + timedelta(days=12, hours=18, minutes=40)  # Saturday 02:40
    culprit = s.release(leak, "p07", ("p13", "p02"), "gpu-06", MODELS[0])
    s.checkpoint(leak + timedelta(hours=3), "gpu-06", int(BUDGET * 0.96))
    s.add(leak + timedelta(hours=3, minutes=5), "egress.alarm", {"host": "gpu-06", "model_id": MODELS[0],
          "alarm_id": "cd" * 16, "kind": "anomaly", "detail": {"cusum": 9.1}})  # fmt: skip
    s.add(leak + timedelta(days=1), "incident.changed", {"incident": "0f" * 8, "change": "declare",
          "authorisation": _signed({"change": {"scope": "model:" + MODELS[0]}})})  # fmt: skip
    s.items.sort(key=lambda item: item[0])
    return s.items, Planted(culprit, "gpu-06", "p13", tuple(decoys))


def entries(items: list[tuple[datetime, str, dict[str, Any]]], signer: SigningKey | None = None) -> Iterator[Entry]:
    """Signed ledger entries for the scripted events, in order."""
    signer = signer or Signer.generate("ed25519")
    for when, entry_type, body in items:
        yield build_entry(entry_type, body, signer, _t(when))
