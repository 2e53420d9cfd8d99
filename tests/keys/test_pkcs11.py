"""PKCS#11 provider on a real SoftHSM2 token: round trips, a KEK that cannot leave, and every refusal."""

from __future__ import annotations

import threading

import pkcs11
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from strongroom.keys.errors import (
    KekNotFoundError,
    KekPolicyError,
    KeyProviderError,
    ProviderAuthError,
    ProviderUnavailableError,
    UnwrapError,
)
from strongroom.keys.pkcs11 import GCM_DOMAIN, Pkcs11Provider, _acquire, _release
from strongroom.keys.provider import KeyProvider, WrappedKey

from .conftest import HSM_PIN, KEK_LABEL, Hsm, bind


def test_is_a_key_provider(pkcs11_provider: Pkcs11Provider) -> None:
    assert isinstance(pkcs11_provider, KeyProvider)
    assert pkcs11_provider.provider == "pkcs11"
    assert pkcs11_provider.key_id == f"strongroom-test/{KEK_LABEL}"


def test_round_trip(pkcs11_provider: Pkcs11Provider) -> None:
    dek, wrapped = pkcs11_provider.generate_data_key(bind())
    assert len(dek) == 32 and len(wrapped.blob) == 1 + 12 + 32 + 16 and wrapped.blob[0] == 3
    assert bytes(dek) not in wrapped.blob
    assert pkcs11_provider.unwrap(WrappedKey.from_json(wrapped.to_json())) == dek
    again = pkcs11_provider.wrap(dek, wrapped.binding)
    assert again.blob[1:13] != wrapped.blob[1:13]  # a fresh IV per wrap
    assert pkcs11_provider.unwrap(again) == dek


def test_data_keys_are_fresh(pkcs11_provider: Pkcs11Provider) -> None:
    keys = {bytes(pkcs11_provider.generate_data_key(bind())[0]) for _ in range(20)}
    assert len(keys) == 20


def test_kek_cannot_be_read_back(pkcs11_provider: Pkcs11Provider) -> None:
    attrs = pkcs11_provider.kek_attributes()
    assert attrs["SENSITIVE"] and attrs["ALWAYS_SENSITIVE"] and attrs["NEVER_EXTRACTABLE"] and attrs["TOKEN"]
    assert not attrs["EXTRACTABLE"]
    assert attrs["ENCRYPT"] and attrs["DECRYPT"] and not attrs["WRAP"] and not attrs["UNWRAP"]
    kek = pkcs11_provider._kek
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        kek[Attribute.VALUE]
    # Wrapping the KEK out under another key (the usual way to export a key) is refused by the token.
    login = pkcs11_provider._live()
    with login.lock:
        other = login.session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
        with pytest.raises(pkcs11.exceptions.KeyUnextractable):
            other.wrap_key(kek, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        other.destroy()
        # And CKA_EXTRACTABLE cannot be turned back on.
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            kek[Attribute.EXTRACTABLE] = True
    assert not pkcs11_provider.kek_attributes()["EXTRACTABLE"]


def _token_key(hsm: Hsm, label: str, value: bytes | None = None, **attributes: bool) -> None:
    """Put an AES-256 token key with the given attributes (and value, if given) into the main token."""
    login = _acquire(hsm.main.module, hsm.main.label, HSM_PIN)
    try:
        with login.lock:
            template = {getattr(Attribute, name): flag for name, flag in attributes.items()}
            if value is None:
                login.session.generate_key(KeyType.AES, 256, label=label, store=True, template=template)
            else:
                template.update(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.VALUE: value,
                        Attribute.TOKEN: True,
                        Attribute.LABEL: label,
                    }
                )
                login.session.create_object(template)
    finally:
        _release(login)


def test_blob_is_standard_aes_gcm_over_the_binding(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    """The token's CKM_AES_GCM output opens with `cryptography` under a known KEK and exactly the documented
    AD (domain || key id || 0x00 || binding); with the binding left out of the AD it does not."""
    known = bytes(range(32))
    _token_key(
        hsm, "known-kek", known, SENSITIVE=True, EXTRACTABLE=False, ENCRYPT=True, DECRYPT=True, WRAP=False, UNWRAP=False
    )
    with Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "known-kek") as provider:
        binding = bind()
        dek, wrapped = provider.generate_data_key(binding)
        iv, sealed = wrapped.blob[1:13], wrapped.blob[13:]
        ad = GCM_DOMAIN + provider.key_id.encode() + b"\x00" + binding.aad()
        assert AESGCM(known).decrypt(iv, sealed, ad) == dek
        with pytest.raises(InvalidTag):
            AESGCM(known).decrypt(iv, sealed, GCM_DOMAIN + provider.key_id.encode() + b"\x00")
        # And the token computes the same thing `cryptography` does: its own blob for our AD opens here.
        forged_iv = bytes(12)
        ours = WrappedKey(
            "pkcs11", provider.key_id, b"\x03" + forged_iv + AESGCM(known).encrypt(forged_iv, dek, ad), binding
        )
        assert provider.unwrap(ours) == dek


def test_key_wrap_mechanisms_are_retired(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    """AES key wrap (RFC 3394/5649) has no associated data: neither configurable nor accepted in a blob."""
    for mechanism in ("AES_KEY_WRAP", "AES_KEY_WRAP_PAD"):
        with pytest.raises(KeyProviderError, match="cannot bind"):
            Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, KEK_LABEL, mechanism=mechanism)
    old_style = b"\x01" + aes_key_wrap_with_padding(bytes(32), b"\x42" * 32)
    with pytest.raises(UnwrapError, match="binds no model id"):
        pkcs11_provider.unwrap(WrappedKey("pkcs11", pkcs11_provider.key_id, old_style, bind()))


