"""Who spoke when: a diarizer interface, an offline default, and pyannote for users who have a local model.

The default (``FeatureDiarizer``) cuts the recognised words into speech chunks at pauses, describes each
chunk by MFCC statistics and pitch (``features.py``), and clusters the chunks (Ward linkage); the number
of speakers is given or picked by the silhouette score. It needs no model and no network. Each word then
carries its chunk's label, and segments are split where the speaker changes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from strongroom.meetings.audio import Audio
from strongroom.meetings.errors import DiarizationError, ModelNotFoundError
from strongroom.meetings.features import speaker_features
from strongroom.meetings.transcribe import Segment, Word

MAX_SPEAKERS = 8


@dataclass(frozen=True)
class Turn:
    """A span of time attributed to one speaker label."""

    start: float
    end: float
    speaker: str


@runtime_checkable
class Diarizer(Protocol):
    """Anything that labels speakers: given the audio and the transcript, return speaker turns."""

    name: str

    def diarize(self, audio: Audio, segments: list[Segment], num_speakers: int | None) -> list[Turn]:
        """Speaker turns covering the speech in ``segments``."""
        ...


def speaker_label(index: int) -> str:
    """The label written into every output: SPEAKER_00, SPEAKER_01, ..."""
    return f"SPEAKER_{index:02d}"


class FeatureDiarizer:
    """Offline default: cluster MFCC/pitch statistics of pause-delimited speech chunks."""

    name = "features"

    def __init__(self, pause_s: float = 0.3, max_chunk_s: float = 4.0, min_silhouette: float = 0.2) -> None:
        self.pause_s = pause_s
        self.max_chunk_s = max_chunk_s
        self.min_silhouette = min_silhouette

    def chunks(self, segments: list[Segment]) -> list[tuple[float, float]]:
        """Spans of continuous speech: split at pauses, at segment ends, and every ``max_chunk_s`` seconds."""
        spans: list[tuple[float, float]] = []
        for segment in segments:
            words = segment.words or [Word(segment.start, segment.end, segment.text, 1.0)]
            start, end = words[0].start, words[0].end
            for word in words[1:]:
                if word.start - end >= self.pause_s or word.end - start > self.max_chunk_s:
                    spans.append((start, end))
                    start = word.start
                end = max(end, word.end)
            spans.append((start, end))
        return [(s, e) for s, e in spans if e > s]

    def diarize(self, audio: Audio, segments: list[Segment], num_speakers: int | None) -> list[Turn]:
        spans = self.chunks(segments)
        if not spans:
            return []
        if num_speakers is not None and num_speakers < 1:
            raise DiarizationError(f"--speakers {num_speakers}: must be at least 1")
        rate = audio.sample_rate
        vectors = []
        for start, end in spans:
            piece = audio.samples[int(start * rate) : max(int(end * rate), int(start * rate) + rate // 10)]
            vectors.append(speaker_features(piece, rate))
        durations = np.array([e - s for s, e in spans])
        labels = cluster(np.array(vectors), durations, num_speakers, self.min_silhouette)
        return [Turn(s, e, speaker_label(int(k))) for (s, e), k in zip(spans, labels, strict=True)]


def standardise(vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Z-score each column; the MFCC block is scaled to unit total weight, equal to the pitch column's.

    A missing pitch (no voiced frame) takes the column's median.
    """
    vectors = vectors.copy()
    pitch_col = vectors[:, -1]
    known = np.isfinite(pitch_col)
    pitch_col[~known] = np.median(pitch_col[known]) if known.any() else 0.0
    scale = vectors.std(axis=0)
    z = (vectors - vectors.mean(axis=0)) / np.where(scale > 1e-9, scale, 1.0)
    z[:, :-1] /= np.sqrt(vectors.shape[1] - 1)
    return np.asarray(z, dtype=np.float64)


