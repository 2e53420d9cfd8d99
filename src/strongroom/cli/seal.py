"""``strongroom seal | inspect | ls | unseal``: the sealed format from the command line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from strongroom.atomic import atomic_directory, write_atomic
from strongroom.cli.common import (
    JsonOption,
    KekFileOption,
    KeyConfigOption,
    KeyProviderOption,
    KeysOption,
    console,
    data_table,
    lazy_progress,
    print_json,
    provider_from_options,
)
from strongroom.manifest.sealing import seal_model
from strongroom.seal import SealedModel, seal_path
from strongroom.seal.errors import DigestMismatchError, SealError
from strongroom.seal.stream import DEFAULT_SEGMENT_SIZE


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[tuple[Any, Any]]:
    """A byte-counting progress bar that appears once the first bytes are sealed (after every check passed);
    silent for --json and when stdout is not a terminal."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with lazy_progress("sealing", total, *columns, transient=False, enabled=enabled) as bar:
        yield bar.advance, (lambda name, size: bar.describe(name))


def _total_size(src: Path) -> int:
    if src.is_file():
        return src.stat().st_size
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def seal(
    src: Annotated[Path, typer.Argument(help="Model directory or single file to seal.")],
    dst: Annotated[Path, typer.Argument(help="Sealed output (must not exist).")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    segment_size: Annotated[int, typer.Option(help="Ciphertext segment size in bytes.")] = DEFAULT_SEGMENT_SIZE,
    json_out: JsonOption = False,
) -> None:
    """Seal every file of a model directory under one fresh data key bound to the model's id.

    A directory's model id (as ``strongroom manifest`` prints it) is computed first and bound to the data
    key with the seal id; a single file is sealed with no model id.
    """
    if not src.exists():
        raise SealError(f"{src}: no such file or directory")
    if dst.exists():
        raise SealError(f"{dst}: output already exists; choose a new path")
    with (
        provider_from_options(keys, kek_file, key_provider, key_config) as provider,
        _progress(_total_size(src), not json_out) as (advance, on_file),
    ):
        options: dict[str, Any] = {"segment_size": segment_size, "progress": advance, "on_file": on_file}
        if src.is_dir():
            summary = seal_model(src, dst, provider, **options)
        else:
            summary = seal_path(src, dst, provider, **options)
            summary["model_id"] = None
    if json_out:
        print_json(summary)
        return
    console.print(
        f"sealed {len(summary['files'])} file(s), {summary['plaintext_bytes']:,} bytes, into {dst} "
        f"(seal id {summary['seal_id']}, key {summary['key']['provider']}:{summary['key']['key_id']})"
    )
    console.print(f"model id {summary['model_id'] or 'none (a single file, not a model directory)'}")


def inspect(
    sealed: Annotated[Path, typer.Argument(help="Sealed directory or file.")],
    json_out: JsonOption = False,
) -> None:
    """Show what a sealed model reveals without a key: files, sizes, digests, key reference and binding."""
    model = SealedModel.inspect(sealed)
    data = {
        "path": str(sealed),
        "seal_id": model.seal_id,
        "model_id": model.model_id,
        "key": {"provider": model.key.provider, "key_id": model.key.key_id, "binding": model.binding.to_json()},
        "files": [e.to_json() for e in model.members()],
    }
    if json_out:
        print_json(data)
        return
    console.print(f"[bold]{sealed}[/]  seal id {model.seal_id}  key {model.key.provider}:{model.key.key_id}")
    console.print(
        f"key bound to seal id {model.binding.seal_id}, model id {model.model_id or 'none (not a model)'} "
        "(authenticated when the key is unwrapped)"
    )
    table = data_table("file", "bytes", "type", "plaintext digest", fold=("file", "plaintext digest"))
    for e in model.members():
        table.add_row(e.name, f"{e.plaintext_length:,}", e.content_type, e.plaintext_digest)
    console.print(table)


def ls(
    sealed: Annotated[Path, typer.Argument(help="Sealed directory or file.")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """List tensor names, dtypes and shapes per file (needs the key; decrypts only the headers)."""
    listing: dict[str, list[dict[str, Any]]] = {}
    with (
        provider_from_options(keys, kek_file, key_provider, key_config) as provider,
        SealedModel.open(sealed, provider) as model,
    ):
        for name in model.safetensors_names():
            with model.safetensors(name) as st:
                listing[name] = [
                    {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "bytes": t.nbytes}
                    for t in st.header.tensors.values()
                ]
    if json_out:
        print_json({"path": str(sealed), "files": listing})
        return
    if not listing:
        console.print(f"{sealed}: no safetensors file, so no tensors to list ('strongroom inspect' lists its files)")
    for file, tensors in listing.items():
        table = data_table("tensor", "dtype", "shape", "bytes", fold=("tensor", "shape"), title=file)
        for t in tensors:
            table.add_row(t["name"], t["dtype"], "x".join(map(str, t["shape"])) or "scalar", f"{t['bytes']:,}")
        console.print(table)


def unseal(
    sealed: Annotated[Path, typer.Argument(help="Sealed directory or file.")],
    out: Annotated[Path, typer.Argument(help="Where to write PLAINTEXT (must not exist).")],
    keys: KeysOption = None,
    plaintext_to_disk: Annotated[
        bool,
        typer.Option("--plaintext-to-disk", help="Required: acknowledge that plaintext weights hit disk."),
    ] = False,
    kek_file: KekFileOption = None,
    key_provider: KeyProviderOption = None,
    key_config: KeyConfigOption = None,
    json_out: JsonOption = False,
) -> None:
    """Export PLAINTEXT back to disk. Defeats sealing; refuses without --plaintext-to-disk."""
    if not plaintext_to_disk:
        raise SealError("unseal writes plaintext weights to disk; pass --plaintext-to-disk to confirm")
    written: list[str] = []
    with (
        provider_from_options(keys, kek_file, key_provider, key_config) as provider,
        SealedModel.open(sealed, provider) as model,
    ):
        if model.single:
            entry = next(model.members())
            data = _checked(model, entry.name)
            write_atomic(out, data)
            written.append(str(out))
        else:
            with atomic_directory(out) as staging:
                for entry in model.members():
                    target = staging / entry.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(target, _checked(model, entry.name))
                    written.append(str(out / entry.name))
    if json_out:
        print_json({"plaintext_written": written})
    else:
        console.print(f"[bold yellow]wrote {len(written)} PLAINTEXT file(s) to {out}[/]")


def _checked(model: SealedModel, name: str) -> bytes:
    data = model.read_file(name)
    if not model.digest_matches(name, data):
        raise DigestMismatchError(f"{name}: decrypted bytes do not match the recorded digest")
    return data


def register(app: typer.Typer) -> None:
    app.command("seal")(seal)
    app.command("inspect")(inspect)
    app.command("ls")(ls)
    app.command("unseal")(unseal)
