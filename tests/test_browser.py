"""A lecturer's sliders work in a real browser.

JupyterLab (on a temporary copy of ``lectures/``, so the repository's notebooks never get
outputs) opens a lecture in Chromium, runs every cell from the Run menu, and the test
checks that no cell shows a traceback, that the explorer's sliders and figure render, and
that moving a slider with the keyboard redraws the figure, once per key press; where the
explorer has dropdowns, choosing an option in each redraws it again. Screenshots of the
explorer before and after (and after each choice) land in the test's ``tmp_path``."""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright

from tests.lab_server import ROOT, LabServer, get, jupyter_lab

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RUN_ALL_TIMEOUT_MS = 120_000  # a lecture runs in about a minute on a laptop CPU
REDRAW_TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.notebooks,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (`make browser`)"),
]


@dataclass(frozen=True)
class Explorer:
    """One lecture's widget: where it is, what it shows, and which slider the test moves."""

    notebook: str                # file in lectures/
    sliders: tuple[str, ...]     # the label of every slider the explorer shows
    move: str                    # the slider moved with ArrowRight
    presses: int                 # how many steps it is moved; each one must redraw the figure
    readouts: tuple[str, str]    # that slider's readout before and after
    dropdowns: tuple[str, ...] = ()  # the label of every dropdown the explorer shows
    # (dropdown label, option text) chosen in order after the slider moves; each choice must redraw the figure
    choices: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return Path(self.notebook).stem


