"""The course in a real browser: JupyterLab as ``bash tools/bootstrap.sh lab`` opens it, a lesson opened
by double clicks in the file browser, all its cells run, no error, a screenshot.

    bash tools/bootstrap.sh browser-check          # installs Playwright if needed, then runs this
    python tools/browser_check.py [--notebook lessons/00_inverse_problems.py] [--browser /usr/bin/chromium]

Playwright (``pip install playwright``) drives a headless Chromium: the one given by ``--browser`` or
``$CHROMIUM``, else the first of chromium, chromium-browser, google-chrome on the PATH (Debian/Ubuntu:
``apt-get install chromium``), else Playwright's own (``python -m playwright install chromium``).
The server is the real ``lab`` command (headless, a free localhost port, a token), with fresh user
settings (autosave off, so the lesson is never rewritten) and no saved layout. The check fails when
the lesson opens as text instead of a notebook, when a cell shows a traceback, when a cell is left
unrun, or when the file changed. Exit code 0 when it passes; the screenshot goes to
``build/browser-check.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_server import ROOT, LabServer  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Chromium as root in a container, with no network beyond localhost and no GPU
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_browser(given: str | None) -> str | None:
    """The Chromium executable to drive: ``given``, else one on the PATH; None: Playwright's own."""
    import os

    for candidate in (given, os.environ.get("CHROMIUM"), *BROWSERS):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def _open_in_file_browser(page, rel: str, timeout_ms: int) -> None:
    """Double-click each folder of ``rel`` in JupyterLab's file browser, then the file itself."""
    for name in Path(rel).parts:
        item = page.locator(".jp-DirListing-item").filter(
            has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$")))
        item.first.wait_for(state="visible", timeout=timeout_ms)
        item.first.dblclick()
        page.wait_for_timeout(500)


def _answer_dialogs(page) -> bool:
    """Accept a dialog JupyterLab shows (e.g. "Select Kernel" with its default); says whether there was one."""
    dialog = page.locator(".jp-Dialog")
    if not dialog.count():
        return False
    print("browser check: JupyterLab asked: " + " | ".join(dialog.first.inner_text().split("\n")[:6]))
    dialog.first.locator(".jp-mod-accept").first.click()
    page.wait_for_timeout(500)
    return True


def _prompts(page) -> list[str]:
    return page.locator(".jp-NotebookPanel:visible .jp-CodeCell .jp-InputPrompt").all_text_contents()


def _run_notebook(page, lab: LabServer, notebook: str, n_code: int, timeout: float) -> list[str]:
    """Open ``notebook`` by double clicks, run all its cells from the Run menu, wait until they are
    done; returns the problems seen."""
    ms = int(timeout * 1000)
    page.goto(lab.url("/lab"), timeout=ms)
    page.locator(".jp-DirListing-content").wait_for(timeout=ms)
    _open_in_file_browser(page, notebook, ms)
    page.locator(".jp-NotebookPanel:visible, .jp-FileEditor:visible").first.wait_for(timeout=ms)
    if page.locator(".jp-NotebookPanel:visible").count() == 0:
        return [f"{notebook} opened as a text file, not as a notebook (the lab command's default viewer)"]
    indicator = page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator")
    kernel = page.locator(".jp-NotebookPanel:visible .jp-KernelName")
    deadline = time.monotonic() + timeout
    while (_answer_dialogs(page) or kernel.inner_text().strip() in ("", "No Kernel")
           or indicator.get_attribute("data-status") != "idle"):
        if time.monotonic() > deadline:
            return [f"the kernel did not start within {timeout:.0f} s"]
        page.wait_for_timeout(500)
    t0 = time.monotonic()
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item").filter(
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))).click()
    problems = []
    page.wait_for_function("() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                           ".jp-Notebook-ExecutionIndicator')?.dataset.status !== 'idle'", timeout=ms)
    while not (indicator.get_attribute("data-status") == "idle" and "[*]:" not in _prompts(page)):
        if time.monotonic() > t0 + timeout:
            problems.append(f"the cells did not finish within {timeout:.0f} s")
            break
        page.wait_for_timeout(1000)
    prompts = _prompts(page)
    errors = page.locator('.jp-NotebookPanel:visible .jp-OutputArea-output'
                          '[data-mime-type="application/vnd.jupyter.stderr"]').all_text_contents()
    problems += ["a cell shows an error:\n" + text[:1500] for text in errors if "Traceback" in text]
    outputs = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output")
    shown = (outputs.filter(has_text="Traceback") if problems else outputs).last  # the error, or the end
    if shown.count():
        shown.scroll_into_view_if_needed()
    unrun = [i for i, t in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", t.strip())]
    if len(prompts) != n_code:
        problems.append(f"{len(prompts)} code cells shown, the file has {n_code}")
    if unrun:
        problems.append(f"{len(unrun)} of {len(prompts)} code cells did not run (first: code cell {unrun[0] + 1})")
    print(f"browser check: {notebook}: {len(prompts) - len(unrun)} of {n_code} code cells ran in "
          f"{time.monotonic() - t0:.0f} s")
    return problems


def check(notebook: str, screenshot: Path, browser: str | None, timeout: float) -> list[str]:
    """Run the check, save the screenshot (also when it fails); returns the problems (none: passed)."""
    import jupytext
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    source = ROOT / notebook
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    n_code = sum(c.cell_type == "code" for c in jupytext.read(source, fmt="py:percent").cells)
    with LabServer(["bash", str(ROOT / "tools" / "bootstrap.sh"), "lab"], env={"VENV": sys.prefix},
                   timeout=180) as lab, sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, headless=True, args=CHROMIUM_ARGS)
        print(f"browser check: Chromium {chromium.version}, JupyterLab at {lab.url('/lab', with_token=False)}")
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        try:
            problems = _run_notebook(page, lab, notebook, n_code, timeout)
        except PlaywrightError as err:
            problems = [f"the browser could not go on: {str(err).splitlines()[0]}"]
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
        print(f"browser check: screenshot {screenshot}")
        chromium.close()
    if hashlib.sha256(source.read_bytes()).hexdigest() != before:
        problems.append(f"{notebook} changed on disk while it was open")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook", default="lessons/00_inverse_problems.py",
                        help="a .py notebook, relative to the repository")
    parser.add_argument("--screenshot", type=Path, default=ROOT / "build" / "browser-check.png")
    parser.add_argument("--browser", help="a Chromium executable (default: chromium on the PATH, "
                                          "else Playwright's own)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for start-up and for running the cells")
    args = parser.parse_args(argv)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("browser check: needs Playwright: pip install playwright", file=sys.stderr)
        return 2
    browser = find_browser(args.browser)
    print(f"browser check: Chromium {browser or '(Playwright’s own)'}")
    problems = check(args.notebook, args.screenshot, browser, args.timeout)
    for problem in problems:
        print(f"browser check FAILED: {problem}", file=sys.stderr)
    if not problems:
        print("browser check passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
