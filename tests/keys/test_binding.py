"""Key binding: a wrapped data key unwraps only for the seal id and model id it was wrapped for, with every
provider (local, PKCS#11 on SoftHSM2, OpenBao transit on the real dev server, Shamir custodians).

The attack these tests stand for: an insider registers the same wrapped blob under a made-up model id (or
seal id) with a lax release policy. Each provider must refuse the edited reference inside its own
cryptography, so no key comes back and no release can be recorded under the wrong model.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.keys.errors import (
    BindingMismatchError,
    KeyBindingError,
    KeyProviderError,
    ModelMismatchError,
    ShareError,
    UnwrapError,
)
from strongroom.keys.provider import BINDING_TYPE, KeyBinding, KeyProvider, WrappedKey, require_model
from strongroom.keys.released import ReleasedKey
from strongroom.keys.shamir import (
    ReencryptedShare,
    ShamirProvider,
    _kcv,
    _release_info,
    _share_check,
    _share_info,
    custodian_reencrypt_share,
    host_combine,
)

from .conftest import MODEL_A, MODEL_B, Custodians, bind, rebind

SEAL = "0123456789abcdef" * 2
PROVIDERS = ["local", "pkcs11", "openbao", "shamir"]
CONTEXT = b"release-binding"


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest, custodians: Custodians) -> KeyProvider:
    """Each provider in turn; Shamir holds two custodians' keys so it can run the quorum in-process."""
    if request.param == "local":
        return request.getfixturevalue("keyring")  # type: ignore[no-any-return]
    if request.param == "pkcs11":
        return request.getfixturevalue("pkcs11_provider")  # type: ignore[no-any-return]
    if request.param == "openbao":
        return request.getfixturevalue("transit")  # type: ignore[no-any-return]
    return ShamirProvider(custodians.public[:3], 2, local_custodian_keys=custodians.private[:2])


# -- the binding itself -----------------------------------------------------------------------------


def test_aad_is_canonical_json_of_type_seal_and_model() -> None:
    assert KeyBinding(SEAL, MODEL_A).aad() == (
        f'{{"model_id":"{MODEL_A}","seal_id":"{SEAL}","type":"{BINDING_TYPE}"}}'.encode()
    )
    assert KeyBinding(SEAL).aad() == f'{{"seal_id":"{SEAL}","type":"{BINDING_TYPE}"}}'.encode()
    assert KeyBinding(SEAL, MODEL_A).to_json() == {"seal_id": SEAL, "model_id": MODEL_A}
    assert KeyBinding(SEAL).to_json() == {"seal_id": SEAL}


@pytest.mark.parametrize("model_id", [MODEL_A, MODEL_B, None])
def test_binding_json_round_trip(model_id: str | None) -> None:
    binding = KeyBinding(SEAL, model_id)
    assert KeyBinding.from_json(json.loads(json.dumps(binding.to_json()))) == binding


@pytest.mark.parametrize(
    "seal_id", ["", "0" * 31, "0" * 33, "0123456789ABCDEF" * 2, "g" * 32, "0" * 32 + "\n", 12345, None]
)
def test_bad_seal_ids_refused(seal_id: Any) -> None:
    with pytest.raises(KeyBindingError, match="seal_id"):
        KeyBinding(seal_id, MODEL_A)


@pytest.mark.parametrize(
    "model_id",
    [
        "",
        "blake3:" + "a" * 63,
        "blake3:" + "a" * 65,
        "blake3:" + "A" * 64,
        "md5:" + "a" * 64,
        "BLAKE3:" + "a" * 64,
        "blake3:" + "a" * 64 + "\n",
        "a" * 64,
        7,
    ],
)
def test_bad_model_ids_refused(model_id: Any) -> None:
    with pytest.raises(KeyBindingError, match="model_id"):
        KeyBinding(SEAL, model_id)


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        "binding",
        {},
        {"model_id": MODEL_A},
        {"seal_id": SEAL, "model_id": None},
        {"seal_id": SEAL, "model_id": 1},
        {"seal_id": SEAL, "extra": "x"},
        {"seal_id": SEAL.upper()},
        {"seal_id": SEAL, "type": BINDING_TYPE},
    ],
)
def test_binding_from_json_is_strict(value: Any) -> None:
    with pytest.raises(KeyBindingError):
        KeyBinding.from_json(value)


