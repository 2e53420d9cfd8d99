"""Every parser of outside input raises only typed Strongroom errors (never ValueError, RecursionError,
UnicodeError, KeyError...) on hostile input: strict JSON, ledger entries and their claims, tile paths,
entry bundles, checkpoints and notes, the witness's add-checkpoint request, custody envelopes and every
typed message in ``strongroom.custody.protocol``. Bounded: a few hundred examples each, no deadline."""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom import strict_json
from strongroom.custody import protocol
from strongroom.custody.envelope import CoSigned, SignedMessage, format_time, utc_now
from strongroom.errors import StrongroomError
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.entries import claimed_signer, make_entry, parse_entry
from strongroom.ledger.log import Ledger
from strongroom.ledger.note import NoteVerifier, open_note, parse_note
from strongroom.ledger.tiles import BundleReader, parse_level, parse_tile_request, unbundle
from strongroom.ledger.witness import Witness, parse_request
from strongroom.signing import Signer
from tests.fuzz.strategies import UNICODE_DIGITS, digits, hostile_bytes, hostile_json_text, json_value

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGNER = Signer.generate("ed25519")
ENTRY = make_entry(
    "model.evaluated",
    {"model_id": "blake3:" + "ab" * 32, "suite": "s", "results": {"score": 1}, "evaluator": "e"},
    SIGNER,
    "2026-01-31T12:00:00Z",
)


