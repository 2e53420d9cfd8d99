"""Fixtures for incident tests: the key-provider servers (real SoftHSM2, real OpenBao) from tests/keys, and a
served custody deployment from tests/custody."""

from __future__ import annotations

from tests.custody.conftest import env, sealed_minilm  # noqa: F401  (pytest fixtures)
from tests.keys.conftest import bao, hsm  # noqa: F401  (pytest fixtures)
