"""Aggregate statistics over seeds: exact values, coverage of the bootstrap intervals, and rliable agreement."""

import numpy as np
import pandas as pd
import pytest

from hybridrl import stats


def test_aggregates_of_a_known_array():
    x = np.arange(1.0, 9.0).reshape(4, 2)  # scores 1..8
    agg = stats.aggregate(x)
    assert agg["mean"] == 4.5 and agg["median"] == 4.5
    assert agg["iqm"] == np.mean([3, 4, 5, 6])  # the middle half of 1..8
    assert stats.iqm(np.array([[0.0], [0.0], [0.0], [100.0]])) == 0.0  # one outlying run does not move the IQM
    assert (agg["runs"], agg["tasks"]) == (4, 2)


def test_bootstrap_intervals_cover_the_truth_at_their_level():
    """Over many synthetic experiments (10 seeds x 3 tasks), the 95 % interval of the mean covers the true mean
    about 95 % of the time (the percentile bootstrap under-covers slightly with 10 runs)."""
    rng = np.random.default_rng(0)
    task_means = np.array([1.0, 5.0, -2.0])
    covered = 0
    trials = 300
    for k in range(trials):
        scores = task_means + rng.normal(size=(10, 3))
        covered += stats.stratified_bootstrap(scores, "mean", reps=1000, seed=k).contains(task_means.mean())
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_resamples_runs_within_each_task():
    x = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])
    resampled = stats._resample(x, 500, np.random.default_rng(0))
    assert resampled.shape == (500, 3, 2)
    assert set(np.unique(resampled[:, :, 0])) <= {0.0, 1.0, 2.0}
    assert set(np.unique(resampled[:, :, 1])) <= {100.0, 101.0, 102.0}
    interval = stats.stratified_bootstrap(x, "mean", seed=1)
    assert interval.low <= interval.estimate <= interval.high
    assert interval == stats.stratified_bootstrap(x, "mean", seed=1)  # same seed, same interval


def test_probability_of_improvement():
    a = np.array([[3.0, 3.0], [4.0, 4.0]])
    b = np.array([[1.0, 1.0], [2.0, 2.0]])
    assert stats.probability_of_improvement(a, b).estimate == 1.0
    assert stats.probability_of_improvement(b, a).estimate == 0.0
    assert stats.probability_of_improvement(a, a).estimate == 0.5
    assert stats.probability_of_improvement(b, a, lower_is_better=True).estimate == 1.0
    # one task: x = [1, 3], y = [2]: P(X > Y) = 1/2; with a tie x = [2, 3]: (1 + 0.5) / 2
    assert stats.probability_of_improvement([[1.0], [3.0]], [[2.0]]).estimate == 0.5
    assert stats.probability_of_improvement([[2.0], [3.0]], [[2.0]]).estimate == 0.75
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement(np.ones((3, 2)), np.ones((3, 3)))


def test_performance_profile():
    x = np.array([[0.1, 0.5], [0.2, 2.0]])  # gaps in %, lower is better
    profile = stats.performance_profile(x, [0.0, 0.15, 0.3, 1.0, 5.0], lower_is_better=True)
    assert profile.fraction.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert np.all(np.diff(profile.fraction) >= 0) and np.all(profile.low <= profile.fraction + 1e-12)
    higher = stats.performance_profile(x, [0.15, 1.0])
    assert higher.fraction.tolist() == [0.75, 0.25]


def test_bad_scores_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        stats.aggregate([[1.0, float("nan")]])
    with pytest.raises(ValueError, match=r"\[runs, tasks\]"):
        stats.aggregate(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="confidence"):
        stats.stratified_bootstrap(np.ones((3, 2)), confidence=95)


def _rliable():
    try:  # the optional `stats` extra; rliable's dependency arch < 8 fails to import beside pandas 3
        from rliable import library, metrics
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"rliable is not usable here: {type(err).__name__}: {err}")
    return library, metrics


def test_point_estimates_agree_with_rliable():
    _, metrics = _rliable()
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, size=(12, 5))
    y = rng.gamma(2.2, size=(9, 5))
    assert stats.iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
    assert stats.mean(x) == pytest.approx(metrics.aggregate_mean(x))
    # rliable's median is the median over tasks of the per-task mean; ours pools all run x task scores
    assert stats.median(x.mean(axis=0, keepdims=True)) == pytest.approx(metrics.aggregate_median(x))
    assert stats.probability_of_improvement(x, y).estimate == pytest.approx(metrics.probability_of_improvement(x, y))


def test_intervals_agree_with_rliable():
    rl, metrics = _rliable()
    x = np.random.default_rng(4).gamma(2.0, size=(12, 5))
    try:
        points, intervals = rl.get_interval_estimates({"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=4000)
    except TypeError as err:  # rliable 1.2's bootstrap breaks with arch 8 (the only arch that imports beside pandas 3)
        pytest.skip(f"rliable's bootstrap does not run with this arch: {err}")
    ours = stats.stratified_bootstrap(x, "iqm", reps=4000, seed=0)
    assert ours.estimate == pytest.approx(points["x"][0])
    # different random streams: the percentile ends agree within bootstrap noise
    width = intervals["x"][1, 0] - intervals["x"][0, 0]
    assert abs(ours.low - intervals["x"][0, 0]) < 0.1 * width and abs(ours.high - intervals["x"][1, 0]) < 0.1 * width


# ---- long tables ----------------------------------------------------------------------------------------------
def _long(values):
    """A long table from {(seed, task): value}."""
    return pd.DataFrame([dict(seed=s, task=t, value=v) for (s, t), v in values.items()])


def test_score_matrix_pivots_and_rejects_incomplete_designs():
    df = _long({(0, "a"): 1.0, (0, "b"): 2.0, (1, "a"): 3.0, (1, "b"): 4.0})
    wide = stats.score_matrix(df, task="task", value="value")
    assert wide.to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match=r"missing, e\.g\. seed = 1, task = \('b',\)"):
        stats.score_matrix(df.iloc[:3], task="task", value="value")
    with pytest.raises(ValueError, match="repeat"):
        stats.score_matrix(pd.concat([df, df.iloc[:1]]), task="task", value="value")
    with pytest.raises(ValueError, match=r"columns \['cell'\] not in the table"):
        stats.score_matrix(df, task="cell", value="value")


def test_interval_table_per_task():
    df = _long({(s, t): v for s in range(5) for t, v in (("a", float(s)), ("b", 10.0))})
    table = stats.interval_table(df, by="task", value="value").set_index("task")
    assert table.loc["a", "value"] == 2.0 and table.loc["b", "value"] == 10.0
    assert 0.0 <= table.loc["a", "value_low"] < 2.0 < table.loc["a", "value_high"] <= 4.0
    assert table.loc["b", "value_low"] == table.loc["b", "value_high"] == 10.0  # no spread, no width
    assert table.runs.tolist() == [5, 5]


def test_curve_aggregates_every_point_over_runs_and_tasks():
    rows = [dict(seed=s, task=t, step=k, value=k + 0.1 * s) for s in range(4) for t in range(3) for k in (10, 20)]
    c = stats.curve(pd.DataFrame(rows), x="step", task="task", value="value", statistic="mean")
    assert c.step.tolist() == [10, 20]
    assert np.allclose(c.estimate, [10.15, 20.15])
    assert (c.low <= c.estimate).all() and (c.estimate <= c.high).all()
    assert c.runs.tolist() == [4, 4] and c.tasks.tolist() == [3, 3]
