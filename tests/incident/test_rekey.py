"""Custody's side of rotation and of playbooks: a rekey needs threshold officers and retires exactly the
registered key at a time; releases logged before it still verify on replay and in the auditor, and none
after it may name the old key; an organisation's playbook is adopted only by threshold officers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from strongroom.custody import admin
from strongroom.custody.audit import audit_custody
from strongroom.custody.errors import MessageError, NotAuthorisedError
from strongroom.custody.service import CustodyService
from strongroom.custody.state import key_digest, key_reference
from strongroom.incident.playbook import shipped_text
from strongroom.incident.rotate import reseal
from tests.custody.conftest import CustodyEnv


def release(env: CustodyEnv) -> dict[str, object]:
    host, _, request_id = env.approved()
    return env.client.release(request_id, host.fetch(request_id))


def rotate(env: CustodyEnv, tmp_path: Path) -> tuple[object, object]:
    old = env.services.custody.state.model(env.model_id).key
    out = reseal(env.sealed, tmp_path / "resealed", env.keyring, env.keyring)
    proposal = admin.rekey_model(env.model_id, out.key, key_digest(old), "weights leaked")
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        env.admin(proposal, "olga")
    env.admin(proposal)
    return old, out.key


def test_rekey_retires_the_old_key_and_earlier_releases_still_verify(env: CustodyEnv, tmp_path: Path) -> None:
    before = release(env)
    old, new = rotate(env, tmp_path)
    state = env.services.custody.state
    assert state.model(env.model_id).key == new
    retired = state.retired_keys[key_digest(old)]  # type: ignore[arg-type]
    assert retired.model_id == env.model_id and retired.reference == key_reference(old)  # type: ignore[arg-type]
    after = release(env)
    entries = env.services.ledger.query(type="key.released")
    assert [e.body["key"]["digest"] for _, e in entries] == [key_digest(old), key_digest(new)]  # type: ignore[arg-type]
    assert before["ledger"] != after["ledger"]
    audit = audit_custody(env.services.ledger.scan())
    assert audit.ok, audit.problems
    custody = env.services.custody
    restarted = CustodyService(custody.store, env.services.ledger, custody.service_key, custody.providers)
    assert not restarted.state.problems and len(restarted.state.releases) == 2
    assert key_digest(old) in restarted.state.retired_keys  # type: ignore[arg-type]


def test_a_rekey_must_retire_the_registered_key(env: CustodyEnv, tmp_path: Path) -> None:
    out = reseal(env.sealed, tmp_path / "resealed", env.keyring, env.keyring)
    with pytest.raises(MessageError, match="retires"):
        env.admin(admin.rekey_model(env.model_id, out.key, "sha256:" + "00" * 32))
    other = dataclasses.replace(out.key, binding=dataclasses.replace(out.key.binding, model_id="blake3:" + "11" * 32))
    current = env.services.custody.state.model(env.model_id).key
    with pytest.raises(MessageError, match="bound to model"):
        env.admin(admin.rekey_model(env.model_id, other, key_digest(current)))


def test_a_release_naming_the_retired_key_after_the_cutoff_is_refused(
    env: CustodyEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate that kept serving the old key after the rekey (a bug, a tampered server): replay names it."""
    old, _ = rotate(env, tmp_path)
    custody = env.services.custody
    registered = custody.state.models[env.model_id]
    monkeypatch.setitem(custody.state.models, env.model_id, dataclasses.replace(registered, key=old))
    index = release(env)["ledger"]["index"]  # type: ignore[index]
    monkeypatch.undo()
    audit = audit_custody(env.services.ledger.scan())
    assert [p.index for p in audit.problems] == [index]
    assert "another key" in audit.problems[0].reason


def test_a_playbook_edited_by_one_officer_is_refused(env: CustodyEnv) -> None:
    document = json.loads(shipped_text("leak"))
    document["name"] = "Weight leak confirmed (Example Lab edition)"
    proposal = admin.adopt_playbook("leak", document)
    with pytest.raises(NotAuthorisedError, match="needs 2 distinct officers"):
        env.admin(proposal, "otto")
    receipt = env.admin(proposal, "otto", "olga")
    adopted = env.services.custody.state.playbooks["leak"]
    assert adopted.document["name"].endswith("edition)") and adopted.index == receipt["ledger"]["index"]
    broken = dict(document, workflow_start="start--nowhere")
    with pytest.raises(MessageError, match="workflow_start"):
        env.admin(admin.adopt_playbook("leak", broken))
    audit = audit_custody(env.services.ledger.scan())
    assert audit.ok, audit.problems
