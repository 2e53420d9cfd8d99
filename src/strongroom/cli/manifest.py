"""``strongroom manifest | sign | verify | diff``: model identity of plain or sealed directories."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from strongroom.cli.common import (
    JsonOption,
    KekFileOption,
    console,
    data_table,
    lazy_progress,
    open_provider,
    print_json,
)
from strongroom.keys.provider import KeyProvider
from strongroom.manifest.build import build_manifest, is_sealed_dir
from strongroom.manifest.diff import diff_models
from strongroom.manifest.errors import VerificationError
from strongroom.manifest.sign import DEFAULT_RESOURCE_ALGORITHM, sign_model
from strongroom.manifest.verify import verify_model
from strongroom.signing import Signer, Verifier

KeysOption = Annotated[Path | None, typer.Option("--keys", help="Key directory, for sealed directories.")]
AlgorithmOption = Annotated[str, typer.Option("--algorithm", help="Digest for the model id: blake3 or sha256.")]


def _provider(path: Path, keys: Path | None, kek_file: Path | None) -> KeyProvider | None:
    if is_sealed_dir(path) and keys is not None:
        return open_provider(keys, kek_file)
    return None


@contextlib.contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Any]:
    """A byte-counting progress display on a terminal, drawn from the first byte hashed (silent for --json)."""
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn())
    with lazy_progress(label, None, *columns, transient=True, enabled=enabled) as bar:
        yield bar.advance if bar.enabled else None


def manifest(
    path: Annotated[Path, typer.Argument(help="Model directory, plain or sealed.")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    algorithm: AlgorithmOption = "blake3",
    json_out: JsonOption = False,
) -> None:
    """Print the model id and every file, header and tensor digest."""
    with _progress("hashing", not json_out) as progress:
        found = build_manifest(path, _provider(path, keys, kek_file), algorithm=algorithm, progress=progress)
    if json_out:
        print_json(found.to_json())
        return
    console.print(f"model id [bold]{found.model_id}[/]")
    table = data_table("file", "bytes", "digest", fold=("file",))
    table.caption = "digest: of the whole file, or of a safetensors file's raw header"
    for record in sorted(found.files.values(), key=lambda r: r.name):
        digest = record.header_digest if record.safetensors else record.digest or ""
        table.add_row(record.name, f"{record.size:,}", digest[:32] + "…")
    console.print(table)
    console.print(f"{len(found.tensors)} tensors digested individually (--json lists them)")


def sign(
    path: Annotated[Path, typer.Argument(help="Model directory, plain or sealed.")],
    signer_key: Annotated[Path, typer.Option("--signer-key", help="PEM private key (strongroom keys gen-signer).")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    algorithm: AlgorithmOption = "blake3",
    resource_algorithm: Annotated[
        str,
        typer.Option(
            "--resource-algorithm",
            help="Whole-file digest for the OMS resources: sha256 (default; what `model_signing verify` computes) "
            "or blake3 (faster; Strongroom and model-signing's library only).",
        ),
    ] = DEFAULT_RESOURCE_ALGORITHM,
    json_out: JsonOption = False,
) -> None:
    """Sign a model: writes DIR/model.sig (Sigstore bundle, DSSE, in-toto statement, OMS v1.0 predicate)."""
    signer = Signer.load(signer_key)
    with _progress("signing", not json_out) as progress:
        result = sign_model(
            path, signer, _provider(path, keys, kek_file), algorithm=algorithm,
            resource_algorithm=resource_algorithm, progress=progress,
        )  # fmt: skip
    if json_out:
        print_json(result.to_json())
        return
    console.print(
        f"signed {result.files} files, {result.tensors} tensors: model id [bold]{result.model_id}[/]\n"
        f"wrote {result.signature} (key {result.key_id[:16]}, {result.resource_algorithm} resources)"
    )
    if not result.reference_cli_verifiable:
        why = "an Ed25519 key" if signer.key_type == "ed25519" else f"{result.resource_algorithm} resources"
        console.print(f"note: `model_signing verify key` cannot check this signature ({why}); strongroom verify can")


def verify(
    path: Annotated[Path, typer.Argument(help="Model directory, plain or sealed.")],
    signer: Annotated[Path, typer.Option("--signer", help="Trusted PEM public key.")],
    keys: KeysOption = None,
    kek_file: KekFileOption = None,
    signature: Annotated[
        Path | None, typer.Option("--signature", help="Signature file (default DIR/model.sig).")
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="Extra path to leave out (repeatable).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Check the signature and every file and tensor digest; exit 1 naming what failed."""
    verifier = Verifier.load(signer)
    try:
        with _progress("verifying", not json_out) as progress:
            result = verify_model(
                path, verifier, _provider(path, keys, kek_file), signature=signature,
                ignore_paths=tuple(ignore or ()), progress=progress,
            )  # fmt: skip
    except VerificationError as exc:
        if json_out:
            print_json({"ok": False, "error": str(exc), "failures": [f.to_json() for f in exc.failures]})
            raise typer.Exit(1) from None
        raise
    if json_out:
        print_json(result.to_json())
        return
    what = (
        f"{result.files} files, {result.tensors} tensors" if result.format == "strongroom" else f"{result.files} files"
    )
    ident = f"model id [bold]{result.model_id}[/]" if result.model_id else "OMS signature (no per-tensor manifest)"
    console.print(f"[green]verified[/] {what}: {ident}, signed by key {result.key_id[:16]}")


def diff(
    a: Annotated[Path, typer.Argument(help="First model directory (plain or sealed).")],
    b: Annotated[Path, typer.Argument(help="Second model directory (plain or sealed).")],
    keys: KeysOption = None,
    keys_b: Annotated[Path | None, typer.Option("--keys-b", help="Key directory for B if it differs.")] = None,
    kek_file: KekFileOption = None,
    json_out: JsonOption = False,
) -> None:
    """Added, removed, renamed and changed tensors and files; changed tensors by relative L2, largest first.

    Exits 0 when the models are identical, 1 when they differ."""
    report = diff_models(a, b, _provider(a, keys, kek_file), _provider(b, keys_b or keys, kek_file))
    if json_out:
        print_json(report)
    else:
        console.print("identical" if report["identical"] else f"{report['model_id_a']} != {report['model_id_b']}")
        for kind in ("added", "removed"):
            for name in report["files"][kind]:
                console.print(f"file {kind}: {name}")
        for change in report["files"]["changed"]:
            console.print(f"file changed: {change['name']} ({change['reason']})")
        for kind in ("added", "removed"):
            for name in report["tensors"][kind]:
                console.print(f"tensor {kind}: {name}")
        for pair in report["tensors"]["renamed"]:
            console.print(f"tensor renamed: {pair['from']} -> {pair['to']}")
        if report["tensors"]["changed"]:
            table = data_table("tensor", "elements changed", "relative L2", fold=("tensor",))
            for c in report["tensors"]["changed"]:
                changed = "?" if c["elements_changed"] is None else f"{c['elements_changed']:,}"
                rel = f"{c['relative_l2']:.3e}" if c["relative_l2"] is not None else c["note"] or "?"
                table.add_row(c["tensor"], f"{changed} / {c['elements']:,}", rel)
            console.print(table)
    if not report["identical"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("manifest")(manifest)
    app.command("sign")(sign)
    app.command("verify")(verify)
    app.command("diff")(diff)
