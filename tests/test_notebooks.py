"""The course notebooks' form, and the converter that hands them to nbval.

Running the notebooks is nbval's job (``bash tools/bootstrap.sh test`` executes every notebook of
lessons/, solutions/ and exercises/); these tests check what nbval cannot see: the file names, a
title and learning goals up front, valid Python in every code cell, only ``tags`` as cell metadata,
``assert`` cells in every lesson, a lesson for every solution notebook, and a faithful conversion.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


mx = _load("make_exercises")
bn = _load("build_notebooks")

SOURCES = [p.relative_to(ROOT).as_posix() for p in bn.sources(ROOT)]
NAME = re.compile(r"(?P<number>\d\d)_[a-z0-9]+(_[a-z0-9]+)*\.py")


def _code(cells) -> list[tuple[int, str]]:
    return [(c.first_line, "".join(c.lines[1:])) for c in cells if c.kind == "code"]


if SOURCES:  # parametrizing over nothing would count as a skip
    @pytest.mark.parametrize("rel", SOURCES)
    def test_notebook_source_follows_the_course_format(rel):
        path = ROOT / rel
        name = NAME.fullmatch(path.name)
        assert name and int(name["number"]) <= 16, f"{rel}: name it NN_slug.py, NN = 00..16"
        cells = mx.parse_cells(path.read_text(encoding="utf-8"), rel)  # only tags, known tags
        content = [c for c in cells if c.kind != "preamble" or "".join(c.lines).strip()]
        first = content[1] if rel.startswith("exercises/") else content[0]  # after the note
        assert first.kind == "markdown", f"{rel}: the first cell must be the markdown title"
        title = next(line for line in first.lines[1:] if line.strip() != "#")
        assert re.match(rf"# # {name['number']}\b", title), \
            f"{rel}:{first.first_line + 1}: the title must read '# {name['number']} ...'"
        for first_line, source in _code(cells):
            try:
                ast.parse(source)
            except SyntaxError as err:
                pytest.fail(f"{rel}:{first_line + (err.lineno or 0)}: {err.msg}")
        if rel.startswith("lessons/"):
            assert "learning goals" in "".join(first.lines).lower(), \
                f"{rel}: the first cell must state the learning goals"
            asserts = [s for _, s in _code(cells) if any(isinstance(n, ast.Assert)
                                                         for n in ast.walk(ast.parse(s)))]
            assert asserts, f"{rel}: a lesson checks its claims with assert cells; found none"


def test_every_solution_notebook_has_its_lesson():
    orphans = [p.name for p in (ROOT / "solutions").glob("*.py")
               if not (ROOT / "lessons" / p.name).exists()]
    assert orphans == [], f"solutions without lessons/<same name>: {orphans}"


def test_build_converts_cells_tags_and_kernel(tmp_path):
    source = tmp_path / "lessons" / "99_tiny.py"
    source.parent.mkdir()
    source.write_text('# %% [markdown]\n# # 99 Tiny\n\n# %% tags=["raises-exception"]\n'
                      'raise ValueError("shown")\n\n# %%\nx = 1\n')
    (built,) = bn.build([source], out=tmp_path / "build", root=tmp_path)
    assert built == tmp_path / "build" / "lessons" / "99_tiny.ipynb"
    notebook = json.loads(built.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert [c["cell_type"] for c in notebook["cells"]] == ["markdown", "code", "code"]
    assert notebook["cells"][1]["metadata"] == {"tags": ["raises-exception"]}
    assert ["".join(c["source"]) for c in notebook["cells"]] == ["# 99 Tiny", 'raise ValueError("shown")',
                                                        "x = 1"]
    roundtrip = jupytext.reads(built.read_text(), fmt="ipynb")
    assert len(roundtrip.cells) == 3


def test_build_mirrors_the_repository_layout():
    assert bn.target(ROOT / "lessons" / "03_x.py") == ROOT / "build" / "notebooks" / "lessons" / \
        "03_x.ipynb"
    outside = Path("/elsewhere/solutions/03_x.py")
    assert bn.target(outside) == ROOT / "build" / "notebooks" / "solutions" / "03_x.ipynb"
