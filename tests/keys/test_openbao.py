"""OpenBao transit provider against a real ``bao server -dev`` on loopback: round trips and failing closed."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import httpx
import pytest

from strongroom.keys.devservers import OpenBaoDevServer, free_port
from strongroom.keys.errors import (
    KekNotFoundError,
    KekPolicyError,
    KeyProviderError,
    KeySettingsError,
    ProviderAuthError,
    ProviderUnavailableError,
    UnwrapError,
)
from strongroom.keys.openbao import BINDING_DOMAIN, OpenBaoTransit, check_address
from strongroom.keys.provider import KeyProvider, WrappedKey

from .conftest import bind


def test_is_a_key_provider(transit: OpenBaoTransit) -> None:
    assert isinstance(transit, KeyProvider)
    assert transit.provider == "openbao" and transit.key_id == "transit/strongroom"


def test_round_trip(transit: OpenBaoTransit) -> None:
    dek, wrapped = transit.generate_data_key(bind())
    assert len(dek) == 32 and wrapped.blob.startswith(b"vault:v1:")
    assert transit.unwrap(WrappedKey.from_json(wrapped.to_json())) == dek
    assert transit.unwrap(transit.wrap(dek, wrapped.binding)) == dek


def test_tampered_ciphertext_refused(transit: OpenBaoTransit) -> None:
    _, wrapped = transit.generate_data_key(bind())
    text = wrapped.blob.decode()
    flipped = text[:-6] + ("A" if text[-6] != "A" else "B") + text[-5:]
    with pytest.raises(UnwrapError, match="refused"):
        transit.unwrap(WrappedKey("openbao", transit.key_id, flipped.encode(), wrapped.binding))


@pytest.mark.parametrize("blob", [b"", b"vault:v1:", b"not-a-ciphertext", b"vault:v1:\xff\xfe", b"vault:v9:AAAA"])
def test_malformed_blobs_refused(transit: OpenBaoTransit, blob: bytes) -> None:
    with pytest.raises(UnwrapError):
        transit.unwrap(WrappedKey("openbao", transit.key_id, blob, bind()))


def test_other_key_cannot_unwrap(bao: OpenBaoDevServer, transit: OpenBaoTransit) -> None:
    bao.create_key("second")
    _, wrapped = transit.generate_data_key(bind())
    with OpenBaoTransit(bao.address, bao.root_token, "second") as second:
        with pytest.raises(UnwrapError, match="wrapped by openbao:transit/strongroom"):
            second.unwrap(wrapped)
        with pytest.raises(UnwrapError, match="refused"):
            second.unwrap(WrappedKey("openbao", second.key_id, wrapped.blob, wrapped.binding))


def test_wrong_token(bao: OpenBaoDevServer) -> None:
    with pytest.raises(ProviderAuthError) as info:
        OpenBaoTransit(bao.address, "s.wrong-token", bao.key_name)
    assert "wrong-token" not in str(info.value)


def test_token_revoked_after_open(bao: OpenBaoDevServer) -> None:
    token = bao.create_token(
        'path "transit/datakey/plaintext/strongroom" { capabilities = ["update"] }\n'
        'path "transit/decrypt/strongroom" { capabilities = ["update"] }\n',
        "revocable",
    )
    provider = OpenBaoTransit(bao.address, token, bao.key_name)
    dek, wrapped = provider.generate_data_key(bind())
    assert provider.unwrap(wrapped) == dek
    with bao.client() as c:
        c.post("/v1/auth/token/revoke", json={"token": token}).raise_for_status()
    with pytest.raises(ProviderAuthError, match="permission denied"):
        provider.unwrap(wrapped)
    provider.close()


def test_least_privilege_token_limits(bao: OpenBaoDevServer, transit: OpenBaoTransit) -> None:
    """A token allowed only to create data keys cannot unwrap them: OpenBao's policy is enforced."""
    token = bao.create_token('path "transit/datakey/plaintext/strongroom" { capabilities = ["update"] }\n', "sealer")
    with OpenBaoTransit(bao.address, token, bao.key_name) as sealer:
        dek, wrapped = sealer.generate_data_key(bind())
        with pytest.raises(ProviderAuthError):
            sealer.unwrap(wrapped)
    assert transit.unwrap(wrapped) == dek


def test_missing_key(bao: OpenBaoDevServer) -> None:
    with pytest.raises(KekNotFoundError, match="no transit key transit/absent"):
        OpenBaoTransit(bao.address, bao.root_token, "absent")


def test_exportable_key_refused(bao: OpenBaoDevServer) -> None:
    bao.create_key("leaky", exportable=True)
    with pytest.raises(KekPolicyError, match="exportable"):
        OpenBaoTransit(bao.address, bao.root_token, "leaky")


