"""Tests for sklearn_glmm.plotting: every plot renders with Agg; assertions on the artists."""

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sklearn_glmm import BinomialGLMM, NegBinGLMM, PoissonGLMM  # noqa: E402
from sklearn_glmm import plotting as P  # noqa: E402
from sklearn_glmm.datasets import load_app_logins, make_longitudinal  # noqa: E402

FEATURES = ["time", "treatment"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def binary():
    df, _ = make_longitudinal("binomial", n_groups=80, random_state=0)
    est = BinomialGLMM().fit(df[FEATURES], df["y"], groups=df["id"])
    return df, est


@pytest.fixture(scope="module")
def counts():
    df, _ = make_longitudinal("negbin", n_groups=80, random_state=1)
    est = PoissonGLMM().fit(df[FEATURES], df["y"], groups=df["id"])
    return df, est


@pytest.fixture(scope="module")
def slopes():
    df = load_app_logins()
    est = PoissonGLMM(random_effects="1 + day_centered").fit(
        df[["day_centered"]], df["logins"], groups=df["user_id"]
    )
    return df, est


def _render(ax, tmp_path, name="plot.png"):
    fig = np.ravel(ax)[0].figure
    path = tmp_path / name
    fig.savefig(path)
    assert path.stat().st_size > 1000


def _within_unit(ax):
    lo, hi = ax.get_ylim()
    assert 0.0 <= lo < hi <= 1.0


# ---------------------------------------------------------------------------
# data plots
# ---------------------------------------------------------------------------


def test_observed_means_binary_one_line_per_group(binary, tmp_path):
    df, _ = binary
    ax = P.plot_observed_means(df, time="time", y="y", by="treatment")
    _render(ax, tmp_path)
    assert len(ax.lines) == 2
    _within_unit(ax)
    # the control line holds the observed proportions of the controls
    control = df[df["treatment"] == 0].groupby("time")["y"].mean().to_numpy()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), control)
    assert ax.get_legend() is not None


def test_observed_means_counts_trials_and_bins(counts):
    df, _ = counts
    ax = P.plot_observed_means(df, time="time", y="y")
    assert len(ax.lines) == 1 and ax.get_ylim()[1] > 1.0
    np.testing.assert_allclose(ax.lines[0].get_ydata(), df.groupby("time")["y"].mean())
    # binomial trials: trial-weighted proportions; binned continuous time
    sim, _ = make_longitudinal(
        "binomial", n_groups=30, trials=(1, 6), unequal_spacing=True, random_state=2
    )
    ax = P.plot_observed_means(sim, time="time", y="y", trials="trials", bins=5)
    assert len(ax.lines) == 1 and len(ax.lines[0].get_xdata()) == 5
    _within_unit(ax)
    total = sim["y"].sum() / sim["trials"].sum()
    props = ax.lines[0].get_ydata()
    assert props.min() <= total <= props.max()


def test_spaghetti_lines_per_person_and_mean(tmp_path):
    df = load_app_logins()
    ax = P.plot_spaghetti(df, time="day", y="logins", id="user_id")
    _render(ax, tmp_path)
    assert len(ax.lines) == 51
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), df.groupby("day")["logins"].mean())
    ax = P.plot_spaghetti(df, time="day", y="logins", id="user_id", max_ids=10)
    assert len(ax.lines) == 11


def test_spaghetti_by_group(binary):
    df, _ = binary
    ax = P.plot_spaghetti(df, time="time", y="y", id="id", by="treatment", max_ids=20)
    assert len(ax.lines) == 22  # 20 people, 2 group means


def test_by_as_values_or_several_columns(binary):
    df, _ = binary
    as_list = P.plot_observed_means(df, time="time", y="y", by=df["treatment"].tolist())
    assert len(as_list.lines) == 2
    two = P.plot_observed_means(df, time="time", y="y", by=["treatment", "time"])
    assert len(two.lines) == 10
    assert two.get_legend().get_title().get_text() == "treatment / time"


