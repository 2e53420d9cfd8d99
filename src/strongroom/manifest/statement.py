"""The signed statement: in-toto Statement v1 with the OpenSSF model signing (OMS) v1.0 predicate, and
Strongroom's per-tensor manifest riding along as an extra predicate field (OMS verifiers ignore it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from strongroom.manifest.digest import OMS_ALGORITHMS
from strongroom.manifest.errors import MalformedSignatureError
from strongroom.manifest.records import Manifest

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
EXTENSION_FIELD = "strongroom"


def resource_order(name: str) -> tuple[str, ...]:
    """model-signing's resource order: by path components."""
    return PurePosixPath(name).parts


def root_digest(resources: list[dict[str, str]]) -> str:
    """OMS subject digest: SHA-256 over the concatenated resource digests, in the listed order."""
    hasher = hashlib.sha256()
    for resource in resources:
        hasher.update(bytes.fromhex(resource["digest"]))
    return hasher.hexdigest()


def build_statement(manifest: Manifest, model_name: str, ignore_paths: list[str]) -> dict[str, Any]:
    """The statement for ``manifest``; it must carry whole-file digests (``build_manifest(whole_files=...)``)."""
    algorithm = manifest.whole_files_algorithm
    if algorithm is None or set(manifest.whole_files) != set(manifest.files):
        raise ValueError("the manifest lacks whole-file digests for the OMS resources")
    resources = [
        {"name": name, "algorithm": algorithm, "digest": manifest.whole_files[name]}
        for name in sorted(manifest.files, key=resource_order)
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": algorithm,
                "allow_symlinks": False,
                "ignore_paths": sorted(ignore_paths),
            },
            "resources": resources,
            EXTENSION_FIELD: manifest.to_json(),
        },
    }


@dataclass(frozen=True)
class Statement:
    """A parsed, self-consistent statement."""

    model_name: str
    hash_type: str
    resources: dict[str, tuple[str, str]]
    ignore_paths: tuple[str, ...]
    extension: Manifest | None


def parse_statement(payload: bytes, where: str) -> Statement:
    """Parse the DSSE payload; any deviation from Statement v1 + OMS v1.0 is a MalformedSignatureError."""
    try:
        raw = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise MalformedSignatureError(f"{where}: the signed payload is not JSON") from None
    if not isinstance(raw, dict) or raw.get("_type") != STATEMENT_TYPE:
        raise MalformedSignatureError(f"{where}: the signed payload is not an in-toto Statement v1")
    if raw.get("predicateType") != PREDICATE_TYPE:
        raise MalformedSignatureError(f"{where}: predicateType {raw.get('predicateType')!r} is not {PREDICATE_TYPE}")
    try:
        subjects = raw["subject"]
        assert isinstance(subjects, list) and len(subjects) == 1
        model_name = subjects[0]["name"]
        subject_digest = subjects[0]["digest"]["sha256"]
        predicate = raw["predicate"]
        serialization = predicate["serialization"]
        resources_raw = predicate["resources"]
        method, hash_type = serialization["method"], serialization["hash_type"]
        ignore = serialization.get("ignore_paths", [])
        assert isinstance(model_name, str) and isinstance(resources_raw, list) and isinstance(ignore, list)
        assert all(isinstance(p, str) for p in ignore)
        resources = {}
        for r in resources_raw:
            name, algorithm, digest = r["name"], r["algorithm"], r["digest"]
            assert isinstance(name, str) and isinstance(algorithm, str) and isinstance(digest, str)
            bytes.fromhex(digest)
            resources[name] = (algorithm, digest)
    except (KeyError, TypeError, IndexError, ValueError, AssertionError):
        raise MalformedSignatureError(f"{where}: the statement lacks a well-formed subject or OMS predicate") from None
    if method != "files":
        raise MalformedSignatureError(f"{where}: serialization method {method!r} is not supported (only 'files')")
    if hash_type not in OMS_ALGORITHMS or any(a != hash_type for a, _ in resources.values()):
        raise MalformedSignatureError(f"{where}: unsupported or mixed resource digest algorithm {hash_type!r}")
    if len(resources) != len(resources_raw):
        raise MalformedSignatureError(f"{where}: a resource is listed twice")
    if root_digest(resources_raw) != subject_digest:
        raise MalformedSignatureError(f"{where}: the subject digest is not the root of the listed resources")
    for name in [*resources, *ignore]:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise MalformedSignatureError(f"{where}: path {name!r} escapes the model directory")
    extension = None
    if EXTENSION_FIELD in predicate:
        try:
            extension = Manifest.from_json(predicate[EXTENSION_FIELD])
        except MalformedSignatureError as exc:
            raise MalformedSignatureError(f"{where}: Strongroom extension: {exc}") from None
        if set(extension.files) != set(resources):
            raise MalformedSignatureError(f"{where}: the Strongroom extension and the OMS resources list other files")
    return Statement(model_name, hash_type, resources, tuple(ignore), extension)
