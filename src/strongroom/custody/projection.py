"""Entries custody reads but does not write: egress checkpoints and alarms, and location verdicts.

A weight host's egress gateway (``strongroom.egress``) writes ``egress.checkpoint``, ``egress.alarm`` and
``egress.exhausted``; a location verifier (``strongroom.geo``) writes ``geo.verdict``. Custody counts such
an entry only if its signer is an appender the officers enrolled on the ledger (``appender.enrol``,
threshold officers) *before* the entry, not retired before it, allowed that entry type, and, for egress
entries, bound to the host the entry is about. Anything else is listed in ``ignored`` and counts for
nothing: it can neither open a release nor block one. This is the projection the live gate and the
offline auditor share; the decision on it is ``strongroom.custody.conditions``.

Because appenders write concurrently with the service, a release records the log size the service had read
(``ledger_seen``) and replay decides it against the entries before that point: the same inputs the gate
had. Entries between that point and the release are for the auditor to read, never a replay failure.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from strongroom.custody.envelope import check_fields, hex_text, text
from strongroom.custody.errors import MessageError
from strongroom.egress.errors import EgressError
from strongroom.egress.records import ALARM, CHECKPOINT, EXHAUSTED
from strongroom.egress.state import EgressState, HostEgress
from strongroom.geo.errors import LandmarkError
from strongroom.geo.landmarks import CHANGES as LANDMARK_CHANGES
from strongroom.geo.landmarks import Landmark, LandmarkSet, check_id
from strongroom.geo.protocol import epoch_start
from strongroom.ledger.entries import Entry
from strongroom.signing import SigningKeyError, Verifier

EGRESS_TYPES = frozenset({CHECKPOINT, ALARM, EXHAUSTED})
VERDICT = "geo.verdict"
PROJECTED_TYPES = EGRESS_TYPES | {VERDICT}
OUTCOMES = ("IN", "INCONCLUSIVE", "INCONSISTENT")
MAX_LAG = 1000  # entries a release's ledger_seen may trail it by (an honest gate trails by a few)
_COUNTRY = re.compile(r"[A-Z]{2}")


# -- the officers' changes: appenders, alarm clearances, landmarks ------------------------------------


@dataclass(frozen=True)
class AppenderChange:
    appender: str
    change: str  # enrol | retire
    verifier: Verifier | None = None
    types: tuple[str, ...] = ()
    host: str | None = None


@dataclass(frozen=True)
class AlarmClearance:
    host: str
    alarm_id: str
    reason: str


@dataclass(frozen=True)
class LocationClearance:
    """Officers clear a host's INCONSISTENT verdict (and any earlier one): the alarm it raised is over."""

    host: str
    verdict: int  # the ledger index of the INCONSISTENT verdict
    reason: str


def parse_tie_change(
    action: str, change: dict[str, Any]
) -> AppenderChange | AlarmClearance | LocationClearance | dict[str, Any]:
    """Check the form of an appender, egress or landmark change (a landmark change is returned as is)."""
    what = action
    try:
        if action == "appender.enrol":
            check_fields(change, {"change", "appender", "public_key", "types", "host"},
                         {"change", "appender", "public_key", "types"}, what)  # fmt: skip
            types = change["types"]
            if not isinstance(types, list) or not types or types != sorted(set(types)):
                raise MessageError(f"{what}: types must be a sorted list without repeats")
            unknown = sorted(set(types) - PROJECTED_TYPES)
            if unknown:
                raise MessageError(f"{what}: custody enrols appenders only for {', '.join(sorted(PROJECTED_TYPES))}")
            host = change.get("host")
            if bool(set(types) & EGRESS_TYPES) != (host is not None):
                raise MessageError(f"{what}: an egress gateway names its one host; a location verifier names none")
            if host is not None:
                check_id(host, "host id")
            pem = text(change, "public_key", what, 4096).encode()
            verifier = Verifier.from_pem(pem, f"appender {change['appender']}")
            return AppenderChange(check_id(change["appender"], "appender id"), "enrol", verifier, tuple(types), host)
        if action == "appender.retire":
            check_fields(change, {"change", "appender", "reason"}, {"change", "appender"}, what)
            return AppenderChange(check_id(change["appender"], "appender id"), "retire")
        if action == "egress.clear":
            fields = {"change", "host", "alarm_id", "reason"}
            check_fields(change, fields, fields, what)
            host = check_id(change["host"], "host id")
            return AlarmClearance(host, hex_text(change, "alarm_id", what, exact=32), text(change, "reason", what, 256))
        if action == "location.clear":
            fields = {"change", "host", "verdict", "reason"}
            check_fields(change, fields, fields, what)
            index = change["verdict"]
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise MessageError(f"{what}: verdict must be the ledger index of the INCONSISTENT verdict")
            return LocationClearance(check_id(change["host"], "host id"), index, text(change, "reason", what, 256))
        kind = action.split(".", 1)[1]
        if kind not in LANDMARK_CHANGES:
            raise MessageError(f"{what}: unknown landmark change")
        if kind == "enrol":
            check_fields(change, {"change", "landmark", "public_key", "latitude", "longitude", "survey"},
                         {"change", "landmark", "public_key", "latitude", "longitude", "survey"}, what)  # fmt: skip
            Landmark.from_body(change)
        else:
            check_fields(change, {"change", "landmark", "reason"}, {"change", "landmark"}, what)
            check_id(change["landmark"])
        return change
    except (LandmarkError, SigningKeyError) as exc:
        raise MessageError(f"{what}: {exc}") from None


