"""Per-release fingerprints: a small, secret, keyed perturbation that names the release a leaked copy came from.

Method (a keyed spread-spectrum mark, in the manner of Cox et al., "Secure spread spectrum watermarking for
multimedia", IEEE TIP 1997, applied to weights):

* A **fingerprint key** ``K`` (32 random bytes) is held by custody, sealed under the key provider like any
  other secret (``save_key``/``load_key``). The ledger carries only its commitment
  ``sha256(DOMAIN/key-commitment || 0x00 || K)``.
* Each release gets ``K_r = HMAC-SHA256(K, DOMAIN/release || 0x00 || release_id)``; only ``K_r`` goes to the
  host, which applies the mark in memory after the model id was verified. From ``K_r`` alone nobody can
  compute another release's mark.
* **Where**: the *eligible* tensors are the floating-point matrices (two dimensions) with at least
  ``min_tensor_elements`` elements, sorted by name; their elements form one index space of size ``N``.
  ``elements`` distinct positions are drawn from BLAKE3 in keyed mode (key ``K_r``) as an extendable output:
  little-endian 64-bit words, each reduced modulo ``N``, first occurrences kept, in rounds
  ``DOMAIN/positions || BE32(round)`` until there are enough (the modulo bias is below ``N / 2^64``).
* **How much**: position ``i`` in tensor ``t`` moves by ``s_i * epsilon * sigma_t``, with a secret sign
  ``s_i`` (one bit each from ``DOMAIN/signs``) and ``sigma_t`` the standard deviation of the *original*
  tensor, estimated on a fixed stride of at most 2^20 of its elements. ``epsilon`` is a per-model policy
  choice (``FingerprintPolicy.epsilon_ppm``, millionths of one standard deviation).
* **Commitment**: ``sha256(JCS({type, release_id, key: key commitment, model_id, parameters}))`` is what
  the ledger carries for the release; attribution refuses a candidate whose recorded commitment is not the
  one the key and policy give, so the test runs on exactly the mark that was applied.

Attribution (``attribute``) needs the original weights (from the sealed model) and the key. For each
candidate release it recomputes the positions, signs and amplitudes and forms ``x_i = (leaked_i -
original_i) / a_i`` and the self-normalised statistic ``z = sum(s_i x_i) / sqrt(sum(x_i^2))``. A copy from
that release gives ``z ~ sqrt(elements)`` (64 for 4096 positions, less under added noise). For any other
copy the candidate's signs are independent of ``x``, so by Hoeffding's inequality for Rademacher sums
``P(z >= t) <= exp(-t^2 / 2)`` whatever the weights, the noise or the other marks: with ``t = 7`` a false
hit has probability at most 2.3e-11 per candidate. A copy equal to the original at every eligible element
is reported as *unmarked*.

Limits (stated, not hidden): the host that applies a mark knows it, so a leaker who controls the loader
during the load can skip or remove it; the mark protects against copies taken from a marked load (memory,
checkpoints written later, a colleague's copy). Enough added noise erases it, at a quality cost the
benchmark measures; averaging several recipients' copies leaves every colluder's mark at reduced strength.
It says nothing about distillation, which copies behaviour rather than weights.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from strongroom.canonical_json import canonical_json
from strongroom.incident.errors import FingerprintError
from strongroom.keys.provider import KeyProvider
from strongroom.memory import wipe

FORMAT = "strongroom.fingerprint/v1"
SELECTION = "float-matrices/v1"
DOMAIN = b"strongroom/fingerprint/v1/"
KEY_BYTES = 32
DEFAULT_THRESHOLD = 7.0
SCALE_SAMPLE = 1 << 20
_MODEL_ID = re.compile(r"(?:blake3|sha256):[0-9a-f]{64}")
_POLICY_FIELDS = frozenset({"model_id", "enabled", "selection", "elements", "epsilon_ppm", "min_tensor_elements"})


@dataclass(frozen=True)
class FingerprintPolicy:
    """A model's fingerprint policy: whether releases are marked, how many positions, how strongly.

    ``epsilon_ppm`` is the amplitude in millionths of each tensor's standard deviation (20000 = 0.02 sigma);
    integers keep the canonical JSON exact. The defaults are the measured choice for all-MiniLM-L6-v2
    (docs/incident.md): embedding cosine to the original above 0.99999, detection z about 64.
    """

    model_id: str
    elements: int = 4096
    epsilon_ppm: int = 20_000
    min_tensor_elements: int = 65_536
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not _MODEL_ID.fullmatch(self.model_id):
            raise FingerprintError("fingerprint policy: model_id must be blake3:<64 hex> or sha256:<64 hex>")
        for name, low, high in (
            ("elements", 64, 10_000_000),
            ("epsilon_ppm", 1, 1_000_000),
            ("min_tensor_elements", 1, 1 << 40),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise FingerprintError(f"fingerprint policy: {name} must be an integer from {low} to {high}")
        if not isinstance(self.enabled, bool):
            raise FingerprintError("fingerprint policy: enabled must be true or false")

    @property
    def epsilon(self) -> float:
        return self.epsilon_ppm / 1_000_000

    def parameters(self) -> dict[str, Any]:
        """What decides the mark (and so enters every release's commitment)."""
        return {
            "selection": SELECTION,
            "elements": self.elements,
            "epsilon_ppm": self.epsilon_ppm,
            "min_tensor_elements": self.min_tensor_elements,
        }

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "enabled": self.enabled, **self.parameters()}

    @classmethod
    def from_json(cls, value: Any) -> FingerprintPolicy:
        if not isinstance(value, dict) or not set(value) <= _POLICY_FIELDS or "model_id" not in value:
            raise FingerprintError(f"fingerprint policy: an object with model_id and some of {sorted(_POLICY_FIELDS)}")
        if value.get("selection", SELECTION) != SELECTION:
            raise FingerprintError(f"fingerprint policy: unknown selection {value.get('selection')!r}")
        fields = {k: v for k, v in value.items() if k != "selection"}
        return cls(**fields)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.to_json())).hexdigest()


