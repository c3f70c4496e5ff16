"""The top-level package: `import diffcourse` is cheap, and its subpackages are reachable from it."""
from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_is_lazy_and_subpackages_are_reachable():
    out = _run(
        "import sys, diffcourse\n"
        "print('torch' in sys.modules, 'diffcourse.prior' in sys.modules)\n"
        "D = diffcourse.prior.pretrained.load('phantom64')\n"
        "import torch\n"
        "print(tuple(D(torch.zeros(1, 1, 64, 64), 0.5).shape))\n"
        "print(diffcourse.physics.ct.__name__, diffcourse.posterior.tv.__name__)\n")
    assert out.split("\n")[:3] == ["False False", "(1, 1, 64, 64)", "diffcourse.physics.ct diffcourse.posterior.tv"]


def test_unknown_attributes_still_raise():
    import diffcourse
    with pytest.raises(AttributeError, match="has no attribute 'prir'"):
        diffcourse.prir  # noqa: B018
    with pytest.raises(AttributeError, match="diffcourse.prior"):
        diffcourse.prior.no_such_module  # noqa: B018
    assert {"prior", "physics", "posterior", "checks", "plot"} <= set(dir(diffcourse))