def test_bad_column_name_is_reported(binary):
    df, _ = binary
    with pytest.raises(ValueError, match="must name a column"):
        P.plot_observed_means(df, time="wave", y="y")


# ---------------------------------------------------------------------------
# trajectories
# ---------------------------------------------------------------------------


def test_trajectories_binary_response_scale(binary, tmp_path):
    df, est = binary
    ax = P.plot_trajectories(est, df, df["id"], time="time", y="y", by="treatment", n_ids=8)
    _render(ax, tmp_path)
    assert len(ax.lines) == 8
    assert len(ax.collections) == 8  # observed points of each person
    for line in ax.lines:
        y = line.get_ydata()
        assert np.all((y > 0) & (y < 1))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["0", "1"]
    assert ax.get_legend().get_title().get_text() == "treatment"


def _padded_unit(ax):
    """A probability axis with room for whole markers at 0 and 1, ticks inside [0, 1]."""
    lo, hi = ax.get_ylim()
    assert lo <= -0.03 and hi >= 1.03
    assert lo >= -0.1 and hi <= 1.1
    ticks = ax.get_yticks()
    assert ticks.min() == 0.0 and ticks.max() == 1.0


def test_trajectories_observed_binary_points_are_not_cut(binary):
    """Observed 0/1 points sit inside the y-limits, with a margin, in one panel or in facets."""
    df, est = binary
    ax = P.plot_trajectories(est, df, df["id"], time="time", y="y", n_ids=5)
    _padded_unit(ax)
    ys = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    assert set(np.unique(ys)) == {0.0, 1.0}
    axes = P.plot_trajectories(est, df, df["id"], time="time", y="y", n_ids=4, facet=True)
    for panel in axes:
        _padded_unit(panel)
    # without observed points the axis is exactly [0, 1]
    _within_unit(P.plot_trajectories(est, df, df["id"], time="time", n_ids=5))
    assert P.plot_trajectories(est, df, df["id"], time="time", n_ids=5).get_ylim() == (0.0, 1.0)


def test_trajectories_legend_is_titled_with_the_factor(slopes):
    df, est = slopes
    ax = P.plot_trajectories(est, df, df["user_id"], time="day", y="logins", ids=[1, 2, 3])
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "user_id"
    assert [t.get_text() for t in legend.get_texts()] == ["1", "2", "3"]
    ax = P.plot_trajectories(est, df, df["user_id"], time="day", n_ids=4, by=np.repeat([0, 1], 750))
    assert ax.get_legend().get_title().get_text() == "group"


def test_trajectories_facets_one_panel_per_person(slopes, tmp_path):
    df, est = slopes
    ids = [1, 5, 10, 15, 20, 25, 30]
    axes = P.plot_trajectories(
        est, df, df["user_id"], time="day", y="logins", ids=ids, facet=True, ncols=3
    )
    _render(axes, tmp_path)
    fig = axes[0].figure
    assert axes.shape == (7,)
    assert len(fig.axes) == 7  # the two empty cells of the 3 x 3 grid are removed
    assert axes[0].get_gridspec().get_geometry() == (3, 3)
    assert [a.get_title() for a in axes] == [f"user_id {i}" for i in ids]
    for panel, i in zip(axes, ids):
        assert len(panel.lines) == 1 and len(panel.collections) == 1
        rows = df["user_id"] == i
        np.testing.assert_allclose(panel.collections[0].get_offsets()[:, 1], df.loc[rows, "logins"])
        np.testing.assert_allclose(
            panel.lines[0].get_ydata(),
            est.predict(df.loc[rows, ["day_centered"]], df.loc[rows, "user_id"]),
        )
    # shared axes, and the panel above an empty cell shows its x tick labels
    assert axes[0].get_ylim() == axes[-1].get_ylim()
    assert axes[4].xaxis.get_tick_params()["labelbottom"]
    assert not axes[1].xaxis.get_tick_params()["labelbottom"]
    # one legend for the figure: observed points and predicted lines, titled with y
    assert len(fig.legends) == 1
    legend = fig.legends[0]
    assert sorted(t.get_text() for t in legend.get_texts()) == ["observed", "predicted"]
    assert legend.get_title().get_text() == "logins"
    assert fig.get_supxlabel() == "day" and fig.get_supylabel() == "Predicted mean"


