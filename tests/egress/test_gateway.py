"""The gateway on loopback in front of a fake host: what it forwards, what it refuses, how it counts."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.egress.helpers import FakeHost, LoopThread, embed, generate, post, raw_http, running_gateway


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def host(loop: LoopThread) -> Iterator[FakeHost]:
    fake = FakeHost(loop)
    yield fake
    fake.close()


def test_valid_requests_are_rebuilt_and_counted(loop: LoopThread, host: FakeHost) -> None:
    with running_gateway(loop, host.port) as gw:
        status, body = raw_http(gw.port, post("/v1/generate", b'{ "max_tokens":3,"model":"gen" , "prompt":"hi"}'))
        assert status == 200
        assert json.loads(body) == {"model": "gen", "tokens": [7, 7, 7], "text": "x" * 96}
        # the host saw the gateway's own compact rebuild, not the client's bytes
        assert host.requests[-1] == ("/v1/generate", b'{"model":"gen","max_tokens":3,"prompt":"hi"}')
        status, body = raw_http(gw.port, post("/v1/embeddings", embed(2)))
        assert status == 200 and len(json.loads(body)["embeddings"]) == 2
        snap = gw.snapshot()
        assert snap["requests"] == 2 and snap["used_bytes"] > len(body)
        assert set(snap["by_model"]) == {"blake3:" + "a" * 64, "blake3:" + "e" * 64}


@pytest.mark.parametrize(
    ("request_bytes", "status", "kind"),
    [
        (post("/v1/generate", b'{"model":"gen","prompt":"hi","max_tokens":3,"stop":"x"}'), 400, "SchemaRefused"),
        (post("/v1/generate", b'{"model":"gen","prompt":"hi","max_tokens":100000}'), 400, "SchemaRefused"),
        (post("/v1/generate", b'{"model":"gen","prompt_tokens":[5000],"max_tokens":3}'), 400, "SchemaRefused"),
        (post("/v1/generate", b'{"model":"emb","prompt":"hi","max_tokens":3}'), 400, "SchemaRefused"),
        (post("/v1/embeddings", b'{"model":"emb","input":["a"],"input":["b"]}'), 400, "SchemaRefused"),
        (post("/v1/embeddings", b'{"model":"emb","input":[]}'), 400, "SchemaRefused"),
        (post("/v1/embeddings", b"not json"), 400, "SchemaRefused"),
        (post("/v1/models", b"{}"), 404, "NotFound"),
        (post("/v1/generate?debug=1", generate()), 404, "NotFound"),
        (post("/admin", b"{}"), 404, "NotFound"),
        (b"GET /v1/generate HTTP/1.1\r\nHost: gw\r\n\r\n", 405, "MethodNotAllowed"),
        (b"PUT /v1/embeddings HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n", 405, "MethodNotAllowed"),
        (post("/v1/generate", generate(), "X-Forwarded-For: 10.0.0.1\r\n"), 400, "HeaderRefused"),
        (post("/v1/generate", generate(), "Authorization: Bearer x\r\n"), 400, "HeaderRefused"),
        (post("/v1/generate", generate(), "Content-Length: 5\r\n"), 400, "DuplicateHeader"),
        (post("/v1/generate", generate(), "X-A: b\r\n c\r\n"), 400, "BadHeader"),
        (post("/v1/generate", generate(), "Transfer-Encoding: chunked\r\n"), 400, "HeaderRefused"),
        (
            b"POST /v1/generate HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
            "HeaderRefused",
        ),
        (b"POST /v1/generate HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\r\n", 411, "LengthRequired"),
        (
            b"POST /v1/generate HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: 9999999\r\n\r\n",
            413,
            "BodyTooLarge",
        ),
        (post("/v1/generate", generate()).replace(b"application/json", b"text/plain"), 415, "UnsupportedMediaType"),
        (b"POST /v1/generate HTTP/1.1\r\nHost: gw\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431, "HeadTooLarge"),
        (b"POST  /v1/generate HTTP/1.1\r\n\r\n", 400, "BadRequestLine"),
    ],
)
def test_refusals(loop: LoopThread, host: FakeHost, request_bytes: bytes, status: int, kind: str) -> None:
    with running_gateway(loop, host.port) as gw:
        got, body = raw_http(gw.port, request_bytes)
        assert (got, json.loads(body)["kind"]) == (status, kind), body
        assert host.requests == []  # nothing refused reaches the host
        assert gw.snapshot()["used_bytes"] == 0


def test_oversized_body_is_refused_before_it_is_read(loop: LoopThread, host: FakeHost) -> None:
    big = json.dumps({"model": "emb", "input": ["a" * 2000] * 40}).encode()  # 80 KB over the 64 KiB cap
    with running_gateway(loop, host.port) as gw:
        status, body = raw_http(gw.port, post("/v1/embeddings", big))
        assert status == 413 and json.loads(body)["kind"] == "BodyTooLarge"
        assert host.requests == []


@pytest.mark.parametrize("mode", ["extra-field", "too-many-tokens", "nan", "chunked"])
def test_a_hostile_host_response_is_never_delivered(loop: LoopThread, mode: str) -> None:
    fake = FakeHost(loop, mode=mode)
    try:
        with running_gateway(loop, fake.port) as gw:
            path, body = ("/v1/embeddings", embed()) if mode == "nan" else ("/v1/generate", generate(4))
            status, reply = raw_http(gw.port, post(path, body))
            assert status == 502, reply
            assert b"weights" not in reply and b"hello" not in reply
            assert gw.snapshot()["used_bytes"] > 0  # what the host sent is counted all the same
    finally:
        fake.close()


def test_budget_cap_delivers_nothing_past_the_budget(loop: LoopThread, host: FakeHost) -> None:
    budget = 10_000
    with running_gateway(loop, host.port, budget_bytes=budget) as gw:
        delivered = 0
        statuses = []
        for _ in range(200):
            status, body = raw_http(gw.port, post("/v1/generate", generate(16)))
            statuses.append(status)
            if status == 200:
                delivered += len(body)
            else:
                assert json.loads(body)["kind"] == "EgressBudgetSpent"
                assert "spent" in json.loads(body)["error"]
                break
        snap = gw.snapshot()
        assert statuses[-1] == 429 and delivered <= budget
        assert snap["exhausted"] is True
        one_response = max(len(r) for _, r in host.requests) + 1000
        assert snap["used_bytes"] <= budget + one_response  # the host sent at most one response past it
        assert host.requests and len(host.requests) == statuses.count(200) + (snap["used_bytes"] > budget)
        status, _ = raw_http(gw.port, post("/v1/generate", generate(1)))
        assert status == 429


def test_token_bucket_limits_the_rate(loop: LoopThread, host: FakeHost) -> None:
    with running_gateway(loop, host.port, rate_bytes_per_s=100.0, bucket_bytes=1500) as gw:
        statuses = [raw_http(gw.port, post("/v1/generate", generate(16)))[0] for _ in range(4)]
        assert statuses[0] == 200 and 429 in statuses
        status, body = raw_http(gw.port, post("/v1/generate", generate(16)))
        assert status == 429 and json.loads(body)["kind"] == "RateLimited"
        assert gw.snapshot()["refused"]["RateLimited"] >= 1


def test_keep_alive_reuses_connections(loop: LoopThread, host: FakeHost) -> None:
    import httpx

    with running_gateway(loop, host.port) as gw, httpx.Client(base_url=f"http://127.0.0.1:{gw.port}") as client:
        for _ in range(20):
            reply = client.post("/v1/generate", content=generate(2), headers={"Content-Type": "application/json"})
            assert reply.status_code == 200
        assert gw.snapshot()["requests"] == 20


def test_an_anomaly_alarm_tightens_the_rate(loop: LoopThread, host: FakeHost) -> None:
    settings = {"detector": {"warmup": 3, "floor_bytes": 100}, "rate_bytes_per_s": 1e6, "bucket_bytes": 10**6}
    with running_gateway(loop, host.port, **settings) as gw:
        for _ in range(6):  # a steady trickle, one interval at a time
            assert raw_http(gw.port, post("/v1/generate", generate(2)))[0] == 200
            assert loop.run(gw.tick()).alarms == []
        for _ in range(40):  # then a burst
            raw_http(gw.port, post("/v1/generate", generate(64)))
        tick = loop.run(gw.tick())
        assert tick.alarms == ["anomaly"] and gw.tightened
        assert gw.bucket.rate == pytest.approx(1e5)
        assert loop.run(gw.tick()).alarms == []  # a quiet interval after it raises nothing
