"""The HDPO paper's network experiments (spec §4.3-§4.5): settings, budgets per profile, cached runs over seeds.

A run is one (setting, number of stores, method, training seed, number of training scenarios): a policy trained
by HDPO with :func:`hybridrl.train.fit` on the network simulator (:mod:`hybridrl.networks`) and tested on its
own test scenarios. Every run is cached on disk (:mod:`hybridrl.cache`) under a key made of everything that
determines it, so an interrupted grid resumes, and independent runs are spread over worker processes.

Methods (:func:`make_network_policy`): ``echelon_base_stock`` (the heuristic, its levels fitted by HDPO: spec
§6.3), ``vanilla`` (:class:`~hybridrl.network_policies.NetworkMLP`), ``symmetry_aware``
(:class:`~hybridrl.network_policies.SymmetryAware`), ``gnn``
(:class:`~hybridrl.network_policies.GraphNetwork`) and, in the data-efficiency study only, our ablation
``symmetry_aware_narrow`` (the symmetry-aware net with a narrow context: :data:`NARROW_CONTEXT`). Costs are
per store and period over the test periods after the warm-up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import pandas as pd
import torch

from . import __version__
from ._config import check_choice, check_int
from ._device import threads_per_run
from .cache import cached, checkpoint_path
from .experiments import GridResult, check_profile, run_parallel
from .networks import Network, make_network_splits, one_warehouse_network, serial_network, transshipment_network
from .reporting import device_name, git_commit
from .scenarios import Protocol, Seeds
from .train import TrainConfig, config_key, evaluate, fit, resolve_device

RESULT_FORMAT = 1
POLICY_REVISION = {"symmetry_aware": 2, "gnn": 2}
"""Raised when a method's architecture or initialisation changes, so that its cached runs are recomputed (2:
sub-network seeds kept apart across training seeds, :func:`hybridrl.policies.subnetwork_seeds`). A method at
revision 1 is left out of the cache key, which keeps its runs."""
SETTINGS = ("serial", "one_warehouse", "transshipment")
METHODS = ("echelon_base_stock", "vanilla", "symmetry_aware", "gnn", "symmetry_aware_narrow")
NARROW_CONTEXT = dict(context=8, context_hidden=(32,))
"""The context of ``symmetry_aware_narrow``, an ablation of ours (not the paper's): 8 numbers from a hidden layer
of 32, instead of the spec's 256 from 256. The context reads the flattened state of every location and is not
shared between stores, so at the spec's width it has about as many store-specific weights as the vanilla
network's first layer, and with few training scenarios it overfits like it (chapter 09). The width was chosen
on the dev set among 1, 8 and 256 (5 stores, 16 training scenarios, seeds 0 and 1, the ``quick`` budget: mean
best dev cost 5.245, 5.213 and 5.428)."""


def make_network(setting: str, n_stores: int = 1) -> Network:
    """The spec's instance of ``setting`` with ``n_stores`` stores (the serial system has one)."""
    check_choice("setting", setting, SETTINGS)
    if setting == "serial":
        if n_stores != 1:
            raise ValueError(f"the serial system has one store, got n_stores={n_stores}")
        return serial_network(9.0)
    check_int("n_stores", n_stores, minimum=1)
    return one_warehouse_network(n_stores) if setting == "one_warehouse" else transshipment_network(n_stores)


def make_network_policy(method: str, network: Network, seed: int = 0, hidden: tuple[int, ...] = (256, 256, 256)):
    """A fresh policy for ``network``; ``seed`` sets the initial weights, ``hidden`` the vanilla network's
    layers."""
    from . import network_policies as np_

    check_choice("method", method, METHODS)
    if method == "echelon_base_stock":
        return np_.EchelonBaseStock(network)
    if method == "vanilla":
        return np_.NetworkMLP(network, hidden=hidden, init_seed=seed)
    if method == "symmetry_aware":
        return np_.SymmetryAware(network, init_seed=seed)
    if method == "symmetry_aware_narrow":
        return np_.SymmetryAware(network, init_seed=seed, **NARROW_CONTEXT)
    return np_.GraphNetwork(network, init_seed=seed)


SMOKE_BOUND_UNITS = 60
"""The ``smoke`` profile's one-warehouse bound grid (``max_units``): still a valid bound, only looser, and well
under a second per store instead of 2-8 s (:func:`hybridrl.references.one_warehouse_lower_bound`)."""


def lower_bound(setting: str, n_stores: int, profile: str = "quick") -> float:
    """The setting's lower bound per store and period (:func:`hybridrl.references.one_warehouse_lower_bound`,
    :func:`hybridrl.references.transshipment_lower_bound`), cached on disk: the one-warehouse bound solves a
    dynamic programme per store (seconds each; in the ``smoke`` profile on a coarse grid,
    :data:`SMOKE_BOUND_UNITS`, which is as valid and a little looser)."""
    from .references import one_warehouse_lower_bound, transshipment_lower_bound

    if setting not in ("one_warehouse", "transshipment"):
        raise ValueError(f"setting must be 'one_warehouse' or 'transshipment' for a lower bound, got {setting!r}")
    coarse = check_profile(profile) == "smoke" and setting == "one_warehouse"
    grid = dict(max_units=SMOKE_BOUND_UNITS) if coarse else {}
    network = make_network(setting, n_stores)
    bound = one_warehouse_lower_bound if setting == "one_warehouse" else transshipment_lower_bound
    return cached("network/lower_bound", dict(network=repr(network), version=__version__, format=RESULT_FORMAT,
                                              **grid),  # (no grid: the keys of the full bounds stay as they were)
                  lambda: float(bound(network, **grid)))


# ----------------------------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkBudget:
    """Sizes and optimisation settings of one setting in one profile."""

    protocol: Protocol
    configs: dict
    """Method -> :class:`TrainConfig` (the seed is set per run)."""
    stores: tuple[int, ...]
    """Numbers of stores of the grid."""
    seeds: tuple[int, ...]
    data_sizes: tuple[int, ...] = ()
    """Training-scenario counts of the data-efficiency study (one warehouse)."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden layers of the vanilla network (spec §6.2: [32, 32] serial, [512]×3 one warehouse, [256]×3
    transshipment)."""


def _configs(epochs: int, batch: int, dev_every: int, **lrs) -> dict:
    """One config per method for the reduced profiles: a fixed number of epochs with cosine decay (no early
    stopping) and gradient-norm clipping, which reach the quick targets in few steps."""
    common = dict(epochs=epochs, batch_size=batch, dev_every=dev_every, schedule="cosine", patience=None,
                  progress=False, grad_clip=1.0)
    return {m: TrainConfig(lr=lr, **common) for m, lr in lrs.items()}


def _paper_configs(batch: int, **lrs) -> dict:
    """The spec's optimiser settings (§7): Adam at a constant learning rate, at most 20000 epochs, a dev
    evaluation every 10 epochs and early stopping after 500 epochs without improvement; gradient-norm clipping
    (1.0) for the graph network only; the symmetry-aware network 1000 epochs with a dev evaluation every 5 and no
    early stopping. Every training step is recorded as a CUDA graph on a GPU (``device="auto"``)."""
    common = dict(epochs=20000, batch_size=batch, dev_every=10, patience=500, schedule="constant", progress=False,
                  device="auto", cuda_graph=True)
    configs = {m: TrainConfig(lr=lr, **common) for m, lr in lrs.items()}
    configs["gnn"] = replace(configs["gnn"], grad_clip=1.0)
    for method in ("symmetry_aware", "symmetry_aware_narrow"):
        configs[method] = replace(configs[method], epochs=1000, dev_every=5, patience=None)
    return configs


_SMOKE = Protocol(n_train=64, n_dev=32, n_test=32, train_periods=20, dev_periods=30, dev_warmup=10, test_periods=40,
                  test_warmup=20)
_LRS = dict(echelon_base_stock=0.5, vanilla=1e-3, symmetry_aware=1e-3, gnn=1e-3,  # spec §6.2-§6.3 (echelon: 0.5)
            symmetry_aware_narrow=1e-3)  # our ablation: the symmetry-aware net's settings
_QUICK_LRS = dict(_LRS, vanilla=3e-3, symmetry_aware=1e-2, gnn=3e-3,  # chosen on dev (see the quick budgets)
                  symmetry_aware_narrow=1e-2)
NETWORK_BUDGETS = {
    ("serial", "smoke"): NetworkBudget(_SMOKE, _configs(2, 32, 1, **_LRS), (1,), (0, 1)),
    ("one_warehouse", "smoke"): NetworkBudget(_SMOKE, _configs(2, 32, 1, **_LRS), (3,), (0, 1), data_sizes=(8, 32)),
    ("transshipment", "smoke"): NetworkBudget(_SMOKE, _configs(2, 32, 1, **_LRS), (3,), (0, 1)),
    # quick: a 2-core laptop; a vanilla serial network of [64, 64] (the paper's [32, 32] needs more steps than
    # this budget to come within 1 %), smaller networks and fewer steps elsewhere
    ("serial", "quick"): NetworkBudget(
        Protocol(n_train=2048, n_dev=1024, n_test=2048, train_periods=100, dev_periods=200, dev_warmup=100,
                 test_periods=600, test_warmup=200),
        _configs(60, 128, 5, **dict(_LRS, vanilla=1e-2)), (1,), (0, 1, 2), hidden=(64, 64)),
    # one warehouse and transshipment: learning rates chosen on the dev set (5 stores, 1024 training scenarios,
    # seeds 0 and 1, lr in {1e-3, 3e-3, 1e-2, 3e-2}; mean best dev cost). One warehouse: vanilla 5.216 / 5.148 /
    # diverged / diverged, symmetry-aware 5.225 / 5.184 / 5.142 / 5.611, graph 5.124 / 5.099 / 5.104 / (not
    # tried); transshipment: vanilla 5.283 / 5.272 / diverged / diverged, symmetry-aware 5.309 / 5.301 / 5.279 /
    # 5.290. In 320 steps the spec's rates (1e-3 and less, made for thousands of epochs) leave the networks up to
    # 1.5 points of gap short. The data-efficiency study: the spec's sizes 16 and 256 (§3.2) and all 1024.
    ("one_warehouse", "quick"): NetworkBudget(
        Protocol(n_train=1024, n_dev=512, n_test=1024, train_periods=50, dev_periods=100, dev_warmup=50,
                 test_periods=300, test_warmup=100),
        _configs(40, 128, 4, **_QUICK_LRS), (3, 5, 10), (0, 1), data_sizes=(16, 256, 1024)),
    ("transshipment", "quick"): NetworkBudget(
        Protocol(n_train=1024, n_dev=512, n_test=1024, train_periods=50, dev_periods=100, dev_warmup=50,
                 test_periods=300, test_warmup=100),
        _configs(40, 128, 4, **_QUICK_LRS), (3, 5, 10), (0, 1)),
    # the published protocol: the spec's splits (§3.2: 32768 scenarios per split and batch 8192 for the serial
    # system, 8192 per split and batch 1024 for one warehouse, 32768 per split and batch 1024 for transshipment;
    # tests of 5000 periods) and optimiser settings (§7, :func:`_paper_configs`); a GPU when there is one
    # (device "auto": CUDA if available, so the same cached run whether a sweep or a notebook computes it)
    ("serial", "paper"): NetworkBudget(Protocol(), _paper_configs(8192, **dict(_LRS, vanilla=1e-2)), (1,), (0, 1, 2),
                                       hidden=(32, 32)),
    ("one_warehouse", "paper"): NetworkBudget(Protocol(n_train=8192, n_dev=8192, n_test=8192),
                                              _paper_configs(1024, **dict(_LRS, vanilla=3e-4)),
                                              (3, 5, 10, 20, 30, 50), (0, 1, 2),
                                              # §3.2: 16, 256, 8192 (2, 4, 8 for the symmetry-aware net), and more
                                              data_sizes=(2, 4, 8, 16, 32, 128, 256, 512, 2048, 8192),
                                              hidden=(512, 512, 512)),
    ("transshipment", "paper"): NetworkBudget(Protocol(), _paper_configs(1024, **dict(_LRS, vanilla=1e-4)),
                                              (3, 5, 10), (0, 1, 2)),
}


def network_budget(setting: str, profile: str) -> NetworkBudget:
    check_choice("setting", setting, SETTINGS)
    return NETWORK_BUDGETS[(setting, check_profile(profile))]


def chapter_methods(setting: str, profile: str, *, data_sizes: bool = False) -> tuple[str, ...]:
    """The methods a chapter trains on ``setting`` in ``profile`` (the notebooks and :mod:`hybridrl.sweeps` both
    ask here). The graph network is several times slower per step than the vanilla one on a CPU, more so with
    more stores (``paper/benchmarks.md``): in ``quick`` it runs in the data-efficiency study only (5 stores),
    in the ``smoke`` and ``paper`` profiles everywhere. The serial system compares the echelon policy (optimal
    there) with the vanilla network; transshipment leaves the echelon heuristic out (HDPO cannot fit it there:
    chapter 10); the data-efficiency study compares the networks only, and our narrow-context ablation of the
    symmetry-aware net (:data:`NARROW_CONTEXT`) with them."""
    check_choice("setting", setting, SETTINGS)
    graph = () if check_profile(profile) == "quick" else ("gnn",)
    if setting == "serial":
        return ("echelon_base_stock", "vanilla")
    if setting == "transshipment":
        return ("vanilla", "symmetry_aware") + graph
    if data_sizes:
        return ("vanilla", "symmetry_aware", "gnn", "symmetry_aware_narrow")
    return ("echelon_base_stock", "vanilla", "symmetry_aware") + graph


def data_study_stores(profile: str) -> tuple[int, ...]:
    """The store counts of the data-efficiency study: 5 stores where the profile has them."""
    stores = network_budget("one_warehouse", profile).stores
    return (5,) if 5 in stores else stores[:1]


# ----------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------
def run_network(setting: str, n_stores: int, method: str, seed: int, profile: str = "quick", *,
                n_train: int | None = None, device: str | None = None, force: bool = False) -> dict:
    """Train ``method`` by HDPO on one instance and test it; cached. ``n_train`` overrides the profile's number
    of training scenarios (the data-efficiency study; the dev and test scenarios do not change); the number of
    gradient steps stays the profile's, so fewer scenarios mean more epochs over them, not less training.
    ``device`` overrides the profile's (``None``: the budget's, ``"auto"`` in ``paper``: CUDA when available)."""
    check_choice("method", method, METHODS)
    check_int("seed", seed, minimum=0)
    budget = network_budget(setting, profile)
    network = make_network(setting, n_stores)
    protocol = budget.protocol if n_train is None else replace(budget.protocol, n_train=check_int("n_train", n_train,
                                                                                                  minimum=1))
    config = replace(budget.configs[method], seed=seed, device=device or budget.configs[method].device,
                     batch_size=min(budget.configs[method].batch_size, protocol.n_train))
    if n_train is not None:  # the same number of gradient steps whatever the data: epochs scale up as data shrink
        base = budget.configs[method]
        steps = base.epochs * max(1, budget.protocol.n_train // base.batch_size)
        per_epoch = max(1, protocol.n_train // config.batch_size)
        epochs = math.ceil(steps / per_epoch)
        dev_every = max(1, round(epochs * base.dev_every / base.epochs))  # dev evaluations and patience too
        patience = None if base.patience is None else max(dev_every, round(epochs * base.patience / base.epochs))
        config = replace(config, epochs=epochs, dev_every=dev_every, patience=patience)
    description = dict(experiment="network", network=repr(network), method=method, protocol=asdict(protocol),
                       hidden=budget.hidden if method == "vanilla" else None,
                       config=config_key(config), seeds=asdict(Seeds()),
                       version=__version__, format=RESULT_FORMAT,
                       **({"revision": POLICY_REVISION[method]} if method in POLICY_REVISION else {}))
    namespace = f"network/{setting}/{method}"
    # the training state at every dev evaluation: an interrupted run resumes there (force: from scratch)
    ckpt = checkpoint_path(namespace, description, fresh=force)

    def compute() -> dict:
        commit = git_commit()  # the code that trains, read before a long run (not a later commit when it ends)
        where = resolve_device(config.device)
        torch.set_num_threads(threads_per_run()) if where.type == "cpu" else None
        splits = make_network_splits(network, protocol)
        policy = make_network_policy(method, network, seed, hidden=budget.hidden)
        result = fit(policy, splits.train, splits.dev, config, dev_warmup=protocol.dev_warmup, checkpoint=ckpt,
                     description=f"{setting} {n_stores} {method}")
        test = evaluate(result.policy, splits.test, protocol.test_warmup).mean(-1).double()
        record = dict(setting=setting, n_stores=n_stores, method=method, seed=seed, train_scenarios=protocol.n_train,
                      test_cost=float(test.mean()), test_se=float(test.std() / math.sqrt(len(test))),
                      dev_cost=result.best_dev[0], best_epoch=result.best_epoch[0], epochs=result.epochs,
                      run_seconds=result.seconds, cells_in_run=1, computed_commit=commit,
                      computed_device=device_name(str(where)),
                      history=[dict(epoch=h["epoch"], seconds=h["seconds"], train_cost=h["train_cost"],
                                    dev_cost=h["dev_cost"]) for h in result.history if not math.isnan(h["dev_cost"])])
        if method == "echelon_base_stock":
            record["levels"] = [float(v) for v in result.policy.levels.detach().cpu()]
        return record

    record = cached(namespace, description, compute, force=force)
    ckpt.unlink(missing_ok=True)  # the record is stored: the training state is no longer needed
    return record


def test_cost_of(policy, setting: str, n_stores: int, profile: str = "quick") -> tuple[float, float]:
    """Mean test cost per store and period of ``policy`` on the profile's test scenarios of the setting (the
    scenarios :func:`run_network` tests on), and its standard error: for a reference policy on the same data
    (common random numbers)."""
    budget = network_budget(setting, profile)
    network = make_network(setting, n_stores)
    splits = make_network_splits(network, replace(budget.protocol, n_train=1, n_dev=1))
    test = evaluate(policy, splits.test, budget.protocol.test_warmup).mean(-1).double()
    return float(test.mean()), float(test.std() / math.sqrt(len(test)))


def _job(args: dict) -> dict:
    return run_network(**args)


def run_network_grid(setting: str, profile: str = "quick", *, methods=None, stores=None, seeds=None,
                     data_sizes: bool = False, workers: int | None = None, force: bool = False,
                     progress: bool = True) -> GridResult:
    """Every (stores, method, seed) of the profile's grid — or, with ``data_sizes``, every training-scenario
    count of the data-efficiency study — in parallel over ``workers`` processes (spawned; one thread each).
    ``table``: one row per run; ``history``: the dev evaluations of every run."""
    budget = network_budget(setting, profile)
    methods = tuple(methods or ("echelon_base_stock", "vanilla", "symmetry_aware"))
    for m in methods:
        check_choice("method", m, METHODS)
    stores = tuple(stores or budget.stores)
    seeds = tuple(budget.seeds if seeds is None else seeds)
    sizes = budget.data_sizes if data_sizes else (None,)
    jobs = [dict(setting=setting, n_stores=s, method=m, seed=sd, profile=profile, n_train=n, force=force)
            for s in stores for m in methods for n in sizes for sd in seeds]
    records = run_parallel(_job, jobs, workers=workers, progress=progress, description=f"{setting} ({profile})")
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in records])
    keys = ["n_stores", "method", "seed", "train_scenarios"]
    history = pd.DataFrame([dict(h, **{k: r[k] for k in keys}) for r in records for h in r["history"]])
    return GridResult(table, history)


def data_needed(efficiency: pd.DataFrame, reference: str = "vanilla") -> pd.DataFrame:
    """The data-efficiency claim, measured: for every method other than ``reference``, the smallest number of
    training scenarios at which its mean gap is at most the ``reference``'s mean gap with the most scenarios,
    and that number as a fraction of the most (``None`` where no size reaches it). ``efficiency`` has one row
    per (method, train_scenarios) with the mean ``gap_pct`` (:func:`hybridrl.stats.interval_table`)."""
    missing = {"method", "train_scenarios", "gap_pct"} - set(efficiency.columns)
    if missing:
        raise ValueError(f"efficiency lacks the columns {sorted(missing)}")
    ref = efficiency[efficiency.method == reference]
    if ref.empty:
        raise ValueError(f"reference must be a method of the table, got {reference!r}")
    largest = int(ref.train_scenarios.max())
    target = float(ref[ref.train_scenarios == largest].gap_pct.iloc[0])
    rows = []
    for method in sorted(set(efficiency.method) - {reference}):
        reached = efficiency[(efficiency.method == method) & (efficiency.gap_pct <= target)]
        needed = int(reached.train_scenarios.min()) if len(reached) else None
        rows.append(dict(method=method, reference=reference, reference_scenarios=largest, reference_gap_pct=target,
                         scenarios=needed, fraction=None if needed is None else needed / largest))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# HDPO against REINFORCE (spec §6.5, §8)
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComparisonBudget:
    protocol: Protocol
    config: TrainConfig
    seeds: tuple[int, ...]
    variance_batches: int
    """Minibatch gradient estimates per variance measurement (at every dev evaluation)."""


_COMPARISON_PROTOCOL = Protocol(n_train=2048, n_dev=1024, n_test=1024, train_periods=50, dev_periods=100,
                                dev_warmup=50, test_periods=600, test_warmup=200)
COMPARISON_BUDGETS = {
    ("lost_sales", "smoke"): ComparisonBudget(_SMOKE, TrainConfig(epochs=2, batch_size=32, lr=1e-2, dev_every=1,
                                                                  patience=None, progress=False), (0, 1), 3),
    ("one_warehouse", "smoke"): ComparisonBudget(_SMOKE, TrainConfig(epochs=2, batch_size=32, lr=1e-3, dev_every=1,
                                                                     patience=None, progress=False), (0, 1), 3),
    ("lost_sales", "quick"): ComparisonBudget(
        _COMPARISON_PROTOCOL, TrainConfig(epochs=60, batch_size=512, lr=1e-2, schedule="cosine", dev_every=6,
                                          patience=None, progress=False, grad_clip=1.0), (0, 1), 8),
    ("one_warehouse", "quick"): ComparisonBudget(
        replace(_COMPARISON_PROTOCOL, n_train=1024), TrainConfig(epochs=30, batch_size=256, lr=1e-3,
                                                                  schedule="cosine", dev_every=3, patience=None,
                                                                  progress=False, grad_clip=1.0), (0, 1), 8),
    # the paper: the spec's splits and learning rates of each setting (§3.2, §7), a fixed 2000 epochs for both
    # methods (curves against time, no early stopping), on a GPU when there is one; no CUDA graph, which
    # REINFORCE's sampling cannot use, so that both estimators run the same eager loop
    ("lost_sales", "paper"): ComparisonBudget(Protocol(), TrainConfig(epochs=2000, lr=3e-3, dev_every=10,
                                                                      patience=None, progress=False, device="auto"),
                                              (0, 1, 2), 16),
    ("one_warehouse", "paper"): ComparisonBudget(Protocol(n_train=8192, n_dev=8192, n_test=8192),
                                                 TrainConfig(epochs=2000, batch_size=1024, lr=3e-4, dev_every=10,
                                                             patience=None, progress=False, device="auto"),
                                                 (0, 1, 2), 16),
}
COMPARISON_SETTINGS = ("lost_sales", "one_warehouse")


def _comparison_problem(setting: str, profile: str):
    """The two settings: single-store lost sales (L = 2, p = 9, Poisson(5)) with its exact optimum, and one
    warehouse with 5 stores with its lower bound; each with its vanilla policy (on one warehouse, the layers of
    the profile's one-warehouse grid: the spec's [512]×3 in ``paper``)."""
    from .experiments import lost_sales_grid
    from .policies import VanillaMLP
    from .references import lost_sales_optimum
    from .scenarios import make_splits

    check_choice("setting", setting, COMPARISON_SETTINGS)
    if setting == "lost_sales":
        grid = lost_sales_grid((2,), (9,))
        return (grid, lambda protocol: make_splits(grid, protocol),
                lambda seed: VanillaMLP(grid.n_slots, init_seeds=[seed]), lost_sales_optimum(9.0, 1.0, 2).cost, True)
    network = make_network("one_warehouse", 5)
    from .network_policies import NetworkMLP

    return (network, lambda protocol: make_network_splits(network, protocol),
            lambda seed: NetworkMLP(network, hidden=network_budget("one_warehouse", profile).hidden, init_seed=seed),
            lower_bound("one_warehouse", 5, profile), False)


def run_reinforce_comparison(setting: str, method: str, seed: int, profile: str = "quick", *,
                             force: bool = False) -> dict:
    """Train the setting's vanilla policy with the pathwise gradient (``hdpo``) or with REINFORCE
    (``reinforce``: :class:`hybridrl.reinforce.Reinforce`, log-normal exploration, learned baseline) through the
    same :func:`hybridrl.train.fit`, the same scenarios and steps; record the dev cost and the relative variance
    of one minibatch's gradient (:func:`hybridrl.estimators.gradient_variance`) at every dev evaluation, and
    the test cost. Cached."""
    from .estimators import gradient_variance
    from .reinforce import Reinforce

    check_choice("method", method, ("hdpo", "reinforce"))
    check_int("seed", seed, minimum=0)
    budget = COMPARISON_BUDGETS[(check_choice("setting", setting, COMPARISON_SETTINGS), check_profile(profile))]
    config = replace(budget.config, seed=seed, estimator="pathwise" if method == "hdpo" else "reinforce")
    description = dict(experiment="reinforce_comparison", setting=setting, method=method,
                       protocol=asdict(budget.protocol), variance=budget.variance_batches,
                       **({} if setting == "lost_sales" else dict(  # the instance and the vanilla net's layers
                           network=repr(make_network("one_warehouse", 5)),
                           hidden=network_budget("one_warehouse", profile).hidden)),
                       config=dict(config_key(config), progress=config.progress),  # (in this key from the start)
                       version=__version__, format=RESULT_FORMAT)
    namespace = f"network/reinforce_comparison/{setting}"
    ckpt = checkpoint_path(namespace, description, fresh=force)  # an interrupted run resumes (force: from scratch)

    def compute() -> dict:
        commit = git_commit()
        torch.set_num_threads(threads_per_run())
        problem, splits_of, policy_of, reference, integer = _comparison_problem(setting, profile)
        splits = splits_of(budget.protocol)
        policy = policy_of(seed)
        if method == "reinforce":
            policy = Reinforce(policy, seed=seed)
        batch = min(config.batch_size, splits.train.n)

        def record(epoch, trained, seconds):  # kept in the history rows (and so in the training checkpoint)
            estimator = "pathwise" if method == "hdpo" else "reinforce"
            return dict(gradient_variance=gradient_variance(trained, splits.train, estimator,
                                                            batches=budget.variance_batches, batch_size=batch,
                                                            seed=10_000 + epoch))

        result = fit(policy, splits.train, splits.dev, config, dev_warmup=budget.protocol.dev_warmup,
                     callback=record, round_orders=integer, checkpoint=ckpt)
        test = evaluate(result.policy, splits.test, budget.protocol.test_warmup, round_orders=integer).mean(-1).double()
        history = [dict(epoch=h["epoch"], seconds=h["seconds"], dev_cost=h["dev_cost"],
                        gradient_variance=h.get("gradient_variance", math.nan))
                   for h in result.history if not math.isnan(h["dev_cost"])]
        return dict(setting=setting, method=method, seed=seed, wall_seconds=result.seconds,
                    test_cost=float(test.mean()), test_se=float(test.std() / math.sqrt(len(test))),
                    reference=reference, gap_pct=100 * (float(test.mean()) / reference - 1),
                    reference_kind="optimum" if setting == "lost_sales" else "lower bound",
                    run_seconds=result.seconds, cells_in_run=1, computed_commit=commit,
                    computed_device=device_name(str(resolve_device(config.device))), history=history)

    record = cached(namespace, description, compute, force=force)
    ckpt.unlink(missing_ok=True)
    return record


def _comparison_job(args: dict) -> dict:
    return run_reinforce_comparison(**args)


def run_reinforce_grid(profile: str = "quick", *, workers: int | None = None, force: bool = False,
                       progress: bool = True) -> GridResult:
    """Both settings × both methods × the profile's seeds, in parallel."""
    jobs = [dict(setting=s, method=m, seed=sd, profile=profile, force=force) for s in COMPARISON_SETTINGS
            for m in ("hdpo", "reinforce") for sd in COMPARISON_BUDGETS[(s, check_profile(profile))].seeds]
    lower_bound("one_warehouse", 5, profile)  # once, here: the workers then read it instead of each computing it
    records = run_parallel(_comparison_job, jobs, workers=workers, progress=progress,
                           description=f"HDPO vs REINFORCE ({profile})")
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in records])
    history = pd.DataFrame([dict(h, **{k: r[k] for k in ("setting", "method", "seed", "reference")})
                            for r in records for h in r["history"]])
    return GridResult(table, history)
