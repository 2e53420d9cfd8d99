"""Rotation: re-seal a model under a fresh data key, and retire the old key in the provider where it can be.

The re-seal (``reseal``) opens the sealed model with the old key (which authenticates the index), and seals
each member file again under a new data key bound to the same model id and a new seal id
(``strongroom.seal.writer.seal_decrypted``): the plaintext is decrypted twice in small wiped buffers, never
whole and never to a file (once for the new header's keyed digest, once a batch at a time just before it
is encrypted; every segment authenticated with its index and the final-segment flag, so nothing can be
cut, reordered or swapped), into a staging directory that becomes the output only when every file is done
(``strongroom.atomic.atomic_directory``). The model id does not change (it is the plaintext's), so hosts
and manifests stay valid; only the wrapped key and the seal id do.

Custody learns of the new key through a ``model.rekey`` change co-signed by threshold officers (the
decision is custody's: ``strongroom.custody.state``); the old key is then *retired at a time* on the ledger,
as Certificate Transparency retires a log: releases logged before that time named the old key and still
verify on replay, and no later release may name it.

Where the provider can make the old wrapped key useless, ``retire_*`` does it:

* PKCS#11 (SoftHSM2, an HSM): the re-seal goes under a new KEK object; the old KEK object is destroyed
  (``C_DestroyObject``) once no key still in service is wrapped under it.
* OpenBao transit: the transit key is rotated before the re-seal; afterwards ``min_decryption_version`` is
  raised to the new version, so the old ciphertexts no longer decrypt, once no key still in service uses an
  older version.
* Shamir: the new data key is split into new shares, best sealed to the custodians' *new* X25519 keys (a
  new provider key id), by k old custodians at one machine (the recovery ceremony). The old shares live
  inside the old wrapped key, sealed to the old custodian keys: the ledger's retirement stops the gate
  from forwarding any of them, and custodians destroying their old private keys supersedes them for good.
* Local keyring: one KEK wraps every model's key, so the old wrapped key cannot be singled out; the
  ledger's retirement is the control, and the old sealed directory should be destroyed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.atomic import atomic_directory
from strongroom.incident.errors import ResealError, RetireError
from strongroom.keys.provider import KeyBinding, KeyProvider, WrappedKey
from strongroom.memory import wipe
from strongroom.seal.directory import SUFFIX, SealedEntry, SealedModel, write_index
from strongroom.seal.errors import SealError
from strongroom.seal.reader import default_threads
from strongroom.seal.writer import Progress, seal_decrypted

FileCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class Resealed:
    """What a re-seal produced: the new seal and key, and the key it replaces."""

    model_id: str
    sealed: Path
    seal_id: str
    key: WrappedKey
    old_key: WrappedKey
    plaintext_bytes: int
    files: int

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "sealed": str(self.sealed),
            "seal_id": self.seal_id,
            "key": {"provider": self.key.provider, "key_id": self.key.key_id},
            "old_key": {"provider": self.old_key.provider, "key_id": self.old_key.key_id},
            "plaintext_bytes": self.plaintext_bytes,
            "files": self.files,
        }


def reseal(
    src: Path,
    dst: Path,
    old_provider: KeyProvider,
    new_provider: KeyProvider,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    on_file: FileCallback | None = None,
) -> Resealed:
    """Re-seal the sealed model directory ``src`` into ``dst`` under a fresh data key from ``new_provider``."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise ResealError(f"{dst}: output already exists; choose a new path")
    try:
        old = SealedModel.open(src, old_provider)
    except SealError as exc:
        raise ResealError(f"{src}: cannot open with the old key: {exc}") from None
    try:
        if old.single or old.model_id is None:
            raise ResealError(f"{src}: only a sealed model directory (with a model id) is re-sealed")
        model_id, workers = old.model_id, threads or default_threads()
        seal_id = secrets.token_hex(16)
        binding = KeyBinding(seal_id, model_id)
        data_key, wrapped = new_provider.generate_data_key(binding)
        try:
            if wrapped.binding != binding:
                raise ResealError(f"key provider {wrapped.provider}:{wrapped.key_id} returned another binding")
            entries: list[SealedEntry] = []
            with atomic_directory(dst) as staging:
                for entry in old.members():
                    if on_file:
                        on_file(entry.name, entry.plaintext_length)
                    out = staging / (entry.name + SUFFIX)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    header = _reseal_file(old, entry, out, seal_id, data_key, wrapped, workers, progress)
                    entries.append(
                        SealedEntry(entry.name, header.plaintext_length, header.plaintext_digest, entry.content_type)
                    )
                write_index(staging, seal_id, wrapped, header.segment_size, entries, data_key)
        finally:
            wipe(data_key)
    except SealError as exc:
        raise ResealError(f"{src}: re-seal failed, nothing written to {dst}: {exc}") from None
    finally:
        old.close()
    return Resealed(model_id, dst, seal_id, wrapped, old.key, sum(e.plaintext_length for e in entries), len(entries))


