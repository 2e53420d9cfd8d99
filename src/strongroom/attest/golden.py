"""Golden values: for each host class, the SHA-256 PCR values a host of that class may show.

A host class ("inference-h100", "eval-cpu") names one approved software build; its golden values say, per
PCR, which values are acceptable (more than one while a new build rolls out). ``verify_quote`` requires the
quote to cover every PCR the class names and each quoted value to be one of the allowed ones. PCRs a quote
covers but the class does not name (the model PCR) are reported in the verdict, not judged here.

JSON form (RFC 8785 canonical)::

    {"version": 1, "bank": "sha256",
     "classes": {"inference": {"23": ["<64 hex>", ...]}}}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from strongroom.attest import _doc
from strongroom.attest.errors import GoldenValuesError, PcrMismatchError, TpmFormatError
from strongroom.attest.pcrs import ZERO_PCR, PcrLayout, replay

_CLASS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _freeze(classes: Mapping[str, Mapping[int, Iterable[bytes]]]) -> Mapping[str, Mapping[int, frozenset[bytes]]]:
    frozen: dict[str, Mapping[int, frozenset[bytes]]] = {}
    for name, pcrs in classes.items():
        if not isinstance(name, str) or not _CLASS.fullmatch(name):
            raise GoldenValuesError(f"host class {name!r} is not [a-z0-9._-], 1-64 characters")
        if not pcrs:
            raise GoldenValuesError(f"host class {name!r} names no PCRs")
        entry: dict[int, frozenset[bytes]] = {}
        for pcr, values in pcrs.items():
            allowed = frozenset(values)
            if type(pcr) is not int or not 0 <= pcr <= 23:
                raise GoldenValuesError(f"host class {name!r}: PCR {pcr!r} is not 0-23")
            if not allowed or any(not isinstance(v, bytes) or len(v) != 32 for v in allowed):
                raise GoldenValuesError(f"host class {name!r}: PCR {pcr} needs one or more 32-byte values")
            entry[pcr] = allowed
        frozen[name] = MappingProxyType(entry)
    return MappingProxyType(frozen)


@dataclass(frozen=True)
class GoldenValues:
    """Host class -> {PCR index -> allowed SHA-256 values}."""

    classes: Mapping[str, Mapping[int, frozenset[bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _freeze(self.classes))

    @classmethod
    def for_loader(
        cls, host_class: str, loader_digests: Iterable[bytes], layout: PcrLayout = PcrLayout()
    ) -> GoldenValues:
        """Golden values for a class whose loader PCR starts at zero and is extended once with one of
        ``loader_digests`` (``strongroom.attest.loader.loader_digest`` of each approved build)."""
        return cls({host_class: {layout.loader: frozenset(replay([d], ZERO_PCR) for d in loader_digests)}})

    def merged(self, other: GoldenValues) -> GoldenValues:
        """This set with ``other``'s classes added (a class in both takes ``other``'s values)."""
        return GoldenValues({**self.classes, **other.classes})

    def pcrs(self, host_class: str) -> Mapping[int, frozenset[bytes]]:
        """The allowed values of ``host_class``; ``GoldenValuesError`` if the class is unknown."""
        try:
            return self.classes[host_class]
        except KeyError:
            raise GoldenValuesError(f"no golden values for host class {host_class!r}") from None

    def check(self, host_class: str, values: Mapping[int, bytes]) -> None:
        """Require every PCR of the class to be present in ``values`` with an allowed value."""
        for pcr, allowed in sorted(self.pcrs(host_class).items()):
            if pcr not in values:
                raise PcrMismatchError(f"PCR {pcr} (golden for {host_class!r}) is not covered by the quote")
            if values[pcr] not in allowed:
                raise PcrMismatchError(
                    f"PCR {pcr} is {values[pcr].hex()}, not a golden value of host class {host_class!r}"
                )

    def to_json(self) -> bytes:
        return _doc.dumps({
            "version": 1,
            "bank": "sha256",
            "classes": {
                name: {str(pcr): sorted(v.hex() for v in allowed) for pcr, allowed in pcrs.items()}
                for name, pcrs in self.classes.items()
            },
        })  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes | str) -> GoldenValues:
        what = "golden values"
        try:
            doc = _doc.document(raw, what, {"bank", "classes"})
        except TpmFormatError as exc:
            raise GoldenValuesError(str(exc)) from None
        if doc["bank"] != "sha256" or not isinstance(doc["classes"], dict):
            raise GoldenValuesError(f"{what}: bank must be sha256 and classes an object")
        classes: dict[str, Mapping[int, frozenset[bytes]]] = {}
        try:
            for name, pcrs in doc["classes"].items():
                if not isinstance(pcrs, dict):
                    raise GoldenValuesError(f"{what}: class {name!r} is not an object")
                entry: dict[int, frozenset[bytes]] = {}
                for key, values in pcrs.items():
                    if not isinstance(values, list) or len(values) > 256:
                        raise GoldenValuesError(f"{what}: PCR {key} of {name!r} is not a list")
                    entry[_doc.pcr_index(key, what)] = frozenset(_doc.hex_digest(v, what) for v in values)
                classes[name] = entry
        except TpmFormatError as exc:
            raise GoldenValuesError(str(exc)) from None
        return cls(classes)
