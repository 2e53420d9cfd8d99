"""Meetings benchmark: real-time factor on CPU for a ~5-minute generated meeting, default model (tiny.en).

Reference: the same audio file transcribed by plain faster-whisper with the same options (VAD, word
timestamps, beam 5, int8, same threads), no Strongroom. Pipeline: ``transcribe_meeting`` end to end
(guard; the isolated speech process: interpreter start, sandbox, imports, decode, model load,
transcription, diarization; then rendering and sealing every output). Both load the model inside the
timed span; the reference imports faster-whisper once per benchmark process, the speech process on
every run (that cost is printed). Each is run ``--repeat`` times, alternating, and the best time counts.

    python3 benchmarks/bench_meetings.py [--seconds 300] [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "meetings")]

from speech import long_meeting_turns, make_meeting  # noqa: E402

from strongroom.keys import LocalKeyring  # noqa: E402
from strongroom.meetings.pipeline import MeetingOptions, describe_isolation, transcribe_meeting  # noqa: E402
from strongroom.meetings.transcribe import TranscribeOptions, default_model_dir  # noqa: E402
from strongroom.meetings.wer import wer  # noqa: E402

BENCH_PASSPHRASE = "bench walnut harbour violet"


def plain_faster_whisper(audio: Path, threads: int) -> tuple[float, str]:
    """Seconds and text for faster-whisper alone: load, transcribe, materialise every segment."""
    from faster_whisper import WhisperModel

    start = time.perf_counter()
    model = WhisperModel(str(default_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads)
    segments, _ = model.transcribe(
        str(audio), language="en", beam_size=5, vad_filter=True, word_timestamps=True, condition_on_previous_text=False
    )
    text = " ".join(s.text for s in segments)
    return time.perf_counter() - start, text


def in_process_model_load(threads: int) -> float:
    """Seconds to load the model in this process, faster-whisper already imported (the reference's case)."""
    from faster_whisper import WhisperModel

    start = time.perf_counter()
    WhisperModel(str(default_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads)
    return time.perf_counter() - start


def strongroom_pipeline(
    audio: Path, out: Path, ring: LocalKeyring, threads: int
) -> tuple[float, str, dict[str, float], str]:
    """Seconds, text, stage timings and the isolation line for the whole sealed pipeline."""
    options = MeetingOptions(transcribe=TranscribeOptions(device="cpu", cpu_threads=threads))
    start = time.perf_counter()
    result = transcribe_meeting(audio, out, ring, options)
    elapsed = time.perf_counter() - start
    text = " ".join(s.text for s in result.transcript.segments)
    return elapsed, text, result.timings, describe_isolation(result.isolation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="target meeting length")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-meetings-"))
    try:
        audio = work / "meeting.wav"
        turns = long_meeting_turns(args.seconds)
        timeline = make_meeting(audio, turns)
        duration = timeline[-1][1] + 0.6
        script = " ".join(text for _, _, _, text in timeline)
        ring = LocalKeyring.init(work / "keys", passphrase=BENCH_PASSPHRASE, scrypt_n=2**12)
        print(f"meeting: {duration:.1f} s, {len(turns)} turns, 2 voices; {args.threads} CPU thread(s)")

        plain_times, pipe_times = [], []
        stages: dict[str, float] = {}
        plain_text = pipe_text = isolation = ""
        for i in range(args.repeat):
            seconds, plain_text = plain_faster_whisper(audio, args.threads)
            plain_times.append(seconds)
            out = work / f"out{i}"
            seconds, pipe_text, timings, isolation = strongroom_pipeline(audio, out, ring, args.threads)
            pipe_times.append(seconds)
            if seconds == min(pipe_times):
                stages = timings
            shutil.rmtree(out)
        plain, pipe = min(plain_times), min(pipe_times)
        print(f"{'':28}{'seconds':>9}{'x real time':>13}{'WER':>8}")
        print(f"{'faster-whisper alone':28}{plain:9.2f}{duration / plain:13.1f}{wer(script, plain_text):8.1%}")
        print(f"{'strongroom pipeline':28}{pipe:9.2f}{duration / pipe:13.1f}{wer(script, pipe_text):8.1%}")
        print(
            "all runs (s): reference "
            + ", ".join(f"{t:.2f}" for t in plain_times)
            + "; pipeline "
            + ", ".join(f"{t:.2f}" for t in pipe_times)
        )
        print(f"pipeline / reference time: {pipe / plain:.3f} (target <= 1.20)")
        print(f"real-time speed of the pipeline: {duration / pipe:.1f}x (target >= 10x)")
        print("pipeline stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
        load = in_process_model_load(args.threads)
        print(
            f"speech process cost (best run): start {stages.get('start_process', 0):.2f} s + imports "
            f"{stages.get('imports', 0):.2f} s; model load there {stages.get('load_model', 0):.2f} s "
            f"(faster-whisper import included, decoding alongside) vs {load:.2f} s in this process"
        )
        print(isolation)
        ring.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
