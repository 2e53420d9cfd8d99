"""Egress state as a pure fold of verified ledger entries: per host, its last checkpoint, whether its budget
is spent this period, and its open alarms. Custody's replay feeds it entries in log order and asks
``status(host_id, now)`` before releasing a key to a host.

Nothing here reads a clock, a file or the network: the same entries and the same ``now`` give the same
answer, live or in an offline audit. Entries by signers outside ``trusted`` (when given) are not applied and
are listed in ``ignored`` by their log index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strongroom.egress.records import ALARM, CHECKPOINT, EXHAUSTED, parse_time
from strongroom.ledger.entries import Entry

DEFAULT_MAX_AGE = 300.0  # seconds: a checkpoint older than this is stale for a release decision


@dataclass(frozen=True)
class Alarm:
    alarm_id: str
    host_id: str
    model_ids: tuple[str, ...]
    kind: str
    time: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class HostEgress:
    """What the ledger says about one host's egress at ``now``."""

    host_id: str
    now: float
    last_checkpoint: float | None  # Unix seconds of the last egress.checkpoint, None if none
    rules_installed: bool
    rules_digest: str | None
    quota_bytes: int
    bytes_used: int
    budget_bytes: int
    period_start: float | None
    period_seconds: int | None
    exhausted: bool  # spent in the period holding ``now`` (by the gateway's meter or the kernel's)
    open_alarms: tuple[Alarm, ...]

    @property
    def checkpoint_age(self) -> float | None:
        return None if self.last_checkpoint is None else self.now - self.last_checkpoint

    def refusal(self, max_age: float = DEFAULT_MAX_AGE) -> str | None:
        """Why a key should not go to this host now (None: a fresh checkpoint, rules in, budget left, no alarm)."""
        if self.last_checkpoint is None:
            return f"host {self.host_id} has no egress checkpoint on the ledger"
        age = self.now - self.last_checkpoint
        if age > max_age:
            return f"host {self.host_id}'s last egress checkpoint is {age:.0f}s old (at most {max_age:.0f}s)"
        if not self.rules_installed:
            return f"host {self.host_id}'s last egress checkpoint shows no kernel rules installed"
        if self.exhausted:
            return f"host {self.host_id}'s egress budget is spent for this period"
        if self.open_alarms:
            kinds = ", ".join(sorted({a.kind for a in self.open_alarms}))
            return f"host {self.host_id} has {len(self.open_alarms)} open egress alarm(s): {kinds}"
        return None


@dataclass
class _Host:
    checkpoint_time: float | None = None
    checkpoint: dict[str, Any] | None = None
    exhausted_periods: set[tuple[float, int]] = field(default_factory=set)  # (period start, period seconds)


class EgressState:
    """Fold egress entries (in log order) into per-host status."""

    def __init__(self, trusted: frozenset[str] | None = None) -> None:
        self.trusted = trusted
        self._hosts: dict[str, _Host] = {}
        self._alarms: dict[str, Alarm] = {}
        self._cleared: set[str] = set()
        self.ignored: list[int] = []

    def apply(self, entry: Entry, index: int | None = None) -> bool:
        """Fold one verified entry; True if it was an egress entry that was applied."""
        if entry.type not in (CHECKPOINT, ALARM, EXHAUSTED):
            return False
        body = entry.body
        host_id = body.get("host")
        if (self.trusted is not None and entry.signer not in self.trusted) or not isinstance(host_id, str):
            if index is not None:
                self.ignored.append(index)
            return False
        when = parse_time(entry.time)
        host = self._hosts.setdefault(host_id, _Host())
        if entry.type == CHECKPOINT:
            if host.checkpoint_time is None or when >= host.checkpoint_time:
                host.checkpoint_time, host.checkpoint = when, body
                if body.get("exhausted") is True:
                    host.exhausted_periods.add(_period(body))
        elif entry.type == EXHAUSTED:
            host.exhausted_periods.add(_period(body))
        else:
            alarm_id = str(body["alarm_id"])
            known = self._alarms.get(alarm_id)
            models = (known.model_ids if known else ()) + (str(body["model_id"]),)
            detail = body.get("detail")
            self._alarms[alarm_id] = Alarm(
                alarm_id,
                host_id,
                tuple(sorted(set(models))),
                str(body["kind"]),
                when,
                detail if isinstance(detail, dict) else {},
            )
        return True

    def apply_all(self, entries: list[tuple[int, Entry]]) -> None:
        for index, entry in entries:
            self.apply(entry, index)

    def clear(self, alarm_id: str) -> None:
        """Mark an alarm cleared (custody calls this when its officers' clearance is applied)."""
        self._cleared.add(alarm_id)

    def alarms(self, host_id: str | None = None, include_cleared: bool = False) -> list[Alarm]:
        return [
            a
            for a in self._alarms.values()
            if (host_id is None or a.host_id == host_id) and (include_cleared or a.alarm_id not in self._cleared)
        ]

    def hosts(self) -> list[str]:
        return sorted(self._hosts)

    def status(self, host_id: str, now: float) -> HostEgress:
        host = self._hosts.get(host_id, _Host())
        body = host.checkpoint or {}
        start, seconds = _period(body) if body else (None, None)
        exhausted = any(s <= now < s + p for s, p in host.exhausted_periods)
        return HostEgress(
            host_id=host_id,
            now=now,
            last_checkpoint=host.checkpoint_time,
            rules_installed=bool(body.get("rules_installed")) and int(body.get("quota_bytes", 0)) > 0,
            rules_digest=body.get("rules_digest"),
            quota_bytes=int(body.get("quota_bytes", 0)),
            bytes_used=int(body.get("bytes_used", 0)),
            budget_bytes=int(body.get("budget_bytes", 0)),
            period_start=start,
            period_seconds=seconds,
            exhausted=exhausted,
            open_alarms=tuple(sorted(self.alarms(host_id), key=lambda a: (a.time, a.alarm_id))),
        )


def _period(body: dict[str, Any]) -> tuple[float, int]:
    seconds = body.get("period_seconds")
    return parse_time(str(body["period_start"])), int(seconds) if isinstance(seconds, int) and seconds > 0 else 86_400
