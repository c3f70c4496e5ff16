#!/usr/bin/env bash
# Install the course's Python environment (if needed) and use it: the two commands of the README.
#
#   bash tools/bootstrap.sh lab  [jupyter lab options]   install, copy the exercises that are not
#        there yet into workspace/ (never overwriting a file there), then open the course in JupyterLab
#   bash tools/bootstrap.sh test [paths]                 install, then run the whole test suite:
#        unit tests, doctests, and every notebook of lessons/, solutions/ and exercises/ under nbval
#        (paths: run only these test files and/or these .py notebooks)
#   bash tools/bootstrap.sh install                      only install
#   bash tools/bootstrap.sh browser-check [options]      install, add Playwright (and a Chromium if
#        none is there), then open a lesson in JupyterLab in a headless browser, run all its cells and
#        save a screenshot (tools/browser_check.py; not part of the test suite: it needs the network
#        the first time, for Playwright)
#
# Environment (all optional):
#   VENV             where the virtual environment lives (default: .venv in the repository)
#   PYTHON           the interpreter that creates it (default: python3; the course needs >= 3.10)
#   TORCH_VERSION    the torch release to install (default: 2.13.0)
#   TORCH_INDEX_URL  a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu for the CPU
#                    build on a Linux laptop, or .../whl/cu126 for an NVIDIA GPU (default: pip's own
#                    configuration). Changing it later needs a fresh VENV (rm -rf .venv).
#   PYTEST_WORKERS   pytest-xdist workers for the test command (default: 2; 0 runs serially)
#   NB_CELL_TIMEOUT  seconds one notebook cell may run under test (default: 300)
#   OMP_NUM_THREADS  CPU threads of torch in the notebooks that lab opens (default: 1; on a busy
#                    2-core machine two threads made lesson 05's training 20x slower or worse)
#
# The install is skipped when a stamp in the environment matches pyproject.toml, the torch settings
# and the interpreter, and the packages are importable; otherwise pip runs (idempotent).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
PY="$VENV/bin/python"
STAMP="$VENV/.diffcourse-install-stamp"

say() { echo "bootstrap [${SECONDS}s]: $*" >&2; }

wanted_stamp() {
    { cat pyproject.toml; echo "torch==$TORCH_VERSION"; echo "index=$TORCH_INDEX_URL"; "$PY" -V; } \
        | sha256sum | cut -d' ' -f1
}

installed() {  # stamp matches and the packages resolve (without importing torch: that is slow)
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ] && "$PY" - "$ROOT" <<'EOF'
import importlib.util, pathlib, sys
names = ["torch", "numpy", "matplotlib", "pytest", "xdist", "nbval", "jupytext", "jupyterlab"]
if any(importlib.util.find_spec(n) is None for n in names):
    sys.exit(1)
spec = importlib.util.find_spec("diffcourse")  # the editable install must point at this checkout
sys.exit(spec is None or pathlib.Path(spec.origin).resolve().parents[1] != pathlib.Path(sys.argv[1]).resolve())
EOF
}

install() {
    if [ ! -x "$PY" ]; then
        if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            say "need Python >= 3.10 as '$PYTHON' (found: $("$PYTHON" -V 2>&1)); set PYTHON=..."
            exit 1
        fi
        say "creating the virtual environment $VENV with $("$PYTHON" -V 2>&1)"
        "$PYTHON" -m venv "$VENV" || {
            say "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
            rm -rf "$VENV"; exit 1; }
    fi
    if installed; then
        return 0
    fi
    local index=()
    [ -n "$TORCH_INDEX_URL" ] && index=(--index-url "$TORCH_INDEX_URL")
    say "installing torch==$TORCH_VERSION ${TORCH_INDEX_URL:+from $TORCH_INDEX_URL }(the first time takes minutes)"
    "$PY" -m pip install --quiet --progress-bar off "${index[@]}" "torch==$TORCH_VERSION"
    say "installing diffcourse (editable) with its [dev] extras"
    "$PY" -m pip install --quiet --progress-bar off -e ".[dev]"
    wanted_stamp > "$STAMP"
    say "environment ready: $VENV"
}