def test_wrap_only_kek_refused(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    """A KEK of the earlier kind (wrap/unwrap, no encrypt/decrypt) cannot bind keys: refused, with the fix."""
    _token_key(hsm, "wrap-only-kek", WRAP=True, UNWRAP=True, ENCRYPT=False, DECRYPT=False, EXTRACTABLE=False)
    with pytest.raises(KekPolicyError, match="may not encrypt and decrypt.*pkcs11-init"):
        Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "wrap-only-kek")


def test_kek_that_also_wraps_refused(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    """Wrap plus decrypt on one key would let a token user export other sensitive keys (Clulow)."""
    _token_key(hsm, "wrap-and-decrypt-kek", WRAP=True, UNWRAP=False, ENCRYPT=True, DECRYPT=True, EXTRACTABLE=False)
    with pytest.raises(KekPolicyError, match="wrap or unwrap"):
        Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "wrap-and-decrypt-kek")


@pytest.mark.parametrize("position", [0, 1, 12, 13, 30, 44, 60])
def test_tampered_blob_refused(pkcs11_provider: Pkcs11Provider, position: int) -> None:
    _, wrapped = pkcs11_provider.generate_data_key(bind())
    blob = bytearray(wrapped.blob)
    blob[position] ^= 0x01 if position else 0x02
    with pytest.raises(UnwrapError):
        pkcs11_provider.unwrap(WrappedKey("pkcs11", wrapped.key_id, bytes(blob), wrapped.binding))


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x03", b"\x03" + b"\x00" * 59, b"\x03" + b"\x00" * 60, b"\x03" + b"\x00" * 61, b"\x09" + b"\x00" * 60],
)
def test_malformed_blobs_refused(pkcs11_provider: Pkcs11Provider, blob: bytes) -> None:
    with pytest.raises(UnwrapError):
        pkcs11_provider.unwrap(WrappedKey("pkcs11", pkcs11_provider.key_id, blob, bind()))


def test_other_kek_cannot_unwrap(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    _, wrapped = pkcs11_provider.generate_data_key(bind())
    with Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "second-kek", create_key=True) as second:
        with pytest.raises(UnwrapError, match="wrapped by pkcs11:strongroom-test/strongroom-kek"):
            second.unwrap(wrapped)
        # Even with the reference forged to name the second KEK, the token refuses the blob.
        with pytest.raises(UnwrapError, match="refused"):
            second.unwrap(WrappedKey("pkcs11", second.key_id, wrapped.blob, wrapped.binding))


def test_wrong_pin(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    # The token is already logged in by the session fixture: the PIN is still checked.
    with pytest.raises(ProviderAuthError, match="PIN was refused"):
        Pkcs11Provider(hsm.main.module, hsm.main.label, "0000", KEK_LABEL)


def test_wrong_pin_fresh_login(hsm: Hsm) -> None:
    with pytest.raises(ProviderAuthError, match="PIN was refused") as info:
        Pkcs11Provider(hsm.other.module, hsm.other.label, "wrong-pin", KEK_LABEL)
    assert "wrong-pin" not in str(info.value)


def test_wrong_token_label(hsm: Hsm) -> None:
    with pytest.raises(ProviderUnavailableError, match="no token labelled 'no-such-token'"):
        Pkcs11Provider(hsm.main.module, "no-such-token", HSM_PIN, KEK_LABEL)


def test_wrong_key_label(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    with pytest.raises(KekNotFoundError, match="no AES key labelled 'missing-kek'"):
        Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "missing-kek")


def test_key_is_per_token(hsm: Hsm) -> None:
    with pytest.raises(KekNotFoundError):
        Pkcs11Provider(hsm.other.module, hsm.other.label, HSM_PIN, KEK_LABEL)


def test_missing_module(hsm: Hsm) -> None:
    with pytest.raises(ProviderUnavailableError, match="not found"):
        Pkcs11Provider("/nonexistent/libpkcs11.so", hsm.main.label, HSM_PIN, KEK_LABEL)


def test_unknown_mechanism(hsm: Hsm) -> None:
    with pytest.raises(KeyProviderError, match="unsupported"):
        Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, KEK_LABEL, mechanism="AES_ECB")


def test_extractable_kek_refused(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    login = _acquire(hsm.main.module, hsm.main.label, HSM_PIN)
    try:
        with login.lock:
            login.session.generate_key(
                KeyType.AES,
                256,
                label="leaky-kek",
                store=True,
                template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False, Attribute.WRAP: True},
            )
    finally:
        _release(login)
    with pytest.raises(KekPolicyError, match="extractable"):
        Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, "leaky-kek")


def test_create_refuses_duplicate_label(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    from strongroom.keys.pkcs11 import create_kek

    with pytest.raises(KeyProviderError, match="already exists"):
        create_kek(hsm.main.module, hsm.main.label, HSM_PIN, KEK_LABEL)


def test_closed_provider_refuses(hsm: Hsm, pkcs11_provider: Pkcs11Provider) -> None:
    provider = Pkcs11Provider(hsm.main.module, hsm.main.label, HSM_PIN, KEK_LABEL)
    _, wrapped = provider.generate_data_key(bind())
    provider.close()
    with pytest.raises(KeyProviderError, match="closed"):
        provider.unwrap(wrapped)
    # Closing one provider does not log the others out.
    assert len(pkcs11_provider.unwrap(wrapped)) == 32


def test_concurrent_wrap_unwrap(pkcs11_provider: Pkcs11Provider) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                dek, wrapped = pkcs11_provider.generate_data_key(bind())
                assert pkcs11_provider.unwrap(wrapped) == dek
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
