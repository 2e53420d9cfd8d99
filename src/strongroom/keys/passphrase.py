"""How strong a passphrase that protects a key must be.

A key file's passphrase is the only thing between a copied file and the key, and scrypt only slows each
guess down: a guessable passphrase falls to an offline attack. The rule: at least 12 characters and a
zxcvbn score of 4 (Dropbox's estimator, which knows dictionary words, names, keyboard patterns, dates,
repeats and l33t substitutions: score 4 means at least 10^10 guesses). Four or more random words pass.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

from strongroom.keys.errors import WeakPassphraseError

MIN_LENGTH = 12
MIN_SCORE = 4
_ESTIMATED = 100  # zxcvbn is quadratic in length; beyond this a passphrase is long enough anyway


def check_passphrase(passphrase: str, what: str = "passphrase") -> None:
    """Raise WeakPassphraseError, saying why, unless ``passphrase`` is long and hard to guess."""
    advice = "use at least 12 characters that are hard to guess, such as four or more random words"
    if len(passphrase) < MIN_LENGTH:
        raise WeakPassphraseError(f"{what} is too short ({len(passphrase)} characters): {advice}")
    estimate = zxcvbn(passphrase[:_ESTIMATED])
    if estimate["score"] < MIN_SCORE:
        warning = str(estimate["feedback"].get("warning") or "it follows a common pattern").rstrip(".")
        guesses = f"about 10^{estimate['guesses_log10']:.0f} guesses"
        raise WeakPassphraseError(f"{what} is too easy to guess ({guesses}; {warning}): {advice}")
