"""The auditor's client: fetch a checkpoint, check the log's and witnesses' signatures, prove consistency
with the last checkpoint it trusted, prove inclusion of entries, and report split views and rollbacks.

State (``--state FILE``) pins the log's verifier key on first use and remembers the last verified
checkpoint, so every later run proves the log only grew.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from strongroom.atomic import write_atomic
from strongroom.ledger import merkle
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.cosignature import verify_cosignature
from strongroom.ledger.entries import Entry, parse_entry
from strongroom.ledger.errors import LedgerError, NoteError, ProofError, SplitViewError
from strongroom.ledger.note import NoteVerifier, open_note
from strongroom.ledger.tiles import TILE_WIDTH, bundle, entries_path, unbundle
from strongroom.tls import ClientTls


class LedgerClient:
    """Reads a Strongroom ledger over HTTP (C2SP tiles plus proof endpoints)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        options = ClientTls.from_environment().httpx_options()
        self.http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False, **options)

    def _get(self, path: str, **params: Any) -> httpx.Response:
        try:
            reply = self.http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise LedgerError(f"{self.url}: unreachable: {exc}") from None
        if reply.status_code != 200:
            raise LedgerError(f"{self.url}{path}: HTTP {reply.status_code}: {reply.text[:200]}")
        return reply

    def vkey(self) -> str:
        return self._get("/log.vkey").text.strip()

    def checkpoint_note(self) -> str:
        return self._get("/checkpoint").text

    def append(self, raw: bytes) -> dict[str, Any]:
        try:
            reply = self.http.post("/add", content=raw, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise LedgerError(f"{self.url}: unreachable: {exc}") from None
        if reply.status_code != 201:
            raise LedgerError(f"append refused (HTTP {reply.status_code}): {reply.json().get('error', reply.text)}")
        return dict(reply.json())

    def append_bundle(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """Append many entries in one request (all checked before any is sequenced)."""
        try:
            reply = self.http.post(
                "/add-bundle", content=bundle(raws), headers={"Content-Type": "application/octet-stream"}
            )
        except httpx.HTTPError as exc:
            raise LedgerError(f"{self.url}: unreachable: {exc}") from None
        if reply.status_code != 201:
            raise LedgerError(f"bundle refused (HTTP {reply.status_code}): {reply.json().get('error', reply.text)}")
        return list(reply.json()["receipts"])

    def inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        data = self._get("/v1/proof/inclusion", index=index, size=size).json()
        return bytes.fromhex(data["leaf_hash"]), [base64.b64decode(h) for h in data["proof"]]

    def consistency(self, old: int, new: int) -> list[bytes]:
        return [base64.b64decode(h) for h in self._get("/v1/proof/consistency", old=old, new=new).json()["proof"]]

    def entries(self, size: int, start: int = 0) -> list[bytes]:
        """Entries [start, size) read from the C2SP entry bundles."""
        out: list[bytes] = []
        first_tile = start // TILE_WIDTH
        for tile in range(first_tile, -(-size // TILE_WIDTH)):
            width = min(TILE_WIDTH, size - tile * TILE_WIDTH)
            items = unbundle(self._get("/" + entries_path(tile, width)).content)
            if len(items) != width:
                raise LedgerError(f"entry bundle {tile} has {len(items)} entries, expected {width}")
            out.extend(items)
        return out[start - first_tile * TILE_WIDTH :]

    def query(self, **filters: str) -> list[tuple[int, Entry]]:
        """Every entry matching the filters, page by page, each verified here (the server's word is not proof)."""
        found: list[tuple[int, Entry]] = []
        params: dict[str, Any] = {k: v for k, v in filters.items() if v}
        while True:
            data = self._get("/v1/entries", **params).json()
            found += [(int(e["index"]), parse_entry(e["entry"].encode())) for e in data["entries"]]
            following = data.get("next")
            if following is None:
                return found
            if not isinstance(following, int) or following <= params.get("start", -1):
                raise LedgerError(f"{self.url}/v1/entries: the next page does not move forward")
            params["start"] = following

    def close(self) -> None:
        self.http.close()


@dataclass
class AuditReport:
    """What one verification run established."""

    origin: str
    size: int
    root: str
    previous_size: int | None
    witnesses: list[str] = field(default_factory=list)
    verified_entries: list[int] = field(default_factory=list)
    full_history: bool = False
    entries: list[Entry] = field(default_factory=list, repr=False)  # with a full check: every entry, verified

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "previous_size": self.previous_size,
            "witnesses": self.witnesses,
            "verified_entries": self.verified_entries,
            "full_history": self.full_history,
        }


UNWITNESSED = (
    "Without a witness, a log operator can roll the log back and grow another history, and an auditor "
    "without saved state cannot tell; a witness that saw the old checkpoint refuses to cosign the new one. "
    "Name one (--witness-key), or accept that risk explicitly (--no-witness)"
)


def verify_log(
    client: LedgerClient,
    state_path: Path,
    *,
    log_vkey: str | None = None,
    witnesses: list[NoteVerifier] | None = None,
    min_witnesses: int = 1,
    indices: list[int] | None = None,
    full: bool = False,
) -> AuditReport:
    """One audit: signatures, witnesses (at least ``min_witnesses`` of ``witnesses`` must have cosigned: one
    by default), consistency with saved state, inclusion of asked-for entries."""
    state = _read_state(state_path)
    vkey = log_vkey or state.get("vkey") or client.vkey()
    if state.get("vkey") and state["vkey"] != vkey:
        raise SplitViewError(f"{state_path}: the log key changed from the one pinned in the state file")
    verifier = NoteVerifier.from_vkey(vkey)
    note = client.checkpoint_note()
    text, signatures = open_note(note, verifier)
    checkpoint = Checkpoint.parse(text)
    if checkpoint.origin != verifier.name:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} does not match the log key {verifier.name!r}")
    cosigned = []
    for witness in witnesses or []:
        for sig in signatures:
            if sig.name == witness.name and sig.key_hash == witness.key_hash:
                verify_cosignature(witness, text, sig)
                cosigned.append(witness.name)
    if len(cosigned) < min_witnesses:
        raise NoteError(
            f"checkpoint has {len(cosigned)} valid witness cosignature(s); {min_witnesses} required"
            + ("" if witnesses else f". {UNWITNESSED}")
        )
    report = AuditReport(checkpoint.origin, checkpoint.size, checkpoint.root.hex(), state.get("size"), cosigned)
    if "size" in state:
        old_size, old_root = int(state["size"]), bytes.fromhex(state["root"])
        if checkpoint.size < old_size:
            raise SplitViewError(f"rollback: the log now claims size {checkpoint.size}, but we saw {old_size}")
        try:
            merkle.verify_consistency(
                old_size, checkpoint.size, old_root, checkpoint.root, client.consistency(old_size, checkpoint.size)
            )
        except ProofError as exc:
            raise SplitViewError(
                f"split view: size {checkpoint.size} is not an extension of size {old_size}: {exc}"
            ) from None
    if full:
        everything = client.entries(checkpoint.size)
        if merkle.root_from_leaves([merkle.leaf_hash(raw) for raw in everything]) != checkpoint.root:
            raise SplitViewError("the entries served do not hash to the signed checkpoint root")
        report.entries = [parse_entry(raw) for raw in everything]
        report.full_history = True
    for index in indices or []:
        leaf, proof = client.inclusion(index, checkpoint.size)
        raw = client.entries(index + 1, index)[0]
        if merkle.leaf_hash(raw) != leaf:
            raise ProofError(f"entry {index}: served bytes do not match its leaf hash")
        parse_entry(raw)
        merkle.verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root)
        report.verified_entries.append(index)
    _write_state(state_path, {"vkey": vkey, "size": checkpoint.size, "root": checkpoint.root.hex(), "note": note})
    return report


def _read_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        raise LedgerError(f"{path}: state file is unreadable or not JSON") from None
    if not isinstance(value, dict):
        raise LedgerError(f"{path}: state file is not a JSON object")
    return value


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)
