"""The strict JSON parser, the cheap signer claim and the streaming bundle reader, one behaviour each."""

from __future__ import annotations

import json

import pytest

from strongroom import strict_json
from strongroom.ledger.entries import claimed_signer, make_entry, parse_entry
from strongroom.ledger.errors import EntryError, LedgerError
from strongroom.ledger.tiles import BundleReader, bundle, decode_index, parse_level, parse_tile_request, unbundle
from strongroom.signing import Signer
from tests.ledger.test_log import evaluated


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("[Infinity]", "Infinity is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        ("1e400", "out of range for a double"),
        ("-1e400", "out of range for a double"),
        ("9007199254740992", "out of range"),
        ("-9007199254740992", "out of range"),
        ("1" * 5000, "5000 digits"),
        ("0." + "1" * 100, "number literal of 102 characters"),
        ('{"a": 1, "a": 1}', "duplicate key 'a'"),
        ('{"x": {"b": 1, "b": 2}}', "duplicate key 'b'"),
        ("[" * 65 + "]" * 65, "nested more than 64 deep"),
        ('{"a":' * 65 + "1" + "}" * 65, "nested more than 64 deep"),
        ("[" * 100_000, "nested more than 64 deep"),
        ('"\\ud800"', "unpaired surrogate"),
        ('{"\\udc00": 1}', "unpaired surrogate"),
        ("\ufeff{}", "byte order mark"),
        ("{", "Expecting property name"),
        ("[1] [2]", "Extra data"),
        ('"a\x01"', "Invalid control character"),
        ("", "Expecting value"),
    ],
)
def test_strict_json_refuses(text: str, reason: str) -> None:
    with pytest.raises(strict_json.StrictJSONError, match=reason.replace("(", r"\(")):
        strict_json.loads(text.encode("utf-8", "surrogatepass"))


def test_strict_json_refuses_other_encodings() -> None:
    for raw in [b"\xff", '{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32"), b'"\xc3"']:
        with pytest.raises(strict_json.StrictJSONError, match="UTF-8"):
            strict_json.loads(raw)


@pytest.mark.parametrize(
    "text",
    [
        "9007199254740991",
        "-9007199254740991",
        "1e308",
        "1e-400",
        "-0.0",
        '"\\ud83d\\ude00"',
        "[" * 64 + "]" * 64,
        '{"a": {"a": {"a": 1}}}',
        '  {"x": [1, 2.5, "s", true, null]}  ',
    ],
)
def test_strict_json_accepts_what_json_means(text: str) -> None:
    assert strict_json.loads(text.encode()) == json.loads(text)


def test_claimed_signer_matches_every_valid_entry() -> None:
    for key_type in ("ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"):
        signer = Signer.generate(key_type)  # type: ignore[arg-type]
        raw = make_entry(
            "model.evaluated",
            {"model_id": "m", "suite": 's"\\}{,"signer":', "results": {"é": "\n"}, "evaluator": "e"},
            signer,
        )
        claim = claimed_signer(raw)
        entry = parse_entry(raw)
        assert (claim.type, claim.key_id) == (entry.type, entry.signer)


def test_claimed_signer_explains_malformed_entries_without_crypto() -> None:
    raw = evaluated(Signer.generate("ed25519"), 1)
    with pytest.raises(EntryError, match="NaN is not a JSON number"):
        claimed_signer(raw.replace(b'"score":1', b'"score":NaN').replace(b'"type"', b'"tipe"'))
    with pytest.raises(EntryError, match="exactly the fields"):
        claimed_signer(b'{"a": 1}')
    with pytest.raises(EntryError, match="key_id must be 64 lowercase hex"):
        claimed_signer(raw.replace(b'"key_id":"', b'"key_id":"X'))
    with pytest.raises(EntryError, match="limit is 60000"):
        claimed_signer(b" " * 60_001)


def test_bundle_reader_yields_entries_as_they_complete_and_caps_their_number() -> None:
    entries = [bytes([i]) * (i * 37) for i in range(1, 40)]
    data = bundle(entries)
    for step in (1, 3, 64, len(data)):
        reader = BundleReader()
        out = [e for i in range(0, len(data), step) for e in reader.feed(data[i : i + step])]
        reader.finish()
        assert out == entries
    with pytest.raises(LedgerError, match="more than 10 entries"):
        unbundle(data, max_entries=10)
    with pytest.raises(LedgerError, match="truncated"):
        unbundle(data[:-1])
    assert unbundle(b"") == []


def test_tile_paths_are_ascii_decimal() -> None:
    assert decode_index("x001/x234/067") == 1_234_067
    assert parse_tile_request("001.p/5") == (1, 5)
    assert parse_level("63") == 63
    for bad in [
        "\u00b2\u00b2\u00b2",
        "\u0663\u0663\u0663",
        "000\n",
        "x1/000",
        "0000",
        "x001/x001/x001/x001/x001/x001/x001/000",
    ]:
        with pytest.raises(LedgerError):
            decode_index(bad)
    for bad_level in ["\u00b2", "64", "", "-1", "007"]:
        with pytest.raises(LedgerError):
            parse_level(bad_level)
    for bad_width in ["000.p/\u00b2", "000.p/0", "000.p/05", "000.p/256"]:
        with pytest.raises(LedgerError):
            parse_tile_request(bad_width)
