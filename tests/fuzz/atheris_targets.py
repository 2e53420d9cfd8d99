"""Coverage-guided fuzzing of Strongroom's input parsers with atheris (libFuzzer), run by hand, not in CI:

    pip install atheris
    PYTHONPATH=src python tests/fuzz/atheris_targets.py seeds DIR     # valid inputs to start from, DIR/TARGET/*
    PYTHONPATH=src python tests/fuzz/atheris_targets.py TARGET DIR/TARGET -runs=1000000 -max_len=8192

TARGET is one of: json, entry, tiles, bundle, note, witness, envelope. A target fails (and libFuzzer saves the
input as crash-*) when a parser raises anything but a StrongroomError. The hypothesis suite in this folder
covers the same parsers within CI's time; this one explores for as long as you let it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from strongroom import strict_json
    from strongroom.custody.envelope import CoSigned, SignedMessage
    from strongroom.errors import StrongroomError
    from strongroom.ledger.checkpoint import Checkpoint
    from strongroom.ledger.entries import claimed_signer, parse_entry
    from strongroom.ledger.note import NoteVerifier, parse_note
    from strongroom.ledger.tiles import BundleReader, parse_level, parse_tile_request, unbundle
    from strongroom.ledger.witness import parse_request


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")  # what an HTTP layer hands on; seeds stay recognisable


def json_target(data: bytes) -> None:
    strict_json.loads(data)


def entry_target(data: bytes) -> None:
    claimed_signer(data)
    parse_entry(data)


def tiles_target(data: bytes) -> None:
    text = _text(data)
    level, _, rest = text.partition("/")
    parse_level(level)
    parse_tile_request(rest)


def bundle_target(data: bytes) -> None:
    unbundle(data, 64)
    reader = BundleReader(64)
    for i in range(0, len(data), 7):
        list(reader.feed(data[i : i + 7]))
    reader.finish()


def note_target(data: bytes) -> None:
    text = _text(data)
    parse_note(text)
    NoteVerifier.from_vkey(text)
    Checkpoint.parse(text)


def witness_target(data: bytes) -> None:
    parse_request(_text(data))


def envelope_target(data: bytes) -> None:
    SignedMessage.from_json(data, "fuzz")
    CoSigned.from_json(data, "fuzz")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "json": json_target,
    "entry": entry_target,
    "tiles": tiles_target,
    "bundle": bundle_target,
    "note": note_target,
    "witness": witness_target,
    "envelope": envelope_target,
}


def write_seeds(folder: Path) -> None:
    """One valid input per target (random bytes rarely get past the first check of a signed format)."""
    from strongroom.custody import admin
    from strongroom.ledger.entries import make_entry
    from strongroom.ledger.log import Ledger
    from strongroom.ledger.tiles import bundle
    from strongroom.ledger.witness import request_body
    from strongroom.signing import Signer

    signer = Signer.generate("ed25519")
    body = {
        "model_id": "blake3:" + "ab" * 32,
        "suite": "s",
        "results": {"score": 1.5, "n": [1, None]},
        "evaluator": "e",
    }
    entry = make_entry("model.evaluated", body, signer)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp))
        ledger.append(entry)
        note = ledger.checkpoint()
        vkey = ledger.signer.verifier.vkey
        ledger.close()
    change = admin.propose(admin.offboard("alice", "left"), [signer])
    seeds = {
        "json": json.dumps(body).encode(),
        "entry": entry,
        "tiles": b"0/x001/234.p/17",
        "bundle": bundle([entry, entry]),
        "note": note.encode() + b"\n" + vkey.encode(),
        "witness": request_body(0, [b"h" * 32], note).encode(),
        "envelope": json.dumps(change.to_json()).encode(),
    }
    for name, seed in seeds.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "seed").write_bytes(seed)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "seeds":
        write_seeds(Path(sys.argv[2]))
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(StrongroomError):
            target(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
