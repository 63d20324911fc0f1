"""`make course` starts JupyterLab on 127.0.0.1, prints the URL, serves the lectures and
exercises, and has nbgrader's extensions enabled."""

import os
import re
import subprocess
import time

import pytest

from tests.lab_server import ROOT, drain, free_port, get, stop, wait_until_ready

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    port = free_port()
    proc = subprocess.Popen(["make", "--no-print-directory", "course", f"PORT={port}"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "BROWSER": "true"})
    url, log, deadline = None, [], time.monotonic() + 180
    try:
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            log.append(line)
            match = re.search(rf"(http://127\.0\.0\.1:{port}/\S*\?token=[0-9a-f]+)", line)
            url = match.group(1) if match else None
        assert url, "no URL printed:\n" + "".join(log[-30:])
        drain(proc, log)
        token = url.split("token=")[1]
        wait_until_ready(port, token, proc, deadline, log)
        yield port, token
    finally:
        stop(proc)


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
