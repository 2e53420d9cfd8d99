"""A model's release policy: the tier needed to ask for it, how many approvals, an optional delay, and
whether a release needs the host's TPM attestation (docs/attestation.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strongroom.custody.errors import MessageError
from strongroom.people.tiers import check_tier

POLICY_FIELDS = {"required_tier", "approvals", "delay_seconds", "attestation"}


@dataclass(frozen=True)
class ModelPolicy:
    """Release rules for one model id."""

    model_id: str
    required_tier: int
    approvals: int = 2
    delay_seconds: int = 0
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
        return cls(model_id, **rules)
