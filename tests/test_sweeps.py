"""Sweeps: one mechanism for where runs execute; the Ray backend gives the same records as the local one."""

import contextlib
import gzip
import json
import math
import os
import sys

import pandas as pd
import pytest

from hybridrl import network_experiments, sweeps

# everything a record holds except how long it took
TIMING = ["run_seconds"]


def test_backend_settings_are_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        sweeps.Backend("slurm")
    with pytest.raises(ValueError, match="gpus_per_run"):
        sweeps.Backend("ray", gpus_per_run=-1)
    with pytest.raises(ValueError, match="workers"):
        sweeps.Backend("local", workers=0)


def test_the_environment_and_the_context_choose_the_backend(monkeypatch):
    monkeypatch.setenv("HYBRIDRL_BACKEND", "ray")
    monkeypatch.setenv("HYBRIDRL_GPUS_PER_RUN", "0.25")
    assert sweeps.current_backend() == sweeps.Backend("ray", gpus_per_run=0.25)
    with sweeps.use_backend("local"):
        assert sweeps.current_backend().name == "local"
    assert sweeps.current_backend().name == "ray"
    monkeypatch.setenv("HYBRIDRL_GPUS_PER_RUN", "half")
    with pytest.raises(ValueError, match="bad sweep settings"):
        sweeps.current_backend()
    monkeypatch.setenv("HYBRIDRL_GPUS_PER_RUN", "0")
    monkeypatch.setenv("HYBRIDRL_WORKERS", "3")
    assert sweeps.current_backend().workers == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("HYBRIDRL_WORKERS", bad)
        with pytest.raises(ValueError, match="(?i)workers"):
            sweeps.current_backend()


def test_unknown_chapters_are_named_before_anything_runs():
    with pytest.raises(ValueError, match=r"no grid for chapter\(s\) \['13_nothing'\]"):
        sweeps.run_sweep("smoke", ["13_nothing"])
    with pytest.raises(SystemExit):
        sweeps.main(["--profile", "huge"])


def test_every_training_chapter_has_a_grid_and_the_grids_match_the_notebooks():
    from hybridrl import paths

    for chapter in sweeps.CHAPTER_GRIDS:
        source = (paths.NOTEBOOKS / f"{chapter}.py").read_text()
        assert "run_" in source, chapter  # the chapter exists and trains something
    for stem in ("08_serial", "09_one_warehouse", "10_transshipment"):  # the methods come from one place
        assert "network_experiments.chapter_methods(" in (paths.NOTEBOOKS / f"{stem}.py").read_text()


def _serial_grid(root, monkeypatch, backend):
    monkeypatch.setenv("HYBRIDRL_ROOT", str(root))  # the worker processes put their cache here
    with sweeps.use_backend(backend):
        return network_experiments.run_network_grid("serial", "smoke", seeds=(0, 1), methods=("vanilla",),
                                                    workers=2, progress=False)


@pytest.mark.notebook
def test_ray_records_equal_local_records_and_notebooks_read_them(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason='the Ray backend needs Ray: pip install "hybridrl[ray]"')
    local = _serial_grid(tmp_path / "local", monkeypatch, "local")
    try:
        remote = _serial_grid(tmp_path / "ray", monkeypatch, sweeps.Backend("ray"))
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(local.table.drop(columns=TIMING), remote.table.drop(columns=TIMING))
    pd.testing.assert_frame_equal(local.history.drop(columns="seconds"), remote.history.drop(columns="seconds"))
    records = sorted((tmp_path / "ray" / "build" / "cache" / "network" / "serial" / "vanilla").glob("*.json"))
    assert len(records) == 2  # the Ray tasks wrote the ordinary cache
    assert {json.loads(r.read_text())["result"]["seed"] for r in records} == {0, 1}
    # a notebook run afterwards (local backend, same root) reads the sweep's records instead of training again
    again = _serial_grid(tmp_path / "ray", monkeypatch, "local")
    pd.testing.assert_frame_equal(again.table, remote.table)


