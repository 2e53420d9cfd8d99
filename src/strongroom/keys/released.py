"""A data key already released to this host, presented as a key provider so sealed models open with it.

After a quorum release (Shamir ``host_combine``, or an HPKE ``open_as_host`` of a key the custody service
re-wrapped) the host holds one plaintext data key for one wrapped-key reference. ``ReleasedKey`` answers
``unwrap`` for exactly that reference (provider, key id and blob must all match) and nothing else; it
cannot wrap. ``close()`` wipes the key.
"""

from __future__ import annotations

import hmac

from strongroom.keys.errors import KeyProviderError, UnwrapError
from strongroom.keys.provider import DATA_KEY_BYTES, WrappedKey
from strongroom.memory import wipe


class ReleasedKey:
    """One released data key, bound to the wrapped reference it was released for."""

    def __init__(self, wrapped: WrappedKey, data_key: bytes | bytearray) -> None:
        if len(data_key) != DATA_KEY_BYTES:
            raise KeyProviderError(f"a released data key is {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        self._wrapped = wrapped
        self._key: bytearray | None = bytearray(data_key)

    @property
    def provider(self) -> str:
        return self._wrapped.provider

    @property
    def key_id(self) -> str:
        return self._wrapped.key_id

    def generate_data_key(self) -> tuple[bytearray, WrappedKey]:
        raise KeyProviderError("a released data key cannot create new data keys")

    def wrap(self, data_key: bytes | bytearray) -> WrappedKey:
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
        return bytearray(self._key)

    def close(self) -> None:
        """Wipe the data key."""
        if self._key is not None:
            wipe(self._key)
            self._key = None

    def __enter__(self) -> ReleasedKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