def only_typed(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function``; a Strongroom error is an answer, anything else fails the test."""
    try:
        return function(*args)
    except StrongroomError:
        return None


@FUZZ
@given(hostile_bytes)
def test_strict_json(raw: bytes) -> None:
    only_typed(strict_json.loads, raw)


@st.composite
def mutated_entries(draw: st.DrawFn) -> bytes:
    """A valid entry with bytes replaced, inserted or deleted, or a nasty value spliced into its results."""
    raw = bytearray(ENTRY)
    kind = draw(st.integers(0, 3))
    if kind == 0:
        raw[raw.index(b'{"score":1}') : raw.index(b'{"score":1}') + 11] = draw(hostile_json_text()).encode(
            "utf-8", "surrogatepass"
        )
        return bytes(raw)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw) - 1))
        if kind == 1:
            raw[at] = draw(st.integers(0, 255))
        elif kind == 2:
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at : at + draw(st.integers(1, 8))]
    return bytes(raw)


@FUZZ
@given(st.one_of(mutated_entries(), hostile_bytes))
def test_entry_parse_and_claim(raw: bytes) -> None:
    claim = only_typed(claimed_signer, raw)
    entry = only_typed(parse_entry, raw)
    if entry is not None:  # whatever verifies was claimed, and as itself
        assert claim is not None and (claim.type, claim.key_id) == (entry.type, entry.signer)


tile_text = st.text(st.one_of(digits, st.sampled_from("x/.p0123456789")), max_size=40)


@FUZZ
@given(tile_text, tile_text)
def test_tile_paths(level: str, rest: str) -> None:
    only_typed(parse_level, level)
    only_typed(parse_tile_request, rest)


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 70))
def test_bundles(data: bytes, step: int) -> None:
    only_typed(unbundle, data, 5)
    reader = BundleReader(50)

    def stream() -> None:
        for i in range(0, len(data), step):
            list(reader.feed(data[i : i + step]))
        reader.finish()

    only_typed(stream)


LOG_KEY = Signer.generate("ed25519")


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> tuple[Witness, str, NoteVerifier]:
    data = tmp_path_factory.mktemp("fuzz-witness")
    ledger = Ledger.open(data / "log")
    ledger.append(ENTRY)
    note = ledger.checkpoint()
    verifier = ledger.signer.verifier
    ledger.close()
    return Witness.open(data / "w", "witness.fuzz/w", [verifier.vkey]), note, verifier


@st.composite
def mutated_notes(draw: st.DrawFn, note: str) -> str:
    text = list(note)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        text[at:at] = draw(
            st.one_of(st.sampled_from(["\n", "\n\n", " ", "\u2014 ", *UNICODE_DIGITS]), st.text(max_size=3))
        )
    return "".join(text)


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_checkpoints_notes_and_witness_requests(
    witness: tuple[Witness, str, NoteVerifier], data: st.DataObject
) -> None:
    server, note, verifier = witness
    mutated = data.draw(mutated_notes(note))
    only_typed(Checkpoint.parse, mutated)
    only_typed(parse_note, mutated)
    only_typed(open_note, mutated, verifier)
    only_typed(NoteVerifier.from_vkey, data.draw(st.one_of(st.text(max_size=80), mutated_notes(verifier.vkey))))
    old = data.draw(st.one_of(st.text(digits, min_size=1, max_size=25), st.text(max_size=5)))
    proof = data.draw(
        st.lists(st.one_of(st.text(max_size=50), st.just(base64.b64encode(b"h" * 32).decode())), max_size=4)
    )
    request = (
        "old " + old + "\n" + "".join(p + "\n" for p in proof) + "\n" + data.draw(st.sampled_from([note, mutated]))
    )
    only_typed(parse_request, request)
    reply = server.add_checkpoint(request)
    assert reply.status in (200, 400, 403, 404, 409, 422), reply


# -- custody: envelopes and every typed message -----------------------------------------------------------

NOW = utc_now()


def field_value(name: str) -> st.SearchStrategy[Any]:
    """Plausible values for a field, so parsing gets past its first checks, mixed with any JSON value."""
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "nonce": st.just("ab" * 16),
        "issued_at": st.just(format_time(NOW)),
        "expires_at": st.sampled_from([format_time(NOW), "2999-01-01T00:00:00Z", "2026-\u00b21-01T00:00:00Z"]),
        "model_id": st.just("blake3:" + "ab" * 32),
        "request_id": st.just("ab" * 32),
        "type": st.sampled_from([v for k, v in vars(protocol).items() if k.endswith("_TYPE") and isinstance(v, str)]),
    }
    return st.one_of(plausible.get(name, json_value), json_value)


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    classes = [
        c for c in vars(protocol).values() if inspect.isclass(c) and isinstance(getattr(c, "FIELDS", None), frozenset)
    ]
    fields = sorted(draw(st.sampled_from(classes)).FIELDS)
    chosen = draw(st.lists(st.sampled_from(fields), unique=True)) if draw(st.booleans()) else fields
    payload = {name: draw(field_value(name)) for name in chosen}
    extra = draw(st.dictionaries(st.text(max_size=6), json_value, max_size=2))
    return {**payload, **extra}


PARSERS = [
    (name, cls.parse)
    for name, cls in sorted(vars(protocol).items())
    if inspect.isclass(cls) and cls.__module__ == protocol.__name__ and inspect.ismethod(getattr(cls, "parse", None))
]


def test_every_typed_message_parser_is_fuzzed() -> None:
    names = {name for name, _ in PARSERS}
    assert {"ReleaseRequest", "Approval", "Fetch", "LoadReport", "PendingQuery", "AdminChange"} <= names, names


@FUZZ
@given(st.one_of(hostile_bytes, hostile_json_text()), payloads(), st.text(max_size=70), st.binary(max_size=80))
def test_custody_envelopes_and_typed_messages(
    raw: bytes | str, payload: dict[str, Any], signer: str, sig: bytes
) -> None:
    only_typed(SignedMessage.from_json, raw, "fuzz")
    only_typed(CoSigned.from_json, raw, "fuzz")
    signed = only_typed(SignedMessage, payload, signer, sig)
    cosigned = only_typed(CoSigned, payload, ((signer, sig),))
    for _, parse in PARSERS:
        parameters = list(inspect.signature(parse).parameters.values())
        annotation = str(parameters[0].annotation)
        if "CoSigned" in annotation:
            if cosigned is not None:
                only_typed(parse, cosigned)
        elif "SignedMessage" in annotation:
            if signed is not None:
                only_typed(parse, signed)
        else:  # a value parsed from JSON: any value where the parser takes Any, a dict where it takes one
            for value in (payload, payload.get("change"), payload.get("host")):
                if "dict" not in annotation or isinstance(value, dict):
                    only_typed(parse, value, "fuzz") if len(parameters) >= 2 else only_typed(parse, value)


def test_envelope_refuses_what_strict_json_refuses(tmp_path: Path) -> None:
    for raw in ['{"payload": {}, "payload": {}, "signer": "a", "signature": ""}', '{"payload": {"n": NaN}}']:
        with pytest.raises(StrongroomError, match="not valid JSON"):
            SignedMessage.from_json(raw, "m")
