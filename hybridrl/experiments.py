"""The single-store experiments of the HDPO paper: grids, budgets per profile, and a cached runner.

A *grid* is a setting whose stores are the grid's cells (one ``(L, p)`` pair each). Stores without a warehouse
are independent, so one batched run trains several cells at once, each with its own parameters (policy
``members``): the whole grid in the ``quick`` profile, four cells at a time in the ``paper`` profile. Either way
a cell's data and initial weights depend only on the cell, never on its neighbours, and a batched run trains
each cell exactly as a run of its own would (``tests/test_train.py``).

Profiles (the notebooks' ``profile`` parameter):

* ``smoke`` — seconds; exercises every code path for the tests. Numbers mean nothing.
* ``quick`` — the default: reduced budgets that run on a 2-core laptop CPU in minutes. It departs from the
  paper's protocol in documented ways: fewer scenarios, a larger learning rate with cosine decay instead of a
  constant one, no early stopping, a shorter test horizon.
* ``paper`` — the published protocol (spec §3.2, §3.3, §7): 32768 scenarios per split, batch 8192, Adam with a
  constant learning rate, dev every 10 epochs, patience 500, at most 20000 epochs, test on 5000 periods with
  3000 of warm-up. Meant for a GPU.
"""

from __future__ import annotations

import functools
import os
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from torch import nn

from . import __version__, stats
from ._config import check_choice
from .cache import cached, cached_only_requested, checkpoint_path, lookup
from .inventory import ClippedNormal, InventorySetting, Poisson, Store
from . import paths
from .policies import BaseStock, CappedBaseStock, StoreWise, VanillaMLP
from .references import LostSalesOptimum, backlog_base_stock, lost_sales_optimum
from .reporting import device_name, git_commit
from .scenarios import Protocol, Seeds, make_splits
from .train import TrainConfig, config_key, evaluate, fit

PROFILES = ("smoke", "quick", "paper")
RESULT_FORMAT = 4  # part of every cache key: bump it when the fields a run records change
METHODS = ("hdpo", "base_stock", "capped_base_stock")


def check_profile(profile: str) -> str:
    return check_choice("profile", profile, PROFILES)


# ----------------------------------------------------------------------------------------------------------------
# Grids (spec §4.1, §4.2)
# ----------------------------------------------------------------------------------------------------------------
LOST_SALES_LEAD_TIMES = (1, 2, 3, 4)
LOST_SALES_PENALTIES = (4, 9, 19, 39)
BACKLOG_LEAD_TIMES = (1, 4, 7, 10, 15, 20)
BACKLOG_PENALTIES = (4, 9, 19, 39)


def _grid(demand, lead_times, penalties, unmet_demand: str) -> InventorySetting:
    stores = tuple(
        Store(demand, underage_cost=p, holding_cost=1.0, lead_time=L, demand_seed_shift=int(round(L + 10 * p)))
        for L in lead_times
        for p in penalties
    )
    return InventorySetting(stores=stores, unmet_demand=unmet_demand)


def lost_sales_grid(lead_times=LOST_SALES_LEAD_TIMES, penalties=LOST_SALES_PENALTIES) -> InventorySetting:
    """Poisson(5) demand, h = 1, lost sales: Zipkin's (2008) instance grid (spec §4.1)."""
    return _grid(Poisson(5.0), lead_times, penalties, "lost")


def backlogged_grid(lead_times=BACKLOG_LEAD_TIMES, penalties=BACKLOG_PENALTIES) -> InventorySetting:
    """Normal(5, 1.6) demand clipped at 0, h = 1, backlog (spec §4.2)."""
    return _grid(ClippedNormal(5.0, 1.6), lead_times, penalties, "backlog")


GRIDS = {"lost_sales": lost_sales_grid, "backlogged": backlogged_grid}


# ----------------------------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """Data sizes and optimisation settings of one experiment in one profile."""

    protocol: Protocol
    train: dict
    """Method name -> :class:`TrainConfig`."""
    cells_per_run: int | None
    """How many grid cells one batched run trains (``None``: all of them)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds: every method is trained once per seed on every cell, and tables report the estimate over
    seeds with its interval. A training seed sets the network initialisation and the minibatch order; the
    scenario data are the paper's (fixed data seeds, :class:`hybridrl.scenarios.Seeds`) for every seed."""


