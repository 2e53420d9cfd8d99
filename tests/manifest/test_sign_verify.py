"""Signing and verification on the real model, and every bad input giving its own error."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from strongroom.keys import LocalKeyring
from strongroom.manifest import sign_model, verify_model
from strongroom.manifest.errors import (
    ExtraFileError,
    HeaderLayoutError,
    MalformedSignatureError,
    MissingFileError,
    SignatureInvalidError,
    SymlinkEscapeError,
    TensorDigestMismatchError,
    TensorRenamedError,
    UnknownSignerError,
    UnsignedModelError,
    WrongModelError,
)
from strongroom.seal import seal_path
from strongroom.signing import Signer, Verifier

from .conftest import LAYER, copy_model, nudged_copy, rewrite_header


@pytest.fixture(scope="module")
def signed(model_dir: Path, signer_keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real model signed with the ECDSA key (copy it again before tampering)."""
    target = copy_model(model_dir, tmp_path_factory.mktemp("signed") / "minilm")
    sign_model(target, Signer.load(signer_keys["ecdsa"].with_suffix(".key")))
    return target


def trusted(signer_keys: dict[str, Path], name: str = "ecdsa") -> Verifier:
    return Verifier.load(signer_keys[name].with_suffix(".pub"))


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_sign_and_verify_both_key_types(
    model_dir: Path, signer_keys: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    target = copy_model(model_dir, tmp_path / "m")
    result = sign_model(target, Signer.load(signer_keys[kind].with_suffix(".key")))
    assert (target / "model.sig").is_file()
    verified = verify_model(target, trusted(signer_keys, kind))
    assert verified.model_id == result.model_id and verified.format == "strongroom"
    assert verified.tensors > 100
    bundle = json.loads((target / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["predicate"]["strongroom"]["model_id"] == result.model_id


def test_sealed_copy_signed_and_verified_and_shares_the_statement(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, signer_keys: dict[str, Path], tmp_path: Path
) -> None:
    sealed = copy_model(sealed_model, tmp_path / "sealed")
    signer = Signer.load(signer_keys["ecdsa"].with_suffix(".key"))
    result = sign_model(sealed, signer, keyring)
    assert verify_model(sealed, trusted(signer_keys), keyring).model_id == result.model_id
    # The signature made over the sealed copy verifies the plaintext copy, and vice versa.
    plain = copy_model(model_dir, tmp_path / "plain")
    (plain / "model.sig").write_bytes((sealed / "model.sig").read_bytes())
    assert verify_model(plain, trusted(signer_keys)).model_id == result.model_id


def test_unsigned_model(model_dir: Path, signer_keys: dict[str, Path]) -> None:
    with pytest.raises(UnsignedModelError, match="unsigned model"):
        verify_model(model_dir, trusted(signer_keys))


def test_unknown_signer(signed: Path, signer_keys: dict[str, Path]) -> None:
    with pytest.raises(UnknownSignerError, match="unknown signer"):
        verify_model(signed, trusted(signer_keys, "other"))


def test_forged_statement(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    target = copy_model(signed, tmp_path / "forged")
    bundle = json.loads((target / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["subject"][0]["name"] = "other"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (target / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(SignatureInvalidError, match="altered or forged"):
        verify_model(target, trusted(signer_keys))


def test_signature_of_another_model(
    signed: Path, signer_keys: dict[str, Path], tmp_path: Path, model_dir: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(os.urandom(4096))
    (other / "config.json").write_text('{"model": "other"}')
    sign_model(other, Signer.load(signer_keys["ecdsa"].with_suffix(".key")))
    target = copy_model(model_dir, tmp_path / "m")
    (target / "model.sig").write_bytes((other / "model.sig").read_bytes())
    with pytest.raises(WrongModelError, match="signature is for another model"):
        verify_model(target, trusted(signer_keys))


def test_missing_and_extra_files(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    missing = copy_model(signed, tmp_path / "missing")
    (missing / "vocab.txt").unlink()
    with pytest.raises(MissingFileError, match="vocab.txt: signed file is missing"):
        verify_model(missing, trusted(signer_keys))
    extra = copy_model(signed, tmp_path / "extra")
    (extra / "1_Pooling" / "notes.txt").write_text("hello")
    with pytest.raises(ExtraFileError, match="1_Pooling/notes.txt: file is not covered"):
        verify_model(extra, trusted(signer_keys))


def test_renamed_tensor(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    target = copy_model(signed, tmp_path / "renamed")
    rewrite_header(
        target / "model.safetensors", lambda h: {("evil.weight" if k == LAYER else k): v for k, v in h.items()}
    )
    with pytest.raises(TensorRenamedError, match=f"tensor '{LAYER}' is now named 'evil.weight'") as info:
        verify_model(target, trusted(signer_keys))
    assert info.value.failures[0].where == f"model.safetensors:{LAYER}"


def test_reordered_header_with_identical_data(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    target = copy_model(signed, tmp_path / "reordered")
    rewrite_header(target / "model.safetensors", lambda h: dict(reversed(list(h.items()))))
    with pytest.raises(HeaderLayoutError, match="canonical form and every tensor match"):
        verify_model(target, trusted(signer_keys))


def test_changed_tensor_is_named(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    target = nudged_copy(signed, tmp_path / "nudged")
    with pytest.raises(TensorDigestMismatchError, match=LAYER):
        verify_model(target, trusted(signer_keys))


def test_flipped_bit_in_sealed_copy(
    model_dir: Path, keyring: LocalKeyring, signer_keys: dict[str, Path], tmp_path: Path
) -> None:
    """A sealed model re-sealed from a tampered plaintext fails against the original's signature."""
    signed_plain = copy_model(model_dir, tmp_path / "plain")
    sign_model(signed_plain, Signer.load(signer_keys["ecdsa"].with_suffix(".key")))
    tampered = nudged_copy(model_dir, tmp_path / "tampered", delta=1e-7)
    sealed = tmp_path / "sealed"
    seal_path(tampered, sealed, keyring)
    (sealed / "model.sig").write_bytes((signed_plain / "model.sig").read_bytes())
    with pytest.raises(TensorDigestMismatchError, match=LAYER):
        verify_model(sealed, trusted(signer_keys), keyring)


def test_symlink_pointing_out(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    target = copy_model(signed, tmp_path / "link")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (target / "vocab.txt").unlink()
    (target / "vocab.txt").symlink_to(outside)
    with pytest.raises(SymlinkEscapeError, match="points outside the model directory"):
        verify_model(target, trusted(signer_keys))
    sig_link = copy_model(signed, tmp_path / "siglink")
    (tmp_path / "elsewhere.sig").write_bytes((sig_link / "model.sig").read_bytes())
    (sig_link / "model.sig").unlink()
    (sig_link / "model.sig").symlink_to(tmp_path / "elsewhere.sig")
    with pytest.raises(SymlinkEscapeError):
        verify_model(sig_link, trusted(signer_keys))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"{not json", "not valid JSON"),
        (lambda b: json.dumps({**json.loads(b), "mediaType": "x"}).encode(), "mediaType"),
        (
            lambda b: json.dumps({k: v for k, v in json.loads(b).items() if k != "dsseEnvelope"}).encode(),
            "dsseEnvelope",
        ),
        (lambda b: b.replace(b'"payload": "', b'"payload": "%%%'), "not valid base64"),
        (lambda b: b[: len(b) // 2], "not valid JSON"),
    ],
)
def test_malformed_signature_file(
    signed: Path, signer_keys: dict[str, Path], tmp_path: Path, mutate: object, message: str
) -> None:
    target = copy_model(signed, tmp_path / "bad")
    (target / "model.sig").write_bytes(mutate((target / "model.sig").read_bytes()))  # type: ignore[operator]
    with pytest.raises(MalformedSignatureError, match=message):
        verify_model(target, trusted(signer_keys))


def test_signed_but_malformed_statement(signed: Path, signer_keys: dict[str, Path], tmp_path: Path) -> None:
    """A statement the trusted key really signed, whose extension does not hash to its model id."""
    from strongroom.manifest.dsse import make_bundle

    target = copy_model(signed, tmp_path / "inconsistent")
    bundle = json.loads((target / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["strongroom"]["tensors"][0]["digest"] = "00" * 32
    signer = Signer.load(signer_keys["ecdsa"].with_suffix(".key"))
    (target / "model.sig").write_text(json.dumps(make_bundle(json.dumps(statement).encode(), signer)))
    with pytest.raises(MalformedSignatureError, match="not the root of its own records"):
        verify_model(target, trusted(signer_keys))
