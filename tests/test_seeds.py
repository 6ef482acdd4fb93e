"""Results over training seeds: per-cell intervals, grid summaries, learning curves, and judging by interval."""

import numpy as np
import pandas as pd
import pytest

from hybridrl import experiments, reproduction
from hybridrl.experiments import GridResult


def _result(gaps: dict, optimal: float = 10.0, steps=(5, 10)) -> GridResult:
    """A synthetic grid result: ``gaps[(seed, L)]`` is the final test gap (%) of that run on cell (L, p = 9)."""
    cells, history = [], []
    for (seed, L), gap in gaps.items():
        cost = optimal * (1 + gap / 100)
        cells.append(dict(seed=seed, lead_time=L, penalty=9, optimal=optimal, cost_estimate=cost, estimate_se=0.01,
                          gap_pct=gap, optimal_policy_dev_cost=optimal + 0.1, level=20.0 + gap))
        for k, step in enumerate(steps):  # the dev gap falls to the final gap
            dev_gap = gap + 10.0 / (k + 1) if k < len(steps) - 1 else gap
            history.append(dict(seed=seed, lead_time=L, penalty=9, member=0, step=step, seconds=2.0 * step + seed,
                                dev_cost=optimal + 0.1 + optimal * dev_gap / 100))
    return GridResult(pd.DataFrame(cells), pd.DataFrame(history))


GOOD = {(s, L): g for s, gs in enumerate([(0.1, 0.2), (0.3, 0.1), (0.2, 0.3)]) for L, g in zip((1, 2), gs)}
BAD = {(s, L): g + 1.0 for (s, L), g in GOOD.items()}


def test_seed_table_averages_seeds_per_cell_with_an_interval():
    table = experiments.seed_table({"hdpo": _result(GOOD), "heuristic": _result(BAD)}).set_index("lead_time")
    assert table.loc[1, "hdpo_gap_pct"] == pytest.approx(0.2) and table.loc[2, "hdpo_gap_pct"] == pytest.approx(0.2)
    assert table.loc[1, "hdpo"] == pytest.approx(10.02)
    assert table.loc[1, "hdpo_gap_low"] >= 0.1 - 1e-12 and table.loc[1, "hdpo_gap_high"] <= 0.3 + 1e-12
    assert table.loc[1, "hdpo_gap_low"] < 0.2 < table.loc[1, "hdpo_gap_high"]
    assert table.loc[1, "heuristic_gap_pct"] == pytest.approx(1.2)
    assert (table.hdpo_runs == 3).all() and (table.heuristic_runs == 3).all()


def test_grid_summary_and_probability_of_improvement():
    summary = experiments.grid_summary({"hdpo": _result(GOOD), "heuristic": _result(BAD)}, reference="hdpo")
    s = summary.set_index("method")
    assert s.loc["hdpo", "mean_gap_pct"] == pytest.approx(0.2)
    assert s.loc["hdpo", "mean_gap_low"] <= 0.2 <= s.loc["hdpo", "mean_gap_high"]
    assert s.loc["heuristic", "worst_cell_gap_pct"] == pytest.approx(1.2)
    assert s.loc["heuristic", "p_reference_better"] == 1.0  # every HDPO run beats every heuristic run
    assert np.isnan(s.loc["hdpo", "p_reference_better"])
    assert (s.runs == 3).all() and (s.cells == 2).all()
    # a reference that is worse everywhere never beats the other
    flipped = experiments.grid_summary({"hdpo": _result(BAD), "heuristic": _result(GOOD)}, reference="hdpo")
    assert flipped.set_index("method").loc["heuristic", "p_reference_better"] == 0.0


def test_learning_curve_and_profile():
    curve = experiments.learning_curve(_result(GOOD))
    assert curve.step.tolist() == [5, 10]
    assert curve.seconds.tolist() == [11.0, 21.0]  # median over seeds of 2 step + seed
    assert curve.estimate.iloc[0] > curve.estimate.iloc[1]
    assert curve.estimate.iloc[1] == pytest.approx(0.2, abs=0.06)  # the final dev gap is the test gap here
    profile = experiments.gap_profile(_result(GOOD), thresholds=[0.0, 0.15, 0.25, 1.0])
    assert profile.fraction.tolist() == [0.0, 2 / 6, 4 / 6, 1.0]


def test_run_grid_rejects_bad_seeds():
    for seeds in ([], [0, 0], [-1], [1.5]):
        with pytest.raises(ValueError, match="seeds must be distinct non-negative integers"):
            experiments.run_grid("lost_sales", "hdpo", "smoke", seeds=seeds)


def test_every_profile_trains_several_seeds():
    for (experiment, profile), b in experiments.BUDGETS.items():
        assert len(b.seeds) >= 2, (experiment, profile)
    assert experiments.budget_table("lost_sales", "quick").seeds.iloc[0] == 3


@pytest.mark.parametrize("low, high, verdict", [
    (-0.2, 0.9, "yes"), (0.5, 1.2, "inconclusive"), (1.1, 1.5, "no"), (-1.5, -1.1, "no"), (-1.2, 0.0, "inconclusive"),
])
def test_judging_by_interval(low, high, verdict):
    assert reproduction.judge(low, high, 1.0) == verdict


def test_judging_a_claim_by_interval():
    assert reproduction.judge_above(0.6, 0.9, 0.5) == "yes"
    assert reproduction.judge_above(0.4, 0.9, 0.5) == "inconclusive"
    assert reproduction.judge_above(0.1, 0.5, 0.5) == "no"
    assert reproduction.judge_not_above(0.1, 0.9, 0.0) == "no"  # the whole interval above: clearly worse
    assert reproduction.judge_not_above(-0.1, 0.9, 0.0) == "yes"


def test_cached_only_grids_draw_the_finished_seeds_and_train_nothing(tmp_path, monkeypatch):
    from hybridrl import paths

    monkeypatch.setattr(paths, "CACHE", tmp_path)
    done = experiments.run_grid("lost_sales", "base_stock", "smoke", seeds=(1,), lead_times=(1,), penalties=(4, 9),
                                progress=False)
    monkeypatch.setenv("HYBRIDRL_CACHED_ONLY", "1")
    partial = experiments.run_grid("lost_sales", "base_stock", "smoke", lead_times=(1,), penalties=(4, 9),
                                   progress=False)
    assert list(partial.table.seed.unique()) == [1]
    pd.testing.assert_frame_equal(partial.table, done.table)
    with pytest.raises(ValueError, match="no finished lost_sales run of hdpo"):
        experiments.run_grid("lost_sales", "hdpo", "smoke", lead_times=(1,), penalties=(4, 9), progress=False)
    assert len(list(tmp_path.rglob("*.json"))) == 1
