"""The fast load paths (owned pre-faulted buffers, whole-segment single-tensor reads, cached headers,
staged device loads) return exactly the plaintext tensors and still fail closed on tampering."""

from __future__ import annotations

import ctypes
import itertools
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from strongroom.keys import LocalKeyring
from strongroom.memory import libc
from strongroom.seal import SealedFile, SealedModel, SegmentAuthError, open_sealed, seal_path
from strongroom.seal.buffers import PAGE, Prefaulter, owned_buffer
from strongroom.seal.staging import chunk_bounds
from strongroom.seal.tensors import _POOLS, PARALLEL_BYTES
from tests.seal.conftest import SMALL_SEGMENT

SHARD = "model-00001-of-00002.safetensors"


@pytest.fixture
def sealed_dir(tmp_path: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> Path:
    out = tmp_path / "sealed"
    seal_path(checkpoint_dir, out, keyring, segment_size=SMALL_SEGMENT)
    return out


@pytest.fixture
def big_model(tmp_path: Path, keyring: LocalKeyring) -> tuple[Path, dict[str, np.ndarray]]:
    """A file with one tensor above the parallel threshold, sealed with small segments."""
    src = tmp_path / "big"
    src.mkdir()
    rng = np.random.default_rng(7)
    arrays: dict[str, np.ndarray] = {
        "small": rng.standard_normal((3, 5)).astype(np.float32),
        "big": rng.integers(0, 255, PARALLEL_BYTES + 12345, dtype=np.uint8),
        "tail": rng.standard_normal(77).astype(np.float64),
    }
    save_file(arrays, str(src / "model.safetensors"))
    out = tmp_path / "big-sealed"
    seal_path(src, out, keyring, segment_size=SMALL_SEGMENT * 16)
    return out, arrays


def _resident_pages(array: np.ndarray) -> int:
    """How many pages of ``array`` (page-aligned) are resident, by mincore(2)."""
    c = libc()
    assert c is not None
    pages = -(-array.nbytes // PAGE)
    vec = (ctypes.c_ubyte * pages)()
    assert c.mincore(ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes), vec) == 0
    return sum(b & 1 for b in vec)


def test_owned_buffer_is_its_own_mapping_and_prefault_populates_it() -> None:
    buffer = owned_buffer(64 * PAGE)
    assert isinstance(_root(buffer), mmap.mmap) and buffer.ctypes.data % PAGE == 0
    assert _resident_pages(buffer) == 0  # lazily faulted: nothing touched yet
    prefault = Prefaulter(buffer)
    prefault.populate(5 * PAGE + 10, 20 * PAGE - 3)
    if not prefault.enabled:
        pytest.skip("this kernel refuses MADV_POPULATE_WRITE (Linux < 5.14): pages fault on first write")
    assert _resident_pages(buffer) == 15
    assert _resident_pages(buffer[5 * PAGE : 20 * PAGE]) == 15


def test_load_without_populate_support_falls_back_to_faulting(
    sealed_dir: Path, checkpoint_dir: Path, keyring: LocalKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a kernel without MADV_POPULATE_WRITE the first refusal turns pre-faulting off; the load is the same."""
    refused: list[int] = []

    class OldKernel:
        def madvise(self, *args: object) -> int:
            refused.append(1)
            return -1

    monkeypatch.setattr("strongroom.seal.buffers.libc", lambda: OldKernel())
    with open_sealed(sealed_dir / (SHARD + ".sealed"), keyring) as st:
        loaded = st.load_all()
        threads = st.threads
    for name, array in load_file(checkpoint_dir / SHARD).items():
        np.testing.assert_array_equal(loaded[name], array)
    assert 1 <= len(refused) <= threads  # each thread asks at most once before it is turned off


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_load_all_equals_plain_safetensors(
    sealed_dir: Path, checkpoint_dir: Path, keyring: LocalKeyring, framework: str
) -> None:
    expected = load_file(checkpoint_dir / SHARD)
    with open_sealed(sealed_dir / (SHARD + ".sealed"), keyring) as st:
        loaded = st.load_all(framework)  # type: ignore[arg-type]
    assert loaded.keys() == expected.keys()
    for name, array in expected.items():
        got = loaded[name].numpy() if framework == "torch" else loaded[name]
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)


def test_loaded_tensors_live_in_the_owned_mapping(sealed_dir: Path, keyring: LocalKeyring) -> None:
    with open_sealed(sealed_dir / (SHARD + ".sealed"), keyring) as st:
        loaded = st.load_all()
    bases = {id(_root(a)) for a in loaded.values() if a.nbytes}
    assert len(bases) == 1
    assert isinstance(_root(next(a for a in loaded.values() if a.nbytes)), mmap.mmap)


def _root(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, np.ndarray | memoryview):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base


def test_every_tensor_alone_equals_plain(sealed_dir: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> None:
    expected = load_file(checkpoint_dir / SHARD)
    with open_sealed(sealed_dir / (SHARD + ".sealed"), keyring) as st:
        for name, array in expected.items():
            got = st.get_tensor(name)
            np.testing.assert_array_equal(got, array)
            assert st.get_tensor(name, "torch").numpy().tobytes() == array.tobytes()


def test_large_tensor_alone_uses_threads_and_equals_plain(
    big_model: tuple[Path, dict[str, np.ndarray]], keyring: LocalKeyring
) -> None:
    sealed, arrays = big_model
    with open_sealed(sealed / "model.safetensors.sealed", keyring) as st:
        earlier = _POOLS.pop(st.threads, None)
        if earlier is not None:
            earlier.shutdown()
        for name, array in arrays.items():
            np.testing.assert_array_equal(st.get_tensor(name), array)
        assert (st.threads in _POOLS) == (st.threads > 1)  # the big one went through the shared pool
        np.testing.assert_array_equal(st.load_all()["big"], arrays["big"])


def test_tampered_segment_fails_a_single_tensor_read(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    with open_sealed(path, keyring) as st:
        info = st.info("layer.3.weight")
        segment = st.sealed.layout.segment_of(info.start)
        position = st.sealed.stream_offset + st.sealed.layout.ciphertext_start(segment) + 5
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(data)
    with open_sealed(path, keyring) as st, pytest.raises(SegmentAuthError) as info_exc:
        st.get_tensor("layer.3.weight")
    assert info_exc.value.segment == segment


def test_tampered_segment_fails_the_prefaulted_parallel_load(
    big_model: tuple[Path, dict[str, np.ndarray]], keyring: LocalKeyring
) -> None:
    sealed, _ = big_model
    path = sealed / "model.safetensors.sealed"
    with SealedFile(path) as f:
        position = f.stream_offset + f.layout.ciphertext_start(f.layout.segment_count - 3) + 9
    data = bytearray(path.read_bytes())
    data[position] ^= 0x80
    path.write_bytes(data)
    with open_sealed(path, keyring) as st, pytest.raises(SegmentAuthError):
        st.load_all()
    with open_sealed(path, keyring) as st, pytest.raises(SegmentAuthError):
        st.get_tensor("big")


def test_header_is_parsed_once_per_open_model(sealed_dir: Path, keyring: LocalKeyring) -> None:
    with SealedModel.open(sealed_dir, keyring) as model:
        with model.safetensors(SHARD) as first:
            header = first.header
        with model.safetensors(SHARD) as second:
            assert second.header is header
            assert second.sealed._cached is None  # nothing decrypted on open: the header came from the cache
        other = "model-00002-of-00002.safetensors"
        with model.safetensors(other) as third:
            assert third.header is not header and "head.0.weight" in third.header.tensors


def test_small_reads_reuse_one_decrypted_segment_and_wipe_it(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    with open_sealed(path, keyring) as st:
        sealed = st.sealed
        whole = sealed.read(0, sealed.plaintext_length)  # spans segments: not cached
        for lo, hi in [(0, 8), (8, 40), (100, 4000), (SMALL_SEGMENT - 100, SMALL_SEGMENT + 100), (9000, 9001)]:
            assert sealed.read(lo, hi) == whole[lo:hi]
        assert sealed._cached is not None
        kept = sealed._cached[1]
    assert sealed._cached is None and not any(kept)


def test_segment_span_covers_whole_segments(sealed_dir: Path) -> None:
    with SealedFile(sealed_dir / (SHARD + ".sealed")) as f:
        layout = f.layout
        for start, end in [(0, 1), (10, SMALL_SEGMENT), (SMALL_SEGMENT * 2, SMALL_SEGMENT * 3 + 7)]:
            end = min(end, layout.plaintext_length)
            lo, hi = f.segment_span(start, end)
            assert lo <= start < end <= hi
            assert lo == layout.plaintext_start(layout.segment_of(start))
            assert hi == layout.plaintext_range(layout.segment_of(end - 1))[1]


def test_chunks_tile_the_range_on_segment_boundaries(sealed_dir: Path) -> None:
    with SealedFile(sealed_dir / (SHARD + ".sealed")) as f:
        start, end = 123, f.plaintext_length
        chunks = chunk_bounds(f, start, end, SMALL_SEGMENT)
        assert chunks[0][0] == start and chunks[-1][1] == end and len(chunks) > 2
        for (_, hi), (lo, _) in itertools.pairwise(chunks):
            assert hi == lo and f.layout.plaintext_start(f.layout.segment_of(lo)) == lo


def test_staged_device_path_on_cpu_equals_plain(sealed_dir: Path, checkpoint_dir: Path, keyring: LocalKeyring) -> None:
    """The schedule used for accelerators, run with a CPU target (it has not met a GPU here)."""
    expected = load_file(checkpoint_dir / SHARD)
    with open_sealed(sealed_dir / (SHARD + ".sealed"), keyring) as st:
        staged = st.load_to_device("cpu", chunk_bytes=SMALL_SEGMENT)
        direct = st.load_all("torch")
    assert staged.keys() == expected.keys()
    for name, array in expected.items():
        assert staged[name].dtype == direct[name].dtype and tuple(staged[name].shape) == array.shape
        assert torch.equal(staged[name], direct[name])
        assert staged[name].numpy().tobytes() == array.tobytes()


def test_staged_device_path_detects_tampering(sealed_dir: Path, keyring: LocalKeyring) -> None:
    path = sealed_dir / (SHARD + ".sealed")
    with SealedFile(path) as f:
        position = f.stream_offset + f.layout.ciphertext_start(f.layout.segment_count - 2) + 3
    data = bytearray(path.read_bytes())
    data[position] ^= 0x04
    path.write_bytes(data)
    with open_sealed(path, keyring) as st, pytest.raises(SegmentAuthError):
        st.load_to_device("cpu", chunk_bytes=SMALL_SEGMENT)


def test_non_cpu_device_goes_through_staging(
    sealed_dir: Path, keyring: LocalKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    import strongroom.seal.staging as staging

    real = staging.stage_to_device

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(str(args[3]))
        return real(args[0], args[1], args[2], "cpu", **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(staging, "stage_to_device", spy)
    with open_sealed(sealed_dir / (SHARD + ".sealed"), keyring) as st:
        loaded = st.load_all("torch", device="cuda:0")
    assert calls == ["cuda:0"] and all(t.device.type == "cpu" for t in loaded.values())


def test_reopened_member_reuses_its_cipher_until_the_file_changes(
    sealed_dir: Path, keyring: LocalKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strongroom.seal.header as header_module

    derived: list[str] = []
    real = header_module.key_commitment

    def counting(data_key: bytes | bytearray, seal_id: str) -> str:
        derived.append(seal_id)
        return real(data_key, seal_id)

    monkeypatch.setattr(header_module, "key_commitment", counting)
    path = sealed_dir / (SHARD + ".sealed")
    with SealedModel.open(sealed_dir, keyring) as model:
        with model.safetensors(SHARD) as st:
            first = st.get_tensor("layer.2.weight")
        assert len(derived) == 1
        with model.safetensors(SHARD) as st:
            np.testing.assert_array_equal(st.get_tensor("layer.2.weight"), first)
        assert len(derived) == 1  # the commitment check and key derivation were not repeated
        with SealedFile(path) as f:
            salt_at = f.stream_offset + 1
        data = bytearray(path.read_bytes())
        data[salt_at] ^= 0x01  # another salt: another segment key
        path.write_bytes(data)
        with pytest.raises(SegmentAuthError), model.safetensors(SHARD) as st:
            st.get_tensor("layer.2.weight")
        assert len(derived) == 2  # a changed stream header is not served from the cache
