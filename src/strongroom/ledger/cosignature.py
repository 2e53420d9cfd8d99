"""C2SP tlog-cosignature/v1: a witness's timestamped signature over a checkpoint it has checked."""

from __future__ import annotations

import struct

from strongroom.ledger.errors import NoteError
from strongroom.ledger.note import COSIGNATURE_V1, NoteSigner, NoteVerifier, Signature


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(signer: NoteSigner, checkpoint_text: str, timestamp: int) -> str:
    """A signature line to append to the checkpoint's note."""
    if signer.sig_type != COSIGNATURE_V1:
        raise NoteError("cosigning needs a cosignature/v1 (0x04) witness key")
    signature = signer.private.sign(cosigned_message(checkpoint_text, timestamp))
    return signer.signature_line(struct.pack(">Q", timestamp) + signature)


def verify_cosignature(verifier: NoteVerifier, checkpoint_text: str, signature: Signature) -> int:
    """Check one cosignature line; returns its timestamp."""
    if verifier.sig_type != COSIGNATURE_V1:
        raise NoteError(f"{verifier.name} is not a cosignature/v1 key")
    if signature.name != verifier.name or signature.key_hash != verifier.key_hash:
        raise NoteError(f"signature is not by witness {verifier.name}")
    if len(signature.payload) != 8 + 64:
        raise NoteError(f"cosignature by {verifier.name} has the wrong length")
    (timestamp,) = struct.unpack(">Q", signature.payload[:8])
    if not verifier.verify(cosigned_message(checkpoint_text, timestamp), signature.payload[8:]):
        raise NoteError(f"cosignature by {verifier.name} does not verify")
    return int(timestamp)
