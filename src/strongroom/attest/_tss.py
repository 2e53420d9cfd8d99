"""Lazy access to tpm2-pytss (the ``attest`` extra): only the host side and the two software helpers that
build TPM-bound data (``make_credential``, ``wrap``) need it; quote and EK verification never import it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from strongroom.attest.errors import AttestUnavailableError

# The ESYS library logs every failing command to stderr: failures here are raised as typed errors instead.
os.environ.setdefault("TSS2_LOG", "all+NONE")


def module(name: str = "tpm2_pytss") -> ModuleType:
    """Import a tpm2-pytss module, or raise ``AttestUnavailableError`` naming what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # the package, or the libtss2 shared libraries it links
        raise AttestUnavailableError(
            f"the TPM stack is not available ({exc}): pip install 'strongroom[attest]' with Debian libtss2-dev"
        ) from None


def tss() -> Any:
    """The ``tpm2_pytss`` package (typed loosely: it ships no type information)."""
    return module()


def utils() -> Any:
    return module("tpm2_pytss.utils")