def test_trajectories_facets_layout_and_groups(binary):
    df, est = binary
    # facet_wrap's default: ceil(sqrt(n)) columns
    axes = P.plot_trajectories(est, df, df["id"], time="time", y="y", n_ids=6, facet=True)
    assert axes[0].get_gridspec().get_geometry() == (2, 3)
    axes = P.plot_trajectories(
        est, df, df["id"], time="time", y="y", by="treatment", n_ids=12, facet=True, ncols=6
    )
    assert axes[0].get_gridspec().get_geometry() == (2, 6)
    legend = axes[0].figure.legends[0]
    assert legend.get_title().get_text() == "treatment"
    assert sorted(t.get_text() for t in legend.get_texts()) == ["0", "1"]
    # link scale: lines only
    axes = P.plot_trajectories(
        est, df, df["id"], time="time", y="y", n_ids=3, facet=True, scale="link"
    )
    assert all(len(a.collections) == 0 and len(a.lines) == 1 for a in axes)
    with pytest.raises(ValueError, match="ncols"):
        P.plot_trajectories(est, df, df["id"], time="time", n_ids=3, facet=True, ncols=0)


def test_trajectories_facets_on_given_axes(binary):
    df, est = binary
    fig, grid = plt.subplots(2, 3)
    axes = P.plot_trajectories(est, df, df["id"], time="time", y="y", n_ids=5, facet=True, ax=grid)
    assert all(a is g for a, g in zip(axes, grid.ravel()))
    assert not grid[1, 2].get_visible()
    assert grid[1, 1].get_legend() is not None
    with pytest.raises(ValueError, match="5 panels"):
        P.plot_trajectories(est, df, df["id"], time="time", n_ids=5, facet=True, ax=grid[0])


def test_trajectories_are_conditional_predictions(binary):
    df, est = binary
    ax = P.plot_trajectories(est, df, df["id"], time="time", ids=[3], scale="response")
    rows = df["id"] == 3
    expected = est.predict_mean(df.loc[rows, FEATURES], df.loc[rows, "id"])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), expected)
    ax = P.plot_trajectories(est, df, df["id"], time="time", ids=[3], scale="link")
    eta = est.decision_function(df.loc[rows, FEATURES], df.loc[rows, "id"])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), eta)
    assert len(ax.collections) == 0  # no observed 0/1 points on the link scale


def test_trajectories_sample_is_reproducible_and_validated(binary):
    df, est = binary
    a = P.plot_trajectories(est, df, df["id"], time="time", random_state=4)
    b = P.plot_trajectories(est, df, df["id"], time="time", random_state=4)
    assert [tuple(line.get_ydata()) for line in a.lines] == [
        tuple(line.get_ydata()) for line in b.lines
    ]
    with pytest.raises(ValueError, match="not among the groups"):
        P.plot_trajectories(est, df, df["id"], time="time", ids=[10_000])
    with pytest.raises(ValueError, match="scale"):
        P.plot_trajectories(est, df, df["id"], time="time", scale="odds")
    with pytest.raises(ValueError, match="needs groups"):
        P.plot_trajectories(est, df, time="time")


def test_trajectories_counts_random_slopes(slopes, tmp_path):
    df, est = slopes
    ax = P.plot_trajectories(est, df, df["user_id"], time="day", y="logins", n_ids=6)
    _render(ax, tmp_path)
    assert len(ax.lines) == 6
    assert ax.get_ylim()[1] > 1.0


