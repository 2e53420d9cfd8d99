"""Errors raised by the egress layer."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class EgressError(StrongroomError):
    """Base class for egress errors."""


class BudgetError(EgressError):
    """Budget settings or figures that make no sense (a negative size, a zero horizon, shares over 100%)."""


class KernelRulesError(EgressError):
    """nftables or tc refused the rules, is missing, or the rules on the machine are not the ones expected."""


class SchemaError(EgressError):
    """A request or response that the narrow interface does not allow (shape, type, length, value)."""


class GatewayConfigError(EgressError):
    """A gateway configuration file is missing a field or holds a value the gateway cannot run with."""
