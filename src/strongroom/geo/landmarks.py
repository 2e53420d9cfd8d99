"""Landmarks: enrolled measuring stations with a signing key and surveyed coordinates.

A landmark is enrolled on the ledger by a ``geo.landmark`` entry (two officers; the custody service writes
it, as it writes ``host.changed``). Its body::

    {"landmark": "fra-1", "change": "enrol" | "retire" | "flag" | "clear",
     "public_key": PEM, "latitude": 50.11, "longitude": 8.68, "survey": "how the coordinates were fixed",
     "reason": "...", "authorisation": {... officers' co-signed change ...}}

``public_key``, ``latitude``, ``longitude`` and ``survey`` are required for ``enrol``; ``retire``, ``flag`` and
``clear`` name the landmark only. A retired landmark never measures again; a flagged one (its RTTs
disagree with its claimed place, see ``crosscheck``) is left out of verdicts until cleared. This module
folds such bodies in order (``LandmarkSet.apply``); whether an entry was authorised is the custody
replay's decision, not this module's.

``LandmarkSet.digest`` names the enrolled set (id, key id, coordinates, state): every statement carries it,
so an auditor knows which set the verdict was computed against. It is a digest of public records: it
reveals nothing about the host.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strongroom.canonical_json import canonical_json
from strongroom.geo.errors import LandmarkError
from strongroom.signing import SigningKeyError, Verifier

_ID = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}")
CHANGES = ("enrol", "retire", "flag", "clear")
MAX_TEXT = 256


def check_id(value: Any, what: str = "landmark id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise LandmarkError(f"{what} {str(value)[:70]!r} must be 1-64 of a-z 0-9 . _ : - (starting alphanumeric)")
    return value


def _coordinate(value: Any, name: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LandmarkError(f"{name} must be a number")
    if not -limit <= value <= limit:
        raise LandmarkError(f"{name} {value} outside -{limit:g}..{limit:g}")
    return float(value)


@dataclass(frozen=True)
class Landmark:
    """One enrolled landmark."""

    landmark_id: str
    verifier: Verifier
    latitude: float
    longitude: float
    survey: str = ""
    retired: bool = False
    flagged: str = ""  # why it is flagged; empty when it is not

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    @property
    def usable(self) -> bool:
        return not self.retired and not self.flagged

    def record(self) -> dict[str, Any]:
        """What the set digest covers."""
        return {
            "landmark": self.landmark_id,
            "key_id": self.key_id,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "retired": self.retired,
            "flagged": bool(self.flagged),
        }

    def enrolment_body(self) -> dict[str, Any]:
        """The ``geo.landmark`` body that enrols this landmark, without the officers' authorisation."""
        return {
            "landmark": self.landmark_id,
            "change": "enrol",
            "public_key": self.verifier.pem().decode(),
            "latitude": self.latitude,
            "longitude": self.longitude,
            "survey": self.survey,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Landmark:
        landmark_id = check_id(body.get("landmark"))
        public_key = body.get("public_key")
        if not isinstance(public_key, str):
            raise LandmarkError(f"{landmark_id}: public_key must be a PEM string")
        try:
            verifier = Verifier.from_pem(public_key.encode(), f"landmark {landmark_id}")
        except SigningKeyError as exc:
            raise LandmarkError(str(exc)) from None
        survey = body.get("survey", "")
        if not isinstance(survey, str) or len(survey) > MAX_TEXT:
            raise LandmarkError(f"{landmark_id}: survey must be text of at most {MAX_TEXT} characters")
        return cls(
            landmark_id,
            verifier,
            _coordinate(body.get("latitude"), "latitude", 90.0),
            _coordinate(body.get("longitude"), "longitude", 180.0),
            survey,
        )


class LandmarkSet:
    """Every landmark ever enrolled, current state, built by applying ``geo.landmark`` bodies in order."""

    def __init__(self, landmarks: Iterable[Landmark] = ()) -> None:
        self.landmarks: dict[str, Landmark] = {}
        for landmark in landmarks:
            self.add(landmark)

    def add(self, landmark: Landmark) -> None:
        if landmark.landmark_id in self.landmarks:
            raise LandmarkError(f"landmark {landmark.landmark_id} is already enrolled (ids are never reused)")
        if any(other.key_id == landmark.key_id for other in self.landmarks.values()):
            raise LandmarkError(f"landmark {landmark.landmark_id}: its key already belongs to another landmark")
        self.landmarks[landmark.landmark_id] = landmark

    def apply(self, body: Mapping[str, Any]) -> Landmark:
        """Apply one ``geo.landmark`` body; raises LandmarkError (and changes nothing) if it cannot apply."""
        change = body.get("change")
        if change not in CHANGES:
            raise LandmarkError(f"geo.landmark change must be one of {', '.join(CHANGES)}")
        if change == "enrol":
            landmark = Landmark.from_body(body)
            self.add(landmark)
            return landmark
        current = self.get(check_id(body.get("landmark")))
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_TEXT:
            raise LandmarkError(f"reason must be text of at most {MAX_TEXT} characters")
        if change == "retire":
            updated = replace(current, retired=True)
        elif change == "flag":
            updated = replace(current, flagged=reason or "flagged")
        else:
            updated = replace(current, flagged="")
        self.landmarks[current.landmark_id] = updated
        return updated

    def get(self, landmark_id: str) -> Landmark:
        try:
            return self.landmarks[landmark_id]
        except KeyError:
            raise LandmarkError(f"no landmark {landmark_id!r} is enrolled") from None

    def by_key(self, key_id: str) -> Landmark | None:
        return next((lm for lm in self.landmarks.values() if lm.key_id == key_id), None)

    def usable(self) -> list[Landmark]:
        return [lm for lm in sorted(self.landmarks.values(), key=lambda lm: lm.landmark_id) if lm.usable]

    @property
    def digest(self) -> str:
        records = [self.landmarks[name].record() for name in sorted(self.landmarks)]
        return "sha256:" + hashlib.sha256(canonical_json({"landmarks": records})).hexdigest()

    def to_json(self) -> list[dict[str, Any]]:
        """The registry file form: each landmark's enrolment body plus its state."""
        out = []
        for name in sorted(self.landmarks):
            landmark = self.landmarks[name]
            out.append({**landmark.enrolment_body(), "retired": landmark.retired, "flagged": landmark.flagged})
        return out

    @classmethod
    def from_json(cls, value: Any) -> LandmarkSet:
        if not isinstance(value, list):
            raise LandmarkError("a landmark registry is a JSON list of enrolment records")
        found = cls()
        for item in value:
            if not isinstance(item, dict):
                raise LandmarkError("each landmark record must be a JSON object")
            landmark = Landmark.from_body(item)
            retired, flagged = item.get("retired", False), item.get("flagged", "")
            if not isinstance(retired, bool) or not isinstance(flagged, str):
                raise LandmarkError(f"{landmark.landmark_id}: retired must be true/false, flagged text")
            found.add(replace(landmark, retired=retired, flagged=flagged))
        return found

    @classmethod
    def load(cls, path: Path) -> LandmarkSet:
        try:
            value = json.loads(Path(path).read_bytes())
        except ValueError:
            raise LandmarkError(f"{path}: not JSON") from None
        return cls.from_json(value)

    def save(self, path: Path) -> None:
        from strongroom.atomic import write_atomic

        write_atomic(Path(path), json.dumps(self.to_json(), indent=2).encode() + b"\n", mode=0o644)
