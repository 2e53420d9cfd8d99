"""Interop with the reference tool's own command line, both ways, with default options on both sides.

`strongroom sign DIR --signer-key K.key` must give a signature that `model_signing verify key DIR --signature
DIR/model.sig --public_key K.pub` accepts (its CLI always hashes resources with SHA-256), and a signature
from `model_signing sign key` must pass `strongroom verify`. Tampering and a wrong key must fail in both.
Both tools run as subprocesses, exactly as a user runs them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from safetensors.numpy import save_file

from strongroom.keys import LocalKeyring
from strongroom.manifest import sign_model
from strongroom.signing import Signer

from .conftest import copy_model

SRC = str(Path(__file__).parents[2] / "src")
P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def reference_cli() -> list[str]:
    """The console script model-signing installs (entry point model_signing._cli:main) beside this Python."""
    script = Path(sys.executable).parent / "model_signing"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "model_signing"]


def model_signing_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*reference_cli(), *args], capture_output=True, text=True, check=False, cwd="/")


def strongroom_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args], capture_output=True, text=True, env=env, check=False
    )


def ms_verify(model: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """`model_signing verify key` with default options (SHA-256 files, git paths and the signature ignored)."""
    return model_signing_cli(
        "verify", "key", str(model), "--signature", str(model / "model.sig"), "--public_key", str(public)
    )


def ms_sign(model: Path, private: Path) -> None:
    done = model_signing_cli(
        "sign", "key", str(model), "--signature", str(model / "model.sig"), "--private_key", str(private)
    )
    assert done.returncode == 0, done.stderr


def sr_sign(model: Path, private: Path) -> dict[str, object]:
    done = strongroom_cli("sign", str(model), "--signer-key", str(private), "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def sr_verify(model: Path, public: Path) -> subprocess.CompletedProcess[str]:
    return strongroom_cli("verify", str(model), "--signer", str(public), "--json")


def statement(model: Path) -> dict[str, object]:
    bundle = json.loads((model / "model.sig").read_text())
    payload: dict[str, object] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return payload


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """P-256 identities made by `strongroom keys gen-signer` (model-signing knows elliptic-curve keys only)."""
    root = tmp_path_factory.mktemp("oms-keys")
    for name in ("alice", "mallory"):
        done = strongroom_cli("keys", "gen-signer", str(root / name), "--type", "ecdsa-p256")
        assert done.returncode == 0, done.stderr
    return {"key": root / "alice.key", "pub": root / "alice.pub", "other": root / "mallory.pub"}


def make_synthetic(root: Path) -> Path:
    """A small model exercising the walk: nested folders, an empty file, a space in a name, a hidden file
    (signed by both tools), and git files (ignored by both)."""
    root.mkdir()
    rng = np.random.default_rng(7)
    tensors = {
        "embed.weight": rng.standard_normal((64, 32)).astype(np.float32),
        "layer.0.bias": rng.standard_normal(32).astype(np.float16),
        "layer.0.scale": rng.integers(-128, 127, 48).astype(np.int8),
    }
    save_file(tensors, str(root / "model.safetensors"), metadata={"format": "pt"})
    (root / "config.json").write_text('{"hidden_size": 32}\n')
    (root / "sub" / "dir").mkdir(parents=True)
    (root / "sub" / "dir" / "weights.bin").write_bytes(rng.bytes(70_000))
    (root / "empty.txt").write_bytes(b"")
    (root / "name with spaces.txt").write_text("tokenizer notes\n")
    (root / ".hidden").write_text("signed too\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return root


SIGNED_FILES = {
    ".hidden", "config.json", "empty.txt", "model.safetensors", "name with spaces.txt", "sub/dir/weights.bin",
}  # fmt: skip


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "tiny-model")


@pytest.fixture(params=["real", "synthetic"])
def pristine(request: pytest.FixtureRequest, model_dir: Path, synthetic: Path, tmp_path: Path) -> Path:
    """A fresh copy of the real bundled model (all-MiniLM-L6-v2) or of the synthetic one."""
    source = model_dir if request.param == "real" else synthetic
    return copy_model(source, tmp_path / source.name)


def test_strongroom_default_signature_passes_the_reference_cli(pristine: Path, keys: dict[str, Path]) -> None:
    result = sr_sign(pristine, keys["key"])
    assert result["resource_algorithm"] == "sha256" and result["reference_cli_verifiable"] is True
    signed = statement(pristine)
    predicate = signed["predicate"]
    assert isinstance(predicate, dict)
    assert predicate["serialization"]["hash_type"] == "sha256"
    assert {r["algorithm"] for r in predicate["resources"]} == {"sha256"}
    assert predicate["strongroom"]["algorithm"] == "blake3"  # the model id and per-tensor records stay BLAKE3
    assert predicate["strongroom"]["model_id"] == result["model_id"]
    done = ms_verify(pristine, keys["pub"])
    assert done.returncode == 0, done.stderr
    assert "Verification succeeded" in done.stdout
    ours = sr_verify(pristine, keys["pub"])
    assert ours.returncode == 0, ours.stderr
    report = json.loads(ours.stdout)
    assert report["format"] == "strongroom" and report["model_id"] == result["model_id"] and report["tensors"] > 0
    if pristine.name == "tiny-model":
        assert {r["name"] for r in predicate["resources"]} == SIGNED_FILES


def test_reference_cli_signature_passes_strongroom_verify(pristine: Path, keys: dict[str, Path]) -> None:
    ms_sign(pristine, keys["key"])
    signed = statement(pristine)
    predicate = signed["predicate"]
    assert isinstance(predicate, dict) and "strongroom" not in predicate
    assert "model.sig" in predicate["serialization"]["ignore_paths"]
    done = sr_verify(pristine, keys["pub"])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["format"] == "oms" and report["model_id"] is None
    assert report["files"] == len(predicate["resources"])
    if pristine.name == "tiny-model":
        assert {r["name"] for r in predicate["resources"]} == SIGNED_FILES


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_tensor_byte(model: Path) -> None:
    _flip(model / "model.safetensors", (model / "model.safetensors").stat().st_size - 5)


TAMPERS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (tamper, failure kind for a Strongroom signature, failure kind for a model-signing signature)
    "flip-tensor-byte": (_flip_tensor_byte, "tensor-digest", "file-digest"),
    "flip-file-byte": (lambda m: _flip(m / "config.json", 3), "file-digest", "file-digest"),
    "rename-file": (
        lambda m: (m / "sub" / "dir" / "weights.bin").rename(m / "sub" / "dir" / "weights.bin.old"),
        "missing-file",
        "missing-file",
    ),
    "add-file": (lambda m: (m / "sub" / "added.json").write_text("{}"), "extra-file", "extra-file"),
}


@pytest.fixture(scope="module")
def signed_synthetic(
    synthetic: Path, keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The synthetic model signed once by each tool."""
    root = tmp_path_factory.mktemp("signed")
    by_strongroom = copy_model(synthetic, root / "strongroom" / synthetic.name)
    sr_sign(by_strongroom, keys["key"])
    by_reference = copy_model(synthetic, root / "model-signing" / synthetic.name)
    ms_sign(by_reference, keys["key"])
    for model in (by_strongroom, by_reference):  # untampered, both verify with both tools
        assert ms_verify(model, keys["pub"]).returncode == 0
        assert sr_verify(model, keys["pub"]).returncode == 0
    return {"strongroom": by_strongroom, "model-signing": by_reference}


