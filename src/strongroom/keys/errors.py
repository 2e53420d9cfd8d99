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


class KeyBindingError(KeyProviderError):
    """A key binding (seal id, model id) or a key reference's binding field is missing or malformed."""


class UnwrapError(KeyProviderError):
    """A wrapped data key could not be unwrapped: wrong key, tampered blob, another provider's key, or a
    binding (model id, seal id) other than the one the key was wrapped for."""


class KeySettingsError(KeyProviderError):
    """The key-provider settings (file or environment) are missing a field or hold a bad value."""


class ProviderUnavailableError(KeyProviderError):
    """The key store cannot be reached or loaded (server down, module missing): nothing was done."""


class ProviderAuthError(KeyProviderError):
    """The key store refused our credentials (wrong PIN, wrong or expired token)."""


class KekNotFoundError(KeyProviderError):
    """The named key-encryption key does not exist in the key store (or is ambiguous)."""


class KekPolicyError(KeyProviderError):
    """The key-encryption key exists but its attributes are unsafe (e.g. extractable): refused."""


class BindingMismatchError(UnwrapError):
    """A key reference is bound to another model id (or seal id) than the one it is being used for."""


class QuorumRequiredError(KeyProviderError):
    """A Shamir-split data key can only be recovered by a quorum of custodians, not by the provider alone."""


class ShareError(UnwrapError):
    """A Shamir share is missing, duplicated, corrupted, from the wrong custodian or for another release."""


class ModelMismatchError(BindingMismatchError, ShareError):
    """A custodian approved one model id, but the share they were asked to re-encrypt is bound to another."""


class InsufficientSharesError(ShareError):
    """Fewer distinct shares than the threshold were presented."""


class WeakPassphraseError(KeyProviderError):
    """A passphrase that would protect a key is too short or too easy to guess."""


class HpkeError(KeyProviderError):
    """An HPKE message could not be opened: wrong recipient key, wrong context, or tampered ciphertext."""
