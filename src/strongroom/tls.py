"""TLS for Strongroom's HTTP services and clients: server certificates, and client certificates (mTLS).

Servers (``strongroom serve``, ``strongroom witness serve``) take ``--tls-cert`` and ``--tls-key``, and with
``--tls-client-ca`` require every client to present a certificate that CA issued. Clients read the CA to
trust and their own certificate from the environment (``STRONGROOM_CA_CERT``, ``STRONGROOM_CLIENT_CERT``,
``STRONGROOM_CLIENT_KEY``), so every command that talks to a server uses them without more options.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.errors import StrongroomError

CA_ENV, CERT_ENV, KEY_ENV = "STRONGROOM_CA_CERT", "STRONGROOM_CLIENT_CERT", "STRONGROOM_CLIENT_KEY"


class TlsSettingsError(StrongroomError):
    """A certificate or key file for TLS is missing or unreadable, or only half of a pair is given."""


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts (a CA file, else the system's) and the certificate it presents, if any."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_environment(cls) -> ClientTls:
        found = {name: os.environ.get(var) for name, var in (("ca", CA_ENV), ("cert", CERT_ENV), ("key", KEY_ENV))}
        tls = cls(**{name: Path(value) if value else None for name, value in found.items()})
        if (tls.cert is None) != (tls.key is None):
            raise TlsSettingsError(f"set both {CERT_ENV} and {KEY_ENV} for a client certificate, or neither")
        for path in (tls.ca, tls.cert, tls.key):
            if path is not None and not path.is_file():
                raise TlsSettingsError(f"{path}: no such certificate or key file")
        return tls

    def httpx_options(self) -> dict[str, Any]:
        """``verify`` and ``cert`` for an httpx client."""
        options: dict[str, Any] = {}
        if self.ca is not None:
            options["verify"] = ssl.create_default_context(cafile=str(self.ca))
            if self.cert is not None and self.key is not None:
                options["verify"].load_cert_chain(str(self.cert), str(self.key))
        elif self.cert is not None and self.key is not None:
            context = ssl.create_default_context()
            context.load_cert_chain(str(self.cert), str(self.key))
            options["verify"] = context
        return options


def server_options(cert: Path | None, key: Path | None, client_ca: Path | None) -> dict[str, Any]:
    """uvicorn's TLS settings: a certificate and key, and with ``client_ca`` client certificates required."""
    if (cert is None) != (key is None):
        raise TlsSettingsError("give both --tls-cert and --tls-key, or neither")
    if cert is None:
        if client_ca is not None:
            raise TlsSettingsError("--tls-client-ca needs --tls-cert and --tls-key")
        return {}
    for path in (cert, key, client_ca):
        if path is not None and not path.is_file():
            raise TlsSettingsError(f"{path}: no such certificate or key file")
    options: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if client_ca is not None:
        options |= {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options
