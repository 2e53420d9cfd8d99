"""Enrolled serving hosts: the machines a released data key may go to, each named by its identity key."""

from strongroom.hosts.errors import HostError, UnknownHostError
from strongroom.hosts.registry import Host, HostRegistry

__all__ = ["Host", "HostError", "HostRegistry", "UnknownHostError"]
