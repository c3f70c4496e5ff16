"""Start JupyterLab headless on a free localhost port with a token, wait until it answers, stop it.

Used by ``tests/test_jupyter_server.py`` (the REST API of the server that ``bash tools/bootstrap.sh
lab`` starts) and by ``tools/browser_check.py`` (a real browser on it). The server is isolated from
the user's own Jupyter set-up: its configuration, runtime, JupyterLab user-settings and workspace
folders are fresh temporary folders (the course's settings live in the environment, where the
``lab`` command puts them), and autosave is off, so that running a lesson never rewrites it.

    with LabServer([sys.executable, "-m", "jupyterlab", "--ServerApp.root_dir=."]) as lab:
        lab.get("/api/contents/lessons")        # JSON of the contents API
        lab.url("/lab")                          # an address with the token, for a browser

Standard library only.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["free_port", "LabServer"]

ROOT = Path(__file__).resolve().parents[1]
#: JupyterLab user settings written into the server's fresh settings folder: no autosave (running
#: cells marks a notebook dirty; an autosave would write the lesson's .py back through jupytext).
#: No news pop-up either (it would ask for the network).
USER_SETTINGS = {"@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
                 "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``command`` (a ``jupyter lab`` command line, without port, token or browser options) run as
    a context manager: on entry it starts on a free port of 127.0.0.1 with a random token and waits
    (at most ``timeout`` seconds) until ``/api/status`` answers; on exit it asks the server to shut
    down (kernels included) and ends the process if it does not."""

    def __init__(self, command: list[str], *, cwd: Path = ROOT, env: dict | None = None, timeout: float = 120):
        self.command, self.cwd, self.timeout = list(command), cwd, timeout
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="diffcourse-lab-")
        self.log_path = Path(self._tmp.name) / "server.log"

    # -- requests -------------------------------------------------------------------------------
    def url(self, path: str = "/lab", with_token: bool = True) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}" + (f"{sep}token={self.token}" if with_token else "")

    def request(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 30):
        """The JSON answer of the REST API at ``path`` (None for an empty answer)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path, with_token=False), data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def get(self, path: str):
        return self.request(path)

    def log(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of the server's output."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    # -- life cycle -----------------------------------------------------------------------------
    def _environment(self) -> dict:
        tmp = Path(self._tmp.name)
        settings = tmp / "user-settings"
        for rel, value in USER_SETTINGS.items():
            (settings / rel).parent.mkdir(parents=True, exist_ok=True)
            (settings / rel).write_text(json.dumps(value))
        env = {**os.environ,
               "JUPYTER_CONFIG_DIR": str(tmp / "config"),        # not the user's ~/.jupyter
               "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(settings),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}  # no layout saved before
        env.update(self.extra_env)
        return env

    def start(self) -> "LabServer":
        command = self.command + ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
                                  "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.cwd, env=self._environment(), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            failure = None
            if self.process.poll() is not None:
                failure = RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log()}")
            else:
                try:
                    self.get("/api/status")
                    return self
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        failure = TimeoutError(f"JupyterLab did not answer within {self.timeout:.0f} s:\n"
                                               f"{self.log()}")
            if failure is not None:
                self.stop()
                raise failure
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.request("/api/shutdown", method="POST", timeout=10)   # shuts the kernels down too
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGTERM)              # the group this object started
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        self._tmp.cleanup()

    def __enter__(self) -> "LabServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
