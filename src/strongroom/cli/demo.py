"""``strongroom demo``: the main job, end to end on this machine."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.common import JsonOption, console, print_json
from strongroom.cli.extras import require
from strongroom.errors import StrongroomError


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Directory for the demo's keys, server and sealed model (kept; default: a new temp dir)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary work directory (about 90 MB) to look around.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """The whole custody chain on the bundled real model (all-MiniLM-L6-v2), then an independent audit.

    Needs the torch extra. Its work directory is removed at the end unless --keep (or --workdir) is given.
    """
    require("torch", "strongroom demo")
    from strongroom.demo import run_demo

    story, target, kept = _in_workdir(workdir, keep, json_out, "strongroom-demo-", run_demo)
    if json_out:
        print_json(story)
    elif kept:
        console.print(f"work directory kept: {target}", soft_wrap=True)
    else:
        console.print(f"removed the work directory {target}", soft_wrap=True)
    if not story["audit"]["ok"] or not all(r["verified"] for r in story["audit"]["releases"]):
        raise StrongroomError("demo failed: the auditor's replay refused an entry or a release")
    if story["embedding"] is not None and not story["embedding"]["equal_to_original"]:
        raise StrongroomError("demo failed: the released model's embedding differs from the original's")


def demo_incident(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Directory for the demo's keys, sealed models and timeline (kept; default: a temp dir)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary work directory (about 300 MB) and timeline.html.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """The weight-leak playbook end to end: declare and freeze, contain, timeline, attribute, rotate, lift.

    Needs the torch extra (the bundled model). Its work directory is removed unless --keep or --workdir."""
    require("torch", "strongroom demo-incident")
    from strongroom.incident.demo import run_incident_demo

    story, _, _ = _in_workdir(workdir, keep, json_out, "strongroom-incident-", run_incident_demo)
    if json_out:
        print_json(story)
    if not story["audit"]["ok"] or story["timeline_culprit"] != story["leaked_release"]:
        raise StrongroomError("incident demo failed: the audit refused an entry or the timeline named another release")
    if story["attributed"] != story["leaked_release"]:
        raise StrongroomError("incident demo failed: attribution named another release")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("demo-incident")(demo_incident)


def _in_workdir(
    workdir: Path | None,
    keep: bool,
    json_out: bool,
    prefix: str,
    run: Callable[[Path, Callable[[str], None]], dict[str, Any]],
) -> tuple[dict[str, Any], Path, bool]:
    """Run a demo story in ``workdir`` (empty or absent) or a new temporary directory, saying each step unless
    ``json_out``; the temporary one is removed afterwards unless ``keep``. Returns the story (with
    ``workdir_kept``), the directory and whether it was kept."""
    if workdir is not None and workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise StrongroomError(f"{workdir}: demo directory must be empty or absent")
    target = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    kept = keep or workdir is not None
    if not json_out:
        what = "kept at the end" if kept else "removed at the end; --keep keeps it"
        console.print(f"work directory {target} ({what})", soft_wrap=True)
    say = (lambda _: None) if json_out else (lambda line: console.print(f"[green]•[/] {line}", highlight=False))
    try:
        story = run(target, say)
    finally:
        if not kept:
            shutil.rmtree(target, ignore_errors=True)
    story["workdir_kept"] = kept
    return story, target, kept
