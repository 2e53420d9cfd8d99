"""Witnesses cosign only consistent checkpoints, refuse split views, and auditors can require k of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom.ledger.client import LedgerClient, verify_log
from strongroom.ledger.errors import NoteError
from strongroom.ledger.log import Ledger
from strongroom.ledger.note import NoteVerifier
from strongroom.ledger.witness import Witness, request_body
from strongroom.server.app import create_app, open_services
from strongroom.server.background import BackgroundServer
from strongroom.server.witness_app import create_witness_app
from strongroom.signing import Signer
from tests.ledger.test_log import evaluated


def test_witness_protocol_directly(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "log")
    signer = Signer.generate("ed25519")
    witness = Witness.open(tmp_path / "w", "witness.test/w", [ledger.signer.verifier.vkey])
    for i in range(3):
        ledger.append(evaluated(signer, i))
    first = witness.add_checkpoint(request_body(0, [], ledger.checkpoint()))
    assert first.status == 200 and first.body.startswith("\u2014 witness.test/w ")
    for i in range(3, 7):
        ledger.append(evaluated(signer, i))
    stale = witness.add_checkpoint(request_body(0, [], ledger.checkpoint()))
    assert (stale.status, stale.body) == (409, "3")
    good = witness.add_checkpoint(request_body(3, ledger.consistency_proof(3, 7), ledger.checkpoint()))
    assert good.status == 200
    # A second history under the same key, diverging after entry 3: the witness refuses it.
    fork_dir = tmp_path / "fork"
    fork_dir.mkdir()
    for name in ("log.key", "log.origin"):
        (fork_dir / name).write_bytes((tmp_path / "log" / name).read_bytes())
    fork = Ledger.open(fork_dir)
    for i in [0, 1, 2, 99, 4, 5, 6, 7]:
        fork.append(evaluated(signer, i))
    split = witness.add_checkpoint(request_body(7, fork.consistency_proof(7, 8), fork.checkpoint()))
    assert split.status == 422 and "not consistent" in split.body
    unknown = Witness.open(tmp_path / "w2", "witness.test/w2", [])
    assert unknown.add_checkpoint(request_body(0, [], ledger.checkpoint())).status == 404
    assert witness.add_checkpoint("garbage").status == 400
    ledger.close()
    fork.close()


def test_auditor_requires_k_witnesses(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    services = open_services(data)
    vkey = services.ledger.signer.verifier.vkey
    witnesses = [Witness.open(tmp_path / f"w{i}", f"witness.test/w{i}", [vkey]) for i in range(2)]
    with (
        BackgroundServer(create_witness_app(witnesses[0])) as w0,
        BackgroundServer(create_witness_app(witnesses[1])) as w1,
    ):
        (data / "witnesses").write_text(f"{w0}\n{w1}\n")
        with BackgroundServer(create_app(services, data)) as url:
            client = LedgerClient(url)
            operator = Signer.generate("ed25519")
            (data / "appenders").mkdir()
            operator.save(tmp_path / "appender.key", data / "appenders" / "test.pub")
            for i in range(4):
                client.append(evaluated(operator, i))
            keys = [NoteVerifier.from_vkey(w.signer.verifier.vkey) for w in witnesses]
            report = verify_log(client, tmp_path / "state.json", witnesses=keys, min_witnesses=2)
            assert sorted(report.witnesses) == ["witness.test/w0", "witness.test/w1"]
            client.append(evaluated(operator, 4))
            assert verify_log(client, tmp_path / "state.json", witnesses=keys, min_witnesses=2).size == 5
            stranger = Witness.open(tmp_path / "w9", "witness.test/w9", [vkey])
            with pytest.raises(NoteError, match="2 valid witness cosignature"):
                verify_log(
                    client, tmp_path / "state.json", witnesses=[*keys, stranger.signer.verifier], min_witnesses=3
                )
    services.close()


def test_a_fresh_auditor_needs_a_witness_to_see_a_rolled_back_log(tmp_path: Path) -> None:
    """The operator shows a first-time auditor another history under the same log key. Without saved state
    only a witness that cosigned the real history can tell: by default the auditor requires one."""
    import shutil

    data = tmp_path / "srv"
    services = open_services(data)
    vkey = services.ledger.signer.verifier.vkey
    witness = Witness.open(tmp_path / "w", "witness.test/w", [vkey])
    signer = Signer.generate("ed25519")
    with BackgroundServer(create_witness_app(witness)) as w_url:
        (data / "witnesses").write_text(w_url + "\n")
        real = [evaluated(signer, i) for i in range(5)]
        for raw in real:
            services.ledger.append(raw)
        with BackgroundServer(create_app(services, data)) as url:
            witness_key = NoteVerifier.from_vkey(witness.signer.verifier.vkey)
            assert verify_log(LedgerClient(url), tmp_path / "honest.json", witnesses=[witness_key]).size == 5
        services.close()
        fork = tmp_path / "fork"  # same log key, a different history, offered to a new auditor
        fork.mkdir(mode=0o700)
        for name in ("log.key", "log.origin", "service.key", "service.pub", "witnesses"):
            shutil.copy(data / name, fork / name)
        forked = open_services(fork)
        for raw in [*real[:2], evaluated(signer, 99), *real[3:]]:
            forked.ledger.append(raw)
        with BackgroundServer(create_app(forked, fork)) as fork_url:
            with pytest.raises(NoteError, match="Without a witness, a log operator can roll the log back"):
                verify_log(LedgerClient(fork_url), tmp_path / "new.json")
            with pytest.raises(NoteError, match="0 valid witness cosignature"):
                verify_log(LedgerClient(fork_url), tmp_path / "new.json", witnesses=[witness_key])
            assert verify_log(LedgerClient(fork_url), tmp_path / "new.json", min_witnesses=0).size == 5
        forked.close()
