"""Errors raised by the host registry."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class HostError(StrongroomError):
    """A change to the host registry is malformed or not allowed, or a host may not receive keys."""


class UnknownHostError(HostError):
    """No host with this id is enrolled."""
