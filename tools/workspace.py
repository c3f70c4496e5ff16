"""Copy the exercise notebooks into the student's workspace, never overwriting a file that is there.

``exercises/`` is generated from ``solutions/`` and belongs to the repository: the test suite fails
when it differs from what ``tools/make_exercises.py`` makes, and regenerating it would replace
whatever was typed into it. Students work in ``workspace/`` instead (git-ignored). The ``lab``
command of ``tools/bootstrap.sh`` runs this tool before opening JupyterLab:

* an exercise that is not in ``workspace/`` yet is copied there;
* a file that is already there is left exactly as it is (it holds the student's answers), and the
  tool says so when it differs from the repository's exercise;
* to start an exercise afresh, delete or rename your copy and run the tool (or ``lab``) again.

    python tools/workspace.py                  # exercises/ -> workspace/ (the default)
    python tools/workspace.py --workspace DIR  # another folder

Standard library only: it runs before anything else is imported.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Report", "populate", "main"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Report:
    """What :func:`populate` did: the files it copied, and those it kept (and which of them differ)."""
    copied: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    differ: list[Path] = field(default_factory=list)  # kept files unlike the repository's exercise


def populate(exercises: Path, workspace: Path) -> Report:
    """Copy every ``exercises/[0-9]*.py`` missing from ``workspace``; never touch an existing file."""
    report = Report()
    workspace.mkdir(parents=True, exist_ok=True)
    for source in sorted(exercises.glob("[0-9]*.py")):
        target = workspace / source.name
        try:
            with open(target, "xb") as out:  # 'x': fails if the file exists, so nothing is replaced
                out.write(source.read_bytes())
        except FileExistsError:
            report.kept.append(target)
            if target.read_bytes() != source.read_bytes():
                report.differ.append(target)
            continue
        shutil.copymode(source, target)
        report.copied.append(target)
    return report


def describe(report: Report, exercises: Path, workspace: Path, root: Path = ROOT) -> str:
    """The message printed for the student."""
    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return str(p)
    lines = [f"workspace: your exercise notebooks are in {rel(workspace)}/ (git ignores it); "
             f"work there, not in {rel(exercises)}/"]
    if report.copied:
        lines.append(f"  copied {len(report.copied)} new exercise(s): "
                     + ", ".join(p.name for p in report.copied))
    if report.kept:
        lines.append(f"  kept {len(report.kept)} file(s) already there, untouched")
    for p in report.differ:
        lines.append(f"  {rel(p)} differs from {rel(exercises / p.name)} (your answers, or a newer "
                     f"version of the exercise)")
    lines.append(f"  for a fresh copy of an exercise: delete or rename your file in {rel(workspace)}/ "
                 f"and run `bash tools/bootstrap.sh lab` (or `python tools/workspace.py`) again")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercises", type=Path, default=ROOT / "exercises",
                        help="where the generated exercises are (default: exercises/)")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace",
                        help="the student's folder (default: workspace/)")
    args = parser.parse_args(argv)
    if not args.exercises.is_dir():
        print(f"error: no exercises folder at {args.exercises}", file=sys.stderr)
        return 2
    report = populate(args.exercises, args.workspace)
    print(describe(report, args.exercises, args.workspace), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