@dataclass(frozen=True)
class ReleaseKey:
    """The per-release secret a host receives to apply one release's mark (never the fingerprint key)."""

    release_id: str
    secret: bytearray = field(repr=False)
    key_commitment: str

    def xof(self, label: str, round_: int, length: int) -> bytes:
        return blake3.blake3(DOMAIN + label.encode() + round_.to_bytes(4, "big"), key=bytes(self.secret)).digest(length)

    def wipe(self) -> None:
        wipe(self.secret)


class FingerprintKey:
    """The custody-held secret every release key is derived from."""

    def __init__(self, secret: bytes | bytearray) -> None:
        if len(secret) != KEY_BYTES:
            raise FingerprintError(f"a fingerprint key is {KEY_BYTES} bytes, got {len(secret)}")
        self._secret = bytearray(secret)

    @classmethod
    def generate(cls) -> FingerprintKey:
        import secrets

        return cls(secrets.token_bytes(KEY_BYTES))

    @property
    def commitment(self) -> str:
        """What the ledger may carry: binds every release commitment to this key without revealing it."""
        digest = hashlib.sha256(DOMAIN + b"key-commitment\x00" + bytes(self._secret)).hexdigest()
        return "sha256:" + digest

    def release_key(self, release_id: str) -> ReleaseKey:
        _check_release_id(release_id)
        mac = hmac.new(bytes(self._secret), DOMAIN + b"release\x00" + release_id.encode(), hashlib.sha256)
        return ReleaseKey(release_id, bytearray(mac.digest()), self.commitment)

    def save(self, path: Path, provider: KeyProvider) -> str:
        """Seal the key under ``provider`` (a standalone sealed file); returns the seal id."""
        from strongroom.seal import seal_blob

        return seal_blob(self._secret, path, provider, name="fingerprint.key")

    @classmethod
    def load(cls, path: Path, provider: KeyProvider) -> FingerprintKey:
        from strongroom.seal import open_blob

        secret = bytearray(open_blob(path, provider))
        try:
            return cls(secret)
        finally:
            wipe(secret)

    def wipe(self) -> None:
        wipe(self._secret)


def release_commitment(release_id: str, key_commitment: str, policy: FingerprintPolicy) -> str:
    """The commitment the ledger carries for one release's fingerprint."""
    _check_release_id(release_id)
    body = {
        "type": FORMAT,
        "release_id": release_id,
        "key": key_commitment,
        "model_id": policy.model_id,
        "parameters": policy.parameters(),
    }
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def _check_release_id(release_id: str) -> None:
    if not isinstance(release_id, str) or not 1 <= len(release_id) <= 256:
        raise FingerprintError("a release id is a string of 1 to 256 characters")


# -- the mark ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorMark:
    """The part of one release's mark that falls in one tensor: flat indices, signs and amplitude."""

    name: str
    indices: np.ndarray[Any, np.dtype[np.int64]]
    signs: np.ndarray[Any, np.dtype[np.int8]]
    amplitude: float