def test_the_command_line_sets_the_backend_of_every_grid(tmp_path):
    """`python -m hybridrl.sweeps` runs its grids with the backend it was given (not the environment's default):
    here one local worker, so every grid reports one worker."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HYBRIDRL_ROOT=str(tmp_path), HYBRIDRL_BACKEND="local")
    run = subprocess.run([sys.executable, "-m", "hybridrl.sweeps", "--profile", "smoke", "--chapters", "08_serial",
                          "10_transshipment", "--backend", "local", "--workers", "1"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    reports = [line for line in run.stdout.splitlines() if " runs in " in line]
    assert len(reports) == 2 and all(line.endswith("(1 workers)") for line in reports), reports
    assert "[sweep] 10_transshipment done" in run.stdout
    assert len(list((tmp_path / "build" / "cache" / "network" / "serial").rglob("*.json"))) == 4


class _Scheduled(Exception):
    pass


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_the_plan_counts_the_runs_the_grids_schedule(profile, monkeypatch):
    """``sweeps.plan`` reads the budgets; the grids build their jobs from them. Every grid's jobs are caught at
    :func:`sweeps.map_jobs` (nothing runs) and counted against the plan's runs."""
    from hybridrl import experiments, realdata_experiments

    scheduled = {}

    def catch(fn, jobs, **kwargs):
        scheduled["jobs"] = jobs
        raise _Scheduled

    monkeypatch.setattr(sweeps, "map_jobs", catch)
    plan = sweeps.plan(profile)
    grids = {c: list(g) for c, g in sweeps.CHAPTER_GRIDS.items() if c != "12_real_data"}
    # the real-data grids without their data and without fitting the forecaster first
    monkeypatch.setattr(realdata_experiments.favorita, "load_favorita", lambda data: None)
    monkeypatch.setattr(realdata_experiments, "forecaster", lambda *args, **kwargs: None)
    grids["12_real_data"] = [lambda p, f: realdata_experiments.run_one_store_grid(p),
                             lambda p, f: realdata_experiments.run_network_grid(p)]
    for chapter, chapter_grids in grids.items():
        jobs = 0
        for grid in chapter_grids:
            with pytest.raises(_Scheduled):
                grid(profile, False)
            jobs += len(scheduled.pop("jobs"))
        runs = plan[(plan.chapter == chapter) & ~plan.part.str.contains("forecaster")].runs.sum()
        if chapter in ("01_lost_sales", "02_backlogged"):  # a job is one seed: its groups of cells in turn
            experiment = plan[plan.chapter == chapter].part.iloc[0]
            b = experiments.budget(experiment, profile)
            cells = experiments.GRIDS[experiment]().n_stores
            jobs *= -(-cells // (b.cells_per_run or cells))
        assert runs == jobs, (chapter, runs, jobs)
    assert (plan.steps == plan.runs * plan.steps_per_run).all() and (plan.steps_per_run >= 0).all()
    with pytest.raises(ValueError, match="no grid for chapter"):
        sweeps.plan(profile, ["13_nothing"])


def test_a_slice_runs_only_its_jobs(monkeypatch):
    ran = []
    monkeypatch.setattr(sweeps, "_map_local", lambda fn, jobs, *args: ran.extend(jobs) or [])
    where = sweeps.parse_where(["method=hpo_full,vanilla", "seed=1"])
    sweeps.run_sweep("smoke", ["05_switched_lqr", "08_serial"], backend="local", where=where)
    assert len(ran) == 3 + 1  # hpo_full on the 3 smoke S-LQR cells and the vanilla serial network, seed 1
    assert all(job["method"] in ("hpo_full", "vanilla") and job["seed"] == 1 for job in ran)
    ran.clear()
    sweeps.run_sweep("smoke", ["01_lost_sales"], backend="local", where=sweeps.parse_where(["seed=0"]))
    assert [(job["method"], job["seed"]) for job in ran] == [("hdpo", 0), ("capped_base_stock", 0)]
    for bad, message in ((["dims=8"], "cannot select on 'dims'"), (["dim"], "field=value")):
        with pytest.raises(ValueError, match=message):
            sweeps.parse_where(bad)
    with pytest.raises(ValueError, match="real-data chapter runs whole"):
        sweeps.run_sweep("smoke", ["12_real_data"], where=where)
    with pytest.raises(SystemExit):
        sweeps.main(["--profile", "smoke", "--where", "colour=red"])


def test_status_and_cached_only_read_the_cache_and_compute_nothing(tmp_path, monkeypatch, capsys):
    from hybridrl import paths

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    network_experiments.run_network_grid("serial", "smoke", seeds=(0,), methods=("vanilla",), workers=1,
                                         progress=False)
    capsys.readouterr()
    sweeps.run_sweep("smoke", ["08_serial"], status=True)
    assert "serial (smoke): 1 of 4 runs in the cache" in capsys.readouterr().out
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*"))
    monkeypatch.setenv("HYBRIDRL_CACHED_ONLY", "1")  # reproduce --cached-only: the finished runs, nothing else
    table = network_experiments.run_network_grid("serial", "smoke", workers=1, progress=False).table
    assert list(zip(table.method, table.seed)) == [("vanilla", 0)]
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == files  # nothing computed, nothing written


def test_archived_runs_are_read_when_the_cache_lacks_them(tmp_path, monkeypatch, capsys):
    """``--archive`` copies a slice's finished runs to the committed archive; a fresh clone (an empty cache) then
    finds them there, computes nothing, and a second ``--archive`` copies nothing; ``force`` ignores the
    archive."""
    from hybridrl import cache, paths

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(paths, "RUNS", tmp_path / "paper" / "runs")
    network_experiments.run_network_grid("serial", "smoke", seeds=(0,), methods=("vanilla",), workers=1,
                                         progress=False)
    capsys.readouterr()
    sweeps.main(["--profile", "smoke", "--chapters", "08_serial", "--where", "seed=0", "--archive"])
    out = capsys.readouterr().out
    assert "serial (smoke): 1 of 2 runs in the cache" in out and "[archive] 1 runs copied" in out
    archived = sorted(p.relative_to(paths.RUNS) for p in paths.RUNS.rglob("*"))
    assert [p.as_posix() for p in archived if p.suffix] == [
        f"network/serial/vanilla/{c.stem}.json.gz" for c in (tmp_path / "cache" / "network").rglob("*.json")]
    with gzip.open(paths.RUNS / [p for p in archived if p.suffix][0], "rt") as f:
        record = json.load(f)
    assert record == json.loads(next((tmp_path / "cache" / "network").rglob("*.json")).read_text())
    for entry in (tmp_path / "cache").rglob("*"):  # a fresh clone: only what is committed
        entry.unlink() if entry.is_file() else None
    monkeypatch.setenv("HYBRIDRL_CACHED_ONLY", "1")
    table = network_experiments.run_network_grid("serial", "smoke", workers=1, progress=False).table
    assert list(zip(table.method, table.seed)) == [("vanilla", 0)]
    assert table.test_cost.iloc[0] == record["result"]["test_cost"]
    assert not list((tmp_path / "cache").rglob("*.json"))  # read from the archive, nothing computed
    sweeps.main(["--profile", "smoke", "--chapters", "08_serial", "--archive"])
    out = capsys.readouterr().out
    assert "[archive] 0 runs copied" in out and "1 were there already" in out
    calls = []
    description = dict(toy=1)
    (paths.RUNS / "toy").mkdir()
    with gzip.open(paths.RUNS / "toy" / f"{cache.key_of(description)}.json.gz", "wt") as f:
        json.dump(dict(description=description, result=1.0), f)
    assert cache.cached("toy", description, lambda: calls.append(1) or 2.0) == 1.0 and not calls
    assert cache.cached("toy", description, lambda: calls.append(1) or 2.0, force=True) == 2.0 and calls == [1]
    assert cache.cached("toy", description, lambda: 3.0) == 2.0  # the fresh entry in the cache comes first
    assert cache.cached("toy", description, lambda: 3.0, directory=tmp_path / "elsewhere") == 3.0  # no archive


def test_threads_per_run_is_read_strictly_and_set_by_the_runs(tmp_path, monkeypatch):
    """``HYBRIDRL_THREADS_PER_RUN`` (default 1) is the number of CPU threads a grid's run trains with; a bad value
    stops a sweep before its first run."""
    import torch

    from hybridrl import _device, hpo_experiments, paths

    for value, expected in (("", 1), ("1", 1), (" 3 ", 3)):
        monkeypatch.setenv("HYBRIDRL_THREADS_PER_RUN", value)
        assert _device.threads_per_run() == expected
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("HYBRIDRL_THREADS_PER_RUN", bad)
        with pytest.raises(ValueError, match=f"HYBRIDRL_THREADS_PER_RUN must be a positive integer, got '{bad}'"):
            hpo_experiments.run_jrp_grid("smoke", workers=1, progress=False)
    assert not (tmp_path / "cache").exists()  # nothing ran
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("HYBRIDRL_THREADS_PER_RUN", "2")
        hpo_experiments.run_jrp(1, "hpo_full", 0, "smoke")
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("HYBRIDRL_THREADS_PER_RUN")
        hpo_experiments.run_jrp(1, "hpo_full", 1, "smoke")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_estimated_hours_cover_the_measured_workloads_and_name_the_others():
    plan = sweeps.plan("paper", ["08_serial", "12_real_data"])
    steps = plan.set_index(["part", "method"]).steps
    estimate = sweeps.estimate_hours(plan, {("serial", "vanilla"): 0.5, ("serial", "echelon_base_stock"): 0.25})
    serial, real = estimate.iloc[0], estimate.iloc[1]
    assert serial.hours == pytest.approx((0.5 * steps[("serial", "vanilla")]
                                          + 0.25 * steps[("serial", "echelon_base_stock")]) / 3600)
    assert serial.measured_steps_pct == 100 and serial.not_measured == "–"
    assert math.isnan(real.hours) and real.measured_steps_pct == 0
    assert "real data, one store: hdpo" in real.not_measured and "quantile_nv" not in real.not_measured  # untrained


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers follow their parent through prctl (Linux)")
def test_local_workers_end_when_the_sweep_is_killed(tmp_path):
    """A sweep ended by SIGKILL takes its worker processes with it: no orphaned training goes on using the cores
    (and racing a restarted sweep for the same runs)."""
    import signal
    import subprocess
    import textwrap
    import time

    (tmp_path / "slow_job.py").write_text(textwrap.dedent("""
        import os, pathlib, time

        def job(folder):
            pathlib.Path(folder, f"{os.getpid()}.pid").touch()
            time.sleep(300)
    """))
    pids = tmp_path / "pids"
    pids.mkdir()
    script = ("import slow_job; from hybridrl.sweeps import map_jobs; "
              f"map_jobs(slow_job.job, [{str(pids)!r}] * 2, workers=2, progress=False)")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               HYBRIDRL_BACKEND="local")
    sweep = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2:
            assert sweep.poll() is None, "the sweep ended before its workers started"
            assert time.monotonic() < deadline, "the workers did not start within 120 s"
            time.sleep(0.2)
        workers = [int(p.stem) for p in pids.iterdir()]
        assert all(_alive(pid) for pid in workers)
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "workers kept running after the sweep was killed"
    finally:
        sweep.kill()
        for p in pids.iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(p.stem), signal.SIGKILL)
