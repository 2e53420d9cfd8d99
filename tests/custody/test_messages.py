"""Times in signed messages have exactly one accepted form: 2026-01-31T12:00:00Z."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from strongroom.custody.errors import MessageError
from strongroom.custody.messages import format_time, parse_time


def test_round_trip() -> None:
    moment = datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC)
    assert parse_time(format_time(moment), "issued_at") == moment


@pytest.mark.parametrize(
    "value",
    [
        "2026-1-31T12:00:00Z",  # unpadded month
        "2026-01-31T12:00:00",  # no zone
        "2026-01-31T12:00:00+00:00",  # another spelling of UTC
        "2026-01-31T12:00:00.5Z",  # fractions
        "2026-01-31 12:00:00Z",
        "2026-13-01T12:00:00Z",  # no such month
        "2026-02-30T12:00:00Z",  # no such day
        "\uff12026-01-31T12:00:00Z",  # a fullwidth digit
        " 2026-01-31T12:00:00Z",
        "",
    ],
)
def test_anything_else_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(MessageError, match="'expires_at' is not a time like"):
        parse_time(value, "expires_at")


def test_a_non_string_is_refused() -> None:
    with pytest.raises(MessageError, match="'expires_at' must be an RFC 3339 UTC time string"):
        parse_time(1700000000, "expires_at")
