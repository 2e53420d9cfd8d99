"""C2SP signed notes, checkpoints and cosignatures, checked against the Go reference vectors byte for byte."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.cosignature import cosign, verify_cosignature
from strongroom.ledger.errors import NoteError
from strongroom.ledger.note import COSIGNATURE_V1, ED25519, NoteSigner, NoteVerifier, open_note, parse_note

# golang.org/x/mod/sumdb/note: the documented example key and signed note.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann " + GO_SIG + "\n"
# C2SP signed-note specification example.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONn"
    "cAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def go_signer() -> NoteSigner:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == ED25519
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


def test_go_reference_signature_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.verifier.vkey == GO_VKEY
    assert signer.sign_note(GO_TEXT) == GO_NOTE
    text, _ = open_note(GO_NOTE, NoteVerifier.from_vkey(GO_VKEY))
    assert text == GO_TEXT


def test_c2sp_spec_example_verifies() -> None:
    text, signatures = open_note(SPEC_NOTE, NoteVerifier.from_vkey(SPEC_VKEY))
    assert text == "This is an example message.\n" and signatures[0].name == "example.com/foo"


def test_tampered_notes_and_keys() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "Cryptography"), verifier)
    with pytest.raises(NoteError, match="not signed by"):
        open_note(SPEC_NOTE, verifier)
    with pytest.raises(NoteError, match="key hash does not match"):
        NoteVerifier.from_vkey(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(NoteError, match="name\\+hash\\+key"):
        NoteVerifier.from_vkey("no-plus-signs")
    for broken in ["no blank line\n", GO_TEXT + "\nnot a signature\n", GO_TEXT + "\n\u2014 PeterNeumann %%%\n"]:
        with pytest.raises(NoteError):
            parse_note(broken)


def test_checkpoint_round_trip_and_validation() -> None:
    checkpoint = Checkpoint("example.com/log", 12345, bytes(range(32)), ("extra line",))
    assert Checkpoint.parse(checkpoint.text()) == checkpoint
    for bad in [
        "example.com/log\n012\nAAAA\n",
        "example.com/log\n5\n",
        "\n5\n" + "A" * 43 + "=\n",
        "example.com/log\n5\n" + base64.b64encode(b"short").decode() + "\n",
    ]:
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_cosignature_round_trip_and_forgery() -> None:
    witness = NoteSigner("witness.example/w1", Ed25519PrivateKey.generate(), COSIGNATURE_V1)
    text = Checkpoint("example.com/log", 7, bytes(32)).text()
    log = NoteSigner("example.com/log", Ed25519PrivateKey.generate())
    note = log.sign_note(text) + cosign(witness, text, 1_700_000_000)
    _, signatures = open_note(note, log.verifier)
    cosig = next(s for s in signatures if s.name == witness.name)
    assert verify_cosignature(witness.verifier, text, cosig) == 1_700_000_000
    assert NoteVerifier.from_vkey(witness.verifier.vkey) == witness.verifier
    other = Checkpoint("example.com/log", 8, bytes(32)).text()
    with pytest.raises(NoteError, match="does not verify"):
        verify_cosignature(witness.verifier, other, cosig)
