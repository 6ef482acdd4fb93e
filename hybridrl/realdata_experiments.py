"""The HDPO paper's real-data experiments (spec §4.7, §4.8): budgets per profile and cached runs.

One store per series (:mod:`hybridrl.favorita`): every policy is trained on the training window, selected on the
dev window and tested on the test window of the same 6048 store-item series; profits are per series and week over
the test weeks after the warm-up. Methods:

* ``hdpo`` — the data-driven network trained end to end by HDPO (:class:`~hybridrl.newsvendor.DataDrivenPolicy`);
* ``fixed_quantile``, ``transformed_nv`` — newsvendors whose quantile is fitted by HDPO, and ``quantile_nv``
  (the critical fractile), all on one frozen quantile forecaster fitted on the training window
  (:mod:`hybridrl.newsvendor`); these are the admissible heuristics HDPO must beat;
* ``returns_nv`` and ``just_in_time`` — non-admissible references (returns allowed; perfect foresight).

Three warehouses and 21 stores (:mod:`hybridrl.favorita_network`): one scenario per item (288), the drawn network
of seed :data:`NETWORK_SEED`; methods ``hdpo`` (:class:`~hybridrl.network_policies.NetworkDataDriven`),
``echelon_stock`` (:class:`~hybridrl.network_policies.ScaledEchelonStock`, levels fitted by HDPO) and
``just_in_time``; profits per store and week.

Every run is cached on disk under a key that includes a fingerprint of the data, so rebuilt or edited data never
reuse old results, and each HDPO training checkpoints its state (:func:`hybridrl.train.fit`), so an interrupted
run resumes.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from . import __version__, favorita, newsvendor, stats
from ._config import check_choice, check_int
from ._device import threads_per_run
from .cache import cached, checkpoint_path
from .experiments import GridResult, check_profile, run_parallel
from .reporting import device_name, git_commit
from .train import TrainConfig, config_key, evaluate, fit

RESULT_FORMAT = 1
ONE_STORE_METHODS = ("hdpo", "fixed_quantile", "transformed_nv", "quantile_nv", "returns_nv", "just_in_time")
TRAINED = ("hdpo", "fixed_quantile", "transformed_nv")
ADMISSIBLE_HEURISTICS = ("fixed_quantile", "transformed_nv", "quantile_nv")
NON_ADMISSIBLE = ("returns_nv", "just_in_time")


@dataclass(frozen=True)
class RealDataBudget:
    """Sizes and optimisation settings of the real-data experiments in one profile."""

    n_series: int | None
    """Series of the one-store experiment (``None``: all 6048)."""
    forecaster_epochs: int
    hdpo: TrainConfig
    """The data-driven network (spec §7: lr 3e-3)."""
    newsvendor: TrainConfig
    """The fixed-quantile and transformed newsvendors (spec §7: lr 0.03)."""
    seeds: tuple[int, ...]
    network_items: int | None = None
    """Items (scenarios) of the three-warehouse network (``None``: all 288)."""
    network_hdpo: TrainConfig | None = None
    """The data-driven network net on the three-warehouse network (spec §6.2, §7: lr 3e-3) ..."""
    network_hidden: tuple[int, ...] = (64, 64)
    """... and its hidden layers (spec §6.2: [64, 64])."""
    network_heuristic: TrainConfig | None = None
    """The scaled echelon-stock heuristic's levels, fitted by HDPO."""


def _config(epochs: int, batch: int, lr: float, dev_every: int, patience: int | None = None,
            device: str = "cpu") -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch, lr=lr, dev_every=dev_every, patience=patience,
                       progress=False, device=device)


