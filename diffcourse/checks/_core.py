"""The machinery behind every exercise check.

A check is a function ``check_xxx(fn) -> bool`` made with :func:`exercise`. It calls the learner's
``fn`` through a ``verify`` function that raises ``AssertionError`` when the answer is wrong, and
reports one of three outcomes instead of crashing, so that an unfinished notebook still runs top to
bottom:

* ``fn`` raises ``NotImplementedError`` (the generated stub): prints "not done yet", returns False;
* ``verify`` raises ``AssertionError`` (or the answer crashes): prints what is wrong, returns False;
* otherwise prints "correct" and returns True.

Each check carries its ``reference`` answer and at least one plausible ``wrong_answers`` beside it;
``tests/test_checks.py`` proves that every check passes on the reference and fails on the stub and on
every wrong answer.

When the answer crashes, the message names the line of the learner's own code that raised (the
innermost frame of the traceback outside the library, torch and Python itself).

Inside a ``verify``, :func:`close` decides whether an answer is right (with the tolerances the check
states) and :func:`diagnose` says what is wrong with it: it runs the known mistakes (a dict
``{wrong_fn: message}``) on the same inputs and names the first one the answer reproduces; else, when
the answer is a clean multiple of the expected value (2, 1/2, -1, n, 1/n: a constant factor, a
mean for a sum), it says so (:func:`factor_hint`); else it reports the largest error.
"""
from __future__ import annotations

import functools
import linecache
import math
import sysconfig
import traceback
from fractions import Fraction
from pathlib import Path
from typing import Callable

import torch

__all__ = ["exercise", "stub", "close", "max_error", "known_mistake", "factor_hint", "diagnose",
           "where_it_raised"]

