"""The host's last step: collect the release, load the sealed model into memory, verify it, report it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom.custody.client import CustodyClient
from strongroom.custody.errors import CustodyError
from strongroom.custody.host import HostSession
from strongroom.seal import SealedModel


def load_released(client: CustodyClient, host: HostSession, request_id: str, sealed: Path) -> dict[str, Any]:
    """Fetch and open the release, load every tensor, check the model id, log ``model.loaded``."""
    bundle = client.release(request_id, host.fetch(request_id))
    released = host.open_release(bundle)
    try:
        with SealedModel.open(sealed, released) as model:
            tensors = model.load_tensors()
        model_id = bundle["model_id"]
    finally:
        released.close()
    if not tensors:
        raise CustodyError(f"{sealed}: no tensors loaded")
    receipt = client.loaded(request_id, host.loaded(request_id, model_id))
    return {
        "request_id": request_id,
        "model_id": model_id,
        "tensors": len(tensors),
        "approvers": bundle["approvers"],
        "released_entry": bundle["ledger"],
        "loaded_entry": receipt,
    }