BUDGETS = {
    "smoke": RealDataBudget(n_series=64, forecaster_epochs=1, hdpo=_config(2, 32, 3e-3, 1),
                            newsvendor=_config(2, 32, 0.03, 1), seeds=(0, 1), network_items=16,
                            network_hdpo=_config(2, 8, 1e-3, 1), network_heuristic=_config(2, 8, 0.05, 1)),
    # quick: minibatches of 1024 series (6 Adam steps per pass) instead of the paper's 8192 (one step per pass
    # over our 6048 series), so that a few hundred passes train the network on a laptop. The network net: layers
    # (128, 128) at lr 1e-3, the settings this profile was first tuned with (the paper profile's spec settings,
    # [64, 64] at 3e-3, did as well on one paper-budget seed: 76.0 % of the just-in-time profit against 75.4 %)
    "quick": RealDataBudget(n_series=None, forecaster_epochs=15, hdpo=_config(200, 1024, 3e-3, 10),
                            newsvendor=_config(40, 1024, 0.03, 10), seeds=(0, 1),
                            network_hdpo=_config(300, 72, 1e-3, 10), network_hidden=(128, 128),
                            network_heuristic=_config(60, 72, 0.05, 10)),
    # the paper (spec §3.2, §4.8, §7): batch 8192 (one store) / 72 items (network), up to 20000 epochs, dev every
    # 10, patience 500; on a GPU when there is one (device "auto")
    "paper": RealDataBudget(n_series=None, forecaster_epochs=100, hdpo=_config(20000, 8192, 3e-3, 10, 500, "auto"),
                            newsvendor=_config(20000, 8192, 0.03, 10, 500, "auto"), seeds=(0, 1, 2),
                            network_hdpo=_config(20000, 72, 3e-3, 10, 500, "auto"),
                            network_heuristic=_config(20000, 72, 0.05, 10, 500, "auto")),
}


def budget(profile: str) -> RealDataBudget:
    return BUDGETS[check_profile(profile)]


def fingerprint(data: favorita.FavoritaData) -> str:
    """A short hash of the sales and calendar: part of every cache key."""
    h = hashlib.sha256(np.ascontiguousarray(data.sales).tobytes())
    h.update(data.weeks.to_csv(index=False).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------
# The forecaster (fitted once per data set and profile, shared by the newsvendors)
# ----------------------------------------------------------------------------------------------------------------
def _forecaster_description(data, profile: str) -> dict:
    b = budget(profile)
    return dict(experiment="favorita_forecaster", data=fingerprint(data), n_series=b.n_series,
                epochs=b.forecaster_epochs, train=asdict(favorita.TRAIN), dev=asdict(favorita.DEV),
                version=__version__, format=RESULT_FORMAT)


def _series(data, profile: str) -> np.ndarray:
    series = data.series()
    n = budget(profile).n_series
    return series if n is None else series[:n]


def forecaster(data: favorita.FavoritaData, profile: str = "quick", *, force: bool = False,
               progress: bool = True) -> tuple[newsvendor.QuantileForecaster, dict]:
    """The frozen quantile forecaster of the newsvendors, fitted on the training window (selected on dev), and
    its record (pinball losses per epoch, dev calibration). Cached: weights next to the JSON record."""
    description = _forecaster_description(data, profile)
    weights = checkpoint_path("real_data/forecaster", description).with_suffix(".pt")
    state = checkpoint_path("real_data/forecaster", description, fresh=force)  # an interrupted fit resumes

    def compute() -> dict:
        series = _series(data, profile)
        scale, calendar = favorita.training_mean(series), data.calendar()
        tr, dv = favorita.TRAIN, favorita.DEV
        train = newsvendor.forecaster_samples(series, tr.start, tr.end, scale=scale, calendar=calendar)
        dev = newsvendor.forecaster_samples(series, dv.start, dv.end, scale=scale, calendar=calendar)
        started = time.perf_counter()
        result = newsvendor.fit_forecaster(train, dev, epochs=budget(profile).forecaster_epochs, progress=progress,
                                           checkpoint=state, device=budget(profile).hdpo.device)
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result.forecaster.state_dict(), weights)
        return dict(history=result.history, best_epoch=result.best_epoch, best_dev_pinball=result.best_dev,
                    dev_coverage=[float(c) for c in newsvendor.coverage(result.forecaster, dev)],
                    seconds=time.perf_counter() - started, train_samples=int(train.past.shape[0]))

    record = cached("real_data/forecaster", description, compute, force=force or not weights.exists())
    state.unlink(missing_ok=True)
    model = newsvendor.QuantileForecaster()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.requires_grad_(False).eval()
    return model, record


