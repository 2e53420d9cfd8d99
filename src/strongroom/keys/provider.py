"""The key-provider protocol: the one interface between sealed data and wherever its keys are kept.

A provider holds a key-encryption key (KEK) it never reveals and turns fresh data keys (DEKs) into
wrapped blobs and back. Local keyrings, PKCS#11 tokens, KMS transit engines and custodian quorums all
fit this shape: a blob plus the provider name and key id that say which KEK can unwrap it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from strongroom.keys.errors import KeyProviderError

DATA_KEY_BYTES = 32


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped by a provider's KEK, with the reference needed to unwrap it."""

    provider: str
    key_id: str
    blob: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "key_id": self.key_id,
            "wrapped": base64.b64encode(self.blob).decode("ascii"),
        }

    @classmethod
    def from_json(cls, value: Any) -> WrappedKey:
        if not isinstance(value, dict):
            raise KeyProviderError("key reference must be a JSON object")
        try:
            provider, key_id, wrapped = value["provider"], value["key_id"], value["wrapped"]
        except KeyError as missing:
            raise KeyProviderError(f"key reference lacks field {missing.args[0]!r}") from None
        if not all(isinstance(v, str) for v in (provider, key_id, wrapped)):
            raise KeyProviderError("key reference fields provider, key_id and wrapped must be strings")
        try:
            blob = base64.b64decode(wrapped, validate=True)
        except binascii.Error:
            raise KeyProviderError("key reference field 'wrapped' is not valid base64") from None
        return cls(provider=provider, key_id=key_id, blob=blob)


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys under a KEK the caller never sees."""

    @property
    def provider(self) -> str:
        """Short provider name written into key references: ``local``, ``pkcs11``, ``openbao``, ``shamir``."""
        ...

    @property
    def key_id(self) -> str:
        """Stable identifier of the KEK this provider wraps under."""
        ...

    def generate_data_key(self) -> tuple[bytearray, WrappedKey]:
        """Return a fresh random data key (the caller wipes it) and its wrapped form."""
        ...

    def wrap(self, data_key: bytes | bytearray) -> WrappedKey:
        """Wrap an existing data key under this provider's KEK."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        """Recover a data key; raises ``UnwrapError`` if this provider cannot or the blob is corrupt."""
        ...


def check_reference(provider: KeyProvider, wrapped: WrappedKey) -> None:
    """Refuse a wrapped key that names another provider or KEK, before any cryptography is attempted."""
    from strongroom.keys.errors import UnwrapError

    if wrapped.provider != provider.provider or wrapped.key_id != provider.key_id:
        raise UnwrapError(
            f"data key is wrapped by {wrapped.provider}:{wrapped.key_id}, "
            f"but the provider given is {provider.provider}:{provider.key_id}"
        )