def test_associated_data_is_the_documented_binding(bao: OpenBaoDevServer, transit: OpenBaoTransit) -> None:
    """Straight to the transit API: the ciphertext decrypts with exactly the documented associated_data, and
    OpenBao itself refuses it with none or with another binding (AES-GCM AD checked in the server)."""
    binding = bind()
    dek, wrapped = transit.generate_data_key(binding)

    def decrypt(ad: bytes | None) -> httpx.Response:
        body = {"ciphertext": wrapped.blob.decode()}
        if ad is not None:
            body["associated_data"] = base64.b64encode(ad).decode()
        with bao.client() as c:
            return c.post(f"/v1/transit/decrypt/{bao.key_name}", json=body)

    prefix = BINDING_DOMAIN + transit.key_id.encode() + b"\x00"
    good = decrypt(prefix + binding.aad())
    assert good.status_code == 200 and base64.b64decode(good.json()["data"]["plaintext"]) == dek
    for ad in (None, prefix + bind().aad(), prefix):
        refused = decrypt(ad)
        assert refused.status_code == 400 and "message authentication failed" in str(refused.json()["errors"])


def test_derived_key_refused(bao: OpenBaoDevServer) -> None:
    bao.create_key("derived", derived=True)
    with pytest.raises(KekPolicyError, match="is derived"):
        OpenBaoTransit(bao.address, bao.root_token, "derived")


@pytest.mark.parametrize("key_type", ["rsa-2048", "aes128-gcm96"])
def test_key_that_cannot_bind_refused(bao: OpenBaoDevServer, key_type: str) -> None:
    name = "typed-" + key_type
    bao.create_key(name, type=key_type)
    with pytest.raises(KekPolicyError, match="cannot bind a data key to its model"):
        OpenBaoTransit(bao.address, bao.root_token, name)


def test_server_ignoring_associated_data_refused(transit: OpenBaoTransit, bao: OpenBaoDevServer) -> None:
    """A server too old to know associated_data says it ignored it; the provider then returns no key."""
    fake_key = base64.b64encode(b"\x42" * 32).decode()
    warning = ["Endpoint ignored these unrecognized parameters: [associated_data]"]

    def answer(request: httpx.Request) -> httpx.Response:
        data = {"plaintext": fake_key, "ciphertext": "vault:v1:AAAA"}
        return httpx.Response(200, json={"data": data, "warnings": warning})

    provider = OpenBaoTransit(bao.address, bao.root_token, bao.key_name)
    assert provider._client is not None
    provider._client.close()
    provider._client = httpx.Client(base_url=bao.address, transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(KekPolicyError, match="ignored associated_data"):
            provider.unwrap(WrappedKey("openbao", provider.key_id, b"vault:v1:AAAA", bind()))
        with pytest.raises(KekPolicyError, match="ignored associated_data"):
            provider.generate_data_key(bind())
        with pytest.raises(KekPolicyError, match="ignored associated_data"):
            provider.wrap(b"\x01" * 32, bind())
    finally:
        provider.close()


def test_unreachable_server_fails_closed() -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ProviderUnavailableError, match="unreachable"):
        OpenBaoTransit(address, "token", "strongroom", timeout_s=2.0)


def test_server_dies_after_open(tmp_path: Path) -> None:
    from strongroom.keys.devservers import start_openbao_dev

    server = start_openbao_dev(tmp_path)
    try:
        provider = OpenBaoTransit(server.address, server.root_token, server.key_name, timeout_s=2.0)
        dek, wrapped = provider.generate_data_key(bind())
        assert provider.unwrap(wrapped) == dek
    finally:
        server.stop()
    with pytest.raises(ProviderUnavailableError, match="unreachable"):
        provider.unwrap(wrapped)
    with pytest.raises(ProviderUnavailableError):
        provider.generate_data_key(bind())
    provider.close()


def test_sealed_server_fails_closed(tmp_path: Path) -> None:
    from strongroom.keys.devservers import start_openbao_dev

    server = start_openbao_dev(tmp_path)
    try:
        provider = OpenBaoTransit(server.address, server.root_token, server.key_name)
        _, wrapped = provider.generate_data_key(bind())
        with server.client() as c:
            c.put("/v1/sys/seal").raise_for_status()
        with pytest.raises(ProviderUnavailableError, match="503"):
            provider.unwrap(wrapped)
        provider.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "address",
    ["http://10.0.0.1:8200", "http://bao.example:8200", "ftp://127.0.0.1", "127.0.0.1:8200", "http://127.0.0.1/v1"],
)
def test_address_policy(address: str) -> None:
    with pytest.raises(KeySettingsError):
        check_address(address)


def test_address_policy_allows_loopback_and_https() -> None:
    assert check_address("http://127.0.0.1:8200/") == "http://127.0.0.1:8200"
    assert check_address("http://[::1]:8200") == "http://[::1]:8200"
    assert check_address("https://bao.internal:8200") == "https://bao.internal:8200"


@pytest.mark.parametrize("name", ["", "a/b", "..", "key name"])
def test_bad_key_names(bao: OpenBaoDevServer, name: str) -> None:
    with pytest.raises(KeySettingsError):
        OpenBaoTransit(bao.address, bao.root_token, name)


def test_closed_provider_refuses(bao: OpenBaoDevServer) -> None:
    provider = OpenBaoTransit(bao.address, bao.root_token, bao.key_name)
    provider.close()
    with pytest.raises(KeyProviderError, match="closed"):
        provider.generate_data_key(bind())


def test_concurrent_use(transit: OpenBaoTransit) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                dek, wrapped = transit.generate_data_key(bind())
                assert transit.unwrap(wrapped) == dek
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