def test_link_response_side_by_side(binary, tmp_path):
    df, est = binary
    axes = P.plot_link_response(est, df, df["id"], time="time", by="treatment", n_ids=10)
    _render(axes, tmp_path)
    assert len(axes) == 2
    assert len(axes[0].lines) == 10 and len(axes[1].lines) == 10
    _within_unit(axes[1])
    assert axes[0].get_ylim()[0] < 0  # log-odds go below zero
    # random intercepts only: the link-scale lines of one group are parallel
    diffs = {tuple(np.round(np.diff(line.get_ydata()), 8)) for line in axes[0].lines}
    assert len(diffs) == 1


def test_link_response_on_given_axes(counts):
    df, est = counts
    fig, given = plt.subplots(1, 2)
    out = P.plot_link_response(est, df, df["id"], time="time", axes=given, n_ids=3)
    assert out[0] is given[0] and out[1] is given[1]
    with pytest.raises(ValueError, match="two Axes"):
        P.plot_link_response(est, df, df["id"], time="time", axes=[given[0]])


def test_conditional_marginal(binary, counts, tmp_path):
    grid = pd.DataFrame({"time": np.tile(np.arange(5), 2), "treatment": np.repeat([0, 1], 5)})
    _, est = binary
    ax = P.plot_conditional_marginal(est, grid, time="time", by="treatment")
    _render(ax, tmp_path)
    assert len(ax.lines) == 4
    _within_unit(ax)
    zero, marginal = ax.lines[0].get_ydata(), ax.lines[1].get_ydata()
    # averaging over the random intercept pulls probabilities towards 1/2
    assert np.all(np.abs(marginal - 0.5) < np.abs(zero - 0.5))
    _, est = counts
    ax = P.plot_conditional_marginal(est, grid[grid["treatment"] == 1], time="time")
    assert len(ax.lines) == 2
    ratio = ax.lines[1].get_ydata() / ax.lines[0].get_ydata()
    var = est.random_effects_cov_["id"].iloc[0, 0]
    np.testing.assert_allclose(ratio, np.exp(var / 2))


def test_predicted_vs_observed(binary, counts, tmp_path):
    df, est = binary
    ax = P.plot_predicted_vs_observed(est, df, df["id"], time="time", y="y", by="treatment")
    _render(ax, tmp_path)
    assert len(ax.lines) == 4
    _within_unit(ax)
    df, est = counts
    ax = P.plot_predicted_vs_observed(est, df, df["id"], time="time", y="y")
    assert len(ax.lines) == 2
    observed, predicted = (line.get_ydata() for line in ax.lines)
    # conditional Poisson fit with an intercept: means match overall
    assert abs(observed.mean() - predicted.mean()) < 0.05 * observed.mean()


# ---------------------------------------------------------------------------
# random effects
# ---------------------------------------------------------------------------


def test_ranef_qq(binary, slopes, tmp_path):
    _, est = binary
    ax = P.plot_ranef_qq(est)
    _render(ax, tmp_path)
    assert len(ax.lines) == 1 and len(ax.collections) == 1
    points = ax.collections[0].get_offsets()
    assert len(points) == 80
    np.testing.assert_allclose(np.sort(points[:, 1]), np.sort(est.ranef_["id"].iloc[:, 0]))
    _, est = slopes
    ax = P.plot_ranef_qq(est, "user_id", "day_centered")
    assert "day_centered" in ax.get_ylabel()


def test_ranef_qq_title_names_the_model(binary, slopes, counts):
    _, est = slopes
    title = P.plot_ranef_qq(est, "user_id", "day_centered").get_title()
    assert "user_id" in title and "day_centered" in title
    assert "Poisson GLMM (log link)" in title
    _, est = binary
    title = P.plot_ranef_qq(est).get_title()
    assert "id, (Intercept)" in title and "Binomial GLMM (logit link)" in title
    df, _ = counts
    nb = NegBinGLMM().fit(df[FEATURES], df["y"], groups=df["id"])
    assert "Negative binomial GLMM" in P.plot_ranef_qq(nb).get_title()


