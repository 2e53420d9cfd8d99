"""A virtual environment with Strongroom's base install and nothing else: no extras, no system site-packages.

``pip install -e .`` into a fresh venv takes ~17 s here with the package index reachable, and fails offline
(the index holds no wheel for every base dependency, and setuptools must be fetched for the build). So by
default the venv is made the fast, offline way: ``python -m venv --without-pip``, a ``.pth`` pointing at this
tree's ``src``, and links to exactly the installed distributions that the base dependencies in
``pyproject.toml`` need, transitively (markers and requested extras such as ``psycopg[binary]`` evaluated the
way pip does). Only what a base install would bring is importable; torch, transformers, safetensors, scipy,
av, faster-whisper and the test tools are not. ``STRONGROOM_TEST_PIP_VENV=1`` builds it with
``pip install -e .`` instead (needs the index).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_distributions() -> dict[str, metadata.Distribution]:
    """The installed distributions a base install of this tree needs, by normalised name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [(Requirement(r), "") for r in project["dependencies"]]
    found: dict[str, metadata.Distribution] = {}
    extras_done: set[tuple[str, str]] = set()
    while wanted:
        requirement, extra = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = _name(requirement.name)
        dist = found.get(name) or metadata.distribution(requirement.name)
        found[name] = dist
        for want in ["", *sorted(requirement.extras)]:
            if (name, want) in extras_done:
                continue
            extras_done.add((name, want))
            wanted += [(Requirement(r), want) for r in dist.requires or []]
    return found


def _link_distribution(dist: metadata.Distribution, site: Path) -> None:
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    for top in sorted(tops - {"__pycache__"}):
        source = Path(str(dist.locate_file(top)))
        target = site / top
        if source.exists() and not target.exists():
            target.symlink_to(source)


def make_base_venv(where: Path) -> Path:
    """Create the venv under ``where``; returns its python."""
    venv = where / "base-venv"
    python = venv / "bin" / "python"
    if os.environ.get("STRONGROOM_TEST_PIP_VENV") == "1":
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
        return python
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    for dist in base_distributions().values():
        _link_distribution(dist, site)
    (site / "strongroom-src.pth").write_text(str(ROOT / "src") + "\n")
    return python


def venv_env(**extra: str) -> dict[str, str]:
    """An environment for the venv's python: no PYTHONPATH, no user site, no STRONGROOM_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith(("STRONGROOM_", "_STRONGROOM"))
    }
    env.update({"PYTHONNOUSERSITE": "1", "COLUMNS": "100", "NO_COLOR": "1"})
    env.update(extra)
    return env