def _reseal_file(
    old: SealedModel,
    entry: SealedEntry,
    out: Path,
    seal_id: str,
    data_key: bytearray,
    wrapped: WrappedKey,
    threads: int,
    progress: Progress | None,
) -> Any:
    with old.open_file(entry.name) as sealed:
        return seal_decrypted(
            sealed,
            out,
            name=entry.name,
            seal_id=seal_id,
            data_key=data_key,
            wrapped=wrapped,
            content_type=entry.content_type,
            threads=threads,
            progress=progress,
        )


# -- retiring the old key in its provider ----------------------------------------------------------


@dataclass(frozen=True)
class Retirement:
    provider: str
    key_id: str
    action: str  # what was done in the provider, or why nothing could be

    def to_json(self) -> dict[str, str]:
        return {"provider": self.provider, "key_id": self.key_id, "action": self.action}


def _still_used(old: WrappedKey, in_service: Sequence[WrappedKey], same: Callable[[WrappedKey], bool]) -> None:
    for key in in_service:
        if key.provider == old.provider and same(key):
            raise RetireError(
                f"{old.provider}:{old.key_id} still wraps the key of model {key.binding.model_id} (seal "
                f"{key.binding.seal_id[:8]}); re-seal that model first, or it would be stranded"
            )


def retire_pkcs11(
    old: WrappedKey, in_service: Sequence[WrappedKey], *, module: str, token: str, pin: str
) -> Retirement:
    """Destroy the KEK object the old key was wrapped under (``key_id`` is ``TOKEN/LABEL``)."""
    from strongroom.keys.pkcs11 import destroy_kek

    if old.provider != "pkcs11":
        raise RetireError(f"not a PKCS#11 key: {old.provider}")
    token_label, _, key_label = old.key_id.rpartition("/")
    if token_label and token_label != token:
        raise RetireError(f"the old key is on token {token_label!r}, not {token!r}")
    _still_used(old, in_service, lambda k: k.key_id == old.key_id)
    destroy_kek(module, token, pin, key_label or old.key_id)
    return Retirement(old.provider, old.key_id, "KEK object destroyed (C_DestroyObject)")


def transit_version(key: WrappedKey) -> int:
    """The transit key version an OpenBao ciphertext (``vault:vN:...``) was made with."""
    try:
        prefix = key.blob.decode("ascii").split(":", 2)
        return int(prefix[1][1:])
    except (UnicodeDecodeError, IndexError, ValueError):
        raise RetireError("not an OpenBao transit ciphertext (vault:vN:...)") from None


def retire_openbao(old: WrappedKey, in_service: Sequence[WrappedKey], transit: Any) -> Retirement:
    """Raise the transit key's ``min_decryption_version`` above the old key's version."""
    if old.provider != "openbao" or old.key_id != transit.key_id:
        raise RetireError(f"the old key is {old.provider}:{old.key_id}, not under {transit.key_id}")
    retired = transit_version(old)
    latest, minimum = transit.versions()
    if latest <= retired:
        raise RetireError("the transit key was not rotated since the old key was wrapped: rotate and re-seal first")
    _still_used(old, in_service, lambda k: k.key_id == old.key_id and transit_version(k) <= retired)
    floor = max(minimum, retired + 1)
    transit.set_min_decryption_version(floor)
    return Retirement(old.provider, old.key_id, f"min_decryption_version raised to {floor} (old key was v{retired})")


def retire_in_ledger_only(old: WrappedKey) -> Retirement:
    """Shamir and the local keyring: the ledger's retirement is what stops the old key."""
    if old.provider == "shamir":
        return Retirement(
            old.provider, old.key_id, "shares superseded: the ledger retires the old key; delete old shares"
        )
    return Retirement(old.provider, old.key_id, "retired on the ledger only (one KEK wraps many models' keys)")
