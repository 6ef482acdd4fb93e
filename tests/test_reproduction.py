"""The reproduction report's section on the `paper` runs finished so far: read from the cache or the archive,
computing nothing, judged against the published numbers, and left out once the chapter itself is at `paper`."""

import time
from dataclasses import replace

import pandas as pd

from hybridrl import hpo_experiments as hx
from hybridrl import paths, reporting, reproduction


def test_finished_paper_runs_are_read_and_judged_against_the_published_numbers(tmp_path, monkeypatch):
    for name, where in (("CACHE", "cache"), ("RUNS", "paper/runs"), ("TABLES", "paper/tables")):
        monkeypatch.setattr(paths, name, tmp_path / where)
    # `paper` grids of a few seconds: a published S-LQR cell (p = 8, J = 2) and §10.3's batch-16 sweep at n = 1
    monkeypatch.setitem(hx.LQR_BUDGETS, "paper", replace(hx.LQR_BUDGETS["smoke"], cells=((8, 2, "switched"),)))
    monkeypatch.setitem(hx.JRP_BUDGETS, "paper", replace(hx.JRP_BUDGETS["smoke"], items=()))
    monkeypatch.setitem(hx.JRP_TABLE_SWEEPS, "paper", hx.JRP_TABLE_SWEEPS["smoke"])
    sweep = hx.JRP_TABLE_SWEEPS["smoke"][0]

    nothing = reproduction.finished_paper_runs()
    assert list(nothing.columns) == reproduction.PAPER_RUN_COLUMNS and len(nothing) == 0
    assert reproduction.paper_run_rows(nothing) == []
    assert not list(paths.CACHE.rglob("*.json"))  # nothing computed

    records = [hx.run_lqr(8, 2, "switched", m, s, "paper") for m in ("hpo_full", "hpo_decentralized", "ppo")
               for s in (0, 1)]
    records += [hx.run_jrp(1, m, s, "paper", batch=sweep.batch) for m in sweep.methods for s in sweep.seeds]
    runs = reproduction.finished_paper_runs()
    assert len(runs) == 10
    assert sorted(runs.test_cost) == sorted(r["test_cost"] for r in records)
    assert set(runs.grid) == {"switched_lqr", "jrp_batch16"}
    assert (runs[runs.grid == "jrp_batch16"].batch == sweep.batch).all()

    rows = {r.quantity: r for r in reproduction.paper_run_rows(runs)}
    hpo = rows["hpo_full, switched LQR p=8, J=2, switched"]
    assert hpo.target == "49.05" and hpo.tolerance == "±2.0%" and hpo.profile == "paper"
    assert hpo.reproduced in ("yes", "no", "inconclusive") and "2 runs" in hpo.ours
    mean = runs[(runs.grid == "switched_lqr") & (runs.method == "hpo_full")].test_cost.mean()
    assert hpo.ours.startswith(f"{mean:.2f}; vs published {100 * (mean / 49.05 - 1):+.3f}%")
    assert rows["ppo, switched LQR p=8, J=2, switched"].target == "70.66"
    optimal = hx.lqr_references(8, 2, "switched", "paper")["optimal"]
    assert rows["hpo_full gap to our exact optimum, p=8, J=2, switched"].target == f"{optimal:.3f}"
    assert rows["PPO cost over HPO cost, switched LQR p=8, J=2, switched"].reproduced in ("yes", "no", "inconclusive")
    decentralized = rows["decentralized HPO cost over HPO-full cost, switched LQR p=8, J=2, switched"]
    assert "published -0.20 %" in decentralized.source and decentralized.reproduced in ("yes", "no")
    full, dec = (runs[(runs.grid == "switched_lqr") & (runs.method == m)].test_cost.mean()
                 for m in ("hpo_full", "hpo_decentralized"))
    assert decentralized.ours.startswith(f"{100 * (dec / full - 1):+.3f}%")
    published = reproduction.JRP_PUBLISHED[1][0]
    jrp = rows[f"hpo_full cost per item and period, n=1, B = {sweep.batch}"]
    assert jrp.target == f"{published:.2f}" and jrp.profile == "paper"
    tie = rows[f"PPO cost over HPO cost, JRP n=1, B = {sweep.batch}"]  # few items: the paper reports a tie
    assert tie.target == "0 %" and tie.tolerance == "±2.0%" and "within about 0.7 %" in tie.source
    many = runs.assign(n_items=[30 if g == "jrp_batch16" else n for g, n in zip(runs.grid, runs.n_items)])
    worse = {r.quantity: r for r in reproduction.paper_run_rows(many)}
    worse = worse[f"PPO cost over HPO cost, JRP n=30, B = {sweep.batch}"]
    assert worse.target == "> 0 %" and worse.tolerance == "interval > 0"  # many items: PPO worse

    # with chapter 6's study of the item draws: its spread beside HPO-full's number, and the fixed-cycle bar
    instances = hx.jrp_instances("smoke", progress=False)
    reporting.save_table(instances, "hpo_jrp_instances",
                         reporting.provenance("notebooks/06_joint_replenishment.py", "smoke", time.time()))
    rows = {r.quantity: r for r in reproduction.paper_run_rows(runs)}
    one = instances[instances.n_items == 1].iloc[0]
    jrp = rows[f"hpo_full cost per item and period, n=1, B = {sweep.batch}"]
    assert f"item draws: sd {one.draws_sd_pct:.1f} %" in jrp.ours
    bar = rows[f"hpo_full over the fixed-cycle policy, n=1, B = {sweep.batch}"]
    assert bar.target == f"{one.fixed_cycle:.2f}" and bar.reproduced == "not judged"
    hpo_mean = runs[(runs.grid == "jrp_batch16") & (runs.method == "hpo_full")].test_cost.mean()
    assert bar.ours.startswith(f"{hpo_mean:.2f}; {100 * (hpo_mean / one.fixed_cycle - 1):+.3f}%")

    # once chapter 5 itself is at the paper profile, its rows are the chapter's own: none here
    stamp = reporting.provenance("notebooks/05_switched_lqr.py", "paper", time.time())
    reporting.save_table(pd.DataFrame(dict(a=[1])), "hpo_switched_lqr_summary", stamp)
    left = [r.quantity for r in reproduction.paper_run_rows(runs)]
    assert left and not any("switched LQR" in q or "exact optimum" in q for q in left)