def test_reference_without_binding_refused(keyring: KeyProvider) -> None:
    _, wrapped = keyring.generate_data_key(bind())
    raw = wrapped.to_json()
    del raw["binding"]
    with pytest.raises(KeyBindingError, match="lacks field 'binding'"):
        WrappedKey.from_json(raw)
    with pytest.raises(KeyBindingError):
        WrappedKey(wrapped.provider, wrapped.key_id, wrapped.blob, None)  # type: ignore[arg-type]
    with pytest.raises(KeyProviderError, match="unknown field 'bound_to'"):
        WrappedKey.from_json({**wrapped.to_json(), "bound_to": MODEL_A})


# -- every provider -------------------------------------------------------------------------------


def test_round_trip_with_binding(provider: KeyProvider) -> None:
    binding = bind()
    dek, wrapped = provider.generate_data_key(binding)
    assert wrapped.binding == binding
    assert provider.unwrap(WrappedKey.from_json(json.loads(json.dumps(wrapped.to_json())))) == dek
    again = provider.wrap(dek, bind(None))
    assert again.binding.model_id is None and provider.unwrap(again) == dek


@pytest.mark.parametrize(
    "edit",
    [
        {"model_id": MODEL_B},  # the insider's made-up model id
        {"model_id": None},  # binding stripped down to "not a model"
        {"model_id": "blake3:" + "a1" * 31 + "a0"},  # one nibble away
        {"seal_id": "f" * 32},
    ],
    ids=["other-model", "model-removed", "model-one-nibble", "other-seal"],
)
def test_edited_binding_never_unwraps(provider: KeyProvider, edit: dict[str, str | None]) -> None:
    _, wrapped = provider.generate_data_key(bind(MODEL_A))
    with pytest.raises(UnwrapError):
        provider.unwrap(rebind(wrapped, **edit))


def test_model_id_added_to_unbound_key_refused(provider: KeyProvider) -> None:
    """A key sealed for a transcript (no model id) cannot be registered as some model's key."""
    _, wrapped = provider.generate_data_key(bind(None))
    with pytest.raises(UnwrapError):
        provider.unwrap(rebind(wrapped, model_id=MODEL_A))


def test_binding_survives_no_swap(provider: KeyProvider) -> None:
    """The same data key wrapped for two models: each blob opens under its own binding only."""
    dek, first = provider.generate_data_key(bind(MODEL_A))
    second = provider.wrap(dek, bind(MODEL_B))
    assert provider.unwrap(first) == dek and provider.unwrap(second) == dek
    with pytest.raises(UnwrapError):
        provider.unwrap(WrappedKey(first.provider, first.key_id, first.blob, second.binding))
    with pytest.raises(UnwrapError):
        provider.unwrap(WrappedKey(second.provider, second.key_id, second.blob, first.binding))


def test_edited_binding_in_json_refused(provider: KeyProvider) -> None:
    _, wrapped = provider.generate_data_key(bind())
    raw = wrapped.to_json()
    raw["binding"]["model_id"] = MODEL_B
    with pytest.raises(UnwrapError):
        provider.unwrap(WrappedKey.from_json(raw))
    for broken in (None, {}, {"seal_id": "xyz"}, {"seal_id": raw["binding"]["seal_id"], "model_id": "nope"}):
        with pytest.raises(KeyBindingError):
            WrappedKey.from_json({**raw, "binding": broken})
    del raw["binding"]
    with pytest.raises(KeyBindingError):
        WrappedKey.from_json(raw)


def test_wrap_needs_a_binding(provider: KeyProvider) -> None:
    with pytest.raises(KeyBindingError):
        provider.wrap(b"\x01" * 32, {"seal_id": SEAL})  # type: ignore[arg-type]
    with pytest.raises(KeyBindingError):
        provider.generate_data_key(None)  # type: ignore[arg-type]


# -- Shamir: custodians and the host check the binding too ---------------------------------------


@pytest.fixture
def split(custodians: Custodians) -> ShamirProvider:
    return ShamirProvider(custodians.public[:3], 2)


def _reencrypt(
    wrapped: WrappedKey, custodians: Custodians, who: int, host: X25519PrivateKey, model_id: str | None
) -> ReencryptedShare:
    return custodian_reencrypt_share(wrapped, custodians.private[who], host.public_key(), CONTEXT, model_id=model_id)


def test_custodian_refuses_another_model(split: ShamirProvider, custodians: Custodians) -> None:
    """The custodian approves MODEL_B; the share they are handed is MODEL_A's: refused before any decryption."""
    _, wrapped = split.generate_data_key(bind(MODEL_A))
    host = X25519PrivateKey.generate()
    with pytest.raises(ModelMismatchError, match=f"approves model {MODEL_B}"):
        _reencrypt(wrapped, custodians, 0, host, MODEL_B)
    with pytest.raises(ModelMismatchError):
        _reencrypt(wrapped, custodians, 0, host, None)
    assert isinstance(ModelMismatchError("x"), ShareError) and isinstance(ModelMismatchError("x"), BindingMismatchError)
    _reencrypt(wrapped, custodians, 0, host, MODEL_A)  # the right model is fine


