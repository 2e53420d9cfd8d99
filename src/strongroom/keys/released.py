"""A data key already released to this host, presented as a key provider so sealed models open with it.

After a quorum release (Shamir ``host_combine``, or an HPKE ``open_as_host`` of a key the custody service
re-wrapped) the host holds one plaintext data key for one wrapped-key reference. ``ReleasedKey`` answers
``unwrap`` for exactly that reference (provider, key id, blob and binding must all match) and nothing
else, so a reference carrying another seal id or model id is refused; it cannot wrap. ``close()`` wipes the key.
"""

from __future__ import annotations

import hmac

from strongroom.keys.errors import BindingMismatchError, KeyProviderError, UnwrapError
from strongroom.keys.provider import DATA_KEY_BYTES, KeyBinding, WrappedKey
from strongroom.memory import lock, unlock, wipe


class ReleasedKey:
    """One released data key, bound to the wrapped reference it was released for."""

    def __init__(self, wrapped: WrappedKey, data_key: bytes | bytearray) -> None:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyProviderError(f"a released data key is {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        self._wrapped = wrapped
        self._key: bytearray | None = bytearray(data_key)
        lock(self._key)

    @property
    def provider(self) -> str:
        return self._wrapped.provider

    @property
    def key_id(self) -> str:
        return self._wrapped.key_id

    @property
    def binding(self) -> KeyBinding:
        """The seal id and model id this key was released for."""
        return self._wrapped.binding

    def generate_data_key(self, binding: KeyBinding) -> tuple[bytearray, WrappedKey]:
        raise KeyProviderError("a released data key cannot create new data keys")

    def wrap(self, data_key: bytes | bytearray, binding: KeyBinding) -> WrappedKey:
        raise KeyProviderError("a released data key cannot wrap other keys")

    def unwrap(self, wrapped: WrappedKey) -> bytearray:
        if self._key is None:
            raise KeyProviderError("the released data key has been wiped")
        same = (
            wrapped.provider == self._wrapped.provider
            and wrapped.key_id == self._wrapped.key_id
            and hmac.compare_digest(wrapped.blob, self._wrapped.blob)
        )
        if not same:
            raise UnwrapError(
                f"this host holds the data key released for one {self._wrapped.provider}:{self._wrapped.key_id} "
                "blob, not for the one given"
            )
        if wrapped.binding != self._wrapped.binding:
            mine, theirs = self._wrapped.binding, wrapped.binding
            raise BindingMismatchError(
                f"this host holds the data key released for model {mine.model_id} (seal {mine.seal_id}), "
                f"not for model {theirs.model_id} (seal {theirs.seal_id})"
            )
        return bytearray(self._key)

    def close(self) -> None:
        """Wipe the data key."""
        if self._key is not None:
            wipe(self._key)
            unlock(self._key)
            self._key = None

    def __enter__(self) -> ReleasedKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
