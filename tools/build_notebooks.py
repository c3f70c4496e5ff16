"""Convert the jupytext sources of the course into ``.ipynb`` files under ``build/notebooks/``.

The test command runs them with nbval. The layout mirrors the repository
(``lessons/03_x.py`` -> ``build/notebooks/lessons/03_x.ipynb``), and nbval starts each kernel in the
notebook's own folder, as JupyterLab does: notebooks must not read files by relative path (data and
weights come through the installed ``diffcourse`` package), and whatever a notebook writes under
test lands in the git-ignored ``build/``.

    python tools/build_notebooks.py                    # all of lessons/, solutions/, exercises/
    python tools/build_notebooks.py lessons/03_x.py    # only these (any path to a .py notebook)

Prints the path of each notebook it wrote, one per line.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lessons", "solutions", "exercises")
OUT = ROOT / "build" / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def sources(root: Path = ROOT) -> list[Path]:
    """Every notebook source of the course, in lesson order within each folder."""
    return [p for folder in FOLDERS for p in sorted((root / folder).glob("[0-9]*.py"))]


def target(source: Path, out: Path = OUT, root: Path = ROOT) -> Path:
    """Where the notebook built from ``source`` goes (mirrored below ``out``)."""
    source = source.resolve()
    try:
        rel = source.relative_to(root)
    except ValueError:  # a notebook outside the repository: keep its folder name
        rel = Path(source.parent.name) / source.name
    return out / rel.with_suffix(".ipynb")


def build(paths: list[Path], out: Path = OUT, root: Path = ROOT) -> list[Path]:
    """Convert each percent-format ``.py`` in ``paths`` to an ``.ipynb`` below ``out``."""
    written = []
    for source in paths:
        notebook = jupytext.read(source, fmt="py:percent")
        notebook.metadata["kernelspec"] = dict(KERNELSPEC)
        dest = target(source, out, root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        jupytext.write(notebook, dest, fmt="ipynb")
        written.append(dest)
    return written


def main(argv: list[str]) -> int:
    if argv:
        paths = [Path(a) for a in argv]
        missing = [str(p) for p in paths if not p.is_file() or p.suffix != ".py"]
        if missing:
            print(f"error: not a .py notebook: {', '.join(missing)}", file=sys.stderr)
            return 2
    else:
        shutil.rmtree(OUT, ignore_errors=True)  # no stale notebook of a deleted source survives
        paths = sources()
    OUT.mkdir(parents=True, exist_ok=True)
    for dest in build(paths):
        print(dest.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
