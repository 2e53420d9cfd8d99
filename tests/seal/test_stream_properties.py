"""Property tests: any plaintext size (0, exact segment multiples, odd tails) and any range round-trips."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.keys import LocalKeyring
from strongroom.seal import SealedFile, seal_path
from strongroom.seal.stream import HEADER_BYTES, TAG_BYTES, StreamLayout

SEGMENT = 256
FIRST = SEGMENT - HEADER_BYTES - TAG_BYTES
PER = SEGMENT - TAG_BYTES
EDGE_SIZES = [0, 1, FIRST - 1, FIRST, FIRST + 1, FIRST + PER, FIRST + 2 * PER, FIRST + 2 * PER + 1]


def _sizes() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(EDGE_SIZES), st.integers(0, 6 * SEGMENT))


@given(size=_sizes(), data=st.data())
@settings(max_examples=120, deadline=None)
def test_round_trip_and_random_ranges(keyring: LocalKeyring, size: int, data: st.DataObject) -> None:
    payload = secrets.token_bytes(size)
    threads = data.draw(st.sampled_from([1, 2, 3]))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "blob.bin", Path(tmp) / "blob.sealed"
        src.write_bytes(payload)
        seal_path(src, dst, keyring, segment_size=SEGMENT, threads=threads)
        layout = StreamLayout(SEGMENT, size)
        assert os.path.getsize(dst) > layout.ciphertext_length
        with SealedFile(dst) as sealed:
            key = keyring.unwrap(sealed.header.key)
            sealed.unlock(key)
            assert sealed.read(0, size) == payload
            start = data.draw(st.integers(0, size))
            end = data.draw(st.integers(start, size))
            assert sealed.read(start, end) == payload[start:end]
            out = bytearray(end - start)
            sealed.read_into(start, end, memoryview(out), threads=threads)
            assert bytes(out) == payload[start:end]


@given(size=st.integers(0, 10**12), segment=st.integers(121, 1 << 24))
def test_layout_arithmetic(size: int, segment: int) -> None:
    first, per = segment - HEADER_BYTES - TAG_BYTES, segment - TAG_BYTES
    if size > first + (2**32 - 1) * per:
        with pytest.raises(ValueError, match="2\\^32 segments"):
            StreamLayout(segment, size)
        return
    layout = StreamLayout(segment, size)
    n = layout.segment_count
    assert layout.plaintext_range(n - 1)[1] == size
    assert layout.ciphertext_length == HEADER_BYTES + size + n * TAG_BYTES
    if size:
        assert layout.segment_of(size - 1) == n - 1
        assert layout.segment_of(0) == 0
    for index in {0, 1, n // 2, n - 1}:
        if index < n:
            lo, hi = layout.plaintext_range(index)
            if hi > lo:
                assert layout.segment_of(lo) == index and layout.segment_of(hi - 1) == index
