"""Egress control for weight hosts: budgets sized by the weights, a kernel layer (nftables quota, tc ceiling),
a narrow metered gateway, two reconciled meters, anomaly detection, and signed checkpoints on the ledger.

See docs/egress.md for the threat model. Modules: ``budget`` (the formula), ``kernel`` (nft/tc),
``schema`` (the narrow interface), ``gateway`` (the HTTP gateway), ``meter``, ``reconcile``, ``detector``,
``records`` (ledger entries), ``state`` (``EgressState``, a pure fold for custody), ``inference`` (a
reference inference server).
"""

from strongroom.egress.budget import BudgetPolicy, FleetBudget, HostBudget, ModelHolding, Plan, fleet_budget, plan
from strongroom.egress.errors import BudgetError, EgressError, GatewayConfigError, KernelRulesError, SchemaError
from strongroom.egress.state import EgressState, HostEgress

__all__ = [
    "BudgetError",
    "BudgetPolicy",
    "EgressError",
    "EgressState",
    "FleetBudget",
    "GatewayConfigError",
    "HostBudget",
    "HostEgress",
    "KernelRulesError",
    "ModelHolding",
    "Plan",
    "SchemaError",
    "fleet_budget",
    "plan",
]
