"""Location verification over a real network path: namespaces, veths and a delay relay (``netlab``).

Landmarks sit at real US cities; the relay holds every packet for the time light in fibre needs between the
nodes' true positions. An honest host in Wichita gets IN(US); hosts in Mexico City and Toronto do not; a
front machine in Wichita relaying challenges to the key in Toronto cannot get IN(US); replayed nonces and
answers from foreign keys are refused; a landmark lying about its place is flagged by its peers. Needs root.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import Point

from strongroom.canonical_json import canonical_json
from strongroom.geo.crosscheck import CrossCheckSettings, cross_check
from strongroom.geo.errors import ForeignKeyError
from strongroom.geo.landmarks import Landmark, LandmarkSet
from strongroom.geo.protocol import Hello, decode, epoch_now, response_message
from strongroom.geo.prover import ProofRun, Target, prove
from strongroom.geo.region import Outcome, Parameters
from strongroom.geo.verify import assess, recompute, statement
from strongroom.signing import Signer, Verifier

from .helpers import US_LANDMARKS
from .netlab import PLACES, SERVICE_PORT, GeoLab, Landmarks, Route, fibre_rtt_ms

HOSTS = ["wichita", "mexico-city", "toronto"]
LIAR_CLAIMS = PLACES["wichita"]  # 'liar' says it is in Wichita; its node sits in Mexico City
LAB_CHECKS = CrossCheckSettings(stretch=1.5, slack_ms=3.0)  # the lab's paths are straight fibre


class Lab:
    def __init__(self, tmp: Path) -> None:
        positions = {n: PLACES[n] for n in US_LANDMARKS + HOSTS}
        positions["liar"] = PLACES["mexico-city"]
        self.net = GeoLab(positions).start(tmp)
        self.signers = {n: Signer.generate("ed25519") for n in [*US_LANDMARKS, "liar"]}
        self.host_key = Signer.generate("ed25519")
        claimed = {**{n: PLACES[n] for n in US_LANDMARKS}, "liar": LIAR_CLAIMS}
        self.landmarks = LandmarkSet(Landmark(n, s.verifier, *claimed[n]) for n, s in self.signers.items())
        self.served = Landmarks(self.net, self.signers)

    def targets(self, source: str, names: list[str] | None = None) -> list[Target]:
        return [Target(self.landmarks.get(n), *self.net.address_of(source, n)) for n in names or US_LANDMARKS]

    def prove(self, where: str, key: Any = None, transport: str = "udp", **kwargs: Any) -> ProofRun:
        targets = kwargs.pop("targets", None) or self.targets(where)
        key = key or self.host_key
        return self.net.run_in(
            where, lambda: prove("h1", key, targets, samples=6, transport=transport, parallel=1, **kwargs)
        )

    def close(self) -> None:
        self.served.close()
        self.net.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # landmarks run on threads here: hand the interpreter over promptly
    found = Lab(tmp_path_factory.mktemp("geolab"))
    try:
        yield found
    finally:
        found.close()
        sys.setswitchinterval(previous)


def rtts(run: ProofRun) -> dict[str, float]:
    return {n: min(s["rtt_ns"] for s in r["report"]["samples"]) / 1e6 for n, r in run.reports.items()}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_honest_host_is_in_the_us(lab: Lab, transport: str) -> None:
    run = lab.prove("wichita", transport=transport)
    assert run.failures == {} and len(run.reports) == len(US_LANDMARKS)
    for name, rtt in rtts(run).items():  # the emulation only adds: never below the fibre time
        assert rtt >= fibre_rtt_ms(PLACES["wichita"], PLACES[name])
    assessment = assess("h1", lab.host_key.verifier, list(run.reports.values()), lab.landmarks)
    assert assessment.verdict.label() == "IN(US)", assessment.verdict.reason
    body, opening = statement(assessment)
    assert (body["verdict"], body["country"]) == ("IN", "US")
    assert recompute(body, opening, lab.landmarks, host_key=lab.host_key.verifier).label() == "IN(US)"


@pytest.mark.parametrize("far", ["mexico-city", "toronto"])
def test_far_hosts_are_not_in_the_us(lab: Lab, far: str) -> None:
    run = lab.prove(far)
    verdict = assess("h1", lab.host_key.verifier, list(run.reports.values()), lab.landmarks).verdict
    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.label()
    assert verdict.region is not None and verdict.region.covers(Point(PLACES[far][1], PLACES[far][0]))


def test_a_relay_to_the_key_elsewhere_cannot_get_in(lab: Lab, tmp_path: Path) -> None:
    """The key is in Toronto; a front machine in Wichita forwards every challenge to it and every answer back
    (an attacker's relay adds no delay of its own). The landmarks see the front's address, but the answers
    cost the Wichita-Toronto round trip on top: the region reaches Toronto and the verdict is not IN(US)."""
    net = lab.net
    front, key_at = net.nodes["wichita"], net.nodes["toronto"]
    leg = fibre_rtt_ms(PLACES["toronto"], PLACES["wichita"]) / 2
    to_front, at_front = [], []
    for k, name in enumerate(US_LANDMARKS):
        to_front.append(Route((key_at.gateway, 41000 + k), (front.address, SERVICE_PORT + 100 + k), leg))
        at_front.append(Route((front.address, SERVICE_PORT + 100 + k), net.address_of("wichita", name), 0.0))
    net.forwarder(None, to_front, "toronto-to-front")  # the network between Toronto and Wichita
    net.forwarder("wichita", at_front, "front")  # the attacker's forwarder on the front machine
    targets = [Target(lab.landmarks.get(n), key_at.gateway, 41000 + k) for k, n in enumerate(US_LANDMARKS)]
    run = lab.prove("toronto", targets=targets)
    assert run.failures == {}
    for name, rtt in rtts(run).items():
        assert rtt >= fibre_rtt_ms(PLACES["wichita"], PLACES[name]) + 2 * leg
    verdict = assess("h1", lab.host_key.verifier, list(run.reports.values()), lab.landmarks).verdict
    assert verdict.outcome is not Outcome.IN, verdict.label()
    assert verdict.region is not None and verdict.region.covers(Point(PLACES["toronto"][1], PLACES["toronto"][0]))


class AnnouncesButCannotSign:
    """A front that announces the host's enrolled public key but holds another key."""

    def __init__(self, announced: Verifier, holds: Signer) -> None:
        self.verifier, self.holds = announced, holds
        self.key_id, self.key_type = announced.key_id, announced.key_type

    def sign(self, message: bytes) -> bytes:
        return self.holds.sign(message)


def test_answers_from_foreign_keys_are_refused(lab: Lab) -> None:
    stranger = Signer.generate("ed25519")
    # announcing the enrolled key without holding it: every answer is refused by the landmarks
    run = lab.prove(
        "wichita",
        key=AnnouncesButCannotSign(lab.host_key.verifier, stranger),
        targets=lab.targets("wichita", ["salina", "tulsa"]),
    )
    for value in run.reports.values():
        assert value["report"]["samples"] == [] and value["report"]["refused"] == 3
    found = assess("h1", lab.host_key.verifier, list(run.reports.values()), lab.landmarks)
    assert found.verdict.outcome is Outcome.INCONCLUSIVE and len(found.left_out) == 2
    # answering honestly with another key: the landmarks measure it, the verifier refuses it
    run = lab.prove("wichita", key=stranger, targets=lab.targets("wichita", ["salina", "tulsa"]))
    with pytest.raises(ForeignKeyError):
        assess("h1", lab.host_key.verifier, list(run.reports.values()), lab.landmarks)


def test_replayed_nonces_are_refused_by_the_landmark(lab: Lab) -> None:
    """A prover that answers a fresh challenge with an earlier (valid) answer: refused; only answers to the
    outstanding nonce become samples."""
    address = lab.net.address_of("wichita", "salina")
    key, epoch = lab.host_key, epoch_now()

    def session() -> dict[str, Any]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(3)
        sock.connect(address)
        sock.send(canonical_json(Hello("h1", key.verifier, epoch, 4).message()))
        first: dict[str, Any] | None = None
        try:
            for _ in range(40):
                message = decode(sock.recv(65536))
                if message["type"] == "report":
                    return message
                nonce = message["challenge"]["nonce"]
                signature = key.sign(response_message(nonce, "salina", "h1", epoch))
                answer = {"type": "response", "nonce": nonce, "signature": base64.b64encode(signature).decode()}
                if first is None:
                    first = answer
                else:
                    sock.send(canonical_json(first))  # the replay, before the real answer
                sock.send(canonical_json(answer))
        finally:
            sock.close()
        raise AssertionError("no report")

    report = lab.net.run_in("wichita", session)["report"]
    assert len(report["samples"]) == 4 and report["refused"] == 3
    nonces = [s["nonce"] for s in report["samples"]]
    assert len(set(nonces)) == 4


def test_a_lying_landmark_is_flagged_by_its_peers(lab: Lab) -> None:
    """Every landmark is measured by the others (with its own key, from its own node). 'liar' claims Wichita
    but sits in Mexico City: its peers flag it. Unflagged, and with faulty=0, it would place a host in Mexico
    City inside the US; the default faulty=1 refuses that even before the flag, and the flag removes it."""
    names = [*US_LANDMARKS, "liar"]
    runs: dict[str, ProofRun] = {}
    for name in names:  # one at a time: concurrent sessions on two shared cores would only inflate the RTTs
        peers = [n for n in names if n != name]
        targets = [Target(lab.landmarks.get(p), *lab.net.address_of(name, p)) for p in peers]
        runs[name] = lab.net.run_in(
            name,
            lambda: prove(name, lab.signers[name], targets, samples=5, parallel=1, timeout=10),  # noqa: B023
        )
    assert all(not run.failures for run in runs.values())
    reports = [r for run in runs.values() for r in run.reports.values()]
    result = cross_check(reports, lab.landmarks, LAB_CHECKS)
    assert set(result.flagged) == {"liar"}, result.flagged

    run = lab.prove("mexico-city", targets=lab.targets("mexico-city", names))
    reports = list(run.reports.values())
    fooled = assess("h1", lab.host_key.verifier, reports, lab.landmarks, params=Parameters(faulty=0))
    assert fooled.verdict.label() == "IN(US)"  # what a single lying landmark could do without the defences
    tolerant = assess("h1", lab.host_key.verifier, reports, lab.landmarks)
    assert tolerant.verdict.outcome is Outcome.INCONCLUSIVE
    flagged = assess(
        "h1", lab.host_key.verifier, reports, lab.landmarks, flagged=result.flagged, params=Parameters(faulty=0)
    )
    assert flagged.verdict.outcome is Outcome.INCONCLUSIVE and flagged.left_out["liar"].startswith("flagged")
    assert json.dumps(flagged.record["flagged"]).count("liar") == 1
