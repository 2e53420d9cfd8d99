"""Signing keys inside a real SoftHSM2 token: the same signatures and key ids as file keys, a private key the
token never reveals, and one-line typed errors for every way opening one can fail."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from strongroom.custody.envelope import SignedMessage
from strongroom.keys import pkcs11 as p11provider
from strongroom.keys.devservers import SOFTHSM_MODULE
from strongroom.keys.pkcs11 import Pkcs11Provider
from strongroom.keys.pkcs11_signer import (
    Pkcs11Signer,
    Pkcs11Uri,
    TokenAccess,
    generate_token_signer,
    open_token_signer,
)
from strongroom.ledger.entries import make_entry, parse_entry
from strongroom.signing import (
    KeyReferenceError,
    Signer,
    SigningKey,
    SigningKeyError,
    TokenAuthError,
    TokenKeyNotFoundError,
    TokenKeyPolicyError,
    TokenUnavailableError,
    Verifier,
    load_signer,
)
from tests.keys.conftest import HSM_PIN, Hsm, bind

PIN_ENV = {"STRONGROOM_PKCS11_PIN": HSM_PIN}


def label(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def access(hsm: Hsm) -> TokenAccess:
    return TokenAccess(hsm.main.module, hsm.main.label, HSM_PIN)


@pytest.fixture(scope="module")
def ed_key(access: TokenAccess) -> Iterator[Pkcs11Signer]:
    with generate_token_signer(access, label("ed"), "ed25519") as signer:
        yield signer


@pytest.fixture(scope="module")
def p256_key(access: TokenAccess) -> Iterator[Pkcs11Signer]:
    with generate_token_signer(access, label("p256"), "ecdsa-p256") as signer:
        yield signer


def uri_of(signer: Pkcs11Signer, **query: str) -> str:
    return signer.uri + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def test_ed25519_in_the_token_signs_what_a_file_verifier_checks(hsm: Hsm, ed_key: Pkcs11Signer) -> None:
    signer: SigningKey = load_signer(ed_key.uri, env=PIN_ENV)
    assert isinstance(signer, Pkcs11Signer) and signer.key_type == "ed25519"
    # Enrolment works from the public PEM alone: the registry computes the same key id.
    assert signer.key_id == Verifier.from_pem(ed_key.verifier.pem()).key_id == ed_key.key_id
    message = b"custody message bytes"
    signature = signer.sign(message)
    assert len(signature) == 64 and signature == signer.sign(message)  # RFC 8032: deterministic
    verifier = Verifier.from_pem(signer.verifier.pem())
    verifier.verify(signature, message)
    verifier.check_unique(signature)
    signed = SignedMessage.sign({"type": "test", "n": 1}, signer)
    signed.verify(verifier, "message")
    body = {"model_id": "blake3:" + "ab" * 32, "suite": "smoke", "results": {"ok": True}, "evaluator": "eve"}
    assert parse_entry(make_entry("model.evaluated", body, signer)).signer == signer.key_id


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521"])
def test_ecdsa_in_the_token_gives_low_s_der_like_signer(access: TokenAccess, key_type: str) -> None:
    with generate_token_signer(access, label(key_type), key_type) as signer:  # type: ignore[arg-type]
        verifier = Verifier.from_pem(signer.verifier.pem())
        assert signer.key_type == verifier.key_type == key_type and signer.key_id == verifier.key_id
        # CKM_ECDSA gives raw r||s with s high half the time: 64 in a row pass only if every one is folded.
        for i in range(64):
            message = f"message {i}".encode()
            signature = signer.sign(message)
            assert signature[0] == 0x30  # DER SEQUENCE, like Signer's
            verifier.verify(signature, message)
            verifier.check_unique(signature)


def test_the_private_key_never_leaves_the_token(access: TokenAccess, ed_key: Pkcs11Signer) -> None:
    assert ed_key.attributes() == {
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "ALWAYS_SENSITIVE": True,
        "NEVER_EXTRACTABLE": True,
        "SIGN": True,
        "TOKEN": True,
        "PRIVATE": True,
    }
    login = p11provider._acquire(access.module, access.token_label, access.pin)
    try:
        with login.lock:
            session = login.session
            private = session.get_key(ObjectClass.PRIVATE_KEY, label=Pkcs11Uri.parse(ed_key.uri).object)
            with pytest.raises(p11.AttributeSensitive):
                private[Attribute.VALUE]  # reading is the attempt
            wrapping = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.TOKEN: False})
            with pytest.raises(p11.KeyUnextractable):
                wrapping.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            for attribute, value in ((Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False)):
                with pytest.raises(p11.AttributeReadOnly):
                    private[attribute] = value
            wrapping.destroy()
    finally:
        p11provider._release(login)


def test_an_extractable_or_non_signing_key_is_refused(access: TokenAccess) -> None:
    login = p11provider._acquire(access.module, access.token_label, access.pin)
    names = {"soft": label("soft"), "nosign": label("nosign")}
    try:
        with login.lock:
            for name, private in (
                ("soft", {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.SIGN: True}),
                ("nosign", {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: False}),
            ):
                login.session.generate_keypair(
                    KeyType.EC_EDWARDS,
                    mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    public_template={Attribute.EC_PARAMS: bytes.fromhex("06032b6570"), Attribute.LABEL: names[name]},
                    private_template={**private, Attribute.LABEL: names[name], Attribute.TOKEN: True},
                    store=True,
                )
    finally:
        p11provider._release(login)
    with pytest.raises(TokenKeyPolicyError, match="extractable or not sensitive"):
        open_token_signer(f"pkcs11:token={access.token_label};object={names['soft']}", env=PIN_ENV)
    with pytest.raises(TokenKeyPolicyError, match="CKA_SIGN false"):
        open_token_signer(f"pkcs11:token={access.token_label};object={names['nosign']}", env=PIN_ENV)


def one_line(exc: pytest.ExceptionInfo[SigningKeyError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and HSM_PIN not in text and "Traceback" not in text
    return text


def test_wrong_pin_missing_object_wrong_module_are_typed_one_line_errors(
    hsm: Hsm, ed_key: Pkcs11Signer, tmp_path: Path
) -> None:
    with pytest.raises(TokenAuthError, match="PIN was refused") as exc:
        load_signer(ed_key.uri, env={"STRONGROOM_PKCS11_PIN": "not-the-pin"})
    one_line(exc)
    with pytest.raises(TokenAuthError, match="no PIN") as exc:
        load_signer(ed_key.uri, env={})
    one_line(exc)
    with pytest.raises(TokenKeyNotFoundError, match="holds no such private key") as exc:
        load_signer(f"pkcs11:token={hsm.main.label};object=nobody", env=PIN_ENV)
    one_line(exc)
    with pytest.raises(TokenKeyNotFoundError):  # the key lives in another token
        load_signer(f"pkcs11:token={hsm.other.label};object={Pkcs11Uri.parse(ed_key.uri).object}", env=PIN_ENV)
    with pytest.raises(TokenUnavailableError, match="no token labelled 'absent'") as exc:
        load_signer("pkcs11:token=absent;object=x", env=PIN_ENV)
    one_line(exc)
    with pytest.raises(TokenUnavailableError, match="not found") as exc:
        load_signer(ed_key.uri, env={**PIN_ENV, "STRONGROOM_PKCS11_MODULE": str(tmp_path / "nope.so")})
    one_line(exc)
    not_pkcs11 = tmp_path / "not-a-module.so"
    not_pkcs11.write_bytes(b"\x7fELF not really")
    with pytest.raises(TokenUnavailableError, match="cannot be loaded") as exc:
        load_signer(uri_of(ed_key, **{"module-path": str(not_pkcs11)}), env=PIN_ENV)
    one_line(exc)
    with pytest.raises(TokenUnavailableError, match="serial"):
        load_signer(ed_key.uri + ";serial=0000", env=PIN_ENV)
    for error in (TokenAuthError, TokenKeyNotFoundError, TokenUnavailableError, KeyReferenceError):
        assert issubclass(error, SigningKeyError)


def test_uri_forms_and_where_module_and_pin_come_from(hsm: Hsm, ed_key: Pkcs11Signer, tmp_path: Path) -> None:
    uri = Pkcs11Uri.parse(ed_key.uri)
    # Everything in the URI: module path and a PIN file (file: URI or plain path), object by id only.
    pin_file = tmp_path / "pin"
    pin_file.write_text(HSM_PIN + "\n")
    full = f"{ed_key.uri}?module-path={SOFTHSM_MODULE}&pin-source=file:{pin_file}"
    assert load_signer(full, env={}).key_id == ed_key.key_id
    assert load_signer(f"PKCS11:token={hsm.main.label};object={uri.object}?pin-source={pin_file}", env={})
    login = p11provider._acquire(hsm.main.module, hsm.main.label, HSM_PIN)
    try:
        with login.lock:
            key_id = bytes(login.session.get_key(ObjectClass.PRIVATE_KEY, label=uri.object)[Attribute.ID])
    finally:
        p11provider._release(login)
    by_id = "pkcs11:token=" + hsm.main.label + ";id=" + "".join(f"%{b:02X}" for b in key_id)
    assert load_signer(by_id, env=PIN_ENV).key_id == ed_key.key_id
    # Token label, module and PIN from the [pkcs11] settings the KEK provider reads.
    settings = tmp_path / "keys.toml"
    settings.write_text(f'[pkcs11]\ntoken_label = "{hsm.main.label}"\nmodule = "{SOFTHSM_MODULE}"\npin_file = "pin"\n')
    assert load_signer(f"pkcs11:object={uri.object}", env={"STRONGROOM_KEY_CONFIG": str(settings)}).key_id == (
        ed_key.key_id
    )
    assert load_signer(f"pkcs11:object={uri.object}", env={}, config=settings).key_id == ed_key.key_id
    # Explicit module and PIN in code.
    with open_token_signer(ed_key.uri, module=SOFTHSM_MODULE, pin=HSM_PIN, env={}) as explicit:
        assert explicit.key_id == ed_key.key_id
    # Percent-encoding round trips; a file path still gives a file signer.
    odd = Pkcs11Uri(token="my token", object="a;b=c/d")
    assert Pkcs11Uri.parse(str(odd)) == odd and str(odd) == "pkcs11:token=my%20token;object=a%3Bb%3Dc%2Fd"
    file_key = Signer.generate("ed25519")
    (tmp_path / "k.pem").write_bytes(file_key.pem())
    assert isinstance(load_signer(tmp_path / "k.pem"), Signer)
    assert load_signer(str(tmp_path / "k.pem")).key_id == file_key.key_id


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=t;object=x?pin-value=1234", "pin-value is refused"),
        ("pkcs11:token=t;slot-id=1;object=x?pin-value=1234", "pin-value is refused"),
        ("pkcs11:token=t;pin-value=1234;object=x", "pin-value is refused"),
        ("pkcs11:token=t;object=x?module-name=y&pin-value=1234", "pin-value is refused"),
        ("pkcs11:token=t", "names no key"),
        ("pkcs11:object=x", "names no token"),
        ("pkcs11:token=t;object=x;type=public", "type=private"),
        ("pkcs11:token=t;object=x;slot-id=1", "unsupported path attribute 'slot-id'"),
        ("pkcs11:token=t;object=x?module-name=softhsm2", "unsupported query attribute 'module-name'"),
        ("pkcs11:token=t?", "names no key"),
        ("pkcs11:token=t;token=u;object=x", "appears twice"),
        ("pkcs11:token=t;object", "name=value"),
        ("pkcs11:token=t;object=%ff", "not UTF-8"),
        ("pkcs11:token=t;object=x?pin-source=https://pins.example/1", "pin-source must be"),
        ("pkcs11:token=t;object=x?pin-source=/nonexistent/pin", "cannot read"),
    ],
)
def test_malformed_references_are_refused(uri: str, message: str) -> None:
    with pytest.raises(KeyReferenceError, match=message) as exc:
        load_signer(uri, env={})
    assert "1234" not in one_line(exc)  # type: ignore[arg-type]


def test_signers_share_the_login_with_the_kek_provider(
    hsm: Hsm, pkcs11_provider: Pkcs11Provider, ed_key: Pkcs11Signer, p256_key: Pkcs11Signer
) -> None:
    """PKCS#11 login state is per process: signers and the KEK provider share one session, and closing a
    signer logs nobody out."""
    extra = load_signer(p256_key.uri, env=PIN_ENV)
    assert isinstance(extra, Pkcs11Signer)
    extra.close()
    with pytest.raises(SigningKeyError, match="closed"):
        extra.sign(b"after close")
    data_key, wrapped = pkcs11_provider.generate_data_key(bind())
    assert pkcs11_provider.unwrap(wrapped) == data_key
    ed_key.verifier.verify(ed_key.sign(b"still logged in"), b"still logged in")


def test_threads_sign_concurrently(ed_key: Pkcs11Signer, p256_key: Pkcs11Signer) -> None:
    failures: list[BaseException] = []

    def work(signer: Pkcs11Signer, n: int) -> None:
        try:
            for i in range(40):
                message = f"{n}/{i}".encode()
                signer.verifier.verify(signer.sign(message), message)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(k, n)) for n, k in enumerate([ed_key, p256_key] * 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_generation_refuses_a_taken_label(access: TokenAccess, ed_key: Pkcs11Signer) -> None:
    with pytest.raises(TokenKeyPolicyError, match="already holds a key labelled"):
        generate_token_signer(access, str(Pkcs11Uri.parse(ed_key.uri).object), "ed25519")
