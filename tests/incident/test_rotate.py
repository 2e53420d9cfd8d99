"""Rotation: the re-seal keeps the model (same id, same bytes) under a new key; the old key stops unwrapping
where the provider can stop it (PKCS#11 object destroyed, OpenBao minimum decryption version); a
provider retirement that would strand another model's key is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from strongroom.incident.errors import ResealError, RetireError
from strongroom.incident.rotate import reseal, retire_openbao, retire_pkcs11
from strongroom.keys import LocalKeyring
from strongroom.keys.devservers import OpenBaoDevServer
from strongroom.keys.errors import KeyProviderError
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.manifest.build import manifest_of_sealed
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from tests.keys.conftest import HSM_PIN, Hsm


def same_tensors(a: Path, pa: object, b: Path, pb: object) -> None:
    with SealedModel.open(a, pa) as one, SealedModel.open(b, pb) as two:  # type: ignore[arg-type]
        left, right = one.load_tensors(), two.load_tensors()
        assert left.keys() == right.keys()
        for name in left:
            np.testing.assert_array_equal(left[name], right[name])


def test_reseal_keeps_the_model_under_a_new_key(sealed_model: Path, keyring: LocalKeyring, tmp_path: Path) -> None:
    seen: list[int] = []
    out = reseal(sealed_model, tmp_path / "resealed", keyring, keyring, progress=seen.append)
    old = SealedModel.inspect(sealed_model)
    new = SealedModel.inspect(out.sealed)
    assert out.model_id == old.model_id == new.model_id
    assert new.seal_id != old.seal_id and new.key.blob != old.key.blob
    assert sum(seen) == out.plaintext_bytes
    with SealedModel.open(out.sealed, keyring) as opened:
        assert manifest_of_sealed(opened).model_id == out.model_id
    same_tensors(sealed_model, keyring, out.sealed, keyring)
    assert not any(p.suffix not in (".sealed", ".json") for p in out.sealed.rglob("*") if p.is_file())
    with pytest.raises(ResealError, match="already exists"):
        reseal(sealed_model, out.sealed, keyring, keyring)


@pytest.mark.parametrize("where", ["first half", "last segment"])
def test_a_tampered_source_leaves_no_output(
    sealed_model: Path, keyring: LocalKeyring, tmp_path: Path, where: str
) -> None:
    """The re-seal decrypts twice (digest, then encryption): a flipped bit is caught by AES-GCM in the
    first pass wherever it is, and nothing is left at the output or beside it."""
    source = tmp_path / "source"
    shutil.copytree(sealed_model, source)
    member = source / "model.safetensors.sealed"
    raw = bytearray(member.read_bytes())
    raw[len(raw) // 3 if where == "first half" else len(raw) - 40] ^= 0x01
    member.write_bytes(bytes(raw))
    out = tmp_path / "out" / "resealed"
    out.parent.mkdir()
    with pytest.raises(ResealError, match="re-seal failed, nothing written"):
        reseal(source, out, keyring, keyring)
    assert list(out.parent.iterdir()) == []


def test_pkcs11_old_key_no_longer_unwraps(model_dir: Path, hsm: Hsm, tmp_path: Path) -> None:
    os.environ["SOFTHSM2_CONF"] = str(hsm.main.conf)
    old = Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "kek-2026-11", create_key=True)
    new = Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "kek-2026-12", create_key=True)
    try:
        seal_model(model_dir, tmp_path / "v1", old)
        old_key = SealedModel.inspect(tmp_path / "v1").key
        out = reseal(tmp_path / "v1", tmp_path / "v2", old, new)
        with pytest.raises(RetireError, match="would be stranded"):
            retire_pkcs11(old_key, [old_key], module=hsm.main.module, token=hsm.main.label, pin=HSM_PIN)
        done = retire_pkcs11(old_key, [out.key], module=hsm.main.module, token=hsm.main.label, pin=HSM_PIN)
        assert "destroyed" in done.action
        with pytest.raises(KeyProviderError):
            old.unwrap(old_key)  # the object is gone from the token
        with pytest.raises(KeyProviderError):
            Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "kek-2026-11")
        SealedModel.open(out.sealed, new).close()
    finally:
        old.close()
        new.close()


def test_openbao_old_version_no_longer_decrypts(model_dir: Path, bao: OpenBaoDevServer, tmp_path: Path) -> None:
    bao.create_key("rotating")
    transit = OpenBaoTransit(bao.address, bao.root_token, "rotating")
    try:
        seal_model(model_dir, tmp_path / "v1", transit)
        old_key = SealedModel.inspect(tmp_path / "v1").key
        with pytest.raises(RetireError, match="not rotated"):
            retire_openbao(old_key, [], transit)
        assert transit.rotate() == 2
        out = reseal(tmp_path / "v1", tmp_path / "v2", transit, transit)
        assert out.key.blob.startswith(b"vault:v2:")
        with pytest.raises(RetireError, match="stranded"):
            retire_openbao(old_key, [old_key, out.key], transit)
        done = retire_openbao(old_key, [out.key], transit)
        assert "min_decryption_version raised to 2" in done.action
        with pytest.raises(KeyProviderError):
            transit.unwrap(old_key)
        with pytest.raises(KeyProviderError):
            SealedModel.open(tmp_path / "v1", transit)
        SealedModel.open(out.sealed, transit).close()
    finally:
        transit.close()


def test_the_reseal_writes_only_ciphertext_inside_its_output(
    model_dir: Path, sealed_model: Path, keyring: LocalKeyring, tmp_path: Path
) -> None:
    """Every file the re-seal creates or writes is under the output's staging directory, and no byte run of
    the plaintext appears in anything it wrote (the plaintext lives in anonymous memory only)."""
    from tests.seal.test_no_plaintext_on_disk import forbid_writes

    out = tmp_path / "out" / "resealed"
    with forbid_writes() as events:
        reseal(sealed_model, out, keyring, keyring)
    named = [e for e in events if "/" in e]  # the rest act on descriptors those created (truncate, fdopen)
    assert named and all(str(out.parent) in e for e in named), [e for e in named if str(out.parent) not in e]
    assert not any("left in temp dir" in e for e in events)
    plain = (model_dir / "model.safetensors").read_bytes()
    samples = [plain[i : i + 64] for i in range(len(plain) // 3, len(plain), len(plain) // 5)]
    samples.append((model_dir / "tokenizer.json").read_bytes()[:64])
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in samples), path


def test_shamir_rotation_supersedes_the_old_shares(model_dir: Path, tmp_path: Path) -> None:
    """The offline recovery ceremony (three old custodians at one machine) re-seals under shares for the
    custodians' new keys; the old custodians' keys open nothing of the new seal."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from strongroom.keys.shamir import CustodianPublicKey, ShamirProvider

    names = ["alice", "bob", "carol", "dave", "erin"]
    old_keys = [X25519PrivateKey.generate() for _ in names]
    new_keys = [X25519PrivateKey.generate() for _ in names]
    old = ShamirProvider(
        [CustodianPublicKey(n, k.public_key()) for n, k in zip(names, old_keys, strict=True)], 3,
        local_custodian_keys=old_keys[:3],
    )  # fmt: skip
    new = ShamirProvider([CustodianPublicKey(n, k.public_key()) for n, k in zip(names, new_keys, strict=True)], 3)
    seal_model(model_dir, tmp_path / "v1", old)
    out = reseal(tmp_path / "v1", tmp_path / "v2", old, new)
    assert out.key.key_id == new.key_id != old.key_id
    stale = ShamirProvider(
        [CustodianPublicKey(n, k.public_key()) for n, k in zip(names, new_keys, strict=True)], 3,
        local_custodian_keys=[],
    )  # fmt: skip
    with pytest.raises(KeyProviderError):
        stale.unwrap(out.key)  # no quorum of new custodian keys: nothing opens
    with pytest.raises(KeyProviderError):
        old.unwrap(out.key)  # the old custodians' keys name another provider key id
    recovered = ShamirProvider(new.custodians, 3, local_custodian_keys=new_keys[2:5])
    SealedModel.open(out.sealed, recovered).close()
