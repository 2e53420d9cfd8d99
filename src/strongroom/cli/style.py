"""Help in the usual style, for every command of the app, present and future.

Typer 0.29 renders a flag as ``--json <bool>`` and arguments as ``{src} {dst}`` in usage lines. Strongroom's
help follows the long-standing convention instead: ``Usage: strongroom seal [OPTIONS] SRC DST``, flags with
no value type, values as ``PATH``, ``INTEGER``, ``TEXT`` or ``[a|b|c]``. Docstrings are reflowed (a single
newline inside a paragraph is a space) and RST double backquotes become plain quotes. ``apply`` is idempotent
and a no-op on a typer without these hooks (older typer already renders this way).
"""

from __future__ import annotations

import re
from typing import Any

_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}
_applied = False


def value_label(typer_label: str | None) -> str | None:
    """``<path>`` -> ``PATH``, ``<int>`` -> ``INTEGER``, ``<a|b>`` -> ``[a|b]``, ``<list[path]>`` -> ``PATH``."""
    if not typer_label:
        return typer_label
    label = typer_label
    if label.startswith("<") and label.endswith(">"):
        label = label[1:-1]
    while label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if "|" in label:
        return f"[{label}]"
    return _TYPE_NAMES.get(label, label.upper())


def apply() -> None:
    """Patch typer's help rendering once (class level, so the generated help option is covered too)."""
    global _applied
    if _applied:
        return
    _applied = True
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover
        return
    if not hasattr(TyperArgument, "_usage_display_name") or not hasattr(TyperOption, "display_type_rich"):
        return  # pragma: no cover - an older or newer typer: leave its rendering alone

    def usage_name(self: Any) -> str:
        name = str(self.metavar or self.name or "").upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def option_type(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:
            return str(self.metavar)
        if getattr(self, "is_bool_flag", False) or getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        label = value_label(self.display_type(ctx))
        return f"{label}..." if label and self.nargs != 1 else label

    def argument_type(self: Any, ctx: Any) -> str | None:
        return value_label(self.display_type(ctx))

    setattr(TyperArgument, "_usage_display_name", usage_name)  # noqa: B010 - typed methods, patched on purpose
    setattr(TyperOption, "display_type_rich", option_type)  # noqa: B010
    setattr(TyperArgument, "display_type_rich", argument_type)  # noqa: B010


_RST_LITERAL = re.compile(r"``([^`]+)``")


def reflow(text: str | None) -> str | None:
    """One paragraph per blank-line-separated block; RST literals as quotes; ``\\b`` blocks kept verbatim."""
    if not text:
        return text
    import inspect

    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        if paragraph.startswith("\b") or any(line.startswith(("  ", "- ", "* ")) for line in paragraph.splitlines()):
            out.append(paragraph)
        else:
            out.append(" ".join(paragraph.split()))
    return _RST_LITERAL.sub(r"'\1'", "\n\n".join(out))


def polish(command: Any) -> Any:
    """Reflow the help of ``command`` and every subcommand; returns ``command``."""
    apply()
    command.help = reflow(command.help)
    if getattr(command, "short_help", None):
        command.short_help = reflow(command.short_help)
    for sub in getattr(command, "commands", {}).values():
        polish(sub)
    return command
