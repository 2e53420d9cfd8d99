"""Marked releases through the real custody server: the model's fingerprint policy is a two-officer choice;
each release logs its mark's commitment; the host applies the mark after verifying the model id; a copy of
what one host loaded is attributed to that release from the ledger's own records; the auditor agrees; a
server that cannot mark refuses to release."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from strongroom.custody import admin
from strongroom.custody.audit import audit_custody
from strongroom.custody.errors import NotAuthorisedError, UnavailableError
from strongroom.custody.loading import load_released
from strongroom.incident.fingerprint import Candidate, FingerprintKey, FingerprintPolicy, attribute
from strongroom.seal import SealedModel
from tests.custody.conftest import CustodyEnv


def test_a_loaded_copy_is_attributed_to_its_release(env: CustodyEnv) -> None:
    key = FingerprintKey.generate()
    env.services.custody.hold_fingerprint_key(key)
    policy = FingerprintPolicy(env.model_id)
    proposal = admin.set_fingerprint(env.model_id, policy.to_json(), key.commitment)
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        env.admin(proposal, "olga")
    env.admin(proposal)
    loads = {}
    for who in ("alice", "erin"):
        host, _, request_id = env.approved(who)
        verified, summary = load_released(env.client, host, request_id, env.sealed)
        loads[request_id] = (verified.tensors, summary)
    released = [e for _, e in env.services.ledger.query(type="key.released")]
    assert [e.body["fingerprint"] for e in released] == [s["fingerprint"]["commitment"] for _, s in loads.values()]
    candidates = [Candidate(e.body["request_id"], e.body["fingerprint"]) for e in released]
    with SealedModel.open(env.sealed, env.keyring) as model:
        original = model.load_tensors("numpy")
    leaked_id = released[1].body["request_id"]
    result = attribute(loads[leaked_id][0], original, candidates, key=key, policy=policy)
    assert result.verdict == "attributed" and result.release_id == leaked_id
    audit = audit_custody(env.services.ledger.scan())
    assert audit.ok, audit.problems


def test_a_server_without_the_fingerprint_key_releases_nothing(env: CustodyEnv) -> None:
    key = FingerprintKey.generate()
    env.admin(admin.set_fingerprint(env.model_id, FingerprintPolicy(env.model_id).to_json(), key.commitment))
    host, _, request_id = env.approved()
    with pytest.raises(UnavailableError, match="fingerprint key"):
        env.client.release(request_id, host.fetch(request_id))
    assert env.released_entries() == 0
    env.admin(
        admin.set_fingerprint(env.model_id, FingerprintPolicy(env.model_id, enabled=False).to_json(), key.commitment)
    )
    assert "fingerprint" not in env.client.release(request_id, host.fetch(request_id))


def test_attribute_by_command_line(env: CustodyEnv, sealed_minilm: tuple[Path, Path, str], tmp_path: Path) -> None:
    """``strongroom incident attribute`` reads the candidates and the policy from the ledger."""
    from safetensors.numpy import save_file

    from tests.cli.test_seal_cli import run
    from tests.custody.conftest import PASSPHRASE

    keydir = sealed_minilm[0]
    key = FingerprintKey.generate()
    key.save(tmp_path / "fp.key", env.keyring)
    env.services.custody.hold_fingerprint_key(key)
    env.admin(admin.set_fingerprint(env.model_id, FingerprintPolicy(env.model_id).to_json(), key.commitment))
    loaded = {}
    for who in ("alice", "erin"):
        host, _, request_id = env.approved(who)
        loaded[request_id] = load_released(env.client, host, request_id, env.sealed)[0].tensors
    leaked_id = next(iter(loaded))
    save_file({n: np.ascontiguousarray(v) for n, v in loaded[leaked_id].items()}, str(tmp_path / "leak.safetensors"))
    args = ["--original", str(env.sealed), "--keys", str(keydir), "--fingerprint-key", str(tmp_path / "fp.key")]
    named = run("incident", "attribute", str(tmp_path / "leak.safetensors"), *args, "--server", env.url, "--json",
                passphrase=PASSPHRASE)  # fmt: skip
    assert named.returncode == 0, named.stderr
    result = json.loads(named.stdout)
    assert result["verdict"] == "attributed" and result["release_id"] == leaked_id and len(result["scores"]) == 2
    with SealedModel.open(env.sealed, env.keyring) as model:
        save_file(model.load_tensors("numpy"), str(tmp_path / "clean.safetensors"))
    clean = run("incident", "attribute", str(tmp_path / "clean.safetensors"), *args, "--server", env.url,
                passphrase=PASSPHRASE)  # fmt: skip
    assert clean.returncode == 0 and "unmarked" in clean.stdout


def test_malformed_marking_policies_are_refused_with_a_reason(env: CustodyEnv) -> None:
    from strongroom.custody.errors import MessageError, NotFoundError

    commitment = FingerprintKey.generate().commitment
    for policy, reason in (
        ({"elements": "many"}, "elements must be an integer"),
        ({"epsilon_ppm": 0}, "epsilon_ppm must be an integer"),
        ({"selection": "everything"}, "unknown selection"),
        ({"colour": "red"}, "an object with model_id"),
    ):
        with pytest.raises(MessageError, match=reason):
            env.admin(admin.set_fingerprint(env.model_id, policy, commitment))
    with pytest.raises(MessageError, match="key_commitment"):
        env.admin(admin.set_fingerprint(env.model_id, {}, "sha256:zz"))
    with pytest.raises(NotFoundError):
        env.admin(admin.set_fingerprint("blake3:" + "12" * 32, {}, commitment))
    assert not env.services.custody.state.fingerprints
