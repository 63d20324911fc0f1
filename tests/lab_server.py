"""Start and stop a JupyterLab server for the tests that need a real one.

``jupyter_lab`` serves a folder (a temporary copy of the course, so that nothing the
browser does is ever saved into the repository) with the venv's ``jupyter``; ``free_port``,
``wait_until_ready``, ``get`` and ``stop`` are shared with the ``make course`` test."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Settings a fresh profile would otherwise ask about or vary on: no news/update pop-ups
# over the notebook, and every cell kept in the page (JupyterLab's default windowing
# skips rendering cells far outside the viewport, which a test that reads all outputs must avoid).
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass(frozen=True)
class LabServer:
    port: int
    token: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``path`` on this server, with the token that logs the browser in."""
        return f"{self.base_url}{path}?token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, token: str, path: str):
    """GET a JSON endpoint of the server."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?token={token}", timeout=30) as response:
        return json.load(response)


def wait_until_ready(port: int, token: str, proc: subprocess.Popen, deadline: float, log: list[str]) -> None:
    """Poll ``/api/status`` until it answers (the process may print its URL before its socket accepts)."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n" + "".join(log[-30:]))
        try:
            get(port, token, "/api/status")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("JupyterLab did not answer /api/status in time:\n" + "".join(log[-30:])) from None
            time.sleep(0.2)


def drain(proc: subprocess.Popen, log: list[str]) -> threading.Thread:
    """Keep the server's log pipe from filling up; keep its lines for error messages."""
    thread = threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True)
    thread.start()
    return thread


def stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group (make, jupyter, kernels): SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def jupyter_lab(root_dir: Path, state_dir: Path, timeout: float = 120) -> Iterator[LabServer]:
    """JupyterLab serving ``root_dir`` on 127.0.0.1 with a random token and fresh
    settings, workspaces, runtime and user config under ``state_dir``; stopped (process group) on exit."""
    port, token = free_port(), secrets.token_hex(16)
    settings, workspaces, runtime = state_dir / "settings", state_dir / "workspaces", state_dir / "runtime"
    for relative, values in QUIET_SETTINGS.items():
        (settings / relative).parent.mkdir(parents=True, exist_ok=True)
        (settings / relative).write_text(json.dumps(values))
    workspaces.mkdir(parents=True, exist_ok=True)
    command = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root_dir}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={workspaces}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "BROWSER": "true",
           "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(state_dir / "config")}  # not ~/.jupyter
    log: list[str] = []
    proc = subprocess.Popen(command, cwd=root_dir, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        drain(proc, log)
        wait_until_ready(port, token, proc, time.monotonic() + timeout, log)
        yield LabServer(port, token)
    finally:
        stop(proc)
