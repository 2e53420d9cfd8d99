"""SenL clearance registry: people, positions, vetting, agreements, continuous evaluation, suspensions."""

from strongroom.people.errors import PeopleError, UnknownPersonError
from strongroom.people.registry import Person, Registry, Standing, agreement_message
from strongroom.people.signals import SignalKind
from strongroom.people.tiers import CUSTODIAN_TIER, RESCREEN_MONTHS, rescreen_due

__all__ = [
    "CUSTODIAN_TIER",
    "RESCREEN_MONTHS",
    "PeopleError",
    "Person",
    "Registry",
    "SignalKind",
    "Standing",
    "UnknownPersonError",
    "agreement_message",
    "rescreen_due",
]
