"""Every exercise check passes on its reference and fails on the blank stub and on each wrong answer.

Checks are discovered, not listed: every module ``diffcourse/checks/lesson*.py`` and every object in
it made by ``diffcourse.checks._core.exercise`` (it carries ``.reference`` and ``.wrong_answers``).
Each (check, answer) pair is its own test id, e.g. ``lesson02.check_dsm_loss-wrong1``.

The second half ties the notebooks to the checks: every function with a solution block in
``solutions/NN_*.py`` is handed to a ``check_...`` of ``diffcourse.checks.lessonNN`` in a cell that
the exercise notebook keeps, and a cell tagged ``solution`` (dropped from the exercise) asserts that
the worked answer passes that check, so nbval fails the suite when a worked solution is wrong.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import diffcourse.checks
from diffcourse.checks._core import stub

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
mx = importlib.util.module_from_spec(_spec)
sys.modules["make_exercises"] = mx
_spec.loader.exec_module(mx)


def lesson_modules() -> dict[str, object]:
    """{'lesson02': module, ...} for every diffcourse/checks/lesson*.py."""
    names = sorted(m.name for m in pkgutil.iter_modules(diffcourse.checks.__path__)
                   if m.name.startswith("lesson"))
    return {name: importlib.import_module(f"diffcourse.checks.{name}") for name in names}


def checks_of(module) -> dict[str, object]:
    """The exercise checks defined in ``module`` (objects with .reference and .wrong_answers)."""
    return {name: obj for name, obj in sorted(vars(module).items())
            if callable(obj) and hasattr(obj, "reference") and hasattr(obj, "wrong_answers")
            and getattr(obj, "__module__", None) == module.__name__}


MODULES = lesson_modules()
CASES = []
for _lesson, _module in MODULES.items():
    for _name, _check in checks_of(_module).items():
        CASES.append(pytest.param(_check, _check.reference, True, id=f"{_lesson}.{_name}-reference"))
        CASES.append(pytest.param(_check, stub, False, id=f"{_lesson}.{_name}-stub"))
        CASES += [pytest.param(_check, wrong, False, id=f"{_lesson}.{_name}-wrong{k}")
                  for k, wrong in enumerate(_check.wrong_answers, start=1)]


def test_every_check_module_defines_checks():
    empty = [name for name, module in MODULES.items() if not checks_of(module)]
    assert empty == [], f"check modules without any exercise check: {empty}"
    for name, module in MODULES.items():
        assert re.fullmatch(r"lesson\d\d", name), f"diffcourse/checks/{name}.py: name it lessonNN.py"
        for check_name, check in checks_of(module).items():
            assert check_name.startswith("check_"), f"{name}.{check_name}: name checks check_..."
            assert check.wrong_answers, f"{name}.{check_name} has no wrong answer to fail on"


if CASES:  # parametrize over nothing would be reported as a skip; before any check exists, no test
    @pytest.mark.parametrize("check, answer, expected", CASES)
    def test_check_accepts_reference_and_rejects_stub_and_wrong_answers(check, answer, expected):
        assert check(answer, quiet=True) is expected


# ---------------------------------------------------------------- notebooks -> checks
def _called_name(call: ast.Call) -> str:
    """'check_x' for check_x(...) and lesson03.check_x(...); 'reference' for check_x.reference(...)."""
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _check_calls(text: str, path: str) -> dict[str, set[str]]:
    """{function name: {check names it is passed to}} over the cells an exercise keeps."""
    calls: dict[str, set[str]] = {}
    for cell in mx.parse_cells(text, path):
        if cell.kind != "code" or "solution" in cell.tags:
            continue
        for node in ast.walk(ast.parse("".join(cell.lines[1:]))):
            if not isinstance(node, ast.Call):
                continue
            func = _called_name(node)
            if func.startswith("check_"):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if isinstance(arg, ast.Name):
                        calls.setdefault(arg.id, set()).add(func)
    return calls


SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))


def test_every_exercise_of_every_solution_notebook_is_checked():
    missing = []
    for path in SOLUTIONS:
        rel, lesson = f"solutions/{path.name}", f"lesson{path.name[:2]}"
        text = path.read_text(encoding="utf-8")
        calls = _check_calls(text, rel)
        known = set(checks_of(MODULES[lesson])) if lesson in MODULES else set()
        for block in mx.solution_blocks(text, rel):
            used = calls.get(block.function, set())
            if not used & known:
                missing.append(f"{rel}:{block.begin}: {block.function} is passed to "
                               f"{sorted(used) or 'no check_...'}, none of them a check in "
                               f"diffcourse/checks/{lesson}.py ({sorted(known) or 'no checks'})")
    assert missing == [], "exercises without a check:\n" + "\n".join(missing)


def test_notebook_check_discovery_on_a_small_string():
    text = ("# %%\ndef dsm_loss(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\n"
            "# %%\ncheck_dsm_loss(dsm_loss)\nchecks.check_other(fn=other)\n\n"
            "# %% tags=[\"solution\"]\ncheck_hidden(hidden)\n")
    assert _check_calls(text, "sol.py") == {"dsm_loss": {"check_dsm_loss"},
                                            "other": {"check_other"}}
    assert _called_name(ast.parse("check_x.reference(1)").body[0].value) == "reference"
    assert _called_name(ast.parse("m.check_x(f)").body[0].value) == "check_x"


def _asserts_on_checks(text: str, rel: str, *, in_solution_cells: bool = False) -> list[str]:
    """'file:line: statement' for every assert whose condition calls a check, in the cells an
    exercise keeps (or, with ``in_solution_cells``, in the cells tagged ``solution``)."""
    found = []
    for cell in mx.parse_cells(text, rel):
        if cell.kind != "code" or ("solution" in cell.tags) != in_solution_cells:
            continue
        for node in ast.walk(ast.parse("".join(cell.lines[1:]))):
            if isinstance(node, ast.Assert) and any(
                    isinstance(n, ast.Call) and _called_name(n).startswith("check_")
                    for n in ast.walk(node.test)):
                found.append(f"{rel}:{cell.first_line + node.lineno}: {ast.unparse(node)}")
    return found


def test_every_worked_solution_is_asserted_to_pass_its_check():
    """solutions/NN_*.py asserts, in a ``solution`` cell, that each worked answer passes its check."""
    missing = []
    for path in SOLUTIONS:
        rel = f"solutions/{path.name}"
        text = path.read_text(encoding="utf-8")
        asserted = "\n".join(_asserts_on_checks(text, rel, in_solution_cells=True))
        for block in mx.solution_blocks(text, rel):
            if not any(f"{check}({block.function}, quiet=True)" in asserted
                       for check in _check_calls(text, rel).get(block.function, ())):
                missing.append(f"{rel}:{block.begin}: {block.function}")
    assert missing == [], ("worked answers whose check is not asserted in a cell tagged solution:\n"
                           + "\n".join(missing))


def test_no_notebook_asserts_on_a_check():
    """A check returns False on the blank exercise, so asserting on it would crash the exercise."""
    paths = [p for folder in ("lessons", "solutions") for p in (ROOT / folder).glob("[0-9][0-9]_*.py")]
    offending = [hit for path in sorted(paths) for hit in _asserts_on_checks(
        path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())]
    assert offending == [], "assert on a check result:\n" + "\n".join(offending)


def test_assert_on_check_detector_on_a_small_string():
    text = ("# %%\nassert check_f(f, quiet=True)\nassert check_f.reference(2) == 4\n\n"
            "# %%\nassert not m.check_g(g)\n\n# %% tags=[\"solution\"]\nassert check_h(h, quiet=True)\n")
    assert _asserts_on_checks(text, "sol.py") == [
        "sol.py:2: assert check_f(f, quiet=True)", "sol.py:6: assert not m.check_g(g)"]
    assert _asserts_on_checks(text, "sol.py", in_solution_cells=True) == [
        "sol.py:9: assert check_h(h, quiet=True)"]


# ---------------------------------------------------------------- what a failing check says
import torch  # noqa: E402

from diffcourse.checks import _core, lesson04  # noqa: E402


@pytest.mark.parametrize("factor, words", [
    (2.0, "2 times the expected value: a factor 2 missing"),
    (0.5, "1/2 times the expected value: a factor 2 missing"),
    (-1.0, "minus the expected value: the sign is flipped"),
    (1 / 12, "1/12 times the expected value"),         # a mean over 12 entries where a sum is meant
    (12.0, "12 times the expected value"),
    (-3.0, "-3 times the expected value"),
])
def test_diagnose_names_a_clean_factor(factor, words):
    expected = torch.linspace(-1, 2, 12, dtype=torch.float64).reshape(3, 4)
    message = _core.diagnose(factor * expected, expected, (), {}, rtol=1e-9, atol=1e-9)
    assert words in message, message


def test_diagnose_gives_no_factor_when_there_is_none():
    expected = torch.linspace(-1, 2, 12, dtype=torch.float64)
    assert _core.diagnose(expected + 0.25, expected, (), {}, rtol=1e-9, atol=1e-9) == "max error 0.25"
    almost = 2 * expected
    almost[3] += 0.1  # twice the answer except in one entry: not a clean factor
    assert "times" not in _core.diagnose(almost, expected, (), {}, rtol=1e-9, atol=1e-9)
    assert _core.factor_hint(1.25 * expected, expected, rtol=1e-9, atol=1e-9) is None  # 5/4: not clean
    assert _core.factor_hint(torch.zeros(12), expected, rtol=1e-9, atol=1e-9) is None
    assert _core.factor_hint(expected.float() * 2, expected, rtol=1e-9, atol=1e-9) is not None  # float32
    pair = _core.diagnose((expected, -0.5), (expected, 0.5), (), {}, rtol=1e-9, atol=1e-9)
    assert pair.startswith("entry 1 of your answer: minus the expected value"), pair


def test_a_known_mistake_comes_before_the_factor():
    expected = torch.ones(3, dtype=torch.float64)
    message = _core.diagnose(-expected, expected, (expected,), {(lambda x: -x): "wrong sign: see Eq. 3"},
                             rtol=1e-9, atol=1e-9)
    assert message == "wrong sign: see Eq. 3"


def test_a_real_check_reports_the_factor(capsys):
    def doubled(*args):
        return 2 * lesson04.check_ddim_step.reference(*args)
    assert lesson04.check_ddim_step(doubled) is False
    assert "2 times the expected value" in capsys.readouterr().out


def _learner_module(tmp_path, source: str):
    """Functions defined in a file outside the library, as a notebook cell's code is."""
    path = tmp_path / "cell.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("learner_cell", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_crash_names_the_line_of_the_learners_code(tmp_path, capsys):
    cell = _learner_module(tmp_path, (
        "import torch\n"
        "def ddim(x_t, eps_hat, alpha_bar, alpha_bar_next, eta, z):\n"
        "    x0_hat = x_t - eps_hat\n"
        "    return x0_hat @ torch.ones(7, 7)  # wrong shapes\n"
        "def mine(x_t, eps_hat, alpha_bar, alpha_bar_next, eta, z):\n"
        "    assert alpha_bar < 0.01, 'my own assumption'\n"))
    assert lesson04.check_ddim_step(cell.ddim) is False
    out = capsys.readouterr().out
    assert "your code raised RuntimeError" in out
    assert "at line 4 of your code (in ddim): return x0_hat @ torch.ones(7, 7)  # wrong shapes" in out
    assert lesson04.check_ddim_step(cell.mine) is False  # the learner's own assert is a crash, not a verdict
    out = capsys.readouterr().out
    assert "your code raised AssertionError: my own assumption" in out
    assert "at line 6 of your code (in mine): assert alpha_bar < 0.01" in out


def test_the_checks_verdict_names_no_line(capsys):
    def wrong(x_t, eps_hat, a, a_next, eta, z):
        return x_t
    assert lesson04.check_ddim_step(wrong) is False
    out = capsys.readouterr().out
    assert "not right yet" in out and "of your code" not in out


def test_ddim_check_uses_the_exercises_notation(capsys):
    """The exercise steps from ᾱ_t to ᾱ_t′; the check's messages must not switch to ᾱ_(t-1)."""
    messages = list(lesson04._DDIM_MISTAKES.values())
    for wrong in lesson04.check_ddim_step.wrong_answers:
        assert lesson04.check_ddim_step(wrong) is False
        messages.append(capsys.readouterr().out)
    for message in messages:
        assert not re.search(r"t\s*[-−]\s*1|ᾱ'", message), message
    assert any("ᾱ_t′" in m for m in messages)