@dataclass
class AppenderRecord:
    """An enrolled appender: its key, what it may write, for which host, and from when to when."""

    appender: str
    verifier: Verifier
    types: tuple[str, ...]
    host: str | None
    enrolled: int
    retired: int | None = None

    def refusal(self, index: int, entry: Entry) -> str | None:
        if index <= self.enrolled:
            return f"appender {self.appender} was enrolled only at entry {self.enrolled}"
        if self.retired is not None and index > self.retired:
            return f"appender {self.appender} was retired at entry {self.retired}"
        if entry.type not in self.types:
            return f"appender {self.appender} may not write {entry.type}"
        if entry.type in EGRESS_TYPES and entry.body.get("host") != self.host:
            return f"appender {self.appender} is the gateway of host {self.host}, not {entry.body.get('host')}"
        return None


# -- location verdicts, folded without the geometry (custody does not need shapely) -------------------


@dataclass(frozen=True)
class VerdictRecord:
    host_id: str
    outcome: str
    country: str
    epoch: int
    landmark_set: str
    index: int

    @property
    def measured_at(self) -> datetime:
        return epoch_start(self.epoch)

    def label(self) -> str:
        return f"IN({self.country})" if self.outcome == "IN" else self.outcome


def parse_verdict(index: int, body: dict[str, Any]) -> VerdictRecord:
    host, outcome, country, epoch = body.get("host"), body.get("verdict"), body.get("country"), body.get("epoch")
    if not isinstance(host, str) or outcome not in OUTCOMES:
        raise MessageError("geo.verdict: host must be text and verdict IN, INCONCLUSIVE or INCONSISTENT")
    if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
        raise MessageError("geo.verdict: country must be an ISO 3166-1 alpha-2 code")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**40:
        raise MessageError("geo.verdict: epoch must be a non-negative integer")
    landmark_set = body.get("landmark_set")
    if not isinstance(landmark_set, str):
        raise MessageError("geo.verdict: landmark_set must be text")
    return VerdictRecord(host, str(outcome), country, epoch, landmark_set, index)


# -- the projection -----------------------------------------------------------------------------------


class Scannable(Protocol):
    @property
    def size(self) -> int: ...

    def scan(self, types: Any = (), start: int = 0) -> Iterator[tuple[int, Entry]]: ...


@dataclass(frozen=True)
class Ignored:
    """An appender's entry custody does not count (or, as ``state.Problem``, one replay refused): where,
    what, and why."""

    index: int
    type: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "type": self.type, "reason": self.reason}


@dataclass
class _Fold:
    """The accepted entries with index below ``upto``, folded: egress status and each host's latest verdict."""

    egress: EgressState = field(default_factory=EgressState)
    verdicts: dict[str, VerdictRecord] = field(default_factory=dict)
    inconsistent: dict[str, int] = field(default_factory=dict)  # host -> index of its latest INCONSISTENT verdict
    upto: int = 0

    def apply(self, index: int, entry: Entry) -> None:
        if entry.type == VERDICT:
            verdict = parse_verdict(index, entry.body)
            if verdict.outcome == "INCONSISTENT":  # an alarm: a later IN does not end it, officers do
                self.inconsistent[verdict.host_id] = index
            current = self.verdicts.get(verdict.host_id)
            if current is None or verdict.epoch >= current.epoch:
                self.verdicts[verdict.host_id] = verdict
        else:
            self.egress.apply(entry, index)

    def copy(self) -> _Fold:
        return _Fold(copy.deepcopy(self.egress), dict(self.verdicts), dict(self.inconsistent), self.upto)