def test_caterpillar(slopes, tmp_path):
    df, est = slopes
    ax = P.plot_caterpillar(est, term="(Intercept)", level=0.9)
    _render(ax, tmp_path)
    assert len(ax.containers) == 1
    xs = ax.containers[0].lines[0].get_xdata()
    assert np.all(np.diff(xs) >= 0)  # sorted
    assert len(ax.get_yticklabels()) == 0  # 50 levels > max_labels
    ax = P.plot_caterpillar(est, max_labels=100)
    assert len(ax.get_yticklabels()) == 50
    with pytest.raises(ValueError, match="factor"):
        P.plot_caterpillar(est, factor="school")


def test_caterpillar_interval_width(binary):
    _, est = binary
    ax = P.plot_caterpillar(est)
    segments = ax.containers[0].lines[2][0].get_segments()
    half = np.array([(s[1][0] - s[0][0]) / 2 for s in segments])
    sd = np.sqrt(est.fit_result_.ranef_condvar["id"][:, 0, 0])
    np.testing.assert_allclose(np.sort(half), np.sort(1.959964 * sd), rtol=1e-5)


def test_no_random_effects_is_reported(binary):
    df, _ = binary
    with pytest.warns(UserWarning):
        glm = BinomialGLMM().fit(df[FEATURES], df["y"])
    with pytest.raises(ValueError, match="no random effects"):
        P.plot_ranef_qq(glm)


# ---------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------


def test_residuals(counts, binary, tmp_path):
    _, est = counts
    ax = P.plot_residuals(est)
    _render(ax, tmp_path)
    assert len(ax.lines) == 2 and len(ax.collections) == 1
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], est.residuals("pearson"))
    _, est = binary
    ax = P.plot_residuals(est, "deviance", n_bins=7)
    assert len(ax.lines[1].get_xdata()) == 7
    assert "Deviance" in ax.get_ylabel()


def test_ppc_binary(binary, tmp_path):
    df, est = binary
    ax = P.plot_ppc(est, df, ["treatment", "time"], n_sim=30, random_state=0)
    _render(ax, tmp_path)
    assert len(ax.collections) == 2
    assert len(ax.collections[0].get_offsets()) == 10 * 30
    assert len(ax.collections[1].get_offsets()) == 10
    _within_unit(ax)


def test_simulate_cell_means(binary):
    df, est = binary
    observed, sims = P.simulate_cell_means(est, df, "treatment", n_sim=200, random_state=0)
    assert sims.shape == (2, 200)
    np.testing.assert_allclose(observed.to_numpy(), df.groupby("treatment")["y"].mean())
    # a model fitted by maximum likelihood reproduces its cells on average
    np.testing.assert_allclose(sims.mean(axis=1), observed, atol=0.02)
    again = P.simulate_cell_means(est, df, "treatment", n_sim=200, random_state=0)[1]
    np.testing.assert_array_equal(again.to_numpy(), sims.to_numpy())


def test_simulate_cell_means_uses_est_simulate_and_given_draws(binary, monkeypatch):
    df, est = binary
    n = len(df)
    ones = np.ones((n, 3))
    _, sims = P.simulate_cell_means(est, df, "treatment", simulated=ones)
    assert np.all(sims.to_numpy() == 1.0)
    calls = []

    def fake_simulate(n_sim, random_state=None, *, new_random_effects=True):
        calls.append((n_sim, random_state, new_random_effects))
        return np.zeros((n, n_sim))

    monkeypatch.setattr(est, "simulate", fake_simulate)
    _, sims = P.simulate_cell_means(
        est, df, "treatment", n_sim=4, random_state=7, new_random_effects=False
    )
    assert calls == [(4, 7, False)] and sims.shape == (2, 4) and np.all(sims.to_numpy() == 0)
    with pytest.raises(ValueError, match="training rows"):
        P.simulate_cell_means(est, df, "treatment", simulated=np.ones((n - 1, 2)))


