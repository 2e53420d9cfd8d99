"""Continuous-evaluation signals: warning signs that suspend a person's access until a reviewer clears them."""

from __future__ import annotations

from enum import StrEnum


class SignalKind(StrEnum):
    """Categories of continuous-evaluation signal (in the spirit of the SenL insider-risk framework)."""

    FINANCIAL = "financial"
    FOREIGN_CONTACT = "foreign_contact"
    TRAVEL = "travel"
    CRIMINAL = "criminal"
    POLICY_VIOLATION = "policy_violation"
    SECURITY_INCIDENT = "security_incident"
    SUBSTANCE = "substance"
    BEHAVIOURAL = "behavioural"
    OTHER = "other"
