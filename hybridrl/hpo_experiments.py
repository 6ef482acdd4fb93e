"""The HPO paper's experiments: grids, budgets per profile, and cached runs over seeds.

Every run — one method, one grid cell, one algorithm seed — is cached on disk as a JSON record
(:mod:`hybridrl.cache`), keyed by everything that determines it, so an interrupted grid resumes where it stopped
and a finished one is read back instantly. Runs are independent, so :func:`run_lqr_grid` spreads them over
``workers`` local processes (one torch thread each): small networks use one core badly, two runs use two.

Switched LQR (HPO spec §7.3). Cells are ``(dim p, modes J, variant)``: ``switched`` is the genuine switched LQR
(the mode is a J-way choice); ``single_mode`` is what the reference's configuration ran (one choice, mode 0;
actuator groups still from J), whose exact optimum is the finite-horizon Riccati controller. ``J = 1`` is the
plain clamped LQR. Reported metric: total cost per trajectory, averaged over the test trajectories.

Profiles: ``smoke`` (seconds), ``quick`` (a 2-core laptop: a reduced grid, two seeds, 800 updates of small
networks), ``paper`` (spec §9: networks [512, 512], 4000 updates, 11 seeds, the published grid; a GPU).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch

from . import __version__
from ._config import check_choice, check_int
from ._device import threads_per_run
from .cache import cached, checkpoint_path
from .experiments import GridResult, check_profile, run_parallel
from .hpo import HybridConfig, evaluate_hybrid, reported, train_hybrid
from .lqr import (SwitchedLQR, best_fixed_mode_cost, relaxed_lower_bound, riccati_cost, sample_splits,
                  switched_optimum)
from .reporting import device_name, git_commit

RESULT_FORMAT = 1
LQR_METHODS = ("hpo_full", "hpo_decentralized", "ppo", "gumbel_st")


@dataclass(frozen=True)
class LQRBudget:
    cells: tuple[tuple[int, int, str], ...]
    """``(dim, modes, variant)`` of every cell."""
    seeds: tuple[int, ...]
    n_train: int
    n_dev: int
    n_test: int
    configs: dict
    """Method -> :class:`HybridConfig` (the seed is set per run)."""


def _lqr_configs(updates: int, hidden: tuple[int, ...], batch: int, ppo_epochs: int, minibatches: int,
                 dev_every: int | None = None) -> dict:
    common = dict(updates=updates, batch_size=batch, hidden=hidden, value_hidden=hidden,
                  dev_every=dev_every or max(1, updates // 10),
                  ppo_epochs=ppo_epochs, minibatches=minibatches, buffer_periods=0, bootstrap=False)
    # spec §9 (S-LQR): HPO lr 1e-3, pathwise_coef 10, γ 0.99, λ 0.96, clip 0.16, vf 0.13, entropy 0.5 -> 0;
    # PPO lr 2e-4, γ 0.99, λ 0.95, clip 0.2, vf 0.1, entropy 0.01 -> 0. The quick profile trains far fewer updates
    # than the paper's 4000, with a larger learning rate for the continuous network (documented in the budgets).
    hpo = dict(common, lr=1e-3, pathwise_coef=10.0, gamma=0.99, gae_lambda=0.96, clip=0.16, vf_coef=0.13,
               entropy_start=0.5, entropy_end=0.0)
    ppo = dict(common, method="ppo", lr=2e-4, gamma=0.99, gae_lambda=0.95, clip=0.2, vf_coef=0.1,
               entropy_start=0.01, entropy_end=0.0)
    return hpo, ppo


def _budget(cells, seeds, sizes, updates, hidden, batch, ppo_epochs, minibatches, continuous_lr, ppo_lr,
            device="cpu", dev_every=None, ppo_reward_scaling=False):
    """``ppo_reward_scaling``: spec §9, PPO on the S-LQR scales no rewards (the paper profile)."""
    hpo, ppo = _lqr_configs(updates, hidden, batch, ppo_epochs, minibatches, dev_every)
    hpo, ppo = dict(hpo, device=device), dict(ppo, device=device, reward_scaling=ppo_reward_scaling)
    configs = {
        "hpo_full": HybridConfig(**dict(hpo, method="hpo_full", continuous_lr=continuous_lr)),
        "hpo_decentralized": HybridConfig(**dict(hpo, method="hpo_decentralized", continuous_lr=continuous_lr)),
        "ppo": HybridConfig(**dict(ppo, lr=ppo_lr)),
        # the Gumbel-softmax baseline: HPO's networks, learning rates and pathwise scaling, nothing else
        "gumbel_st": HybridConfig(**dict(hpo, method="gumbel_st", continuous_lr=continuous_lr)),
    }
    return LQRBudget(tuple(cells), tuple(seeds), *sizes, configs)


_PAPER_DIMS = (1, 3, 5, 7, 8, 10, 13, 16, 20, 24, 32, 40, 48)
LQR_BUDGETS = {
    "smoke": _budget([(2, 1, "switched"), (2, 2, "switched"), (2, 2, "single_mode")], (0, 1), (64, 32, 32),
                     updates=4, hidden=(16,), batch=32, ppo_epochs=2, minibatches=2, continuous_lr=1e-2, ppo_lr=1e-3),
    "quick": _budget(
        [(8, 1, "switched"), (2, 2, "switched"), (8, 2, "switched"), (24, 2, "switched"), (8, 2, "single_mode")],
        (0, 1), (1024, 256, 1024), updates=800, hidden=(64, 64), batch=128, ppo_epochs=4, minibatches=4,
        # PPO's costs std-scaled here, unlike the paper's: at this profile's 5x learning rate, PPO on the raw
        # costs diverged at p = 24 (test cost 545 against 85 with scaling, 2 seeds, measured 2026-11-27)
        continuous_lr=1e-2, ppo_lr=1e-3, ppo_reward_scaling=True),
    "paper": _budget(
        [(p, J, v) for v in ("switched", "single_mode") for p in _PAPER_DIMS for J in (1, 2, 4, 6, 8)
         if not (v == "single_mode" and J == 1)],
        tuple(range(11)), (1024, 1024, 1024), updates=4000, hidden=(512, 512), batch=128, ppo_epochs=5,
        minibatches=4, continuous_lr=1e-3, ppo_lr=2e-4, device="auto", dev_every=1024 // 128),  # dev every epoch
}


def lqr_budget(profile: str) -> LQRBudget:
    return LQR_BUDGETS[check_profile(profile)]


def _problem(dim: int, modes: int, variant: str) -> SwitchedLQR:
    return SwitchedLQR(dim=dim, modes=modes, variant=variant)


def _cached_run(experiment: str, problem, method: str, config: HybridConfig, sizes: tuple, splits, fields: dict,
                force: bool) -> dict:
    """Train ``config`` on ``splits()`` (train, dev, test), test greedily, and cache the record under a key made
    of everything that determines it. ``test_cost`` is the problem's reported metric (:func:`hpo.reported`)."""
    description = dict(experiment=experiment, problem=repr(problem), method=method, config=asdict(config),
                       sizes=sizes, version=__version__, format=RESULT_FORMAT)
    namespace = f"hpo/{experiment}/{method}"
    ckpt = checkpoint_path(namespace, description, fresh=force)  # an interrupted run resumes (force: from scratch)

    def compute() -> dict:
        commit = git_commit()  # the code that trains, read before a long run (not a later commit when it ends)
        torch.set_num_threads(threads_per_run())
        data = splits()
        result = train_hybrid(problem, data.train, data.dev, config, checkpoint=ckpt)
        test = reported(problem, evaluate_hybrid(result.policy, problem, data.test))
        return dict(**fields, method=method, seed=config.seed, test_cost=float(test.mean()), test_se=float(test.std() / math.sqrt(len(test))),
                    dev_cost=result.best_dev, best_update=result.best_update, updates=config.updates,
                    run_seconds=result.seconds, cells_in_run=1, computed_commit=commit,
                    computed_device=device_name(str(next(result.policy.parameters()).device)), history=result.history)

    record = cached(namespace, description, compute, force=force)
    ckpt.unlink(missing_ok=True)
    return record