@dataclass(frozen=True)
class Mark:
    release_id: str
    tensors: tuple[TensorMark, ...]

    @property
    def elements(self) -> int:
        return sum(len(t.indices) for t in self.tensors)


def _is_float(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    if isinstance(value, np.ndarray):
        return bool(value.dtype.kind == "f" or value.dtype.name == "bfloat16")
    return bool(getattr(dtype, "is_floating_point", False))


def _numel(value: Any) -> int:
    return int(math.prod(tuple(value.shape)))


def eligible(tensors: Mapping[str, Any], policy: FingerprintPolicy) -> list[tuple[str, int]]:
    """The tensors a mark may touch, as (name, element count), sorted by name."""
    return sorted(
        (name, _numel(value))
        for name, value in tensors.items()
        if len(tuple(value.shape)) == 2 and _is_float(value) and _numel(value) >= policy.min_tensor_elements
    )


def _flat64(value: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A float64 numpy copy of a numpy or torch tensor, flattened."""
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=np.float64).reshape(-1)
    return np.asarray(value.detach().to("cpu").double().reshape(-1).numpy())


def _gather64(value: Any, indices: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``value.flat[indices]`` as float64, without converting the whole tensor."""
    if isinstance(value, np.ndarray):
        return np.asarray(value.reshape(-1)[indices], dtype=np.float64)
    import torch

    flat = value.detach().reshape(-1)
    picked = flat[torch.from_numpy(indices).to(flat.device)]
    return np.asarray(picked.double().cpu().numpy())


def tensor_scale(value: Any) -> float:
    """The standard deviation of a tensor, estimated on a fixed stride of at most 2^20 elements."""
    n = _numel(value)
    step = max(1, n // SCALE_SAMPLE)
    sample = _gather64(value, np.arange(0, n, step, dtype=np.int64))
    return float(sample.std())


class MarkPlanner:
    """Where marks can go on one model: the eligible tensors and their scales, read once from the original.

    ``mark(release_key)`` then gives one release's positions, signs and amplitudes; attribution plans one
    mark per candidate, so the per-model work is done once.
    """

    def __init__(self, original: Mapping[str, Any], policy: FingerprintPolicy) -> None:
        self.policy = policy
        scales = {name: tensor_scale(original[name]) for name, _ in eligible(original, policy)}
        self.slots = [(name, n) for name, n in eligible(original, policy) if scales[name] > 0]
        self.scales = {name: scales[name] for name, _ in self.slots}
        self.starts = np.cumsum([0] + [n for _, n in self.slots])
        self.total = int(self.starts[-1])
        if self.total < policy.elements:
            raise FingerprintError(
                f"the model has {self.total} eligible elements (float matrices of at least "
                f"{policy.min_tensor_elements}), fewer than the {policy.elements} the policy asks for"
            )

    def mark(self, release_key: ReleaseKey) -> Mark:
        """The positions, signs and amplitudes of one release's mark."""
        wanted, total = self.policy.elements, np.uint64(self.total)
        chosen = np.empty(0, dtype=np.uint64)
        round_ = 0
        while len(chosen) < wanted:
            need = wanted - len(chosen)
            words = np.frombuffer(release_key.xof("positions", round_, 8 * (need + need // 4 + 8)), dtype="<u8")
            merged = np.concatenate([chosen, words % total])
            _, first = np.unique(merged, return_index=True)
            chosen = merged[np.sort(first)][:wanted]
            round_ += 1
        bits = np.unpackbits(np.frombuffer(release_key.xof("signs", 0, (wanted + 7) // 8), dtype=np.uint8))
        signs = (bits[:wanted].astype(np.int8) * 2 - 1).astype(np.int8)
        positions = chosen.astype(np.int64)
        owner = np.searchsorted(self.starts, positions, side="right") - 1
        marks = []
        for t, (name, _) in enumerate(self.slots):
            mine = owner == t
            if not mine.any():
                continue
            local = positions[mine] - int(self.starts[t])
            order = np.argsort(local, kind="stable")
            amplitude = self.policy.epsilon * self.scales[name]
            marks.append(TensorMark(name, local[order], signs[mine][order], amplitude))
        return Mark(release_key.release_id, tuple(marks))


def plan_mark(release_key: ReleaseKey, original: Mapping[str, Any], policy: FingerprintPolicy) -> Mark:
    """The positions, signs and amplitudes of one release's mark on a model (read from the original)."""
    return MarkPlanner(original, policy).mark(release_key)


@dataclass(frozen=True)
class AppliedFingerprint:
    """What applying a release's mark did (no secret in it)."""

    release_id: str
    commitment: str
    elements: int
    tensors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "commitment": self.commitment,
            "elements": self.elements,
            "tensors": self.tensors,
        }


def apply_fingerprint(
    tensors: MutableMapping[str, Any], release_key: ReleaseKey, policy: FingerprintPolicy
) -> AppliedFingerprint:
    """Mark loaded tensors in place (numpy arrays or torch tensors, as ``load_verified`` returns them).

    Call it after the model id was verified: the mark is a deliberate change of a few thousand elements. A
    read-only numpy array is replaced in the mapping by a marked copy; a torch tensor must be contiguous.
    """
    if not policy.enabled:
        raise FingerprintError(f"fingerprinting is disabled for model {policy.model_id}")
    mark = plan_mark(release_key, tensors, policy)
    for part in mark.tensors:
        value = tensors[part.name]
        delta = part.signs.astype(np.float64) * part.amplitude
        if isinstance(value, np.ndarray):
            if not value.flags.writeable or not value.flags.c_contiguous:
                value = np.ascontiguousarray(value).copy()
                tensors[part.name] = value
            flat = value.reshape(-1)
            flat[part.indices] = (flat[part.indices].astype(np.float64) + delta).astype(value.dtype)
        else:
            import torch

            if not value.is_contiguous():
                raise FingerprintError(f"tensor {part.name!r} is not contiguous: cannot mark it in place")
            flat = value.view(-1)
            index = torch.from_numpy(part.indices).to(flat.device)
            step = torch.from_numpy(delta).to(flat.device)
            with torch.no_grad():
                flat[index] = (flat[index].double() + step).to(flat.dtype)
    commitment = release_commitment(release_key.release_id, release_key.key_commitment, policy)
    return AppliedFingerprint(release_key.release_id, commitment, mark.elements, len(mark.tensors))


# -- attribution ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A release the leaked copy may have come from, as the ledger records it."""

    release_id: str
    commitment: str | None = None
    label: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> Candidate:
        if isinstance(value, str):
            return cls(value)
        if not isinstance(value, dict) or not isinstance(value.get("release_id"), str):
            raise FingerprintError("a candidate is a release id or {release_id, commitment?, label?}")
        commitment, label = value.get("commitment"), value.get("label")
        if commitment is not None and not isinstance(commitment, str):
            raise FingerprintError("candidate commitment must be a string")
        return cls(value["release_id"], commitment, None if label is None else str(label))


@dataclass(frozen=True)
class CandidateScore:
    release_id: str
    label: str | None
    z: float
    strength: float
    compared: int

    @property
    def false_hit_bound(self) -> float:
        """Hoeffding's bound on the chance that an unrelated copy scores at least this high."""
        return math.exp(-(max(self.z, 0.0) ** 2) / 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "label": self.label,
            "z": round(self.z, 3),
            "strength": round(self.strength, 4),
            "compared": self.compared,
            "false_hit_bound": self.false_hit_bound,
        }


@dataclass(frozen=True)
class Attribution:
    """Which release(s) a leaked copy came from, or why none is named."""

    verdict: str  # "attributed", "several", "unmarked", "no-match"
    matches: tuple[CandidateScore, ...]
    scores: tuple[CandidateScore, ...]
    threshold: float
    changed_elements: int
    eligible_elements: int
    missing_tensors: tuple[str, ...]

    @property
    def release_id(self) -> str | None:
        return self.matches[0].release_id if len(self.matches) == 1 else None

    @property
    def false_hit_bound(self) -> float:
        """Bound on any false hit among all candidates tested (union bound)."""
        return min(1.0, len(self.scores) * math.exp(-(self.threshold**2) / 2))

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "release_id": self.release_id,
            "matches": [m.to_json() for m in self.matches],
            "scores": [s.to_json() for s in self.scores],
            "threshold": self.threshold,
            "false_hit_bound": self.false_hit_bound,
            "changed_elements": self.changed_elements,
            "eligible_elements": self.eligible_elements,
            "missing_tensors": list(self.missing_tensors),
        }


def _count_changed(leaked: Any, original: Any) -> int:
    """How many elements differ (compared in the original's dtype when both share it, else in float64)."""
    if isinstance(leaked, np.ndarray) and isinstance(original, np.ndarray):
        if leaked.dtype == original.dtype:
            return int(np.count_nonzero(leaked != original))
        return int(np.count_nonzero(_flat64(leaked) != _flat64(original)))
    import torch

    a = leaked if not isinstance(leaked, np.ndarray) else torch.from_numpy(np.asarray(leaked))
    b = original if not isinstance(original, np.ndarray) else torch.from_numpy(np.asarray(original))
    if a.dtype != b.dtype:
        a, b = a.double(), b.double()
    return int(torch.count_nonzero(a.to(b.device) != b))


def _comparable(leaked: Mapping[str, Any], original: Mapping[str, Any], name: str) -> bool:
    return name in leaked and tuple(leaked[name].shape) == tuple(original[name].shape)


def attribute(
    leaked: Mapping[str, Any],
    original: Mapping[str, Any],
    candidates: Sequence[str | Candidate],
    *,
    key: FingerprintKey,
    policy: FingerprintPolicy,
    threshold: float = DEFAULT_THRESHOLD,
) -> Attribution:
    """Test a leaked copy against every candidate release's mark; name the one(s) above ``threshold``.

    ``leaked`` and ``original`` map tensor names to numpy arrays or torch tensors (the leaked copy may be
    in another float dtype, or lack tensors: positions in missing tensors are skipped).
    """
    if threshold < 4:
        raise FingerprintError("a threshold below 4 gives false hits (bound exp(-t^2/2) per candidate)")
    planner = MarkPlanner(original, policy)
    slots = eligible(original, policy)
    missing = tuple(name for name, _ in slots if not _comparable(leaked, original, name))
    changed = sum(_count_changed(leaked[name], original[name]) for name, _ in slots if name not in missing)
    scores = []
    for raw in candidates:
        candidate = raw if isinstance(raw, Candidate) else Candidate(raw)
        release_key = key.release_key(candidate.release_id)
        if candidate.commitment is not None:
            expected = release_commitment(candidate.release_id, key.commitment, policy)
            if candidate.commitment != expected:
                raise FingerprintError(
                    f"release {candidate.release_id}: the recorded fingerprint commitment is not the one this key "
                    "and policy give (another key or other parameters were used)"
                )
        mark = planner.mark(release_key)
        signed, squares, compared = 0.0, 0.0, 0
        for part in mark.tensors:
            if part.name in missing:
                continue
            diff = _gather64(leaked[part.name], part.indices) - _gather64(original[part.name], part.indices)
            x = diff / part.amplitude
            signed += float(np.dot(part.signs.astype(np.float64), x))
            squares += float(np.dot(x, x))
            compared += len(part.indices)
        z = signed / math.sqrt(squares) if squares > 0 else 0.0
        strength = signed / compared if compared else 0.0
        scores.append(CandidateScore(candidate.release_id, candidate.label, z, strength, compared))
    scores.sort(key=lambda s: -s.z)
    matches = tuple(s for s in scores if s.z >= threshold)
    if len(matches) == 1:
        verdict = "attributed"
    elif matches:
        verdict = "several"
    elif changed == 0:
        verdict = "unmarked"
    else:
        verdict = "no-match"
    return Attribution(
        verdict,
        matches,
        tuple(scores),
        threshold,
        changed,
        sum(n for name, n in slots if name not in missing),
        missing,
    )


def _slicer(data: bytes) -> Callable[[int, int], bytes]:
    def read(start: int, end: int) -> bytes:
        return data[start:end]

    return read


def load_plain_tensors(directory: Path, framework: str = "numpy") -> dict[str, Any]:
    """Every tensor of the plain safetensors files in a directory (a leaked copy), read into memory."""
    from strongroom.seal.safetensors_header import parse_safetensors_header
    from strongroom.seal.tensors import Framework, view_tensor

    directory = Path(directory)
    files = sorted(directory.rglob("*.safetensors")) if directory.is_dir() else [directory]
    if not files:
        raise FingerprintError(f"{directory}: no .safetensors file")
    chosen: Framework = "torch" if framework == "torch" else "numpy"
    out: dict[str, Any] = {}
    for path in files:
        data = path.read_bytes()
        header = parse_safetensors_header(_slicer(data), len(data), str(path))
        buffer = np.frombuffer(bytearray(data[header.data_start :]), dtype=np.uint8)
        for name, info in header.tensors.items():
            if name in out:
                raise FingerprintError(f"{path}: tensor {name!r} appears in two files")
            out[name] = view_tensor(buffer, header.data_start, info, chosen, "cpu", str(path))
    return out
