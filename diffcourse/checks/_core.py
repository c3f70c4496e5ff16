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

Inside a ``verify``, :func:`close` decides whether an answer is right (with the tolerances the check
states) and :func:`diagnose` says what is wrong with it: it runs the known mistakes (a dict
``{wrong_fn: message}``) on the same inputs and names the first one the answer reproduces, or else
reports the largest error.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch

__all__ = ["exercise", "stub", "close", "max_error", "known_mistake", "diagnose"]


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
                say(f"✘ {name}: not right yet: {err}")
                return False
            except Exception as err:  # a crashing answer is a wrong answer, not a crashed notebook
                say(f"✘ {name}: your code raised {type(err).__name__}: {err}")
                return False
            say(f"✔ {name}: correct")
            return True

        check.reference = reference
        check.wrong_answers = tuple(wrong_answers)
        return check

    return decorate


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


def diagnose(out, expected, args: tuple, mistakes: dict, *, rtol: float, atol: float) -> str:
    """What is wrong with ``out``: the first known mistake it reproduces, else its max error.

    >>> mistakes = {(lambda x: -x): "wrong sign"}
    >>> diagnose(torch.tensor([-2.0]), torch.tensor([2.0]), (torch.tensor([2.0]),), mistakes, rtol=0, atol=0)
    'wrong sign'
    >>> diagnose(torch.tensor([2.5]), torch.tensor([2.0]), (torch.tensor([2.0]),), mistakes, rtol=0, atol=0)
    'max error 0.5'
    """
    message = known_mistake(out, args, mistakes, rtol=rtol, atol=atol)
    return message if message is not None else f"max error {max_error(out, expected):.3g}"
