"""The measurement protocol's messages: hello, challenge, response, report.

A host asks a landmark to measure it (``hello``: its id, public key, epoch and the samples it wants). The
landmark then sends, one at a time, **challenges**: a fresh 256-bit nonce from the operating system's CSPRNG,
signed by the landmark together with its id, the host's id and key, the epoch and a sequence number. The host
checks the landmark's signature and answers with a **response**: its signature, made with its attested key,
over ``{"domain": RESPONSE_DOMAIN, "nonce", "landmark", "host", "epoch"}``. The landmark measures the time
from just before it sent the challenge to the moment the answer arrived, and keeps the sample only if the
answer names the outstanding nonce and verifies under the key the host announced. Nothing is subtracted for
processing. After the samples it sends a **report**, signed by the landmark, listing each sample's nonce, RTT
and the host's signature: anyone holding the landmark's and host's public keys can check it.

Every message is RFC 8785 canonical JSON of at most ``MAX_MESSAGE`` bytes: one UDP datagram, or one frame
over TCP prefixed by its length as a 4-byte big-endian integer. Epochs are minutes since the Unix epoch
(``EPOCH_SECONDS``); a landmark accepts a hello for the current epoch or its neighbours.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from strongroom import strict_json
from strongroom.canonical_json import canonical_json
from strongroom.geo.errors import ForeignKeyError, ProtocolError, ReplayError
from strongroom.geo.landmarks import Landmark, LandmarkSet, check_id
from strongroom.signing import BadSignatureError, SigningKey, SigningKeyError, Verifier

CHALLENGE_DOMAIN = "strongroom-geo-challenge/v1"
RESPONSE_DOMAIN = "strongroom-geo-response/v1"
REPORT_DOMAIN = "strongroom-geo-report/v1"
EPOCH_SECONDS = 60
EPOCH_SLACK = 1  # a hello may name the epoch before or after the landmark's
MAX_MESSAGE = 16_384
MAX_SAMPLES = 32  # per report: keeps a report inside one message
MAX_RTT_NS = 10 * 10**9
_NONCE = re.compile(r"[0-9a-f]{64}")
_FRAME = struct.Struct(">I")


def epoch_now(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // EPOCH_SECONDS)


def epoch_start(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch * EPOCH_SECONDS, UTC)


def encode(message: Mapping[str, Any]) -> bytes:
    data = canonical_json(dict(message))
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    return data


def decode(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    try:
        value = strict_json.loads(data)
    except strict_json.StrictJSONError as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError("a message is a JSON object with a string type")
    return value


def frame(data: bytes) -> bytes:
    return _FRAME.pack(len(data)) + data


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 1024:
        raise ProtocolError(f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{what} is not base64") from None


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{what} must be an integer in {low}..{high}")
    return value


def _nonce(value: Any) -> str:
    if not isinstance(value, str) or not _NONCE.fullmatch(value):
        raise ProtocolError("a nonce is 64 lowercase hex digits")
    return value


def _verify(verifier: Verifier, signature: bytes, message: bytes, what: str) -> None:
    try:
        verifier.check_unique(signature)
        verifier.verify(signature, message)
    except BadSignatureError:
        raise ForeignKeyError(f"{what} does not verify under the expected key {verifier.key_id[:16]}") from None


# --- hello -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    host: str
    verifier: Verifier
    epoch: int
    samples: int

    def message(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "host": self.host,
            "public_key": self.verifier.pem().decode(),
            "epoch": self.epoch,
            "samples": self.samples,
        }

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> Hello:
        if value.get("type") != "hello" or set(value) != {"type", "host", "public_key", "epoch", "samples"}:
            raise ProtocolError("hello must have exactly type, host, public_key, epoch, samples")
        host = check_id(value["host"], "host id")
        if not isinstance(value["public_key"], str) or len(value["public_key"]) > 4096:
            raise ProtocolError("hello public_key must be a PEM string")
        try:
            verifier = Verifier.from_pem(value["public_key"].encode(), "host key")
        except SigningKeyError as exc:
            raise ProtocolError(str(exc)) from None
        epoch = _int(value["epoch"], "epoch", 0, 2**40)
        samples = _int(value["samples"], "samples", 1, MAX_SAMPLES)
        return cls(host, verifier, epoch, samples)


# --- challenge and response --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    landmark: str
    host: str
    host_key: str
    epoch: int
    nonce: str
    seq: int

    def body(self) -> dict[str, Any]:
        return {
            "domain": CHALLENGE_DOMAIN,
            "landmark": self.landmark,
            "host": self.host,
            "host_key": self.host_key,
            "epoch": self.epoch,
            "nonce": self.nonce,
            "seq": self.seq,
        }

    def signed(self, signer: SigningKey) -> dict[str, Any]:
        body = self.body()
        return {
            "type": "challenge",
            "challenge": body,
            "signature": base64.b64encode(signer.sign(canonical_json(body))).decode(),
        }

    @classmethod
    def verify(cls, value: Mapping[str, Any], landmark: Landmark) -> Challenge:
        """A challenge signed by ``landmark``; raises ProtocolError (ForeignKeyError for a bad signature)."""
        if value.get("type") != "challenge" or set(value) != {"type", "challenge", "signature"}:
            raise ProtocolError("challenge must have exactly type, challenge, signature")
        body = value["challenge"]
        if not isinstance(body, dict) or set(body) != set(cls("a", "a", "", 0, "", 0).body()):
            raise ProtocolError("challenge body has the wrong fields")
        if body["domain"] != CHALLENGE_DOMAIN:
            raise ProtocolError("not a challenge (domain)")
        _verify(landmark.verifier, _b64(value["signature"], "challenge signature"), canonical_json(body), "challenge")
        if body["landmark"] != landmark.landmark_id:
            raise ProtocolError(f"challenge names landmark {str(body['landmark'])[:64]!r}, not {landmark.landmark_id}")
        if not isinstance(body["host_key"], str):
            raise ProtocolError("challenge host_key must be text")
        return cls(
            landmark.landmark_id,
            check_id(body["host"], "host id"),
            body["host_key"],
            _int(body["epoch"], "epoch", 0, 2**40),
            _nonce(body["nonce"]),
            _int(body["seq"], "seq", 0, 10_000),
        )


def response_message(nonce: str, landmark: str, host: str, epoch: int) -> bytes:
    """What the host signs: (nonce, landmark, host, epoch), domain-separated."""
    return canonical_json(
        {"domain": RESPONSE_DOMAIN, "nonce": nonce, "landmark": landmark, "host": host, "epoch": epoch}
    )


def respond(challenge: Challenge, key: SigningKey) -> dict[str, Any]:
    signature = key.sign(response_message(challenge.nonce, challenge.landmark, challenge.host, challenge.epoch))
    return {"type": "response", "nonce": challenge.nonce, "signature": base64.b64encode(signature).decode()}


def parse_response(value: Mapping[str, Any]) -> tuple[str, bytes]:
    if value.get("type") != "response" or set(value) != {"type", "nonce", "signature"}:
        raise ProtocolError("response must have exactly type, nonce, signature")
    return _nonce(value["nonce"]), _b64(value["signature"], "response signature")


def check_response(
    value: Mapping[str, Any], nonce: str, landmark: str, host: str, epoch: int, host_key: Verifier
) -> bytes:
    """The response's signature if it answers ``nonce`` and verifies under ``host_key``, else an error:
    ReplayError for an answer to any other nonce, ForeignKeyError for another key's signature."""
    answered, signature = parse_response(value)
    if answered != nonce:
        raise ReplayError("the answer names a nonce that is not the outstanding one")
    _verify(host_key, signature, response_message(nonce, landmark, host, epoch), "answer")
    return signature


