"""The host conditions a model's policy can add to a release: egress control and location.

Pure functions of the policy, the projection's view of the host (``strongroom.custody.projection``) and the
decision time; each failed condition is one specific reason, and any reason refuses the release (the
decision function adds them to its own). The live gate and the offline auditor both call ``host_reasons``.

- Egress (``policy.egress``): the host's latest gateway checkpoint is at most ``max_checkpoint_age_s``
  old (and not dated more than the clock skew ahead), shows the kernel rules installed (a quota and a
  rule-set digest), its budget is not spent in the current period (by the checkpoint or an
  ``egress.exhausted`` entry), and no egress alarm for the host is open (threshold officers clear one with
  ``egress.clear``).
- Location (``policy.location``): the host's latest verdict is ``IN(CC)`` for one of the allowed
  countries, measured (from the start of its epoch) at most ``max_age_s`` before the decision, against the
  landmark set the officers enrolled on the ledger as it stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from strongroom.custody.envelope import CLOCK_SKEW
from strongroom.custody.policy import EgressRule, LocationRule
from strongroom.custody.projection import VerdictRecord
from strongroom.egress.state import HostEgress


def egress_reasons(rule: EgressRule, host: HostEgress, cleared: Mapping[str, int]) -> list[str]:
    """Why egress control does not hold for this host now (empty: it holds)."""
    who = f"egress: host {host.host_id}"
    if host.last_checkpoint is None:
        return [f"{who} has no gateway checkpoint on the ledger"]
    reasons: list[str] = []
    age = host.now - host.last_checkpoint
    if age < -CLOCK_SKEW.total_seconds():
        reasons.append(f"{who}'s last checkpoint is dated {-age:.0f}s in the future")
    elif age > rule.max_checkpoint_age_s:
        reasons.append(f"{who}'s last checkpoint is stale: {age:.0f}s old (at most {rule.max_checkpoint_age_s}s)")
    digest = host.rules_digest
    if not host.rules_installed or not isinstance(digest, str) or not digest.startswith("sha256:"):
        reasons.append(f"{who}'s last checkpoint shows no kernel rules installed (no quota or no rule-set digest)")
    if host.exhausted:
        reasons.append(f"{who}'s egress budget is spent for this period")
    for alarm in host.open_alarms:
        if alarm.alarm_id not in cleared:
            reasons.append(
                f"{who} has an open egress alarm {alarm.alarm_id[:12]} ({alarm.kind}); "
                "threshold officers must clear it (egress.clear)"
            )
    return reasons


def location_reasons(
    rule: LocationRule,
    host_id: str,
    verdict: VerdictRecord | None,
    now: datetime,
    landmark_set: str,
    open_alarm: int | None = None,
) -> list[str]:
    """Why the location condition does not hold for this host now (empty: it holds); ``open_alarm``: the
    ledger index of an INCONSISTENT verdict no officers have cleared (it refuses whatever came after it)."""
    who = f"location: host {host_id}"
    alarm = [] if open_alarm is None else [
        f"{who} has an open INCONSISTENT verdict (entry {open_alarm}): an alarm until threshold officers "
        "clear it (location.clear)"
    ]  # fmt: skip
    return alarm + _verdict_reasons(rule, who, verdict, now, landmark_set)


def _verdict_reasons(
    rule: LocationRule, who: str, verdict: VerdictRecord | None, now: datetime, landmark_set: str
) -> list[str]:
    allowed = ", ".join(rule.countries)
    if verdict is None:
        return [f"{who} has no location verdict on the ledger"]
    age = now - verdict.measured_at
    if age > timedelta(seconds=rule.max_age_s):
        return [f"{who}'s latest verdict is stale: measured {age.total_seconds():.0f}s ago (at most {rule.max_age_s}s)"]
    if age < -CLOCK_SKEW:
        return [f"{who}'s latest verdict is for an epoch in the future"]
    if verdict.outcome == "INCONSISTENT":
        return [f"{who}'s latest verdict is INCONSISTENT (the landmarks' disks do not meet: an alarm, not a place)"]
    if verdict.outcome == "INCONCLUSIVE":
        return [f"{who}'s latest verdict is INCONCLUSIVE: not shown to be in {allowed}"]
    if verdict.country not in rule.countries:
        return [f"{who} was placed IN({verdict.country}), not in an allowed country ({allowed})"]
    if verdict.landmark_set != landmark_set:
        return [
            f"{who}'s verdict was computed against landmark set {verdict.landmark_set[:19]}…, not the set the "
            f"officers enrolled ({landmark_set[:19]}…)"
        ]
    return []
