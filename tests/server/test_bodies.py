"""Bodies are capped before and while they are read: a 400 MiB upload to a 64 KiB route costs the server
no memory, whether it declares its length, streams chunks without one, or lies about it."""

from __future__ import annotations

import httpx
import pytest

from strongroom.custody.envelope import MAX_MESSAGE_BYTES
from strongroom.ledger.entries import MAX_ENTRY_BYTES
from strongroom.server.ledger_routes import MAX_BUNDLE_BYTES
from tests.server.conftest import PeakMemory, Served
from tests.server.http_raw import post, repeated

HUGE = 400 << 20  # the size in the security review's finding
MIB = b"x" * (1 << 20)
GROWTH_MIB = 48  # what one refused upload may cost the server at most (the old code grew by ~800 MiB)


def test_400_mib_body_with_its_length_is_refused_before_it_is_read(serve_process: Served) -> None:
    with PeakMemory(serve_process) as memory:
        reply = post(
            serve_process.url,
            "/v1/custody/requests",
            repeated(MIB, HUGE),
            headers={"Content-Length": str(HUGE), "Content-Type": "application/json"},
        )
    assert reply.status == 413 and reply.closed, reply
    assert b"BodyTooLargeError" in reply.body and b"limit" in reply.body
    assert reply.sent < 64 << 20, "the server answered only after most of the body was sent"
    assert memory.grew < GROWTH_MIB, f"server RSS grew {memory.grew:.0f} MiB (from {memory.before:.0f})"


def test_400_mib_chunked_body_without_a_length_is_cut_off_at_the_limit(serve_process: Served) -> None:
    with PeakMemory(serve_process) as memory:
        reply = post(serve_process.url, "/v1/custody/requests", repeated(MIB, HUGE), chunked=True)
    assert reply.status == 413 and reply.closed, reply
    assert f"limit of {MAX_MESSAGE_BYTES} bytes".encode() in reply.body
    assert reply.sent < 64 << 20
    assert memory.grew < GROWTH_MIB, f"server RSS grew {memory.grew:.0f} MiB (from {memory.before:.0f})"


@pytest.mark.parametrize("path", ["/add", "/add-bundle", "/v1/admin/changes", "/v1/custody/requests/r/approvals"])
def test_every_body_route_refuses_a_huge_chunked_body_with_memory_bounded(serve_process: Served, path: str) -> None:
    """(A bundle of 'x' bytes is refused sooner, at its first entry: 0x7878 bytes of no JSON.)"""
    with PeakMemory(serve_process) as memory:
        reply = post(serve_process.url, path, repeated(MIB, HUGE), chunked=True)
    assert reply.status == (400 if path == "/add-bundle" else 413) and reply.closed, reply
    assert memory.grew < GROWTH_MIB, f"{path}: server RSS grew {memory.grew:.0f} MiB"


def test_content_length_claiming_too_much_is_refused_before_any_body_arrives(serve_process: Served) -> None:
    """The lie one way: a length over the limit and then nothing. The old server waited for the body."""
    reply = post(serve_process.url, "/add", [b"{}"], headers={"Content-Length": str(HUGE)}, timeout=5)
    assert reply.status == 413 and reply.sent <= 2 and reply.seconds < 2, reply


def test_content_length_claiming_too_little_frames_the_body_and_the_rest_is_refused(serve_process: Served) -> None:
    """The lie the other way: 100 bytes declared, 400 MiB sent. The server takes 100 bytes as the body and
    refuses the rest as a malformed next request; nothing is buffered."""
    with PeakMemory(serve_process) as memory:
        reply = post(serve_process.url, "/add", repeated(MIB, HUGE), headers={"Content-Length": "100"})
    assert 400 <= reply.status < 500 and reply.sent < 64 << 20, reply
    assert memory.grew < GROWTH_MIB
    assert httpx.get(serve_process.url + "/checkpoint").status_code == 200


@pytest.mark.parametrize("length", ["12abc", "-1", "1e3", "99999999999999999999999", " "])
def test_malformed_content_length_is_a_400(serve_process: Served, length: str) -> None:
    reply = post(serve_process.url, "/add", [b"{}"], headers={"Content-Length": length}, timeout=5)
    assert reply.status == 400, reply


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/add", MAX_ENTRY_BYTES),
        ("/v1/custody/requests", MAX_MESSAGE_BYTES),
        ("/v1/custody/requests/r/release", MAX_MESSAGE_BYTES),
        ("/v1/custody/requests/r/loaded", MAX_MESSAGE_BYTES),
        ("/v1/custody/pending", MAX_MESSAGE_BYTES),
    ],
)
def test_each_route_caps_at_its_own_limit(serve_process: Served, path: str, limit: int) -> None:
    over = post(serve_process.url, path, repeated(MIB, limit + 1), chunked=True)
    assert over.status == 413 and f"{limit}".encode() in over.body, over
    declared = post(serve_process.url, path, [b"x"], headers={"Content-Length": str(limit + 1)}, timeout=5)
    assert declared.status == 413, declared
    at_limit = post(serve_process.url, path, repeated(b"[" * 4096, limit), chunked=True)
    assert at_limit.status != 413 and at_limit.status < 500, at_limit


def test_bundle_route_refuses_a_declared_length_over_8_mib(serve_process: Served) -> None:
    """(Its streamed cap, with entries that pass the signer check, is in test_hostile.py.)"""
    declared = post(serve_process.url, "/add-bundle", [b"x"], headers={"Content-Length": str(MAX_BUNDLE_BYTES + 1)})
    assert declared.status == 413, declared
