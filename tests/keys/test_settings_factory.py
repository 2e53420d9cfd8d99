"""Key settings from TOML/JSON and environment, and the factory that opens each provider from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.keys.devservers import OpenBaoDevServer
from strongroom.keys.errors import KeySettingsError, ProviderAuthError, QuorumRequiredError
from strongroom.keys.factory import open_provider
from strongroom.keys.hpke import write_private_key, write_public_key
from strongroom.keys.local import LocalKeyring
from strongroom.keys.openbao import OpenBaoTransit
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.keys.settings import KeySettings, Secret
from strongroom.keys.shamir import ShamirProvider

from .conftest import HSM_PIN, KEK_LABEL, Custodians, Hsm, bind

Write = Callable[..., Path]
TEST_PASSPHRASE = "settings test passphrase"


def _round_trip(provider: object) -> None:
    dek, wrapped = provider.generate_data_key(bind())  # type: ignore[attr-defined]
    assert provider.unwrap(wrapped) == dek  # type: ignore[attr-defined]
    provider.close()  # type: ignore[attr-defined]


def test_defaults_to_local_without_anything() -> None:
    settings = KeySettings.load(env={})
    assert settings.provider == "local" and settings.local.keys is None
    with pytest.raises(KeySettingsError, match="needs a key directory"):
        open_provider(settings)


def test_pkcs11_from_toml_and_env(hsm: Hsm, pkcs11_provider: Pkcs11Provider, write_settings: Write) -> None:
    path = write_settings(
        f'provider = "pkcs11"\n[pkcs11]\nmodule = "{hsm.main.module}"\ntoken_label = "{hsm.main.label}"\n'
        f'key_label = "{KEK_LABEL}"\n'
    )
    settings = KeySettings.load(path, env={"STRONGROOM_PKCS11_PIN": HSM_PIN})
    assert settings.pkcs11 is not None and settings.pkcs11.pin == Secret(HSM_PIN)
    assert HSM_PIN not in repr(settings)
    provider = open_provider(settings)
    assert isinstance(provider, Pkcs11Provider) and provider.key_id == pkcs11_provider.key_id
    _round_trip(provider)


def test_pkcs11_pin_file_and_env_override(hsm: Hsm, pkcs11_provider: Pkcs11Provider, write_settings: Write) -> None:
    pin_file = write_settings(HSM_PIN + "\n", name="pin")
    path = write_settings(f'[pkcs11]\ntoken_label = "wrong"\nkey_label = "{KEK_LABEL}"\npin_file = "{pin_file.name}"\n')
    env = {"STRONGROOM_KEY_PROVIDER": "pkcs11", "STRONGROOM_PKCS11_TOKEN_LABEL": hsm.main.label}
    settings = KeySettings.load(path, env=env)
    assert settings.provider == "pkcs11" and settings.pkcs11 and settings.pkcs11.token_label == hsm.main.label
    _round_trip(open_provider(settings))


def test_pkcs11_wrong_pin_through_settings(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    env = {
        "STRONGROOM_KEY_PROVIDER": "pkcs11",
        "STRONGROOM_PKCS11_TOKEN_LABEL": hsm.main.label,
        "STRONGROOM_PKCS11_PIN": "not-the-pin",
    }
    with pytest.raises(ProviderAuthError) as info:
        open_provider(KeySettings.load(env=env))
    assert "not-the-pin" not in str(info.value)


def test_pkcs11_without_pin(hsm: Hsm) -> None:
    env = {"STRONGROOM_KEY_PROVIDER": "pkcs11", "STRONGROOM_PKCS11_TOKEN_LABEL": hsm.main.label}
    with pytest.raises(KeySettingsError, match="STRONGROOM_PKCS11_PIN"):
        open_provider(KeySettings.load(env=env))


def test_openbao_from_json(bao: OpenBaoDevServer, write_settings: Write) -> None:
    doc = {"provider": "openbao", "openbao": {"address": bao.address, "key_name": bao.key_name, "timeout_s": 3}}
    path = write_settings(json.dumps(doc), name="keys.json")
    settings = KeySettings.load(path, env={"STRONGROOM_OPENBAO_TOKEN": bao.root_token})
    assert bao.root_token not in repr(settings)
    provider = open_provider(settings)
    assert isinstance(provider, OpenBaoTransit)
    _round_trip(provider)


def test_openbao_from_env_only(bao: OpenBaoDevServer) -> None:
    env = {
        "STRONGROOM_KEY_PROVIDER": "openbao",
        "STRONGROOM_OPENBAO_ADDRESS": bao.address,
        "STRONGROOM_OPENBAO_TOKEN": bao.root_token,
    }
    _round_trip(open_provider(KeySettings.load(env=env)))


def test_shamir_from_settings(custodians: Custodians, tmp_path: Path, write_settings: Write) -> None:
    for i, name in enumerate(["alice", "bob", "carol"]):
        write_public_key(tmp_path / f"{name}.pub.pem", custodians.private[i].public_key())
        write_private_key(tmp_path / f"{name}.pem", custodians.private[i], b"custodian key file passphrase")
    path = write_settings(
        'provider = "shamir"\n[shamir]\nthreshold = 2\ncustodians = ["alice.pub.pem", "bob.pub.pem", "carol.pub.pem"]\n'
    )
    provider = open_provider(KeySettings.load(path, env={}))
    assert isinstance(provider, ShamirProvider)
    assert [c.name for c in provider.custodians] == ["alice", "bob", "carol"]
    assert provider.key_id == ShamirProvider(custodians.public[:3], 2).key_id
    _, wrapped = provider.generate_data_key(bind())
    with pytest.raises(QuorumRequiredError):
        provider.unwrap(wrapped)
    env = {
        "STRONGROOM_SHAMIR_CUSTODIAN_PRIVATE_KEYS": f"{tmp_path / 'alice.pem'}:{tmp_path / 'carol.pem'}",
        "STRONGROOM_SHAMIR_CUSTODIAN_KEY_PASSPHRASE": "custodian key file passphrase",
    }
    local = open_provider(KeySettings.load(path, env=env))
    assert len(local.unwrap(wrapped)) == 32


def test_local_from_settings(tmp_path: Path, write_settings: Write) -> None:
    keydir = tmp_path / "ring"
    LocalKeyring.init(keydir, passphrase=TEST_PASSPHRASE, scrypt_n=2**12).close()
    path = write_settings('[local]\nkeys = "ring"\n')
    settings = KeySettings.load(path, env={"STRONGROOM_PASSPHRASE": TEST_PASSPHRASE})
    assert settings.provider == "local" and settings.local.keys == keydir
    _round_trip(open_provider(settings))
    asked: list[bool] = []
    no_env = KeySettings.load(path, env={})
    _round_trip(open_provider(no_env, ask_passphrase=lambda: asked.append(True) or TEST_PASSPHRASE))
    assert asked == [True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('provider = "vault"\n', "not one of"),
        ('provider = "pkcs11"\n', r"\[pkcs11\] settings are missing"),
        ('[pkcs11]\ntoken_label = "t"\npin = "1234"\n', "must not be written in the settings file"),
        ('[openbao]\ntoken = "s.x"\n', "must not be written in the settings file"),
        ('[pkcs11]\ntoken_label = "t"\nmechanism = "DES"\n', "mechanism"),
        ('[pkcs11]\ntoken_label = "t"\nmechanism = "AES_KEY_WRAP_PAD"\n', "cannot bind a key to its model"),
        ('[pkcs11]\ntoken_label = ""\n', "token_label must be a non-empty string"),
        ("[pkcs11]\ntoken_label = 3\n", "token_label"),
        ('[pkcs11]\ntoken_label = "t"\ncreate_key = "maybe"\n', "create_key"),
        ('[pkcs11]\ntoken_label = "t"\ncolour = "red"\n', "unknown field"),
        ("[openbao]\ntimeout_s = -1\n", "timeout_s must be positive"),
        ('[openbao]\ntimeout_s = "soon"\n', "timeout_s must be a number"),
        ('[shamir]\ncustodians = ["a.pem"]\n', "threshold"),
        ("[shamir]\nthreshold = 2\n", "custodians"),
        ('[shamir]\nthreshold = 1.5\ncustodians = ["a.pem"]\n', "threshold must be a number"),
        ('[shamir]\nthreshold = 1\ncustodians = "a.pem"\n', "list of paths"),
        ("[hsm]\nx = 1\n", "unknown key"),
        ('pkcs11 = "x"\n', "must be a table"),
        ("provider = \n", "not valid TOML"),
    ],
)
def test_bad_settings(write_settings: Write, text: str, message: str) -> None:
    path = write_settings(text)
    with pytest.raises(KeySettingsError, match=message) as info:
        KeySettings.load(path, env={})
    assert str(path) in str(info.value)


def test_bad_json_and_missing_file(write_settings: Write, tmp_path: Path) -> None:
    with pytest.raises(KeySettingsError, match="not valid JSON"):
        KeySettings.load(write_settings("{", name="k.json"), env={})
    with pytest.raises(KeySettingsError, match="cannot read"):
        KeySettings.load(tmp_path / "absent.toml", env={})
    with pytest.raises(KeySettingsError, match="table/object"):
        KeySettings.load(write_settings("[1, 2]", name="l.json"), env={})


def test_explicit_provider_wins(write_settings: Write) -> None:
    path = write_settings('provider = "openbao"\n[openbao]\n')
    assert KeySettings.load(path, env={"STRONGROOM_KEY_PROVIDER": "openbao"}, provider="local").provider == "local"


def test_openbao_remote_http_refused_at_open() -> None:
    env = {
        "STRONGROOM_KEY_PROVIDER": "openbao",
        "STRONGROOM_OPENBAO_ADDRESS": "http://192.0.2.1:8200",
        "STRONGROOM_OPENBAO_TOKEN": "t",
    }
    with pytest.raises(KeySettingsError, match="loopback"):
        open_provider(KeySettings.load(env=env))


def test_secret_hides_itself() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2"
