"""``strongroom demo``: the main job, end to end on this machine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.common import JsonOption, console, print_json
from strongroom.demo import run_seal_demo
from strongroom.errors import StrongroomError


def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Directory for the demo's keys and sealed model (default: a new temp dir).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Seal the bundled real model (all-MiniLM-L6-v2), load it back from ciphertext and prove it unchanged."""
    target = workdir or Path(tempfile.mkdtemp(prefix="strongroom-demo-"))
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise StrongroomError(f"{workdir}: demo directory must be empty or absent")
    say = (lambda _: None) if json_out else (lambda line: console.print(f"[green]•[/] {line}", highlight=False))
    story = run_seal_demo(target, say)
    if json_out:
        print_json(story)
    ok = story["bit_identical"] and (story["embedding"] is None or story["embedding"]["equal_to_original"])
    if not ok:
        raise StrongroomError("demo failed: the sealed model did not load back identical")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
