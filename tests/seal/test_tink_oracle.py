"""Byte compatibility: Google's Tink decrypts the payload of a Strongroom sealed file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tink import cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from strongroom.keys import LocalKeyring
from strongroom.seal import SealedFile, seal_path

TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"


def tink_primitive(data_key: bytes, segment_size: int) -> streaming_aead.StreamingAead:
    """A Tink StreamingAead holding our data key as an AES256_GCM_HKDF(SHA256) streaming key."""
    streaming_aead.register()
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=segment_size, derived_key_size=32, hkdf_hash_type=common_pb2.SHA256
    )
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, key_value=data_key, params=params)
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url=TYPE_URL, value=key.SerializeToString(), key_material_type=tink_pb2.KeyData.SYMMETRIC
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    return cleartext_keyset_handle.from_keyset(keyset).primitive(streaming_aead.StreamingAead)


def tink_decrypt(path: Path, keyring: LocalKeyring) -> bytes:
    with SealedFile(path) as sealed:
        data_key = bytes(keyring.unwrap(sealed.header.key))
        stream = path.read_bytes()[sealed.stream_offset :]
        primitive = tink_primitive(data_key, sealed.header.segment_size)
        with primitive.new_decrypting_stream(io.BytesIO(stream), sealed.prefix) as reader:
            return bytes(reader.read())


@pytest.mark.parametrize("size", [0, 1, 4096 - 56, 4096 - 56 + 4080, 50_000])
def test_tink_decrypts_our_payload(tmp_path: Path, keyring: LocalKeyring, size: int) -> None:
    payload = bytes((i * 7 + 3) % 251 for i in range(size))
    (tmp_path / "p.bin").write_bytes(payload)
    seal_path(tmp_path / "p.bin", tmp_path / "p.sealed", keyring, segment_size=4096)
    assert tink_decrypt(tmp_path / "p.sealed", keyring) == payload


def test_tink_decrypts_the_real_model(model_dir: Path, sealed_model: Path, keyring: LocalKeyring) -> None:
    plaintext = tink_decrypt(sealed_model / "model.safetensors.sealed", keyring)
    assert plaintext == (model_dir / "model.safetensors").read_bytes()


def test_tink_rejects_a_tampered_payload(tmp_path: Path, keyring: LocalKeyring) -> None:
    (tmp_path / "p.bin").write_bytes(b"x" * 10_000)
    seal_path(tmp_path / "p.bin", tmp_path / "p.sealed", keyring, segment_size=4096)
    data = bytearray((tmp_path / "p.sealed").read_bytes())
    data[-5] ^= 1
    (tmp_path / "p.sealed").write_bytes(data)
    with pytest.raises(Exception, match="(?i)decrypt|authenticat|tag"):
        tink_decrypt(tmp_path / "p.sealed", keyring)
