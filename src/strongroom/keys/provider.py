"""The key-provider protocol: the one interface between sealed data and wherever its keys are kept.

A provider holds a key-encryption key (KEK) it never reveals and turns fresh data keys (DEKs) into
wrapped blobs and back. Local keyrings, PKCS#11 tokens, KMS transit engines and custodian quorums all
fit this shape: a blob plus the provider name and key id that say which KEK can unwrap it, and the
``KeyBinding`` (seal id, model id) the blob was wrapped for. Every provider authenticates the binding
inside its own cryptography (AEAD associated data, RFC 5116 section 2.1), so a reference whose binding
was edited never unwraps: a data key sealed for one model cannot be released under another model's id.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from strongroom.canonical_json import canonical_json
from strongroom.keys.errors import KeyBindingError, KeyProviderError

DATA_KEY_BYTES = 32
BINDING_TYPE = "strongroom.key-binding/v1"
_SEAL_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_ID = re.compile(r"(?:blake3|sha256):[0-9a-f]{64}")
_BINDING_FIELDS = frozenset({"seal_id", "model_id"})
_REFERENCE_FIELDS = frozenset({"provider", "key_id", "wrapped", "binding"})


@dataclass(frozen=True)
class KeyBinding:
    """What a data key was sealed for: one seal id and, for a model, its model id (None for other data).

    Providers authenticate ``aad()`` with the wrapped key, so the binding cannot be changed without
    making the blob fail to unwrap.
    """

    seal_id: str
    model_id: str | None = None
    _aad: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seal_id, str) or not _SEAL_ID.fullmatch(self.seal_id):
            raise KeyBindingError("key binding: seal_id must be 32 lowercase hex digits")
        if self.model_id is not None and (not isinstance(self.model_id, str) or not _MODEL_ID.fullmatch(self.model_id)):
            raise KeyBindingError("key binding: model_id must be blake3:<64 hex> or sha256:<64 hex>")
        # Computed once: every wrap and unwrap authenticates these bytes (frozen, so set through object).
        object.__setattr__(self, "_aad", canonical_json({"type": BINDING_TYPE, **self.to_json()}))

    def to_json(self) -> dict[str, str]:
        """``{"seal_id", "model_id"}``; ``model_id`` is left out when there is none."""
        value = {"seal_id": self.seal_id}
        if self.model_id is not None:
            value["model_id"] = self.model_id
        return value

    @classmethod
    def from_json(cls, value: Any) -> KeyBinding:
        """Parse the form ``to_json`` writes; unknown fields, nulls and wrong types are refused."""
        if not isinstance(value, dict):
            raise KeyBindingError("key binding must be a JSON object")
        unknown = sorted(str(k) for k in value if k not in _BINDING_FIELDS)
        if unknown:
            raise KeyBindingError(f"key binding has unknown field {unknown[0]!r}")
        if "seal_id" not in value:
            raise KeyBindingError("key binding lacks field 'seal_id'")
        if "model_id" in value and not isinstance(value["model_id"], str):
            raise KeyBindingError("key binding field 'model_id' must be a string when present")
        return cls(seal_id=value["seal_id"], model_id=value.get("model_id"))

    def aad(self) -> bytes:
        """The bytes every provider authenticates: RFC 8785 JSON of the type, seal id and model id."""
        return self._aad


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped by a provider's KEK, with the reference needed to unwrap it and its binding."""

    provider: str
    key_id: str
    blob: bytes
    binding: KeyBinding

    def __post_init__(self) -> None:
        if not isinstance(self.binding, KeyBinding):
            raise KeyBindingError("a wrapped key needs a KeyBinding (seal id, model id)")

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "key_id": self.key_id,
            "wrapped": base64.b64encode(self.blob).decode("ascii"),
            "binding": self.binding.to_json(),
        }

    @classmethod
    def from_json(cls, value: Any) -> WrappedKey:
        if not isinstance(value, dict):
            raise KeyProviderError("key reference must be a JSON object")
        unknown = sorted(str(k) for k in value if k not in _REFERENCE_FIELDS)
        if unknown:
            raise KeyProviderError(f"key reference has unknown field {unknown[0]!r}")
        try:
            provider, key_id, wrapped = value["provider"], value["key_id"], value["wrapped"]
        except KeyError as missing:
            raise KeyProviderError(f"key reference lacks field {missing.args[0]!r}") from None
        if not all(isinstance(v, str) for v in (provider, key_id, wrapped)):
            raise KeyProviderError("key reference fields provider, key_id and wrapped must be strings")
        if "binding" not in value:
            raise KeyBindingError("key reference lacks field 'binding' (the seal id and model id it is bound to)")
        binding = KeyBinding.from_json(value["binding"])
        try:
            blob = base64.b64decode(wrapped, validate=True)
        except binascii.Error:
            raise KeyProviderError("key reference field 'wrapped' is not valid base64") from None
        return cls(provider=provider, key_id=key_id, blob=blob, binding=binding)


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

    def generate_data_key(self, binding: KeyBinding) -> tuple[bytearray, WrappedKey]:
        """Return a fresh random data key (the caller wipes it) and its wrapped form, bound to ``binding``."""
        ...

    def wrap(self, data_key: bytes | bytearray, binding: KeyBinding) -> WrappedKey:
        """Wrap an existing data key under this provider's KEK, bound to ``binding``."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        """Recover a data key; raises ``UnwrapError`` if this provider cannot, the blob is corrupt, or
        ``wrapped.binding`` is not the binding it was wrapped for."""
        ...


def check_binding(binding: Any) -> KeyBinding:
    """Refuse anything but a ``KeyBinding`` where a provider is asked to wrap (a typed error, not a crash)."""
    if not isinstance(binding, KeyBinding):
        raise KeyBindingError(f"a data key must be wrapped for a KeyBinding, got {type(binding).__name__}")
    return binding


def associated_data(domain: bytes, key_id: str, binding: KeyBinding) -> bytes:
    """AEAD associated data for a wrapped key: ``domain || key_id || 0x00 || binding.aad()``.

    ``domain`` ends in 0x00 and the key id is the provider's own (never read from the blob), so the
    binding is exactly the bytes after the second separator: no two bindings share an AD.
    """
    return domain + key_id.encode("utf-8") + b"\x00" + check_binding(binding).aad()


def require_model(wrapped: WrappedKey, model_id: str | None) -> None:
    """Refuse a key reference bound to another model than ``model_id`` (``BindingMismatchError``).

    Providers guarantee a binding cannot be edited; whoever releases a key for a model (a custodian, the
    custody service) must still check that the model it approves is the one the key is bound to.
    """
    from strongroom.keys.errors import BindingMismatchError

    if wrapped.binding.model_id != model_id:
        raise BindingMismatchError(
            f"the key reference is bound to model {wrapped.binding.model_id} (seal {wrapped.binding.seal_id}), "
            f"not to model {model_id}: refused"
        )


def check_reference(provider: KeyProvider, wrapped: WrappedKey) -> None:
    """Refuse a wrapped key that names another provider or KEK, before any cryptography is attempted."""
    from strongroom.keys.errors import UnwrapError

    if wrapped.provider != provider.provider or wrapped.key_id != provider.key_id:
        raise UnwrapError(
            f"data key is wrapped by {wrapped.provider}:{wrapped.key_id}, "
            f"but the provider given is {provider.provider}:{provider.key_id}"
        )
