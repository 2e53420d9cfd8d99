"""The authority model: who may write each ledger entry type, and what must authorise it.

This table is the contract the custody service keeps when it writes and the offline auditor checks when it
replays (``strongroom.custody.state`` enforces it for both). docs/architecture.md states it in prose.

- The custody service's key (``DATA/service.key``) is the only writer of custody and people types. It is
  not an officer: every entry it writes carries the signed inputs that justify it, and replay re-verifies
  them, so the key alone can add nothing that replays.
- Officers co-sign administrative changes. Anything that can give someone a key (enrol, clearance, agreement,
  clearing a signal, host enrolment, model registration, policy, the officer set) needs ``threshold``
  distinct officers (default 2); anything that only takes access away (a continuous-evaluation signal,
  offboarding, retiring a host) needs one, so removing access is never blocked by a missing colleague.
- Appenders (``DATA/appenders/NAME.pub``) write only the types their allow-list names (``NAME.types``,
  default ``model.evaluated``), and never a custody or people type.
- Custody counts an appender's egress or location entry only if the officers enrolled that appender on the
  ledger (``appender.enrol``, threshold officers; an egress gateway is bound to its one host) before the
  entry and did not retire it (one officer) before it; any other is ignored (``strongroom.custody.projection``).
  Clearing a host's egress alarm (``egress.clear``) or its INCONSISTENT location verdict (``location.clear``)
  and enrolling or clearing a landmark need threshold officers; retiring or flagging a landmark needs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from strongroom.custody.errors import NotAuthorisedError
from strongroom.custody.protocol import ACTIONS
from strongroom.ledger.entries import SCHEMAS

TAKE_AWAY_ACTIONS = frozenset(
    {"person.signal", "person.offboard", "host.retire", "incident.declare", "appender.retire"}
    | {"landmark.retire", "landmark.flag"}
)
CUSTODIAN_COSIGNED_ACTIONS = frozenset({"incident.lift"})  # threshold officers and an active custodian
GRANT_ACTIONS = frozenset(ACTIONS - TAKE_AWAY_ACTIONS)
DEFAULT_THRESHOLD = 2
DEFAULT_APPENDER_TYPES = frozenset({"model.evaluated"})


@dataclass(frozen=True)
class Writer:
    """Who writes an entry type and what must be inside it for replay to accept it."""

    writer: str
    authorisation: str


WRITERS: dict[str, Writer] = {
    "authority.changed": Writer(
        "custody service",
        "the first is the genesis (officers from the server's settings, trusted on first use and pinned by "
        "auditors); every later one carries an authority.change co-signed by threshold current officers",
    ),
    "person.changed": Writer(
        "custody service",
        "a person.* change co-signed by threshold officers (signal and offboard: one officer); "
        "an agreement also carries the person's own signature",
    ),
    "host.changed": Writer(
        "custody service",
        "host.enrol co-signed by threshold officers (with TPM evidence: the EK chain to a manufacturer CA on the "
        "ledger and the AK's binding to the identity key are re-verified; the AK's activation is the officers' "
        "word); host.retire by one",
    ),
    "model.registered": Writer(
        "custody service",
        "model.register co-signed by threshold officers; the wrapped key is bound to this model id and "
        "registered nowhere else",
    ),
    "policy.changed": Writer("custody service", "model.policy co-signed by threshold officers"),
    "key.released": Writer(
        "custody service",
        "the requester's signed request (with the enrolled host's signature over its ephemeral key) and the "
        "signed approvals, and for a model requiring attestation the host's TPM quote and its verdict; replay "
        "re-decides the release (and re-verifies the quote) with the same decision function as the live gate",
    ),
    "model.loaded": Writer(
        "custody service",
        "the enrolled host's signed load report carrying the release's nonce (for an attested release, a TPM "
        "quote showing the model PCR extended with this model); once per release",
    ),
    "incident.changed": Writer(
        "custody service",
        "incident.declare by one officer (it only stops releases); incident.lift co-signed by threshold officers "
        "and an active SenL-5 custodian",
    ),
    "incident.step": Writer(
        "custody service",
        "the acknowledgement signed by whoever holds the step's role (an officer, a custodian, or another active "
        "person), for an incident on the ledger",
    ),
    "model.rekeyed": Writer(
        "custody service",
        "model.rekey co-signed by threshold officers: the new wrapped key is bound to the same model id and "
        "registered nowhere else, and it retires exactly the key registered until then (at the entry's time)",
    ),
    "fingerprint.changed": Writer(
        "custody service",
        "model.fingerprint co-signed by threshold officers: whether and how the model's releases are marked, "
        "and the commitment to the fingerprint key (each later release then carries its mark's commitment)",
    ),
    "playbook.changed": Writer(
        "custody service", "incident.playbook co-signed by threshold officers: the organisation's playbook under a name"
    ),
    "attest.policy": Writer(
        "custody service",
        "policy.golden (a host class's golden PCR values) or policy.tpm-ca (a TPM manufacturer CA) co-signed by "
        "threshold officers",
    ),
    "attest.refused": Writer(
        "custody service",
        "none beyond the service's signature: a record that a fetch's attestation failed and nothing was "
        "released (it grants nothing, so replay only checks its form)",
    ),
    "model.evaluated": Writer("an appender whose allow-list names it", "the appender's own signature"),
    "appender.changed": Writer(
        "custody service",
        "appender.enrol (a key allowed egress or location types; an egress gateway names its host) co-signed by "
        "threshold officers; appender.retire by one",
    ),
    "location.cleared": Writer(
        "custody service",
        "location.clear co-signed by threshold officers, naming the host's open INCONSISTENT verdict entry",
    ),
    "egress.cleared": Writer(
        "custody service", "egress.clear co-signed by threshold officers, naming an open alarm of that host"
    ),
    "geo.landmark": Writer(
        "custody service",
        "landmark.enrol and landmark.clear co-signed by threshold officers; landmark.retire and landmark.flag by one",
    ),
    **{
        entry_type: Writer(
            "the host's egress gateway (an appender whose allow-list names it)",
            "counted by custody only if signed by an appender the officers enrolled (appender.enrol) for this "
            "host and type before the entry, and not retired before it; otherwise ignored",
        )
        for entry_type in ("egress.checkpoint", "egress.alarm", "egress.exhausted")
    },
    "geo.verdict": Writer(
        "a location verifier (an appender whose allow-list names it)",
        "counted by custody only if signed by an appender the officers enrolled for geo.verdict before the entry, "
        "and not retired before it; otherwise ignored",
    ),
}

SERVICE_TYPES = frozenset(t for t, w in WRITERS.items() if w.writer == "custody service")
ENTRY_FOR_ACTION = {
    **{action: "person.changed" for action in ACTIONS if action.startswith("person.")},
    "host.enrol": "host.changed",
    "host.retire": "host.changed",
    "model.register": "model.registered",
    "model.policy": "policy.changed",
    "authority.change": "authority.changed",
    "incident.declare": "incident.changed",
    "incident.lift": "incident.changed",
    "model.rekey": "model.rekeyed",
    "model.fingerprint": "fingerprint.changed",
    "incident.playbook": "playbook.changed",
    "appender.enrol": "appender.changed",
    "appender.retire": "appender.changed",
    "egress.clear": "egress.cleared",
    "location.clear": "location.cleared",
    **{f"landmark.{kind}": "geo.landmark" for kind in ("enrol", "retire", "flag", "clear")},
    "policy.golden": "attest.policy",
    "policy.tpm-ca": "attest.policy",
}


def officers_needed(action: str, threshold: int) -> int:
    """How many distinct officers must co-sign ``action``."""
    return 1 if action in TAKE_AWAY_ACTIONS else threshold


@dataclass(frozen=True)
class Appenders:
    """The keys that may append over HTTP, each with the entry types it may write."""

    types: Mapping[str, frozenset[str]]

    def __post_init__(self) -> None:
        for key_id, types in self.types.items():
            unknown = sorted(types - set(SCHEMAS))
            if unknown:
                raise NotAuthorisedError(f"appender {key_id[:16]}: unknown entry type {unknown[0]!r}")
            forbidden = sorted(types & SERVICE_TYPES)
            if forbidden:
                raise NotAuthorisedError(
                    f"appender {key_id[:16]}: {forbidden[0]} entries are written only by the custody service"
                )

    def refusal(self, signer: str, entry_type: str) -> str | None:
        """Why ``signer`` may not append an ``entry_type`` entry (None if it may)."""
        types = self.types.get(signer)
        if types is None:
            return f"key {signer[:16]} is not authorised to append to this log"
        if entry_type not in types:
            return f"key {signer[:16]} may not write {entry_type} entries (its allow-list: {', '.join(sorted(types))})"
        return None
