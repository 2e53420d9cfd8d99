"""Key providers: one protocol for wherever data keys are wrapped (local keyring, HSM, KMS, custodians)."""

from strongroom.keys.errors import (
    KeyBindingError,
    KeyProviderError,
    KeyringFormatError,
    KeyringNotFoundError,
    UnwrapError,
    WrongPassphraseError,
)
from strongroom.keys.local import LocalKeyring
from strongroom.keys.provider import DATA_KEY_BYTES, KeyBinding, KeyProvider, WrappedKey

__all__ = [
    "DATA_KEY_BYTES",
    "KeyBinding",
    "KeyBindingError",
    "KeyProvider",
    "KeyProviderError",
    "KeyringFormatError",
    "KeyringNotFoundError",
    "LocalKeyring",
    "UnwrapError",
    "WrappedKey",
    "WrongPassphraseError",
]
