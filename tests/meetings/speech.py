"""Real test speech: a two-person meeting spoken by espeak-ng in two clearly different voices.

The script is known, so word error rate and speaker attribution can be measured against it. Turns are
separated by half a second of silence, as people leave between turns.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

RATE = 16_000
GAP_S = 0.6

# Two voices far apart in pitch and timbre: a low US male and a high British female variant.
VOICES = {
    "A": ["-v", "en-us+m3", "-p", "30", "-s", "155"],
    "B": ["-v", "en-gb+f4", "-p", "75", "-s", "160"],
}

SCRIPT: list[tuple[str, str]] = [
    ("A", "Good morning everyone. Let us review the incident from last Tuesday."),
    ("B", "Thanks. The backup server failed early in the morning and nobody was paged."),
    ("A", "Why did the alert not reach the on call engineer?"),
    ("B", "The pager rotation was empty because the schedule expired at the end of the month."),
    ("A", "We decided to rotate the encryption keys today as a precaution."),
    ("B", "Agreed. Alice will update the firewall rules by Friday."),
    ("A", "Action item for Bob: write the postmortem and share it with the security team."),
    ("B", "I will also check the storage logs for any sign of data leaving the building."),
]

# A longer meeting for the benchmark: the script above plus these, cycled until the target length.
MORE: list[tuple[str, str]] = [
    ("A", "Next item is the budget for the new hardware security modules."),
    ("B", "The vendor sent a quote last week and it is within our plan."),
    ("A", "Then we will approve the purchase and schedule the installation for next month."),
    ("B", "Remember that two custodians must be present when the keys are loaded."),
    ("A", "Good point. Carol needs to book the secure room for that day."),
    ("B", "Finally, the audit team asked for a copy of the access policy."),
    ("A", "Please send them the signed version and keep a record in the ledger."),
    ("B", "Understood. That is everything from my side."),
]


def espeak(text: str, voice: str, dst: Path) -> np.ndarray:
    """Speak ``text`` with ``voice`` into ``dst`` (WAV) and return its samples resampled to 16 kHz int16."""
    exe = shutil.which("espeak-ng")
    assert exe is not None, "espeak-ng is required (Debian package espeak-ng, listed in .ci/apt-packages)"
    subprocess.run([exe, *VOICES[voice], "-w", str(dst), text], check=True, capture_output=True)
    with wave.open(str(dst), "rb") as handle:
        rate = handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16).astype(np.float64)
    length = int(len(pcm) * RATE / rate)
    resampled = np.interp(np.linspace(0, len(pcm) - 1, length), np.arange(len(pcm)), pcm)
    return resampled.astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    """Write mono 16-bit PCM at 16 kHz."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes(pcm.astype(np.int16).tobytes())


def make_meeting(dst: Path, turns: list[tuple[str, str]] = SCRIPT) -> list[tuple[float, float, str, str]]:
    """Render ``turns`` into one WAV at ``dst``; return (start, end, voice, text) per turn."""
    work = dst.parent / f".{dst.stem}-turns"
    work.mkdir(exist_ok=True)
    gap = np.zeros(int(GAP_S * RATE), dtype=np.int16)
    parts: list[np.ndarray] = [gap]
    timeline = []
    cursor = GAP_S
    cache: dict[tuple[str, str], np.ndarray] = {}
    for index, (voice, text) in enumerate(turns):
        if (voice, text) not in cache:
            cache[(voice, text)] = espeak(text, voice, work / f"{index:03d}.wav")
        pcm = cache[(voice, text)]
        parts += [pcm, gap]
        timeline.append((cursor, cursor + len(pcm) / RATE, voice, text))
        cursor += (len(pcm) + len(gap)) / RATE
    write_wav(dst, np.concatenate(parts))
    shutil.rmtree(work)
    return timeline


def long_meeting_turns(seconds: float) -> list[tuple[str, str]]:
    """Turns cycling SCRIPT + MORE, enough for about ``seconds`` of meeting (~4.85 s per turn with its gap)."""
    pool = SCRIPT + MORE
    count = max(1, round(seconds / 4.85))
    return [pool[i % len(pool)] for i in range(count)]
