"""SenL clearance tiers and their rescreening intervals (SL5 standard PS-3).

SenL-5 are the custodians of the weights. Higher tiers are rescreened more often: 18 months at SenL-1
down to 13 at SenL-5, and on a role change or a monitoring trigger.
"""

from __future__ import annotations

import calendar
from datetime import date

MIN_TIER = 1
MAX_TIER = 5
CUSTODIAN_TIER = 5

RESCREEN_MONTHS: dict[int, int] = {1: 18, 2: 17, 3: 16, 4: 15, 5: 13}


def check_tier(tier: object, field: str = "tier") -> int:
    """Return ``tier`` if it is an int in 1..5, else raise ValueError naming the field."""
    if not isinstance(tier, int) or isinstance(tier, bool) or not MIN_TIER <= tier <= MAX_TIER:
        raise ValueError(f"{field} must be a SenL tier from {MIN_TIER} to {MAX_TIER}, got {tier!r}")
    return tier


def add_months(day: date, months: int) -> date:
    """``day`` plus whole calendar months, clamped to the end of a shorter month."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def rescreen_due(vetted_on: date, tier: int) -> date:
    """The last day a person vetted on ``vetted_on`` may act at ``tier`` without rescreening."""
    return add_months(vetted_on, RESCREEN_MONTHS[check_tier(tier)])
