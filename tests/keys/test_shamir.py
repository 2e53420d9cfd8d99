"""Shamir custodians: k-of-n split, re-encryption to a host for one release, and verified reconstruction."""

from __future__ import annotations

import base64
import json
from itertools import combinations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from strongroom.keys.errors import (
    InsufficientSharesError,
    KeyProviderError,
    QuorumRequiredError,
    ShareError,
    UnwrapError,
)
from strongroom.keys.hpke import open_as_host, seal_to_host
from strongroom.keys.provider import KeyProvider, WrappedKey
from strongroom.keys.shamir import (
    RELEASE_INFO,
    CustodianPublicKey,
    ReencryptedShare,
    ShamirBlob,
    ShamirProvider,
    _release_info,
    custodian_reencrypt_share,
    host_combine,
)

from .conftest import MODEL_A, Custodians, bind

CONTEXT = b"release-0001"


@pytest.fixture
def provider(custodians: Custodians) -> ShamirProvider:
    return ShamirProvider(custodians.public[:3], 2)


def _release(
    wrapped: WrappedKey, custodians: Custodians, who: list[int], context: bytes = CONTEXT
) -> tuple[X25519PrivateKey, list[ReencryptedShare]]:
    host = X25519PrivateKey.generate()
    shares = [
        custodian_reencrypt_share(wrapped, custodians.private[i], host.public_key(), context, model_id=MODEL_A)
        for i in who
    ]
    return host, shares


def test_is_a_key_provider(provider: ShamirProvider) -> None:
    assert isinstance(provider, KeyProvider)
    assert provider.provider == "shamir" and provider.key_id.startswith("shamir-")


def test_key_id_names_the_custodian_set(custodians: Custodians) -> None:
    a = ShamirProvider(custodians.public[:3], 2)
    assert a.key_id == ShamirProvider(list(reversed(custodians.public[:3])), 2).key_id
    assert a.key_id != ShamirProvider(custodians.public[:3], 3).key_id
    assert a.key_id != ShamirProvider(custodians.public[1:4], 2).key_id


@pytest.mark.parametrize(("k", "n"), [(1, 1), (1, 3), (2, 3), (3, 3), (3, 5), (5, 5)])
def test_every_quorum_rebuilds_the_key(custodians: Custodians, k: int, n: int) -> None:
    provider = ShamirProvider(custodians.public[:n], k)
    dek, wrapped = provider.generate_data_key(bind())
    for who in combinations(range(n), k):
        host, shares = _release(wrapped, custodians, list(who))
        assert host_combine(wrapped, shares, host, CONTEXT) == dek, who


def test_more_than_k_shares_accepted(provider: ShamirProvider, custodians: Custodians) -> None:
    dek, wrapped = provider.generate_data_key(bind())
    host, shares = _release(wrapped, custodians, [2, 0, 1])
    assert host_combine(wrapped, shares, host, CONTEXT) == dek


def test_blob_round_trips_through_json(provider: ShamirProvider, custodians: Custodians) -> None:
    dek, wrapped = provider.generate_data_key(bind())
    wrapped = WrappedKey.from_json(json.loads(json.dumps(wrapped.to_json())))
    host, shares = _release(wrapped, custodians, [0, 2])
    shares = [ReencryptedShare.from_json(json.loads(json.dumps(s.to_json()))) for s in shares]
    assert host_combine(wrapped, shares, host, CONTEXT) == dek


def test_blob_reveals_no_key(provider: ShamirProvider) -> None:
    dek, wrapped = provider.generate_data_key(bind())
    for part in (bytes(dek), bytes(dek[:16]), bytes(dek[16:])):
        assert part not in wrapped.blob
    assert base64.b64encode(bytes(dek)) not in wrapped.blob


def test_fewer_than_k_shares(custodians: Custodians) -> None:
    provider = ShamirProvider(custodians.public[:5], 3)
    _, wrapped = provider.generate_data_key(bind())
    host, shares = _release(wrapped, custodians, [0, 4])
    with pytest.raises(InsufficientSharesError, match="needs 3 distinct custodian shares, got 2"):
        host_combine(wrapped, shares, host, CONTEXT)
    with pytest.raises(InsufficientSharesError):
        host_combine(wrapped, [], host, CONTEXT)


def test_duplicate_shares(provider: ShamirProvider, custodians: Custodians) -> None:
    _, wrapped = provider.generate_data_key(bind())
    host, shares = _release(wrapped, custodians, [1])
    with pytest.raises(ShareError, match="presented twice"):
        host_combine(wrapped, [shares[0], shares[0]], host, CONTEXT)
    # The same custodian re-encrypting twice is still one share.
    again = custodian_reencrypt_share(wrapped, custodians.private[1], host.public_key(), CONTEXT, model_id=MODEL_A)
    with pytest.raises(ShareError, match="presented twice"):
        host_combine(wrapped, [shares[0], again], host, CONTEXT)


