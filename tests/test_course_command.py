"""`make course` starts JupyterLab on 127.0.0.1, prints the URL, serves the lectures and
exercises, and has nbgrader's extensions enabled."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.notebooks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab():
    port = free_port()

    proc = subprocess.Popen(["make", "--no-print-directory", "course", f"PORT={port}"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "BROWSER": "true"})
    url, seen, deadline = None, [], time.monotonic() + 180
    try:
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(rf"(http://127\.0\.0\.1:{port}/\S*\?token=[0-9a-f]+)", line)
            url = match.group(1) if match else None
        assert url, "no URL printed:\n" + "".join(seen[-30:])
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the log pipe drained
        token = url.split("token=")[1]
        while time.monotonic() < deadline:  # the URL is printed a moment before the socket accepts
            try:
                get(port, token, "/api/status")
                break
            except OSError:
                time.sleep(0.2)
        yield port, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)




def get(port: int, token: str, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?token={token}", timeout=30) as response:
        return json.load(response)


def test_the_course_serves_lectures_and_exercises(lab):
    port, token = lab
    lectures = {item["name"] for item in get(port, token, "/api/contents/lectures")["content"]}
    assert "01_importance_sampling.ipynb" in lectures
    exercise = get(port, token, "/api/contents/exercises/01_importance_sampling")["content"]
    assert [item["name"] for item in exercise] == ["01_importance_sampling.ipynb"]


def test_nbgrader_lab_extension_is_enabled(lab):
    port, token = lab
    extensions = {ext["name"]: ext for ext in get(port, token, "/lab/api/extensions")}
    assert extensions["jupyter-nbgrader"]["enabled"] is True
