"""A model's release policy: the tier needed to ask for it, how many approvals, an optional delay, and
optional conditions on the host: egress control (a fresh gateway checkpoint, rules in, budget left, no open
alarm), location (a fresh ``IN`` verdict for one of the allowed countries) and TPM attestation
(docs/attestation.md).

Each condition is opt-in per model (``egress: {max_checkpoint_age_s}``, ``location: {countries,
max_age_s}``, ``attestation: true``): a policy without them is decided exactly as before, and is logged
exactly as before. docs/custody.md says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from strongroom.custody.errors import MessageError
from strongroom.people.tiers import check_tier

POLICY_FIELDS = {"required_tier", "approvals", "delay_seconds", "egress", "location", "attestation"}
DEFAULT_CHECKPOINT_AGE = 300  # seconds: the gateway checkpoints every 60 s by default
DEFAULT_VERDICT_AGE = 86_400  # seconds: hosts move; a verdict older than a day says nothing about today
_COUNTRY = re.compile(r"[A-Z]{2}")


def _seconds(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MessageError(f"policy: {name} must be an integer from {low} to {high}")
    return value


@dataclass(frozen=True)
class EgressRule:
    """The host must show a gateway checkpoint at most ``max_checkpoint_age_s`` old."""

    max_checkpoint_age_s: int = DEFAULT_CHECKPOINT_AGE

    def __post_init__(self) -> None:
        _seconds(self.max_checkpoint_age_s, "egress.max_checkpoint_age_s", 10, 86_400)

    def to_json(self) -> dict[str, Any]:
        return {"max_checkpoint_age_s": self.max_checkpoint_age_s}

    @classmethod
    def parse(cls, value: Any) -> EgressRule:
        if not isinstance(value, dict) or not set(value) <= {"max_checkpoint_age_s"}:
            raise MessageError("policy: egress is an object with optionally max_checkpoint_age_s")
        return cls(**value)


@dataclass(frozen=True)
class LocationRule:
    """The host must have an ``IN(CC)`` verdict, CC one of ``countries``, measured at most ``max_age_s`` ago."""

    countries: tuple[str, ...]
    max_age_s: int = DEFAULT_VERDICT_AGE

    def __post_init__(self) -> None:
        if not self.countries or len(self.countries) > 64:
            raise MessageError("policy: location.countries must list 1 to 64 countries")
        for code in self.countries:
            if not isinstance(code, str) or not _COUNTRY.fullmatch(code):
                raise MessageError("policy: location.countries are ISO 3166-1 alpha-2 codes (two capitals)")
        if list(self.countries) != sorted(set(self.countries)):
            raise MessageError("policy: location.countries must be sorted and without repeats")
        _seconds(self.max_age_s, "location.max_age_s", 60, 30 * 86_400)

    def to_json(self) -> dict[str, Any]:
        return {"countries": list(self.countries), "max_age_s": self.max_age_s}

    @classmethod
    def parse(cls, value: Any) -> LocationRule:
        if not isinstance(value, dict) or "countries" not in value or not set(value) <= {"countries", "max_age_s"}:
            raise MessageError("policy: location is an object with countries and optionally max_age_s")
        countries = value["countries"]
        if not isinstance(countries, list):
            raise MessageError("policy: location.countries must be a list")
        return cls(tuple(countries), value.get("max_age_s", DEFAULT_VERDICT_AGE))


@dataclass(frozen=True)
class ModelPolicy:
    """Release rules for one model id."""

    model_id: str
    required_tier: int
    approvals: int = 2
    delay_seconds: int = 0
    egress: EgressRule | None = None
    location: LocationRule | None = None
    attestation: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.attestation, bool):
            raise MessageError("policy: attestation must be true or false")
        try:
            check_tier(self.required_tier, "required_tier")
        except ValueError as exc:
            raise MessageError(f"policy: {exc}") from None
        for name, low, high in (("approvals", 1, 16), ("delay_seconds", 0, 7 * 86400)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise MessageError(f"policy: {name} must be an integer from {low} to {high}")

    def rules(self) -> dict[str, Any]:
        rules: dict[str, Any] = {
            "required_tier": self.required_tier,
            "approvals": self.approvals,
            "delay_seconds": self.delay_seconds,
        }
        if self.egress is not None:
            rules["egress"] = self.egress.to_json()
        if self.location is not None:
            rules["location"] = self.location.to_json()
        if self.attestation:  # only when set: policies logged before attestation existed replay unchanged
            rules["attestation"] = True
        return rules

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, **self.rules()}

    @classmethod
    def from_rules(cls, model_id: str, rules: Any) -> ModelPolicy:
        if not isinstance(rules, dict) or not set(rules) <= POLICY_FIELDS or "required_tier" not in rules:
            raise MessageError(
                f"policy: an object with required_tier and optionally {', '.join(sorted(POLICY_FIELDS))}"
            )
        plain = {k: v for k, v in rules.items() if k not in ("egress", "location")}
        egress = EgressRule.parse(rules["egress"]) if "egress" in rules else None
        location = LocationRule.parse(rules["location"]) if "location" in rules else None
        return cls(model_id, **plain, egress=egress, location=location)