def test_wrong_custodian_key(provider: ShamirProvider, custodians: Custodians) -> None:
    _, wrapped = provider.generate_data_key(bind())
    outsider = custodians.private[4]  # not among the first three custodians
    with pytest.raises(ShareError, match="holds no share"):
        custodian_reencrypt_share(
            wrapped, outsider, X25519PrivateKey.generate().public_key(), CONTEXT, model_id=MODEL_A
        )


def test_share_for_another_host(provider: ShamirProvider, custodians: Custodians) -> None:
    _, wrapped = provider.generate_data_key(bind())
    _, shares = _release(wrapped, custodians, [0, 1])
    thief = X25519PrivateKey.generate()
    with pytest.raises(ShareError, match="does not open with this host key"):
        host_combine(wrapped, shares, thief, CONTEXT)


def test_share_for_another_release(provider: ShamirProvider, custodians: Custodians) -> None:
    """A share re-encrypted for release A cannot be replayed into release B, even to the same host key."""
    _, wrapped = provider.generate_data_key(bind())
    host = X25519PrivateKey.generate()
    a = custodian_reencrypt_share(wrapped, custodians.private[0], host.public_key(), b"release-A", model_id=MODEL_A)
    b = custodian_reencrypt_share(wrapped, custodians.private[1], host.public_key(), b"release-B", model_id=MODEL_A)
    with pytest.raises(ShareError, match=r"share 1 .* does not open"):
        host_combine(wrapped, [a, b], host, b"release-B")


def test_share_moved_to_another_index(provider: ShamirProvider, custodians: Custodians) -> None:
    _, wrapped = provider.generate_data_key(bind())
    host, shares = _release(wrapped, custodians, [0, 1])
    moved = ReencryptedShare(shares[0].key_id, 3, provider.custodians[2].public_hex, shares[0].sealed)
    with pytest.raises(ShareError, match=r"share 3 .* does not open"):
        host_combine(wrapped, [moved, shares[1]], host, CONTEXT)


def test_corrupted_share_is_detected(provider: ShamirProvider, custodians: Custodians) -> None:
    """A custodian that re-encrypts a wrong share value (validly sealed) is named, never yields a wrong key."""
    dek, wrapped = provider.generate_data_key(bind())
    host, shares = _release(wrapped, custodians, [0, 1])
    blob = ShamirBlob.parse(wrapped)
    record = blob.shares[1]
    info = _release_info(blob.key_id, 2, record.public_hex, wrapped.binding, CONTEXT)
    genuine = open_as_host(host, shares[1].sealed, info)
    for position in (0, 15, 16, 31):
        bad = bytearray(genuine)
        bad[position] ^= 0x80
        forged = ReencryptedShare(blob.key_id, 2, record.public_hex, seal_to_host(host.public_key(), bad, info))
        with pytest.raises(ShareError, match=r"share 2 .*\(bob\) is corrupted"):
            host_combine(wrapped, [shares[0], forged], host, CONTEXT)
    assert host_combine(wrapped, shares, host, CONTEXT) == dek


def test_kcv_catches_forged_checks(provider: ShamirProvider, custodians: Custodians) -> None:
    """Even if share checks in the blob are rewritten to match a bad share, the key-check value refuses it."""
    _, wrapped = provider.generate_data_key(bind())
    host, shares = _release(wrapped, custodians, [0, 1])
    blob = ShamirBlob.parse(wrapped)
    record = blob.shares[1]
    info = _release_info(blob.key_id, 2, record.public_hex, wrapped.binding, CONTEXT)
    bad = open_as_host(host, shares[1].sealed, info)
    bad[3] ^= 1
    from strongroom.keys.shamir import _share_check

    doc = json.loads(wrapped.blob)
    doc["shares"][1]["check"] = _share_check(blob.key_id, 2, wrapped.binding, bad)
    forged_blob = WrappedKey("shamir", wrapped.key_id, json.dumps(doc).encode(), wrapped.binding)
    forged = ReencryptedShare(blob.key_id, 2, record.public_hex, seal_to_host(host.public_key(), bad, info))
    with pytest.raises(ShareError, match="fails the key-check value"):
        host_combine(forged_blob, [shares[0], forged], host, CONTEXT)


