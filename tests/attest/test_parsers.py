"""The pure parsers: agreement with tss2's own unmarshalling on real TPM output, and typed refusals of
malformed input (every truncation, trailing bytes, fuzzed bytes and documents)."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.attest import _tss
from strongroom.attest.binding import TpmSealedKey
from strongroom.attest.credential import Challenge
from strongroom.attest.enrol import EnrolledTpm, EnrolmentEvidence
from strongroom.attest.errors import AttestError, GoldenValuesError, TpmFormatError
from strongroom.attest.golden import GoldenValues
from strongroom.attest.identity import AkPublic
from strongroom.attest.pcrs import TEST_LAYOUT
from strongroom.attest.quote import Quote, verify_quote
from strongroom.attest.tpm2 import (
    TPM_ST_ATTEST_QUOTE,
    CreationInfo,
    QuoteInfo,
    parse_attest,
    parse_creation_data,
    parse_pcr_selection,
    parse_public,
    parse_signature,
)
from tests.attest.conftest import HOST_CLASS, Host

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
    max_leaves=20,
)


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


PARSERS = [parse_attest, parse_public, parse_signature, parse_creation_data, parse_pcr_selection]
DOCUMENTS = [Quote, AkPublic, TpmSealedKey, Challenge, EnrolledTpm, EnrolmentEvidence]


@pytest.fixture(scope="module")
def samples(host_a: Host) -> dict[str, bytes]:
    """Real structures from TPM A: a quote's attest and signature, the AK birth certificate, public areas."""
    quote = host_a.tpm.quote([TEST_LAYOUT.loader, TEST_LAYOUT.model], b"q" * 32)
    return {
        "attest": quote.attest,
        "signature": quote.signature,
        "creation_attest": host_a.ak.creation_attest,
        "creation_data": host_a.ak.creation_data,
        "ak_public": host_a.ak.public,
        "srk_public": host_a.ak.parent_public,
        "ek_public": host_a.tpm.ek_public(),
    }


def test_agrees_with_tss2_unmarshalling(samples: dict[str, bytes]) -> None:
    tss = _tss.tss()
    ours = parse_attest(samples["attest"])
    theirs, consumed = tss.TPMS_ATTEST.unmarshal(samples["attest"])
    assert consumed == len(samples["attest"]) and ours.type == TPM_ST_ATTEST_QUOTE == int(theirs.type)
    assert ours.extra_data == bytes(theirs.extraData) == b"q" * 32
    assert ours.clock.clock == theirs.clockInfo.clock and ours.clock.reset_count == theirs.clockInfo.resetCount
    assert ours.firmware_version == theirs.firmwareVersion
    assert isinstance(ours.attested, QuoteInfo)
    assert ours.attested.pcr_digest == bytes(theirs.attested.quote.pcrDigest)
    assert ours.attested.pcr_select[0].pcrs == (TEST_LAYOUT.model, TEST_LAYOUT.loader)

    creation = parse_attest(samples["creation_attest"])
    assert isinstance(creation.attested, CreationInfo)
    assert creation.attested.object_name == parse_public(samples["ak_public"]).name

    signature = parse_signature(samples["signature"])
    tss_sig, _ = tss.TPMT_SIGNATURE.unmarshal(samples["signature"])
    assert signature.r == bytes(tss_sig.signature.ecdsa.signatureR)

    for key in ("ak_public", "srk_public", "ek_public"):
        tss_public, _ = tss.TPMT_PUBLIC.unmarshal(samples[key])
        assert parse_public(samples[key]).name == bytes(tss_public.get_name())
        assert parse_public(samples[key]).attributes == int(tss_public.objectAttributes)
    data = parse_creation_data(samples["creation_data"])
    tss_data, _ = tss.TPMS_CREATION_DATA.unmarshal(samples["creation_data"])
    assert data.outside_info == bytes(tss_data.outsideInfo) and data.parent_name == bytes(tss_data.parentName)


@pytest.mark.parametrize(
    ("key", "parser"),
    [("attest", parse_attest), ("creation_attest", parse_attest), ("signature", parse_signature),
     ("creation_data", parse_creation_data), ("ak_public", parse_public), ("ek_public", parse_public)],
)  # fmt: skip
def test_every_truncation_and_trailing_byte_refused(samples: dict[str, bytes], key: str, parser) -> None:
    data = samples[key]
    parser(data)
    for end in range(len(data)):
        with pytest.raises(TpmFormatError):
            parser(data[:end])
    with pytest.raises(TpmFormatError, match="trailing"):
        parser(data + b"\x00")


def test_attest_header_refusals(samples: dict[str, bytes]) -> None:
    attest = samples["attest"]
    with pytest.raises(TpmFormatError, match="magic"):
        parse_attest(b"\x00" + attest[1:])
    with pytest.raises(TpmFormatError, match="attestation type"):
        parse_attest(attest[:4] + struct.pack(">H", 0x8014) + attest[6:])  # TPM_ST_ATTEST_NV
    with pytest.raises(TpmFormatError, match="not ECDSA"):
        parse_signature(struct.pack(">H", 0x0014) + samples["signature"][2:])  # RSASSA


def test_a_certify_creation_is_not_a_quote(host_a: Host) -> None:
    """Type confusion: a validly signed attestation of another type never passes as a quote."""
    ak = host_a.ak
    with pytest.raises(TpmFormatError, match="not a quote"):
        extra = parse_attest(ak.creation_attest).extra_data
        verify_quote(Quote(ak.creation_attest, ak.creation_signature), ak.public, extra, GoldenValues(), HOST_CLASS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_typed_errors(data: bytes) -> None:
    for parser in PARSERS:
        with contextlib.suppress(TpmFormatError):
            parser(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_structures_only_raise_typed_errors(samples: dict[str, bytes], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(samples)))
    raw = bytearray(samples[key])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    for parser in PARSERS:
        with contextlib.suppress(TpmFormatError):
            parser(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_quotes_never_verify(samples: dict[str, bytes], data: st.DataObject) -> None:
    attest = bytearray(samples["attest"])
    index = data.draw(st.integers(0, len(attest) - 1))
    attest[index] ^= data.draw(st.integers(1, 255))
    golden = GoldenValues({HOST_CLASS: {TEST_LAYOUT.model: {bytes(32)}}})
    quote = Quote(bytes(attest), samples["signature"], {TEST_LAYOUT.model: bytes(32), TEST_LAYOUT.loader: bytes(32)})
    with pytest.raises(AttestError):
        verify_quote(quote, samples["ak_public"], b"q" * 32, golden, HOST_CLASS)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode), JSON_VALUES.map(json_bytes)))
def test_malformed_documents_only_raise_typed_errors(raw: bytes) -> None:
    for document in DOCUMENTS:
        with contextlib.suppress(TpmFormatError):
            document.from_json(raw)
    with contextlib.suppress(GoldenValuesError):
        GoldenValues.from_json(raw)


def test_document_field_refusals(samples: dict[str, bytes]) -> None:
    quote = Quote(samples["attest"], samples["signature"], {16: bytes(32), 23: bytes(32)})
    good = quote.to_json()
    assert Quote.from_json(good) == quote
    for bad in (
        good.replace(b'"16"', b'"016"'),
        good.replace(b'"23"', b'"24"'),
        good.replace(b'"version":1', b'"version":2'),
        good.replace(b'"attest":"', b'"attest":"!'),
        good[:-1] + b',"extra":1}',
        good.replace(b"0" * 64, b"0" * 62, 1),
        good.replace(b"0" * 64, b"0" * 63 + b"A", 1),
    ):
        with pytest.raises(TpmFormatError):
            Quote.from_json(bad)