_PAPER_PROTOCOL = Protocol()  # 32768 per split, T = 50 / 100 (60) / 5000 (3000)
# cuda_graph: one recorded training step per minibatch on a GPU, 6-8 times faster there (paper/benchmarks_gpu.md);
# on a CPU the same step, unrecorded; the same numbers either way
_PAPER_TRAIN = {
    "hdpo": TrainConfig(lr=3e-3, cuda_graph=True),
    "base_stock": TrainConfig(lr=0.5, cuda_graph=True),
    "capped_base_stock": TrainConfig(lr=1.0, cuda_graph=True),
}
_QUICK_PROTOCOL = Protocol(n_train=8192, n_dev=4096, n_test=4096, test_periods=1200, test_warmup=300)
_SMOKE_PROTOCOL = Protocol(
    n_train=256, n_dev=128, n_test=128, train_periods=30, dev_periods=40, dev_warmup=20, test_periods=60, test_warmup=30
)


def _quick(epochs: int, lr_hdpo: float, batch_hdpo: int) -> dict:
    common = dict(batch_size=512, schedule="cosine", dev_every=5, patience=None)
    return {
        "hdpo": TrainConfig(epochs=epochs, lr=lr_hdpo, **dict(common, batch_size=batch_hdpo)),
        "base_stock": TrainConfig(epochs=epochs, lr=1.0, **common),
        "capped_base_stock": TrainConfig(epochs=epochs, lr=1.0, **common),
    }


def _smoke() -> dict:
    common = dict(epochs=2, batch_size=128, dev_every=1, patience=None)
    return {
        "hdpo": TrainConfig(lr=1e-2, **common),
        "base_stock": TrainConfig(lr=0.5, **common),
        "capped_base_stock": TrainConfig(lr=1.0, **common),
    }


BUDGETS = {
    # four cells (one lead time) per run: the GPU is busier and the test data of a run stays near 3 GB
    ("lost_sales", "paper"): Budget(_PAPER_PROTOCOL, _PAPER_TRAIN, cells_per_run=4),
    ("backlogged", "paper"): Budget(_PAPER_PROTOCOL, _PAPER_TRAIN, cells_per_run=4),
    ("lost_sales", "quick"): Budget(_QUICK_PROTOCOL, _quick(epochs=50, lr_hdpo=2e-2, batch_hdpo=512), cells_per_run=None),
    # the long lead times of the backlogged grid need more, smaller steps to fit a 20-slot network as precisely
    ("backlogged", "quick"): Budget(_QUICK_PROTOCOL, _quick(epochs=50, lr_hdpo=2e-2, batch_hdpo=256), cells_per_run=None),
    # two seeds: the smallest number that exercises every statistic over seeds
    ("lost_sales", "smoke"): Budget(_SMOKE_PROTOCOL, _smoke(), cells_per_run=None, seeds=(0, 1)),
    ("backlogged", "smoke"): Budget(_SMOKE_PROTOCOL, _smoke(), cells_per_run=None, seeds=(0, 1)),
}


def budget(experiment: str, profile: str) -> Budget:
    check_choice("experiment", experiment, tuple(GRIDS))
    return BUDGETS[(experiment, check_profile(profile))]


def budget_table(experiment: str, profile: str) -> pd.DataFrame:
    """The budget as a readable table (one row per method), for the notebooks."""
    b = budget(experiment, profile)
    rows = []
    for method, cfg in b.train.items():
        rows.append(dict(method=method, **config_key(cfg, without=("device", "seed", "estimator"))))
    table = pd.DataFrame(rows)
    for k, v in asdict(b.protocol).items():
        table[k] = v
    table["seeds"] = len(b.seeds)
    return table


# ----------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------
def make_policy(method: str, setting: InventorySetting, init_seeds: list[int]):
    """A fresh policy with one member per store of ``setting``."""
    check_choice("method", method, METHODS)
    members = setting.n_stores
    if method == "hdpo":
        return VanillaMLP(setting.n_slots, hidden=(32, 32, 32), members=members, init_seeds=init_seeds)
    if method == "base_stock":
        return BaseStock(members=members)
    return CappedBaseStock(members=members)


