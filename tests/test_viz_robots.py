"""Lecture 08's figures and slider: the numbers drawn and read out are the numbers computed."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from rlteach import viz
from rlteach.sim2real import ShiftCurve
from rlteach.widgets import SimToRealExplorer

VALUES = [0.0, 1.0, 2.0, 3.0]


def curve(means, stderr=None, name="action_delay"):
    means = torch.tensor(means, dtype=torch.float64)
    return ShiftCurve(name, VALUES, means, torch.full_like(means, 1.5) if stderr is None else torch.tensor(stderr))


@pytest.fixture
def bands():
    nominal = viz.pool_shift_curves([curve([500, 480, 60, 30]), curve([500, 500, 100, 40])])
    robust = viz.pool_shift_curves([curve([500, 500, 500, 450]), curve([500, 500, 480, 470])])
    lqr = viz.pool_shift_curves([curve([500, 500, 500, 500], stderr=[0.0, 0.0, 0.0, 0.0])])
    return {"nominal": nominal, "DR": robust, "LQR": lqr}


def test_pooling_over_seeds_is_the_mean_and_its_standard_error_between_seeds():
    """Two seeds: the mean of the seeds' means, and sd(ddof=1)/√2 between them; one seed: its own s.e."""
    band = viz.pool_shift_curves([curve([500, 480, 60, 30]), curve([500, 500, 100, 40])])
    np.testing.assert_allclose(band.mean, [500, 490, 80, 35], rtol=0, atol=1e-12)
    expected = np.array([0.0, 20.0, 40.0, 10.0]) / math.sqrt(2) / math.sqrt(2)  # sd of two = |a − b|/√2
    np.testing.assert_allclose(band.stderr, expected, rtol=1e-12)
    assert band.seeds == 2 and band.name == "action_delay"
    single = viz.pool_shift_curves([curve([500, 480, 60, 30], stderr=[0.0, 3.0, 4.0, 5.0])])
    np.testing.assert_allclose(single.stderr, [0.0, 3.0, 4.0, 5.0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="same parameter"):
        viz.pool_shift_curves([curve([1, 2, 3, 4]), curve([1, 2, 3, 4], name="length")])
    with pytest.raises(ValueError, match="no curves"):
        viz.pool_shift_curves([])


def test_shift_figure_draws_each_controllers_means_and_error_bars(bands):
    ax = Figure().subplots()
    viz.draw_shift_curves(ax, bands, xlabel="delay", title="t", nominal=0.0, marker=2.0)
    drawn = {c.get_label(): c for c in ax.containers}
    assert set(drawn) == {"nominal (2 seeds)", "DR (2 seeds)", "LQR (1 run)"}
    for label, band in bands.items():
        line, _, (bars,) = drawn[f"{label} ({'2 seeds' if band.seeds == 2 else '1 run'})"]
        np.testing.assert_allclose(line.get_xdata(), VALUES)
        np.testing.assert_allclose(line.get_ydata(), band.mean)
        for segment, m, s in zip(bars.get_segments(), band.mean, band.stderr, strict=True):
            np.testing.assert_allclose(segment[:, 1], [m - s, m + s])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "time limit: 500" in legend and "simulator (nominal): 0" in legend and "'real' system: 2" in legend
    assert ax.get_xlabel() == "delay" and "± s.e." in ax.get_ylabel()


def test_readout_gives_the_three_returns_at_the_chosen_value(bands):
    text = viz.shift_readout(bands, 2.0)
    assert "<td>nominal</td><td>80.0 ± 20.0</td><td>60, 100</td>" in text
    assert "<td>DR</td><td>490.0 ± 10.0</td>" in text and "<td>LQR</td><td>500.0 ± 0.0</td>" in text
    assert "highest mean return LQR" in text
    with pytest.raises(ValueError, match="not on the grid"):
        viz.shift_readout(bands, 1.5)


def test_throughput_figure_plots_the_rates_on_log_axes():
    ax = Figure().subplots()
    sizes, rates = [16, 256, 4096], {"a": [1e4, 1e5, 1e6], "b": [2e4, 3e5, 4e6]}
    viz.draw_throughput(ax, sizes, rates)
    for line, (label, values) in zip(ax.get_lines(), rates.items(), strict=True):
        assert line.get_label() == label
        np.testing.assert_allclose(line.get_xdata(), sizes)
        np.testing.assert_allclose(line.get_ydata(), values)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "4,000,000 steps/s (N = 4096)" in ax.get_title() and ax.get_title().startswith("Throughput grows with N: b")
    with pytest.raises(ValueError, match="2 values for 3 sizes"):
        viz.draw_throughput(Figure().subplots(), sizes, {"a": [1.0, 2.0]})


def test_compute_figure_places_each_controller_at_its_seconds_and_return():
    ax = Figure().subplots()
    points = {"PPO": (12.0, 300.0, 5.0), "LQR": (0.05, 410.0, 1.0)}
    viz.draw_compute_against_return(ax, points)
    for container, (label, (seconds, mean, se)) in zip(ax.containers, points.items(), strict=True):
        line, _, (bars,) = container
        np.testing.assert_allclose(np.asarray(line.get_xdata(), dtype=float), [seconds])
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), [mean])
        np.testing.assert_allclose(bars.get_segments()[0][:, 1], [mean - se, mean + se])
        assert container.get_label().startswith(f"{label}: ")
    assert ax.get_title() == "LQR has the highest return at 240× less compute than PPO"
    assert ax.get_xscale() == "log"


def test_slider_reads_out_the_returns_of_the_chosen_system(bands):
    length = {k: viz.pool_shift_curves([ShiftCurve("length", [0.5, 1.0], torch.tensor([500.0, v]), torch.zeros(2))])
              for k, v in (("nominal", 13.0), ("DR", 500.0), ("LQR", 499.0))}
    explorer = SimToRealExplorer({"action_delay": bands, "length": length}, {"action_delay": 0.0, "length": 0.5},
                                 value=2.0)
    assert explorer.returns == {"nominal": (80.0, 20.0),
                                "DR": (490.0, 10.0), "LQR": (500.0, 0.0)}
    assert "action_delay = 2" in explorer.readout.value and explorer.image.value[:4] == b"\x89PNG"
    explorer.value_slider.value = 3.0  # a slider move updates the readout
    assert explorer.returns["nominal"][0] == 35.0 and explorer.returns["DR"][0] == 460.0
    explorer.parameter_menu.value = "length"  # another parameter: its grid, starting at its nominal value
    assert list(explorer.value_slider.options) == [0.5, 1.0] and explorer.value_slider.value == 0.5
    assert explorer.returns == {"nominal": (500.0, 0.0), "DR": (500.0, 0.0), "LQR": (500.0, 0.0)}
    explorer.value_slider.value = 1.0
    assert explorer.returns == {"nominal": (13.0, 0.0), "DR": (500.0, 0.0), "LQR": (499.0, 0.0)}
    assert "length = 1" in explorer.readout.value and "highest mean return DR" in explorer.readout.value
    with pytest.raises(ValueError, match="not in"):
        SimToRealExplorer({"action_delay": bands}, {}, parameter="gain")