# ----------------------------------------------------------------------------------------------------------------
# One store per series
# ----------------------------------------------------------------------------------------------------------------
def make_one_store_policy(method: str, model: newsvendor.QuantileForecaster | None, seed: int = 0, *,
                          test_demand: torch.Tensor | None = None):
    """A fresh policy; the oracle needs the test demand it will be run on, the newsvendors the forecaster."""
    check_choice("method", method, ONE_STORE_METHODS)
    if method == "hdpo":
        return newsvendor.DataDrivenPolicy(favorita.N_SLOTS, init_seed=seed)
    if method == "just_in_time":
        if test_demand is None:
            raise ValueError("the just-in-time oracle needs the test demand it will be run on (test_demand=...)")
        return newsvendor.JustInTime(test_demand)
    if model is None:
        raise ValueError(f"{method} needs the quantile forecaster")
    return newsvendor.make_newsvendor(method, model, init_seed=seed)


def _train_and_test(policy, splits, config: TrainConfig | None, checkpoint, *, method: str, seed: int | None):
    """Fit ``policy`` by HDPO on the training window, selecting on dev (unless ``config`` is None: nothing to
    train), then test it: ``(record, policy)``. Test profits are per week after the warm-up, per scenario (mean
    over stores), in one batch (the oracle needs it)."""
    commit = git_commit()  # the code that trains, read before a long run (not a later commit when it ends)
    record = dict(method=method, seed=seed, run_seconds=0.0, epochs=0, best_epoch=0, dev_profit=math.nan)
    if config is not None:
        result = fit(policy, splits.train, splits.dev, config, dev_warmup=favorita.WARMUP, checkpoint=checkpoint,
                     description=method)
        policy = result.policy
        record.update(run_seconds=result.seconds, epochs=result.epochs, best_epoch=result.best_epoch[0],
                      dev_profit=-result.best_dev[0],
                      history=[dict(epoch=h["epoch"], seconds=h["seconds"], train_profit=-h["train_cost"],
                                    dev_profit=-h["dev_cost"]) for h in result.history if not math.isnan(h["dev_cost"])])
    cost = evaluate(policy, splits.test, favorita.WARMUP, batch_size=splits.test.n)  # no gradient, no update
    profits = (-cost.mean(-1)).double().numpy()
    where = next((p.device for p in policy.parameters()), torch.device("cpu"))  # where it trained
    record.update(test_profit=float(profits.mean()), per_series=[float(v) for v in profits], cells_in_run=1,
                  computed_commit=commit, computed_device=device_name(str(where)))
    return record, policy


def run_one_store(method: str, seed: int = 0, profile: str = "quick", *, data=None, force: bool = False) -> dict:
    """Train (if needed) and test one method with one seed; cached. ``data``: a data folder or FavoritaData."""
    check_choice("method", method, ONE_STORE_METHODS)
    check_int("seed", seed, minimum=0)
    if not isinstance(data, favorita.FavoritaData):
        data = favorita.load_favorita(data)
    b = budget(profile)
    trained = method in TRAINED
    config = replace(b.hdpo if method == "hdpo" else b.newsvendor, seed=seed) if trained else None
    uses_forecaster = method not in ("hdpo", "just_in_time")
    description = dict(experiment="favorita_one_store", data=fingerprint(data), method=method,
                       seed=seed if trained else None, n_series=b.n_series,
                       windows=[asdict(w) for w in (favorita.TRAIN, favorita.DEV, favorita.TEST)],
                       config=None if config is None else config_key(config),
                       forecaster=_forecaster_description(data, profile) if uses_forecaster else None,
                       version=__version__, format=RESULT_FORMAT)
    ckpt = checkpoint_path("real_data/one_store", description, fresh=force)  # an interrupted run resumes

    def compute() -> dict:
        torch.set_num_threads(threads_per_run())
        splits = favorita.one_store_splits(data, n_series=b.n_series)
        model = forecaster(data, profile, progress=False)[0] if uses_forecaster else None
        policy = make_one_store_policy(method, model, seed, test_demand=splits.test.demand)
        record, policy = _train_and_test(policy, splits, config, ckpt, method=method, seed=seed if trained else None)
        if method == "fixed_quantile":
            record["quantile"] = float(torch.sigmoid(policy.level.logit).item())
        return record

    record = cached(f"real_data/one_store/{method}", description, compute, force=force)
    ckpt.unlink(missing_ok=True)  # the record is stored: the training state is no longer needed
    return record