def run_lqr(dim: int, modes: int, variant: str, method: str, seed: int, profile: str = "quick", *,
            force: bool = False) -> dict:
    """One training run on one S-LQR cell, cached: a record with ``test_cost`` and the dev history."""
    check_choice("method", method, LQR_METHODS)
    check_int("seed", seed, minimum=0)
    budget = lqr_budget(profile)
    problem = _problem(dim, modes, variant)
    config = replace(budget.configs[method], seed=seed)
    sizes = (budget.n_train, budget.n_dev, budget.n_test)
    return _cached_run("switched_lqr", problem, method, config, sizes,
                       lambda: sample_splits(problem, *sizes), dict(dim=dim, modes=modes, variant=variant), force)


REFERENCE_MAX_MATRICES = 300
"""Cap on the pruned value sets of :func:`hybridrl.lqr.switched_optimum` in the experiments. Every J = 2 cell
up to p = 48 needs at most 144 forms (p = 48), while no J ≥ 4 cell with p ≥ 3 stays within any cap we tried
(p = 3, J = 4 levels off near 24000 after 200 s); with a cap of 300 or of 2000 the same 67 cells (every
profile's and every published one) have an exact optimum, and the hopeless ones fail 4 times faster."""


def lqr_references(dim: int, modes: int, variant: str, profile: str = "quick") -> dict:
    """Exact and reference costs of one cell on its test trajectories (cached: the exact switched optimum takes
    seconds where it exists and as long to find out that it is out of reach).

    ``optimal`` — the exact optimum where it is known: with one choice (``J = 1`` or the single-mode variant) the
    finite-horizon Riccati controller (:func:`hybridrl.lqr.riccati_cost`); with several, the dynamic
    programme over modes (:func:`hybridrl.lqr.switched_optimum`) when its pruned value sets stay small (all
    ``J = 2`` cells; NaN otherwise) — in both cases only when the clamp certificate holds on every test
    trajectory. ``best_fixed_mode`` — the best single mode per trajectory with its Riccati controller (an upper
    bound on the switched optimum); ``lower_bound`` — :func:`hybridrl.lqr.relaxed_lower_bound`.
    """
    budget = lqr_budget(profile)
    problem = _problem(dim, modes, variant)
    description = dict(experiment="lqr_references", problem=repr(problem), sizes=(budget.n_train, budget.n_dev,
                       budget.n_test), max_matrices=REFERENCE_MAX_MATRICES, version=__version__, format=RESULT_FORMAT)

    def compute() -> dict:
        test = sample_splits(problem, budget.n_train, budget.n_dev, budget.n_test).test
        riccati = riccati_cost(problem, test, 0)
        if problem.n_choices == 1:
            optimal = float(riccati.simulated.mean()) if bool(riccati.optimal.all()) else math.nan
        else:
            try:
                exact = switched_optimum(problem, test, max_matrices=REFERENCE_MAX_MATRICES)
                optimal = float(exact.simulated.mean()) if bool(exact.optimal.all()) else math.nan
            except ValueError:  # the pruned value sets grew past the cap: no exact optimum for this cell
                optimal = math.nan
        best = best_fixed_mode_cost(problem, test)[0]
        return dict(dim=dim, modes=modes, variant=variant, optimal=optimal,
                    riccati_mode0=float(riccati.simulated.mean()), best_fixed_mode=float(best.simulated.mean()),
                    lower_bound=float(relaxed_lower_bound(problem, test).mean()))

    return cached("hpo/lqr_references", description, compute)