def test_ppc_keeping_the_modes_is_tighter(binary):
    """Simulating with the fitted modes varies less than with new random effects."""
    df, est = binary
    _, new = P.simulate_cell_means(est, df, "treatment", n_sim=200, random_state=1)
    _, kept = P.simulate_cell_means(
        est, df, "treatment", n_sim=200, random_state=1, new_random_effects=False
    )
    assert np.all(kept.std(axis=1) < new.std(axis=1))


def test_rootogram(counts, tmp_path):
    df, est = counts
    ax = P.plot_rootogram(est, max_count=15)
    _render(ax, tmp_path)
    assert len(ax.patches) == 16
    assert len(ax.lines) == 2
    expected = ax.lines[0].get_ydata() ** 2
    # expected frequencies of 0..14 from predict_proba summed over the training rows;
    # its last column, the bin "15+", is each row's P(Y >= 15)
    proba = est.predict_proba(df[FEATURES], df["id"], max_count=15)
    np.testing.assert_allclose(expected, proba.sum(axis=0), rtol=1e-8)
    np.testing.assert_allclose(expected.sum(), len(df), rtol=1e-8)
    # heights of the hanging bars are sqrt(observed frequencies), counts >= 15 pooled
    observed = np.bincount(df["y"].clip(upper=15), minlength=16)
    assert observed[15] == (df["y"] >= 15).sum() > 0
    np.testing.assert_allclose([p.get_height() for p in ax.patches], np.sqrt(observed))
    given = P.plot_rootogram(est, df[FEATURES], df["y"], df["id"], max_count=15)
    np.testing.assert_allclose(given.lines[0].get_ydata() ** 2, expected, rtol=1e-8)


def test_rootogram_axis_and_legend(counts):
    df, est = counts
    for max_count, width in [(15, 6.0), (40, 6.0), (7, 3.0)]:
        fig, ax = plt.subplots(figsize=(width, 4))
        P.plot_rootogram(est, max_count=max_count, ax=ax)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels()]
        # whole-number ticks; the last bin is labelled "K+"
        assert labels[-1] == f"{max_count}+"
        assert all(label.isdigit() for label in labels[:-1])
        assert [int(label) for label in labels[:-1]] == sorted({int(x) for x in labels[:-1]})
        assert list(ax.get_xticks()) == [int(x) for x in labels[:-1]] + [max_count]
        assert len(labels) <= 12
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["observed", "expected"]
    with pytest.raises(ValueError, match="max_count"):
        P.plot_rootogram(est, max_count=0)


def test_rootogram_standing_and_nb(counts):
    df, _ = counts
    nb = NegBinGLMM().fit(df[FEATURES], df["y"], groups=df["id"])
    ax = P.plot_rootogram(nb, style="standing")
    assert all(p.get_y() == 0 for p in ax.patches)
    assert len(ax.patches) >= 11


def test_rootogram_rejects_binomial(binary):
    _, est = binary
    with pytest.raises(TypeError, match="count models"):
        P.plot_rootogram(est)


# ---------------------------------------------------------------------------
# inputs: formula models, given axes, estimator checks
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_formula_model_reads_its_design_from_data(tmp_path):
    pytest.importorskip("formulaic")
    from sklearn_glmm.datasets import make_vegetables
    from sklearn_glmm.formula import glmer

    df, _ = make_vegetables(random_state=1, n_subjects=120)
    est = glmer("y ~ trt * sex + (1 | id)", df)
    ax = P.plot_trajectories(est, df, time="day", y="y", by="trt", n_ids=5)
    assert len(ax.lines) == 5
    ax = P.plot_ppc(est, df, ["trt", "sex"], n_sim=20, random_state=0)
    _render(ax, tmp_path)
    assert len(ax.collections[1].get_offsets()) == 4
    _within_unit(ax)
    grid = pd.DataFrame({"trt": ["control", "treat"] * 2, "sex": ["female"] * 2 + ["male"] * 2})
    grid["day"] = 1
    ax = P.plot_conditional_marginal(est, grid, time="day", by=["trt", "sex"])
    assert len(ax.lines) == 8


