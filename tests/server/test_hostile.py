"""Appends are judged cheapest check first: an unknown signer is refused before any signature is verified,
an appender's forged bundle costs one verification, a replay costs none, and a bundle carries at most 256
entries. The security review's attack (an 8 MiB bundle of self-signed P-521 entries) took 5.7-7.9 s of the
server's time; here it is refused on its first entry."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from strongroom.ledger.entries import make_entry, parse_entry
from strongroom.ledger.tiles import bundle
from strongroom.server import ledger_routes
from strongroom.server.ledger_routes import MAX_BUNDLE_BYTES, MAX_BUNDLE_ENTRIES
from strongroom.signing import Signer
from tests.ledger.test_log import evaluated
from tests.server.conftest import InProcess
from tests.server.http_raw import post, repeated


def hostile_bundle(size: int = MAX_BUNDLE_BYTES, distinct: int = 32) -> bytes:
    """``size`` bytes of entries signed by a fresh P-521 key nobody allowed (``distinct`` entries repeated:
    the old server verified every copy)."""
    signer = Signer.generate("ecdsa-p521")
    entries = [evaluated(signer, i) for i in range(distinct)]
    one = bundle(entries)
    return (one * (size // len(one) + 1))[: size - size % len(one)] if size >= len(one) else one


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every entry the server's append routes fully verify, in order."""
    seen: list[bytes] = []

    def counting(raw: bytes) -> object:
        seen.append(raw)
        return parse_entry(raw)

    monkeypatch.setattr(ledger_routes, "parse_entry", counting)
    yield seen


def test_8_mib_bundle_of_self_signed_p521_entries_is_refused_without_verifying(
    in_process: InProcess, verifications: list[bytes]
) -> None:
    data = hostile_bundle()
    assert len(data) > 8_000_000
    reply = post(in_process.url, "/add-bundle", repeated(data, len(data)), headers={"Content-Length": str(len(data))})
    assert reply.status == 403 and b"not authorised to append" in reply.body, reply
    assert verifications == []
    assert reply.seconds < 1.0, f"refusing took {reply.seconds:.2f} s"
    assert in_process.services.ledger.size == 0


def test_unknown_signer_on_add_is_refused_without_verifying(in_process: InProcess, verifications: list[bytes]) -> None:
    reply = httpx.post(in_process.url + "/add", content=evaluated(Signer.generate("ecdsa-p521"), 1))
    assert reply.status_code == 403 and reply.json()["kind"] == "NotAuthorisedError"
    assert verifications == []


def test_bundle_claiming_an_appenders_key_costs_one_verification(
    in_process: InProcess, verifications: list[bytes]
) -> None:
    """Entries that name the appender's key id (public: it is in every entry it logged) but are signed by
    another key pass the cheap check; verification stops at the first."""
    forger = Signer.generate("ecdsa-p521")
    forged = [
        evaluated(forger, i).replace(forger.key_id.encode(), in_process.appender.key_id.encode())
        for i in range(MAX_BUNDLE_ENTRIES)
    ]
    reply = httpx.post(in_process.url + "/add-bundle", content=bundle(forged))
    assert reply.status_code == 400 and "does not match" in reply.json()["error"], reply.text
    assert len(verifications) == 1
    assert in_process.services.ledger.size == 0


def test_replayed_bundle_is_answered_as_duplicates_without_verifying(
    in_process: InProcess, verifications: list[bytes]
) -> None:
    entries = [evaluated(in_process.appender, i) for i in range(20)]
    first = httpx.post(in_process.url + "/add-bundle", content=bundle(entries))
    assert first.status_code == 201 and len(verifications) == 20
    again = httpx.post(in_process.url + "/add-bundle", content=bundle(entries))
    assert again.status_code == 201 and len(verifications) == 20
    assert [r["duplicate"] for r in again.json()["receipts"]] == [True] * 20
    assert [r["index"] for r in again.json()["receipts"]] == [r["index"] for r in first.json()["receipts"]]
    single = httpx.post(in_process.url + "/add", content=entries[3])
    assert single.status_code == 201 and single.json()["duplicate"] and len(verifications) == 20


def test_one_refused_entry_refuses_the_whole_bundle_before_anything_is_verified(
    in_process: InProcess, verifications: list[bytes]
) -> None:
    good = [evaluated(in_process.appender, i) for i in range(10)]
    wrong_type = make_entry(
        "model.loaded",
        {"model_id": "blake3:" + "ab" * 32, "request_id": "r", "host": "h", "statement": {}},
        in_process.appender,
    )
    reply = httpx.post(in_process.url + "/add-bundle", content=bundle([*good, wrong_type]))
    assert reply.status_code == 403 and "may not write model.loaded" in reply.json()["error"]
    assert verifications == [] and in_process.services.ledger.size == 0


def test_bundle_over_the_entry_cap_is_refused(in_process: InProcess, verifications: list[bytes]) -> None:
    entries = [evaluated(in_process.appender, i) for i in range(MAX_BUNDLE_ENTRIES + 1)]
    reply = httpx.post(in_process.url + "/add-bundle", content=bundle(entries))
    assert reply.status_code == 413 and f"more than {MAX_BUNDLE_ENTRIES} entries" in reply.json()["error"]
    assert verifications == [] and in_process.services.ledger.size == 0
    assert httpx.post(in_process.url + "/add-bundle", content=bundle(entries[:-1])).status_code == 201
    assert in_process.services.ledger.size == MAX_BUNDLE_ENTRIES


def test_bundle_over_8_mib_streamed_is_cut_off(in_process: InProcess, verifications: list[bytes]) -> None:
    """Entries an appender may write, each ~33 KB (so 8 MiB is reached within 256 entries), chunked."""
    padding = "p" * 33_000
    body = {"model_id": "blake3:" + "ab" * 32, "suite": "s", "results": {"pad": padding}, "evaluator": "e"}
    big = make_entry("model.evaluated", body, in_process.appender)
    data = bundle([big] * (MAX_BUNDLE_BYTES // len(big) + 1))
    assert len(data) > MAX_BUNDLE_BYTES
    reply = post(in_process.url, "/add-bundle", repeated(data, len(data)), chunked=True)
    assert reply.status == 413 and f"{MAX_BUNDLE_BYTES}".encode() in reply.body, reply
    assert verifications == []


def test_checkpoint_answers_promptly_while_hostile_bundles_keep_arriving(in_process: InProcess) -> None:
    """One client posts the 8 MiB bundle again and again; /checkpoint stays fast (it took 7.9 s before)."""
    data = hostile_bundle()
    stop = threading.Event()
    refused: list[int] = []

    def attacker() -> None:
        while not stop.is_set():
            refused.append(post(in_process.url, "/add-bundle", repeated(data, len(data)), chunked=True).status)

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    latencies = []
    with httpx.Client(base_url=in_process.url) as http:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            start = time.perf_counter()
            assert http.get("/checkpoint").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.01)
    stop.set()
    thread.join(timeout=30)
    assert refused and set(refused) == {403}
    assert max(latencies) < 0.5, f"/checkpoint took up to {max(latencies) * 1e3:.0f} ms"
    assert statistics.median(latencies) < 0.05