# --- report ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    nonce: str
    rtt_ns: int
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "rtt_ns": self.rtt_ns, "signature": base64.b64encode(self.signature).decode()}


@dataclass(frozen=True)
class Report:
    """A landmark's signed account of one measurement session, checked."""

    landmark: str
    host: str
    host_key: str
    epoch: int
    transport: str
    samples: tuple[Sample, ...]
    refused: int
    time: str

    @property
    def rtt_ns(self) -> int:
        """The smallest RTT: delay can be added to a sample, never removed, so the minimum is the tightest."""
        return min(s.rtt_ns for s in self.samples)

    def body(self, landmark_key: str) -> dict[str, Any]:
        return {
            "domain": REPORT_DOMAIN,
            "landmark": self.landmark,
            "landmark_key": landmark_key,
            "host": self.host,
            "host_key": self.host_key,
            "epoch": self.epoch,
            "transport": self.transport,
            "samples": [s.to_json() for s in self.samples],
            "refused": self.refused,
            "time": self.time,
        }

    def signed(self, signer: SigningKey) -> dict[str, Any]:
        body = self.body(signer.key_id)
        return {
            "type": "report",
            "report": body,
            "signature": base64.b64encode(signer.sign(canonical_json(body))).decode(),
        }


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_report(value: Mapping[str, Any], landmarks: LandmarkSet) -> tuple[Landmark, Report]:
    """A report signed by an enrolled landmark, its samples well-formed (host signatures not yet checked:
    ``check_samples`` does that against the host's enrolled key)."""
    if value.get("type") != "report" or set(value) != {"type", "report", "signature"}:
        raise ProtocolError("report must have exactly type, report, signature")
    body = value["report"]
    fields = set(Report("", "", "", 0, "", (), 0, "").body(""))
    if not isinstance(body, dict) or set(body) != fields:
        raise ProtocolError("report body has the wrong fields")
    if body["domain"] != REPORT_DOMAIN:
        raise ProtocolError("not a report (domain)")
    landmark = landmarks.get(check_id(body["landmark"]))
    if body["landmark_key"] != landmark.key_id:
        raise ForeignKeyError(f"report from {landmark.landmark_id} names another landmark key")
    _verify(landmark.verifier, _b64(value["signature"], "report signature"), canonical_json(body), "report")
    samples = body["samples"]
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise ProtocolError(f"report samples must be a list of at most {MAX_SAMPLES}")
    parsed = []
    for item in samples:
        if not isinstance(item, dict) or set(item) != {"nonce", "rtt_ns", "signature"}:
            raise ProtocolError("a sample has exactly nonce, rtt_ns, signature")
        parsed.append(
            Sample(_nonce(item["nonce"]), _int(item["rtt_ns"], "rtt_ns", 0, MAX_RTT_NS), _b64(item["signature"], "sig"))
        )
    if body["transport"] not in ("udp", "tcp") or not isinstance(body["time"], str) or len(body["time"]) > 40:
        raise ProtocolError("report transport must be udp or tcp, time text")
    if not isinstance(body["host_key"], str):
        raise ProtocolError("report host_key must be text")
    report = Report(
        landmark.landmark_id,
        check_id(body["host"], "host id"),
        body["host_key"],
        _int(body["epoch"], "epoch", 0, 2**40),
        body["transport"],
        tuple(parsed),
        _int(body["refused"], "refused", 0, 10_000),
        body["time"],
    )
    return landmark, report


def check_samples(report: Report, host: str, host_key: Verifier) -> None:
    """Every sample's answer verifies under the host's enrolled key, for this landmark, host and epoch."""
    if report.host != host:
        raise ProtocolError(f"report from {report.landmark} is about host {report.host}, not {host}")
    if report.host_key != host_key.key_id:
        raise ForeignKeyError(f"report from {report.landmark}: answers came from a key that is not {host}'s")
    seen: set[str] = set()
    for sample in report.samples:
        if sample.nonce in seen:
            raise ReplayError(f"report from {report.landmark} lists nonce {sample.nonce[:16]} twice")
        seen.add(sample.nonce)
        _verify(
            host_key,
            sample.signature,
            response_message(sample.nonce, report.landmark, host, report.epoch),
            f"answer to {report.landmark}",
        )
