"""Per-host location verdicts folded from the ledger: what a release policy asks before it lets a key go.

``GeoState`` is pure: it folds verified ``geo.verdict`` entries (``strongroom.ledger.entries.Entry``, in log
order) and answers ``verdict(host_id, now, max_age)`` with the host's latest verdict, or None when there is
none or it is older than ``max_age``. "Latest" means the highest epoch (then the later entry); freshness is
measured from the start of the verdict's measurement epoch, not from when it was logged, so a verdict made
long ago and appended late is not fresh. A policy that requires "IN one of these countries" asks for
``location.outcome is Outcome.IN and location.country in allowed``; INCONCLUSIVE and INCONSISTENT never
satisfy it, and an INCONSISTENT latest verdict is an alarm.

Only entries signed by a trusted verifier key count (``trusted``: key ids of the appenders allowed to write
``geo.verdict``). Entries of other types are ignored; a malformed ``geo.verdict`` body is recorded in
``problems`` by index and never applied.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from strongroom.geo.errors import GeoError
from strongroom.geo.protocol import epoch_start
from strongroom.geo.region import Outcome
from strongroom.geo.verify import ENTRY_TYPE, check_statement
from strongroom.ledger.entries import Entry


@dataclass(frozen=True)
class HostLocation:
    """A host's verdict as the ledger states it: only the country is revealed."""

    host_id: str
    outcome: Outcome
    country: str | None  # None unless IN
    epoch: int
    measured_at: datetime  # start of the epoch the measurement was made in
    logged_at: str  # the entry's time
    commitment: str
    landmark_set: str
    signer: str
    index: int | None = None

    @property
    def verdict(self) -> Outcome:
        return self.outcome

    def label(self) -> str:
        return f"IN({self.country})" if self.outcome is Outcome.IN else self.outcome.value

    def satisfies(self, allowed: Collection[str]) -> bool:
        """Whether this verdict places the host in one of ``allowed`` (ISO alpha-2 codes)."""
        return self.outcome is Outcome.IN and self.country in set(allowed)


@dataclass
class GeoState:
    """Latest verdict per host, from trusted verifiers' ``geo.verdict`` entries."""

    trusted: frozenset[str] | None = None  # verifier key ids; None: every signer (the log's allow-list decides)
    latest: dict[str, HostLocation] = field(default_factory=dict)
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    alarms: list[HostLocation] = field(default_factory=list)

    def apply(self, entry: Entry, index: int | None = None) -> HostLocation | None:
        """Fold one verified entry; returns the location it recorded, or None if it was not applied."""
        if entry.type != ENTRY_TYPE:
            return None
        if self.trusted is not None and entry.signer not in self.trusted:
            self.problems.append((index, f"geo.verdict signed by untrusted key {entry.signer[:16]}"))
            return None
        try:
            host, outcome, country, epoch = check_statement(entry.body)
        except GeoError as exc:
            self.problems.append((index, f"malformed geo.verdict: {exc}"))
            return None
        location = HostLocation(
            host,
            outcome,
            country if outcome is Outcome.IN else None,
            epoch,
            epoch_start(epoch),
            entry.time,
            str(entry.body["commitment"]),
            str(entry.body["landmark_set"]),
            entry.signer,
            index,
        )
        if outcome is Outcome.INCONSISTENT:
            self.alarms.append(location)
        current = self.latest.get(host)
        if current is None or epoch >= current.epoch:
            self.latest[host] = location
        return location

    def fold(self, entries: Iterable[Entry | tuple[int, Entry]]) -> GeoState:
        """Apply entries in order (bare, or as (index, entry) pairs as ``Ledger.query`` yields them)."""
        for item in entries:
            if isinstance(item, tuple):
                self.apply(item[1], item[0])
            else:
                self.apply(item)
        return self

    def verdict(self, host_id: str, now: datetime, max_age: timedelta) -> HostLocation | None:
        """The host's latest verdict if it was measured at most ``max_age`` before ``now``, else None."""
        location = self.latest.get(host_id)
        if location is None:
            return None
        age = now - location.measured_at
        if age > max_age or age < -timedelta(minutes=5):  # from the future (a clock far off): not fresh either
            return None
        return location
