"""SoftwareTpm's lifecycle, and the evidence-verifier registry."""

from __future__ import annotations

import os

import pytest

from strongroom.attest.ca import TestManufacturerCa
from strongroom.attest.errors import EvidenceKindError, SoftwareTpmError
from strongroom.attest.evidence import EvidenceVerifiers, Expectations, TpmQuoteVerifier
from strongroom.attest.golden import GoldenValues
from strongroom.attest.quote import Verdict
from strongroom.attest.swtpm import SoftwareTpm
from tests.attest.conftest import Host


def test_software_tpm_lifecycle(ca: TestManufacturerCa, host_a: Host) -> None:
    tpm = SoftwareTpm(ca)
    with pytest.raises(SoftwareTpmError):
        _ = tpm.tcti
    with tpm:
        assert tpm.tcti.startswith("swtpm:host=127.0.0.1,port=") and tpm.port not in (0, host_a.swtpm.port)
        assert tpm.state_dir.is_absolute() and (tpm.tpm_state / "tpm2-00.permall").is_file()
        pid = tpm.pid
        assert pid is not None
    assert tpm.pid is None and not tpm.state_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


class GpuReport:
    kind = "nvidia-gpu"

    def to_json(self) -> bytes:
        return b"{}"


class FakeGpuVerifier:
    kind = "nvidia-gpu"

    def verify(self, evidence, expectations: Expectations) -> Verdict:
        return Verdict(self.kind, expectations.host_class, b"gpu", expectations.qualifying_data, b"", {})


def test_registry_dispatches_by_kind() -> None:
    verifiers = EvidenceVerifiers([TpmQuoteVerifier(GoldenValues()), FakeGpuVerifier()])
    assert set(verifiers.kinds) == {"tpm-quote", "nvidia-gpu"}
    verdict = verifiers.verify(GpuReport(), Expectations(b"n", "c", b""))
    assert verdict.kind == "nvidia-gpu"
    with pytest.raises(EvidenceKindError):
        TpmQuoteVerifier(GoldenValues()).verify(GpuReport(), Expectations(b"n", "c", b""))
    with pytest.raises(EvidenceKindError):
        EvidenceVerifiers([TpmQuoteVerifier(GoldenValues())]).verify(GpuReport(), Expectations(b"n", "c", b""))
    with pytest.raises(EvidenceKindError):
        EvidenceVerifiers([FakeGpuVerifier(), FakeGpuVerifier()])
