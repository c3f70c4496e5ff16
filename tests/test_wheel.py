"""A built wheel, installed as a user would (``pip install diffcourse-*.whl``, not ``pip install -e .``),
is a working package with its shipped weights.

The wheel is built offline from a copy of the package sources (``pip wheel --no-build-isolation``,
so setuptools comes from this environment), its contents are checked, and it is installed with
``pip install --no-deps --no-index`` into a fresh virtual environment that borrows only the
dependencies (torch, numpy, ...) of this one. There, from a folder outside the repository, every
shipped checkpoint loads and denoises exactly as it does from the repository.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

from diffcourse.prior import pretrained

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "diffcourse"


def _run(command: list, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _sources() -> set[str]:
    """The files of the package as the repository holds them (no caches)."""
    return {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    assert importlib.util.find_spec("setuptools") is not None, \
        "building the wheel offline needs setuptools in this environment (pip install 'setuptools>=70.1')"
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"                                 # a clean copy: no stale build/ of the checkout
    shutil.copytree(PACKAGE, src / "diffcourse", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--wheel-dir", tmp / "dist", src], cwd=tmp)
    (built,) = (tmp / "dist").glob("diffcourse-*.whl")
    return built


def test_the_wheel_holds_the_package_and_its_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {n for n in names if not n.startswith("diffcourse-")}   # the rest is .dist-info
    assert package == _sources()
    weights = {n for n in package if n.startswith("diffcourse/prior/weights/")}
    shipped = pretrained.available() + pretrained.available("noise_level")    # denoisers and classifiers
    assert {f"diffcourse/prior/weights/{name}.{ext}" for name in shipped for ext in ("pt", "json")} \
        == weights and len(weights) >= 4
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "diffcourse-train = diffcourse.prior.train:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_loads_its_shipped_weights(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    # the dependencies come from this environment, appended after the fresh venv's own site-packages
    # (a plain path line: the .pth files there, such as the editable install's finder, are not run)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    away = tmp_path / "elsewhere"                     # not the repository, which must not be imported
    away.mkdir()
    script = (
        "import json, sys, torch\n"
        "import diffcourse\n"
        "from diffcourse.prior import pretrained\n"
        "x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))\n"
        "def seeded(D):  # a patch prior draws a random grid shift per call: fix its generator\n"
        "    if hasattr(D, 'generator'):\n"
        "        D.generator = torch.Generator().manual_seed(1)\n"
        "    return D\n"
        "out = {name: seeded(pretrained.load(name))(x, 0.3) for name in pretrained.available()}\n"
        "torch.save(out, 'out.pt')\n"
        "print(json.dumps({'file': diffcourse.__file__, 'available': pretrained.available()}))\n")
    report = json.loads(_run([python, "-c", script], away).strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(site.resolve())
    assert report["available"] == pretrained.available() and "phantom64" in report["available"]
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    installed = torch.load(away / "out.pt", weights_only=True)
    for name in pretrained.available():
        D = pretrained.load(name)
        if hasattr(D, "generator"):                   # the same shifts as in the script above
            D.generator = torch.Generator().manual_seed(1)
        assert torch.equal(installed[name], D(x, 0.3)), name
    # the console script of the wheel runs
    assert "--preset" in _run([venv / "bin" / "diffcourse-train", "--help"], away)