_LIBRARY_DIRS = tuple(str(Path(d).resolve()) for d in {
    Path(__file__).resolve().parents[1],                      # diffcourse itself
    Path(torch.__file__).resolve().parent,                    # torch
    *(Path(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")),
})


def _is_learners(filename: str) -> bool:
    """Whether a traceback frame's file is the learner's code (a notebook cell or their own file)."""
    if filename.startswith("<frozen "):
        return False
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return True
    return not path.startswith(_LIBRARY_DIRS)


def where_it_raised(err: BaseException) -> str | None:
    """'line N of your code (in fn): text' for the innermost learner frame of ``err``'s traceback."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _is_learners(f.filename)]
    if not frames:
        return None
    frame = frames[-1]
    text = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
    return f"line {frame.lineno} of your code (in {frame.name}){': ' + text if text else ''}"


def _raised_in_learners_code(err: BaseException) -> bool:
    """Whether the innermost frame of the traceback (where it was raised) is the learner's."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and _is_learners(frames[-1].filename)


def stub(*args, **kwargs):
    """What a blank exercise does: raise ``NotImplementedError``."""
    raise NotImplementedError("exercise not done yet")


def exercise(reference: Callable, *wrong_answers: Callable):
    """Turn ``verify(fn)`` (raises ``AssertionError`` on a wrong ``fn``) into a learner-facing check."""
    if not wrong_answers:
        raise ValueError("exercise(...) needs at least one plausible wrong answer to test the check")

    def decorate(verify: Callable) -> Callable[[Callable], bool]:
        name = verify.__name__.removeprefix("check_").replace("_", " ")

        @functools.wraps(verify)
        def check(fn: Callable, *, quiet: bool = False) -> bool:
            def say(msg):
                if not quiet:
                    print(msg)
            try:
                verify(fn)
            except NotImplementedError:
                say(f"… {name}: not done yet (the cells below use the library's reference)")
                return False
            except AssertionError as err:
                if _raised_in_learners_code(err):  # the learner's own assert, not the check's verdict
                    say(_raised(name, err))
                else:
                    say(f"✘ {name}: not right yet: {err}")
                return False
            except Exception as err:  # a crashing answer is a wrong answer, not a crashed notebook
                say(_raised(name, err))
                return False
            say(f"✔ {name}: correct")
            return True

        check.reference = reference
        check.wrong_answers = tuple(wrong_answers)
        return check

    return decorate


def _raised(name: str, err: BaseException) -> str:
    where = where_it_raised(err)
    return f"✘ {name}: your code raised {type(err).__name__}: {err}" + (f"\n    at {where}" if where else "")


# ---------------------------------------------------------------- comparing answers
def _f64(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def _is_number(a) -> bool:
    if isinstance(a, torch.Tensor):
        return a.numel() == 1
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def close(a, b, *, rtol: float, atol: float) -> bool:
    """Whether the answer ``a`` matches ``b``: |a - b| <= atol + rtol |b| entry by entry.

    ``b`` is a tensor (then ``a`` must be a tensor of its shape; both are compared detached, in
    float64), a number, or a tuple / list of these (compared element by element). Never raises.

    >>> close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-12]), rtol=1e-9, atol=0.0)
    True
    >>> close((torch.ones(2), 0.5), (torch.ones(3), 0.5), rtol=1e-9, atol=1e-9)   # wrong shape
    False
    """
    if isinstance(b, (tuple, list)):
        return isinstance(a, (tuple, list)) and len(a) == len(b) and \
            all(close(u, v, rtol=rtol, atol=atol) for u, v in zip(a, b))
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.shape == b.shape and \
            bool(torch.allclose(_f64(a), _f64(b), rtol=rtol, atol=atol))
    if not _is_number(a):
        return False
    a, b = float(a), float(b)
    return abs(a - b) <= atol + rtol * abs(b)


def max_error(a, b) -> float:
    """max |a - b| over all entries of tensors, numbers or tuples of them; inf if they do not fit.

    >>> max_error((torch.tensor([1.0, 2.0]), 3.0), (torch.tensor([1.0, 2.5]), 3.0))
    0.5
    """
    if isinstance(b, (tuple, list)):
        if not (isinstance(a, (tuple, list)) and len(a) == len(b)):
            return math.inf
        return max((max_error(u, v) for u, v in zip(a, b)), default=0.0)
    if isinstance(b, torch.Tensor) and not (isinstance(a, torch.Tensor) and a.shape == b.shape):
        return math.inf
    if not (isinstance(a, torch.Tensor) or _is_number(a)):
        return math.inf
    diff = (_f64(torch.as_tensor(a)) - _f64(torch.as_tensor(b))).abs()
    return diff.max().item() if diff.numel() else 0.0


def _fresh(args: tuple) -> tuple:
    """The arguments with every tensor cloned, so that a mistake cannot alter them."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def known_mistake(out, args: tuple, mistakes: dict, *, rtol: float, atol: float) -> str | None:
    """The message of the first mistake ``wrong`` in ``mistakes`` ({wrong: message}) whose output
    ``wrong(*args)`` the answer ``out`` matches (by :func:`close`), else ``None``."""
    for wrong, message in mistakes.items():
        try:
            if close(out, wrong(*_fresh(args)), rtol=rtol, atol=atol):
                return message
        except Exception:  # a mistake that cannot even run on these inputs explains nothing
            continue
    return None


def _clean_ratio(c: float) -> Fraction | None:
    """``c`` when it is a clean factor: ±n or ±1/n for a whole n up to 10**6 (-1 included)."""
    if not math.isfinite(c) or c == 0 or not 1e-6 <= abs(c) <= 1e6:
        return None
    q = Fraction(round(c)) if abs(c) >= 1 else Fraction(1, round(1 / c))
    return q if q != 1 and abs(float(q) - c) <= 1e-6 * abs(c) else None


def _ratio_text(ratio: Fraction) -> str:
    if ratio == -1:
        return "minus the expected value: the sign is flipped?"
    why = ("a factor 2 missing or extra" if abs(ratio) in (2, Fraction(1, 2)) else
           "a constant factor missing or extra, or a mean where a sum is meant (or the reverse)")
    return f"{ratio} times the expected value: {why}?"


def factor_hint(out, expected, *, rtol: float, atol: float) -> str | None:
    """If ``out`` is a clean multiple c of ``expected`` (c = -1, ±n or ±1/n: 2, 1/2, 64, ...), say so.

    Tensors and numbers; c is fitted by least squares and must then reproduce ``out`` within the
    check's tolerances (at least 1e-6 relative, to forgive float32 answers).

    >>> factor_hint(torch.tensor([2.0, -4.0]), torch.tensor([1.0, -2.0]), rtol=1e-9, atol=0.0)
    'your answer is 2 times the expected value: a factor 2 missing or extra?'
    >>> factor_hint(torch.tensor([0.5, 1.5]), torch.tensor([32.0, 96.0]), rtol=1e-9, atol=0.0)
    'your answer is 1/64 times the expected value: a constant factor missing or extra, or a mean where a sum is meant (or the reverse)?'
    >>> factor_hint(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]), rtol=1e-9, atol=0.0) is None
    True
    """
    if isinstance(expected, torch.Tensor):
        if not (isinstance(out, torch.Tensor) and out.shape == expected.shape) or expected.is_complex() \
                or out.is_complex():
            return None
    elif not (_is_number(expected) and _is_number(out)):
        return None
    a, b = _f64(torch.as_tensor(out)).flatten(), _f64(torch.as_tensor(expected)).flatten()
    norm = (b * b).sum().item()
    if norm == 0 or not torch.isfinite(a).all():
        return None
    ratio = _clean_ratio((a * b).sum().item() / norm)
    if ratio is None or not close(a, float(ratio) * b, rtol=max(rtol, 1e-6), atol=atol * abs(float(ratio))):
        return None
    return f"your answer is {_ratio_text(ratio)}"


def diagnose(out, expected, args: tuple, mistakes: dict, *, rtol: float, atol: float) -> str:
    """What is wrong with ``out``: the first known mistake it reproduces, else the clean factor by
    which it is off (:func:`factor_hint`), else its max error.

    >>> mistakes = {(lambda x: -x): "wrong sign"}
    >>> diagnose(torch.tensor([-2.0]), torch.tensor([2.0]), (torch.tensor([2.0]),), mistakes, rtol=0, atol=0)
    'wrong sign'
    >>> diagnose(torch.tensor([2.5]), torch.tensor([2.0]), (torch.tensor([2.0]),), mistakes, rtol=0, atol=0)
    'max error 0.5'
    """
    message = known_mistake(out, args, mistakes, rtol=rtol, atol=atol)
    if message is None:
        message = _factor_hint_any(out, expected, rtol=rtol, atol=atol)
    return message if message is not None else f"max error {max_error(out, expected):.3g}"


def _factor_hint_any(out, expected, *, rtol: float, atol: float) -> str | None:
    """:func:`factor_hint` of the answer, or of the first wrong entry of a tuple answer."""
    if not isinstance(expected, (tuple, list)):
        return factor_hint(out, expected, rtol=rtol, atol=atol)
    if not (isinstance(out, (tuple, list)) and len(out) == len(expected)):
        return None
    for k, (u, v) in enumerate(zip(out, expected)):
        if not close(u, v, rtol=rtol, atol=atol):
            hint = factor_hint(u, v, rtol=rtol, atol=atol)
            return None if hint is None else f"entry {k} of your answer: {hint.removeprefix('your answer is ')}"
    return None