def _job(args: dict) -> dict:
    return run_one_store(**args)


@dataclass
class RealDataResult(GridResult):
    """``table``: one row per (method, seed); ``per_series``: test profit of every series; ``history``: the dev
    evaluations of the trained methods."""

    per_series: pd.DataFrame | None = None


def run_one_store_grid(profile: str = "quick", *, data=None, methods=ONE_STORE_METHODS, workers: int | None = None,
                       force: bool = False, progress: bool = True) -> RealDataResult:
    """Every method (trained ones with every seed of the profile), in parallel over ``workers`` processes. The
    forecaster is fitted first if it is not cached, in this process, so the workers only load it; ``force``
    recomputes the runs, not the forecaster (``forecaster(..., force=True)`` does that)."""
    data = data if isinstance(data, favorita.FavoritaData) else favorita.load_favorita(data)
    for m in methods:
        check_choice("method", m, ONE_STORE_METHODS)
    forecaster(data, profile, progress=progress)
    seeds = budget(profile).seeds
    jobs = [dict(method=m, seed=s, profile=profile, data=data, force=force)
            for m in methods for s in (seeds if m in TRAINED else (0,))]
    jobs.sort(key=lambda j: j["method"] != "hdpo")  # the longest runs first
    records = run_parallel(_job, jobs, workers=workers, progress=progress, description=f"real data ({profile})")
    return _collect("one_store", records)


def margins(result: RealDataResult, method: str = "hdpo", against=ADMISSIBLE_HEURISTICS, *, seed: int = 0
            ) -> pd.DataFrame:
    """``method``'s test profit minus each of ``against``'s, per product (averaged over seeds), in points of the
    oracle's profit, with a 95 % bootstrap interval over products (:func:`hybridrl.stats.paired_difference`)."""
    per = result.per_series.groupby(["method", "series"]).agg(test_profit=("test_profit", "mean"),
                                                               oracle_profit=("oracle_profit", "first"))
    mine = per.loc[method]
    rows = []
    for other in against:
        theirs = per.loc[other].reindex(mine.index)
        ci = stats.paired_difference(mine.test_profit, theirs.test_profit, scale=mine.oracle_profit, seed=seed)
        wins = float((mine.test_profit > theirs.test_profit).mean())
        rows.append(dict(method=method, against=other, margin_pts=100 * ci.estimate, margin_low=100 * ci.low,
                         margin_high=100 * ci.high, products=len(mine), share_of_products_better=wins))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# Three warehouses and 21 stores (spec §4.8)
# ----------------------------------------------------------------------------------------------------------------
NETWORK_METHODS = ("hdpo", "echelon_stock", "just_in_time")
NETWORK_SEED = 0
"""The seed of the drawn network (adjacency, edge lead times, store costs: :mod:`hybridrl.favorita_network`)."""


def make_network_policy(method: str, network, seed: int = 0, *, test_demand: torch.Tensor | None = None,
                        hidden: tuple[int, ...] = (64, 64)):
    """``hdpo`` (:class:`~hybridrl.network_policies.NetworkDataDriven`), ``echelon_stock``
    (:class:`~hybridrl.network_policies.ScaledEchelonStock`, the heuristic) or ``just_in_time`` (the oracle,
    given the test demand)."""
    from . import network_policies

    check_choice("method", method, NETWORK_METHODS)
    if method == "hdpo":
        return network_policies.NetworkDataDriven(network, hidden=hidden, init_seed=seed)
    if method == "echelon_stock":
        return network_policies.ScaledEchelonStock(network)
    if test_demand is None:
        raise ValueError("the just-in-time oracle needs the test demand it will be run on (test_demand=...)")
    return network_policies.NetworkJustInTime(test_demand)