@dataclass
class GridResult:
    """Per-cell results (``table``) and per-epoch learning curves (``history``) of one method on one grid."""

    table: pd.DataFrame
    history: pd.DataFrame


def limit_heap_growth() -> bool:
    """Make glibc return freed memory to the system (Linux only; a no-op elsewhere or with
    ``HYBRIDRL_KEEP_MALLOC=1``). Returns whether it took effect.

    A single-store grid allocates and frees tensors of a few megabytes thousands of times (every simulated period
    of every evaluation). glibc's allocator raises its mmap threshold as such blocks are freed, after which they
    come from the heap and are kept there: computing chapter 2 from scratch grew one process to 15.2 GB. With the
    mmap and trim thresholds fixed at 1 MiB (``mallopt``, the same as ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_``) the same run peaked at 2.6 GB (measured with ``/usr/bin/time -v``, with the
    environment variables), at the price of about 20 % more run time. The setting is process-wide, so only the
    grids call it, not the package import.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("HYBRIDRL_KEEP_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 20))
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False


def run_grid(
    experiment: str,
    method: str,
    profile: str = "quick",
    *,
    seeds=None,
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
    lead_times=None,
    penalties=None,
) -> GridResult:
    """Train ``method`` on every cell of the ``experiment`` grid, once per training seed, and test it.

    ``seeds`` defaults to the profile's (:attr:`Budget.seeds`). Finished runs are cached on disk, one per seed
    and group of cells (:mod:`hybridrl.cache`); ``force=True`` recomputes them from scratch. A run that is
    interrupted resumes from its last dev evaluation.

    Rows of the table, one per seed and cell: ``seed, lead_time, penalty``; ``test_cost, test_se`` (mean and standard error over
    the test scenarios); ``optimal`` (the exact optimum) and ``optimal_policy_test_cost`` (the optimal policy
    run on the same test scenarios; ``optimal_policy_dev_cost`` likewise on the dev scenarios);
    ``cost_estimate = test_cost - optimal_policy_test_cost + optimal`` and its standard error ``estimate_se``;
    ``gap_pct = 100 (cost_estimate / optimal - 1)``; ``dev_cost, best_epoch, epochs, run_seconds``; where it was
    computed (``computed_commit, computed_device``); and, for the base-stock policies, the fitted ``level``
    (and ``cap``).

    Why the estimate: running the optimal policy on the same scenarios gives common random numbers, a control
    variate whose expectation (the optimum) is known exactly. ``cost_estimate`` is an unbiased estimate of the
    policy's expected cost with a much smaller standard error than the raw ``test_cost``, so gaps of a tenth of
    a percent can be told apart on a laptop-sized test set.
    """
    check_choice("experiment", experiment, tuple(GRIDS))
    check_choice("method", method, METHODS)
    limit_heap_growth()
    b = budget(experiment, profile)
    kwargs = {k: v for k, v in dict(lead_times=lead_times, penalties=penalties).items() if v is not None}
    grid = GRIDS[experiment](**kwargs)
    seeds = b.seeds if seeds is None else tuple(seeds)
    if not seeds or any(not isinstance(sd, int) or isinstance(sd, bool) or sd < 0 for sd in seeds) \
            or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds!r}")
    tables, histories = [], []
    for seed in seeds:
        table, history = _run_seed(experiment, method, profile, b, grid, seed, device, force, progress)
        if table is not None:
            tables.append(table.assign(seed=seed))
            histories.append(history.assign(seed=seed))
    if not tables:
        raise ValueError(f"no finished {experiment} run of {method} in the {profile} profile's cache to draw from "
                         "(cached-only)")
    table = pd.concat(tables, ignore_index=True)
    table = table[["seed"] + [c for c in table.columns if c != "seed"]]
    return GridResult(table, pd.concat(histories, ignore_index=True))


def _run_seed(experiment, method, profile, b, grid, seed, device, force, progress):
    """One training seed on every cell of ``grid``: ``cells_per_run`` cells per batched (cached) run."""
    config = replace(b.train[method], seed=seed, device=device, progress=progress)
    size = b.cells_per_run or grid.n_stores
    tables, histories = [], []
    for start in range(0, grid.n_stores, size):
        setting = grid.replace(stores=grid.stores[start : start + size], inventory_slots=grid.n_slots)
        description = dict(
            experiment=experiment, method=method, profile=profile, seed=seed, version=__version__, format=RESULT_FORMAT,
            setting=repr(setting), protocol=asdict(b.protocol),
            config=config_key(config, without=("device",)),
        )
        namespace = f"single_store/{experiment}/{method}"
        ckpt = checkpoint_path(namespace, description, fresh=force)  # force: do not resume an interrupted run

        def compute(setting=setting, ckpt=ckpt):
            return _run(experiment, setting, method, b.protocol, config, seed, ckpt)

        if cached_only_requested():  # reproduce --cached-only: a group that has not run is left out
            result = lookup(namespace, description)
            if result is None:
                continue
        else:
            result = cached(namespace, description, compute, force=force)
        tables.append(pd.DataFrame(result["cells"]))
        histories.append(pd.DataFrame(result["history"]))
    if not tables:
        return None, None
    return pd.concat(tables, ignore_index=True), pd.concat(histories, ignore_index=True)


def _run(experiment, setting, method, protocol, config, seed, ckpt) -> dict:
    commit = git_commit()  # the code that trains, read before a long run (not a later commit when it ends)
    splits = make_splits(setting, protocol, Seeds())
    init_seeds = [1000 * seed + s.demand_seed_shift for s in setting.stores]
    policy = make_policy(method, setting, init_seeds)
    rounding = setting.integer_demand  # integer demand: orders are rounded in dev and test evaluations
    result = fit(
        policy, splits.train, splits.dev, config, dev_warmup=protocol.dev_warmup, checkpoint=ckpt,
        description=f"{experiment} · {method}", round_orders=rounding,
    )
    # ---- test: the trained policy and, on the same scenarios, the optimal one ----------------------------------
    test = evaluate(result.policy, splits.test, protocol.test_warmup, round_orders=rounding, device=config.device)
    optimal_policy, optimal = optimal_reference(experiment, setting)
    reference = evaluate(optimal_policy, splits.test, protocol.test_warmup, round_orders=rounding)
    reference_dev = evaluate(optimal_policy, splits.dev, protocol.dev_warmup, round_orders=rounding).mean(0)
    ckpt.unlink(missing_ok=True)
    n = test.shape[0]
    where = dict(computed_commit=commit, computed_device=device_name(config.device))
    rows = []
    for m, store in enumerate(setting.stores):
        estimate = float(test[:, m].mean() - reference[:, m].mean()) + optimal[m]
        row = dict(
            lead_time=store.lead_time, penalty=store.underage_cost,
            test_cost=float(test[:, m].mean()), test_se=float(test[:, m].std() / math.sqrt(n)),
            optimal=optimal[m], optimal_policy_test_cost=float(reference[:, m].mean()),
            optimal_policy_dev_cost=float(reference_dev[m]),
            cost_estimate=estimate, estimate_se=float((test[:, m] - reference[:, m]).std() / math.sqrt(n)),
            gap_pct=100 * (estimate / optimal[m] - 1),
            dev_cost=result.best_dev[m], best_epoch=result.best_epoch[m], epochs=result.epochs,
            run_seconds=result.seconds, cells_in_run=setting.n_stores, **where,
        )
        for name in ("level", "cap"):
            if hasattr(result.policy, name):
                row[name] = float(getattr(result.policy, name)[m].detach())
        rows.append(row)
    cell_of = {m: (s.lead_time, s.underage_cost) for m, s in enumerate(setting.stores)}
    history = [
        dict(h, lead_time=cell_of[h["member"]][0], penalty=cell_of[h["member"]][1]) for h in result.history
    ]
    return dict(cells=rows, history=history)


# ----------------------------------------------------------------------------------------------------------------
# Results over seeds: per-cell intervals, grid aggregates, learning curves (see :mod:`hybridrl.stats`)
# ----------------------------------------------------------------------------------------------------------------
CELL = ["lead_time", "penalty"]


def seed_table(results: dict[str, GridResult]) -> pd.DataFrame:
    """One row per cell: each method's cost estimate and gap averaged over its seeds, with a 95 % interval.

    ``results`` maps a column prefix (e.g. ``"hdpo"``) to a :func:`run_grid` result. Columns: ``lead_time,
    penalty, optimal``; per method ``{key}`` (mean cost estimate over seeds), ``{key}_gap_pct`` with
    ``{key}_gap_low``/``{key}_gap_high`` (bootstrap interval over seeds, see :func:`stats.interval_table`),
    ``{key}_se`` (mean standard error of one seed's estimate on the test scenarios) and ``{key}_runs``.
    """
    table = None
    for key, result in results.items():
        t = result.table
        gaps = stats.interval_table(t, by=CELL, value="gap_pct")
        means = t.groupby(CELL, as_index=False).agg(optimal=("optimal", "first"), cost=("cost_estimate", "mean"),
                                                   se=("estimate_se", "mean"))
        part = means.merge(gaps, on=CELL).rename(columns={
            "cost": key, "se": f"{key}_se", "gap_pct": f"{key}_gap_pct", "gap_pct_low": f"{key}_gap_low",
            "gap_pct_high": f"{key}_gap_high", "runs": f"{key}_runs"})
        table = part if table is None else table.merge(part.drop(columns="optimal"), on=CELL)
    return table.astype({"lead_time": int, "penalty": int})


def grid_summary(results: dict[str, GridResult], *, reference: str | None = None) -> pd.DataFrame:
    """One row per method: the gap to the optimum aggregated over every cell and seed, with 95 % intervals.

    ``mean_gap_pct`` and ``iqm_gap_pct`` (interquartile mean) with stratified-bootstrap intervals (seeds
    resampled within each cell), ``worst_cell_gap_pct`` (the largest seed-averaged gap of a cell), ``runs``
    (seeds) and ``cells``. With ``reference`` (a key of ``results``), ``p_reference_better`` is the probability
    that a run of ``reference`` has a lower cost than a run of the row's method on a random cell, with its
    interval (:func:`stats.probability_of_improvement`).
    """
    rows = []
    for key, result in results.items():
        gaps = stats.score_matrix(result.table, task=CELL, value="gap_pct")
        mean, iqm = (stats.stratified_bootstrap(gaps.to_numpy(), s) for s in ("mean", "iqm"))
        row = dict(method=key, mean_gap_pct=mean.estimate, mean_gap_low=mean.low, mean_gap_high=mean.high,
                   iqm_gap_pct=iqm.estimate, iqm_gap_low=iqm.low, iqm_gap_high=iqm.high,
                   worst_cell_gap_pct=float(gaps.mean(axis=0).abs().max()), runs=gaps.shape[0], cells=gaps.shape[1])
        if reference is not None and key != reference:
            costs = [stats.score_matrix(results[k].table, task=CELL, value="cost_estimate") for k in (reference, key)]
            p = stats.probability_of_improvement(costs[0].to_numpy(), costs[1][costs[0].columns].to_numpy(),
                                                 lower_is_better=True)
            row.update(p_reference_better=p.estimate, p_low=p.low, p_high=p.high)
        rows.append(row)
    return pd.DataFrame(rows)


def gap_profile(result: GridResult, thresholds=None) -> stats.Profile:
    """Performance profile of the test gaps (%) of every seed × cell: the fraction at most τ, for τ from 0 to
    the largest gap (:func:`stats.performance_profile`)."""
    gaps = stats.score_matrix(result.table, task=CELL, value="gap_pct").to_numpy()
    if thresholds is None:
        top = max(float(gaps.max()), 0.02)
        thresholds = np.concatenate([[0.0], np.geomspace(0.01, 1.05 * top, 80)])
    return stats.performance_profile(gaps, thresholds, lower_is_better=True)


def dev_gaps(result: GridResult) -> pd.DataFrame:
    """Every dev evaluation of every seed and cell, as the gap (%) of the dev cost to the optimal policy's cost on
    the same dev scenarios: ``100 (dev_cost - optimal_policy_dev_cost) / optimal``. Columns ``seed, lead_time,
    penalty, step, seconds, gap``; ``seconds`` is the wall-clock time of the (batched) run at that point."""
    cells = result.table[["seed", *CELL, "optimal", "optimal_policy_dev_cost"]]
    dev = result.history.dropna(subset=["dev_cost"]).merge(cells, on=["seed", *CELL])
    gap = 100 * (dev.dev_cost - dev.optimal_policy_dev_cost) / dev.optimal
    return dev.assign(gap=gap)[["seed", *CELL, "step", "seconds", "gap"]]


def learning_curve(result: GridResult, statistic: str = "iqm") -> pd.DataFrame:
    """The dev gap along training aggregated over seeds and cells (:func:`stats.curve`), with the median
    wall-clock seconds over seeds at each point: columns ``step, seconds, estimate, low, high, runs, tasks``."""
    dev = dev_gaps(result)
    curve = stats.curve(dev, x="step", task=CELL, value="gap", statistic=statistic)
    seconds = dev.groupby(["step", "seed"]).seconds.first().groupby("step").median()
    return curve.merge(seconds.rename("seconds"), left_on="step", right_index=True)


# ----------------------------------------------------------------------------------------------------------------
# Exact references for the grids
# ----------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def lost_sales_dp(lead_time: int, penalty: float, mean: float = 5.0) -> LostSalesOptimum:
    """The DP solution of one lost-sales cell (h = 1), cached on disk with its policy table."""
    path = paths.CACHE / "references" / f"lost_sales_dp_L{lead_time}_p{penalty:g}_mean{mean:g}_v{__version__}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        return LostSalesOptimum(orders=data["orders"], **{k: data[k].item() for k in data.files if k != "orders"})
    result = lost_sales_optimum(penalty, 1.0, lead_time, Poisson(mean))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in asdict(result).items()})
    tmp.replace(path)
    return result


def optimal_reference(experiment: str, setting: InventorySetting) -> tuple[nn.Module, list[float]]:
    """The optimal policy of every cell of a grid (one store each) and its exact average cost."""
    check_choice("experiment", experiment, tuple(GRIDS))
    if experiment == "lost_sales":
        results = [lost_sales_dp(s.lead_time, s.underage_cost, s.demand.mean) for s in setting.stores]
        return StoreWise([r.policy() for r in results]), [r.cost for r in results]
    results = [backlog_base_stock(s.underage_cost, s.holding_cost, s.lead_time, s.demand) for s in setting.stores]
    return BaseStock(setting.n_stores, [r.level for r in results]), [r.cost for r in results]


def lost_sales_optima(lead_times=LOST_SALES_LEAD_TIMES, penalties=LOST_SALES_PENALTIES) -> pd.DataFrame:
    """DP optimum of every lost-sales cell: ``lead_time, penalty, optimal, max_position, iterations, seconds``."""
    rows = []
    for store in lost_sales_grid(lead_times, penalties).stores:
        r = lost_sales_dp(store.lead_time, store.underage_cost, store.demand.mean)
        rows.append(dict(lead_time=store.lead_time, penalty=store.underage_cost, optimal=r.cost,
                         max_position=r.max_position, iterations=r.iterations, seconds=r.seconds))
    return pd.DataFrame(rows)


def backlog_optima(lead_times=BACKLOG_LEAD_TIMES, penalties=BACKLOG_PENALTIES) -> pd.DataFrame:
    """Optimal base-stock level and cost of every backlogged cell: ``lead_time, penalty, level, optimal``."""
    rows = []
    for store in backlogged_grid(lead_times, penalties).stores:
        r = backlog_base_stock(store.underage_cost, store.holding_cost, store.lead_time, store.demand)
        rows.append(dict(lead_time=store.lead_time, penalty=store.underage_cost, level=r.level, optimal=r.cost))
    return pd.DataFrame(rows)


def run_parallel(fn, jobs: list, *, workers: int | None = None, progress: bool = True, description: str = "",
                 training: bool = True) -> list:
    """``[fn(job) for job in jobs]`` in order, on the current backend (:func:`hybridrl.sweeps.map_jobs`: spawned
    local processes by default, one per core; a Ray cluster with ``HYBRIDRL_BACKEND=ray``). ``training=False``
    for jobs that compute references rather than train (see :func:`~hybridrl.sweeps.map_jobs`)."""
    from .sweeps import map_jobs

    return map_jobs(fn, jobs, workers=workers, progress=progress, description=description, training=training)
