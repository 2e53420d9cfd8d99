"""The demo's attested host: gpu-node-01 on a software TPM (swtpm) whose EK certificate a demo manufacturer
CA issued. Where swtpm or tpm2-pytss is missing the demo runs without attestation and says so.

The officers trust the demo CA and set the golden values of host class ``inference`` to this build's loader
digest (``policy.tpm-ca``, ``policy.golden``); the host creates its AK for its identity key, the officers'
tool runs credential activation against its TPM and both co-sign ``host.enrol``; the host measures its
loader into PCR 23 as measured boot would. docs/attestation.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.attest.ca import TestManufacturerCa
from strongroom.attest.enrol import EnrolmentEvidence
from strongroom.attest.errors import AttestError
from strongroom.attest.host import HostTpm
from strongroom.attest.loader import loader_digest
from strongroom.attest.pcrs import replay
from strongroom.attest.swtpm import SoftwareTpm
from strongroom.custody import admin
from strongroom.custody.attestation import LAYOUT
from strongroom.custody.host import HostSession

HOST_CLASS = "inference"
MODEL_PCR = LAYOUT.model
Officers = Callable[[admin.Proposal], dict[str, Any]]


@dataclass
class DemoTpm:
    """A running software TPM, the demo manufacturer CA that certified its EK, and this build's loader digest."""

    ca: TestManufacturerCa
    swtpm: SoftwareTpm
    tpm: HostTpm
    loader: bytes

    def close(self) -> None:
        self.tpm.close()
        self.swtpm.stop()


def start(workdir: Path, say: Callable[[str], None]) -> DemoTpm | None:
    """Start gpu-node-01's software TPM, or None (said) where this machine has no swtpm or tpm2-pytss."""
    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        say("no swtpm on this machine (apt-get install swtpm swtpm-tools): gpu-node-01 runs without a TPM")
        return None
    try:
        ca = TestManufacturerCa.create(workdir / "tpm-manufacturer", "Demo TPM Manufacturer")
        swtpm = SoftwareTpm(ca, workdir / "gpu-node-01-tpm").start()
    except AttestError as exc:
        say(f"software TPM unavailable ({exc}): gpu-node-01 runs without a TPM")
        return None
    try:
        tpm = HostTpm(swtpm.tcti)
    except AttestError as exc:
        swtpm.stop()
        say(f"TPM stack unavailable ({exc}): gpu-node-01 runs without a TPM")
        return None
    return DemoTpm(ca, swtpm, tpm, loader_digest())


def set_policy(demo: DemoTpm, two_officers: Officers, say: Callable[[str], None]) -> None:
    """The two officers trust the demo manufacturer CA and set host class inference's golden values."""
    ca = two_officers(admin.trust_manufacturer_ca(demo.ca.cert_pem))
    golden = two_officers(admin.golden_values(HOST_CLASS, {LAYOUT.loader: [replay([demo.loader])]}))
    say(
        f"officers trusted the TPM manufacturer CA (ledger entry {ca['ledger']['index']}) and set host class "
        f"{HOST_CLASS}'s golden loader PCR {LAYOUT.loader} to this build's loader digest {demo.loader.hex()[:16]}… "
        f"(ledger entry {golden['ledger']['index']})"
    )


def enrol(
    demo: DemoTpm, host: HostSession, two_officers: Officers, say: Callable[[str], None], **details: str
) -> dict[str, Any]:
    """Enrol gpu-node-01 with TPM evidence after credential activation; measure its loader."""
    pem = host.identity.verifier.pem()
    evidence = EnrolmentEvidence(demo.tpm.ek_certificate(), demo.tpm.ek_public(), demo.tpm.create_ak(pem))
    enrolled = two_officers(
        admin.enrol_attested_host(
            host.host_id, public_key=pem.decode(), host_class=HOST_CLASS, evidence=evidence,
            trusted_cas=[demo.ca.cert_pem], activate=demo.tpm.activate_credential, **details,
        )
    )  # fmt: skip
    demo.tpm.reset(LAYOUT.loader)
    demo.tpm.reset(LAYOUT.model)
    demo.tpm.extend(LAYOUT.loader, demo.loader)
    say(
        f"enrolled host {host.host_id} with its identity key and its TPM: EK certificate chained to the "
        f"manufacturer CA, AK {evidence.ak.name.hex()[:16]}… bound to the identity key and activated in that TPM "
        f"(ledger entry {enrolled['ledger']['index']}); loader measured into PCR {LAYOUT.loader}"
    )
    return enrolled


def verdict_line(body: dict[str, Any]) -> str:
    """One line for the attestation verdict a key.released (or model.loaded) entry carries."""
    record = body.get("attestation")
    if not isinstance(record, dict):
        return "no attestation (the model's policy does not require it)"
    verdict = record.get("verdict", record)
    pcrs = ", ".join(f"PCR {pcr} {value[:12]}…" for pcr, value in sorted(verdict["pcrs"].items()))
    return f"{verdict['result']} (host class {verdict['host_class']}, AK {verdict['ak_name'][:16]}…, {pcrs})"
