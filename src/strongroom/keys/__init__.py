"""Key providers: one protocol for wherever data keys are wrapped (local keyring, HSM, KMS, custodians)."""

from strongroom.keys.errors import (
    KeyProviderError,
    KeyringFormatError,
    KeyringNotFoundError,
    UnwrapError,
    WrongPassphraseError,
)
from strongroom.keys.local import LocalKeyring
from strongroom.keys.provider import DATA_KEY_BYTES, KeyProvider, WrappedKey

__all__ = [
    "DATA_KEY_BYTES",
    "KeyProvider",
    "KeyProviderError",
    "KeyringFormatError",
    "KeyringNotFoundError",
    "LocalKeyring",
    "UnwrapError",
    "WrappedKey",
    "WrongPassphraseError",
]
