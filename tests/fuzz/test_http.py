"""Every HTTP route of ``strongroom serve`` and of the witness, against real servers on loopback, with random
paths, query strings and bodies (NaN, 1e400, huge integers, deep nesting, non-UTF-8, Unicode digits,
mutated entries and bundles from an allowed appender): no answer is a 5xx, and every error is the shared
``{"error", "kind"}`` shape (the witness answers C2SP's plain text)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.ledger.entries import make_entry
from strongroom.ledger.tiles import bundle
from strongroom.ledger.witness import Witness
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.server.witness_app import create_witness_app
from strongroom.signing import Signer
from tests.fuzz.strategies import UNICODE_DIGITS, hostile_bytes, number_text

HTTP_FUZZ = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


class Target:
    def __init__(self, url: str, appender: Signer, witness_url: str, note: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.witness = httpx.Client(base_url=witness_url, timeout=30)
        self.appender = appender
        self.note = note


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root: Path = tmp_path_factory.mktemp("fuzz-http")
    data = root / "srv"
    data.mkdir(mode=0o700)  # servers that insist on a private data directory get one
    (data / "appenders").mkdir()
    appender = Signer.generate("ed25519")
    appender.save(root / "appender.key", data / "appenders" / "fuzz.pub")
    services = open_services(data)
    for i in range(3):
        services.ledger.append(entry(appender, str(i)))
    witness = Witness.open(root / "w", "witness.fuzz/w", [services.ledger.signer.verifier.vkey])
    with BackgroundServer(create_app(services, data)) as url, BackgroundServer(create_witness_app(witness)) as w:
        fuzz = Target(url, appender, w, services.ledger.checkpoint())
        yield fuzz
        fuzz.http.close()
        fuzz.witness.close()
    services.close()


def entry(signer: Signer, suite: str, results: str = '{"score":1}') -> bytes:
    raw = make_entry(
        "model.evaluated",
        {"model_id": "blake3:" + "ab" * 32, "suite": suite, "results": {"score": 1}, "evaluator": "e"},
        signer,
    )
    return raw.replace(b'"results":{"score":1}', b'"results":' + results.encode("utf-8", "surrogatepass"))


segment = st.one_of(
    st.text(st.one_of(st.sampled_from(UNICODE_DIGITS), st.sampled_from("0123456789x./p")), max_size=12).map(
        lambda s: quote(s, safe="/.")
    ),
    st.text(max_size=12).map(lambda s: quote(s, safe="/.")),
    st.binary(max_size=8).map(lambda b: "".join(f"%{c:02X}" for c in b)),  # any bytes, UTF-8 or not
)
query_value = st.one_of(number_text, st.text(max_size=10)).map(lambda s: quote(s, safe=""))

GETS = [
    "/checkpoint",
    "/log.vkey",
    "/tile/{a}/{b}",
    "/tile/entries/{b}",
    "/tile/{a}/{b}.p/{c}",
    "/v1/proof/inclusion?index={q}&size={r}",
    "/v1/proof/consistency?old={q}&new={r}",
    "/v1/entries?type={q}&start={r}&limit={q}",
    "/v1/entries?model_id={q}&since={r}",
    "/v1/custody/requests/{a}",
    "/v1/people/{a}",
    "/v1/hosts/{a}",
    "/{a}/{b}",
]
POSTS = [
    "/add",
    "/add-bundle",
    "/v1/admin/changes",
    "/v1/custody/requests",
    "/v1/custody/requests/{a}/approvals",
    "/v1/custody/requests/{a}/release",
    "/v1/custody/requests/{a}/loaded",
    "/v1/custody/pending",
]


def check(reply: httpx.Response) -> None:
    assert reply.status_code < 500, (reply.request.method, str(reply.request.url)[:200], reply.text[:300])
    if reply.status_code >= 400 and reply.headers.get("content-type", "").startswith("application/json"):
        body = reply.json()
        assert set(body) == {"error", "kind"} and "\n" not in body["error"], body


@HTTP_FUZZ
@given(st.sampled_from(GETS), segment, segment, segment, query_value, query_value)
def test_get_routes_never_answer_5xx(target: Target, path: str, a: str, b: str, c: str, q: str, r: str) -> None:
    check(target.http.get(path.format(a=a, b=b, c=c, q=q, r=r)))


@st.composite
def bodies(draw: st.DrawFn, appender: Signer) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(hostile_bytes)
    from tests.fuzz.strategies import hostile_json_text

    results = draw(hostile_json_text())
    one = entry(appender, draw(st.text(min_size=1, max_size=6)), results)
    if kind == 1:
        return one
    if kind == 2:
        return bundle([one, *(entry(appender, str(i)) for i in range(draw(st.integers(0, 3))))])
    raw = bytearray(bundle([entry(appender, "x"), one]))
    for _ in range(draw(st.integers(1, 3))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


@HTTP_FUZZ
@given(st.sampled_from(POSTS), segment, st.data())
def test_post_routes_never_answer_5xx(target: Target, path: str, a: str, data: st.DataObject) -> None:
    body = data.draw(bodies(target.appender))
    check(target.http.post(path.format(a=a), content=body))


@settings(HTTP_FUZZ, max_examples=120)
@given(st.data())
def test_witness_never_answers_5xx(target: Target, data: st.DataObject) -> None:
    old = data.draw(st.one_of(number_text, st.text(max_size=6)))
    proof = data.draw(st.lists(st.text(max_size=44), max_size=3))
    note = data.draw(st.sampled_from([target.note, target.note.replace("\n", "\n\n", 1), ""]))
    raw = ("old " + old + "\n" + "".join(p + "\n" for p in proof) + "\n" + note).encode("utf-8", "surrogatepass")
    body = data.draw(st.one_of(st.just(raw), hostile_bytes))
    reply = target.witness.post("/add-checkpoint", content=body)
    assert reply.status_code < 500, (body[:80], reply.status_code, reply.text)
