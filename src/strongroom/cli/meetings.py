"""``strongroom meetings transcribe | show``: offline meeting transcripts, sealed at rest."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from strongroom.cli.common import JsonOption, KekFileOption, console, err_console, open_provider, print_json
from strongroom.cli.extras import require
from strongroom.keys.provider import KeyProvider

meetings_app = typer.Typer(
    name="meetings",
    help="Transcribe sensitive meetings offline; transcripts and summaries are sealed at rest.",
    no_args_is_help=True,
)

OptionalKeys = Annotated[Path | None, typer.Option("--keys", help="Local key directory (from 'strongroom keys init').")]
NamesOption = Annotated[
    list[str] | None,
    typer.Option("--speaker-name", help="Map a label to a name, e.g. SPEAKER_00=Alice (repeatable)."),
]


def _provider(keys: Path | None, kek_file: Path | None) -> KeyProvider | None:
    return None if keys is None else open_provider(keys, kek_file)


def transcribe(
    audio: Annotated[Path, typer.Argument(help="Meeting audio (wav, flac, ogg, mp3, m4a, webm...).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (must not exist, or be empty).")],
    keys: OptionalKeys = None,
    kek_file: KekFileOption = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="faster-whisper model directory (default: bundled tiny.en).")
    ] = None,
    language: Annotated[str | None, typer.Option("--language", help="Spoken language code; 'auto' detects.")] = "en",
    speakers: Annotated[int | None, typer.Option("--speakers", min=1, help="Number of speakers, if known.")] = None,
    diarizer: Annotated[str, typer.Option("--diarizer", help="features (offline default), pyannote, or none.")] = (
        "features"
    ),
    pyannote_model: Annotated[
        Path | None, typer.Option("--pyannote-model", help="Local pyannote pipeline directory (config.yaml).")
    ] = None,
    speaker_name: NamesOption = None,
    summary: Annotated[bool, typer.Option("--summary", help="Also write a summary (local model or extractive).")] = (
        False
    ),
    llm_url: Annotated[
        str | None,
        typer.Option("--llm-url", help="OpenAI-compatible endpoint on loopback, e.g. http://127.0.0.1:11434/v1."),
    ] = None,
    llm_model: Annotated[str, typer.Option("--llm-model", help="Model name to ask the local endpoint for.")] = (
        "local"
    ),
    delete_audio: Annotated[
        bool, typer.Option("--delete-audio", help="Overwrite and delete the audio after success (no prompt).")
    ] = False,
    plaintext: Annotated[
        bool, typer.Option("--plaintext", help="Write PLAINTEXT outputs instead of sealed ones.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0: all available).")] = 0,
    no_vad: Annotated[bool, typer.Option("--no-vad", help="Transcribe silence too (no voice-activity filter).")] = (
        False
    ),
    netns: Annotated[
        str,
        typer.Option(
            "--netns",
            help="Network namespace for the speech process: auto (if the kernel allows), require, or off.",
        ),
    ] = "auto",
    json_out: JsonOption = False,
) -> None:
    """Transcribe AUDIO into a sealed meeting directory, with no byte leaving this machine (needs the meetings
    extra)."""
    require("meetings", "strongroom meetings transcribe")
    from strongroom.meetings.diarize import Diarizer, FeatureDiarizer, PyannoteDiarizer
    from strongroom.meetings.errors import DiarizationError, IsolationError, OutputError
    from strongroom.meetings.formats import parse_speaker_names
    from strongroom.meetings.isolation import Isolation
    from strongroom.meetings.pipeline import MeetingOptions, describe_isolation, transcribe_meeting
    from strongroom.meetings.summary import check_endpoint
    from strongroom.meetings.transcribe import TranscribeOptions

    if not plaintext and keys is None:
        raise OutputError("sealed output needs --keys KEYDIR (or pass --plaintext to write plaintext)")
    if llm_url is not None:
        check_endpoint(llm_url)
    if netns not in ("auto", "require", "off"):
        raise IsolationError(f"--netns {netns!r}: choose auto, require or off")
    names = parse_speaker_names(speaker_name or [])
    chosen: Diarizer | None
    if diarizer == "features":
        chosen = FeatureDiarizer()
    elif diarizer == "none":
        chosen = None
    elif diarizer == "pyannote":
        if pyannote_model is None:
            raise DiarizationError("--diarizer pyannote needs --pyannote-model DIR (a local pipeline)")
        chosen = PyannoteDiarizer(pyannote_model)
    else:
        raise DiarizationError(f"--diarizer {diarizer!r}: choose features, pyannote or none")
    provider = None if plaintext else _provider(keys, kek_file)
    options = MeetingOptions(
        transcribe=TranscribeOptions(
            model_dir=model,
            language=None if language == "auto" else language,
            vad_filter=not no_vad,
            device=device,
            cpu_threads=threads,
        ),
        diarizer=chosen,
        num_speakers=speakers,
        speaker_names=names,
        summary=summary or llm_url is not None,
        llm_url=llm_url,
        llm_model=llm_model,
        delete_audio=delete_audio,
        plaintext=plaintext,
        isolation=Isolation(network_namespace=netns),  # type: ignore[arg-type]
    )

    def refused(message: str) -> None:
        err_console.print(f"[bold red]network guard:[/] {message}", highlight=False, soft_wrap=True)

    if not json_out:
        err_console.print(
            "network guard: on (only loopback connections allowed during this run); "
            "speech runs in a separate, isolated process"
        )
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out,
    )
    with bar:
        task = bar.add_task("starting", total=1.0)

        def stage(name: str) -> None:
            bar.update(task, description=name)

        def progress(done: float, total: float) -> None:
            bar.update(task, completed=min(done, total), total=total)

        result = transcribe_meeting(
            audio, out, provider, options, stage=stage, on_refusal=refused, on_progress=progress
        )
    data = result.to_dict()
    if json_out:
        print_json(data)
        return
    kind = "PLAINTEXT" if plaintext else "sealed"
    console.print(
        f"transcribed {data['duration']:.1f} s in {sum(result.timings.values()):.1f} s: "
        f"{data['segments']} segment(s), {len(data['speakers'])} speaker(s); "
        f"{len(result.files)} {kind} file(s) in {out}",
        highlight=False,
    )
    console.print(describe_isolation(result.isolation), highlight=False, soft_wrap=True)
    if result.refused:
        console.print(f"network guard refused {len(result.refused)} attempt(s): {'; '.join(result.refused)}")
    if result.shredded is not None:
        console.print(f"deleted source audio {result.shredded.path}", highlight=False)
        if result.shredded.caveat:
            console.print(f"[yellow]note:[/] {result.shredded.caveat}", highlight=False)


def show(
    directory: Annotated[Path, typer.Argument(help="A meeting output directory.")],
    keys: OptionalKeys = None,
    kek_file: KekFileOption = None,
    fmt: Annotated[str, typer.Option("--format", help="txt, srt, vtt or json.")] = "txt",
    summary: Annotated[bool, typer.Option("--summary", help="Show the summary instead of the transcript.")] = False,
    speaker_name: NamesOption = None,
) -> None:
    """Decrypt a meeting's transcript (or summary) to the terminal; nothing is written to disk."""
    from strongroom.meetings.formats import parse_speaker_names, render
    from strongroom.meetings.store import is_sealed_dir, load_transcript, read_output

    provider = _provider(keys, kek_file) if is_sealed_dir(directory) else None
    if summary:
        text = read_output(directory, "summary.md", provider).decode()
    else:
        transcript = load_transcript(directory, provider).with_names(parse_speaker_names(speaker_name or []))
        text = render(transcript, fmt)  # type: ignore[arg-type]
    sys.stdout.write(text)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add ``strongroom meetings ...`` to the main app."""
    meetings_app.command("transcribe")(transcribe)
    meetings_app.command("show")(show)
    app.add_typer(meetings_app, name="meetings")