def test_group_columns_model_reads_groups_from_data():
    df = load_app_logins()
    est = PoissonGLMM(group_columns="user_id").fit(df[["day_centered", "user_id"]], df["logins"])
    ax = P.plot_trajectories(est, df, time="day", y="logins", ids=[1, 2])
    rows = df["user_id"] == 1
    np.testing.assert_allclose(
        ax.lines[0].get_ydata(), est.predict(df.loc[rows, ["day_centered", "user_id"]])
    )
    ax = P.plot_predicted_vs_observed(est, df, time="day", y="logins")
    assert len(ax.lines) == 2


def test_draws_on_given_axes(binary):
    df, est = binary
    fig, ax = plt.subplots()
    assert P.plot_observed_means(df, time="time", y="y", ax=ax) is ax
    assert P.plot_residuals(est, ax=ax) is ax


def test_unfitted_estimator_is_rejected(binary):
    from sklearn.exceptions import NotFittedError

    df, _ = binary
    with pytest.raises(NotFittedError):
        P.plot_trajectories(BinomialGLMM(), df, df["id"], time="time")


def _waves(n_id, n_w, **columns):
    """People ``id`` by waves ``t`` (a person's rows together), with ``columns``."""
    ids = np.repeat(np.arange(n_id), n_w)
    return pd.DataFrame({"id": ids, "t": np.tile(np.arange(n_w, dtype=float), n_id), **columns})


def test_plots_take_the_offset_of_a_model_fitted_with_one():
    # without an offset argument the predicted lines were at exposure 1 (the warning's
    # advice, pass offset=, could not be followed)
    import warnings

    rng = np.random.default_rng(0)
    n_id, n_w = 30, 6
    d = _waves(
        n_id, n_w, x=rng.normal(size=n_id * n_w), logE=np.log(rng.uniform(2, 20, n_id * n_w))
    )
    d["y"] = rng.poisson(np.exp(0.2 + 0.1 * d.t + d.logE + rng.normal(0, 0.3, n_id)[d.id]))
    X = d[["x", "t"]]
    m = PoissonGLMM().fit(X, d.y, groups=d.id, offset=d.logE)
    want = pd.Series(m.predict(X, groups=d.id, offset=d.logE)).groupby(d.t).mean().to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "these predictions have none"
        ax = P.plot_predicted_vs_observed(m, d, d.id, time="t", y="y", offset="logE")
        np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), want, rtol=1e-10)
        ax = P.plot_trajectories(m, d, d.id, time="t", y="y", offset=d.logE.to_numpy(), ids=[3])
        rows = (d.id == 3).to_numpy()
        mu = m.predict(X[rows], groups=d.id[rows], offset=d.logE[rows])
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), mu, rtol=1e-10)
        P.plot_link_response(m, d, d.id, time="t", offset="logE", ids=[3])
        grid = d[d.id == 0]
        ax = P.plot_conditional_marginal(m, grid, time="t", offset="logE")
        zero = m.predict(grid[["x", "t"]], offset=grid.logE, population="zero")
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), zero, rtol=1e-10)
        P.plot_rootogram(m, X, d.y, d.id, offset=d.logE)
    plt.close("all")
    with pytest.warns(UserWarning, match="fitted with an offset"):
        P.plot_predicted_vs_observed(m, d, d.id, time="t", y="y")
    plt.close("all")


