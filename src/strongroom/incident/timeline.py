"""The forensic timeline: every release, approval, load, attestation, egress event, people change and
administrative action in a window, from the ledger only, with anomalies flagged and suspects ranked.

Input is the log's entries in order, as ``strongroom.ledger.client.verify_log(full=True)`` returns them
after checking that they hash to a checkpoint signed by the log and cosigned by witnesses (so nobody can
hand the investigator a history the witnesses did not see); and, optionally, the indices custody replay
refused (``strongroom.custody.audit``). Nothing here reads a clock, a file or the network.

Anomalies (each names the entry it is about):

* ``release-outside-hours``: a release logged outside working hours (default 07:00-19:00 UTC, Monday to
  Friday; ``Hours``).
* ``approval-with-open-signal``: a release approved (or requested) by someone with a continuous-evaluation
  signal open at the time (raised by a ``person.changed`` signal, closed by its ``clear``).
* ``load-without-release`` / ``load-on-other-host``: a ``model.loaded`` with no earlier release of that
  request, or on another host than the release named.
* ``egress-near-budget``: an egress checkpoint at or above ``near_budget`` of its budget, or an
  ``egress.exhausted``; ``egress-alarm``: an ``egress.alarm``.
* ``refused-by-replay``: an entry custody replay refused.

Suspects are releases ranked by evidence: their own anomalies, plus egress anomalies on the released host
within ``egress_horizon`` after the release (a copy leaving has to leave through egress). The first suspect
is the release the timeline names; the ranking and its reasons are in the report, so a reader can disagree.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.incident.errors import TimelineError
from strongroom.ledger.entries import Entry

ADMIN_TYPES = frozenset(
    {
        "authority.changed",
        "host.changed",
        "model.registered",
        "policy.changed",
        "incident.changed",
        "incident.step",
        "model.rekeyed",
        "playbook.changed",
        "geo.landmark",
    }
)
WEIGHTS = {
    "release-outside-hours": 2.0,
    "approval-with-open-signal": 3.0,
    "load-on-other-host": 3.0,
    "egress-alarm": 3.0,
    "egress-near-budget": 2.0,
    "refused-by-replay": 4.0,
}


@dataclass(frozen=True)
class Hours:
    """Working hours in UTC: releases outside them are flagged."""

    start: int = 7
    end: int = 19
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)

    def outside(self, when: datetime) -> bool:
        return when.weekday() not in self.weekdays or not self.start <= when.hour < self.end


@dataclass
class Event:
    index: int
    time: datetime
    kind: str
    summary: str
    model: str | None = None
    host: str | None = None
    people: tuple[str, ...] = ()
    release: str | None = None
    anomalies: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": _text(self.time),
            "kind": self.kind,
            "summary": self.summary,
            "model": self.model,
            "host": self.host,
            "people": list(self.people),
            "release": self.release,
            "anomalies": list(self.anomalies),
        }


@dataclass(frozen=True)
class Suspect:
    release: str
    index: int
    score: float
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "index": self.index, "score": self.score, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    host: str | None = None
    person: str | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise TimelineError("the window ends before it starts")

    def covers(self, event: Event) -> bool:
        return (
            (self.since is None or event.time >= self.since)
            and (self.until is None or event.time <= self.until)
            and (self.model is None or event.model == self.model)
            and (self.host is None or event.host == self.host)
            and (self.person is None or self.person in event.people)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "since": _text(self.since) if self.since else None,
            "until": _text(self.until) if self.until else None,
            "model": self.model,
            "host": self.host,
            "person": self.person,
        }


@dataclass(frozen=True)
class Timeline:
    window: Window
    entries: int
    events: tuple[Event, ...]
    suspects: tuple[Suspect, ...]
    checked: dict[str, Any]

    @property
    def culprit(self) -> Suspect | None:
        return self.suspects[0] if self.suspects else None

    def anomalies(self) -> list[Event]:
        return [e for e in self.events if e.anomalies]

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for event in self.events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        return {
            "window": self.window.to_json(),
            "ledger_entries": self.entries,
            "checked": self.checked,
            "counts": counts,
            "culprit": self.culprit.to_json() if self.culprit else None,
            "suspects": [s.to_json() for s in self.suspects],
            "events": [e.to_json() for e in self.events],
        }


def _text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(text: str) -> datetime:
    """``2026-11-30T06:00:00Z`` (the ledger's and the envelopes' form); fromisoformat is ~10x strptime."""
    if len(text) != 20 or text[10] != "T" or text[19] != "Z":
        raise TimelineError(f"time {text[:40]!r} is not YYYY-MM-DDTHH:MM:SSZ")
    return datetime.fromisoformat(text)


def _payload(value: Any) -> dict[str, Any]:
    """The payload of a signed message as logged (``{payload, signer, signature}``), or {}."""
    payload = value.get("payload") if isinstance(value, dict) else None
    return payload if isinstance(payload, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class _Release:
    request_id: str
    index: int
    time: datetime
    model: str | None
    host: str | None
    event: Event


class _Builder:
    def __init__(self, hours: Hours, near_budget: float, horizon: timedelta, refused: frozenset[int]) -> None:
        self.hours, self.near_budget, self.horizon, self.refused = hours, near_budget, horizon, refused
        self.signals: dict[str, set[str]] = {}  # person -> open signal ids
        self.releases: dict[str, _Release] = {}
        self.events: list[Event] = []
        self.egress: list[Event] = []  # egress anomalies, for linking to releases

    def add(self, index: int, entry: Entry) -> None:
        body, when = entry.body, _time(entry.time)
        kind = entry.type
        event: Event | None
        if kind == "key.released":
            event = self._release(index, when, body)
        elif kind == "model.loaded":
            event = self._load(index, when, body)
        elif kind == "person.changed":
            event = self._person(index, when, body)
        elif kind.startswith("egress."):
            event = self._egress(index, when, kind, body)
        elif kind == "geo.verdict":
            event = Event(
                index, when, "attestation", f"location verdict {body.get('verdict')} ({body.get('country')})",
                host=_str(body.get("host")),
            )  # fmt: skip
        elif kind == "model.evaluated":
            event = Event(
                index, when, "evaluation", f"evaluated with {body.get('suite')}", model=_str(body.get("model_id"))
            )
        elif kind in ADMIN_TYPES:
            event = self._admin(index, when, kind, body)
        else:
            event = Event(index, when, "other", kind)
        if event is None:
            return
        if index in self.refused:
            event.anomalies.append("refused-by-replay")
        self.events.append(event)

    def _release(self, index: int, when: datetime, body: dict[str, Any]) -> Event:
        request = _payload(body.get("request"))
        requester = _str(request.get("requester"))
        approvers = tuple(str(a) for a in body.get("approvers", []) if isinstance(a, str))
        host = body.get("host")
        host_id = _str(host.get("host_id")) if isinstance(host, dict) else None
        model, request_id = _str(body.get("model_id")), str(body.get("request_id"))
        people = tuple(dict.fromkeys(p for p in (requester, *approvers) if p))
        event = Event(
            index, when, "release", f"key released to {host_id} for {requester or '?'}, approved by "
            f"{', '.join(approvers) or 'nobody'}", model, host_id, people, request_id,
        )  # fmt: skip
        if self.hours.outside(when):
            event.anomalies.append("release-outside-hours")
        flagged = sorted(p for p in people if self.signals.get(p))
        if flagged:
            event.anomalies.append("approval-with-open-signal")
            event.summary += f" (open signal: {', '.join(flagged)})"
        for approval in body.get("approvals", []):
            payload = _payload(approval)
            approver = _str(payload.get("approver"))
            issued = _str(payload.get("issued_at"))
            if approver and issued:
                self.events.append(
                    Event(
                        index,
                        _time(issued),
                        "approval",
                        f"{approver} approved request {request_id[:16]}",
                        model,
                        host_id,
                        (approver,),
                        request_id,
                    )
                )
        self.releases[request_id] = _Release(request_id, index, when, model, host_id, event)
        return event

    def _load(self, index: int, when: datetime, body: dict[str, Any]) -> Event:
        request_id, host = str(body.get("request_id")), _str(body.get("host"))
        event = Event(index, when, "load", f"loaded on {host}", _str(body.get("model_id")), host, (), request_id)
        release = self.releases.get(request_id)
        if release is None:
            event.anomalies.append("load-without-release")
        elif release.host != host:
            event.anomalies.append("load-on-other-host")
            release.event.anomalies.append("load-on-other-host")
        return event

    def _person(self, index: int, when: datetime, body: dict[str, Any]) -> Event:
        person, change = str(body.get("person")), str(body.get("change"))
        detail = _payload(body.get("authorisation")).get("change", {})
        signal_id = _str(detail.get("signal_id")) if isinstance(detail, dict) else None
        if change == "signal":
            self.signals.setdefault(person, set()).add(signal_id or f"#{index}")
        elif change == "clear":
            open_ = self.signals.get(person, set())
            open_.discard(signal_id or "")
            if signal_id is None and open_:
                open_.pop()
        elif change == "offboard":
            self.signals.pop(person, None)
        return Event(index, when, "people", f"{person}: {change}", people=(person,))

    def _egress(self, index: int, when: datetime, kind: str, body: dict[str, Any]) -> Event | None:
        host, model = _str(body.get("host")), _str(body.get("model_id"))
        if kind == "egress.alarm":
            event = Event(index, when, "egress", f"egress alarm {body.get('kind')} on {host}", model, host)
            event.anomalies.append("egress-alarm")
        elif kind == "egress.exhausted":
            event = Event(index, when, "egress", f"egress budget spent on {host} ({body.get('meter')})", model, host)
            event.anomalies.append("egress-near-budget")
        else:
            used, budget = body.get("bytes_used"), body.get("budget_bytes") or body.get("quota_bytes")
            if not isinstance(used, int) or not isinstance(budget, int) or budget <= 0:
                return None
            if used < self.near_budget * budget:
                return None  # routine checkpoints are not timeline events; only the ones near the budget
            event = Event(
                index, when, "egress", f"egress at {100 * used / budget:.0f}% of budget on {host}", model, host
            )
            event.anomalies.append("egress-near-budget")
        self.egress.append(event)
        return event

    def _admin(self, index: int, when: datetime, kind: str, body: dict[str, Any]) -> Event:
        subject = body.get("host") or body.get("model_id") or body.get("incident") or body.get("name") or ""
        change = body.get("change") or body.get("step") or ""
        host = _str(body.get("host"))
        return Event(index, when, "admin", f"{kind} {subject} {change}".strip(), _str(body.get("model_id")), host)

    def suspects(self) -> list[Suspect]:
        found = []
        for release in self.releases.values():
            reasons = list(release.event.anomalies)
            for egress in self.egress:
                near = egress.host == release.host and release.time <= egress.time <= release.time + self.horizon
                if near and (release.model is None or egress.model in (None, release.model)):
                    reasons.append(f"{egress.anomalies[0]} on {egress.host} at entry {egress.index}")
            if not reasons:
                continue
            score = sum(WEIGHTS.get(r.split(" ", 1)[0], 1.0) for r in reasons)
            found.append(Suspect(release.request_id, release.index, score, tuple(reasons)))
        found.sort(key=lambda s: (-s.score, s.index))
        return found


def build(
    entries: Iterable[tuple[int, Entry]],
    window: Window | None = None,
    *,
    hours: Hours | None = None,
    near_budget: float = 0.9,
    egress_horizon: timedelta = timedelta(hours=24),
    refused: Iterable[int] = (),
    checked: dict[str, Any] | None = None,
) -> Timeline:
    """Fold the log (all of it, in order: open signals and releases before the window matter) into a
    timeline of the events in ``window``."""
    window = window or Window()
    builder = _Builder(hours or Hours(), near_budget, egress_horizon, frozenset(refused))
    count, last = 0, -1
    for index, entry in entries:
        if index <= last:
            raise TimelineError(f"entry {index} comes after entry {last}: the log must be read in order")
        last, count = index, count + 1
        builder.add(index, entry)
    events = sorted((e for e in builder.events if window.covers(e)), key=lambda e: (e.time, e.index))
    in_window = {e.release for e in events if e.kind == "release"}
    suspects = tuple(s for s in builder.suspects() if s.release in in_window)
    return Timeline(window, count, tuple(events), suspects, checked or {"witnessed": False})


# -- rendering -----------------------------------------------------------------------------------


def render_text(timeline: Timeline, anomalies_only: bool = False) -> str:
    lines = []
    for event in timeline.events:
        if anomalies_only and not event.anomalies:
            continue
        flag = f"  !! {', '.join(event.anomalies)}" if event.anomalies else ""
        lines.append(f"{_text(event.time)}  #{event.index:<7} {event.kind:<11} {event.summary}{flag}")
    if timeline.culprit:
        c = timeline.culprit
        lines.append(f"\nnamed release: {c.release} (entry {c.index}, score {c.score:g}): {'; '.join(c.reasons)}")
    return "\n".join(lines)


def render_html(timeline: Timeline) -> str:
    """A self-contained, readable page (no scripts, no external resources)."""
    e = html.escape
    checked = timeline.checked
    rows = []
    for event in timeline.events:
        cls = ' class="anomaly"' if event.anomalies else ""
        rows.append(
            f"<tr{cls}><td>{e(_text(event.time))}</td><td>{event.index}</td><td>{e(event.kind)}</td>"
            f"<td>{e(event.summary)}</td><td>{e(event.model or '')[:23]}</td><td>{e(event.host or '')}</td>"
            f"<td>{e(', '.join(event.people))}</td><td>{e(', '.join(event.anomalies))}</td></tr>"
        )
    suspects = "".join(
        f"<li><code>{e(s.release)}</code> (entry {s.index}, score {s.score:g}): {e('; '.join(s.reasons))}</li>"
        for s in timeline.suspects[:10]
    )
    named = timeline.culprit
    culprit = (
        f"<p class=culprit>Named release: <code>{e(named.release)}</code> at entry {named.index}</p>"
        if named
        else "<p>No release is named.</p>"
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Strongroom incident timeline</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}}
tr.anomaly{{background:#fde8e8}}.culprit{{font-size:1.2em;font-weight:bold;color:#a00}}code{{font-size:12px}}</style>
</head><body><h1>Incident timeline</h1>
<p>{timeline.entries} ledger entries read; checkpoint size {e(str(checked.get("size", "?")))}, root
<code>{e(str(checked.get("root", "?")))}</code>, witnessed by {e(", ".join(checked.get("witnesses", [])) or "nobody")}.
Window: {e(str(timeline.window.to_json()))}.</p>
{culprit}<h2>Suspects</h2><ol>{suspects}</ol>
<h2>Events ({len(timeline.events)})</h2><table><tr><th>time (UTC)</th><th>entry</th><th>kind</th><th>what</th>
<th>model</th><th>host</th><th>people</th><th>anomalies</th></tr>
{"".join(rows)}</table></body></html>
"""
