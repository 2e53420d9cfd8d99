"""Interop with the OpenSSF model signing format, both ways, using the ``model-signing`` package itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import model_signing
import pytest

from strongroom.keys import LocalKeyring
from strongroom.manifest import sign_model, verify_model
from strongroom.manifest.errors import FileDigestMismatchError, MalformedSignatureError, UnknownSignerError
from strongroom.signing import Signer, Verifier

from .conftest import DATA, copy_model


def oms_verify(model: Path, public: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(model, model / "model.sig")


def oms_sign(model: Path, private: Path) -> None:
    hashing = model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
    config = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
    config.set_hashing_config(hashing).sign(model, model / "model.sig")


@pytest.mark.parametrize("resource_algorithm", ["blake3", "sha256"])
def test_strongroom_signature_verifies_with_model_signing(
    model_dir: Path, signer_keys: dict[str, Path], tmp_path: Path, resource_algorithm: str
) -> None:
    target = copy_model(model_dir, tmp_path / "m")
    sign_model(target, Signer.load(signer_keys["ecdsa"].with_suffix(".key")), resource_algorithm=resource_algorithm)
    oms_verify(target, signer_keys["ecdsa"].with_suffix(".pub"))
    (target / "vocab.txt").write_text("tampered")
    with pytest.raises(ValueError, match="Signature mismatch"):
        oms_verify(target, signer_keys["ecdsa"].with_suffix(".pub"))


def test_model_signing_signature_verifies_with_strongroom(
    model_dir: Path, signer_keys: dict[str, Path], tmp_path: Path
) -> None:
    target = copy_model(model_dir, tmp_path / "m")
    oms_sign(target, signer_keys["ecdsa"].with_suffix(".key"))
    result = verify_model(target, Verifier.load(signer_keys["ecdsa"].with_suffix(".pub")))
    assert result.format == "oms" and result.files >= 12
    with pytest.raises(UnknownSignerError):
        verify_model(target, Verifier.load(signer_keys["other"].with_suffix(".pub")))
    (target / "config.json").write_text("{}")
    with pytest.raises(FileDigestMismatchError, match="config.json"):
        verify_model(target, Verifier.load(signer_keys["ecdsa"].with_suffix(".pub")))


def test_model_signing_signature_verifies_the_sealed_copy(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, signer_keys: dict[str, Path], tmp_path: Path
) -> None:
    plain = copy_model(model_dir, tmp_path / "plain")
    oms_sign(plain, signer_keys["ecdsa"].with_suffix(".key"))
    sealed = copy_model(sealed_model, tmp_path / "sealed")
    shutil.copy(plain / "model.sig", sealed / "model.sig")
    assert verify_model(sealed, Verifier.load(signer_keys["ecdsa"].with_suffix(".pub")), keyring).format == "oms"


@pytest.mark.parametrize("version", ["v1.0.1-elliptic-key", "v1.1.0-elliptic-key"])
def test_model_transparency_fixtures(version: str, tmp_path: Path) -> None:
    """model-signing's own signed test models (P-384 key) verify with Strongroom; tampering is caught."""
    model = copy_model(DATA / version, tmp_path / version)
    public = Verifier.load(DATA / "keys" / "signing-key-pub.pem")
    result = verify_model(model, public, ignore_paths=("ignore-me",))
    assert result.files == 2 and result.format == "oms"
    (model / "signme-2").write_bytes(b"tampered")
    with pytest.raises(FileDigestMismatchError, match="signme-2"):
        verify_model(model, public, ignore_paths=("ignore-me",))


def test_certificate_bundles_are_refused_clearly(tmp_path: Path, signer_keys: dict[str, Path]) -> None:
    import json

    model = copy_model(DATA / "v1.1.0-elliptic-key", tmp_path / "m")
    bundle = json.loads((model / "model.sig").read_text())
    bundle["verificationMaterial"] = {"x509CertificateChain": {"certificates": []}}
    (model / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(MalformedSignatureError, match="certificate"):
        verify_model(model, Verifier.load(DATA / "keys" / "signing-key-pub.pem"), ignore_paths=("ignore-me",))
