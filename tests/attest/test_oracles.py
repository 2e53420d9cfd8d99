"""Independent checks: tpm2-tools' tpm2_checkquote agrees with verify_quote, the TPM itself computes the same
PolicyPCR digest as pcr_policy_digest (a trial session), and the PCR arithmetic matches the TPM's."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from strongroom.attest import _tss
from strongroom.attest.binding import pcr_policy_digest
from strongroom.attest.pcrs import TEST_LAYOUT, ZERO_PCR, replay
from strongroom.attest.tpm2 import tpm2b
from tests.attest.conftest import Host

LOADER, MODEL = TEST_LAYOUT.loader, TEST_LAYOUT.model


def checkquote(tmp_path: Path, ak_public: bytes, attest: bytes, signature: bytes, nonce: bytes) -> int:
    tool = shutil.which("tpm2_checkquote")
    assert tool, "tpm2-tools is in .ci/apt-packages"
    (tmp_path / "ak.pub").write_bytes(tpm2b(ak_public))  # TPM2B_PUBLIC, tpm2-tools' "tss" format
    (tmp_path / "quote.msg").write_bytes(attest)
    (tmp_path / "quote.sig").write_bytes(signature)
    args = [tool, "-u", str(tmp_path / "ak.pub"), "-m", str(tmp_path / "quote.msg"), "-s", str(tmp_path / "quote.sig"),
            "-q", nonce.hex(), "-g", "sha256"]  # fmt: skip
    return subprocess.run(args, capture_output=True, timeout=30, check=False).returncode


def test_tpm2_checkquote_agrees(a: Host, tmp_path: Path) -> None:
    nonce = secrets.token_bytes(32)
    quote = a.tpm.quote([LOADER, MODEL], nonce)
    ak = a.tpm.ak_public()
    assert checkquote(tmp_path, ak, quote.attest, quote.signature, nonce) == 0
    assert checkquote(tmp_path, ak, quote.attest, quote.signature, secrets.token_bytes(32)) != 0
    tampered = quote.attest[:-1] + bytes([quote.attest[-1] ^ 1])
    assert checkquote(tmp_path, ak, tampered, quote.signature, nonce) != 0


@pytest.mark.parametrize("pcrs", [[LOADER], [MODEL, LOADER], [0, 7, MODEL, LOADER]])
def test_policy_digest_matches_a_tpm_trial_session(a: Host, pcrs: list[int]) -> None:
    tss = _tss.tss()
    a.tpm.extend(LOADER, secrets.token_bytes(32))
    values = a.tpm.pcr_values(pcrs)
    esys = a.tpm.esys
    session = esys.start_auth_session(
        tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, tss.TPM2_SE.TRIAL, tss.TPMT_SYM_DEF(algorithm=tss.TPM2_ALG.NULL),
        tss.TPM2_ALG.SHA256,
    )  # fmt: skip
    try:
        esys.policy_pcr(session, b"", "sha256:" + ",".join(map(str, sorted(pcrs))))
        assert bytes(esys.policy_get_digest(session)) == pcr_policy_digest(values)
    finally:
        esys.flush_context(session)


def test_pcr_arithmetic_matches_the_tpm(a: Host) -> None:
    digests = [secrets.token_bytes(32) for _ in range(3)]
    for digest in digests:
        a.tpm.extend(LOADER, digest)
    assert a.tpm.pcr_values([LOADER])[LOADER] == replay(digests, ZERO_PCR)