def test_tampered_sealed_share_at_custodian(provider: ShamirProvider, custodians: Custodians) -> None:
    _, wrapped = provider.generate_data_key(bind())
    doc = json.loads(wrapped.blob)
    sealed = bytearray(base64.b64decode(doc["shares"][0]["sealed"]))
    sealed[-1] ^= 1
    doc["shares"][0]["sealed"] = base64.b64encode(bytes(sealed)).decode()
    tampered = WrappedKey("shamir", wrapped.key_id, json.dumps(doc).encode(), wrapped.binding)
    with pytest.raises(ShareError, match="tampered"):
        custodian_reencrypt_share(
            tampered, custodians.private[0], X25519PrivateKey.generate().public_key(), CONTEXT, model_id=MODEL_A
        )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(threshold=1),
        lambda d: d.update(threshold=4),
        lambda d: d.update(threshold="2"),
        lambda d: d.update(key_id="shamir-" + "0" * 32),
        lambda d: d["shares"].pop(),
        lambda d: d["shares"].reverse(),
        lambda d: d["shares"][0].update(public_key="00" * 32),
        lambda d: d["shares"][0].update(sealed="***"),
        lambda d: d["shares"][0].pop("check"),
        lambda d: d.update(format="strongroom-shamir/v0"),
        lambda d: d.pop("kcv"),
    ],
)
def test_tampered_blob_structure_refused(provider: ShamirProvider, custodians: Custodians, mutate: object) -> None:
    _, wrapped = provider.generate_data_key(bind())
    doc = json.loads(wrapped.blob)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(UnwrapError):
        custodian_reencrypt_share(
            WrappedKey("shamir", wrapped.key_id, json.dumps(doc).encode(), wrapped.binding),
            custodians.private[0],
            X25519PrivateKey.generate().public_key(),
            CONTEXT,
            model_id=MODEL_A,
        )


@pytest.mark.parametrize("blob", [b"", b"{", b"[]", b"null", b'{"format": "strongroom-shamir/v1"}'])
def test_malformed_blob_refused(blob: bytes) -> None:
    with pytest.raises(UnwrapError):
        ShamirBlob.parse(blob)


def test_share_for_another_key(custodians: Custodians) -> None:
    first = ShamirProvider(custodians.public[:3], 2)
    second = ShamirProvider(custodians.public[:3], 3)
    _, w1 = first.generate_data_key(bind())
    _, w2 = second.generate_data_key(bind())
    host, shares = _release(w1, custodians, [0, 1])
    with pytest.raises(ShareError, match="is for key"):
        host_combine(w2, shares, host, CONTEXT)


@pytest.mark.parametrize(
    "value",
    [None, [], {"key_id": "x"}, {"key_id": "x", "index": True, "custodian_public_key": "", "sealed": ""}],
)
def test_malformed_reencrypted_share(value: object) -> None:
    with pytest.raises(ShareError):
        ReencryptedShare.from_json(value)


def test_unwrap_needs_a_quorum(provider: ShamirProvider) -> None:
    _, wrapped = provider.generate_data_key(bind())
    with pytest.raises(QuorumRequiredError, match="custodian quorum"):
        provider.unwrap(wrapped)


def test_local_quorum_mode(custodians: Custodians) -> None:
    provider = ShamirProvider(custodians.public[:3], 2, local_custodian_keys=custodians.private[1:3])
    dek, wrapped = provider.generate_data_key(bind())
    assert provider.unwrap(wrapped) == dek
    short = ShamirProvider(custodians.public[:3], 2, local_custodian_keys=custodians.private[:1])
    with pytest.raises(QuorumRequiredError, match="holds 1 custodian key"):
        short.unwrap(wrapped)


def test_local_key_must_belong(custodians: Custodians) -> None:
    with pytest.raises(KeyProviderError, match="does not belong"):
        ShamirProvider(custodians.public[:3], 2, local_custodian_keys=[custodians.private[4]])


@pytest.mark.parametrize(("k", "n"), [(0, 3), (4, 3), (-1, 2)])
def test_bad_thresholds(custodians: Custodians, k: int, n: int) -> None:
    with pytest.raises(KeyProviderError, match="threshold"):
        ShamirProvider(custodians.public[:n], k)


def test_duplicate_custodian_refused(custodians: Custodians) -> None:
    twin = CustodianPublicKey("alice-again", custodians.public[0].public_key)
    with pytest.raises(KeyProviderError, match="twice"):
        ShamirProvider([custodians.public[0], twin], 1)


def test_empty_context_refused(provider: ShamirProvider, custodians: Custodians) -> None:
    _, wrapped = provider.generate_data_key(bind())
    with pytest.raises(KeyProviderError, match="release context"):
        custodian_reencrypt_share(
            wrapped, custodians.private[0], X25519PrivateKey.generate().public_key(), b"", model_id=MODEL_A
        )


def test_release_info_is_short() -> None:
    info = _release_info("shamir-" + "0" * 32, 255, "00" * 32, bind(), b"x" * 10_000)
    assert len(info) == len(RELEASE_INFO) + 33 <= 64
