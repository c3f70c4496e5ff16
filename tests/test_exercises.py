"""The exercise generator (tools/make_exercises.py) and the generated exercises/ folder.

* exercises/ is exactly what the generator makes from solutions/ (fails when stale);
* no non-trivial line of a solution block or of a solution-tagged cell appears in any exercise
  (checked by a scanner written here, independent of the generator);
* the generator refuses each kind of malformed solution notebook, naming file and line;
* a generated stub really raises NotImplementedError, and the rest of the notebook is untouched.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
mx = importlib.util.module_from_spec(_spec)
sys.modules["make_exercises"] = mx  # dataclasses look their module up by name
_spec.loader.exec_module(mx)

SOLUTION = '''# %% [markdown]
# # 99 A tiny lesson
# Goal: double a number.

# %%
def double(x):
    """Return 2 x."""
    offset = 0
    ### BEGIN SOLUTION
    result = 2 * x + offset
    ### END SOLUTION
    return result


# %% tags=["solution"]
worked_example = double(21)

# %% [markdown] tags=["solution"]
# Why: doubling_is_adding_a_number_to_itself.

# %% tags=["raises-exception"]
after = "kept"
'''


# ---------------------------------------------------------------- an independent leak scanner
def _secret_lines(solution: str) -> list[str]:
    """Lines inside solution blocks or solution-tagged cells, found by plain text scanning."""
    secret, in_block, in_tagged = [], False, False
    for line in solution.splitlines():
        if line.startswith("# %%"):
            in_tagged = bool(re.search(r'tags=\[[^\]]*"solution"', line))
            continue
        if line.strip() in (mx.BEGIN, mx.END):
            in_block = line.strip() == mx.BEGIN
            continue
        if in_block or in_tagged:
            secret.append(line.strip())
    return secret


def _non_trivial(line: str) -> bool:
    """Worth hiding: not blank, not an import, not a one-word statement, at least 12 characters."""
    if len(line) < 12 or line.startswith(("import ", "from ")):
        return False
    if line.startswith("#") and len(line.lstrip("# ")) < 12:
        return False
    return not re.fullmatch(r"(return|pass|else:|try:|break|continue)?\s*[\w.]*[)\]}:,]*", line)


def leaked_lines(solution: str, exercises: dict[str, str]) -> list[str]:
    """'exercise: line' for each non-trivial secret line of ``solution`` found in an exercise."""
    secrets = {s for s in _secret_lines(solution) if _non_trivial(s)}
    return [f"{name}: {line.strip()}" for name, text in exercises.items()
            for line in text.splitlines() if line.strip() in secrets]


def test_leak_scanner_finds_a_leak_and_passes_the_generated_exercise():
    exercise = mx.make_exercise(SOLUTION, "sol.py")
    assert leaked_lines(SOLUTION, {"ex.py": exercise}) == []
    leaky = exercise + "\n# %%\nresult = 2 * x + offset\n"
    assert leaked_lines(SOLUTION, {"ex.py": leaky}) == ["ex.py: result = 2 * x + offset"]
    tagged_leak = exercise + "\n# %%\nworked_example = double(21)\n"
    assert leaked_lines(SOLUTION, {"ex.py": tagged_leak}) == ["ex.py: worked_example = double(21)"]


# ---------------------------------------------------------------- the repository's notebooks
def test_exercises_are_up_to_date():
    problems = mx.stale_exercises(ROOT)
    assert problems == [], "exercises/ is stale; run `python tools/make_exercises.py`:\n" + \
        "\n".join(problems)


def test_no_solution_line_appears_in_any_exercise():
    exercises = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "exercises").glob("*.py")}
    leaks = [f"solutions/{p.name} -> {leak}" for p in sorted((ROOT / "solutions").glob("*.py"))
             for leak in leaked_lines(p.read_text(encoding="utf-8"), exercises)]
    assert leaks == [], "solution lines leaked into exercises:\n" + "\n".join(leaks)


def test_every_solution_block_became_a_stub():
    for solution in sorted((ROOT / "solutions").glob("*.py")):
        blocks = mx.solution_blocks(solution.read_text(encoding="utf-8"), solution.name)
        exercise = (ROOT / "exercises" / solution.name)
        stubs = exercise.read_text(encoding="utf-8").count(mx.STUB) if exercise.exists() else 0
        assert len(blocks) >= 2, f"solutions/{solution.name} has {len(blocks)} exercise(s); " \
            "the course asks for at least two"
        assert stubs == len(blocks), f"exercises/{solution.name}: {stubs} stubs for {len(blocks)} blocks"


# ---------------------------------------------------------------- the generator on small strings
def test_stub_raises_and_the_rest_is_kept():
    exercise = mx.make_exercise(SOLUTION, "sol.py")
    solved, blank = {}, {}
    exec(compile(SOLUTION, "sol.py", "exec"), solved)
    exec(compile(exercise, "ex.py", "exec"), blank)
    assert solved["double"](21) == 42
    with pytest.raises(NotImplementedError, match="Exercise: complete this function"):
        blank["double"](21)
    assert blank["after"] == "kept" and "worked_example" not in blank
    assert "    offset = 0\n    " + mx.STUB + "\n    return result\n" in exercise


def test_solution_cells_are_dropped_and_a_note_leads():
    exercise = mx.make_exercise(SOLUTION, "solutions/99_tiny.py", source="solutions/99_tiny.py")
    cells = jupytext.reads(exercise, fmt="py:percent").cells
    solution_cells = jupytext.reads(SOLUTION, fmt="py:percent").cells
    assert len(cells) == len(solution_cells) - 2 + 1  # two solution cells dropped, the note added
    assert cells[0].cell_type == "markdown" and "solutions/99_tiny.py" in cells[0].source
    assert "check_" in cells[0].source and "generated" in cells[0].source
    assert cells[1].source == solution_cells[0].source
    assert cells[-1].metadata == {"tags": ["raises-exception"]}
    assert "doubling_is_adding" not in exercise and "worked_example" not in exercise


def test_solution_blocks_report_function_and_lines():
    (block,) = mx.solution_blocks(SOLUTION, "sol.py")
    assert (block.function, block.begin, block.end) == ("double", 9, 11)
    assert block.body == ["    result = 2 * x + offset\n"]


def _cell(body: str, header: str = "# %%") -> str:
    return f"# %% [markdown]\n# # title\n\n{header}\n{body}"


FUNC = "def f(x):\n    {begin}\n    y = x\n    {end}\n    return y\n"
OK = FUNC.format(begin=mx.BEGIN, end=mx.END)

MALFORMED = {
    # name: (text, line the error must name, words the message must contain)
    "begin-never-closed": (_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n"), 6, "never closed"),
    "end-without-begin": (_cell("def f(x):\n    return x\n    ### END SOLUTION\n"), 7, "without"),
    "nested": (_cell("def f(x):\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return x\n"
                     "    ### END SOLUTION\n    ### END SOLUTION\n"), 7, "nested"),
    "block-across-cells": (_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x\n\n# %%\n"
                                 "    ### END SOLUTION\n"), 6, "never closed"),
    "marker-in-markdown": (_cell("# ### BEGIN SOLUTION\n# x\n# ### END SOLUTION\n",
                                 "# %% [markdown]"), 5, "markdown"),
    "plural": (_cell(FUNC.format(begin="### BEGIN SOLUTIONS", end=mx.END)), 6, "looks like"),
    "two-hashes": (_cell(FUNC.format(begin="## BEGIN SOLUTION", end=mx.END)), 6, "looks like"),
    "four-hashes": (_cell(FUNC.format(begin=mx.BEGIN, end="#### END SOLUTION")), 8, "looks like"),
    "lower-case": (_cell(FUNC.format(begin="### begin solution", end=mx.END)), 6, "looks like"),
    "title-case": (_cell(FUNC.format(begin=mx.BEGIN, end="### End Solution")), 8, "looks like"),
    "no-space": (_cell(FUNC.format(begin="###BEGIN SOLUTION", end=mx.END)), 6, "looks like"),
    "underscore": (_cell(FUNC.format(begin=mx.BEGIN, end="### END_SOLUTION")), 8, "looks like"),
    "trailing-text": (_cell(FUNC.format(begin=mx.BEGIN + "  # here", end=mx.END)), 6, "looks like"),
    "marker-after-code": (_cell("def f(x):\n    return x  ### BEGIN SOLUTION\n"), 6, "looks like"),
    "metadata-key-typo": (_cell(OK, '# %% tag=["solution"]'), 4, "unknown cell-metadata key 'tag'"),
    "second-metadata-key": (_cell(OK, '# %% tags=["solution"] active="py"'), 4, "cannot read"),
    "json-metadata": (_cell(OK, '# %% {"tags": ["solution"]}'), 4, "unreadable"),
    "cell-title": (_cell(OK, "# %% Exercise 1"), 4, "unreadable"),
    "tag-typo": (_cell(OK, '# %% tags=["solutions"]'), 4, "unknown tag"),
    "tag-case": (_cell(OK, '# %% tags=["Solution"]'), 4, "unknown tag"),
    "tags-not-a-list": (_cell(OK, '# %% tags="solution"'), 4, "JSON list"),
    "cell-type-typo": (_cell(OK, "# %% [markdwon]"), 4, "unknown cell type"),
    "header-without-space": (_cell(OK, '#%% tags=["solution"]'), 4, "malformed cell header"),
    "indented-header": (_cell(OK, '  # %% tags=["solution"]'), 4, "malformed cell header"),
    "top-level-block": (_cell(f"{mx.BEGIN}\ny = 1\n{mx.END}\n"), 5, "function body"),
    "block-inside-if": (_cell(f"def f(x):\n    if x:\n        {mx.BEGIN}\n        x = 1\n"
                              f"        {mx.END}\n    return x\n"), 7, "function body"),
    "comments-only-block": (_cell(f"def f(x):\n    {mx.BEGIN}\n    # x\n    {mx.END}\n"
                                  "    return x\n"), 6, "function body"),
    "end-indentation": (_cell(f"def f(x):\n    {mx.BEGIN}\n    x = 1\n{mx.END}\n    return x\n"),
                        8, "indentation"),
    "marker-in-solution-cell": (_cell(OK, '# %% tags=["solution"]'), 6, "tagged solution"),
    "syntax-error": (_cell(f"def f(x):\n    {mx.BEGIN}\n    x = (\n    {mx.END}\n"), 7, "not valid"),
    "marker-in-preamble": (f"{mx.BEGIN}\n{mx.END}\n" + _cell(OK), 1, "preamble"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_generator_refuses_malformed_solution(name):
    text, line, words = MALFORMED[name]
    with pytest.raises(mx.ExerciseError) as err:
        mx.make_exercise(text, "sol.py")
    assert str(err.value).startswith(f"sol.py:{line}: "), str(err.value)
    assert words in str(err.value)


def test_well_formed_variants_are_accepted():
    """The near-miss cases above differ from these only in the detail that is refused."""
    assert mx.STUB in mx.make_exercise(_cell(OK), "sol.py")
    dropped = mx.make_exercise(_cell("x = 1\n", '# %% tags=["solution"]'), "sol.py")
    assert "x = 1" not in dropped
    magic = mx.make_exercise(_cell("# %%time\nx = 1\n"), "sol.py")  # a cell magic, not a header
    assert [c.source for c in jupytext.reads(magic, fmt="py:percent").cells[-1:]] == ["%%time\nx = 1"]
    prose = _cell("# The solution is to begin with the end in mind.\n", "# %% [markdown]")
    assert "begin with the end" in mx.make_exercise(prose, "sol.py")
    nested_def = _cell(f"def f(x):\n    def g(y):\n        {mx.BEGIN}\n        y = 2 * y\n"
                       f"        {mx.END}\n        return y\n    return g(x)\n")
    ns = {}
    exec(mx.make_exercise(nested_def, "sol.py"), ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)


# ---------------------------------------------------------------- the command line
def test_cli_check_write_and_orphans(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "exercises").mkdir()
    (tmp_path / "solutions" / "99_tiny.py").write_text(SOLUTION)
    orphan = tmp_path / "exercises" / "98_gone.py"
    orphan.write_text(mx.make_exercise(SOLUTION, "solutions/98_gone.py"))  # generated, untouched
    assert mx.main(["--check", "--root", str(tmp_path)]) == 1
    assert "99_tiny.py is missing" in capsys.readouterr().err
    assert mx.main(["--root", str(tmp_path)]) == 0
    assert not orphan.exists()
    assert mx.main(["--check", "--root", str(tmp_path)]) == 0
    generated = tmp_path / "exercises" / "99_tiny.py"
    generated.write_text(generated.read_text() + "\n# %%\nprint('edited by hand')\n")
    assert mx.main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert mx.main(["--force", "--root", str(tmp_path)]) == 0
    (tmp_path / "solutions" / "99_tiny.py").write_text(MALFORMED["plural"][0])
    assert mx.main(["--root", str(tmp_path)]) == 2
    assert "solutions/99_tiny.py:6" in capsys.readouterr().err


# ---------------------------------------------------------------- never overwrite an edited exercise
def _repo(tmp_path: Path) -> Path:
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "99_tiny.py").write_text(SOLUTION)
    assert mx.main(["--root", str(tmp_path)]) == 0
    return tmp_path / "exercises" / "99_tiny.py"


def test_fingerprint_tells_generated_text_from_edited_text():
    exercise = mx.make_exercise(SOLUTION, "sol.py")
    assert mx.is_generated(exercise)
    answered = exercise.replace(mx.STUB, "result = 2 * x + offset", 1)
    assert answered != exercise and not mx.is_generated(answered)
    assert not mx.is_generated("# %%\nx = 1\n")  # no fingerprint at all
    changed = mx.make_exercise(SOLUTION.replace("offset = 0", "offset = 1"), "sol.py")
    assert mx.is_generated(changed) and mx.fingerprint(changed) != mx.fingerprint(exercise)


def test_generator_refuses_to_overwrite_an_answered_exercise(tmp_path, capsys):
    exercise = _repo(tmp_path)
    answered = exercise.read_text().replace(mx.STUB, "result = 2 * x  # my answer", 1)
    exercise.write_text(answered)
    (tmp_path / "solutions" / "99_tiny.py").write_text(SOLUTION.replace("offset = 0", "offset = 1"))
    capsys.readouterr()
    assert mx.main(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "refused: exercises/99_tiny.py was edited by hand" in err and "--force" in err
    assert exercise.read_text() == answered  # the answer survives
    assert mx.main(["--check", "--root", str(tmp_path)]) == 1  # and is still reported as stale
    assert mx.main(["--force", "--root", str(tmp_path)]) == 0
    assert "my answer" not in exercise.read_text() and "offset = 1" in exercise.read_text()


def test_generator_replaces_its_own_output_when_the_solution_changes(tmp_path):
    exercise = _repo(tmp_path)
    (tmp_path / "solutions" / "99_tiny.py").write_text(SOLUTION.replace("offset = 0", "offset = 1"))
    assert mx.main(["--root", str(tmp_path)]) == 0
    assert "offset = 1" in exercise.read_text() and mx.is_generated(exercise.read_text())


def test_generator_refuses_to_remove_an_orphan_it_did_not_write(tmp_path, capsys):
    _repo(tmp_path)
    mine = tmp_path / "exercises" / "97_my_notes.py"
    mine.write_text("# %%\nprint('mine')\n")
    assert mx.main(["--root", str(tmp_path)]) == 1
    assert "refused: exercises/97_my_notes.py" in capsys.readouterr().err and mine.exists()
    assert mx.main(["--force", "--root", str(tmp_path)]) == 0 and not mine.exists()


def test_repository_exercises_carry_a_valid_fingerprint():
    unmarked = [p.name for p in sorted((ROOT / "exercises").glob("*.py"))
                if not mx.is_generated(p.read_text(encoding="utf-8"))]
    assert unmarked == [], f"exercises edited after generation (or never generated): {unmarked}"


# ---------------------------------------------------------------- the student's workspace
_wspec = importlib.util.spec_from_file_location("workspace", ROOT / "tools" / "workspace.py")
ws = importlib.util.module_from_spec(_wspec)
sys.modules["workspace"] = ws
_wspec.loader.exec_module(ws)


def test_workspace_copies_missing_exercises_and_keeps_existing_ones(tmp_path):
    exercises, workspace = tmp_path / "exercises", tmp_path / "workspace"
    exercises.mkdir()
    (exercises / "01_a.py").write_text("# %%\nraise NotImplementedError\n")
    (exercises / "02_b.py").write_text("# %%\nb = 2\n")
    (exercises / "README.md").write_text("not a notebook")
    report = ws.populate(exercises, workspace)
    assert sorted(p.name for p in report.copied) == ["01_a.py", "02_b.py"]
    assert not (workspace / "README.md").exists()
    answered = "# %%\nanswer = 42\n"
    (workspace / "01_a.py").write_text(answered)
    (exercises / "01_a.py").write_text("# %%\nraise NotImplementedError  # newer version\n")
    (exercises / "03_c.py").write_text("# %%\nc = 3\n")
    report = ws.populate(exercises, workspace)
    assert [p.name for p in report.copied] == ["03_c.py"]
    assert sorted(p.name for p in report.kept) == ["01_a.py", "02_b.py"]
    assert [p.name for p in report.differ] == ["01_a.py"]
    assert (workspace / "01_a.py").read_text() == answered  # never overwritten
    message = ws.describe(report, exercises, workspace, root=tmp_path)
    assert "workspace/01_a.py differs from exercises/01_a.py" in message
    assert "fresh copy" in message and "delete or rename" in message
    (workspace / "01_a.py").unlink()  # how to fetch a fresh copy
    assert [p.name for p in ws.populate(exercises, workspace).copied] == ["01_a.py"]
    assert "newer version" in (workspace / "01_a.py").read_text()


def test_workspace_cli_and_gitignore(tmp_path, capsys):
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "01_a.py").write_text("# %%\n")
    assert ws.main(["--exercises", str(tmp_path / "ex"), "--workspace", str(tmp_path / "ws")]) == 0
    assert (tmp_path / "ws" / "01_a.py").exists() and "copied 1" in capsys.readouterr().err
    assert ws.main(["--exercises", str(tmp_path / "nothing"), "--workspace", str(tmp_path / "ws")]) == 2
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/workspace/" in ignored, "the student's workspace must be git-ignored"