EXPLORERS = [
    Explorer("01_importance_sampling.ipynb", sliders=("q mean", "q width", "n draws"), move="q mean", presses=3,
             readouts=("0.00", "0.30")),
    # λ on a log slider (exponent step 0.02, readout .3g): the prox step moves; then f = the indicator
    # (the projection onto the default box), and the set C switched to the ℓ2 ball and the simplex.
    # λ = 1 lies on the exponent grid; two presses make it 10^0.04 = 1.096, which the page (d3-format,
    # unlike Python, keeps .3g zeros) shows as 1.10.
    Explorer("02_proximal_operators.ipynb", sliders=("λ", "v₁", "v₂"), move="λ", presses=2,
             readouts=("1.00", "1.10"), dropdowns=("f", "set C"),
             choices=(("f", "indicator of the set"), ("set C", "ℓ2 ball"), ("set C", "simplex"))),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> LabServer:
    tmp = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "lectures", tmp / "course" / "lectures",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with jupyter_lab(tmp / "course", tmp / "state") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def kernel_state(lab: LabServer, path: str) -> str | None:
    """The execution state the server reports for the notebook's kernel (None: no session yet)."""
    for session in get(lab.port, lab.token, "/api/sessions"):
        if session["path"] == path and session.get("kernel"):
            return session["kernel"].get("execution_state")
    return None


def wait_for_idle_kernel(lab: LabServer, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (state := kernel_state(lab, path)) != "idle":
        assert time.monotonic() < deadline, f"the kernel of {path} is not idle after {timeout:.0f} s (state: {state})"
        time.sleep(0.2)


def error_outputs(page) -> list[str]:
    """The text of every stderr output in the page that shows a traceback or an error."""
    stderr = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    return [text for text in stderr if "Traceback" in text or "Error" in text]


def code_cell_count(notebook: Path) -> int:
    return sum(cell["cell_type"] == "code" for cell in json.loads(notebook.read_text())["cells"])


PROMPTS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"""

# Run All has started (a cell is queued or done) and finished (none is queued); on an error
# JupyterLab stops, and the cells after it go back to "[ ]:".
RUN_ALL_FINISHED = """() => {
    const prompts = (%s)();
    return prompts.some(p => p !== '[ ]:') && !prompts.includes('[*]:');
}""" % PROMPTS


IMAGE_CHANGED = """([cell, before]) => {
    const img = cell.querySelector('.widget-output img');
    return img !== null && img.complete && img.naturalWidth > 0 && img.getAttribute('src') !== before;
}"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("explorer", EXPLORERS, ids=str)
def test_moving_a_slider_redraws_the_explorer(lab, page, explorer: Explorer, tmp_path):
    path = f"lectures/{explorer.notebook}"
    committed = (ROOT / path).read_bytes()
    page.goto(lab.url(f"/lab/tree/{path}"))
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=60_000)
    wait_for_idle_kernel(lab, path, timeout=60)
    expect(page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator')).to_have_attribute(
        "data-status", "idle", timeout=30_000)

    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(RUN_ALL_FINISHED, timeout=RUN_ALL_TIMEOUT_MS)
    wait_for_idle_kernel(lab, path, timeout=30)

    errors = error_outputs(page)
    assert errors == [], f"{path} shows errors after Run All:\n" + "\n---\n".join(errors)
    prompts = page.evaluate(PROMPTS)
    assert len(prompts) == code_cell_count(ROOT / path), "not every code cell is in the page"
    assert all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts), f"Run All left cells unexecuted: {prompts}"

    # The explorer: the code cell whose output holds the slider to move.
    def labelled(kind: str, label: str):
        return page.locator(kind).filter(
            has=page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))

    def slider(label: str):
        return labelled(".widget-slider", label)

    def dropdown(label: str):
        return labelled(".widget-dropdown", label).locator("select")

    moved = slider(explorer.move)
    expect(moved).to_have_count(1, timeout=30_000)
    for label in explorer.sliders:
        expect(slider(label)).to_be_visible()
    for label in explorer.dropdowns:
        expect(dropdown(label)).to_have_count(1)
        expect(dropdown(label)).to_be_visible()
    cell = page.locator(".jp-CodeCell").filter(has=moved)
    figure = cell.locator(".widget-output img")
    expect(figure).to_have_count(1, timeout=30_000)
    expect(cell.locator("img")).to_have_count(1)  # the figure is shown once, inside the widget only
    readout = moved.locator(".widget-readout")
    expect(readout).to_have_text(explorer.readouts[0])

    cell.scroll_into_view_if_needed()
    page.wait_for_function(IMAGE_CHANGED, arg=[cell.element_handle(), None], timeout=REDRAW_TIMEOUT_MS)  # loaded
    # A slider whose start is off its step grid (λ = 0.5 on the log grid) is snapped by the page, which sends the
    # snapped value back: the kernel redraws once more. Let that settle so it is not taken for a key press's redraw.
    wait_for_idle_kernel(lab, path, timeout=30)
    cell.screenshot(path=tmp_path / "before.png")

    def redraws(action, what: str) -> None:
        """Do ``action`` and wait until the explorer's figure is a new, loaded PNG."""
        before = figure.get_attribute("src")
        action()
        try:
            page.wait_for_function(IMAGE_CHANGED, arg=[cell.element_handle(), before], timeout=REDRAW_TIMEOUT_MS)
        except PlaywrightTimeout:
            cell.screenshot(path=tmp_path / "stuck.png")
            pytest.fail(f"the figure did not change within {REDRAW_TIMEOUT_MS / 1000:.0f} s after {what} "
                        f"('{explorer.move}' readout {readout.inner_text()!r}); screenshots in {tmp_path}")

    handle = moved.get_by_role("slider")
    handle.focus()
    for press in range(explorer.presses):
        redraws(lambda: handle.press("ArrowRight"), f"'{explorer.move}': ArrowRight #{press + 1}")
    expect(readout).to_have_text(explorer.readouts[1])
    expect(figure).to_have_count(1)
    wait_for_idle_kernel(lab, path, timeout=30)
    cell.screenshot(path=tmp_path / "after.png")

    # Each choice waits for its dropdown to be enabled (a widget may enable one only after another's choice).
    for step, (label, option) in enumerate(explorer.choices, start=1):
        select = dropdown(label)
        redraws(lambda: select.select_option(label=option, timeout=REDRAW_TIMEOUT_MS), f"choosing {label} = {option!r}")
        expect(select.locator("option:checked")).to_have_text(option)
        expect(figure).to_have_count(1)
        cell.screenshot(path=tmp_path / f"choice{step}.png")
    wait_for_idle_kernel(lab, path, timeout=30)

    errors = error_outputs(page)
    assert errors == [], f"moving '{explorer.move}' or choosing {explorer.choices} raised:\n" + "\n---\n".join(errors)
    assert (ROOT / path).read_bytes() == committed, f"the browser session wrote into the repository's {path}"
