"""Playbooks as data: the CACAO 2.0 subset Strongroom executes, and its steps in order.

A playbook is an OASIS CACAO 2.0 ``playbook`` object (CACAO Security Playbooks v2.0, section 3): a
``workflow`` of steps (section 4) from ``workflow_start``, each ``action`` step carrying, in
``step_extensions`` under Strongroom's extension definition (section 10, extension definitions), the
fields the gate and the report use: ``step`` (the name acknowledged on the ledger), ``role`` (who holds it),
``deadline`` (ISO 8601 duration from the declaration), ``evidence`` (the entry type that shows it done) and
``idempotent``. ``parallel`` steps list ``next_steps``; ``end`` steps close a branch.

Two are shipped (``leak`` and ``distillation``). An organisation adopts its own edited copy as an
``incident.playbook`` change on the ledger, co-signed by threshold officers (custody decides; this module
only parses and orders).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.incident.errors import PlaybookError

SPEC_VERSION = "cacao-2.0"
SHIPPED = ("leak", "distillation")
ROLES = ("security-officer", "custodian", "operator", "executive", "external-liaison")
STEP_TYPES = ("start", "end", "action", "parallel")
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?")
_STEP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


@dataclass(frozen=True)
class Step:
    """One action step, as the incident report and the gate see it."""

    step_id: str
    name: str  # the step's Strongroom name, acknowledged on the ledger
    title: str
    role: str
    deadline_seconds: int
    evidence: str
    idempotent: bool
    commands: tuple[str, ...]
    order: int

    def to_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "step": self.name,
            "title": self.title,
            "role": self.role,
            "deadline_seconds": self.deadline_seconds,
            "evidence": self.evidence,
            "idempotent": self.idempotent,
            "commands": list(self.commands),
        }


def duration_seconds(text: str) -> int:
    """An ISO 8601 duration of days, hours and minutes (``PT15M``, ``P1DT4H``) in seconds."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise PlaybookError(f"deadline {text!r}: an ISO 8601 duration like PT15M or P1DT4H")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60


@dataclass(frozen=True)
class Playbook:
    """A parsed playbook: its document, its digest and its action steps in execution order."""

    document: dict[str, Any]
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return str(self.document.get("name", ""))

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.document)).hexdigest()

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise PlaybookError(f"playbook {self.name!r} has no step {name!r}")

    def roles(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for step in self.steps:
            out.setdefault(step.role, []).append(step.name)
        return out

    @classmethod
    def parse(cls, document: Any) -> Playbook:
        if not isinstance(document, dict):
            raise PlaybookError("a playbook is a JSON object")
        if document.get("type") != "playbook" or document.get("spec_version") != SPEC_VERSION:
            raise PlaybookError(f"not a CACAO playbook (type playbook, spec_version {SPEC_VERSION})")
        workflow, start = document.get("workflow"), document.get("workflow_start")
        if not isinstance(workflow, dict) or not isinstance(start, str) or start not in workflow:
            raise PlaybookError("the playbook has no workflow, or workflow_start names no step in it")
        order: list[str] = []
        queue, seen = [start], set()
        while queue:  # breadth first: the order in which steps become due
            step_id = queue.pop(0)
            if step_id in seen:
                continue
            seen.add(step_id)
            step = workflow.get(step_id)
            if not isinstance(step, dict) or step.get("type") not in STEP_TYPES:
                raise PlaybookError(f"step {step_id}: unknown or unsupported step type")
            order.append(step_id)
            following = list(step.get("next_steps", [])) if step["type"] == "parallel" else []
            if isinstance(step.get("on_completion"), str):
                following.append(step["on_completion"])
            for nxt in following:
                if nxt not in workflow:
                    raise PlaybookError(f"step {step_id}: leads to {nxt!r}, which is not in the workflow")
                queue.append(nxt)
        unreachable = sorted(set(workflow) - seen)
        if unreachable:
            raise PlaybookError(f"step {unreachable[0]} cannot be reached from workflow_start")
        steps: list[Step] = []
        names: set[str] = set()
        for step_id in order:
            raw = workflow[step_id]
            if raw["type"] != "action":
                continue
            ext = _extension(raw, step_id)
            name, role = ext.get("step"), ext.get("role")
            if not isinstance(name, str) or not _STEP_NAME.fullmatch(name) or name in names:
                raise PlaybookError(f"step {step_id}: a unique lower-case step name is needed")
            if role not in ROLES:
                raise PlaybookError(f"step {name}: role must be one of {', '.join(ROLES)}")
            names.add(name)
            commands = tuple(
                str(c.get("command", "")) for c in raw.get("commands", []) if isinstance(c, dict) and c.get("command")
            )
            steps.append(
                Step(
                    step_id,
                    name,
                    str(raw.get("name", name)),
                    role,
                    duration_seconds(ext.get("deadline", "PT0M")),
                    str(ext.get("evidence", "incident.step")),
                    bool(ext.get("idempotent", False)),
                    commands,
                    len(steps) + 1,
                )
            )
        if not steps:
            raise PlaybookError("the playbook has no action step")
        return cls(document, tuple(steps))


def _extension(step: dict[str, Any], step_id: str) -> dict[str, Any]:
    extensions = step.get("step_extensions")
    if not isinstance(extensions, dict) or len(extensions) != 1:
        raise PlaybookError(f"step {step_id}: needs exactly one step extension (Strongroom's)")
    (value,) = extensions.values()
    if not isinstance(value, dict):
        raise PlaybookError(f"step {step_id}: the step extension must be an object")
    return value


def shipped_text(name: str) -> str:
    """The shipped playbook's JSON text (``leak`` or ``distillation``)."""
    if name not in SHIPPED:
        raise PlaybookError(f"no shipped playbook {name!r} (one of {', '.join(SHIPPED)})")
    return resources.files("strongroom.incident").joinpath(f"playbooks/{name}.json").read_text()


def shipped(name: str) -> Playbook:
    return Playbook.parse(json.loads(shipped_text(name)))


def render(playbook: Playbook) -> str:
    """The playbook as a reader sees it: who does what, in what order, by when."""
    lines = [f"{playbook.name}  ({playbook.digest[:19]}...)", ""]
    for step in playbook.steps:
        due = f"+{step.deadline_seconds // 60} min" if step.deadline_seconds else "-"
        lines.append(f"{step.order:>2}. {step.name:<24} {step.role:<17} due {due:<10} {step.title}")
        for command in step.commands:
            lines.append(f"      $ {command}")
    return "\n".join(lines)
