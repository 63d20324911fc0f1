import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rlteach import importance as imp  # noqa: E402
from rlteach.viz import draw_is_experiment, source_markdown  # noqa: E402
from rlteach.widgets import ImportanceSamplingExplorer  # noqa: E402


def test_experiment_estimates_are_centred_on_the_truth():
    result = imp.gaussian_is_experiment(1.0, 1.0, 0.0, 1.0, n=200, repeats=300, seed=1)
    assert result.ordinary.shape == result.weighted.shape == result.ess.shape == (300,)
    se = result.ordinary.std() / 300**0.5
    assert abs(result.ordinary.mean().item() - 1.0) < 4 * se.item()
    assert result.n == 200 and bool((result.ess <= 200).all())


def test_the_ordinary_estimate_spreads_as_the_proposal_moves_away():
    """For equal widths, sd of the ordinary estimate is sqrt((e^{Δ²} − 1)/n); check Δ = 0.5 and 1.5."""
    spreads = []
    for shift in (0.5, 1.5):
        result = imp.gaussian_is_experiment(shift, 1.0, 0.0, 1.0, n=400, repeats=2000, seed=2)
        spreads.append(result.ordinary.std().item())
    # Var[w x] under q for p = N(Δ,1), q = N(0,1) is e^{Δ²}(1 + 4Δ²) − Δ²
    for shift, sd in zip((0.5, 1.5), spreads):
        exact = ((torch.tensor(shift**2).exp() * (1 + 4 * shift**2) - shift**2) / 400).sqrt().item()
        assert sd == pytest.approx(exact, rel=0.15 if shift < 1 else 0.5)
    assert spreads[1] > 4 * spreads[0]


def test_bad_experiment_parameters_are_rejected():
    with pytest.raises(ValueError, match="standard deviations must be positive"):
        imp.gaussian_is_experiment(0.0, 1.0, 0.0, 0.0, n=10, repeats=10)
    with pytest.raises(ValueError, match="n >= 1"):
        imp.gaussian_is_experiment(0.0, 1.0, 0.0, 1.0, n=0, repeats=10)


def test_draw_is_experiment_draws_what_the_experiment_computed():
    result = imp.gaussian_is_experiment(1.0, 1.0, 0.5, 1.2, n=50, repeats=100, seed=0)
    fig = plt.figure()
    left, right = draw_is_experiment(fig, result, (1.0, 1.0), (0.5, 1.2))
    assert [line.get_label() for line in left.get_lines()] == ["target p", "proposal q"]
    assert right.get_title() == f"100 repeats: mean ESS {result.ess.mean().item():.1f} of n = 50"
    assert right.get_lines()[0].get_xdata()[0] == 1.0
    plt.close(fig)


def test_moving_the_slider_recomputes_and_redraws():
    explorer = ImportanceSamplingExplorer(repeats=50)
    before = explorer.result
    explorer.proposal_mean.value = 3.0
    after = explorer.result
    assert after is not before
    expected = imp.gaussian_is_experiment(1.0, 1.0, 3.0, 1.0, n=100, repeats=50, seed=0)
    torch.testing.assert_close(after.ess, expected.ess)
    assert after.ess.mean() < before.ess.mean()
    assert f"mean ESS {expected.ess.mean().item():.1f}" in explorer.figure.axes[1].get_title()
    plt.close(explorer.figure)


def test_source_markdown_shows_the_library_code_not_the_seal():
    text = source_markdown(imp.importance_weights)
    assert text.startswith("```python\n@graded_reference\ndef importance_weights(")
    assert "logp_target - logp_proposal" in text
