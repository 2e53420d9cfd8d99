"""The in-process ledger on SQLite and PostgreSQL: durability, exactly-once sequencing, refusal of bad entries."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from strongroom.ledger import merkle
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.entries import make_entry, parse_entry
from strongroom.ledger.errors import EntryError
from strongroom.ledger.log import Ledger
from strongroom.ledger.note import open_note
from strongroom.ledger.tiles import bundle, unbundle
from strongroom.signing import Signer

MODEL = "blake3:" + "ab" * 32


def evaluated(signer: Signer, i: int) -> bytes:
    return make_entry(
        "model.evaluated",
        {"model_id": MODEL, "suite": f"suite-{i}", "results": {"score": i}, "evaluator": "evals"},
        signer,
    )


def test_append_prove_and_reopen(tmp_path: Path, database: str) -> None:
    signer = Signer.generate("ed25519")
    ledger = Ledger.open(tmp_path / "data", database)
    receipts = [ledger.append(evaluated(signer, i)) for i in range(37)]
    assert [r.index for r in receipts] == list(range(37))
    text, _ = open_note(ledger.checkpoint(), ledger.signer.verifier)
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.size == 37
    for r in receipts:
        merkle.verify_inclusion(r.leaf_hash, r.index, 37, ledger.inclusion_proof(r.index, 37), checkpoint.root)
    old_root = ledger.root(20)
    ledger.close()
    reopened = Ledger.open(tmp_path / "data", database)
    assert reopened.size == 37 and reopened.root(37) == checkpoint.root
    merkle.verify_consistency(20, 37, old_root, checkpoint.root, reopened.consistency_proof(20, 37))
    assert parse_entry(reopened.entry(5)).body["suite"] == "suite-5"
    reopened.close()


def test_concurrent_appends_are_sequenced_exactly_once(tmp_path: Path, database: str) -> None:
    ledger = Ledger.open(tmp_path / "data", database)
    signers = [Signer.generate("ed25519") for _ in range(8)]
    results: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(40):
            receipt = ledger.append(evaluated(signers[n], n * 1000 + i))
            with lock:
                results.append(receipt.index)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(320))
    suites = sorted(parse_entry(raw).body["suite"] for raw in ledger.entries(0, 320))
    assert suites == sorted(f"suite-{n * 1000 + i}" for n in range(8) for i in range(40))
    ledger.close()


def test_bad_entries_are_never_sequenced(tmp_path: Path, database: str) -> None:
    ledger = Ledger.open(tmp_path / "data", database)
    signer = Signer.generate("ecdsa-p256")
    good = evaluated(signer, 1)
    value = json.loads(good)
    forged = dict(value, body={**value["body"], "results": {"score": 99}})
    cases = {
        b"{not json": "not valid JSON",
        json.dumps(forged, sort_keys=True, separators=(",", ":")).encode(): "signature does not verify",
        json.dumps(dict(value, type="model.stolen"), sort_keys=True, separators=(",", ":")).encode(): "unknown entry",
        json.dumps(dict(value, extra=1)).encode(): "exactly the fields",
        json.dumps(value, indent=1).encode(): "canonical",
    }
    for raw, message in cases.items():
        with pytest.raises(EntryError, match=message):
            ledger.append(raw)
    with pytest.raises(EntryError, match="model_id"):
        make_entry("model.loaded", {"host": "h", "request_id": "r", "statement": {}}, signer)
    assert ledger.size == 0
    assert ledger.append(good).index == 0
    ledger.close()


def test_queries_and_tiles(tmp_path: Path, database: str) -> None:
    ledger = Ledger.open(tmp_path / "data", database)
    signer = Signer.generate("ed25519")
    for i in range(300):
        ledger.append(evaluated(signer, i))
    ledger.append(make_entry("person.changed", {"person": "alice", "change": "vetted", "authorisation": {}}, signer))
    assert [i for i, _ in ledger.query(person="alice")] == [300]
    assert len(ledger.query(type="model.evaluated", model_id=MODEL)) == 300
    full = ledger.tile(0, 0, 256)
    assert full == b"".join(ledger.tree.levels[0][:256])
    assert ledger.available_width(0, 1) == 45 and ledger.available_width(1, 0) == 1
    assert unbundle(bundle(ledger.entries(0, 3))) == ledger.entries(0, 3)
    ledger.close()


def test_appending_the_same_entry_twice_sequences_it_once(tmp_path: Path, database: str) -> None:
    ledger = Ledger.open(tmp_path / "data", database)
    raw = evaluated(Signer.generate("ed25519"), 1)
    first = ledger.append(raw)
    again = ledger.append(raw)
    assert (again.index, again.duplicate, first.duplicate) == (first.index, True, False)
    futures = [ledger.submit(parse_entry(raw)) for _ in range(5)]
    assert {f.result().index for f in futures} == {first.index} and ledger.size == 1
    ledger.close()
    reopened = Ledger.open(tmp_path / "data", database)
    assert reopened.append(raw).duplicate and reopened.size == 1
    reopened.close()


def test_ecdsa_entry_signatures_are_unique(tmp_path: Path) -> None:
    """s and n - s both verify under ECDSA; the log accepts only the low one, so a statement has one leaf."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from strongroom.canonical_json import canonical_json
    from strongroom.signing import _ORDERS

    ledger = Ledger.open(tmp_path / "data")
    for curve, name in (("ecdsa-p256", "secp256r1"), ("ecdsa-p384", "secp384r1"), ("ecdsa-p521", "secp521r1")):
        signer = Signer.generate(curve)  # type: ignore[arg-type]
        for i in range(8):  # a signer always writes the low form
            raw = evaluated(signer, i)
            r, s = decode_dss_signature(base64.b64decode(json.loads(raw)["signature"]))
            assert s <= _ORDERS[name] // 2
        ledger.append(raw)
        entry = json.loads(raw)
        entry["signature"] = base64.b64encode(encode_dss_signature(r, _ORDERS[name] - s)).decode()
        with pytest.raises(EntryError, match="not low-S"):
            ledger.append(canonical_json(entry))
        padded = base64.b64decode(json.loads(raw)["signature"]) + b"\x00"
        entry["signature"] = base64.b64encode(padded).decode()
        with pytest.raises(EntryError, match="DER"):
            ledger.append(canonical_json(entry))
    assert ledger.size == 3
    ledger.close()
