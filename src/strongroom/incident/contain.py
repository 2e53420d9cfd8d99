"""Containment: the playbook's contain steps as actions on custody, each recorded on the ledger, each idempotent.

=================  ===========================================================  ======================
step               what it does (one officer each: it only takes access away)    done when the ledger shows
=================  ===========================================================  ======================
``retire-hosts``   ``host.retire`` for every host in scope                       the host retired
``suspend-people`` ``person.signal`` (security_incident, id ``sig-inc-ID``)       that signal open, or offboarded
``revoke-keys``    ``person.offboard`` (the person's key is dead) and             offboarded / retired
                   ``host.retire`` (the host's identity key is dead)
``egress-alarm``   an ``egress.alarm`` of kind ``incident`` per host, written     an alarm with that id
                   by the responder's appender key; custody counts it (and
                   refuses the host under egress-conditioned policies until
                   officers clear it) if officers enrolled that key for the
                   host beforehand (``appender.enrol``, ``egress.alarm`` only)
=================  ===========================================================  ======================

Each step ends with an ``incident.step`` acknowledgement signed by the holder of the step's role. Before
acting, ``run_step`` rebuilds custody's state from the ledger (the same replay the gate and the auditor use)
and plans only what is not yet done there; a step already acknowledged does nothing. So a responder whose
laptop died half-way simply runs the step again: what reached the ledger is not done twice (the ids that
make this so are derived from the incident id, not drawn at random).

Who may do each action is custody's decision (``strongroom.custody.authority``): this module only plans
and sends.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from strongroom.custody import admin
from strongroom.custody.state import CustodyState, Incident
from strongroom.incident.errors import PlaybookError
from strongroom.people import SignalKind

CONTAIN_STEPS = ("retire-hosts", "suspend-people", "revoke-keys", "egress-alarm")
ALIASES = {"suspend-credentials": "suspend-people"}  # the distillation playbook's name for the same action
ALARM_KIND = "incident"


@dataclass(frozen=True)
class Targets:
    """Who and what the contain steps act on: the declaration's scope and the responder's additions."""

    hosts: tuple[str, ...] = ()
    people: tuple[str, ...] = ()

    @classmethod
    def of(cls, incident: Incident, hosts: Iterable[str] = (), people: Iterable[str] = ()) -> Targets:
        kind, _, subject = incident.scope.partition(":")
        scoped_hosts = [subject] if kind == "host" else []
        scoped_people = [subject] if kind == "person" else []
        return cls(
            tuple(dict.fromkeys([*scoped_hosts, *hosts])),
            tuple(dict.fromkeys([*scoped_people, *people])),
        )


@dataclass(frozen=True)
class Action:
    step: str
    kind: Literal["admin", "alarm"]
    key: str  # what makes it idempotent: the change it makes, named
    proposal: admin.Proposal | None = None
    host: str | None = None
    alarm_id: str | None = None

    @property
    def description(self) -> str:
        return self.key


def signal_id(incident: str) -> str:
    return f"sig-inc-{incident}"


def alarm_id(incident: str, host: str) -> str:
    return hashlib.sha256(f"strongroom/incident-alarm/v1\n{incident}\n{host}".encode()).hexdigest()[:32]


def step_done(state: CustodyState, incident: str, step: str) -> bool:
    found = state.incidents.get(incident)
    return found is not None and any(s["step"] == step for s in found.steps)


def plan(step: str, incident: str, targets: Targets, state: CustodyState, alarms: Iterable[str] = ()) -> list[Action]:
    """What ``step`` still has to do, given the state the ledger shows (nothing that is already done)."""
    kind = ALIASES.get(step, step)
    if kind not in CONTAIN_STEPS:
        raise PlaybookError(f"{step!r} is not a contain step (one of {', '.join(CONTAIN_STEPS)})")
    if incident not in state.incidents:
        raise PlaybookError(f"no incident {incident} on the ledger")
    reason = f"incident {incident}: {step}"
    actions: list[Action] = []

    def retire_hosts() -> None:
        for host in targets.hosts:
            found = state.hosts.hosts.get(host)
            if found is not None and not found.retired:
                actions.append(Action(step, "admin", f"host.retire {host}", admin.retire_host(host, reason)))

    def live(person: str) -> bool:
        found = state.people.people.get(person)
        return found is not None and not found.offboarded

    if kind == "retire-hosts":
        retire_hosts()
    elif kind == "suspend-people":
        for person in targets.people:
            if live(person) and signal_id(incident) not in state.people.people[person].signals:
                proposal = admin.raise_signal(person, SignalKind.SECURITY_INCIDENT, detail=reason)
                change = dict(proposal.change, signal_id=signal_id(incident))
                actions.append(
                    Action(step, "admin", f"person.signal {person}", dataclasses.replace(proposal, change=change))
                )
    elif kind == "revoke-keys":
        for person in targets.people:
            if live(person):
                actions.append(Action(step, "admin", f"person.offboard {person}", admin.offboard(person, reason)))
        retire_hosts()
    else:
        logged = set(alarms)
        for host in targets.hosts:
            wanted = alarm_id(incident, host)
            if wanted not in logged:
                actions.append(Action(step, "alarm", f"egress.alarm {host}", host=host, alarm_id=wanted))
    return actions


class ContainPort(Protocol):
    """How the runner reaches custody and the ledger (HTTP in the CLI; the service itself in tests)."""

    def state(self) -> tuple[CustodyState, set[str]]:
        """Custody's state replayed from the ledger, and the egress alarm ids logged."""
        ...

    def admin(self, proposal: admin.Proposal) -> dict[str, Any]: ...

    def alarm(self, host: str, models: list[str], alarm_id: str, detail: dict[str, Any]) -> dict[str, Any]: ...

    def acknowledge(self, incident: str, step: str) -> dict[str, Any]: ...


@dataclass
class StepResult:
    step: str
    done: list[str] = field(default_factory=list)
    acknowledged: bool = False
    already: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "done": self.done, "acknowledged": self.acknowledged, "already": self.already}


def run_step(port: ContainPort, incident: str, step: str, targets: Targets) -> StepResult:
    """Do what ``step`` still needs (per the ledger), then acknowledge it; safe to repeat after a crash."""
    state, alarms = port.state()
    result = StepResult(step)
    if step_done(state, incident, step):
        result.already = True
        return result
    models = sorted(state.models)
    for action in plan(step, incident, targets, state, alarms):
        if action.kind == "admin" and action.proposal is not None:
            port.admin(action.proposal)
        elif action.host is not None and action.alarm_id is not None:
            port.alarm(action.host, models, action.alarm_id, {"incident": incident, "step": step})
        result.done.append(action.key)
    port.acknowledge(incident, step)
    result.acknowledged = True
    return result
