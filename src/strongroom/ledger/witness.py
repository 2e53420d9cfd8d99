"""A C2SP tlog-witness: remembers the last checkpoint it cosigned per log and cosigns only extensions of it.

``POST /add-checkpoint`` takes ``old <size>\\n``, the consistency proof (one base64 hash per line), a
blank line and the signed checkpoint. The witness checks the log's signature, that ``old`` is the size it
last saw (409 with its size otherwise), and the consistency proof (422 if it fails: a split view); then
it stores the new checkpoint and answers with its cosignature line. It never cosigns two different roots
for one size, or a smaller tree.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom.atomic import write_atomic
from strongroom.ledger import merkle
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.cosignature import cosign
from strongroom.ledger.errors import LedgerError, NoteError, ProofError
from strongroom.ledger.note import COSIGNATURE_V1, NoteSigner, NoteVerifier, open_note, private_from_pem
from strongroom.signing import Signer

MAX_PROOF_LINES = 128  # a consistency proof for any 64-bit tree size has fewer hashes
_OLD = re.compile(r"old ([0-9]{1,20})")  # ASCII digits: 'old ²' passes str.isdigit, and int() refuses it


@dataclass(frozen=True)
class WitnessReply:
    status: int
    body: str


class Witness:
    """Cosigns checkpoints of the logs it knows (by vkey), keeping state in SQLite."""

    def __init__(self, signer: NoteSigner, logs: list[NoteVerifier], state: Path) -> None:
        self.signer = signer
        self.logs = {log.name: log for log in logs}
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(state), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (origin TEXT PRIMARY KEY, size INTEGER, root BLOB)")

    @classmethod
    def open(cls, data_dir: Path, name: str, log_vkeys: list[str]) -> Witness:
        data_dir.mkdir(parents=True, exist_ok=True)
        key_path = data_dir / "witness.key"
        if key_path.exists():
            key = private_from_pem(key_path.read_bytes(), str(key_path))
        else:
            key = Ed25519PrivateKey.generate()
            write_atomic(key_path, Signer(key).pem())
        signer = NoteSigner(name, key, COSIGNATURE_V1)
        write_atomic(data_dir / "witness.vkey", (signer.verifier.vkey + "\n").encode(), mode=0o644)
        return cls(signer, [NoteVerifier.from_vkey(v) for v in log_vkeys], data_dir / "witness.sqlite3")

    def add_checkpoint(self, request: str) -> WitnessReply:
        try:
            old, proof, note = parse_request(request)
        except LedgerError as exc:
            return WitnessReply(400, str(exc))
        origin = note.split("\n", 1)[0]
        log = self.logs.get(origin)
        if log is None:
            return WitnessReply(404, f"unknown log {origin!r}")
        try:
            text, _ = open_note(note, log)
            checkpoint = Checkpoint.parse(text)
        except NoteError as exc:
            return WitnessReply(403, str(exc))
        with self._lock:
            row = self._db.execute("SELECT size, root FROM seen WHERE origin = ?", (origin,)).fetchone()
            known_size, known_root = (int(row[0]), bytes(row[1])) if row else (0, merkle.EMPTY_ROOT)
            if old != known_size:
                return WitnessReply(409, str(known_size))
            if checkpoint.size < known_size:
                return WitnessReply(400, "checkpoint is smaller than the old size")
            try:
                merkle.verify_consistency(known_size, checkpoint.size, known_root, checkpoint.root, proof)
            except ProofError as exc:
                return WitnessReply(422, f"not consistent with the checkpoint of size {known_size}: {exc}")
            self._db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?)", (origin, checkpoint.size, checkpoint.root))
        return WitnessReply(200, cosign(self.signer, text, int(time.time())))


def parse_request(request: str) -> tuple[int, list[bytes], str]:
    head, sep, note = request.partition("\n\n")
    if not sep:
        raise LedgerError("add-checkpoint request needs a blank line before the checkpoint")
    lines = head.split("\n")
    old = _OLD.fullmatch(lines[0])
    if old is None:
        raise LedgerError("add-checkpoint request must start with 'old <size>' (ASCII decimal)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise LedgerError(f"consistency proof has more than {MAX_PROOF_LINES} lines")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:] if line]
    except (binascii.Error, ValueError):
        raise LedgerError("consistency proof lines must be base64") from None
    return int(old.group(1)), proof, note


def request_body(old: int, proof: list[bytes], note: str) -> str:
    return "".join([f"old {old}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n", note])
