"""Fixtures for incident tests: the key-provider servers (real SoftHSM2, real OpenBao) from tests/keys."""

from __future__ import annotations

from tests.keys.conftest import bao, hsm  # noqa: F401  (pytest fixtures)