@dataclass
class Projection:
    """Appenders, landmarks, alarm clearances (from officers' changes) and the appenders' accepted entries.

    Memory stays bounded: a release's ``ledger_seen`` is at most ``MAX_LAG`` entries behind the release
    (replay refuses one further behind), so every entry more than ``MAX_LAG`` before the log's end is
    folded for good into ``_base`` and dropped; only the window after it is kept, to answer a release
    that read the log a moment before another one (``_work`` is then rebuilt from ``_base``).
    """

    appenders: dict[str, AppenderRecord] = field(default_factory=dict)
    landmarks: LandmarkSet = field(default_factory=LandmarkSet)
    cleared: dict[str, int] = field(default_factory=dict)  # alarm id -> index of its clearance
    location_cleared: dict[str, int] = field(default_factory=dict)  # host -> latest INCONSISTENT verdict cleared
    window: list[tuple[int, Entry]] = field(default_factory=list)  # accepted entries at or after _base.upto
    ignored: list[Ignored] = field(default_factory=list)
    frontier: int = 0  # every projected entry before this index has been added
    _base: _Fold = field(default_factory=_Fold)
    _work: _Fold = field(default_factory=_Fold)
    _cursor: int = 0  # how many of ``window`` _work has folded
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def add(self, index: int, entry: Entry) -> bool:
        """Count ``entry`` if its writer was an enrolled appender allowed to write it; else list it ignored."""
        with self._lock:
            self.frontier = max(self.frontier, index + 1)
            if self.window and self.window[-1][0] >= index:
                return True  # already added (a catch-up overlapping the start-up replay)
            reason = self._refusal(index, entry)
            if reason is not None:
                self.ignored.append(Ignored(index, entry.type, reason))
                return False
            self.window.append((index, entry))
            return True

    def _refusal(self, index: int, entry: Entry) -> str | None:
        writers = [a for a in self.appenders.values() if a.verifier.key_id == entry.signer]
        if not writers:
            return f"signed by key {entry.signer[:16]}, which no officers enrolled as an appender"
        reasons = [r for r in (a.refusal(index, entry) for a in writers) if r is not None]
        if len(reasons) == len(writers):
            return reasons[0]
        try:
            if entry.type == VERDICT:
                parse_verdict(index, entry.body)
            else:
                EgressState().apply(entry)  # the fold's own parsing: a malformed body is ignored here
        except (MessageError, EgressError, KeyError, TypeError, ValueError) as exc:
            return f"malformed {entry.type}: {exc}"
        return None

    def catch_up(self, log: Scannable) -> int:
        """Add the projected entries appended since the last call; returns the log size read (``ledger_seen``)."""
        with self._lock:
            end = log.size
            for index, entry in log.scan(sorted(PROJECTED_TYPES), self.frontier):
                if index >= end:
                    break
                self.add(index, entry)
            self.frontier = max(self.frontier, end)
            return end

    def _fold_to(self, seen: int) -> _Fold:
        floor = max(self._base.upto, self.frontier - MAX_LAG)  # no later query reads the log before this
        moved = 0
        while moved < len(self.window) and self.window[moved][0] < floor:
            self._base.apply(*self.window[moved])
            moved += 1
        if moved:
            del self.window[:moved]
            self._cursor -= moved
        self._base.upto = floor
        if seen < self._base.upto:
            raise MessageError(f"ledger_seen {seen} is more than {MAX_LAG} entries behind the log")
        if seen < self._work.upto or self._cursor < 0:  # an earlier point than folded: start from the base
            self._work, self._cursor = self._base.copy(), 0
        while self._cursor < len(self.window) and self.window[self._cursor][0] < seen:
            self._work.apply(*self.window[self._cursor])
            self._cursor += 1
        self._work.upto = seen
        return self._work

    def arrived(self, host_id: str, start: int, end: int) -> bool:
        """Whether an accepted entry about ``host_id`` lies in [start, end); True when the window no longer
        reaches back to ``start`` (the caller then decides in full)."""
        with self._lock:
            if start < self._base.upto:
                return True
            return any(start <= i < end and e.body.get("host") == host_id for i, e in self.window)

    def open_inconsistent(self, host_id: str, seen: int) -> int | None:
        """The index of the host's latest INCONSISTENT verdict before ``seen``, unless officers cleared it."""
        with self._lock:
            index = self._fold_to(seen).inconsistent.get(host_id)
        return index if index is not None and index > self.location_cleared.get(host_id, -1) else None

    def egress(self, host_id: str, now: datetime, seen: int) -> HostEgress:
        """The host's egress as the accepted entries before ``seen`` state it, at ``now``."""
        with self._lock:
            return self._fold_to(seen).egress.status(host_id, now.timestamp())

    def verdict(self, host_id: str, seen: int) -> VerdictRecord | None:
        """The host's latest verdict (highest epoch) among the accepted entries before ``seen``."""
        with self._lock:
            return self._fold_to(seen).verdicts.get(host_id)
