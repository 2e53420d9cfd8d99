"""``strongroom manifest | diff``: model identity of plain or sealed directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from strongroom.cli.common import JsonOption, KekFileOption, console, open_provider, print_json
from strongroom.manifest.build import Manifest, is_sealed_dir, manifest_of_plain, manifest_of_sealed
from strongroom.manifest.diff import diff_manifests
from strongroom.seal import SealedModel
from strongroom.seal.errors import SealError

KeysOption = Annotated[Path | None, typer.Option("--keys", help="Key directory, for sealed directories.")]


def _describe(path: Path, keys: Path | None, kek_file: Path | None) -> tuple[Manifest, Any]:
    """The manifest of a plain or sealed directory, and a tensor reader for diff."""
    if is_sealed_dir(path):
        if keys is None:
            raise SealError(f"{path}: a sealed directory needs --keys")
        model = SealedModel.open(path, open_provider(keys, kek_file))
        manifest = manifest_of_sealed(model)

        def sealed_tensor(file: str, name: str) -> Any:
            with model.safetensors(file) as st:
                return st.get_tensor(name)

        return manifest, sealed_tensor
    from safetensors import safe_open

    def plain_tensor(file: str, name: str) -> Any:
        with safe_open(str(path / file), framework="numpy") as handle:
            return handle.get_tensor(name)

    return manifest_of_plain(path), plain_tensor


def manifest(
    path: Annotated[Path, typer.Argument(help="Model directory, plain or sealed.")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print the model id and every file and tensor digest."""
    found, _ = _describe(path, keys, kek_file)
    if json_out:
        print_json(found.to_json())
        return
    console.print(f"model id [bold]{found.model_id}[/]")
    table = Table("file", "bytes", "covers", "blake3")
    for record in sorted(found.files.values(), key=lambda r: r["name"]):
        table.add_row(record["name"], f"{record['size']:,}", record["covers"], record["digest"][:32] + "…")
    console.print(table)
    console.print(f"{len(found.tensors)} tensors digested individually")


def diff(
    a: Annotated[Path, typer.Argument(help="First model directory (plain or sealed).")],
    b: Annotated[Path, typer.Argument(help="Second model directory (plain or sealed).")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Added, removed and changed tensors and files; changed tensors by relative L2 norm, largest first."""
    left, read_a = _describe(a, keys, kek_file)
    right, read_b = _describe(b, keys, kek_file)
    report = diff_manifests(left, right, read_a, read_b)
    if json_out:
        print_json(report)
    else:
        console.print("identical" if report["identical"] else f"{report['model_id_a']} != {report['model_id_b']}")
        for kind in ("added", "removed", "changed"):
            for name in report["files"][kind]:
                console.print(f"file {kind}: {name}")
        for kind in ("added", "removed"):
            for name in report["tensors"][kind]:
                console.print(f"tensor {kind}: {name}")
        table = Table("tensor", "elements changed", "relative L2")
        for change in report["tensors"]["changed"]:
            changed = "?" if change["elements_changed"] is None else f"{change['elements_changed']:,}"
            rel = change["note"] or f"{change['relative_l2']:.3e}"
            table.add_row(f"{change['file']}:{change['tensor']}", f"{changed} / {change['elements']:,}", rel)
        if report["tensors"]["changed"]:
            console.print(table)
    if not report["identical"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("manifest")(manifest)
    app.command("diff")(diff)
