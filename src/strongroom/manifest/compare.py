"""Compare an expected manifest (signed, or another copy) with the actual one, naming every mismatch.

The failures come most specific first: another model altogether, missing or extra files, renamed or
changed tensors, header changes, other files' bytes.
"""

from __future__ import annotations

from strongroom.manifest.errors import Failure
from strongroom.manifest.records import Manifest

ORDER = (
    "wrong-model",
    "missing-file",
    "extra-file",
    "tensor-renamed",
    "tensor-digest",
    "missing-tensor",
    "extra-tensor",
    "header",
    "header-layout",
    "file-digest",
)
WRONG_MODEL_SHARE = 0.5


def compare_manifests(expected: Manifest, actual: Manifest) -> list[Failure]:
    """Every way ``actual`` differs from ``expected``; empty when the model ids agree."""
    if expected.algorithm != actual.algorithm:
        raise ValueError("compare manifests of one algorithm")
    failures: list[Failure] = []
    expected_leaves = {repr(sorted(r.items())) for r in expected.leaves()}
    actual_leaves = {repr(sorted(r.items())) for r in actual.leaves()}
    if expected_leaves == actual_leaves:
        return []
    shared = len(expected_leaves & actual_leaves)
    if expected_leaves and shared < WRONG_MODEL_SHARE * len(expected_leaves):
        return [
            Failure(
                "wrong-model",
                "model",
                f"the signature is for another model: only {shared} of {len(expected_leaves)} signed records "
                f"match (signed model id {expected.model_id}, this model {actual.model_id})",
            )
        ]
    for name in sorted(set(expected.files) - set(actual.files)):
        failures.append(Failure("missing-file", name, "signed file is missing"))
    for name in sorted(set(actual.files) - set(expected.files)):
        failures.append(Failure("extra-file", name, "file is not covered by the signature"))
    failures.extend(_tensor_failures(expected, actual))
    for name in sorted(set(expected.files) & set(actual.files)):
        e, a = expected.files[name], actual.files[name]
        if e.leaf() == a.leaf():
            continue
        if e.safetensors and a.safetensors:
            if e.canonical_header_digest != a.canonical_header_digest:
                failures.append(Failure("header", name, "safetensors header content differs from the signed one"))
            else:
                failures.append(
                    Failure(
                        "header-layout",
                        name,
                        "safetensors header bytes differ from the signed ones although its canonical form and "
                        "every tensor match (reordered or re-serialised header)",
                    )
                )
        else:
            failures.append(Failure("file-digest", name, f"file bytes differ from the signed {e.algorithm} digest"))
    failures.sort(key=lambda f: ORDER.index(f.kind))
    return failures


def _tensor_failures(expected: Manifest, actual: Manifest) -> list[Failure]:
    failures: list[Failure] = []
    missing = {k: expected.tensors[k] for k in set(expected.tensors) - set(actual.tensors)}
    extra = {k: actual.tensors[k] for k in set(actual.tensors) - set(expected.tensors)}
    by_content: dict[tuple[str, tuple[int, ...], str], list[tuple[str, str]]] = {}
    for key, record in extra.items():
        by_content.setdefault(record.content_key, []).append(key)
    for key in sorted(missing):
        record = missing[key]
        twins = by_content.get(record.content_key)
        if twins and record.file not in set(expected.files) - set(actual.files):
            twin = twins.pop(0)
            del extra[twin]
            failures.append(
                Failure(
                    "tensor-renamed",
                    f"{key[0]}:{key[1]}",
                    f"tensor {key[1]!r} is now named {twin[1]!r} in {twin[0]} (same dtype, shape and bytes)",
                )
            )
        elif record.file in actual.files:
            failures.append(Failure("missing-tensor", f"{key[0]}:{key[1]}", f"signed tensor {key[1]!r} is missing"))
    for key in sorted(extra):
        if key[0] in expected.files:
            failures.append(Failure("extra-tensor", f"{key[0]}:{key[1]}", f"tensor {key[1]!r} is not signed"))
    for key in sorted(set(expected.tensors) & set(actual.tensors)):
        e, a = expected.tensors[key], actual.tensors[key]
        if e.leaf() != a.leaf():
            what = "bytes" if (e.dtype, e.shape) == (a.dtype, a.shape) else "dtype or shape"
            failures.append(
                Failure("tensor-digest", f"{key[0]}:{key[1]}", f"tensor {key[1]!r} {what} differ from the signed ones")
            )
    return failures


def compare_resources(expected: dict[str, tuple[str, str]], actual: dict[str, str], algorithm: str) -> list[Failure]:
    """OMS resources (name -> (algorithm, hex)) against whole-file digests of the directory."""
    failures: list[Failure] = []
    for name in sorted(set(expected) - set(actual)):
        failures.append(Failure("missing-file", name, "signed file is missing"))
    for name in sorted(set(actual) - set(expected)):
        failures.append(Failure("extra-file", name, "file is not covered by the signature"))
    for name in sorted(set(expected) & set(actual)):
        if expected[name][1] != actual[name]:
            failures.append(Failure("file-digest", name, f"file bytes differ from the signed {algorithm} digest"))
    if expected and len([f for f in failures if f.kind != "extra-file"]) == len(expected) and len(expected) > 1:
        return [Failure("wrong-model", "model", "the signature is for another model: no signed file matches")]
    failures.sort(key=lambda f: ORDER.index(f.kind))
    return failures