def test_ordinal_plots_take_the_offset_of_a_model_fitted_with_one():
    # category_proportions and plot_category_probabilities had no offset argument: their
    # predictions were at offset 0 with a warning whose advice could not be followed
    import warnings

    from sklearn_glmm import OrdinalGLMM

    rng = np.random.default_rng(1)
    n_id, n_w = 40, 5
    d = _waves(n_id, n_w, off=rng.normal(0, 1, n_id * n_w))
    lat = 0.3 * d.t + d.off + rng.normal(0, 1, n_id)[d.id] + rng.logistic(size=len(d))
    d["y"] = np.digitize(lat, [0.0, 1.0, 2.0])
    m = OrdinalGLMM().fit(d[["t"]], d.y, groups=d.id, offset=d.off)
    proba = m.predict_proba(d[["t"]], d.id, offset=d.off)
    want = pd.DataFrame(proba, columns=m.classes_).groupby(d.t).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = P.category_proportions(m, d, "y", "t", d.id, offset="off")
        np.testing.assert_allclose(table["predicted"].to_numpy(), want.to_numpy(), rtol=1e-10)
        P.plot_category_proportions(m, d, "y", "t", d.id, offset=d.off.to_numpy())
        one = d[d.id == 0]
        ax = P.plot_category_probabilities(m, one, "t", one.id, kind="line", offset="off")
        p0 = m.predict_proba(one[["t"]], one.id, offset=one.off)[:, 0]
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), p0, rtol=1e-10)
    plt.close("all")
    with pytest.warns(UserWarning, match="offset"):
        P.category_proportions(m, d, "y", "t", d.id)


# ---------------------------------------------------------------------------
# fitted Pipelines and searches
# ---------------------------------------------------------------------------
def _scaled_pipeline(df):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(
        StandardScaler().set_output(transform="pandas"),
        PoissonGLMM(random_effects="1 + time"),
    )
    return pipe.fit(df[FEATURES], df["y"], poissonglmm__groups=df["id"])


def test_plots_of_the_model_alone_take_a_fitted_pipeline_or_search(counts):
    # the model at its end, as the model checks take it (they failed with scikit-learn's
    # "has no attribute" or a TypeError)
    from sklearn.model_selection import GridSearchCV, GroupKFold

    df, _ = counts
    pipe = _scaled_pipeline(df)
    search = GridSearchCV(
        PoissonGLMM(group_columns="id"), {"random_effects": ["1", "1 + time"]}, cv=GroupKFold(2)
    ).fit(df[[*FEATURES, "id"]], df["y"], groups=df["id"])
    for model, inner in ((pipe, pipe[-1]), (search, search.best_estimator_)):
        for plot in (P.plot_ranef_qq, P.plot_caterpillar, P.plot_residuals, P.plot_rootogram):
            got, want = plot(model), plot(inner)
            for a, b in zip(np.ravel(got), np.ravel(want)):
                assert a.get_title() == b.get_title()
                assert len(a.collections) + len(a.lines) == len(b.collections) + len(b.lines)
        ax = P.plot_marginal_coefs(model)
        assert ax.get_yticklabels()


def test_plots_reading_rows_refuse_a_pipeline_naming_its_final_step(counts):
    # its final step sees the rows transformed by the steps before it
    df, _ = counts
    pipe = _scaled_pipeline(df)
    calls = {
        "plot_trajectories": lambda: P.plot_trajectories(pipe, df, df["id"], time="time", y="y"),
        "plot_link_response": lambda: P.plot_link_response(pipe, df, df["id"], time="time"),
        "plot_conditional_marginal": lambda: P.plot_conditional_marginal(pipe, df, time="time"),
        "plot_predicted_vs_observed": lambda: P.plot_predicted_vs_observed(
            pipe, df, df["id"], time="time", y="y"
        ),
        "plot_ppc": lambda: P.plot_ppc(pipe, df, "time"),
        "simulate_cell_means": lambda: P.simulate_cell_means(pipe, df, "time"),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"{name}\(pipe\[-1\], data, \.\.\.\)"):
            call()
    with pytest.raises(TypeError, match=r"plot_rootogram\(pipe\[-1\], pipe\[:-1\]\.transform"):
        P.plot_rootogram(pipe, df[FEATURES], df["id"])
    # as advised: the final step on the rows as it saw them, the time axis in the raw
    # time (a copy: the model's own time column is rescaled)
    seen = pipe[:-1].transform(df[FEATURES])
    data = df.assign(**seen, time_raw=df["time"])
    ax = P.plot_trajectories(pipe[-1], data, df["id"], time="time_raw", y="y")
    assert ax.lines and ax.get_xlim()[1] > seen["time"].max()