def cluster(
    vectors: npt.NDArray[np.float64],
    durations: npt.NDArray[np.float64],
    num_speakers: int | None,
    min_silhouette: float,
    min_chunk_s: float = 1.0,
) -> list[int]:
    """Ward clustering of the chunks lasting ``min_chunk_s`` or more; shorter ones join the nearest centroid.

    Short chunks carry too few frames for stable statistics and would otherwise form clusters of their
    own. Labels are renumbered in order of first appearance.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    count = vectors.shape[0]
    if count == 1 or num_speakers == 1:
        return [0] * count
    z = standardise(vectors)
    core = np.nonzero(durations >= min_chunk_s)[0]
    if core.size < 2:
        core = np.arange(count)
    points = z[core]
    tree = linkage(points, method="ward")
    if num_speakers is not None:
        raw = fcluster(tree, t=min(num_speakers, core.size), criterion="maxclust")
    else:
        best, raw = -1.0, np.ones(core.size, dtype=int)
        for k in range(2, min(MAX_SPEAKERS, core.size - 1) + 1):
            candidate = fcluster(tree, t=k, criterion="maxclust")
            score = silhouette(points, candidate)
            if score > best:
                best, raw = score, candidate
        if best < min_silhouette:
            raw = np.ones(core.size, dtype=int)
    ids = sorted(set(raw.tolist()))
    centroids = np.array([points[raw == k].mean(axis=0) for k in ids])
    nearest = np.argmin(((z[:, None, :] - centroids[None, :, :]) ** 2).sum(-1), axis=1)
    labels = np.array([ids[k] for k in nearest])
    labels[core] = raw
    order: dict[int, int] = {}
    return [order.setdefault(int(k), len(order)) for k in labels]


def silhouette(points: npt.NDArray[np.float64], labels: npt.NDArray[np.int_]) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987); -1 when there is only one cluster."""
    if len(set(labels.tolist())) < 2:
        return -1.0
    dist = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    scores = []
    for i, own in enumerate(labels):
        same = labels == own
        if same.sum() <= 1:
            scores.append(0.0)
            continue
        a = dist[i, same].sum() / (same.sum() - 1)
        b = min(dist[i, labels == other].mean() for other in set(labels.tolist()) if other != own)
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


class PyannoteDiarizer:
    """pyannote.audio, only from a local pipeline directory the user points at (never the hub).

    The constructor only checks the directory and that pyannote is installed; the pipeline itself is
    loaded on first use, in the isolated speech process (the object crosses to it pickled, without it).
    """

    name = "pyannote"

    def __init__(self, model_dir: Path) -> None:
        config = model_dir / "config.yaml"
        if not config.is_file():
            raise ModelNotFoundError(f"{model_dir}: not a local pyannote pipeline (no config.yaml)")
        if importlib.util.find_spec("pyannote") is None or importlib.util.find_spec("pyannote.audio") is None:
            raise DiarizationError("the pyannote backend needs 'pyannote.audio' installed")
        self.model_dir = model_dir
        self.pipeline: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "pipeline": None}

    def load(self) -> Any:
        """The pyannote pipeline, loaded from ``model_dir/config.yaml`` on first use."""
        if self.pipeline is None:
            from pyannote.audio import Pipeline  # type: ignore[import-not-found,unused-ignore]

            try:
                self.pipeline = Pipeline.from_pretrained(str(self.model_dir / "config.yaml"))
            except Exception as exc:  # pyannote raises many kinds; name the directory
                raise DiarizationError(f"{self.model_dir}: cannot load the pyannote pipeline: {exc}") from None
        return self.pipeline

    def diarize(self, audio: Audio, segments: list[Segment], num_speakers: int | None) -> list[Turn]:
        import torch

        pipeline = self.load()
        waveform = torch.from_numpy(audio.samples).unsqueeze(0)
        result = pipeline({"waveform": waveform, "sample_rate": audio.sample_rate}, num_speakers=num_speakers)
        annotation = getattr(result, "speaker_diarization", result)
        names: dict[str, str] = {}
        turns = []
        for span, _, raw in annotation.itertracks(yield_label=True):
            label = names.setdefault(str(raw), speaker_label(len(names)))
            turns.append(Turn(float(span.start), float(span.end), label))
        return turns


def assign_speakers(segments: list[Segment], turns: list[Turn]) -> list[Segment]:
    """Label every word with the turn it overlaps most (nearest turn if none), then split segments by speaker."""
    if not turns:
        return segments
    starts = np.array([t.start for t in turns])
    ends = np.array([t.end for t in turns])
    out: list[Segment] = []
    for segment in segments:
        words = segment.words or [Word(segment.start, segment.end, segment.text, 1.0)]
        for word in words:
            overlap = np.minimum(ends, word.end) - np.maximum(starts, word.start)
            if overlap.max() > 0:
                best = int(np.argmax(overlap))
            else:
                mid = (word.start + word.end) / 2
                best = int(np.argmin(np.minimum(np.abs(starts - mid), np.abs(ends - mid))))
            word.speaker = turns[best].speaker
        if not segment.words:
            out.append(Segment(segment.start, segment.end, segment.text, [], words[0].speaker))
            continue
        run: list[Word] = []
        for word in segment.words:
            if run and word.speaker != run[-1].speaker:
                out.append(_from_words(run))
                run = []
            run.append(word)
        out.append(_from_words(run))
    return out


def _from_words(words: list[Word]) -> Segment:
    text = "".join(w.text for w in words).strip()
    return Segment(start=words[0].start, end=words[-1].end, text=text, words=words, speaker=words[0].speaker)