def lqr_reference_grid(cells, profile: str = "quick", *, workers: int | None = None, progress: bool = True
                       ) -> pd.DataFrame:
    """:func:`lqr_references` of every ``(dim, modes, variant)`` in ``cells``, one row each, computed in parallel
    over ``workers`` (cached: a second call reads them back)."""
    jobs = [dict(kind="lqr_references", dim=d, modes=J, variant=v, profile=profile) for d, J, v in cells]
    return pd.DataFrame(_run_jobs(jobs, workers, progress, "S-LQR references", training=False))


def _run_job(job: dict) -> dict:
    """One job: ``kind`` picks the run function, the other fields are its arguments, except ``sweep``, a label
    returned with the record (not part of the cached run)."""
    job = dict(job)
    sweep = job.pop("sweep", None)
    record = {"lqr": run_lqr, "jrp": run_jrp, "alignment": run_alignment, "jrp_heuristic": jrp_heuristic,
              "lqr_references": lqr_references}[job.pop("kind")](**job)
    return record if sweep is None else dict(record, sweep=sweep)


def _run_jobs(jobs: list, workers: int | None, progress: bool, description: str, training: bool = True
              ) -> list[dict]:
    """Run independent jobs (``kind`` and the run function's keyword arguments) in ``workers`` spawned processes
    (one torch thread each); ``training=False`` for references (:func:`hybridrl.experiments.run_parallel`)."""
    return run_parallel(_run_job, jobs, workers=workers, progress=progress, description=description,
                        training=training)


def _grid_result(records: list[dict], keys: list[str]) -> GridResult:
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in records])
    history = pd.DataFrame([dict(h, **{k: r[k] for k in keys}) for r in records for h in r["history"]])
    return GridResult(table, history)


def lqr_runs(profile: str, methods=LQR_METHODS) -> list[tuple[int, int, str, str]]:
    """``(dim, modes, variant, method)`` of every S-LQR run of the profile's grid (one per training seed). With
    one choice (J = 1, or the single-mode variant) there is no cross term, so decentralized HPO is full HPO and
    is not run."""
    return [(d, J, v, m) for d, J, v in lqr_budget(profile).cells for m in methods
            if not (m == "hpo_decentralized" and _problem(d, J, v).n_choices == 1)]


def run_lqr_grid(profile: str = "quick", *, methods=LQR_METHODS, seeds=None, workers: int | None = None,
                 force: bool = False, progress: bool = True) -> GridResult:
    """Every (cell, method, seed) of the profile's grid; runs in parallel over ``workers`` processes.

    Returns a :class:`~hybridrl.experiments.GridResult`: ``table`` one row per run (``dim, modes, variant,
    method, seed, test_cost, ...``), ``history`` the dev evaluations (``update, seconds, dev_cost``) per run.
    """
    budget = lqr_budget(profile)
    seeds = budget.seeds if seeds is None else tuple(seeds)
    for m in methods:
        check_choice("method", m, LQR_METHODS)
    jobs = [dict(kind="lqr", dim=d, modes=J, variant=v, method=m, seed=s, profile=profile, force=force)
            for d, J, v, m in lqr_runs(profile, methods) for s in seeds]
    records = _run_jobs(jobs, workers, progress, "switched LQR")
    return _grid_result(records, [*LQR_CELL, "method", "seed"])


# ----------------------------------------------------------------------------------------------------------------
# Joint replenishment (HPO spec §7.2)
# ----------------------------------------------------------------------------------------------------------------
JRP_METHODS = ("hpo_full", "hpo_decentralized", "ppo", "gumbel_st")


@dataclass(frozen=True)
class JRPBudget:
    items: tuple[int, ...]
    seeds: tuple[int, ...]
    n_train: int
    n_dev: int
    n_test: int
    horizon: int
    warmup: int
    configs: dict


