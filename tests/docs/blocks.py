"""The shell blocks of the project's Markdown documents, and systemd unit files as the deployment guide writes
them: what tests/docs/test_docs.py runs or checks."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[2]
SHELLS = ("bash", "sh", "shell")
# the line before a block that is not run, with the kind of check that stands in for running it
MARKER = re.compile(r"<!-- docs-test: skip ([a-z-]+) -->")
FENCE = re.compile(r"^```\s*([A-Za-z0-9_-]*)\s*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # the opening fence's line number, from 1
    skip: str | None  # the marker's kind, None when the block is run
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[list[str]]:
        """Each command line (backslash continuations joined, comments dropped), split as the shell would."""
        joined = self.text.replace("\\\n", " ")
        return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def shell_blocks(doc: Path) -> list[Block]:
    """Every fenced shell block of ``doc``, in order, with its skip marker (if the line before holds one)."""
    lines = doc.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if opened.group(1) in SHELLS:
            before = lines[i - 1].strip() if i > 0 else ""
            marker = MARKER.fullmatch(before)
            blocks.append(Block(doc, i + 1, marker.group(1) if marker else None, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


@dataclass
class Unit:
    """The parts of a systemd service unit the deployment guide uses."""

    path: Path
    exec_start: list[str]
    user: str | None
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[Path] = field(default_factory=list)
    read_write_paths: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path) -> Unit:
        section = ""
        values: dict[str, list[str]] = {}
        text = path.read_text().replace("\\\n", " ")
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            if section == "Service":
                values.setdefault(key.strip(), []).append(value.strip())
        (exec_start,) = values["ExecStart"]
        environment: dict[str, str] = {}
        for item in values.get("Environment", []):
            for assignment in shlex.split(item):
                name, _, value = assignment.partition("=")
                environment[name] = value
        return cls(
            path=path,
            exec_start=shlex.split(exec_start),
            user=(values.get("User") or [None])[0],
            environment=environment,
            environment_files=[Path(v.lstrip("-")) for v in values.get("EnvironmentFile", [])],
            read_write_paths=[p for v in values.get("ReadWritePaths", []) for p in v.split()],
        )

    def env(self) -> dict[str, str]:
        """The environment systemd gives ExecStart: a plain PATH, the EnvironmentFile= lines, Environment=."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        for file in self.environment_files:
            for line in file.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    name, _, value = line.partition("=")
                    env[name.strip()] = value.strip()
        env.update(self.environment)
        return env

    def option(self, name: str) -> str | None:
        args = self.exec_start
        return args[args.index(name) + 1] if name in args else None