@pytest.mark.parametrize("signer", ["strongroom", "model-signing"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampering_is_rejected_by_both_tools(
    signed_synthetic: dict[str, Path], keys: dict[str, Path], tmp_path: Path, signer: str, tamper: str
) -> None:
    model = copy_model(signed_synthetic[signer], tmp_path / "tiny-model")
    change, kind_strongroom, kind_reference = TAMPERS[tamper]
    change(model)
    theirs = ms_verify(model, keys["pub"])
    assert theirs.returncode == 1 and "Signature mismatch" in theirs.stderr, theirs.stderr
    ours = sr_verify(model, keys["pub"])
    assert ours.returncode == 1, ours.stdout
    report = json.loads(ours.stdout)
    assert report["ok"] is False
    assert report["failures"][0]["kind"] == (kind_strongroom if signer == "strongroom" else kind_reference)


@pytest.mark.parametrize("signer", ["strongroom", "model-signing"])
def test_real_model_tensor_flip_is_rejected_by_both_tools(
    model_dir: Path, keys: dict[str, Path], tmp_path: Path, signer: str
) -> None:
    model = copy_model(model_dir, tmp_path / "m")
    if signer == "strongroom":
        sr_sign(model, keys["key"])
    else:
        ms_sign(model, keys["key"])
    _flip_tensor_byte(model)  # the last tensor in file order
    theirs = ms_verify(model, keys["pub"])
    assert theirs.returncode == 1 and "model.safetensors" in theirs.stderr
    ours = sr_verify(model, keys["pub"])
    failure = json.loads(ours.stdout)["failures"][0]
    assert ours.returncode == 1
    if signer == "strongroom":
        assert failure["kind"] == "tensor-digest" and failure["where"].startswith("model.safetensors:")
    else:
        assert failure == {
            "kind": "file-digest",
            "where": "model.safetensors",
            "message": "file bytes differ from the signed sha256 digest",
        }


@pytest.mark.parametrize("signer", ["strongroom", "model-signing"])
def test_wrong_public_key_is_rejected_by_both_tools(
    signed_synthetic: dict[str, Path], keys: dict[str, Path], signer: str
) -> None:
    model = signed_synthetic[signer]
    theirs = ms_verify(model, keys["other"])
    assert theirs.returncode == 1 and "Key mismatch" in theirs.stderr
    ours = strongroom_cli("verify", str(model), "--signer", str(keys["other"]))
    assert ours.returncode == 1 and "unknown signer" in ours.stderr


def test_wrong_key_without_hint_is_rejected_by_both_tools(
    signed_synthetic: dict[str, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    """With the key hint removed, both tools must fall back to the signature check itself."""
    model = copy_model(signed_synthetic["strongroom"], tmp_path / "tiny-model")
    bundle = json.loads((model / "model.sig").read_text())
    del bundle["verificationMaterial"]["publicKey"]["hint"]
    (model / "model.sig").write_text(json.dumps(bundle))
    assert ms_verify(model, keys["pub"]).returncode == 0
    assert ms_verify(model, keys["other"]).returncode == 1
    assert strongroom_cli("verify", str(model), "--signer", str(keys["pub"])).returncode == 0
    ours = strongroom_cli("verify", str(model), "--signer", str(keys["other"]))
    assert ours.returncode == 1 and "unknown signer" in ours.stderr


def test_high_s_ecdsa_is_accepted_by_both_tools(
    signed_synthetic: dict[str, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    """Strongroom signs low-S; model-signing signs either half, so verification must not insist on low-S."""
    model = copy_model(signed_synthetic["strongroom"], tmp_path / "tiny-model")
    bundle = json.loads((model / "model.sig").read_text())
    signature = bundle["dsseEnvelope"]["signatures"][0]
    r, s = decode_dss_signature(base64.b64decode(signature["sig"]))
    assert s <= P256_ORDER // 2
    signature["sig"] = base64.b64encode(encode_dss_signature(r, P256_ORDER - s)).decode()
    (model / "model.sig").write_text(json.dumps(bundle))
    assert ms_verify(model, keys["pub"]).returncode == 0
    assert strongroom_cli("verify", str(model), "--signer", str(keys["pub"])).returncode == 0


def test_blake3_resources_are_an_opt_in_the_reference_cli_refuses(
    synthetic: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    """Why SHA-256 is the default: the reference CLI hashes with SHA-256 whatever the statement says."""
    model = copy_model(synthetic, tmp_path / "tiny-model")
    done = strongroom_cli("sign", str(model), "--signer-key", str(keys["key"]), "--resource-algorithm", "blake3")
    assert done.returncode == 0 and "model_signing verify key` cannot check" in done.stdout
    theirs = ms_verify(model, keys["pub"])
    assert theirs.returncode == 1 and "Hash mismatch" in theirs.stderr
    assert strongroom_cli("verify", str(model), "--signer", str(keys["pub"])).returncode == 0


def test_signature_of_a_sealed_copy_verifies_its_plaintext_with_the_reference_cli(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, keys: dict[str, Path], tmp_path: Path
) -> None:
    """The reference tool cannot read sealed files, but the resources are the plaintext's: the signature of
    a sealed copy, put beside the plaintext, passes `model_signing verify key` there."""
    sealed = copy_model(sealed_model, tmp_path / "sealed")
    sign_model(sealed, Signer.load(keys["key"]), keyring)
    plain = copy_model(model_dir, tmp_path / "plain")
    shutil.copy(sealed / "model.sig", plain / "model.sig")
    done = ms_verify(plain, keys["pub"])
    assert done.returncode == 0, done.stderr
    assert sr_verify(plain, keys["pub"]).returncode == 0