@pytest.mark.parametrize("edit", [{"model_id": MODEL_B}, {"model_id": None}, {"seal_id": "e" * 32}])
def test_custodian_cannot_reencrypt_an_edited_binding(
    split: ShamirProvider, custodians: Custodians, edit: dict[str, str | None]
) -> None:
    """The insider's reference names MODEL_B and the custodian approves MODEL_B: the share still does not
    open, because its HPKE info (and check) cover the binding it was sealed for."""
    _, wrapped = split.generate_data_key(bind(MODEL_A))
    forged = rebind(wrapped, **edit)
    with pytest.raises(ShareError, match="does not open with this custodian key and binding"):
        _reencrypt(forged, custodians, 1, X25519PrivateKey.generate(), forged.binding.model_id)


@pytest.mark.parametrize("edit", [{"model_id": MODEL_B}, {"model_id": None}, {"seal_id": "e" * 32}])
def test_host_cannot_combine_under_an_edited_binding(
    split: ShamirProvider, custodians: Custodians, edit: dict[str, str | None]
) -> None:
    """Shares honestly re-encrypted for MODEL_A's reference do not combine under an edited reference."""
    dek, wrapped = split.generate_data_key(bind(MODEL_A))
    host = X25519PrivateKey.generate()
    shares = [_reencrypt(wrapped, custodians, i, host, MODEL_A) for i in (0, 2)]
    assert host_combine(wrapped, shares, host, CONTEXT) == dek
    with pytest.raises(ShareError, match="does not open with this host key, release context and binding"):
        host_combine(rebind(wrapped, **edit), shares, host, CONTEXT)


def test_quorum_steps_need_the_reference(split: ShamirProvider, custodians: Custodians) -> None:
    """A bare blob carries no binding: custodians and hosts take only a WrappedKey."""
    _, wrapped = split.generate_data_key(bind())
    host = X25519PrivateKey.generate()
    with pytest.raises(KeyBindingError, match="WrappedKey"):
        custodian_reencrypt_share(
            wrapped.blob,  # type: ignore[arg-type]
            custodians.private[0],
            host.public_key(),
            CONTEXT,
            model_id=MODEL_A,
        )
    shares = [_reencrypt(wrapped, custodians, i, host, MODEL_A) for i in (0, 1)]
    with pytest.raises(KeyBindingError, match="WrappedKey"):
        host_combine(wrapped.blob, shares, host, CONTEXT)  # type: ignore[arg-type]


def test_every_shamir_check_covers_the_binding() -> None:
    """KCV, share check, share HPKE info and release HPKE info each change with the model id and seal id."""
    key_id, share, public = "shamir-" + "0" * 32, b"\x07" * 32, "11" * 32
    a, b, c = KeyBinding(SEAL, MODEL_A), KeyBinding(SEAL, MODEL_B), KeyBinding("f" * 32, MODEL_A)
    for derive in (
        lambda x: _kcv(b"\x01" * 32, key_id, x),
        lambda x: _share_check(key_id, 1, x, share),
        lambda x: _share_info(key_id, 1, public, x),
        lambda x: _release_info(key_id, 1, public, x, CONTEXT),
    ):
        assert len({derive(a), derive(b), derive(c), derive(KeyBinding(SEAL))}) == 4


def test_released_key_opens_only_its_binding(keyring: KeyProvider) -> None:
    """A host holding a released key cannot use it for the same blob presented under another binding."""
    dek, wrapped = keyring.generate_data_key(bind(MODEL_A))
    with ReleasedKey(wrapped, dek) as released:
        assert released.unwrap(wrapped) == dek and released.binding == wrapped.binding
        for edit in ({"model_id": MODEL_B}, {"model_id": None}, {"seal_id": "d" * 32}):
            with pytest.raises(BindingMismatchError, match="released for model"):
                released.unwrap(rebind(wrapped, **edit))


def test_require_model(keyring: KeyProvider) -> None:
    """What a releasing service calls: the model it is about to release must be the one the key is bound to."""
    _, wrapped = keyring.generate_data_key(bind(MODEL_A))
    require_model(wrapped, MODEL_A)
    for other in (MODEL_B, None):
        with pytest.raises(BindingMismatchError, match=f"bound to model {MODEL_A}"):
            require_model(wrapped, other)
    _, unbound = keyring.generate_data_key(bind(None))
    require_model(unbound, None)
    with pytest.raises(BindingMismatchError):
        require_model(unbound, MODEL_A)
