"""Word error rate against a known script: how tests and benchmarks judge transcription quality."""

from __future__ import annotations

import re


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; hyphenated compounds are joined (post-mortem = postmortem)."""
    text = text.lower().replace("-", "")
    return re.findall(r"[a-z0-9']+", text)


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions + deletions + insertions of the best alignment (Levenshtein over words)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (0.0 is perfect; can exceed 1.0)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return word_errors(ref, hyp) / len(ref)
