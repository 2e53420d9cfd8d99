"""``POST /add`` through the lean ASGI path answers exactly as the FastAPI route did, case by case, and
keeps every check: authorisation before verification, the body cap, duplicates, bad signatures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strongroom.ledger.entries import MAX_ENTRY_BYTES, make_entry, parse_entry
from strongroom.server import ledger_routes
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.server.lean_add import LeanAdd
from strongroom.signing import Signer
from tests.ledger.test_log import evaluated
from tests.server.http_raw import post, repeated


def _served(
    tmp_path: Path, framework: bool, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Signer, list[str]]]:
    if framework:
        monkeypatch.setenv("STRONGROOM_FRAMEWORK_ADD", "1")
    else:
        monkeypatch.delenv("STRONGROOM_FRAMEWORK_ADD", raising=False)
    data = tmp_path / ("fw" if framework else "lean")
    data.mkdir(mode=0o700)
    (data / "appenders").mkdir()
    appender = Signer.generate("ed25519")
    appender.save(tmp_path / f"{data.name}.key", data / "appenders" / "test.pub")
    verified: list[str] = []
    real = parse_entry

    def counting(raw: bytes) -> object:
        verified.append("x")
        return real(raw)

    monkeypatch.setattr(ledger_routes, "parse_entry", counting)
    services = open_services(data)
    app = create_app(services, data)
    assert any(getattr(m, "cls", None) == LeanAdd for m in app.user_middleware) != framework
    with BackgroundServer(app) as url:
        yield url, appender, verified
    services.close()


def _cases(url: str, appender: Signer, verified: list[str]) -> list[tuple[object, ...]]:
    """Each case's (status, kind or duplicate flag, connection close, verifications so far)."""
    seen: list[tuple[object, ...]] = []
    good = evaluated(appender, 1)
    first = httpx.post(url + "/add", content=good)
    seen.append((first.status_code, first.json()["index"], first.json()["duplicate"], len(verified)))
    again = httpx.post(url + "/add", content=good)
    seen.append((again.status_code, again.json()["index"], again.json()["duplicate"], len(verified)))
    stranger = httpx.post(url + "/add", content=evaluated(Signer.generate("ecdsa-p256"), 2))
    seen.append((stranger.status_code, stranger.json()["kind"], len(verified)))
    wrong_type = make_entry(
        "model.loaded", {"model_id": "blake3:" + "ab" * 32, "request_id": "r", "host": "h", "statement": {}}, appender
    )
    refused = httpx.post(url + "/add", content=wrong_type)
    seen.append((refused.status_code, refused.json()["kind"], len(verified)))
    forged = evaluated(appender, 3).replace(b'"score"', b'"scorf"')
    bad_sig = httpx.post(url + "/add", content=forged)
    seen.append((bad_sig.status_code, bad_sig.json()["kind"], len(verified)))
    garbage = httpx.post(url + "/add", content=b"\x00not an entry")
    seen.append((garbage.status_code, garbage.json()["kind"], len(verified)))
    big = post(url, "/add", [b"{}"], headers={"Content-Length": str(MAX_ENTRY_BYTES + 1)}, timeout=5)
    seen.append((big.status, big.closed, len(verified)))
    streamed = post(url, "/add", repeated(b"x" * 4096, MAX_ENTRY_BYTES * 4), chunked=True, timeout=5)
    seen.append((streamed.status, streamed.closed, len(verified)))
    liar = post(url, "/add", [b"{}"], headers={"Content-Length": "12x"}, timeout=5)
    seen.append((liar.status, liar.closed))
    wrong_method = httpx.get(url + "/add")
    seen.append((wrong_method.status_code,))
    second = httpx.post(url + "/add", content=evaluated(appender, 4))
    seen.append((second.status_code, second.json()["index"], len(verified)))
    return seen


def test_lean_add_answers_as_the_framework_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = []
    for framework in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            for url, appender, verified in _served(tmp_path, framework, patch):
                results.append(_cases(url, appender, verified))
    framework_answers, lean_answers = results
    assert lean_answers == framework_answers
    assert lean_answers[0] == (201, 0, False, 1)
    assert lean_answers[1] == (201, 0, True, 1)  # duplicate: answered from the log, not verified again
    assert lean_answers[2] == (403, "NotAuthorisedError", 1)  # refused before any verification
    assert lean_answers[3] == (403, "NotAuthorisedError", 1)
    assert lean_answers[4][0] == 400 and lean_answers[4][2] == 2  # verified, and the signature failed
    assert lean_answers[6] == (413, True, 2)
    assert lean_answers[7] == (413, True, 2)
    assert lean_answers[8] == (400, True)
    assert lean_answers[9] == (405,)
    assert lean_answers[10] == (201, 1, 3)
