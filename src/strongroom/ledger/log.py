"""The in-process ledger: verify, sequence in batches, store durably, then acknowledge; serve proofs.

``append`` hands an entry to a single sequencer thread, which drains everything waiting, commits it in
one transaction (group commit) and only then extends the in-memory hash tree and wakes the callers. An
acknowledged entry is therefore durable, and indices are assigned exactly once, in commit order.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strongroom.atomic import write_atomic
from strongroom.ledger import merkle
from strongroom.ledger.checkpoint import Checkpoint
from strongroom.ledger.entries import Entry, build_entry, parse_entry
from strongroom.ledger.errors import LedgerError, StorageError
from strongroom.ledger.note import ED25519, NoteSigner, private_from_pem
from strongroom.ledger.storage import LedgerStore, open_store
from strongroom.ledger.tree import HashTree
from strongroom.signing import Signer

MAX_BATCH = 4096
MAX_QUERY = 100_000  # in process; over HTTP /v1/entries pages at most 1,000 at a time
DECODED_CACHE_BYTES = 16 << 20  # decoded entries kept so reads need not re-verify what was verified once


@dataclass(frozen=True)
class Receipt:
    """Proof of sequencing: the entry's index and leaf hash, durable when returned."""

    index: int
    leaf_hash: bytes
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "leaf_hash": self.leaf_hash.hex(), "duplicate": self.duplicate}


