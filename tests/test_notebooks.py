"""The notebooks: paired and output-free, and every chapter executed end to end in the smoke profile."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pandas as pd
import pytest

from hybridrl import favorita, paths, pipeline, reporting, reproduction
from hybridrl.reporting import Provenance, save_table

CHAPTERS = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_there_are_chapters():
    names = [p.stem for p in CHAPTERS]
    assert {"00_overview", "01_lost_sales", "02_backlogged", "03_model_free", "04_mixed_gradient", "05_switched_lqr",
            "06_joint_replenishment", "90_benchmarks", "99_reproduction"} <= set(names)
    assert [p.stem for p in pipeline.chapters()][-1] == "99_reproduction"
    assert "90_benchmarks" not in [p.stem for p in pipeline.chapters()]


@pytest.mark.parametrize("source", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_pair_is_in_sync_and_output_free(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run `make sync`"
    raw = json.loads(paired.read_text())
    for cell in raw["cells"]:
        assert not cell.get("outputs"), f"{paired.name} carries outputs"
        assert cell.get("execution_count") is None, f"{paired.name} carries execution counts"
    text, nb = jupytext.read(source), jupytext.read(paired)
    assert [(c.cell_type, c.source) for c in text.cells] == [(c.cell_type, c.source) for c in nb.cells], (
        f"{source.name} and {paired.name} differ: run `make sync`"
    )
    tagged = [c for c in text.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "profile = " in tagged[0].source


SHARED_DATA = Path(os.environ["HYBRIDRL_DATA"]) if os.environ.get("HYBRIDRL_DATA") else (
    Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.mark.notebook
def test_make_reproduce_in_the_smoke_profile(tmp_path):
    """The real entry point (`python -m hybridrl.pipeline reproduce`) runs every chapter; outputs go to tmp."""
    env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path), MPLBACKEND="Agg", HYBRIDRL_DATA=str(SHARED_DATA))
    run = subprocess.run(
        [sys.executable, "-m", "hybridrl.pipeline", "reproduce", "--profile", "smoke"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    tables = tmp_path / "paper" / "tables"
    lost = pd.read_csv(tables / "hdpo_lost_sales.csv")
    assert list(lost.columns) == ["lead_time", "penalty", "optimal", "capped_base_stock", "capped_base_stock_gap_pct",
                                  "hdpo", "gap_pct", "gap_low", "gap_high", "runs"]
    assert len(lost) == 16 and (lost.runs == 2).all()  # the smoke profile trains two seeds
    assert ((lost.gap_low <= lost.gap_pct) & (lost.gap_pct <= lost.gap_high)).all()
    back = pd.read_csv(tables / "hdpo_backlogged.csv")
    assert list(back.columns) == ["lead_time", "penalty", "optimal", "base_stock", "base_stock_gap_pct", "hdpo",
                                  "gap_pct", "gap_low", "gap_high", "runs"]
    assert len(back) == 24
    runs = pd.read_csv(tables / "hdpo_lost_sales_runs.csv")
    assert len(runs) == 2 * 2 * 16 and set(runs.seed) == {0, 1}  # methods x seeds x cells
    summary = pd.read_csv(tables / "hdpo_backlogged_summary.csv").set_index("method")
    assert summary.loc["base_stock", "p_low"] <= summary.loc["base_stock", "p_reference_better"]
    jrp = pd.read_csv(tables / "hpo_jrp.csv")
    assert list(jrp.columns) == ["n_items", "method", "seed", "test_cost"]
    assert set(jrp.method) == {"hpo_full", "hpo_decentralized", "ppo", "gumbel_st", "can_order", "independent_s_S",
                               "fixed_cycle"}
    assert jrp[jrp.method == "can_order"].seed.isna().all()  # heuristics have no training seed
    instances = pd.read_csv(tables / "hpo_jrp_instances.csv")  # the item draws' study: smoke, n = 1 and 3
    assert list(instances.n_items) == [1, 3] and (instances.draws_sd_pct > 0).all()
    batch16 = pd.read_csv(tables / "hpo_jrp_batch16.csv")  # the smoke profile's small version of §10.3's sweep
    assert set(batch16.method) == {"hpo_full", "ppo"} and (batch16.batch == 8).all() and (batch16.runs == 2).all()
    assert batch16.published.notna().all()  # n = 1 is in the published table
    batch512 = pd.read_csv(tables / "hpo_jrp_batch512.csv")  # and of §10.2's batch-512 sweep, at batch 32
    assert set(batch512.method) == {"hpo_full", "ppo"} and (batch512.batch == 32).all()
    assert batch512.reference.notna().all() and batch512.published_gap_pct.notna().sum() == 1  # PPO's
    lqr = pd.read_csv(tables / "hpo_switched_lqr.csv")
    assert {"dim", "modes", "variant", "method", "seed", "test_cost", "optimal"} <= set(lqr.columns)
    assert {"switched", "single_mode"} <= set(lqr.variant) and "riccati" in set(lqr.method)
    cross = pd.read_csv(tables / "hpo_cross_term.csv")
    assert set(cross.statistic) >= {"pathwise_alignment", "cross_alignment", "pathwise_ppo_alignment",
                                    "cross_ppo_alignment"}
    serial = pd.read_csv(tables / "hdpo_serial.csv")
    assert {"method", "test_cost", "optimal", "gap_pct"} <= set(serial.columns)
    assert {"clark_scarf", "echelon_base_stock", "vanilla"} <= set(serial.method)
    one = pd.read_csv(tables / "hdpo_one_warehouse.csv")
    assert {"n_stores", "method", "train_scenarios", "test_cost", "lower_bound", "gap_pct"} <= set(one.columns)
    assert {"echelon_base_stock", "vanilla", "symmetry_aware", "gnn"} <= set(one.method)
    assert (one.test_cost >= one.lower_bound).all()  # the bound is below every policy, even untrained ones
    claim = pd.read_csv(tables / "hdpo_one_warehouse_data_claim.csv")  # one row per structured policy
    assert set(claim.method) == {"symmetry_aware", "gnn", "symmetry_aware_narrow"}
    assert (claim.reference == "vanilla").all()
    trans = pd.read_csv(tables / "hdpo_transshipment.csv")
    assert {"n_stores", "method", "test_cost", "lower_bound", "gap_pct"} <= set(trans.columns)
    versus = pd.read_csv(tables / "hdpo_vs_reinforce.csv")
    assert {"setting", "method", "seed", "wall_seconds", "test_cost", "gap_pct"} <= set(versus.columns)
    assert set(versus.method) == {"hdpo", "reinforce"}
    real = pd.read_csv(tables / "hdpo_real_data.csv")
    assert list(real.columns) == ["setting", "method", "seed", "test_profit", "profit_vs_oracle_pct"]
    if favorita.available(SHARED_DATA):
        assert {"hdpo", "fixed_quantile", "transformed_nv", "quantile_nv", "returns_nv", "just_in_time"} <= set(
            real.method)
        assert (real.profit_vs_oracle_pct <= 100 + 1e-6).all()
        margins = pd.read_csv(tables / "hdpo_real_data_margins.csv")
        assert set(margins.against) >= {"fixed_quantile", "transformed_nv", "quantile_nv"}
    else:
        assert real.empty
    bias = pd.read_csv(tables / "hpo_estimator_bias.csv")
    assert len(bias) == 2 and {"projection", "exact_norm", "max_abs_z"} <= set(bias.columns)
    for name in ["hdpo_lost_sales_gaps", "hdpo_lost_sales_learning", "hdpo_backlogged_gaps", "overview_base_stock_fit",
                 "hpo_estimator_variance", "hpo_switched_lqr_learning", "hpo_jrp_gap"]:
        assert (tmp_path / "paper" / "figures" / f"{name}.png").stat().st_size > 1000
    assert json.loads((tables / "hdpo_lost_sales.provenance.json").read_text())["profile"] == "smoke"
    report = (tmp_path / "paper" / "REPRODUCTION.md").read_text()
    assert "not judged" in report  # smoke numbers are never judged as reproduced or not
    assert (tmp_path / "build" / "notebooks" / "01_lost_sales.ipynb").exists()
    # a second run reads the cache: every chapter again, much faster
    again = subprocess.run(
        [sys.executable, "-m", "hybridrl.pipeline", "reproduce", "--profile", "smoke", "--only", "02_backlogged"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0


@pytest.mark.notebook
def test_the_real_data_chapter_stops_early_without_its_data(tmp_path):
    """No data: the chapter stops at its first step, the pipeline goes on and succeeds, and the tables and the
    report say "not run: data missing" — no crash, no numbers."""
    env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path), MPLBACKEND="Agg")
    env.pop("HYBRIDRL_DATA", None)
    run = subprocess.run(
        [sys.executable, "-m", "hybridrl.pipeline", "reproduce", "--profile", "smoke", "--only", "12_real_data",
         "99_reproduction", "--data", str(tmp_path / "nowhere")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "12_real_data.py SKIPPED" in run.stdout and "HYBRIDRL_DATA" in run.stdout
    tables = tmp_path / "paper" / "tables"
    assert pd.read_csv(tables / "hdpo_real_data.csv").empty
    assert json.loads((tables / "hdpo_real_data.provenance.json").read_text())["status"] == "not run: data missing"
    assert "not run: data missing" in (tmp_path / "paper" / "REPRODUCTION.md").read_text()


@pytest.mark.notebook
def test_a_sliced_sweep_then_reproduce_cached_only_draws_partial_tables(tmp_path):
    """The paper-profile workflow in slices: a sweep runs part of a grid (one number of items, one seed, every
    method), ``reproduce --cached-only`` trains nothing and draws the chapter from those runs, and every artifact
    and the report say the tables are partial."""
    env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path), MPLBACKEND="Agg")
    sweep = subprocess.run([sys.executable, "-m", "hybridrl.sweeps", "--profile", "smoke", "--chapters",
                            "06_joint_replenishment", "--where", "items=3", "seed=0", "--workers", "1"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stdout[-4000:] + sweep.stderr[-4000:]
    assert "JRP: 4 of 16 runs selected" in sweep.stdout
    trained = tmp_path / "build" / "cache" / "hpo" / "jrp"  # the training runs (not the heuristics' tuning)
    cache = sorted(p.name for p in trained.rglob("*.json"))
    assert len(cache) == 4
    run = subprocess.run(
        [sys.executable, "-m", "hybridrl.pipeline", "reproduce", "--profile", "smoke", "--cached-only", "--only",
         "06_joint_replenishment", "99_reproduction"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    tables = tmp_path / "paper" / "tables"
    runs = pd.read_csv(tables / "hpo_jrp.csv").dropna(subset=["seed"])
    assert set(runs.n_items) == {3} and set(runs.seed) == {0} and runs.method.nunique() == 4
    assert json.loads((tables / "hpo_jrp.provenance.json").read_text())["status"].startswith("partial")
    assert "**Partial tables**" in (tmp_path / "paper" / "REPRODUCTION.md").read_text()
    assert sorted(p.name for p in trained.rglob("*.json")) == cache  # nothing was trained


def test_a_plain_run_injects_the_declared_parameters_and_reports_the_error(tmp_path):
    """``--plain`` runs a chapter as a script: the overriding values go right after the parameters cell (only the
    names it declares), and an exception in the chapter comes back with its class name (the pipeline skips a
    chapter that raised DataMissing on that name)."""
    chapter = tmp_path / "01_toy.py"
    chapter.write_text("# %% [markdown]\n# A toy chapter\n\n"
                       '# %% tags=["parameters"]\nprofile = "quick"  # which scale\nsteps: int = 1\nout = ""\n\n'
                       "# %%\nimport json\n\nif steps < 0:\n    raise ValueError(f'steps = {steps} is negative')\n"
                       "json.dump(dict(profile=profile, steps=steps), open(out, 'w'))\n")
    assert pipeline.declared_parameters(chapter) == (["profile", "steps", "out"], 8)
    out = tmp_path / "values.json"
    script = pipeline.execute_script(chapter, dict(profile="smoke", steps=3, out=str(out), device="cuda"),
                                     tmp_path / "executed")
    assert json.loads(out.read_text()) == dict(profile="smoke", steps=3)
    assert "device" not in script.read_text()  # not declared: not passed on
    with pytest.raises(pipeline.ChapterFailed) as failure:
        pipeline.execute_script(chapter, dict(profile="smoke", steps=-1, out=str(out)), tmp_path / "executed")
    assert failure.value.ename == "ValueError" and failure.value.evalue == "steps = -1 is negative"
    (tmp_path / "02_none.py").write_text("# %%\nprofile = 'quick'\n")
    with pytest.raises(ValueError, match="02_none.py has no cell tagged 'parameters'"):
        pipeline.execute_script(tmp_path / "02_none.py", dict(profile="smoke"), tmp_path / "executed")


@pytest.mark.notebook
def test_a_plain_run_writes_what_papermill_writes(tmp_path):
    """The same chapter, once through papermill and once as a plain script (no Jupyter): the same tables."""
    tables = {}
    for runner in ("papermill", "plain"):
        env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path / runner), MPLBACKEND="Agg")
        run = subprocess.run([sys.executable, "-m", "hybridrl.pipeline", "reproduce", "--profile", "smoke", "--only",
                              "04_mixed_gradient"] + (["--plain"] if runner == "plain" else []),
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        tables[runner] = {name: pd.read_csv(tmp_path / runner / "paper" / "tables" / f"{name}.csv")
                          for name in ("hpo_estimator_bias", "hpo_estimator_variance")}
    assert (tmp_path / "papermill" / "build" / "notebooks" / "04_mixed_gradient.ipynb").exists()
    assert (tmp_path / "plain" / "build" / "notebooks" / "04_mixed_gradient.py").exists()
    for name, table in tables["papermill"].items():
        pd.testing.assert_frame_equal(table, tables["plain"][name])
    if (paths.CHECKOUT / ".git").exists():  # the stamp names the code's commit, though the outputs went elsewhere
        stamp = json.loads((tmp_path / "plain" / "paper" / "tables" / "hpo_estimator_bias.provenance.json").read_text())
        assert stamp["commit"].split("+")[0] == reporting.git_commit().split("+")[0] != "unknown"


@pytest.mark.notebook
def test_the_gpu_check_script_runs_a_time_boxed_slice(tmp_path):
    """``.ci/gpu slice`` (tried on the CPU with ``DEVICE=cpu``, at the smoke scale): the slice's finished runs are
    packed for another machine, and the status of the slice is printed."""
    script = paths.CHECKOUT / ".ci" / "gpu"
    env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path), LOGS=str(tmp_path / "logs"), DEVICE="cpu",
               PYTHON=sys.executable, SLICE_PROFILE="smoke", SLICE_CHAPTERS="06_joint_replenishment",
               SLICE_WHERE="items=3 seed=0", SLICE_WORKERS="1", SLICE_SECONDS="240")
    run = subprocess.run([str(script), "slice"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "JRP: 4 of 4 runs in the cache" in run.stdout and "all passed: slice" in run.stdout
    listing = subprocess.run(["tar", "tzf", str(tmp_path / "logs" / "new-runs.tgz")], capture_output=True,
                             text=True, check=True).stdout.split()
    assert len([name for name in listing if name.startswith("./hpo/jrp/")]) == 4
    wrong = subprocess.run([str(script), "everything"], env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown step 'everything'" in wrong.stderr


@pytest.mark.notebook
def test_bench_in_the_smoke_profile(tmp_path):
    env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path), MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, "-m", "hybridrl.pipeline", "bench", "--profile", "smoke", "--repeats", "1"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    text = (tmp_path / "paper" / "benchmarks.md").read_text()
    assert "seconds per epoch" in text and "repeated 1 time(s)" in text  # smoke: one repeat whatever is asked
    assert "| JRP, batch 16 | JRP n = 5 | ppo |" in text  # the JRP table sweeps at (a small stand-in of) their batch
    estimate = text[text.index("The `paper` profile on this device"):]
    assert "06_joint_replenishment" in estimate and "JRP, batch" not in estimate  # so the estimate covers them


def test_a_benchmark_stopped_midway_keeps_the_parts_it_measured(tmp_path):
    """The benchmark chapter writes its file after every part (``bench.write_benchmarks``): stopped after the
    first, the file has the HDPO epochs, is stamped partial and names the parts it lacks; complete, it is not."""
    from hybridrl import bench

    timing = pd.Series(dict(train=0.25, dev=0.5, amortized=0.3))
    spread = dict(train="0.24–0.26", dev="0.5–0.5", amortized="0.29–0.31")
    epochs = {("cpu", "eager"): (timing, spread), ("cpu", "compiled"): (timing * 0.5, spread)}
    stamp = Provenance("notebooks/90_benchmarks.py", "quick", "abc", "cpu", "today", 1.0)
    path = tmp_path / "benchmarks.md"
    text = bench.write_benchmarks(path, stamp, ["cpu"], 1, epochs=epochs)
    assert path.read_text() == text
    assert "partial: stopped before time to gap, hybrid updates, network epochs, paper estimate" in text
    assert "the fastest loop (compiled)" in text and "0.150 s" in text and "Seconds per hybrid" not in text
    gaps = {"cpu": bench.GapTiming(4.5, 0.5, [(5, 1.5, 1.4), (10, 3.0, 0.4)])}
    updates = pd.DataFrame(dict(problem=["JRP n = 50"], seconds_per_update=[1.9]))
    networks = pd.DataFrame(dict(setting=["serial"], seconds_per_epoch=[0.5]))
    estimates = pd.DataFrame(dict(device=["cpu"], chapter=["01_lost_sales"], runs=[24], steps=[100],
                                  measured_steps_pct=[100.0], hours=[1.0], not_measured=["–"]))
    text = bench.write_benchmarks(path, stamp, ["cpu"], 1, epochs=epochs, gaps=gaps, updates=updates,
                                  network_epochs=networks, estimates=estimates)
    assert "partial" not in text.lower() and "4.5 s" in text and "01_lost_sales" in text


def test_a_partial_table_keeps_its_numbers_and_is_listed(tmp_path, monkeypatch):
    """A table stamped partial (reproduce --cached-only) is reported with its numbers, not as "not run"."""
    from hybridrl.reporting import PARTIAL

    monkeypatch.setattr(paths, "TABLES", tmp_path)
    stamp = Provenance("notebooks/12_real_data.py", "paper", "abc", "cpu", "today", 1.0, status=PARTIAL)
    save_table(pd.DataFrame(dict(setting="one_store", method=["hdpo", "hdpo"], seed=[0, 1],
                                 test_profit=[550.0, 551.0], profit_vs_oracle_pct=[78.0, 79.0])),
               "hdpo_real_data", stamp)
    reproduction.build_report()
    rows = reproduction.real_data_rows()
    assert [r.ours for r in rows] == ["78.50% (2 runs)"] and rows[0].profile == "paper"
    assert "hdpo_real_data" in reproduction._partial_tables


def test_reproduction_rows_judge_by_the_interval_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "TABLES", tmp_path)
    stamp = Provenance("notebooks/01_lost_sales.py", "quick", "abc", "cpu", "today", 1.0)
    optimal = [reproduction.LOST_SALES_OPTIMUM[k] for k in [(1, 4), (2, 4), (4, 39)]]
    gap = [0.2, 0.8, 1.5]
    df = pd.DataFrame(dict(lead_time=[1, 2, 4], penalty=[4, 4, 39], optimal=optimal, capped_base_stock=optimal,
                           capped_base_stock_gap_pct=0.0, hdpo=[o * (1 + g / 100) for o, g in zip(optimal, gap)],
                           gap_pct=gap, gap_low=[0.1, 0.5, 1.2], gap_high=[0.3, 1.1, 1.8], runs=3))
    save_table(df, "hdpo_lost_sales", stamp)
    summary = pd.DataFrame([
        dict(method="hdpo", mean_gap_pct=0.8, mean_gap_low=0.5, mean_gap_high=1.1, runs=3, cells=3),
        dict(method="capped_base_stock", mean_gap_pct=0.9, mean_gap_low=0.8, mean_gap_high=1.0, runs=3, cells=3,
             p_reference_better=0.7, p_low=0.55, p_high=0.85),
    ])
    save_table(summary, "hdpo_lost_sales_summary", stamp)
    rows = pd.DataFrame([r.__dict__ for r in reproduction.lost_sales_rows()])
    gaps = rows[rows.quantity.str.startswith("HDPO gap")]
    # against the quick tolerance of 1 %: inside, straddling, outside
    assert list(gaps.reproduced) == ["yes", "inconclusive", "no"]
    assert "[+0.100, +0.300], 3 runs" in gaps.ours.iloc[0]
    assert rows[rows.quantity.str.startswith("HDPO mean")].reproduced.item() == "no"  # [0.5, 1.1] > 0.4 %
    assert rows[rows.quantity.str.startswith("P(HDPO")].reproduced.item() == "yes"  # [0.55, 0.85] > 0.5
    assert (rows[rows.quantity.str.startswith("DP optimum")].reproduced == "yes").all()
    assert reproduction.backlogged_rows()[0].reproduced == "not run: table missing"
