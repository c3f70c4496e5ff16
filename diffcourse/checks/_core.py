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
"""
from __future__ import annotations

import functools
from typing import Callable

__all__ = ["exercise", "stub"]


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