def run_network(method: str, seed: int = 0, profile: str = "quick", *, data=None, force: bool = False) -> dict:
    """Train (if needed) and test one method on the three-warehouse network; cached. Profits per store and week
    over the test weeks after the warm-up, warehouse costs shared equally by the stores; ``per_series`` holds
    each item's."""
    from .favorita_network import network_splits, real_data_network

    check_choice("method", method, NETWORK_METHODS)
    check_int("seed", seed, minimum=0)
    if not isinstance(data, favorita.FavoritaData):
        data = favorita.load_favorita(data)
    b = budget(profile)
    trained = method != "just_in_time"
    config = replace(b.network_hdpo if method == "hdpo" else b.network_heuristic, seed=seed) if trained else None
    network = real_data_network(NETWORK_SEED)
    description = dict(experiment="favorita_network", data=fingerprint(data), network=repr(network), method=method,
                       seed=seed if method == "hdpo" else None, n_items=b.network_items,
                       windows=[asdict(w) for w in (favorita.TRAIN, favorita.DEV, favorita.TEST)],
                       config=None if config is None else config_key(config),
                       version=__version__, format=RESULT_FORMAT,
                       **({"hidden": b.network_hidden} if method == "hdpo" else {}))  # the data-driven net's layers
    ckpt = checkpoint_path("real_data/network", description, fresh=force)  # an interrupted run resumes

    def compute() -> dict:
        torch.set_num_threads(threads_per_run())
        splits = network_splits(data, network, n_items=b.network_items)
        policy = make_network_policy(method, network, seed, test_demand=splits.test.demand, hidden=b.network_hidden)
        return _train_and_test(policy, splits, config, ckpt, method=method,
                               seed=seed if method == "hdpo" else None)[0]

    record = cached(f"real_data/network/{method}", description, compute, force=force)
    ckpt.unlink(missing_ok=True)  # the record is stored: the training state is no longer needed
    return record


def _network_job(args: dict) -> dict:
    return run_network(**args)


def run_network_grid(profile: str = "quick", *, data=None, methods=NETWORK_METHODS, workers: int | None = None,
                     force: bool = False, progress: bool = True) -> RealDataResult:
    """Every method on the three-warehouse network (HDPO with every seed of the profile; the heuristic's levels
    are fitted once: they start from fixed values, so a seed changes only the minibatch order)."""
    data = data if isinstance(data, favorita.FavoritaData) else favorita.load_favorita(data)
    for m in methods:
        check_choice("method", m, NETWORK_METHODS)
    seeds = budget(profile).seeds
    jobs = [dict(method=m, seed=s, profile=profile, data=data, force=force)
            for m in methods for s in (seeds if m == "hdpo" else (0,))]
    records = run_parallel(_network_job, jobs, workers=workers, progress=progress,
                           description=f"real data, network ({profile})")
    return _collect("three_warehouses", records)


def _collect(setting: str, records: list[dict]) -> RealDataResult:
    """Records of one setting -> the table (profit as a share of the oracle's), per-series profits, history."""
    oracle = next((np.asarray(r["per_series"]) for r in records if r["method"] == "just_in_time"), None)
    rows, series, history = [], [], []
    for r in records:
        profits = np.asarray(r["per_series"])
        rows.append(dict(setting=setting, method=r["method"], seed=r["seed"], test_profit=r["test_profit"],
                         profit_vs_oracle_pct=math.nan if oracle is None else 100 * profits.sum() / oracle.sum(),
                         dev_profit=r["dev_profit"], epochs=r["epochs"], best_epoch=r["best_epoch"],
                         run_seconds=r["run_seconds"], cells_in_run=1, computed_commit=r["computed_commit"],
                         computed_device=r["computed_device"], quantile=r.get("quantile", math.nan)))
        series.append(pd.DataFrame(dict(method=r["method"], seed=r["seed"], series=np.arange(len(profits)),
                                        test_profit=profits)))
        history += [dict(h, method=r["method"], seed=r["seed"]) for h in r.get("history", [])]
    per_series = pd.concat(series, ignore_index=True)
    if oracle is not None:
        per_series["oracle_profit"] = oracle[per_series.series.to_numpy()]
        per_series["profit_vs_oracle_pct"] = 100 * per_series.test_profit / per_series.oracle_profit
    return RealDataResult(pd.DataFrame(rows), pd.DataFrame(history), per_series)
