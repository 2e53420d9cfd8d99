"""The host's last step: collect the release, load the sealed model into memory, verify it, report it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from strongroom.custody.client import CustodyClient
from strongroom.custody.errors import AwaitingSharesError, CustodyError
from strongroom.custody.host import HostSession
from strongroom.manifest.verify_load import VerifiedModel, load_verified
from strongroom.seal.tensors import Framework


def fetch_release(client: CustodyClient, host: HostSession, request_id: str, wait: float = 0.0) -> dict[str, Any]:
    """The release for this host; for a split key, waits up to ``wait`` seconds for custodians to deliver
    their shares (they do so only once the release is on the ledger)."""
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        head = client.head() if host.tpm is not None else None
        try:
            return client.release(request_id, host.fetch(request_id, head))
        except AwaitingSharesError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def load_released(
    client: CustodyClient,
    host: HostSession,
    request_id: str,
    sealed: Path,
    framework: Framework = "numpy",
    wait: float = 0.0,
) -> tuple[VerifiedModel, dict[str, Any]]:
    """Fetch and open the release, load every tensor verifying the model id as it decrypts, log the load.

    Returns (the verified model, a summary). If verification fails nothing is returned and no load is logged.
    """
    bundle = fetch_release(client, host, request_id, wait)
    mark = host.open_fingerprint(bundle)
    released = host.open_release(bundle)
    try:
        verified = load_verified(sealed, released, expected_model_id=bundle["model_id"], framework=framework)
    finally:
        released.close()
    if not verified.tensors:
        raise CustodyError(f"{sealed}: no tensors loaded")
    applied = None
    if mark is not None:  # after the model id was verified: the mark is a deliberate, recorded change
        from strongroom.incident.fingerprint import apply_fingerprint

        try:
            applied = apply_fingerprint(verified.tensors, *mark).to_json()
        finally:
            mark[0].wipe()
    receipt = client.loaded(request_id, host.loaded(bundle))
    summary = {
        "request_id": request_id,
        "model_id": bundle["model_id"],
        "tensors": len(verified.tensors),
        "approvers": bundle["approvers"],
        "released_entry": bundle["ledger"],
        "loaded_entry": receipt,
        "fingerprint": applied,
    }
    return verified, summary
