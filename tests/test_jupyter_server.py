"""JupyterLab as ``bash tools/bootstrap.sh lab`` starts it, checked through its REST API.

The server runs headless on a free localhost port with a token (``tools/lab_server.py``), with the
command line of ``lab``: ``jupyter lab --ServerApp.root_dir=<repository>`` in this environment, whose
jupytext server extension makes ``.py`` files in the percent format notebooks (``jupytext.toml``).
The tests check what a student meets: every lesson is listed as a notebook, each opens with the cells
of its source (as jupytext parses the file), and saving a notebook writes the same ``.py`` back.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.name for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


lab_server = _load_tool("lab_server")
#: the ``exec`` line of ``lab`` in tools/bootstrap.sh, with this interpreter's environment
LAB_COMMAND = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}", "--allow-root"]


@pytest.fixture(scope="module")
def lab():
    with lab_server.LabServer(LAB_COMMAND, timeout=90) as server:
        yield server


def _cells(notebook) -> list[tuple[str, str, list]]:
    return [(c["cell_type"], c["source"], c.get("metadata", {}).get("tags", [])) for c in notebook["cells"]]


def test_the_lessons_are_listed_as_notebooks(lab):
    listing = lab.get("/api/contents/lessons")
    assert listing["type"] == "directory"
    kinds = {entry["name"]: entry["type"] for entry in listing["content"]}
    assert LESSONS and {name: kinds.get(name) for name in LESSONS} == {name: "notebook" for name in LESSONS}


@pytest.mark.parametrize("name", LESSONS)
def test_a_py_lesson_opens_as_a_notebook_with_its_cells(lab, name):
    model = lab.get(f"/api/contents/lessons/{name}?content=1&type=notebook")
    assert (model["type"], model["format"], model["path"]) == ("notebook", "json", f"lessons/{name}")
    expected = jupytext.read(ROOT / "lessons" / name, fmt="py:percent")
    got = _cells(model["content"])
    assert len(got) == len(expected.cells) > 2
    assert got == _cells(expected)
    kind, title, _ = got[0]
    assert kind == "markdown" and title.startswith(f"# {name[:2]} ")      # the lesson's title first


def test_saving_a_notebook_writes_the_same_percent_script(lab):
    """What JupyterLab saves (a student's edits in workspace/ go the same way) is the percent-format
    script again, byte for byte: opening and saving a lesson changes nothing in its file."""
    name = "00_inverse_problems.py"
    model = lab.get(f"/api/contents/lessons/{name}?content=1&type=notebook")
    folder = f"build/test-jupyter-server-{uuid.uuid4().hex[:8]}"          # build/ is git-ignored
    (ROOT / folder).mkdir(parents=True)
    try:
        path = f"{folder}/{name}"
        saved = lab.request(f"/api/contents/{path}", method="PUT",
                            body={"type": "notebook", "format": "json", "content": model["content"]})
        assert saved["type"] == "notebook"
        assert (ROOT / path).read_text(encoding="utf-8") == (ROOT / "lessons" / name).read_text(encoding="utf-8")
    finally:
        shutil.rmtree(ROOT / folder)


def test_the_api_needs_the_token(lab):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(lab.url("/api/contents/lessons", with_token=False), timeout=10)
    assert err.value.code == 403