lab() {
    # The student's copies of the exercises: workspace/ (git-ignored), never overwritten.
    "$PY" tools/workspace.py
    # One CPU thread per kernel unless the user chose otherwise: torch's default (one per core)
    # collapses when another process keeps a core busy. MKL follows OpenMP's setting.
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$OMP_NUM_THREADS}"
    # Open the .py notebooks of lessons/, solutions/, exercises/ and workspace/ as notebooks on a
    # double click. (JupyterLab still asks "Select Kernel" once per notebook: jupytext keeps no
    # kernelspec in the .py files, and its "Jupytext Notebook" viewer does not take the notebook
    # setting autoStartDefaultKernel. Its default answer, Python 3, is the right one.)
    local settings="$VENV/share/jupyter/lab/settings"
    mkdir -p "$settings"
    cat > "$settings/overrides.json" <<'EOF'
{
  "@jupyterlab/docmanager-extension:plugin": {
    "defaultViewers": {"python": "Jupytext Notebook"}
  }
}
EOF
    say "torch uses OMP_NUM_THREADS=$OMP_NUM_THREADS thread(s) (set OMP_NUM_THREADS=N before lab to change)"
    say "opening JupyterLab in $ROOT: read lessons/00_inverse_problems.py, then do workspace/00_*.py (Ctrl-C stops it)"
    local root_flag=()
    [ "$(id -u)" = 0 ] && root_flag=(--allow-root)  # containers often run as root
    exec "$VENV/bin/jupyter" lab --ServerApp.root_dir="$ROOT" "${root_flag[@]}" "$@"
}

is_notebook() { [[ "$(basename "$1")" == [0-9][0-9]_*.py && -f "$1" ]]; }  # lessons' naming

run_tests() {
    export MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
    local targets=() notebooks=() arg
    if [ $# -eq 0 ]; then
        "$PY" tools/build_notebooks.py > /dev/null
        targets=(tests diffcourse build/notebooks)
    else
        for arg in "$@"; do
            if is_notebook "$arg"; then notebooks+=("$arg"); else targets+=("$arg"); fi
        done
        if [ ${#notebooks[@]} -gt 0 ]; then
            local built
            built="$("$PY" tools/build_notebooks.py "${notebooks[@]}")"  # fails the run if it fails
            mapfile -t -O ${#targets[@]} targets <<< "$built"
        fi
    fi
    local workers="${PYTEST_WORKERS:-2}" rc=0
    local parallel=()
    [ "$workers" != 0 ] && parallel=(-n "$workers" --dist loadscope)
    "$PY" -m pytest "${parallel[@]}" --doctest-modules \
        --nbval-lax --nbval-current-env --nbval-cell-timeout="${NB_CELL_TIMEOUT:-300}" \
        --durations=15 "${targets[@]}" || rc=$?
    if [ "$rc" -eq 5 ]; then
        say "pytest collected no tests; that counts as a failure"
        return 1
    fi
    return "$rc"
}

browser_check() {
    if ! "$PY" -c 'import playwright' 2>/dev/null; then
        say "installing Playwright (pip install playwright)"
        "$PY" -m pip install --quiet --progress-bar off playwright
    fi
    local name found="${CHROMIUM:-}"
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        [ -z "$found" ] && command -v "$name" > /dev/null && found="$name"
    done
    if [ -z "$found" ]; then
        say "no Chromium on the PATH: trying Playwright's own (python -m playwright install chromium)"
        if ! "$PY" -m playwright install chromium; then
            if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
                say "Playwright could not download its browser: installing Debian's chromium"
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
            else
                say "no Chromium: install one (Debian/Ubuntu: sudo apt-get install chromium) or set CHROMIUM=/path/to/it"
                exit 1
            fi
        fi
    fi
    "$PY" tools/browser_check.py "$@"
}

case "${1:-}" in
    lab) shift; install; lab "$@" ;;
    test) shift; install; run_tests "$@" ;;
    install) install ;;
    browser-check) shift; install; browser_check "$@" ;;
    *) echo "usage: bash tools/bootstrap.sh lab|test|install|browser-check [args]" >&2; exit 2 ;;
esac