def _jrp_budget(items, seeds, sizes, horizon, warmup, updates, hidden, batch, ppo_epochs=5, minibatches=4,
                continuous_lr=1e-3, ppo_lr=1e-4, device="cpu", dev_every=None):
    # spec §9 (JRP): lr 1e-3 (PPO 1e-4), clip 0.15, γ 0.93, λ 0.96, 5 epochs x 4 minibatches, vf 0.15,
    # pathwise_coef 5, entropy 0.5 -> 0.001, 20 buffer periods, max_grad_norm 5, continuous_shift 1, target_kl 0.015
    common = dict(updates=updates, batch_size=batch, hidden=hidden, value_hidden=hidden,
                  dev_every=dev_every or max(1, updates // 10), clip=0.15, gamma=0.93, gae_lambda=0.96,
                  ppo_epochs=ppo_epochs, minibatches=minibatches,
                  vf_coef=0.15, entropy_start=0.5, entropy_end=0.001, max_grad_norm=5.0, continuous_shift=1.0,
                  target_kl=0.015, bootstrap=True, buffer_periods=min(20, horizon // 5), device=device)
    configs = {
        "hpo_full": HybridConfig(**common, method="hpo_full", lr=1e-3, continuous_lr=continuous_lr, pathwise_coef=5.0),
        "hpo_decentralized": HybridConfig(**common, method="hpo_decentralized", lr=1e-3, continuous_lr=continuous_lr,
                                          pathwise_coef=5.0),
        "ppo": HybridConfig(**common, method="ppo", lr=ppo_lr),
        "gumbel_st": HybridConfig(**common, method="gumbel_st", lr=1e-3, continuous_lr=continuous_lr, pathwise_coef=5.0),
    }
    return JRPBudget(tuple(items), tuple(seeds), *sizes, horizon, warmup, configs)


JRP_BUDGETS = {
    "smoke": _jrp_budget((1, 3), (0, 1), (32, 16, 16), horizon=30, warmup=5, updates=3, hidden=(16,), batch=16,
                         ppo_epochs=2, minibatches=2),
    "quick": _jrp_budget((1, 5, 20, 50), (0, 1), (512, 256, 512), horizon=60, warmup=16, updates=200, hidden=(64, 64),
                         batch=64, ppo_epochs=4, minibatches=4, continuous_lr=3e-3, ppo_lr=3e-4),
    "paper": _jrp_budget((1, 3, 5, 7, 10, 15, 20, 30, 40, 50), tuple(range(11)), (1024, 1024, 1024), horizon=100,
                         warmup=16, updates=1600, hidden=(512, 512), batch=128, device="auto",
                         dev_every=1024 // 128),  # a dev evaluation every epoch: selection and §10.4's counts
}


def jrp_budget(profile: str) -> JRPBudget:
    return JRP_BUDGETS[check_profile(profile)]


def run_jrp(items: int, method: str, seed: int, profile: str = "quick", *, batch: int | None = None,
            force: bool = False) -> dict:
    """One training run on the JRP with ``items`` items, cached; ``test_cost`` is per item and period.

    ``batch`` replaces the profile's batch size and keeps its number of policy updates (spec §8: (B, epochs)
    pairs with the same 1600 updates), with a dev evaluation every pass over the training scenarios."""
    from .jrp import JointReplenishment, sample_jrp_splits

    check_choice("method", method, JRP_METHODS)
    budget = jrp_budget(profile)
    problem = JointReplenishment(items, horizon=budget.horizon, warmup=budget.warmup)
    config = replace(budget.configs[method], seed=check_int("seed", seed, minimum=0))
    if batch is not None:
        if check_int("batch", batch, minimum=1) > budget.n_train:
            raise ValueError(f"batch must be at most the {budget.n_train} training scenarios, got {batch}")
        config = replace(config, batch_size=batch, dev_every=max(1, budget.n_train // batch))
    sizes = (budget.n_train, budget.n_dev, budget.n_test)
    return _cached_run("jrp", problem, method, config, sizes, lambda: sample_jrp_splits(problem, *sizes),
                       dict(n_items=items, joint_fixed_cost=problem.joint_fixed_cost), force)


JRP_HEURISTICS = {"can_order": False, "independent_s_S": True, "fixed_cycle": None}
"""The classical benchmarks: name -> ``independent`` of :func:`hybridrl.jrp.tune_can_order`, or ``None`` for the
fixed-cycle policy, which is not tuned (:func:`hybridrl.jrp.fixed_cycle_policy`)."""


def jrp_heuristic(items: int, method: str, profile: str = "quick", *, force: bool = False) -> dict:
    """A tuned can-order (or independent (s, S)) policy on the profile's JRP: tuned on the training episodes,
    ``test_cost`` per item and period on the test episodes (the learned policies' data); cached. ``fixed_cycle``:
    the best fixed-cycle policy (:func:`hybridrl.jrp.fixed_cycle_policy`, from the items' parameters alone, no
    tuning) simulated on the same test episodes, with its exact long-run cost beside it (``exact_cost``)."""
    from .jrp import (JointReplenishment, fixed_cycle_policy, rollout_fixed_cycle, sample_jrp_splits,
                      simulate_can_order, tune_can_order)

    check_choice("method", method, tuple(JRP_HEURISTICS))
    budget = jrp_budget(profile)
    problem = JointReplenishment(items, horizon=budget.horizon, warmup=budget.warmup)
    sizes = (budget.n_train, budget.n_dev, budget.n_test)
    description = dict(experiment="jrp_heuristic", problem=repr(problem), method=method, sizes=sizes,
                       version=__version__, format=RESULT_FORMAT)

    def compute() -> dict:
        started = time.time()
        data = sample_jrp_splits(problem, *sizes)
        if method == "fixed_cycle":
            policy = fixed_cycle_policy(problem)
            test = problem.reported(rollout_fixed_cycle(problem, data.test, policy))
            return dict(n_items=items, method=method, test_cost=float(test.mean()),
                        test_se=float(test.std() / math.sqrt(len(test))), exact_cost=policy.cost,
                        cycle=policy.cycle, run_seconds=time.time() - started)
        fit = tune_can_order(problem, data.train, independent=JRP_HEURISTICS[method])
        test = problem.reported(simulate_can_order(problem, data.test, fit.levels))
        return dict(n_items=items, method=method, test_cost=float(test.mean()),
                    test_se=float(test.std() / math.sqrt(len(test))), train_cost=fit.train_cost,
                    safety=fit.params.safety, cycle=fit.params.cycle, can_order=fit.params.can_order,
                    run_seconds=time.time() - started)

    return cached(f"hpo/jrp_heuristic/{method}", description, compute, force=force)


def jrp_heuristic_grid(profile: str = "quick", *, workers: int | None = None, force: bool = False,
                       progress: bool = True) -> pd.DataFrame:
    """:func:`jrp_heuristic` for every number of items of the profile's grid and every heuristic, in parallel
    over ``workers`` (the tuning is a serial search per problem: a minute for 50 items on one core). In the
    ``smoke`` profile they run in this process: starting workers would take longer than the tuning."""
    jobs = [dict(kind="jrp_heuristic", items=n, method=m, profile=profile, force=force)
            for n in jrp_budget(profile).items for m in JRP_HEURISTICS]
    workers = 1 if check_profile(profile) == "smoke" else workers
    return pd.DataFrame(_run_jobs(jobs, workers, progress, "JRP heuristics", training=False))


# Item draws per number of items in the instance study (smoke: a few, to run the code)
JRP_INSTANCE_DRAWS = {"smoke": 4, "quick": 100, "paper": 100}


def jrp_instances(profile: str = "quick", items=None, *, force: bool = False, progress: bool = True
                  ) -> pd.DataFrame:
    """How much the JRP's cost per item and period depends on the draw of its items. The items' means, ``h`` and
    ``p`` are drawn from a seed (``parameter_seed``; ours is 0, the reference's draws are not reproducible), so
    our instance with ``n`` items and the paper's are different problems from the same distribution. For each
    ``n`` (default: every ``n`` with a published number, :data:`hybridrl.reproduction.JRP_PUBLISHED`; smoke: 1
    and 3) the exact cost of the best fixed-cycle policy (:func:`hybridrl.jrp.fixed_cycle_policy`) is computed
    for parameter seeds ``0, 1, …`` (:data:`JRP_INSTANCE_DRAWS`): its mean and standard deviation over the draws
    (``draws_sd_pct``, in % of the mean) and where our draw stands (``ours_vs_draws_pct``). Cached."""
    from .jrp import JointReplenishment, fixed_cycle_policy
    from .reproduction import JRP_PUBLISHED

    profile = check_profile(profile)
    items = ((1, 3) if profile == "smoke" else tuple(JRP_PUBLISHED)) if items is None else tuple(items)
    draws = JRP_INSTANCE_DRAWS[profile]
    description = dict(experiment="jrp_instances", items=items, draws=draws, version=__version__,
                       format=RESULT_FORMAT)

    def compute() -> list[dict]:
        from ._progress import progress_bar

        rows = []
        for n in progress_bar(items, desc="JRP item draws", disable=not progress):
            ours = fixed_cycle_policy(JointReplenishment(n))
            costs = pd.Series([ours.cost] + [fixed_cycle_policy(JointReplenishment(n, parameter_seed=seed)).cost
                                             for seed in range(1, draws)])
            rows.append(dict(n_items=n, cycle=ours.cycle, fixed_cycle=ours.cost, draws=draws,
                             draws_mean=float(costs.mean()), draws_sd_pct=float(100 * costs.std() / costs.mean()),
                             ours_vs_draws_pct=float(100 * (ours.cost / costs.mean() - 1))))
        return rows

    return pd.DataFrame(cached("hpo/jrp_instances", description, compute, force=force))


def run_jrp_grid(profile: str = "quick", *, methods=JRP_METHODS, seeds=None, workers: int | None = None,
                 force: bool = False, progress: bool = True) -> GridResult:
    """Every (number of items, method, seed) of the profile's JRP grid, in parallel over ``workers``."""
    budget = jrp_budget(profile)
    seeds = budget.seeds if seeds is None else tuple(seeds)
    for m in methods:
        check_choice("method", m, JRP_METHODS)
    jobs = [dict(kind="jrp", items=n, method=m, seed=s, profile=profile, force=force) for n in budget.items
            for m in methods for s in seeds]
    return _grid_result(_run_jobs(jobs, workers, progress, "JRP"), ["n_items", "method", "seed"])


@dataclass(frozen=True)
class JRPTableSweep:
    """One of the paper's other JRP sweeps, at its own batch size with the main grid's number of policy updates:
    §10.3's table (batch 16, 25 epochs, numbers of items up to 70, the cross-term ablation) and the batch-512
    row of §10.2 (800 epochs). ``name`` names its artifact, ``paper/tables/hpo_jrp_{name}``; the ``smoke``
    profile runs each at a small batch under the same name."""

    name: str
    items: tuple[int, ...]
    seeds: tuple[int, ...]
    batch: int
    methods: tuple[str, ...]


JRP_TABLE_SWEEPS = {
    "smoke": (JRPTableSweep("batch16", items=(1,), seeds=(0, 1), batch=8, methods=("hpo_full", "ppo")),
              JRPTableSweep("batch512", items=(1,), seeds=(0, 1), batch=32, methods=("hpo_full", "ppo"))),
    "quick": (),  # 1600 updates per run: too long for a laptop; the quick rows say so
    "paper": (JRPTableSweep("batch16", items=(1, 3, 5, 10, 20, 30, 40, 50, 60, 70), seeds=tuple(range(10)),  # §10.3
                            batch=16, methods=("hpo_full", "hpo_decentralized", "ppo")),
              # §10.2; its HPO reference is the mean of the five best HPO runs, so at least five seeds
              JRPTableSweep("batch512", items=(1, 3, 5, 7, 10, 15, 20, 30, 40, 50), seeds=tuple(range(10)),
                            batch=512, methods=("hpo_full", "ppo"))),
}


def run_jrp_table_grid(profile: str = "quick", *, workers: int | None = None, force: bool = False,
                       progress: bool = True) -> dict[str, GridResult]:
    """Every (sweep, items, method, seed) of the profile's :data:`JRP_TABLE_SWEEPS`, each at its batch size, in
    one parallel pool; one :class:`~hybridrl.experiments.GridResult` per sweep, by name (its ``table`` has a
    ``batch`` column); empty where the profile has no such sweep."""
    sweeps = JRP_TABLE_SWEEPS[check_profile(profile)]
    jobs = [dict(kind="jrp", sweep=sweep.name, items=n, method=m, seed=s, profile=profile, batch=sweep.batch,
                 force=force)
            for sweep in sweeps for n in sweep.items for m in sweep.methods for s in sweep.seeds]
    description = "JRP, batch " + ", ".join(str(sweep.batch) for sweep in sweeps)
    records = _run_jobs(jobs, workers, progress, description) if jobs else []
    results = {}
    for sweep in sweeps:  # the finished runs of each sweep (with --cached-only, some may be missing)
        result = _grid_result([r for r in records if r["sweep"] == sweep.name], ["n_items", "method", "seed"])
        table = result.table.drop(columns="sweep", errors="ignore").assign(batch=sweep.batch)
        results[sweep.name] = GridResult(table, result.history)
    return results


# ----------------------------------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------------------------------
LQR_CELL = ["dim", "modes", "variant"]


def method_summary(table: pd.DataFrame, keys=LQR_CELL, value: str = "test_cost") -> pd.DataFrame:
    """Per cell and method: the mean over seeds with a 95 % bootstrap interval and the number of runs."""
    from . import stats

    return stats.interval_table(table, by=[*keys, "method"], value=value)


def compare_methods(table: pd.DataFrame, better: str, worse: str, keys=LQR_CELL, value: str = "test_cost"
                    ) -> pd.DataFrame:
    """:func:`hybridrl.stats.compare_methods` with the S-LQR cell as the default key."""
    from . import stats

    return stats.compare_methods(table, better, worse, keys=keys, value=value)


def learning_curves(history: pd.DataFrame, *, task: str, value: str = "gap") -> dict[str, pd.DataFrame]:
    """Per method, the IQM of ``value`` over seeds × tasks at every dev evaluation (policy updates) with a 95 %
    stratified-bootstrap band and the median wall-clock seconds (:func:`hybridrl.stats.curves_by_method`)."""
    from . import stats

    return stats.curves_by_method(history, x="update", task=task, value=value)


def updates_to_target(history: pd.DataFrame, *, task: str, target_pct: float, floor: str = "floor") -> pd.DataFrame:
    """Sample efficiency (spec §10.4): per run, the first policy update at which the dev cost is within
    ``target_pct`` % of the task's ``floor`` column (NaN: never within the budget); then per task and method the
    median over seeds (a run that never reaches the target counts as ``updates + 1``, the paper's cap) and the
    fraction of runs that reached it."""
    keys = [task, "method", "seed"]
    hit = history[history.dev_cost <= history[floor] * (1 + target_pct / 100)]
    first = hit.groupby(keys).update.min()
    runs = history.groupby(keys).update.max().rename("budget").to_frame().join(first.rename("reached_at"))
    runs["capped"] = runs.reached_at.fillna(runs.budget + 1)
    out = runs.groupby([task, "method"]).agg(median_updates=("capped", "median"), budget=("budget", "max"),
                                             reached=("reached_at", lambda x: float(x.notna().mean())),
                                             runs=("capped", "size")).reset_index()
    return out.assign(target_pct=target_pct)


def published_lqr_comparison(profile: str = "quick", *, workers: int | None = None) -> pd.DataFrame:
    """Every published S-LQR row (HPO spec §10.5) beside what our problem gives for the same (p, J).

    For each row: the published HPOFull / HPONoCross / PPO means; our single-mode variant's exact optimum
    (finite-horizon Riccati, on our test trajectories) and the published HPOFull's distance from it; and for
    the genuinely switched problem, its exact optimum where :func:`lqr_references` has it (NaN otherwise) and
    the published HPOFull's distance from it, the best-fixed-mode Riccati cost (an upper bound on its optimum)
    and the relaxed lower bound. Our matrices follow the spec, but the reference's normalisation of G_sym is unknown,
    so the distances measure both the policy and the difference of instances; no training is involved.
    """
    from .reproduction import SLQR_PUBLISHED, SLQR_SWITCHED_ROWS

    references = lqr_reference_grid([(p, J, v) for p, J in SLQR_PUBLISHED for v in ("single_mode", "switched")],
                                    profile, workers=workers).set_index(LQR_CELL)
    rows = []
    for (p, J), (full, nocross, ppo) in SLQR_PUBLISHED.items():
        single, switched = references.loc[(p, J, "single_mode")], references.loc[(p, J, "switched")]
        rows.append(dict(dim=p, modes=J, published_rows="switched-like" if p in SLQR_SWITCHED_ROWS else "single-mode",
                         published_hpo_full=full, published_hpo_nocross=nocross, published_ppo=ppo,
                         single_mode_optimal=single["optimal"],
                         hpo_full_vs_single_mode_optimal_pct=100 * (full / single["optimal"] - 1),
                         switched_optimal=switched["optimal"],
                         hpo_full_vs_switched_optimal_pct=100 * (full / switched["optimal"] - 1),
                         switched_best_fixed_mode=switched["best_fixed_mode"],
                         switched_lower_bound=switched["lower_bound"]))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# The cross-term study (HPO spec §10.7)
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignmentBudget:
    items: tuple[int, ...]
    seeds: tuple[int, ...]
    batches: int
    """Independent batch estimates per checkpoint."""
    batch_size: int
    """Episodes per batch estimate (the paper: 512)."""
    every: int
    """Study the checkpoint every ``every`` updates (a multiple of the run's dev interval), and the last one."""


ALIGNMENT_BUDGETS = {
    "smoke": AlignmentBudget(items=(2,), seeds=(0,), batches=3, batch_size=8, every=1),
    "quick": AlignmentBudget(items=(5, 20), seeds=(0, 1), batches=16, batch_size=256, every=20),
    # every 10 epochs: 20 checkpoints a run, the study's cost about that of training (16 × 512 episodes each)
    "paper": AlignmentBudget(items=(1, 5, 10, 20, 30, 50), seeds=(0, 1, 2), batches=16, batch_size=512, every=80),
}
EXACT_TERMS = ("pathwise", "cross", "score_function")
"""The exact mixed estimator's terms (:func:`hybridrl.estimators.mixed_terms`)."""
PRACTICAL_TERMS = ("pathwise_ppo", "cross_ppo", "discrete_ppo", "pathwise_plus_cross_ppo")
"""The terms of HPO-full's actual first step (:func:`hybridrl.hpo.hpo_first_terms`), the paper's statistics."""
ALIGNMENT_TERMS = EXACT_TERMS + PRACTICAL_TERMS


def gradient_study(policy, problem, episodes, *, batches: int, batch_size: int, seed: int, value=None,
                   config=None) -> dict[str, float]:
    """At frozen parameters: ``batches`` independent estimates of each term of the exact mixed gradient
    (:func:`hybridrl.estimators.mixed_terms`, batches of ``batch_size`` episodes drawn from ``episodes``), and
    per term its alignment, noise and norms (:func:`hybridrl.estimators.signal_and_noise`), flattened as
    ``{term}_{statistic}``; ``pathwise_share`` = E‖ĝ_PW‖ / (E‖ĝ_PW‖ + E‖ĝ_X‖), the pathwise term's share of the
    continuous parameters' step.

    Given the run's ``value`` network and ``config``, the same batches also give the terms of HPO-full's actual
    first step (:func:`hybridrl.hpo.hpo_first_terms`: ``pathwise_ppo``, ``cross_ppo``, ``discrete_ppo``,
    ``pathwise_plus_cross_ppo``) and ``pathwise_share_ppo``, the statistics the paper reports (spec §10.7)."""
    from .estimators import mixed_terms, signal_and_noise
    from .hpo import hpo_first_terms
    from .hybrid import hybrid_rollout

    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    episodes = episodes.to(device)
    continuous, discrete = policy.continuous_parameters(), policy.discrete_parameters()
    practical = value is not None and config is not None
    samples = {term: [] for term in (ALIGNMENT_TERMS if practical else EXACT_TERMS)}
    for _ in range(batches):
        pick = torch.randperm(episodes.size, generator=generator, device=device)[:batch_size]
        batch = episodes[pick]
        trajectory = hybrid_rollout(policy, problem, batch, generator=generator)
        terms = mixed_terms(trajectory, continuous, discrete)
        if practical:
            terms.update(hpo_first_terms(trajectory, value, problem, batch, config, continuous, discrete))
        for term, g in terms.items():
            samples[term].append(g.cpu())
    row = {}
    for term, values in samples.items():
        row.update({f"{term}_{k}": v for k, v in signal_and_noise(torch.stack(values)).items()})
    row["pathwise_share"] = row["pathwise_norm"] / (row["pathwise_norm"] + row["cross_norm"])
    if practical:
        row["pathwise_share_ppo"] = row["pathwise_ppo_norm"] / (row["pathwise_ppo_norm"] + row["cross_ppo_norm"])
    return row


def run_alignment(items: int, seed: int, profile: str = "quick", *, force: bool = False) -> dict:
    """Train HPO-full on the JRP with ``items`` items exactly as :func:`run_jrp` does, and run
    :func:`gradient_study` on the training episodes at every dev evaluation (a frozen checkpoint); cached.
    The record's ``history`` has one row per checkpoint: ``update, dev_cost`` and the study's statistics."""
    from .jrp import JointReplenishment, sample_jrp_splits

    study = ALIGNMENT_BUDGETS[check_profile(profile)]
    budget = jrp_budget(profile)
    problem = JointReplenishment(items, horizon=budget.horizon, warmup=budget.warmup)
    config = replace(budget.configs["hpo_full"], seed=check_int("seed", seed, minimum=0))
    sizes = (budget.n_train, budget.n_dev, budget.n_test)
    if study.every % config.dev_every:
        raise ValueError(f"AlignmentBudget.every = {study.every} must be a multiple of the run's dev_every = "
                         f"{config.dev_every}: the study runs at dev evaluations")
    description = dict(experiment="alignment", problem=repr(problem), config=asdict(config), sizes=sizes,
                       study=asdict(study), version=__version__, format=RESULT_FORMAT)
    ckpt = checkpoint_path("hpo/alignment", description, fresh=force)

    def compute() -> dict:
        commit = git_commit()
        torch.set_num_threads(threads_per_run())
        data = sample_jrp_splits(problem, *sizes)

        def study_at(update, policy, value):  # at dev evaluations (a frozen policy)
            if update % study.every and update != config.updates:
                return None
            return gradient_study(policy, problem, data.train, batches=study.batches,
                                  batch_size=min(study.batch_size, data.train.size), seed=seed * 100_003 + update,
                                  value=value, config=config)

        result = train_hybrid(problem, data.train, data.dev, config, callback=study_at, checkpoint=ckpt)
        return dict(n_items=items, seed=seed, best_dev=result.best_dev, run_seconds=result.seconds,
                    computed_commit=commit, computed_device=device_name(str(next(result.policy.parameters()).device)),
                    history=result.history)

    record = cached("hpo/alignment", description, compute, force=force)
    ckpt.unlink(missing_ok=True)
    return record


def run_alignment_grid(profile: str = "quick", *, workers: int | None = None, force: bool = False,
                       progress: bool = True) -> GridResult:
    """Every (items, seed) of the profile's study, in parallel. ``table``: one row per run; ``history``: one row
    per studied checkpoint, with ``gap_pct``, the dev cost over the run's best dev cost (how far the checkpoint
    is from where training ended up)."""
    study = ALIGNMENT_BUDGETS[check_profile(profile)]
    jobs = [dict(kind="alignment", items=n, seed=s, profile=profile, force=force) for n in study.items
            for s in study.seeds]
    records = [dict(r, cells_in_run=1) for r in _run_jobs(jobs, workers, progress, "cross-term study")]
    result = _grid_result(records, ["n_items", "seed", "best_dev"])
    history = result.history.assign(gap_pct=lambda d: 100 * (d.dev_cost / d.best_dev - 1))
    studied = history["pathwise_alignment"].notna()  # dev evaluations between the studied checkpoints
    return GridResult(result.table, history[studied].reset_index(drop=True))


ALIGNMENT_BUCKETS = ((0.0, 2.0, "near"), (2.0, 10.0, "middle"), (10.0, float("inf"), "far"))
"""Checkpoints by dev cost over the run's best (%): near < 2 ≤ middle < 10 ≤ far."""


def alignment_summary(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """The median of every statistic of :func:`gradient_study` per bucket of :data:`ALIGNMENT_BUCKETS`, with the
    number of checkpoints and the gap range in each."""
    statistics = [c for c in checkpoints.columns if any(c.startswith(f"{t}_") for t in ALIGNMENT_TERMS)]
    rows = []
    for low, high, name in ALIGNMENT_BUCKETS:
        part = checkpoints[(checkpoints.gap_pct >= low) & (checkpoints.gap_pct < high)]
        if len(part):
            rows.append(dict(bucket=name, checkpoints=len(part), gap_low=part.gap_pct.min(),
                             gap_high=part.gap_pct.max(), **part[statistics].median().to_dict()))
    return pd.DataFrame(rows)