class Ledger:
    """An append-only log of verified entries with RFC 9162 proofs and signed C2SP checkpoints."""

    def __init__(self, store: LedgerStore, signer: NoteSigner) -> None:
        self.store = store
        self.signer = signer
        self.origin = signer.name
        self.tree = HashTree()
        self._index_of: dict[bytes, int] = {}
        for leaf in store.leaf_hashes():
            self._index_of.setdefault(leaf, self.tree.size)
            self.tree.append(leaf)
        self._tree_lock = threading.Lock()
        self._queue: queue.Queue[tuple[Entry, Future[Receipt]] | None] = queue.Queue()
        self._checkpoint: tuple[int, str] | None = None
        self._decoded = DecodedEntries(DECODED_CACHE_BYTES)
        self._closed = False
        self._sequencer = threading.Thread(target=self._sequence, name="ledger-sequencer", daemon=True)
        self._sequencer.start()

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        database: str | None = None,
        origin: str | None = None,
        key_passphrase: bytes | None = None,
    ) -> Ledger:
        """Open (creating on first use) the ledger under ``data_dir``: its key (encrypted at rest under
        ``key_passphrase`` when one is given) and, by default, SQLite."""
        data_dir = Path(data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path = data_dir / "log.key"
        if key_path.exists():
            key = private_from_pem(key_path.read_bytes(), str(key_path), key_passphrase)
            name = (data_dir / "log.origin").read_text().strip()
        else:
            key = Ed25519PrivateKey.generate()
            name = origin or f"strongroom.local/log/{secrets.token_hex(4)}"
            write_atomic(key_path, Signer(key).pem(key_passphrase))
            write_atomic(data_dir / "log.origin", (name + "\n").encode(), mode=0o644)
        signer = NoteSigner(name, key, ED25519)
        write_atomic(data_dir / "log.vkey", (signer.verifier.vkey + "\n").encode(), mode=0o644)
        return cls(open_store(database or data_dir / "ledger.sqlite3"), signer)

    # -- appending -------------------------------------------------------------------------------

    def append(self, raw: bytes) -> Receipt:
        """Verify and sequence one entry; returns once it is durable. Malformed entries raise EntryError."""
        entry = parse_entry(raw)
        return self.submit(entry).result()

    def known(self, raw: bytes) -> Receipt | None:
        """The receipt of ``raw`` if exactly these bytes are already logged (durably): a repeat needs no
        verification, since it adds nothing to the log."""
        leaf = merkle.leaf_hash(raw)
        index = self._index_of.get(leaf)
        return None if index is None else Receipt(index, leaf, duplicate=True)

    def submit(self, entry: Entry) -> Future[Receipt]:
        if self._closed:
            raise LedgerError("ledger is closed")
        future: Future[Receipt] = Future()
        self._queue.put((entry, future))
        return future

    def append_event(
        self, entry_type: str, body: dict[str, Any], signer: Signer, time: str | None = None
    ) -> dict[str, Any]:
        """Build, sign and append an entry (the custody service's port); returns the receipt as JSON."""
        return self.submit(build_entry(entry_type, body, signer, time)).result().to_json()

    def _sequence(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Entry, Future[Receipt]]]) -> None:
        """Store a batch in one transaction, then extend the tree and answer; a repeat answers its original."""
        start = self.tree.size
        fresh: list[tuple[Entry, bytes]] = []
        answers: list[tuple[Future[Receipt], bytes, int | None]] = []
        pending: dict[bytes, int] = {}
        for entry, future in batch:
            leaf = merkle.leaf_hash(entry.raw)
            known = self._index_of.get(leaf, pending.get(leaf))
            if known is None:
                pending[leaf] = start + len(fresh)
                fresh.append((entry, leaf))
            answers.append((future, leaf, known))
        try:
            if fresh:
                self.store.append_batch(start, [e for e, _ in fresh], [leaf for _, leaf in fresh])
        except Exception as exc:
            error = exc if isinstance(exc, LedgerError) else StorageError(str(exc))
            for future, _, _ in answers:
                future.set_exception(error)
            return
        with self._tree_lock:
            for _, leaf in fresh:
                self._index_of.setdefault(leaf, self.tree.size)
                self.tree.append(leaf)
        for entry, leaf in fresh:
            self._decoded.put(leaf, entry)
        for future, leaf, known in answers:
            if known is None:
                future.set_result(Receipt(pending[leaf], leaf))
            else:
                future.set_result(Receipt(known, leaf, duplicate=True))

    # -- reading ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.tree.size

    def checkpoint(self) -> str:
        """The signed checkpoint note for the current size (cached until the log grows)."""
        with self._tree_lock:
            size = self.tree.size
            cached = self._checkpoint
            if cached is not None and cached[0] == size:
                return cached[1]
            root = self.tree.root(size)
        note = self.signer.sign_note(Checkpoint(self.origin, size, root).text())
        self.store.save_checkpoint(size, note)
        self._checkpoint = (size, note)
        return note

    def root(self, size: int) -> bytes:
        self._check_size(size)
        with self._tree_lock:
            return self.tree.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        with self._tree_lock:
            return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self._check_size(new)
        with self._tree_lock:
            return self.tree.consistency_proof(old, new)

    def entry(self, index: int) -> bytes:
        found = self.store.entries(index, index + 1)
        if not found:
            raise LedgerError(f"no entry {index} (log size {self.size})")
        return found[0]

    def read(self, index: int) -> Entry:
        return self.decode(self.entry(index))

    def decode(self, raw: bytes) -> Entry:
        """``parse_entry(raw)``, from the cache of entries this process verified (at append or an earlier
        read) when it holds exactly these bytes: a read never trusts bytes nobody here verified."""
        leaf = merkle.leaf_hash(raw)
        entry = self._decoded.get(leaf)
        if entry is None or entry.raw != raw:
            entry = parse_entry(raw)
            self._decoded.put(leaf, entry)
        return entry

    def entries(self, start: int, end: int) -> list[bytes]:
        return self.store.entries(start, min(end, self.size))

    def tile(self, level: int, index: int, width: int) -> bytes:
        with self._tree_lock:
            return self.tree.tile(level, index, width)

    def available_width(self, level: int, index: int) -> int:
        """How many hashes the tile at (level, index) holds right now (0..256)."""
        with self._tree_lock:
            count = len(self.tree.levels[8 * level]) if 8 * level < len(self.tree.levels) else 0
        return max(0, min(256, count - 256 * index))

    def query(self, *, start: int = 0, limit: int = MAX_QUERY, **filters: str) -> list[tuple[int, Entry]]:
        """Entries matching every filter (type, model_id, person, signer, since, until), decoded; at most
        ``limit`` of them, from index ``start`` on."""
        return [(i, self.decode(raw)) for i, raw in self.query_raw(start=start, limit=limit, **filters)]

    def query_raw(self, *, start: int = 0, limit: int = MAX_QUERY, **filters: str) -> list[tuple[int, bytes]]:
        """As ``query``, the stored bytes as they are: what a reader who verifies for itself needs."""
        clean = {k: v for k, v in filters.items() if v}
        return self.store.query(clean, limit=min(limit, MAX_QUERY), start=max(0, start))

    def scan(self, types: Collection[str] = (), start: int = 0, page: int = 2048) -> Iterator[tuple[int, Entry]]:
        """Every entry from ``start`` to the current size (only ``types``, if given), in log order, each
        re-verified as it is read; pages through the whole log, with no cap."""
        end, wanted = self.size, sorted(types)
        while start < end:
            rows = self.store.page(start, end, wanted, page)
            if not rows:
                return
            for index, raw in rows:
                yield index, parse_entry(raw)
            start = rows[-1][0] + 1

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise LedgerError(f"tree size {size} is larger than the log ({self.size})")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._sequencer.join(timeout=30)
            self.store.close()


class DecodedEntries:
    """Verified entries by leaf hash, least recently used dropped first, at most ``budget`` bytes of them."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, leaf: bytes) -> Entry | None:
        with self._lock:
            entry = self._entries.get(leaf)
            if entry is not None:
                self._entries.move_to_end(leaf)
            return entry

    def put(self, leaf: bytes, entry: Entry) -> None:
        with self._lock:
            if leaf in self._entries:
                return
            self._entries[leaf] = entry
            self._bytes += len(entry.raw)
            while self._bytes > self.budget and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.raw)
