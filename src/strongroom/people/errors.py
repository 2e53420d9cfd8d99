"""Errors raised by the clearance registry."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class PeopleError(StrongroomError):
    """A change to the clearance registry is malformed or not allowed."""


class UnknownPersonError(PeopleError):
    """No person with this id is enrolled."""
