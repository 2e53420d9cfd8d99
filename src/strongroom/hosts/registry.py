"""The host registry, rebuilt from ``host.changed`` entries: which machines exist, whose they are, and
the Ed25519 identity key each signs with.

Like the people registry it keeps no state of its own: it is a projection of the ledger, so an auditor
replaying the log knows exactly which hosts the custody service would release to, at any point. Attestation
evidence (TPM endorsement and attestation keys) will hang off the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strongroom.hosts.errors import HostError, UnknownHostError
from strongroom.signing import SigningKeyError, Verifier

MAX_TEXT = 256


@dataclass
class Host:
    """One enrolled host."""

    host_id: str
    name: str
    site: str
    owner: str
    verifier: Verifier
    retired: bool = False

    @property
    def key_id(self) -> str:
        return self.verifier.key_id

    @property
    def fingerprint(self) -> str:
        """What an approver compares with the machine: SHA256 of the identity key, first 16 bytes, grouped."""
        head = self.key_id[:32]
        return "SHA256:" + ":".join(head[i : i + 4] for i in range(0, 32, 4))

    def to_json(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "name": self.name,
            "site": self.site,
            "owner": self.owner,
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "retired": self.retired,
        }


class HostRegistry:
    """Current state of every host, built by applying changes in order."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}

    def get(self, host_id: str) -> Host:
        try:
            return self.hosts[host_id]
        except KeyError:
            raise UnknownHostError(f"no host {host_id!r} is enrolled") from None

    def active(self, host_id: str) -> Host:
        """The host, if it may receive keys now."""
        host = self.get(host_id)
        if host.retired:
            raise HostError(f"host {host_id!r} is retired")
        return host

    def by_key(self, key_id: str) -> Host | None:
        return next((h for h in self.hosts.values() if h.key_id == key_id), None)

    def apply(self, change: dict[str, Any]) -> Host:
        """Apply one ``host.changed`` change; raises HostError (and changes nothing) if it is refused."""
        kind = _text(change, "change")
        host_id = _text(change, "host")
        if kind == "enrol":
            return self._enrol(host_id, change)
        if kind != "retire":
            raise HostError(f"{host_id}: unknown host change {kind!r}")
        host = self.get(host_id)
        if host.retired:
            raise HostError(f"{host_id}: already retired")
        host.retired = True
        return host

    def _enrol(self, host_id: str, change: dict[str, Any]) -> Host:
        if host_id in self.hosts:
            raise HostError(f"{host_id}: already enrolled (host ids are never reused)")
        try:
            verifier = Verifier.from_pem(_text(change, "public_key").encode(), f"host {host_id} public_key")
        except SigningKeyError as exc:
            raise HostError(str(exc)) from None
        if verifier.key_type != "ed25519":
            raise HostError(f"{host_id}: hosts sign with Ed25519 identities, not {verifier.key_type}")
        if self.by_key(verifier.key_id) is not None:
            raise HostError(f"{host_id}: this identity key already belongs to another host")
        host = Host(host_id, _text(change, "name"), _text(change, "site"), _text(change, "owner"), verifier)
        self.hosts[host_id] = host
        return host


def _text(change: dict[str, Any], name: str) -> str:
    value = change.get(name)
    if not isinstance(value, str) or not value or len(value) > (4096 if name == "public_key" else MAX_TEXT):
        raise HostError(f"host change: field {name!r} missing or not a non-empty string")
    return value
