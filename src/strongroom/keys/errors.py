"""Errors raised by key providers."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class KeyProviderError(StrongroomError):
    """A key provider could not complete an operation."""


class KeyringNotFoundError(KeyProviderError):
    """The key directory does not exist or holds no keyring."""


class KeyringFormatError(KeyProviderError):
    """The keyring file is malformed."""


class WrongPassphraseError(KeyProviderError):
    """The passphrase or KEK file does not open this keyring."""


class UnwrapError(KeyProviderError):
    """A wrapped data key could not be unwrapped: wrong key, tampered blob, or another provider's key."""
