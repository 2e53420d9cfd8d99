"""PCR numbering and arithmetic for the measured loader and model (TPM 2.0 Library Part 1, 17 "PCR").

A PCR is only ever extended: ``new = H(old || digest)`` (Part 1, 17.7; Part 3, 22.2 TPM2_PCR_Extend). The
SHA-256 bank is the one Strongroom reads and quotes.

PCR numbers. Tests, the demo and the benchmarks use PCR 23 for the loader and PCR 16 for the model: the TCG
PC Client Platform Firmware Profile makes 16 (debug) and 23 (application support) resettable from locality
0, so a test can start from zeros on one long-lived swtpm. **That is exactly why a real deployment must not
use them**: a root user on the host can reset PCR 23 and extend it with the golden loader digest while
running something else. A deployment measures the loader into a PCR that only resets with the platform,
after the boot chain has measured the kernel (PCR 8-9 from the boot loader, 11 for a unified kernel image,
10 for IMA): for example the loader extended into PCR 14 or 15 by a systemd unit that runs before any
login (``systemd-pcrextend``), with PCRs 0-7 (firmware, Secure Boot state) and the boot PCRs in the golden
values too; the model PCR then also lives in a non-resettable PCR and the verifier replays the extends it
knows of from the log of loads. ``PcrLayout`` carries the numbers so nothing else hard-codes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from strongroom.attest.errors import TpmFormatError

LOADER_PCR: Final = 23
MODEL_PCR: Final = 16
PCR_SIZE: Final = 32  # SHA-256 bank
ZERO_PCR: Final = bytes(PCR_SIZE)


@dataclass(frozen=True)
class PcrLayout:
    """Which PCR holds the loader measurement and which the model measurement."""

    loader: int = LOADER_PCR
    model: int = MODEL_PCR

    def __post_init__(self) -> None:
        if self.loader == self.model or not (0 <= self.loader <= 23 and 0 <= self.model <= 23):
            raise TpmFormatError("loader and model PCRs must be two distinct PCRs 0-23")


TEST_LAYOUT: Final = PcrLayout()


def extend_value(old: bytes, digest: bytes) -> bytes:
    """The SHA-256 bank's value after TPM2_PCR_Extend(digest): SHA-256(old || digest)."""
    if len(old) != PCR_SIZE or len(digest) != PCR_SIZE:
        raise TpmFormatError("SHA-256 PCR values and extended digests are 32 bytes")
    return hashlib.sha256(old + digest).digest()


def replay(digests: Iterable[bytes], initial: bytes = ZERO_PCR) -> bytes:
    """The value of a PCR that started at ``initial`` after extending each digest in order."""
    value = initial
    for digest in digests:
        value = extend_value(value, digest)
    return value
